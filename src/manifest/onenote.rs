//! `OneNote` notebooks in the manifest: a notebook is a folder row whose `package` is `oneNote`; one left out by
//! `--no-onenote` is a skipped `package` row with the same marker.

use super::items::to_u64;
use super::{Manifest, ManifestError, Result};

impl Manifest {
    /// When notebooks were left out (`--no-onenote`) and are wanted now: forget every scope's incremental link,
    /// so the next listing is a full one and lists them (an incremental round reports only what changed, and
    /// an unchanged notebook would stay out). Returns whether there were such notebooks.
    pub(crate) fn relist_skipped_notebooks(&mut self) -> Result<bool> {
        let path = self.path.clone();
        let err = |e| ManifestError::sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let skipped: i64 = tx
            .query_row(
                "SELECT count(*) FROM items WHERE kind = 'package' AND package = 'oneNote'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if skipped > 0 {
            tx.execute_batch(
                "UPDATE delta_state SET delta_link = NULL, cursor = NULL; DELETE FROM delta_staging;",
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(skipped > 0)
    }

    /// Notebooks backed up, and their section files on disk (those of their section groups included).
    pub(crate) fn notebook_counts(&self) -> Result<NotebookCounts> {
        self.conn
            .query_row(
                "WITH RECURSIVE nb(drive_id, item_id) AS (
                     SELECT drive_id, item_id FROM items WHERE kind = 'folder' AND package = 'oneNote'
                     UNION SELECT i.drive_id, i.item_id FROM items i
                         JOIN nb ON i.drive_id = nb.drive_id AND i.parent_id = nb.item_id AND i.kind = 'folder')
                 SELECT (SELECT count(*) FROM items WHERE kind = 'folder' AND package = 'oneNote'),
                        (SELECT count(*) FROM items f WHERE f.kind = 'file' AND f.state = 'done'
                             AND EXISTS (SELECT 1 FROM nb WHERE nb.drive_id = f.drive_id AND nb.item_id = f.parent_id))",
                [],
                |r| {
                    Ok(NotebookCounts {
                        notebooks: to_u64(r.get(0)?),
                        section_files_done: to_u64(r.get(1)?),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }
}

/// `OneNote` notebooks in a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotebookCounts {
    /// Notebooks backed up (as folders of their section files).
    pub notebooks: u64,
    /// Their section files on disk.
    pub section_files_done: u64,
}
