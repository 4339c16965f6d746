//! One file: from a manifest row to verified bytes under the final name.
//!
//! Write order is what makes this crash-safe (a kill -9 anywhere leaves either the old state or a part file
//! that the next run resumes): bytes go to a part file beside the target while being hashed, then the part
//! file is flushed and fsynced, verified, given its mtime, renamed to the target's name, the folder is
//! fsynced, and only then does the caller mark the row done.
//!
//! Every file operation goes through the target's folder handle (`fsdest`), opened once without following
//! links: a folder swapped for a link mid-transfer cannot redirect the part file, the rename or the mtime.

use std::io::{ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::DownloadPolicy;
use super::chunks;
use super::plan::{
    Action, Earlier, Judgement, ListedUrlLifetime, LocalState, allowed_length, classify, judge,
    plan,
};
use super::ranged::Ranged;
use crate::adaptive::AdaptiveLimit;
use crate::fsdest::{self, Dest, DestError, EntryKind, Folder};
use crate::graph::{ContentSource, DownloadUrl, GraphClient, GraphError};
use crate::hash::{ContentDigest, ContentHasher, Expected, Verification, verify};
use crate::manifest::{Caveat, CaveatClass, DownloadJob, FailureClass};
use crate::progress::{Event, Reporter};

/// Network hiccups (reset, stall, 5xx beyond the client's own retries) survived per file per run; each one
/// resumes from the bytes already written.
pub(super) const MAX_NETWORK_RETRIES: u32 = 5;
/// Fresh download URLs refused in a row (no byte received in between) before the file is failed: an expiring
/// URL is routine, a host that refuses every new one is a permission problem, not something to loop on.
pub(super) const MAX_URL_REFRESHES: u32 = 4;
/// Write buffer per transfer (per stream of a ranged one).
pub(super) const WRITE_BUFFER: usize = 256 * 1024;

/// How one transfer ended.
#[derive(Debug)]
pub enum TransferOutcome {
    /// On disk and checked.
    Done {
        /// Relative local path (as stored in the manifest).
        local_path: String,
        /// How it was verified (the mismatch its caveat explains, when kept with one).
        verification: Verification,
        /// Why it was kept although it could not be verified against the listing.
        caveat: Option<Caveat>,
        /// Bytes on disk (differs from the listed size only with a caveat).
        local_size: u64,
        /// Bytes fetched over the network in this run.
        fetched: u64,
        /// Whether an existing local file was adopted without downloading.
        adopted: bool,
        /// Requests it took in this run (more than one when a transfer was resumed or retried).
        attempts: u32,
        /// Where a local file that was not odbackup's, found under the target's name, was moved (a trash
        /// path relative to the destination).
        displaced: Option<String>,
        /// Whether the bytes came by the download URL of the item's listing (no `/content` request).
        by_listing_url: bool,
    },
    /// Failed for this run; the row records it.
    Failed(TransferFailure),
    /// Stopped by cancellation; the part file is kept for the next run.
    Interrupted,
}

/// A per-item failure, ready to be recorded.
#[derive(Debug)]
pub struct TransferFailure {
    /// The failure class.
    pub class: FailureClass,
    /// The HTTP status, when one was involved.
    pub http_status: Option<u16>,
    /// What happened, for the user.
    pub message: String,
    /// Attempts made in this run.
    pub attempts: u32,
    /// Whether the whole run must stop (the token was refused, the disk is full): the item is recorded, and
    /// no further transfer would fare better.
    pub fatal: bool,
}

/// What the run has learned of listing URLs, shared by its transfers.
pub(super) type SharedUrlLifetime = std::sync::Mutex<ListedUrlLifetime>;

fn lifetime(shared: &SharedUrlLifetime) -> std::sync::MutexGuard<'_, ListedUrlLifetime> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, now.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Download one manifest row into `dest`. A file larger than the policy's chunk size is fetched as several
/// concurrent Range requests (`ranged.rs`), whose further streams take slots of `slots` when free. The
/// listing's URL is used while `listed` says it is worth a request, and what its refusal teaches goes back
/// there.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::too_many_lines)] // the transfer's steps in order; being split into a state machine
pub async fn transfer(
    graph: &GraphClient,
    dest: &Dest,
    job: &DownloadJob,
    policy: &DownloadPolicy,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
    slots: Option<&AdaptiveLimit>,
    listed: &SharedUrlLifetime,
) -> TransferOutcome {
    let local_path = job.local_path.clone().unwrap_or_default();
    if local_path.is_empty() {
        return failed(
            FailureClass::Path,
            None,
            format!("no local path for {}", job.remote_path),
            0,
            false,
        );
    }
    let (parent, name) = match fsdest::split_item_path(&local_path) {
        Ok((parent, name)) => (parent.to_owned(), name.to_owned()),
        Err(err) => return failed(FailureClass::Path, None, err.to_string(), 0, false),
    };
    let expected = Expected {
        size: job.size,
        quick_xor: job.quick_xor.clone(),
        sha1: job.sha1.clone(),
    };
    let version = job.etag.as_deref().or(job.ctag.as_deref()).unwrap_or("");
    let part = fsdest::part_file_name(job.drive_id.as_str(), job.item_id.as_str(), version);
    let mut ranged = chunks::is_ranged(job.size, policy.chunk_size, policy.streams_per_file);
    // The target's folder, opened (and created) once without following links: everything below is relative
    // to it. Part files and journals are odbackup's own, plain files: anything else under those names (a
    // planted link, a hard link to someone's file) is removed, never written through.
    let prepared = {
        let (dest, part, parent) = (dest.clone(), part.clone(), parent.clone());
        let size = job.size;
        blocking(move || {
            let folder = dest.create_item_folder(&parent)?;
            for planted in [part.clone(), fsdest::journal_name(&part)] {
                folder
                    .remove_unless_plain(&planted)
                    .map_err(|e| folder.error(&planted, e))?;
            }
            if !ranged {
                to_one_stream(&folder, &part, size).map_err(|e| folder.error(&part, e))?;
            }
            Ok::<_, DestError>(Arc::new(folder))
        })
        .await
    };
    let folder = match prepared {
        Ok(folder) => folder,
        Err(err) => return dest_failure(&err, 0),
    };
    let local = LocalState {
        final_len: folder.file_len(&name),
        part_len: folder.file_len(&part),
    };
    let mut action = plan(job.size, local);
    if action == Action::CheckExisting {
        match hash_file(&folder, &name, u64::MAX, expected.sha1.is_some()).await {
            Ok((len, digest)) => {
                let v = verify(&expected, &digest);
                if let Judgement::Keep {
                    verification,
                    caveat,
                } = judge(&job.name, &v, Some(len), Earlier::None)
                {
                    set_mtime(&folder, &name, job.modified_at.as_deref());
                    return TransferOutcome::Done {
                        local_path,
                        verification,
                        caveat,
                        local_size: len,
                        fetched: 0,
                        adopted: true,
                        attempts: 0,
                        displaced: None,
                        by_listing_url: false,
                    };
                }
            }
            Err(err) => return disk_failure(&err, &folder.shown(&name), 0),
        }
        // Same size, different bytes: the existing file is replaced by the verified download.
        action = plan(
            job.size,
            LocalState {
                final_len: None,
                ..local
            },
        );
    }

    tracing::debug!(item = %job.item_id, path = %job.remote_path, size = job.size, ?action, "transfer starting");
    let mut attempts = 0u32;
    // The bytes of an earlier complete fetch that did not match the listing (length, quickXorHash).
    let mut too_long_before = false;
    let mut mismatched: Option<(u64, String)> = None;
    let mut network_retries = 0u32;
    let mut url_refreshes = 0u32;
    // The listing's URL saves the `/content` round trip while it is fresh; one that was refused, or that served
    // bytes that do not match, is not used again.
    let now_ms = unix_ms();
    let from_listing = job
        .listed_url
        .as_ref()
        .filter(|l| lifetime(listed).usable(l.fetched_at_ms, now_ms));
    let mut url: Option<ContentSource> =
        from_listing.map(|l| ContentSource::Url(DownloadUrl::new(l.url.expose().to_owned())));
    let mut url_from_listing = url.is_some();
    let listed_at = from_listing.map(|l| l.fetched_at_ms);
    // A refused listing URL (when it was stored, when it was refused), until a fresh URL serves the file.
    let mut refused_listing: Option<(i64, i64)> = None;
    let mut start = match action {
        Action::Resume(offset) => offset,
        _ => 0,
    };
    let mut fetched = 0u64;
    loop {
        attempts += 1;
        if cancel.is_cancelled() {
            return TransferOutcome::Interrupted;
        }
        let step = if ranged {
            Ranged {
                graph,
                job,
                policy,
                folder: &folder,
                part: &part,
                with_sha1: expected.sha1.is_some(),
                reporter,
                cancel,
                slots,
            }
            .fetch(&mut url, &mut fetched)
            .await
        } else {
            fetch_into_part(
                graph,
                job,
                policy,
                (&folder, &part),
                start,
                &mut url,
                expected.sha1.is_some(),
                reporter,
                cancel,
                &mut fetched,
            )
            .await
        };
        let (digest, declared) = match step {
            Ok(Some(fetched)) => fetched,
            Ok(None) => return TransferOutcome::Interrupted,
            Err(StepError::UrlExpired(status, host)) => {
                // Not a failure: the pre-authenticated URL only lives so long. Resolve a fresh one and go on
                // from what is on disk — unless fresh ones are refused too. A refused listing URL was merely
                // old: it does not count against the fresh ones.
                let now_on_disk = folder.file_len(&part).unwrap_or(0);
                if let (true, Some(at)) = (url_from_listing, listed_at) {
                    // Its listing is over: the other files it listed go through `/content` at once.
                    lifetime(listed).refused(at);
                    refused_listing = Some((at, unix_ms()));
                }
                url_refreshes = if now_on_disk > start {
                    1
                } else if url_from_listing {
                    url_refreshes
                } else {
                    url_refreshes + 1
                };
                url_from_listing = false;
                if url_refreshes > MAX_URL_REFRESHES {
                    return urls_refused(job, status, &host, attempts);
                }
                url = None;
                attempts -= 1;
                start = now_on_disk;
                continue;
            }
            Err(StepError::Network(err))
                if worth_resuming(&err) && network_retries < MAX_NETWORK_RETRIES =>
            {
                network_retries += 1;
                tracing::debug!(item = %job.item_id, error = %err, "transfer interrupted; resuming");
                start = folder.file_len(&part).unwrap_or(0);
                continue;
            }
            Err(StepError::Network(err)) => {
                let class = classify(&err);
                return failed(
                    class,
                    err.status(),
                    err.to_string(),
                    attempts,
                    class == FailureClass::Auth,
                );
            }
            Err(StepError::UrlsRefused(status, host)) => {
                return urls_refused(job, status, &host, attempts);
            }
            Err(StepError::RangesUnsupported) => {
                // The host ignores ranges or serves another length than listed: one stream from the start,
                // where the checks of a whole-file fetch (length, caveats) apply.
                tracing::debug!(item = %job.item_id, "ranges cannot be assembled; fetching in one stream");
                ranged = false;
                remove_part(&folder, &part).await;
                start = 0;
                continue;
            }
            Err(StepError::TooLong(limit)) => {
                remove_part(&folder, &part).await;
                if !too_long_before {
                    // Like a wrong hash: one more try from scratch, since a gateway may have sent something else.
                    too_long_before = true;
                    start = 0;
                    continue;
                }
                return failed(
                    FailureClass::SizeMismatch,
                    None,
                    format!(
                        "the server sent more than {limit} bytes; the listing says {}",
                        job.size
                    ),
                    attempts,
                    false,
                );
            }
            Err(StepError::RangeRefused) => {
                start = 0;
                continue;
            }
            Err(StepError::Disk(err, path)) => return disk_failure(&err, &path, attempts),
        };
        if let Some((stored, refused)) = refused_listing.take() {
            // A fresh URL served what the listing's could not: that one had expired at its age.
            lifetime(listed).confirmed_expired(stored, refused);
        }
        let earlier = match &mismatched {
            None => Earlier::None,
            Some((len, qx)) if *len == digest.len && *qx == digest.quick_xor => Earlier::Same,
            Some(_) => Earlier::Different,
        };
        match judge(&job.name, &verify(&expected, &digest), declared, earlier) {
            Judgement::Keep {
                verification,
                caveat,
            } => {
                let caveat = malware_caveat(job).or(caveat);
                let placed = {
                    let (dest, folder, part, name) = (
                        dest.clone(),
                        Arc::clone(&folder),
                        part.clone(),
                        name.clone(),
                    );
                    // Only this item's own earlier version may be replaced: anything else under the name is
                    // the user's (or a file odbackup kept), and goes to the trash first.
                    let ours = job.written_path.as_deref() == Some(local_path.as_str());
                    let modified_at = job.modified_at.clone();
                    blocking(move || {
                        place(&dest, &folder, &part, &name, ours, modified_at.as_deref())
                    })
                    .await
                };
                let displaced = match placed {
                    Ok(displaced) => displaced,
                    Err(err) => return dest_failure(&err, attempts),
                };
                tracing::debug!(item = %job.item_id, path = %job.remote_path, verification = verification.as_stored(), ?caveat, attempts, "file done");
                return TransferOutcome::Done {
                    local_path,
                    verification,
                    caveat,
                    local_size: digest.len,
                    fetched,
                    adopted: false,
                    attempts,
                    displaced,
                    by_listing_url: url_from_listing,
                };
            }
            Judgement::FetchAgain => {
                // Never keep wrong bytes, not even as a part file a later run would resume from.
                remove_part(&folder, &part).await;
                if url_from_listing {
                    // Possibly minted for another version: the next fetch asks `/content`.
                    url = None;
                    url_from_listing = false;
                }
                tracing::debug!(item = %job.item_id, "bytes differ from the listing; fetching again");
                mismatched = Some((digest.len, digest.quick_xor));
                start = 0;
            }
            Judgement::Fail { class, message } => {
                remove_part(&folder, &part).await;
                return failed(class, None, message, attempts, false);
            }
        }
    }
}

pub(super) enum StepError {
    /// The download host refused the URL with this status.
    UrlExpired(u16, String),
    /// A ranged transfer gave up after fresh URLs were refused this many times in a row (the last status).
    UrlsRefused(u16, String),
    /// The host ignored a Range or served another length than listed: fetch the file in one stream.
    RangesUnsupported,
    /// The server sent more bytes than may be right for this file (the listed size, or a bit more for a
    /// file the service may have rewritten).
    TooLong(u64),
    RangeRefused,
    Network(GraphError),
    Disk(std::io::Error, PathBuf),
}

/// Bring the part file from `start` to the end, hashing everything in it: the digest, and the whole length
/// the server declared for the file (when it did). `Ok(None)` means cancelled.
#[allow(clippy::too_many_arguments)]
async fn fetch_into_part(
    graph: &GraphClient,
    job: &DownloadJob,
    policy: &DownloadPolicy,
    (folder, part): (&Arc<Folder>, &str),
    start: u64,
    url: &mut Option<ContentSource>,
    with_sha1: bool,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
    fetched: &mut u64,
) -> Result<Option<(ContentDigest, Option<u64>)>, StepError> {
    let disk = |e: std::io::Error| StepError::Disk(e, folder.shown(part));
    // Rebuild the hash state over the bytes already on disk (a resume after kill -9 has no other record).
    let (mut written, mut hasher) = if start > 0 {
        let (len, hasher) = hash_prefix(folder, part, start, with_sha1)
            .await
            .map_err(disk)?;
        (len, hasher)
    } else {
        (0, ContentHasher::new(with_sha1))
    };
    if job.size == 0 {
        // Nothing to fetch (and a Range on an empty body is asking for a 416): an empty file is the content.
        let file = folder.create_fresh(part).map_err(disk)?;
        file.sync_all().map_err(disk)?;
        return Ok(Some((hasher.finish(), Some(0))));
    }
    if written >= job.size {
        // Complete part file (killed after fsync, before rename): nothing left to fetch.
        return Ok(Some((hasher.finish(), Some(written))));
    }
    // A known source is asked directly; otherwise `/content`, which redirects to one or serves the bytes.
    let answered = match url.as_ref() {
        Some(source) => {
            graph
                .fetch(&job.item_id, source, written, None, policy.stall_timeout)
                .await
        }
        None => {
            graph
                .open_content(
                    &job.drive_id,
                    &job.item_id,
                    job.malware && policy.allow_malware,
                    written,
                    None,
                    policy.stall_timeout,
                )
                .await
        }
    };
    let response = match answered {
        Ok((source, r)) => {
            *url = Some(source);
            r
        }
        Err(GraphError::DownloadUrlExpired { status, host }) => {
            return Err(StepError::UrlExpired(status, host));
        }
        Err(GraphError::RangeNotSatisfiable { total: Some(t), .. }) if t == written => {
            // The part file already holds all the host serves (a file shorter than listed, killed between the
            // last byte and the rename): it is judged as it is.
            let file = folder.open_write(part).map_err(disk)?;
            file.sync_all().map_err(disk)?;
            return Ok(Some((hasher.finish(), Some(written))));
        }
        Err(err) if err.status() == Some(416) => return Err(StepError::RangeRefused),
        Err(err) => return Err(StepError::Network(err)),
    };
    if written > 0 && (!response.partial || response.start != written) {
        // The server ignored our Range and sent the whole file: start over.
        written = 0;
        hasher = ContentHasher::new(with_sha1);
    }
    // A fresh start creates the part file exclusively; a resume reopens the plain file the prefix came from.
    let file = if written == 0 {
        folder.create_fresh(part)
    } else {
        folder.open_write(part)
    }
    .map_err(disk)?;
    let file = tokio::fs::File::from_std(file);
    file.set_len(written).await.map_err(disk)?;
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    if written > 0 {
        file.seek_to_end().await.map_err(disk)?;
    }
    let declared = response.total;
    let limit = allowed_length(&job.name, job.size);
    let mut body = response.body;
    let mut outcome = Ok(());
    loop {
        let chunk = tokio::select! {
            biased;
            () = cancel.cancelled() => { outcome = Err(None); break; }
            chunk = body.next() => chunk,
        };
        match chunk {
            None => break,
            Some(Ok(bytes)) => {
                if written + bytes.len() as u64 > limit {
                    // Longer than can be right: stop before it fills the disk.
                    outcome = Err(Some(StepError::TooLong(limit)));
                    break;
                }
                hasher.update(&bytes);
                if let Err(e) = file.write_all(&bytes).await {
                    outcome = Err(Some(disk(e)));
                    break;
                }
                written += bytes.len() as u64;
                *fetched += bytes.len() as u64;
                reporter.event(&Event::Bytes(bytes.len() as u64));
            }
            Some(Err(err)) => {
                outcome = Err(Some(StepError::Network(err)));
                break;
            }
        }
    }
    // Whatever happened, what was received so far is kept for a resume.
    if let Err(e) = file.flush().await {
        return Err(disk(e));
    }
    match outcome {
        Ok(()) => {}
        Err(None) => return Ok(None),
        Err(Some(e)) => return Err(e),
    }
    file.get_mut().sync_all().await.map_err(disk)?;
    Ok(Some((hasher.finish(), declared)))
}

/// Whether a failed request is worth resuming within this transfer: the connection broke, stalled or could
/// not be made. An error answer (a 5xx, throttling) already had the client's retries and backoff, so asking
/// again at once would only multiply them: the file fails for this run and is retried by the next one.
pub(super) fn worth_resuming(err: &GraphError) -> bool {
    matches!(
        err,
        GraphError::Network { .. }
            | GraphError::Timeout { .. }
            | GraphError::Stalled { .. }
            | GraphError::Connect { .. }
    )
}

trait SeekToEnd {
    async fn seek_to_end(&mut self) -> std::io::Result<()>;
}

impl SeekToEnd for tokio::io::BufWriter<tokio::fs::File> {
    async fn seek_to_end(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncSeekExt as _;
        self.get_mut()
            .seek(std::io::SeekFrom::End(0))
            .await
            .map(|_| ())
    }
}

/// A malware-flagged file that was fetched (the user asked for it) is kept with that caveat above all.
fn malware_caveat(job: &DownloadJob) -> Option<Caveat> {
    job.malware.then(|| Caveat {
        class: CaveatClass::MalwareOverride,
        reason: "flagged as malware by OneDrive; fetched anyway on request (allow malware)"
            .to_owned(),
    })
}

/// Remove a part file and its span journal (bytes that must not be resumed from).
async fn remove_part(folder: &Arc<Folder>, part: &str) {
    let (folder, part) = (Arc::clone(folder), part.to_owned());
    blocking(move || {
        let _ = folder.remove(&part);
        let _ = folder.remove(&fsdest::journal_name(&part));
    })
    .await;
}

/// A file fetched in one stream this time whose part file was written in spans (an earlier run with other
/// settings): keep the gapless prefix the journal vouches for, which a one-stream resume continues from, and
/// drop the journal. Nothing to do without a journal.
fn to_one_stream(folder: &Folder, part: &str, size: u64) -> std::io::Result<()> {
    let journal = fsdest::journal_name(part);
    if folder.entry(&journal)?.is_none() {
        return Ok(());
    }
    let part_len = folder.file_len(part).unwrap_or(0);
    let prefix = chunks::done_prefix(&chunks::read_journal(folder, &journal, size, part_len));
    if part_len > 0 {
        let file = folder.open_write(part)?;
        file.set_len(prefix)?;
        file.sync_all()?;
    }
    folder.remove(&journal)
}

/// Give the verified part file `part` the name `name` in `folder`: its modification time first (so the file
/// never shows under its name with the download time), then the rename, then an fsync of the folder so the
/// name survives a power cut. A file already under the name is replaced only if it is `ours` (this item's
/// earlier version, as the manifest records) and a plain file; anything else is moved into the trash first
/// and its trash path returned. Nothing is renamed over a name that appeared in between.
pub(super) fn place(
    dest: &Dest,
    folder: &Folder,
    part: &str,
    name: &str,
    ours: bool,
    modified_at: Option<&str>,
) -> Result<Option<String>, DestError> {
    // The journal goes first: a part file without one is taken whole on a resume, which is what it now is
    // (a kill before the rename then re-verifies it, and nothing is left behind).
    folder
        .remove(&fsdest::journal_name(part))
        .map_err(|e| folder.error(part, e))?;
    set_mtime(folder, part, modified_at);
    let mut displaced = None;
    let mut placed = false;
    for _ in 0..4 {
        let there = folder.entry(name).map_err(|e| folder.error(name, e))?;
        let replace = match there {
            None => false,
            Some(entry) if ours && entry.kind == EntryKind::File => true,
            Some(_) => {
                let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
                if let Some(to) = dest.trash_entry(folder, name, &date)? {
                    tracing::warn!(path = %folder.shown(name).display(), trash = %to, "a local file that odbackup did not write was in the way: moved into the trash");
                    displaced = Some(to);
                }
                continue;
            }
        };
        match folder.rename(part, folder, name, replace) {
            Ok(()) => {
                placed = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(folder.error(name, e)),
        }
    }
    if !placed {
        return Err(folder.error(
            name,
            std::io::Error::new(
                ErrorKind::AlreadyExists,
                "something keeps taking this name; the download is kept as a part file",
            ),
        ));
    }
    folder.sync().map_err(|e| folder.error("", e))?;
    // The folder may have been swapped away while the file was written: then it is not where the manifest
    // will say, and a later run checks it again.
    if !dest.still_holds(folder) {
        return Err(DestError::FolderMoved {
            at: dest.shown(folder.rel()),
        });
    }
    Ok(displaced)
}

/// Run blocking file-system work (a handful of system calls, an fsync) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

fn failed(
    class: FailureClass,
    http_status: Option<u16>,
    message: String,
    attempts: u32,
    fatal: bool,
) -> TransferOutcome {
    TransferOutcome::Failed(TransferFailure {
        class,
        http_status,
        message,
        attempts: attempts.max(1),
        fatal,
    })
}

/// The download host refused fresh URL after fresh URL: a permission problem, not something to loop on.
fn urls_refused(job: &DownloadJob, status: u16, host: &str, attempts: u32) -> TransferOutcome {
    failed(
        FailureClass::AccessDenied,
        Some(status),
        format!(
            "{host} refused {MAX_URL_REFRESHES} fresh download URLs of item {} in a row (HTTP {status})",
            job.item_id
        ),
        attempts,
        false,
    )
}

/// A failure met under the destination: a refused path (a link, a folder swapped away) is class `path`, and
/// never stops the run; a disk error is judged by [`disk_failure`].
fn dest_failure(err: &DestError, attempts: u32) -> TransferOutcome {
    match err {
        DestError::Io { path, source } => disk_failure(source, path, attempts),
        refused => failed(
            FailureClass::Path,
            None,
            refused.to_string(),
            attempts,
            false,
        ),
    }
}

fn disk_failure(err: &std::io::Error, path: &Path, attempts: u32) -> TransferOutcome {
    // A full or read-only disk, or a folder we may not write to, will fail the following transfers too: stop
    // the run, keep what is done, and say where, so the user can fix it and re-run.
    let fatal = matches!(
        err.kind(),
        ErrorKind::StorageFull
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::QuotaExceeded
            | ErrorKind::PermissionDenied
    );
    let class = if err.kind() == ErrorKind::InvalidFilename {
        FailureClass::Path
    } else {
        FailureClass::Disk
    };
    failed(
        class,
        None,
        format!("{}: {err}", path.display()),
        attempts,
        fatal,
    )
}

/// Hash the first `limit` bytes of the file `name` of `folder` (all of it with `u64::MAX`) on the blocking
/// pool.
pub(super) async fn hash_prefix(
    folder: &Arc<Folder>,
    name: &str,
    limit: u64,
    with_sha1: bool,
) -> std::io::Result<(u64, ContentHasher)> {
    let (folder, name) = (Arc::clone(folder), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut file = folder.open_read(&name)?.take(limit);
        let mut hasher = ContentHasher::new(with_sha1);
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok((len, hasher))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn hash_file(
    folder: &Arc<Folder>,
    name: &str,
    limit: u64,
    with_sha1: bool,
) -> std::io::Result<(u64, ContentDigest)> {
    let (len, hasher) = hash_prefix(folder, name, limit, with_sha1).await?;
    Ok((len, hasher.finish()))
}

/// Give the file `name` of `folder` the remote `fileSystemInfo.lastModifiedDateTime` (never through a
/// link). Best effort: a missing or unparsable date leaves the download time, which is logged, not failed.
fn set_mtime(folder: &Folder, name: &str, modified_at: Option<&str>) {
    let Some(text) = modified_at else { return };
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => {
            if let Err(err) = folder.set_mtime(name, t.timestamp(), t.timestamp_subsec_nanos()) {
                tracing::warn!(path = %folder.shown(name).display(), error = %err, "could not set the modification time");
            }
        }
        Err(err) => {
            tracing::warn!(path = %folder.shown(name).display(), date = text, error = %err, "unparsable modification time");
        }
    }
}
