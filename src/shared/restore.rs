//! What a restore reads and writes: its target, the plan, each entry's outcome and the upload sessions a
//! later run resumes.

use crate::manifest::{
    FailureRecord, Manifest, ManifestError, PlanCounts, RestoreEntry, RestoreJob, RestoreKind,
    SourceRow,
};

use super::SharedManifest;
use super::pages::{Fetch, Pages};

impl SharedManifest {
    /// The restore target recorded for `root_path` on `drive_id`, if any (a dry run creates none).
    pub(crate) async fn find_restore_target(
        &self,
        drive_id: String,
        root_path: String,
    ) -> Result<Option<i64>, ManifestError> {
        self.call(move |m| m.find_restore_target(&drive_id, &root_path))
            .await
    }

    /// The restore target for `root_path` on `drive_id`, recorded if new.
    pub(crate) async fn restore_target(
        &self,
        drive_id: String,
        root_path: String,
        drive_type: String,
    ) -> Result<i64, ManifestError> {
        self.call(move |m| m.restore_target(&drive_id, &root_path, &drive_type))
            .await
    }

    /// The backup's files and folders as restore sources, `limit` at a time.
    pub(crate) fn restore_sources(
        &self,
        limit: usize,
    ) -> Pages<SourceRow, impl Fetch<SourceRow> + Send + Sync + 'static> {
        self.pages(limit, |m: &Manifest, after, limit| {
            m.restore_sources_after(after, limit)
        })
    }

    /// What planning `entries` would do, without writing: the counts, and which entries would be uploaded.
    pub(crate) async fn preview_restore(
        &self,
        target: Option<i64>,
        entries: Vec<RestoreEntry>,
    ) -> Result<(PlanCounts, Vec<usize>), ManifestError> {
        self.call(move |m| m.preview_restore(target, &entries))
            .await
    }

    /// Plan `entries` for `run` on `target`.
    pub(crate) async fn plan_restore(
        &self,
        target: i64,
        run: i64,
        entries: Vec<RestoreEntry>,
    ) -> Result<PlanCounts, ManifestError> {
        self.call(move |m| m.plan_restore(target, run, &entries))
            .await
    }

    /// Entries of `kind` still to restore in `run` on `target`, `limit` at a time.
    pub(crate) fn restore_jobs(
        &self,
        target: i64,
        run: i64,
        kind: RestoreKind,
        limit: usize,
    ) -> Pages<RestoreJob, impl Fetch<RestoreJob> + Send + Sync + 'static> {
        self.pages(limit, move |m: &Manifest, after, limit| {
            m.restore_jobs_after(target, run, kind, after, limit)
        })
    }

    /// Record an entry restored as the item `item_id`.
    pub(crate) async fn restore_done(
        &self,
        target: i64,
        source_path: String,
        item_id: String,
        quick_xor: Option<String>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.restore_done(target, &source_path, &item_id, quick_xor.as_deref()))
            .await
    }

    /// Record an entry not restored, and why.
    pub(crate) async fn restore_skipped(
        &self,
        target: i64,
        source_path: String,
        reason: &'static str,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.restore_skipped(target, &source_path, reason))
            .await
    }

    /// Record an entry whose restore failed.
    pub(crate) async fn restore_failed(
        &self,
        target: i64,
        source_path: String,
        failure: FailureRecord,
        item_id: Option<String>,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.restore_failed(target, &source_path, &failure, item_id.as_deref()))
            .await
    }

    /// Bytes `run` still has to upload to `target`.
    pub(crate) async fn restore_bytes_left(
        &self,
        target: i64,
        run: i64,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.restore_bytes_left(target, run)).await
    }

    /// The upload session kept for an entry: the local file's stamp then, and the session's URL.
    pub(crate) async fn restore_session(
        &self,
        target: i64,
        source_path: String,
    ) -> Result<Option<(String, String)>, ManifestError> {
        self.call(move |m| m.restore_session(target, &source_path))
            .await
    }

    /// Keep an entry's upload session, for a later run to resume.
    pub(crate) async fn set_restore_session(
        &self,
        target: i64,
        source_path: String,
        stamp: String,
        url: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.set_restore_session(target, &source_path, &stamp, &url))
            .await
    }

    /// Forget an entry's upload session.
    pub(crate) async fn clear_restore_session(
        &self,
        target: i64,
        source_path: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.clear_restore_session(target, &source_path))
            .await
    }

    /// Forget the upload sessions of `target` no entry of `run` will resume; how many.
    pub(crate) async fn clear_stale_restore_sessions(
        &self,
        target: i64,
        run: i64,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.clear_stale_restore_sessions(target, run))
            .await
    }
}
