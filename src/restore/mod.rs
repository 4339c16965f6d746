//! The restore: the mirror image of the download. It puts a backup's files (or a plain folder's) back on a
//! drive — the same account, another account, or another folder — under their original names and folders,
//! each verified by size and quickXorHash, each outcome on record, so a killed restore resumes and a re-run
//! uploads nothing it already put back.
//!
//! ```text
//!   source (manifest rows ∥ plain folder walk, no-follow) ─► plan: filters, names, place ─► manifest (batched)
//!   manifest::restore_jobs_after (by row id) ─► ensure folder (created once, or listed once) ─► judge conflict
//!        ─► ≤ 4 MiB: PUT …/content ─► verify ─► PATCH times
//!        ─► else: createUploadSession (URL kept) ─► fragments of 320 KiB multiples, hashed as read ─► verify
//!   ─► manifest::restore_done / restore_failed / restore_skipped
//! ```
//!
//! It shares the downloader's machinery one level down: the transfers at once follow the same AIMD limit
//! (`crate::adaptive`), every request goes through the Graph client's throttle gate and token refresh. It
//! knows nothing of the command line and never prints.

mod folders;
mod plan;
mod source;
mod upload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adaptive::AdaptiveLimit;
use crate::error::FatalStop;
use crate::filter::Filter;
use crate::fsdest::{Dest, DestError};
use crate::graph::{DriveSelector, GraphClient, GraphError, is_quota};
use crate::ids::DriveId;
use crate::manifest::{
    EntryVerdict, FailureClass, FailureRecord, ManifestError, RestoreEntry, RestoreJob, RestoreKind,
};
use crate::progress::{Event, NoticeKind, Reporter};
use crate::shared::SharedManifest;
pub use plan::{NameProblem, OnConflict, Placement, Refusal, fragment_size, place};
use source::{FolderCursor, FolderWalk, SourceEntry, Unusable};
use upload::{FileOutcome, FileTask};

/// Entries read from the source and planned per transaction.
const BATCH: usize = 512;

/// Names listed one by one in the summary when `--rename-invalid` changes them (all are counted).
const MAX_LISTED_RENAMES: usize = 1000;

/// Where a restore reads from.
#[derive(Debug, Clone)]
pub enum RestoreSource {
    /// A backup's destination: its manifest says what each file was called on the drive.
    Backup {
        /// The destination folder.
        dest: PathBuf,
    },
    /// A plain folder: its files go up under their local names.
    Folder {
        /// The folder.
        dir: PathBuf,
    },
}

impl RestoreSource {
    /// The folder files are read from.
    pub fn path(&self) -> &std::path::Path {
        match self {
            RestoreSource::Backup { dest } => dest,
            RestoreSource::Folder { dir } => dir,
        }
    }
}

/// What a restore needs, resolved from settings by the caller.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where files come from.
    pub source: RestoreSource,
    /// The folder on the target drive the source's paths go under (`/` for the root).
    pub target_root: String,
    /// When the target already holds a different item of the same name.
    pub on_conflict: OnConflict,
    /// Map names the service refuses to legal look-alikes instead of refusing them.
    pub rename_invalid: bool,
    /// Which files are wanted (the backup's filters, judged on the paths the files had).
    pub filter: Arc<Filter>,
    /// Transfers at once (fewer for a while after throttling).
    pub concurrency: usize,
    /// Bytes per upload-session fragment (a multiple of 320 KiB: see [`fragment_size`]).
    pub fragment_size: u64,
    /// Only say what would be uploaded.
    pub dry_run: bool,
}

/// The drive restored to.
#[derive(Debug, Clone)]
pub struct TargetDrive {
    /// Its ID.
    pub id: DriveId,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: String,
}

/// What stops a restore before it uploads anything.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The source folder is not there.
    #[error(
        "{} does not exist or is not a folder: give --from a backup's destination, or --from-folder an existing folder",
        path.display()
    )]
    NoSource {
        /// The folder.
        path: PathBuf,
    },
    /// The source folder could not be opened.
    #[error("cannot read {}: {source}", path.display())]
    Source {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: DestError,
    },
    /// The manifest failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// What stops a run once it is under way: the target refuses every write, not just one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fatal {
    /// The drive is full (507).
    Quota,
    /// The sign-in may read but not write (403).
    AccessDenied,
    /// The sign-in was refused (401 after a refresh).
    Auth,
}

impl Fatal {
    /// The failure class the summary reports (`fatal_class`).
    pub fn class(self) -> FailureClass {
        match self {
            Fatal::Quota => FailureClass::Quota,
            Fatal::AccessDenied => FailureClass::AccessDenied,
            Fatal::Auth => FailureClass::Auth,
        }
    }
}

/// Whether a write's error stops the whole run.
pub(crate) fn fatal_of(err: &GraphError) -> Option<Fatal> {
    if is_quota(err) {
        Some(Fatal::Quota)
    } else if err.is_auth() {
        Some(Fatal::Auth)
    } else if err.status() == Some(403) && !err.is_read_only_window() {
        // 403 to a write is a sign-in without write permission (or a drive the user may only read); the
        // service's maintenance windows (`serviceReadOnly`) pass.
        Some(Fatal::AccessDenied)
    } else {
        None
    }
}

/// The manifest's failure class for a Graph error met while restoring.
pub(crate) fn failure_class(err: &GraphError) -> FailureClass {
    if err.is_auth() {
        return FailureClass::Auth;
    }
    match err.status() {
        Some(429 | 503 | 509) => FailureClass::Throttled,
        Some(403) if err.is_read_only_window() => FailureClass::Throttled,
        Some(403) => FailureClass::AccessDenied,
        Some(404 | 410) => FailureClass::NotFound,
        Some(400) if err.has_code("invalidPath") || err.has_code("pathIsTooLong") => {
            FailureClass::Path
        }
        Some(_) => FailureClass::HttpStatus,
        None if err.is_timeout() => FailureClass::Timeout,
        None if err.is_transient() => FailureClass::Network,
        None => FailureClass::Other,
    }
}

/// A name `--rename-invalid` changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Renamed {
    /// The path it had (from the source's root).
    pub from: String,
    /// The path it gets on the target (under the target folder).
    pub to: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// The target drive.
    pub target_drive: String,
    /// The folder under its root.
    pub target_root: String,
    /// Files and folders planned for upload in this run (not done by an earlier one).
    pub planned: u64,
    /// Their bytes.
    pub planned_bytes: u64,
    /// Files uploaded and verified in this run.
    pub uploaded: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Files whose content was already on the target (same size and quickXorHash): nothing sent.
    pub already_there: u64,
    /// Files put back by an earlier run and unchanged since: not looked at again.
    pub already_done: u64,
    /// Files left because a different item has their name (`--on-conflict skip`).
    pub skipped_existing: u64,
    /// Entries skipped because they are symbolic links (never followed) or not regular files.
    pub links_skipped: u64,
    /// Files the filters leave out.
    pub excluded: u64,
    /// Entries refused before upload (names the service forbids, paths too long, missing files).
    pub refused: u64,
    /// Entries put under a legal name by `--rename-invalid`.
    pub renamed: u64,
    /// The first of those, each with its old and new path.
    pub renamed_paths: Vec<Renamed>,
    /// Folders created on the target.
    pub folders_created: u64,
    /// Upload sessions of an earlier run resumed where the service said.
    pub sessions_resumed: u64,
    /// Upload sessions started over because the service no longer knew them.
    pub(crate) sessions_restarted: u64,
    /// Entries that failed in this run (on record; a re-run retries them).
    pub failed: u64,
    /// Failures by class.
    pub failures_by_class: BTreeMap<String, u64>,
    /// Whether the run stopped before the end (Ctrl-C, or a fatal error).
    pub interrupted: bool,
    /// What stopped the run, if a fatal error did (the drive full, no write permission, sign-in refused); in
    /// `--json` as `fatal` (its message) and `fatal_class` (`quota`, `access_denied` or `auth`).
    #[serde(flatten, serialize_with = "FatalStop::serialize_fields")]
    pub fatal: Option<FatalStop>,
    /// When the drive was full: the bytes still to upload.
    pub(crate) space_needed: Option<u64>,
    /// When the drive was full: the bytes free, as the drive's quota says.
    pub(crate) space_free: Option<u64>,
    /// Times the service throttled the client while this restore ran.
    pub throttled: u64,
    /// Wall time every request was held back by throttling, in seconds.
    pub throttle_wait_secs: f64,
    /// Times throttling lowered the number of transfers at once.
    pub concurrency_drops: u64,
    /// The fewest transfers allowed at once.
    pub concurrency_lowest: usize,
    /// Whether this was a `--dry-run` (nothing was written anywhere).
    pub dry_run: bool,
    /// Uploads that failed in a row for want of a working service.
    #[serde(skip)]
    trouble: crate::error::TroubleStreak,
}

impl RestoreSummary {
    /// Whether everything wanted is on the target and verified (exit 0).
    pub fn all_done(&self) -> bool {
        !self.interrupted && self.failed == 0 && self.refused == 0 && self.fatal.is_none()
    }
}

/// Put the source back on `drive`, recording every outcome in `manifest` under `run`.
// The run's phases in order (plan, upload files, create empty folders, record the end); each phase is a
// function of its own, and the length is their argument lists.
#[allow(clippy::too_many_lines)]
pub async fn restore(
    graph: &GraphClient,
    manifest: &SharedManifest,
    run: i64,
    drive: &TargetDrive,
    options: &RestoreOptions,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<RestoreSummary, RestoreError> {
    let stats_before = graph.stats();
    let path = options.source.path().to_path_buf();
    let source = match Dest::open_existing(&path) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(RestoreError::NoSource { path }),
        Err(source) => return Err(RestoreError::Source { path, source }),
    };
    let mut summary = RestoreSummary {
        target_drive: drive.id.to_string(),
        target_root: options.target_root.clone(),
        dry_run: options.dry_run,
        concurrency_lowest: options.concurrency,
        ..RestoreSummary::default()
    };
    let (drive_id, root) = (drive.id.to_string(), options.target_root.clone());
    let target = if options.dry_run {
        manifest.find_restore_target(drive_id, root).await?
    } else {
        Some(
            manifest
                .restore_target(drive_id, root, drive.drive_type.clone())
                .await?,
        )
    };
    plan_all(
        manifest,
        &source,
        target,
        run,
        drive,
        options,
        &mut summary,
        &*reporter,
    )
    .await?;
    let Some(target) = target.filter(|_| !options.dry_run) else {
        return Ok(summary);
    };
    let stop = cancel.child_token();
    let limit = Arc::new(AdaptiveLimit::new(
        options.concurrency,
        stats_before.throttle_events,
    ));
    let folders = Arc::new(folders::TargetFolders::new(graph.clone(), drive.id.clone()));
    let mut fatal: Option<(Fatal, String)> = None;
    upload_files(
        graph,
        manifest,
        &source,
        target,
        run,
        drive,
        options,
        &folders,
        &limit,
        &reporter,
        &stop,
        &mut summary,
        &mut fatal,
    )
    .await?;
    if !stop.is_cancelled() {
        create_folders(
            manifest,
            &folders,
            target,
            run,
            options,
            &mut summary,
            &mut fatal,
            &stop,
        )
        .await?;
    }
    summary.folders_created = folders.created();
    summary.interrupted = stop.is_cancelled();
    if !summary.interrupted {
        let cleared = manifest.clear_stale_restore_sessions(target, run).await?;
        if cleared > 0 {
            tracing::debug!(cleared, "forgot upload sessions no entry will resume");
        }
    }
    if let Some((kind, message)) = fatal {
        describe_fatal(
            graph,
            manifest,
            target,
            run,
            drive,
            kind,
            &message,
            &mut summary,
        )
        .await?;
    }
    let stats = graph.stats();
    summary.throttled = stats.throttle_events - stats_before.throttle_events;
    summary.throttle_wait_secs = stats
        .throttle_wait_total
        .saturating_sub(stats_before.throttle_wait_total)
        .as_secs_f64();
    (_, summary.concurrency_lowest, summary.concurrency_drops) = limit.figures();
    Ok(summary)
}

/// Read the whole source in batches, judge each entry, and record the plan (or, on a dry run, count it).
#[allow(clippy::too_many_arguments)]
async fn plan_all(
    manifest: &SharedManifest,
    source: &Dest,
    target: Option<i64>,
    run: i64,
    drive: &TargetDrive,
    options: &RestoreOptions,
    summary: &mut RestoreSummary,
    reporter: &dyn Reporter,
) -> Result<(), RestoreError> {
    let business = drive.drive_type != "personal";
    let mut walk = match &options.source {
        RestoreSource::Folder { .. } => {
            let src = source.clone();
            let walk =
                blocking(move || FolderWalk::new(src))
                    .await
                    .map_err(|e| RestoreError::Source {
                        path: options.source.path().to_path_buf(),
                        source: e,
                    })?;
            Some(walk)
        }
        RestoreSource::Backup { .. } => None,
    };
    let mut rows = manifest.restore_sources(BATCH);
    loop {
        let batch: Vec<SourceEntry> = if let Some(mut w) = walk.take() {
            let (w, batch, unlisted) = blocking(move || {
                let batch = w.next_batch(BATCH);
                let unlisted = w.take_unlisted();
                (w, batch, unlisted)
            })
            .await;
            walk = Some(w);
            for (folder, err) in unlisted {
                reporter.event(&crate::progress::Event::Notice {
                    kind: crate::progress::NoticeKind::SourceFolderUnreadable,
                    path: Some(&folder),
                    message: "could not list a folder to restore: its files are not restored",
                    detail: Some(&err.to_string()),
                });
            }
            batch
        } else {
            let Some(rows) = rows.next().await? else {
                break;
            };
            let src = source.clone();
            blocking(move || {
                let mut cursor = FolderCursor::new();
                rows.iter()
                    .map(|row| source::from_backup_row(&src, &mut cursor, row))
                    .collect()
            })
            .await
        };
        if batch.is_empty() {
            break;
        }
        let entries: Vec<RestoreEntry> = batch
            .into_iter()
            .filter_map(|e| judge(&e, options, business, summary, reporter))
            .collect();
        if options.dry_run {
            let preview = manifest.preview_restore(target, entries.clone()).await?;
            for i in &preview.1 {
                let e = &entries[*i];
                reporter.event(&Event::Planned {
                    path: &e.remote_path,
                    bytes: e.size,
                });
            }
            add_counts(summary, &preview.0);
        } else if let Some(target) = target {
            let counts = manifest.plan_restore(target, run, entries).await?;
            add_counts(summary, &counts);
        }
    }
    Ok(())
}

fn add_counts(summary: &mut RestoreSummary, counts: &crate::manifest::PlanCounts) {
    summary.planned += counts.to_upload;
    summary.planned_bytes = summary.planned_bytes.saturating_add(counts.to_upload_bytes);
    summary.already_done += counts.already_done;
}

/// One source entry as a planned entry: filtered out (`None`), refused, skipped, or placed on the target.
fn judge(
    entry: &SourceEntry,
    options: &RestoreOptions,
    business: bool,
    summary: &mut RestoreSummary,
    reporter: &dyn Reporter,
) -> Option<RestoreEntry> {
    if source::wanted(&options.filter, entry).is_some() {
        summary.excluded += u64::from(entry.kind == RestoreKind::File);
        return None;
    }
    let original = entry.original_path();
    let mut planned = RestoreEntry {
        source_path: entry.source_path.clone(),
        kind: entry.kind,
        remote_path: original.clone(),
        size: entry.size,
        stamp: if entry.kind == RestoreKind::Folder {
            "folder".to_owned()
        } else {
            entry.stamp.clone()
        },
        created_at: entry.created_at.clone(),
        modified_at: entry.modified_at.clone(),
        renamed_from: None,
        verdict: EntryVerdict::Upload,
    };
    if let Some(why) = &entry.unusable {
        // In a plain folder a link or a device is the user's own, and skipped with a word; in a backup it
        // stands where odbackup wrote a file, so the file cannot be put back: that is a failure, listed.
        let plain = matches!(options.source, RestoreSource::Folder { .. });
        if plain && matches!(why, Unusable::Link | Unusable::NotRegular) {
            summary.links_skipped += 1;
            reporter.event(&Event::Notice {
                kind: NoticeKind::NotRestored,
                path: Some(&entry.source_path),
                message: "not restored",
                detail: Some(&why.to_string()),
            });
            planned.verdict = EntryVerdict::Skipped {
                reason: why.to_string(),
            };
        } else {
            let message = match why {
                Unusable::Unreadable(m) => m.clone(),
                other => format!(
                    "{} in the backup folder: {other}; the file is not restored (run `odbackup backup` to fetch it again)",
                    entry.source_path
                ),
            };
            summary.refused += 1;
            reporter.event(&Event::FileFailed {
                path: &original,
                class: FailureClass::Path.as_str(),
                message: &message,
            });
            planned.verdict = EntryVerdict::Refused { message };
        }
        return Some(planned);
    }
    let segments: Vec<&str> = entry.segments.iter().map(String::as_str).collect();
    match plan::place(
        &segments,
        entry.kind == RestoreKind::Folder,
        &options.target_root,
        business,
        options.rename_invalid,
    ) {
        Ok(placement) => {
            if !placement.renamed.is_empty() {
                summary.renamed += 1;
                let to = plan::join(&options.target_root, &placement.remote_path);
                reporter.event(&Event::Notice {
                    kind: NoticeKind::RestoredRenamed,
                    path: Some(&original),
                    message: &format!("restored under a legal name (--rename-invalid): {to}"),
                    detail: None,
                });
                if summary.renamed_paths.len() < MAX_LISTED_RENAMES {
                    summary.renamed_paths.push(Renamed {
                        from: original.clone(),
                        to,
                    });
                }
                planned.renamed_from = Some(
                    placement
                        .renamed
                        .iter()
                        .map(|(from, _)| from.as_str())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
            planned.remote_path = placement.remote_path;
        }
        Err(refusal) => {
            summary.refused += 1;
            let message = refusal.to_string();
            reporter.event(&Event::FileFailed {
                path: &original,
                class: FailureClass::Path.as_str(),
                message: &message,
            });
            planned.verdict = EntryVerdict::Refused { message };
        }
    }
    Some(planned)
}

/// Upload every file planned by `run` and not done, at most `limit` at once, recording each outcome.
#[allow(clippy::too_many_arguments)]
async fn upload_files(
    graph: &GraphClient,
    manifest: &SharedManifest,
    source: &Dest,
    target: i64,
    run: i64,
    drive: &TargetDrive,
    options: &RestoreOptions,
    folders: &Arc<folders::TargetFolders>,
    limit: &Arc<AdaptiveLimit>,
    reporter: &Arc<dyn Reporter>,
    stop: &CancellationToken,
    summary: &mut RestoreSummary,
    fatal: &mut Option<(Fatal, String)>,
) -> Result<(), RestoreError> {
    let mut tasks: JoinSet<(RestoreJob, FileOutcome)> = JoinSet::new();
    let mut pending = manifest.restore_jobs(target, run, RestoreKind::File, 256);
    'schedule: while let Some(jobs) = pending.next().await? {
        reporter.event(&Event::Queued {
            files: jobs.len() as u64,
            bytes: jobs.iter().map(|j| j.size).fold(0, u64::saturating_add),
        });
        for job in jobs {
            observe_throttling(limit, graph, &**reporter);
            let permit = tokio::select! {
                () = stop.cancelled() => break 'schedule,
                permit = limit.acquire() => permit,
            };
            while let Some(joined) = tasks.try_join_next() {
                record(manifest, target, joined, summary, &**reporter, stop, fatal).await?;
            }
            if stop.is_cancelled() {
                drop(permit);
                break 'schedule;
            }
            let (graph, manifest, source) = (graph.clone(), manifest.clone(), source.clone());
            let (drive_id, folders, reporter) =
                (drive.id.clone(), Arc::clone(folders), Arc::clone(reporter));
            let (root, policy, fragment) = (
                options.target_root.clone(),
                options.on_conflict,
                options.fragment_size,
            );
            let (stop_task, limit_task) = (stop.clone(), Arc::clone(limit));
            tasks.spawn(async move {
                let task = FileTask {
                    graph: &graph,
                    manifest: &manifest,
                    source: &source,
                    drive: &drive_id,
                    folders: &folders,
                    target,
                    target_root: &root,
                    policy,
                    fragment,
                    reporter: &*reporter,
                    cancel: &stop_task,
                };
                let outcome = task.run(&job).await;
                observe_throttling(&limit_task, &graph, &*reporter);
                let (healthy, bytes) = match &outcome {
                    FileOutcome::Done { sent, .. } => (true, *sent),
                    _ => (false, 0),
                };
                limit_task.release_after(permit, healthy, bytes);
                (job, outcome)
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        record(manifest, target, joined, summary, &**reporter, stop, fatal).await?;
    }
    Ok(())
}

/// Lower the transfers at once after a new throttling episode, and say so.
fn observe_throttling(limit: &AdaptiveLimit, graph: &GraphClient, reporter: &dyn Reporter) {
    let stats = graph.stats();
    let answers = stats.throttle_events;
    // With the request count, refusals that sending less does not make rarer stop lowering the limit.
    if let Some(transfers) = limit.observe_with_requests(answers, Some(stats.requests)) {
        reporter.event(&Event::Throttled { answers, transfers });
    }
}

/// Record one file's outcome in the manifest and the summary.
async fn record(
    manifest: &SharedManifest,
    target: i64,
    joined: Result<(RestoreJob, FileOutcome), tokio::task::JoinError>,
    summary: &mut RestoreSummary,
    reporter: &dyn Reporter,
    stop: &CancellationToken,
    fatal: &mut Option<(Fatal, String)>,
) -> Result<(), ManifestError> {
    let (job, outcome) = match joined {
        Ok(pair) => pair,
        Err(err) => {
            // Only a panic ends a task without a value; its row stays as it was for the next run.
            tracing::error!(error = %err, "an upload task failed unexpectedly");
            return Ok(());
        }
    };
    let key = job.source_path.clone();
    match outcome {
        FileOutcome::Done {
            item_id,
            quick_xor,
            sent,
            already_there,
            resumed,
            restarted,
        } => {
            summary.trouble.clear();
            if already_there {
                summary.already_there += 1;
            } else {
                summary.uploaded += 1;
            }
            summary.bytes_sent += sent;
            summary.sessions_resumed += u64::from(resumed);
            summary.sessions_restarted += u64::from(restarted);
            reporter.event(&Event::FileDone {
                path: &job.remote_path,
                bytes: job.size,
                adopted: already_there,
            });
            manifest
                .restore_done(target, key, item_id, quick_xor)
                .await?;
        }
        FileOutcome::Skipped { reason } => {
            summary.trouble.clear();
            summary.skipped_existing += 1;
            tracing::info!(path = %job.remote_path, reason, "not restored");
            manifest.restore_skipped(target, key, reason).await?;
        }
        FileOutcome::Failed {
            failure,
            item_id,
            fatal: stops,
        } => {
            summary.failed += 1;
            *summary
                .failures_by_class
                .entry(failure.class.as_str().to_owned())
                .or_default() += 1;
            reporter.event(&Event::FileFailed {
                path: &job.remote_path,
                class: failure.class.as_str(),
                message: &failure.message,
            });
            let streak_ended = summary.trouble.failed(
                failure.class,
                failure.http_status,
                &job.remote_path,
                &failure.message,
            );
            if let Some(kind) = stops
                && fatal.is_none()
                && summary.fatal.is_none()
            {
                *fatal = Some((kind, failure.message.clone()));
                stop.cancel();
            } else if let Some(stopped) = streak_ended
                && fatal.is_none()
                && summary.fatal.is_none()
            {
                summary.fatal = Some(stopped);
                stop.cancel();
            }
            manifest
                .restore_failed(target, key, failure, item_id)
                .await?;
        }
        FileOutcome::Interrupted => {}
    }
    Ok(())
}

/// Create the folders planned by `run` (empty ones included: folders with files were made on the way).
#[allow(clippy::too_many_arguments)]
async fn create_folders(
    manifest: &SharedManifest,
    folders: &folders::TargetFolders,
    target: i64,
    run: i64,
    options: &RestoreOptions,
    summary: &mut RestoreSummary,
    fatal: &mut Option<(Fatal, String)>,
    stop: &CancellationToken,
) -> Result<(), ManifestError> {
    let mut pending = manifest.restore_jobs(target, run, RestoreKind::Folder, 256);
    while let Some(jobs) = pending.next().await? {
        for job in jobs {
            if stop.is_cancelled() {
                return Ok(());
            }
            let key = job.source_path.clone();
            match folders
                .ensure(&plan::join(&options.target_root, &job.remote_path))
                .await
            {
                Ok(folder) => {
                    manifest
                        .restore_done(target, key, folder.id.as_str().to_owned(), None)
                        .await?;
                }
                Err(f) => {
                    summary.failed += 1;
                    *summary
                        .failures_by_class
                        .entry(f.class.as_str().to_owned())
                        .or_default() += 1;
                    if let Some(kind) = f.fatal
                        && fatal.is_none()
                    {
                        *fatal = Some((kind, f.message.clone()));
                        stop.cancel();
                    }
                    let record = FailureRecord {
                        class: f.class,
                        http_status: f.http_status,
                        message: f.message,
                        attempts: 1,
                    };
                    manifest.restore_failed(target, key, record, None).await?;
                }
            }
        }
    }
    Ok(())
}

/// The summary's word on what stopped the run, with what to do about it.
#[allow(clippy::too_many_arguments)]
async fn describe_fatal(
    graph: &GraphClient,
    manifest: &SharedManifest,
    target: i64,
    run: i64,
    drive: &TargetDrive,
    kind: Fatal,
    message: &str,
    summary: &mut RestoreSummary,
) -> Result<(), ManifestError> {
    let said = match kind {
        Fatal::Quota => {
            let needed = manifest.restore_bytes_left(target, run).await?;
            let quota = graph
                .drive(&DriveSelector::Id(drive.id.clone()))
                .await
                .ok()
                .and_then(|d| d.quota);
            // Unknown when the drive does not say (a `used` it answered negative reads as unknown, and then
            // the total is no measure of what is free).
            let free = quota.as_ref().and_then(|q| {
                q.remaining
                    .or_else(|| Some(q.total?.saturating_sub(q.used?)))
            });
            summary.space_needed = Some(needed);
            summary.space_free = free;
            format!(
                "the target drive is out of space: {} still to upload, {} free{}; free some space (or restore \
                 to another drive, or fewer files with the filters), then re-run the same command: it resumes",
                megabytes(needed),
                free.map_or_else(|| "an unknown amount".to_owned(), megabytes),
                quota
                    .and_then(|q| q.total)
                    .map(|t| format!(" of {}", megabytes(t)))
                    .unwrap_or_default()
            )
        }
        Fatal::AccessDenied => format!(
            "the sign-in may not write to this drive ({message}); sign in with write access — \
             `odbackup login --write` asks for Files.ReadWrite.All — then re-run the same command"
        ),
        Fatal::Auth => format!(
            "the sign-in was refused ({message}); run `odbackup login --write`, then re-run the same command"
        ),
    };
    summary.fatal = Some(FatalStop::new(kind.class(), said));
    Ok(())
}

/// `1234567` → `1.2 MB` (decimal, as drive quotas are shown).
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Run blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}
