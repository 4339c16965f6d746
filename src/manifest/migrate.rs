//! Schema migrations: the files in `migrations/`, applied in order, all pending ones in one transaction together
//! with the new `PRAGMA user_version` (and, on creation, `PRAGMA application_id`). A released migration is never
//! edited; a change is a new file appended to [`MIGRATIONS`].
//!
//! Knows only `SQLite`: nothing of what the tables mean.

use rusqlite::TransactionBehavior;

use super::{APPLICATION_ID, Manifest, ManifestError, Result, sql_err};

/// Every migration, in order; the schema version is the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_filters_layout.sql"),
    include_str!("../../migrations/0003_caveats.sql"),
    include_str!("../../migrations/0004_listed_download_urls.sql"),
    include_str!("../../migrations/0005_canonical_ids.sql"),
    include_str!("../../migrations/0006_restore.sql"),
    include_str!("../../migrations/0007_onenote.sql"),
    include_str!("../../migrations/0008_dedupe.sql"),
    include_str!("../../migrations/0009_skip_class.sql"),
    include_str!("../../migrations/0010_listed_urls_by_row.sql"),
    include_str!("../../migrations/0011_restore_canonical_drive_ids.sql"),
];

/// The schema version this build writes.
pub(super) fn known() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Apply the migrations this manifest lacks; refuse one written by a newer odbackup.
///
/// All of them run in one `BEGIN IMMEDIATE` transaction that first reads `user_version` again: the write lock is
/// taken before the version is read, so a second connection migrating at the same moment waits, then finds the
/// work done, instead of running the same `CREATE TABLE` twice; and a reader (or a crash) sees the schema before
/// the upgrade or after it, never half of it.
pub(super) fn migrate(manifest: &mut Manifest) -> Result<()> {
    let err = sql_err(&manifest.path);
    let tx = manifest
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&err)?;
    if version > known() {
        return Err(ManifestError::TooNew {
            path: manifest.path.clone(),
            found: version,
            known: known(),
        });
    }
    let applied = usize::try_from(version).unwrap_or(0);
    if applied >= MIGRATIONS.len() {
        return Ok(());
    }
    for sql in &MIGRATIONS[applied..] {
        tx.execute_batch(sql).map_err(&err)?;
    }
    // The header pragmas are part of the transaction: a crash leaves the old version and its tables.
    tx.execute_batch(&format!(
        "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
        known()
    ))
    .map_err(&err)?;
    tx.commit().map_err(&err)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::MIGRATIONS;
    use crate::manifest::Manifest;

    /// A manifest as schema 4 left it, with rows a drifting service produced: the same personal drive spelled
    /// in upper and lower case, one item under both spellings, a remote reference missing its leading zero.
    fn schema_4_manifest(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = 4; PRAGMA application_id = {};",
            super::APPLICATION_ID
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO drives VALUES ('5EA4B1C0D2E3F617', 'personal', NULL, '5EA4B1C0D2E3F617!101', 't');
             INSERT INTO crawls VALUES (1, '5EA4B1C0D2E3F617', 'root', '5EA4B1C0D2E3F617!101', '/', 't', 't');
             INSERT INTO delta_state (drive_id, scope_key, scope_root_id, delta_link)
                 VALUES ('5EA4B1C0D2E3F617', 'root', '5EA4B1C0D2E3F617!101', 'link-1');
             INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, media, state,
                                updated_at, last_seen_crawl, remote_ref)
             VALUES ('5EA4B1C0D2E3F617', '5EA4B1C0D2E3F617!101', NULL, '', '/', '', 'folder', 'other', 'done', 't', 1, NULL),
                    ('5EA4B1C0D2E3F617', '5EA4B1C0D2E3F617!102', '5EA4B1C0D2E3F617!101', 'a.jpg', '/a.jpg', 'a.jpg',
                     'file', 'photo', 'done', 't', 1, NULL),
                    ('5ea4b1c0d2e3f617', '5ea4b1c0d2e3f617!102', '5ea4b1c0d2e3f617!101', 'a.jpg', '/a.jpg',
                     'a~1f2e3d.jpg', 'file', 'photo', 'pending', 't', 2, NULL),
                    ('5EA4B1C0D2E3F617', '5EA4B1C0D2E3F617!103', '5EA4B1C0D2E3F617!101', 'Shared', '/Shared',
                     'Shared', 'remote', 'other', 'skipped', 't', 1, 'a1b2c3d4e5f6071/A1B2C3D4E5F6071!7'),
                    ('b!AbC', '01ABC', NULL, 'x', '/x', 'x', 'file', 'other', 'done', 't', 1, NULL);",
        )
        .unwrap();
    }

    /// `(drive_id, item_id, parent_id, local_path, state, remote_ref)` of an item row.
    type Row = (
        String,
        String,
        Option<String>,
        String,
        String,
        Option<String>,
    );

    #[test]
    fn schema_11_keys_restore_targets_on_the_canonical_drive_id_without_losing_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.sqlite");
        // Schema 10 differs from 11 only in the spellings the rows hold.
        drop(Manifest::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        // A personal target in upper case missing its leading zero, one already canonical for another folder
        // and its misspelt twin, and a business library whose ID is left as it is.
        conn.execute_batch(
            "PRAGMA user_version = 10;
             INSERT INTO restore_targets (id, drive_id, root_path, created_at) VALUES
                 (1, 'ABCDEF012345678', '/', 't'), (2, '0abcdef012345678', '/To', 't'),
                 (3, 'ABCDEF012345678', '/To', 't'), (4, 'b!Xy-Z', '/', 't');
             INSERT INTO restore_files (target_id, source_path, kind, remote_path, size, stamp, state, updated_at)
                 VALUES (1, 'a.jpg', 'file', 'a.jpg', 1, '1:1', 'done', 't');",
        )
        .unwrap();
        drop(conn);
        let mut m = Manifest::open(&path).unwrap();
        let ids: Vec<(i64, String)> = m
            .conn
            .prepare("SELECT id, drive_id FROM restore_targets ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let spelt = |id: i64| ids.iter().find(|(i, _)| *i == id).unwrap().1.clone();
        assert_eq!(spelt(1), "0abcdef012345678");
        assert_eq!(spelt(2), "0abcdef012345678");
        assert_eq!(
            spelt(3),
            "ABCDEF012345678",
            "its canonical twin for /To already exists"
        );
        assert_eq!(spelt(4), "b!Xy-Z");
        // Whatever spelling the service uses now, a restore finds its earlier target, files and all.
        for spelling in ["ABCDEF012345678", "0ABCDEF012345678", "abcdef012345678"] {
            assert_eq!(m.find_restore_target(spelling, "/").unwrap(), Some(1));
            assert_eq!(m.find_restore_target(spelling, "/To").unwrap(), Some(2));
        }
        assert_eq!(
            m.restore_target("abcdef012345678", "/", "personal")
                .unwrap(),
            1
        );
        let files: i64 = m
            .conn
            .query_row(
                "SELECT count(*) FROM restore_files WHERE target_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(files, 1);
    }

    #[test]
    fn notebooks_earlier_versions_skipped_are_marked_and_their_scopes_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.sqlite");
        // The schema before the onenote migration, as this build would have left it: the full schema without what 0007 adds.
        drop(Manifest::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        // One version before the onenote migration (the seventh), without what the later ones add either.
        conn.execute_batch(&format!(
            "ALTER TABLE items DROP COLUMN package; DROP INDEX items_content; DROP INDEX items_linked;
             ALTER TABLE items DROP COLUMN linked_drive_id; ALTER TABLE items DROP COLUMN linked_item_id;
             ALTER TABLE items DROP COLUMN skip_class;
             DROP TABLE listed_urls; ALTER TABLE delta_staging DROP COLUMN listed_url;
             ALTER TABLE delta_staging DROP COLUMN listed_at;
             CREATE TABLE listed_urls (drive_id TEXT NOT NULL, item_id TEXT NOT NULL, version TEXT NOT NULL,
                                       url TEXT NOT NULL, fetched_at INTEGER NOT NULL,
                                       PRIMARY KEY (drive_id, item_id));
             PRAGMA user_version = {};
             INSERT INTO delta_state (drive_id, scope_key, scope_root_id, delta_link) VALUES ('d', 'root', 'r', 'https://x/delta?token=1');
             INSERT INTO items (drive_id, item_id, name, remote_path, local_path, kind, media, state, skip_reason, updated_at)
             VALUES ('d', 'nb', 'Work', '/Work', 'Work', 'package', 'other', 'skipped',
                     'oneNote package: the service offers no download for it', 't');",
            6
        ))
        .unwrap();
        drop(conn);
        let m = Manifest::open(&path).unwrap();
        let (package, link): (Option<String>, Option<String>) = m
            .conn
            .query_row(
                "SELECT (SELECT package FROM items WHERE item_id = 'nb'), (SELECT delta_link FROM delta_state)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((package.as_deref(), link), (Some("oneNote"), None));
    }

    #[test]
    fn schema_5_rekeys_personal_ids_canonically_and_keeps_the_better_of_two_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        schema_4_manifest(&path);
        let m = Manifest::open(&path).unwrap();
        let rows: Vec<Row> = m
            .conn
            .prepare("SELECT drive_id, item_id, parent_id, local_path, state, remote_ref FROM items ORDER BY item_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let d = "5ea4b1c0d2e3f617";
        assert_eq!(
            rows,
            [
                (
                    "b!AbC".into(),
                    "01ABC".into(),
                    None,
                    "x".into(),
                    "done".into(),
                    None
                ),
                (
                    d.into(),
                    format!("{d}!101"),
                    None,
                    String::new(),
                    "done".into(),
                    None
                ),
                // The downloaded row wins over the drifted duplicate, with its unsuffixed path.
                (
                    d.into(),
                    format!("{d}!102"),
                    Some(format!("{d}!101")),
                    "a.jpg".into(),
                    "done".into(),
                    None
                ),
                (
                    d.into(),
                    format!("{d}!103"),
                    Some(format!("{d}!101")),
                    "Shared".into(),
                    "skipped".into(),
                    Some("0a1b2c3d4e5f6071/0a1b2c3d4e5f6071!7".into())
                ),
            ]
        );
        let one = |sql: &str| -> String { m.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            one("SELECT drive_id || ' ' || root_item_id FROM drives"),
            format!("{d} {d}!101")
        );
        assert_eq!(
            one("SELECT drive_id || ' ' || scope_root_id FROM crawls"),
            format!("{d} {d}!101")
        );
        assert_eq!(
            one("SELECT drive_id || ' ' || scope_root_id || ' ' || delta_link FROM delta_state"),
            format!("{d} {d}!101 link-1")
        );
        // The SQL agrees with the Rust rules it mirrors.
        assert_eq!(
            crate::ids::canonical_item_id("A1B2C3D4E5F6071!7"),
            "0a1b2c3d4e5f6071!7"
        );
        assert_eq!(crate::ids::canonical_drive_id("5EA4B1C0D2E3F617"), d);
        assert_eq!(crate::ids::canonical_item_id("01ABC"), "01ABC");
    }

    /// Tables, indexes and triggers of a manifest with their SQL, in name order.
    fn schema(conn: &Connection) -> Vec<(String, String, Option<String>)> {
        conn.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A manifest written by every older odbackup, holding a listed drive and a downloaded, verified file,
    /// opens as the current schema: the same tables and indexes a new manifest has, the file still done with its
    /// hash (so the next run fetches nothing again), and the database intact.
    #[test]
    #[allow(clippy::too_many_lines)] // one scenario per older schema, checked step by step
    fn a_manifest_of_every_older_schema_upgrades_to_the_current_one_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let fresh_path = dir.path().join("fresh.sqlite");
        let fresh = Manifest::open(&fresh_path).unwrap();
        let want = schema(&fresh.conn);
        for version in 1..MIGRATIONS.len() {
            let path = dir.path().join(format!("v{version}.sqlite"));
            {
                let conn = Connection::open(&path).unwrap();
                crate::manifest::items::register_name_key(
                    &conn,
                    crate::localpath::NameRules::FOLDING,
                )
                .unwrap();
                for sql in &MIGRATIONS[..version] {
                    conn.execute_batch(sql).unwrap();
                }
                conn.execute_batch(&format!(
                    "PRAGMA user_version = {version}; PRAGMA application_id = {};",
                    super::APPLICATION_ID
                ))
                .unwrap();
                // Only columns the first schema already had: every later one is added with a default.
                conn.execute_batch(
                    "INSERT INTO drives (drive_id, drive_type, owner, root_item_id, updated_at)
                         VALUES ('0123456789abcdef', 'personal', NULL, '0123456789abcdef!101', 't');
                     INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, media,
                                        state, size, quick_xor, verification, updated_at)
                     VALUES ('0123456789abcdef', '0123456789abcdef!101', NULL, '', '/', '', 'folder', 'other',
                             'done', NULL, NULL, NULL, 't'),
                            ('0123456789abcdef', '0123456789abcdef!102', '0123456789abcdef!101', 'a.jpg',
                             '/a.jpg', 'a.jpg', 'file', 'photo', 'done', 3, 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
                             'quickxor', 't');
                     INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, media,
                                        state, skip_reason, updated_at)
                     VALUES ('0123456789abcdef', '0123456789abcdef!103', '0123456789abcdef!101', 'bad.exe',
                             '/bad.exe', 'bad.exe', 'file', 'other', 'skipped',
                             'flagged as malware by OneDrive: the service refuses to serve it', 't'),
                            ('0123456789abcdef', '0123456789abcdef!104', '0123456789abcdef!101', 'Locked',
                             '/Locked', 'Locked', 'folder', 'other', 'skipped',
                             'listing refused: 403 accessDenied; the next run lists it again', 't');",
                )
                .unwrap();
                if version >= 9 {
                    // A build that classed its skips wrote the class itself.
                    conn.execute_batch(
                        "UPDATE items SET skip_class = 'malware' WHERE name = 'bad.exe';
                         UPDATE items SET skip_class = 'listing_failed' WHERE name = 'Locked';",
                    )
                    .unwrap();
                }
                if (2..9).contains(&version) {
                    // A delta round an older build staged and did not apply before it was upgraded.
                    conn.execute_batch(
                        r#"INSERT INTO delta_staging (drive_id, scope_key, item_id, parent_id, deleted, row_json)
                           VALUES ('0123456789abcdef', 'root', '0123456789abcdef!105', '0123456789abcdef!101', 0,
                                   '{"skip_reason":"flagged as malware by OneDrive: the service refuses to serve it","kind":"file"}');"#,
                    )
                    .unwrap();
                } else if version >= 9 {
                    conn.execute_batch(
                        r#"INSERT INTO delta_staging (drive_id, scope_key, item_id, parent_id, deleted, row_json)
                           VALUES ('0123456789abcdef', 'root', '0123456789abcdef!105', '0123456789abcdef!101', 0,
                                   '{"kind":"file","skip":{"class":"malware","reason":"flagged as malware by OneDrive: the service refuses to serve it"}}');"#,
                    )
                    .unwrap();
                }
                if (4..10).contains(&version) {
                    // Listing URLs kept by (drive, item): one of a stored file, one of a staged change.
                    conn.execute_batch(
                        "INSERT INTO listed_urls (drive_id, item_id, version, url, fetched_at)
                         VALUES ('0123456789abcdef', '0123456789abcdef!102', 'v1', 'https://dl/a', 1),
                                ('0123456789abcdef', '0123456789abcdef!105', 'v5', 'https://dl/e', 2);",
                    )
                    .unwrap();
                }
            }
            let m = Manifest::open(&path).unwrap_or_else(|e| panic!("schema {version}: {e}"));
            let found: i64 = m
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                found,
                super::known(),
                "schema {version} is upgraded to the current version"
            );
            assert_eq!(
                schema(&m.conn),
                want,
                "schema {version} upgrades to what a new manifest has"
            );
            let ok: String = m
                .conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok", "schema {version}");
            let file: (String, String, i64) = m
                .conn
                .query_row(
                    "SELECT state, quick_xor, size FROM items WHERE item_id = '0123456789abcdef!102'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!(
                file,
                (
                    "done".to_owned(),
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
                    3
                ),
                "schema {version}: the downloaded file is still done with its hash"
            );
            let status = m.status().unwrap();
            assert_eq!(
                (status.files.done, status.files.total),
                (1, 2),
                "schema {version}"
            );
            // Skips are classed from what older builds wrote, so a malware-flagged file is still found as one.
            let classes: Vec<(String, Option<String>)> = m
                .conn
                .prepare("SELECT name, skip_class FROM items WHERE state = 'skipped' ORDER BY name")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(
                classes,
                [
                    ("Locked".to_owned(), Some("listing_failed".to_owned())),
                    ("bad.exe".to_owned(), Some("malware".to_owned())),
                ],
                "schema {version}"
            );
            let with_malware = m.downloadable_after(0, 10, true).unwrap();
            assert!(
                with_malware
                    .iter()
                    .any(|j| j.name == "bad.exe" && j.malware),
                "schema {version}: {with_malware:?}"
            );
            if (4..10).contains(&version) {
                // Listing URLs follow their item's row, or wait with their staged change.
                let kept: (i64, String, i64) = m
                    .conn
                    .query_row(
                        "SELECT count(*), url, fetched_at FROM listed_urls
                         WHERE item_row = (SELECT rowid FROM items WHERE item_id = '0123456789abcdef!102')",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .unwrap();
                assert_eq!(kept, (1, "https://dl/a".to_owned(), 1), "schema {version}");
                let waiting: (String, i64) = m
                    .conn
                    .query_row("SELECT listed_url, listed_at FROM delta_staging", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .unwrap();
                assert_eq!(waiting, ("https://dl/e".to_owned(), 2), "schema {version}");
            }
            if version >= 2 {
                let staged: String = m
                    .conn
                    .query_row("SELECT row_json FROM delta_staging", [], |r| r.get(0))
                    .unwrap();
                let staged: serde_json::Value = serde_json::from_str(&staged).unwrap();
                assert_eq!(
                    staged,
                    serde_json::json!({"kind": "file", "skip": {"class": "malware",
                        "reason": "flagged as malware by OneDrive: the service refuses to serve it"}}),
                    "schema {version}: a staged row is read with its class"
                );
            }
        }
    }
}
