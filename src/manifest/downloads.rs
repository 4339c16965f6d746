//! The downloader's side of the manifest: which files to fetch (paged by row ID, so rows added by a running
//! crawl are picked up), and the outcome of each transfer.
//!
//! Knows nothing of HTTP or of the local file system: local paths are strings the downloader chose.

use rusqlite::params;

use super::crawl::limit_i64;
use super::items::StoredUrl;
use super::items::{FailureClass, MediaKind, SkipClass, to_u64};
use super::urls::ListedUrl;
use super::{Manifest, Result, now, sql_err};
use crate::ids::{DriveId, ItemId};

/// A file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    /// Row ID (the downloader pages by it).
    pub(crate) rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// Its folder's ID (none for an item without a parent row).
    pub(crate) parent_id: Option<ItemId>,
    /// Its name.
    pub name: String,
    /// Its remote path.
    pub remote_path: String,
    /// Listed size (0 when [`Self::size_known`] is false).
    pub size: u64,
    /// Whether the listing gave a size at all: business drives have listed negative sizes
    /// (onedrive-api-docs #1053), which are stored as unknown. Such a file is fetched in one stream, with no
    /// length taken from the listing, and judged by its hash.
    pub(crate) size_known: bool,
    /// Listed quickXorHash.
    pub(crate) quick_xor: Option<String>,
    /// Listed SHA-1.
    pub(crate) sha1: Option<String>,
    /// eTag.
    pub(crate) etag: Option<String>,
    /// cTag.
    pub(crate) ctag: Option<String>,
    /// Modification time.
    pub(crate) modified_at: Option<String>,
    /// Taken time.
    pub(crate) taken_at: Option<String>,
    /// Media kind.
    pub media: MediaKind,
    /// Relative local path.
    pub(crate) local_path: Option<String>,
    /// Attempts so far (earlier runs).
    pub(crate) attempts: u32,
    /// Where an earlier version was written, if one was (the file changed on the drive since).
    pub(crate) written_path: Option<String>,
    /// Whether the service flagged it as malware (picked only when the user asked to fetch such files).
    pub(crate) malware: bool,
    /// The download URL its listing gave for this very version, if one is stored (it may be stale: the
    /// downloader judges).
    pub(crate) listed_url: Option<ListedUrl>,
}

impl DownloadJob {
    /// The size the listing gave, if it gave a usable one.
    pub(crate) fn listed_size(&self) -> Option<u64> {
        self.size_known.then_some(self.size)
    }

    /// The version of the item this job fetches, as its row held it when the job was handed out.
    pub fn version(&self) -> JobVersion {
        JobVersion {
            etag: self.etag.clone(),
            ctag: self.ctag.clone(),
            quick_xor: self.quick_xor.clone(),
            sha1: self.sha1.clone(),
            size: self.listed_size(),
        }
    }

    /// The content version a listing URL must serve to be used for this job (see [`super::url_version`]).
    pub(crate) fn url_version(&self) -> Option<&str> {
        super::url_version(
            self.etag.as_deref(),
            self.ctag.as_deref(),
            self.quick_xor.as_deref(),
        )
    }
}

/// The version of an item a transfer fetched: what its row said when the job was handed out. An outcome is
/// recorded only while the row still says so, because a listing of the same run may have moved the row on
/// to a newer version meanwhile (the transfer then holds the old bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobVersion {
    /// eTag.
    pub(crate) etag: Option<String>,
    /// cTag.
    pub(crate) ctag: Option<String>,
    /// Listed quickXorHash.
    pub(crate) quick_xor: Option<String>,
    /// Listed SHA-1.
    pub(crate) sha1: Option<String>,
    /// Listed size (`None`: the listing gave no usable one).
    pub size: Option<u64>,
}

/// Whether an outcome was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The row still named the version fetched (or newer metadata of the same content: a rename, say).
    Applied,
    /// The row has moved on to another version: the outcome was dropped, and the row stays as the newer
    /// listing left it (pending, to be fetched).
    Stale,
}

/// A file recorded as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneFile {
    /// Row ID.
    pub(crate) rowid: i64,
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// Relative local path.
    pub(crate) local_path: String,
    /// Size on disk (the listed size, unless a caveat recorded another).
    pub size: u64,
}

/// A successful download.
#[derive(Debug, Clone)]
pub(crate) struct DoneRecord {
    /// Relative local path it was written to.
    pub(crate) local_path: String,
    /// `quickxor`, `sha1` or `size_only`.
    pub(crate) verification: String,
    /// Attempts it took in this run (added to the total, so survived retries stay on record).
    pub(crate) attempts: u32,
}

/// Why a file was kept although it could not be verified against the listing: a known service quirk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaveatClass {
    /// An iPhone Live Photo: the service serves the still image only, shorter than the listed size.
    LivePhoto,
    /// An Office/PDF/HTML file the service rewrote after upload (`SharePoint` metadata): its size or hash
    /// differs from the listing, and it came the same twice.
    Rewritten,
    /// The listing gave no hash (zero-byte files, some old business files): checked by size only.
    NoHash,
    /// Flagged as malware by the service, fetched anyway because the user asked for it.
    MalwareOverride,
    /// The bytes have the listed hash but not the listed size: the listing's size is wrong (old personal
    /// JPG/PDF/DOCX items, onedrive-api-docs #492), and the file is kept as served.
    SizeMetadata,
}

impl CaveatClass {
    /// The name stored in the manifest and shown in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            CaveatClass::LivePhoto => "live_photo",
            CaveatClass::Rewritten => "rewritten_by_service",
            CaveatClass::NoHash => "no_hash",
            CaveatClass::MalwareOverride => "malware_override",
            CaveatClass::SizeMetadata => "size_metadata",
        }
    }
}

/// How a file that could not be verified in full was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caveat {
    /// Which quirk.
    pub class: CaveatClass,
    /// What exactly, for the user.
    pub reason: String,
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
    pub(crate) attempts: u32,
}

/// The outcome of one transfer, for `Manifest::apply_outcomes` (the tests' batch recorder).
#[cfg(test)]
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Downloaded (or adopted from disk) and verified.
    Done {
        /// Its drive.
        drive_id: DriveId,
        /// Its ID.
        item_id: ItemId,
        /// What was recorded.
        record: DoneRecord,
    },
    /// Failed this run.
    Failed {
        /// Its drive.
        drive_id: DriveId,
        /// Its ID.
        item_id: ItemId,
        /// Why.
        record: FailureRecord,
    },
}

/// A done file. Guarded by the version fetched (`?7` = 1 to guard; `?8`..`?12` = eTag, cTag, quickXorHash,
/// SHA-1, size): the row must still name that version, or list the same content under newer metadata (same
/// size and listed hash: a rename changes the eTag, not the bytes). `written_path` says where the bytes are;
/// `local_path` stays the row's (a rename or move the same run listed is then carried out on disk by the
/// downloader, as for any renamed file).
const MARK_DONE: &str =
    "UPDATE items SET state = 'done', written_path = ?3, verification = ?4, downloaded_at = ?5,
         attempts = attempts + ?6, error_class = NULL, http_status = NULL, error_message = NULL,
         failed_at = NULL, updated_at = ?5, caveat_class = NULL, caveat = NULL, local_size = NULL,
         linked_drive_id = NULL, linked_item_id = NULL
     WHERE drive_id = ?1 AND item_id = ?2
       AND (?7 = 0
            OR (etag IS ?8 AND ctag IS ?9 AND quick_xor IS ?10)
            OR (size IS ?12 AND ((?10 IS NOT NULL AND quick_xor = ?10)
                                OR (?10 IS NULL AND ?11 IS NOT NULL AND upper(sha1) = upper(?11)))))";

/// A failed file, guarded as [`MARK_DONE`] but by the exact version only: a failure of an old version says
/// nothing of the new one.
const MARK_FAILED: &str =
    "UPDATE items SET state = 'failed', attempts = attempts + ?3, error_class = ?4,
         http_status = ?5, error_message = ?6, failed_at = ?7, updated_at = ?7
     WHERE drive_id = ?1 AND item_id = ?2
       AND (?8 = 0 OR (etag IS ?9 AND ctag IS ?10 AND quick_xor IS ?11))";

fn mark_done(
    conn: &rusqlite::Connection,
    drive: &DriveId,
    item: &ItemId,
    version: Option<&JobVersion>,
    done: &DoneRecord,
    at: &str,
) -> rusqlite::Result<Recorded> {
    let changed = conn.prepare_cached(MARK_DONE)?.execute(params![
        drive.key(),
        item.key(),
        done.local_path,
        done.verification,
        at,
        done.attempts,
        version.is_some(),
        version.and_then(|v| v.etag.as_deref()),
        version.and_then(|v| v.ctag.as_deref()),
        version.and_then(|v| v.quick_xor.as_deref()),
        version.and_then(|v| v.sha1.as_deref()),
        version
            .and_then(|v| v.size)
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    ])?;
    if changed == 0 {
        return Ok(Recorded::Stale);
    }
    // Its listing URL has served its purpose; a credential is not kept longer than needed.
    super::urls::forget(conn, drive, item)?;
    Ok(Recorded::Applied)
}

fn mark_failed(
    conn: &rusqlite::Connection,
    drive: &DriveId,
    item: &ItemId,
    version: Option<&JobVersion>,
    failure: &FailureRecord,
    at: &str,
) -> rusqlite::Result<Recorded> {
    let changed = conn.prepare_cached(MARK_FAILED)?.execute(params![
        drive.key(),
        item.key(),
        failure.attempts,
        failure.class.as_str(),
        failure.http_status,
        failure.message,
        at,
        version.is_some(),
        version.and_then(|v| v.etag.as_deref()),
        version.and_then(|v| v.ctag.as_deref()),
        version.and_then(|v| v.quick_xor.as_deref()),
    ])?;
    Ok(if changed == 0 {
        Recorded::Stale
    } else {
        Recorded::Applied
    })
}

impl Manifest {
    /// Up to `limit` files to download after `after_rowid`, in row order: pending or failed, not deleted
    /// remotely, not excluded by the filters, and, when `with_malware`, the files skipped as malware-flagged
    /// too. Page on with the last job's `rowid`.
    pub(crate) fn downloadable_after(
        &self,
        after_rowid: i64,
        limit: usize,
        with_malware: bool,
    ) -> Result<Vec<DownloadJob>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT items.rowid, items.drive_id, items.item_id, name, remote_path, size, quick_xor, sha1, etag, ctag,
                        modified_at, taken_at, media, local_path, attempts,
                        skip_class IS ?4, written_path, u.url, u.fetched_at, parent_id
                 FROM items LEFT JOIN listed_urls u ON u.item_row = items.rowid
                   AND u.version = COALESCE(items.etag, items.ctag, items.quick_xor)
                 WHERE items.rowid > ?1 AND kind = 'file' AND remote_deleted = 0 AND excluded IS NULL
                   AND (state IN ('pending', 'failed')
                        OR (?3 AND state = 'skipped' AND skip_class = ?4))
                 ORDER BY items.rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![
                after_rowid,
                limit_i64(limit),
                with_malware,
                SkipClass::Malware.as_str()
            ],
            |r| {
                Ok(DownloadJob {
                    rowid: r.get(0)?,
                    drive_id: DriveId(r.get(1)?),
                    item_id: ItemId(r.get(2)?),
                    parent_id: r.get::<_, Option<String>>(19)?.map(ItemId),
                    name: r.get(3)?,
                    remote_path: r.get(4)?,
                    size: to_u64(r.get(5)?),
                    size_known: r.get::<_, Option<i64>>(5)?.is_some_and(|n| n >= 0),
                    quick_xor: r.get(6)?,
                    sha1: r.get(7)?,
                    etag: r.get(8)?,
                    ctag: r.get(9)?,
                    modified_at: r.get(10)?,
                    taken_at: r.get(11)?,
                    media: MediaKind::parse(&r.get::<_, String>(12)?).unwrap_or(MediaKind::Other),
                    local_path: r.get(13)?,
                    attempts: u32::try_from(to_u64(r.get(14)?)).unwrap_or(u32::MAX),
                    malware: r.get(15)?,
                    written_path: r.get(16)?,
                    listed_url: match (r.get::<_, Option<String>>(17)?, r.get(18)?) {
                        (Some(url), Some(fetched_at_ms)) => Some(ListedUrl {
                            url: StoredUrl::new(url),
                            fetched_at_ms,
                        }),
                        _ => None,
                    },
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Run `writes` as one transaction (one WAL commit for what may be many rows): all of them or, when one
    /// fails, none. `writes` must not open a transaction of its own.
    pub(crate) fn in_transaction<T>(
        &mut self,
        writes: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        match writes(self) {
            Ok(value) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
                Ok(value)
            }
            Err(err) => {
                // The error says what failed; a failed rollback leaves SQLite to undo the transaction.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }

    /// Record a verified file: state `done`, error fields cleared, this run's attempts added. Unguarded:
    /// a transfer records with [`Self::record_done`], which checks the version it fetched.
    #[cfg(test)]
    pub(crate) fn mark_done(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        done: &DoneRecord,
    ) -> Result<()> {
        mark_done(&self.conn, drive, item, None, done, &now())
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Record a verified file fetched as `version`, if its row still names that version or the same content
    /// under newer metadata; otherwise nothing changes and the outcome is [`Recorded::Stale`].
    pub(crate) fn record_done(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        version: &JobVersion,
        done: &DoneRecord,
    ) -> Result<Recorded> {
        mark_done(&self.conn, drive, item, Some(version), done, &now()).map_err(|e| self.err(e))
    }

    /// Record a failure of `version`, if its row still names exactly that version; otherwise nothing changes
    /// (the newer version is still to be fetched) and the outcome is [`Recorded::Stale`].
    pub(crate) fn record_failed(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        version: &JobVersion,
        failure: &FailureRecord,
    ) -> Result<Recorded> {
        mark_failed(&self.conn, drive, item, Some(version), failure, &now())
            .map_err(|e| self.err(e))
    }

    /// Record how a done file was accepted despite a quirk, and its size on disk. Call after
    /// [`Self::mark_done`], which clears both.
    pub(crate) fn set_caveat(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        caveat: &Caveat,
        local_size: u64,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE items SET caveat_class = ?3, caveat = ?4, local_size = ?5
                 WHERE drive_id = ?1 AND item_id = ?2 AND state = 'done'",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    drive.key(),
                    item.key(),
                    caveat.class.as_str(),
                    caveat.reason,
                    i64::try_from(local_size).unwrap_or(i64::MAX)
                ])
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Record a failure: state `failed`, with its class, status and message; this run's attempts added.
    #[cfg(test)]
    pub(crate) fn mark_failed(
        &mut self,
        drive: &DriveId,
        item: &ItemId,
        failure: &FailureRecord,
    ) -> Result<()> {
        mark_failed(&self.conn, drive, item, None, failure, &now())
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Record many outcomes in one transaction (one WAL commit instead of one per file, which matters for
    /// thousands of small files). Same effect as calling [`Self::mark_done`] / [`Self::mark_failed`] in order.
    #[cfg(test)]
    pub(crate) fn apply_outcomes(&mut self, outcomes: &[Outcome]) -> Result<()> {
        let err = sql_err(&self.path);
        let at = now();
        let tx = self.conn.transaction().map_err(&err)?;
        for outcome in outcomes {
            match outcome {
                Outcome::Done {
                    drive_id,
                    item_id,
                    record,
                } => mark_done(&tx, drive_id, item_id, None, record, &at),
                Outcome::Failed {
                    drive_id,
                    item_id,
                    record,
                } => mark_failed(&tx, drive_id, item_id, None, record, &at),
            }
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Up to `limit` files recorded as done after `after_rowid`, in row order (to check they are still on
    /// disk). Files flagged as deleted remotely are left out, and so are files moved on the drive but not yet
    /// on disk (their file is where it was written, and the downloader moves it).
    pub(crate) fn done_files_after(&self, after_rowid: i64, limit: usize) -> Result<Vec<DoneFile>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, drive_id, item_id, local_path, COALESCE(local_size, size) FROM items WHERE rowid > ?1 AND kind = 'file'
                 AND state = 'done' AND remote_deleted = 0 AND (written_path IS NULL OR written_path = local_path)
                 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after_rowid, limit_i64(limit)], |r| {
            Ok(DoneFile {
                rowid: r.get(0)?,
                drive_id: DriveId(r.get(1)?),
                item_id: ItemId(r.get(2)?),
                local_path: r.get(3)?,
                size: to_u64(r.get(4)?),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Put done files back to `pending` (they were missing or changed on disk), in one transaction. Rows in
    /// another state are left alone.
    pub(crate) fn reset_to_pending(&mut self, keys: &[(DriveId, ItemId)]) -> Result<()> {
        let err = sql_err(&self.path);
        let at = now();
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE items SET state = 'pending', updated_at = ?3
                     WHERE drive_id = ?1 AND item_id = ?2 AND state = 'done'",
                )
                .map_err(&err)?;
            for (drive, item) in keys {
                stmt.execute(params![drive.key(), item.key(), at])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Up to `limit` folders (row ID, relative local path) after `after_rowid`, to mirror empty ones too.
    pub(crate) fn folders_after(
        &self,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, local_path FROM items WHERE rowid > ?1 AND kind = 'folder' AND state != 'skipped'
                 AND remote_deleted = 0 AND excluded IS NULL ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after_rowid, limit_i64(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::testutil::{drive, file, folder, manifest};
    use crate::manifest::{PageCommit, Skip};

    fn seed(m: &mut Manifest, items: Vec<crate::manifest::NewItem>) -> i64 {
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items,
                next_link: None,
            },
        )
        .unwrap();
        m.finish_crawl(crawl).unwrap();
        crawl
    }

    fn done(path: &str) -> Outcome {
        Outcome::Done {
            drive_id: drive(),
            item_id: ItemId::from(path),
            record: DoneRecord {
                local_path: path.trim_start_matches('/').to_owned(),
                verification: "quickxor".to_owned(),
                attempts: 1,
            },
        }
    }

    fn with_url(mut item: crate::manifest::NewItem, url: &str) -> crate::manifest::NewItem {
        item.listed_url = Some(StoredUrl::new(url.to_owned()));
        item
    }

    fn listed_urls(m: &Manifest) -> Vec<(String, Option<String>)> {
        m.downloadable_after(0, 100, false)
            .unwrap()
            .into_iter()
            .map(|j| {
                let url = j.listed_url.map(|l| l.url.expose().to_owned());
                (j.remote_path, url)
            })
            .collect()
    }

    fn list(m: &mut Manifest, crawl: i64, items: Vec<crate::manifest::NewItem>) {
        let page = PageCommit {
            drive_id: drive(),
            folder_id: ItemId::from("/"),
            items,
            next_link: Some("more".to_owned()),
        };
        m.commit_page(crawl, &page).unwrap();
    }

    #[test]
    fn a_listing_url_goes_with_its_job_while_the_version_matches_and_until_the_file_is_done() {
        let (_dir, mut m) = manifest();
        let a = with_url(file("/a.jpg", 1, "qa"), "https://host/a?tempauth=A");
        let b = file("/b.jpg", 1, "qb");
        seed(&mut m, vec![a, b]);
        assert_eq!(
            listed_urls(&m),
            vec![
                (
                    "/a.jpg".to_owned(),
                    Some("https://host/a?tempauth=A".to_owned())
                ),
                ("/b.jpg".to_owned(), None)
            ]
        );
        assert!(!format!("{:?}", m.downloadable_after(0, 1, false).unwrap()).contains("tempauth"));

        // Listed again as another version, without a URL: the stored one served the old bytes.
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        let mut changed = file("/a.jpg", 2, "qa2");
        changed.etag = Some("e2".to_owned());
        list(&mut m, crawl, vec![changed.clone()]);
        assert_eq!(listed_urls(&m)[0].1, None);
        list(
            &mut m,
            crawl,
            vec![with_url(changed, "https://host/a?tempauth=A2")],
        );
        assert_eq!(
            listed_urls(&m)[0].1.as_deref(),
            Some("https://host/a?tempauth=A2")
        );

        m.apply_outcomes(&[done("/a.jpg")]).unwrap();
        assert_eq!(
            m.listed_url_count().unwrap(),
            0,
            "a done file's URL is forgotten"
        );
    }

    #[test]
    fn outcomes_are_recorded_only_against_the_version_that_was_fetched() {
        let (_dir, mut m) = manifest();
        seed(&mut m, vec![file("/a", 1, "Q1")]);
        let old = m.downloadable_after(0, 10, false).unwrap()[0].version();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        // The same run lists a new version while the old one is being fetched.
        let mut changed = file("/a", 1, "Q2");
        changed.etag = Some("e2".to_owned());
        changed.ctag = Some("c2".to_owned());
        list(&mut m, crawl, vec![changed.clone()]);
        let record = DoneRecord {
            local_path: "a".to_owned(),
            verification: "quickxor".to_owned(),
            attempts: 1,
        };
        let a = ItemId::from("/a");
        assert_eq!(
            m.record_done(&drive(), &a, &old, &record).unwrap(),
            Recorded::Stale
        );
        let failure = FailureRecord {
            class: FailureClass::Network,
            http_status: None,
            message: "reset".to_owned(),
            attempts: 1,
        };
        assert_eq!(
            m.record_failed(&drive(), &a, &old, &failure).unwrap(),
            Recorded::Stale
        );
        let jobs = m.downloadable_after(0, 10, false).unwrap();
        assert_eq!(jobs.len(), 1, "the new version is still to fetch");
        assert_eq!(jobs[0].quick_xor.as_deref(), Some("Q2"));
        assert_eq!(jobs[0].attempts, 0);
        assert!(m.failures().unwrap().is_empty());

        // Renamed while the new version is fetched: new eTag and path, same content. The bytes are right.
        let fetched = jobs[0].version();
        let mut renamed = changed;
        renamed.etag = Some("e3".to_owned());
        renamed.name = "b".to_owned();
        renamed.remote_path = "/b".to_owned();
        renamed.local_path = "b".to_owned();
        list(&mut m, crawl, vec![renamed]);
        assert_eq!(
            m.record_done(&drive(), &a, &fetched, &record).unwrap(),
            Recorded::Applied
        );
        let (state, local, written): (String, String, String) = m
            .conn
            .query_row(
                "SELECT state, local_path, written_path FROM items WHERE item_id = '/a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (state.as_str(), local.as_str(), written.as_str()),
            ("done", "b", "a"),
            "done where it was written; the rename is carried out like any other"
        );
        assert_eq!(m.moved_files_after(0, 10).unwrap().len(), 1);
    }

    #[test]
    fn clearing_listing_urls_takes_all_or_only_the_old_ones() {
        let (_dir, mut m) = manifest();
        seed(
            &mut m,
            vec![
                with_url(file("/a.jpg", 1, "qa"), "https://host/a"),
                with_url(file("/b.jpg", 1, "qb"), "https://host/b"),
            ],
        );
        m.conn
            .execute(
                "UPDATE listed_urls SET fetched_at = 5
                 WHERE item_row = (SELECT rowid FROM items WHERE item_id = '/a.jpg')",
                [],
            )
            .unwrap();
        assert_eq!(m.clear_listed_urls(Some(10)).unwrap(), 1);
        assert_eq!(m.listed_url_count().unwrap(), 1);
        assert_eq!(m.clear_listed_urls(None).unwrap(), 1);
        assert_eq!(m.listed_url_count().unwrap(), 0);
    }

    fn failed(path: &str, class: FailureClass) -> Outcome {
        Outcome::Failed {
            drive_id: drive(),
            item_id: ItemId::from(path),
            record: FailureRecord {
                class,
                http_status: Some(503),
                message: "service unavailable".to_owned(),
                attempts: 2,
            },
        }
    }

    #[test]
    fn downloadable_files_page_by_rowid_and_leave_out_the_rest() {
        let (_dir, mut m) = manifest();
        let mut items: Vec<_> = (0..25)
            .map(|i| file(&format!("/f{i:02}"), i, "Q"))
            .collect();
        items.push(folder("/dir"));
        let mut skipped = file("/skip", 1, "Q");
        skipped.skip = Some(Skip::new(SkipClass::Malware, "malware"));
        items.push(skipped);
        seed(&mut m, items);
        m.apply_outcomes(&[done("/f00"), failed("/f01", FailureClass::Network)])
            .unwrap();

        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let jobs = m.downloadable_after(after, 10, false).unwrap();
            let Some(last) = jobs.last() else { break };
            assert!(jobs.len() <= 10);
            assert!(jobs.windows(2).all(|w| w[0].rowid < w[1].rowid));
            after = last.rowid;
            seen.extend(jobs);
        }
        let paths: Vec<&str> = seen.iter().map(|j| j.remote_path.as_str()).collect();
        // f00 is done; the folder and the skipped file are not downloadable; failed f01 is retried.
        assert_eq!(paths.len(), 24);
        assert_eq!(paths[0], "/f01");
        assert_eq!(seen[0].attempts, 2);
        assert_eq!(seen[1].size, 2);
        assert_eq!(seen[1].quick_xor.as_deref(), Some("Q"));
        assert_eq!(seen[1].local_path.as_deref(), Some("f02"));
        assert_eq!(seen[1].media, MediaKind::Other);
    }

    #[test]
    fn a_file_flagged_deleted_is_not_downloaded() {
        let (_dir, mut m) = manifest();
        seed(&mut m, vec![file("/a", 1, "Q"), file("/b", 1, "Q")]);
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items: vec![file("/a", 1, "Q")],
                next_link: None,
            },
        )
        .unwrap();
        assert_eq!(m.finish_crawl(crawl).unwrap(), 1);
        let jobs = m.downloadable_after(0, 100, false).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].remote_path, "/a");
    }

    #[test]
    fn outcomes_record_state_errors_and_attempts() {
        let (_dir, mut m) = manifest();
        seed(&mut m, vec![file("/a", 1, "Q"), file("/b", 1, "Q")]);
        m.apply_outcomes(&[failed("/a", FailureClass::Throttled)])
            .unwrap();
        m.mark_failed(
            &drive(),
            &ItemId::from("/a"),
            &FailureRecord {
                class: FailureClass::Timeout,
                http_status: None,
                message: "no bytes for 60 s".into(),
                attempts: 1,
            },
        )
        .unwrap();
        let failures = m.failures().unwrap();
        assert_eq!(failures.len(), 1);
        let f = &failures[0];
        assert_eq!(
            (
                f.remote_path.as_str(),
                f.class.as_str(),
                f.http_status,
                f.attempts
            ),
            ("/a", "timeout", None, 3)
        );
        assert!(f.failed_at.is_some());

        // Success clears the error and keeps the attempt count growing.
        m.apply_outcomes(&[done("/a"), done("/b")]).unwrap();
        assert!(m.failures().unwrap().is_empty());
        let row: (String, Option<String>, Option<String>, i64, String) = m
            .conn
            .query_row(
                "SELECT state, error_class, downloaded_at, attempts, verification FROM items WHERE item_id = '/a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(row.0, "done");
        assert_eq!(row.1, None);
        assert!(row.2.is_some());
        assert_eq!((row.3, row.4.as_str()), (4, "quickxor"));
        assert!(m.downloadable_after(0, 10, false).unwrap().is_empty());
    }

    #[test]
    fn done_files_missing_on_disk_go_back_to_pending() {
        let (_dir, mut m) = manifest();
        seed(
            &mut m,
            vec![file("/a", 5, "Q"), file("/b", 6, "Q"), file("/c", 7, "Q")],
        );
        m.apply_outcomes(&[done("/a"), done("/b"), failed("/c", FailureClass::Disk)])
            .unwrap();
        let done_files = m.done_files_after(0, 1).unwrap();
        assert_eq!(done_files.len(), 1);
        assert_eq!(
            (done_files[0].local_path.as_str(), done_files[0].size),
            ("a", 5)
        );
        let rest = m.done_files_after(done_files[0].rowid, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].item_id.as_str(), "/b");

        // Resetting a failed row does nothing; a done one becomes pending again.
        m.reset_to_pending(&[(drive(), ItemId::from("/b")), (drive(), ItemId::from("/c"))])
            .unwrap();
        let pending: Vec<String> = m
            .downloadable_after(0, 10, false)
            .unwrap()
            .into_iter()
            .map(|j| j.remote_path)
            .collect();
        assert_eq!(pending, ["/b", "/c"]);
        assert_eq!(m.failures().unwrap().len(), 1);
    }

    #[test]
    fn folders_are_listed_for_mirroring() {
        let (_dir, mut m) = manifest();
        seed(&mut m, vec![folder("/A"), file("/x", 1, "Q"), folder("/B")]);
        let folders = m.folders_after(0, 10).unwrap();
        let paths: Vec<&str> = folders.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(paths, ["", "A", "B"]);
    }
}
