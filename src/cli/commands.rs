//! One function per subcommand: arguments → settings → `odbackup::app` → rendered output.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio_util::sync::CancellationToken;

use super::{
    AccountArgs, Args, Command, CommonArgs, ConfigFile, ConfigValues, DestArgs, FilterArgs,
    GraphArgs, KeepArgs, LayoutArgs, RemoteArgs, ServiceArgs, TenantArgs, TransferArgs, account,
    progress, render,
};
use odbackup::browse::{self, BrowseSettings};
use odbackup::filter::{Filter, FilterSpec};
use odbackup::graph::{GraphClient, SiteRef};
use odbackup::localpath::Layout;
use odbackup::tenant::{
    self, DEFAULT_DRIVES_AT_ONCE, Discovery, DriveSource, MAX_DRIVES_AT_ONCE, Selection, Shard,
    TenantSettings, Verdict,
};
use std::path::{Path, PathBuf};

use odbackup::app::{self, Credentials, Phases, RunSettings, RunSummary};
use odbackup::config;
use odbackup::config::CrawlMethod;
use odbackup::download::{
    DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_CEILING, DEFAULT_STREAMS_PER_FILE,
    DownloadPolicy, KeepPolicy,
};
use odbackup::graph::{DriveSelector, GraphOptions};
use odbackup::progress::Reporter;
use odbackup::sync::Scope;
use odbackup::sync::{DEFAULT_FULL_LISTING_DAYS, DEFAULT_LIST_CONCURRENCY};
use odbackup::{Error, ErrorKind};

/// How a command ended, for `main` to turn into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything wanted is on disk and verified (or the read-only command succeeded).
    Success,
    /// Some items failed; they are on record.
    SomeFailed,
    /// A signal stopped the run gracefully (its number: 2 for Ctrl-C, 15 SIGTERM, 1 SIGHUP); state was saved.
    Interrupted(i32),
    /// A run-level error of this kind stopped it (already printed).
    Failed(ErrorKind),
}

impl Outcome {
    /// The process exit code: 0 success, 1 some items failed, 2 usage, 3 sign-in, 4 locked, 5 the run could
    /// not go on, 128 + the signal for an interrupted run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; its state was
    /// saved, so the same command resumes it).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::SomeFailed => 1,
            Outcome::Failed(ErrorKind::Usage) => 2,
            Outcome::Failed(ErrorKind::Auth) => 3,
            Outcome::Failed(ErrorKind::Locked) => 4,
            Outcome::Failed(ErrorKind::Run) => 5,
            Outcome::Interrupted(signal) => u8::try_from(128 + signal).unwrap_or(130),
        }
    }
}

/// Run the parsed command line with the config file's values in force (see [`load_config`]).
#[allow(clippy::too_many_lines)] // One arm per subcommand: the dispatch reads best as one match.
pub fn run(args: Args, file: ConfigValues) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            render::error_line(&format!("could not start the async runtime: {err}"));
            return Outcome::Failed(ErrorKind::Run);
        }
    };
    let output = args.output.or_file(&file);
    let quiet = output.quiet == Some(true);
    let verbose = output.verbose;
    let result = runtime.block_on(async move {
        match args.command {
            Command::Login {
                auth,
                account,
                app,
                certificate,
                client_secret_file,
                browser,
                graph,
                sites,
                write,
            } => {
                let credentials = credentials(&account, &file);
                if app {
                    account::login_app(
                        &auth,
                        certificate.as_deref(),
                        client_secret_file.as_deref(),
                        graph_options(&graph, &file)?,
                        &file,
                        &credentials,
                    )
                    .await?;
                    return Ok(Outcome::Success);
                }
                account::login(
                    &auth,
                    browser,
                    sites,
                    write,
                    graph_options(&graph, &file)?,
                    &file,
                    &credentials,
                )
                .await?;
                Ok(Outcome::Success)
            }
            Command::Drives {
                site,
                all_users,
                all_sites,
                shard,
                user,
                account,
                graph,
                json,
            } => {
                if all_users || all_sites {
                    let selection = Selection {
                        all_users,
                        all_sites,
                        ..Selection::default()
                    };
                    let shard = shard.as_deref().map(Shard::parse).transpose().map_err(Error::Usage)?;
                    let found = tenant_drives(
                        graph_options(&graph, &file)?,
                        &credentials(&account, &file),
                        &selection,
                    )
                    .await?
                    .in_shard(shard);
                    render::tenant_drives(&found, shard, json);
                    return Ok(Outcome::Success);
                }
                if shard.is_some() {
                    return Err(Error::Usage(
                        "--shard splits --all-users or --all-sites: give one of them".to_owned(),
                    ));
                }
                let of = account::drives_of(site.as_deref(), user.as_deref())?;
                let drives = app::list_drives(
                    graph_options(&graph, &file)?,
                    &credentials(&account, &file),
                    &of,
                )
                .await?;
                render::drives(&drives, json);
                Ok(Outcome::Success)
            }
            Command::Logout { account } => {
                account::logout(&credentials(&account, &file))?;
                Ok(Outcome::Success)
            }
            Command::Whoami {
                drive,
                account,
                graph,
                json,
            } => {
                let selector = account::drive_selector(&drive, &file)?;
                let credentials = credentials(&account, &file);
                account::whoami(
                    graph_options(&graph, &file)?,
                    &credentials,
                    &selector,
                    json,
                )
                .await?;
                Ok(Outcome::Success)
            }
            Command::Crawl {
                remote,
                filters,
                layout,
                json,
            } => {
                let job =
                    job_of(&filters, &layout, &file, false).and_then(|j| j.onenote(&remote, &file))
                    .and_then(|j| j.shared(&remote, &file));
                run_job(
                    job.and_then(|job| remote_settings(&remote, &file, Phases::Crawl, &TransferArgs::default(), job)),
                    json,
                    quiet,
                    verbose,
                )
                .await
            }
            Command::Backup {
                remote,
                tenant,
                filters,
                layout,
                keep,
                transfer,
                dry_run,
                json,
            } => {
                let job = job_of(&filters, &layout, &file, dry_run)
                    .and_then(|j| j.keeping(&keep, &transfer, &file))
                    .and_then(|j| j.onenote(&remote, &file))
                    .and_then(|j| j.shared(&remote, &file));
                if tenant.is_tenant() {
                    let settings = job.and_then(|job| {
                        tenant_settings(&remote, &tenant, &file, &transfer, job)
                    })?;
                    return run_tenant_job(&settings, json, quiet).await;
                }
                if tenant.shard.is_some() || tenant.drives_at_once.is_some() {
                    return Err(Error::Usage(
                        "--shard and --drives-at-once are for an organisation's drives: add --all-users, \
                         --all-sites, --users, --sites or --drives-from"
                            .to_owned(),
                    ));
                }
                run_job(
                    job.and_then(|job| {
                        remote_settings(&remote, &file, Phases::Backup, &transfer, job)
                    }),
                    json,
                    quiet,
                    verbose,
                )
                .await
            }
            Command::Download {
                common,
                filters,
                keep,
                transfer,
                dry_run,
                json,
            } => {
                // The layout is the one the crawl chose, remembered in the manifest.
                let job = job_of(&filters, &LayoutArgs { layout: None }, &file, dry_run)
                    .and_then(|j| j.keeping(&keep, &transfer, &file));
                let settings = job.and_then(|job| {
                    settings(
                        &common,
                        &file,
                        Phases::Download,
                        &transfer,
                        DriveSelector::Me,
                        Scope::Root,
                        None,
                        job,
                    )
                });
                run_job(settings, json, quiet, verbose).await
            }
            Command::Ls {
                path,
                service,
                json,
            } => {
                let settings = browse_settings(&service, &file)?;
                let mut entries = Vec::new();
                browse::walk(&settings, &path, 1, true, |e| entries.push(e.clone())).await?;
                render::listing(&entries, json);
                Ok(Outcome::Success)
            }
            Command::Tree {
                path,
                depth,
                files,
                service,
                json,
            } => {
                let settings = browse_settings(&service, &file)?;
                let top = browse::stat(&settings, &path).await?;
                let mut tree = render::Tree::new(&top, json);
                browse::walk(&settings, &path, depth.max(1), files, |e| tree.entry(e)).await?;
                tree.finish();
                Ok(Outcome::Success)
            }
            Command::Completions { shell } => {
                use clap::CommandFactory as _;
                clap_complete::generate(
                    shell,
                    &mut Args::command(),
                    "odbackup",
                    &mut std::io::stdout(),
                );
                Ok(Outcome::Success)
            }
            Command::Status { dest, json } => {
                let report = app::status(&manifest_path(&dest, &file)?)?;
                render::status(&report, json);
                Ok(Outcome::Success)
            }
            Command::Restore {
                from,
                from_folder,
                manifest,
                to,
                drive,
                graph,
                account,
                filters,
                on_conflict,
                rename_invalid,
                transfer,
                dry_run,
                json,
            } => {
                let request = RestoreRequest {
                    from,
                    from_folder,
                    manifest,
                    to,
                    on_conflict,
                    rename_invalid,
                    transfer,
                    dry_run,
                };
                let settings =
                    restore_settings(request, &drive, &graph, &account, &filters, &file)?;
                run_restore(settings, json, quiet, verbose).await
            }
            Command::Verify {
                dest,
                sample,
                repair,
                concurrency,
                json,
            } => {
                let options = odbackup::verify::VerifyOptions {
                    sample_percent: sample,
                    repair,
                    concurrency: bounded(
                        "concurrency",
                        concurrency,
                        odbackup::verify::DEFAULT_VERIFY_CONCURRENCY,
                    )?,
                };
                run_verify(
                    &dest_of(&dest, &file)?,
                    &manifest_path(&dest, &file)?,
                    &options,
                    json,
                    quiet,
                )
                .await
            }
            Command::Failures { dest, json } => {
                let rows = app::failures(&manifest_path(&dest, &file)?)?;
                render::failures(&rows, json);
                Ok(Outcome::Success)
            }
        }
    });
    // Don't wait for stray blocking tasks (a hashing job of an interrupted transfer) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(outcome) => outcome,
        Err(err) => {
            render::error(&err);
            Outcome::Failed(err.kind())
        }
    }
}

/// The config file's values in force (a missing default file is an empty config; a named one must exist).
pub fn load_config(path: Option<&Path>, profile: Option<&str>) -> Result<ConfigValues, Error> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match config::default_config_path() {
            Some(p) => (p, false),
            None => return Ok(ConfigValues::default()),
        },
    };
    let file: ConfigFile =
        config::load(&path, required).map_err(|e| Error::Usage(e.to_string()))?;
    config::effective(&file, profile, &path).map_err(|e| Error::Usage(e.to_string()))
}

async fn run_job(
    settings: Result<RunSettings, Error>,
    json: bool,
    quiet: bool,
    verbose: u8,
) -> Result<Outcome, Error> {
    let settings = settings?;
    let cancel = CancellationToken::new();
    let stopped_by = spawn_interrupt_handler(cancel.clone());
    let display = progress::Display::for_output(quiet, json);
    // A dry run lists what it would fetch with -v (on stdout, unless stdout carries the JSON document).
    let list_planned = settings.dry_run && verbose > 0 && !json;
    let reporter: Arc<dyn Reporter> = display.reporter(list_planned);
    // Boxed: the run's future is large, and each command awaits it from its own future.
    let summary = Box::pin(app::run(&settings, reporter, &cancel)).await;
    display.finish();
    let summary = summary?;
    render::summary(&summary, json);
    Ok(outcome_of(&summary, stopped_by.load(Ordering::SeqCst)))
}

/// `backup` of an organisation's drives: one roll-up, and the worst drive's exit code.
async fn run_tenant_job(
    settings: &TenantSettings,
    json: bool,
    quiet: bool,
) -> Result<Outcome, Error> {
    let cancel = CancellationToken::new();
    let stopped_by = spawn_interrupt_handler(cancel.clone());
    let display = progress::Display::for_output(quiet, json);
    let reporter: Arc<dyn Reporter> = display.reporter(false);
    let summary = Box::pin(tenant::backup(settings, reporter, &cancel)).await;
    display.finish();
    let summary = summary?;
    let signal = match stopped_by.load(Ordering::SeqCst) {
        0 => SIGINT,
        s => s,
    };
    render::tenant_summary(&summary, json, |v| verdict_outcome(v, signal).code());
    Ok(verdict_outcome(summary.verdict(), signal))
}

/// The outcome a drive's (or the roll-up's) verdict stands for.
fn verdict_outcome(verdict: Verdict, signal: i32) -> Outcome {
    match verdict {
        Verdict::Ok => Outcome::Success,
        Verdict::SomeFailed => Outcome::SomeFailed,
        Verdict::Locked => Outcome::Failed(ErrorKind::Locked),
        Verdict::Usage => Outcome::Failed(ErrorKind::Usage),
        Verdict::Run => Outcome::Failed(ErrorKind::Run),
        Verdict::Auth => Outcome::Failed(ErrorKind::Auth),
        Verdict::Interrupted => Outcome::Interrupted(signal),
    }
}

/// The drives of the tenant that `selection` names, for `odbackup drives --all-users`.
async fn tenant_drives(
    graph: GraphOptions,
    credentials: &Credentials,
    selection: &Selection,
) -> Result<Discovery, Error> {
    let client = GraphClient::new(graph, app::token_source(credentials)?)?;
    tenant::discover(&client, selection).await
}

/// A tenant backup's settings: each drive's run as `backup` would make it for DEST, and which drives.
fn tenant_settings(
    remote: &RemoteArgs,
    tenant: &TenantArgs,
    file: &ConfigValues,
    transfer: &TransferArgs,
    job: Job,
) -> Result<TenantSettings, Error> {
    let names_one = remote.drive.drive_id.is_some()
        || remote.drive.user.is_some()
        || remote.drive.site.is_some()
        || remote.drive.library.is_some();
    if names_one {
        return Err(Error::Usage(
            "--drive-id, --user, --site and --library name one drive; an organisation's drives are named by \
             --all-users, --all-sites, --users, --sites or --drives-from"
                .to_owned(),
        ));
    }
    if remote.common.dest.manifest.is_some() {
        return Err(Error::Usage(
            "--manifest names one drive's manifest; an organisation's drives each keep theirs in \
             DEST/<folder>/.odbackup/"
                .to_owned(),
        ));
    }
    // A drive the config file names is for one-drive runs: each drive here is named by its ID.
    let mut run = remote_settings(remote, file, Phases::Backup, transfer, job)?;
    run.drive = DriveSelector::Me;
    let source = match &tenant.drives_from {
        Some(path) => DriveSource::File(path.clone()),
        None => DriveSource::Discover(Selection {
            all_users: tenant.all_users,
            all_sites: tenant.all_sites,
            users: tenant
                .users
                .iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            sites: tenant
                .sites
                .iter()
                .map(|s| SiteRef::parse(s))
                .collect::<Result<_, _>>()
                .map_err(Error::Usage)?,
        }),
    };
    let drives_at_once = match tenant.drives_at_once {
        None => DEFAULT_DRIVES_AT_ONCE,
        Some(n @ 1..=MAX_DRIVES_AT_ONCE) => n,
        Some(n) => {
            return Err(Error::Usage(format!(
                "--drives-at-once must be between 1 and {MAX_DRIVES_AT_ONCE}, not {n}"
            )));
        }
    };
    Ok(TenantSettings {
        root: run.dest.clone(),
        graph: run.graph.clone(),
        credentials: run.credentials.clone(),
        source,
        shard: tenant
            .shard
            .as_deref()
            .map(Shard::parse)
            .transpose()
            .map_err(Error::Usage)?,
        drives_at_once,
        run,
    })
}

fn outcome_of(summary: &RunSummary, signal: i32) -> Outcome {
    if let Some(fatal) = summary.download.as_ref().and_then(|d| d.fatal.as_ref()) {
        return Outcome::Failed(fatal.kind());
    }
    if summary.interrupted {
        Outcome::Interrupted(if signal > 0 { signal } else { SIGINT })
    } else if summary.all_done() {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    }
}

/// Ctrl-C's signal number: the exit code of an interrupted run is 128 plus the signal's number.
const SIGINT: i32 = 2;

/// The first stop signal (Ctrl-C, `SIGTERM` from `systemctl stop`, `timeout` or `docker stop`, `SIGHUP` when the
/// terminal goes away) stops scheduling; in-flight transfers stop at a chunk boundary and part files stay for the
/// resume; the run's outcome is recorded and the listing's download URLs are cleared. A second signal leaves at
/// once (every manifest write is a transaction, so it stays consistent). Returns where the first signal's number
/// is kept, for the exit code (0 until one came).
///
/// The handlers are registered before this returns, so a signal from the moment the run starts is caught.
fn spawn_interrupt_handler(cancel: CancellationToken) -> Arc<AtomicI32> {
    let stopped_by = Arc::new(AtomicI32::new(0));
    let mut signals = match StopSignals::register() {
        Ok(signals) => signals,
        Err(err) => {
            render::note(&format!(
                "cannot catch stop signals ({err}): an interrupted run is resumed by the next one"
            ));
            return stopped_by;
        }
    };
    let kept = Arc::clone(&stopped_by);
    tokio::spawn(async move {
        let Some(signal) = signals.next().await else {
            return;
        };
        kept.store(signal, Ordering::SeqCst);
        render::note(&format!(
            "{}: finishing in-flight work and saving state (send it again to quit at once)",
            signal_name(signal)
        ));
        cancel.cancel();
        if let Some(again) = signals.next().await {
            render::note(&format!(
                "{} again: quitting now; re-run the same command to resume",
                signal_name(again)
            ));
            std::process::exit(128 + signal);
        }
    });
    stopped_by
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "hang-up (SIGHUP)",
        15 => "asked to stop (SIGTERM)",
        _ => "interrupted",
    }
}

/// The signals that stop a run.
#[cfg(unix)]
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopSignals {
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal's number.
    async fn next(&mut self) -> Option<i32> {
        tokio::select! {
            s = self.interrupt.recv() => s.map(|()| SIGINT),
            s = self.terminate.recv() => s.map(|()| 15),
            s = self.hangup.recv() => s.map(|()| 1),
        }
    }
}

/// The signals that stop a run: Ctrl-C only off Unix.
#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn register() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> Option<i32> {
        tokio::signal::ctrl_c().await.ok().map(|()| SIGINT)
    }
}

fn dest_of(dest: &DestArgs, file: &ConfigValues) -> Result<PathBuf, Error> {
    dest.or_file(file).dest.ok_or_else(|| {
        Error::Usage(
            "no destination: pass --dest DIR (or set ODBACKUP_DEST, or `dest` in the config file)"
                .to_owned(),
        )
    })
}

fn manifest_path(dest: &DestArgs, file: &ConfigValues) -> Result<PathBuf, Error> {
    match dest.or_file(file).manifest {
        Some(path) => Ok(path),
        None => Ok(app::default_manifest_path(&dest_of(dest, file)?)),
    }
}

/// What a job wants, resolved: its filters, layout and whether it only pretends.
struct Job {
    filter: Arc<Filter>,
    layout: Option<Layout>,
    dry_run: bool,
    keep: KeepPolicy,
    policy: DownloadPolicy,
}

impl Job {
    /// `--no-shared` (or `shared = false` in the config file, unless `--shared`): shared folders and files
    /// added to My files are left out, on record.
    fn shared(mut self, remote: &RemoteArgs, file: &ConfigValues) -> Result<Job, Error> {
        if remote.scope.or_file(file).shared == Some(false) {
            let spec = FilterSpec {
                skip_shared: true,
                ..self.filter.spec().clone()
            };
            self.filter = Arc::new(Filter::new(spec).map_err(|e| filter_usage(&e))?);
        }
        Ok(self)
    }

    /// `--no-onenote` (or `onenote = false` in the config file, unless `--onenote`): notebooks are left
    /// out, on record.
    fn onenote(mut self, remote: &RemoteArgs, file: &ConfigValues) -> Result<Job, Error> {
        if remote.scope.or_file(file).onenote == Some(false) {
            let spec = FilterSpec {
                skip_onenote: true,
                ..self.filter.spec().clone()
            };
            self.filter = Arc::new(Filter::new(spec).map_err(|e| filter_usage(&e))?);
        }
        Ok(self)
    }

    /// What happens to local files when the drive changes, and how large files are fetched: a flag (or its
    /// environment variable), else the config file.
    fn keeping(
        self,
        keep: &KeepArgs,
        transfer: &TransferArgs,
        file: &ConfigValues,
    ) -> Result<Job, Error> {
        let keep = keep.or_file(file);
        let chunk_size = transfer
            .or_file(file)
            .chunk_size
            .map_or(DEFAULT_CHUNK_SIZE, |b| b.0);
        if chunk_size < MIN_CHUNK_SIZE {
            return Err(Error::Usage(format!(
                "chunk_size must be at least 256K (bytes, or a size such as 32M), not {chunk_size}"
            )));
        }
        let streams_per_file = match keep.streams_per_file {
            None => DEFAULT_STREAMS_PER_FILE,
            Some(n @ 1..=16) => n,
            Some(n) => {
                return Err(Error::Usage(format!(
                    "streams_per_file must be between 1 and 16, not {n}"
                )));
            }
        };
        Ok(Job {
            keep: KeepPolicy {
                mirror_deletes: keep.mirror_deletes == Some(true),
                keep_versions: keep.keep_versions == Some(true),
            },
            policy: DownloadPolicy {
                stall_timeout: keep
                    .stall_timeout
                    .map(|s| std::time::Duration::from_secs(s.max(1))),
                allow_malware: keep.allow_malware == Some(true),
                chunk_size,
                streams_per_file,
                dedupe: keep.dedupe.unwrap_or_default(),
                // Set with the concurrency, which the job does not know.
                grow_to: None,
            },
            ..self
        })
    }
}

/// A filter the library refused, said with the flags' spelling next to the config keys it names (the library
/// names only the keys: it knows nothing of the command line).
fn filter_usage(err: &odbackup::filter::FilterError) -> Error {
    let keys = err.what.keys();
    let flags: Vec<String> = keys
        .iter()
        .map(|key| format!("--{}", key.replace('_', "-")))
        .collect();
    Error::Usage(format!(
        "{} (config: {}) {:?}: {}",
        flags.join("/"),
        keys.join("/"),
        err.value,
        err.why
    ))
}

/// The smallest `--chunk-size`: below it, request overhead outweighs the gain of parallel streams.
const MIN_CHUNK_SIZE: u64 = 256 * 1024;

/// Filters and layout from flags (and their environment variables), else the config file.
fn job_of(
    filters: &FilterArgs,
    layout: &LayoutArgs,
    file: &ConfigValues,
    dry_run: bool,
) -> Result<Job, Error> {
    let filters = filters.or_file(file);
    let spec = FilterSpec {
        include: filters.include,
        exclude: filters.exclude,
        extensions: filters.ext,
        media: filters.media,
        since: filters.since,
        until: filters.until,
        min_size: filters.min_size,
        max_size: filters.max_size,
        skip_onenote: false,
        skip_shared: false,
    };
    let filter = Filter::new(spec).map_err(|e| filter_usage(&e))?;
    Ok(Job {
        filter: Arc::new(filter),
        layout: layout.or_file(file).layout,
        dry_run,
        keep: KeepPolicy::default(),
        policy: DownloadPolicy::default(),
    })
}

fn remote_settings(
    remote: &RemoteArgs,
    file: &ConfigValues,
    phases: Phases,
    transfer: &TransferArgs,
    job: Job,
) -> Result<RunSettings, Error> {
    let listing = remote.scope.or_file(file);
    let scope = match (listing.root, listing.special) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "give either a root path or a special folder, not both".to_owned(),
            ));
        }
        (Some(path), None) => Scope::Path(path),
        (None, Some(name)) => Scope::Special(name),
        (None, None) => Scope::Root,
    };
    let drive = account::drive_selector(&remote.drive, file)?;
    settings(
        &remote.common,
        file,
        phases,
        transfer,
        drive,
        scope,
        listing.list_concurrency,
        job,
    )
    .map(|settings| RunSettings {
        full: remote.full,
        crawl_method: listing.crawl_method.unwrap_or_default(),
        full_listing_every: match listing
            .full_listing_days
            .unwrap_or(DEFAULT_FULL_LISTING_DAYS)
        {
            0 => None,
            days => Some(std::time::Duration::from_secs(u64::from(days) * 86_400)),
        },
        ..settings
    })
}

#[allow(clippy::too_many_arguments)]
fn settings(
    common: &CommonArgs,
    file: &ConfigValues,
    phases: Phases,
    transfer: &TransferArgs,
    drive: DriveSelector,
    scope: Scope,
    list_concurrency: Option<usize>,
    job: Job,
) -> Result<RunSettings, Error> {
    let graph = graph_options(&common.graph, file)?;
    // Without a --concurrency (flag, environment or config file), transfers start at the default and grow
    // while the service keeps up; a given one is a hard cap.
    let concurrency = transfer.or_file(file).concurrency;
    let grow_to = concurrency.is_none().then_some(DEFAULT_CONCURRENCY_CEILING);
    let concurrency = bounded("concurrency", concurrency, DEFAULT_CONCURRENCY)?;
    let list_concurrency = bounded(
        "list_concurrency",
        list_concurrency.or(file.list_concurrency),
        DEFAULT_LIST_CONCURRENCY,
    )?;
    Ok(RunSettings {
        manifest: manifest_path(&common.dest, file)?,
        dest: dest_of(&common.dest, file)?,
        graph,
        credentials: credentials(&common.account, file),
        drive,
        scope,
        list_concurrency,
        concurrency,
        phases,
        filter: job.filter,
        layout: job.layout,
        dry_run: job.dry_run,
        full: false,
        full_listing_every: None,
        crawl_method: CrawlMethod::default(),
        keep: job.keep,
        policy: DownloadPolicy {
            grow_to,
            ..job.policy
        },
        dest_pin: None,
    })
}

fn browse_settings(service: &ServiceArgs, file: &ConfigValues) -> Result<BrowseSettings, Error> {
    Ok(BrowseSettings {
        graph: graph_options(&service.graph, file)?,
        credentials: credentials(&service.account, file),
        drive: account::drive_selector(&service.drive, file)?,
    })
}

/// Where tokens come from: `ODBACKUP_ACCESS_TOKEN` if set, else the stored sign-in of the account.
fn credentials(account: &AccountArgs, file: &ConfigValues) -> Credentials {
    Credentials {
        access_token: std::env::var("ODBACKUP_ACCESS_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()),
        account: account.or_file(file).account,
        config_dir: config::config_dir(),
    }
}

/// The Graph endpoint: flag/env, then config file, then the global cloud.
fn graph_options(graph: &GraphArgs, file: &ConfigValues) -> Result<GraphOptions, Error> {
    let graph_url = graph
        .or_file(file)
        .graph_url
        .unwrap_or_else(|| GraphOptions::default().base_url);
    // The bearer token goes there: https, or plain http on this machine's loopback only.
    odbackup::endpoint::check_credential_url("--graph-url", &graph_url).map_err(Error::Usage)?;
    Ok(GraphOptions {
        base_url: graph_url.trim_end_matches('/').to_owned(),
        ..GraphOptions::default()
    })
}

fn bounded(key: &str, value: Option<usize>, default: usize) -> Result<usize, Error> {
    match value {
        None => Ok(default),
        Some(n @ 1..=64) => Ok(n),
        Some(n) => Err(Error::Usage(format!(
            "{key} must be between 1 and 64, not {n}"
        ))),
    }
}

/// What `restore` was asked, before it is resolved against the config file.
struct RestoreRequest {
    from: Option<PathBuf>,
    from_folder: Option<PathBuf>,
    manifest: Option<PathBuf>,
    to: String,
    on_conflict: odbackup::restore::OnConflict,
    rename_invalid: bool,
    transfer: TransferArgs,
    dry_run: bool,
}

fn restore_settings(
    request: RestoreRequest,
    drive: &super::DriveArgs,
    graph: &GraphArgs,
    account: &AccountArgs,
    filters: &FilterArgs,
    file: &ConfigValues,
) -> Result<app::RestoreSettings, Error> {
    use odbackup::restore::{RestoreOptions, RestoreSource, fragment_size, place};
    let source = match (request.from, request.from_folder) {
        (Some(dest), None) => RestoreSource::Backup { dest },
        (None, Some(dir)) => RestoreSource::Folder { dir },
        _ => {
            return Err(Error::Usage(
                "give what to restore: --from DEST (a backup's destination) or --from-folder DIR"
                    .to_owned(),
            ));
        }
    };
    let to = odbackup::sync::normalize_remote_path(&request.to);
    let segments: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    if !segments.is_empty() {
        // The folder itself must be one the service accepts (its files are judged as they are planned).
        place(&segments, true, "/", false, false)
            .map_err(|refusal| Error::Usage(format!("--to {to:?}: {refusal}")))?;
    }
    let transfer = request.transfer.or_file(file);
    let chunk_size = transfer.chunk_size.map_or(DEFAULT_CHUNK_SIZE, |b| b.0);
    let job = job_of(filters, &LayoutArgs { layout: None }, file, request.dry_run)?;
    let manifest = request
        .manifest
        .unwrap_or_else(|| app::default_manifest_path(source.path()));
    Ok(app::RestoreSettings {
        manifest,
        graph: graph_options(graph, file)?,
        credentials: credentials(account, file),
        drive: account::drive_selector(drive, file)?,
        options: RestoreOptions {
            source,
            target_root: to,
            on_conflict: request.on_conflict,
            rename_invalid: request.rename_invalid,
            filter: job.filter,
            concurrency: bounded("concurrency", transfer.concurrency, DEFAULT_CONCURRENCY)?,
            fragment_size: fragment_size(chunk_size),
            dry_run: request.dry_run,
        },
    })
}

async fn run_restore(
    settings: app::RestoreSettings,
    json: bool,
    quiet: bool,
    verbose: u8,
) -> Result<Outcome, Error> {
    let cancel = CancellationToken::new();
    let stopped_by = spawn_interrupt_handler(cancel.clone());
    let display = progress::Display::for_output(quiet, json);
    let list_planned = settings.options.dry_run && verbose > 0 && !json;
    let reporter: Arc<dyn Reporter> = display.reporter(list_planned);
    let summary = app::restore(&settings, reporter, &cancel).await;
    display.finish();
    let summary = summary?;
    render::restore_summary(&summary, json);
    Ok(match &summary.fatal {
        Some(fatal) => Outcome::Failed(fatal.kind()),
        None if summary.interrupted => {
            let signal = stopped_by.load(Ordering::SeqCst);
            Outcome::Interrupted(if signal > 0 { signal } else { SIGINT })
        }
        None if summary.all_done() => Outcome::Success,
        None => Outcome::SomeFailed,
    })
}

async fn run_verify(
    dest: &Path,
    manifest: &Path,
    options: &odbackup::verify::VerifyOptions,
    json: bool,
    quiet: bool,
) -> Result<Outcome, Error> {
    let cancel = CancellationToken::new();
    let stopped_by = spawn_interrupt_handler(cancel.clone());
    let display = progress::Display::for_output(quiet, json);
    let reporter: Arc<dyn Reporter> = display.reporter(false);
    let summary = app::verify(dest, manifest, options, reporter, &cancel).await;
    display.finish();
    let summary = summary?;
    render::verify_summary(&summary, dest, json);
    Ok(if summary.interrupted {
        let signal = stopped_by.load(Ordering::SeqCst);
        Outcome::Interrupted(if signal > 0 { signal } else { SIGINT })
    } else if summary.all_good() {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}
