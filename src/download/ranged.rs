//! One large file as concurrent `Range: bytes=a-b` requests, each written at its offset into the pre-sized
//! part file. The caller (`transfer.rs`) then verifies the whole file and renames it, as for a file
//! fetched in one stream, so crash safety still comes from write order: nothing reaches the final name before
//! it is complete and verified, and the journal (`chunks.rs`) lets a resumed run skip the spans it holds.
//!
//! **One Graph call per file.** Every span uses the same source: the listing's pre-authenticated URL, or
//! what the first span's `/content` request found (the URL it redirected to, or `/content` itself on a tenant
//! that serves the bytes without a redirect). Until that first answer, no other span starts. When the
//! download host refuses the URL, the first refusal sends the next span through `/content` again, and the
//! refused spans, like any refused with the old URL, go on with what it found.
//!
//! **Streams are transfers.** The file's own slot runs the first stream. Each further stream takes another
//! slot of the downloader's limit, only if one is free right now (it never waits for one, and never jumps the
//! queue ahead of the scheduler waiting for a slot), and gives it back when its span ends. So `--concurrency`
//! bounds connections to the download host whatever the mix of files, and a file that finds no free slot is
//! fetched one span after another, which is still resumable span by span.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::io::AsyncSeekExt as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::DownloadPolicy;
use super::chunks::{self, Journal, Span};
use super::stream::{
    self, Answer, MAX_URL_REFRESHES, Pumped, Resumes, StepError, WRITE_BUFFER, blocking,
    hash_prefix,
};
use crate::adaptive::AdaptiveLimit;
use crate::fsdest::{self, Folder};
use crate::graph::{ContentSource, GraphClient, GraphError};
use crate::hash::{ContentDigest, QuickXorHash};
use crate::manifest::DownloadJob;
use crate::progress::Reporter;

/// What a ranged fetch works with.
pub(super) struct Ranged<'a> {
    pub graph: &'a GraphClient,
    pub(crate) job: &'a DownloadJob,
    pub policy: &'a DownloadPolicy,
    /// The target's folder, held open: the part file and its journal are its entries.
    pub folder: &'a Arc<Folder>,
    /// The part file's name.
    pub(crate) part: &'a str,
    pub(crate) with_sha1: bool,
    pub(crate) reporter: &'a dyn Reporter,
    pub(crate) cancel: &'a CancellationToken,
    /// The downloader's transfer limit, which further streams take slots from (`None`: no limit).
    pub(crate) slots: Option<&'a AdaptiveLimit>,
}

/// The rest of one span still to fetch.
#[derive(Debug, Clone, Copy)]
struct Work {
    span: Span,
    from: u64,
}

/// How one request for a span ended.
enum SpanEnd {
    Done,
    Cancelled,
    /// The host refused the URL of this generation.
    Expired {
        generation: u64,
        status: u16,
        host: String,
    },
    Network(GraphError),
    /// The host ignored the Range, or serves another length than listed: spans cannot be assembled.
    NoRanges,
    Disk(std::io::Error),
}

struct SpanResult {
    work: Work,
    /// The source generation the span was sent with.
    generation: u64,
    /// How many hiccups the transfer had noted when the span was sent.
    hiccups_before: u64,
    /// Where the bytes came from, when the request was answered with them.
    source: Option<ContentSource>,
    written: u64,
    /// quickXorHash of the `written` bytes from `work.from` on, hashed as they were written.
    hash: QuickXorHash,
    end: SpanEnd,
}

/// A further stream's slot in the downloader's limit, given back when the stream ends.
struct Slot<'a> {
    limit: &'a AdaptiveLimit,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            // Not a success signal for the adaptive limit: only a whole file counts as one.
            self.limit.release(permit, false);
        }
    }
}

impl Ranged<'_> {
    /// Bring the part file to completion span by span, several at once; then hash it whole. The digest and
    /// the size the host declared, or `Ok(None)` when cancelled.
    #[allow(clippy::too_many_lines)] // one loop that launches spans and folds in their ends over shared counters
    pub(super) async fn fetch(
        &self,
        url: &mut Option<ContentSource>,
        fetched: &mut u64,
        resumes: &mut Resumes,
    ) -> Result<Option<(ContentDigest, Option<u64>)>, StepError> {
        let size = self.job.size;
        let (folder, part) = (self.folder, self.part);
        let disk = |e: std::io::Error| StepError::Disk(e, folder.shown(part));
        // (The caller removed anything but plain files under both names: a planted link is never followed.)
        let journal_name = fsdest::journal_name(part);
        let part_len = folder.file_len(part).unwrap_or(0);
        let done = if folder.file_len(&journal_name).is_some() {
            chunks::read_journal(folder, &journal_name, size, part_len)
        } else if part_len > 0 && part_len <= size {
            // A part file written in one stream (an earlier run with other settings): its prefix is good.
            vec![Span {
                start: 0,
                end: part_len,
            }]
        } else {
            Vec::new()
        };
        let done = chunks::merge(done);
        // The journal first, then the part file's new length: a kill in between leaves a journal that claims
        // only bytes that are there.
        let mut journal = Journal::create(folder, &journal_name, size, &done)
            .await
            .map_err(|e| StepError::Disk(e, folder.shown(&journal_name)))?;
        // What the journal vouches for is kept; with nothing vouched for, the part file starts afresh,
        // created exclusively.
        let opened = if done.is_empty() {
            folder.create_fresh(part)
        } else {
            folder.open_write(part)
        };
        let opened = opened.map_err(disk)?;
        let identity = opened.try_clone().map_err(disk)?;
        let file = tokio::fs::File::from_std(opened);
        file.set_len(size).await.map_err(disk)?;
        // Only the spans `done` wholly covers are read back for the hash at the end: a span it covers in part
        // is fetched again whole, and its bytes must count once.
        let (kept, to_fetch) = chunks::split_by_cover(size, self.policy.chunk_size, &done);
        let mut pending: VecDeque<Work> = to_fetch
            .into_iter()
            .map(|span| Work {
                span,
                from: span.start,
            })
            .collect();
        tracing::debug!(item = %self.job.item_id, spans_left = pending.len(), spans_done = done.len(), "ranged transfer");

        let stop = self.cancel.child_token();
        let streams = self.policy.streams_per_file.max(1);
        let mut generation = 0u64;
        // After a hiccup that brought nothing, no span starts before this.
        let mut resume_at: Option<tokio::time::Instant> = None;
        // Hiccups noted so far: spans sent before the last one that break too are the same event, and do
        // not spend the budget again.
        let mut hiccups = 0u64;
        let mut refusals_in_a_row = 0u32;
        let mut failure: Option<StepError> = None;
        // A span sent without a source asks `/content`; until it answers, no other span starts.
        let mut resolving = false;
        // The parts fetched in this run, hashed as they arrive and folded together: only bytes an earlier run
        // wrote are read back (unless SHA-1 is wanted too, which needs the file in order).
        let mut hashed_here = QuickXorHash::new();
        let mut inflight = FuturesUnordered::new();
        loop {
            if resume_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
                resume_at = None;
            }
            while failure.is_none()
                && !stop.is_cancelled()
                && resume_at.is_none()
                && inflight.len()
                    < if resumes.probing(*fetched) {
                        1
                    } else {
                        streams
                    }
            {
                let Some(&work) = pending.front() else { break };
                if url.is_none() && resolving {
                    break;
                }
                let slot = match (inflight.is_empty(), self.slots) {
                    // The file's own slot runs the first stream.
                    (true, _) | (false, None) => None,
                    (false, Some(limit)) => match limit.acquire().now_or_never() {
                        Some(permit) => Some(Slot {
                            limit,
                            permit: Some(permit),
                        }),
                        None => break,
                    },
                };
                pending.pop_front();
                let current = url.clone();
                resolving |= current.is_none();
                inflight.push(self.fetch_span(
                    current,
                    (generation, hiccups),
                    work,
                    stop.clone(),
                    slot,
                    &identity,
                ));
            }
            let next = match resume_at {
                // Waiting out a backoff: the spans still in flight go on meanwhile.
                Some(at) if failure.is_none() => tokio::select! {
                    () = stop.cancelled() => None,
                    () = tokio::time::sleep_until(at) => continue,
                    next = inflight.next(), if !inflight.is_empty() => next,
                },
                _ => inflight.next().await,
            };
            let Some(result) = next else {
                break;
            };
            if result.generation == generation && url.is_none() {
                resolving = false;
                url.clone_from(&result.source);
            }
            *fetched += result.written;
            hashed_here.absorb(&result.hash);
            if result.written > 0 {
                refusals_in_a_row = 0;
            }
            let rest = Work {
                span: result.work.span,
                from: result.work.from + result.written,
            };
            match result.end {
                SpanEnd::Done => {
                    // Synced before it is recorded: the journal never claims bytes a crash could lose.
                    let recorded = match file.sync_data().await {
                        Ok(()) => journal.record(rest.span).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = recorded {
                        failure.get_or_insert(disk(e));
                        stop.cancel();
                    }
                }
                SpanEnd::Cancelled => pending.push_front(rest),
                SpanEnd::Expired {
                    generation: g,
                    status,
                    host,
                } => {
                    pending.push_front(rest);
                    // Spans that were sent the old URL come back refused too: only the first one counts, and
                    // the next span asks `/content` again.
                    if g == generation && failure.is_none() {
                        refusals_in_a_row += 1;
                        if refusals_in_a_row > MAX_URL_REFRESHES {
                            failure = Some(StepError::UrlsRefused(status, host));
                            stop.cancel();
                        } else {
                            *url = None;
                            resolving = false;
                            generation += 1;
                        }
                    }
                }
                SpanEnd::Network(err) if stream::worth_resuming(&err) => {
                    pending.push_front(rest);
                    if failure.is_none() && result.hiccups_before == hiccups {
                        hiccups += 1;
                        if let Some(delay) = resumes.next(*fetched) {
                            tracing::debug!(item = %self.job.item_id, error = %err, ?delay, "span interrupted; resuming it");
                            if !delay.is_zero() {
                                let at = tokio::time::Instant::now() + delay;
                                resume_at = Some(resume_at.map_or(at, |t| t.max(at)));
                            }
                        } else {
                            failure = Some(StepError::Network(err));
                            stop.cancel();
                        }
                    }
                }
                SpanEnd::Network(err) => {
                    failure.get_or_insert(StepError::Network(err));
                    stop.cancel();
                }
                SpanEnd::NoRanges => {
                    failure.get_or_insert(StepError::RangesUnsupported);
                    stop.cancel();
                }
                SpanEnd::Disk(e) => {
                    failure.get_or_insert(disk(e));
                    stop.cancel();
                }
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        if self.cancel.is_cancelled() || !pending.is_empty() {
            return Ok(None);
        }
        drop(journal);
        file.sync_all().await.map_err(disk)?;
        if self.with_sha1 {
            let (_, hasher) = hash_prefix(folder, part, u64::MAX, true)
                .await
                .map_err(disk)?;
            return Ok(Some((hasher.finish(), Some(size))));
        }
        let mut whole = hash_spans(folder, part, kept).await.map_err(disk)?;
        whole.absorb(&hashed_here);
        let digest = ContentDigest {
            len: whole.len(),
            quick_xor: whole.finalize_base64(),
            sha1: None,
        };
        Ok(Some((digest, Some(size))))
    }

    async fn fetch_span(
        &self,
        source: Option<ContentSource>,
        (generation, hiccups_before): (u64, u64),
        work: Work,
        stop: CancellationToken,
        slot: Option<Slot<'_>>,
        part_file: &std::fs::File,
    ) -> SpanResult {
        let mut written = 0u64;
        let mut hash = QuickXorHash::starting_at(work.from);
        let mut served_by = None;
        let end = self
            .write_span(
                source.as_ref(),
                generation,
                work,
                &stop,
                (&mut written, &mut hash),
                &mut served_by,
                part_file,
            )
            .await;
        drop(slot);
        SpanResult {
            work,
            generation,
            hiccups_before,
            source: served_by,
            written,
            hash,
            end,
        }
    }

    #[allow(clippy::too_many_arguments, clippy::too_many_lines)] // request, checks, reopen, pump: one span in order
    async fn write_span(
        &self,
        source: Option<&ContentSource>,
        generation: u64,
        work: Work,
        stop: &CancellationToken,
        (written, hash): (&mut u64, &mut QuickXorHash),
        served_by: &mut Option<ContentSource>,
        part_file: &std::fs::File,
    ) -> SpanEnd {
        let request = stream::request(
            self.graph,
            self.job,
            self.policy,
            source,
            (work.from, Some(work.span.end - 1)),
        );
        let answered = tokio::select! {
            biased;
            () = stop.cancelled() => return SpanEnd::Cancelled,
            answered = request => answered,
        };
        let response = match answered {
            Answer::Body { source, download } => {
                *served_by = Some(source);
                download
            }
            Answer::UrlExpired { status, host } => {
                return SpanEnd::Expired {
                    generation,
                    status,
                    host,
                };
            }
            Answer::RangeNotSatisfiable { .. } => return SpanEnd::NoRanges,
            Answer::Failed(err) => return SpanEnd::Network(err),
        };
        if !response.partial || response.start != work.from || response.total != Some(self.job.size)
        {
            return SpanEnd::NoRanges;
        }
        // Each span writes through its own descriptor (its own offset), opened in the held folder and
        // checked to be the very part file this transfer created: a file swapped in under the name is not
        // written to.
        let reopened = {
            let (folder, part) = (Arc::clone(self.folder), self.part.to_owned());
            let original = match part_file.try_clone() {
                Ok(f) => f,
                Err(e) => return SpanEnd::Disk(e),
            };
            blocking(move || {
                let file = folder.open_write(&part)?;
                if same_file(&file, &original) {
                    Ok(file)
                } else {
                    Err(std::io::Error::other(
                        "the part file was replaced while it was written",
                    ))
                }
            })
            .await
        };
        let file = match reopened {
            Ok(f) => tokio::fs::File::from_std(f),
            Err(e) => return SpanEnd::Disk(e),
        };
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        if let Err(e) = file
            .get_mut()
            .seek(std::io::SeekFrom::Start(work.from))
            .await
        {
            return SpanEnd::Disk(e);
        }
        let wanted = work.span.end - work.from;
        let end = match stream::pump(
            response.body,
            &mut file,
            (&mut *written, wanted),
            |bytes: &[u8]| hash.update(bytes),
            self.reporter,
            stop,
        )
        .await
        {
            Pumped::Ended => SpanEnd::Done,
            Pumped::Cancelled => SpanEnd::Cancelled,
            Pumped::TooLong => SpanEnd::NoRanges,
            Pumped::Network(err) => SpanEnd::Network(err),
            Pumped::Disk(e) => {
                // What arrived is kept either way, but a failed write or flush leaves it unknown.
                *written = 0;
                *hash = QuickXorHash::starting_at(work.from);
                return SpanEnd::Disk(e);
            }
        };
        if matches!(end, SpanEnd::Done) && *written < wanted {
            return SpanEnd::Network(GraphError::Network {
                what: format!("downloading item {}", self.job.item_id),
                reason: format!("the body ended after {} of {wanted} bytes", *written),
            });
        }
        end
    }
}

/// Whether two open files are the same file (device and inode).
fn same_file(a: &std::fs::File, b: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// quickXorHash of `spans` of the file `name` of `folder` (bytes an earlier run wrote), read back and folded
/// together.
async fn hash_spans(
    folder: &Arc<Folder>,
    name: &str,
    spans: Vec<Span>,
) -> std::io::Result<QuickXorHash> {
    let (folder, name) = (Arc::clone(folder), name.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let mut whole = QuickXorHash::new();
        if spans.is_empty() {
            return Ok(whole);
        }
        let mut file = folder.open_read(&name)?;
        let mut buf = vec![0u8; 1 << 20];
        for span in spans {
            file.seek(std::io::SeekFrom::Start(span.start))?;
            let mut part = QuickXorHash::starting_at(span.start);
            let mut left = span.end - span.start;
            while left > 0 {
                let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the part file is shorter than its journal says",
                    ));
                }
                part.update(&buf[..n]);
                left -= n as u64;
            }
            whole.absorb(&part);
        }
        Ok(whole)
    })
    .await
    .map_err(std::io::Error::other)?
}
