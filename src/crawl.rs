//! The crawler: walk a drive's tree (from the root, a path or a special folder) into the manifest.
//!
//! Folders still to list live in the manifest's frontier, and every page of a listing is committed in one
//! transaction together with the frontier update, so a crawl killed at any point resumes where it stopped,
//! with no duplicate rows and no folder listed twice. Up to `list_concurrency` folders are listed at once.
//!
//! The crawler knows Graph items and manifest rows and converts between them; it never prints and never
//! touches local files.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::CrawlMethod;
use crate::filter::{Candidate, Filter};
use crate::graph::{DriveItem, GraphClient, GraphError, PagingGuard};
use crate::ids::{DriveId, ItemId};
use crate::incremental::Enumerated;
use crate::localpath::{Layout, child_path, date_folder, disambiguated, safe_name, top_level_name};
use crate::manifest::{
    FrontierEntry, ItemKind, ManifestError, MediaKind, NewItem, PageCommit, SelectionRow, Skip,
    SkipClass, StoredUrl,
};
use crate::progress::{CrawlProgress, Event, NoticeKind, Reporter};
use crate::shared::SharedManifest;

/// Folders listed at once unless `--list-concurrency` says otherwise. Listing is latency-bound, so a few
/// more than the transfer default pays off, while staying far below the service's throttling thresholds.
pub const DEFAULT_LIST_CONCURRENCY: usize = 8;

/// Where a crawl starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole drive.
    Root,
    /// A folder by its path from the drive root, e.g. `/Pictures/2021`.
    Path(String),
    /// A special folder by its alias: `photos`, `cameraroll`, `documents`, `music`.
    Special(String),
}

impl Scope {
    /// A stable key naming this scope in the manifest (one crawl state per drive and scope).
    pub fn key(&self) -> String {
        match self {
            Scope::Root => "root".to_owned(),
            Scope::Path(p) => format!("path:{}", normalize_remote_path(p)),
            Scope::Special(name) => format!("special:{}", name.to_ascii_lowercase()),
        }
    }
}

/// What the crawler needs to know, resolved from settings by the caller.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// Where to start.
    pub scope: Scope,
    /// Folders listed at once.
    pub list_concurrency: usize,
    /// Which items are wanted (the others are recorded, marked excluded).
    pub filter: Arc<Filter>,
    /// Where items go under the destination.
    pub layout: Layout,
    /// Whether delta works only from the drive root (`OneDrive` for Business and `SharePoint`); on personal
    /// drives it works from any folder.
    pub delta_from_drive_root: bool,
    /// How a full listing is made.
    pub method: CrawlMethod,
    /// Whether the drive is a `OneDrive` Personal one (`driveType: personal`).
    pub personal: bool,
    /// `--full`: list from scratch, without resuming a saved position of an interrupted listing by delta.
    pub full: bool,
}

/// What a finished crawl did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CrawlSummary {
    /// Whether it resumed an interrupted crawl.
    pub resumed: bool,
    /// Whether it listed every folder (false when cancelled).
    pub complete: bool,
    /// Folders whose listing finished in this run.
    pub folders_listed: u64,
    /// Items recorded in this run.
    pub items_seen: u64,
    /// Folders that could not be listed (recorded as skipped with the reason).
    pub folders_refused: u64,
    /// Of those, folders the service refused or answered unreadably even when asked again, or whose listing
    /// made no progress: unlike a Personal Vault, the next run must list them, so the run does not count as
    /// complete.
    pub folders_unreadable: u64,
    /// Folders the service never lets apps list (a Personal Vault at the top of a personal drive), by remote
    /// path: skipped, and not a failure.
    pub inaccessible: Vec<String>,
    /// Items flagged as deleted remotely because a complete crawl no longer saw them.
    pub marked_deleted: u64,
    /// When the run asked `/delta` for changes instead of listing the scope: what that round did.
    pub incremental: Option<crate::incremental::DeltaSummary>,
    /// What following the shortcuts to shared folders and files did, when the run followed them.
    pub shared: Option<crate::shortcuts::SharedSummary>,
}

/// Why a crawl stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// The crawl's starting folder could not be found or read.
    #[error("could not open the crawl root {scope}: {source}")]
    Scope {
        /// The scope as the user gave it.
        scope: String,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// The starting point is a file, not a folder.
    #[error("{scope} is not a folder")]
    NotAFolder {
        /// The scope as the user gave it.
        scope: String,
    },
    /// Listing a folder failed in a way that is not specific to that folder (auth, network, throttling
    /// beyond the retry budget). The crawl can be resumed by re-running the same command.
    #[error("listing {path} failed: {source}")]
    Listing {
        /// The folder's remote path.
        path: String,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl CrawlError {
    /// The Graph error behind this one, if any (the caller maps auth errors to their exit code).
    pub fn graph_error(&self) -> Option<&GraphError> {
        match self {
            CrawlError::Scope { source, .. } | CrawlError::Listing { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Crawl `drive` from `options.scope` into the manifest.
///
/// Returns when every folder is listed, when `cancel` fires (the summary then says `complete: false`, and a
/// re-run resumes), or on a run-level error. `progress` is updated after every committed page.
pub async fn crawl(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress: &watch::Sender<CrawlProgress>,
) -> Result<CrawlSummary, CrawlError> {
    let result = crawl_inner(graph, manifest, drive, options, &reporter, cancel, progress).await;
    progress.send_modify(|p| p.ended = true);
    result
}

/// [`crawl`] without marking `progress` ended: the caller lists more after it (the shortcuts' targets, see
/// `crate::shortcuts`) and ends it itself.
pub(crate) async fn crawl_inner(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress: &watch::Sender<CrawlProgress>,
) -> Result<CrawlSummary, CrawlError> {
    let root = resolve_scope(graph, drive, &options.scope).await?;
    let scope_key = options.scope.key();
    {
        // The service may have changed the root's ID since the last run (it did for OneDrive Personal roots):
        // it is still the same folder.
        let (d, k, id) = (drive.clone(), scope_key.clone(), root.id.clone());
        if manifest
            .call(move |m| m.rekey_scope_root(&d, &k, &id))
            .await?
        {
            tracing::info!(root = %root.id, "the scope's root folder has a new ID: its rows follow it");
        }
    }
    let root_path = scope_remote_path(&options.scope, &root);
    let root_local = local_path_of_remote(&root_path, root.id.stable_spelling().as_ref());
    let mut root_row = to_new_item(drive, &root, parent_of(&root), &root_path, root_local);
    root_row.kind = ItemKind::Folder;
    let start = {
        let (drive, key) = (drive.clone(), scope_key.clone());
        manifest
            .call(move |m| m.begin_crawl(&drive, &key, &root_row))
            .await?
    };
    reporter.event(&Event::CrawlStarted {
        scope: &root_path,
        resumed: start.resumed,
    });
    let crawl_id = start.crawl_id;
    let mut summary = CrawlSummary {
        resumed: start.resumed,
        ..CrawlSummary::default()
    };
    let by_delta = options.method == CrawlMethod::Delta
        && (!options.delta_from_drive_root || options.scope == Scope::Root);
    let mut walk_from_root = !start.resumed;
    if by_delta {
        let (d, k) = (drive.clone(), scope_key.clone());
        let cursor = manifest
            .call(move |m| m.delta_state(&d, &k))
            .await?
            .and_then(|state| state.cursor);
        // A fresh crawl, or one whose delta enumeration was interrupted (its cursor is saved). `--full` starts
        // the enumeration again rather than trusting a saved position.
        if !start.resumed || cursor.is_some() {
            let cursor = if options.full { None } else { cursor };
            let enumerated = crate::incremental::enumerate(
                graph, manifest, drive, &scope_key, &root.id, options, reporter, cancel, cursor,
            )
            .await?;
            match enumerated {
                Enumerated::Cancelled => return Ok(summary), // the next run resumes at the saved cursor
                Enumerated::Done(delta) => {
                    summary.items_seen = delta.changes;
                    summary.folders_listed = delta.folders + 1;
                    // The root is listed too: done, and out of the frontier.
                    let listed_root = PageCommit {
                        drive_id: drive.clone(),
                        folder_id: root.id.clone(),
                        items: Vec::new(),
                        next_link: None,
                    };
                    manifest
                        .call(move |m| m.commit_page(crawl_id, &listed_root))
                        .await?;
                    summary.marked_deleted =
                        manifest.call(move |m| m.finish_crawl(crawl_id)).await?;
                    summary.complete = true;
                    progress.send_modify(|p| p.pages += 1);
                    reporter.event(&Event::CrawlFinished {
                        folders: 0,
                        items: summary.items_seen,
                    });
                    return Ok(summary);
                }
                Enumerated::Unusable { reason } => {
                    reporter.event(&Event::Notice {
                        kind: NoticeKind::FullListing,
                        path: Some(&scope_key),
                        message: "listing by delta is not possible here: walking the folders instead",
                        detail: Some(&reason),
                    });
                    let (d, k) = (drive.clone(), scope_key.clone());
                    manifest.call(move |m| m.forget_delta(&d, &k)).await?;
                    walk_from_root = true;
                }
            }
        }
    }
    if walk_from_root {
        remember_delta_start(graph, manifest, drive, options, &root).await?;
    }

    let walked = walk_frontier(
        graph, manifest, drive, options, crawl_id, reporter, cancel, progress,
    )
    .await?;
    summary.folders_listed += walked.folders_listed;
    summary.items_seen += walked.items_seen;
    summary.folders_refused += walked.folders_refused;
    summary.folders_unreadable += walked.folders_unreadable;
    summary.inaccessible = walked.inaccessible;
    if !walked.complete {
        return Ok(summary);
    }
    summary.marked_deleted = manifest.call(move |m| m.finish_crawl(crawl_id)).await?;
    let (promote_drive, scope_key) = (drive.clone(), options.scope.key());
    if summary.folders_unreadable == 0 {
        manifest
            .call(move |m| m.promote_pending_link(&promote_drive, &scope_key))
            .await?;
    } else {
        // Changes from now on would never bring back what is in the unread folders: list in full next time.
        manifest
            .call(move |m| m.forget_delta(&promote_drive, &scope_key))
            .await?;
    }
    summary.complete = true;
    reporter.event(&Event::CrawlFinished {
        folders: summary.folders_listed,
        items: summary.items_seen,
    });
    Ok(summary)
}

/// What listing a crawl's frontier did.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Whether the frontier was emptied (false when cancelled).
    pub(crate) complete: bool,
    /// Folders listed to their end.
    pub(crate) folders_listed: u64,
    /// Items recorded.
    pub(crate) items_seen: u64,
    /// Folders not listed (inaccessible or incomplete).
    pub(crate) folders_refused: u64,
    /// Of those, folders that must be listed again by the next run.
    pub(crate) folders_unreadable: u64,
    /// Folders the service never lets apps list, by remote path.
    pub(crate) inaccessible: Vec<String>,
}

/// List every folder in the frontier of `crawl_id`, `list_concurrency` at once, until none is left (or the
/// run is cancelled). Subfolders found on the way join the frontier.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn walk_frontier(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    crawl_id: i64,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress: &watch::Sender<CrawlProgress>,
) -> Result<Walk, CrawlError> {
    let mut walk = Walk::default();
    let concurrency = options.list_concurrency.max(1);
    let mut in_flight: HashSet<ItemId> = HashSet::new();
    let mut tasks: JoinSet<(ItemId, Result<FolderOutcome, CrawlError>)> = JoinSet::new();
    loop {
        if !cancel.is_cancelled() && tasks.len() < concurrency {
            let want = concurrency - tasks.len();
            // Ask for more than we can start: the ones already being listed are still in the frontier.
            let limit = want + in_flight.len();
            let entries = manifest.call(move |m| m.frontier(crawl_id, limit)).await?;
            let fresh: Vec<FrontierEntry> = entries
                .into_iter()
                .filter(|e| !in_flight.contains(&e.folder_id))
                .take(want)
                .collect();
            for entry in fresh {
                in_flight.insert(entry.folder_id.clone());
                let graph = graph.clone();
                let manifest = manifest.clone();
                let drive = drive.clone();
                let reporter = Arc::clone(reporter);
                let progress = progress.clone();
                let cancel = cancel.clone();
                let placement = Placement {
                    filter: Arc::clone(&options.filter),
                    layout: options.layout,
                };
                let personal = options.personal;
                tasks.spawn(async move {
                    let id = entry.folder_id.clone();
                    let listing = Listing {
                        graph: &graph,
                        manifest: &manifest,
                        drive: &drive,
                        personal,
                        crawl_id,
                        placement: &placement,
                        reporter: &*reporter,
                        progress: &progress,
                        cancel: &cancel,
                    };
                    let outcome = list_folder(&listing, entry).await;
                    (id, outcome)
                });
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (folder_id, outcome) = joined.expect("folder listing task panicked");
        in_flight.remove(&folder_id);
        match outcome {
            Ok(FolderOutcome::Listed { items }) => {
                walk.folders_listed += 1;
                walk.items_seen += items;
            }
            Ok(FolderOutcome::Inaccessible { items, path }) => {
                walk.folders_refused += 1;
                walk.items_seen += items;
                walk.inaccessible.push(path);
            }
            Ok(FolderOutcome::Incomplete { items }) => {
                walk.folders_refused += 1;
                walk.folders_unreadable += 1;
                walk.items_seen += items;
            }
            Ok(FolderOutcome::Interrupted { items }) => walk.items_seen += items,
            Err(err) => {
                // Let the other listings commit the page they are on, then stop: the frontier keeps the rest.
                cancel_and_drain(&mut tasks).await;
                return Err(err);
            }
        }
    }
    walk.complete = !cancel.is_cancelled();
    Ok(walk)
}

/// List the folders an incremental round queued in the scope's last crawl (folders delta showed without their
/// contents), and those an interrupted run left queued. Nothing to do is a complete walk.
pub(crate) async fn list_queued(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress: &watch::Sender<CrawlProgress>,
) -> Result<Walk, CrawlError> {
    let (d, k) = (drive.clone(), options.scope.key());
    let Some(crawl_id) = manifest.call(move |m| m.queued_listing(&d, &k)).await? else {
        return Ok(Walk {
            complete: true,
            ..Walk::default()
        });
    };
    walk_frontier(
        graph, manifest, drive, options, crawl_id, reporter, cancel, progress,
    )
    .await
}

/// Before a full crawl lists anything, take a delta link for "changes from now on": once the crawl completes
/// it becomes the scope's link, and the next run asks only for what changed (including during the crawl).
/// Without one (the service refused), the next run simply crawls in full again.
async fn remember_delta_start(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    scope_root: &DriveItem,
) -> Result<(), CrawlError> {
    let delta_root = if options.delta_from_drive_root && options.scope != Scope::Root {
        match graph.root(drive).await {
            Ok(root) => root.id,
            Err(err) => {
                tracing::warn!(error = %err, "no incremental runs for this scope: could not read the drive root");
                return Ok(());
            }
        }
    } else {
        scope_root.id.clone()
    };
    match graph.delta_latest(drive, &delta_root).await {
        Ok(link) => {
            let (drive, scope_key) = (drive.clone(), options.scope.key());
            manifest
                .call(move |m| m.set_pending_link(&drive, &scope_key, &delta_root, &link))
                .await?;
        }
        Err(err) if err.is_auth() => {
            return Err(CrawlError::Listing {
                path: "/".to_owned(),
                source: err,
            });
        }
        Err(err) => {
            tracing::warn!(error = %err, "no incremental runs for this scope: the service gave no delta link");
        }
    }
    Ok(())
}

async fn cancel_and_drain(tasks: &mut JoinSet<(ItemId, Result<FolderOutcome, CrawlError>)>) {
    // Listings stop at a page boundary; give them a moment, then abort whatever is left.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

enum FolderOutcome {
    Listed {
        items: u64,
    },
    /// Never listable by apps (a Personal Vault): skipped, reported by path, not a failure.
    Inaccessible {
        items: u64,
        path: String,
    },
    /// Refused or unreadable even when asked again, or a listing that made no progress: the next run lists it.
    Incomplete {
        items: u64,
    },
    Interrupted {
        items: u64,
    },
}

/// What one folder listing works with.
struct Listing<'a> {
    graph: &'a GraphClient,
    manifest: &'a SharedManifest,
    drive: &'a DriveId,
    /// Whether the drive is a `OneDrive` Personal one (where a root-level folder refused as the Personal Vault
    /// is refused is taken for the vault).
    personal: bool,
    crawl_id: i64,
    placement: &'a Placement,
    reporter: &'a dyn Reporter,
    progress: &'a watch::Sender<CrawlProgress>,
    cancel: &'a CancellationToken,
}

/// Which items are wanted and where they go.
pub(crate) struct Placement {
    /// The run's filters.
    pub(crate) filter: Arc<Filter>,
    /// The destination's layout.
    pub(crate) layout: Layout,
}

impl Placement {
    /// The manifest row of a listed child of the folder `entry`.
    fn row(&self, drive: &DriveId, entry: &FrontierEntry, item: &DriveItem) -> NewItem {
        let row = to_new_item(
            drive,
            item,
            Some(entry.folder_id.clone()),
            "",
            String::new(),
        );
        self.place(row, &entry.folder_path, &entry.folder_local_path)
    }

    /// Place a row inside the folder at `parent_remote` (local `parent_local`): its paths by the layout (with
    /// the alternative used if another item holds that local path) and the filters' verdict.
    pub(crate) fn place(
        &self,
        mut row: NewItem,
        parent_remote: &str,
        parent_local: &str,
    ) -> NewItem {
        row.remote_path = child_remote_path(parent_remote, &row.name);
        let folder = match self.layout {
            Layout::Date if row.kind == ItemKind::File => {
                date_folder(row.taken_at.as_deref().or(row.modified_at.as_deref()))
            }
            _ => parent_local.to_owned(),
        };
        // The state folder's name is odbackup's at the top of the destination, whatever the drive holds.
        // Suffixes come from the ID's stable spelling: the same whatever case the service uses today.
        let seed = row.item_id.stable_spelling().into_owned();
        let safe = match safe_name(&row.name, &seed).name {
            safe if folder.is_empty() => top_level_name(safe),
            safe => safe,
        };
        let alternative = disambiguated(&safe, &seed);
        row.local_path = child_path(&folder, &safe);
        row.local_path_on_clash = Some(child_path(&folder, &alternative));
        if row.kind == ItemKind::Remote && self.filter.spec().skip_shared {
            row.skip = Some(Skip::new(SkipClass::LeftOut, crate::shortcuts::LEFT_OUT));
        }
        if row.package.is_some() && self.filter.spec().skip_onenote {
            // Left as a package, never listed: nothing below it enters the manifest.
            row.kind = ItemKind::Package;
            row.skip = Some(Skip::new(
                SkipClass::LeftOut,
                "OneNote notebook: left out by --no-onenote",
            ));
        }
        row.excluded = judge(
            &self.filter,
            &row.remote_path,
            row.kind,
            row.media,
            row.size,
            row.taken_at.as_deref(),
            row.modified_at.as_deref(),
        );
        row
    }
}

/// The filters' verdict on a file or folder row (other kinds are skipped anyway).
fn judge(
    filter: &Filter,
    remote_path: &str,
    kind: ItemKind,
    media: MediaKind,
    size: Option<u64>,
    taken_at: Option<&str>,
    modified_at: Option<&str>,
) -> Option<String> {
    if !matches!(kind, ItemKind::File | ItemKind::Folder) {
        return None;
    }
    filter
        .rejects(&Candidate {
            remote_path,
            is_folder: kind == ItemKind::Folder,
            is_photo: media == MediaKind::Photo,
            is_video: media == MediaKind::Video,
            size: size.unwrap_or(0),
            taken_at,
            modified_at,
        })
        .map(str::to_owned)
}

/// Judge every file and folder row of the manifest again when `filter` differs from the one the rows were
/// last judged by (a fingerprint is kept in the manifest), so that changing filters needs no new listing.
/// Pages through the manifest; returns how many rows changed their verdict.
pub async fn apply_filter(
    manifest: &SharedManifest,
    filter: &Arc<Filter>,
) -> Result<u64, ManifestError> {
    const PAGE: usize = 4096;
    let fingerprint = filter.fingerprint();
    let known = fingerprint.clone();
    if manifest.call(|m| m.setting("filter")).await?.as_deref() == Some(known.as_str()) {
        return Ok(0);
    }
    if !filter.spec().skip_onenote {
        manifest
            .call(crate::manifest::Manifest::relist_skipped_notebooks)
            .await?;
    }
    let mut after = 0i64;
    let mut changed = 0u64;
    loop {
        let rows: Vec<SelectionRow> = manifest
            .call(move |m| m.selection_rows_after(after, PAGE))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.rowid;
        let marks: Vec<(i64, Option<String>)> = rows
            .into_iter()
            .filter_map(|row| {
                let verdict = judge(
                    filter,
                    &row.remote_path,
                    row.kind,
                    row.media,
                    Some(row.size),
                    row.taken_at.as_deref(),
                    row.modified_at.as_deref(),
                );
                (verdict != row.excluded).then_some((row.rowid, verdict))
            })
            .collect();
        if !marks.is_empty() {
            changed += marks.len() as u64;
            manifest
                .call(move |m| {
                    let marks: Vec<(i64, Option<&str>)> =
                        marks.iter().map(|(id, r)| (*id, r.as_deref())).collect();
                    m.set_excluded(&marks)
                })
                .await?;
        }
    }
    // Only once every row is judged: a run killed half-way judges them all again.
    manifest
        .call(move |m| m.set_setting("filter", &fingerprint))
        .await?;
    Ok(changed)
}

/// Times a folder listing refused by the service (400, 403, 404) is asked for in one run: such refusals come
/// and go during outages and account migrations (rclone #8736, #8098; onedrive-api-docs #1905).
const FOLDER_ATTEMPTS: u32 = 3;

/// Wait before asking again for a refused folder listing; doubles per attempt.
const FOLDER_RETRY_BACKOFF: Duration = Duration::from_millis(500);

#[allow(clippy::too_many_lines)] // one folder's listing loop with its retries and set-asides reads best in one place
async fn list_folder(
    listing: &Listing<'_>,
    entry: FrontierEntry,
) -> Result<FolderOutcome, CrawlError> {
    let Listing {
        graph,
        manifest,
        drive,
        personal,
        crawl_id,
        placement,
        reporter,
        progress,
        cancel,
    } = *listing;
    let mut cursor = entry.next_link.clone();
    let mut items_seen = 0u64;
    let mut refusals = 0u32;
    let mut guard = PagingGuard::default();
    if let Some(link) = &cursor {
        guard.follow(link);
    }
    loop {
        if cancel.is_cancelled() {
            return Ok(FolderOutcome::Interrupted { items: items_seen });
        }
        let answer = graph
            .children(drive, &entry.folder_id, cursor.as_deref())
            .await;
        let refusal = match answer {
            Err(err) if is_folder_specific(&err) || matches!(err, GraphError::Decode { .. }) => {
                Some(err)
            }
            Err(err) => {
                return Err(CrawlError::Listing {
                    path: entry.folder_path.clone(),
                    source: err,
                });
            }
            Ok(page) => match guard.check(&page) {
                Ok(()) => {
                    let rows: Vec<NewItem> = page
                        .value
                        .iter()
                        .map(|item| placement.row(drive, &entry, item))
                        .collect();
                    let count = rows.len();
                    items_seen += count as u64;
                    let folder_done = page.next_link.is_none();
                    let commit = PageCommit {
                        drive_id: drive.clone(),
                        folder_id: entry.folder_id.clone(),
                        items: rows,
                        next_link: page.next_link.clone(),
                    };
                    manifest
                        .call(move |m| m.commit_page(crawl_id, &commit))
                        .await?;
                    progress.send_modify(|p| p.pages += 1);
                    reporter.event(&Event::PageListed {
                        items: count,
                        folder_done,
                    });
                    match page.next_link {
                        Some(next) => {
                            guard.follow(&next);
                            cursor = Some(next);
                            refusals = 0;
                            continue;
                        }
                        None => return Ok(FolderOutcome::Listed { items: items_seen }),
                    }
                }
                Err(stalled) => {
                    let reason = format!(
                        "listing stopped: {stalled} (after {items_seen} items); the next run lists it again"
                    );
                    reporter.event(&Event::Notice {
                        kind: NoticeKind::FolderNotListed,
                        path: Some(&entry.folder_path),
                        message: &reason,
                        detail: None,
                    });
                    set_aside(listing, &entry, Skip::new(SkipClass::ListingFailed, reason)).await?;
                    return Ok(FolderOutcome::Incomplete { items: items_seen });
                }
            },
        };
        let Some(err) = refusal else { continue };
        let unreadable = matches!(err, GraphError::Decode { .. });
        refusals += 1;
        if !unreadable && refusals < FOLDER_ATTEMPTS {
            // Asked again after a pause: the refusal may be the service's passing trouble.
            let wait = FOLDER_RETRY_BACKOFF * (1 << (refusals - 1));
            tracing::info!(folder = %entry.folder_path, error = %err, "folder listing refused; asking again in {wait:?}");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {}
            }
            continue;
        }
        if personal && is_root_level(&entry.folder_path) && refuses_like_the_vault(&err) {
            // The Personal Vault looks like any folder (no facet marks it) and is refused every time: report
            // it by name, as not for apps, instead of as a failure on every run.
            let reason = Skip::new(
                SkipClass::Inaccessible,
                "not accessible to apps (OneDrive Personal Vault): the service refuses to list it",
            );
            set_aside(listing, &entry, reason).await?;
            return Ok(FolderOutcome::Inaccessible {
                items: items_seen,
                path: entry.folder_path.clone(),
            });
        }
        let reason = if unreadable {
            format!("listing unreadable: {err}; the next run lists it again")
        } else {
            format!("listing refused: {err}; the next run lists it again")
        };
        set_aside(listing, &entry, Skip::new(SkipClass::ListingFailed, reason)).await?;
        return Ok(FolderOutcome::Incomplete { items: items_seen });
    }
}

/// Record why a folder is not listed and take it out of the frontier (what is known below it counts as seen).
async fn set_aside(
    listing: &Listing<'_>,
    entry: &FrontierEntry,
    reason: Skip,
) -> Result<(), CrawlError> {
    let (drive, folder, crawl_id) = (
        listing.drive.clone(),
        entry.folder_id.clone(),
        listing.crawl_id,
    );
    listing
        .manifest
        .call(move |m| m.refuse_folder(crawl_id, &drive, &folder, &reason))
        .await?;
    Ok(())
}

/// `/Name`: a folder at the top of the drive.
fn is_root_level(remote_path: &str) -> bool {
    remote_path.len() > 1 && remote_path.rfind('/') == Some(0)
}

/// The answer the Personal Vault gives every time: 400 `invalidRequest` / `invalidResourceId` ("`ObjectHandle`
/// is Invalid", rclone #8098). Judged by status and code, never by the message.
fn refuses_like_the_vault(err: &GraphError) -> bool {
    err.status() == Some(400)
        && (err.has_code("invalidResourceId") || err.has_code("invalidRequest"))
}

/// Errors that concern one folder only: the crawl records them and goes on.
fn is_folder_specific(err: &GraphError) -> bool {
    matches!(err.status(), Some(400 | 403 | 404)) && !err.is_auth()
}

async fn resolve_scope(
    graph: &GraphClient,
    drive: &DriveId,
    scope: &Scope,
) -> Result<DriveItem, CrawlError> {
    let (item, label) = match scope {
        Scope::Root => (graph.root(drive).await, "the drive root".to_owned()),
        Scope::Path(path) => (
            graph
                .item_by_path(drive, &normalize_remote_path(path))
                .await,
            format!("path {path}"),
        ),
        Scope::Special(name) => (
            graph.special_folder(drive, name).await,
            format!("special folder {name}"),
        ),
    };
    let item = item.map_err(|source| CrawlError::Scope {
        scope: label.clone(),
        source,
    })?;
    if item.folder.is_none() && item.root.is_none() && item.package.is_none() {
        return Err(CrawlError::NotAFolder { scope: label });
    }
    Ok(item)
}

/// `/a/b` form: one leading slash, no trailing slash, `/` for the root.
pub fn normalize_remote_path(path: &str) -> String {
    let trimmed: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", trimmed.join("/"))
}

pub(crate) fn child_remote_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The remote path of the scope's root folder.
fn scope_remote_path(scope: &Scope, root: &DriveItem) -> String {
    match scope {
        Scope::Root => "/".to_owned(),
        Scope::Path(p) => normalize_remote_path(p),
        Scope::Special(_) => {
            // A special folder's display name is localized and the folder may have been moved, so its path
            // comes from where the server says it is.
            let name = root.name.clone().unwrap_or_default();
            let parent = root
                .parent_reference
                .as_ref()
                .and_then(|p| p.path.as_deref())
                .map_or_else(|| "/".to_owned(), parent_path_from_reference);
            child_remote_path(&parent, &name)
        }
    }
}

/// `/drive/root:/a/b` or `/drives/{id}/root:/a%20b` → `/a/b` (percent-decoded).
fn parent_path_from_reference(reference: &str) -> String {
    let after = reference.split_once("root:").map_or("", |(_, rest)| rest);
    let decoded = percent_encoding::percent_decode_str(after).decode_utf8_lossy();
    normalize_remote_path(&decoded)
}

/// The local relative path mirroring a remote path given as a whole (the scope root only; below it,
/// paths are built name by name so that a `/` inside a name cannot create a folder).
fn local_path_of_remote(remote: &str, item_id: &str) -> String {
    remote
        .split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(depth, segment)| match safe_name(segment, item_id).name {
            // `--root /.odbackup`: the state folder's name stays odbackup's.
            safe if depth == 0 => top_level_name(safe),
            safe => safe,
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn parent_of(item: &DriveItem) -> Option<ItemId> {
    item.parent_reference.as_ref().and_then(|p| p.id.clone())
}

/// Photo extensions recognised when the service sent no photo facet (it often doesn't for RAW and HEIC).
const PHOTO_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "heic", "heif", "png", "gif", "tif", "tiff", "bmp", "webp", "dng", "cr2", "cr3",
    "nef", "arw", "orf", "rw2", "raf", "srw", "avif", "jxl",
];
/// Video extensions recognised when the service sent no video facet.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "mov", "m4v", "avi", "mkv", "3gp", "3g2", "wmv", "mts", "m2ts", "webm", "mpg", "mpeg",
    "hevc",
];

/// Photo, video or other, by facet first and extension second.
pub fn media_kind(name: &str, has_photo: bool, has_video: bool) -> MediaKind {
    if has_video {
        return MediaKind::Video;
    }
    if has_photo {
        return MediaKind::Photo;
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if PHOTO_EXTENSIONS.contains(&ext.as_str()) {
        MediaKind::Photo
    } else if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
        MediaKind::Video
    } else {
        MediaKind::Other
    }
}

/// The package type of a `OneNote` notebook, as the manifest stores it.
pub const ONENOTE_PACKAGE: &str = "oneNote";

/// Whether a listed item is a `OneNote` notebook (`package: {type: "oneNote"}`; the type compared without regard
/// to case).
fn is_notebook(item: &DriveItem) -> bool {
    item.package
        .as_ref()
        .and_then(|p| p.package_type.as_deref())
        .is_some_and(|t| t.eq_ignore_ascii_case(ONENOTE_PACKAGE))
}

/// Convert one listed item into its manifest row. Pure, so the rules are unit-tested.
pub fn to_new_item(
    drive: &DriveId,
    item: &DriveItem,
    parent_id: Option<ItemId>,
    remote_path: &str,
    local_path: String,
) -> NewItem {
    let name = item.name.clone().unwrap_or_default();
    let hashes = item.file.as_ref().and_then(|f| f.hashes.as_ref());
    let notebook = is_notebook(item);
    let (kind, skip) = if notebook {
        // A notebook's own `/content` answers 404, but its children are ordinary section files (`.one`,
        // `.onetoc2`) that download like any file: it is listed and mirrored as a folder named like the notebook.
        // Personal drives give the package facet alone, business ones a folder facet beside it
        // (https://learn.microsoft.com/en-us/graph/api/resources/package; wisecom-oy/atlas #72, lionello/onedrive-cli #10).
        (ItemKind::Folder, None)
    } else if item.package.is_some() {
        let kind = item
            .package
            .as_ref()
            .and_then(|p| p.package_type.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        (
            ItemKind::Package,
            Some(Skip::new(
                SkipClass::Package,
                format!("{kind} package: the service offers no download for it"),
            )),
        )
    } else if item.remote_item.is_some() {
        // A shortcut to a folder or file shared from another drive ("Add to My files"): followed after the
        // listing, from its own drive (see `crate::shortcuts`).
        (ItemKind::Remote, None)
    } else if item.folder.is_some() || item.root.is_some() {
        (ItemKind::Folder, None)
    } else if item.file.is_some() {
        if item.malware.is_some() {
            (
                ItemKind::File,
                Some(Skip::new(
                    SkipClass::Malware,
                    "flagged as malware by OneDrive: the service refuses to serve it",
                )),
            )
        } else {
            (ItemKind::File, None)
        }
    } else {
        (
            ItemKind::Other,
            Some(Skip::new(
                SkipClass::NoContent,
                "neither a file nor a folder: no content to download",
            )),
        )
    };
    let modified_at = item
        .file_system_info
        .as_ref()
        .and_then(|f| f.last_modified_date_time.clone())
        .or_else(|| item.last_modified_date_time.clone());
    let created_at = item
        .file_system_info
        .as_ref()
        .and_then(|f| f.created_date_time.clone())
        .or_else(|| item.created_date_time.clone());
    // Only a file that will be fetched needs it; the manifest keeps it apart and briefly (a credential).
    let listed_url = match (kind, &skip) {
        (ItemKind::File, None) => item
            .download_url
            .as_ref()
            .map(|u| StoredUrl::new(u.expose().to_owned())),
        _ => None,
    };
    // Stored and compared canonically (see `crate::ids`); the service's own spelling is kept for listing URLs.
    let item_id = item.id.canonical();
    NewItem {
        listed_url,
        drive_id: drive.canonical(),
        served_id: (kind == ItemKind::Folder && item_id.as_str() != item.id.as_str())
            .then(|| item.id.as_str().to_owned()),
        item_id,
        parent_id: parent_id.map(|p| p.canonical()),
        name: name.clone(),
        remote_path: remote_path.to_owned(),
        local_path,
        kind,
        size: item.size,
        quick_xor: hashes.and_then(|h| h.quick_xor_hash.clone()),
        sha1: hashes.and_then(|h| h.sha1_hash.clone()),
        sha256: hashes.and_then(|h| h.sha256_hash.clone()),
        etag: item.e_tag.clone(),
        ctag: item.c_tag.clone(),
        mime_type: item.file.as_ref().and_then(|f| f.mime_type.clone()),
        created_at,
        modified_at,
        taken_at: item.photo.as_ref().and_then(|p| p.taken_date_time.clone()),
        media: if kind == ItemKind::File {
            media_kind(&name, item.photo.is_some(), item.video.is_some())
        } else {
            MediaKind::Other
        },
        skip,
        excluded: None,
        local_path_on_clash: None,
        package: notebook.then(|| ONENOTE_PACKAGE.to_owned()),
        remote_ref: item.remote_item.as_ref().map(|r| {
            let drive = r
                .parent_reference
                .as_ref()
                .and_then(|p| p.drive_id.clone())
                .unwrap_or_default();
            // Canonical on both sides: `remoteItem` references drop a leading zero from the drive ID
            // (abraunegg/onedrive #3115) and change case (onedrive-api-docs #1902).
            format!("{}/{}", crate::ids::canonical_drive_id(&drive), r.id.key())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_are_stable_and_normalised() {
        assert_eq!(Scope::Root.key(), "root");
        assert_eq!(
            Scope::Path("Pictures/2021/".into()).key(),
            "path:/Pictures/2021"
        );
        assert_eq!(
            Scope::Special("CameraRoll".into()).key(),
            "special:cameraroll"
        );
    }

    #[test]
    fn parent_reference_paths_are_decoded() {
        assert_eq!(parent_path_from_reference("/drive/root:"), "/");
        assert_eq!(
            parent_path_from_reference("/drives/abc/root:/My%20Pictures/x"),
            "/My Pictures/x"
        );
    }

    #[test]
    fn media_kind_prefers_facets_then_extensions() {
        assert_eq!(media_kind("a.txt", true, false), MediaKind::Photo);
        assert_eq!(media_kind("a.jpg", false, true), MediaKind::Video);
        assert_eq!(media_kind("IMG_1.HEIC", false, false), MediaKind::Photo);
        assert_eq!(media_kind("clip.MOV", false, false), MediaKind::Video);
        assert_eq!(media_kind("notes.txt", false, false), MediaKind::Other);
        assert_eq!(media_kind("noext", false, false), MediaKind::Other);
    }
}
