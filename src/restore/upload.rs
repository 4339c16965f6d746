//! One file put back: read through the source's folder handle (never through a link), hashed as it is read,
//! sent in one `PUT` when small or through an upload session in fragments when large, and verified — the item
//! the service returns must have the local file's size and quickXorHash.
//!
//! A session's URL is kept in the manifest as soon as the session exists, so a killed restore asks the
//! session where it stands (`nextExpectedRanges`) and sends only what the service lacks; the bytes already
//! there are read again locally to rebuild the hash, never sent again. A session the service no longer knows
//! (404) starts over, as its docs ask.

use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::folders::{TargetFolder, TargetFolders};
use super::plan::{Decision, ExistingItem, OnConflict, SIMPLE_UPLOAD_LIMIT, decide, split_parent};
use super::{Fatal, failure_class, fatal_of};
use crate::fsdest::Dest;
use crate::graph::{
    ConflictBehavior, DriveItem, FragmentBody, FragmentOutcome, GraphClient, GraphError,
    UploadProperties, UploadUrl, is_name_taken,
};
use crate::hash::ContentHasher;
use crate::ids::{DriveId, ItemId};
use crate::manifest::{FailureClass, FailureRecord, RestoreJob};
use crate::progress::{Event, Reporter};
use crate::shared::SharedManifest;

/// Bytes read from the local file at a time while a fragment streams out.
const READ_CHUNK: usize = 1 << 20;

/// Times a file's upload asks the session where it stands after a refused fragment, before it fails.
const MAX_RESYNCS: u32 = 8;

/// Times a file's upload starts a new session after the service lost the previous one.
const MAX_RESTARTS: u32 = 2;

/// How one file ended.
#[derive(Debug)]
pub enum FileOutcome {
    /// On the target and verified.
    Done {
        /// The target item.
        item_id: String,
        /// Its quickXorHash (what the service listed and the local file hashes to).
        quick_xor: Option<String>,
        /// Bytes sent in this run.
        sent: u64,
        /// Whether the same content was found already there, so nothing was sent.
        already_there: bool,
        /// Whether an upload session of an earlier run was resumed.
        resumed: bool,
        /// Whether a session had to start over.
        restarted: bool,
    },
    /// Left out on purpose.
    Skipped {
        /// Why.
        reason: &'static str,
    },
    /// Not put back in this run.
    Failed {
        /// What the manifest records.
        failure: FailureRecord,
        /// An item this attempt left on the target (failed verification), to replace next time.
        item_id: Option<String>,
        /// Whether it stops the run.
        fatal: Option<Fatal>,
    },
    /// Cancelled at a fragment boundary; the session stays for the next run.
    Interrupted,
}

/// What one file's upload works with.
pub struct FileTask<'a> {
    /// The Graph client.
    pub graph: &'a GraphClient,
    /// Where the state lives.
    pub manifest: &'a SharedManifest,
    /// The source folder.
    pub source: &'a Dest,
    /// The target drive.
    pub drive: &'a DriveId,
    /// The target's folders.
    pub folders: &'a TargetFolders,
    /// The target row.
    pub(crate) target: i64,
    /// The target folder's drive path.
    pub target_root: &'a str,
    /// What to do when the name is taken.
    pub policy: OnConflict,
    /// Fragment size of sessions.
    pub(crate) fragment: u64,
    /// Progress.
    pub(crate) reporter: &'a dyn Reporter,
    /// Stops at a fragment boundary.
    pub(crate) cancel: &'a CancellationToken,
}

fn failed(class: FailureClass, status: Option<u16>, message: String) -> FileOutcome {
    FileOutcome::Failed {
        failure: FailureRecord {
            class,
            http_status: status,
            message,
            attempts: 1,
        },
        item_id: None,
        fatal: None,
    }
}

fn graph_failed(what: &str, err: &GraphError) -> FileOutcome {
    FileOutcome::Failed {
        failure: FailureRecord {
            class: failure_class(err),
            http_status: err.status(),
            message: format!("{what}: {err}"),
            attempts: 1,
        },
        item_id: None,
        fatal: fatal_of(err),
    }
}

/// The local file, open for reading, and its size.
struct Local {
    file: Arc<std::fs::File>,
    len: u64,
    stamp: String,
}

/// Read `len` bytes at `offset` of `file`, hashing them into `hasher` (on the blocking pool).
async fn hash_range(
    file: &Arc<std::fs::File>,
    mut hasher: ContentHasher,
    offset: u64,
    len: u64,
) -> std::io::Result<ContentHasher> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = usize::try_from(end - pos)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            file.read_exact_at(&mut buf[..n], pos)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(hasher)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A file below a folder that could not be made or read fails as the folder did.
impl From<super::folders::FolderFailure> for FileOutcome {
    fn from(f: super::folders::FolderFailure) -> Self {
        FileOutcome::Failed {
            failure: FailureRecord {
                class: f.class,
                http_status: f.http_status,
                message: f.message,
                attempts: 1,
            },
            item_id: None,
            fatal: f.fatal,
        }
    }
}

/// The hash of the file's first `at` bytes, to go on from where the service says it has the bytes up to; or the
/// file's failure when they cannot be read.
async fn hash_prefix(file: &Arc<std::fs::File>, at: u64) -> Result<ContentHasher, FileOutcome> {
    hash_range(file, ContentHasher::new(false), 0, at)
        .await
        .map_err(|e| failed(FailureClass::Disk, None, format!("reading: {e}")))
}

/// The bytes of a small file, read whole.
async fn read_all(file: &Arc<std::fs::File>, len: u64) -> std::io::Result<Bytes> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        file.read_exact_at(&mut buf, 0)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The size and quickXorHash an item lists.
fn listed(item: &DriveItem) -> (Option<u64>, Option<&str>) {
    (
        item.size,
        item.file
            .as_ref()
            .and_then(|f| f.hashes.as_ref())
            .and_then(|h| h.quick_xor_hash.as_deref()),
    )
}

impl FileTask<'_> {
    /// Put `job` back.
    pub async fn run(&self, job: &RestoreJob) -> FileOutcome {
        let local = match self.open(job).await {
            Ok(l) => l,
            Err(outcome) => return outcome,
        };
        let full = super::plan::join(self.target_root, &job.remote_path);
        let (parent_path, name) = split_parent(&full);
        let folder = match self.folders.ensure(&parent_path).await {
            Ok(f) => f,
            Err(f) => return f.into(),
        };
        let there = match self.folders.child(&folder, &name).await {
            Ok(t) => t,
            Err(f) => return f.into(),
        };
        self.put(job, &local, &folder, &name, there).await
    }

    async fn open(&self, job: &RestoreJob) -> Result<Local, FileOutcome> {
        let path_failed = |m: String| failed(FailureClass::Path, None, m);
        let (parent, name) = crate::fsdest::split_item_path(&job.source_path)
            .map_err(|e| path_failed(e.to_string()))?;
        let (source, parent_rel, name_owned) =
            (self.source.clone(), parent.to_owned(), name.to_owned());
        let opened = tokio::task::spawn_blocking(move || {
            let folder =
                source
                    .item_folder(&parent_rel)?
                    .ok_or_else(|| crate::fsdest::DestError::Io {
                        path: source.shown(&parent_rel),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?;
            let file = folder
                .open_read(&name_owned)
                .map_err(|e| folder.error(&name_owned, e))?;
            let meta = file.metadata().map_err(|e| folder.error(&name_owned, e))?;
            Ok::<_, crate::fsdest::DestError>((file, meta))
        })
        .await;
        match opened {
            Ok(Ok((file, meta))) => {
                use std::os::unix::fs::MetadataExt as _;
                let stamp = super::plan::stamp(
                    meta.len(),
                    meta.mtime(),
                    u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                );
                Ok(Local {
                    file: Arc::new(file),
                    len: meta.len(),
                    stamp,
                })
            }
            Ok(Err(e)) if e.is_path() => Err(path_failed(e.to_string())),
            Ok(Err(e)) => Err(failed(
                FailureClass::Disk,
                None,
                format!("reading {}: {e}", job.source_path),
            )),
            Err(e) => Err(failed(FailureClass::Other, None, e.to_string())),
        }
    }

    /// Decide against what is there, then upload (small or by session) and verify.
    async fn put(
        &self,
        job: &RestoreJob,
        local: &Local,
        folder: &TargetFolder,
        name: &str,
        mut there: Option<ExistingItem>,
    ) -> FileOutcome {
        let mut known_hash: Option<String> = None;
        // One more look after a conflict the listing did not show (someone created the name meanwhile).
        for _ in 0..2 {
            let behavior = match &there {
                None => ConflictBehavior::Fail,
                Some(item) => {
                    let qx = match &known_hash {
                        Some(h) => h.clone(),
                        None => {
                            match hash_range(&local.file, ContentHasher::new(false), 0, local.len)
                                .await
                            {
                                Ok(h) => {
                                    let qx = h.finish().quick_xor;
                                    known_hash = Some(qx.clone());
                                    qx
                                }
                                Err(e) => {
                                    return failed(
                                        FailureClass::Disk,
                                        None,
                                        format!("reading {}: {e}", job.source_path),
                                    );
                                }
                            }
                        }
                    };
                    let own_previous = job.item_id.as_deref().map(ItemId::from);
                    match decide(
                        local.len,
                        &qx,
                        Some(item),
                        self.policy,
                        own_previous.as_ref(),
                    ) {
                        Decision::AlreadyThere { id } => {
                            return self.already_there(job, &id, item, &qx).await;
                        }
                        Decision::Skip { reason } => return FileOutcome::Skipped { reason },
                        Decision::Upload(b) => b,
                    }
                }
            };
            let outcome = if local.len <= SIMPLE_UPLOAD_LIMIT {
                self.put_small(job, local, &folder.id, name, behavior).await
            } else {
                self.put_session(job, local, &folder.id, name, behavior)
                    .await
            };
            match outcome {
                Err(e) if behavior == ConflictBehavior::Fail && is_name_taken(&e) => {
                    match self.folders.lookup(folder, name).await {
                        Ok(found @ Some(_)) => there = found,
                        Ok(None) => return graph_failed("uploading", &e),
                        Err(e) => return graph_failed("looking up what took the name", &e),
                    }
                }
                Err(e) => return graph_failed(&format!("uploading {}", job.remote_path), &e),
                Ok(done) => return done,
            }
        }
        failed(
            FailureClass::HttpStatus,
            Some(409),
            format!(
                "the name of {} keeps being taken on the target",
                job.remote_path
            ),
        )
    }

    /// The same content is there: record it, giving it the times it should have if it lacks them.
    async fn already_there(
        &self,
        job: &RestoreJob,
        id: &ItemId,
        item: &ExistingItem,
        quick_xor: &str,
    ) -> FileOutcome {
        let same_time = match (&item.modified, &job.modified_at) {
            (Some(a), Some(b)) => same_instant(a, b),
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if !same_time
            && let Err(e) = self
                .graph
                .set_file_system_info(
                    self.drive,
                    id,
                    job.created_at.as_deref(),
                    job.modified_at.as_deref(),
                )
                .await
        {
            return graph_failed("setting the times of the file already there", &e);
        }
        FileOutcome::Done {
            item_id: id.as_str().to_owned(),
            quick_xor: Some(quick_xor.to_owned()),
            sent: 0,
            already_there: true,
            resumed: false,
            restarted: false,
        }
    }

    async fn put_small(
        &self,
        job: &RestoreJob,
        local: &Local,
        parent: &ItemId,
        name: &str,
        behavior: ConflictBehavior,
    ) -> Result<FileOutcome, GraphError> {
        let bytes = match read_all(&local.file, local.len).await {
            Ok(b) => b,
            Err(e) => {
                return Ok(failed(
                    FailureClass::Disk,
                    None,
                    format!("reading {}: {e}", job.source_path),
                ));
            }
        };
        let mut hasher = ContentHasher::new(false);
        hasher.update(&bytes);
        let quick_xor = hasher.finish().quick_xor;
        let sent = bytes.len() as u64;
        let item = self
            .graph
            .put_small(self.drive, parent, name, bytes, behavior)
            .await?;
        self.reporter.event(&Event::Bytes(sent));
        if let Some(bad) = self.verify(&item, local.len, &quick_xor).await {
            return Ok(bad);
        }
        // A simple upload carries no times: they are set on the new item.
        if job.created_at.is_some() || job.modified_at.is_some() {
            self.graph
                .set_file_system_info(
                    self.drive,
                    &item.id,
                    job.created_at.as_deref(),
                    job.modified_at.as_deref(),
                )
                .await?;
        }
        Ok(FileOutcome::Done {
            item_id: item.id.as_str().to_owned(),
            quick_xor: Some(quick_xor),
            sent,
            already_there: false,
            resumed: false,
            restarted: false,
        })
    }

    /// `None` when `item` has the local size and hash; else the failure, naming what differs. A service that
    /// lists no hash (it happens for new and empty files) is asked once more; without one still, the size
    /// alone is taken.
    async fn verify(&self, item: &DriveItem, len: u64, quick_xor: &str) -> Option<FileOutcome> {
        let mut refreshed: Option<DriveItem> = None;
        if listed(item).1.is_none() && len > 0 {
            refreshed = self.graph.item(self.drive, &item.id).await.ok();
        }
        let (size, hash) = listed(refreshed.as_ref().unwrap_or(item));
        let bad = |class, message: String| FileOutcome::Failed {
            failure: FailureRecord {
                class,
                http_status: None,
                message,
                attempts: 1,
            },
            item_id: Some(item.id.as_str().to_owned()),
            fatal: None,
        };
        if size != Some(len) {
            return Some(bad(
                FailureClass::SizeMismatch,
                format!(
                    "the uploaded file is {} bytes on the target, {len} locally; it is uploaded again on the next run",
                    size.map_or_else(|| "an unknown number of".to_owned(), |s| s.to_string())
                ),
            ));
        }
        match hash {
            Some(h) if h != quick_xor => Some(bad(
                FailureClass::HashMismatch,
                format!(
                    "the uploaded file's quickXorHash is {h} on the target, {quick_xor} locally; it is uploaded \
                     again on the next run"
                ),
            )),
            Some(_) => None,
            None => {
                tracing::info!(item = %item.id, "the service lists no hash for the uploaded file: verified by size only");
                None
            }
        }
    }

    // One loop over the session protocol (send, resync where the service says, restart a gone session) reads
    // as the protocol does; its steps (kept session, new session, verification) are methods of their own.
    #[allow(clippy::too_many_lines)]
    async fn put_session(
        &self,
        job: &RestoreJob,
        local: &Local,
        parent: &ItemId,
        name: &str,
        behavior: ConflictBehavior,
    ) -> Result<FileOutcome, GraphError> {
        let key = job.source_path.clone();
        let (mut url, mut offset) = match self.kept_session(job, local).await? {
            Ok(Some((url, at))) => (Some(url), at),
            Ok(None) => (None, 0),
            Err(outcome) => return Ok(outcome),
        };
        let resumed = offset > 0;
        let mut restarts = 0u32;
        let mut resyncs = 0u32;
        let mut sent = 0u64;
        let mut hasher = match hash_prefix(&local.file, offset).await {
            Ok(h) => h,
            Err(outcome) => return Ok(outcome),
        };
        loop {
            let session_url = if let Some(u) = &url {
                u.clone()
            } else {
                let started = self
                    .start_session(job, local, parent, name, behavior)
                    .await?;
                offset = 0;
                hasher = ContentHasher::new(false);
                url = Some(started.clone());
                started
            };
            if self.cancel.is_cancelled() {
                return Ok(FileOutcome::Interrupted);
            }
            let n = self.fragment.min(local.len - offset);
            let slot: Arc<Mutex<Option<ContentHasher>>> = Arc::new(Mutex::new(None));
            let body = fragment_body(&local.file, &hasher, &slot, offset, n);
            // Whether the service lost the session: the file starts over in a new one, a bounded number of times.
            let session_gone = match self
                .graph
                .put_fragment(&session_url, offset, n, local.len, &body)
                .await
            {
                Ok(outcome) => {
                    let Some(next) = hashed_to(&slot, offset + n) else {
                        return Ok(failed(
                            FailureClass::Other,
                            None,
                            "the service answered before the whole fragment was read".to_owned(),
                        ));
                    };
                    hasher = next;
                    sent += n;
                    offset += n;
                    self.reporter.event(&Event::Bytes(n));
                    match outcome {
                        FragmentOutcome::Done(item) => {
                            let quick_xor = hasher.finish().quick_xor;
                            return Ok(self.verify(&item, local.len, &quick_xor).await.unwrap_or(
                                FileOutcome::Done {
                                    item_id: item.id.as_str().to_owned(),
                                    quick_xor: Some(quick_xor),
                                    sent,
                                    already_there: false,
                                    resumed,
                                    restarted: restarts > 0,
                                },
                            ));
                        }
                        FragmentOutcome::More(status) => match status.resume_offset() {
                            Some(at) if at != offset && at <= local.len => {
                                // The service lacks something other than what follows: go where it says,
                                // a bounded number of times (a session that keeps asking again for what it
                                // was sent makes no progress).
                                resyncs += 1;
                                if resyncs > MAX_RESYNCS {
                                    return Ok(no_progress(resyncs));
                                }
                                offset = at;
                                hasher = match hash_prefix(&local.file, at).await {
                                    Ok(h) => h,
                                    Err(outcome) => return Ok(outcome),
                                };
                            }
                            _ if offset >= local.len => {
                                return Ok(failed(
                                    FailureClass::HttpStatus,
                                    Some(202),
                                    "the service took every byte but made no file".to_owned(),
                                ));
                            }
                            _ => {}
                        },
                    }
                    false
                }
                Err(GraphError::FragmentRefused { .. }) if resyncs < MAX_RESYNCS => {
                    resyncs += 1;
                    let status = self.graph.upload_session_status(&session_url).await;
                    match status.map(|s| s.resume_offset()) {
                        Ok(Some(at)) if at <= local.len => {
                            offset = at;
                            hasher = match hash_prefix(&local.file, at).await {
                                Ok(h) => h,
                                Err(outcome) => return Ok(outcome),
                            };
                            false
                        }
                        Ok(_) | Err(GraphError::UploadSessionGone) => true,
                        Err(e) => return Err(e),
                    }
                }
                Err(GraphError::UploadSessionGone) => true,
                Err(e) => return Err(e),
            };
            if session_gone {
                self.forget_session(&key).await;
                if restarts >= MAX_RESTARTS {
                    return Err(GraphError::UploadSessionGone);
                }
                restarts += 1;
                url = None;
            }
        }
    }

    /// The upload session an earlier run kept for this file, if it is still good for it: its URL and the offset
    /// the service asks for next. A session of another version of the file, or one the service no longer
    /// has, is cancelled and forgotten. The inner `Err` is the file's outcome when the manifest cannot say.
    async fn kept_session(
        &self,
        job: &RestoreJob,
        local: &Local,
    ) -> Result<Result<Option<(UploadUrl, u64)>, FileOutcome>, GraphError> {
        let (target, key) = (self.target, job.source_path.clone());
        let kept = self.manifest.restore_session(target, key.clone()).await;
        let Some((stamp, kept_url)) = (match kept {
            Ok(k) => k,
            Err(e) => return Ok(Err(failed(FailureClass::Other, None, e.to_string()))),
        }) else {
            return Ok(Ok(None));
        };
        let kept_url = UploadUrl::new(kept_url);
        if stamp == local.stamp {
            match self.graph.upload_session_status(&kept_url).await {
                Ok(status) => match status.resume_offset() {
                    Some(at) if at <= local.len => {
                        tracing::debug!(path = %job.remote_path, at, "resuming the upload session of an earlier run");
                        return Ok(Ok(Some((kept_url, at))));
                    }
                    // Every byte is there but the file was never made (a refused commit): start afresh.
                    _ => {
                        let _ = self.graph.cancel_upload_session(&kept_url).await;
                    }
                },
                Err(GraphError::UploadSessionGone) => {}
                Err(e) if fatal_of(&e).is_some() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "could not ask a kept session; starting a new one");
                }
            }
        } else {
            // The file changed since that session began: its bytes are not this file's any more.
            let _ = self.graph.cancel_upload_session(&kept_url).await;
        }
        self.forget_session(&key).await;
        Ok(Ok(None))
    }

    /// A new upload session for `job`, kept in the manifest so that a killed run resumes it.
    async fn start_session(
        &self,
        job: &RestoreJob,
        local: &Local,
        parent: &ItemId,
        name: &str,
        behavior: ConflictBehavior,
    ) -> Result<UploadUrl, GraphError> {
        let props = UploadProperties {
            name,
            conflict: behavior,
            created: job.created_at.as_deref(),
            modified: job.modified_at.as_deref(),
            size: local.len,
        };
        let session = self
            .graph
            .create_upload_session(self.drive, parent, &props)
            .await?;
        if let Err(e) = self
            .manifest
            .set_restore_session(
                self.target,
                job.source_path.clone(),
                local.stamp.clone(),
                session.upload_url.expose().to_owned(),
            )
            .await
        {
            // A diagnostic, not a notice: the upload goes on; only a kill before it ends would start this
            // file over, and a manifest that cannot be written fails the run's own records loudly.
            tracing::warn!(error = %e, "could not keep the upload session; a kill now starts it over");
        }
        tracing::debug!(path = %job.remote_path, url = %session.upload_url, "upload session started");
        Ok(session.upload_url)
    }

    async fn forget_session(&self, key: &str) {
        if let Err(e) = self
            .manifest
            .clear_restore_session(self.target, key.to_owned())
            .await
        {
            // A diagnostic, not a notice: a session left on record is checked by the next run that uploads
            // this file (`kept_session`), and cancelled and forgotten then if it is no longer good for it.
            tracing::warn!(error = %e, "could not forget an upload session");
        }
    }
}

/// The hash `slot` holds once a fragment's bytes up to `end` were all handed to the request, or `None` when the
/// service answered before reading them all.
fn hashed_to(slot: &Mutex<Option<ContentHasher>>, end: u64) -> Option<ContentHasher> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .filter(|h| h.len() == end)
}

/// The outcome of an upload session that keeps asking again for bytes it was sent.
fn no_progress(resyncs: u32) -> FileOutcome {
    failed(
        FailureClass::HttpStatus,
        Some(202),
        format!(
            "the upload made no progress: the service asked {resyncs} times for bytes it had been sent"
        ),
    )
}

/// A fragment's bytes, made afresh for every attempt: read from `file` at `offset` on the blocking pool. Each
/// attempt starts `slot` at `base` and hashes the bytes into it as they are handed to the request, so once the
/// service has answered that it took them all, `slot` holds the hash up to the fragment's end.
fn fragment_body(
    file: &Arc<std::fs::File>,
    base: &ContentHasher,
    slot: &Arc<Mutex<Option<ContentHasher>>>,
    offset: u64,
    len: u64,
) -> impl Fn() -> FragmentBody + Send + Sync + use<> {
    let (file, base, slot) = (Arc::clone(file), base.clone(), Arc::clone(slot));
    move || {
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(base.clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let file = Arc::clone(&file);
        tokio::task::spawn_blocking(move || {
            let mut pos = offset;
            let end = offset + len;
            while pos < end {
                let n = usize::try_from(end - pos)
                    .unwrap_or(READ_CHUNK)
                    .min(READ_CHUNK);
                let mut buf = vec![0u8; n];
                if let Err(e) = file.read_exact_at(&mut buf, pos) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                pos += n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return; // the request ended early (refused, cut): the rest is not wanted
                }
            }
        });
        let slot = Arc::clone(&slot);
        Box::pin(futures_util::stream::unfold(rx, move |mut rx| {
            let slot = Arc::clone(&slot);
            async move {
                let item = rx.recv().await?;
                if let Ok(bytes) = &item
                    && let Some(h) = slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_mut()
                {
                    h.update(bytes);
                }
                Some((item, rx))
            }
        }))
    }
}

/// Whether two RFC 3339 times are the same instant to the second (the service keeps whole seconds on some
/// drives and fractions on others).
fn same_instant(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a.timestamp() == b.timestamp(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_compare_to_the_second_in_any_offset() {
        assert!(same_instant(
            "2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00.4Z"
        ));
        assert!(same_instant(
            "2020-01-01T02:00:00+02:00",
            "2020-01-01T00:00:00Z"
        ));
        assert!(!same_instant(
            "2020-01-01T00:00:01Z",
            "2020-01-01T00:00:00Z"
        ));
    }
}
