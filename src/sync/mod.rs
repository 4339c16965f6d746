//! Listing a drive into the manifest: from the root, a path or a special folder, by walking its folders
//! (`children`) or by one `/delta` listing (`delta`), and afterwards by asking `/delta` for what changed.
//!
//! ```text
//!   mod (crawl: one full listing) ─► children (walk the frontier) ─► placement ─► convert
//!        │                            ▲                                ▲
//!        └─► delta (full listing or a round of changes) ───────────────┘
//!   scope (Scope, CrawlOptions, ListingContext, CrawlError) sits below them all; convert (Graph item → row)
//!   below it.
//! ```
//!
//! The listing knows Graph items and manifest rows and converts between them; it never prints and never
//! touches local files.

mod children;
mod convert;
pub(crate) mod delta;
mod placement;
mod scope;

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::CrawlMethod;
use crate::graph::{DriveItem, GraphClient};
use crate::ids::DriveId;
use crate::manifest::{ItemKind, PageCommit};
use crate::progress::{CrawlProgress, Event, NoticeKind, Reporter};
use crate::shared::SharedManifest;

pub use crate::shortcuts::SharedSummary;
pub(crate) use children::walk_frontier;
pub use convert::normalize_remote_path;
use convert::{local_path_of_remote, parent_of};
pub(crate) use convert::{media_kind, to_new_item};
pub use delta::DeltaSummary;
use delta::Enumerated;
pub(crate) use placement::apply_filter;
pub(crate) use scope::ListingContext;
use scope::scope_remote_path;
pub use scope::{
    CrawlError, CrawlOptions, DEFAULT_FULL_LISTING_DAYS, DEFAULT_LIST_CONCURRENCY, Scope,
};

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
    pub incremental: Option<delta::DeltaSummary>,
    /// What following the shortcuts to shared folders and files did, when the run followed them.
    pub shared: Option<SharedSummary>,
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
    let ctx = scope::ListingContext {
        graph,
        manifest,
        drive,
        options,
        reporter: &reporter,
        cancel,
        progress,
    };
    let result = crawl_inner(&ctx).await;
    progress.send_modify(|p| p.ended = true);
    result
}

/// [`crawl`] without marking `progress` ended: the caller lists more after it (the shortcuts' targets, see
/// `crate::shortcuts`) and ends it itself.
#[allow(clippy::too_many_lines)] // the crawl in order: root, delta listing or its fallback, folder walk, finish
pub(crate) async fn crawl_inner(
    ctx: &scope::ListingContext<'_>,
) -> Result<CrawlSummary, CrawlError> {
    let scope::ListingContext {
        graph,
        manifest,
        drive,
        options,
        reporter,
        progress,
        ..
    } = *ctx;
    let root = resolve_scope(graph, drive, &options.scope).await?;
    let scope_key = options.scope.key();
    // The service may have changed the root's ID since the last run (it did for OneDrive Personal roots): it
    // is still the same folder.
    if manifest
        .rekey_scope_root(drive.clone(), scope_key.clone(), root.id.clone())
        .await?
    {
        tracing::info!(root = %root.id, "the scope's root folder has a new ID: its rows follow it");
    }
    let root_path = scope_remote_path(&options.scope, &root);
    let root_local = local_path_of_remote(&root_path, root.id.stable_spelling().as_ref());
    let mut root_row = to_new_item(drive, &root, parent_of(&root), &root_path, root_local);
    root_row.kind = ItemKind::Folder;
    let start = manifest
        .begin_crawl(drive.clone(), scope_key.clone(), root_row)
        .await?;
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
        let cursor = manifest
            .delta_state(drive.clone(), scope_key.clone())
            .await?
            .and_then(|state| state.cursor);
        // A fresh crawl, or one whose delta enumeration was interrupted (its cursor is saved). `--full` starts
        // the enumeration again rather than trusting a saved position.
        if !start.resumed || cursor.is_some() {
            let cursor = if options.full { None } else { cursor };
            let enumerated = delta::full_listing(ctx, &scope_key, &root.id, cursor).await?;
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
                    manifest.commit_page(crawl_id, listed_root).await?;
                    summary.marked_deleted = manifest.finish_crawl(crawl_id).await?;
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
                    manifest
                        .forget_delta(drive.clone(), scope_key.clone())
                        .await?;
                    walk_from_root = true;
                }
            }
        }
    }
    if walk_from_root {
        remember_delta_start(graph, manifest, drive, options, &root, &**reporter).await?;
    }

    let walked = walk_frontier(ctx, crawl_id).await?;
    summary.folders_listed += walked.folders_listed;
    summary.items_seen += walked.items_seen;
    summary.folders_refused += walked.folders_refused;
    summary.folders_unreadable += walked.folders_unreadable;
    summary.inaccessible = walked.inaccessible;
    if !walked.complete {
        return Ok(summary);
    }
    summary.marked_deleted = manifest.finish_crawl(crawl_id).await?;
    if summary.folders_unreadable == 0 {
        manifest
            .promote_pending_link(drive.clone(), scope_key)
            .await?;
    } else {
        // Changes from now on would never bring back what is in the unread folders: list in full next time.
        manifest.forget_delta(drive.clone(), scope_key).await?;
    }
    summary.complete = true;
    reporter.event(&Event::CrawlFinished {
        folders: summary.folders_listed,
        items: summary.items_seen,
    });
    Ok(summary)
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
    reporter: &dyn Reporter,
) -> Result<(), CrawlError> {
    let no_incremental = |why: &str, err: &dyn std::fmt::Display| {
        reporter.event(&Event::Notice {
            kind: NoticeKind::IncrementalUnavailable,
            path: Some(&options.scope.key()),
            message: &format!(
                "no incremental runs for this scope: {why}; the next run lists it in full again"
            ),
            detail: Some(&err.to_string()),
        });
    };
    let delta_root = if options.delta_from_drive_root && options.scope != Scope::Root {
        match graph.root(drive).await {
            Ok(root) => root.id,
            Err(err) => {
                no_incremental("could not read the drive root", &err);
                return Ok(());
            }
        }
    } else {
        scope_root.id.clone()
    };
    match graph.delta_latest(drive, &delta_root).await {
        Ok(link) => {
            manifest
                .set_pending_link(drive.clone(), options.scope.key(), delta_root, link)
                .await?;
        }
        Err(err) if err.is_auth() => {
            return Err(CrawlError::Listing {
                path: "/".to_owned(),
                source: err,
            });
        }
        Err(err) => {
            no_incremental("the service gave no delta link", &err);
        }
    }
    Ok(())
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
    let item = item.map_err(|source| match scope {
        Scope::Special(name) if matches!(source.status(), Some(403 | 404)) => {
            CrawlError::SpecialFolderMissing {
                name: name.clone(),
                source,
            }
        }
        _ => CrawlError::Scope {
            scope: label.clone(),
            source,
        },
    })?;
    if item.folder.is_none() && item.root.is_none() && item.package.is_none() {
        return Err(CrawlError::NotAFolder { scope: label });
    }
    Ok(item)
}
