//! The restore's state: targets (a drive and a folder), one row per planned source entry with its outcome,
//! and the upload sessions in progress. Plus the reads a restore starts from: a backup's files on disk.
//!
//! Knows nothing of Graph or the file system: the restore plans entries, and this module stores and pages
//! them, applying the rule that a file already put back stays done while its local stamp holds.

use rusqlite::{OptionalExtension as _, params};

use super::items::{SUM_SIZE, to_u64};
use super::report::{ByteCounts, Count, FailureRow, StateCounts};
use super::{FailureRecord, Manifest, Result, now, sql_err};

/// A file or a folder of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreKind {
    /// A file: uploaded.
    File,
    /// A folder: created, so empty folders come back too.
    Folder,
}

impl RestoreKind {
    fn as_str(self) -> &'static str {
        match self {
            RestoreKind::File => "file",
            RestoreKind::Folder => "folder",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "folder" {
            RestoreKind::Folder
        } else {
            RestoreKind::File
        }
    }
}

/// What planning decided for an entry before any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryVerdict {
    /// To be put back (unless it is done already).
    Upload,
    /// Refused before upload (a name the service forbids, a path too long): recorded as failed with the reason.
    Refused {
        /// Why, and what to do.
        message: String,
    },
    /// Left out on purpose (a symbolic link, never followed): recorded as skipped.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One planned source entry.
#[derive(Debug, Clone)]
pub struct RestoreEntry {
    /// Relative to the source folder.
    pub(crate) source_path: String,
    /// File or folder.
    pub kind: RestoreKind,
    /// Where it goes, relative to the target folder (`/Photos/a.jpg`).
    pub remote_path: String,
    /// Bytes on disk.
    pub size: u64,
    /// Size and modification time on disk, to tell a changed file.
    pub stamp: String,
    /// `fileSystemInfo.createdDateTime` to give it (RFC 3339).
    pub(crate) created_at: Option<String>,
    /// `fileSystemInfo.lastModifiedDateTime` to give it (RFC 3339).
    pub(crate) modified_at: Option<String>,
    /// The name it had before `--rename-invalid` mapped it to a legal one.
    pub(crate) renamed_from: Option<String>,
    /// What planning decided.
    pub verdict: EntryVerdict,
}

/// What one batch of planning found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Entries to upload or create in this run.
    pub(crate) to_upload: u64,
    /// Their bytes.
    pub(crate) to_upload_bytes: u64,
    /// Entries already put back by an earlier run (unchanged since).
    pub already_done: u64,
    /// Entries refused before upload.
    pub refused: u64,
    /// Entries left out (links).
    pub skipped: u64,
}

/// A planned row to work on.
#[derive(Debug, Clone)]
pub(crate) struct RestoreJob {
    /// Row id (the order of work, and the paging cursor).
    pub(crate) rowid: i64,
    /// Relative to the source folder.
    pub(crate) source_path: String,
    /// Relative to the target folder.
    pub(crate) remote_path: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Times to give it.
    pub(crate) created_at: Option<String>,
    /// Times to give it.
    pub(crate) modified_at: Option<String>,
    /// The target item an earlier attempt left (a failed verification): replaced, never kept.
    pub(crate) item_id: Option<String>,
}

/// A backup's file or folder, as a restore reads it.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// Row id (paging cursor).
    pub(crate) rowid: i64,
    /// File or folder.
    pub kind: RestoreKind,
    /// The item's name as the drive had it.
    pub name: String,
    /// Its remote path in the backed-up drive.
    pub remote_path: String,
    /// Where it is under the destination (where it was written).
    pub(crate) local_path: String,
    /// Listed bytes.
    pub size: u64,
    /// Photo, video or other.
    pub media: String,
    /// When the photo or video was taken.
    pub(crate) taken_at: Option<String>,
    /// Client creation time.
    pub(crate) created_at: Option<String>,
    /// Client modification time.
    pub(crate) modified_at: Option<String>,
}

/// Where the restores to one target stand, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreStatus {
    /// The target drive.
    pub drive_id: String,
    /// The folder under its root.
    pub root_path: String,
    /// Files by state.
    pub files: StateCounts,
    /// File bytes by state.
    pub bytes: ByteCounts,
    /// Folders by state.
    pub folders: StateCounts,
    /// Failed entries by class.
    pub failed_by_class: Vec<Count>,
    /// Skipped entries by reason.
    pub skipped_by_reason: Vec<Count>,
}

impl Manifest {
    /// The target row for `drive_id` (any spelling: kept canonical) and `root_path`, created if new.
    pub(crate) fn restore_target(
        &mut self,
        drive_id: &str,
        root_path: &str,
        drive_type: &str,
    ) -> Result<i64> {
        let err = sql_err(&self.path);
        let found = self.find_restore_target(drive_id, root_path)?;
        if let Some(id) = found {
            return Ok(id);
        }
        let drive_id = crate::ids::canonical_drive_id(drive_id);
        self.conn
            .execute(
                "INSERT INTO restore_targets (drive_id, root_path, drive_type, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![drive_id, root_path, drive_type, now()],
            )
            .map_err(&err)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The target row for `drive_id` (any spelling: compared canonically) and `root_path`, if there is one.
    pub(crate) fn find_restore_target(
        &self,
        drive_id: &str,
        root_path: &str,
    ) -> Result<Option<i64>> {
        let drive_id = crate::ids::canonical_drive_id(drive_id);
        self.conn
            .prepare_cached("SELECT id FROM restore_targets WHERE drive_id = ?1 AND root_path = ?2")
            .and_then(|mut s| {
                s.query_row(params![drive_id, root_path], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Record one batch of planned entries for `target`, seen by `run`, in one transaction. A file done by an
    /// earlier run whose stamp and place are unchanged stays done; anything else planned for upload is pending
    /// (a failed row stays failed, to be retried, keeping its attempts).
    // One transaction that judges every source file in turn; its rules read best side by side.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn plan_restore(
        &mut self,
        target: i64,
        run: i64,
        entries: &[RestoreEntry],
    ) -> Result<PlanCounts> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let mut counts = PlanCounts::default();
        let at = now();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT state, stamp, remote_path FROM restore_files WHERE target_id = ?1 AND source_path = ?2",
                )
                .map_err(&err)?;
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO restore_files (target_id, source_path, kind, remote_path, size, stamp, created_at,
                         modified_at, renamed_from, state, skip_reason, seen_run, attempts, error_class, error_message,
                         failed_at, updated_at, refused)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?13)
                     ON CONFLICT (target_id, source_path) DO UPDATE SET
                         kind = excluded.kind, remote_path = excluded.remote_path, size = excluded.size,
                         stamp = excluded.stamp, created_at = excluded.created_at, modified_at = excluded.modified_at,
                         renamed_from = excluded.renamed_from, state = excluded.state, skip_reason = excluded.skip_reason,
                         seen_run = excluded.seen_run, refused = excluded.refused,
                         attempts = CASE WHEN excluded.state = 'pending' AND restore_files.state = 'done' THEN 0
                                         WHEN excluded.error_class IS NOT NULL THEN restore_files.attempts + 1
                                         ELSE restore_files.attempts END,
                         error_class = CASE WHEN excluded.state = 'failed' THEN coalesce(excluded.error_class, restore_files.error_class) END,
                         error_message = CASE WHEN excluded.state = 'failed' THEN coalesce(excluded.error_message, restore_files.error_message) END,
                         failed_at = CASE WHEN excluded.state = 'failed' THEN coalesce(excluded.failed_at, restore_files.failed_at) END,
                         updated_at = excluded.updated_at",
                )
                .map_err(&err)?;
            let mut keep_done = tx
                .prepare_cached(
                    "UPDATE restore_files SET seen_run = ?3, created_at = ?4, modified_at = ?5, updated_at = ?6
                     WHERE target_id = ?1 AND source_path = ?2",
                )
                .map_err(&err)?;
            for e in entries {
                let existing: Option<(String, String, String)> = select
                    .query_row(params![target, e.source_path], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(&err)?;
                let (state, skip, class, message) = match &e.verdict {
                    EntryVerdict::Refused { message } => {
                        counts.refused += 1;
                        ("failed", None, Some("path"), Some(message.as_str()))
                    }
                    EntryVerdict::Skipped { reason } => {
                        counts.skipped += 1;
                        ("skipped", Some(reason.as_str()), None, None)
                    }
                    EntryVerdict::Upload => {
                        let unchanged = existing.as_ref().is_some_and(|(state, stamp, remote)| {
                            state == "done" && *stamp == e.stamp && *remote == e.remote_path
                        });
                        if unchanged {
                            counts.already_done += 1;
                            keep_done
                                .execute(params![
                                    target,
                                    e.source_path,
                                    run,
                                    e.created_at,
                                    e.modified_at,
                                    at
                                ])
                                .map_err(&err)?;
                            continue;
                        }
                        counts.to_upload += 1;
                        counts.to_upload_bytes = counts.to_upload_bytes.saturating_add(e.size);
                        let failed = existing
                            .as_ref()
                            .is_some_and(|(s, stamp, _)| s == "failed" && *stamp == e.stamp);
                        (if failed { "failed" } else { "pending" }, None, None, None)
                    }
                };
                upsert
                    .execute(params![
                        target,
                        e.source_path,
                        e.kind.as_str(),
                        e.remote_path,
                        i64::try_from(e.size).unwrap_or(i64::MAX),
                        e.stamp,
                        e.created_at,
                        e.modified_at,
                        e.renamed_from,
                        state,
                        skip,
                        run,
                        i64::from(class.is_some()),
                        class,
                        message,
                        class.map(|_| at.clone()),
                        at,
                    ])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(counts)
    }

    /// What [`Manifest::plan_restore`] would count for `entries`, writing nothing (`--dry-run`), and the
    /// indexes of the entries it would upload. `target` is `None` for a target never restored to.
    pub(crate) fn preview_restore(
        &self,
        target: Option<i64>,
        entries: &[RestoreEntry],
    ) -> Result<(PlanCounts, Vec<usize>)> {
        let mut counts = PlanCounts::default();
        let mut uploads = Vec::new();
        let mut select = self
            .conn
            .prepare_cached(
                "SELECT state, stamp, remote_path FROM restore_files WHERE target_id = ?1 AND source_path = ?2",
            )
            .map_err(|e| self.err(e))?;
        for (i, e) in entries.iter().enumerate() {
            match &e.verdict {
                EntryVerdict::Refused { .. } => counts.refused += 1,
                EntryVerdict::Skipped { .. } => counts.skipped += 1,
                EntryVerdict::Upload => {
                    let done = match target {
                        Some(t) => select
                            .query_row(params![t, e.source_path], |r| {
                                Ok((
                                    r.get::<_, String>(0)?,
                                    r.get::<_, String>(1)?,
                                    r.get::<_, String>(2)?,
                                ))
                            })
                            .optional()
                            .map_err(|e| self.err(e))?
                            .is_some_and(|(state, stamp, remote)| {
                                state == "done" && stamp == e.stamp && remote == e.remote_path
                            }),
                        None => false,
                    };
                    if done {
                        counts.already_done += 1;
                    } else {
                        counts.to_upload += 1;
                        counts.to_upload_bytes = counts.to_upload_bytes.saturating_add(e.size);
                        uploads.push(i);
                    }
                }
            }
        }
        Ok((counts, uploads))
    }

    /// Up to `limit` rows of `kind` planned by `run` for `target` and still to do (pending or failed), after
    /// row id `after`, in row order.
    pub(crate) fn restore_jobs_after(
        &self,
        target: i64,
        run: i64,
        kind: RestoreKind,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RestoreJob>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, source_path, remote_path, size, created_at, modified_at, item_id
                 FROM restore_files
                 WHERE target_id = ?1 AND seen_run = ?2 AND kind = ?3 AND (state = 'pending' OR state = 'failed')
                   AND refused = 0 AND rowid > ?4
                 ORDER BY rowid LIMIT ?5",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![
                target,
                run,
                kind.as_str(),
                after,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(RestoreJob {
                    rowid: r.get(0)?,
                    source_path: r.get(1)?,
                    remote_path: r.get(2)?,
                    size: to_u64(r.get(3)?),
                    created_at: r.get(4)?,
                    modified_at: r.get(5)?,
                    item_id: r.get(6)?,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Bytes of the files planned by `run` for `target` and not done yet: what a full drive still lacks room for.
    pub(crate) fn restore_bytes_left(&self, target: i64, run: i64) -> Result<u64> {
        self.conn
            .query_row(
                &format!("SELECT {SUM_SIZE} FROM restore_files
                 WHERE target_id = ?1 AND seen_run = ?2 AND kind = 'file' AND (state = 'pending' OR state = 'failed')"),
                params![target, run],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| to_u64(Some(n)))
            .map_err(|e| self.err(e))
    }

    /// The entry is back on the target as `item_id` (verified by `quick_xor` and size): done, and its upload
    /// session, if any, forgotten.
    pub(crate) fn restore_done(
        &mut self,
        target: i64,
        source_path: &str,
        item_id: &str,
        quick_xor: Option<&str>,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE restore_files SET state = 'done', item_id = ?3, quick_xor = ?4, done_at = ?5, updated_at = ?5,
                 skip_reason = NULL, error_class = NULL, http_status = NULL, error_message = NULL, failed_at = NULL
             WHERE target_id = ?1 AND source_path = ?2",
            params![target, source_path, item_id, quick_xor, now()],
        )
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM restore_sessions WHERE target_id = ?1 AND source_path = ?2",
            params![target, source_path],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// The entry is not put back, on purpose (`reason`): skipped.
    pub(crate) fn restore_skipped(
        &mut self,
        target: i64,
        source_path: &str,
        reason: &str,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restore_files SET state = 'skipped', skip_reason = ?3, updated_at = ?4,
                     error_class = NULL, http_status = NULL, error_message = NULL, failed_at = NULL
                 WHERE target_id = ?1 AND source_path = ?2",
                params![target, source_path, reason, now()],
            )
            .map(|_| ())
            .map_err(&err)
    }

    /// The entry failed in this run (`item_id`: an item the attempt left on the target, to replace next time).
    pub(crate) fn restore_failed(
        &mut self,
        target: i64,
        source_path: &str,
        failure: &FailureRecord,
        item_id: Option<&str>,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restore_files SET state = 'failed', error_class = ?3, http_status = ?4, error_message = ?5,
                     attempts = attempts + ?6, failed_at = ?7, updated_at = ?7, item_id = coalesce(?8, item_id)
                 WHERE target_id = ?1 AND source_path = ?2",
                params![
                    target,
                    source_path,
                    failure.class.as_str(),
                    failure.http_status,
                    failure.message,
                    failure.attempts.max(1),
                    now(),
                    item_id
                ],
            )
            .map(|_| ())
            .map_err(&err)
    }

    /// The upload session kept for the entry: `(stamp, url)`.
    pub(crate) fn restore_session(
        &self,
        target: i64,
        source_path: &str,
    ) -> Result<Option<(String, String)>> {
        self.conn
            .prepare_cached(
                "SELECT stamp, upload_url FROM restore_sessions WHERE target_id = ?1 AND source_path = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![target, source_path], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Keep the upload session of the entry (its URL is a credential: kept here only while it is in use).
    pub(crate) fn set_restore_session(
        &mut self,
        target: i64,
        source_path: &str,
        stamp: &str,
        url: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO restore_sessions (target_id, source_path, stamp, upload_url, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (target_id, source_path) DO UPDATE SET stamp = excluded.stamp,
                     upload_url = excluded.upload_url, created_at = excluded.created_at",
                params![target, source_path, stamp, url, now()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forget the upload sessions of `target` that no entry still to do in `run` will resume (their files are
    /// done, skipped, or no longer planned): their URLs are credentials with nothing left to serve.
    pub(crate) fn clear_stale_restore_sessions(&mut self, target: i64, run: i64) -> Result<u64> {
        self.conn
            .execute(
                "DELETE FROM restore_sessions WHERE target_id = ?1 AND source_path NOT IN (
                     SELECT source_path FROM restore_files WHERE target_id = ?1 AND seen_run = ?2
                         AND (state = 'pending' OR state = 'failed'))",
                params![target, run],
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Forget the upload session of the entry.
    pub(crate) fn clear_restore_session(&mut self, target: i64, source_path: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM restore_sessions WHERE target_id = ?1 AND source_path = ?2",
                params![target, source_path],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` of the backup's files on disk and its folders, after row id `after`: what a restore from this
    /// backup can put back. Files are those done (verified on disk), wherever they now are (deleted on the drive
    /// or left out by a later filter included); files moved into the trash are not; folders are those still on
    /// the drive, the root left out.
    pub(crate) fn restore_sources_after(&self, after: i64, limit: usize) -> Result<Vec<SourceRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, kind, name, remote_path, coalesce(written_path, local_path), coalesce(local_size, size, 0),
                        media, taken_at, created_at, modified_at
                 FROM items
                 WHERE rowid > ?1 AND (
                     (kind = 'file' AND state = 'done'
                      AND lower(substr(coalesce(written_path, local_path), 1, 10)) <> '.odbackup/')
                     OR (kind = 'folder' AND remote_deleted = 0 AND remote_path <> '/' AND parent_id IS NOT NULL))
                 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(SourceRow {
                    rowid: r.get(0)?,
                    kind: RestoreKind::parse(&r.get::<_, String>(1)?),
                    name: r.get(2)?,
                    remote_path: r.get(3)?,
                    local_path: r.get(4)?,
                    size: to_u64(r.get(5)?),
                    media: r.get(6)?,
                    taken_at: r.get(7)?,
                    created_at: r.get(8)?,
                    modified_at: r.get(9)?,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Per target: entries by kind and state, bytes, failures by class and skips by reason.
    pub(crate) fn restore_status(&self) -> Result<Vec<RestoreStatus>> {
        let targets: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, drive_id, root_path FROM restore_targets ORDER BY id")
                .map_err(|e| self.err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(Iterator::collect)
                .map_err(|e| self.err(e))?
        };
        let mut out = Vec::new();
        for (id, drive_id, root_path) in targets {
            let mut status = RestoreStatus {
                drive_id,
                root_path,
                files: StateCounts::default(),
                bytes: ByteCounts::default(),
                folders: StateCounts::default(),
                failed_by_class: Vec::new(),
                skipped_by_reason: Vec::new(),
            };
            let mut stmt = self
                .conn
                .prepare_cached(
                    &format!("SELECT kind, state, count(*), {SUM_SIZE} FROM restore_files WHERE target_id = ?1
                     GROUP BY kind, state"),
                )
                .map_err(|e| self.err(e))?;
            let rows: Vec<(String, String, i64, i64)> = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(Iterator::collect)
                .map_err(|e| self.err(e))?;
            for (kind, state, count, size) in rows {
                let (count, size) = (to_u64(Some(count)), to_u64(Some(size)));
                let counts = if kind == "folder" {
                    &mut status.folders
                } else {
                    &mut status.files
                };
                counts.total += count;
                let slot = match state.as_str() {
                    "pending" => &mut counts.pending,
                    "done" => &mut counts.done,
                    "failed" => &mut counts.failed,
                    _ => &mut counts.skipped,
                };
                *slot += count;
                if kind == "file" {
                    status.bytes.total = status.bytes.total.saturating_add(size);
                    let slot = match state.as_str() {
                        "pending" => &mut status.bytes.pending,
                        "done" => &mut status.bytes.done,
                        "failed" => &mut status.bytes.failed,
                        _ => &mut status.bytes.skipped,
                    };
                    *slot = slot.saturating_add(size);
                }
            }
            status.failed_by_class = self.restore_counts(
                "SELECT coalesce(error_class, 'other'), count(*) FROM restore_files
                 WHERE target_id = ?1 AND state = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1",
                id,
            )?;
            status.skipped_by_reason = self.restore_counts(
                "SELECT coalesce(skip_reason, 'skipped'), count(*) FROM restore_files
                 WHERE target_id = ?1 AND state = 'skipped' GROUP BY 1 ORDER BY 2 DESC, 1",
                id,
            )?;
            out.push(status);
        }
        Ok(out)
    }

    fn restore_counts(&self, sql: &str, target: i64) -> Result<Vec<Count>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map([target], |r| {
            Ok(Count {
                key: r.get(0)?,
                count: to_u64(r.get(1)?),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Every failed restore entry, newest first, as `failures` lists them: `remote_path` is where it was going
    /// (the target folder joined to its path), `item_id` empty (there is no item), `source` the local file.
    pub(crate) fn restore_failures(&self) -> Result<Vec<FailureRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.root_path, f.remote_path, f.source_path, coalesce(f.error_class, 'other'), f.http_status,
                        coalesce(f.error_message, ''), f.attempts, f.failed_at
                 FROM restore_files f JOIN restore_targets t ON t.id = f.target_id
                 WHERE f.state = 'failed' ORDER BY f.failed_at DESC, f.remote_path",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            let root: String = r.get(0)?;
            let remote: String = r.get(1)?;
            Ok(FailureRow {
                remote_path: join_remote(&root, &remote),
                item_id: String::new(),
                class: r.get(3)?,
                http_status: r
                    .get::<_, Option<i64>>(4)?
                    .and_then(|s| u16::try_from(s).ok()),
                message: r.get(5)?,
                attempts: u32::try_from(to_u64(r.get(6)?)).unwrap_or(u32::MAX),
                failed_at: r.get(7)?,
                operation: "restore",
                source: Some(r.get(2)?),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}

/// `/To` + `/a/b` → `/To/a/b`; `/` + `/a` → `/a`.
fn join_remote(root: &str, rel: &str) -> String {
    let root = root.trim_end_matches('/');
    format!("{root}/{}", rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FailureClass;
    use crate::manifest::testutil::manifest;

    fn entry(path: &str, stamp: &str) -> RestoreEntry {
        RestoreEntry {
            source_path: path.to_owned(),
            kind: RestoreKind::File,
            remote_path: format!("/{path}"),
            size: 10,
            stamp: stamp.to_owned(),
            created_at: None,
            modified_at: Some("2020-01-01T00:00:00Z".to_owned()),
            renamed_from: None,
            verdict: EntryVerdict::Upload,
        }
    }

    #[test]
    fn a_done_file_stays_done_while_its_stamp_holds_and_comes_back_when_it_changes() {
        let (_dir, mut m) = manifest();
        let t = m.restore_target("ABCDEF", "/", "personal").unwrap();
        assert_eq!(m.restore_target("abcdef", "/", "personal").unwrap(), t);
        assert_ne!(m.restore_target("abcdef", "/To", "personal").unwrap(), t);
        let batch = [
            entry("a.jpg", "10:1"),
            entry("b.jpg", "10:1"),
            RestoreEntry {
                verdict: EntryVerdict::Refused {
                    message: "bad name".into(),
                },
                ..entry("c:d", "10:1")
            },
        ];
        let counts = m.plan_restore(t, 1, &batch).unwrap();
        assert_eq!(
            (counts.to_upload, counts.refused, counts.already_done),
            (2, 1, 0)
        );
        let jobs = m
            .restore_jobs_after(t, 1, RestoreKind::File, 0, 10)
            .unwrap();
        assert_eq!(jobs.len(), 2, "refused rows are failed, and never sent");
        m.restore_done(t, "a.jpg", "ITEM1", Some("qx")).unwrap();
        let failure = FailureRecord {
            class: FailureClass::Network,
            http_status: None,
            message: "reset".into(),
            attempts: 1,
        };
        m.restore_failed(t, "b.jpg", &failure, None).unwrap();
        // A re-run: a unchanged stays done, b is retried, a changed file goes back to pending.
        let counts = m.plan_restore(t, 2, &batch[..2]).unwrap();
        assert_eq!((counts.already_done, counts.to_upload), (1, 1));
        let left: Vec<_> = m
            .restore_jobs_after(t, 2, RestoreKind::File, 0, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.source_path)
            .collect();
        assert_eq!(
            left,
            ["b.jpg"],
            "rows not planned by this run are left alone"
        );
        let counts = m.plan_restore(t, 3, &[entry("a.jpg", "11:2")]).unwrap();
        assert_eq!(counts.to_upload, 1);
        let preview = m
            .preview_restore(Some(t), &[entry("a.jpg", "11:2"), entry("b.jpg", "10:1")])
            .unwrap();
        assert_eq!((preview.0.to_upload, preview.1), (2, vec![0, 1]));
        let status = m.restore_status().unwrap();
        assert_eq!(status[0].files.failed, 2);
        assert_eq!(status[0].files.pending, 1);
        let failures = m.restore_failures().unwrap();
        assert_eq!(failures.len(), 2);
        assert!(failures.iter().all(|f| f.operation == "restore"));
    }

    #[test]
    fn a_backup_offers_its_files_on_disk_and_folders_but_not_its_trash() {
        let (_dir, m) = manifest();
        let insert = |id: &str, kind: &str, state: &str, path: &str, written: Option<&str>| {
            m.conn
                .execute(
                    "INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, size, media,
                         state, written_path, updated_at)
                     VALUES ('d', ?1, 'p', ?1, ?2, ?3, ?4, 5, 'other', ?5, ?6, 'now')",
                    rusqlite::params![id, format!("/{path}"), path, kind, state, written],
                )
                .unwrap();
        };
        insert("a", "file", "done", "a.jpg", Some("a.jpg"));
        insert(
            "b",
            "file",
            "done",
            "b.jpg",
            Some(".odbackup/trash/2024-01-01/b.jpg"),
        );
        insert("c", "file", "pending", "c.jpg", None);
        insert("F", "folder", "done", "F", None);
        let rows = m.restore_sources_after(0, 10).unwrap();
        let names: Vec<(&str, RestoreKind)> =
            rows.iter().map(|r| (r.name.as_str(), r.kind)).collect();
        assert_eq!(
            names,
            [("a", RestoreKind::File), ("F", RestoreKind::Folder)]
        );
    }

    #[test]
    fn a_session_is_kept_until_its_file_is_done() {
        let (_dir, mut m) = manifest();
        let t = m.restore_target("d", "/", "personal").unwrap();
        m.plan_restore(t, 1, &[entry("big.mov", "9:9")]).unwrap();
        m.set_restore_session(t, "big.mov", "9:9", "https://up.example/x")
            .unwrap();
        assert_eq!(
            m.restore_session(t, "big.mov").unwrap(),
            Some(("9:9".to_owned(), "https://up.example/x".to_owned()))
        );
        m.restore_done(t, "big.mov", "I", None).unwrap();
        assert_eq!(m.restore_session(t, "big.mov").unwrap(), None);
        // A session whose file is no longer planned is forgotten at the end of a run; one still to do is kept.
        m.plan_restore(t, 2, &[entry("still.mov", "1:1")]).unwrap();
        m.set_restore_session(t, "still.mov", "1:1", "https://up.example/s")
            .unwrap();
        m.set_restore_session(t, "big.mov", "9:9", "https://up.example/b")
            .unwrap();
        assert_eq!(m.clear_stale_restore_sessions(t, 2).unwrap(), 1);
        assert!(m.restore_session(t, "still.mov").unwrap().is_some());
        assert!(m.restore_session(t, "big.mov").unwrap().is_none());
        assert_eq!(join_remote("/", "/a/b"), "/a/b");
        assert_eq!(join_remote("/To/", "/a"), "/To/a");
    }
}
