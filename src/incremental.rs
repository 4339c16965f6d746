//! Incremental runs: after a complete crawl, ask `/delta` for what changed since (one request per page of
//! changes, not per folder) and apply it to the manifest: new and modified files become pending, renamed and
//! moved items get their new paths (the downloader then moves the files instead of fetching them again),
//! deleted items are flagged and kept.
//!
//! The service does not promise any order within a round, so pages are staged in the manifest as they arrive
//! (with the cursor, in one transaction: a killed round resumes at the next page) and applied once the last page
//! is in, parents before children. Items are tracked by ID, never by path. On business drives the delta link
//! lists the whole drive; changes whose parent is not inside the scope are dropped.
//!
//! Like the crawler, this module never prints and never touches local files.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::crawl::{CrawlError, CrawlOptions, CrawlProgress, Placement, parent_of, to_new_item};
use crate::graph::{GraphClient, GraphError};
use crate::ids::{DriveId, ItemId};
use crate::manifest::{ItemKind, NewItem, Resolution, StagedChange};
use crate::progress::{Event, Reporter};
use crate::shared::SharedManifest;

/// Staged changes resolved per manifest call.
const BATCH: usize = 512;

/// What an incremental round did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeltaSummary {
    /// Pages of changes fetched.
    pub pages: u64,
    /// Changes applied: items added, changed, moved or deleted.
    pub changes: u64,
    /// Items flagged as deleted remotely.
    pub deleted: u64,
    /// Folders whose path changed (their contents follow).
    pub folders_moved: u64,
    /// Folders added or changed.
    pub folders: u64,
}

/// How a round ended.
#[derive(Debug)]
pub enum DeltaOutcome {
    /// The round is applied.
    Applied(DeltaSummary),
    /// The scope has no usable delta link (never completed a crawl, or the service asked for a resync, which
    /// has already been recorded): crawl it in full.
    NeedsFullCrawl,
    /// Cancelled between pages; the next run resumes at the saved cursor.
    Interrupted,
}

/// Run one incremental round for `options.scope` of `drive`, if the scope has a delta link.
pub async fn sync(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    options: &CrawlOptions,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    progress: &watch::Sender<CrawlProgress>,
) -> Result<DeltaOutcome, CrawlError> {
    let scope_key = options.scope.key();
    let state = {
        let (drive, key) = (drive.clone(), scope_key.clone());
        manifest
            .call(move |m| {
                Ok::<_, crate::manifest::ManifestError>(if m.has_unfinished_crawl(&drive, &key)? {
                    None
                } else {
                    m.delta_state(&drive, &key)?
                })
            })
            .await?
    };
    let Some(state) = state else {
        return Ok(DeltaOutcome::NeedsFullCrawl);
    };
    let Some(mut link) = state.cursor.clone().or(state.delta_link.clone()) else {
        return Ok(DeltaOutcome::NeedsFullCrawl);
    };
    reporter.event(&Event::CrawlStarted {
        scope: &scope_key,
        resumed: state.cursor.is_some(),
    });
    let mut summary = DeltaSummary::default();
    let final_link = loop {
        if cancel.is_cancelled() {
            return Ok(DeltaOutcome::Interrupted);
        }
        let page = match graph.delta(drive, &state.delta_root_id, Some(&link)).await {
            Ok(page) => page,
            Err(GraphError::ResyncRequired { .. }) => {
                tracing::info!(scope = %scope_key, "the service asked for a resync: listing the scope in full");
                let (drive, key) = (drive.clone(), scope_key.clone());
                manifest.call(move |m| m.forget_delta(&drive, &key)).await?;
                return Ok(DeltaOutcome::NeedsFullCrawl);
            }
            Err(source) => {
                return Err(CrawlError::Listing {
                    path: scope_key.clone(),
                    source,
                });
            }
        };
        summary.pages += 1;
        let next = stage_page(manifest, drive, &scope_key, &page).await?;
        reporter.event(&Event::PageListed {
            items: page.value.len(),
            folder_done: false,
        });
        match next {
            PageEnd::More(next) => link = next,
            PageEnd::Last(delta) => break delta,
        }
    };
    let placement = Placement {
        filter: Arc::clone(&options.filter),
        layout: options.layout,
    };
    let scope_root = {
        let (drive, key) = (drive.clone(), scope_key.clone());
        manifest.call(move |m| m.scope_root(&drive, &key)).await?
    };
    let roots = [Some(state.delta_root_id.clone()), scope_root]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    apply_staged(
        manifest,
        drive,
        &scope_key,
        &roots,
        &placement,
        &mut summary,
    )
    .await?;
    {
        let (drive, key, changes) = (drive.clone(), scope_key.clone(), summary.changes);
        manifest
            .call(move |m| m.finish_delta_round(&drive, &key, &final_link, changes))
            .await?;
    }
    progress.send_modify(|p| p.pages += 1);
    reporter.event(&Event::CrawlFinished {
        folders: 0,
        items: summary.changes,
    });
    Ok(DeltaOutcome::Applied(summary))
}

/// A full listing of the scope by `/delta` from nothing (the crawl's root row is in the manifest already): page
/// through it, staging as for a round, apply it, and keep the last page's delta link for the next run. Resumes
/// at `cursor` when a previous enumeration was interrupted. `None` when cancelled between pages.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enumerate(
    graph: &GraphClient,
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
    scope_root: &ItemId,
    options: &CrawlOptions,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
    cursor: Option<String>,
) -> Result<Option<DeltaSummary>, CrawlError> {
    if cursor.is_none() {
        let (d, k, root) = (drive.clone(), scope_key.to_owned(), scope_root.clone());
        manifest
            .call(move |m| m.begin_delta_enumeration(&d, &k, &root))
            .await?;
    }
    let mut summary = DeltaSummary::default();
    // The next page is asked for while this one is staged: the service's time and ours overlap instead of
    // adding up, one page ahead at most (its link is only known once the page before it is in).
    let fetch = |link: Option<String>| {
        let (graph, drive, root) = (graph.clone(), drive.clone(), scope_root.clone());
        tokio::spawn(async move { graph.delta(&drive, &root, link.as_deref()).await })
    };
    let listing_failed = |source| CrawlError::Listing {
        path: scope_key.to_owned(),
        source,
    };
    let mut fetching = fetch(cursor);
    let final_link = loop {
        if cancel.is_cancelled() {
            fetching.abort();
            return Ok(None);
        }
        let page = fetching
            .await
            .map_err(|joined| {
                listing_failed(GraphError::Unexpected {
                    what: "listing changes".to_owned(),
                    reason: joined.to_string(),
                })
            })?
            .map_err(listing_failed)?;
        summary.pages += 1;
        let ahead = page.next_link.clone().map(|next| fetch(Some(next)));
        let staged = stage_page(manifest, drive, scope_key, &page).await;
        if staged.is_err()
            && let Some(ahead) = &ahead
        {
            ahead.abort();
        }
        let next = staged?;
        reporter.event(&Event::PageListed {
            items: page.value.len(),
            folder_done: false,
        });
        fetching = match (next, ahead) {
            (PageEnd::Last(delta), _) => break delta,
            (PageEnd::More(_), Some(ahead)) => ahead,
            (PageEnd::More(link), None) => fetch(Some(link)),
        };
    };
    let placement = Placement {
        filter: Arc::clone(&options.filter),
        layout: options.layout,
    };
    apply_staged(
        manifest,
        drive,
        scope_key,
        std::slice::from_ref(scope_root),
        &placement,
        &mut summary,
    )
    .await?;
    let (d, k, changes) = (drive.clone(), scope_key.to_owned(), summary.changes);
    manifest
        .call(move |m| m.finish_delta_round(&d, &k, &final_link, changes))
        .await?;
    Ok(Some(summary))
}

/// Where a staged page leaves the round.
enum PageEnd {
    /// More pages follow here.
    More(String),
    /// The last page: the link for the next round.
    Last(String),
}

/// Stage one page of a round with its cursor.
async fn stage_page(
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
    page: &crate::graph::Page,
) -> Result<PageEnd, CrawlError> {
    let changes: Vec<(NewItem, bool)> = page
        .value
        .iter()
        .map(|item| {
            (
                to_new_item(drive, item, parent_of(item), "", String::new()),
                item.deleted.is_some(),
            )
        })
        .collect();
    let cursor = page.next_link.clone();
    let (d, k) = (drive.clone(), scope_key.to_owned());
    manifest
        .call(move |m| m.stage_delta_page(&d, &k, &changes, cursor.as_deref()))
        .await?;
    match (&page.next_link, &page.delta_link) {
        (Some(next), _) => Ok(PageEnd::More(next.clone())),
        (None, Some(delta)) => Ok(PageEnd::Last(delta.clone())),
        (None, None) => Err(CrawlError::Listing {
            path: scope_key.to_owned(),
            source: GraphError::Unexpected {
                what: "listing changes".to_owned(),
                reason: "the last page holds no @odata.deltaLink".to_owned(),
            },
        }),
    }
}

/// Apply the staged changes in passes: a change is applied once its parent is known and not itself waiting,
/// so parents always go first whatever order the pages came in. Stops when a pass makes no progress.
async fn apply_staged(
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &[ItemId],
    placement: &Placement,
    summary: &mut DeltaSummary,
) -> Result<(), CrawlError> {
    loop {
        let mut progressed = false;
        let mut after = 0i64;
        loop {
            let staged: Vec<StagedChange> = {
                let (drive, key) = (drive.clone(), scope_key.to_owned());
                manifest
                    .call(move |m| m.staged_after(&drive, &key, after, BATCH))
                    .await?
            };
            let Some(last) = staged.last() else { break };
            after = last.seq;
            let resolutions = {
                let (drive, key, roots) = (drive.clone(), scope_key.to_owned(), roots.to_vec());
                let filter = Arc::clone(&placement.filter);
                let layout = placement.layout;
                manifest
                    .call(move |m| {
                        let placement = Placement { filter, layout };
                        m.apply_staged_batch(&drive, &key, staged, |m, change| {
                            resolve(m, &drive, &key, &roots, &placement, change)
                        })
                    })
                    .await?
            };
            if resolutions.is_empty() {
                continue;
            }
            progressed = true;
            for r in &resolutions {
                match r {
                    Resolution::Upsert {
                        moved_from, item, ..
                    } => {
                        summary.changes += 1;
                        if item.kind == ItemKind::Folder {
                            summary.folders += 1;
                        }
                        if moved_from.is_some() {
                            summary.folders_moved += 1;
                        }
                    }
                    Resolution::Delete { .. } => {
                        summary.changes += 1;
                        summary.deleted += 1;
                    }
                    Resolution::Drop { .. } => {}
                }
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// Decide one staged change; `None` when it must wait for its parent.
fn resolve(
    m: &crate::manifest::Manifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &[ItemId],
    placement: &Placement,
    change: StagedChange,
) -> Result<Option<Resolution>, crate::manifest::ManifestError> {
    let StagedChange { seq, item, deleted } = change;
    let known = m.known_item(drive, &item.item_id)?;
    if deleted {
        return Ok(Some(match known {
            Some(k) if !k.remote_deleted => Resolution::Delete {
                seq,
                item_id: item.item_id,
            },
            _ => Resolution::Drop { seq },
        }));
    }
    // The scope's root and the folder the links list stay as the full crawl recorded them.
    let Some(parent_id) = item.parent_id.clone() else {
        return Ok(Some(Resolution::Drop { seq }));
    };
    if roots.contains(&item.item_id) {
        return Ok(Some(Resolution::Drop { seq }));
    }
    if m.is_staged(drive, scope_key, &parent_id)? {
        return Ok(None);
    }
    let parent = m
        .known_item(drive, &parent_id)?
        .filter(|p| p.kind == ItemKind::Folder && !p.remote_deleted);
    let Some(parent) = parent else {
        // Outside the scope: forget it, unless it was inside and moved out (then it is gone from the backup).
        return Ok(Some(match known {
            Some(k) if !k.remote_deleted => Resolution::Delete {
                seq,
                item_id: item.item_id,
            },
            _ => Resolution::Drop { seq },
        }));
    };
    let placed = placement.place(item, &parent.remote_path, &parent.local_path);
    let moved_from = known
        .filter(|k| k.kind == ItemKind::Folder && k.remote_path != placed.remote_path)
        .map(|k| (k.remote_path, k.local_path));
    Ok(Some(Resolution::Upsert {
        seq,
        item: Box::new(placed),
        moved_from,
    }))
}
