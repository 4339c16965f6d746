//! `OneNote` notebooks in the manifest: a notebook is a folder row whose `package` is `oneNote`; one left out by
//! `--no-onenote` is a skipped `package` row with the same marker.

use super::{Manifest, ManifestError, Result};

impl Manifest {
    /// When notebooks were left out (`--no-onenote`) and are wanted now: forget every scope's incremental link,
    /// so the next listing is a full one and lists them (an incremental round reports only what changed, and
    /// an unchanged notebook would stay out). Returns whether there were such notebooks.
    pub fn relist_skipped_notebooks(&mut self) -> Result<bool> {
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
}
