//! Where files are on disk, as the downloader moves them about: a file that made way for another (into the
//! trash) takes every row that recorded it along, and a file taken over by a live item leaves the rows of
//! deleted items that recorded it.

use rusqlite::params;

use super::{Manifest, Result};
use crate::ids::{DriveId, ItemId};

impl Manifest {
    /// Record that the file at `from` (relative to the destination) is now at `to`, for every row that
    /// recorded it at `from`: the rows of files deleted on the drive, or of earlier versions, keep pointing at
    /// their bytes when those are moved aside.
    pub(crate) fn move_written_paths(&mut self, from: &str, to: &str) -> Result<usize> {
        self.conn
            .prepare_cached("UPDATE items SET written_path = ?2 WHERE written_path = ?1")
            .and_then(|mut stmt| stmt.execute(params![from, to]))
            .map_err(|e| self.err(e))
    }

    /// The file at `path` is `drive`/`item`'s now (downloaded there, adopted or linked): rows of files deleted
    /// on the drive that recorded their kept copy there follow that copy, to `moved_to` when it went to the
    /// trash to make way, else nowhere (its bytes are the live item's). Found through the local-path index:
    /// such a row held the same local path before it was deleted.
    pub(crate) fn hand_over_written_path(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        path: &str,
        moved_to: Option<&str>,
    ) -> Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE items SET written_path = ?4
                 WHERE coalesce(local_key, local_path) = odbackup_name_key(?3) AND remote_deleted = 1
                   AND odbackup_name_key(written_path) = odbackup_name_key(?3)
                   AND NOT (drive_id = ?1 AND item_id = ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![drive.key(), item.key(), path, moved_to]))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::testutil::manifest;

    #[test]
    fn moving_a_written_path_moves_only_the_rows_that_recorded_it() {
        let (_dir, mut m) = manifest();
        m.conn
            .execute_batch(
                "INSERT INTO items (drive_id, item_id, name, remote_path, local_path, kind, media, state, updated_at, written_path)
                 VALUES ('d', '1', 'a', '/a', 'a', 'file', 'other', 'done', 'now', 'a'),
                        ('d', '2', 'b', '/b', 'b', 'file', 'other', 'done', 'now', 'b')",
            )
            .unwrap();
        assert_eq!(m.move_written_paths("a", ".odbackup/trash/d/a").unwrap(), 1);
        let paths: Vec<String> = m
            .conn
            .prepare("SELECT written_path FROM items ORDER BY item_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(paths, [".odbackup/trash/d/a", "b"]);
    }
}
