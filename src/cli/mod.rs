//! The command line: argument parsing, progress display and rendering of results. The only part of
//! odbackup that prints, and the only one that knows clap or indicatif.

// The doc comments on arguments are clap's `--help` text, read in a terminal, not rendered Markdown.
#![allow(clippy::doc_markdown)]

mod account;
mod commands;
mod progress;
mod render;
mod settings;

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

pub use commands::{load_config, run};
pub use progress::{EscapedLog, LogWriter};
pub use render::error as report_error;
pub use settings::{
    AccountArgs, AuthArgs, ConfigFile, ConfigValues, DestArgs, DriveArgs, FilterArgs, GraphArgs,
    KeepArgs, LayoutArgs, OutputArgs, ScopeArgs, TransferArgs,
};

/// Back up a Microsoft OneDrive (personal, business, SharePoint) to local disk: every file verified,
/// resumable after any interruption, every failure on record.
#[derive(Debug, Parser)]
#[command(name = "odbackup", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Progress display, log level and log file.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Config file [default: $ODBACKUP_CONFIG_DIR/config.toml or the user config dir's odbackup/config.toml].
    #[arg(long, global = true, env = "ODBACKUP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Use the named profile of the config file.
    #[arg(long, global = true, env = "ODBACKUP_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

const EXIT_CODES: &str = "Exit codes: 0 everything wanted is on disk, verified by hash except files kept with a caveat \
(counted in the summary, listed by `odbackup status`); 1 some items failed or a folder could not be listed \
(see `odbackup failures` and `odbackup status`); 2 usage or configuration error; 3 sign-in needed or refused; 4 another run \
holds the manifest; 5 the run could not go on (network, service, disk, manifest); 130 interrupted by Ctrl-C, 143 by \
SIGTERM, 129 by SIGHUP (128 + the signal: state is saved first, re-run the same command to resume).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in with your Microsoft account (device code by default: works over SSH and on headless boxes), or
    /// as an app for a whole organisation (--app).
    #[command(
        after_help = "Examples:\n  odbackup login --client-id 00000000-0000-0000-0000-000000000000\n  \
        odbackup login --browser --tenant consumers\n  odbackup login --account work --tenant organizations\n  \
        odbackup login --app --tenant contoso.onmicrosoft.com --client-id ID --certificate /etc/odbackup/app.pem\n  \
        odbackup login --app --tenant contoso.onmicrosoft.com --client-id ID --client-secret-file /etc/odbackup/secret"
    )]
    Login {
        /// Which app registration and tenant.
        #[command(flatten)]
        auth: AuthArgs,
        /// The name the sign-in is kept under.
        #[command(flatten)]
        account: AccountArgs,
        /// App-only sign-in (OAuth client credentials) for backing up every user and site of a tenant: give
        /// --tenant, --client-id and --certificate (recommended) or --client-secret-file (or ODBACKUP_CLIENT_SECRET).
        /// Nothing secret is stored: the file (mode 0600) is read again for each new token.
        #[arg(long, conflicts_with = "browser")]
        app: bool,
        /// With --app: a PEM file holding the app certificate's private key and the certificate itself.
        #[arg(
            long,
            env = "ODBACKUP_CERTIFICATE",
            value_name = "PEM",
            requires = "app"
        )]
        certificate: Option<PathBuf>,
        /// With --app: a file holding the client secret's value.
        #[arg(
            long,
            env = "ODBACKUP_CLIENT_SECRET_FILE",
            value_name = "FILE",
            requires = "app",
            conflicts_with = "certificate"
        )]
        client_secret_file: Option<PathBuf>,
        /// Sign in in a browser (authorization code with PKCE and a loopback redirect) instead of with a code.
        #[arg(long)]
        browser: bool,
        /// Where Graph is, to look up who signed in.
        #[command(flatten)]
        graph: GraphArgs,
        /// Also ask for Sites.Read.All, which SharePoint sites (--site) need (work accounts; added by itself
        /// when the config file names a site).
        #[arg(long)]
        sites: bool,
        /// Ask for write access too (Files.ReadWrite.All instead of Files.Read.All), as `restore` needs.
        #[arg(long)]
        write: bool,
    },
    /// Forget a stored sign-in.
    Logout {
        /// Which stored sign-in.
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Show who is signed in and which drive would be backed up, with its quota.
    #[command(
        after_help = "Examples:\n  odbackup whoami\n  odbackup whoami --site contoso.sharepoint.com:/sites/Team --json"
    )]
    Whoami {
        /// Which drive.
        #[command(flatten)]
        drive: DriveArgs,
        /// Which stored sign-in.
        #[command(flatten)]
        account: AccountArgs,
        /// Where Graph is.
        #[command(flatten)]
        graph: GraphArgs,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the drives you can back up: your own, another user's, or a SharePoint site's document libraries,
    /// with their IDs, names, types and quotas.
    #[command(
        after_help = "Examples:\n  odbackup drives\n  odbackup drives --site https://contoso.sharepoint.com/sites/Team\n  \
        odbackup drives --user adele@contoso.com --json\n  odbackup drives --all-users --all-sites --json > drives.json\n\n\
        Back one up with --drive-id ID, or with --site SITE --library NAME; a whole organisation with \
        `backup --all-users --all-sites` (or `--drives-from drives.json`)."
    )]
    Drives {
        /// A SharePoint site's libraries: its address, host:/sites/Team or host,guid,guid.
        #[arg(long, value_name = "SITE", conflicts_with = "user")]
        site: Option<String>,
        /// Every user's OneDrive (a user without one is listed as such), with the folder each goes to under a
        /// backup root. Needs User.Read.All and Files.Read.All (app-only sign-in: `odbackup login --app`).
        #[arg(long, conflicts_with_all = ["site", "user"])]
        all_users: bool,
        /// Every site's document libraries. Needs Sites.Read.All.
        #[arg(long, conflicts_with_all = ["site", "user"])]
        all_sites: bool,
        /// With --all-users or --all-sites: only the drives of shard K of N (as `backup --shard` takes them).
        #[arg(long, value_name = "K/N", env = "ODBACKUP_SHARD")]
        shard: Option<String>,
        /// Another user's drives, by sign-in name.
        #[arg(long, value_name = "UPN")]
        user: Option<String>,
        /// Which stored sign-in.
        #[command(flatten)]
        account: AccountArgs,
        /// Where Graph is.
        #[command(flatten)]
        graph: GraphArgs,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the drive (or a part of it) into the manifest, without downloading.
    #[command(after_help = "Examples:\n  odbackup crawl --dest ~/OneDriveBackup\n  \
        odbackup crawl --dest ~/Photos --special cameraroll\n  odbackup crawl --dest ~/Work --root /Documents/Projects")]
    Crawl {
        /// Where and which part of the drive.
        #[command(flatten)]
        remote: RemoteArgs,
        /// Which items are wanted (the others are recorded as excluded).
        #[command(flatten)]
        filters: FilterArgs,
        /// Where files go under DEST.
        #[command(flatten)]
        layout: LayoutArgs,
        /// Print the run summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Download every pending or previously failed file of the manifest.
    #[command(
        after_help = "Examples:\n  odbackup download --dest ~/OneDriveBackup\n  \
        odbackup download --dest ~/OneDriveBackup --concurrency 4\n  \
        odbackup download --dest ~/OneDriveBackup --media videos --dry-run"
    )]
    Download {
        /// Where the backup lives and how to reach Graph.
        #[command(flatten)]
        common: CommonArgs,
        /// Which files are wanted.
        #[command(flatten)]
        filters: FilterArgs,
        /// What happens to local files when the drive changes.
        #[command(flatten)]
        keep: KeepArgs,
        /// Transfers at once and the pieces of large files.
        #[command(flatten)]
        transfer: TransferArgs,
        /// Only say what would be downloaded (count and size; the list with -v); write no file.
        #[arg(long)]
        dry_run: bool,
        /// Print the run summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Crawl and download in one run (downloads start while the crawl is listing). Re-run the same
    /// command to retry failures and pick up what is new.
    #[command(
        after_help = "Examples:\n  odbackup backup --dest ~/OneDriveBackup\n  \
        odbackup backup --dest ~/CameraRoll --special cameraroll --concurrency 12\n  \
        odbackup backup --dest ~/Media --media all --layout date          # every photo and video, by month\n  \
        odbackup backup --dest ~/Phone --special cameraroll --ext heic,mp4 --since 2021-01-01\n  \
        odbackup backup --dest ~/OneDriveBackup --exclude '*.tmp' --exclude /Archive --dry-run -v\n  \
        odbackup backup --dest ~/Team --site https://contoso.sharepoint.com/sites/Team --library Archive\n  \
        odbackup backup --dest /backup/contoso --all-users --all-sites --drives-at-once 8\n  \
        odbackup backup --dest /backup/contoso --all-users --shard 0/4     # this machine's quarter\n  \
        odbackup backup --dest /backup/contoso --users adele@contoso.com,diego@contoso.com"
    )]
    Backup {
        /// Where and which part of the drive.
        #[command(flatten)]
        remote: RemoteArgs,
        /// A whole organisation: many drives, one folder and manifest each under DEST.
        #[command(flatten)]
        tenant: TenantArgs,
        /// Which files are wanted.
        #[command(flatten)]
        filters: FilterArgs,
        /// Where files go under DEST.
        #[command(flatten)]
        layout: LayoutArgs,
        /// What happens to local files when the drive changes.
        #[command(flatten)]
        keep: KeepArgs,
        /// Transfers at once and the pieces of large files.
        #[command(flatten)]
        transfer: TransferArgs,
        /// Only say what would be downloaded (count and size; the list with -v): the manifest is filled,
        /// no file is written.
        #[arg(long)]
        dry_run: bool,
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
    /// List a folder of the drive with sizes and dates: see what a backup would take before running it.
    #[command(
        after_help = "Examples:\n  odbackup ls\n  odbackup ls '/Pictures/Camera Roll'\n  \
        odbackup ls /Documents --site contoso.sharepoint.com:/sites/Team --json"
    )]
    Ls {
        /// The remote folder (or file), from the drive root.
        #[arg(default_value = "/")]
        path: String,
        /// Which drive and how to reach it.
        #[command(flatten)]
        service: ServiceArgs,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the drive's folders as a tree with their sizes, to a given depth.
    #[command(
        after_help = "Examples:\n  odbackup tree --depth 1\n  odbackup tree /Pictures --depth 3\n  \
        odbackup tree /Pictures --depth 2 --files"
    )]
    Tree {
        /// The remote folder, from the drive root.
        #[arg(default_value = "/")]
        path: String,
        /// How many levels below PATH to show.
        #[arg(long, default_value_t = 2)]
        depth: usize,
        /// Show files too, not only folders.
        #[arg(long)]
        files: bool,
        /// Which drive and how to reach it.
        #[command(flatten)]
        service: ServiceArgs,
        /// One JSON document on stdout (a flat list of entries with their depth).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `odbackup completions bash > ~/.local/share/bash-completion/completions/odbackup`.
    #[command(
        after_help = "Examples:\n  odbackup completions bash > ~/.local/share/bash-completion/completions/odbackup\n  \
        odbackup completions zsh > ~/.zfunc/_odbackup\n  odbackup completions fish > ~/.config/fish/completions/odbackup.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Put a backup back on a OneDrive — the same account, another account, or another folder — under the
    /// files' original names and folders, each verified by size and hash. Needs a sign-in that may write
    /// (`odbackup login --write`). Re-run the same command to resume and to retry failures.
    #[command(
        after_help = "Examples:\n  odbackup restore --from ~/OneDriveBackup --dry-run -v\n  \
        odbackup restore --from ~/OneDriveBackup --account family --to /From-Old-Account\n  \
        odbackup restore --from ~/OneDriveBackup --include '/Pictures/**' --on-conflict rename\n  \
        odbackup restore --from-folder ~/Pictures/Holiday --to /Pictures/Holiday --rename-invalid"
    )]
    Restore {
        /// A backup's destination folder: its manifest knows every file's name and folder on the drive.
        #[arg(long, value_name = "DEST", conflicts_with = "from_folder")]
        from: Option<PathBuf>,
        /// A plain folder to upload instead (no manifest): files go up under their local names.
        #[arg(long, value_name = "DIR")]
        from_folder: Option<PathBuf>,
        /// Where the restore's state is kept [default: DEST/.odbackup/manifest.sqlite, or
        /// DIR/.odbackup/manifest.sqlite for --from-folder].
        #[arg(long, env = "ODBACKUP_MANIFEST", value_name = "PATH")]
        manifest: Option<PathBuf>,
        /// The folder of the target drive that the backup's paths go under (created if missing).
        #[arg(long, value_name = "/REMOTE/FOLDER", default_value = "/")]
        to: String,
        /// Which drive to restore to.
        #[command(flatten)]
        drive: DriveArgs,
        /// Where Graph is.
        #[command(flatten)]
        graph: GraphArgs,
        /// Which stored sign-in to restore with (the target account).
        #[command(flatten)]
        account: AccountArgs,
        /// Which files go back (judged on the paths they had on the drive).
        #[command(flatten)]
        filters: FilterArgs,
        /// When the target has a different item of the same name: skip it (keep theirs), replace it, or
        /// rename (keep both). The same size and hash count as already there, whatever this says.
        #[arg(long, value_name = "skip|replace|rename", default_value = "skip")]
        on_conflict: odbackup::restore::OnConflict,
        /// Upload names OneDrive refuses (\" * : < > ? / \\ |, leading or trailing spaces, a trailing dot,
        /// reserved names) under legal look-alikes instead of refusing them; each is reported.
        #[arg(long)]
        rename_invalid: bool,
        /// Transfers at once and the size of upload fragments.
        #[command(flatten)]
        transfer: TransferArgs,
        /// Only say what would be uploaded (count and size; the list with -v); nothing is written.
        #[arg(long)]
        dry_run: bool,
        /// Print the summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Read the backup's files back from disk and check each against the manifest (its length, and the
    /// quickXorHash or SHA-1 it was verified by when written): report what is missing, changed (an edit, bit
    /// rot) or unreadable; exit 1 if anything is. Reads only, unless --repair.
    #[command(
        after_help = "Examples:\n  odbackup verify --dest ~/OneDriveBackup\n  \
        odbackup verify --dest ~/OneDriveBackup --sample 5          # about 5% of the files, at random\n  \
        odbackup verify --dest ~/OneDriveBackup --repair && odbackup backup --dest ~/OneDriveBackup"
    )]
    Verify {
        /// Where the backup lives.
        #[command(flatten)]
        dest: DestArgs,
        /// Check about PERCENT of the files (0-100, decimals allowed), each picked at random; a new sample each
        /// time.
        #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
        sample: Option<f64>,
        /// Mark every file found missing, changed or unreadable as pending, so the next backup fetches it again;
        /// a changed or unreadable file is moved into DEST/.odbackup/trash/<date>/ first (never overwritten).
        #[arg(long)]
        repair: bool,
        /// Files read at once [default: 4].
        // Not the `concurrency` of the settings schema: that one counts transfers to and from the service,
        // and a config file that raises it must not change how hard verify reads the local disk.
        #[arg(long, value_name = "N")]
        concurrency: Option<usize>,
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

/// A percentage for `verify --sample`: a number from 0 to 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
    }
}

/// Which drives of an organisation to back up, each into its own folder under DEST (`users/<upn>/`,
/// `sites/<site>/<library>/`) with its own manifest, and how to split them between machines.
#[derive(Debug, Clone, ClapArgs)]
#[command(next_help_heading = "Organisation (app-only sign-in: `odbackup login --app`)")]
pub struct TenantArgs {
    /// Every user's OneDrive, into DEST/users/<upn>/ (users without one are listed, not errors).
    #[arg(long)]
    pub all_users: bool,
    /// Every site's document libraries, into DEST/sites/<site>/<library>/.
    #[arg(long)]
    pub all_sites: bool,
    /// These users' OneDrives, comma-separated sign-in names (or object IDs).
    #[arg(long, value_name = "UPN,…", value_delimiter = ',')]
    pub users: Vec<String>,
    /// These sites' libraries (repeat for several): an address, host:/sites/Team or an ID.
    #[arg(long = "sites", value_name = "SITE")]
    pub sites: Vec<String>,
    /// The drives listed in FILE (what `odbackup drives --all-users --all-sites --json` prints), with no
    /// discovery: discover once, split the list between machines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["all_users", "all_sites", "users", "sites"])]
    pub drives_from: Option<PathBuf>,
    /// Drives backed up at once in this process, all behind one throttle gate [default: 4]. Each runs
    /// --concurrency transfers.
    #[arg(long, value_name = "M", env = "ODBACKUP_DRIVES_AT_ONCE")]
    pub drives_at_once: Option<usize>,
    /// Only the drives whose stable hash falls in shard K of N (K from 0): N machines split a tenant with no
    /// coordination (e.g. --shard $JOB_COMPLETION_INDEX/N).
    #[arg(long, value_name = "K/N", env = "ODBACKUP_SHARD")]
    pub shard: Option<String>,
}

impl TenantArgs {
    /// Whether the command names an organisation's drives rather than one drive.
    pub fn is_tenant(&self) -> bool {
        self.all_users
            || self.all_sites
            || !self.users.is_empty()
            || !self.sites.is_empty()
            || self.drives_from.is_some()
    }
}

/// How to reach the drive, for commands that only read the remote side.
#[derive(Debug, Clone, ClapArgs)]
pub struct ServiceArgs {
    /// Which drive.
    #[command(flatten)]
    pub drive: DriveArgs,
    /// Where Graph is.
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Which stored sign-in.
    #[command(flatten)]
    pub account: AccountArgs,
}

/// Destination plus how to reach the service.
#[derive(Debug, Clone, ClapArgs)]
pub struct CommonArgs {
    /// Where the backup lives.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Where Graph is.
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Which stored sign-in.
    #[command(flatten)]
    pub account: AccountArgs,
}

/// Destination, service, drive and scope.
#[derive(Debug, Clone, ClapArgs)]
pub struct RemoteArgs {
    /// Where the backup lives and how to reach Graph.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Which drive.
    #[command(flatten)]
    pub drive: DriveArgs,
    /// Which part of the drive, and how it is listed.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// List the whole scope again instead of asking the service only for what changed since the last run.
    #[arg(long)]
    pub full: bool,
}
