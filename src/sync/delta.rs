//! Listing by `/delta`: a full listing of a scope in one sequence of pages, and incremental runs: after a complete crawl, ask `/delta` for what changed since (one request per page of
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

use std::collections::HashSet;
use std::sync::Arc;

use super::children::list_queued;
use super::convert::{parent_of, to_new_item};
use super::placement::Placement;
use super::scope::{CrawlError, ListingContext, Scope};
use crate::graph::{GraphClient, GraphError, PagingGuard};
use crate::ids::{DriveId, ItemId};
use crate::manifest::{Arrival, ItemKind, KnownItem, NewItem, Resolution, StagedChange};
use crate::progress::{Event, NoticeKind};
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
    /// Folders listed in full because delta showed them without their contents (moved into the scope).
    pub folders_listed: u64,
    /// Of those, folders that could not be listed even when asked again: the next run lists the scope in full.
    pub folders_unreadable: u64,
    /// Folders the service never lets apps list (a Personal Vault), by remote path.
    pub inaccessible: Vec<String>,
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
#[allow(clippy::too_many_lines)] // the round in order: page, stage, apply, queue; each exit says why it lists in full
pub async fn changes_round(ctx: &ListingContext<'_>) -> Result<DeltaOutcome, CrawlError> {
    let ListingContext {
        graph,
        manifest,
        drive,
        options,
        reporter,
        cancel,
        progress,
    } = *ctx;
    let scope_key = options.scope.key();
    let state = manifest
        .resumable_delta_state(drive.clone(), scope_key.clone())
        .await?;
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
    let mut guard = PagingGuard::default();
    let final_link = loop {
        if cancel.is_cancelled() {
            return Ok(DeltaOutcome::Interrupted);
        }
        guard.follow(&link);
        let page = match graph.delta(drive, &state.delta_root_id, Some(&link)).await {
            Ok(page) => page,
            Err(err) if is_dead_link(&err) => {
                // A resync (410), or a saved link the service no longer understands (400/404): what changed
                // since cannot be had, so the scope is listed in full and reconciled.
                tracing::info!(scope = %scope_key, error = %err, "the saved change link was refused: listing the scope in full");
                forget_delta(manifest, drive, &scope_key).await?;
                return Ok(DeltaOutcome::NeedsFullCrawl);
            }
            Err(err) if err.is_listing_broken() => {
                // The saved link's listing keeps failing ("retry with backoff, and fall back to a full resync"):
                // listed in full instead, which walks the folders if delta fails that way too.
                reporter.event(&Event::Notice {
                    kind: NoticeKind::FullListing,
                    path: Some(&scope_key),
                    message: "listing the changes keeps failing: listing the scope in full",
                    detail: Some(&err.to_string()),
                });
                forget_delta(manifest, drive, &scope_key).await?;
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
        if let Err(stalled) = guard.check(&page) {
            reporter.event(&Event::Notice {
                kind: NoticeKind::FullListing,
                path: Some(&scope_key),
                message: &format!(
                    "listing the changes made no progress ({stalled}): listing the scope in full"
                ),
                detail: None,
            });
            forget_delta(manifest, drive, &scope_key).await?;
            return Ok(DeltaOutcome::NeedsFullCrawl);
        }
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
    let scope_root = manifest
        .scope_root(drive.clone(), scope_key.clone())
        .await?;
    let roots = Roots {
        delta_root: state.delta_root_id.clone(),
        scope_root: scope_root.unwrap_or_else(|| state.delta_root_id.clone()),
    };
    // Below the drive root, a folder moved in from outside arrives alone: its contents must be listed.
    let list_new_folders = options.scope != Scope::Root;
    let round = apply_staged(
        manifest,
        drive,
        &scope_key,
        &roots,
        &placement,
        list_new_folders,
        &mut summary,
    )
    .await?;
    if round.unplaced > 0 {
        reporter.event(&Event::Notice {
            kind: NoticeKind::FullListing,
            path: Some(&scope_key),
            message: &format!(
                "{} changes name parents this backup does not know (IDs the service changed?): listing the scope in full",
                round.unplaced
            ),
            detail: None,
        });
        forget_delta(manifest, drive, &scope_key).await?;
        return Ok(DeltaOutcome::NeedsFullCrawl);
    }
    manifest
        .finish_delta_round(
            drive.clone(),
            scope_key.clone(),
            final_link,
            summary.changes,
        )
        .await?;
    // Folders this round (or an interrupted earlier one) queued: list them now, before the run can end well.
    let walked = list_queued(ctx).await?;
    summary.folders_listed = walked.folders_listed;
    summary.changes += walked.items_seen;
    summary.folders_unreadable = walked.folders_unreadable;
    summary.inaccessible = walked.inaccessible;
    if walked.folders_unreadable > 0 {
        // The next run must list them again: it starts from a full listing.
        forget_delta(manifest, drive, &scope_key).await?;
    }
    if !walked.complete {
        return Ok(DeltaOutcome::Interrupted);
    }
    progress.send_modify(|p| p.pages += 1);
    reporter.event(&Event::CrawlFinished {
        folders: walked.folders_listed,
        items: summary.changes,
    });
    Ok(DeltaOutcome::Applied(summary))
}

/// Forget a scope's delta link, cursor and staged changes: its next listing is a full one.
async fn forget_delta(
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
) -> Result<(), CrawlError> {
    manifest
        .forget_delta(drive.clone(), scope_key.to_owned())
        .await?;
    Ok(())
}

/// Whether a saved delta link (or page cursor) is dead: a resync (410), or an answer saying the link itself is
/// wrong (400, 404). Listing from scratch is the only way on.
fn is_dead_link(err: &GraphError) -> bool {
    matches!(err, GraphError::ResyncRequired { .. })
        || (matches!(err.status(), Some(400 | 404)) && !err.is_auth())
}

/// How a full listing by delta ended.
#[derive(Debug)]
pub(crate) enum Enumerated {
    /// Listed and applied; the scope has a delta link for the next run.
    Done(DeltaSummary),
    /// Cancelled between pages; the next run resumes at the saved cursor.
    Cancelled,
    /// Delta cannot list this scope (refused, a listing that makes no progress, items whose parents never
    /// come): list it by walking its folders instead.
    Unusable {
        /// Why, for the log.
        reason: String,
    },
}

/// A full listing of the scope by `/delta` from nothing (the crawl's root row is in the manifest already): page
/// through it, staging as for a round, apply it, and keep the last page's delta link for the next run. Resumes
/// at `cursor` when a previous enumeration was interrupted; a saved cursor the service refuses (410, 400, 404)
/// starts the enumeration again from nothing, in the same run.
pub(crate) async fn full_listing(
    ctx: &ListingContext<'_>,
    scope_key: &str,
    scope_root: &ItemId,
    cursor: Option<String>,
) -> Result<Enumerated, CrawlError> {
    let mut cursor = cursor;
    loop {
        let resumed = cursor.is_some();
        match enumerate_once(ctx, scope_key, scope_root, cursor.take()).await {
            Err(CrawlError::Listing { source, .. }) if resumed && is_dead_link(&source) => {
                // The saved page link of an interrupted enumeration died since: start again, from nothing.
                tracing::info!(scope = %scope_key, error = %source, "the saved listing position was refused: listing again from the start");
            }
            other => return other,
        }
    }
}

/// Items in hand at which a full listing stores them, whether or not more pages are waiting (one transaction
/// holds at most this plus one page). Pages that came while the manifest was busy are
/// stored together: a commit writes every page of the manifest it dirtied, and a 1,000-item page of a large
/// drive dirties about as many index pages as it has items, scattered, so two pages in one transaction write
/// far fewer pages than two transactions do. A page that finds the manifest idle is stored at once, alone, so
/// what a listing killed meanwhile has stored is never more than a page behind what it received.
const ITEMS_PER_COMMIT: usize = 2_000;

/// Pages of a full listing fetched ahead of the manifest at most (besides the one being fetched): the service's
/// time and ours overlap instead of adding up, and memory stays bounded (a page held as rows is about a megabyte).
const PAGES_AHEAD: usize = 1;

/// What the page fetcher of a full listing hands on, in the listing's order. After anything but a page that
/// has a next page, nothing follows.
enum Fetched {
    /// A page that makes progress, already converted (the service's items are dropped as they arrive).
    Page(Listed),
    /// The request for the next page failed.
    Failed(GraphError),
    /// The page that came makes no progress: the listing is given up.
    Stalled(crate::graph::NoProgress),
}

/// One page of a full listing as manifest rows, with its links.
struct Listed {
    /// Its items as rows without paths, each with whether the service reported it deleted.
    items: Vec<(NewItem, bool)>,
    /// Where the next page is.
    next_link: Option<String>,
    /// On the last page: the link for the next round.
    delta_link: Option<String>,
}

/// Ask for the pages of a full listing one after the other, from `cursor` (the start when `None`), and hand
/// them on until the last one, a failure or a stall, or until nobody listens. The guard judges each page
/// before its next link is followed, so a looping service costs as few requests as it did page by page; the
/// next page is asked for before this one is converted, so converting costs no time on the network's path.
async fn fetch_pages(
    graph: GraphClient,
    drive: DriveId,
    root: ItemId,
    cursor: Option<String>,
    pages: tokio::sync::mpsc::Sender<Fetched>,
) {
    let request = |link: Option<String>| {
        let (graph, drive, root) = (graph.clone(), drive.clone(), root.clone());
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            graph.delta(&drive, &root, link.as_deref()).await
        }))
    };
    let mut guard = PagingGuard::default();
    if let Some(link) = &cursor {
        guard.follow(link);
    }
    let mut asked = request(cursor);
    loop {
        let answer = asked.await.unwrap_or_else(|joined| {
            Err(GraphError::Unexpected {
                what: "listing changes".to_owned(),
                reason: joined.to_string(),
            })
        });
        let mut ahead = None;
        let fetched = match answer {
            Err(err) => Fetched::Failed(err),
            Ok(page) => {
                if let Err(stalled) = guard.check(&page) {
                    Fetched::Stalled(stalled)
                } else {
                    if let Some(next) = &page.next_link {
                        guard.follow(next);
                        ahead = Some(request(Some(next.clone())));
                    }
                    Fetched::Page(Listed {
                        items: listed_changes(&drive, &page),
                        next_link: page.next_link,
                        delta_link: page.delta_link,
                    })
                }
            }
        };
        if pages.send(fetched).await.is_err() {
            return;
        }
        match ahead {
            Some(next) => asked = next,
            None => return,
        }
    }
}

/// Pages of a full listing received and not stored yet.
#[derive(Default)]
struct InHand {
    /// Their items, in order, as rows without paths, each with whether the service reported it deleted.
    items: Vec<(NewItem, bool)>,
    /// How many items each page held, for the progress events.
    pages: Vec<usize>,
    /// Where the listing goes on after the last of them (`None` after the listing's last page).
    cursor: Option<String>,
}

/// One attempt at a full listing by delta (see [`full_listing`]): a task fetches the pages one after the other
/// while they are stored, each with the cursor after it (pages that waited, together).
#[allow(clippy::too_many_lines)] // one receiving loop; each of its exits stores what is in hand first
async fn enumerate_once(
    ctx: &ListingContext<'_>,
    scope_key: &str,
    scope_root: &ItemId,
    cursor: Option<String>,
) -> Result<Enumerated, CrawlError> {
    let ListingContext {
        graph,
        manifest,
        drive,
        options,
        reporter,
        cancel,
        progress,
    } = *ctx;
    if cursor.is_none() {
        manifest
            .begin_delta_enumeration(drive.clone(), scope_key.to_owned(), scope_root.clone())
            .await?;
    }
    let resumed = cursor.is_some();
    let mut summary = DeltaSummary::default();
    let listing_failed = |source| CrawlError::Listing {
        path: scope_key.to_owned(),
        source,
    };
    let placement = Placement {
        filter: Arc::clone(&options.filter),
        layout: options.layout,
    };
    let roots = Roots {
        delta_root: scope_root.clone(),
        scope_root: scope_root.clone(),
    };
    let (sender, mut pages) = tokio::sync::mpsc::channel(PAGES_AHEAD);
    // Aborted when this returns, whichever way: a listing that stops asks for nothing more.
    let _fetcher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(fetch_pages(
        graph.clone(),
        drive.clone(),
        scope_root.clone(),
        cursor,
        sender,
    )));
    let mut in_hand = InHand::default();
    let mut first = true;
    let store = async |in_hand: &mut InHand, summary: &mut DeltaSummary| {
        if in_hand.pages.is_empty() {
            return Ok(());
        }
        let taken = std::mem::take(in_hand);
        take_pages(
            manifest,
            drive,
            scope_key,
            &roots,
            &placement,
            taken.items,
            taken.cursor,
            summary,
        )
        .await?;
        // What was stored is the downloader's to fetch now, as a /children page is: it need not wait for
        // the whole listing (a first listing of a large drive is thousands of pages).
        progress.send_modify(|p| p.pages += 1);
        for items in taken.pages {
            reporter.event(&Event::PageListed {
                items,
                folder_done: false,
            });
        }
        Ok::<_, CrawlError>(())
    };
    let final_link = loop {
        if cancel.is_cancelled() {
            // What arrived is kept: the next run resumes after it.
            store(&mut in_hand, &mut summary).await?;
            return Ok(Enumerated::Cancelled);
        }
        let page = match pages.recv().await {
            Some(Fetched::Page(page)) => page,
            // Delta refused on this scope from the start (a folder-scoped delta the drive does not offer).
            Some(Fetched::Failed(err))
                if first
                    && !resumed
                    && matches!(err.status(), Some(400 | 501))
                    && !err.is_auth() =>
            {
                return Ok(Enumerated::Unusable {
                    reason: err.to_string(),
                });
            }
            // Delta keeps failing where the folders may still list: what arrived is kept, and the folders are
            // walked.
            Some(Fetched::Failed(err)) if err.is_listing_broken() => {
                store(&mut in_hand, &mut summary).await?;
                return Ok(Enumerated::Unusable {
                    reason: err.to_string(),
                });
            }
            Some(Fetched::Failed(err)) => {
                store(&mut in_hand, &mut summary).await?;
                return Err(listing_failed(err));
            }
            Some(Fetched::Stalled(stalled)) => {
                summary.pages += 1;
                store(&mut in_hand, &mut summary).await?;
                return Ok(Enumerated::Unusable {
                    reason: format!("listing the scope made no progress: {stalled}"),
                });
            }
            None => {
                store(&mut in_hand, &mut summary).await?;
                return Err(listing_failed(GraphError::Unexpected {
                    what: "listing changes".to_owned(),
                    reason: "the page fetcher stopped before the last page".to_owned(),
                }));
            }
        };
        first = false;
        summary.pages += 1;
        let end = match links_end(scope_key, page.next_link.as_ref(), page.delta_link.as_ref()) {
            Ok(end) => end,
            Err(err) => {
                store(&mut in_hand, &mut summary).await?;
                return Err(err);
            }
        };
        in_hand.pages.push(page.items.len());
        in_hand.items.extend(page.items);
        in_hand.cursor = page.next_link;
        match end {
            PageEnd::Last(delta) => {
                store(&mut in_hand, &mut summary).await?;
                break delta;
            }
            PageEnd::More(_) if in_hand.items.len() >= ITEMS_PER_COMMIT || pages.is_empty() => {
                store(&mut in_hand, &mut summary).await?;
            }
            PageEnd::More(_) => {}
        }
    };
    let round = apply_staged(
        manifest,
        drive,
        scope_key,
        &roots,
        &placement,
        false,
        &mut summary,
    )
    .await?;
    if round.unplaced > 0 {
        return Ok(Enumerated::Unusable {
            reason: format!(
                "{} listed items name parents the listing never sent",
                round.unplaced
            ),
        });
    }
    manifest
        .finish_delta_round(
            drive.clone(),
            scope_key.to_owned(),
            final_link,
            summary.changes,
        )
        .await?;
    Ok(Enumerated::Done(summary))
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
    let end = page_end(scope_key, page)?;
    manifest
        .stage_delta_page(
            drive.clone(),
            scope_key.to_owned(),
            listed_changes(drive, page),
            page.next_link.clone(),
        )
        .await?;
    Ok(end)
}

/// A page's items as manifest rows without paths (placed once their parent is known), each with whether the
/// service reported it deleted.
fn listed_changes(drive: &DriveId, page: &crate::graph::Page) -> Vec<(NewItem, bool)> {
    page.value
        .iter()
        .map(|item| {
            (
                to_new_item(drive, item, parent_of(item), "", String::new()),
                item.deleted.is_some(),
            )
        })
        .collect()
}

/// Where a page leaves the listing: more pages at its nextLink, or the end with the link for the next round.
fn page_end(scope_key: &str, page: &crate::graph::Page) -> Result<PageEnd, CrawlError> {
    links_end(scope_key, page.next_link.as_ref(), page.delta_link.as_ref())
}

/// [`page_end`] from a page's links.
fn links_end(
    scope_key: &str,
    next_link: Option<&String>,
    delta_link: Option<&String>,
) -> Result<PageEnd, CrawlError> {
    match (next_link, delta_link) {
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

/// Count what was applied into the summary.
fn count(summary: &mut DeltaSummary, applied: &[Resolution]) {
    for r in applied {
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

/// Take pages of a full listing (their items, in order) in one transaction with the cursor after them: what can
/// be placed now (its parent is in the manifest) is stored, overlapping the next pages' requests; the rest is
/// staged and applied, parents first, once the listing is in.
#[allow(clippy::too_many_arguments)]
async fn take_pages(
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &Roots,
    placement: &Placement,
    items: Vec<(NewItem, bool)>,
    cursor: Option<String>,
    summary: &mut DeltaSummary,
) -> Result<(), CrawlError> {
    let (d, k, roots) = (drive.clone(), scope_key.to_owned(), roots.clone());
    let placement = placement.clone();
    let mut parents = LastParent::default();
    // The decision runs inside the pages' transaction: it reads the parents their earlier items stored.
    let applied = manifest
        .take_listing_page(
            drive.clone(),
            scope_key.to_owned(),
            items,
            cursor,
            move |m, item, deleted, staged| {
                arrive(
                    m,
                    &d,
                    &k,
                    &roots,
                    &placement,
                    &mut parents,
                    item,
                    deleted,
                    staged,
                )
            },
        )
        .await?;
    count(summary, &applied);
    Ok(())
}

/// The folder the last items of a full listing were placed in: siblings come together, and each would read
/// the same row again. Forgotten whenever a folder is stored (it may be that folder, or move it).
#[derive(Default)]
struct LastParent(Option<(ItemId, KnownItem)>);

impl LastParent {
    /// The manifest's row of `parent`, read once for a run of its children.
    fn known(
        &mut self,
        m: &crate::manifest::Manifest,
        drive: &DriveId,
        parent: &ItemId,
    ) -> Result<Option<KnownItem>, crate::manifest::ManifestError> {
        if let Some((id, known)) = &self.0
            && id == parent
        {
            return Ok(Some(known.clone()));
        }
        let known = m.known_item(drive, parent)?;
        self.0 = known.clone().map(|k| (parent.clone(), k));
        Ok(known)
    }
}

/// Decide one item of a full listing as its page arrives: stored now when its parent is a folder the manifest
/// holds and nothing about it is in doubt; anything else (a deletion, a parent not placed yet or not a folder)
/// waits for the passes over what is staged, which decide it as a round's change.
#[allow(clippy::too_many_arguments)]
fn arrive(
    m: &crate::manifest::Manifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &Roots,
    placement: &Placement,
    parents: &mut LastParent,
    item: NewItem,
    deleted: bool,
    anything_staged: bool,
) -> Result<Arrival, crate::manifest::ManifestError> {
    if deleted {
        return Ok(Arrival::Wait {
            item: Box::new(item),
            deleted,
        });
    }
    let Some(parent_id) = item.parent_id.clone() else {
        return Ok(Arrival::Skip);
    };
    if roots.contains(&item.item_id) {
        return Ok(Arrival::Skip);
    }
    let parent = parents
        .known(m, drive, &parent_id)?
        .filter(|p| p.kind == ItemKind::Folder && !p.remote_deleted);
    let Some(parent) = parent else {
        return Ok(Arrival::Wait {
            item: Box::new(item),
            deleted,
        });
    };
    if anything_staged && m.is_staged(drive, scope_key, &parent_id)? {
        return Ok(Arrival::Wait {
            item: Box::new(item),
            deleted,
        });
    }
    let known = m.known_item(drive, &item.item_id)?;
    let placed = placement.place(item, &parent.remote_path, &parent.local_path);
    if placed.kind == ItemKind::Folder || known.as_ref().is_some_and(|k| k.kind == ItemKind::Folder)
    {
        *parents = LastParent::default();
    }
    let moved_from = known
        .filter(|k| k.kind == ItemKind::Folder && k.remote_path != placed.remote_path)
        .map(|k| (k.remote_path, k.local_path));
    Ok(Arrival::Apply(Resolution::Upsert {
        seq: 0,
        item: Box::new(placed),
        moved_from,
        list_contents: false,
    }))
}

/// The folders a round's changes hang from.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    /// The folder the delta links list: the scope root, or the drive root when delta runs from there.
    pub(crate) delta_root: ItemId,
    /// The scope's root folder, as the last crawl recorded it.
    pub(crate) scope_root: ItemId,
}

impl Roots {
    fn contains(&self, id: &ItemId) -> bool {
        *id == self.delta_root || *id == self.scope_root
    }
}

/// What a round learns while its changes are applied, carried from batch to batch.
#[derive(Debug, Default)]
pub(crate) struct RoundState {
    /// Items found to lie outside the scope: their parents lead to the delta root without passing through the
    /// scope root (business drives list the whole drive, each change with its ancestors).
    outside: HashSet<ItemId>,
    /// Changes whose parent is neither in the manifest, nor staged, nor outside the scope: the manifest's tree
    /// and the service's disagree (an ID that changed, a parent the round never sent). Such an item is never
    /// taken as deleted; the scope is listed again instead.
    pub(crate) unplaced: u64,
}

/// Apply the staged changes in passes: a change is applied once its parent is known and not itself waiting,
/// so parents always go first whatever order the pages came in. Stops when a pass makes no progress.
/// `list_new_folders`: a folder new to the manifest is queued for a listing of its own (delta shows a folder
/// moved into the scope without its contents).
async fn apply_staged(
    manifest: &SharedManifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &Roots,
    placement: &Placement,
    list_new_folders: bool,
    summary: &mut DeltaSummary,
) -> Result<RoundState, CrawlError> {
    let mut state = RoundState::default();
    loop {
        let mut progressed = false;
        let mut pass = manifest.staged_changes(drive.clone(), scope_key.to_owned(), BATCH);
        while let Some(staged) = pass.next().await? {
            // Decided inside the batch's transaction: a parent placed earlier in it is known to the rest.
            let (d, k, roots, placement) = (
                drive.clone(),
                scope_key.to_owned(),
                roots.clone(),
                placement.clone(),
            );
            let (resolutions, back) = manifest
                .apply_staged_batch(
                    drive.clone(),
                    scope_key.to_owned(),
                    staged,
                    std::mem::take(&mut state),
                    move |m, round, change| {
                        resolve(
                            m,
                            &d,
                            &k,
                            &roots,
                            &placement,
                            list_new_folders,
                            round,
                            change,
                        )
                    },
                )
                .await?;
            state = back;
            if resolutions.is_empty() {
                continue;
            }
            progressed = true;
            count(summary, &resolutions);
        }
        if !progressed {
            // What is still staged waits on parents that are themselves waiting (a cycle of parents the
            // service sent, or a parent that never came): unplaced, as a parent this backup does not know
            // is. Dropping it with the round would lose those changes while the round's link moved past them.
            let left = manifest
                .staged_count(drive.clone(), scope_key.to_owned())
                .await?;
            if left > 0 {
                tracing::info!(left, "staged changes wait on parents that never resolve");
                state.unplaced += left;
            }
            return Ok(state);
        }
    }
}

/// Decide one staged change; `None` when it must wait for its parent.
#[allow(clippy::too_many_arguments)]
fn resolve(
    m: &crate::manifest::Manifest,
    drive: &DriveId,
    scope_key: &str,
    roots: &Roots,
    placement: &Placement,
    list_new_folders: bool,
    round: &mut RoundState,
    change: StagedChange,
) -> Result<Option<Resolution>, crate::manifest::ManifestError> {
    let StagedChange { seq, item, deleted } = change;
    let Some(item) = item else {
        // What it described is unknown: only listing the scope in full can tell.
        tracing::info!(
            seq,
            "a staged change cannot be read back: the scope is listed again"
        );
        round.unplaced += 1;
        return Ok(Some(Resolution::Drop { seq }));
    };
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
    let parent_row = m.known_item(drive, &parent_id)?;
    // A parent the manifest holds that holds nothing itself (a OneNote package, a shortcut, a folder gone from
    // the drive): what is below it is not backed up.
    let held_not_folder = parent_row.is_some();
    let parent = parent_row.filter(|p| p.kind == ItemKind::Folder && !p.remote_deleted);
    let Some(parent) = parent else {
        let below_delta_root =
            parent_id == roots.delta_root && roots.delta_root != roots.scope_root;
        if held_not_folder || below_delta_root || round.outside.contains(&parent_id) {
            // Outside the scope: forget it, unless it was inside and moved out (then it is gone from the
            // backup).
            round.outside.insert(item.item_id.clone());
            return Ok(Some(match known {
                Some(k) if !k.remote_deleted => Resolution::Delete {
                    seq,
                    item_id: item.item_id,
                },
                _ => Resolution::Drop { seq },
            }));
        }
        tracing::info!(
            item = %item.item_id,
            parent = %parent_id,
            "a change names a parent this backup does not know: the scope is listed again"
        );
        round.unplaced += 1;
        return Ok(Some(Resolution::Drop { seq }));
    };
    let placed = placement.place(item, &parent.remote_path, &parent.local_path);
    let list_contents = list_new_folders
        && placed.kind == ItemKind::Folder
        && placed.skip.is_none()
        && known.as_ref().is_none_or(|k| k.remote_deleted);
    let moved_from = known
        .filter(|k| k.kind == ItemKind::Folder && k.remote_path != placed.remote_path)
        .map(|k| (k.remote_path, k.local_path));
    Ok(Some(Resolution::Upsert {
        seq,
        item: Box::new(placed),
        moved_from,
        list_contents,
    }))
}
