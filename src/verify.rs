//! `odbackup verify`: read every done file (or a random sample) back from the destination and check it against
//! what the manifest recorded when it was written — its length on disk and the hash its bytes were verified by
//! (quickXorHash, else SHA-1; a file kept with a caveat, or listed without a hash, by its length alone).
//!
//! ```text
//!   manifest::verify_rows_after (pages by row id, sampled in SQL) ─► bounded queue ─► N readers:
//!        folder handle (no-follow, as fsdest opens it) ─► open_read (never a link) ─► fstat length
//!        ─► 4 MiB blocks ─► ContentHasher ─► verdict
//!   ─► tallies; with repair: trash what is there (changed, unreadable) ─► manifest::mark_for_refetch
//! ```
//!
//! Hashing runs at GB/s, so reading is the cost: large blocks, read sequentially (the kernel is told so, which
//! doubles its read-ahead), several files at once to keep a disk's queue and the cores busy. Nothing is ever
//! written into the tree: a repair only moves files into the trash (`DEST/.odbackup/trash/<date>/`), as
//! `--mirror-deletes` does, and marks their rows pending so the next run fetches them again.
//!
//! Synchronous (plain threads): the caller runs it on the blocking pool. Knows nothing of HTTP or of the
//! command line.

use std::io::{self, Read as _};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::fsdest::{self, Dest, DestError, Folder};
use crate::hash::{ContentDigest, ContentHasher};
use crate::manifest::{ExpectedContent, Manifest, ManifestError, VerifyRow};
use crate::progress::{Event, Reporter};
use crate::shared::ManifestPages;

/// Files read at once unless the caller says otherwise: enough to keep an SSD's queue and two cores busy,
/// few enough that a spinning disk does not seek between them all the time.
pub const DEFAULT_VERIFY_CONCURRENCY: usize = 4;

/// Bytes read per call: large enough that system-call and hashing overhead vanish, small enough for many
/// readers at once.
const READ_BLOCK: usize = 4 << 20;

/// Manifest rows read per query.
const PAGE: usize = 512;

/// Problems listed one by one in the summary (all are counted, and all are repaired).
pub(crate) const MAX_LISTED_PROBLEMS: usize = 1000;

/// What `verify` does.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check about this percentage of the files, picked at random (each file with this chance), instead of all.
    pub sample_percent: Option<f64>,
    /// Mark what is missing, changed or unreadable as pending (changed and unreadable files go into the trash
    /// first), so the next run fetches it again.
    pub repair: bool,
    /// Files read at once.
    pub concurrency: usize,
}

/// What is wrong with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Nothing is at its path (or its folder is gone).
    Missing,
    /// Something else is there: other bytes (a user's edit, bit rot), another length, a link, a folder.
    Changed,
    /// The file is there but could not be read (permissions, a disk error).
    Unreadable,
}

impl ProblemKind {
    /// The name shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Changed => "changed",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// One file found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// Its path relative to the destination.
    pub path: String,
    /// Its path on the drive.
    pub remote_path: String,
    /// What exactly was found.
    pub reason: String,
    /// With repair: where what was there went in the trash, relative to the destination.
    pub trash: Option<String>,
    /// With repair: whether it is now pending, to be fetched again.
    pub repaired: bool,
}

/// What a verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifySummary {
    /// The percentage sampled, if only a sample was checked.
    pub sample_percent: Option<f64>,
    /// Done files the backup holds on disk.
    pub files_in_backup: u64,
    /// Their bytes.
    pub(crate) bytes_in_backup: u64,
    /// Files checked.
    pub files_checked: u64,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Files whose length and quickXorHash are as recorded.
    pub by_quick_xor: u64,
    /// Files whose length and SHA-1 are as recorded.
    pub by_sha1: u64,
    /// Files checked by length only (kept with a caveat, or listed without a hash: no hash vouches for their
    /// bytes), whose length is as recorded.
    pub by_size_only: u64,
    /// Files missing.
    pub missing: u64,
    /// Files changed.
    pub changed: u64,
    /// Files unreadable.
    pub unreadable: u64,
    /// The first `MAX_LISTED_PROBLEMS` problems.
    pub problems: Vec<Problem>,
    /// Whether problems were to be repaired.
    pub repair: bool,
    /// Problems marked pending (with repair).
    pub repaired: u64,
    /// Files moved into the trash (with repair).
    pub trashed: u64,
    /// Whether a stop signal ended it early.
    pub interrupted: bool,
    /// Whether the check could not be recorded in the manifest (read-only media: no lock could be taken).
    pub unrecorded: bool,
    /// Seconds it took.
    pub elapsed_secs: f64,
}

impl VerifySummary {
    /// Whether every file checked is as recorded and the check ran to its end.
    pub fn all_good(&self) -> bool {
        self.problems_found() == 0 && !self.interrupted
    }

    /// Files found missing, changed or unreadable.
    pub fn problems_found(&self) -> u64 {
        self.missing + self.changed + self.unreadable
    }
}

/// How a file that is as recorded was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckedBy {
    QuickXor,
    Sha1,
    SizeOnly,
}

/// What reading one file found.
#[derive(Debug)]
enum Verdict {
    Good(CheckedBy, u64),
    Bad(ProblemKind, String),
    /// A stop signal came while it was read.
    Stopped,
}

/// Read the done files of `manifest` back from `dest` and check them; with `options.repair`, send the bad ones
/// back to pending.
///
/// # Errors
/// A manifest that cannot be read or written. A file that cannot be read is a finding, not an error.
pub fn verify(
    dest: &Dest,
    manifest: &mut Manifest,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> Result<VerifySummary, ManifestError> {
    let started = Instant::now();
    let totals = manifest.verify_totals()?;
    let mut summary = VerifySummary {
        sample_percent: options.sample_percent,
        repair: options.repair,
        files_in_backup: totals.files,
        bytes_in_backup: totals.bytes,
        ..VerifySummary::default()
    };
    let sample_ppm = options.sample_percent.map(ppm_of);
    if sample_ppm.is_none() {
        reporter.event(&Event::Queued {
            files: totals.files,
            bytes: totals.bytes,
        });
    }
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let workers = options.concurrency.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<VerifyRow>(workers * 2);
    let job_rx = Mutex::new(job_rx);
    let result = std::thread::scope(|scope| {
        let (verdict_tx, verdict_rx) = mpsc::channel::<(VerifyRow, Verdict)>();
        for _ in 0..workers {
            let verdict_tx = verdict_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                let mut reader = Reader::new(dest, reporter, cancel);
                loop {
                    let next = job_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(row) = next else { break };
                    let verdict = reader.check(&row);
                    if verdict_tx.send((row, verdict)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(verdict_tx);
        let mut tally = Tally {
            dest,
            repair: options.repair,
            date: &date,
            reporter,
            summary: &mut summary,
        };
        let fed = (|| {
            let mut pages = ManifestPages::new(PAGE, |m: &Manifest, after, limit| {
                m.verify_rows_after(after, limit, sample_ppm)
            });
            while !cancel.is_cancelled() {
                let Some(rows) = pages.next(manifest)? else {
                    break;
                };
                if sample_ppm.is_some() {
                    reporter.event(&Event::Queued {
                        files: rows.len() as u64,
                        bytes: rows.iter().map(|r| r.size).fold(0, u64::saturating_add),
                    });
                }
                for row in rows {
                    // Take in what is ready before waiting for room in the queue: repairs are written as they come.
                    while let Ok((row, verdict)) = verdict_rx.try_recv() {
                        tally.record(manifest, &row, verdict)?;
                    }
                    if cancel.is_cancelled() || job_tx.send(row).is_err() {
                        break;
                    }
                }
            }
            Ok::<_, ManifestError>(())
        })();
        drop(job_tx);
        // Readers finish what they hold (a stop signal ends their current file at the next block).
        for (row, verdict) in verdict_rx {
            if fed.is_ok() {
                tally.record(manifest, &row, verdict)?;
            }
        }
        fed
    });
    summary.interrupted |= cancel.is_cancelled();
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    result.map(|()| summary)
}

/// A sample percentage as a chance in a million, within 0..=1,000,000.
fn ppm_of(percent: f64) -> u32 {
    let ppm = (percent.clamp(0.0, 100.0) * 10_000.0).round();
    // In range by the clamp.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = ppm as u32;
    ppm
}

/// The main thread's side: counts, the problem list, repairs.
struct Tally<'a> {
    dest: &'a Dest,
    repair: bool,
    date: &'a str,
    reporter: &'a dyn Reporter,
    summary: &'a mut VerifySummary,
}

impl Tally<'_> {
    fn record(
        &mut self,
        manifest: &mut Manifest,
        row: &VerifyRow,
        verdict: Verdict,
    ) -> Result<(), ManifestError> {
        let s = &mut *self.summary;
        let (kind, mut reason) = match verdict {
            Verdict::Stopped => {
                s.interrupted = true;
                return Ok(());
            }
            Verdict::Good(by, bytes) => {
                s.files_checked += 1;
                s.bytes_read += bytes;
                match by {
                    CheckedBy::QuickXor => s.by_quick_xor += 1,
                    CheckedBy::Sha1 => s.by_sha1 += 1,
                    CheckedBy::SizeOnly => s.by_size_only += 1,
                }
                self.reporter.event(&Event::FileDone {
                    path: &row.remote_path,
                    bytes: 0,
                    adopted: false,
                });
                return Ok(());
            }
            Verdict::Bad(kind, reason) => (kind, reason),
        };
        s.files_checked += 1;
        match kind {
            ProblemKind::Missing => s.missing += 1,
            ProblemKind::Changed => s.changed += 1,
            ProblemKind::Unreadable => s.unreadable += 1,
        }
        let mut trash = None;
        let mut repaired = false;
        if self.repair {
            let moved = if kind == ProblemKind::Missing {
                Ok(None)
            } else {
                self.dest.trash(&row.path, self.date)
            };
            match moved {
                Ok(to) => {
                    s.trashed += u64::from(to.is_some());
                    trash = to;
                    repaired = manifest.mark_for_refetch(&row.drive_id, &row.item_id)?;
                    s.repaired += u64::from(repaired);
                }
                Err(err) => {
                    // Never fetched over what could not be moved aside: it stays as it is, and done.
                    reason = format!(
                        "{reason}; could not move it into the trash ({err}), so it is left as it is"
                    );
                }
            }
        }
        self.reporter.event(&Event::FileFailed {
            path: &row.remote_path,
            class: kind.as_str(),
            message: &reason,
        });
        if s.problems.len() < MAX_LISTED_PROBLEMS {
            s.problems.push(Problem {
                kind,
                path: row.path.clone(),
                remote_path: row.remote_path.clone(),
                reason,
                trash,
                repaired,
            });
        }
        Ok(())
    }
}

/// One reader thread: a folder handle kept while rows stay in the same folder, and one block buffer.
struct Reader<'a> {
    dest: &'a Dest,
    reporter: &'a dyn Reporter,
    cancel: &'a CancellationToken,
    folder: Option<(String, Result<Option<Folder>, String>)>,
    block: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn new(dest: &'a Dest, reporter: &'a dyn Reporter, cancel: &'a CancellationToken) -> Self {
        Self {
            dest,
            reporter,
            cancel,
            folder: None,
            block: vec![0; READ_BLOCK],
        }
    }

    fn check(&mut self, row: &VerifyRow) -> Verdict {
        let file = match self.open_checked(row) {
            Ok(file) => file,
            Err(verdict) => return verdict,
        };
        match self.read_digest(file, row) {
            Ok(digest) => judge(row, &digest),
            Err(verdict) => verdict,
        }
    }

    /// The file at `row`'s path, opened through its folder's handle, if it has the length it was written with.
    fn open_checked(&mut self, row: &VerifyRow) -> Result<std::fs::File, Verdict> {
        let (parent, name) = match fsdest::split_item_path(&row.path) {
            Ok(pair) => pair,
            Err(e) => {
                return Err(Verdict::Bad(
                    ProblemKind::Missing,
                    format!("its recorded path is refused: {e}"),
                ));
            }
        };
        if self.folder.as_ref().is_none_or(|(rel, _)| rel != parent) {
            let opened = self
                .dest
                .item_folder(parent)
                .map_err(|e| folder_refused(&e));
            self.folder = Some((parent.to_owned(), opened));
        }
        let folder = match self.folder.as_ref().map(|(_, f)| f) {
            Some(Ok(Some(folder))) => folder,
            Some(Ok(None)) | None => {
                return Err(Verdict::Bad(
                    ProblemKind::Missing,
                    format!(
                        "its folder {} is missing",
                        self.dest.shown(parent).display()
                    ),
                ));
            }
            Some(Err(reason)) => return Err(Verdict::Bad(ProblemKind::Missing, reason.clone())),
        };
        let file = match folder.open_read(name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Verdict::Bad(
                    ProblemKind::Missing,
                    "nothing is at its path".to_owned(),
                ));
            }
            Err(e) => {
                return Err(match folder.entry(name) {
                    Ok(Some(entry)) if entry.kind != fsdest::EntryKind::File => Verdict::Bad(
                        ProblemKind::Changed,
                        format!("{} is at its path now, not the file", what_is(entry.kind)),
                    ),
                    _ => Verdict::Bad(ProblemKind::Unreadable, format!("cannot open it: {e}")),
                });
            }
        };
        let len = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => {
                return Err(Verdict::Bad(
                    ProblemKind::Unreadable,
                    format!("cannot look at it: {e}"),
                ));
            }
        };
        if len != row.size {
            return Err(Verdict::Bad(
                ProblemKind::Changed,
                format!("{len} bytes on disk, {} when it was written", row.size),
            ));
        }
        Ok(file)
    }

    /// `file`'s digest, read to its end (or just past the length it was written with).
    fn read_digest(
        &mut self,
        mut file: std::fs::File,
        row: &VerifyRow,
    ) -> Result<ContentDigest, Verdict> {
        advise_sequential(&file);
        let mut hasher = ContentHasher::new(matches!(row.expected, ExpectedContent::Sha1(_)));
        loop {
            if self.cancel.is_cancelled() {
                return Err(Verdict::Stopped);
            }
            match file.read(&mut self.block) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&self.block[..n]);
                    self.reporter.event(&Event::Bytes(n as u64));
                    if hasher.len() > row.size {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Verdict::Bad(
                        ProblemKind::Unreadable,
                        format!("reading failed after {} bytes: {e}", hasher.len()),
                    ));
                }
            }
        }
        Ok(hasher.finish())
    }
}

/// What `digest`, read from disk, says of the file `row` records.
fn judge(row: &VerifyRow, digest: &ContentDigest) -> Verdict {
    if digest.len != row.size {
        return Verdict::Bad(
            ProblemKind::Changed,
            format!(
                "its length changed while it was read ({} bytes, {} when it was written)",
                digest.len, row.size
            ),
        );
    }
    match &row.expected {
        ExpectedContent::QuickXor(want) if *want != digest.quick_xor => Verdict::Bad(
            ProblemKind::Changed,
            format!(
                "its bytes differ: quickXorHash {} on disk, {want} when it was written",
                digest.quick_xor
            ),
        ),
        ExpectedContent::QuickXor(_) => Verdict::Good(CheckedBy::QuickXor, digest.len),
        ExpectedContent::Sha1(want) => match &digest.sha1 {
            Some(got) if got.eq_ignore_ascii_case(want) => {
                Verdict::Good(CheckedBy::Sha1, digest.len)
            }
            got => Verdict::Bad(
                ProblemKind::Changed,
                format!(
                    "its bytes differ: SHA-1 {} on disk, {want} when it was written",
                    got.as_deref().unwrap_or_default()
                ),
            ),
        },
        ExpectedContent::SizeOnly => Verdict::Good(CheckedBy::SizeOnly, digest.len),
    }
}

/// Why a file's folder could not be reached, for the user.
fn folder_refused(err: &DestError) -> String {
    if let DestError::NotAFolder { at } = err {
        format!(
            "{} is a symbolic link or not a folder now (never followed)",
            at.display()
        )
    } else if err.is_path() {
        format!("its folder cannot be reached: {err}")
    } else {
        format!("its folder cannot be opened: {err}")
    }
}

fn what_is(kind: fsdest::EntryKind) -> &'static str {
    match kind {
        fsdest::EntryKind::Link => "a symbolic link",
        fsdest::EntryKind::Folder => "a folder",
        fsdest::EntryKind::Other => "a special file (FIFO, socket or device)",
        fsdest::EntryKind::File => "another file",
    }
}

/// Tell the kernel the file is read from start to end (Linux doubles its read-ahead for it); a hint only.
fn advise_sequential(file: &std::fs::File) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use super::ppm_of;

    #[test]
    fn sample_percentages_become_chances_in_a_million() {
        assert_eq!(ppm_of(10.0), 100_000);
        assert_eq!(ppm_of(0.5), 5_000);
        assert_eq!(ppm_of(250.0), 1_000_000);
        assert_eq!(ppm_of(-1.0), 0);
    }
}
