//! Read-only reports over the manifest: counts for `status`, the list for `failures`.

use std::fmt;

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Manifest, Result};

/// One run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// `crawl`, `download` or `backup`.
    pub command: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time, if it ended cleanly.
    pub finished_at: Option<String>,
    /// `ok`, `incomplete`, `interrupted` or `error`.
    pub outcome: Option<String>,
    /// The run's summary document.
    pub summary: Option<serde_json::Value>,
}

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

/// What `status` shows.
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
    /// Items not downloaded, by reason (packages, remote items, refused folders…).
    pub skipped_by_reason: Vec<Count>,
    /// Failed files by class.
    pub failed_by_class: Vec<Count>,
    /// Done files by how they were verified (`quickxor`, `sha1`, `size_only` = unverified).
    pub verified_by: Vec<Count>,
    /// Items gone from the drive (kept locally).
    pub remote_deleted: u64,
    /// Crawls that finished.
    pub crawls_complete: u64,
    /// Crawls interrupted and not yet resumed to the end.
    pub crawls_incomplete: u64,
    /// The latest run.
    pub last_run: Option<RunRecord>,
}

/// One failed file, for `failures`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// Its remote path.
    pub remote_path: String,
    /// Its item ID.
    pub item_id: String,
    /// The failure class.
    pub class: String,
    /// The HTTP status, if any.
    pub http_status: Option<u16>,
    /// What happened.
    pub message: String,
    /// Attempts over all runs.
    pub attempts: u32,
    /// When it last failed.
    pub failed_at: Option<String>,
}

impl Manifest {
    /// Counts for `status`.
    pub fn status(&self) -> Result<StatusReport> {
        let mut folders = StateCounts::default();
        let mut files = StateCounts::default();
        let mut bytes = ByteCounts::default();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT kind, state, count(*), coalesce(sum(size), 0) FROM items WHERE remote_deleted = 0
                     GROUP BY kind, state",
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
                let (count, size) = (count as u64, size.max(0) as u64);
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
                    bytes.total += size;
                    match state.as_str() {
                        "pending" => bytes.pending += size,
                        "done" => bytes.done += size,
                        "failed" => bytes.failed += size,
                        _ => bytes.skipped += size,
                    }
                }
            }
        }
        let skipped_by_reason = self.counts(
            "SELECT coalesce(skip_reason, kind), count(*) FROM items WHERE state = 'skipped' AND remote_deleted = 0
             GROUP BY 1 ORDER BY 2 DESC",
        )?;
        let failed_by_class = self.counts(
            "SELECT coalesce(error_class, 'other'), count(*) FROM items WHERE state = 'failed' AND remote_deleted = 0
             GROUP BY 1 ORDER BY 2 DESC",
        )?;
        let verified_by = self.counts(
            "SELECT coalesce(verification, 'unknown'), count(*) FROM items WHERE state = 'done' AND kind = 'file'
             AND remote_deleted = 0 GROUP BY 1 ORDER BY 2 DESC",
        )?;
        let one = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        Ok(StatusReport {
            manifest: self.path.display().to_string(),
            folders,
            files,
            bytes,
            skipped_by_reason,
            failed_by_class,
            verified_by,
            remote_deleted: one("SELECT count(*) FROM items WHERE remote_deleted = 1")?,
            crawls_complete: one("SELECT count(*) FROM crawls WHERE completed_at IS NOT NULL")?,
            crawls_incomplete: one("SELECT count(*) FROM crawls WHERE completed_at IS NULL")?,
            last_run: self.last_run()?,
        })
    }

    fn counts(&self, sql: &str) -> Result<Vec<Count>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;

        stmt.query_map([], |r| {
            Ok(Count {
                key: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// The latest run.
    pub fn last_run(&self) -> Result<Option<RunRecord>> {
        self.conn
            .query_row(
                "SELECT command, started_at, finished_at, outcome, summary_json FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let summary: Option<String> = r.get(4)?;
                    Ok(RunRecord {
                        command: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        outcome: r.get(3)?,
                        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every failed file, most recent first.
    pub fn failures(&self) -> Result<Vec<FailureRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT remote_path, item_id, coalesce(error_class, 'other'), http_status, coalesce(error_message, ''),
                        attempts, failed_at
                 FROM items WHERE state = 'failed' AND remote_deleted = 0 ORDER BY failed_at DESC, remote_path",
            )
            .map_err(|e| self.err(e))?;

        stmt.query_map(params![], |r| {
            Ok(FailureRow {
                remote_path: r.get(0)?,
                item_id: r.get(1)?,
                class: r.get(2)?,
                http_status: r.get::<_, Option<i64>>(3)?.map(|s| s as u16),
                message: r.get(4)?,
                attempts: r.get::<_, i64>(5)?.max(0) as u32,
                failed_at: r.get(6)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}

fn line(f: &mut fmt::Formatter<'_>, label: &str, c: &StateCounts) -> fmt::Result {
    writeln!(
        f,
        "{label:<8} {:>9} total {:>9} done {:>9} pending {:>7} failed {:>7} skipped",
        c.total, c.done, c.pending, c.failed, c.skipped
    )
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "manifest {}", self.manifest)?;
        line(f, "folders", &self.folders)?;
        line(f, "files", &self.files)?;
        writeln!(
            f,
            "bytes    {:>9} total {:>9} done {:>9} pending {:>7} failed",
            human(self.bytes.total),
            human(self.bytes.done),
            human(self.bytes.pending),
            human(self.bytes.failed)
        )?;
        for c in &self.verified_by {
            writeln!(f, "  verified by {}: {}", c.key, c.count)?;
        }
        for c in &self.failed_by_class {
            writeln!(f, "  failed ({}): {}", c.key, c.count)?;
        }
        for c in &self.skipped_by_reason {
            writeln!(f, "  skipped ({}): {}", c.key, c.count)?;
        }
        if self.remote_deleted > 0 {
            writeln!(
                f,
                "  gone from the drive, kept locally: {}",
                self.remote_deleted
            )?;
        }
        if self.crawls_incomplete > 0 {
            writeln!(f, "  an interrupted crawl will resume on the next run")?;
        }
        match &self.last_run {
            Some(run) => writeln!(
                f,
                "last run: {} started {} — {}",
                run.command,
                run.started_at,
                run.outcome.as_deref().unwrap_or("did not finish (killed?)")
            ),
            None => writeln!(f, "last run: none"),
        }
    }
}
