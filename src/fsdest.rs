//! The destination as a directory handle: every file odbackup creates, opens, renames, moves, trashes or
//! removes under `DEST` goes through here, relative to folder handles that were opened without following
//! symbolic links.
//!
//! Why handles: a path that was checked and then used again can be changed in between by anyone who can
//! write in `DEST` (a symbolic link swapped in for a folder mid-run would redirect the next `open` or
//! `rename` outside the backup; see the "symlink race" class of bugs, CWE-367). So a path is resolved once,
//! component by component, each opened with `O_NOFOLLOW | O_DIRECTORY` (in one `openat2` call with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it: <https://man7.org/linux/man-pages/man2/openat2.2.html>),
//! and everything after that — part files, renames, modification times, folder syncs — is relative to the
//! folder handle it produced. A link found anywhere below `DEST` is refused, never followed; `DEST` itself may
//! be a link (the user chose it).
//!
//! Part files are created exclusively (`O_EXCL`), opened again only if they are plain files with a single
//! link, and a final name is given with `renameat2(RENAME_NOREPLACE)` unless the caller says the file there
//! may be replaced. Renames that give a file its name are followed by an `fsync` of the folder, so a file
//! the manifest calls done survives a power cut (<https://man7.org/linux/man-pages/man2/fsync.2.html>: "an
//! explicit `fsync()` on a file descriptor for the directory is also needed"). [`Folder::sync`] is separate
//! from the renames so that a caller may batch the syncs of one folder.
//!
//! Item data never goes into odbackup's own state folder (`DEST/.odbackup`, compared without regard to case,
//! for case-insensitive file systems): [`Dest::item_folder`] and the other item-path entry points refuse it.
//! Only the trash ([`Dest::trash`]) lives there.
//!
//! Unix only. A leaf: it knows nothing of HTTP, `SQLite` or the manifest — relative paths in, files out.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use sha1::{Digest as _, Sha1};

pub use crate::localpath::is_own_part_name;
use crate::localpath::{NameRules, STATE_DIR, trash_path};

/// Why something could not be done under the destination.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    /// The relative path has a component that would leave the destination or is not a plain name.
    #[error("refusing local path {path:?}: it would leave the destination folder")]
    Escapes {
        /// The offending relative path.
        path: String,
    },
    /// Item data aimed at odbackup's own state folder.
    #[error(
        "refusing local path {path:?}: {STATE_DIR}/ holds odbackup's own state, never drive content"
    )]
    StateFolder {
        /// The offending relative path.
        path: String,
    },
    /// A component of the path is a symbolic link, or something else that is not a folder.
    #[error(
        "refusing to write through {}: it is a symbolic link or not a folder, and could lead outside the destination",
        at.display()
    )]
    NotAFolder {
        /// The component, joined to the destination.
        at: PathBuf,
    },
    /// The folder that received a file was moved or replaced while the file was written.
    #[error(
        "{} was moved or replaced while a file was written into it; re-run to check the file",
        at.display()
    )]
    FolderMoved {
        /// The folder, joined to the destination.
        at: PathBuf,
    },
    /// A pinned destination ([`DestPin`]) is no longer the folder its path leads to.
    #[error(
        "{} is no longer the folder checked for this drive (replaced, or a link put in its place); re-run to \
         check it again",
        at.display()
    )]
    Replaced {
        /// The destination's path.
        at: PathBuf,
    },
    /// The file system refused an operation.
    #[error("{}: {source}", path.display())]
    Io {
        /// What it was done to.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl DestError {
    /// Whether the path itself is refused (a link, an escape, the state folder, a folder that moved), as
    /// opposed to a disk error: the manifest's failure class `path`.
    pub(crate) fn is_path(&self) -> bool {
        !matches!(self, DestError::Io { .. })
    }
}

/// What a directory entry is (never following a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Folder,
    /// A symbolic link.
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// One directory entry, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Its length in bytes.
    pub(crate) len: u64,
    /// Hard links to it.
    pub(crate) links: u64,
    /// Its modification time: seconds since the Unix epoch and nanoseconds.
    pub modified: (i64, u32),
    /// Device and inode: the same pair means the same file.
    id: (u64, u64),
}

impl Entry {
    fn of(st: &rfs::Stat) -> Self {
        Self {
            kind: match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => EntryKind::File,
                FileType::Directory => EntryKind::Folder,
                FileType::Symlink => EntryKind::Link,
                _ => EntryKind::Other,
            },
            len: u64::try_from(st.st_size).unwrap_or(0),
            links: widen(st.st_nlink),
            modified: (
                widen_signed(st.st_mtime),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            ),
            id: (widen(st.st_dev), widen(st.st_ino)),
        }
    }

    /// Whether this is a regular file with no other name: the only kind of file odbackup writes into.
    pub(crate) fn is_plain_file(&self) -> bool {
        self.kind == EntryKind::File && self.links <= 1
    }

    /// Whether `other` is the same file (device and inode) as this one.
    pub(crate) fn same_file(&self, other: &Entry) -> bool {
        self.id == other.id
    }

    /// What the open file `file` is.
    pub(crate) fn of_open(file: &std::fs::File) -> io::Result<Self> {
        Ok(Self::of(&rfs::fstat(file)?))
    }
}

/// `stat`'s times differ in width between targets; all fit in an `i64`.
#[allow(clippy::useless_conversion)]
fn widen_signed<T: Into<i64>>(value: T) -> i64 {
    value.into()
}

/// `stat` fields differ in width between targets; all fit in a `u64`.
#[allow(clippy::useless_conversion)]
fn widen<T: Into<u64>>(value: T) -> u64 {
    value.into()
}

/// Whether `renameat2(RENAME_NOREPLACE)` was refused as unsupported (some network and FUSE file systems):
/// from then on a check for the target precedes a plain rename.
static NOREPLACE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);
/// Whether `openat2` was refused (kernels before 5.6, or a seccomp filter): from then on folders are opened
/// one component at a time.
#[cfg(target_os = "linux")]
static OPENAT2_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The backup's root folder, held open.
#[derive(Debug, Clone)]
pub struct Dest {
    root: Arc<OwnedFd>,
    path: PathBuf,
}

/// One folder under the destination, held open: what is done to its entries happens in this very folder,
/// whatever is renamed or swapped in above it afterwards.
#[derive(Debug)]
pub struct Folder {
    fd: OwnedFd,
    /// Its path relative to the destination (`""` for the root).
    rel: String,
    /// The destination's path, for messages.
    dest: PathBuf,
}

/// How [`Dest::move_file`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The file is under its new name.
    Moved,
    /// There is no plain file under the old name.
    SourceMissing,
    /// Something already holds the new name.
    TargetTaken,
}

/// What [`Dest::sweep_part_files`] removed, and what it had to leave.
#[derive(Debug, Default)]
pub struct Swept {
    /// Files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Folders it could not look into and part files it could not remove: they stay on disk, for the caller
    /// to tell the user (this module reports nothing itself).
    pub left: Vec<Unswept>,
}

/// A folder [`Dest::sweep_part_files`] could not list, or a part file it could not remove.
#[derive(Debug)]
pub enum Unswept {
    /// A folder whose part files could not be looked for.
    Unlisted {
        /// Its path, relative to the destination.
        folder: String,
        /// What the file system said.
        error: io::Error,
    },
    /// A stale part file that could not be removed.
    NotRemoved {
        /// Its path, relative to the destination.
        path: String,
        /// What the file system said.
        error: io::Error,
    },
}

impl Dest {
    /// Open the destination at `path`, creating it (and its parents) if needed.
    pub fn open(path: &Path) -> Result<Self, DestError> {
        std::fs::create_dir_all(path).map_err(|source| DestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::open_existing(path)?.ok_or_else(|| DestError::Io {
            path: path.to_path_buf(),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// Open the destination at `path` if it exists.
    pub(crate) fn open_existing(path: &Path) -> Result<Option<Self>, DestError> {
        // The destination itself is the user's choice and may be a link: it is followed, once, here.
        match rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(Self {
                root: Arc::new(fd),
                path: path.to_path_buf(),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(DestError::Io {
                path: path.to_path_buf(),
                source: e.into(),
            }),
        }
    }

    /// Whether the destination, as opened, is the folder `pin` names.
    ///
    /// # Errors
    /// [`DestError::Replaced`] when it is another one.
    pub(crate) fn check_pin(&self, pin: DestPin) -> Result<(), DestError> {
        match rfs::fstat(&*self.root) {
            Ok(st) if Entry::of(&st).id == pin.0 => Ok(()),
            _ => Err(DestError::Replaced {
                at: self.path.clone(),
            }),
        }
    }

    /// The destination's path (for messages; never used to reach a file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` joined to the destination's path, for messages.
    pub(crate) fn shown(&self, rel: &str) -> PathBuf {
        shown(&self.path, rel)
    }

    /// The existing folder that holds item data at `rel` (`""`: the destination itself); `None` if some
    /// component does not exist.
    pub(crate) fn item_folder(&self, rel: &str) -> Result<Option<Folder>, DestError> {
        let parts = item_parts(rel)?;
        self.walk(&parts, false)
    }

    /// The folder that holds item data at `rel`, created with any missing parents as real folders.
    pub(crate) fn create_item_folder(&self, rel: &str) -> Result<Folder, DestError> {
        let parts = item_parts(rel)?;
        self.walk(&parts, true).map(|f| f.expect("created"))
    }

    /// The length of the plain file at the item path `rel`, if there is one (links and folders are not).
    pub(crate) fn file_len(&self, rel: &str) -> Option<u64> {
        let (parent, name) = split(rel).ok()?;
        let folder = self.item_folder(parent).ok()??;
        folder
            .entry(name)
            .ok()?
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.len)
    }

    /// The state folder at the top of the destination (`.odbackup`), created if missing, opened without
    /// following a link: where small state files beside the data are kept (a tenant root's pause).
    pub(crate) fn state_folder(&self) -> Result<Folder, DestError> {
        self.walk(&[STATE_DIR], true).map(|f| f.expect("created"))
    }

    /// Whether `folder` is still the folder at its path (nothing renamed or swapped it away since it was
    /// opened).
    pub(crate) fn still_holds(&self, folder: &Folder) -> bool {
        let Ok(parts) = parts_of(&folder.rel) else {
            return false;
        };
        match (self.walk(&parts, false), folder.identity()) {
            (Ok(Some(now)), Ok(id)) => now.identity().is_ok_and(|n| n == id),
            _ => false,
        }
    }

    /// Move the plain file at item path `from` to item path `to` (creating `to`'s folders), never over
    /// anything, then sync both folders and remove the folders the move left empty.
    pub(crate) fn move_file(&self, from: &str, to: &str) -> Result<MoveOutcome, DestError> {
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        item_parts(to)?;
        // A file may come back out of the trash (a file deleted on the drive and restored there), never out of
        // the rest of the state folder.
        let from_parts = parts_of(from_parent)?;
        if from_parts.first().is_some_and(|first| is_state_dir(first))
            && from_parts.get(1) != Some(&"trash")
        {
            return Err(DestError::StateFolder {
                path: from.to_owned(),
            });
        }
        let Some(source) = self.walk(&from_parts, false)? else {
            return Ok(MoveOutcome::SourceMissing);
        };
        let Some(entry) = source
            .entry(from_name)
            .map_err(|e| source.error(from_name, e))?
        else {
            return Ok(MoveOutcome::SourceMissing);
        };
        if entry.kind != EntryKind::File {
            return Ok(MoveOutcome::SourceMissing);
        }
        let target = self.create_item_folder(to_parent)?;
        self.move_entry(&source, from_name, &target, to_name)
    }

    /// Move `name` of `source` to `to_name` in `target`, never over anything; sync both folders and remove
    /// what the move left empty above `source`.
    fn move_entry(
        &self,
        source: &Folder,
        name: &str,
        target: &Folder,
        to_name: &str,
    ) -> Result<MoveOutcome, DestError> {
        match target
            .entry(to_name)
            .map_err(|e| target.error(to_name, e))?
        {
            // A name that differs only in case, on a case-insensitive file system: the same file.
            Some(there)
                if source
                    .entry(name)
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.id == there.id) =>
            {
                source
                    .rename(name, target, to_name, true)
                    .map_err(|e| source.error(name, e))?;
            }
            Some(_) => return Ok(MoveOutcome::TargetTaken),
            None => match source.rename(name, target, to_name, false) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(MoveOutcome::TargetTaken);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(MoveOutcome::SourceMissing);
                }
                Err(e) => return Err(source.error(name, e)),
            },
        }
        target.sync().map_err(|e| target.error("", e))?;
        source.sync().map_err(|e| source.error("", e))?;
        self.remove_empty_folders(&source.rel);
        Ok(MoveOutcome::Moved)
    }

    /// Move whatever is at the item path `rel` (a file, a link, a folder) into the trash, under
    /// `.odbackup/trash/<date>/<rel>` (with `.1`, `.2`, … when that is taken): the trash path, or `None` if
    /// there was nothing to move.
    pub fn trash(&self, rel: &str, date: &str) -> Result<Option<String>, DestError> {
        let (parent, name) = split(rel)?;
        item_parts(rel)?;
        let Some(source) = self.item_folder(parent)? else {
            return Ok(None);
        };
        self.trash_entry(&source, name, date)
    }

    /// [`Self::trash`] for the entry `name` of a folder already held open.
    pub(crate) fn trash_entry(
        &self,
        source: &Folder,
        name: &str,
        date: &str,
    ) -> Result<Option<String>, DestError> {
        let rel = child(&source.rel, name);
        let base = trash_path(date, &rel);
        let (trash_parent, trash_name) = split(&base)?;
        let trash_parts = parts_of(trash_parent)?;
        let target = self.walk(&trash_parts, true)?.expect("created");
        for n in 0u32..1000 {
            let candidate = if n == 0 {
                trash_name.to_owned()
            } else {
                format!("{trash_name}.{n}")
            };
            if source
                .entry(name)
                .map_err(|e| source.error(name, e))?
                .is_none()
            {
                return Ok(None);
            }
            match self.move_entry(source, name, &target, &candidate)? {
                MoveOutcome::Moved => return Ok(Some(child(trash_parent, &candidate))),
                MoveOutcome::SourceMissing => return Ok(None),
                MoveOutcome::TargetTaken => {}
            }
        }
        Err(source.error(
            name,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "no free name in the trash for it",
            ),
        ))
    }

    /// Remove the folder at item path `rel` and its parents while they are empty (never the destination, and
    /// never through a link: `unlinkat(AT_REMOVEDIR)` only removes an empty real folder).
    pub(crate) fn remove_empty_folders(&self, rel: &str) {
        let Ok(mut parts) = parts_of(rel) else {
            return;
        };
        while let Some(last) = parts.pop() {
            if parts.is_empty() && is_state_dir(last) {
                return;
            }
            let Ok(Some(parent)) = self.walk(&parts, false) else {
                return;
            };
            if rfs::unlinkat(&parent.fd, last, AtFlags::REMOVEDIR).is_err() {
                return;
            }
            let _ = parent.sync();
        }
    }

    /// Remove odbackup's part files and span journals (names made by [`part_file_name`]) that `keep` does
    /// not want, anywhere under the destination except its state folder, never descending through a link.
    /// `keep` gets the folder's relative path and the file's name.
    pub(crate) fn sweep_part_files(
        &self,
        keep: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Swept, DestError> {
        let mut swept = Swept::default();
        let root = Arc::new(self.walk(&[], false)?.expect("the root"));
        // Folders still to look into, as their parent's handle and their name, each opened only when its turn
        // comes: the handles open at once are those of the folders on the way down (siblings share their
        // parent's), not one per folder waiting, which a folder of thousands of subfolders would make.
        let mut stack: Vec<(Arc<Folder>, Option<String>)> = vec![(root, None)];
        while let Some((parent, name)) = stack.pop() {
            let folder = match name {
                None => parent,
                // Opened without following: a link (or something swapped in since) is skipped.
                Some(name) => {
                    match rfs::openat(&parent.fd, name.as_str(), DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => Arc::new(Folder {
                            fd,
                            rel: child(&parent.rel, &name),
                            dest: self.path.clone(),
                        }),
                        Err(_) => continue,
                    }
                }
            };
            let entries = match folder.entries() {
                Ok(entries) => entries,
                Err(error) => {
                    swept.left.push(Unswept::Unlisted {
                        folder: folder.rel.clone(),
                        error,
                    });
                    continue;
                }
            };
            for (name, kind) in entries {
                if folder.rel.is_empty() && is_state_dir(&name) {
                    continue;
                }
                // Some file systems leave the kind out of a listing: ask, without following.
                let kind = kind.or_else(|| folder.entry(&name).ok().flatten().map(|e| e.kind));
                match kind {
                    Some(EntryKind::Folder) => stack.push((Arc::clone(&folder), Some(name))),
                    Some(EntryKind::File)
                        if is_own_part_name(&name) && !keep(&folder.rel, &name) =>
                    {
                        let Ok(Some(entry)) = folder.entry(&name) else {
                            continue;
                        };
                        if entry.kind != EntryKind::File {
                            continue;
                        }
                        match folder.remove(&name) {
                            Ok(()) => {
                                swept.files += 1;
                                swept.bytes += entry.len;
                            }
                            Err(error) => swept.left.push(Unswept::NotRemoved {
                                path: child(&folder.rel, &name),
                                error,
                            }),
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(swept)
    }

    /// Open the folder `parts` below the root, each component without following links; `create` makes
    /// missing ones (as real folders, each synced into its parent). `None` when one is missing and `create`
    /// is off.
    fn walk(&self, parts: &[&str], create: bool) -> Result<Option<Folder>, DestError> {
        let rel = parts.join("/");
        let folder = |fd| Folder {
            fd,
            rel: rel.clone(),
            dest: self.path.clone(),
        };
        #[cfg(target_os = "linux")]
        if !parts.is_empty() && !OPENAT2_UNSUPPORTED.load(Ordering::Relaxed) {
            let resolve = rfs::ResolveFlags::BENEATH
                | rfs::ResolveFlags::NO_SYMLINKS
                | rfs::ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&*self.root, rel.as_str(), DIR_FLAGS, Mode::empty(), resolve) {
                Ok(fd) => return Ok(Some(folder(fd))),
                Err(Errno::NOSYS | Errno::PERM) => {
                    OPENAT2_UNSUPPORTED.store(true, Ordering::Relaxed);
                }
                // Missing parts (to create, or to report), a refused component (found precisely below), a
                // race the kernel noticed (EAGAIN): the walk one component at a time decides.
                Err(_) => {}
            }
        }
        let mut current = rfs::openat(&*self.root, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| self.error("", e.into()))?;
        for (i, part) in parts.iter().enumerate() {
            let so_far = || parts[..=i].join("/");
            let opened = match rfs::openat(&current, *part, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&current, *part, Mode::from_raw_mode(0o777)) {
                        Ok(()) => {
                            // The new folder's name must survive a power cut with the files put in it.
                            let _ = rfs::fsync(&current);
                        }
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.error(&so_far(), e.into())),
                    }
                    rfs::openat(&current, *part, DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            current = match opened {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(DestError::NotAFolder {
                        at: self.shown(&so_far()),
                    });
                }
                Err(e) => return Err(self.error(&so_far(), e.into())),
            };
        }
        Ok(Some(folder(current)))
    }

    fn error(&self, rel: &str, source: io::Error) -> DestError {
        DestError::Io {
            path: self.shown(rel),
            source,
        }
    }
}

impl Folder {
    /// Its path relative to the destination.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The item path of its entry `name`.
    pub fn child(&self, name: &str) -> String {
        child(&self.rel, name)
    }

    /// Its entry `name` joined to the destination's path, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        shown(&self.dest, &self.child(name))
    }

    /// A disk error on its entry `name` (`""`: the folder itself).
    pub fn error(&self, name: &str, source: io::Error) -> DestError {
        DestError::Io {
            path: if name.is_empty() {
                shown(&self.dest, &self.rel)
            } else {
                self.shown(name)
            },
            source,
        }
    }

    /// What its entry `name` is, without following a link; `None` if there is none.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        check_name(name)?;
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Entry::of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// How the file system holding this folder compares names, found by creating a probe file in it and
    /// looking it up under other spellings, all through this folder's handle (a link swapped in for the folder
    /// meanwhile cannot send the probe to another file system). If it cannot tell (a read-only destination),
    /// the cautious [`NameRules::FOLDING`].
    pub(crate) fn probe_name_rules(&self) -> NameRules {
        // `Ä` precomposed: its lower case `ä` tells Unicode case folding, its decomposed form `A` + U+0308
        // tells normalisation; `A`/`a` alone would also be folded by ASCII-only file systems, which this must
        // not miss.
        let stem = format!(".odbackup-name-probe-{}-", std::process::id());
        let probe = format!("{stem}\u{c4}Q");
        if self.create_new(&probe).is_err() {
            return NameRules::FOLDING;
        }
        let exists = |name: String| self.entry(&name).ok().flatten().is_some();
        let rules = NameRules {
            folds_case: exists(format!("{stem}\u{e4}q")) || exists(format!("{stem}\u{c4}q")),
            normalises: exists(format!("{stem}A\u{308}Q")),
        };
        let _ = self.remove(&probe);
        rules
    }

    /// The length of its plain file `name`, if it has one.
    pub(crate) fn file_len(&self, name: &str) -> Option<u64> {
        self.entry(name)
            .ok()
            .flatten()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.len)
    }

    /// Create the file `name`, which must not exist (`O_EXCL`: never a link, never someone else's file).
    pub(crate) fn create_new(&self, name: &str) -> io::Result<std::fs::File> {
        check_name(name)?;
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// Create the file `name` empty: whatever had that name is removed first (a link is removed, never
    /// followed), then it is created exclusively.
    pub(crate) fn create_fresh(&self, name: &str) -> io::Result<std::fs::File> {
        for _ in 0..3 {
            self.remove(name)?;
            match self.create_new(name) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => return other,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "something keeps re-creating this name",
        ))
    }

    /// Open the existing plain file `name` for writing (a link, a hard-linked file or anything but a
    /// regular file is refused).
    pub(crate) fn open_write(&self, name: &str) -> io::Result<std::fs::File> {
        self.open_plain(name, OFlags::WRONLY, true)
    }

    /// Open the existing regular file `name` for reading (never through a link).
    pub(crate) fn open_read(&self, name: &str) -> io::Result<std::fs::File> {
        self.open_plain(name, OFlags::RDONLY, false)
    }

    fn open_plain(
        &self,
        name: &str,
        access: OFlags,
        single_link: bool,
    ) -> io::Result<std::fs::File> {
        check_name(name)?;
        // NONBLOCK: opening a FIFO planted under the name must not hang (regular files ignore it).
        let fd = rfs::openat(
            &self.fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => not_plain(),
            e => e.into(),
        })?;
        let entry = Entry::of(&rfs::fstat(&fd)?);
        if entry.kind != EntryKind::File || (single_link && entry.links > 1) {
            return Err(not_plain());
        }
        Ok(std::fs::File::from(fd))
    }

    /// Give the small file `name` the content `bytes` whole or not at all: written to a fresh temporary name
    /// (never through a link), synced, then renamed over `name`.
    pub(crate) fn replace_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        let tmp = format!("{name}.tmp");
        let mut file = self.create_fresh(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        self.rename(&tmp, self, name, true)
    }

    /// The content of the small regular file `name` (never read through a link); `None` if there is none.
    pub(crate) fn read_file(&self, name: &str) -> io::Result<Option<String>> {
        use std::io::Read as _;
        let mut file = match self.open_read(name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(Some(text))
    }

    /// Remove its entry `name` unless it is a folder (a link is removed itself); nothing to remove is fine.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove its entry `name` unless it is a plain file (a link, a hard link, a FIFO, an empty folder); what
    /// odbackup writes into must be its own.
    pub(crate) fn remove_unless_plain(&self, name: &str) -> io::Result<()> {
        match self.entry(name)? {
            None => Ok(()),
            Some(e) if e.is_plain_file() => Ok(()),
            Some(e) if e.kind == EntryKind::Folder => {
                rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(Into::into)
            }
            Some(_) => self.remove(name),
        }
    }

    /// Rename its entry `name` to `to_name` in `target` (possibly this folder). With `replace` off, an
    /// existing `to_name` is never replaced (`AlreadyExists`).
    pub fn rename(
        &self,
        name: &str,
        target: &Folder,
        to_name: &str,
        replace: bool,
    ) -> io::Result<()> {
        check_name(name)?;
        check_name(to_name)?;
        if replace {
            return rfs::renameat(&self.fd, name, &target.fd, to_name).map_err(Into::into);
        }
        if !NOREPLACE_UNSUPPORTED.load(Ordering::Relaxed) {
            match rfs::renameat_with(&self.fd, name, &target.fd, to_name, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(()),
                Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
                    NOREPLACE_UNSUPPORTED.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Without kernel support the check and the rename are two steps; the race left is only with a writer
        // creating that very name in between, which then loses its file to the trash of a later run, never
        // bytes to outside the destination.
        if target.entry(to_name)?.is_some() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        rfs::renameat(&self.fd, name, &target.fd, to_name).map_err(Into::into)
    }

    /// Give its regular file `name` the further name `to_name` in `target` (a hard link; `linkat` between the
    /// two folder handles without `AT_SYMLINK_FOLLOW`, so a link under `name` is never followed). An existing
    /// `to_name` is never replaced (`AlreadyExists`). What now has the name `to_name` is returned, for the
    /// caller to check it is the file it meant (a link swapped in under `name` would be linked as itself).
    pub(crate) fn hard_link(
        &self,
        name: &str,
        target: &Folder,
        to_name: &str,
    ) -> io::Result<Entry> {
        check_name(name)?;
        check_name(to_name)?;
        rfs::linkat(&self.fd, name, &target.fd, to_name, AtFlags::empty())?;
        target
            .entry(to_name)?
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    /// Set the modification time of its entry `name` (never through a link): `utimensat` relative to this
    /// folder with `AT_SYMLINK_NOFOLLOW`; the access time is left alone.
    pub(crate) fn set_mtime(&self, name: &str, secs: i64, nanos: u32) -> io::Result<()> {
        check_name(name)?;
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 0,
                tv_nsec: rfs::UTIME_OMIT,
            },
            last_modification: rfs::Timespec {
                tv_sec: secs,
                tv_nsec: nanos.into(),
            },
        };
        rfs::utimensat(&self.fd, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
    }

    /// Flush the folder's entries to disk: after a rename, the new name survives a power cut.
    pub fn sync(&self) -> io::Result<()> {
        rfs::fsync(&self.fd).map_err(Into::into)
    }

    /// Its entries' names and kinds, never following a link (`None`: the listing did not say; ask
    /// [`Folder::entry`]). Names that are not UTF-8 are left out (no drive item can have one).
    pub fn list(&self) -> io::Result<Vec<(String, Option<EntryKind>)>> {
        self.entries()
    }

    /// Its entries' names and kinds (`None`: the directory listing did not say).
    fn entries(&self) -> io::Result<Vec<(String, Option<EntryKind>)>> {
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue; // not UTF-8: not a name odbackup made
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::RegularFile => Some(EntryKind::File),
                FileType::Directory => Some(EntryKind::Folder),
                FileType::Symlink => Some(EntryKind::Link),
                FileType::Unknown => None,
                _ => Some(EntryKind::Other),
            };
            out.push((name.to_owned(), kind));
        }
        Ok(out)
    }

    fn identity(&self) -> io::Result<(u64, u64)> {
        Ok(Entry::of(&rfs::fstat(&self.fd)?).id)
    }

    /// Which folder this is, for a run that will open it again by its path to check it is still this one.
    pub(crate) fn pin(&self) -> io::Result<DestPin> {
        self.identity().map(DestPin)
    }
}

/// A folder's identity (device and inode), taken when it was opened without following links: a run given a
/// destination path with a pin works there only while the path still leads to that very folder, so a link
/// swapped in after the check (at a tenant's `users/<upn>`) cannot carry the drive's files elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestPin((u64, u64));

impl DestPin {
    /// Whether the folder the path `path` leads to now (following links, as the run will) is the pinned one.
    ///
    /// # Errors
    /// [`DestError::Replaced`] when it is not.
    pub(crate) fn check_at(self, path: &Path) -> Result<(), DestError> {
        match rfs::stat(path) {
            Ok(st) if Entry::of(&st).id == self.0 => Ok(()),
            _ => Err(DestError::Replaced {
                at: path.to_path_buf(),
            }),
        }
    }
}

fn not_plain() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a plain file (a link, a hard link or a special file); never written through",
    )
}

/// The name of the part file that receives a download before it is verified and renamed: hidden, of fixed
/// length whatever the target's, and specific to the item and its version (eTag), so a part file is resumed
/// only for the same version of the same item.
pub fn part_file_name(drive_id: &str, item_id: &str, version: &str) -> String {
    use std::fmt::Write as _;
    let item = Sha1::digest(format!("{drive_id}/{item_id}").as_bytes());
    let version = Sha1::digest(version.as_bytes());
    let mut name = String::from(".odbackup-");
    for b in &item[..8] {
        let _ = write!(name, "{b:02x}");
    }
    name.push('-');
    for b in &version[..4] {
        let _ = write!(name, "{b:02x}");
    }
    name.push_str(".part");
    name
}

/// The span journal beside the part file `part` (`chunks.rs`).
pub fn journal_name(part: &str) -> String {
    format!("{part}.chunks")
}

/// The temporary name a file takes while files that swapped names on the drive are moved round a cycle:
/// like a part file's, so a sweep finds one a crash left behind.
pub fn moving_name(drive_id: &str, item_id: &str) -> String {
    part_file_name(drive_id, item_id, "\0moving")
}

/// Check an item path (plain names only, not in the state folder) and split it into its folder and its
/// name.
pub fn split_item_path(rel: &str) -> Result<(&str, &str), DestError> {
    item_parts(rel)?;
    split(rel)
}

/// Split a relative path into its folder and its name.
pub fn split(rel: &str) -> Result<(&str, &str), DestError> {
    let trimmed = rel.trim_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name.is_empty() {
        return Err(DestError::Escapes {
            path: rel.to_owned(),
        });
    }
    Ok((parent, name))
}

/// The components of an item path, refusing the state folder as its first one.
fn item_parts(rel: &str) -> Result<Vec<&str>, DestError> {
    let parts = parts_of(rel)?;
    if parts.first().is_some_and(|first| is_state_dir(first)) {
        return Err(DestError::StateFolder {
            path: rel.to_owned(),
        });
    }
    Ok(parts)
}

/// The components of a relative path: plain names only (no `.`, `..`, NUL).
fn parts_of(rel: &str) -> Result<Vec<&str>, DestError> {
    let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    if parts
        .iter()
        .any(|p| *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(DestError::Escapes {
            path: rel.to_owned(),
        });
    }
    Ok(parts)
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    Ok(())
}

/// Whether a top-level name is odbackup's state folder as any file system could see it (case folded,
/// normalised, trailing dots and spaces dropped): the one rule the crawl names top-level items by.
fn is_state_dir(name: &str) -> bool {
    crate::localpath::is_state_dir_name(name)
}

fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn shown(dest: &Path, rel: &str) -> PathBuf {
    let mut path = dest.to_path_buf();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        path.push(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::symlink;

    fn dest() -> (tempfile::TempDir, Dest) {
        let dir = tempfile::tempdir().unwrap();
        let dest = Dest::open(&dir.path().join("dest")).unwrap();
        (dir, dest)
    }

    #[test]
    fn the_name_probe_tells_what_this_file_system_does_through_the_handle_and_leaves_nothing_behind()
     {
        let (dir, dest) = dest();
        let state = dest.state_folder().unwrap();
        let state_path = dir.path().join("dest").join(STATE_DIR);
        // The folder is swapped for a link to another folder once opened: the probe stays in the one opened.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::rename(&state_path, dir.path().join("moved")).unwrap();
        symlink(&elsewhere, &state_path).unwrap();
        let rules = state.probe_name_rules();
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        let moved = dir.path().join("moved");
        assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 0);
        // The test machine's temporary folder (ext4, tmpfs, APFS…): check against what it really does.
        std::fs::write(moved.join("\u{c4}"), b"x").unwrap();
        assert_eq!(rules.folds_case, moved.join("\u{e4}").exists());
        assert_eq!(rules.normalises, moved.join("A\u{308}").exists());
        // Where nothing can be created, the cautious answer.
        std::fs::remove_file(moved.join("\u{c4}")).unwrap();
        std::fs::remove_dir(&moved).unwrap();
        assert_eq!(state.probe_name_rules(), NameRules::FOLDING);
    }

    #[test]
    fn a_pinned_folder_swapped_for_a_link_or_another_folder_no_longer_holds_at_its_path() {
        let (dir, dest) = dest();
        let folder = dest.create_item_folder("users/ann").unwrap();
        let pin = folder.pin().unwrap();
        let path = dir.path().join("dest/users/ann");
        assert!(pin.check_at(&path).is_ok());
        assert!(Dest::open(&path).unwrap().check_pin(pin).is_ok());
        // A neighbour moves it away and plants a link to elsewhere, or another folder, in its place.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::rename(&path, dir.path().join("dest/users/moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(matches!(
            pin.check_at(&path),
            Err(DestError::Replaced { .. })
        ));
        assert!(Dest::open(&path).unwrap().check_pin(pin).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(pin.check_at(&path).is_err());
    }

    #[test]
    fn folders_are_created_as_real_folders_and_links_below_the_root_are_refused() {
        let (dir, dest) = dest();
        let folder = dest.create_item_folder("a/b/c").unwrap();
        assert_eq!(folder.rel(), "a/b/c");
        assert!(dir.path().join("dest/a/b/c").is_dir());
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        symlink(dir.path().join("outside"), dir.path().join("dest/a/link")).unwrap();
        for rel in ["a/link", "a/link/x", "a/link/x/y"] {
            assert!(
                matches!(
                    dest.create_item_folder(rel),
                    Err(DestError::NotAFolder { .. })
                ),
                "{rel}"
            );
            assert!(matches!(
                dest.item_folder(rel),
                Err(DestError::NotAFolder { .. })
            ));
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("outside"))
                .unwrap()
                .count(),
            0
        );
        std::fs::write(dir.path().join("dest/a/file"), b"x").unwrap();
        assert!(matches!(
            dest.create_item_folder("a/file/sub"),
            Err(DestError::NotAFolder { .. })
        ));
        assert!(dest.item_folder("a/none").unwrap().is_none());
        // The destination itself may be a link.
        symlink(dir.path().join("dest"), dir.path().join("alias")).unwrap();
        let alias = Dest::open(&dir.path().join("alias")).unwrap();
        assert!(alias.item_folder("a/b").unwrap().is_some());
    }

    #[test]
    fn escapes_and_the_state_folder_in_any_case_are_refused_for_item_data() {
        let (_dir, dest) = dest();
        for rel in ["../x", "a/../../x", "a/./b", "a/\0/b"] {
            assert!(
                matches!(dest.create_item_folder(rel), Err(DestError::Escapes { .. })),
                "{rel}"
            );
        }
        for rel in [
            ".odbackup",
            ".ODBackup/trash",
            ".odbackup/x/y",
            ".odbackup. /x",
        ] {
            assert!(
                matches!(
                    dest.create_item_folder(rel),
                    Err(DestError::StateFolder { .. })
                ),
                "{rel}"
            );
            assert!(dest.move_file("a.txt", &format!("{rel}/a.txt")).is_err());
        }
        assert!(matches!(
            split_item_path(".ODBACKUP"),
            Err(DestError::StateFolder { .. })
        ));
        assert!(matches!(
            split_item_path("a/../b"),
            Err(DestError::Escapes { .. })
        ));
        assert_eq!(split_item_path("a/b/c.txt").unwrap(), ("a/b", "c.txt"));
        assert_eq!(split_item_path("c.txt").unwrap(), ("", "c.txt"));
        // Deeper down the name is an ordinary folder.
        assert!(dest.create_item_folder("x/.odbackup").is_ok());
    }

    #[test]
    fn a_hard_link_is_made_between_folders_never_over_a_name_and_never_through_a_link() {
        use std::os::unix::fs::MetadataExt as _;
        let (dir, dest) = dest();
        let a = dest.create_item_folder("a").unwrap();
        let b = dest.create_item_folder("b").unwrap();
        std::fs::write(dir.path().join("dest/a/photo.jpg"), b"bytes").unwrap();
        let made = a.hard_link("photo.jpg", &b, "copy.jpg").unwrap();
        let held = Entry::of_open(&a.open_read("photo.jpg").unwrap()).unwrap();
        assert!(made.same_file(&held) && made.links == 2);
        assert_eq!(
            std::fs::metadata(dir.path().join("dest/b/copy.jpg"))
                .unwrap()
                .ino(),
            std::fs::metadata(dir.path().join("dest/a/photo.jpg"))
                .unwrap()
                .ino()
        );
        let taken = a.hard_link("photo.jpg", &b, "copy.jpg").unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AlreadyExists, "never replaces");
        // A link under the source's name is linked as itself: what appears is a link, never its target.
        let outside = dir.path().join("victim");
        std::fs::write(&outside, b"precious").unwrap();
        symlink(&outside, dir.path().join("dest/a/swapped.jpg")).unwrap();
        let made = a.hard_link("swapped.jpg", &b, "other.jpg").unwrap();
        assert_eq!(made.kind, EntryKind::Link);
        assert!(b.open_read("other.jpg").is_err());
        assert!(a.hard_link("../victim", &b, "x").is_err());
    }

    #[test]
    fn part_files_are_exclusive_and_never_written_through_links_or_hard_links() {
        let (dir, dest) = dest();
        let folder = dest.create_item_folder("f").unwrap();
        let outside = dir.path().join("victim");
        std::fs::write(&outside, b"precious").unwrap();
        symlink(&outside, dir.path().join("dest/f/p.part")).unwrap();
        assert!(
            folder.create_new("p.part").is_err(),
            "O_EXCL refuses an existing link"
        );
        assert!(folder.open_write("p.part").is_err());
        assert!(folder.open_read("p.part").is_err());
        assert!(
            folder.set_mtime("p.part", 0, 0).is_ok(),
            "the link's own time, not its target's"
        );
        let mut fresh = folder.create_fresh("p.part").unwrap();
        fresh.write_all(b"mine").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert_ne!(
            std::fs::metadata(&outside).unwrap().modified().unwrap(),
            std::time::UNIX_EPOCH
        );
        std::fs::hard_link(&outside, dir.path().join("dest/f/h.part")).unwrap();
        assert!(
            folder.open_write("h.part").is_err(),
            "a hard link is someone else's file too"
        );
        folder.remove_unless_plain("h.part").unwrap();
        assert!(folder.entry("h.part").unwrap().is_none());
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    }

    #[test]
    fn a_rename_never_replaces_unless_asked_and_a_held_folder_notices_it_was_moved() {
        let (dir, dest) = dest();
        let folder = dest.create_item_folder("f").unwrap();
        std::fs::write(dir.path().join("dest/f/a"), b"a").unwrap();
        std::fs::write(dir.path().join("dest/f/b"), b"b").unwrap();
        let err = folder.rename("a", &folder, "b", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        folder.rename("a", &folder, "b", true).unwrap();
        assert_eq!(std::fs::read(dir.path().join("dest/f/b")).unwrap(), b"a");
        assert!(dest.still_holds(&folder));
        std::fs::rename(dir.path().join("dest/f"), dir.path().join("dest/g")).unwrap();
        std::fs::create_dir(dir.path().join("dest/f")).unwrap();
        assert!(!dest.still_holds(&folder));
    }

    #[test]
    fn moves_and_the_trash_keep_everything_and_remove_emptied_folders() {
        let (dir, dest) = dest();
        let root = dir.path().join("dest");
        std::fs::create_dir_all(root.join("old/deep")).unwrap();
        std::fs::write(root.join("old/deep/a"), b"a").unwrap();
        std::fs::write(root.join("b"), b"b").unwrap();
        assert_eq!(
            dest.move_file("old/deep/a", "b").unwrap(),
            MoveOutcome::TargetTaken
        );
        assert_eq!(
            dest.move_file("old/deep/a", "new/a").unwrap(),
            MoveOutcome::Moved
        );
        assert!(!root.join("old").exists(), "emptied folders go");
        assert_eq!(
            dest.move_file("old/deep/a", "x").unwrap(),
            MoveOutcome::SourceMissing
        );
        assert_eq!(
            dest.trash("b", "2024-01-02").unwrap().as_deref(),
            Some(".odbackup/trash/2024-01-02/b")
        );
        std::fs::write(root.join("b"), b"b2").unwrap();
        assert_eq!(
            dest.trash("b", "2024-01-02").unwrap().as_deref(),
            Some(".odbackup/trash/2024-01-02/b.1")
        );
        assert_eq!(
            std::fs::read(root.join(".odbackup/trash/2024-01-02/b.1")).unwrap(),
            b"b2"
        );
        assert_eq!(dest.trash("b", "2024-01-02").unwrap(), None);
        assert!(root.is_dir(), "never the destination itself");
    }

    #[test]
    fn a_sweep_removes_only_unwanted_part_files_and_never_follows_links() {
        let (dir, dest) = dest();
        let root = dir.path().join("dest");
        let stale = part_file_name("d", "i", "v1");
        let wanted = part_file_name("d", "j", "v1");
        assert!(is_own_part_name(&stale) && is_own_part_name(&journal_name(&stale)));
        assert!(is_own_part_name(&moving_name("d", "i")));
        // Fixed length whatever the item, and one per version: an old version's part file is never resumed.
        assert_ne!(stale, part_file_name("d", "i", "v2"));
        assert_eq!(
            stale.len(),
            part_file_name(&"d".repeat(300), "i", "v1").len()
        );
        for not_ours in [
            ".odbackup-x.part",
            "a.part",
            ".odbackup-0123456789abcdef-0123456.part",
            ".odbackup-0123456789ABCDEF-01234567.part",
        ] {
            assert!(!is_own_part_name(not_ours), "{not_ours}");
        }
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".odbackup")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        for path in [
            root.join("a").join(&stale),
            root.join("a/b").join(journal_name(&stale)),
            root.join("a").join(&wanted),
            root.join(".odbackup").join(&stale),
            dir.path().join("outside").join(&stale),
            root.join("a/user.part"),
        ] {
            std::fs::write(path, b"12345").unwrap();
        }
        symlink(dir.path().join("outside"), root.join("a/link")).unwrap();
        let swept = dest
            .sweep_part_files(&|folder, name| folder == "a" && name == wanted)
            .unwrap();
        assert_eq!((swept.files, swept.bytes), (2, 10));
        assert!(swept.left.is_empty(), "{:?}", swept.left);
        assert!(root.join("a").join(&wanted).exists() && root.join("a/user.part").exists());
        assert!(root.join(".odbackup").join(&stale).exists());
        assert!(dir.path().join("outside").join(&stale).exists());
        assert!(!root.join("a").join(&stale).exists());
    }
}
