//! One file: from a manifest row to verified bytes under the final name.
//!
//! Write order is what makes this crash-safe (a kill -9 anywhere leaves either the old state or a part file
//! that the next run resumes): bytes go to a part file beside the target while being hashed, then the part
//! file is flushed and fsynced, verified, given its mtime, renamed to the target's name, the folder is
//! fsynced, and only then does the caller mark the row done.
//!
//! Every file operation goes through the target's folder handle (`fsdest`), opened once without following
//! links: a folder swapped for a link mid-transfer cannot redirect the part file, the rename or the mtime.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncSeekExt as _;
use tokio_util::sync::CancellationToken;

use super::DownloadPolicy;
use super::chunks;
use super::plan::{
    Action, Earlier, Judgement, ListedUrlLifetime, ListedUse, LocalState, body_limit, classify,
    judge, plan,
};
use super::ranged::Ranged;
use super::stream::{
    self, Answer, MAX_URL_REFRESHES, Pumped, Resumes, StepError, WRITE_BUFFER, blocking,
    hash_prefix,
};
use crate::adaptive::AdaptiveLimit;
use crate::fsdest::{self, Dest, DestError, EntryKind, Folder};
use crate::graph::{ContentSource, DownloadUrl, GraphClient};
use crate::hash::{ContentDigest, ContentHasher, Expected, Verification, verify};
use crate::manifest::{Caveat, CaveatClass, DownloadJob, FailureClass};
use crate::progress::{Event, NoticeKind, Reporter};

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
    /// Whether the failure is the item's own or stops the whole run.
    pub scope: FailureScope,
}

/// How far a transfer's failure reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureScope {
    /// This file failed; the others go on.
    Item,
    /// The whole run must stop (the token was refused, the disk is full): the item is recorded, and no
    /// further transfer would fare better.
    Run,
}

impl TransferFailure {
    /// A failure of this item alone, with no HTTP status, after one attempt.
    fn new(class: FailureClass, message: String) -> Self {
        Self {
            class,
            http_status: None,
            message,
            attempts: 1,
            scope: FailureScope::Item,
        }
    }

    /// The same, with the HTTP status involved.
    fn with_status(self, http_status: Option<u16>) -> Self {
        Self {
            http_status,
            ..self
        }
    }

    /// The same, stopping the run.
    fn stopping_the_run(self) -> Self {
        Self {
            scope: FailureScope::Run,
            ..self
        }
    }

    /// The same, after `attempts` requests (at least one is counted).
    fn after(self, attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            ..self
        }
    }

    /// Whether the whole run must stop.
    pub fn stops_the_run(&self) -> bool {
        self.scope == FailureScope::Run
    }
}

/// What the run has learned of listing URLs, shared by its transfers.
pub(super) type SharedUrlLifetime = std::sync::Mutex<ListedUrlLifetime>;

fn lifetime(shared: &SharedUrlLifetime) -> std::sync::MutexGuard<'_, ListedUrlLifetime> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Download one manifest row into `dest`. A file larger than the policy's chunk size is fetched as several
/// concurrent Range requests (`ranged.rs`), whose further streams take slots of `slots` when free. The
/// listing's URL is used while `listed` says it is worth a request, and what its refusal teaches goes back
/// there.
///
/// The steps: `Target::prepare` (the folder and part file), `Target::adopt_existing` (a file already
/// there with the right bytes), then `TransferState` fetches, recovers from what can be recovered from, and
/// judges the bytes until the file is placed or failed.
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
    let ranged = chunks::is_ranged(job.size, policy.chunk_size, policy.streams_per_file);
    let target = match Target::prepare(dest, job, ranged).await {
        Ok(target) => target,
        Err(failure) => return TransferOutcome::Failed(failure),
    };
    let action = match target.adopt_existing(job, reporter).await {
        Ok(Adoption::Adopted(done)) => return done,
        Ok(Adoption::Fetch(action)) => action,
        Err(failure) => return TransferOutcome::Failed(failure),
    };
    tracing::debug!(item = %job.item_id, path = %job.remote_path, size = job.size, ?action, "transfer starting");
    let mut state = TransferState::new(
        Context {
            graph,
            dest,
            job,
            policy,
            reporter,
            cancel,
            slots,
            listed,
        },
        target,
        action,
        ranged,
    );
    // Every way round this loop is bounded by its own budget (URL refreshes, resumes, one more try after a
    // mismatch); this bounds their sum too, so no answer a host invents keeps a transfer going for ever. Only
    // requests that brought no byte count: a long file through short-lived URLs needs many that do.
    let mut fruitless = 0;
    while fruitless < MAX_FRUITLESS_STEPS {
        state.attempts += 1;
        let fetched_before = state.fetched;
        if cancel.is_cancelled() {
            return TransferOutcome::Interrupted;
        }
        let next = match state.fetch().await {
            Ok(Some((digest, declared))) => state.judge(digest, declared).await,
            Ok(None) => Next::Finish(TransferOutcome::Interrupted),
            Err(err) => state.recover(err).await,
        };
        if let Next::Finish(outcome) = next {
            return outcome;
        }
        fruitless = if state.fetched > fetched_before {
            0
        } else {
            fruitless + 1
        };
    }
    TransferOutcome::Failed(
        TransferFailure::new(
            FailureClass::Other,
            format!(
                "gave up after {MAX_FRUITLESS_STEPS} requests in a row that brought no byte of this file; \
                 it is tried again on the next run"
            ),
        )
        .after(state.attempts),
    )
}

/// Most requests in a row that bring no byte one transfer makes in a run, whatever the answers.
const MAX_FRUITLESS_STEPS: u32 = 32;

/// What a transfer works with, unchanged from start to end.
struct Context<'a> {
    graph: &'a GraphClient,
    dest: &'a Dest,
    job: &'a DownloadJob,
    policy: &'a DownloadPolicy,
    reporter: &'a dyn Reporter,
    cancel: &'a CancellationToken,
    slots: Option<&'a AdaptiveLimit>,
    listed: &'a SharedUrlLifetime,
}

/// Where a file goes: its folder (held open), its name there, and the part file beside it.
struct Target {
    /// Relative local path (as stored in the manifest).
    local_path: String,
    /// The target's folder, opened without following links: every file operation is relative to it.
    folder: Arc<Folder>,
    /// The file's name in `folder`.
    name: String,
    /// The part file's name in `folder`.
    part: String,
    /// What the listing says the bytes are.
    expected: Expected,
}

/// What was found under the target's name before fetching.
enum Adoption {
    /// The right bytes were already there: kept as they are.
    Adopted(TransferOutcome),
    /// Fetch, as planned.
    Fetch(Action),
}

impl Target {
    /// Resolve the job's local path, open (and create) its folder once without following links, and clear the
    /// part file's names of anything that is not odbackup's plain file (a planted link, a hard link to
    /// someone's file is removed, never written through). A file fetched in one stream whose part file was
    /// written in spans keeps the prefix its journal vouches for.
    async fn prepare(
        dest: &Dest,
        job: &DownloadJob,
        ranged: bool,
    ) -> Result<Self, TransferFailure> {
        let local_path = job.local_path.clone().unwrap_or_default();
        if local_path.is_empty() {
            return Err(TransferFailure::new(
                FailureClass::Path,
                format!("no local path for {}", job.remote_path),
            ));
        }
        let (parent, name) = match fsdest::split_item_path(&local_path) {
            Ok((parent, name)) => (parent.to_owned(), name.to_owned()),
            Err(err) => return Err(TransferFailure::new(FailureClass::Path, err.to_string())),
        };
        let version = job.etag.as_deref().or(job.ctag.as_deref()).unwrap_or("");
        let part = fsdest::part_file_name(job.drive_id.as_str(), job.item_id.as_str(), version);
        let prepared = {
            let (dest, part) = (dest.clone(), part.clone());
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
        let folder = prepared.map_err(|err| dest_failure(&err))?;
        Ok(Self {
            local_path,
            folder,
            name,
            part,
            expected: Expected {
                size: job.size,
                quick_xor: job.quick_xor.clone(),
                sha1: job.sha1.clone(),
            },
        })
    }

    /// A file of the listed size already under the target's name is hashed: kept if its bytes are right
    /// (given the remote modification time), replaced by the download otherwise. What to fetch, from the
    /// part file's state.
    async fn adopt_existing(
        &self,
        job: &DownloadJob,
        reporter: &dyn Reporter,
    ) -> Result<Adoption, TransferFailure> {
        let (folder, name) = (&self.folder, &self.name);
        let local = LocalState {
            final_len: folder.file_len(name),
            part_len: folder.file_len(&self.part),
        };
        // A file whose listing gave no usable size is judged by its hash alone, whatever its length.
        let action = match (job.size_known, self.expected.has_hash()) {
            (true, _) => plan(job.size, local),
            (false, true) if local.final_len.is_some() => Action::CheckExisting,
            // With neither a size nor a hash nothing at the name can be taken for the file: fetched.
            (false, _) => plan(
                job.size,
                LocalState {
                    final_len: None,
                    ..local
                },
            ),
        };
        if action != Action::CheckExisting {
            return Ok(Adoption::Fetch(action));
        }
        let (len, digest) = hash_file(folder, name, self.expected.sha1.is_some())
            .await
            .map_err(|err| disk_failure(&err, &folder.shown(name)))?;
        if let Judgement::Keep {
            verification,
            caveat,
        } = judge_listed(job, &self.expected, &digest, Some(len), Earlier::None)
        {
            if let Some(problem) = set_mtime(folder, name, job.modified_at.as_deref()) {
                problem.report(reporter, &self.local_path);
            }
            return Ok(Adoption::Adopted(TransferOutcome::Done {
                local_path: self.local_path.clone(),
                verification,
                caveat,
                local_size: len,
                fetched: 0,
                adopted: true,
                attempts: 0,
                displaced: None,
                by_listing_url: false,
            }));
        }
        // Same size, different bytes: the existing file is replaced by the verified download.
        Ok(Adoption::Fetch(plan(
            job.size,
            LocalState {
                final_len: None,
                ..local
            },
        )))
    }

    /// Whether SHA-1 is hashed too (the listing gave one).
    fn with_sha1(&self) -> bool {
        self.expected.sha1.is_some()
    }
}

/// Where the bytes come from next, and what that source has taught.
struct Source {
    /// The known source (a download URL, or `/content` serving the bytes itself); `None`: ask `/content`.
    current: Option<ContentSource>,
    /// Whether `current` is the listing's download URL (which saves the `/content` round trip while fresh).
    from_listing: bool,
    /// When the listing's URL was stored, if it was usable when the transfer started.
    listed_at: Option<i64>,
    /// Whether the listing's URL is tried past the learned lifetime (see [`ListedUse::Probe`]).
    probing: bool,
    /// A refused listing URL (when it was stored, when it was refused), until a fresh URL serves the file.
    refused_listing: Option<(i64, i64)>,
    /// Fresh URLs refused in a row with no byte received in between.
    refreshes: u32,
}

impl Source {
    /// The listing's URL while `listed` says it is worth a request; otherwise none (ask `/content`).
    fn for_job(job: &DownloadJob, listed: &SharedUrlLifetime) -> Self {
        let now_ms = unix_ms();
        let chosen = job.listed_url.as_ref().and_then(|l| {
            match lifetime(listed).choose(l.fetched_at_ms, now_ms) {
                ListedUse::Fresh => Some((l, false)),
                ListedUse::Probe => Some((l, true)),
                ListedUse::Skip => None,
            }
        });
        let from_listing = chosen.map(|(l, _)| l);
        Self {
            current: from_listing
                .map(|l| ContentSource::Url(DownloadUrl::new(l.url.expose().to_owned()))),
            from_listing: from_listing.is_some(),
            listed_at: from_listing.map(|l| l.fetched_at_ms),
            probing: chosen.is_some_and(|(_, probe)| probe),
            refused_listing: None,
            refreshes: 0,
        }
    }

    /// The current source was refused. A refused listing URL was merely old: its listing is over (the other
    /// files it listed go through `/content` at once), and it does not count against the fresh ones; a fresh
    /// one refused counts, unless bytes arrived since the last refusal. Returns whether fresh URLs were
    /// refused too often to go on.
    fn refused(&mut self, listed: &SharedUrlLifetime, bytes_arrived: bool) -> bool {
        if let (true, Some(at)) = (self.from_listing, self.listed_at) {
            lifetime(listed).refused(at);
            self.refused_listing = Some((at, unix_ms()));
        }
        self.refreshes = if bytes_arrived {
            1
        } else if self.from_listing {
            self.refreshes
        } else {
            self.refreshes + 1
        };
        self.from_listing = false;
        self.probing = false;
        self.current = None;
        self.refreshes > MAX_URL_REFRESHES
    }

    /// The bytes came. From a fresh URL after the listing's was refused: that one had expired at its age.
    /// From the listing's, tried past the learned lifetime: the lifetime is longer.
    fn served(&mut self, listed: &SharedUrlLifetime) {
        if let Some((stored, refused)) = self.refused_listing.take() {
            lifetime(listed).confirmed_expired(stored, refused);
        }
        if let (true, true, Some(stored)) = (self.probing, self.from_listing, self.listed_at) {
            lifetime(listed).outlived(stored, unix_ms());
        }
        self.probing = false;
    }

    /// The bytes did not match: a listing URL (possibly minted for another version) is not used again.
    fn distrust_listing(&mut self) {
        if self.from_listing {
            self.current = None;
            self.from_listing = false;
        }
    }
}

/// What a transfer step decided.
enum Next {
    /// Fetch again (from what the part file holds).
    Again,
    /// The transfer ended.
    Finish(TransferOutcome),
}

/// One transfer between its steps: what it fetches into, from where, and what it has been through.
struct TransferState<'a> {
    cx: Context<'a>,
    target: Target,
    source: Source,
    /// Whether the file is fetched as spans (until the host shows it cannot serve them).
    ranged: bool,
    /// Where the next one-stream fetch starts (the part file's length after a kill or a hiccup).
    start: u64,
    /// Requests made in this run.
    attempts: u32,
    /// Bytes received in this run.
    fetched: u64,
    /// What is left of the budget for resuming after network hiccups, shared with a ranged fetch's spans.
    resumes: Resumes,
    /// Whether a complete fetch was already longer than may be right.
    too_long_before: bool,
    /// Whether the host already refused a range of this file (HTTP 416) and it was asked from the start.
    range_refused_before: bool,
    /// The length and quickXorHash of an earlier complete fetch that did not match the listing.
    mismatched: Option<(u64, String)>,
}

impl<'a> TransferState<'a> {
    fn new(cx: Context<'a>, target: Target, action: Action, ranged: bool) -> Self {
        let source = Source::for_job(cx.job, cx.listed);
        Self {
            cx,
            target,
            source,
            ranged,
            start: match action {
                Action::Resume(offset) => offset,
                _ => 0,
            },
            attempts: 0,
            fetched: 0,
            resumes: Resumes::default(),
            too_long_before: false,
            range_refused_before: false,
            mismatched: None,
        }
    }

    /// Bring the part file to the end: the digest of all of it and the length the host declared, or
    /// `Ok(None)` when cancelled.
    async fn fetch(&mut self) -> Result<Option<(ContentDigest, Option<u64>)>, StepError> {
        let cx = &self.cx;
        if self.ranged {
            return Ranged {
                graph: cx.graph,
                job: cx.job,
                policy: cx.policy,
                folder: &self.target.folder,
                part: &self.target.part,
                with_sha1: self.target.with_sha1(),
                reporter: cx.reporter,
                cancel: cx.cancel,
                slots: cx.slots,
            }
            .fetch(
                &mut self.source.current,
                &mut self.fetched,
                &mut self.resumes,
            )
            .await;
        }
        self.fetch_one_stream().await
    }

    /// The part file from `start` to the end in one request, hashing everything in it (the bytes already
    /// there are read back: a resume after a kill has no other record of them).
    async fn fetch_one_stream(
        &mut self,
    ) -> Result<Option<(ContentDigest, Option<u64>)>, StepError> {
        let (job, target) = (self.cx.job, &self.target);
        let (folder, part) = (&target.folder, target.part.as_str());
        let disk = |e: std::io::Error| StepError::Disk(e, folder.shown(part));
        let with_sha1 = target.with_sha1();
        let (mut written, mut hasher) = if self.start > 0 {
            hash_prefix(folder, part, self.start, with_sha1)
                .await
                .map_err(disk)?
        } else {
            (0, ContentHasher::new(with_sha1))
        };
        if job.size_known && job.size == 0 {
            // Nothing to fetch (and a Range on an empty body is asking for a 416): an empty file is the content.
            let file = folder.create_fresh(part).map_err(disk)?;
            file.sync_all().map_err(disk)?;
            return Ok(Some((hasher.finish(), Some(0))));
        }
        if job.size_known && written >= job.size {
            // Complete part file (killed after fsync, before rename): nothing left to fetch.
            return Ok(Some((hasher.finish(), Some(written))));
        }
        let request = stream::request(
            self.cx.graph,
            job,
            self.cx.policy,
            self.source.current.as_ref(),
            (written, None),
        );
        // Raced with the stop: a request held by a throttle pause must not hold the run's end with it.
        let answer = tokio::select! {
            biased;
            () = self.cx.cancel.cancelled() => return Ok(None),
            answer = request => answer,
        };
        let download = match answer {
            Answer::Body { source, download } => {
                self.source.current = Some(source);
                download
            }
            Answer::UrlExpired { status, host } => return Err(StepError::UrlExpired(status, host)),
            Answer::RangeNotSatisfiable { total: Some(t) } if t == written => {
                // The part file already holds all the host serves (a file shorter than listed, killed between
                // the last byte and the rename): it is judged as it is.
                let file = folder.open_write(part).map_err(disk)?;
                file.sync_all().map_err(disk)?;
                return Ok(Some((hasher.finish(), Some(written))));
            }
            Answer::RangeNotSatisfiable { .. } => return Err(StepError::RangeRefused),
            Answer::Failed(err) => return Err(StepError::Network(err)),
        };
        if written > 0 && (!download.partial || download.start != written) {
            // The server ignored our Range and sent the whole file: start over.
            written = 0;
            hasher = ContentHasher::new(with_sha1);
        }
        // Gathered in memory only when the server too says it is small: a body may run past the listed size
        // (to the length declared, see `body_limit`), which must then go to disk as it comes.
        if written == 0
            && job.size_known
            && job.size <= WRITE_BUFFER as u64
            && download
                .total
                .is_none_or(|declared| declared <= WRITE_BUFFER as u64)
        {
            return self.fetch_small(download, hasher).await;
        }
        // A fresh start creates the part file exclusively; a resume reopens the plain file the prefix came from.
        let file = if written == 0 {
            folder.create_fresh(part)
        } else {
            folder.open_write(part)
        }
        .map_err(disk)?;
        let mut file = tokio::fs::File::from_std(file);
        file.set_len(written).await.map_err(disk)?;
        if written > 0 {
            file.seek(std::io::SeekFrom::End(0)).await.map_err(disk)?;
        }
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let declared = download.total;
        let limit = self.body_limit(declared);
        let before = written;
        let pumped = stream::pump(
            download.body,
            &mut file,
            (&mut written, limit),
            |bytes: &[u8]| hasher.update(bytes),
            self.cx.reporter,
            self.cx.cancel,
        )
        .await;
        self.fetched += written - before;
        match pumped {
            Pumped::Ended => {}
            Pumped::Cancelled => return Ok(None),
            Pumped::TooLong => {
                return Err(StepError::TooLong(limit));
            }
            Pumped::Network(err) => return Err(StepError::Network(err)),
            Pumped::Disk(e) => return Err(disk(e)),
        }
        file.get_mut().sync_all().await.map_err(disk)?;
        Ok(Some((hasher.finish(), declared)))
    }

    /// How long a one-stream body of this file may run (see [`body_limit`]), given the length `declared`.
    fn body_limit(&self, declared: Option<u64>) -> u64 {
        let job = self.cx.job;
        body_limit(
            &job.name,
            job.listed_size(),
            declared,
            self.target.expected.has_hash(),
        )
    }

    /// A small file from its first byte: the body is gathered in memory (it would sit in the write buffer
    /// anyway), then one trip to the blocking pool creates the part file, writes and syncs it, instead of a
    /// trip for each of those (what `tokio::fs` makes). Whatever arrived is written either way, as a resume
    /// needs; only a complete body is synced.
    async fn fetch_small(
        &mut self,
        download: crate::graph::Download,
        mut hasher: ContentHasher,
    ) -> Result<Option<(ContentDigest, Option<u64>)>, StepError> {
        let (job, target) = (self.cx.job, &self.target);
        let declared = download.total;
        let allowed = self.body_limit(declared);
        let mut body = Vec::with_capacity(usize::try_from(job.size).unwrap_or(0));
        let mut written = 0u64;
        let pumped = stream::pump(
            download.body,
            &mut body,
            (&mut written, allowed),
            |bytes: &[u8]| hasher.update(bytes),
            self.cx.reporter,
            self.cx.cancel,
        )
        .await;
        self.fetched += written;
        let complete = matches!(pumped, Pumped::Ended);
        let stored = {
            let (folder, part) = (Arc::clone(&target.folder), target.part.clone());
            blocking(move || {
                use std::io::Write as _;
                let mut file = folder.create_fresh(&part)?;
                file.write_all(&body)?;
                if complete {
                    file.sync_all()?;
                }
                Ok::<_, std::io::Error>(())
            })
            .await
        };
        let disk = |e: std::io::Error| StepError::Disk(e, target.folder.shown(&target.part));
        stored.map_err(disk)?;
        match pumped {
            Pumped::Ended => Ok(Some((hasher.finish(), declared))),
            Pumped::Cancelled => Ok(None),
            Pumped::TooLong => Err(StepError::TooLong(allowed)),
            Pumped::Network(err) => Err(StepError::Network(err)),
            Pumped::Disk(e) => Err(disk(e)),
        }
    }

    /// Recover from a step that did not bring the whole file, or end the transfer.
    async fn recover(&mut self, err: StepError) -> Next {
        let job = self.cx.job;
        let (folder, part) = (&self.target.folder, self.target.part.as_str());
        match err {
            StepError::UrlExpired(status, host) => {
                // Not a failure: the pre-authenticated URL only lives so long. Resolve a fresh one and go on
                // from what is on disk — unless fresh ones are refused too.
                let now_on_disk = folder.file_len(part).unwrap_or(0);
                if self
                    .source
                    .refused(self.cx.listed, now_on_disk > self.start)
                {
                    return self.fail(urls_refused(job, status, &host));
                }
                self.attempts -= 1;
                self.start = now_on_disk;
                Next::Again
            }
            StepError::Network(err) if stream::worth_resuming(&err) => {
                let Some(delay) = self.resumes.next(self.fetched) else {
                    return self.fail(network_failure(&err));
                };
                tracing::debug!(item = %job.item_id, error = %err, ?delay, "transfer interrupted; resuming");
                if !stream::pause(delay, self.cx.cancel).await {
                    return Next::Finish(TransferOutcome::Interrupted);
                }
                self.start = folder.file_len(part).unwrap_or(0);
                Next::Again
            }
            StepError::Network(err) => self.fail(network_failure(&err)),
            StepError::UrlsRefused(status, host) => self.fail(urls_refused(job, status, &host)),
            StepError::RangesUnsupported => {
                // The host ignores ranges or serves another length than listed: one stream from the start,
                // where the checks of a whole-file fetch (length, caveats) apply.
                tracing::debug!(item = %job.item_id, "ranges cannot be assembled; fetching in one stream");
                self.ranged = false;
                remove_part(folder, part).await;
                self.start = 0;
                Next::Again
            }
            StepError::TooLong(limit) => {
                remove_part(folder, part).await;
                if !self.too_long_before {
                    // Like a wrong hash: one more try from scratch, since a gateway may have sent something else.
                    self.too_long_before = true;
                    self.start = 0;
                    return Next::Again;
                }
                self.fail(TransferFailure::new(
                    FailureClass::SizeMismatch,
                    match job.listed_size() {
                        Some(listed) => {
                            format!("the server sent more than {limit} bytes; the listing says {listed}")
                        }
                        None => format!(
                            "the server sent more than {limit} bytes; the listing gives no size"
                        ),
                    },
                ))
            }
            // A refused range is asked again from the start, once: a 416 to that too (or to a plain GET,
            // which has no range to refuse) would answer the same forever.
            StepError::RangeRefused if self.start > 0 && !self.range_refused_before => {
                self.range_refused_before = true;
                self.start = 0;
                Next::Again
            }
            StepError::RangeRefused => self.fail(
                TransferFailure::new(
                    FailureClass::HttpStatus,
                    "the download host refused the request as out of range (HTTP 416) even from the first byte"
                        .to_owned(),
                )
                .with_status(Some(416)),
            ),
            StepError::Disk(err, path) => self.fail(disk_failure(&err, &path)),
        }
    }

    /// Judge the fetched bytes against the listing: place them under the target's name, fetch again, or fail.
    async fn judge(&mut self, digest: ContentDigest, declared: Option<u64>) -> Next {
        self.source.served(self.cx.listed);
        let job = self.cx.job;
        let earlier = match &self.mismatched {
            None => Earlier::None,
            Some((len, qx)) if *len == digest.len && *qx == digest.quick_xor => Earlier::Same,
            Some(_) => Earlier::Different,
        };
        match judge_listed(job, &self.target.expected, &digest, declared, earlier) {
            Judgement::Keep {
                verification,
                caveat,
            } => {
                let caveat = malware_caveat(job).or(caveat);
                self.place(verification, caveat, digest.len).await
            }
            Judgement::FetchAgain => {
                // Never keep wrong bytes, not even as a part file a later run would resume from.
                remove_part(&self.target.folder, &self.target.part).await;
                self.source.distrust_listing();
                tracing::debug!(item = %job.item_id, "bytes differ from the listing; fetching again");
                self.mismatched = Some((digest.len, digest.quick_xor));
                self.start = 0;
                Next::Again
            }
            Judgement::Fail { class, message } => {
                remove_part(&self.target.folder, &self.target.part).await;
                self.fail(TransferFailure::new(class, message))
            }
        }
    }

    /// Give the verified part file the target's name.
    async fn place(
        &mut self,
        verification: Verification,
        caveat: Option<Caveat>,
        local_size: u64,
    ) -> Next {
        let (job, target) = (self.cx.job, &self.target);
        let placed = {
            let (dest, folder, part, name) = (
                self.cx.dest.clone(),
                Arc::clone(&target.folder),
                target.part.clone(),
                target.name.clone(),
            );
            // Only this item's own earlier version may be replaced: anything else under the name is the
            // user's (or a file odbackup kept), and goes to the trash first.
            let ours = job.written_path.as_deref() == Some(target.local_path.as_str());
            let modified_at = job.modified_at.clone();
            blocking(move || place(&dest, &folder, &part, &name, ours, modified_at.as_deref()))
                .await
        };
        let displaced = match placed {
            Ok(placed) => {
                if let Some(problem) = placed.mtime {
                    problem.report(self.cx.reporter, &target.local_path);
                }
                placed.displaced
            }
            Err(err) => return self.fail(dest_failure(&err)),
        };
        tracing::debug!(item = %job.item_id, path = %job.remote_path, verification = verification.as_stored(), ?caveat, attempts = self.attempts, "file done");
        Next::Finish(TransferOutcome::Done {
            local_path: target.local_path.clone(),
            verification,
            caveat,
            local_size,
            fetched: self.fetched,
            adopted: false,
            attempts: self.attempts,
            displaced,
            by_listing_url: self.source.from_listing,
        })
    }

    /// End the transfer with `failure`, counting the attempts made.
    fn fail(&self, failure: TransferFailure) -> Next {
        Next::Finish(TransferOutcome::Failed(failure.after(self.attempts)))
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

/// [`judge`] the bytes `digest` describes against the listing. A file whose listing gave no usable size is
/// judged by its hash alone (its length is taken as served) and kept with a caveat that says so.
fn judge_listed(
    job: &DownloadJob,
    expected: &Expected,
    digest: &ContentDigest,
    declared: Option<u64>,
    earlier: Earlier,
) -> Judgement {
    if job.size_known {
        return judge(&job.name, &verify(expected, digest), declared, earlier);
    }
    let as_served = Expected {
        size: digest.len,
        ..expected.clone()
    };
    let len = digest.len;
    match judge(&job.name, &verify(&as_served, digest), declared, earlier) {
        Judgement::Keep {
            verification: Verification::SizeOnly,
            ..
        } => Judgement::Keep {
            verification: Verification::SizeOnly,
            caveat: Some(Caveat {
                class: CaveatClass::NoHash,
                reason: format!(
                    "the listing gave neither a usable size nor a hash: kept as served ({len} bytes), unverified"
                ),
            }),
        },
        Judgement::Keep {
            verification,
            caveat,
        } => {
            let reason = format!(
                "the listing gave no usable size: kept as served ({len} bytes), verified by its hash ({})",
                verification.as_stored()
            );
            Judgement::Keep {
                verification,
                caveat: caveat.or(Some(Caveat {
                    class: CaveatClass::SizeMetadata,
                    reason,
                })),
            }
        }
        other => other,
    }
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
) -> Result<Placed, DestError> {
    // The journal goes first: a part file without one is taken whole on a resume, which is what it now is
    // (a kill before the rename then re-verifies it, and nothing is left behind).
    folder
        .remove(&fsdest::journal_name(part))
        .map_err(|e| folder.error(part, e))?;
    let mtime = set_mtime(folder, part, modified_at);
    let mut displaced = None;
    let mut placed = false;
    for _ in 0..4 {
        let there = folder.entry(name).map_err(|e| folder.error(name, e))?;
        let replace = match there {
            None => false,
            Some(entry) if ours && entry.kind == EntryKind::File => true,
            Some(_) => {
                let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
                // Said by whoever records the outcome (`Event::Displaced` and a notice), not here on the
                // blocking pool.
                if let Some(to) = dest.trash_entry(folder, name, &date)? {
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
    Ok(Placed { displaced, mtime })
}

/// What [`place`] did besides giving the file its name, for the caller to report.
pub(super) struct Placed {
    /// Where a local file that was in the way went, relative to the destination.
    pub displaced: Option<String>,
    /// Why the file keeps the time it was written rather than the drive's, if it does.
    pub mtime: Option<MtimeNotSet>,
}

/// Why a file keeps the time it was written rather than the drive's `lastModifiedDateTime`.
#[derive(Debug)]
pub(super) enum MtimeNotSet {
    /// The file system refused the time.
    Refused(std::io::Error),
    /// The listing's date is not RFC 3339.
    Unparsable {
        /// The date as listed.
        date: String,
        /// Why it does not parse.
        error: chrono::ParseError,
    },
}

impl MtimeNotSet {
    /// Tell the user, as a notice about the file at `path` (relative to the destination).
    fn report(&self, reporter: &dyn Reporter, path: &str) {
        let (message, detail) = match self {
            Self::Refused(err) => (
                "could not set the modification time; the file keeps the time it was written"
                    .to_owned(),
                err.to_string(),
            ),
            Self::Unparsable { date, error } => (
                format!(
                    "the drive's modification time {date:?} is not a date; the file keeps the time it was \
                     written"
                ),
                error.to_string(),
            ),
        };
        reporter.event(&Event::Notice {
            kind: NoticeKind::ModifiedTime,
            path: Some(path),
            message: &message,
            detail: Some(&detail),
        });
    }
}

/// The failure a request that ended in `err` leaves.
fn network_failure(err: &crate::graph::GraphError) -> TransferFailure {
    let class = classify(err);
    let failure = TransferFailure::new(class, err.to_string()).with_status(err.status());
    // A refused sign-in fails every transfer alike, and a wait longer than a run waits holds them all: the
    // run stops, with what to do.
    if class == FailureClass::Auth || err.told_to_wait().is_some() {
        failure.stopping_the_run()
    } else {
        failure
    }
}

/// The download host refused fresh URL after fresh URL: a permission problem, not something to loop on.
fn urls_refused(job: &DownloadJob, status: u16, host: &str) -> TransferFailure {
    TransferFailure::new(
        if matches!(status, 404 | 410) {
            FailureClass::NotFound
        } else {
            FailureClass::AccessDenied
        },
        format!(
            "{host} refused {MAX_URL_REFRESHES} fresh download URLs of item {} in a row (HTTP {status})",
            job.item_id
        ),
    )
    .with_status(Some(status))
}

/// A failure met under the destination: a refused path (a link, a folder swapped away) is class `path`, and
/// never stops the run; a disk error is judged by [`disk_failure`].
fn dest_failure(err: &DestError) -> TransferFailure {
    match err {
        DestError::Io { path, source } => disk_failure(source, path),
        refused => TransferFailure::new(FailureClass::Path, refused.to_string()),
    }
}

fn disk_failure(err: &std::io::Error, path: &Path) -> TransferFailure {
    let class = if err.kind() == ErrorKind::InvalidFilename {
        FailureClass::Path
    } else {
        FailureClass::Disk
    };
    let failure = TransferFailure::new(class, format!("{}: {err}", path.display()));
    // A full or read-only disk, or a folder we may not write to, will fail the following transfers too: stop
    // the run, keep what is done, and say where, so the user can fix it and re-run.
    if matches!(
        err.kind(),
        ErrorKind::StorageFull
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::QuotaExceeded
            | ErrorKind::PermissionDenied
    ) {
        failure.stopping_the_run()
    } else {
        failure
    }
}

/// The length and digest of the whole file `name` of `folder`, read back on the blocking pool.
async fn hash_file(
    folder: &Arc<Folder>,
    name: &str,
    with_sha1: bool,
) -> std::io::Result<(u64, ContentDigest)> {
    let (len, hasher) = hash_prefix(folder, name, u64::MAX, with_sha1).await?;
    Ok((len, hasher.finish()))
}

/// Give the file `name` of `folder` the remote `fileSystemInfo.lastModifiedDateTime` (never through a
/// link). Best effort: a date that cannot be set or parsed leaves the download time, and is returned for the
/// caller to report, not failed.
fn set_mtime(folder: &Folder, name: &str, modified_at: Option<&str>) -> Option<MtimeNotSet> {
    let text = modified_at?;
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => folder
            .set_mtime(name, t.timestamp(), t.timestamp_subsec_nanos())
            .err()
            .map(MtimeNotSet::Refused),
        Err(error) => Some(MtimeNotSet::Unparsable {
            date: text.to_owned(),
            error,
        }),
    }
}
