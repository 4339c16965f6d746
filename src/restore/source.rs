//! What a restore reads: a backup's files (the manifest says where each is on disk and what it was called on
//! the drive, so names odbackup had to encode on disk go back as they were), or a plain folder without a
//! manifest. Every read of the source goes through [`fsdest`](crate::fsdest) folder handles opened without
//! following links, so a symbolic link planted in a backup is reported and skipped, never followed: no file
//! from outside the source folder is ever uploaded.
//!
//! Knows nothing of Graph: it turns the source into [`SourceEntry`] batches for the planner.

use crate::fsdest::{self, Dest, DestError, EntryKind, Folder};
use crate::localpath::STATE_DIR;
use crate::manifest::{RestoreKind, SourceRow};

/// One file or folder of the source, before planning.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// Relative to the source folder (`/`-separated).
    pub(crate) source_path: String,
    /// File or folder.
    pub kind: RestoreKind,
    /// Its names from the source's root down, as the drive should have them (the last is its own).
    pub(crate) segments: Vec<String>,
    /// Bytes on disk.
    pub size: u64,
    /// Size and modification time on disk.
    pub(crate) stamp: String,
    /// Creation time to give it.
    pub(crate) created_at: Option<String>,
    /// Modification time to give it.
    pub(crate) modified_at: Option<String>,
    /// Photo, video, or other (for the media filter).
    pub media: crate::manifest::MediaKind,
    /// When a photo or video was taken.
    pub(crate) taken_at: Option<String>,
    /// Why it cannot be read as a plain file or folder, if so.
    pub(crate) unusable: Option<Unusable>,
}

/// Why a source entry cannot be read as a plain file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// A symbolic link (in its place, or in its path): never followed.
    Link,
    /// A FIFO, socket or device.
    NotRegular,
    /// Not there, or not readable: the message says which and what to do.
    Unreadable(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Link => {
                f.write_str("it is a symbolic link (or lies below one): never followed")
            }
            Unusable::NotRegular => f.write_str("it is not a regular file"),
            Unusable::Unreadable(why) => f.write_str(why),
        }
    }
}

/// A refusal of the destination's folder walk as an [`Unusable`]: a link in the path is one.
fn unusable_of(err: &DestError) -> Unusable {
    match err {
        DestError::NotAFolder { .. } => Unusable::Link,
        other => Unusable::Unreadable(other.to_string()),
    }
}

impl SourceEntry {
    /// The remote path it had (`/a/b.jpg`), for the filters and for messages.
    pub fn original_path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// RFC 3339 UTC of a modification time.
fn rfc3339(secs: i64, nanos: u32) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Folder handles of the source, one at a time (rows come folder by folder more often than not).
pub struct FolderCursor {
    current: Option<(String, Option<Folder>)>,
}

impl FolderCursor {
    /// No folder open yet.
    pub fn new() -> Self {
        Self { current: None }
    }

    /// The folder at `rel` under `dest` (`None` if missing or refused; the error, if one, is returned).
    fn folder<'a>(&'a mut self, dest: &Dest, rel: &str) -> Result<Option<&'a Folder>, DestError> {
        if self.current.as_ref().is_none_or(|(p, _)| p != rel) {
            let opened = dest.item_folder(rel)?;
            self.current = Some((rel.to_owned(), opened));
        }
        Ok(self.current.as_ref().and_then(|(_, f)| f.as_ref()))
    }
}

impl Default for FolderCursor {
    fn default() -> Self {
        Self::new()
    }
}

/// A backup's manifest row as a source entry: its names from the drive (the manifest's), what is on disk at
/// its local path (looked at without following a link).
pub fn from_backup_row(dest: &Dest, cursor: &mut FolderCursor, row: &SourceRow) -> SourceEntry {
    // The manifest's remote path is the parent's path and the name: take the name as the drive had it (it may
    // hold characters, even a `/`, that the path cannot show).
    let parent = match row.remote_path.strip_suffix(&row.name) {
        Some(p) => p.trim_end_matches('/').to_owned(),
        None => crate::restore::plan::split_parent(&row.remote_path).0,
    };
    let mut segments: Vec<String> = parent
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    segments.push(row.name.clone());
    let mut entry = SourceEntry {
        source_path: row.local_path.clone(),
        kind: row.kind,
        segments,
        size: row.size,
        stamp: String::new(),
        created_at: row.created_at.clone(),
        modified_at: row.modified_at.clone(),
        media: crate::manifest::MediaKind::parse(&row.media)
            .unwrap_or(crate::manifest::MediaKind::Other),
        taken_at: row.taken_at.clone(),
        unusable: None,
    };
    let (folder_rel, name) = match fsdest::split_item_path(&row.local_path) {
        Ok(pair) => pair,
        Err(e) => {
            entry.unusable = Some(Unusable::Unreadable(format!(
                "its local path is refused: {e}"
            )));
            return entry;
        }
    };
    if row.kind == RestoreKind::Folder {
        entry.size = 0; // a folder's listed size is its files', which are counted on their own
        // A folder missing locally is still created on the target (empty folders come back); only a refused one
        // (a link in its path) is left out.
        if let Err(e) = dest.item_folder(&row.local_path) {
            entry.unusable = Some(unusable_of(&e));
        }
        return entry;
    }
    let looked = cursor
        .folder(dest, folder_rel)
        .map(|f| f.map(|f| f.entry(name)));
    match looked {
        Ok(Some(Ok(Some(e)))) if e.kind == EntryKind::File => {
            entry.size = e.len;
            entry.stamp = crate::restore::plan::stamp(e.len, e.modified.0, e.modified.1);
        }
        Ok(Some(Ok(Some(e)))) if e.kind == EntryKind::Link => entry.unusable = Some(Unusable::Link),
        Ok(Some(Ok(Some(_)))) => entry.unusable = Some(Unusable::NotRegular),
        Ok(Some(Ok(None)) | None) => {
            entry.unusable = Some(Unusable::Unreadable(format!(
                "{} is missing from the backup folder; run `odbackup backup` to fetch it again",
                dest.shown(&row.local_path).display()
            )));
        }
        Ok(Some(Err(e))) => {
            entry.unusable = Some(Unusable::Unreadable(format!("cannot look at it: {e}")));
        }
        Err(e) => entry.unusable = Some(unusable_of(&e)),
    }
    entry
}

/// A walk of a plain folder, depth first, in name order, without following links; odbackup's own state
/// folder and part files are left out.
pub struct FolderWalk {
    dest: Dest,
    stack: Vec<(Folder, Vec<String>)>,
    ready: std::collections::VecDeque<SourceEntry>,
    unlisted: Vec<(String, std::io::Error)>,
}

impl FolderWalk {
    /// Start at the root of `dest`.
    pub fn new(dest: Dest) -> Result<Self, DestError> {
        let root = dest.item_folder("")?.ok_or_else(|| DestError::Io {
            path: dest.path().to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Ok(Self {
            dest,
            stack: vec![(root, Vec::new())],
            ready: std::collections::VecDeque::new(),
            unlisted: Vec::new(),
        })
    }

    /// Up to `n` more entries (none once the walk is over).
    pub fn next_batch(&mut self, n: usize) -> Vec<SourceEntry> {
        while self.ready.len() < n && !self.stack.is_empty() {
            self.step();
        }
        let take = n.min(self.ready.len());
        self.ready.drain(..take).collect()
    }

    /// The folders found unreadable since the last call (their paths relative to the source, and what the
    /// file system said): their entries are not restored, and the caller tells the user.
    pub fn take_unlisted(&mut self) -> Vec<(String, std::io::Error)> {
        std::mem::take(&mut self.unlisted)
    }

    /// List one folder: its files become entries, its folders are entries and pushed to visit.
    fn step(&mut self) {
        let Some((folder, segments)) = self.stack.pop() else {
            return;
        };
        let mut names = match folder.list() {
            Ok(names) => names,
            Err(e) => {
                self.unlisted.push((folder.rel().to_owned(), e));
                return;
            }
        };
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subfolders = Vec::new();
        for (name, kind) in names {
            if (folder.rel().is_empty() && name.eq_ignore_ascii_case(STATE_DIR))
                || fsdest::is_own_part_name(&name)
            {
                continue;
            }
            let looked = folder.entry(&name);
            let kind = kind.or_else(|| looked.as_ref().ok().and_then(|e| e.map(|e| e.kind)));
            let mut child_segments = segments.clone();
            child_segments.push(name.clone());
            let rel = folder.child(&name);
            let mut entry = SourceEntry {
                source_path: rel.clone(),
                kind: RestoreKind::File,
                segments: child_segments.clone(),
                size: 0,
                stamp: String::new(),
                created_at: None,
                modified_at: None,
                media: crate::sync::media_kind(&name, false, false),
                taken_at: None,
                unusable: None,
            };
            match (kind, looked) {
                (Some(EntryKind::Folder), _) => {
                    entry.kind = RestoreKind::Folder;
                    entry.media = crate::manifest::MediaKind::Other;
                    match self.dest.item_folder(&rel) {
                        Ok(Some(sub)) => subfolders.push((sub, child_segments)),
                        Ok(None) => {
                            entry.unusable = Some(Unusable::Unreadable(
                                "it vanished while the folder was read".to_owned(),
                            ));
                        }
                        Err(e) => entry.unusable = Some(unusable_of(&e)),
                    }
                }
                (Some(EntryKind::File), Ok(Some(e))) if e.kind == EntryKind::File => {
                    entry.size = e.len;
                    entry.stamp = crate::restore::plan::stamp(e.len, e.modified.0, e.modified.1);
                    entry.modified_at = rfc3339(e.modified.0, e.modified.1);
                    // Creation time where the file system keeps one (statx birth time), else left to the service.
                    entry.created_at = folder
                        .open_read(&name)
                        .and_then(|f| f.metadata())
                        .and_then(|m| m.created())
                        .ok()
                        .and_then(|t| {
                            let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
                            rfc3339(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())
                        });
                }
                (Some(EntryKind::Link), _) => entry.unusable = Some(Unusable::Link),
                (_, Err(e)) => {
                    entry.unusable = Some(Unusable::Unreadable(format!("cannot look at it: {e}")));
                }
                _ => entry.unusable = Some(Unusable::NotRegular),
            }
            self.ready.push_back(entry);
        }
        // Depth first, in name order: the first subfolder is visited next.
        subfolders.reverse();
        self.stack.extend(subfolders);
    }
}

/// Which of a batch's entries the filters want, by the remote path they had, their kind and their media.
pub fn wanted(filter: &crate::filter::Filter, entry: &SourceEntry) -> Option<&'static str> {
    let path = entry.original_path();
    filter.rejects(&crate::filter::Candidate {
        remote_path: &path,
        is_folder: entry.kind == RestoreKind::Folder,
        is_photo: entry.media == crate::manifest::MediaKind::Photo,
        is_video: entry.media == crate::manifest::MediaKind::Video,
        size: entry.size,
        taken_at: entry.taken_at.as_deref(),
        modified_at: entry.modified_at.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_folder_walk_lists_files_and_folders_and_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("A/Empty")).unwrap();
        std::fs::write(root.join("A/one.jpg"), b"12345").unwrap();
        std::fs::write(root.join("z.txt"), b"z").unwrap();
        std::fs::create_dir_all(root.join(".odbackup")).unwrap();
        std::fs::write(root.join(".odbackup/manifest.sqlite"), b"x").unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("A/link.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let mut walk = FolderWalk::new(Dest::open_existing(&root).unwrap().unwrap()).unwrap();
        let mut all = Vec::new();
        loop {
            let batch = walk.next_batch(2);
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        let seen: Vec<(String, RestoreKind, Option<Unusable>, u64)> = all
            .iter()
            .map(|e| (e.source_path.clone(), e.kind, e.unusable.clone(), e.size))
            .collect();
        let link = Some(Unusable::Link);
        assert_eq!(
            seen,
            [
                ("A".to_owned(), RestoreKind::Folder, None, 0),
                ("up".to_owned(), RestoreKind::File, link.clone(), 0),
                ("z.txt".to_owned(), RestoreKind::File, None, 1),
                ("A/Empty".to_owned(), RestoreKind::Folder, None, 0),
                ("A/link.txt".to_owned(), RestoreKind::File, link, 0),
                ("A/one.jpg".to_owned(), RestoreKind::File, None, 5),
            ]
        );
        let one = all.iter().find(|e| e.source_path == "A/one.jpg").unwrap();
        assert_eq!(one.segments, ["A", "one.jpg"]);
        assert!(one.modified_at.is_some() && one.stamp.starts_with("5:"));
    }
}
