//! What a run as a whole reads and writes: settings kept for the next run, the drive the destination holds,
//! the run record and the summary's counts.

use crate::ids::DriveId;
use crate::manifest::{DriveRecord, ExcludedCounts, ManifestError, NotebookCounts, SharedCounts};

use super::SharedManifest;

impl SharedManifest {
    /// A setting kept in the manifest ([`crate::manifest::Manifest::setting`]).
    pub(crate) async fn setting(&self, key: &'static str) -> Result<Option<String>, ManifestError> {
        self.call(move |m| m.setting(key)).await
    }

    /// Keep a setting for later runs.
    pub(crate) async fn set_setting(
        &self,
        key: &'static str,
        value: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.set_setting(key, &value)).await
    }

    /// The drives the destination holds backups of, with their kind.
    pub(crate) async fn recorded_drives(&self) -> Result<Vec<(DriveId, String)>, ManifestError> {
        self.call(|m| m.recorded_drives()).await
    }

    /// Record (or update) the drive being backed up.
    pub(crate) async fn upsert_drive(&self, record: DriveRecord) -> Result<(), ManifestError> {
        self.call(move |m| m.upsert_drive(&record)).await
    }

    /// Files and bytes the filters leave out.
    pub(crate) async fn excluded_counts(&self) -> Result<ExcludedCounts, ManifestError> {
        self.call(|m| m.excluded_counts()).await
    }

    /// `OneNote` notebooks, by what became of them.
    pub(crate) async fn notebook_counts(&self) -> Result<NotebookCounts, ManifestError> {
        self.call(|m| m.notebook_counts()).await
    }

    /// Shortcuts to shared items, by what became of them.
    pub(crate) async fn shared_counts(&self) -> Result<SharedCounts, ManifestError> {
        self.call(|m| m.shared_counts()).await
    }

    /// Forget download URLs from listings older than `older_than_ms` (all of them with `None`).
    pub(crate) async fn clear_listed_urls(
        &self,
        older_than_ms: Option<i64>,
    ) -> Result<u64, ManifestError> {
        self.call(move |m| m.clear_listed_urls(older_than_ms)).await
    }

    /// Close the run record `run_id` with its outcome and summary.
    pub(crate) async fn finish_run(
        &self,
        run_id: i64,
        outcome: &'static str,
        summary_json: String,
    ) -> Result<(), ManifestError> {
        self.call(move |m| m.finish_run(run_id, outcome, &summary_json))
            .await
    }

    /// Fold the write-ahead log back into the database file and empty it.
    pub(crate) async fn truncate_wal(&self) -> Result<(), ManifestError> {
        self.call(|m| m.truncate_wal()).await
    }
}
