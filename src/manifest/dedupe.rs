//! Files stored once (`--dedupe hardlink`): which done file holds the bytes a file to fetch would have, and
//! which files were placed as hard links of another.
//!
//! Knows nothing of the file system: the downloader links the files and says so here.

use rusqlite::{OptionalExtension as _, params};

use super::items::{SUM_F_SIZE, to_u64};
use super::{Manifest, Result};
use crate::ids::{DriveId, ItemId};

/// A done file with the same content as a file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// Where its bytes are, relative to the destination.
    pub(crate) local_path: String,
    /// How it was verified when it was written (`quickxor`, …).
    pub(crate) verification: String,
}

/// Files stored as hard links of another file with the same content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupeCounts {
    /// Done files placed as a hard link of another copy that still holds the same content.
    pub files: u64,
    /// Their listed bytes: what separate copies would take on top.
    pub bytes_saved: u64,
}

impl Manifest {
    /// A done file (not `drive`/`item` itself) whose listing has this quickXorHash and size, verified
    /// without caveat, still at its own local path and not deleted on the drive: the oldest such row.
    pub(crate) fn done_twin(
        &self,
        drive: &DriveId,
        item: &ItemId,
        quick_xor: &str,
        size: u64,
    ) -> Result<Option<Twin>> {
        self.conn
            .prepare_cached(
                "SELECT drive_id, item_id, written_path, COALESCE(verification, '') FROM items
                 WHERE quick_xor = ?3 AND size = ?4 AND state = 'done' AND kind = 'file'
                   AND remote_deleted = 0 AND caveat_class IS NULL AND quick_xor <> ''
                   AND written_path IS NOT NULL AND written_path = local_path
                   AND NOT (drive_id = ?1 AND item_id = ?2)
                 ORDER BY downloaded_at DESC, rowid DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        drive.key(),
                        item.key(),
                        quick_xor,
                        i64::try_from(size).unwrap_or(i64::MAX)
                    ],
                    |r| {
                        Ok(Twin {
                            drive_id: DriveId(r.get(0)?),
                            item_id: ItemId(r.get(1)?),
                            local_path: r.get(2)?,
                            verification: r.get(3)?,
                        })
                    },
                )
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Record that the done file `drive`/`item` was placed as a hard link of `twin`'s file.
    pub(crate) fn set_linked(&self, drive: &DriveId, item: &ItemId, twin: &Twin) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE items SET linked_drive_id = ?3, linked_item_id = ?4
                 WHERE drive_id = ?1 AND item_id = ?2 AND state = 'done'",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    drive.key(),
                    item.key(),
                    twin.drive_id.key(),
                    twin.item_id.key()
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The file of `drive`/`item` no longer shares its bytes with the files linked to it (a new version was
    /// renamed over it, or it went to the trash): the oldest of them stands for the group from now on, and
    /// the others are recorded as its links.
    pub(crate) fn hand_over_links(&mut self, drive: &DriveId, item: &ItemId) -> Result<()> {
        // One index probe (only linked rows are indexed): files that were never linked to cost no write.
        let heir: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT drive_id, item_id FROM items WHERE linked_drive_id = ?1 AND linked_item_id = ?2
                 ORDER BY rowid LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![drive.key(), item.key()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((heir_drive, heir_item)) = heir else {
            return Ok(());
        };
        let path = self.path.clone();
        let err = |e| super::ManifestError::sqlite(&path, e);
        // A savepoint: one transaction of its own, or a part of the caller's (`in_transaction`).
        let tx = self.conn.savepoint().map_err(err)?;
        tx.execute(
            "UPDATE items SET linked_drive_id = NULL, linked_item_id = NULL
             WHERE drive_id = ?1 AND item_id = ?2",
            params![heir_drive, heir_item],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE items SET linked_drive_id = ?3, linked_item_id = ?4
             WHERE linked_drive_id = ?1 AND linked_item_id = ?2",
            params![drive.key(), item.key(), heir_drive, heir_item],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Done files stored as hard links of a copy that still has the same listed content, and their bytes.
    pub(crate) fn dedupe_counts(&self) -> Result<DedupeCounts> {
        self.conn
            .query_row(
                &format!(
                    "SELECT count(*), {SUM_F_SIZE} FROM items f
                 JOIN items s ON s.drive_id = f.linked_drive_id AND s.item_id = f.linked_item_id
                 WHERE f.state = 'done' AND f.kind = 'file' AND f.remote_deleted = 0
                   AND s.quick_xor = f.quick_xor AND s.size = f.size"
                ),
                [],
                |r| {
                    Ok(DedupeCounts {
                        files: to_u64(r.get(0)?),
                        bytes_saved: to_u64(r.get(1)?),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }
}
