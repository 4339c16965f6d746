//! What listings read and write: crawls and their frontier, delta links and staged changes, shortcuts to
//! shared items, and the filters' verdicts.

use crate::ids::{DriveId, ItemId};
use crate::manifest::{
    Arrival, CrawlStart, DeltaState, FrontierEntry, Manifest, ManifestError, NewItem, PageCommit,
    Resolution, SelectionRow, ShortcutRow, Skip, StagedChange,
};

use super::SharedManifest;
use super::pages::{Fetch, Pages};

impl SharedManifest {
    /// Start (or resume) a crawl of `scope_key` on `drive` from `root`.
    pub(crate) async fn begin_crawl(
        &self,
        drive: DriveId,
        scope_key: String,
        root: NewItem,
    ) -> Result<CrawlStart, ManifestError> {
        self.call(move |m| m.begin_crawl(&drive, &scope_key, &root))
            .await
    }

    /// End a complete crawl: what it did not see is marked deleted (how many are returned).
    pub(crate) async fn finish_crawl(&self, crawl_id: i64) -> Result<u64, ManifestError> {
        self.call(move |m| m.finish_crawl(crawl_id)).await
    }

    /// Follow the scope's root to a new ID; whether it had another one.
    pub(crate) async fn rekey_scope_root(
        &self,
        drive: DriveId,
        scope_key: String,
        root: ItemId,
    ) -> Result<bool, ManifestError> {
        self.call(move |m| m.rekey_scope_root(&drive, &scope_key, &root))
            .await
    }

    /// The crawl whose frontier holds folders queued for a listing, if any.
    pub(crate) async fn queued_listing(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<Option<i64>, ManifestError> {
        self.call(move |m| m.queued_listing(&drive, &scope_key))
            .await
    }

    /// Up to `limit` folders still to list in the crawl `crawl_id`.
    pub(crate) async fn frontier(
        &self,
        crawl_id: i64,
        limit: usize,
    ) -> Result<Vec<FrontierEntry>, ManifestError> {
        self.call(move |m| m.frontier(crawl_id, limit)).await
    }

    /// Store one listed page with the frontier's update, in one transaction.
    pub(crate) async fn commit_page(
        &self,
        crawl_id: i64,
        page: PageCommit,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.commit_page(crawl_id, &page)).await
    }

    /// Take a folder out of the frontier unlisted, and say why.
    pub(crate) async fn refuse_folder(
        &self,
        crawl_id: i64,
        drive: DriveId,
        folder: ItemId,
        reason: Skip,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.refuse_folder(crawl_id, &drive, &folder, &reason))
            .await
    }

    /// The scope's delta link and cursor.
    pub(crate) async fn delta_state(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<Option<DeltaState>, ManifestError> {
        self.call(move |m| m.delta_state(&drive, &scope_key)).await
    }

    /// The scope's delta state when an incremental round can start from it: `None` while a full crawl of
    /// the scope waits to be resumed (that crawl comes first), both read under one lock.
    pub(crate) async fn resumable_delta_state(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<Option<DeltaState>, ManifestError> {
        self.call(move |m| {
            if m.has_unfinished_crawl(&drive, &scope_key)? {
                Ok(None)
            } else {
                m.delta_state(&drive, &scope_key)
            }
        })
        .await
    }

    /// When the scope's last full listing completed (RFC 3339, UTC), if one did and none is unfinished.
    pub(crate) async fn last_full_listing(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<Option<String>, ManifestError> {
        self.call(move |m| m.last_full_listing(&drive, &scope_key))
            .await
    }

    /// The root item of the scope's latest crawl.
    pub(crate) async fn scope_root(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<Option<ItemId>, ManifestError> {
        self.call(move |m| m.scope_root(&drive, &scope_key)).await
    }

    /// Keep a delta link taken before a full crawl; it becomes the scope's once the crawl completes.
    pub(crate) async fn set_pending_link(
        &self,
        drive: DriveId,
        scope_key: String,
        delta_root: ItemId,
        link: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.set_pending_link(&drive, &scope_key, &delta_root, &link))
            .await
    }

    /// A full crawl completed: its pending delta link becomes the scope's.
    pub(crate) async fn promote_pending_link(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.promote_pending_link(&drive, &scope_key))
            .await
    }

    /// Forget the scope's delta link, cursor and staged changes: its next listing is a full one.
    pub(crate) async fn forget_delta(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.forget_delta(&drive, &scope_key)).await
    }

    /// Start a full listing of the scope by delta from nothing.
    pub(crate) async fn begin_delta_enumeration(
        &self,
        drive: DriveId,
        scope_key: String,
        delta_root: ItemId,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.begin_delta_enumeration(&drive, &scope_key, &delta_root))
            .await
    }

    /// Stage one page of a round's changes with the cursor after it.
    pub(crate) async fn stage_delta_page(
        &self,
        drive: DriveId,
        scope_key: String,
        changes: Vec<(NewItem, bool)>,
        cursor: Option<String>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.stage_delta_page(&drive, &scope_key, &changes, cursor.as_deref()))
            .await
    }

    /// Take one page of a full listing ([`Manifest::take_listing_page`]): `decide` runs inside its
    /// transaction, seeing the page's earlier items applied.
    pub(crate) async fn take_listing_page<F>(
        &self,
        drive: DriveId,
        scope_key: String,
        items: Vec<(NewItem, bool)>,
        cursor: Option<String>,
        decide: F,
    ) -> Result<Vec<Resolution>, ManifestError>
    where
        F: FnMut(&Manifest, NewItem, bool, bool) -> Result<Arrival, ManifestError> + Send + 'static,
    {
        self.call(move |m| {
            m.take_listing_page(&drive, &scope_key, items, cursor.as_deref(), decide)
        })
        .await
    }

    /// Decide and apply a batch of staged changes ([`Manifest::apply_staged_batch`]): `decide` runs inside
    /// its transaction with `state`, which carries what the round learns from batch to batch and is handed
    /// back with what was applied.
    pub(crate) async fn apply_staged_batch<S, F>(
        &self,
        drive: DriveId,
        scope_key: String,
        staged: Vec<StagedChange>,
        mut state: S,
        mut decide: F,
    ) -> Result<(Vec<Resolution>, S), ManifestError>
    where
        S: Send + 'static,
        F: FnMut(&Manifest, &mut S, StagedChange) -> Result<Option<Resolution>, ManifestError>
            + Send
            + 'static,
    {
        self.call(move |m| {
            let applied = m.apply_staged_batch(&drive, &scope_key, staged, |m, change| {
                decide(m, &mut state, change)
            })?;
            Ok((applied, state))
        })
        .await
    }

    /// The changes staged for the scope, in the order they arrived, `limit` at a time.
    pub(crate) fn staged_changes(
        &self,
        drive: DriveId,
        scope_key: String,
        limit: usize,
    ) -> Pages<StagedChange, impl Fetch<StagedChange> + Send + Sync + 'static> {
        self.pages(limit, move |m: &Manifest, after, limit| {
            m.staged_after(&drive, &scope_key, after, limit)
        })
    }

    /// How many changes are still staged for `scope_key` of `drive`.
    pub(crate) async fn staged_count(
        &self,
        drive: DriveId,
        scope_key: String,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.staged_count(&drive, &scope_key)).await
    }

    /// A round is applied: keep its delta link for the next one and drop what is still staged.
    pub(crate) async fn finish_delta_round(
        &self,
        drive: DriveId,
        scope_key: String,
        delta_link: String,
        changes: u64,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.finish_delta_round(&drive, &scope_key, &delta_link, changes))
            .await
    }

    /// Every shortcut to a shared item in My files.
    pub(crate) async fn shortcuts(&self) -> Result<Vec<ShortcutRow>, ManifestError> {
        self.call(|m| m.shortcuts()).await
    }

    /// Where else this backup holds the shared item `item` of `drive`, if it does.
    pub(crate) async fn held_elsewhere(
        &self,
        drive: DriveId,
        item: ItemId,
        scope_key: String,
    ) -> Result<Option<String>, ManifestError> {
        self.call(move |m| m.held_elsewhere(&drive, &item, &scope_key))
            .await
    }

    /// Record what became of a shortcut: `None` when its target was listed.
    pub(crate) async fn set_shortcut_outcome(
        &self,
        drive: DriveId,
        item: ItemId,
        reason: Option<Skip>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.set_shortcut_outcome(&drive, &item, reason.as_ref()))
            .await
    }

    /// A shortcut removed from My files: its shared tree goes the way of a deleted folder (how many rows).
    pub(crate) async fn forget_shared_tree(
        &self,
        drive: DriveId,
        remote_path: String,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.forget_shared_tree(&drive, &remote_path))
            .await
    }

    /// Notebooks left out by an earlier `--no-onenote` are listed again; whether there were any.
    pub(crate) async fn relist_skipped_notebooks(&self) -> Result<bool, ManifestError> {
        self.call(Manifest::relist_skipped_notebooks).await
    }

    /// File and folder rows with what the filters last said of them, `limit` at a time.
    pub(crate) fn selection_rows(
        &self,
        limit: usize,
    ) -> Pages<SelectionRow, impl Fetch<SelectionRow> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.selection_rows_after(after, limit)
        })
    }

    /// Set the filters' verdicts by row ID (`None`: wanted).
    pub(crate) async fn set_excluded(
        &self,
        marks: Vec<(i64, Option<String>)>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| {
            let marks: Vec<(i64, Option<&str>)> =
                marks.iter().map(|(id, r)| (*id, r.as_deref())).collect();
            m.set_excluded(&marks)
        })
        .await
    }
}
