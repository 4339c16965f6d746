//! The command line: argument parsing, progress display and rendering of results. The only part of
//! odbackup that prints, and the only one that knows clap or indicatif.

mod commands;
mod progress;
mod render;

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

pub use commands::{Outcome, run};

/// Back up a Microsoft `OneDrive` (personal, business, `SharePoint`) to local disk: every file verified,
/// resumable after any interruption, every failure on record.
#[derive(Debug, Parser)]
#[command(name = "odbackup", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress display; only the final summary and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Config file [default: $`ODBACKUP_CONFIG_DIR/config.toml` or the user config dir's odbackup/config.toml].
    #[arg(long, global = true, env = "ODBACKUP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Use the named profile of the config file.
    #[arg(long, global = true, env = "ODBACKUP_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

const EXIT_CODES: &str = "Exit codes: 0 everything wanted is on disk and verified; 1 some items failed \
(see `odbackup failures`); 2 usage or configuration error; 3 sign-in needed or refused; 4 another run \
holds the manifest; 5 the run could not go on (network, service, disk, manifest); 130 interrupted.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the drive (or a part of it) into the manifest, without downloading.
    #[command(after_help = "Examples:\n  odbackup crawl --dest ~/OneDriveBackup\n  \
        odbackup crawl --dest ~/Photos --special cameraroll\n  odbackup crawl --dest ~/Work --root /Documents/Projects")]
    Crawl {
        /// Where and which part of the drive.
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the run summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Download every pending or previously failed file of the manifest.
    #[command(
        after_help = "Examples:\n  odbackup download --dest ~/OneDriveBackup\n  \
        odbackup download --dest ~/OneDriveBackup --concurrency 4"
    )]
    Download {
        /// Where the backup lives and how to reach Graph.
        #[command(flatten)]
        common: CommonArgs,
        /// Transfers at once.
        #[arg(long, env = "ODBACKUP_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Print the run summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Crawl and download in one run (downloads start while the crawl is listing). Re-run the same
    /// command to retry failures and pick up what is new.
    #[command(
        after_help = "Examples:\n  odbackup backup --dest ~/OneDriveBackup\n  \
        odbackup backup --dest ~/CameraRoll --special cameraroll --concurrency 12"
    )]
    Backup {
        /// Where and which part of the drive.
        #[command(flatten)]
        remote: RemoteArgs,
        /// Transfers at once.
        #[arg(long, env = "ODBACKUP_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Print the run summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Counts of folders, files and bytes by state, and the last run.
    #[command(
        after_help = "Examples:\n  odbackup status --dest ~/OneDriveBackup\n  odbackup status --dest ~/OneDriveBackup --json"
    )]
    Status {
        /// Where the backup lives.
        #[command(flatten)]
        dest: DestArgs,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Every file that failed, with its error class, status code and message.
    #[command(
        after_help = "Examples:\n  odbackup failures --dest ~/OneDriveBackup\n  odbackup failures --dest ~/OneDriveBackup --json"
    )]
    Failures {
        /// Where the backup lives.
        #[command(flatten)]
        dest: DestArgs,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// The destination and its manifest.
#[derive(Debug, Clone, ClapArgs)]
pub struct DestArgs {
    /// The backup's root folder; files land at DEST/<remote path>.
    #[arg(long, env = "ODBACKUP_DEST", value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// The manifest file [default: DEST/.odbackup/manifest.sqlite].
    #[arg(long, env = "ODBACKUP_MANIFEST", value_name = "PATH")]
    pub manifest: Option<PathBuf>,
}

/// Destination plus how to reach the service.
#[derive(Debug, Clone, ClapArgs)]
pub struct CommonArgs {
    /// Where the backup lives.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Microsoft Graph base URL (national clouds, or a local simulator for tests)
    /// [default: <https://graph.microsoft.com/v1.0>].
    #[arg(long, env = "ODBACKUP_GRAPH_URL", value_name = "URL")]
    pub graph_url: Option<String>,
}

/// Destination, service, drive and scope.
#[derive(Debug, Clone, ClapArgs)]
pub struct RemoteArgs {
    /// Where the backup lives and how to reach Graph.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Back up this drive instead of the signed-in user's own.
    #[arg(long, value_name = "ID")]
    pub drive_id: Option<String>,
    /// Start at this folder (a path from the drive root, e.g. /Pictures/2021).
    #[arg(
        long,
        env = "ODBACKUP_ROOT",
        value_name = "PATH",
        conflicts_with = "special"
    )]
    pub root: Option<String>,
    /// Start at a special folder: photos, cameraroll, documents or music.
    #[arg(long, value_name = "NAME", value_parser = ["photos", "cameraroll", "documents", "music"])]
    pub special: Option<String>,
    /// Folders listed at once.
    #[arg(long, env = "ODBACKUP_LIST_CONCURRENCY")]
    pub list_concurrency: Option<usize>,
}
