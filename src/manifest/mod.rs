//! The manifest: one `SQLite` file per backup holding every drive item, its hashes and download state, the
//! crawl frontier and the history of runs.
//!
//! It knows nothing of HTTP or Graph: it stores its own row types ([`NewItem`], [`DownloadJob`]…), and the
//! crawler converts Graph items into them; only [`crate::ids`] is shared. The API is synchronous (rusqlite);
//! async callers go through `shared::SharedManifest` (one connection behind a mutex, on the blocking pool).
//! Every write is one transaction, so a kill at any point leaves a consistent file that the next run resumes.
//!
//! Layout: `migrate` applies `migrations/*.sql`; `items` holds the row types and the upsert; `crawl`
//! the crawl/frontier bookkeeping; `downloads` the downloader's reads and outcome writes; `runs` and
//! `report` the run history and the read-only reports; `urls` the listing's short-lived download URLs;
//! `restore` what a restore put back where, and its upload sessions.

mod crawl;
mod delta;
mod downloads;
mod items;
mod migrate;
mod placement;
mod report;
mod restore;
mod runs;
mod selection;
mod urls;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use crawl::{CrawlStart, FrontierEntry, PageCommit};
pub use delta::{DeltaState, KnownItem, MovedFile, Resolution, StagedChange};
pub use downloads::{
    Caveat, CaveatClass, DoneFile, DoneRecord, DownloadJob, FailureRecord, Outcome,
};
pub use items::{DriveRecord, FailureClass, ItemKind, MediaKind, NewItem};
pub use report::{
    ByteCounts, Count, ExcludedCounts, FailureRow, KindStateCount, StateCounts, StatusReport,
};
pub use restore::{
    EntryVerdict, PlanCounts, RestoreEntry, RestoreJob, RestoreKind, RestoreStatus, SourceRow,
};
pub use runs::RunRecord;
pub use selection::SelectionRow;
pub use urls::{ListedUrl, StoredUrl};

/// `PRAGMA application_id` of an odbackup manifest (the bytes "odbk"), so a foreign `SQLite` file is recognised.
pub const APPLICATION_ID: i32 = 0x6f64_626b;

/// How long a statement waits for another connection's write lock (a `status` reader checkpointing, say)
/// before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the manifest could not be used. Every variant names the manifest and says what to do.
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
    #[error("cannot create {path}: {source}; check that its folder is writable")]
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
    #[error(
        "manifest {path} was written by a newer odbackup (schema {found} > {known}); upgrade odbackup"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The file is an odbackup manifest but `SQLite` found it damaged.
    #[error(
        "manifest {path} is damaged ({source}); move it (and its -wal/-shm files) away and re-run: a new crawl \
         rebuilds it, and files already on disk are checked and kept rather than downloaded again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What `SQLite` said.
        #[source]
        source: rusqlite::Error,
    },
    /// The disk holding the manifest is full.
    #[error(
        "no space left to write manifest {path}; free some space, then re-run the same command (it resumes)"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
        /// What `SQLite` said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file could not be opened or written (permissions, read-only disk, a directory in the way).
    #[error(
        "cannot open or write manifest {path} ({source}); check that the file and its folder are writable"
    )]
    Access {
        /// The file.
        path: PathBuf,
        /// What `SQLite` said.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other `SQLite` failure.
    #[error(
        "manifest {path}: {source}; re-run the same command (it resumes), and report it if it persists"
    )]
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

    /// Classify a `SQLite` error on the manifest at `path` into the variant whose message helps most.
    fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        let code = match &source {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
            _ => None,
        };
        match code {
            Some(ErrorCode::NotADatabase) => ManifestError::Foreign {
                path,
                reason: "not a SQLite database, or a damaged one".to_owned(),
            },
            Some(ErrorCode::DatabaseCorrupt) => ManifestError::Corrupt { path, source },
            Some(ErrorCode::DiskFull) => ManifestError::DiskFull { path, source },
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
                ManifestError::Access { path, source }
            }
            _ => ManifestError::Sqlite { path, source },
        }
    }
}

/// Result of manifest operations.
pub type Result<T, E = ManifestError> = std::result::Result<T, E>;

/// A mapper from `SQLite` errors to [`ManifestError`]s naming `path`, for `map_err` inside transactions
/// (where `self` is borrowed by the transaction but `self.path` is still free).
fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> ManifestError + '_ {
    move |source| ManifestError::sqlite(path, source)
}

/// An open manifest: one `SQLite` connection with its prepared-statement cache.
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

/// The manifest holds short-lived pre-authenticated download URLs and everyone's file names: readable by its
/// owner only. A new one is created so (`SQLite` gives its WAL and shared-memory files the database file's
/// permissions); with `existing`, one an older run left readable by others is tightened (called only once the
/// file is known to be ours). A no-op off Unix.
fn keep_private(path: &Path, existing: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        match std::fs::metadata(path) {
            Ok(meta) if existing && meta.is_file() && meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, existing);
    Ok(())
}

impl Manifest {
    /// Open (creating it and its folders if needed) the manifest at `path` and bring its schema up to date.
    ///
    /// # Errors
    /// [`ManifestError::Foreign`] for a file that is not an odbackup manifest, [`ManifestError::TooNew`] for
    /// one written by a newer odbackup, and the `SQLite` variants when the file cannot be read or written.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ManifestError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let err = sql_err(path);
        let private = |existing| {
            keep_private(path, existing).map_err(|source| ManifestError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        private(false)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // Room for every statement the crawler and downloader prepare, so none is re-parsed per page.
        conn.set_prepared_statement_cache_capacity(64);
        let mut manifest = Self {
            conn,
            path: path.to_path_buf(),
        };
        manifest.check_identity()?;
        private(true)?;
        // WAL lets `status` read while a run writes; NORMAL sync is durable across application crashes and
        // loses at most the last transactions on power loss, which the next run redoes (downloads are
        // adopted from disk by hash, listings re-listed). A 32 MiB page cache (default 2 MiB) keeps the item
        // indexes of a drive with a few hundred thousand items in memory while the crawler upserts.
        manifest
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA cache_size = -32768;",
            )
            .map_err(&err)?;
        migrate::migrate(&mut manifest)?;
        Ok(manifest)
    }

    /// Where the manifest lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse files that are not ours before writing anything to them.
    fn check_identity(&self) -> Result<()> {
        let err = sql_err(&self.path);
        let app_id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(&err)?;
        if app_id == APPLICATION_ID {
            return Ok(());
        }
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(&err)?;
        if app_id == 0 && tables == 0 {
            return Ok(()); // a new, empty file: ours to initialise
        }
        Err(ManifestError::Foreign {
            path: self.path.clone(),
            reason: if app_id == 0 {
                "a SQLite database of another program".to_owned()
            } else {
                format!("SQLite application id {app_id:#x}")
            },
        })
    }

    fn err(&self, source: rusqlite::Error) -> ManifestError {
        ManifestError::sqlite(&self.path, source)
    }
}

/// Exclusive use of a manifest by one run, held for the run's lifetime.
///
/// A lock file beside the manifest (`manifest.sqlite.lock`), locked with the OS's advisory lock
/// ([`File::try_lock`]): released on drop and by the OS when the process dies (even by kill -9), so a crash
/// never leaves a stale lock. Readers such as `status` do not take it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock for the manifest at `manifest_path`, or fail at once with [`ManifestError::Locked`] if
    /// another run holds it.
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

/// `…/manifest.sqlite` → `…/manifest.sqlite.lock`.
fn lock_path(manifest_path: &Path) -> PathBuf {
    let mut name = manifest_path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    manifest_path.with_file_name(name)
}

/// Now, as stored in the manifest (RFC 3339, UTC, seconds).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Shared fixtures for the manifest's unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::{ItemKind, Manifest, MediaKind, NewItem};
    use crate::ids::{DriveId, ItemId};

    /// A fresh manifest in a temporary folder (kept alive by the returned guard).
    pub fn manifest() -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(&dir.path().join(".odbackup/manifest.sqlite")).unwrap();
        (dir, m)
    }

    /// The test drive.
    pub fn drive() -> DriveId {
        DriveId::from("d1")
    }

    /// A folder row at `path` (its ID is the path).
    pub fn folder(path: &str) -> NewItem {
        item(path, ItemKind::Folder, None)
    }

    /// A file row at `path` of `size` bytes whose quickXorHash is `qx`.
    pub fn file(path: &str, size: u64, qx: &str) -> NewItem {
        let mut f = item(path, ItemKind::File, Some(size));
        f.quick_xor = Some(qx.to_owned());
        f
    }

    fn item(path: &str, kind: ItemKind, size: Option<u64>) -> NewItem {
        let (parent, name) = match path.rsplit_once('/') {
            _ if path == "/" => (None, String::new()),
            Some(("", name)) => (Some("/".to_owned()), name.to_owned()),
            Some((parent, name)) => (Some(parent.to_owned()), name.to_owned()),
            None => (None, path.to_owned()),
        };
        NewItem {
            drive_id: drive(),
            item_id: ItemId::from(path),
            parent_id: parent.map(ItemId::from),
            name,
            remote_path: path.to_owned(),
            local_path: path.trim_start_matches('/').to_owned(),
            kind,
            size,
            quick_xor: None,
            sha1: None,
            sha256: None,
            etag: Some("e1".to_owned()),
            ctag: Some("c1".to_owned()),
            mime_type: None,
            created_at: None,
            modified_at: Some("2024-05-01T10:00:00Z".to_owned()),
            taken_at: None,
            media: MediaKind::Other,
            skip_reason: None,
            remote_ref: None,
            listed_url: None,
            excluded: None,
            local_path_on_clash: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_manifest_and_its_wal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.sqlite");
        let mut m = Manifest::open(&path).unwrap();
        m.set_setting("k", "v").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&path.with_extension("sqlite-wal")), 0o600);
        drop(m);
        // One an older version left open to others is tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Manifest::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        // A foreign file is refused without being touched.
        let foreign = dir.path().join("notes.txt");
        std::fs::write(&foreign, "not a manifest").unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Manifest::open(&foreign).is_err());
        assert_eq!(mode(&foreign), 0o644);
    }

    #[test]
    fn a_new_manifest_is_created_with_its_folders_and_the_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/manifest.sqlite");
        let m = Manifest::open(&path).unwrap();
        assert_eq!(m.path(), path);
        let pragma = |name: &str| -> i64 {
            m.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("user_version"), migrate::MIGRATIONS.len() as i64);
        assert_eq!(pragma("application_id"), i64::from(APPLICATION_ID));
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("busy_timeout"), 5000);
        let mode: String = m
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        for table in ["drives", "runs", "crawls", "frontier", "items"] {
            let n: i64 = m
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "table {table}");
        }
        // Reopening an up-to-date manifest changes nothing.
        drop(m);
        drop(Manifest::open(&path).unwrap());
    }

    #[test]
    fn a_second_lock_on_the_same_manifest_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".odbackup/manifest.sqlite");
        let first = RunLock::acquire(&path).unwrap();
        assert!(dir.path().join(".odbackup/manifest.sqlite.lock").is_file());
        // flock is per open file description: the second acquire opens the file again, so it must fail
        // even inside the same process.
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(err.is_locked(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("wait for it"),
            "{message}"
        );
        drop(first);
        let again = RunLock::acquire(&path).unwrap();
        // A lock on another manifest is independent.
        RunLock::acquire(&dir.path().join("other.sqlite")).unwrap();
        drop(again);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite");
        std::fs::write(
            &junk,
            b"this is not a database at all, just some text that is long enough",
        )
        .unwrap();
        let err = Manifest::open(&junk).unwrap_err();
        assert!(matches!(err, ManifestError::Foreign { .. }), "{err}");
        assert!(
            err.to_string().contains(&junk.display().to_string()),
            "{err}"
        );
        // Untouched: we did not write into someone else's file.
        assert!(std::fs::read(&junk).unwrap().starts_with(b"this is not"));
    }

    #[test]
    fn a_sqlite_database_of_another_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Manifest::open(&other).unwrap_err();
        assert!(err.to_string().contains("another program"), "{err}");

        let tagged = dir.path().join("tagged.sqlite");
        Connection::open(&tagged)
            .unwrap()
            .execute_batch("PRAGMA application_id = 42")
            .unwrap();
        let err = Manifest::open(&tagged).unwrap_err();
        assert!(matches!(err, ManifestError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("0x2a"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused_with_both_versions() {
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
        let message = err.to_string();
        assert!(
            message.contains(&format!("schema 999 > {}", migrate::MIGRATIONS.len()))
                && message.contains("upgrade odbackup"),
            "{message}"
        );
    }

    #[test]
    fn damaged_files_give_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.sqlite");
        {
            let mut m = Manifest::open(&good).unwrap();
            let run = m.begin_run("crawl").unwrap();
            m.finish_run(run, "ok", "{}").unwrap();
            // Checkpoint so the bytes we damage are in the main file, not the WAL.
            m.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let bytes = std::fs::read(&good).unwrap();
        assert!(bytes.len() > 4096 * 2, "{}", bytes.len());
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("bad header", {
                let mut b = bytes.clone();
                b[..16].copy_from_slice(b"garbage garbage!");
                b
            }),
            ("scrambled pages", {
                let mut b = bytes.clone();
                for (i, x) in b.iter_mut().enumerate().skip(4096) {
                    *x = (i * 31 % 251) as u8;
                }
                b
            }),
            ("empty", Vec::new()),
        ];
        for (name, content) in variants {
            let path = dir
                .path()
                .join(format!("{}.sqlite", name.replace(' ', "_")));
            std::fs::write(&path, &content).unwrap();
            // Whatever happens, it is a Result, and an error names the file.
            let outcome = Manifest::open(&path).and_then(|m| m.status().map(|_| ()));
            if let Err(err) = outcome {
                assert!(
                    err.to_string().contains(&path.display().to_string()),
                    "{name}: {err}"
                );
            }
        }
    }
}
