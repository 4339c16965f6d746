//! Read-only reports over the manifest: counts for `status`, the list for `failures`. `Serialize`, so the
//! command line can print them as `--json` or as a table.
//!
//! Knows nothing of terminals: it returns values, and the command line prints them.

use serde::Serialize;

use super::items::{SUM_SIZE, to_u64};
use super::runs::RunRecord;
use super::{Manifest, Result};

/// Counts of one kind of item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateCounts {
    /// Rows in state `pending`.
    pub pending: u64,
    /// Rows in state `done`.
    pub done: u64,
    /// Rows in state `failed`.
    pub failed: u64,
    /// Rows in state `skipped`.
    pub skipped: u64,
    /// All rows.
    pub total: u64,
}

/// Bytes of files by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ByteCounts {
    /// Bytes still to fetch.
    pub pending: u64,
    /// Bytes on disk and verified.
    pub done: u64,
    /// Bytes of failed files.
    pub failed: u64,
    /// Bytes of skipped files.
    pub skipped: u64,
    /// All file bytes.
    pub total: u64,
}

/// A labelled count.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// The label (a reason, a class, a method).
    pub key: String,
    /// How many.
    pub count: u64,
}

/// Rows of one kind in one state, with their listed bytes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindStateCount {
    /// `file`, `folder`, `package`, `remote` or `other`.
    pub kind: String,
    /// `pending`, `done`, `failed` or `skipped`.
    pub(crate) state: String,
    /// How many rows.
    pub count: u64,
    /// Their listed sizes added up (a folder's size is its descendants', so only files' bytes mean much).
    pub bytes: u64,
}

/// Files the filters leave out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExcludedCounts {
    /// How many.
    pub files: u64,
    /// Their listed bytes.
    pub bytes: u64,
    /// Of those, how many were downloaded by an earlier run (kept on disk).
    pub on_disk: u64,
    /// By reason (`extension not in the ext list`, …).
    pub by_reason: Vec<Count>,
}

/// What `status` shows: wanted items only, except in `excluded`. Items flagged as deleted remotely are counted only in `remote_deleted`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The manifest file.
    pub manifest: String,
    /// Folder rows by state (`done` = listed).
    pub folders: StateCounts,
    /// File rows by state.
    pub files: StateCounts,
    /// File bytes by state.
    pub bytes: ByteCounts,
    /// Every (kind, state) pair with its count and bytes, packages and remote items included.
    pub(crate) by_kind: Vec<KindStateCount>,
    /// Items not downloaded, by reason (packages, remote items, refused folders…).
    pub skipped_by_reason: Vec<Count>,
    /// Failed files by class.
    pub failed_by_class: Vec<Count>,
    /// Done files by how they were verified (`quickxor`, `sha1`, `size_only` = unverified).
    pub verified_by: Vec<Count>,
    /// Done files kept with a caveat (a known service quirk explains why they differ from the listing), by class.
    pub accepted_by_caveat: Vec<Count>,
    /// Items gone from the drive (kept locally).
    pub remote_deleted: u64,
    /// Files the filters of the last run leave out (not in the counts above).
    pub excluded: ExcludedCounts,
    /// Crawls that finished.
    pub(crate) crawls_complete: u64,
    /// Crawls interrupted and not yet resumed to the end.
    pub crawls_incomplete: u64,
    /// The latest run.
    pub last_run: Option<RunRecord>,
    /// Per crawl scope: when its last incremental round was applied and how many changes it brought.
    pub incremental: Vec<IncrementalStatus>,
    /// Per place restored to: entries put back, left and failed.
    pub restores: Vec<super::restore::RestoreStatus>,
    /// The latest `verify` of the files on disk, with what it found.
    pub last_verify: Option<RunRecord>,
    /// `OneNote` notebooks backed up (as folders of their section files).
    pub notebooks: u64,
    /// Section files of those notebooks on disk (their section groups' included).
    pub notebook_files_done: u64,
    /// Shared folders and files added to My files: shortcuts followed and not, and their files on disk.
    pub shared: super::SharedCounts,
    /// Files stored once (`--dedupe hardlink`): done files that are hard links of a copy with the same
    /// content, and the bytes separate copies would take.
    pub deduplicated: super::DedupeCounts,
}

/// The incremental state of one crawl scope.
#[derive(Debug, Clone, Serialize)]
pub struct IncrementalStatus {
    /// `root`, `path:/Pictures`, `special:cameraroll`.
    pub scope: String,
    /// Whether the next run can ask for changes only (a delta link is stored).
    pub ready: bool,
    /// When the last incremental round was applied.
    pub last_applied_at: Option<String>,
    /// How many changes it applied.
    pub last_changes: Option<u64>,
}

/// One failed file, for `failures`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// Its remote path.
    pub remote_path: String,
    /// Its item ID.
    pub(crate) item_id: String,
    /// The failure class.
    pub class: String,
    /// The HTTP status, if any.
    pub http_status: Option<u16>,
    /// What happened.
    pub message: String,
    /// Attempts over all runs.
    pub attempts: u32,
    /// When it last failed.
    pub(crate) failed_at: Option<String>,
    /// `backup` (a download) or `restore` (an upload).
    pub(crate) operation: &'static str,
    /// For a restore: the local file, relative to the folder restored from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl StatusReport {
    /// The report of a manifest that holds nothing yet: a first run has only just created it.
    pub(crate) fn empty(manifest: String) -> Self {
        Self {
            manifest,
            folders: StateCounts::default(),
            files: StateCounts::default(),
            bytes: ByteCounts::default(),
            by_kind: Vec::new(),
            skipped_by_reason: Vec::new(),
            failed_by_class: Vec::new(),
            verified_by: Vec::new(),
            accepted_by_caveat: Vec::new(),
            remote_deleted: 0,
            excluded: ExcludedCounts::default(),
            crawls_complete: 0,
            crawls_incomplete: 0,
            last_run: None,
            incremental: Vec::new(),
            restores: Vec::new(),
            last_verify: None,
            notebooks: 0,
            notebook_files_done: 0,
            shared: super::SharedCounts::default(),
            deduplicated: super::DedupeCounts::default(),
        }
    }
}

impl Manifest {
    /// Counts for `status`: items by kind and state (with bytes), skipped by reason, failed by class, done
    /// by verification, remote deletions, crawls complete and not, and the last run.
    #[allow(clippy::too_many_lines)] // one read transaction gathering each count of the status report in turn
    pub fn status(&self) -> Result<StatusReport> {
        let mut folders = StateCounts::default();
        let mut files = StateCounts::default();
        let mut bytes = ByteCounts::default();
        let mut by_kind = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    &format!("SELECT kind, state, count(*), {SUM_SIZE} FROM items WHERE remote_deleted = 0
                     AND (excluded IS NULL OR kind = 'folder') GROUP BY kind, state ORDER BY kind, state"),
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (kind, state, count, size) = row.map_err(|e| self.err(e))?;
                let (count, size) = (to_u64(Some(count)), to_u64(Some(size)));
                by_kind.push(KindStateCount {
                    kind: kind.clone(),
                    state: state.clone(),
                    count,
                    bytes: size,
                });
                let target = match kind.as_str() {
                    "folder" => &mut folders,
                    "file" => &mut files,
                    // Packages, remote items and others are always skipped; they show in skipped_by_reason.
                    _ => continue,
                };
                target.total += count;
                match state.as_str() {
                    "pending" => target.pending += count,
                    "done" => target.done += count,
                    "failed" => target.failed += count,
                    _ => target.skipped += count,
                }
                if kind == "file" {
                    bytes.total = bytes.total.saturating_add(size);
                    match state.as_str() {
                        "pending" => bytes.pending = bytes.pending.saturating_add(size),
                        "done" => bytes.done = bytes.done.saturating_add(size),
                        "failed" => bytes.failed = bytes.failed.saturating_add(size),
                        _ => bytes.skipped = bytes.skipped.saturating_add(size),
                    }
                }
            }
        }
        let skipped_by_reason = self.counts(
            "SELECT coalesce(skip_reason, kind), count(*) FROM items WHERE state = 'skipped' AND remote_deleted = 0
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )?;
        let failed_by_class = self.counts(
            "SELECT coalesce(error_class, 'other'), count(*) FROM items WHERE state = 'failed' AND remote_deleted = 0
             AND excluded IS NULL GROUP BY 1 ORDER BY 2 DESC, 1",
        )?;
        let excluded = self.excluded_counts()?;
        let accepted_by_caveat = self.counts(
            "SELECT caveat_class, count(*) FROM items WHERE state = 'done' AND caveat_class IS NOT NULL
             AND remote_deleted = 0 GROUP BY 1 ORDER BY 2 DESC, 1",
        )?;
        let verified_by = self.counts(
            "SELECT coalesce(verification, 'unknown'), count(*) FROM items WHERE state = 'done' AND kind = 'file'
             AND remote_deleted = 0 GROUP BY 1 ORDER BY 2 DESC, 1",
        )?;
        let one = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map(|n| to_u64(Some(n)))
                .map_err(|e| self.err(e))
        };
        let notebooks = self.notebook_counts()?;
        Ok(StatusReport {
            manifest: self.path.display().to_string(),
            folders,
            files,
            bytes,
            by_kind,
            skipped_by_reason,
            failed_by_class,
            verified_by,
            accepted_by_caveat,
            remote_deleted: one("SELECT count(*) FROM items WHERE remote_deleted = 1")?,
            excluded,
            crawls_complete: one("SELECT count(*) FROM crawls WHERE completed_at IS NOT NULL")?,
            crawls_incomplete: one("SELECT count(*) FROM crawls WHERE completed_at IS NULL")?,
            last_run: self.last_run()?,
            incremental: self.incremental_status()?,
            restores: self.restore_status()?,
            last_verify: self.last_run_of("verify")?,
            notebooks: notebooks.notebooks,
            notebook_files_done: notebooks.section_files_done,
            shared: self.shared_counts()?,
            deduplicated: self.dedupe_counts()?,
        })
    }

    /// Files the filters leave out, with their bytes and reasons.
    pub(crate) fn excluded_counts(&self) -> Result<ExcludedCounts> {
        let (files, bytes, on_disk) = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*), {SUM_SIZE}, coalesce(sum(state = 'done'), 0) FROM items
                 WHERE kind = 'file' AND excluded IS NOT NULL AND remote_deleted = 0"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err(e))?;
        Ok(ExcludedCounts {
            files: to_u64(Some(files)),
            bytes: to_u64(Some(bytes)),
            on_disk: to_u64(Some(on_disk)),
            by_reason: self.counts(
                "SELECT excluded, count(*) FROM items WHERE kind = 'file' AND excluded IS NOT NULL
                 AND remote_deleted = 0 GROUP BY 1 ORDER BY 2 DESC, 1",
            )?,
        })
    }

    fn incremental_status(&self) -> Result<Vec<IncrementalStatus>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT scope_key, delta_link IS NOT NULL, last_applied_at, last_changes FROM delta_state
                 ORDER BY scope_key",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(IncrementalStatus {
                scope: r.get(0)?,
                ready: r.get(1)?,
                last_applied_at: r.get(2)?,
                last_changes: r.get::<_, Option<i64>>(3)?.map(|n| to_u64(Some(n))),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    fn counts(&self, sql: &str) -> Result<Vec<Count>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;

        stmt.query_map([], |r| {
            Ok(Count {
                key: r.get(0)?,
                count: to_u64(r.get(1)?),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Every failed file the filters still want, most recent first.
    pub fn failures(&self) -> Result<Vec<FailureRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT remote_path, item_id, coalesce(error_class, 'other'), http_status, coalesce(error_message, ''),
                        attempts, failed_at
                 FROM items WHERE state = 'failed' AND remote_deleted = 0 AND excluded IS NULL
                 ORDER BY failed_at DESC, remote_path",
            )
            .map_err(|e| self.err(e))?;

        stmt.query_map([], |r| {
            Ok(FailureRow {
                remote_path: r.get(0)?,
                item_id: r.get(1)?,
                class: r.get(2)?,
                http_status: r
                    .get::<_, Option<i64>>(3)?
                    .and_then(|s| u16::try_from(s).ok()),
                message: r.get(4)?,
                attempts: u32::try_from(to_u64(r.get(5)?)).unwrap_or(u32::MAX),
                failed_at: r.get(6)?,
                operation: "backup",
                source: None,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ItemId;
    use crate::manifest::testutil::{drive, file, folder, manifest};
    use crate::manifest::{
        DoneRecord, FailureClass, FailureRecord, ItemKind, PageCommit, Skip, SkipClass,
    };

    #[test]
    #[allow(clippy::too_many_lines)] // one scenario, checked field by field
    fn status_counts_items_bytes_reasons_classes_and_crawls() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        let mut notebook = folder("/Notes");
        notebook.kind = ItemKind::Package;
        notebook.skip = Some(Skip::new(SkipClass::Package, "oneNote package"));
        let mut bad = file("/bad.exe", 7, "Q");
        bad.skip = Some(Skip::new(SkipClass::Malware, "malware"));
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items: vec![
                    folder("/A"),
                    file("/a", 100, "Q"),
                    file("/b", 20, "Q"),
                    file("/c", 3, "Q"),
                    file("/d", 4000, "Q"),
                    notebook,
                    bad,
                ],
                next_link: None,
            },
        )
        .unwrap();
        let done = |verification: &str| DoneRecord {
            local_path: "x".into(),
            verification: verification.into(),
            attempts: 1,
        };
        m.mark_done(&drive(), &ItemId::from("/a"), &done("quickxor"))
            .unwrap();
        m.mark_done(&drive(), &ItemId::from("/b"), &done("size_only"))
            .unwrap();
        m.mark_failed(
            &drive(),
            &ItemId::from("/c"),
            &FailureRecord {
                class: FailureClass::HashMismatch,
                http_status: None,
                message: "hash".into(),
                attempts: 1,
            },
        )
        .unwrap();

        let s = m.status().unwrap();
        assert_eq!(
            (
                s.files.total,
                s.files.done,
                s.files.pending,
                s.files.failed,
                s.files.skipped
            ),
            (5, 2, 1, 1, 1)
        );
        // The root is listed ("done"); /A is not yet.
        assert_eq!(
            (s.folders.total, s.folders.done, s.folders.pending),
            (2, 1, 1)
        );
        assert_eq!(
            (
                s.bytes.total,
                s.bytes.done,
                s.bytes.pending,
                s.bytes.failed,
                s.bytes.skipped
            ),
            (4130, 120, 4000, 3, 7)
        );
        let pairs = |v: &[Count]| -> Vec<(String, u64)> {
            v.iter().map(|c| (c.key.clone(), c.count)).collect()
        };
        assert_eq!(
            pairs(&s.skipped_by_reason),
            [("malware".to_owned(), 1), ("oneNote package".to_owned(), 1)]
        );
        assert_eq!(pairs(&s.failed_by_class), [("hash_mismatch".to_owned(), 1)]);
        assert_eq!(
            pairs(&s.verified_by),
            [("quickxor".to_owned(), 1), ("size_only".to_owned(), 1)]
        );
        assert!(s.by_kind.contains(&KindStateCount {
            kind: "package".into(),
            state: "skipped".into(),
            count: 1,
            bytes: 0,
        }));
        assert_eq!(
            (s.crawls_complete, s.crawls_incomplete, s.remote_deleted),
            (0, 1, 0)
        );
        m.finish_crawl(crawl).unwrap();
        let s = m.status().unwrap();
        assert_eq!((s.crawls_complete, s.crawls_incomplete), (1, 0));
        assert!(s.last_run.is_none());

        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["files"]["done"], 2);
        assert!(
            json["manifest"]
                .as_str()
                .unwrap()
                .ends_with("manifest.sqlite")
        );
    }

    #[test]
    fn byte_totals_past_what_sqlite_can_add_saturate_instead_of_failing() {
        // The service lists sizes as JSON numbers; two files near 2^63 bytes made `sum()` fail with
        // "integer overflow", and with it `status`, `verify` and the run's summary.
        let (_dir, mut m, crawl) = crate::manifest::testutil::manifest_crawling();
        let huge = u64::try_from(i64::MAX).unwrap();
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items: vec![
                    file("/a", huge, "Q"),
                    file("/b", huge, "Q"),
                    file("/c", 5, "Q"),
                ],
                next_link: None,
            },
        )
        .unwrap();
        let s = m.status().unwrap();
        assert_eq!((s.files.total, s.bytes.total), (3, huge));
        assert_eq!(s.bytes.pending, huge);
        m.conn
            .execute_batch(
                "UPDATE items SET state = 'done', written_path = local_path WHERE kind = 'file'",
            )
            .unwrap();
        let totals = m.verify_totals().unwrap();
        assert_eq!((totals.files, totals.bytes), (3, huge));
        // Below 2^53 the floating-point total is exact.
        m.conn
            .execute_batch("UPDATE items SET size = 2251799813685249 WHERE name IN ('a', 'b')")
            .unwrap();
        assert_eq!(
            m.status().unwrap().bytes.done,
            2 * 2_251_799_813_685_249 + 5
        );
        // Three states of near 2^63 bytes each: their sum passes what a u64 holds, and saturates too.
        m.conn
            .execute_batch(
                "UPDATE items SET size = 9223372036854775807 WHERE kind = 'file';
                 UPDATE items SET state = 'pending' WHERE name = 'b';
                 UPDATE items SET state = 'failed' WHERE name = 'c';",
            )
            .unwrap();
        let s = m.status().unwrap();
        assert_eq!(
            (s.bytes.done, s.bytes.pending, s.bytes.failed),
            (huge, huge, huge)
        );
        assert_eq!(s.bytes.total, u64::MAX);
    }
}
