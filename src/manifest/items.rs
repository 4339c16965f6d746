//! Item rows: the crawl's writes (pages committed with their frontier update) and the downloader's reads and
//! outcome writes.

use rusqlite::{OptionalExtension as _, params};

use super::{Manifest, Result, now};
use crate::ids::{DriveId, ItemId};

/// What kind of drive item a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A file with content.
    File,
    /// A folder (the drive root included).
    Folder,
    /// A package such as a `OneNote` notebook: no content to download.
    Package,
    /// A shortcut to an item in another drive.
    Remote,
    /// Neither file nor folder.
    Other,
}

impl ItemKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::File => "file",
            ItemKind::Folder => "folder",
            ItemKind::Package => "package",
            ItemKind::Remote => "remote",
            ItemKind::Other => "other",
        }
    }
}

/// Photo, video or anything else (by facet, else by extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A photo.
    Photo,
    /// A video.
    Video,
    /// Anything else.
    Other,
}

impl MediaKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Other => "other",
        }
    }

    /// Parse the stored spelling (anything unknown is `Other`).
    pub fn parse(s: &str) -> Self {
        match s {
            "photo" => MediaKind::Photo,
            "video" => MediaKind::Video,
            _ => MediaKind::Other,
        }
    }
}

/// Why a file failed; stored, listed by `failures`, and used to decide what a re-run retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// An HTTP status not covered by a more specific class.
    HttpStatus,
    /// Connection refused, reset or dropped.
    Network,
    /// No answer, or no bytes for too long.
    Timeout,
    /// The bytes do not match the listed hash.
    HashMismatch,
    /// The number of bytes does not match the listed size.
    SizeMismatch,
    /// Writing locally failed.
    Disk,
    /// The local path is unusable.
    Path,
    /// The token was refused.
    Auth,
    /// The service kept throttling beyond the retry budget.
    Throttled,
    /// The item is gone.
    NotFound,
    /// The service refused access.
    AccessDenied,
    /// The service flagged the file as malware.
    Malware,
    /// A known service quirk.
    RemoteQuirk,
    /// Anything else.
    Other,
}

impl FailureClass {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::HttpStatus => "http_status",
            FailureClass::Network => "network",
            FailureClass::Timeout => "timeout",
            FailureClass::HashMismatch => "hash_mismatch",
            FailureClass::SizeMismatch => "size_mismatch",
            FailureClass::Disk => "disk",
            FailureClass::Path => "path",
            FailureClass::Auth => "auth",
            FailureClass::Throttled => "throttled",
            FailureClass::NotFound => "not_found",
            FailureClass::AccessDenied => "access_denied",
            FailureClass::Malware => "malware",
            FailureClass::RemoteQuirk => "remote_quirk",
            FailureClass::Other => "other",
        }
    }
}

/// A drive this manifest backs up.
#[derive(Debug, Clone)]
pub struct DriveRecord {
    /// Its ID.
    pub drive_id: DriveId,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: String,
    /// The owner's display name.
    pub owner: Option<String>,
    /// The root item's ID, when known.
    pub root_item_id: Option<ItemId>,
}

/// An item as listed, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub item_id: ItemId,
    /// Its parent's ID (none for the drive root).
    pub parent_id: Option<ItemId>,
    /// Its name as the server gave it.
    pub name: String,
    /// `/a/b.jpg` (`/` for the drive root).
    pub remote_path: String,
    /// Relative path under the destination, made of safe local names.
    pub local_path: String,
    /// What kind of item.
    pub kind: ItemKind,
    /// Size in bytes.
    pub size: Option<u64>,
    /// quickXorHash, base64.
    pub quick_xor: Option<String>,
    /// SHA-1, hex.
    pub sha1: Option<String>,
    /// SHA-256, hex.
    pub sha256: Option<String>,
    /// eTag.
    pub etag: Option<String>,
    /// cTag.
    pub ctag: Option<String>,
    /// MIME type.
    pub mime_type: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: Option<String>,
    /// Modification time (RFC 3339) — becomes the local mtime.
    pub modified_at: Option<String>,
    /// When the photo was taken (RFC 3339).
    pub taken_at: Option<String>,
    /// Photo, video or other.
    pub media: MediaKind,
    /// Why it is not downloaded (its state becomes `skipped`).
    pub skip_reason: Option<String>,
    /// `driveId/itemId` of a remote item's target.
    pub remote_ref: Option<String>,
}

/// How `begin_crawl` found things.
#[derive(Debug, Clone, Copy)]
pub struct CrawlStart {
    /// The crawl's ID.
    pub crawl_id: i64,
    /// Whether an interrupted crawl is being resumed.
    pub resumed: bool,
}

/// A folder still to list.
#[derive(Debug, Clone)]
pub struct FrontierEntry {
    /// The folder.
    pub folder_id: ItemId,
    /// Its remote path.
    pub folder_path: String,
    /// Its relative local path.
    pub folder_local_path: String,
    /// Where its listing stopped, if it is partly listed.
    pub next_link: Option<String>,
}

/// One listed page, committed with its frontier update in one transaction.
#[derive(Debug, Clone)]
pub struct PageCommit {
    /// The drive.
    pub drive_id: DriveId,
    /// The folder being listed.
    pub folder_id: ItemId,
    /// The page's items.
    pub items: Vec<NewItem>,
    /// The next page's link; `None` when this was the last page.
    pub next_link: Option<String>,
}

/// A file to download.
#[derive(Debug, Clone)]
pub struct DownloadJob {
    /// Row ID (the downloader pages by it).
    pub rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub item_id: ItemId,
    /// Its name.
    pub name: String,
    /// Its remote path.
    pub remote_path: String,
    /// Listed size.
    pub size: u64,
    /// Listed quickXorHash.
    pub quick_xor: Option<String>,
    /// Listed SHA-1.
    pub sha1: Option<String>,
    /// eTag.
    pub etag: Option<String>,
    /// cTag.
    pub ctag: Option<String>,
    /// Modification time.
    pub modified_at: Option<String>,
    /// Taken time.
    pub taken_at: Option<String>,
    /// Media kind.
    pub media: MediaKind,
    /// Relative local path.
    pub local_path: Option<String>,
    /// Attempts so far (earlier runs).
    pub attempts: u32,
}

/// A file recorded as done.
#[derive(Debug, Clone)]
pub struct DoneFile {
    /// Row ID.
    pub rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub item_id: ItemId,
    /// Relative local path.
    pub local_path: String,
    /// Size.
    pub size: u64,
}

/// A successful download.
#[derive(Debug, Clone)]
pub struct DoneRecord {
    /// Relative local path it was written to.
    pub local_path: String,
    /// `quickxor`, `sha1` or `size_only`.
    pub verification: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Attempts it took in this run (added to the total, so survived retries stay on record).
    pub attempts: u32,
}

/// A failed download.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// Its class.
    pub class: FailureClass,
    /// The HTTP status, if any.
    pub http_status: Option<u16>,
    /// What happened.
    pub message: String,
    /// Attempts made in this run (added to the total).
    pub attempts: u32,
}

/// The upsert of one listed item. On conflict it keeps the download state unless the content changed (new
/// size, hash, or — with no hash — cTag/eTag), and a row seen again is no longer flagged as deleted.
const UPSERT: &str = "
INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, size, quick_xor, sha1,
                   sha256, etag, ctag, mime_type, created_at, modified_at, taken_at, media, state, skip_reason,
                   remote_ref, last_seen_crawl, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        CASE WHEN ?19 IS NULL THEN 'pending' ELSE 'skipped' END, ?19, ?20, ?21, ?22)
ON CONFLICT (drive_id, item_id) DO UPDATE SET
    parent_id = excluded.parent_id, name = excluded.name, remote_path = excluded.remote_path,
    local_path = excluded.local_path, kind = excluded.kind, size = excluded.size,
    quick_xor = excluded.quick_xor, sha1 = excluded.sha1, sha256 = excluded.sha256, etag = excluded.etag,
    ctag = excluded.ctag, mime_type = excluded.mime_type, created_at = excluded.created_at,
    modified_at = excluded.modified_at, taken_at = excluded.taken_at, media = excluded.media,
    skip_reason = excluded.skip_reason, remote_ref = excluded.remote_ref, remote_deleted = 0,
    deleted_at = NULL, last_seen_crawl = excluded.last_seen_crawl, updated_at = excluded.updated_at,
    state = CASE
        WHEN excluded.state = 'skipped' THEN 'skipped'
        WHEN items.state = 'skipped' THEN 'pending'
        WHEN items.kind IS NOT excluded.kind
          OR items.size IS NOT excluded.size
          OR items.quick_xor IS NOT excluded.quick_xor
          OR items.sha1 IS NOT excluded.sha1
          OR (excluded.quick_xor IS NULL AND excluded.sha1 IS NULL
              AND coalesce(items.ctag, items.etag) IS NOT coalesce(excluded.ctag, excluded.etag))
        THEN 'pending'
        ELSE items.state END,
    attempts = CASE WHEN items.size IS NOT excluded.size OR items.quick_xor IS NOT excluded.quick_xor
                    THEN 0 ELSE items.attempts END";

const DOWNLOAD_COLUMNS: &str =
    "rowid, drive_id, item_id, name, remote_path, size, quick_xor, sha1, etag, ctag,
    modified_at, taken_at, media, local_path, attempts";

fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl Manifest {
    /// Record (or refresh) a drive.
    pub fn upsert_drive(&mut self, drive: &DriveRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO drives (drive_id, drive_type, owner, root_item_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (drive_id) DO UPDATE SET drive_type = excluded.drive_type, owner = excluded.owner,
                     root_item_id = coalesce(excluded.root_item_id, drives.root_item_id), updated_at = excluded.updated_at",
                params![
                    drive.drive_id.as_str(),
                    drive.drive_type,
                    drive.owner,
                    drive.root_item_id.as_ref().map(ItemId::as_str),
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Start a crawl of `scope_key` on `drive` rooted at `root`, or resume the unfinished one.
    pub fn begin_crawl(
        &mut self,
        drive: &DriveId,
        scope_key: &str,
        root: &NewItem,
    ) -> Result<CrawlStart> {
        let path = self.path.clone();
        let err = |source| super::ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let unfinished: Option<i64> = tx
            .query_row(
                "SELECT id FROM crawls WHERE drive_id = ?1 AND scope_key = ?2 AND completed_at IS NULL
                 ORDER BY id DESC LIMIT 1",
                params![drive.as_str(), scope_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if let Some(crawl_id) = unfinished {
            return Ok(CrawlStart {
                crawl_id,
                resumed: true,
            });
        }
        tx.execute(
            "INSERT INTO crawls (drive_id, scope_key, scope_root_id, scope_path, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![drive.as_str(), scope_key, root.item_id.as_str(), root.remote_path, now()],
        )
        .map_err(err)?;
        let crawl_id = tx.last_insert_rowid();
        upsert(&tx, root, crawl_id).map_err(err)?;
        tx.execute(
            "INSERT OR REPLACE INTO frontier (crawl_id, drive_id, folder_id, folder_path, folder_local_path, next_link)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            params![crawl_id, drive.as_str(), root.item_id.as_str(), root.remote_path, root.local_path],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(CrawlStart {
            crawl_id,
            resumed: false,
        })
    }

    /// Up to `limit` folders still to list, in a stable order.
    pub fn frontier(&self, crawl_id: i64, limit: usize) -> Result<Vec<FrontierEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT folder_id, folder_path, folder_local_path, next_link FROM frontier WHERE crawl_id = ?1
                 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;

        stmt.query_map(params![crawl_id, limit as i64], |r| {
            Ok(FrontierEntry {
                folder_id: ItemId(r.get(0)?),
                folder_path: r.get(1)?,
                folder_local_path: r.get(2)?,
                next_link: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Commit one listed page: its items, new subfolders into the frontier, and the folder's cursor (or its
    /// removal from the frontier on the last page), all in one transaction.
    pub fn commit_page(&mut self, crawl_id: i64, page: &PageCommit) -> Result<()> {
        let path = self.path.clone();
        let err = |source| super::ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut enqueue = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO frontier (crawl_id, drive_id, folder_id, folder_path, folder_local_path, next_link)
                     SELECT ?1, ?2, ?3, ?4, ?5, NULL
                     WHERE NOT EXISTS (SELECT 1 FROM items WHERE drive_id = ?2 AND item_id = ?3 AND listed_crawl = ?1)",
                )
                .map_err(err)?;
            for item in &page.items {
                upsert(&tx, item, crawl_id).map_err(err)?;
                if item.kind == ItemKind::Folder {
                    enqueue
                        .execute(params![
                            crawl_id,
                            item.drive_id.as_str(),
                            item.item_id.as_str(),
                            item.remote_path,
                            item.local_path
                        ])
                        .map_err(err)?;
                }
            }
        }
        if let Some(link) = &page.next_link {
            tx.execute(
                "UPDATE frontier SET next_link = ?3 WHERE crawl_id = ?1 AND folder_id = ?2",
                params![crawl_id, page.folder_id.as_str(), link],
            )
            .map_err(err)?;
        } else {
            tx.execute(
                "DELETE FROM frontier WHERE crawl_id = ?1 AND folder_id = ?2",
                params![crawl_id, page.folder_id.as_str()],
            )
            .map_err(err)?;
            tx.execute(
                "UPDATE items SET listed_crawl = ?1, state = 'done' WHERE drive_id = ?2 AND item_id = ?3",
                params![crawl_id, page.drive_id.as_str(), page.folder_id.as_str()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// A folder whose listing the service refused: drop it from the frontier and record why. What was known
    /// under it is not flagged as deleted by this crawl.
    pub fn refuse_folder(
        &mut self,
        crawl_id: i64,
        drive: &DriveId,
        folder: &ItemId,
        reason: &str,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |source| super::ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM frontier WHERE crawl_id = ?1 AND folder_id = ?2",
            params![crawl_id, folder.as_str()],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE items SET listed_crawl = ?1, state = 'skipped', skip_reason = ?4, updated_at = ?5
             WHERE drive_id = ?2 AND item_id = ?3",
            params![crawl_id, drive.as_str(), folder.as_str(), reason, now()],
        )
        .map_err(err)?;
        let folder_path: String = tx
            .query_row(
                "SELECT remote_path FROM items WHERE drive_id = ?1 AND item_id = ?2",
                params![drive.as_str(), folder.as_str()],
                |r| r.get(0),
            )
            .map_err(err)?;
        let prefix = format!("{}/", folder_path.trim_end_matches('/'));
        tx.execute(
            "UPDATE items SET last_seen_crawl = ?1
             WHERE drive_id = ?2 AND substr(remote_path, 1, length(?3)) = ?3",
            params![crawl_id, drive.as_str(), prefix],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Mark a crawl complete and flag as deleted every item of its scope it did not see. Returns how many.
    pub fn finish_crawl(&mut self, crawl_id: i64) -> Result<u64> {
        let path = self.path.clone();
        let err = |source| super::ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let (drive, scope_path): (String, String) = tx
            .query_row(
                "SELECT drive_id, scope_path FROM crawls WHERE id = ?1",
                [crawl_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let prefix = if scope_path == "/" {
            "/".to_owned()
        } else {
            format!("{scope_path}/")
        };
        let flagged = tx
            .execute(
                "UPDATE items SET remote_deleted = 1, deleted_at = ?4
                 WHERE drive_id = ?1 AND remote_deleted = 0 AND coalesce(last_seen_crawl, 0) < ?2
                   AND (remote_path = ?3 OR substr(remote_path, 1, length(?5)) = ?5)",
                params![drive, crawl_id, scope_path, now(), prefix],
            )
            .map_err(err)?;
        tx.execute(
            "UPDATE crawls SET completed_at = ?2 WHERE id = ?1",
            params![crawl_id, now()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(flagged as u64)
    }

    /// Files to download after `after_rowid`: pending or failed, not deleted remotely, in row order.
    pub fn downloadable_after(&self, after_rowid: i64, limit: usize) -> Result<Vec<DownloadJob>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DOWNLOAD_COLUMNS} FROM items WHERE rowid > ?1 AND kind = 'file'
                 AND state IN ('pending', 'failed') AND remote_deleted = 0 ORDER BY rowid LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;

        stmt.query_map(params![after_rowid, limit as i64], |r| {
            Ok(DownloadJob {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                name: r.get(3)?,
                remote_path: r.get(4)?,
                size: r.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
                quick_xor: r.get(6)?,
                sha1: r.get(7)?,
                etag: r.get(8)?,
                ctag: r.get(9)?,
                modified_at: r.get(10)?,
                taken_at: r.get(11)?,
                media: MediaKind::parse(&r.get::<_, String>(12)?),
                local_path: r.get(13)?,
                attempts: r.get::<_, i64>(14)?.max(0) as u32,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Record a verified file.
    pub fn mark_done(&mut self, drive: &DriveId, item: &ItemId, done: &DoneRecord) -> Result<()> {
        let at = now();
        self.conn
            .prepare_cached(
                "UPDATE items SET state = 'done', local_path = ?3, verification = ?4, downloaded_at = ?5,
                     attempts = attempts + ?6, error_class = NULL, http_status = NULL, error_message = NULL,
                     failed_at = NULL, updated_at = ?5
                 WHERE drive_id = ?1 AND item_id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    drive.as_str(),
                    item.as_str(),
                    done.local_path,
                    done.verification,
                    at,
                    done.attempts
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Record a failure.
    pub fn mark_failed(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        failure: &FailureRecord,
    ) -> Result<()> {
        let at = now();
        self.conn
            .prepare_cached(
                "UPDATE items SET state = 'failed', attempts = attempts + ?3, error_class = ?4, http_status = ?5,
                     error_message = ?6, failed_at = ?7, updated_at = ?7
                 WHERE drive_id = ?1 AND item_id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    drive.as_str(),
                    item.as_str(),
                    failure.attempts,
                    failure.class.as_str(),
                    failure.http_status,
                    failure.message,
                    at
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Files recorded as done after `after_rowid`, in row order (to check they are still on disk).
    pub fn done_files_after(&self, after_rowid: i64, limit: usize) -> Result<Vec<DoneFile>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, drive_id, item_id, local_path, size FROM items WHERE rowid > ?1 AND kind = 'file'
                 AND state = 'done' AND remote_deleted = 0 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;

        stmt.query_map(params![after_rowid, limit as i64], |r| {
            Ok(DoneFile {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                local_path: r.get(3)?,
                size: r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Put done files back to pending (they were missing or changed on disk).
    pub fn reset_to_pending(&mut self, keys: &[(DriveId, ItemId)]) -> Result<()> {
        let path = self.path.clone();
        let err = |source| super::ManifestError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE items SET state = 'pending', updated_at = ?3 WHERE drive_id = ?1 AND item_id = ?2 AND state = 'done'",
                )
                .map_err(err)?;
            let at = now();
            for (drive, item) in keys {
                stmt.execute(params![drive.as_str(), item.as_str(), at])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Folders (row ID, relative local path) after `after_rowid`, to mirror empty ones too.
    pub fn folders_after(&self, after_rowid: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, local_path FROM items WHERE rowid > ?1 AND kind = 'folder' AND state != 'skipped'
                 AND remote_deleted = 0 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;

        stmt.query_map(params![after_rowid, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Start recording a run.
    pub fn begin_run(&mut self, command: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (command, started_at) VALUES (?1, ?2)",
                params![command, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Finish recording a run.
    pub fn finish_run(&mut self, run_id: i64, outcome: &str, summary_json: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3, summary_json = ?4 WHERE id = ?1",
                params![run_id, now(), outcome, summary_json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn upsert(tx: &rusqlite::Transaction<'_>, item: &NewItem, crawl_id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(UPSERT)?.execute(params![
        item.drive_id.as_str(),
        item.item_id.as_str(),
        item.parent_id.as_ref().map(ItemId::as_str),
        item.name,
        item.remote_path,
        item.local_path,
        item.kind.as_str(),
        to_i64(item.size),
        item.quick_xor,
        item.sha1,
        item.sha256,
        item.etag,
        item.ctag,
        item.mime_type,
        item.created_at,
        item.modified_at,
        item.taken_at,
        item.media.as_str(),
        item.skip_reason,
        item.remote_ref,
        crawl_id,
        now(),
    ])?;
    Ok(())
}
