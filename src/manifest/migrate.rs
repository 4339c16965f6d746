//! Schema migrations: the files in `migrations/`, applied in order, each in one transaction, with the
//! version kept in `PRAGMA user_version`. A released migration is never edited; changes are new files.

use super::{APPLICATION_ID, Manifest, ManifestError, Result};

/// Every migration, in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/0001_init.sql")];

/// Apply the migrations this manifest lacks.
pub(super) fn migrate(manifest: &mut Manifest) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = manifest
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| manifest.err(e))?;
    if version > known {
        return Err(ManifestError::TooNew {
            path: manifest.path.clone(),
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let path = manifest.path.clone();
        let err = move |source| ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
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
