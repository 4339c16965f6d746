//! What the downloader reads and writes besides a transfer's outcome: files to fetch, files to move, trash
//! or check on disk, folders to mirror, and copies of the same content (`--dedupe hardlink`).

use crate::ids::{DriveId, ItemId};
use crate::manifest::{
    DoneFile, DownloadJob, Manifest, ManifestError, MovedFile, RelistedUrl, Twin,
};

use super::SharedManifest;
use super::pages::{Fetch, Pages};

impl SharedManifest {
    /// Keep the download URLs a new listing of their folder gave files of `drive` (see
    /// [`Manifest::store_relisted_urls`]); returns how many were kept.
    pub(crate) async fn store_relisted_urls(
        &self,
        drive: DriveId,
        urls: Vec<RelistedUrl>,
        at_ms: i64,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.store_relisted_urls(&drive, &urls, at_ms))
            .await
    }

    /// Files to download, in row order, `limit` at a time (with the malware-flagged ones too when
    /// `with_malware`).
    pub(crate) fn downloadable(
        &self,
        limit: usize,
        with_malware: bool,
    ) -> Pages<DownloadJob, impl Fetch<DownloadJob> + Send + Sync + 'static> {
        self.pages(limit, move |m: &Manifest, after, limit| {
            m.downloadable_after(after, limit, with_malware)
        })
    }

    /// Downloaded files whose item moved since they were written, `limit` at a time.
    pub(crate) fn moved_files(
        &self,
        limit: usize,
    ) -> Pages<MovedFile, impl Fetch<MovedFile> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.moved_files_after(after, limit)
        })
    }

    /// Files deleted on the drive still where they were written, `limit` at a time.
    pub(crate) fn deleted_files(
        &self,
        limit: usize,
    ) -> Pages<MovedFile, impl Fetch<MovedFile> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.deleted_files_after(after, limit)
        })
    }

    /// Files recorded as done (to check they are still on disk), `limit` at a time.
    pub(crate) fn done_files(
        &self,
        limit: usize,
    ) -> Pages<DoneFile, impl Fetch<DoneFile> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.done_files_after(after, limit)
        })
    }

    /// Folders as (row ID, local path), `limit` at a time.
    pub(crate) fn folders(
        &self,
        limit: usize,
    ) -> Pages<(i64, String), impl Fetch<(i64, String)> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.folders_after(after, limit)
        })
    }

    /// Put done files back to pending (missing or changed on disk).
    pub(crate) async fn reset_to_pending(
        &self,
        keys: Vec<(DriveId, ItemId)>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.reset_to_pending(&keys)).await
    }

    /// Record where the file of `drive`/`item` now is on disk.
    pub(crate) async fn set_written_path(
        &self,
        drive: DriveId,
        item: ItemId,
        path: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.set_written_path(&drive, &item, &path))
            .await
    }

    /// Every row that recorded its file at `from` now records it at `to`; how many.
    pub(crate) async fn move_written_paths(
        &self,
        from: String,
        to: String,
    ) -> Result<usize, ManifestError> {
        self.call(move |m| m.move_written_paths(&from, &to)).await
    }

    /// The file of `drive`/`item` went to the trash at `to`: record it there, and hand the files linked to
    /// it their group (they keep their bytes where they are).
    pub(crate) async fn record_trashed(
        &self,
        drive: DriveId,
        item: ItemId,
        to: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| {
            m.set_written_path(&drive, &item, &to)?;
            m.hand_over_links(&drive, &item)
        })
        .await
    }

    /// A done file of the same content (quickXorHash and size) as `drive`/`item`, to link to.
    pub(crate) async fn done_twin(
        &self,
        drive: DriveId,
        item: ItemId,
        quick_xor: String,
        size: u64,
    ) -> Result<Option<Twin>, ManifestError> {
        self.call(move |m| m.done_twin(&drive, &item, &quick_xor, size))
            .await
    }
}
