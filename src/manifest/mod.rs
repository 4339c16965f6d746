//! The manifest: one `SQLite` file per backup holding every drive item, its hashes and download state, the
//! crawl frontier and the history of runs.
//!
//! It knows nothing of HTTP or Graph: it stores its own row types, and the crawler converts Graph items into
//! them. The API is synchronous (rusqlite); async callers go through `shared::SharedManifest`. Every write is
//! one transaction, so a kill at any point leaves a consistent file.

mod items;
mod migrate;
mod report;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use items::{
    CrawlStart, DoneFile, DoneRecord, DownloadJob, DriveRecord, FailureClass, FailureRecord,
    FrontierEntry, ItemKind, MediaKind, NewItem, PageCommit,
};
pub use report::{FailureRow, RunRecord, StatusReport};

/// `PRAGMA application_id` of an odbackup manifest ("odbk"), so a foreign `SQLite` file is recognised.
pub const APPLICATION_ID: i32 = 0x6f64_626b;

/// Why the manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Another run holds the lock.
    #[error(
        "another odbackup run is using {path}; wait for it to finish (or stop it), then re-run"
    )]
    Locked {
        /// The manifest.
        path: PathBuf,
    },
    /// The folder or lock file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// What could not be created.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an odbackup manifest (another program's database, or not `SQLite` at all).
    #[error(
        "{path} is not an odbackup manifest ({reason}); point --manifest elsewhere or move the file away"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A newer odbackup wrote this manifest.
    #[error("{path} was written by a newer odbackup (schema {found} > {known}); upgrade odbackup")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// `SQLite` failed.
    #[error("manifest {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The `SQLite` error.
        #[source]
        source: rusqlite::Error,
    },
}

impl ManifestError {
    /// Whether this is the "another run holds the lock" error (exit code 4).
    pub fn is_locked(&self) -> bool {
        matches!(self, ManifestError::Locked { .. })
    }
}

/// Result of manifest operations.
pub type Result<T, E = ManifestError> = std::result::Result<T, E>;

/// An open manifest.
pub struct Manifest {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Open (creating if needed) the manifest at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ManifestError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| ManifestError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        let mut manifest = Self {
            conn,
            path: path.to_path_buf(),
        };
        manifest.check_identity()?;
        // WAL lets `status` read while a run writes; NORMAL sync is durable across application crashes and
        // loses at most the last transactions on power loss, which the next run redoes.
        manifest
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| manifest.foreign_or(e))?;
        migrate::migrate(&mut manifest)?;
        Ok(manifest)
    }

    /// Where the manifest lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse files that are not ours before touching them.
    fn check_identity(&self) -> Result<()> {
        let app_id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| self.foreign_or(e))?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| self.foreign_or(e))?;
        if app_id != APPLICATION_ID && (app_id != 0 || tables != 0) {
            return Err(ManifestError::Foreign {
                path: self.path.clone(),
                reason: if app_id == 0 {
                    "a SQLite database of another program".to_owned()
                } else {
                    format!("SQLite application id {app_id:#x}")
                },
            });
        }
        Ok(())
    }

    /// "file is not a database" and friends become [`ManifestError::Foreign`]; the rest stay `SQLite` errors.
    fn foreign_or(&self, err: rusqlite::Error) -> ManifestError {
        if let rusqlite::Error::SqliteFailure(e, _) = &err
            && matches!(e.code, rusqlite::ErrorCode::NotADatabase)
        {
            return ManifestError::Foreign {
                path: self.path.clone(),
                reason: "not a SQLite database, or a damaged one".to_owned(),
            };
        }
        self.err(err)
    }

    fn err(&self, source: rusqlite::Error) -> ManifestError {
        ManifestError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Exclusive use of a manifest by one run, held for the run's lifetime.
///
/// A lock file beside the manifest, locked with the OS's advisory lock: released on drop and by the OS when
/// the process dies (even by kill -9), so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock for the manifest at `manifest_path`, or fail at once if another run holds it.
    pub fn acquire(manifest_path: &Path) -> Result<Self> {
        let lock_path = lock_path(manifest_path);
        if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ManifestError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| ManifestError::Create {
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ManifestError::Locked {
                path: manifest_path.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(ManifestError::Create {
                path: lock_path,
                source,
            }),
        }
    }
}

fn lock_path(manifest_path: &Path) -> PathBuf {
    let mut name = manifest_path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    manifest_path.with_file_name(name)
}

/// Now, as stored in the manifest (RFC 3339, UTC, seconds).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_manifest_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".odbackup/manifest.sqlite");
        let first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(err.is_locked(), "{err}");
        drop(first);
        RunLock::acquire(&path).unwrap();
    }

    #[test]
    fn foreign_files_are_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite");
        std::fs::write(
            &junk,
            b"this is not a database at all, just some text that is long enough",
        )
        .unwrap();
        let err = Manifest::open(&junk).unwrap_err();
        assert!(matches!(err, ManifestError::Foreign { .. }), "{err}");

        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Manifest::open(&other).unwrap_err();
        assert!(err.to_string().contains("another program"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        drop(Manifest::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 999")
            .unwrap();
        let err = Manifest::open(&path).unwrap_err();
        assert!(
            matches!(err, ManifestError::TooNew { found: 999, .. }),
            "{err}"
        );
        // Reopening an up-to-date manifest is a no-op.
        let fresh = dir.path().join("n.sqlite");
        drop(Manifest::open(&fresh).unwrap());
        drop(Manifest::open(&fresh).unwrap());
    }
}
