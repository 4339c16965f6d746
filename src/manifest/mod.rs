//! The manifest: one `SQLite` file per backup holding every drive item, its hashes and download state, the
//! crawl frontier and the history of runs.
//!
//! It knows nothing of HTTP or Graph: it stores its own row types (`NewItem`, `DownloadJob`…), and the
//! crawler converts Graph items into them; only [`crate::ids`] is shared. The API is synchronous (rusqlite);
//! async callers go through `shared::SharedManifest` (one connection behind a mutex, on the blocking pool).
//! Every write is one transaction, so a kill at any point leaves a consistent file that the next run resumes.
//!
//! Layout: `migrate` applies `migrations/*.sql`; `items` holds the row types and the upsert; `crawl`
//! the crawl/frontier bookkeeping; `downloads` the downloader's reads and outcome writes; `runs` and
//! `report` the run history and the read-only reports; `urls` the listing's short-lived download URLs;
//! `restore` what a restore put back where, and its upload sessions.

mod crawl;
mod dedupe;
mod delta;
mod downloads;
mod items;
mod migrate;
mod onenote;
mod placement;
mod report;
mod restore;
mod runs;
mod selection;
mod shortcuts;
mod urls;
mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

pub(crate) use crawl::{CrawlStart, FrontierEntry, PageCommit};
pub use dedupe::DedupeCounts;
pub(crate) use dedupe::Twin;
pub(crate) use delta::{Arrival, DeltaState, KnownItem, MovedFile, Resolution, StagedChange};
pub(crate) use downloads::DoneRecord;
pub(crate) use downloads::{
    Caveat, CaveatClass, DoneFile, DownloadJob, FailureRecord, JobVersion, Recorded,
};
pub(crate) use items::{DriveRecord, ItemKind, MediaKind, NewItem, StoredUrl};
pub use items::{FailureClass, Skip, SkipClass};
pub use onenote::NotebookCounts;
pub use report::{
    ByteCounts, Count, ExcludedCounts, FailureRow, IncrementalStatus, StateCounts, StatusReport,
};
pub(crate) use restore::RestoreJob;
pub(crate) use restore::{EntryVerdict, PlanCounts, RestoreEntry, SourceRow};
pub use restore::{RestoreKind, RestoreStatus};
pub use runs::RunRecord;
pub(crate) use selection::SelectionRow;
pub use shortcuts::{SharedCounts, ShortcutRow};
pub(crate) use urls::{ListedUrl, RelistedUrl, url_version};
pub(crate) use verify::{ExpectedContent, VerifyRow};

/// `PRAGMA application_id` of an odbackup manifest (the bytes "odbk"), so a foreign `SQLite` file is recognised.
pub(crate) const APPLICATION_ID: i32 = 0x6f64_626b;

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
    /// A command that only reads was pointed at a manifest that does not exist (it creates none).
    #[error(
        "no manifest at {path}: run `odbackup crawl` or `odbackup backup` with this --dest first"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A reader met a manifest of an older schema that it cannot read as it is; only a run upgrades it.
    #[error(
        "manifest {path} is from an older odbackup (schema {found}, this one writes {known}) and cannot be read \
         as it is; run `odbackup backup` (or `crawl`) with this --dest to upgrade it, then try again"
    )]
    Outdated {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The version this build writes.
        known: i64,
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
    pub(crate) fn is_locked(&self) -> bool {
        matches!(self, ManifestError::Locked { .. })
    }

    /// Whether the user pointed a command at the wrong place or at a manifest only a run can upgrade: what to
    /// do is in the message, and retrying as is cannot help (exit code 2).
    pub(crate) fn is_usage(&self) -> bool {
        matches!(
            self,
            ManifestError::Missing { .. } | ManifestError::Outdated { .. }
        )
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
pub(crate) type Result<T, E = ManifestError> = std::result::Result<T, E>;

/// A mapper from `SQLite` errors to [`ManifestError`]s naming `path`, for `map_err` inside transactions
/// (where `self` is borrowed by the transaction but `self.path` is still free).
fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> ManifestError + '_ {
    move |source| ManifestError::sqlite(path, source)
}

/// An open manifest: one `SQLite` connection with its prepared-statement cache.
pub struct Manifest {
    conn: Connection,
    path: PathBuf,
    /// How the destination compares names (see [`Manifest::set_name_rules`]).
    name_rules: crate::localpath::NameRules,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Create the manifest's folder (and its parents) if needed, and refuse one that is a symbolic link: odbackup's
/// state lives in a real folder, so a link planted in its place (by anyone who can write to the destination)
/// cannot send the manifest, its lock or the trash somewhere else.
///
/// On Unix it must also belong to the user running odbackup, to root, or to the owner of the folder holding it
/// (see `may_use`): a neighbour who can write to the
/// destination could otherwise create `.odbackup` first, or swap their own in, and plant a WAL file there that
/// `SQLite` would write every commit to (download URLs included) and read the manifest back from. A
/// `.odbackup` of ours that others may write to is made ours alone.
fn state_folder(parent: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(parent)?;
    let meta = std::fs::symlink_metadata(parent)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(
            "it is a symbolic link; odbackup keeps its state only in a real folder \
             (remove the link, or point --manifest at a real folder)",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let me = rustix::process::geteuid().as_raw();
        if !may_use(meta.uid(), parent) {
            return Err(std::io::Error::other(format!(
                "it belongs to another user (uid {}); odbackup keeps its state only in a folder of the user \
                 running it (remove or move that folder, or point --manifest elsewhere)",
                meta.uid()
            )));
        }
        let ours_alone = meta.mode() & 0o022 == 0;
        if meta.uid() == me
            && !ours_alone
            && parent.file_name() == Some(std::ffi::OsStr::new(crate::localpath::STATE_DIR))
        {
            // Best effort: a file system without Unix modes (FAT, exFAT) keeps what its mount says.
            let _ = make_private(parent, true, 0o700);
        }
    }
    Ok(())
}

/// Give the folder (`folder`) or file at `path` the permissions `mode`, through a handle opened without
/// following a link and only if it is still ours: one swapped for a link since it was checked (a neighbour who
/// can write beside it) is not changed, nor is what the link points at.
#[cfg(unix)]
fn make_private(path: &Path, folder: bool, mode: u32) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let kind = if folder {
        OFlags::DIRECTORY
    } else {
        OFlags::NONBLOCK
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | kind,
        Mode::empty(),
    )?;
    if rustix::fs::fstat(&fd)?.st_uid != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::other("it is no longer ours"));
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Whether the state file or folder at `path`, owned by `owner`, may be used: it is the running user's, or
/// root's (a file system mounted for all, such as a FAT stick mounted by root, shows every file as root's), or
/// the owner's of the folder that holds it (an NFS export squashing root makes everything root creates
/// `nobody`'s, the destination included). Someone who owns the destination controls it anyway; anyone else is a
/// neighbour.
#[cfg(unix)]
fn may_use(owner: u32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    owner == me
        || owner == 0
        || path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .or(Some(Path::new(".")))
            .and_then(|holder| std::fs::metadata(holder).ok())
            .is_some_and(|holder| holder.uid() == owner)
}

/// The manifest holds short-lived pre-authenticated download URLs and everyone's file names: readable by its
/// owner only. A new one is created so (`SQLite` gives its WAL and shared-memory files the database file's
/// permissions); with `existing`, one an older run left readable by others is tightened (called only once the
/// file is known to be ours). A no-op off Unix.
fn keep_private(path: &Path, existing: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        match own_state_entry(path)? {
            Some(meta) if existing && meta.is_file() && meta.permissions().mode() & 0o077 != 0 => {
                make_private(path, false, 0o600)?;
            }
            Some(_) => {}
            None => {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    // Another connection created it meanwhile: it is checked like any existing file.
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, existing);
    Ok(())
}

/// The state file at `path` as it is, refused when it is a symbolic link or another user's (see `may_use`);
/// `None` when there is none.
#[cfg(unix)]
fn own_state_entry(path: &Path) -> std::io::Result<Option<std::fs::Metadata>> {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::other(
            "it is a symbolic link; odbackup never opens its state through one",
        )),
        Ok(meta) if !may_use(meta.uid(), path) => Err(std::io::Error::other(
            "it belongs to another user; odbackup never opens state another user can write",
        )),
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `SQLite` opens a write-ahead log and shared-memory file it finds beside the database: refuse them when they
/// are links or another user's (planted there to read or feed the manifest). A no-op off Unix.
fn check_companions(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        own_state_entry(Path::new(&companion)).map_err(|e| {
            std::io::Error::other(format!(
                "its {suffix} file: {e} (remove that file if no odbackup run is using the manifest)"
            ))
        })?;
    }
    #[cfg(not(unix))]
    let _ = path;
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
            state_folder(parent).map_err(|source| ManifestError::Create {
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
        check_companions(path).map_err(|source| ManifestError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // Room for every statement the crawler and downloader prepare, so none is re-parsed per page.
        conn.set_prepared_statement_cache_capacity(64);
        let mut manifest = Self {
            conn,
            path: path.to_path_buf(),
            name_rules: crate::localpath::NameRules::FOLDING,
        };
        manifest.check_identity()?;
        // Local-path keys, until the run tells the destination's rules: those the keys were computed with, or
        // the cautious ones (see `Manifest::set_name_rules`).
        let stored = manifest
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'name_rules'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok();
        manifest.name_rules = stored
            .as_deref()
            .and_then(crate::localpath::NameRules::parse)
            .unwrap_or(crate::localpath::NameRules::FOLDING);
        items::register_name_key(&manifest.conn, manifest.name_rules).map_err(&err)?;
        private(true)?;
        // WAL lets `status` read while a run writes; NORMAL sync is durable across application crashes and
        // loses at most the last transactions on power loss, which the next run redoes (downloads are
        // adopted from disk by hash, listings re-listed). A 32 MiB page cache (default 2 MiB) keeps the item
        // indexes of a drive with a few hundred thousand items in memory while the crawler upserts.
        // secure_delete: a deleted row's bytes are overwritten, not left in free space, so a listing's download
        // URL (a credential) is gone from the file once its row is (https://www.sqlite.org/pragma.html#pragma_secure_delete);
        // runs truncate the WAL as they end, which held the rows too (see `Manifest::truncate_wal`).
        // wal_autocheckpoint: the WAL is copied back into the database once it holds 16,384 pages (64 MiB), not
        // the default 1,000 (https://www.sqlite.org/wal.html#automatic_checkpoint). A page of a listing (1,000
        // items) dirties about 2,000 index and table pages, so at the default every commit was followed by a
        // checkpoint and its fsync; with a larger WAL an index page rewritten by several commits is copied once.
        // Safe at any size: with synchronous = NORMAL a commit in the WAL survives the process being killed, and
        // a power cut may roll back the commits made since the WAL was last synced (at a checkpoint) — more of
        // them with a larger WAL — leaving a consistent manifest whose next run redoes that work (files already
        // on disk are adopted by hash) (https://www.sqlite.org/pragma.html#pragma_synchronous).
        manifest.use_wal()?;
        manifest
            .conn
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA cache_size = -32768; PRAGMA secure_delete = ON;
                 PRAGMA wal_autocheckpoint = 16384;",
            )
            .map_err(&err)?;
        migrate::migrate(&mut manifest)?;
        Ok(manifest)
    }

    /// Put a new manifest in WAL mode (a no-op for one that is). The switch needs the file to itself, and
    /// `SQLite` answers "busy" at once rather than waiting when another connection holds it for a moment (a
    /// reader looking at a manifest a first run has just created): so it is tried again until the busy timeout.
    fn use_wal(&self) -> Result<()> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            let outcome = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0));
            let busy = match &outcome {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                // The mode it kept: the switch did not happen.
                Ok(_) => true,
                Err(rusqlite::Error::SqliteFailure(e, _)) => {
                    matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                }
                Err(_) => false,
            };
            if !busy || std::time::Instant::now() >= deadline {
                return match outcome {
                    Err(e) => Err(self.err(e)),
                    Ok(mode) => Err(self.err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!(
                            "the journal stayed in {mode} mode: WAL mode could not be set"
                        )),
                    ))),
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Copy the WAL into the database and truncate it to nothing: its frames still hold the rows as they were
    /// before deletions (download URLs among them). Best effort: a reader in the middle of a read keeps the
    /// frames it needs, and the next run's end truncates it.
    pub(crate) fn truncate_wal(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    /// Open an existing manifest for reading only (`status`, `failures`): nothing is created, migrated or
    /// written, so a reader can never race a run's writes (a reader that migrated beside a first backup made it
    /// fail with "table drives already exists"). Use [`Manifest::read`] for a consistent view.
    ///
    /// # Errors
    /// [`ManifestError::Missing`] when there is no file; [`ManifestError::Foreign`] for a file that is not ours.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self> {
        let err = sql_err(path);
        // Whether the file was there is judged before the open: a first run may create it between a failed
        // open and a later look, and that reader saw no manifest, not a broken one.
        let existed = path.exists();
        let open = || {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        };
        let conn = match open() {
            Ok(conn) => conn,
            Err(_) if !existed => {
                return Err(ManifestError::Missing {
                    path: path.to_path_buf(),
                });
            }
            // A manifest a first run is just creating (its write-ahead log not set up yet) can refuse a
            // reader for a moment: one more try, after the run's first transaction has had time to end.
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::CannotOpen => {
                std::thread::sleep(Duration::from_millis(100));
                open().map_err(&err)?
            }
            Err(e) => return Err(err(e)),
        };
        // A run commits in small transactions; a reader waits for one to end rather than failing.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // Readers claim no local path; the cautious rules keep any key the schema computes well-defined.
        let name_rules = crate::localpath::NameRules::FOLDING;
        items::register_name_key(&conn, name_rules).map_err(&err)?;
        let manifest = Self {
            conn,
            path: path.to_path_buf(),
            name_rules,
        };
        manifest.check_identity()?;
        Ok(manifest)
    }

    /// Run `read` on one consistent snapshot of a manifest opened with `Manifest::open_read_only` (a run may
    /// be committing meanwhile): `empty` when the manifest holds no schema yet (a first run has only just
    /// created it), `read` when the schema is this build's, and `read` on an older schema too, as far as it
    /// goes: when it needs what only a migration adds, [`ManifestError::Outdated`] says to run a backup.
    ///
    /// # Errors
    /// [`ManifestError::TooNew`] for a manifest of a newer odbackup, [`ManifestError::Outdated`] as above, and
    /// what `read` returns.
    pub(crate) fn read<T>(
        &self,
        empty: impl FnOnce() -> T,
        read: impl FnOnce(&Manifest) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let known = migrate::known();
        let result = if found > known {
            Err(ManifestError::TooNew {
                path: self.path.clone(),
                found,
                known,
            })
        } else if found == 0 {
            Ok(empty())
        } else {
            read(self).map_err(|e| match e {
                ManifestError::Sqlite { .. } if found < known => ManifestError::Outdated {
                    path: self.path.clone(),
                    found,
                    known,
                },
                other => other,
            })
        };
        // A read transaction: nothing to commit, so ending it can only release the snapshot.
        drop(tx);
        result
    }

    /// The drives this manifest has backed up (ID and `driveType`), in the order first recorded.
    pub(crate) fn recorded_drives(&self) -> Result<Vec<(crate::ids::DriveId, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT drive_id, drive_type FROM drives ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    crate::ids::DriveId::from(r.get::<_, String>(0)?.as_str()),
                    r.get::<_, String>(1)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Where the manifest lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse files that are not ours before writing anything to them.
    fn check_identity(&self) -> Result<()> {
        let err = sql_err(&self.path);
        // Both answers from one snapshot: another connection may be creating the schema (and the id with it).
        let snapshot = self.conn.unchecked_transaction().map_err(&err)?;
        let app_id: i32 = snapshot
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(&err)?;
        if app_id == APPLICATION_ID {
            return Ok(());
        }
        let tables: i64 = snapshot
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(&err)?;
        drop(snapshot);
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
pub(crate) struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock for the manifest at `manifest_path`, or fail at once with [`ManifestError::Locked`] if
    /// another run holds it.
    pub(crate) fn acquire(manifest_path: &Path) -> Result<Self> {
        let lock_path = lock_path(manifest_path);
        if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            state_folder(parent).map_err(|source| ManifestError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            // A link planted under the lock's name is refused (ELOOP), never followed.
            options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        }
        let file = options
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

    /// [`manifest`] with a crawl of the whole drive begun: its ID.
    pub fn manifest_crawling() -> (tempfile::TempDir, Manifest, i64) {
        let (dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        (dir, m, crawl)
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
            served_id: None,
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
            skip: None,
            remote_ref: None,
            listed_url: None,
            excluded: None,
            package: None,
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

    #[cfg(unix)]
    #[test]
    fn a_state_folder_or_wal_another_user_planted_is_refused_and_an_open_state_folder_made_private()
    {
        use std::os::unix::fs::{PermissionsExt as _, chown};
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(crate::localpath::STATE_DIR);
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = state.join("manifest.sqlite");
        drop(Manifest::open(&path).unwrap());
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "ours, open to others: made ours alone");
        // Another user's: only root can make one here (a neighbour needs no privilege to do it for real).
        let neighbour = 4242;
        if chown(&state, Some(neighbour), Some(neighbour)).is_err() {
            return;
        }
        let err = Manifest::open(&path).unwrap_err().to_string();
        assert!(err.contains("another user"), "{err}");
        chown(&state, Some(0), Some(0)).unwrap();
        // A WAL planted beside the manifest by another user.
        let wal = state.join("manifest.sqlite-wal");
        std::fs::write(&wal, b"").unwrap();
        chown(&wal, Some(neighbour), Some(neighbour)).unwrap();
        let err = Manifest::open(&path).unwrap_err().to_string();
        assert!(err.contains("-wal file"), "{err}");
        std::fs::remove_file(&wal).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &wal).unwrap();
        assert!(Manifest::open(&path).is_err());
        std::fs::remove_file(&wal).unwrap();
        drop(Manifest::open(&path).unwrap());
        // Where the destination itself is that user's (an NFS export squashing root to `nobody` makes all of
        // it so), its state folder may be too.
        let squashed = dir.path().join("squashed");
        let state = squashed.join(crate::localpath::STATE_DIR);
        std::fs::create_dir_all(&state).unwrap();
        chown(&squashed, Some(neighbour), Some(neighbour)).unwrap();
        chown(&state, Some(neighbour), Some(neighbour)).unwrap();
        drop(Manifest::open(&state.join("manifest.sqlite")).unwrap());
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
    fn connections_opening_a_new_manifest_at_once_migrate_it_once_and_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("manifest.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Manifest::open(&path).map(|_| ())
                    })
                })
                .collect();
            for handle in opened {
                handle
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let m = Manifest::open(&path).unwrap();
            let version: i64 = m
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, migrate::known());
        }
    }

    #[test]
    fn a_reader_creates_nothing_and_reads_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none/.odbackup/manifest.sqlite");
        let err = Manifest::open_read_only(&missing).unwrap_err();
        assert!(
            matches!(err, ManifestError::Missing { .. }) && err.is_usage(),
            "{err}"
        );
        assert!(!dir.path().join("none").exists(), "no folder was created");

        // A file a first run has only just created (empty): read as holding nothing yet.
        let fresh = dir.path().join("fresh.sqlite");
        std::fs::write(&fresh, b"").unwrap();
        let reader = Manifest::open_read_only(&fresh).unwrap();
        assert!(
            reader
                .read(|| None, |m| m.status().map(Some))
                .unwrap()
                .is_none()
        );
        assert_eq!(std::fs::read(&fresh).unwrap(), b"", "untouched");

        // The current schema is read; the reader never writes (a write is refused).
        let path = dir.path().join("m.sqlite");
        let mut m = Manifest::open(&path).unwrap();
        let run = m.begin_run("backup").unwrap();
        m.finish_run(run, "ok", "{}").unwrap();
        drop(m);
        let reader = Manifest::open_read_only(&path).unwrap();
        let report = reader
            .read(|| None, |m| m.status().map(Some))
            .unwrap()
            .unwrap();
        assert_eq!(report.last_run.unwrap().outcome.as_deref(), Some("ok"));
        assert!(reader.conn.execute_batch("CREATE TABLE t (x)").is_err());

        // An older schema: read as it is while it can be, and where it cannot, the way out is named.
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 2; ALTER TABLE items DROP COLUMN caveat_class;")
            .unwrap();
        let reader = Manifest::open_read_only(&path).unwrap();
        assert!(
            reader.read(Vec::new, Manifest::failures).is_ok(),
            "failures reads schema 2"
        );
        let err = reader.read(|| None, |m| m.status().map(Some)).unwrap_err();
        assert!(
            matches!(err, ManifestError::Outdated { found: 2, .. }) && err.is_usage(),
            "{err}"
        );
        assert!(err.to_string().contains("odbackup backup"), "{err}");
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
