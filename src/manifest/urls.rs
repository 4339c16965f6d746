//! Download URLs a listing returned (`@microsoft.graph.downloadUrl`), kept between the crawl that listed a
//! file and the transfer that fetches it, so the downloader can skip the `/content` round trip.
//!
//! Each URL is a short-lived credential: it lives in its own table (not in `items`, which reports and
//! `status` read), [`StoredUrl`] never shows it in `Debug`, a row goes when its file is done, and runs clear
//! the table as they end. A URL is only handed out while the item row still names the version it was
//! listed for, because a URL keeps serving the bytes it was minted for.
//!
//! Rows are keyed by the item's rowid (`migrations/0010_listed_urls_by_row.sql`): a first listing appends
//! both tables in the same order, where a key of its own was one more b-tree written at random. A change
//! staged before its item has a row keeps its URL in the staging row until it is applied.
//!
//! Knows nothing of HTTP: a URL is an opaque string, and whether it is still fresh is the downloader's call.

use rusqlite::params;

use super::items::{NewItem, StoredUrl};
use super::{Manifest, Result};
use crate::ids::{DriveId, ItemId};

/// A download URL from a listing, with when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUrl {
    /// The URL.
    pub(crate) url: StoredUrl,
    /// When it was stored, in Unix milliseconds (the listing came moments before).
    pub(crate) fetched_at_ms: i64,
}

/// The content version a listed URL belongs to: the eTag, else the cTag, else the quickXorHash (the SQL in
/// `downloads.rs` and here computes the same from the item row, as `COALESCE(etag, ctag, quick_xor)`).
pub(crate) fn url_version<'a>(
    etag: Option<&'a str>,
    ctag: Option<&'a str>,
    quick_xor: Option<&'a str>,
) -> Option<&'a str> {
    etag.or(ctag).or(quick_xor)
}

/// [`url_version`] of a listed item.
fn version_of(item: &NewItem) -> Option<&str> {
    url_version(
        item.etag.as_deref(),
        item.ctag.as_deref(),
        item.quick_xor.as_deref(),
    )
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The URL the listing gave `item`, if one is worth keeping: it came with a content version, and the item is
/// going to be downloaded (a credential is not kept for a file left out or skipped).
pub(super) fn worth_keeping(item: &NewItem) -> Option<&StoredUrl> {
    version_of(item)?;
    if item.excluded.is_some() || item.skip.is_some() {
        return None;
    }
    item.listed_url.as_ref()
}

/// Store the listing's URL of `item`, just upserted, if it came with one worth keeping, inside the caller's
/// transaction. Its row is looked up by the key the upsert has just visited (a lookup in cached pages; the
/// upsert's own `RETURNING` would cost a statement journal per row).
pub(super) fn remember(
    tx: &rusqlite::Transaction<'_>,
    item: &NewItem,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let (Some(url), Some(version)) = (worth_keeping(item), version_of(item)) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT OR REPLACE INTO listed_urls (item_row, version, url, fetched_at)
         SELECT rowid, ?3, ?4, ?5 FROM items WHERE drive_id = ?1 AND item_id = ?2",
    )?
    .execute(params![
        item.drive_id.key(),
        item.item_id.key(),
        version,
        url.expose(),
        at_ms
    ])?;
    Ok(())
}

/// Move the URL a staged change (`seq`) kept to its item, just upserted, under the version the row names,
/// unless the item, now placed, is left out by the filters or skipped (as [`worth_keeping`] judges a listed
/// one); the staging row itself is deleted by the caller.
pub(super) fn remember_staged(tx: &rusqlite::Transaction<'_>, seq: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO listed_urls (item_row, version, url, fetched_at)
         SELECT items.rowid, COALESCE(items.etag, items.ctag, items.quick_xor), s.listed_url, s.listed_at
         FROM delta_staging s JOIN items ON items.drive_id = s.drive_id AND items.item_id = s.item_id
         WHERE s.seq = ?1 AND s.listed_url IS NOT NULL AND s.listed_at IS NOT NULL
           AND COALESCE(items.etag, items.ctag, items.quick_xor) IS NOT NULL
           AND items.excluded IS NULL AND items.skip_reason IS NULL",
    )?
    .execute(params![seq])?;
    Ok(())
}

/// Forget the URL of one item (its file is done).
pub(super) fn forget(
    conn: &rusqlite::Connection,
    drive: &DriveId,
    item: &ItemId,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM listed_urls
         WHERE item_row = (SELECT rowid FROM items WHERE drive_id = ?1 AND item_id = ?2)",
    )?
    .execute(params![drive.key(), item.key()])?;
    Ok(())
}

/// A download URL a listing gave again for a file already in the manifest, with the content version it
/// serves (eTag, else cTag, else quickXorHash, as [`version_of`]).
#[derive(Debug, Clone)]
pub struct RelistedUrl {
    /// The item.
    pub(crate) item_id: ItemId,
    /// The version the URL serves.
    pub(crate) version: String,
    /// The URL.
    pub(crate) url: StoredUrl,
}

impl Manifest {
    /// Keep the URLs a new listing of their folder gave files of `drive`, stored at `at_ms`, each only while
    /// its row still names the version it serves (a URL keeps serving the bytes it was minted for). Returns
    /// how many were kept.
    pub(crate) fn store_relisted_urls(
        &mut self,
        drive: &DriveId,
        urls: &[RelistedUrl],
        at_ms: i64,
    ) -> Result<u64> {
        let err = super::sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let mut kept = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO listed_urls (item_row, version, url, fetched_at)
                     SELECT rowid, ?3, ?4, ?5 FROM items
                     WHERE drive_id = ?1 AND item_id = ?2 AND kind = 'file'
                       AND COALESCE(etag, ctag, quick_xor) = ?3",
                )
                .map_err(&err)?;
            for relisted in urls {
                kept += insert
                    .execute(params![
                        drive.key(),
                        relisted.item_id.key(),
                        relisted.version,
                        relisted.url.expose(),
                        at_ms
                    ])
                    .map_err(&err)? as u64;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(kept)
    }

    /// Drop stored listing URLs: all of them (`older_than_ms` = `None`), or those stored before that time.
    /// Returns how many went.
    pub(crate) fn clear_listed_urls(&mut self, older_than_ms: Option<i64>) -> Result<u64> {
        let removed = match older_than_ms {
            None => self.conn.execute("DELETE FROM listed_urls", []),
            Some(t) => self
                .conn
                .execute("DELETE FROM listed_urls WHERE fetched_at < ?1", params![t]),
        }
        .map_err(|e| self.err(e))?;
        Ok(removed as u64)
    }

    /// How many listing URLs are stored.
    #[cfg(test)]
    pub(crate) fn listed_url_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM listed_urls", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}
