//! The downloader: fetch every wanted file of the manifest into the destination, at most `concurrency` at
//! once (fewer for a while after the service throttles: `crate::adaptive`), each verified, each outcome recorded.
//!
//! It pages through the manifest by row id (never loading it whole), so it can start while the crawler is
//! still listing: when it runs out of rows it waits for the crawler's next committed page. It knows nothing
//! of how items were found, and never prints.

mod chunks;
mod dedupe;
mod plan;
mod ranged;
mod refresh;
mod stream;
mod transfer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adaptive;
use crate::error::FatalStop;
pub use crate::fsdest::DestPin;
use crate::fsdest::{self, Dest, MoveOutcome};
use crate::graph::GraphClient;
use crate::ids::{DriveId, ItemId};
use crate::manifest::{
    DoneRecord, DownloadJob, FailureClass, FailureRecord, JobVersion, Manifest, ManifestError,
    MovedFile, Recorded, Twin,
};
use crate::progress::CrawlProgress;
use crate::progress::{Event, NoticeKind, Reporter};
use crate::shared::SharedManifest;
pub use chunks::{DEFAULT_CHUNK_SIZE, DEFAULT_STREAMS_PER_FILE};
pub(crate) use plan::{
    LISTED_URL_FRESHNESS, LISTED_URL_LIFETIME_SETTING, ListedUrlLifetime, classify,
};
pub(crate) use transfer::{TransferFailure, TransferOutcome};

/// Files transferred at once unless `--concurrency` says otherwise. `OneDrive` throttles bulk downloads above
/// roughly a dozen parallel streams per user; 8 keeps a home connection busy with photos without inviting 429s.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How far the number of transfers at once may grow from [`DEFAULT_CONCURRENCY`] when the user did not set
/// `--concurrency`: as long as more transfers finish more files (and the service does not throttle), up to
/// this. Several dozen connections is what bulk clients use against `OneDrive` (rclone's `--transfers` and
/// `--checkers` are often raised to 16–32); past that the service's per-user throttling is the likely bound.
pub const DEFAULT_CONCURRENCY_CEILING: usize = 32;

/// Rows read from the manifest per query.
const BATCH: usize = 256;

/// What the downloader needs, resolved from settings by the caller.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The backup's root folder.
    pub dest: PathBuf,
    /// Transfers at once.
    pub concurrency: usize,
    /// Whether every wanted folder is created, empty ones included (the mirror layout); otherwise folders
    /// appear only as files land in them.
    pub mirror_empty_folders: bool,
    /// What happens to local files when the drive changes.
    pub keep: KeepPolicy,
    /// The folder `dest` must still be when it is opened (see [`DestPin`]); `None`: whatever it leads to.
    pub pin: Option<DestPin>,
}

/// What happens to local files when the drive changes. By default files deleted on the drive stay where they
/// are and a changed file replaces its previous version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Move files deleted on the drive out of the tree into the trash (`.odbackup/trash/<date>/`).
    pub mirror_deletes: bool,
    /// Before a changed file is fetched again, move its previous version into the trash.
    pub keep_versions: bool,
}

/// What a download would fetch (`--dry-run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DryRunSummary {
    /// Files it would download.
    pub files: u64,
    /// Their listed bytes.
    pub bytes: u64,
    /// Of those, files marked done earlier but missing or changed on disk.
    pub requeued: u64,
}

/// How the downloader meets faults and large files, beyond [`DownloadOptions`]. Kept apart so callers that
/// build `DownloadOptions` field by field need not change; [`download`] takes it.
#[derive(Debug, Clone)]
pub struct DownloadPolicy {
    /// A transfer that receives no bytes for this long is aborted and resumed from its part file (`None`:
    /// the Graph client's `read_idle_timeout`, 60 s by default).
    pub stall_timeout: Option<std::time::Duration>,
    /// Fetch files the service flagged as malware too (asking with `AVOverride=1`; only business tenants that
    /// allow it serve them). They are kept with the caveat `malware_override`. Off by default: such files are
    /// skipped and reported.
    pub allow_malware: bool,
    /// Files larger than this are fetched as spans of this many bytes, several at once (`--chunk-size`);
    /// 0 fetches every file in one stream.
    pub chunk_size: u64,
    /// Concurrent Range requests per large file (`--streams-per-file`; 1: one stream). Each stream beyond the
    /// first takes a transfer slot that is free at that moment, so `concurrency` still bounds the connections
    /// to the download host.
    pub streams_per_file: usize,
    /// When set, transfers start at [`DownloadOptions::concurrency`] and may grow up to this many while more
    /// of them finish more files and the service does not throttle (`adaptive.rs`); `None` keeps
    /// `concurrency` as the ceiling, as a `--concurrency` the user gave is.
    pub grow_to: Option<usize>,
    /// How files with the same content are stored (`--dedupe`): copies, or once as hard links.
    pub dedupe: crate::config::DedupeMode,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        Self {
            stall_timeout: None,
            allow_malware: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams_per_file: DEFAULT_STREAMS_PER_FILE,
            grow_to: None,
            dedupe: crate::config::DedupeMode::Off,
        }
    }
}

/// What a download run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DownloadSummary {
    /// Files fetched in this run (verified by hash, or kept with a caveat: see the two counts below).
    pub downloaded: u64,
    /// Files fetched or adopted in this run whose bytes match the listing's size and hash: what exit 0 vouches
    /// for without reservation.
    pub verified_by_hash: u64,
    /// Files fetched or adopted in this run that are on disk as the service serves them but could not be
    /// verified against the listing in full (`accepted_with_caveat` says why, by class). Exit 0 covers them
    /// with that caveat.
    pub kept_with_caveat: u64,
    /// Files kept in this run (fetched or adopted) although they could not be verified against the listing,
    /// by the known quirk that explains it (`live_photo`, `rewritten_by_service`, `no_hash`, …). Each row
    /// in the manifest says exactly what differed.
    pub accepted_with_caveat: BTreeMap<String, u64>,
    /// Of the files downloaded, those whose listing came with a download URL
    /// (`@microsoft.graph.downloadUrl`), which saves the `/content` round trip while it is fresh.
    pub with_listing_url: u64,
    /// Of those, the files fetched with that URL as is; the others had outlived it or were refused, and asked
    /// `/content`.
    pub(crate) by_listing_url: u64,
    /// Folders listed again for fresh download URLs (their files' listing URLs had gone stale), and the URLs
    /// that brought.
    pub folders_relisted: u64,
    /// See `folders_relisted`.
    pub urls_relisted: u64,
    /// Files already on disk (right size and hash) adopted without downloading.
    pub adopted: u64,
    /// Files that failed in this run (on record in the manifest).
    pub failed: u64,
    /// Files marked done earlier but missing or changed on disk, queued again.
    pub requeued: u64,
    /// Files renamed or moved on the drive since they were downloaded, moved on disk instead of fetched again.
    pub moved: u64,
    /// Files deleted on the drive moved into the trash (`--mirror-deletes`).
    pub trashed: u64,
    /// Previous versions of changed files kept in the trash (`--keep-versions`).
    pub versions_kept: u64,
    /// Local files that odbackup had not written, found where a file of the drive goes: moved into the
    /// trash, never overwritten.
    pub displaced: u64,
    /// Stale part files (of older versions, or of files no longer wanted) removed at the end of the run.
    pub(crate) stale_parts_removed: u64,
    /// Files stored as a hard link of a done file with the same content (`--dedupe hardlink`), not downloaded.
    pub deduplicated: u64,
    /// Their bytes: what separate copies would have taken (and fetched).
    pub dedupe_bytes_saved: u64,
    /// Files that could have been linked but were downloaded as copies because the destination refused the
    /// link (another file system, no hard links, too many links).
    pub dedupe_fell_back: u64,
    /// Why the destination refused the first of those links.
    pub dedupe_refused: Option<String>,
    /// Bytes received over the network.
    pub bytes: u64,
    /// Failures by class.
    pub failures_by_class: BTreeMap<String, u64>,
    /// Whether the run stopped before the end (Ctrl-C, or a fatal error).
    pub interrupted: bool,
    /// The error that stopped the run, if a fatal one did (token refused, disk full); in `--json` as `fatal`
    /// (its message) and `fatal_class`.
    #[serde(flatten, serialize_with = "FatalStop::serialize_fields")]
    pub fatal: Option<FatalStop>,
    /// Times the service throttled the client (429/503/509) while this download ran, listing included.
    pub throttled: u64,
    /// Wall time every request was held back by throttling or by `RateLimit-*` pacing, in seconds.
    pub throttle_wait_secs: f64,
    /// Requests held back for their turn because `RateLimit-*` headers said the budget was nearly spent.
    pub(crate) paced: u64,
    /// Transfers overtaken by the drive: the file changed (a listing of this run said so) while its older
    /// version was being fetched. Their outcome was dropped and the new version fetched instead.
    pub superseded: u64,
    /// Times throttling lowered the number of transfers at once.
    pub concurrency_drops: u64,
    /// The fewest transfers allowed at once during the run (the configured concurrency if never lowered).
    pub concurrency_lowest: usize,
    /// The most transfers allowed at once during the run (above the configured concurrency when it grew).
    pub(crate) concurrency_highest: usize,
    /// Transfers that failed in a row for want of a working service.
    #[serde(skip)]
    trouble: crate::error::TroubleStreak,
    /// Rows whose transfer is running: a newer version of the same file waits for it to end (two transfers
    /// of one file would race to rename over the same target).
    #[serde(skip)]
    in_flight: HashSet<i64>,
    /// `--dedupe hardlink`: the row being downloaded for each content (quickXorHash, size), and the rows of
    /// the same content waiting for it, so that copies met in one run are downloaded once.
    #[serde(skip)]
    dedupe_leading: HashMap<(String, u64), i64>,
    #[serde(skip)]
    dedupe_waiting: HashMap<i64, Vec<DownloadJob>>,
    /// Copies no longer waiting, to schedule next (their outcome is recorded only if their row still names
    /// the version they were handed out as).
    #[serde(skip)]
    dedupe_ready: Vec<DownloadJob>,
}

/// A finished job: how its transfer (or link) ended, and how its file was placed.
struct Finished {
    job: DownloadJob,
    outcome: TransferOutcome,
    /// The done file whose bytes it now shares, when it was placed as a hard link.
    linked: Option<Twin>,
    /// Why the destination refused to link it (it was downloaded instead).
    link_refused: Option<String>,
}

/// The content key under which `--dedupe hardlink` finds copies: a listed quickXorHash and a size.
fn content_key(job: &DownloadJob) -> Option<(String, u64)> {
    job.quick_xor
        .as_deref()
        .filter(|qx| !qx.is_empty() && job.size > 0)
        .map(|qx| (qx.to_owned(), job.size))
}

/// Download every pending or failed file of the manifest, following `crawl` until it has ended; `policy` says
/// how stalls and malware-flagged files are treated.
///
/// Pass a `crawl` receiver whose value already says `ended` to download what the manifest holds now.
#[allow(clippy::too_many_lines)] // one scheduling loop: its states (paging, waiting for the crawl, the last pass) read best together
pub async fn download(
    graph: &GraphClient,
    manifest: &SharedManifest,
    options: &DownloadOptions,
    policy: &DownloadPolicy,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
    mut crawl: watch::Receiver<CrawlProgress>,
) -> Result<DownloadSummary, ManifestError> {
    let stats_before = graph.stats();
    let opened = Dest::open(&options.dest).and_then(|dest| match options.pin {
        Some(pin) => dest.check_pin(pin).map(|()| dest),
        None => Ok(dest),
    });
    let dest = match opened {
        Ok(dest) => dest,
        Err(err) => {
            // Not one file could be written: the run stops here and says where.
            return Ok(DownloadSummary {
                fatal: Some(FatalStop::new(
                    FailureClass::Disk,
                    format!("cannot open the destination: {err}"),
                )),
                interrupted: true,
                ..DownloadSummary::default()
            });
        }
    };
    let relocated = relocate_moved(manifest, &dest, &*reporter).await?;
    let mut summary = DownloadSummary {
        moved: relocated.moved,
        displaced: relocated.displaced,
        requeued: requeue_missing(manifest, Some(&dest)).await?,
        ..DownloadSummary::default()
    };
    if options.mirror_empty_folders {
        create_folders(manifest, &dest, &*reporter).await?;
    }

    // Transfers at once: `options.concurrency` at most, fewer for a while after the service throttles.
    let limit = Arc::new(match policy.grow_to {
        Some(ceiling) => adaptive::AdaptiveLimit::growing(
            options.concurrency,
            ceiling.max(options.concurrency),
            stats_before.throttle_events,
        ),
        None => adaptive::AdaptiveLimit::new(options.concurrency, stats_before.throttle_events),
    });
    // How long listing URLs last here, as an earlier run observed it.
    let remembered = manifest
        .setting(LISTED_URL_LIFETIME_SETTING)
        .await?
        .and_then(|ms| ms.parse::<i64>().ok());
    let listed = Arc::new(std::sync::Mutex::new(ListedUrlLifetime::new(remembered)));
    // A fatal error (auth refused, disk full) stops scheduling without cancelling the user's token.
    let stop = cancel.child_token();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let dedupe = policy.dedupe == crate::config::DedupeMode::Hardlink;
    let with_malware = policy.allow_malware;
    let mut pending = manifest.downloadable(BATCH, with_malware);
    // Rows already handed to a transfer in this run, with the version each was: a row the crawl turns back to
    // pending *behind* the cursor (a changed file listed after newer rows) is caught by one last pass from the
    // start, which skips these, but not a row that moved on to another version since.
    let mut attempted: HashSet<(i64, JobVersion)> = HashSet::new();
    let mut refresher = refresh::UrlRefresher::default();
    let mut swept = false;
    'schedule: loop {
        remember_url_lifetime(manifest, &listed).await?;
        let crawl_ended = crawl.borrow_and_update().ended;
        // Copies that waited for a file of the same content (`--dedupe hardlink`) go first, outside the
        // cursor's order; otherwise the next page of the manifest.
        let released = std::mem::take(&mut summary.dedupe_ready);
        let paged = released.is_empty();
        let (jobs, whole_page) = if paged {
            let jobs = pending.next().await?.unwrap_or_default();
            let whole_page = !jobs.is_empty();
            let mut jobs: Vec<DownloadJob> = jobs
                .into_iter()
                .filter(|j| {
                    !attempted.contains(&(j.rowid, j.version()))
                        && !summary.in_flight.contains(&j.rowid)
                })
                .collect();
            // Files whose listing URL went stale: a new listing of their folder instead of `/content` each.
            refresher
                .refresh(graph, manifest, &listed, &mut jobs)
                .await?;
            (jobs, whole_page)
        } else {
            (released, false)
        };
        if jobs.is_empty() && whole_page {
            continue; // a page of rows already tried in this run: move on
        }
        if jobs.is_empty() {
            if crawl_ended {
                if swept {
                    // Transfers still running may yet be overtaken by the drive: their new version then needs
                    // another pass.
                    let Some(joined) = tasks.join_next().await else {
                        break;
                    };
                    if record(
                        manifest,
                        &mut summary,
                        joined,
                        &mut tasks,
                        &*reporter,
                        &stop,
                    )
                    .await?
                    {
                        swept = false;
                        pending.rewind();
                    }
                    continue;
                }
                swept = true;
                // Renames and moves the crawl just applied: move those files rather than fetch them.
                let relocated = relocate_moved(manifest, &dest, &*reporter).await?;
                summary.moved += relocated.moved;
                summary.displaced += relocated.displaced;
                if options.keep.mirror_deletes && !stop.is_cancelled() {
                    summary.trashed += trash_deleted(manifest, &dest, &*reporter).await?;
                }
                pending.rewind();
                continue;
            }
            // Wait for the crawler's next page, while recording transfers that finish meanwhile.
            tokio::select! {
                () = stop.cancelled() => break,
                _ = crawl.changed() => {}
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if record(manifest, &mut summary, joined, &mut tasks, &*reporter, &stop).await? {
                        swept = false;
                    }
                }
            }
            continue;
        }
        if paged {
            let (files, bytes) = (
                jobs.len() as u64,
                jobs.iter().map(|j| j.size).fold(0, u64::saturating_add),
            );
            reporter.event(&Event::Queued { files, bytes });
        }
        for job in jobs {
            if paged {
                // On from this job rather than from the page's last row: rows after it that were passed over
                // (tried or in flight) are looked at again, in case they moved on to another version.
                pending.resume_after(job.rowid);
            }
            // A copy of a file being downloaded right now waits for it (and is then linked to it); one whose
            // content is already on disk is linked to that.
            let twin = if dedupe {
                // Boxed: the schedule loop's future stays small.
                match Box::pin(dedupe_source(manifest, &mut summary, &job)).await? {
                    DedupeSource::Wait => continue,
                    DedupeSource::Link(twin) => Some(twin),
                    DedupeSource::Fetch => None,
                }
            } else {
                None
            };
            attempted.insert((job.rowid, job.version()));
            summary.in_flight.insert(job.rowid);
            observe_throttling(&limit, graph, &*reporter);
            let permit = tokio::select! {
            () = stop.cancelled() => break 'schedule,
            permit = limit.acquire() => permit};
            // Record finished transfers as we go, so the manifest keeps up with what is on disk.
            if let Some(joined) = tasks.try_join_next()
                && record(
                    manifest,
                    &mut summary,
                    joined,
                    &mut tasks,
                    &*reporter,
                    &stop,
                )
                .await?
            {
                swept = false;
            }
            if options.keep.keep_versions
                && let Some(previous) = job.written_path.clone()
            {
                summary.versions_kept +=
                    keep_version(manifest, &dest, &job, &previous, &*reporter).await?;
            }
            let graph = graph.clone();
            let dest = dest.clone();
            let reporter = Arc::clone(&reporter);
            let transfer_cancel = stop.clone();
            let limit = Arc::clone(&limit);
            let policy = policy.clone();
            let listed = Arc::clone(&listed);
            tasks.spawn(async move {
                let mut link_refused = None;
                if let Some(twin) = twin {
                    let (linking_dest, linking_job, linking_twin) = (dest.clone(), job.clone(), twin.clone());
                    match stream::blocking(move || {
                        dedupe::link_twin(&linking_dest, &linking_job, &linking_twin)
                    })
                    .await
                    {
                        dedupe::Linked::Placed(outcome) => {
                            limit.release_after(permit, true, 0);
                            return Finished {
                                job,
                                outcome,
                                linked: Some(twin),
                                link_refused: None};
                        }
                        dedupe::Linked::Unavailable(reason) => link_refused = Some(reason),
                        dedupe::Linked::NotUsable(reason) => {
                            tracing::debug!(path = %job.remote_path, copy = %twin.local_path, %reason, "not linked to the copy on disk; downloading");
                        }
                    }
                }
                let outcome = transfer::transfer(
                    &graph,
                    &dest,
                    &job,
                    &policy,
                    &*reporter,
                    &transfer_cancel,
                    Some(&limit),
                    &listed,
                )
                .await;
                observe_throttling(&limit, &graph, &*reporter);
                let (healthy, bytes) = match &outcome {
                    TransferOutcome::Done { fetched, .. } => (true, *fetched),
                    _ => (false, 0)};
                limit.release_after(permit, healthy, bytes);
                Finished {
                    job,
                    outcome,
                    linked: None,
                    link_refused}
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        record(
            manifest,
            &mut summary,
            joined,
            &mut tasks,
            &*reporter,
            &stop,
        )
        .await?;
    }
    remember_url_lifetime(manifest, &listed).await?;
    (summary.folders_relisted, summary.urls_relisted) = (refresher.folders, refresher.urls);
    summary.interrupted = stop.is_cancelled();
    let stats = graph.stats();
    summary.throttled = stats.throttle_events - stats_before.throttle_events;
    summary.throttle_wait_secs = (stats
        .throttle_wait_total
        .saturating_sub(stats_before.throttle_wait_total))
    .as_secs_f64();
    summary.paced = stats.paced - stats_before.paced;
    (_, summary.concurrency_lowest, summary.concurrency_drops) = limit.figures();
    summary.concurrency_highest = limit.highest();
    if !summary.interrupted && options.mirror_empty_folders {
        // Folders found by a crawl that ran alongside, empty ones included.
        create_folders(manifest, &dest, &*reporter).await?;
    }
    if !summary.interrupted {
        summary.stale_parts_removed =
            sweep_stale_parts(manifest, &dest, with_malware, &*reporter).await?;
    }
    Ok(summary)
}

/// Say what [`download`] would fetch, without writing a file: each file is reported as
/// [`Event::Planned`]. Files marked done but missing on disk go back to pending first, as a real run does.
pub async fn dry_run(
    manifest: &SharedManifest,
    options: &DownloadOptions,
    reporter: &dyn Reporter,
) -> Result<DryRunSummary, ManifestError> {
    // A dry run creates nothing, not even the destination.
    let dest = Dest::open_existing(&options.dest).ok().flatten();
    let mut summary = DryRunSummary {
        requeued: requeue_missing(manifest, dest.as_ref()).await?,
        ..DryRunSummary::default()
    };
    let mut pending = manifest.downloadable(BATCH, false);
    while let Some(jobs) = pending.next().await? {
        for job in &jobs {
            summary.files += 1;
            summary.bytes = summary.bytes.saturating_add(job.size);
            reporter.event(&Event::Planned {
                path: &job.remote_path,
                bytes: job.size,
            });
        }
    }
    Ok(summary)
}

/// Keep a newly observed lifetime of listing URLs in the manifest, for the next run.
async fn remember_url_lifetime(
    manifest: &SharedManifest,
    listed: &transfer::SharedUrlLifetime,
) -> Result<(), ManifestError> {
    let learned = listed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take_learned();
    if let Some(ms) = learned {
        tracing::info!(
            lifetime_s = ms / 1000,
            "download URLs from listings last about this long here (learned from one refused or one tried \
             past the estimate): older ones go through /content, in this run and the next"
        );
        manifest
            .set_setting(LISTED_URL_LIFETIME_SETTING, ms.to_string())
            .await?;
    }
    Ok(())
}

/// Lower the transfers allowed at once if the client was throttled since the last look, and tell the
/// reporter of a new episode.
fn observe_throttling(
    limit: &adaptive::AdaptiveLimit,
    graph: &GraphClient,
    reporter: &dyn Reporter,
) {
    let stats = graph.stats();
    let answers = stats.throttle_events;
    if let Some(transfers) = limit.observe_with_requests(answers, Some(stats.requests)) {
        reporter.event(&Event::Throttled { answers, transfers });
    }
}

/// Finished transfers recorded together: what was ready, up to this many, goes into one manifest
/// transaction (one WAL commit instead of one per file, which is most of a small file's cost to the manifest).
const RECORD_BATCH: usize = 64;

/// Record `first` and every other transfer that has finished meanwhile (up to [`RECORD_BATCH`]) in the
/// manifest, in one transaction, and in the summary. Returns whether the drive had overtaken any of them (its
/// row names another version now; nothing was recorded for it, and the new version is still to fetch).
///
/// A file is under its final name before its row says done: a kill before the transaction commits leaves
/// rows pending whose files are complete, and the next run finds them there, verifies them by hash and
/// adopts them without fetching them again.
async fn record(
    manifest: &SharedManifest,
    summary: &mut DownloadSummary,
    first: Result<Finished, tokio::task::JoinError>,
    tasks: &mut JoinSet<Finished>,
    reporter: &dyn Reporter,
    stop: &CancellationToken,
) -> Result<bool, ManifestError> {
    let mut finished = Vec::new();
    let mut next = Some(first);
    while let Some(joined) = next {
        match joined {
            Ok(done) => finished.push(done),
            // A transfer task only ends without a value if it panicked; its row stays pending for the next
            // run.
            Err(err) => tracing::error!(error = %err, "a transfer task failed unexpectedly"),
        }
        next = if finished.len() < RECORD_BATCH {
            tasks.try_join_next()
        } else {
            None
        };
    }
    let writes: Vec<RowWrite> = finished.iter().map(RowWrite::of).collect();
    let recorded = manifest
        .transaction(move |m| {
            writes
                .iter()
                .map(|w| w.apply(m))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let mut overtaken = false;
    for (done, recorded) in finished.into_iter().zip(recorded) {
        overtaken |= account(summary, done, recorded, reporter, stop);
    }
    Ok(overtaken)
}

/// What a finished transfer writes to its manifest row.
enum RowWrite {
    /// The file is done (fetched, adopted or linked).
    Done {
        drive: DriveId,
        item: ItemId,
        version: JobVersion,
        done: DoneRecord,
        caveat: Option<crate::manifest::Caveat>,
        local_size: u64,
        link: Option<Twin>,
        /// Whether new bytes were renamed over the name (files linked to the old ones keep them).
        written: bool,
        /// Where the file that was in the way went in the trash, if one was.
        displaced: Option<String>,
    },
    /// The file failed for this run.
    Failed {
        drive: DriveId,
        item: ItemId,
        version: JobVersion,
        failure: FailureRecord,
    },
    /// Interrupted: the row stays as it is.
    Nothing,
}

impl RowWrite {
    fn of(finished: &Finished) -> Self {
        let job = &finished.job;
        let (drive, item, version) = (job.drive_id.clone(), job.item_id.clone(), job.version());
        match &finished.outcome {
            TransferOutcome::Done {
                local_path,
                verification,
                caveat,
                local_size,
                adopted,
                attempts,
                displaced,
                ..
            } => RowWrite::Done {
                drive,
                item,
                version,
                done: DoneRecord {
                    local_path: local_path.clone(),
                    verification: verification.as_stored().to_owned(),
                    attempts: *attempts,
                },
                caveat: caveat.clone(),
                local_size: *local_size,
                link: finished.linked.clone(),
                written: !adopted && finished.linked.is_none(),
                displaced: displaced.clone(),
            },
            TransferOutcome::Failed(failure) => RowWrite::Failed {
                drive,
                item,
                version,
                failure: FailureRecord {
                    class: failure.class,
                    http_status: failure.http_status,
                    message: failure.message.clone(),
                    attempts: failure.attempts,
                },
            },
            TransferOutcome::Interrupted => RowWrite::Nothing,
        }
    }

    /// Write it (inside the caller's transaction); `None` when there was nothing to write.
    fn apply(&self, m: &mut Manifest) -> Result<Option<Recorded>, ManifestError> {
        match self {
            RowWrite::Done {
                drive,
                item,
                version,
                done,
                caveat,
                local_size,
                link,
                written,
                displaced,
            } => {
                let recorded = m.record_done(drive, item, version, done)?;
                if recorded == Recorded::Applied {
                    // The copy a file deleted on the drive kept there is this item's file now, or went to
                    // the trash to make way: its row must not claim the name (`--mirror-deletes` would take
                    // this file away).
                    m.hand_over_written_path(drive, item, &done.local_path, displaced.as_deref())?;
                    if let Some(c) = caveat {
                        m.set_caveat(drive, item, c, *local_size)?;
                    }
                    match link {
                        Some(twin) => m.set_linked(drive, item, twin)?,
                        None if *written => m.hand_over_links(drive, item)?,
                        None => {}
                    }
                }
                Ok(Some(recorded))
            }
            RowWrite::Failed {
                drive,
                item,
                version,
                failure,
            } => m.record_failed(drive, item, version, failure).map(Some),
            RowWrite::Nothing => Ok(None),
        }
    }
}

/// Count a recorded transfer in the summary and tell the reporter. Returns whether the drive had overtaken
/// it.
#[allow(clippy::too_many_lines)] // one match over the outcomes, each counted in place
fn account(
    summary: &mut DownloadSummary,
    finished: Finished,
    recorded: Option<Recorded>,
    reporter: &dyn Reporter,
    stop: &CancellationToken,
) -> bool {
    let Finished {
        job,
        outcome,
        linked,
        link_refused,
    } = finished;
    summary.in_flight.remove(&job.rowid);
    // Copies that waited for this file go back to the queue: linked to it now if it is done, else one of
    // them is downloaded.
    release_waiting(summary, &job);
    if let Some(reason) = link_refused {
        summary.dedupe_fell_back += 1;
        if summary.dedupe_refused.is_none() {
            reporter.event(&Event::Notice {
                kind: NoticeKind::HardLinkRefused,
                path: Some(&job.remote_path),
                message: "the destination refused a hard link: files with the same content are downloaded as copies",
                detail: Some(&reason),
            });
            reporter.event(&Event::DedupeFellBack {
                path: &job.remote_path,
                reason: &reason,
            });
            summary.dedupe_refused = Some(reason);
        }
    }
    match outcome {
        TransferOutcome::Done {
            local_path,
            caveat,
            fetched,
            adopted,
            displaced,
            by_listing_url,
            ..
        } => {
            if let Some(trash) = &displaced {
                summary.displaced += 1;
                reporter.event(&Event::Displaced {
                    path: &local_path,
                    trash,
                });
                reporter.event(&Event::Notice {
                    kind: NoticeKind::LocalFileDisplaced,
                    path: Some(&local_path),
                    message: &format!(
                        "a local file that is not this file's earlier copy was in the way: moved into the trash ({trash})"
                    ),
                    detail: None,
                });
            }
            summary.bytes += fetched;
            summary.trouble.clear();
            if recorded == Some(Recorded::Stale) {
                return superseded(summary, &job);
            }
            if let Some(c) = &caveat {
                *summary
                    .accepted_with_caveat
                    .entry(c.class.as_str().to_owned())
                    .or_default() += 1;
                summary.kept_with_caveat += 1;
            } else {
                summary.verified_by_hash += 1;
            }
            if linked.is_some() {
                summary.deduplicated += 1;
                summary.dedupe_bytes_saved = summary.dedupe_bytes_saved.saturating_add(job.size);
            } else if adopted {
                summary.adopted += 1;
            } else {
                summary.downloaded += 1;
                summary.with_listing_url += u64::from(job.listed_url.is_some());
                summary.by_listing_url += u64::from(by_listing_url);
            }
            reporter.event(&Event::FileDone {
                path: &job.remote_path,
                bytes: job.size,
                adopted: adopted || linked.is_some(),
            });
        }
        TransferOutcome::Failed(failure) => {
            if failure.stops_the_run() && summary.fatal.is_none() {
                // A full disk or a refused token stops the run whatever version was being fetched.
                summary.fatal = Some(FatalStop::new(
                    failure.class,
                    format!("{}: {}", job.remote_path, failure.message),
                ));
                stop.cancel();
            }
            if recorded == Some(Recorded::Stale) {
                return superseded(summary, &job);
            }
            summary.failed += 1;
            *summary
                .failures_by_class
                .entry(failure.class.as_str().to_owned())
                .or_default() += 1;
            note_service_trouble(summary, &job, &failure, stop);
            reporter.event(&Event::FileFailed {
                path: &job.remote_path,
                class: failure.class.as_str(),
                message: &failure.message,
            });
        }
        TransferOutcome::Interrupted => {}
    }
    false
}

/// Where the file of a job comes from under `--dedupe hardlink`.
enum DedupeSource {
    /// A copy is being fetched right now: the job waits for it.
    Wait,
    /// A done file with the same content: the job links to it.
    Link(Twin),
    /// No copy: the job downloads (and copies met meanwhile wait for it).
    Fetch,
}

/// A copy of a file being downloaded right now waits for it (and is then linked to it); one whose content is
/// already on disk is linked to that. Either way, the job is the copy the others of this run wait for: should
/// its link fail, they are linked to what it downloads.
async fn dedupe_source(
    manifest: &SharedManifest,
    summary: &mut DownloadSummary,
    job: &DownloadJob,
) -> Result<DedupeSource, ManifestError> {
    let Some(key) = content_key(job) else {
        return Ok(DedupeSource::Fetch);
    };
    if let Some(leader) = summary.dedupe_leading.get(&key) {
        summary.in_flight.insert(job.rowid);
        summary
            .dedupe_waiting
            .entry(*leader)
            .or_default()
            .push(job.clone());
        return Ok(DedupeSource::Wait);
    }
    let twin = manifest
        .done_twin(
            job.drive_id.clone(),
            job.item_id.clone(),
            key.0.clone(),
            job.size,
        )
        .await?;
    summary.dedupe_leading.insert(key, job.rowid);
    Ok(twin.map_or(DedupeSource::Fetch, DedupeSource::Link))
}

/// Copies that waited for `job` (`--dedupe hardlink`) are no longer held back: they are scheduled next.
fn release_waiting(summary: &mut DownloadSummary, job: &DownloadJob) {
    if let Some(key) = content_key(job)
        && summary.dedupe_leading.get(&key) == Some(&job.rowid)
    {
        summary.dedupe_leading.remove(&key);
    }
    if let Some(waiting) = summary.dedupe_waiting.remove(&job.rowid) {
        for copy in &waiting {
            summary.in_flight.remove(&copy.rowid);
        }
        summary.dedupe_ready.extend(waiting);
    }
}

/// A transfer the drive overtook: counted, and said at debug level (the new version is fetched next).
fn superseded(summary: &mut DownloadSummary, job: &DownloadJob) -> bool {
    summary.superseded += 1;
    tracing::debug!(
        item = %job.item_id,
        path = %job.remote_path,
        "the file changed on the drive while it was fetched: the outcome is dropped, the new version is fetched"
    );
    true
}

/// Count a failure toward the run's [`TroubleStreak`], and stop the run when it says so.
fn note_service_trouble(
    summary: &mut DownloadSummary,
    job: &DownloadJob,
    failure: &TransferFailure,
    stop: &CancellationToken,
) {
    let stopping = summary.trouble.failed(
        failure.class,
        failure.http_status,
        &job.remote_path,
        &failure.message,
    );
    if let Some(fatal) = stopping
        && summary.fatal.is_none()
    {
        summary.fatal = Some(fatal);
        stop.cancel();
    }
}

/// What [`relocate_moved`] did.
#[derive(Debug, Default, Clone, Copy)]
struct Relocated {
    moved: u64,
    displaced: u64,
}

/// Files renamed or moved on the drive since they were written: move them on disk to where they now belong
/// (never over another file), and remove folders the moves left empty.
///
/// All moves are taken together and repeated until none makes progress, so that files which traded names
/// (b ↔ c, a → b → c → a, two folders swapped) are moved round through a temporary name rather than left in
/// each other's place. A target held by a file that is not moving (the user's, or one kept for a file
/// deleted on the drive) is moved into the trash first. Each move is recorded before the next one starts,
/// so a kill leaves at most one row naming a place its file just left; such a row, and any file that could
/// not be moved, goes back to pending, where the download adopts the file by its hash or fetches it again.
/// So a run never ends with a done row whose file is elsewhere.
#[allow(clippy::too_many_lines)] // one fixpoint loop over the moves; its three ways out of a deadlock share its state
async fn relocate_moved(
    manifest: &SharedManifest,
    dest: &Dest,
    reporter: &dyn Reporter,
) -> Result<Relocated, ManifestError> {
    let mut mover = Mover {
        manifest,
        dest,
        reporter,
        done: Relocated::default(),
        unmovable: Vec::new(),
    };
    // A first pass page by page (a renamed folder can move a whole drive's files): what moves is recorded and
    // forgotten, and only what is blocked (usually few) is held for the passes after.
    let mut moves: Vec<MovedFile> = Vec::new();
    let mut moved = manifest.moved_files(1024);
    while let Some(rows) = moved.next().await? {
        mover.pass(rows, &mut moves).await?;
        mover.reset_unmovable().await?;
    }
    if moves.is_empty() {
        return Ok(mover.done);
    }
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut cleared_blockers = false;
    while !moves.is_empty() {
        // Again for what was blocked: a move since may have freed its target.
        let before = mover.done.moved;
        let mut blocked = Vec::new();
        mover.pass(std::mem::take(&mut moves), &mut blocked).await?;
        moves = blocked;
        let progress = mover.done.moved > before;
        if progress || moves.is_empty() {
            continue;
        }
        // Every target is taken. One taken by another waiting move's file is a cycle (or a chain ending in
        // one): that file steps aside under a temporary name, which breaks it.
        let sources: HashMap<&str, usize> = moves
            .iter()
            .enumerate()
            .map(|(i, m)| (m.from.as_str(), i))
            .collect();
        if let Some(i) = moves
            .iter()
            .find_map(|m| sources.get(m.to.as_str()).copied())
        {
            let row = &moves[i];
            let (parent, _) = fsdest::split(&row.from).unwrap_or(("", ""));
            let temp = crate::localpath::child_path(
                parent,
                &fsdest::moving_name(row.drive_id.as_str(), row.item_id.as_str()),
            );
            if matches!(
                move_file(dest, &row.from, &temp).await,
                Ok(MoveOutcome::Moved)
            ) {
                record_written(manifest, row, &temp).await?;
                moves[i].from = temp;
            } else {
                mover.unmovable.push(moves.swap_remove(i));
            }
            continue;
        }
        if cleared_blockers {
            // What is in the way could not be moved aside: these files are fetched again instead.
            mover.unmovable.append(&mut moves);
            break;
        }
        // What remains is blocked by files that are not moving: they make way into the trash, and every row
        // that recorded one there follows it.
        cleared_blockers = true;
        for row in &moves {
            let (dest, to, day) = (dest.clone(), row.to.clone(), date.clone());
            match stream::blocking(move || dest.trash(&to, &day)).await {
                Ok(Some(trash)) => {
                    manifest
                        .move_written_paths(row.to.clone(), trash.clone())
                        .await?;
                    mover.done.displaced += 1;
                    reporter.event(&Event::Displaced {
                        path: &row.to,
                        trash: &trash,
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    reporter.event(&Event::Notice {
                        kind: NoticeKind::LocalFileNotMoved,
                        path: Some(&row.to),
                        message: "could not move a file out of the way of a renamed one",
                        detail: Some(&err.to_string()),
                    });
                }
            }
        }
    }
    mover.reset_unmovable().await?;
    Ok(mover.done)
}

/// What [`relocate_moved`] works with, and what it has done so far.
struct Mover<'a> {
    manifest: &'a SharedManifest,
    dest: &'a Dest,
    reporter: &'a dyn Reporter,
    done: Relocated,
    /// Files that cannot be moved: gone, or refused by the file system.
    unmovable: Vec<MovedFile>,
}

impl Mover<'_> {
    /// One pass over `rows`: each file moved to its new path and recorded there, or set aside in `blocked`
    /// (its target is taken) or among the unmovable (it is gone, or could not be moved).
    async fn pass(
        &mut self,
        rows: Vec<MovedFile>,
        blocked: &mut Vec<MovedFile>,
    ) -> Result<(), ManifestError> {
        for row in rows {
            match move_file(self.dest, &row.from, &row.to).await {
                Ok(MoveOutcome::Moved) => {
                    record_written(self.manifest, &row, &row.to).await?;
                    self.done.moved += 1;
                }
                Ok(MoveOutcome::TargetTaken) => blocked.push(row),
                Ok(MoveOutcome::SourceMissing) => self.unmovable.push(row),
                Err(err) => {
                    self.reporter.event(&Event::Notice {
                        kind: NoticeKind::LocalFileNotMoved,
                        path: Some(&row.from),
                        message: &format!(
                            "could not move a renamed file to {}; it will be checked and fetched again if need be",
                            row.to
                        ),
                        detail: Some(&err.to_string()),
                    });
                    self.unmovable.push(row);
                }
            }
        }
        Ok(())
    }

    /// The files that could not be moved are fetched again (or adopted, if their bytes turn up in place).
    async fn reset_unmovable(&mut self) -> Result<(), ManifestError> {
        if self.unmovable.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = std::mem::take(&mut self.unmovable)
            .into_iter()
            .map(|row| (row.drive_id, row.item_id))
            .collect();
        self.manifest.reset_to_pending(keys).await
    }
}

/// [`Dest::move_file`] on the blocking pool.
async fn move_file(dest: &Dest, from: &str, to: &str) -> Result<MoveOutcome, fsdest::DestError> {
    let (dest, from, to) = (dest.clone(), from.to_owned(), to.to_owned());
    stream::blocking(move || dest.move_file(&from, &to)).await
}

/// Record that the file of `row` is now at `path`.
async fn record_written(
    manifest: &SharedManifest,
    row: &MovedFile,
    path: &str,
) -> Result<(), ManifestError> {
    manifest
        .set_written_path(row.drive_id.clone(), row.item_id.clone(), path.to_owned())
        .await
}

/// `--mirror-deletes`: files deleted on the drive leave the tree for the trash (never deleted outright).
async fn trash_deleted(
    manifest: &SharedManifest,
    dest: &Dest,
    reporter: &dyn Reporter,
) -> Result<u64, ManifestError> {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut trashed = 0u64;
    let mut deleted = manifest.deleted_files(1024);
    while let Some(rows) = deleted.next().await? {
        let (dest, date) = (dest.clone(), date.clone());
        let (done, refused) = stream::blocking(move || {
            let mut refused = Vec::new();
            let done = rows
                .into_iter()
                .filter_map(|row| {
                    // Only a plain file is odbackup's to move; anything else under the name is left alone.
                    dest.file_len(&row.from)?;
                    match dest.trash(&row.from, &date) {
                        Ok(Some(to)) => Some((row.drive_id, row.item_id, to)),
                        Ok(None) => None,
                        Err(err) => {
                            refused.push((row.from, err));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>();
            (done, refused)
        })
        .await;
        for (path, err) in refused {
            reporter.event(&Event::Notice {
                kind: NoticeKind::LocalFileNotMoved,
                path: Some(&path),
                message: "could not move a file deleted on the drive into the trash; it stays in place",
                detail: Some(&err.to_string()),
            });
        }
        trashed += done.len() as u64;
        for (drive, item, to) in done {
            // Files linked to it keep their bytes where they are: the group is theirs now.
            manifest.record_trashed(drive, item, to).await?;
        }
    }
    Ok(trashed)
}

/// `--keep-versions`: the previous version of a changed file goes to the trash before the new one is fetched.
async fn keep_version(
    manifest: &SharedManifest,
    dest: &Dest,
    job: &DownloadJob,
    previous: &str,
    reporter: &dyn Reporter,
) -> Result<u64, ManifestError> {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let trashed = {
        let (dest, previous) = (dest.clone(), previous.to_owned());
        stream::blocking(move || {
            if dest.file_len(&previous).is_none() {
                return Ok(None);
            }
            dest.trash(&previous, &date)
        })
        .await
    };
    match trashed {
        Ok(Some(to)) => {
            manifest
                .set_written_path(job.drive_id.clone(), job.item_id.clone(), to)
                .await?;
            Ok(1)
        }
        Ok(None) => Ok(0),
        Err(err) => {
            reporter.event(&Event::Notice {
                kind: NoticeKind::VersionNotKept,
                path: Some(previous),
                message: "could not move the previous version into the trash; the new version replaces it",
                detail: Some(&err.to_string()),
            });
            Ok(0)
        }
    }
}

/// Files the manifest calls done but that are missing or of the wrong size on disk go back to pending.
/// Without a destination (a dry run before the first backup) every one is missing.
async fn requeue_missing(
    manifest: &SharedManifest,
    dest: Option<&Dest>,
) -> Result<u64, ManifestError> {
    let mut requeued = 0u64;
    let mut done = manifest.done_files(4096);
    while let Some(rows) = done.next().await? {
        let dest = dest.cloned();
        let stale = stream::blocking(move || {
            // Rows come folder by folder more often than not: one handle serves a run of them.
            let mut folder: Option<(String, Option<fsdest::Folder>)> = None;
            let mut on_disk = |rel: &str| -> Option<u64> {
                let dest = dest.as_ref()?;
                let (parent, name) = fsdest::split(rel).ok()?;
                if folder.as_ref().is_none_or(|(p, _)| p != parent) {
                    folder = Some((parent.to_owned(), dest.item_folder(parent).ok().flatten()));
                }
                folder.as_ref()?.1.as_ref()?.file_len(name)
            };
            rows.into_iter()
                .filter(|row| on_disk(&row.local_path) != Some(row.size))
                .map(|row| (row.drive_id, row.item_id))
                .collect::<Vec<_>>()
        })
        .await;
        if !stale.is_empty() {
            requeued += stale.len() as u64;
            manifest.reset_to_pending(stale).await?;
        }
    }
    Ok(requeued)
}

/// Mirror every known folder, empty ones included.
async fn create_folders(
    manifest: &SharedManifest,
    dest: &Dest,
    reporter: &dyn Reporter,
) -> Result<(), ManifestError> {
    let mut folders = manifest.folders(4096);
    while let Some(rows) = folders.next().await? {
        let dest = dest.clone();
        let refused = stream::blocking(move || {
            rows.into_iter()
                .filter_map(|(_, local)| dest.create_item_folder(&local).err().map(|e| (local, e)))
                .collect::<Vec<_>>()
        })
        .await;
        for (path, err) in refused {
            reporter.event(&Event::Notice {
                kind: NoticeKind::FolderNotCreated,
                path: Some(&path),
                message: "could not create a folder of the drive",
                detail: Some(&err.to_string()),
            });
        }
    }
    Ok(())
}

/// Remove odbackup's part files that no wanted file will resume from: those of older versions, of files
/// deleted on the drive or excluded since, left by an earlier run. The part file of every file still to be
/// fetched (pending or failed) stays, and so does the temporary name of a file being moved round a cycle.
async fn sweep_stale_parts(
    manifest: &SharedManifest,
    dest: &Dest,
    with_malware: bool,
    reporter: &dyn Reporter,
) -> Result<u64, ManifestError> {
    // First the part files there are (usually none), keeping them all: the set of those still wanted is then
    // made of these alone, not of every file still to fetch, which after a run that fetched little is the
    // whole drive (two names a file: hundreds of megabytes at a million).
    let found = Arc::new(std::sync::Mutex::new(HashSet::<(String, String)>::new()));
    let looked = {
        let (dest, found) = (dest.clone(), Arc::clone(&found));
        stream::blocking(move || {
            dest.sweep_part_files(&|folder, name| {
                found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((folder.to_owned(), name.to_owned()));
                true
            })
        })
        .await
    };
    let found = std::mem::take(
        &mut *found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    match looked {
        Ok(looked) if found.is_empty() => return Ok(report_swept(Ok(looked), reporter)),
        Ok(_) => {}
        Err(err) => return Ok(report_swept(Err(err), reporter)),
    }
    let mut keep: HashSet<(String, String)> = HashSet::new();
    let mut keep_if_found = |entry: (String, String)| {
        if found.contains(&entry) {
            keep.insert(entry);
        }
    };
    let mut wanted = manifest.downloadable(4096, with_malware);
    while let Some(jobs) = wanted.next().await? {
        for job in jobs {
            let Some(Ok((parent, _))) = job.local_path.as_deref().map(fsdest::split) else {
                continue;
            };
            let version = job.etag.as_deref().or(job.ctag.as_deref()).unwrap_or("");
            let part = fsdest::part_file_name(job.drive_id.as_str(), job.item_id.as_str(), version);
            keep_if_found((parent.to_owned(), fsdest::journal_name(&part)));
            keep_if_found((parent.to_owned(), part));
        }
    }
    let mut moved = manifest.moved_files(4096);
    while let Some(rows) = moved.next().await? {
        for row in rows {
            if let Ok((parent, name)) = fsdest::split(&row.from) {
                keep_if_found((parent.to_owned(), name.to_owned()));
            }
        }
    }
    let dest = dest.clone();
    let swept = stream::blocking(move || {
        // Only what the first look found and no wanted file resumes from: anything else stays.
        dest.sweep_part_files(&|folder, name| {
            let entry = (folder.to_owned(), name.to_owned());
            !found.contains(&entry) || keep.contains(&entry)
        })
    })
    .await;
    Ok(report_swept(swept, reporter))
}

/// Tell the user what a sweep of part files could not look into or remove; the number it removed.
fn report_swept(swept: Result<fsdest::Swept, fsdest::DestError>, reporter: &dyn Reporter) -> u64 {
    match swept {
        Ok(swept) => {
            if swept.files > 0 {
                tracing::info!(
                    files = swept.files,
                    bytes = swept.bytes,
                    "removed stale part files"
                );
            }
            for left in &swept.left {
                let (path, message, err) = match left {
                    fsdest::Unswept::Unlisted { folder, error } => (
                        folder,
                        "could not look for stale part files in a folder",
                        error,
                    ),
                    fsdest::Unswept::NotRemoved { path, error } => {
                        (path, "could not remove a stale part file", error)
                    }
                };
                reporter.event(&Event::Notice {
                    kind: NoticeKind::PartFilesNotRemoved,
                    path: Some(path),
                    message,
                    detail: Some(&err.to_string()),
                });
            }
            swept.files
        }
        Err(err) => {
            reporter.event(&Event::Notice {
                kind: NoticeKind::PartFilesNotRemoved,
                path: None,
                message: "could not look for stale part files",
                detail: Some(&err.to_string()),
            });
            0
        }
    }
}
