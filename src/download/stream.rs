//! What a transfer in one stream (`transfer.rs`) and a ranged one (`ranged.rs`) share, one level below both:
//! asking for bytes (the known source, or `/content`), sorting the answer, and the loop that moves a body into
//! the part file while it is hashed.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::DownloadPolicy;
use crate::fsdest::Folder;
use crate::graph::{ByteStream, ContentSource, Download, GraphClient, GraphError};
use crate::hash::ContentHasher;
use crate::manifest::DownloadJob;
use crate::progress::{Event, Reporter};

/// Network hiccups in a row (reset, stall, a connection that could not be made) that brought no byte in
/// between, survived per file per run; each one resumes from the bytes already written.
pub(super) const MAX_NETWORK_RETRIES: u32 = 5;
/// Fresh download URLs refused in a row (no byte received in between) before the file is failed: an expiring
/// URL is routine, a host that refuses every new one is a permission problem, not something to loop on.
pub(super) const MAX_URL_REFRESHES: u32 = 4;
/// Write buffer per transfer (per stream of a ranged one).
pub(super) const WRITE_BUFFER: usize = 256 * 1024;

/// Why a fetch step did not bring the whole file.
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
    /// HTTP 416 on a resume: the part file is not a prefix of what is served now; start over.
    RangeRefused,
    /// The request or its body failed.
    Network(GraphError),
    /// The part file (at this path) could not be written.
    Disk(std::io::Error, PathBuf),
}

/// How the hosts answered a request for a file's bytes.
pub(super) enum Answer {
    /// The bytes are coming, from `source` (which later requests for the file use too).
    Body {
        /// Where they came from: the URL `/content` redirected to, or `/content` itself.
        source: ContentSource,
        /// The answer's headers and body.
        download: Download,
    },
    /// The download host refused the pre-authenticated URL (401/403/404/410): a fresh one is needed.
    UrlExpired {
        /// The status it gave.
        status: u16,
        /// The host (never the URL).
        host: String,
    },
    /// HTTP 416: nothing is served from that offset; `total` is the content's size when the host said.
    RangeNotSatisfiable {
        /// From `Content-Range: bytes */total`.
        total: Option<u64>,
    },
    /// Any other failure (after the client's retries).
    Failed(GraphError),
}

/// Ask for bytes `from..=to` (to the end with `None`) of the file of `job`: from `source` when one is known,
/// otherwise through `/content`, which redirects to a download URL or serves the bytes itself.
pub(super) async fn request(
    graph: &GraphClient,
    job: &DownloadJob,
    policy: &DownloadPolicy,
    source: Option<&ContentSource>,
    (from, to): (u64, Option<u64>),
) -> Answer {
    let answered = match source {
        Some(source) => {
            graph
                .fetch(&job.item_id, source, from, to, policy.stall_timeout)
                .await
        }
        None => {
            graph
                .open_content(
                    &job.drive_id,
                    &job.item_id,
                    job.malware && policy.allow_malware,
                    from,
                    to,
                    policy.stall_timeout,
                )
                .await
        }
    };
    match answered {
        Ok((source, download)) => Answer::Body { source, download },
        Err(GraphError::DownloadUrlExpired { status, host }) => Answer::UrlExpired { status, host },
        Err(GraphError::RangeNotSatisfiable { total, .. }) => Answer::RangeNotSatisfiable { total },
        Err(err) => Answer::Failed(err),
    }
}

/// How moving a body into a file ended.
pub(super) enum Pumped {
    /// The body ended (it may still be shorter than wanted: the caller compares).
    Ended,
    /// The transfer was cancelled.
    Cancelled,
    /// The body went on past the bytes allowed.
    TooLong,
    /// The connection failed.
    Network(GraphError),
    /// The file could not be written.
    Disk(std::io::Error),
}

/// Move `body` into `file` (positioned where its bytes go, or a buffer in memory), passing each piece to `hash` once it is written
/// and counting it in `written` and the reporter's byte count; at most `allowed` bytes (counting what
/// `written` already holds). Whatever ended the body, what arrived is flushed, so that a resume goes on from
/// it; a failed flush is a disk error.
pub(super) async fn pump(
    mut body: ByteStream,
    file: &mut (impl tokio::io::AsyncWrite + Unpin + Send),
    (written, allowed): (&mut u64, u64),
    mut hash: impl FnMut(&[u8]) + Send,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> Pumped {
    let mut end = Pumped::Ended;
    loop {
        let chunk = tokio::select! {
            biased;
            () = cancel.cancelled() => { end = Pumped::Cancelled; break; }
            chunk = body.next() => chunk,
        };
        match chunk {
            None => break,
            Some(Ok(bytes)) => {
                if *written + bytes.len() as u64 > allowed {
                    // Longer than can be right: stop before it fills the disk.
                    end = Pumped::TooLong;
                    break;
                }
                if let Err(e) = file.write_all(&bytes).await {
                    end = Pumped::Disk(e);
                    break;
                }
                hash(&bytes);
                *written += bytes.len() as u64;
                reporter.event(&Event::Bytes(bytes.len() as u64));
            }
            Some(Err(err)) => {
                end = Pumped::Network(err);
                break;
            }
        }
    }
    match file.flush().await {
        Ok(()) => end,
        Err(e) => Pumped::Disk(e),
    }
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

/// The budget of one transfer's resumes after network hiccups, shared by all its requests (one stream or
/// many spans) for the whole run, so no mix of answers multiplies it.
///
/// A hiccup after bytes arrived is resumed at once: a connection cut mid-body is routine on long transfers
/// (rclone's `--low-level-retries` exists for the same reason). Hiccups in a row that brought nothing wait
/// longer each time (½ s, 1 s, 2 s, 4 s, jittered) and end the file's run after [`MAX_NETWORK_RETRIES`]: a
/// host that breaks every connection at once is down, and asking it back to back would only add load. And
/// however many bytes each brings, a run allows one resume per MiB received plus ten, so a host that cuts
/// every body after a few bytes cannot keep one file going for ever; the part file stays for the next run.
#[derive(Debug, Default)]
pub(super) struct Resumes {
    /// Hiccups since bytes last arrived.
    in_a_row: u32,
    /// Hiccups in this run.
    total: u64,
    /// Bytes received by the transfer at the last hiccup.
    fetched_then: u64,
}

impl Resumes {
    /// Resumes allowed without regard to bytes received.
    const BASE_ALLOWANCE: u64 = 10;
    /// Bytes that earn one more resume.
    const BYTES_PER_RESUME: u64 = 1 << 20;

    /// Whether the last hiccup brought nothing and no byte has arrived since (the transfer has received
    /// `fetched` bytes): the host is being probed, by one request at a time.
    pub(super) fn probing(&self, fetched: u64) -> bool {
        self.in_a_row > 0 && fetched == self.fetched_then
    }

    /// Note a hiccup of a transfer that has received `fetched` bytes in this run so far: how long to wait
    /// before resuming, or `None` when its budget is spent.
    pub(super) fn next(&mut self, fetched: u64) -> Option<std::time::Duration> {
        if fetched > self.fetched_then {
            self.in_a_row = 0;
        }
        self.fetched_then = fetched;
        self.in_a_row += 1;
        self.total += 1;
        let allowance = Self::BASE_ALLOWANCE + fetched / Self::BYTES_PER_RESUME;
        if self.in_a_row > MAX_NETWORK_RETRIES || self.total > allowance {
            return None;
        }
        Some(match self.in_a_row {
            1 => std::time::Duration::ZERO,
            n => {
                let ceiling = std::time::Duration::from_millis(250 << (n - 1).min(5));
                ceiling.mul_f64(0.5 + 0.5 * rand::random::<f64>())
            }
        })
    }
}

/// Wait `delay` unless `cancel` fires first; whether the wait ran out.
pub(super) async fn pause(delay: std::time::Duration, cancel: &CancellationToken) -> bool {
    if delay.is_zero() {
        return true;
    }
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Run blocking file-system work (a handful of system calls, an fsync) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
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
    blocking(move || {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_first_hiccup_resumes_at_once_and_fruitless_ones_wait_longer_each_time() {
        let mut resumes = Resumes::default();
        assert_eq!(resumes.next(0), Some(Duration::ZERO));
        assert!(resumes.probing(0));
        let mut previous_ceiling = Duration::ZERO;
        for n in 2..=MAX_NETWORK_RETRIES {
            let delay = resumes.next(0).expect("still within the budget");
            let ceiling = Duration::from_millis(250 << (n - 1));
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "hiccup {n} waited {delay:?}"
            );
            assert!(ceiling > previous_ceiling);
            previous_ceiling = ceiling;
        }
        assert_eq!(
            resumes.next(0),
            None,
            "the sixth fruitless hiccup in a row ends the run"
        );
    }

    #[test]
    fn bytes_between_hiccups_restart_the_count_in_a_row() {
        let mut resumes = Resumes::default();
        for _ in 0..MAX_NETWORK_RETRIES {
            assert!(resumes.next(0).is_some());
        }
        assert_eq!(
            resumes.next(1),
            Some(Duration::ZERO),
            "bytes arrived since: resume at once"
        );
        assert!(!resumes.probing(2), "bytes arrived after the hiccup");
    }

    #[test]
    fn a_host_that_cuts_every_body_after_a_few_bytes_is_allowed_a_bounded_number_of_resumes() {
        let mut resumes = Resumes::default();
        let mut fetched = 0;
        let mut allowed = 0;
        while resumes.next(fetched).is_some() {
            fetched += 1_000;
            allowed += 1;
            assert!(allowed < 100, "no end to the resumes");
        }
        assert_eq!(allowed, Resumes::BASE_ALLOWANCE);

        let mut resumes = Resumes::default();
        let mut fetched = 0;
        for cut in 0..1_000 {
            assert!(
                resumes.next(fetched).is_some(),
                "cut {cut} after 4 MiB each was refused"
            );
            fetched += 4 << 20;
        }
    }
}
