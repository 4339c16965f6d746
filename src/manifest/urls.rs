//! Download URLs a listing returned (`@microsoft.graph.downloadUrl`), kept between the crawl that listed a
//! file and the transfer that fetches it, so the downloader can skip the `/content` round trip.
//!
//! Each URL is a short-lived credential: it lives in its own table (not in `items`, which reports and
//! `status` read), [`StoredUrl`] never shows it in `Debug`, a row goes when its file is done, and runs clear
//! the table as they end. A URL is only handed out while the item row still names the version it was
//! listed for, because a URL keeps serving the bytes it was minted for.
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
/// `downloads.rs` computes the same from the item row).
fn version_of(item: &NewItem) -> Option<&str> {
    item.etag
        .as_deref()
        .or(item.ctag.as_deref())
        .or(item.quick_xor.as_deref())
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Store the listing's URL of `item`, if it came with one, inside the caller's transaction.
pub(super) fn remember(
    tx: &rusqlite::Transaction<'_>,
    item: &NewItem,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let (Some(url), Some(version)) = (&item.listed_url, version_of(item)) else {
        return Ok(());
    };
    if item.excluded.is_some() || item.skip.is_some() {
        // Not going to be downloaded: no reason to keep a credential for it.
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO listed_urls (drive_id, item_id, version, url, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
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

/// Forget the URL of one item (its file is done).
pub(super) fn forget(
    conn: &rusqlite::Connection,
    drive: &DriveId,
    item: &ItemId,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM listed_urls WHERE drive_id = ?1 AND item_id = ?2")?
        .execute(params![drive.key(), item.key()])?;
    Ok(())
}

impl Manifest {
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
