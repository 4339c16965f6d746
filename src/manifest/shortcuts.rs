//! Shortcuts to shared folders and files ("Add to My files"): a `remote` row in the user's tree whose
//! `remote_ref` names the target as `{driveId}/{itemId}` (both canonical). The target's tree is stored under the
//! target's own drive and ID, at the shortcut's paths, by a crawl of its own (scope `shared:{remote_ref}`).

use rusqlite::{OptionalExtension as _, params};

use super::items::{Skip, to_u64};
use super::{Manifest, Result, now};
use crate::ids::{DriveId, ItemId};

/// A shortcut row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortcutRow {
    /// The drive the shortcut itself lives in.
    pub drive_id: DriveId,
    /// The shortcut's own ID.
    pub(crate) item_id: ItemId,
    /// Its remote path (where the shared tree appears).
    pub remote_path: String,
    /// Its local path (where the shared tree is mirrored).
    pub(crate) local_path: String,
    /// The target's drive and ID (canonical), when the listing named them.
    pub(crate) target: Option<(DriveId, ItemId)>,
    /// Whether the shortcut is gone from the user's tree.
    pub deleted: bool,
}

/// Shared folders and files in a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SharedCounts {
    /// Shortcuts whose target was backed up by the last run that followed them.
    pub shortcuts_followed: u64,
    /// Shortcuts recorded as not followed (left out, not accessible, or already backed up elsewhere).
    pub shortcuts_skipped: u64,
    /// Files from shared drives on disk.
    pub files_done: u64,
}

impl Manifest {
    /// Every shortcut row (those left out included), oldest first.
    pub fn shortcuts(&self) -> Result<Vec<ShortcutRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT drive_id, item_id, remote_path, local_path, remote_ref, remote_deleted FROM items
                 WHERE kind = 'remote' ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            let target: Option<String> = r.get(4)?;
            Ok(ShortcutRow {
                drive_id: DriveId(r.get(0)?),
                item_id: ItemId(r.get(1)?),
                remote_path: r.get(2)?,
                local_path: r.get(3)?,
                target: target.and_then(|t| {
                    let (d, i) = t.split_once('/')?;
                    (!d.is_empty() && !i.is_empty())
                        .then(|| (DriveId(d.to_owned()), ItemId(i.to_owned())))
                }),
                deleted: r.get::<_, i64>(5)? != 0,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Record how following a shortcut went: `None` backed up (`done`), else why not (`skipped`).
    pub(crate) fn set_shortcut_outcome(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        reason: Option<&Skip>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE items SET state = CASE WHEN ?3 IS NULL THEN 'done' ELSE 'skipped' END, skip_reason = ?3,
                     skip_class = ?5, updated_at = ?4
                 WHERE drive_id = ?1 AND item_id = ?2 AND kind = 'remote'",
                params![
                    drive.key(),
                    item.key(),
                    reason.map(|r| r.reason.as_str()),
                    now(),
                    reason.map(|r| r.class.as_str())
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Where the item `(drive, item)` is already in the backup other than through the scope `scope_key`: its
    /// local path, if a live row of it was last seen by another crawl (the drive's own listing, or the crawl of
    /// another shortcut whose tree holds it).
    pub(crate) fn held_elsewhere(
        &self,
        drive: &DriveId,
        item: &ItemId,
        scope_key: &str,
    ) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT i.local_path FROM items i LEFT JOIN crawls c ON c.id = i.last_seen_crawl
                 WHERE i.drive_id = ?1 AND i.item_id = ?2 AND i.remote_deleted = 0 AND i.kind <> 'remote'
                   AND (c.scope_key IS NULL OR c.scope_key <> ?3)",
                params![drive.key(), item.key(), scope_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A shortcut left the user's tree: flag what its crawl stored of `drive` at or below `remote_path` as
    /// deleted remotely (the local copies are kept, as for any deletion). Returns how many were flagged.
    pub(crate) fn forget_shared_tree(&mut self, drive: &DriveId, remote_path: &str) -> Result<u64> {
        let prefix = format!("{}/", remote_path.trim_end_matches('/'));
        let at = now();
        let n = self
            .conn
            .execute(
                "UPDATE items SET remote_deleted = 1, deleted_at = ?4, updated_at = ?4
                 WHERE drive_id = ?1 AND remote_deleted = 0
                   AND (remote_path = ?2 OR substr(remote_path, 1, length(?3)) = ?3)",
                params![drive.key(), remote_path, prefix, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Shortcuts followed and not, and the files of shared drives on disk (a shared drive is any drive but the
    /// ones the backup is of).
    pub(crate) fn shared_counts(&self) -> Result<SharedCounts> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM items WHERE kind = 'remote' AND remote_deleted = 0 AND state = 'done'),
                        (SELECT count(*) FROM items WHERE kind = 'remote' AND remote_deleted = 0 AND state = 'skipped'),
                        (SELECT count(*) FROM items WHERE kind = 'file' AND state = 'done'
                             AND drive_id NOT IN (SELECT drive_id FROM drives))",
                [],
                |r| {
                    Ok(SharedCounts {
                        shortcuts_followed: to_u64(r.get(0)?),
                        shortcuts_skipped: to_u64(r.get(1)?),
                        files_done: to_u64(r.get(2)?),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }
}
