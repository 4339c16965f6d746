//! Incremental bookkeeping: the delta link of each drive and scope, the changes of a round staged page by page,
//! and their application (upserts, path changes carried down to descendants, deletions flagged).
//!
//! Knows nothing of Graph: links are opaque strings and staged items are [`NewItem`]s the crawler made.

use rusqlite::{OptionalExtension as _, params};

use super::crawl::limit_i64;
use super::items::{ItemKind, NewItem, StoredUrl, to_u64, upsert};
use super::{Manifest, Result, now, sql_err};
use crate::ids::{DriveId, ItemId};

/// What the manifest knows of a scope's incremental state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaState {
    /// The folder the delta links list (the scope root, or the drive root on business drives).
    pub(crate) delta_root_id: ItemId,
    /// The link that asks for changes since the last applied round.
    pub(crate) delta_link: Option<String>,
    /// Where an unfinished round stopped paging.
    pub(crate) cursor: Option<String>,
    /// When the last round was applied.
    pub last_applied_at: Option<String>,
    /// How many changes it applied.
    pub last_changes: Option<u64>,
}

/// One staged change of a delta round.
#[derive(Debug, Clone)]
pub struct StagedChange {
    /// Order of arrival (a later sighting of the same item replaces the earlier one and comes later).
    pub(crate) seq: i64,
    /// The item as listed, without paths (the crawler places it once its parent is known); `None` when its
    /// staged row cannot be read back (staged by another build): the round cannot tell what it described.
    pub item: Option<NewItem>,
    /// Whether the service reported it deleted.
    pub deleted: bool,
}

/// Where a known item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownItem {
    /// Its kind.
    pub kind: ItemKind,
    /// Its remote path.
    pub remote_path: String,
    /// Its local path.
    pub(crate) local_path: String,
    /// Whether it is flagged deleted remotely.
    pub remote_deleted: bool,
}

/// What to do with one staged change.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Store the item (placed: paths set). `moved_from` holds a folder's previous (remote, local) paths, so
    /// everything below it follows.
    Upsert {
        /// The staged change.
        seq: i64,
        /// The placed row.
        item: Box<NewItem>,
        /// A folder's previous paths, if they changed.
        moved_from: Option<(String, String)>,
        /// A folder whose contents the round does not bring (moved into the scope): queue it for a listing of
        /// its own, in the frontier of the scope's last crawl.
        list_contents: bool,
    },
    /// Flag the item (and, for a folder, everything below it) as deleted remotely; local copies are kept.
    Delete {
        /// The staged change.
        seq: i64,
        /// The item.
        item_id: ItemId,
    },
    /// Not for this scope: forget the staged change.
    Drop {
        /// The staged change.
        seq: i64,
    },
}

/// What to do with one item of a full listing as its page arrives.
#[derive(Debug)]
pub enum Arrival {
    /// Its parent is placed already: store it now.
    Apply(Resolution),
    /// Not for the manifest (the scope's root, an item without a parent): nothing to store.
    Skip,
    /// Its parent is not placed yet (or it is a deletion): stage it, to be applied once the listing is in.
    Wait {
        /// The item as listed, without paths.
        item: Box<NewItem>,
        /// Whether the service reported it deleted.
        deleted: bool,
    },
}

impl Manifest {
    /// The incremental state of a scope, if a full crawl ever recorded one.
    pub(crate) fn delta_state(
        &self,
        drive: &DriveId,
        scope_key: &str,
    ) -> Result<Option<DeltaState>> {
        self.conn
            .query_row(
                "SELECT scope_root_id, delta_link, cursor, last_applied_at, last_changes FROM delta_state
                 WHERE drive_id = ?1 AND scope_key = ?2",
                params![drive.key(), scope_key],
                |r| {
                    Ok(DeltaState {
                        delta_root_id: ItemId(r.get(0)?),
                        delta_link: r.get(1)?,
                        cursor: r.get(2)?,
                        last_applied_at: r.get(3)?,
                        last_changes: r.get::<_, Option<i64>>(4)?.map(|n| to_u64(Some(n))),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A full crawl of the scope starts: remember the link (taken before it lists anything) that takes over
    /// once it completes, so changes made during the crawl are picked up by the next round.
    pub(crate) fn set_pending_link(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        delta_root: &ItemId,
        link: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO delta_state (drive_id, scope_key, scope_root_id, pending_link) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (drive_id, scope_key) DO UPDATE SET scope_root_id = excluded.scope_root_id,
                     pending_link = excluded.pending_link",
                params![drive.key(), scope_key, delta_root.key(), link],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A full listing of the scope by delta starts: its state row exists (for the cursor), with no link yet.
    pub(crate) fn begin_delta_enumeration(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        delta_root: &ItemId,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO delta_state (drive_id, scope_key, scope_root_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (drive_id, scope_key) DO UPDATE SET scope_root_id = excluded.scope_root_id,
                 delta_link = NULL, pending_link = NULL, cursor = NULL",
            params![drive.key(), scope_key, delta_root.key()],
        )
        .map_err(&err)?;
        clear_staging(&tx, drive, scope_key).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// A full crawl of the scope completed: its pending link becomes the delta link, and whatever a broken
    /// round left staged is dropped (the crawl saw the current state).
    pub(crate) fn promote_pending_link(&mut self, drive: &DriveId, scope_key: &str) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE delta_state SET delta_link = pending_link, pending_link = NULL, cursor = NULL
             WHERE drive_id = ?1 AND scope_key = ?2 AND pending_link IS NOT NULL",
            params![drive.key(), scope_key],
        )
        .map_err(&err)?;
        clear_staging(&tx, drive, scope_key).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// The service refused the delta link (resync): forget it and the staged changes; the next crawl of the
    /// scope is a full one.
    pub(crate) fn forget_delta(&mut self, drive: &DriveId, scope_key: &str) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE delta_state SET delta_link = NULL, cursor = NULL WHERE drive_id = ?1 AND scope_key = ?2",
            params![drive.key(), scope_key],
        )
        .map_err(&err)?;
        clear_staging(&tx, drive, scope_key).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Stage one page of a round together with where paging goes on (`None` after the last page), in one
    /// transaction, so a killed round resumes at the next page.
    pub(crate) fn stage_delta_page(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        changes: &[(NewItem, bool)],
        cursor: Option<&str>,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let at_ms = super::urls::now_ms();
        for (item, deleted) in changes {
            stage_one(&tx, drive, scope_key, item, *deleted, at_ms).map_err(&err)?;
        }
        tx.execute(
            "UPDATE delta_state SET cursor = ?3 WHERE drive_id = ?1 AND scope_key = ?2",
            params![drive.key(), scope_key, cursor],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Up to `limit` staged changes after `after_seq`, oldest first.
    pub(crate) fn staged_after(
        &self,
        drive: &DriveId,
        scope_key: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StagedChange>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // `+` keeps SQLite off the (drive, scope, item) index: through it, every batch sorted all
                // that is staged (quadratic over a 100,000-item enumeration); by `seq` it is a range read.
                "SELECT seq, deleted, row_json FROM delta_staging WHERE +drive_id = ?1 AND +scope_key = ?2
                 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, bool, String)> = stmt
            .query_map(
                params![drive.key(), scope_key, after_seq, limit_i64(limit)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        // A row this build cannot read is handed out too, unreadable: left out, it would end the pass early
        // (an empty page reads as the end) or leave a change unapplied while the round still succeeded.
        Ok(rows
            .into_iter()
            .map(|(seq, deleted, json)| StagedChange {
                seq,
                item: serde_json::from_str(&json).ok(),
                deleted,
            })
            .collect())
    }

    /// How many changes are still staged for `scope_key` of `drive`.
    pub(crate) fn staged_count(&self, drive: &DriveId, scope_key: &str) -> Result<u64> {
        self.conn
            .prepare_cached(
                "SELECT count(*) FROM delta_staging WHERE drive_id = ?1 AND scope_key = ?2",
            )
            .and_then(|mut s| s.query_row(params![drive.key(), scope_key], |r| r.get(0)))
            .map(|n| to_u64(Some(n)))
            .map_err(|e| self.err(e))
    }

    /// Whether a change of `item` is staged and not applied yet.
    pub(crate) fn is_staged(
        &self,
        drive: &DriveId,
        scope_key: &str,
        item: &ItemId,
    ) -> Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM delta_staging WHERE drive_id = ?1 AND scope_key = ?2 AND item_id = ?3)",
            )
            .and_then(|mut s| {
                s.query_row(params![drive.key(), scope_key, item.key()], |r| {
                    r.get(0)
                })
            })
            .map_err(|e| self.err(e))
    }

    /// Where a known item is.
    pub(crate) fn known_item(&self, drive: &DriveId, item: &ItemId) -> Result<Option<KnownItem>> {
        self.conn
            .prepare_cached(
                "SELECT kind, remote_path, local_path, remote_deleted FROM items
                 WHERE drive_id = ?1 AND item_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![drive.key(), item.key()], |r| {
                    Ok(KnownItem {
                        kind: ItemKind::parse(&r.get::<_, String>(0)?).unwrap_or(ItemKind::Other),
                        remote_path: r.get(1)?,
                        local_path: r.get(2)?,
                        remote_deleted: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Decide and apply a batch of staged changes in one transaction: `decide` sees the manifest *with* the
    /// changes applied so far (so a folder placed early in the batch is a known parent for the rest), returns
    /// `None` for a change that must wait for its parent. Returns what was applied. Upserted rows count as seen
    /// by the scope's latest crawl; a folder whose paths changed carries everything below it along.
    pub(crate) fn apply_staged_batch<F>(
        &self,
        drive: &DriveId,
        scope_key: &str,
        staged: Vec<StagedChange>,
        mut decide: F,
    ) -> Result<Vec<Resolution>>
    where
        F: FnMut(&Manifest, StagedChange) -> Result<Option<Resolution>>,
    {
        let err = sql_err(&self.path);
        let at = now();
        let at_ms = super::urls::now_ms();
        // Unchecked: `decide` reads through `self` inside the transaction and must see its writes.
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let crawl_id = latest_crawl(&tx, drive, scope_key).map_err(&err)?;
        let mut applied = Vec::new();
        for change in staged {
            let Some(resolution) = decide(self, change)? else {
                continue;
            };
            apply_change(&tx, drive, &resolution, crawl_id, (&at, at_ms)).map_err(&err)?;
            tx.prepare_cached("DELETE FROM delta_staging WHERE seq = ?1")
                .and_then(|mut s| s.execute([resolution.seq()]))
                .map_err(&err)?;
            applied.push(resolution);
        }
        tx.commit().map_err(&err)?;
        Ok(applied)
    }

    /// Take one page of a full listing in one transaction together with where paging goes on: items whose
    /// parent is already placed are stored at once (`decide` sees the manifest with the page's earlier items
    /// applied, so a folder and its contents can come in one page, and is told whether anything is staged),
    /// the others are staged for
    /// [`Manifest::apply_staged_batch`] once the listing is in. A killed listing resumes at the next page with
    /// nothing lost or stored twice; a later sighting of a staged item replaces the staged one. Returns what
    /// was applied.
    pub(crate) fn take_listing_page<F>(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        items: Vec<(NewItem, bool)>,
        cursor: Option<&str>,
        mut decide: F,
    ) -> Result<Vec<Resolution>>
    where
        F: FnMut(&Manifest, NewItem, bool, bool) -> Result<Arrival>,
    {
        let err = sql_err(&self.path);
        let at = now();
        let at_ms = super::urls::now_ms();
        // Unchecked: `decide` reads through `self` inside the transaction and must see its writes.
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let crawl_id = latest_crawl(&tx, drive, scope_key).map_err(&err)?;
        // Most listings send parents first and stage nothing: then no item needs unstaging.
        let mut staged_any: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM delta_staging WHERE drive_id = ?1 AND scope_key = ?2)",
            )
            .and_then(|mut s| s.query_row(params![drive.key(), scope_key], |r| r.get(0)))
            .map_err(&err)?;
        let mut applied = Vec::new();
        for (item, deleted) in items {
            let item_id = item.item_id.clone();
            match decide(self, item, deleted, staged_any)? {
                Arrival::Wait { item, deleted } => {
                    stage_one(&tx, drive, scope_key, &item, deleted, at_ms).map_err(&err)?;
                    staged_any = true;
                }
                arrival => {
                    if staged_any {
                        unstage_item(&tx, drive, scope_key, &item_id).map_err(&err)?;
                    }
                    if let Arrival::Apply(resolution) = arrival {
                        apply_change(&tx, drive, &resolution, crawl_id, (&at, at_ms))
                            .map_err(&err)?;
                        applied.push(resolution);
                    }
                }
            }
        }
        tx.execute(
            "UPDATE delta_state SET cursor = ?3 WHERE drive_id = ?1 AND scope_key = ?2",
            params![drive.key(), scope_key, cursor],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(applied)
    }

    /// A round is applied: keep its delta link for the next one, record when and how much, and drop what is
    /// still staged (items whose parent never became known: outside the scope).
    pub(crate) fn finish_delta_round(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        delta_link: &str,
        changes: u64,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE delta_state SET delta_link = ?3, cursor = NULL, last_applied_at = ?4, last_changes = ?5
             WHERE drive_id = ?1 AND scope_key = ?2",
            params![
                drive.key(),
                scope_key,
                delta_link,
                now(),
                i64::try_from(changes).unwrap_or(i64::MAX)
            ],
        )
        .map_err(&err)?;
        clear_staging(&tx, drive, scope_key).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// The root item of the scope's latest crawl.
    pub(crate) fn scope_root(&self, drive: &DriveId, scope_key: &str) -> Result<Option<ItemId>> {
        self.conn
            .query_row(
                "SELECT scope_root_id FROM crawls WHERE drive_id = ?1 AND scope_key = ?2 ORDER BY id DESC LIMIT 1",
                params![drive.key(), scope_key],
                |r| r.get(0).map(ItemId),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// When the scope's last full listing completed (RFC 3339, UTC), if one did; `None` too while a full
    /// listing is unfinished (it resumes, and completes as the new one).
    pub(crate) fn last_full_listing(
        &self,
        drive: &DriveId,
        scope_key: &str,
    ) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM crawls WHERE drive_id = ?1 AND scope_key = ?2
                                          AND completed_at IS NULL)
                        THEN NULL ELSE max(completed_at) END
                 FROM crawls WHERE drive_id = ?1 AND scope_key = ?2",
                params![drive.key(), scope_key],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Whether a full crawl of the scope was interrupted and is waiting to be resumed.
    pub(crate) fn has_unfinished_crawl(&self, drive: &DriveId, scope_key: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM crawls WHERE drive_id = ?1 AND scope_key = ?2 AND completed_at IS NULL)",
                params![drive.key(), scope_key],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// A downloaded file whose item was renamed or moved since: it is on disk at `from` and belongs at `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedFile {
    /// Row ID (page on with it).
    pub(crate) rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// Where it was written (relative to the destination).
    pub from: String,
    /// Where it belongs now.
    pub to: String,
}

impl Manifest {
    /// Up to `limit` downloaded files whose item moved since they were written, after `after_rowid`.
    pub(crate) fn moved_files_after(
        &self,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<MovedFile>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, drive_id, item_id, written_path, local_path FROM items
                 WHERE rowid > ?1 AND kind = 'file' AND state = 'done' AND written_path IS NOT NULL
                   AND written_path <> local_path AND remote_deleted = 0 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after_rowid, limit_i64(limit)], |r| {
            Ok(MovedFile {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                from: r.get(3)?,
                to: r.get(4)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Up to `limit` files deleted on the drive that are still where they were written (not yet moved to
    /// the trash), after `after_rowid`; `to` is empty (the caller picks the trash path).
    pub(crate) fn deleted_files_after(
        &self,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<MovedFile>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, drive_id, item_id, written_path FROM items
                 WHERE rowid > ?1 AND kind = 'file' AND remote_deleted = 1 AND written_path IS NOT NULL
                   AND substr(written_path, 1, 16) <> '.odbackup/trash/' ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after_rowid, limit_i64(limit)], |r| {
            Ok(MovedFile {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                from: r.get(3)?,
                to: String::new(),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Record where a file now is on disk.
    pub(crate) fn set_written_path(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        path: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE items SET written_path = ?3 WHERE drive_id = ?1 AND item_id = ?2",
                params![drive.key(), item.key(), path],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// Apply one resolved change inside the caller's transaction.
fn apply_change(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    change: &Resolution,
    crawl_id: i64,
    (at, at_ms): (&str, i64),
) -> rusqlite::Result<()> {
    match change {
        Resolution::Upsert {
            item,
            moved_from,
            list_contents,
            seq,
        } => {
            let local = upsert(tx, item, crawl_id, at)?;
            if item.listed_url.is_some() {
                // Applied as its page arrived: the URL came with it.
                super::urls::remember(tx, item, at_ms)?;
            } else if *seq > 0 {
                // Staged: its URL waited in the staging row, with the time it was listed.
                super::urls::remember_staged(tx, *seq)?;
            }
            if *list_contents {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO frontier (crawl_id, drive_id, folder_id, folder_path, folder_local_path,
                                                     next_link, folder_spelling)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
                )?
                .execute(params![
                    crawl_id,
                    drive.key(),
                    item.item_id.key(),
                    item.remote_path,
                    local,
                    item.served_id
                ])?;
            } else if item.kind == ItemKind::Folder {
                // Delta lists folders whole: it is as good as listed.
                tx.prepare_cached(
                    "UPDATE items SET state = 'done' WHERE drive_id = ?1 AND item_id = ?2 AND state = 'pending'",
                )?
                .execute(params![drive.key(), item.item_id.key()])?;
            }
            if let Some((old_remote, old_local)) = moved_from {
                move_descendants(
                    tx,
                    drive,
                    old_remote,
                    &item.remote_path,
                    old_local,
                    &local,
                    at,
                )?;
            }
        }
        Resolution::Delete { item_id, .. } => {
            tx.execute(
                "UPDATE items SET remote_deleted = 1, deleted_at = ?3, updated_at = ?3
                 WHERE drive_id = ?1 AND item_id = ?2 AND remote_deleted = 0",
                params![drive.key(), item_id.key(), at],
            )?;
            let path: Option<String> = tx
                .query_row(
                    "SELECT remote_path FROM items WHERE drive_id = ?1 AND item_id = ?2 AND kind = 'folder'",
                    params![drive.key(), item_id.key()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(path) = path {
                let prefix = format!("{}/", path.trim_end_matches('/'));
                tx.execute(
                    "UPDATE items SET remote_deleted = 1, deleted_at = ?3, updated_at = ?3
                     WHERE drive_id = ?1 AND remote_deleted = 0 AND substr(remote_path, 1, length(?2)) = ?2",
                    params![drive.key(), prefix, at],
                )?;
            }
        }
        Resolution::Drop { .. } => {}
    }
    Ok(())
}

impl Resolution {
    /// The staged change it resolves (0 for an item applied as its page arrived, never staged).
    pub(crate) fn seq(&self) -> i64 {
        match self {
            Resolution::Upsert { seq, .. }
            | Resolution::Delete { seq, .. }
            | Resolution::Drop { seq } => *seq,
        }
    }
}

/// The scope's latest crawl (0 if none): the one upserted rows count as seen by.
fn latest_crawl(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    scope_key: &str,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "SELECT coalesce(max(id), 0) FROM crawls WHERE drive_id = ?1 AND scope_key = ?2",
    )?
    .query_row(params![drive.key(), scope_key], |r| r.get(0))
}

/// Stage one listed change inside the caller's transaction, replacing an earlier sighting of the same item.
/// Its URL waits in the staging row's own column (the staged JSON leaves it out), with the time it was listed,
/// and moves to `listed_urls` when the change is applied.
fn stage_one(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    scope_key: &str,
    item: &NewItem,
    deleted: bool,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(item).unwrap_or_default();
    let url = (!deleted)
        .then(|| super::urls::worth_keeping(item))
        .flatten();
    unstage_item(tx, drive, scope_key, &item.item_id)?;
    tx.prepare_cached(
        "INSERT INTO delta_staging (drive_id, scope_key, item_id, parent_id, deleted, row_json, listed_url, listed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        drive.key(),
        scope_key,
        item.item_id.key(),
        item.parent_id.as_ref().map(ItemId::key),
        deleted,
        json,
        url.map(StoredUrl::expose),
        url.map(|_| at_ms),
    ])?;
    Ok(())
}

/// Forget a staged change of `item`, if any.
fn unstage_item(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    scope_key: &str,
    item: &ItemId,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM delta_staging WHERE drive_id = ?1 AND scope_key = ?2 AND item_id = ?3",
    )?
    .execute(params![drive.key(), scope_key, item.key()])
}

/// Forget what a scope has staged.
fn clear_staging(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    scope_key: &str,
) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM delta_staging WHERE drive_id = ?1 AND scope_key = ?2",
        params![drive.key(), scope_key],
    )
}

/// A folder moved from `old_remote` to `new_remote` (and locally from `old_local` to `new_local`): rewrite the
/// paths of everything below it. Local paths that are not under the folder's (the date layout) stay.
fn move_descendants(
    tx: &rusqlite::Transaction<'_>,
    drive: &DriveId,
    old_remote: &str,
    new_remote: &str,
    old_local: &str,
    new_local: &str,
    at: &str,
) -> rusqlite::Result<usize> {
    let old_prefix = format!("{}/", old_remote.trim_end_matches('/'));
    let new_prefix = format!("{}/", new_remote.trim_end_matches('/'));
    let old_local_prefix = format!("{old_local}/");
    let new_local_prefix = format!("{new_local}/");
    tx.execute(
        "UPDATE items SET
             remote_path = ?3 || substr(remote_path, length(?2) + 1),
             local_path = CASE WHEN substr(local_path, 1, length(?4)) = ?4
                               THEN ?5 || substr(local_path, length(?4) + 1) ELSE local_path END,
             local_key = CASE WHEN substr(local_path, 1, length(?4)) = ?4
                              THEN nullif(odbackup_name_key(?5 || substr(local_path, length(?4) + 1)),
                                          ?5 || substr(local_path, length(?4) + 1))
                              ELSE local_key END,
             updated_at = ?6
         WHERE drive_id = ?1 AND substr(remote_path, 1, length(?2)) = ?2",
        params![
            drive.key(),
            old_prefix,
            new_prefix,
            old_local_prefix,
            new_local_prefix,
            at
        ],
    )
}

#[cfg(test)]
mod tests {
    use crate::manifest::testutil::{drive, file, manifest};

    #[test]
    fn a_staged_change_that_cannot_be_read_back_is_handed_out_unreadable_not_left_out() {
        let (_dir, mut m) = manifest();
        let changes: Vec<_> = ["/a", "/b", "/c"]
            .iter()
            .map(|p| (file(p, 1, "Q"), false))
            .collect();
        m.stage_delta_page(&drive(), "root", &changes, None)
            .unwrap();
        // As another build might have left it.
        m.conn
            .execute_batch(
                "UPDATE delta_staging SET row_json = '{\"kind\": 7}' WHERE item_id LIKE '%b'",
            )
            .unwrap();
        let staged = m.staged_after(&drive(), "root", 0, 10).unwrap();
        let readable: Vec<bool> = staged.iter().map(|c| c.item.is_some()).collect();
        assert_eq!(readable, [true, false, true]);
        assert_eq!(m.staged_count(&drive(), "root").unwrap(), 3);
        assert_eq!(m.staged_count(&drive(), "other").unwrap(), 0);
    }
}
