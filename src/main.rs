//! The `odbackup` binary: parse the command line, read the config file, set up logging, run, and map the
//! outcome to an exit code. Everything that prints lives in `cli`; everything else is the `odbackup` library.

mod cli;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let file = match cli::load_config(args.config.as_deref(), args.profile.as_deref()) {
        Ok(file) => file,
        Err(err) => {
            cli::report_error(&err);
            return ExitCode::from(2);
        }
    };
    let output = args.output.or_file(&file);
    let (verbose, log_file) = (output.verbose, output.log_file);
    if let Err(err) = init_logging(verbose, log_file.as_deref()) {
        cli::report_error(&odbackup::Error::Usage(err));
        return ExitCode::from(2);
    }
    // One mapping of outcomes to codes (`Outcome::code`): 0, 1, 2 usage, 3 sign-in, 4 locked, 5 run, and
    // 128 + the signal's number for an interrupted run, as a shell reports a process that signal ended (130
    // Ctrl-C, 143 SIGTERM, 129 SIGHUP); the run saved its state first, so the same command resumes it.
    ExitCode::from(cli::run(args, file).code())
}

/// Logs go to stderr (above the progress bars); `-v` raises odbackup's own level, `RUST_LOG` overrides
/// everything. `--log-file` gets the same lines, and at least odbackup's info lines, without colours.
fn init_logging(verbose: u8, log_file: Option<&Path>) -> Result<(), String> {
    let level = |v: u8| match v {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter_for = |v: u8| {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("warn,odbackup={}", level(v))))
    };
    // No colours: a colour is an escape sequence, and the writer escapes every one so that a remote name in a
    // log line cannot send the terminal its own.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(cli::LogWriter)
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter_for(verbose));
    let file_layer = match log_file {
        Some(path) => {
            let file = open_private_log(path)?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(cli::EscapedLog(file)))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter_for(verbose.max(1))),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .init();
    Ok(())
}

/// Open the log without following a link at its name, unless the link leads to something other than a file
/// (`/dev/stderr` is a link to the process's descriptor). A link planted at a log's name in a shared folder
/// would otherwise have lines naming the drive's items, which the drive's owner chooses, appended to a file of
/// the user's own (a shell's start-up file).
fn open_log_unlinked(
    options: &std::fs::OpenOptions,
    path: &Path,
) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        let mut no_follow = options.clone();
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut no_follow,
            rustix::fs::OFlags::NOFOLLOW.bits() as i32,
        );
        match no_follow.open(path) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                // Followed only into the system's own device links (`/dev/stderr` → `/proc/self/fd/2`, whatever
                // the descriptor is: a terminal, a pipe, cron's file) or to something that is no file (a FIFO, a
                // socket, a terminal). A link to a file, or to nothing yet (which opening would create), is not.
                use std::os::unix::fs::FileTypeExt as _;
                let system_link = path.starts_with("/dev/");
                let not_a_file = std::fs::metadata(path).is_ok_and(|m| {
                    let kind = m.file_type();
                    kind.is_char_device() || kind.is_fifo() || kind.is_socket()
                });
                if !(system_link || not_a_file) {
                    return Err(std::io::Error::other(
                        "it is a symbolic link to a file (or to nothing yet); odbackup never writes a log \
                         through a link (name the file itself)",
                    ));
                }
                options.open(path)
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    options.open(path)
}

/// The log names every remote path a run touches: it is created readable by its owner only, and one left open to
/// others (by an older odbackup, or created by hand) is tightened, through the open handle so the file checked is
/// the file changed. A file others can read that we may not change is refused rather than written to. Only regular
/// files are touched: `--log-file /dev/stderr` keeps its terminal's mode.
fn open_private_log(path: &Path) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = open_log_unlinked(&options, path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read log file {}: {e}", path.display()))?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    format!(
                        "log file {} is readable by others and cannot be made private ({e}); choose \
                         another --log-file",
                        path.display()
                    )
                })?;
        }
    }
    Ok(file)
}
