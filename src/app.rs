//! One run of odbackup: take the manifest's lock, build the Graph client, run the crawler and the downloader
//! side by side, and hand back a summary. This is the only module that knows both seams and both halves of
//! the core; it still never prints (the command line renders what it returns).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::refresh::RefreshingTokenSource;
use crate::auth::store::{DEFAULT_ACCOUNT, TokenStore};
use crate::auth::{AuthError, StaticTokenSource, TokenSource};
use crate::config::CrawlMethod;
use crate::download::{
    self, DownloadOptions, DownloadPolicy, DownloadSummary, DryRunSummary, KeepPolicy,
};
use crate::drives::{self, DriveInfo, DrivesOf, SignInFacts};
use crate::error::{Error, FatalStop};
use crate::filter::Filter;
use crate::graph::{Drive, DriveSelector, GraphClient, GraphOptions};
use crate::localpath::Layout;
use crate::manifest::{DriveRecord, FailureRow, Manifest, RunLock, StatusReport};
use crate::progress::CrawlProgress;
use crate::progress::Reporter;
use crate::restore::{RestoreOptions, RestoreSource, RestoreSummary, TargetDrive};
use crate::shared::SharedManifest;
use crate::sync::ListingContext;
use crate::sync::delta::{self, DeltaOutcome, DeltaSummary};
use crate::sync::{self, CrawlOptions, CrawlSummary, Scope};

/// The manifest's file name inside `DEST/.odbackup/`.
pub(crate) const MANIFEST_FILE: &str = "manifest.sqlite";
pub(crate) use crate::localpath::STATE_DIR;

/// The manifest path for a destination unless `--manifest` says otherwise.
pub fn default_manifest_path(dest: &Path) -> PathBuf {
    dest.join(STATE_DIR).join(MANIFEST_FILE)
}

/// Which phases a run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// List the drive into the manifest only.
    Crawl,
    /// Fetch what the manifest holds only.
    Download,
    /// Both, overlapped: downloads start while the crawl is listing.
    Backup,
}

impl Phases {
    fn name(self) -> &'static str {
        match self {
            Phases::Crawl => "crawl",
            Phases::Download => "download",
            Phases::Backup => "backup",
        }
    }
}

/// Everything a run needs, resolved and validated by the caller.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The backup's root folder.
    pub dest: PathBuf,
    /// Where the manifest lives.
    pub manifest: PathBuf,
    /// How to reach Graph.
    pub graph: GraphOptions,
    /// Where tokens come from.
    pub credentials: Credentials,
    /// Which drive.
    pub drive: DriveSelector,
    /// Where the crawl starts.
    pub scope: Scope,
    /// Folders listed at once.
    pub list_concurrency: usize,
    /// Transfers at once.
    pub concurrency: usize,
    /// What to do.
    pub phases: Phases,
    /// Which items are wanted.
    pub filter: Arc<Filter>,
    /// Where items go under the destination; `None`: as the manifest remembers (mirror for a new one).
    pub layout: Option<Layout>,
    /// Only say what would be downloaded: the crawl still fills the manifest, but no file is written.
    pub dry_run: bool,
    /// List the scope in full even when an incremental round could be used.
    pub full: bool,
    /// List the scope in full when its last full listing is older than this (`None`: never on age alone).
    pub full_listing_every: Option<std::time::Duration>,
    /// How a full listing is made.
    pub crawl_method: CrawlMethod,
    /// What happens to local files when the drive changes.
    pub keep: KeepPolicy,
    /// How the downloader meets stalls and malware-flagged files.
    pub policy: DownloadPolicy,
    /// The folder `dest` must still be when the run opens it (a tenant's drive folder, checked link by
    /// link); `None`: whatever the path leads to, as for a destination the user names.
    pub dest_pin: Option<crate::download::DestPin>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// `crawl`, `download` or `backup`.
    pub command: &'static str,
    /// The crawl's summary, when the run crawled.
    pub crawl: Option<CrawlSummary>,
    /// The download's summary, when the run downloaded.
    pub download: Option<DownloadSummary>,
    /// Wall time.
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
    /// Whether the user interrupted it.
    pub interrupted: bool,
    /// What a `--dry-run` would have downloaded.
    pub dry_run: Option<DryRunSummary>,
    /// Files the filters leave out (recorded in the manifest, not downloaded).
    pub excluded_files: u64,
    /// Their listed bytes.
    pub excluded_bytes: u64,
    /// `OneNote` notebooks in the backup and their section files on disk.
    pub notebooks: crate::manifest::NotebookCounts,
    /// Shared folders and files added to My files: shortcuts followed and not, and their files on disk.
    pub shared: crate::manifest::SharedCounts,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RunSummary {
    /// What stopped the run's downloads for good, if something did: a refused sign-in, or the network or
    /// service gone ([`crate::download::DownloadSummary::fatal`]).
    pub(crate) fn fatal_kind(&self) -> Option<crate::ErrorKind> {
        self.download.as_ref()?.fatal.as_ref().map(FatalStop::kind)
    }

    /// Whether everything wanted is on disk (exit 0) or something failed or is left (exit 1). Every file on
    /// disk then matches its listed size and hash, except those kept with a caveat (a known service quirk:
    /// a Live Photo, a file the service rewrote, a size listed wrong, no hash listed, malware on request),
    /// which the summary counts and `status` lists by class.
    pub fn all_done(&self) -> bool {
        !self.interrupted
            && self
                .download
                .as_ref()
                .is_none_or(|d| d.failed == 0 && d.fatal.is_none())
            && self
                .crawl
                .as_ref()
                .is_none_or(|c| c.complete && c.folders_unreadable == 0)
    }
}

/// Setting that keeps the end of the last throttle pause (Unix milliseconds), for the next run.
const THROTTLED_UNTIL: &str = "throttled_until";

/// What a run does about the end of a pause the service asked of an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EarlierPause {
    /// Over, or never asked: requests go out at once.
    Over,
    /// Hold every request this long first.
    Wait(Duration),
    /// Longer than a run waits a `Retry-After` out: send nothing, stop, and say until when.
    TooLong(std::time::SystemTime),
}

/// A kept end further away than this cannot be a pause the client was asked for (the clock was put back
/// since it was kept): it is forgotten rather than waited for.
const LONGEST_KEPT_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// Judge the kept end of an earlier run's pause (`kept`: Unix milliseconds) at `now`, for a client that waits
/// out at most `longest_wait`.
pub(crate) fn earlier_pause(
    kept: Option<&str>,
    now: std::time::SystemTime,
    longest_wait: Duration,
) -> EarlierPause {
    let Some(until) = kept
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
    else {
        return EarlierPause::Over;
    };
    match until.duration_since(now) {
        Err(_) => EarlierPause::Over,
        Ok(left) if left > LONGEST_KEPT_PAUSE => {
            tracing::info!(
                left_s = left.as_secs(),
                "a kept throttle pause ends further away than any the service asks for: the clock changed; ignored"
            );
            EarlierPause::Over
        }
        Ok(left) if left > longest_wait => EarlierPause::TooLong(until),
        Ok(left) => EarlierPause::Wait(left),
    }
}

/// A run stopped (Ctrl-C, kill, crash) while the service had asked it to wait leaves that wait to the next
/// run: calling earlier is what the service punishes with longer waits. So every pause's end is kept in the
/// manifest as it starts, and a run holds its requests until an earlier run's pause is over — or, when that
/// is further away than a run waits, sends nothing and gives the error to stop with.
fn honour_earlier_pause(
    graph: &GraphClient,
    manifest: &SharedManifest,
    kept: Option<&str>,
    keep_new_pauses: bool,
    reporter: &dyn Reporter,
) -> Option<Error> {
    match earlier_pause(kept, std::time::SystemTime::now(), graph.longest_wait()) {
        EarlierPause::Over => {}
        EarlierPause::TooLong(until) => {
            return Some(Error::ToldToWait {
                until: until.into(),
            });
        }
        EarlierPause::Wait(left) => {
            // A long silent start would look like a hang: say it when it is more than a moment.
            if left >= Duration::from_secs(2) {
                reporter.event(&crate::progress::Event::Notice {
                    kind: crate::progress::NoticeKind::WaitingForService,
                    path: None,
                    message: &format!(
                        "the service asked the previous run to wait (Retry-After); waiting {} s more before the \
                         first request, since calling earlier only lengthens the wait",
                        left.as_secs()
                    ),
                    detail: None,
                });
            } else {
                tracing::info!(
                    wait_ms = left.as_millis() as u64,
                    "an earlier run was asked to wait by the service: waiting out the rest"
                );
            }
            graph.hold_for(left);
        }
    }
    if !keep_new_pauses {
        return None;
    }
    let manifest = manifest.clone();
    graph.on_pause(Arc::new(move |until| {
        let ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let manifest = manifest.clone();
        tokio::spawn(async move {
            if let Err(err) = manifest.set_setting(THROTTLED_UNTIL, ms).await {
                // A diagnostic, not a notice: it runs on the client's pause callback, outside any run's
                // reporter, and costs at most one early request of the next run, which is told to wait again.
                tracing::warn!(error = %err, "could not keep the throttle pause for the next run");
            }
        });
    }));
    None
}

/// Run a crawl, a download or a backup.
pub async fn run(
    settings: &RunSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<RunSummary, Error> {
    let tokens = token_source(&settings.credentials)?;
    let graph = GraphClient::new(settings.graph.clone(), tokens)?;
    Box::pin(run_inner(&graph, settings, reporter, cancel, true)).await
}

/// [`run`] with a client the caller shares between runs (one connection pool, one token source, one throttle
/// gate for several drives: Graph throttles per app per tenant). `settings.graph` and `settings.credentials`
/// are not used; the caller owns the client's pause hook ([`GraphClient::on_pause`]), though a pause an earlier
/// run of this drive kept is still waited out.
pub(crate) async fn run_on(
    graph: &GraphClient,
    settings: &RunSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<RunSummary, Error> {
    Box::pin(run_inner(graph, settings, reporter, cancel, false)).await
}

async fn run_inner(
    graph: &GraphClient,
    settings: &RunSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
    keep_pauses: bool,
) -> Result<RunSummary, Error> {
    let started = Instant::now();
    // The manifest and its lock are reached by path: the path must still lead to the folder checked for it.
    if let Some(pin) = settings.dest_pin {
        pin.check_at(&settings.dest)
            .map_err(|e| Error::Usage(e.to_string()))?;
    }
    let _lock = RunLock::acquire(&settings.manifest)?;
    let mut manifest = Manifest::open(&settings.manifest)?;
    // Which local paths clash depends on how the destination compares names: asked of its file system here,
    // once per run, and handed to the manifest as a value (the manifest never touches the destination).
    // Through the destination's handle (checked against its pin) and the state folder's, never following a
    // link, so a folder swapped in cannot have the probe judge another file system. The destination is
    // created if need be, as the downloads would create it (a first run whose manifest lives elsewhere).
    let name_rules = crate::fsdest::Dest::open(&settings.dest)
        .ok()
        .filter(|dest| {
            settings
                .dest_pin
                .is_none_or(|pin| dest.check_pin(pin).is_ok())
        })
        .and_then(|dest| dest.state_folder().ok())
        .map_or(crate::localpath::NameRules::FOLDING, |state| {
            state.probe_name_rules()
        });
    tracing::debug!(
        rules = name_rules.as_str(),
        "how the destination compares names"
    );
    manifest.set_name_rules(name_rules)?;
    let layout = check_layout(&mut manifest, settings.layout)?;
    let run_id = manifest.begin_run(settings.phases.name())?;
    tracing::info!(
        run = run_id,
        command = settings.phases.name(),
        dest = %settings.dest.display(),
        filter = %settings.filter.fingerprint(),
        dry_run = settings.dry_run,
        "run started"
    );
    let throttled_until = manifest.setting(THROTTLED_UNTIL)?;
    let manifest = SharedManifest::new(manifest);
    let too_soon = honour_earlier_pause(
        graph,
        &manifest,
        throttled_until.as_deref(),
        keep_pauses,
        &*reporter,
    );

    let outcome = async {
        if let Some(err) = too_soon {
            return Err(err);
        }
        // Before the crawl, which judges what it lists by the same filter.
        sync::apply_filter(&manifest, &settings.filter).await?;
        let phases = run_phases(settings, layout, graph, &manifest, reporter, cancel).await?;
        let excluded = manifest.excluded_counts().await?;
        let notebooks = manifest.notebook_counts().await?;
        let shared = manifest.shared_counts().await?;
        Ok::<_, Error>((phases, excluded, (notebooks, shared)))
    }
    .await
    .map(|(phases, excluded, (notebooks, shared))| RunSummary {
        command: settings.phases.name(),
        crawl: phases.crawl,
        download: phases.download,
        elapsed: started.elapsed(),
        interrupted: cancel.is_cancelled(),
        dry_run: phases.dry_run,
        excluded_files: excluded.files,
        excluded_bytes: excluded.bytes,
        notebooks,
        shared,
    });
    let (outcome_name, summary_json) = run_record(&outcome, |s| (s.interrupted, s.all_done()));
    // Listing URLs are credentials, kept no longer than they can serve: a run that downloaded used what it could
    // (the rest are for failed files, which a later run resolves afresh anyway); a crawl-only run keeps the
    // fresh ones for a download shortly after.
    let downloaded = settings.phases != Phases::Crawl && !settings.dry_run;
    let stale_before = (!downloaded).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let cutoff = now.saturating_sub(crate::download::LISTED_URL_FRESHNESS);
        i64::try_from(cutoff.as_millis()).unwrap_or(i64::MAX)
    });
    manifest.clear_listed_urls(stale_before).await?;
    tracing::info!(run = run_id, outcome = outcome_name, summary = %summary_json, "run finished");
    manifest
        .finish_run(run_id, outcome_name, summary_json)
        .await?;
    // The WAL still holds the cleared URLs' rows as they were written.
    if let Err(err) = manifest.truncate_wal().await {
        // A diagnostic, not a notice: nothing is lost, SQLite checkpoints the log when the manifest is next
        // opened (https://www.sqlite.org/wal.html#checkpointing).
        tracing::warn!(error = %err, "could not truncate the manifest's write-ahead log");
    }
    outcome
}

/// The layout is fixed when a backup starts: switching it later would leave every file where the old one
/// put it and fetch it all again elsewhere.
fn check_layout(manifest: &mut Manifest, wanted: Option<Layout>) -> Result<Layout, Error> {
    let stored = manifest.setting("layout")?;
    let Some(layout) = wanted else {
        // Whatever this backup uses; a manifest from before layouts existed was a mirror.
        return Ok(stored.and_then(|s| s.parse().ok()).unwrap_or_default());
    };
    match stored.as_deref() {
        Some(s) if s == layout.as_str() => Ok(layout),
        Some(s) => Err(Error::Usage(format!(
            "this backup uses --layout {s}, not {}: keep --layout {s} for this destination, or back up into a new --dest",
            layout.as_str()
        ))),
        // A manifest from before layouts existed was a mirror.
        None if manifest.has_items()? && layout != Layout::Mirror => Err(Error::Usage(format!(
            "this backup uses --layout mirror, not {}: back up into a new --dest for another layout",
            layout.as_str()
        ))),
        None => {
            manifest.set_setting("layout", layout.as_str())?;
            Ok(layout)
        }
    }
}

/// What the phases of one run produced: each summary is there only when its phase ran.
#[derive(Default)]
struct Phased {
    /// The listing, unless only downloads ran.
    crawl: Option<CrawlSummary>,
    /// The downloads, unless only the listing ran or nothing was fetched (a dry run).
    download: Option<DownloadSummary>,
    /// What a download would fetch, in a dry run.
    dry_run: Option<DryRunSummary>,
}

async fn run_phases(
    settings: &RunSettings,
    layout: Layout,
    graph: &GraphClient,
    manifest: &SharedManifest,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<Phased, Error> {
    let (progress_tx, progress_rx) = watch::channel(CrawlProgress::default());
    let download_options = DownloadOptions {
        dest: settings.dest.clone(),
        concurrency: settings.concurrency,
        // The date layout has no folder tree to mirror (the filters mark folders they do not want).
        mirror_empty_folders: layout == Layout::Mirror,
        keep: settings.keep,
        pin: settings.dest_pin,
    };
    // Futures are lazy: this one only runs in the phases that await it. Boxed: the downloader's state is large.
    let download_fut = Box::pin(download::download(
        graph,
        manifest,
        &download_options,
        &settings.policy,
        Arc::clone(&reporter),
        cancel,
        progress_rx,
    ));
    if settings.phases == Phases::Download {
        progress_tx.send_modify(|p| p.ended = true);
        if settings.dry_run {
            let planned = download::dry_run(manifest, &download_options, &*reporter).await?;
            return Ok(Phased {
                dry_run: Some(planned),
                ..Phased::default()
            });
        }
        return Ok(Phased {
            download: Some(download_fut.await?),
            ..Phased::default()
        });
    }
    let drive = drive_of(settings, graph, manifest).await?;
    let crawl_fut = crawl_phase(
        settings,
        layout,
        graph,
        manifest,
        &drive,
        &reporter,
        cancel,
        &progress_tx,
    );
    if settings.phases == Phases::Crawl {
        return Ok(Phased {
            crawl: Some(crawl_fut.await?),
            ..Phased::default()
        });
    }
    if settings.dry_run {
        // The crawl fills the manifest; then count what a download would fetch.
        let crawled = crawl_fut.await?;
        let planned = download::dry_run(manifest, &download_options, &*reporter).await?;
        return Ok(Phased {
            crawl: Some(crawled),
            download: None,
            dry_run: Some(planned),
        });
    }
    // Backup: the downloader follows the crawl. If the crawl fails, the downloader still finishes what was
    // found (it sees `ended`), and the crawl error is reported after.
    let (crawled, downloaded) = tokio::join!(crawl_fut, download_fut);
    let downloaded = downloaded?;
    let crawled = match crawled {
        // The downloads already stopped the run on a wait longer than a run waits, and the listing then
        // met the same wait at the client's gate: the download's stop says it all, with the summary. The
        // listing stays incomplete and the next run resumes it.
        Err(err) if downloaded.fatal.is_some() && told_to_wait(&err) => {
            tracing::info!(error = %err, "the listing stopped on the same wait as the downloads");
            CrawlSummary::default()
        }
        other => other?,
    };
    Ok(Phased {
        crawl: Some(crawled),
        download: Some(downloaded),
        dry_run: None,
    })
}

/// Whether `err` is the service's ask for a wait longer than a run waits.
fn told_to_wait(err: &Error) -> bool {
    match err {
        Error::Graph { source, .. } => source.told_to_wait().is_some(),
        Error::Crawl(c) => c.graph_error().is_some_and(|g| g.told_to_wait().is_some()),
        Error::ToldToWait { .. } => true,
        _ => false,
    }
}

/// Read the drive and record it: the crawl needs its ID, and a refused token or a wrong drive should stop the
/// run before any transfer starts.
async fn drive_of(
    settings: &RunSettings,
    graph: &GraphClient,
    manifest: &SharedManifest,
) -> Result<Drive, Error> {
    let facts = sign_in_facts(&settings.credentials);
    let drive = drives::resolve(graph, &settings.drive, &facts).await?;
    // One destination keeps one drive: another one's files would land among them (a clash of paths, no
    // deletions noticed). `DriveId` compares canonically: the service has sent one personal drive ID in both
    // letter cases and without its leading zero (onedrive-api-docs #1902, abraunegg/onedrive #3115), while a
    // business ID (`b!…`) is case-sensitive.
    let recorded = manifest.recorded_drives().await?;
    if let Some((other, kind)) = recorded.iter().find(|(id, _)| *id != drive.id) {
        return Err(Error::Usage(format!(
            "{} holds the backup of another drive ({other}, {kind}), not of {} ({}): back this one up into \
             its own --dest (one destination per drive), or name the drive it holds",
            settings.dest.display(),
            drive.id,
            drive.drive_type
        )));
    }
    let record = DriveRecord {
        drive_id: drive.id.clone(),
        drive_type: drive.drive_type.clone(),
        owner: drive.owner.clone(),
        root_item_id: None,
    };
    manifest.upsert_drive(record).await?;
    Ok(drive)
}

/// Crawl the scope of `drive`, then follow its shortcuts to shared folders and files (see
/// [`crate::shortcuts`]): after a complete listing only, so a shortcut removed from My files is known as such.
#[allow(clippy::too_many_arguments)]
async fn crawl_phase(
    settings: &RunSettings,
    layout: Layout,
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &Drive,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress_tx: &watch::Sender<CrawlProgress>,
) -> Result<CrawlSummary, Error> {
    let options = crawl_options(settings, layout, drive);
    let ctx = ListingContext {
        graph,
        manifest,
        drive: &drive.id,
        options: &options,
        reporter,
        cancel,
        progress: progress_tx,
    };
    let summary = match Box::pin(crawl_owner(settings, &ctx)).await {
        Ok(summary) => summary,
        Err(err) => {
            progress_tx.send_modify(|p| p.ended = true);
            return Err(err);
        }
    };
    // The downloader waits for `ended` before it stops looking for new rows: the shared trees come first.
    let summary = Box::pin(follow_shared(&ctx, summary)).await;
    progress_tx.send_modify(|p| p.ended = true);
    summary
}

/// Follow the shortcuts to shared folders and files after a complete listing of `ctx.drive`.
async fn follow_shared(
    ctx: &ListingContext<'_>,
    mut summary: CrawlSummary,
) -> Result<CrawlSummary, Error> {
    if summary.complete && !ctx.cancel.is_cancelled() {
        let shared = Box::pin(crate::shortcuts::follow_shortcuts(ctx)).await?;
        summary.complete = shared.complete;
        summary.shared = Some(shared);
    }
    Ok(summary)
}

/// How `drive` is listed.
fn crawl_options(settings: &RunSettings, layout: Layout, drive: &Drive) -> CrawlOptions {
    CrawlOptions {
        scope: settings.scope.clone(),
        list_concurrency: settings.list_concurrency,
        filter: Arc::clone(&settings.filter),
        layout,
        // New personal accounts live on the SharePoint back end (`b!…` drive IDs, rclone #8695), where delta
        // on a folder may be refused: their changes are asked of the drive root, as on business drives.
        delta_from_drive_root: drive.drive_type != "personal"
            || drive.id.as_str().starts_with("b!"),
        method: settings.crawl_method,
        personal: drive.drive_type.eq_ignore_ascii_case("personal"),
        full: settings.full,
    }
}

/// Whether the scope's last full listing is older than `settings.full_listing_every`: then this run lists it
/// in full and reconciles, even where the change feed works. The feed has been seen to leave deletions out
/// (<https://github.com/OneDrive/onedrive-api-docs/issues/1927>, 2026; abraunegg/onedrive #3751), and only a full
/// listing finds what it left out; at one request per 1,000 items, once a month costs little.
async fn full_listing_due(settings: &RunSettings, ctx: &ListingContext<'_>) -> Result<bool, Error> {
    let Some(every) = settings.full_listing_every else {
        return Ok(false);
    };
    let scope_key = ctx.options.scope.key();
    let Some(last) = ctx
        .manifest
        .last_full_listing(ctx.drive.clone(), scope_key.clone())
        .await?
    else {
        // Never listed in full (or the listing was interrupted): the crawl lists it in full anyway.
        return Ok(false);
    };
    let age = chrono::DateTime::parse_from_rfc3339(&last)
        .map(|at| chrono::Utc::now().signed_duration_since(at))
        .ok()
        .and_then(|age| age.to_std().ok());
    let due = age.is_some_and(|age| age >= every);
    if due {
        // A changes round that was interrupted left its cursor beside the link: the full listing must start
        // from nothing, not page on from there (its end would mark everything it did not see deleted).
        ctx.manifest
            .forget_delta(ctx.drive.clone(), scope_key.clone())
            .await?;
        let days = age.map_or(0, |a| a.as_secs() / 86_400);
        ctx.reporter.event(&crate::progress::Event::Notice {
            kind: crate::progress::NoticeKind::FullListing,
            path: Some(&scope_key),
            message: &format!(
                "the last full listing is {days} days old: listing in full to find what the change feed may have \
                 left out (deletions above all)"
            ),
            detail: None,
        });
    }
    Ok(due)
}

/// Crawl the scope of `ctx.drive` itself.
async fn crawl_owner(
    settings: &RunSettings,
    ctx: &ListingContext<'_>,
) -> Result<CrawlSummary, Error> {
    let manifest = ctx.manifest;
    if !settings.full && !full_listing_due(settings, ctx).await? {
        let outcome = delta::changes_round(ctx).await;
        let summary = match outcome {
            Ok(DeltaOutcome::NeedsFullCrawl) => None,
            Ok(DeltaOutcome::Applied(delta)) => {
                if delta.folders_moved > 0 {
                    // Paths below moved folders changed: judge the path globs again.
                    manifest.set_setting("filter", String::new()).await?;
                    sync::apply_filter(manifest, &settings.filter).await?;
                }
                Some(Ok(CrawlSummary {
                    complete: true,
                    items_seen: delta.changes,
                    marked_deleted: delta.deleted,
                    folders_listed: delta.folders_listed,
                    folders_refused: delta.folders_unreadable + delta.inaccessible.len() as u64,
                    folders_unreadable: delta.folders_unreadable,
                    inaccessible: delta.inaccessible.clone(),
                    incremental: Some(delta),
                    ..CrawlSummary::default()
                }))
            }
            Ok(DeltaOutcome::Interrupted) => Some(Ok(CrawlSummary {
                incremental: Some(DeltaSummary::default()),
                ..CrawlSummary::default()
            })),
            Err(err) => Some(Err(Error::from(err))),
        };
        if let Some(summary) = summary {
            return summary;
        }
    }
    Ok(sync::crawl_inner(ctx).await?)
}

/// Where a run's bearer tokens come from.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `ODBACKUP_ACCESS_TOKEN`: used as is, bypassing the token store.
    pub access_token: Option<String>,
    /// Which stored sign-in to use.
    pub account: Option<String>,
    /// Where the token store lives (`ODBACKUP_CONFIG_DIR`), default the user config directory.
    pub config_dir: Option<PathBuf>,
}

impl Credentials {
    /// The account name in use.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(DEFAULT_ACCOUNT)
    }
}

/// The token source for a run: the environment's token if set, else the stored sign-in (refreshed as
/// needed, once for all workers).
pub fn token_source(credentials: &Credentials) -> Result<Arc<dyn TokenSource>, Error> {
    if let Some(token) = &credentials.access_token {
        return Ok(Arc::new(StaticTokenSource::new(token.clone())));
    }
    let store = TokenStore::open(credentials.config_dir.as_deref()).map_err(AuthError::from)?;
    let account = credentials.account();
    let Some(stored) = store.load(account).map_err(AuthError::from)? else {
        return Err(Error::NoCredentials);
    };
    let http = sign_in_http()?;
    let settings = stored.settings();
    // An app-only sign-in has no refresh token: its credential gets each new token.
    if let Some(credential) = stored.app.clone() {
        return Ok(Arc::new(crate::auth::app::ClientCredentialsSource::new(
            http,
            settings,
            credential,
            Some((store, account.to_owned())),
            Some(stored),
        )));
    }
    Ok(Arc::new(RefreshingTokenSource::new(
        http, settings, store, account, stored,
    )))
}

/// The HTTP client for the sign-in endpoints (refreshing a token, signing in).
///
/// # Errors
/// [`Error::Usage`] when no client can be built (the TLS backend failed to set up).
pub fn sign_in_http() -> Result<reqwest::Client, Error> {
    crate::graph::http_client(&crate::graph::HttpSettings::sign_in())
        .map_err(|e| Error::Usage(format!("could not build an HTTP client: {e}")))
}

/// A sign-in kept for later runs by `odbackup login`.
#[derive(Debug, Clone)]
pub struct SavedSignIn {
    /// Who signed in (`userPrincipalName`, else mail, else display name; `app <client ID>` for an app), when
    /// known.
    pub username: Option<String>,
    /// The file it is kept in.
    pub path: PathBuf,
}

/// The scopes `odbackup login` asks for: `scopes`, with `Sites.Read.All` when `sites` or when the config
/// file names a site (reading a `SharePoint` site needs it), and write access with `write` (as `restore`
/// needs). The flag is whether `Sites.Read.All` was added only because the config file names a site.
pub fn login_scopes(
    mut scopes: Vec<String>,
    sites: bool,
    config_names_site: bool,
    write: bool,
) -> (Vec<String>, bool) {
    let has_sites = crate::auth::write::has_sites_scope(&scopes);
    let mut for_config = false;
    if (sites || config_names_site) && !has_sites {
        for_config = !sites;
        scopes.push(crate::drives::SITES_SCOPE.to_owned());
    }
    if write {
        scopes = crate::auth::write::with_write_scope(scopes);
    }
    (scopes, for_config)
}

/// Keep what an interactive sign-in (device code or browser) returned: who signed in is asked once (for
/// `whoami`; a failure there does not undo the sign-in), then the tokens are saved under the account.
///
/// # Errors
/// [`Error::Auth`] when the token store cannot be written; [`Error::Graph`] when no client can be built.
pub async fn keep_sign_in(
    graph: GraphOptions,
    settings: &crate::auth::signin::AuthSettings,
    tokens: crate::auth::signin::TokenResponse,
    credentials: &Credentials,
) -> Result<SavedSignIn, Error> {
    let mut stored = crate::auth::store::StoredTokens::from_response(
        settings,
        tokens,
        std::time::SystemTime::now(),
    );
    if let Some(access) = stored.access_token.clone() {
        let client = GraphClient::new(
            graph,
            Arc::new(StaticTokenSource::new(access.expose().to_owned())),
        )?;
        if let Ok(me) = client.me().await {
            stored.username = me.user_principal_name.or(me.mail).or(me.display_name);
        }
    }
    save_sign_in(&stored, credentials)
}

/// `odbackup login --app` below the command line: the tenant and the credential file are checked, one token
/// is got to prove the app and its credential are accepted, and the sign-in is kept (where the credential
/// lives, never the credential).
///
/// # Errors
/// [`Error::Usage`] for a Graph URL without an origin; [`Error::Auth`] when the tenant, the credential or the
/// token request is refused, or the store cannot be written.
pub async fn login_app(
    mut settings: crate::auth::signin::AuthSettings,
    credential: crate::auth::app::AppCredentialRef,
    graph_base_url: &str,
    credentials: &Credentials,
) -> Result<SavedSignIn, Error> {
    use crate::auth::app as app_auth;
    app_auth::check_tenant(&settings.tenant).map_err(AuthError::from)?;
    credential.check().map_err(AuthError::from)?;
    // Application permissions are all the app's: the resource's `.default` scope asks for them.
    settings.scopes = vec![
        app_auth::default_scope(graph_base_url)
            .ok_or_else(|| Error::Usage(format!("--graph-url {graph_base_url} has no origin")))?,
    ];
    let tokens = app_auth::acquire(
        &sign_in_http()?,
        &settings,
        &credential,
        crate::auth::refresh::RefreshPolicy::default(),
    )
    .await?;
    let mut stored = crate::auth::store::StoredTokens::from_response(
        &settings,
        tokens,
        std::time::SystemTime::now(),
    );
    stored.username = Some(format!("app {}", settings.client_id));
    stored.app = Some(credential);
    save_sign_in(&stored, credentials)
}

fn save_sign_in(
    stored: &crate::auth::store::StoredTokens,
    credentials: &Credentials,
) -> Result<SavedSignIn, Error> {
    let store = TokenStore::open(credentials.config_dir.as_deref()).map_err(AuthError::from)?;
    store
        .save(credentials.account(), stored)
        .map_err(AuthError::from)?;
    Ok(SavedSignIn {
        username: stored.username.clone(),
        path: store.path(credentials.account()).map_err(AuthError::from)?,
    })
}

/// What is known of the sign-in in `credentials`, for advice on a permission it lacks: whether the token is
/// the environment's, and the scopes the stored sign-in asked for.
pub(crate) fn sign_in_facts(credentials: &Credentials) -> SignInFacts {
    let stored = if credentials.access_token.is_some() {
        None
    } else {
        TokenStore::open(credentials.config_dir.as_deref())
            .ok()
            .and_then(|store| store.load(credentials.account()).ok().flatten())
    };
    let app_only = stored.as_ref().is_some_and(|s| s.app.is_some());
    let scopes = stored.map(|stored| stored.scopes);
    SignInFacts {
        app_only,
        static_token: credentials.access_token.is_some(),
        account: credentials.account().to_owned(),
        default_account: credentials.account() == DEFAULT_ACCOUNT,
        scopes,
    }
}

/// Who is signed in and which drive a run would back up, for `whoami`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WhoAmI {
    /// The account name in the token store (or `ODBACKUP_ACCESS_TOKEN`).
    pub account: String,
    /// The user's display name; `None` when the token has no signed-in user (an app-only token).
    pub user: Option<String>,
    /// The user's sign-in name.
    pub user_principal_name: Option<String>,
    /// Whether Graph knows a signed-in user for this token (`/me` answered).
    pub signed_in_user: bool,
    /// The drive's ID; `None` when the token has no drive of its own and none was named.
    pub drive_id: Option<String>,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: Option<String>,
    /// The drive's name (`OneDrive`, a library's).
    pub drive_name: Option<String>,
    /// The drive owner's name.
    pub owner: Option<String>,
    /// Bytes used.
    pub quota_used: Option<u64>,
    /// Bytes available in all.
    pub quota_total: Option<u64>,
    /// What could not be shown, and how to see it.
    pub note: Option<String>,
}

/// Look up the signed-in user and the selected drive. A token without a signed-in user (an app-only token:
/// the service answers `/me` with 400 for it, "/me request is only valid with delegated authentication flow",
/// microsoft-graph-docs-contrib #9002) still shows the drive it names.
pub async fn whoami(
    graph: GraphOptions,
    credentials: &Credentials,
    drive: &DriveSelector,
) -> Result<WhoAmI, Error> {
    let tokens = token_source(credentials)?;
    let client = GraphClient::new(graph, tokens)?;
    let me = match client.me().await {
        Ok(me) => Some(me),
        // No user behind the token (app-only), or no User.Read: the drive still says whose it is.
        Err(err) if matches!(err.status(), Some(400 | 403)) => {
            tracing::info!(error = %err, "no signed-in user for this token");
            None
        }
        Err(err) => return Err(Error::from_graph("reading the signed-in user")(err)),
    };
    let facts = sign_in_facts(credentials);
    let (found, note) = match drives::resolve(&client, drive, &facts).await {
        Ok(found) => (Some(found), None),
        Err(Error::Drive(err @ crate::drives::DriveError::NoOwnDrive { .. })) => {
            (None, Some(err.to_string()))
        }
        Err(err) => return Err(err),
    };
    let (user, user_principal_name) = match &me {
        Some(me) => (
            me.display_name.clone(),
            me.user_principal_name.clone().or(me.mail.clone()),
        ),
        None => (None, None),
    };
    Ok(WhoAmI {
        account: if credentials.access_token.is_some() {
            "ODBACKUP_ACCESS_TOKEN".to_owned()
        } else {
            credentials.account().to_owned()
        },
        user,
        user_principal_name,
        signed_in_user: me.is_some(),
        drive_id: found.as_ref().map(|d| d.id.to_string()),
        drive_type: found.as_ref().map(|d| d.drive_type.clone()),
        drive_name: found.as_ref().and_then(|d| d.name.clone()),
        owner: found.as_ref().and_then(|d| d.owner.clone()),
        quota_used: found
            .as_ref()
            .and_then(|d| d.quota.as_ref())
            .and_then(|q| q.used),
        quota_total: found
            .as_ref()
            .and_then(|d| d.quota.as_ref())
            .and_then(|q| q.total),
        note,
    })
}

/// The drives of the signed-in user, of a user or of a site, for `odbackup drives`.
pub async fn list_drives(
    graph: GraphOptions,
    credentials: &Credentials,
    of: &DrivesOf,
) -> Result<Vec<DriveInfo>, Error> {
    let client = GraphClient::new(graph, token_source(credentials)?)?;
    drives::list(&client, of, &sign_in_facts(credentials)).await
}

/// The manifest's counts, for `status`. Reads only: it takes no lock, creates and migrates nothing, and sees
/// one consistent snapshot while a run writes (`SQLite`'s WAL lets a reader in beside the writer).
pub fn status(manifest_path: &Path) -> Result<StatusReport, Error> {
    let manifest = open_existing(manifest_path)?;
    let path = manifest_path.display().to_string();
    Ok(manifest.read(|| StatusReport::empty(path), Manifest::status)?)
}

/// Every failed item, for `failures`: the backup's downloads, then the restores' uploads. Reads only, as
/// [`status`] does.
pub fn failures(manifest_path: &Path) -> Result<Vec<FailureRow>, Error> {
    let manifest = open_existing(manifest_path)?;
    Ok(manifest.read(Vec::new, |m| {
        let mut rows = m.failures()?;
        rows.extend(m.restore_failures()?);
        Ok(rows)
    })?)
}

fn open_existing(path: &Path) -> Result<Manifest, Error> {
    match Manifest::open_read_only(path) {
        Err(crate::manifest::ManifestError::Missing { path }) => Err(Error::NoManifest { path }),
        other => Ok(other?),
    }
}

/// Everything a restore needs, resolved and validated by the caller.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// Where the restore's state lives: the backup's manifest (`--from`), or one kept for a plain folder.
    pub manifest: PathBuf,
    /// How to reach Graph.
    pub graph: GraphOptions,
    /// Where tokens come from (a sign-in that may write).
    pub credentials: Credentials,
    /// The drive restored to.
    pub drive: DriveSelector,
    /// What goes where, and how.
    pub options: RestoreOptions,
}

/// A stored sign-in that asked only for read scopes cannot restore: say so before any request, with the way
/// out. A token given as is (`ODBACKUP_ACCESS_TOKEN`) is taken on trust; a 403 then says the same.
fn check_write_access(credentials: &Credentials) -> Result<(), Error> {
    if credentials.access_token.is_some() {
        return Ok(());
    }
    let store = TokenStore::open(credentials.config_dir.as_deref()).map_err(AuthError::from)?;
    let account = credentials.account();
    let Some(stored) = store.load(account).map_err(AuthError::from)? else {
        return Err(Error::NoCredentials);
    };
    // An app's permissions are its roles, granted by an admin and not named in the sign-in (its scope is the
    // resource's `.default`): the service itself says whether they allow writing.
    if stored.app.is_some() || crate::auth::write::has_write_scope(&stored.scopes) {
        Ok(())
    } else {
        Err(Error::ReadOnlySignIn {
            account: account.to_owned(),
        })
    }
}

/// Put a backup (or a plain folder) back on a drive: take the manifest's lock, record the run, and hand the
/// restore's summary back.
pub async fn restore(
    settings: &RestoreSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<RestoreSummary, Error> {
    check_write_access(&settings.credentials)?;
    let tokens = token_source(&settings.credentials)?;
    if matches!(settings.options.source, RestoreSource::Backup { .. })
        && !settings.manifest.exists()
    {
        return Err(Error::NoManifest {
            path: settings.manifest.clone(),
        });
    }
    let _lock = RunLock::acquire(&settings.manifest)?;
    let mut manifest = Manifest::open(&settings.manifest)?;
    let run_id = manifest.begin_run("restore")?;
    tracing::info!(
        run = run_id,
        from = %settings.options.source.path().display(),
        to = %settings.options.target_root,
        dry_run = settings.options.dry_run,
        "restore started"
    );
    let throttled_until = manifest.setting(THROTTLED_UNTIL)?;
    let manifest = SharedManifest::new(manifest);
    let graph = GraphClient::new(settings.graph.clone(), tokens)?;
    let too_soon = honour_earlier_pause(
        &graph,
        &manifest,
        throttled_until.as_deref(),
        true,
        &*reporter,
    );
    let outcome = async {
        if let Some(err) = too_soon {
            return Err(err);
        }
        let drive = graph
            .drive(&settings.drive)
            .await
            .map_err(Error::from_graph("reading the drive to restore to"))?;
        let target = TargetDrive {
            id: drive.id,
            drive_type: drive.drive_type,
        };
        Ok::<_, Error>(
            crate::restore::restore(
                &graph,
                &manifest,
                run_id,
                &target,
                &settings.options,
                reporter,
                cancel,
            )
            .await?,
        )
    }
    .await;
    let (outcome_name, summary_json) = run_record(&outcome, |s| (s.interrupted, s.all_done()));
    tracing::info!(run = run_id, outcome = outcome_name, summary = %summary_json, "restore finished");
    manifest
        .finish_run(run_id, outcome_name, summary_json)
        .await?;
    outcome
}

/// Check a backup on disk against its manifest (`odbackup verify`): take the manifest's lock (a run writing
/// files beside the check would make it report files the run is replacing), record the check as a run, read
/// the files back on the blocking pool, and hand the findings back.
pub async fn verify(
    dest: &Path,
    manifest_path: &Path,
    options: &crate::verify::VerifyOptions,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<crate::verify::VerifySummary, Error> {
    if !manifest_path.exists() {
        return Err(Error::NoManifest {
            path: manifest_path.to_path_buf(),
        });
    }
    let Some(dest) = crate::fsdest::Dest::open_existing(dest)? else {
        return Err(Error::Usage(format!(
            "no backup folder at {}: pass the --dest of the backup to check",
            dest.display()
        )));
    };
    let lock = match RunLock::acquire(manifest_path) {
        Ok(lock) => Some(lock),
        // A backup on read-only media (a snapshot, an archive disk): no run can take the lock there either, so
        // nothing writes beside the check. It reads the manifest as it is and records nothing.
        Err(crate::manifest::ManifestError::Create { source, .. }) if !options.repair => {
            tracing::info!(error = %source, "no lock beside the manifest: checking without recording the check");
            None
        }
        Err(e) => return Err(e.into()),
    };
    if lock.is_none() {
        let mut manifest = Manifest::open_read_only(manifest_path)?;
        // Refuses a manifest of a newer odbackup before anything is read.
        manifest.read(|| (), |_| Ok(()))?;
        let (options, cancel) = (options.clone(), cancel.clone());
        let mut summary = tokio::task::spawn_blocking(move || {
            crate::verify::verify(&dest, &mut manifest, &options, reporter.as_ref(), &cancel)
        })
        .await
        .map_err(|e| Error::Usage(format!("the check stopped unexpectedly: {e}")))??;
        summary.unrecorded = true;
        return Ok(summary);
    }
    let mut manifest = Manifest::open(manifest_path)?;
    let run_id = manifest.begin_run("verify")?;
    let (options, cancel) = (options.clone(), cancel.clone());
    let (mut manifest, outcome) = tokio::task::spawn_blocking(move || {
        let outcome =
            crate::verify::verify(&dest, &mut manifest, &options, reporter.as_ref(), &cancel);
        (manifest, outcome)
    })
    .await
    .map_err(|e| Error::Usage(format!("the check stopped unexpectedly: {e}")))?;
    let (outcome_name, summary_json) = run_record(&outcome, |s| (s.interrupted, s.all_good()));
    tracing::info!(run = run_id, outcome = outcome_name, "verify finished");
    manifest.finish_run(run_id, outcome_name, &summary_json)?;
    Ok(outcome?)
}

/// How a run ended, as its row in `runs` records it: `ok`, `incomplete`, `interrupted` or `error`, with the
/// summary (or the error) as JSON. `ended` says of a summary whether it was interrupted and whether all is done.
fn run_record<S: serde::Serialize, E: std::fmt::Display>(
    outcome: &Result<S, E>,
    ended: impl Fn(&S) -> (bool, bool),
) -> (&'static str, String) {
    match outcome {
        Ok(summary) => {
            let name = match ended(summary) {
                (true, _) => "interrupted",
                (false, true) => "ok",
                (false, false) => "incomplete",
            };
            (name, serde_json::to_string(summary).unwrap_or_default())
        }
        Err(err) => (
            "error",
            serde_json::json!({ "error": err.to_string() }).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_pause_is_waited_out_up_to_the_longest_wait_stops_the_run_beyond_and_is_forgotten_past_a_day()
     {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let longest = Duration::from_secs(900);
        let kept = |after: i64| {
            let ms = 1_800_000_000_000i64 + after * 1000;
            ms.to_string()
        };
        let judge = |k: Option<&str>| earlier_pause(k, now, longest);
        assert_eq!(judge(None), EarlierPause::Over);
        assert_eq!(judge(Some("soon")), EarlierPause::Over);
        assert_eq!(judge(Some(&kept(-5))), EarlierPause::Over);
        assert_eq!(
            judge(Some(&kept(30))),
            EarlierPause::Wait(Duration::from_secs(30))
        );
        assert_eq!(
            judge(Some(&kept(900))),
            EarlierPause::Wait(Duration::from_secs(900))
        );
        assert_eq!(
            judge(Some(&kept(1800))),
            EarlierPause::TooLong(now + Duration::from_secs(1800))
        );
        // Ten days away: the clock was put back since; not a pause anyone asked for.
        assert_eq!(judge(Some(&kept(10 * 86_400))), EarlierPause::Over);
    }
}
