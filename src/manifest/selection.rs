//! What a backup wants: its remembered settings (layout, filter fingerprint) and the `excluded` mark the
//! filters put on rows, judged again page by page when the filters change.
//!
//! Knows nothing of globs or dates: the caller decides, this module stores.

use rusqlite::{OptionalExtension as _, params};

use super::crawl::limit_i64;
use super::items::{ItemKind, MediaKind, to_u64};
use super::{Manifest, Result, sql_err};

/// A row as the filters judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionRow {
    /// Row ID (page on with it).
    pub(crate) rowid: i64,
    /// `/a/b.jpg`.
    pub remote_path: String,
    /// File or folder.
    pub kind: ItemKind,
    /// Photo, video or other.
    pub media: MediaKind,
    /// Size in bytes.
    pub size: u64,
    /// When it was taken (RFC 3339).
    pub(crate) taken_at: Option<String>,
    /// When it was last modified (RFC 3339).
    pub(crate) modified_at: Option<String>,
    /// Why the filters of the last judgement left it out.
    pub excluded: Option<String>,
}

impl Manifest {
    /// A remembered setting of this backup.
    pub(crate) fn setting(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Remember a setting.
    pub(crate) fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Whether the manifest holds any item yet.
    pub(crate) fn has_items(&self) -> Result<bool> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM items)", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` file and folder rows after `after_rowid`, for judging them against new filters.
    pub(crate) fn selection_rows_after(
        &self,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<SelectionRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, remote_path, kind, media, size, taken_at, modified_at, excluded FROM items
                 WHERE rowid > ?1 AND (kind = 'file' OR kind = 'folder') ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after_rowid, limit_i64(limit)], |r| {
            Ok(SelectionRow {
                rowid: r.get(0)?,
                remote_path: r.get(1)?,
                kind: ItemKind::parse(&r.get::<_, String>(2)?).unwrap_or(ItemKind::Other),
                media: MediaKind::parse(&r.get::<_, String>(3)?).unwrap_or(MediaKind::Other),
                size: to_u64(r.get(4)?),
                taken_at: r.get(5)?,
                modified_at: r.get(6)?,
                excluded: r.get(7)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Set the `excluded` mark of rows (by row ID), in one transaction.
    pub(crate) fn set_excluded(&mut self, marks: &[(i64, Option<&str>)]) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE items SET excluded = ?2 WHERE rowid = ?1")
                .map_err(&err)?;
            for (rowid, reason) in marks {
                stmt.execute(params![rowid, reason]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::PageCommit;
    use crate::manifest::testutil::{drive, file, folder, manifest};

    #[test]
    fn excluded_rows_are_not_downloaded_until_a_later_judgement_wants_them() {
        let (_dir, mut m) = manifest();
        let start = m.begin_crawl(&drive(), "root", &folder("/")).unwrap();
        let mut b = file("/b.txt", 3, "Q2");
        b.excluded = Some("extension not in the ext list".to_owned());
        m.commit_page(
            start.crawl_id,
            &PageCommit {
                drive_id: drive(),
                folder_id: "/".into(),
                items: vec![file("/a.jpg", 2, "Q1"), b],
                next_link: None,
            },
        )
        .unwrap();
        let names = |m: &crate::manifest::Manifest| {
            m.downloadable_after(0, 10, false)
                .unwrap()
                .into_iter()
                .map(|j| j.remote_path)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&m), ["/a.jpg"]);
        let rows = m.selection_rows_after(0, 10).unwrap();
        assert_eq!(rows.len(), 3, "root folder and two files");
        let b_row = rows.iter().find(|r| r.remote_path == "/b.txt").unwrap();
        assert_eq!(
            b_row.excluded.as_deref(),
            Some("extension not in the ext list")
        );
        m.set_excluded(&[(b_row.rowid, None)]).unwrap();
        assert_eq!(names(&m), ["/a.jpg", "/b.txt"]);
        assert_eq!(m.setting("filter").unwrap(), None);
        m.set_setting("filter", "x").unwrap();
        m.set_setting("filter", "y").unwrap();
        assert_eq!(m.setting("filter").unwrap().as_deref(), Some("y"));
    }

    #[test]
    fn a_path_differing_only_by_case_goes_to_the_alternative() {
        let (_dir, mut m) = manifest();
        let start = m.begin_crawl(&drive(), "root", &folder("/")).unwrap();
        let mut upper = file("/Foo.jpg", 1, "Q1");
        upper.local_path_on_clash = Some("Foo~aaaaaa.jpg".to_owned());
        let mut lower = file("/foo.jpg", 1, "Q2");
        lower.local_path_on_clash = Some("foo~bbbbbb.jpg".to_owned());
        for _ in 0..2 {
            m.commit_page(
                start.crawl_id,
                &PageCommit {
                    drive_id: drive(),
                    folder_id: "/".into(),
                    items: vec![upper.clone(), lower.clone()],
                    next_link: Some("more".to_owned()),
                },
            )
            .unwrap();
        }
        let mut paths: Vec<_> = m
            .downloadable_after(0, 10, false)
            .unwrap()
            .into_iter()
            .map(|j| j.local_path.unwrap())
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            ["Foo.jpg", "foo~bbbbbb.jpg"],
            "stable on a second listing"
        );
    }
}
