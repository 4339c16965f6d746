//! Crawl bookkeeping: one crawl is one full listing of a scope; its frontier holds the folders still to list
//! and the saved cursor of a partly listed one, committed with each page so a killed crawl resumes without
//! listing a committed page twice. Finishing a crawl flags what it did not see as deleted remotely.
//!
//! Knows nothing of Graph: a `next_link` is an opaque string the crawler saved.

use rusqlite::{OptionalExtension as _, params};

use super::items::{ItemKind, NewItem, Skip, upsert};
use super::{Manifest, Result, now, sql_err};
use crate::ids::{DriveId, ItemId};

/// How [`Manifest::begin_crawl`] found things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrawlStart {
    /// The crawl's ID.
    pub(crate) crawl_id: i64,
    /// Whether an interrupted crawl is being resumed (its frontier is kept).
    pub resumed: bool,
}

/// A folder still to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontierEntry {
    /// The folder.
    pub(crate) folder_id: ItemId,
    /// Its remote path.
    pub(crate) folder_path: String,
    /// Its relative local path.
    pub(crate) folder_local_path: String,
    /// Where its listing stopped, if it is partly listed.
    pub(crate) next_link: Option<String>,
}

/// One listed page, committed with its frontier update in one transaction.
#[derive(Debug, Clone)]
pub struct PageCommit {
    /// The drive.
    pub drive_id: DriveId,
    /// The folder being listed.
    pub(crate) folder_id: ItemId,
    /// The page's items.
    pub(crate) items: Vec<NewItem>,
    /// The next page's link; `None` when this was the last page.
    pub(crate) next_link: Option<String>,
}

impl Manifest {
    /// Start a crawl of `scope_key` on `drive` rooted at `root`, or resume the unfinished one.
    ///
    /// A new crawl stores the root row and seeds the frontier with it. A resumed one is returned as it was
    /// (its frontier and saved cursors kept); `root` is then ignored.
    pub(crate) fn begin_crawl(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        root: &NewItem,
    ) -> Result<CrawlStart> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let unfinished: Option<i64> = tx
            .query_row(
                "SELECT id FROM crawls WHERE drive_id = ?1 AND scope_key = ?2 AND completed_at IS NULL
                 ORDER BY id DESC LIMIT 1",
                params![drive.key(), scope_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        if let Some(crawl_id) = unfinished {
            return Ok(CrawlStart {
                crawl_id,
                resumed: true,
            });
        }
        let at = now();
        // Folders an incremental round queued under the previous crawl are listed by this one anyway.
        tx.execute(
            "DELETE FROM frontier WHERE crawl_id IN (SELECT id FROM crawls WHERE drive_id = ?1 AND scope_key = ?2)",
            params![drive.key(), scope_key],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO crawls (drive_id, scope_key, scope_root_id, scope_path, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![drive.key(), scope_key, root.item_id.key(), root.remote_path, at],
        )
        .map_err(&err)?;
        let crawl_id = tx.last_insert_rowid();
        let root_local = upsert(&tx, root, crawl_id, &at).map_err(&err)?;
        tx.execute(
            "INSERT OR REPLACE INTO frontier (crawl_id, drive_id, folder_id, folder_path, folder_local_path, next_link,
                                               folder_spelling)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
            params![crawl_id, drive.key(), root.item_id.key(), root.remote_path, root_local, root.served_id],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(CrawlStart {
            crawl_id,
            resumed: false,
        })
    }

    /// The scope's root folder is now `root`: when the scope's last crawl knew it under another ID (the service
    /// changed it: `OneDrive` Personal roots became `{driveId}!sea8cc6beffdb43d7976fbc7da445c639` in 2024–25,
    /// onedrive-api-docs #1890), re-key its row and every reference to it, so the same folder keeps its rows,
    /// children and delta state instead of looking deleted and new. Returns whether anything changed.
    pub(crate) fn rekey_scope_root(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        root: &ItemId,
    ) -> Result<bool> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let old: Option<String> = tx
            .query_row(
                "SELECT scope_root_id FROM crawls WHERE drive_id = ?1 AND scope_key = ?2 ORDER BY id DESC LIMIT 1",
                params![drive.key(), scope_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let new = root.key();
        let Some(old) = old.filter(|old| *old != new) else {
            return Ok(false);
        };
        let d = drive.key();
        // A row already under the new ID (a drifted run before this one) gives way to the old, fuller one,
        // and so does its listing URL.
        tx.execute(
            "DELETE FROM listed_urls WHERE item_row IN (SELECT rowid FROM items WHERE drive_id = ?1 AND item_id = ?2
               AND EXISTS (SELECT 1 FROM items WHERE drive_id = ?1 AND item_id = ?3))",
            params![d, new, old],
        )
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM items WHERE drive_id = ?1 AND item_id = ?2
               AND EXISTS (SELECT 1 FROM items WHERE drive_id = ?1 AND item_id = ?3)",
            params![d, new, old],
        )
        .map_err(&err)?;
        for sql in [
            "UPDATE items SET item_id = ?2 WHERE drive_id = ?1 AND item_id = ?3",
            "UPDATE items SET parent_id = ?2 WHERE drive_id = ?1 AND parent_id = ?3",
            "UPDATE crawls SET scope_root_id = ?2 WHERE drive_id = ?1 AND scope_root_id = ?3",
            "UPDATE delta_state SET scope_root_id = ?2 WHERE drive_id = ?1 AND scope_root_id = ?3",
            "UPDATE OR IGNORE frontier SET folder_id = ?2, folder_spelling = NULL WHERE drive_id = ?1 AND folder_id = ?3",
            "UPDATE drives SET root_item_id = ?2 WHERE drive_id = ?1 AND root_item_id = ?3",
        ] {
            tx.execute(sql, params![d, new, old]).map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(true)
    }

    /// The scope's last crawl, when it is complete and still has folders queued (an incremental round queued
    /// folders that delta showed without their contents).
    pub(crate) fn queued_listing(&self, drive: &DriveId, scope_key: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT c.id FROM crawls c WHERE c.drive_id = ?1 AND c.scope_key = ?2 AND c.completed_at IS NOT NULL
                   AND c.id = (SELECT max(id) FROM crawls WHERE drive_id = ?1 AND scope_key = ?2)
                   AND EXISTS (SELECT 1 FROM frontier f WHERE f.crawl_id = c.id)",
                params![drive.key(), scope_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` folders still to list, oldest first (breadth-first). Which of them are already being
    /// listed is the caller's business.
    pub(crate) fn frontier(&self, crawl_id: i64, limit: usize) -> Result<Vec<FrontierEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT coalesce(folder_spelling, folder_id), folder_path, folder_local_path, next_link FROM frontier
                 WHERE crawl_id = ?1 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![crawl_id, limit_i64(limit)], |r| {
            Ok(FrontierEntry {
                folder_id: ItemId(r.get(0)?),
                folder_path: r.get(1)?,
                folder_local_path: r.get(2)?,
                next_link: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Commit one listed page in one transaction: upsert its items (seen by this crawl), queue its subfolders
    /// not yet listed by this crawl, and save the folder's cursor — or, on its last page, drop it from the
    /// frontier and mark it listed by this crawl.
    pub(crate) fn commit_page(&mut self, crawl_id: i64, page: &PageCommit) -> Result<()> {
        let err = sql_err(&self.path);
        let at = now();
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut enqueue = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO frontier (crawl_id, drive_id, folder_id, folder_path, folder_local_path, next_link,
                                                     folder_spelling)
                     SELECT ?1, ?2, ?3, ?4, ?5, NULL, ?6
                     WHERE NOT EXISTS (SELECT 1 FROM items WHERE drive_id = ?2 AND item_id = ?3 AND listed_crawl = ?1)",
                )
                .map_err(&err)?;
            let at_ms = super::urls::now_ms();
            for item in &page.items {
                let local_path = upsert(&tx, item, crawl_id, &at).map_err(&err)?;
                super::urls::remember(&tx, item, at_ms).map_err(&err)?;
                // A skipped folder (refused before) is not listed. One the filters exclude still is: its
                // items are marked, so a later run with other filters needs no new listing.
                if item.kind == ItemKind::Folder && item.skip.is_none() {
                    enqueue
                        .execute(params![
                            crawl_id,
                            item.drive_id.key(),
                            item.item_id.key(),
                            item.remote_path,
                            local_path,
                            item.served_id
                        ])
                        .map_err(&err)?;
                }
            }
        }
        if let Some(link) = &page.next_link {
            tx.prepare_cached(
                "UPDATE frontier SET next_link = ?3 WHERE crawl_id = ?1 AND folder_id = ?2",
            )
            .and_then(|mut s| s.execute(params![crawl_id, page.folder_id.key(), link]))
            .map_err(&err)?;
        } else {
            tx.prepare_cached("DELETE FROM frontier WHERE crawl_id = ?1 AND folder_id = ?2")
                .and_then(|mut s| s.execute(params![crawl_id, page.folder_id.key()]))
                .map_err(&err)?;
            // A folder's `done` means "listed".
            tx.prepare_cached(
                "UPDATE items SET listed_crawl = ?1, state = 'done', updated_at = ?4
                 WHERE drive_id = ?2 AND item_id = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    crawl_id,
                    page.drive_id.key(),
                    page.folder_id.key(),
                    at
                ])
            })
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// A folder whose listing the service refused: drop it from the frontier and record why (it becomes
    /// `skipped`). What was known under it counts as seen, so this crawl does not flag it as deleted.
    pub(crate) fn refuse_folder(
        &mut self,
        crawl_id: i64,
        drive: &DriveId,
        folder: &ItemId,
        reason: &Skip,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "DELETE FROM frontier WHERE crawl_id = ?1 AND folder_id = ?2",
            params![crawl_id, folder.key()],
        )
        .map_err(&err)?;
        tx.execute(
            "UPDATE items SET listed_crawl = ?1, state = 'skipped', skip_reason = ?4, skip_class = ?6,
                 updated_at = ?5
             WHERE drive_id = ?2 AND item_id = ?3",
            params![
                crawl_id,
                drive.key(),
                folder.key(),
                reason.reason,
                now(),
                reason.class.as_str()
            ],
        )
        .map_err(&err)?;
        let folder_path: Option<String> = tx
            .query_row(
                "SELECT remote_path FROM items WHERE drive_id = ?1 AND item_id = ?2",
                params![drive.key(), folder.key()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        if let Some(folder_path) = folder_path {
            let prefix = format!("{}/", folder_path.trim_end_matches('/'));
            tx.execute(
                "UPDATE items SET last_seen_crawl = ?1
                 WHERE drive_id = ?2 AND substr(remote_path, 1, length(?3)) = ?3",
                params![crawl_id, drive.key(), prefix],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Mark a crawl complete and flag as deleted remotely every item of its drive under its scope path that
    /// it did not see (and that was not flagged already). Returns how many were flagged.
    ///
    /// Call it only once the frontier is empty: a crawl finished early would flag unlisted folders' contents.
    pub(crate) fn finish_crawl(&mut self, crawl_id: i64) -> Result<u64> {
        let err = sql_err(&self.path);
        let at = now();
        let tx = self.conn.transaction().map_err(&err)?;
        let (drive, scope_path): (String, String) = tx
            .query_row(
                "SELECT drive_id, scope_path FROM crawls WHERE id = ?1",
                [crawl_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&err)?;
        // "/" covers everything; "/a" covers "/a" and "/a/…" but not "/ab".
        let prefix = format!("{}/", scope_path.trim_end_matches('/'));
        let flagged = tx
            .execute(
                "UPDATE items SET remote_deleted = 1, deleted_at = ?4, updated_at = ?4
                 WHERE drive_id = ?1 AND remote_deleted = 0 AND coalesce(last_seen_crawl, 0) < ?2
                   AND (remote_path = ?3 OR substr(remote_path, 1, length(?5)) = ?5)",
                params![drive, crawl_id, scope_path, at, prefix],
            )
            .map_err(&err)?;
        tx.execute("DELETE FROM frontier WHERE crawl_id = ?1", [crawl_id])
            .map_err(&err)?;
        tx.execute(
            "UPDATE crawls SET completed_at = ?2 WHERE id = ?1",
            params![crawl_id, at],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(flagged as u64)
    }

    /// How far a crawl is: (folders still in its frontier, items it has seen so far).
    #[cfg(test)]
    pub(crate) fn crawl_progress(&self, crawl_id: i64) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM frontier WHERE crawl_id = ?1),
                        (SELECT count(*) FROM items WHERE last_seen_crawl = ?1)",
                [crawl_id],
                |r| {
                    Ok((
                        super::items::to_u64(r.get(0)?),
                        super::items::to_u64(r.get(1)?),
                    ))
                },
            )
            .map_err(|e| self.err(e))
    }
}

/// A row limit as `SQLite` wants it.
pub(super) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SkipClass;
    use crate::manifest::testutil::{drive, file, folder, manifest};

    fn page(folder_id: &str, items: Vec<NewItem>, next: Option<&str>) -> PageCommit {
        PageCommit {
            drive_id: drive(),
            folder_id: ItemId::from(folder_id),
            items,
            next_link: next.map(str::to_owned),
        }
    }

    fn frontier_ids(m: &Manifest, crawl: i64) -> Vec<(String, Option<String>)> {
        m.frontier(crawl, 100)
            .unwrap()
            .into_iter()
            .map(|e| (e.folder_id.0, e.next_link))
            .collect()
    }

    fn count(m: &Manifest, sql: &str) -> i64 {
        m.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_killed_crawl_resumes_from_its_frontier_without_relisting_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let root = folder("/");

        // Run 1: list the root's first page (a folder and a file), then get killed.
        let mut m = Manifest::open(&path).unwrap();
        let start = m.begin_crawl(&drive(), "root", &root).unwrap();
        assert!(!start.resumed);
        let crawl = start.crawl_id;
        assert_eq!(frontier_ids(&m, crawl), [("/".to_owned(), None)]);
        m.commit_page(
            crawl,
            &page(
                "/",
                vec![folder("/A"), file("/x.jpg", 3, "Q")],
                Some("link-2"),
            ),
        )
        .unwrap();
        assert_eq!(
            frontier_ids(&m, crawl),
            [
                ("/".to_owned(), Some("link-2".to_owned())),
                ("/A".to_owned(), None)
            ]
        );
        assert_eq!(m.crawl_progress(crawl).unwrap(), (2, 3));
        drop(m); // kill -9 between pages

        // Run 2: the same crawl resumes with the saved cursor; folder A is listed completely.
        let mut m = Manifest::open(&path).unwrap();
        let again = m.begin_crawl(&drive(), "root", &root).unwrap();
        assert_eq!(
            again,
            CrawlStart {
                crawl_id: crawl,
                resumed: true
            }
        );
        assert_eq!(
            frontier_ids(&m, crawl),
            [
                ("/".to_owned(), Some("link-2".to_owned())),
                ("/A".to_owned(), None)
            ]
        );
        m.commit_page(crawl, &page("/A", vec![file("/A/1.jpg", 1, "Q1")], None))
            .unwrap();
        drop(m);

        // Run 3: the root's second page lists A again (it is still its child): A is not queued twice.
        let mut m = Manifest::open(&path).unwrap();
        assert!(m.begin_crawl(&drive(), "root", &root).unwrap().resumed);
        assert_eq!(
            frontier_ids(&m, crawl),
            [("/".to_owned(), Some("link-2".to_owned()))]
        );
        m.commit_page(crawl, &page("/", vec![folder("/A"), folder("/B")], None))
            .unwrap();
        assert_eq!(frontier_ids(&m, crawl), [("/B".to_owned(), None)]);
        m.commit_page(crawl, &page("/B", vec![], None)).unwrap();
        assert!(frontier_ids(&m, crawl).is_empty());
        assert_eq!(m.finish_crawl(crawl).unwrap(), 0);
        assert_eq!(count(&m, "SELECT count(*) FROM items"), 5);
        assert_eq!(
            count(
                &m,
                "SELECT count(*) FROM items WHERE kind = 'folder' AND state = 'done'"
            ),
            3
        );

        // The next crawl of the scope is a new one, seeded with the root again.
        let next = m.begin_crawl(&drive(), "root", &root).unwrap();
        assert_eq!(
            next,
            CrawlStart {
                crawl_id: crawl + 1,
                resumed: false
            }
        );
        assert_eq!(frontier_ids(&m, next.crawl_id), [("/".to_owned(), None)]);
        // Folders listed by the previous crawl are queued again by this one.
        m.commit_page(next.crawl_id, &page("/", vec![folder("/A")], None))
            .unwrap();
        assert_eq!(frontier_ids(&m, next.crawl_id), [("/A".to_owned(), None)]);
    }

    #[test]
    fn crawls_of_different_scopes_are_independent() {
        let (_dir, mut m) = manifest();
        let a = m.begin_crawl(&drive(), "root", &folder("/")).unwrap();
        let b = m
            .begin_crawl(&drive(), "path:/Photos", &folder("/Photos"))
            .unwrap();
        assert_ne!(a.crawl_id, b.crawl_id);
        assert!(!b.resumed);
        let other_drive = m
            .begin_crawl(&DriveId::from("d2"), "root", &folder("/"))
            .unwrap();
        assert!(!other_drive.resumed);
    }

    #[test]
    fn skipped_folders_are_not_queued() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        let mut vault = folder("/Vault");
        vault.skip = Some(Skip::new(SkipClass::Inaccessible, "excluded"));
        m.commit_page(crawl, &page("/", vec![vault], None)).unwrap();
        assert!(frontier_ids(&m, crawl).is_empty());
    }

    #[test]
    fn finishing_a_crawl_flags_what_it_did_not_see_under_its_scope_only() {
        let (_dir, mut m) = manifest();
        let tree = || {
            vec![
                folder("/Photos"),
                file("/Photos/a.jpg", 1, "Q"),
                file("/Photos/b.jpg", 1, "Q"),
                folder("/PhotosOld"),
                file("/PhotosOld/c.jpg", 1, "Q"),
                file("/top.txt", 1, "Q"),
            ]
        };
        let first = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(first, &page("/", tree(), None)).unwrap();
        assert_eq!(m.finish_crawl(first).unwrap(), 0);

        // A crawl of /Photos that no longer sees b.jpg flags it, and nothing outside /Photos.
        let photos = m
            .begin_crawl(&drive(), "path:/Photos", &folder("/Photos"))
            .unwrap()
            .crawl_id;
        m.commit_page(
            photos,
            &page("/Photos", vec![file("/Photos/a.jpg", 1, "Q")], None),
        )
        .unwrap();
        assert_eq!(m.finish_crawl(photos).unwrap(), 1);
        let flagged = |m: &Manifest| -> Vec<String> {
            let mut s = m
                .conn
                .prepare("SELECT item_id FROM items WHERE remote_deleted = 1 AND deleted_at IS NOT NULL ORDER BY 1")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(flagged(&m), ["/Photos/b.jpg"]);

        // A whole-drive crawl that sees only /top.txt flags the rest (not b.jpg twice, not the root).
        let all = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(all, &page("/", vec![file("/top.txt", 1, "Q")], None))
            .unwrap();
        assert_eq!(m.finish_crawl(all).unwrap(), 4);
        assert_eq!(
            flagged(&m),
            [
                "/Photos",
                "/Photos/a.jpg",
                "/Photos/b.jpg",
                "/PhotosOld",
                "/PhotosOld/c.jpg"
            ]
        );
        assert_eq!(m.status().unwrap().remote_deleted, 5);

        // Seen again: no longer flagged.
        let back = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(
            back,
            &page("/", vec![file("/Photos/a.jpg", 1, "Q")], Some("next")),
        )
        .unwrap();
        assert!(!flagged(&m).contains(&"/Photos/a.jpg".to_owned()));
        assert_eq!(m.status().unwrap().crawls_incomplete, 1);
    }

    #[test]
    fn a_refused_folder_is_skipped_and_its_known_contents_are_not_flagged() {
        let (_dir, mut m) = manifest();
        let first = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(first, &page("/", vec![folder("/V")], None))
            .unwrap();
        m.commit_page(first, &page("/V", vec![file("/V/s.pdf", 1, "Q")], None))
            .unwrap();
        m.finish_crawl(first).unwrap();

        let second = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(second, &page("/", vec![folder("/V")], None))
            .unwrap();
        m.refuse_folder(
            second,
            &drive(),
            &ItemId::from("/V"),
            &Skip::new(SkipClass::ListingFailed, "listing refused: 403"),
        )
        .unwrap();
        assert!(frontier_ids(&m, second).is_empty());
        assert_eq!(m.finish_crawl(second).unwrap(), 0);
        let status = m.status().unwrap();
        assert_eq!(status.skipped_by_reason[0].key, "listing refused: 403");
    }

    #[test]
    fn the_frontier_order_is_stable_and_limited() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        let folders: Vec<NewItem> = (0..50).map(|i| folder(&format!("/f{i:02}"))).collect();
        m.commit_page(crawl, &page("/", folders, None)).unwrap();
        let first = m.frontier(crawl, 10).unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(first[0].folder_id.as_str(), "/f00");
        assert_eq!(first[9].folder_id.as_str(), "/f09");
        assert_eq!(m.frontier(crawl, 10).unwrap(), first);
        assert_eq!(first[3].folder_local_path, "f03");
    }
}
