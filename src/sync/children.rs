//! Listing by walking folders (`/children`): the frontier of folders still to list lives in the manifest, and
//! every page is committed in one transaction with the frontier update, so a walk killed at any point resumes
//! where it stopped, with no duplicate rows and no folder listed twice. Up to `list_concurrency` folders are
//! listed at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::graph::{GraphClient, GraphError, PagingGuard};
use crate::ids::{DriveId, ItemId};
use crate::manifest::{FrontierEntry, NewItem, PageCommit, Skip, SkipClass};
use crate::progress::{CrawlProgress, Event, NoticeKind, Reporter};
use crate::shared::SharedManifest;

use super::placement::Placement;
use super::scope::{CrawlError, ListingContext};

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
pub(crate) async fn walk_frontier(
    ctx: &ListingContext<'_>,
    crawl_id: i64,
) -> Result<Walk, CrawlError> {
    let ListingContext {
        graph,
        manifest,
        drive,
        options,
        reporter,
        cancel,
        progress,
    } = *ctx;
    let mut walk = Walk::default();
    let concurrency = options.list_concurrency.max(1);
    let mut in_flight: HashSet<ItemId> = HashSet::new();
    let mut tasks: JoinSet<(ItemId, Result<FolderOutcome, CrawlError>)> = JoinSet::new();
    loop {
        if !cancel.is_cancelled() && tasks.len() < concurrency {
            let want = concurrency - tasks.len();
            // Ask for more than we can start: the ones already being listed are still in the frontier.
            let limit = want + in_flight.len();
            let entries = manifest.frontier(crawl_id, limit).await?;
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
pub(crate) async fn list_queued(ctx: &ListingContext<'_>) -> Result<Walk, CrawlError> {
    let Some(crawl_id) = ctx
        .manifest
        .queued_listing(ctx.drive.clone(), ctx.options.scope.key())
        .await?
    else {
        return Ok(Walk {
            complete: true,
            ..Walk::default()
        });
    };
    walk_frontier(ctx, crawl_id).await
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

/// Times a folder listing refused by the service (400, 403, 404) is asked for in one run: such refusals come
/// and go during outages and account migrations (rclone #8736, #8098; onedrive-api-docs #1905).
const FOLDER_ATTEMPTS: u32 = 3;

/// Wait before asking again for a refused folder listing; doubles per attempt.
const FOLDER_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// List one folder page by page, committing each with its nextLink; a refusal is asked again, then set aside.
#[allow(clippy::too_many_lines)] // one paging loop whose exits (listed, refused, vault, stalled) read best side by side
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
                    manifest.commit_page(crawl_id, commit).await?;
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
    listing
        .manifest
        .refuse_folder(
            listing.crawl_id,
            listing.drive.clone(),
            entry.folder_id.clone(),
            reason,
        )
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
