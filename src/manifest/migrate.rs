//! Schema migrations: the files in `migrations/`, applied in order, each in one transaction together with
//! the new `PRAGMA user_version` (and, on creation, `PRAGMA application_id`). A released migration is never
//! edited; a change is a new file appended to [`MIGRATIONS`].
//!
//! Knows only `SQLite`: nothing of what the tables mean.

use super::{APPLICATION_ID, Manifest, ManifestError, Result, sql_err};

/// Every migration, in order; the schema version is the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_filters_layout.sql"),
    include_str!("../../migrations/0003_caveats.sql"),
    include_str!("../../migrations/0004_listed_download_urls.sql"),
    include_str!("../../migrations/0009_restore.sql"),
];

/// The schema version this build writes.
fn known() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Apply the migrations this manifest lacks; refuse one written by a newer odbackup.
pub(super) fn migrate(manifest: &mut Manifest) -> Result<()> {
    let err = sql_err(&manifest.path);
    let version: i64 = manifest
        .conn
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
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        // The header pragmas are part of the transaction: a crash leaves the old version and no tables.
        let tx = manifest.conn.transaction().map_err(&err)?;
        tx.execute_batch(sql).map_err(&err)?;
        tx.execute_batch(&format!(
            "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
            index + 1
        ))
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
    }
    Ok(())
}
