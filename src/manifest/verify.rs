//! `verify`'s side of the manifest: the files a backup holds on disk with what each must be (its size on disk
//! and the hash it was verified by when it was written), and the way back to `pending` for those that are no
//! longer so.
//!
//! Knows nothing of the file system: paths are the strings the downloader recorded.

use rusqlite::params;

use super::crawl::limit_i64;
use super::items::{SUM_LOCAL_SIZE, to_u64};
use super::{Manifest, Result, now};
use crate::ids::{DriveId, ItemId};

/// What a file on disk is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedContent {
    /// Its quickXorHash (base64): the bytes were verified by it when written.
    QuickXor(String),
    /// Its SHA-1 (hex): the listing had no quickXorHash, the bytes were verified by this.
    Sha1(String),
    /// Its size alone: it was kept without a hash that vouches for the bytes on disk (the listing gave none, or
    /// a known service quirk made the bytes differ from the listed hash).
    SizeOnly,
}

/// A done file, as `verify` checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRow {
    /// Row ID (rows are paged by it).
    pub(crate) rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// Its remote path, for messages.
    pub remote_path: String,
    /// Where its bytes are, relative to the destination.
    pub path: String,
    /// Its length on disk.
    pub size: u64,
    /// What the bytes must hash to.
    pub(crate) expected: ExpectedContent,
}

/// The files and bytes `verify` would read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyTotals {
    /// Files.
    pub files: u64,
    /// Their bytes on disk.
    pub bytes: u64,
}

/// Done files whose bytes are in the backup's tree. Files `--mirror-deletes` moved into the trash are not the
/// backup any more (the drive deleted them), so they are left out, as a restore leaves them out.
const DONE_ON_DISK: &str = "kind = 'file' AND state = 'done'
     AND lower(substr(coalesce(written_path, local_path), 1, 10)) <> '.odbackup/'";

impl Manifest {
    /// How many done files are on disk and their bytes.
    pub(crate) fn verify_totals(&self) -> Result<VerifyTotals> {
        self.conn
            .query_row(
                &format!("SELECT count(*), {SUM_LOCAL_SIZE} FROM items WHERE {DONE_ON_DISK}"),
                [],
                |r| {
                    Ok(VerifyTotals {
                        files: to_u64(r.get(0)?),
                        bytes: to_u64(r.get(1)?),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` done files after row `after`; with `sample_ppm`, each row is taken with that chance in a
    /// million (`SQLite`'s `random()`: a fresh sample each run, so repeated samples cover the whole backup).
    pub(crate) fn verify_rows_after(
        &self,
        after: i64,
        limit: usize,
        sample_ppm: Option<u32>,
    ) -> Result<Vec<VerifyRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT rowid, drive_id, item_id, remote_path, coalesce(written_path, local_path),
                        coalesce(local_size, size, 0), verification, quick_xor, sha1
                 FROM items
                 WHERE rowid > ?1 AND {DONE_ON_DISK}
                   AND (?3 IS NULL OR abs(random() % 1000000) < ?3)
                 ORDER BY rowid LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after, limit_i64(limit), sample_ppm], |r| {
            let verification: Option<String> = r.get(6)?;
            let quick_xor: Option<String> = r.get(7)?;
            let sha1: Option<String> = r.get(8)?;
            // Only the hash the bytes were verified by when written vouches for them now: a file kept with a
            // caveat (Live Photo, rewritten by the service) has bytes that differ from the listed hash.
            let expected = match (verification.as_deref(), quick_xor, sha1) {
                (Some("quickxor"), Some(qx), _) => ExpectedContent::QuickXor(qx),
                (Some("sha1"), _, Some(sha1)) => ExpectedContent::Sha1(sha1),
                _ => ExpectedContent::SizeOnly,
            };
            Ok(VerifyRow {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                remote_path: r.get(3)?,
                path: r.get(4)?,
                size: to_u64(r.get(5)?),
                expected,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// A done file found missing, changed or unreadable on disk goes back to `pending`, so the next run fetches
    /// it again; where its bytes were is forgotten (the caller moved anything there into the trash). A row that
    /// is no longer done (a run changed it meanwhile) is left as it is. Returns whether the row changed.
    pub(crate) fn mark_for_refetch(&mut self, drive: &DriveId, item: &ItemId) -> Result<bool> {
        self.conn
            .prepare_cached(
                "UPDATE items SET state = 'pending', written_path = NULL, verification = NULL,
                     downloaded_at = NULL, caveat_class = NULL, caveat = NULL, local_size = NULL, updated_at = ?3
                 WHERE drive_id = ?1 AND item_id = ?2 AND state = 'done' AND kind = 'file'",
            )
            .and_then(|mut s| s.execute(params![drive.key(), item.key(), now()]))
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::ExpectedContent;
    use crate::ids::ItemId;
    use crate::manifest::PageCommit;
    use crate::manifest::testutil::{drive, file, folder, manifest};

    #[test]
    fn done_files_come_with_the_hash_they_were_verified_by_and_go_back_to_pending() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items: vec![file("/a.jpg", 10, "QX"), file("/b.jpg", 20, "QY")],
                next_link: None,
            },
        )
        .unwrap();
        m.conn
            .execute_batch(
                "UPDATE items SET state = 'done', verification = 'quickxor', written_path = local_path WHERE name = 'a.jpg';
                 UPDATE items SET state = 'done', verification = 'unverified', local_size = 7, written_path = local_path
                     WHERE name = 'b.jpg';",
            )
            .unwrap();
        let totals = m.verify_totals().unwrap();
        assert_eq!((totals.files, totals.bytes), (2, 17));
        let rows = m.verify_rows_after(0, 10, None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].expected, ExpectedContent::QuickXor("QX".into()));
        assert_eq!(
            (rows[1].size, &rows[1].expected),
            (7, &ExpectedContent::SizeOnly)
        );
        assert!(m.verify_rows_after(0, 10, Some(0)).unwrap().is_empty());
        assert_eq!(
            m.verify_rows_after(0, 10, Some(1_000_000)).unwrap().len(),
            2
        );

        assert!(
            m.mark_for_refetch(&rows[0].drive_id, &rows[0].item_id)
                .unwrap()
        );
        assert!(
            !m.mark_for_refetch(&rows[0].drive_id, &rows[0].item_id)
                .unwrap()
        );
        assert_eq!(m.verify_totals().unwrap().files, 1);
    }
}
