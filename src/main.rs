//! The `odbackup` binary: parse the command line, set up logging, run, and map the outcome to an exit code.
//! Everything that prints lives in `cli`; everything else is the `odbackup` library.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use odbackup::ErrorKind;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_logging(args.verbose);
    match cli::run(args) {
        cli::Outcome::Success => ExitCode::SUCCESS,
        cli::Outcome::SomeFailed => ExitCode::from(1),
        cli::Outcome::Failed(ErrorKind::Usage) => ExitCode::from(2),
        cli::Outcome::Failed(ErrorKind::Auth) => ExitCode::from(3),
        cli::Outcome::Failed(ErrorKind::Locked) => ExitCode::from(4),
        cli::Outcome::Failed(ErrorKind::Run) => ExitCode::from(5),
        cli::Outcome::Interrupted => ExitCode::from(130),
    }
}

/// Logs go to stderr; `-v` raises odbackup's own level, `RUST_LOG` overrides everything.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,odbackup={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
