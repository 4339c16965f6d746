//! Large files in pieces: which byte spans a file is fetched as, which of them a part file already holds, and
//! the small journal beside the part file that says so across a kill.
//!
//! A ranged transfer pre-sizes its part file and writes each span at its offset, so the part file's length
//! says nothing about what arrived: the journal does. A span is appended to it only after its bytes were
//! written and synced, so a kill at any point leaves a journal that claims nothing the part file lacks. Bytes of
//! a span that was interrupted halfway are not recorded, and that span is fetched again in full (at most
//! `--chunk-size` per stream lost, against a per-byte record that would cost a write per buffer).
//!
//! The planning is pure and unit-tested; the journal is plain text: a header naming the file's size, then one
//! `start end` line per span (end exclusive). A torn last line is ignored.

use std::fmt::Write as _;
use std::io::Read as _;

use tokio::io::AsyncWriteExt as _;

use crate::fsdest::Folder;

/// Bytes per span unless `--chunk-size` says otherwise, and the size from which a file is fetched in spans.
/// Large enough that one request's setup (a TLS handshake, the host's time to first byte) is a small share of
/// its transfer, small enough that a 100 MB video is spread over four streams and a kill loses little.
pub const DEFAULT_CHUNK_SIZE: u64 = 32 * 1024 * 1024;

/// Concurrent Range requests per large file unless `--streams-per-file` says otherwise. Each takes a
/// transfer slot (see `DownloadPolicy::streams_per_file`), so this is a ceiling, not an addition to
/// `--concurrency`; four streams fill a link a single stream leaves idle on a long, lossy path, without
/// looking like a flood to the download host.
pub const DEFAULT_STREAMS_PER_FILE: usize = 4;

/// What the first line of a journal says, before the size.
const HEADER: &str = "odbackup-chunks 1 size=";

/// A byte span `[start, end)` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub(crate) end: u64,
}

/// The largest listed size fetched in spans: the service's own file size limit ("250 GB",
/// <https://support.microsoft.com/en-us/office/restrictions-and-limitations-in-onedrive-and-sharepoint-64883a5d-228e-48f5-b3d2-eb39e07630fa>).
/// A larger size is a listing that cannot be true (say `9223372036854775807`): planning spans for it would ask for
/// terabytes of memory, so such a file comes as one stream, which stops at what arrives.
pub const MAX_RANGED_SIZE: u64 = 250 * 1024 * 1024 * 1024;

/// Whether a file of `size` bytes is fetched in spans: more than one stream allowed, more than one span, and a
/// size the service can hold (see [`MAX_RANGED_SIZE`]).
pub fn is_ranged(size: u64, chunk_size: u64, streams_per_file: usize) -> bool {
    streams_per_file > 1 && chunk_size > 0 && size > chunk_size && size <= MAX_RANGED_SIZE
}

/// The spans of a file of `size` bytes, in order, each `chunk_size` long but the last.
pub fn plan_spans(size: u64, chunk_size: u64) -> Vec<Span> {
    let chunk = chunk_size.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| Span {
            start: i * chunk,
            end: ((i + 1) * chunk).min(size),
        })
        .collect()
}

/// Sorted, with overlapping and touching spans merged.
pub fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans.into_iter().filter(|s| s.end > s.start) {
        match merged.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => merged.push(s),
        }
    }
    merged
}

/// The spans of the plan for `size` and `chunk_size` split in two, in order: those `done` wholly covers (kept: their bytes are read back and
/// hashed from the part file) and the others (fetched again whole). Together they are the plan, each byte in
/// exactly one. `done` may come from another chunk size (a run with other settings) or be one prefix (a part
/// file written in one stream). quickXorHash folds parts of a file together only when they do not overlap, so the bytes of a
/// span only partly done count in the fetched span, never in the kept ones as well.
pub fn split_by_cover(size: u64, chunk_size: u64, done: &[Span]) -> (Vec<Span>, Vec<Span>) {
    let done = merge(done.to_vec());
    plan_spans(size, chunk_size)
        .into_iter()
        .partition(|s| done.iter().any(|d| d.start <= s.start && s.end <= d.end))
}

/// How many bytes from the start `done` covers without a gap: what a one-stream resume can continue from.
pub fn done_prefix(done: &[Span]) -> u64 {
    match merge(done.to_vec()).first() {
        Some(first) if first.start == 0 => first.end,
        _ => 0,
    }
}

/// Parse a journal: the spans it records for a file of `size` bytes; nothing if it was written for another
/// size. Lines that do not parse (a torn last line) and spans beyond the size are ignored.
pub fn parse_journal(text: &str, size: u64) -> Vec<Span> {
    let mut lines = text.lines();
    let header_size = lines
        .next()
        .and_then(|h| h.strip_prefix(HEADER))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if header_size != Some(size) {
        return Vec::new();
    }
    lines
        .filter_map(|line| {
            let (a, b) = line.trim().split_once(' ')?;
            let span = Span {
                start: a.parse().ok()?,
                end: b.parse().ok()?,
            };
            (span.start < span.end && span.end <= size).then_some(span)
        })
        .collect()
}

/// An open journal, appended to as spans complete.
pub struct Journal {
    file: tokio::fs::File,
}

impl Journal {
    /// Start the journal `name` of `folder` for a file of `size` bytes afresh (created exclusively, never
    /// through a link), recording `done` (what is known good already), and sync it: the part file may only be
    /// pre-sized once this is on disk.
    pub async fn create(
        folder: &Folder,
        name: &str,
        size: u64,
        done: &[Span],
    ) -> std::io::Result<Self> {
        let mut text = format!("{HEADER}{size}\n");
        for s in done {
            let _ = writeln!(text, "{} {}", s.start, s.end);
        }
        let mut file = tokio::fs::File::from_std(folder.create_fresh(name)?);
        file.write_all(text.as_bytes()).await?;
        file.sync_all().await?;
        Ok(Self { file })
    }

    /// Record a span whose bytes are written and synced.
    pub async fn record(&mut self, span: Span) -> std::io::Result<()> {
        self.file
            .write_all(format!("{} {}\n", span.start, span.end).as_bytes())
            .await?;
        self.file.sync_data().await
    }
}

/// The spans the journal `name` of `folder` records for a file of `size` bytes whose part file is
/// `part_len` long (a span past the part file's end cannot be there, whatever the journal says). Nothing if
/// there is no journal (or it is not a plain file).
pub fn read_journal(folder: &Folder, name: &str, size: u64, part_len: u64) -> Vec<Span> {
    let mut text = String::new();
    match folder
        .open_read(name)
        .and_then(|mut f| f.read_to_string(&mut text))
    {
        Ok(_) => parse_journal(&text, size)
            .into_iter()
            .filter(|s| s.end <= part_len)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn a_file_is_cut_into_chunk_sized_spans_with_a_short_last_one() {
        assert_eq!(plan_spans(10, 4), vec![s(0, 4), s(4, 8), s(8, 10)]);
        assert_eq!(plan_spans(8, 4), vec![s(0, 4), s(4, 8)]);
        assert_eq!(plan_spans(3, 4), vec![s(0, 3)]);
        assert_eq!(plan_spans(0, 4), vec![]);
        let big = plan_spans(10_000_000, 1 << 20);
        assert_eq!(big.len(), 10);
        assert_eq!(big.iter().map(|s| s.end - s.start).sum::<u64>(), 10_000_000);
        assert!(big.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn only_files_larger_than_a_chunk_with_several_streams_are_ranged() {
        let cases = [
            (10, 4, 4, true),
            (4, 4, 4, false),
            (10, 4, 1, false),
            (10, 0, 4, false),
            (0, 4, 4, false),
            (MAX_RANGED_SIZE, 32 << 20, 4, true),
            // A size no drive can hold: one stream, not 2^38 spans planned.
            (MAX_RANGED_SIZE + 1, 32 << 20, 4, false),
            (i64::MAX as u64, 32 << 20, 4, false),
        ];
        for (size, chunk, streams, want) in cases {
            assert_eq!(
                is_ranged(size, chunk, streams),
                want,
                "{size} {chunk} {streams}"
            );
        }
    }

    #[test]
    fn pending_spans_skip_what_is_wholly_done_whatever_chunk_size_recorded_it() {
        let cases: [(&[Span], Vec<Span>); 6] = [
            (&[], vec![s(0, 4), s(4, 8), s(8, 10)]),
            (&[s(4, 8)], vec![s(0, 4), s(8, 10)]),
            // Recorded with a chunk size of 2: two records make one span of 4.
            (&[s(0, 2), s(2, 4), s(8, 10)], vec![s(4, 8)]),
            // Half a span is not the span.
            (&[s(0, 6)], vec![s(4, 8), s(8, 10)]),
            // A one-stream part file's prefix.
            (&[s(0, 9)], vec![s(8, 10)]),
            (&[s(0, 10)], vec![]),
        ];
        for (done, want) in cases {
            // What is kept and what is fetched cover the file once, with no byte in both.
            let (kept, fetched) = split_by_cover(10, 4, done);
            assert_eq!(fetched, want, "{done:?}");
            let mut all = [kept, fetched].concat();
            all.sort_unstable();
            assert_eq!(all, plan_spans(10, 4), "{done:?}");
        }
    }

    #[test]
    fn the_done_prefix_is_the_gapless_run_from_byte_zero() {
        assert_eq!(done_prefix(&[]), 0);
        assert_eq!(done_prefix(&[s(4, 8)]), 0);
        assert_eq!(done_prefix(&[s(4, 8), s(0, 4), s(10, 12)]), 8);
        assert_eq!(
            merge(vec![s(5, 6), s(0, 2), s(2, 3), s(7, 7)]),
            vec![s(0, 3), s(5, 6)]
        );
    }

    #[test]
    fn a_journal_is_read_back_ignoring_torn_lines_and_other_sizes() {
        let text = format!("{HEADER}10\n0 4\n8 10\n4 9\n12 14\n3 3\n4 ");
        assert_eq!(parse_journal(&text, 10), vec![s(0, 4), s(8, 10), s(4, 9)]);
        assert_eq!(parse_journal(&text, 11), vec![]);
        assert_eq!(parse_journal("", 10), vec![]);
        assert_eq!(parse_journal("garbage\n0 4\n", 10), vec![]);
    }

    #[tokio::test]
    async fn a_journal_written_then_reread_keeps_only_spans_the_part_file_can_hold() {
        let dir = tempfile::tempdir().unwrap();
        let dest = crate::fsdest::Dest::open(dir.path()).unwrap();
        let folder = dest.create_item_folder("f").unwrap();
        let name = crate::fsdest::journal_name(".odbackup-1-2.part");
        assert_eq!(name, ".odbackup-1-2.part.chunks");
        let mut journal = Journal::create(&folder, &name, 10, &[s(0, 4)])
            .await
            .unwrap();
        journal.record(s(8, 10)).await.unwrap();
        drop(journal);
        assert_eq!(
            read_journal(&folder, &name, 10, 10),
            vec![s(0, 4), s(8, 10)]
        );
        assert_eq!(read_journal(&folder, &name, 10, 5), vec![s(0, 4)]);
        assert_eq!(read_journal(&folder, "none", 10, 10), vec![]);
    }
}
