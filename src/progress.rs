//! The progress seam: the core reports what happens as [`Event`]s to a [`Reporter`]; the command line
//! decides how to show them (bars on a terminal, nothing when piped). Nothing here draws or prints.

/// Something worth telling the user about while a run is under way.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A crawl of the given remote scope started (or resumed, with folders still to list).
    CrawlStarted {
        /// The scope's remote path.
        scope: &'a str,
        /// Whether an interrupted crawl is being resumed.
        resumed: bool,
    },
    /// One page of a folder listing was committed to the manifest.
    PageListed {
        /// Items on the page.
        items: usize,
        /// Whether that finished the folder.
        folder_done: bool,
    },
    /// The crawl listed every folder of its scope.
    CrawlFinished {
        /// Folders listed by this run.
        folders: u64,
        /// Items recorded by this run.
        items: u64,
    },
    /// Files were found that the downloader will fetch.
    Queued {
        /// Number of files.
        files: u64,
        /// Their total size in bytes.
        bytes: u64,
    },
    /// Bytes arrived for some transfer.
    Bytes(u64),
    /// A file is on disk and verified.
    FileDone {
        /// Its remote path.
        path: &'a str,
        /// Its size.
        bytes: u64,
        /// Whether it was adopted from disk without downloading.
        adopted: bool,
    },
    /// A file failed for this run (it is on record in the manifest).
    FileFailed {
        /// Its remote path.
        path: &'a str,
        /// The failure class (`hash_mismatch`, `network`, …).
        class: &'a str,
        /// What went wrong.
        message: &'a str,
    },
    /// A local file that odbackup had not written was where a file of the drive goes: it was moved into the
    /// trash (never overwritten).
    Displaced {
        /// Its path, relative to the destination.
        path: &'a str,
        /// Where it is now, relative to the destination.
        trash: &'a str,
    },
    /// A dry run would download this file.
    Planned {
        /// Its remote path.
        path: &'a str,
        /// Its size.
        bytes: u64,
    },
    /// The service throttled the run (a new episode of 429/503): every request pauses for its
    /// `Retry-After`, and fewer transfers run at once for a while.
    Throttled {
        /// Throttle answers so far in this run.
        answers: u64,
        /// Transfers allowed at once from now on.
        transfers: usize,
    },
    /// `--dedupe hardlink` could not link a file to its copy on disk (the destination refused the hard link):
    /// it was downloaded as a copy. Said once per run; later refusals are counted in the summary.
    DedupeFellBack {
        /// Its remote path.
        path: &'a str,
        /// What the file system said.
        reason: &'a str,
    },
    /// Something the user should hear of that is not a file's failure (a shared item no longer shared, a
    /// folder not listed, a local file that could not be moved): said on stderr, and as an event in `--json`.
    Notice {
        /// What kind of notice, for scripts.
        kind: NoticeKind,
        /// The item it is about (a remote or local path), if one.
        path: Option<&'a str>,
        /// What happened and what it means, in words.
        message: &'a str,
        /// The underlying error, when there is one.
        detail: Option<&'a str>,
    },
    /// One drive of a tenant backup ended.
    DriveFinished {
        /// Its folder under the root (`users/adele@contoso.com`).
        folder: &'a str,
        /// `ok`, `incomplete`, `interrupted`, `locked`, `failed`, …
        status: &'a str,
        /// Why it failed, when it did.
        error: Option<&'a str>,
    },
}

/// What an [`Event::Notice`] is about; `--json` spells it as [`NoticeKind::as_str`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A shared item added to My files is no longer accessible: its files on disk are kept.
    SharedNotAccessible,
    /// More shortcuts to shared items than one run follows.
    TooManyShortcuts,
    /// A folder's listing stopped part way: the next run lists it again.
    FolderNotListed,
    /// Changes could not be listed incrementally: the scope is listed in full (or walked) instead.
    FullListing,
    /// A local file could not be moved or trashed as asked: it stays where it is.
    LocalFileNotMoved,
    /// A local file that odbackup had not written was where a file of the drive goes: it was moved into the
    /// trash (never overwritten).
    LocalFileDisplaced,
    /// `--keep-versions` could not move a changed file's previous version into the trash: the new version
    /// replaces it.
    VersionNotKept,
    /// `--dedupe hardlink` could not link a file to its copy on disk: files with the same content are
    /// downloaded as copies.
    HardLinkRefused,
    /// Part files no wanted file resumes from could not be looked for or removed: they stay on disk.
    PartFilesNotRemoved,
    /// The service gave no starting point for changes: the next run lists the scope in full again.
    IncrementalUnavailable,
    /// The service asked an earlier run to wait (`Retry-After`): this run waits out the rest first.
    WaitingForService,
    /// A local folder could not be created.
    FolderNotCreated,
    /// A file's modification time could not be set or read.
    ModifiedTime,
    /// An entry of the restore source is not restored (a link, a device).
    NotRestored,
    /// An entry is restored under a legal name (`--rename-invalid`).
    RestoredRenamed,
    /// A folder of the restore source could not be listed.
    SourceFolderUnreadable,
}

impl NoticeKind {
    /// The stable spelling in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedNotAccessible => "shared_not_accessible",
            Self::TooManyShortcuts => "too_many_shortcuts",
            Self::FolderNotListed => "folder_not_listed",
            Self::FullListing => "full_listing",
            Self::LocalFileNotMoved => "local_file_not_moved",
            Self::LocalFileDisplaced => "local_file_displaced",
            Self::VersionNotKept => "version_not_kept",
            Self::HardLinkRefused => "hard_link_refused",
            Self::PartFilesNotRemoved => "part_files_not_removed",
            Self::IncrementalUnavailable => "incremental_unavailable",
            Self::WaitingForService => "waiting_for_service",
            Self::FolderNotCreated => "folder_not_created",
            Self::ModifiedTime => "modified_time",
            Self::NotRestored => "not_restored",
            Self::RestoredRenamed => "restored_renamed",
            Self::SourceFolderUnreadable => "source_folder_unreadable",
        }
    }
}

/// Receives [`Event`]s. Implementations must be cheap: events arrive from many tasks.
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn event(&self, event: &Event<'_>);
}

/// A reporter that ignores everything (library use, tests, `--quiet`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopReporter;

impl Reporter for NoopReporter {
    fn event(&self, _event: &Event<'_>) {}
}

/// How far the crawl has got; the downloader watches it to start transfers while the crawl is listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrawlProgress {
    /// Pages committed so far by this run.
    pub pages: u64,
    /// Whether the crawl has ended (finished, failed or was cancelled): no more items will arrive.
    pub ended: bool,
}
