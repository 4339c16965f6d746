//! Item rows: the stored enums, the row the crawler hands in ([`NewItem`]), and the one upsert every listed
//! item goes through, with its state rules.
//!
//! Knows nothing of Graph's JSON: the crawler fills [`NewItem`] from its own types.

use std::sync::LazyLock;

use rusqlite::params;

use super::{Manifest, Result, now};
use crate::ids::{DriveId, ItemId};
use crate::localpath::NameRules;

/// Declares a stored enum: its variants, their stored spellings, `as_str`, `parse` and `ALL`.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored spelling (stable: it is in users' manifests and `--json` output).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parse the stored spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} {text:?}", stringify!($name)))
                })
            }
        }
    };
}

stored_enum! {
    /// What kind of drive item a row is.
    ItemKind {
        /// A file with content.
        File => "file",
        /// A folder (the drive root included).
        Folder => "folder",
        /// A package such as a `OneNote` notebook: no content to download.
        Package => "package",
        /// A shortcut to an item in another drive.
        Remote => "remote",
        /// Neither file nor folder.
        Other => "other",
    }
}

stored_enum! {
    /// Photo, video or anything else (by facet, else by extension).
    MediaKind {
        /// A photo.
        Photo => "photo",
        /// A video.
        Video => "video",
        /// Anything else.
        Other => "other",
    }
}

stored_enum! {
    /// Why a file failed; stored, listed by `failures`, and used to decide what a re-run retries.
    FailureClass {
        /// An HTTP status not covered by a more specific class.
        HttpStatus => "http_status",
        /// Connection refused, reset or dropped.
        Network => "network",
        /// No answer, or no bytes for too long.
        Timeout => "timeout",
        /// The bytes do not match the listed hash.
        HashMismatch => "hash_mismatch",
        /// The number of bytes does not match the listed size.
        SizeMismatch => "size_mismatch",
        /// Writing locally failed.
        Disk => "disk",
        /// The local path is unusable.
        Path => "path",
        /// The token was refused.
        Auth => "auth",
        /// The service kept throttling beyond the retry budget.
        Throttled => "throttled",
        /// The item is gone.
        NotFound => "not_found",
        /// The service refused access.
        AccessDenied => "access_denied",
        /// The drive is full (a write answered 507 Insufficient Storage).
        Quota => "quota",
        /// The service flagged the file as malware.
        Malware => "malware",
        /// A known service quirk.
        RemoteQuirk => "remote_quirk",
        /// Anything else.
        Other => "other",
    }
}

stored_enum! {
    /// Why an item is not downloaded, as a class the code can ask about (the stored reason beside it is for
    /// people, and its wording may change).
    SkipClass {
        /// A package with no content to download (other than a `OneNote` notebook, which is backed up).
        Package => "package",
        /// A file the service flagged as malware and refuses to serve (fetched only when allowed).
        Malware => "malware",
        /// Neither a file nor a folder: nothing to fetch.
        NoContent => "no_content",
        /// A setting leaves it out (shared items, `OneNote` notebooks).
        LeftOut => "left_out",
        /// A folder whose listing was refused, unreadable or stopped: listed again next run.
        ListingFailed => "listing_failed",
        /// Not accessible to this app: the Personal Vault, a shared item that is no longer shared.
        Inaccessible => "inaccessible",
        /// A shortcut whose target is backed up elsewhere already: not copied twice.
        Duplicate => "duplicate",
        /// A shortcut whose listing names no target.
        NoTarget => "no_target",
    }
}

/// Why an item is not downloaded: its class, for the code, and the reason, for people (`status`, `--json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skip {
    /// What kind of reason.
    pub class: SkipClass,
    /// The reason in words.
    pub reason: String,
}

impl Skip {
    /// A skip of `class`, said as `reason`.
    pub fn new(class: SkipClass, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
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
    pub(crate) root_item_id: Option<ItemId>,
}

/// A pre-authenticated download URL as the manifest keeps it. Its query is a credential, so `Debug` shows
/// nothing of it; [`StoredUrl::expose`] is for handing it to the HTTP client.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUrl(String);

impl StoredUrl {
    /// Wrap a URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The URL, secret included: for the request only, never for a log or a message.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredUrl(***)")
    }
}

/// An item as listed, ready to be stored (and, between the pages of a delta round, staged as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewItem {
    /// Its drive.
    pub drive_id: DriveId,
    /// Its ID.
    pub(crate) item_id: ItemId,
    /// A folder's ID as the service spelled it, when that is not how `item_id` is spelled (see [`crate::ids`]):
    /// what a listing of it sends back. (Files are never addressed by a listing.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) served_id: Option<String>,
    /// Its parent's ID (none for the drive root).
    pub(crate) parent_id: Option<ItemId>,
    /// Its name as the server gave it.
    pub name: String,
    /// `/a/b.jpg` (`/` for the drive root).
    pub remote_path: String,
    /// Relative path under the destination, made of safe local names.
    pub(crate) local_path: String,
    /// What kind of item.
    pub kind: ItemKind,
    /// Size in bytes.
    pub size: Option<u64>,
    /// quickXorHash, base64.
    pub(crate) quick_xor: Option<String>,
    /// SHA-1, hex.
    pub(crate) sha1: Option<String>,
    /// SHA-256, hex.
    pub(crate) sha256: Option<String>,
    /// eTag.
    pub(crate) etag: Option<String>,
    /// cTag.
    pub(crate) ctag: Option<String>,
    /// MIME type.
    pub(crate) mime_type: Option<String>,
    /// Creation time (RFC 3339).
    pub(crate) created_at: Option<String>,
    /// Modification time (RFC 3339) — becomes the local mtime.
    pub(crate) modified_at: Option<String>,
    /// When the photo was taken (RFC 3339).
    pub(crate) taken_at: Option<String>,
    /// Photo, video or other.
    pub media: MediaKind,
    /// Why it is not downloaded (its state becomes `skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) skip: Option<Skip>,
    /// `driveId/itemId` of a remote item's target.
    pub(crate) remote_ref: Option<String>,
    /// Why the run's filters leave it out; `None` when it is wanted.
    pub excluded: Option<String>,
    /// Where it goes instead of `local_path` when another item already claims that path (compared without
    /// regard to ASCII case). `None`: `local_path` is used as is.
    pub(crate) local_path_on_clash: Option<String>,
    /// The download URL the listing gave (`@microsoft.graph.downloadUrl`), stored apart by the page commit
    /// so the downloader can skip `/content` while it is fresh. Never serialized: staged delta rows are JSON
    /// at rest, and a credential has no business there.
    #[serde(skip)]
    pub(crate) listed_url: Option<StoredUrl>,
    /// The package type of a folder that is a package on the drive (`oneNote`: a notebook, backed up as a
    /// folder of its section files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) package: Option<String>,
}

/// Whether a listed row describes different content from the stored one (SQL over `items` and `excluded`).
///
/// The kind differs, or the strongest hash *both* sides have differs (quickXor, then SHA-1 in any case); with
/// no common hash, the size, then the cTag (content-only) if both have one, else the eTag. Comparing only hashes
/// both sides carry matters: `OneDrive` Personal dropped `sha1Hash` in 2023, and a hash disappearing from the
/// listing must not send every finished file back to the download queue. A common hash decides alone: both
/// hashes cover the length (quickXor folds it in), while the listed size has changed under unchanged bytes
/// (onedrive-api-docs #492; rclone calls `OneDrive`'s size readings unreliable), and a size reading that flaps
/// must not fetch the file again on every full listing.
const CONTENT_CHANGED: &str = "(items.kind IS NOT excluded.kind OR CASE
        WHEN items.quick_xor IS NOT NULL AND excluded.quick_xor IS NOT NULL
            THEN items.quick_xor <> excluded.quick_xor
        WHEN items.sha1 IS NOT NULL AND excluded.sha1 IS NOT NULL
            THEN upper(items.sha1) <> upper(excluded.sha1)
        WHEN items.size IS NOT excluded.size THEN 1
        WHEN items.ctag IS NOT NULL AND excluded.ctag IS NOT NULL
            THEN items.ctag <> excluded.ctag
        ELSE items.etag IS NOT excluded.etag END)";

/// When a done file is listed with another size while its content, by hash, did not change (see [`CONTENT_CHANGED`]):
/// it stays done, keeps the length it has on disk (`local_size`, unless the listing now agrees with it) and says
/// why under the `size_metadata` caveat, as a file fetched with a wrong listed size does.
fn size_flapped() -> String {
    format!("(items.state = 'done' AND items.size IS NOT excluded.size AND NOT {CONTENT_CHANGED})")
}

/// The upsert of one listed item (`?21` = the crawl, `?22` = now, `?23` = why filters exclude it).
///
/// State rules on conflict: a skip reason makes it `skipped`; a skipped item listed without one becomes
/// `pending`; a `done` or `failed` non-folder whose content changed goes back to `pending` with its attempts
/// reset; otherwise the state is kept (a folder's `done` means "listed", which only the crawl changes).
/// Seen again, it is no longer flagged as deleted.
fn upsert_sql() -> String {
    let size_flapped = size_flapped();
    format!(
        "INSERT INTO items (drive_id, item_id, parent_id, name, remote_path, local_path, kind, size, quick_xor,
                   sha1, sha256, etag, ctag, mime_type, created_at, modified_at, taken_at, media, state,
                   skip_reason, remote_ref, last_seen_crawl, updated_at, excluded, local_key, package, skip_class)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        CASE WHEN ?19 IS NULL THEN 'pending' ELSE 'skipped' END, ?19, ?20, ?21, ?22, ?23,
        nullif(odbackup_name_key(?6), ?6), ?24, ?25)
ON CONFLICT (drive_id, item_id) DO UPDATE SET
    state = CASE
        WHEN excluded.skip_reason IS NOT NULL THEN 'skipped'
        WHEN items.state = 'skipped' THEN 'pending'
        WHEN items.state IN ('done', 'failed') AND excluded.kind <> 'folder' AND {CONTENT_CHANGED}
            THEN 'pending'
        ELSE items.state END,
    attempts = CASE
        WHEN items.state IN ('done', 'failed') AND excluded.kind <> 'folder' AND {CONTENT_CHANGED} THEN 0
        ELSE items.attempts END,
    local_size = CASE WHEN {size_flapped}
        THEN nullif(coalesce(items.local_size, items.size), excluded.size)
        ELSE items.local_size END,
    caveat_class = CASE WHEN {size_flapped} THEN
            CASE WHEN coalesce(items.local_size, items.size) IS NOT excluded.size
                THEN coalesce(items.caveat_class, 'size_metadata')
            WHEN items.caveat_class = 'size_metadata' THEN NULL
            ELSE items.caveat_class END
        ELSE items.caveat_class END,
    caveat = CASE WHEN {size_flapped} THEN
            CASE WHEN coalesce(items.local_size, items.size) IS NOT excluded.size
                THEN coalesce(items.caveat, CASE WHEN excluded.size IS NULL
                    THEN printf('the listing now gives no usable size; the file has %d bytes and the listed \
                        hash: it is kept as it is', coalesce(items.local_size, items.size))
                    ELSE printf('the listing now says %d bytes but the file has %d and the \
                        listed hash: the listed size is wrong, the file is kept as it is', excluded.size,
                        coalesce(items.local_size, items.size)) END)
            WHEN items.caveat_class = 'size_metadata' THEN NULL
            ELSE items.caveat END
        ELSE items.caveat END,
    parent_id = excluded.parent_id, name = excluded.name, remote_path = excluded.remote_path,
    local_path = excluded.local_path, kind = excluded.kind, size = excluded.size,
    quick_xor = excluded.quick_xor, sha1 = excluded.sha1, sha256 = excluded.sha256, etag = excluded.etag,
    ctag = excluded.ctag, mime_type = excluded.mime_type, created_at = excluded.created_at,
    modified_at = excluded.modified_at, taken_at = excluded.taken_at, media = excluded.media,
    skip_reason = excluded.skip_reason, remote_ref = excluded.remote_ref, remote_deleted = 0,
    deleted_at = NULL, last_seen_crawl = excluded.last_seen_crawl, updated_at = excluded.updated_at,
    excluded = excluded.excluded, local_key = excluded.local_key, package = excluded.package,
    skip_class = excluded.skip_class"
    )
}

/// Clamp a size into `SQLite`'s integer range.
pub(super) fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A total of `size` that saturates at `i64::MAX` rather than failing the query: `SQLite`'s `sum()` raises
/// "integer overflow" past it, and sizes come from the service, which can list one near 2^63. `total()` adds
/// in floating point, exact up to 2^53 bytes (8 PiB); the cast clamps what is above to the largest integer
/// (<https://www.sqlite.org/lang_aggfunc.html#sumunc>).
pub(super) const SUM_SIZE: &str = "CAST(min(total(size), 9223372036854775807) AS INTEGER)";
/// [`SUM_SIZE`] over the bytes a done file has on disk (`local_size`, else its listed `size`).
pub(super) const SUM_LOCAL_SIZE: &str =
    "CAST(min(total(coalesce(local_size, size, 0)), 9223372036854775807) AS INTEGER)";
/// [`SUM_SIZE`] over the `size` of the rows aliased `f`.
pub(super) const SUM_F_SIZE: &str = "CAST(min(total(f.size), 9223372036854775807) AS INTEGER)";

/// A stored non-negative integer (a size, a count) back as `u64`; a NULL or a negative value is 0.
pub(super) fn to_u64(n: Option<i64>) -> u64 {
    n.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Upsert one item inside the caller's transaction, as seen by `crawl_id` at time `at`. Returns the local
/// path it was given: `local_path`, or `local_path_on_clash` when another item already claims that path.
pub(super) fn upsert(
    tx: &rusqlite::Transaction<'_>,
    item: &NewItem,
    crawl_id: i64,
    at: &str,
) -> rusqlite::Result<String> {
    // Built once; `prepare_cached` then finds the parsed statement by its text.
    static SQL: LazyLock<String> = LazyLock::new(upsert_sql);
    let local_path = claim_local_path(tx, item)?;
    tx.prepare_cached(&SQL)?.execute(params![
        item.drive_id.key(),
        item.item_id.key(),
        item.parent_id.as_ref().map(ItemId::key),
        item.name,
        item.remote_path,
        local_path,
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
        item.skip.as_ref().map(|s| s.reason.as_str()),
        item.remote_ref,
        crawl_id,
        at,
        item.excluded,
        item.package,
        item.skip.as_ref().map(|s| s.class.as_str()),
    ])?;
    Ok(local_path)
}

/// The first item to claim a local path keeps it; a later one whose path is the same file on the destination
/// (compared by `local_key`: as its file system compares names, see [`NameRules`]) takes its alternative, which
/// carries a suffix derived from its own ID, so the choice is the same on every run. An item that already holds
/// its alternative keeps it, even once the first path is free (a file is not moved for looks). A row of an item
/// deleted remotely holds no claim: a file deleted and uploaded again under its name (a new item ID, as phone
/// apps and the web's "replace" do) takes its name back, and the deleted one's kept copy goes to the trash
/// when the new one is placed (its row follows it there, see `move_written_paths`).
///
/// The alternative can itself be taken: a drive may hold an item *named* like another's alternative
/// (`IMG~1c9e0f.JPG`, listed first). Then the item takes the first free of `IMG~1c9e0f-2.JPG`, `-3`, …: each
/// path is claimed by one live item, whatever names a drive holds.
fn claim_local_path(tx: &rusqlite::Transaction<'_>, item: &NewItem) -> rusqlite::Result<String> {
    let Some(alternative) = &item.local_path_on_clash else {
        return Ok(item.local_path.clone());
    };
    let (drive, id) = (item.drive_id.key(), item.item_id.key());
    // One query in the common case (the first path free, or held by this item already).
    let (first_taken, held): (bool, Option<String>) = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM items WHERE coalesce(local_key, local_path) = odbackup_name_key(?1)
                              AND NOT (drive_id = ?2 AND item_id = ?3) AND remote_deleted = 0),
                    (SELECT local_path FROM items WHERE drive_id = ?2 AND item_id = ?3)",
        )?
        .query_row(params![item.local_path, drive, id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if !first_taken && held.as_deref().is_none_or(|h| h == item.local_path) {
        return Ok(item.local_path.clone());
    }
    let mut taken_stmt = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM items WHERE coalesce(local_key, local_path) = odbackup_name_key(?1)
                          AND NOT (drive_id = ?2 AND item_id = ?3) AND remote_deleted = 0)",
    )?;
    let mut taken = |path: &str| -> rusqlite::Result<bool> {
        taken_stmt.query_row(params![path, drive, id], |r| r.get(0))
    };
    // An alternative already held is kept, even once the first path is free, as long as it is still its own.
    if let Some(held) = held.filter(|h| *h != item.local_path) {
        let held_is_ours = held == *alternative
            || (2..=MAX_ALTERNATIVES).any(|n| further_alternative(alternative, n) == held);
        if held_is_ours && !taken(&held)? {
            return Ok(held);
        }
    }
    if !first_taken {
        return Ok(item.local_path.clone());
    }
    if !taken(alternative)? {
        return Ok(alternative.clone());
    }
    for n in 2..=MAX_ALTERNATIVES {
        let further = further_alternative(alternative, n);
        if !taken(&further)? {
            return Ok(further);
        }
    }
    // Only a drive holding thousands of items named for this one's alternatives gets here.
    Ok(further_alternative(alternative, MAX_ALTERNATIVES + 1))
}

/// How many numbered alternatives a clash may try (see [`claim_local_path`]).
const MAX_ALTERNATIVES: u32 = 1_000;

/// The `n`th numbered variant of the alternative local path `alternative`: `-n` before its extension.
fn further_alternative(alternative: &str, n: u32) -> String {
    let (folder, name) = alternative.rsplit_once('/').unwrap_or(("", alternative));
    crate::localpath::child_path(
        folder,
        &crate::localpath::with_suffix(name, &format!("-{n}")),
    )
}

/// Make `odbackup_name_key(path)` compute local-path keys by `rules` on this connection (see
/// [`NameRules::key`]); the schema's trigger and every claim use it.
pub(super) fn register_name_key(
    conn: &rusqlite::Connection,
    rules: NameRules,
) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "odbackup_name_key",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        move |ctx| {
            let path: Option<String> = ctx.get(0)?;
            Ok(path.map(|p| rules.key(&p)))
        },
    )
}

/// Setting that keeps the name rules the `local_key` column was computed with.
const NAME_RULES: &str = "name_rules";

impl Manifest {
    /// How the destination compares names, as probed there ([`crate::localpath::probe_name_rules`]): decides
    /// which local paths clash from now on. When the rules differ from those the stored keys were computed
    /// with, every key is computed again (claims already made stay as they are).
    pub(crate) fn set_name_rules(&mut self, rules: NameRules) -> Result<()> {
        register_name_key(&self.conn, rules).map_err(|e| self.err(e))?;
        self.name_rules = rules;
        if self.setting(NAME_RULES)?.as_deref() == Some(rules.as_str()) {
            return Ok(());
        }
        let err = super::sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE items SET local_key = nullif(odbackup_name_key(local_path), local_path)",
            [],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![NAME_RULES, rules.as_str()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Record (or refresh) a drive. A known root item ID is kept when the new record has none.
    pub(crate) fn upsert_drive(&mut self, drive: &DriveRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO drives (drive_id, drive_type, owner, root_item_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (drive_id) DO UPDATE SET drive_type = excluded.drive_type, owner = excluded.owner,
                     root_item_id = coalesce(excluded.root_item_id, drives.root_item_id), updated_at = excluded.updated_at",
                params![
                    drive.drive_id.key(),
                    drive.drive_type,
                    drive.owner,
                    drive.root_item_id.as_ref().map(ItemId::key),
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::testutil::{drive, file, folder, manifest};
    use crate::manifest::{DoneRecord, FailureRecord, PageCommit};

    #[test]
    fn stored_spellings_round_trip_and_are_snake_case() {
        for k in ItemKind::ALL {
            assert_eq!(ItemKind::parse(k.as_str()), Some(*k));
        }
        for m in MediaKind::ALL {
            assert_eq!(MediaKind::parse(m.as_str()), Some(*m));
        }
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(*c));
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_')
            );
        }
        for c in SkipClass::ALL {
            assert_eq!(SkipClass::parse(c.as_str()), Some(*c));
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_')
            );
        }
        assert_eq!(FailureClass::ALL.len(), 15);
        assert_eq!(FailureClass::parse("HTTP_STATUS"), None);
        assert_eq!(ItemKind::parse(""), None);
        assert_eq!(FailureClass::HashMismatch.to_string(), "hash_mismatch");
    }

    fn state_of(m: &Manifest, id: &str) -> (String, i64, i64) {
        m.conn
            .query_row(
                "SELECT state, attempts, remote_deleted FROM items WHERE drive_id = 'd1' AND item_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    /// List `items` as one page of the root in a fresh crawl context (crawl 1 unless `begin` made more).
    fn list(m: &mut Manifest, crawl: i64, items: Vec<NewItem>) {
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/"),
                items,
                next_link: Some("more".to_owned()),
            },
        )
        .unwrap();
    }

    /// What happened to a row between its two listings.
    #[derive(Clone, Copy)]
    enum Then {
        Nothing,
        Downloaded,
        Failed,
    }

    fn with(mut item: NewItem, change: impl FnOnce(&mut NewItem)) -> NewItem {
        change(&mut item);
        item
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table of state transitions
    fn upsert_state_transitions() {
        let no_hash = |f: &mut NewItem| f.quick_xor = None;
        // (case, first listing, what happened, second listing, state and attempts after it)
        let cases = vec![
            (
                "new file",
                file("/a", 1, "Q1"),
                Then::Nothing,
                file("/a", 1, "Q1"),
                "pending",
                0,
            ),
            (
                "done, unchanged",
                file("/b", 1, "Q1"),
                Then::Downloaded,
                file("/b", 1, "Q1"),
                "done",
                2,
            ),
            (
                "done, renamed (eTag changes, content does not)",
                file("/c", 1, "Q1"),
                Then::Downloaded,
                with(file("/c", 1, "Q1"), |f| {
                    f.name = "c2".into();
                    f.etag = Some("e2".into());
                }),
                "done",
                2,
            ),
            (
                "done, new hash",
                file("/d", 1, "Q1"),
                Then::Downloaded,
                file("/d", 1, "Q2"),
                "pending",
                0,
            ),
            (
                "done, a new size under the same hash (the size reading changed, not the bytes)",
                file("/e", 1, "Q1"),
                Then::Downloaded,
                file("/e", 2, "Q1"),
                "done",
                2,
            ),
            (
                "done, a new size and hash",
                file("/e", 1, "Q1"),
                Then::Downloaded,
                file("/e", 2, "Q2"),
                "pending",
                0,
            ),
            (
                "failed, new hash",
                file("/f", 1, "Q1"),
                Then::Failed,
                file("/f", 1, "Q2"),
                "pending",
                0,
            ),
            (
                "failed, unchanged",
                file("/g", 1, "Q1"),
                Then::Failed,
                file("/g", 1, "Q1"),
                "failed",
                3,
            ),
            (
                "done, sha1 dropped from the listing",
                with(file("/h", 1, "Q1"), |f| {
                    f.sha1 = Some("AB".into());
                }),
                Then::Downloaded,
                file("/h", 1, "Q1"),
                "done",
                2,
            ),
            (
                "done, sha1 only, case differs",
                with(file("/i", 1, ""), |f| {
                    f.quick_xor = None;
                    f.sha1 = Some("ab".into());
                }),
                Then::Downloaded,
                with(file("/i", 1, ""), |f| {
                    f.quick_xor = None;
                    f.sha1 = Some("AB".into());
                }),
                "done",
                2,
            ),
            (
                "done, no hash, cTag changes",
                with(file("/j", 1, ""), no_hash),
                Then::Downloaded,
                with(file("/j", 1, ""), |f| {
                    f.quick_xor = None;
                    f.ctag = Some("c2".into());
                }),
                "pending",
                0,
            ),
            (
                "done, no hash and no cTag, eTag changes",
                with(file("/k", 1, ""), |f| {
                    f.quick_xor = None;
                    f.ctag = None;
                }),
                Then::Downloaded,
                with(file("/k", 1, ""), |f| {
                    f.quick_xor = None;
                    f.ctag = None;
                    f.etag = Some("e2".into());
                }),
                "pending",
                0,
            ),
            (
                "done, now skipped",
                file("/l", 1, "Q1"),
                Then::Downloaded,
                with(file("/l", 1, "Q1"), |f| {
                    f.skip = Some(Skip::new(SkipClass::Malware, "malware"));
                }),
                "skipped",
                2,
            ),
            (
                "skipped, now plain",
                with(file("/m", 1, "Q1"), |f| {
                    f.skip = Some(Skip::new(SkipClass::Malware, "malware"));
                }),
                Then::Nothing,
                file("/m", 1, "Q1"),
                "pending",
                0,
            ),
            (
                "pending, changed",
                file("/n", 1, "Q1"),
                Then::Nothing,
                file("/n", 1, "Q2"),
                "pending",
                0,
            ),
        ];
        for (name, first, then, again, want_state, want_attempts) in cases {
            let (_dir, mut m) = manifest();
            let id = first.item_id.clone();
            let crawl = m
                .begin_crawl(&drive(), "root", &folder("/"))
                .unwrap()
                .crawl_id;
            list(&mut m, crawl, vec![first]);
            match then {
                Then::Nothing => {}
                Then::Downloaded => m
                    .mark_done(
                        &drive(),
                        &id,
                        &DoneRecord {
                            local_path: "x".to_owned(),
                            verification: "quickxor".to_owned(),
                            attempts: 2,
                        },
                    )
                    .unwrap(),
                Then::Failed => m
                    .mark_failed(
                        &drive(),
                        &id,
                        &FailureRecord {
                            class: FailureClass::Network,
                            http_status: None,
                            message: "reset".to_owned(),
                            attempts: 3,
                        },
                    )
                    .unwrap(),
            }
            list(&mut m, crawl, vec![again]);
            let (state, attempts, _) = state_of(&m, id.as_str());
            assert_eq!(
                (state.as_str(), attempts),
                (want_state, want_attempts),
                "{name}"
            );
        }
    }

    /// `name` in the root folder, with the alternative the crawler would give it.
    fn named(id: &str, name: &str) -> NewItem {
        let mut f = file(&format!("/{id}"), 1, "Q");
        f.name = name.to_owned();
        f.local_path = name.to_owned();
        f.local_path_on_clash = Some(format!("{name}~{id}"));
        f
    }

    fn local_paths(m: &Manifest) -> Vec<String> {
        let mut s = m
            .conn
            .prepare("SELECT local_path FROM items WHERE kind = 'file' ORDER BY rowid")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn an_item_named_like_another_items_alternative_never_shares_its_file() {
        // As the crawler names them: the item's suffix before the extension.
        let photo = |id: &str, name: &str| {
            let mut f = named(id, name);
            f.local_path_on_clash = Some(crate::localpath::with_suffix(name, &format!("~{id}")));
            f
        };
        let (_dir, mut m, crawl) = crate::manifest::testutil::manifest_crawling();
        m.set_name_rules(NameRules::EXACT).unwrap();
        // `c` is named what `b`'s alternative is, and `d` what the next one would be, both listed first.
        list(
            &mut m,
            crawl,
            vec![
                photo("c", "IMG~b.JPG"),
                photo("d", "IMG~b-2.JPG"),
                photo("a", "IMG.JPG"),
                photo("b", "IMG.JPG"),
            ],
        );
        let paths = local_paths(&m);
        assert_eq!(
            paths,
            ["IMG~b.JPG", "IMG~b-2.JPG", "IMG.JPG", "IMG~b-3.JPG"]
        );
        // Listed again, in another order: every item keeps its path.
        list(
            &mut m,
            crawl,
            vec![
                photo("b", "IMG.JPG"),
                photo("a", "IMG.JPG"),
                photo("d", "IMG~b-2.JPG"),
                photo("c", "IMG~b.JPG"),
            ],
        );
        assert_eq!(local_paths(&m), paths);
    }

    #[test]
    fn local_paths_clash_as_the_destination_compares_names() {
        let twins = || {
            vec![
                named("a", "\u{c4}.jpg"),      // Ä, precomposed
                named("b", "\u{e4}.jpg"),      // ä
                named("c", "A\u{308}.jpg"),    // Ä, decomposed
                named("d", "Stra\u{df}e.txt"), // ß
                named("e", "STRASSE.txt"),
                named("f", "Foo"),
                named("g", "foo"),
            ]
        };
        // A destination that folds case and normalises (macOS, Windows, exFAT): one file per name.
        let (_dir, mut m) = manifest();
        m.set_name_rules(NameRules::FOLDING).unwrap();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        list(&mut m, crawl, twins());
        assert_eq!(
            local_paths(&m),
            [
                "\u{c4}.jpg",
                "\u{e4}.jpg~b",
                "A\u{308}.jpg~c",
                "Stra\u{df}e.txt",
                "STRASSE.txt~e",
                "Foo",
                "foo~g"
            ]
        );
        // Listed again: every claim stays where it is.
        list(&mut m, crawl, twins());
        assert_eq!(local_paths(&m)[1], "\u{e4}.jpg~b");

        // A destination that compares bytes (Linux): every name is its own file.
        let (_dir, mut m) = manifest();
        m.set_name_rules(NameRules::EXACT).unwrap();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        list(&mut m, crawl, twins());
        assert_eq!(
            local_paths(&m),
            twins()
                .into_iter()
                .map(|i| i.local_path)
                .collect::<Vec<_>>()
        );

        // Case folding without normalisation: `ä` meets `Ä`, the decomposed `Ä` does not.
        let (_dir, mut m) = manifest();
        m.set_name_rules(NameRules {
            folds_case: true,
            normalises: false,
        })
        .unwrap();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        list(&mut m, crawl, twins()[..3].to_vec());
        assert_eq!(
            local_paths(&m),
            ["\u{c4}.jpg", "\u{e4}.jpg~b", "A\u{308}.jpg"]
        );

        // Rules that change (the backup moved to another disk) recompute the keys, and move no claim.
        m.set_name_rules(NameRules::EXACT).unwrap();
        list(&mut m, crawl, twins()[..3].to_vec());
        assert_eq!(
            local_paths(&m),
            ["\u{c4}.jpg", "\u{e4}.jpg~b", "A\u{308}.jpg"]
        );
        m.set_name_rules(NameRules::FOLDING).unwrap();
        let keys: i64 = m
            .conn
            .query_row(
                "SELECT count(DISTINCT coalesce(local_key, local_path)) FROM items WHERE kind = 'file'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(keys, 2, "Ä and its twins share a key; ä~b is its own");
        // The claim is an index lookup, not a scan of every item.
        let plan: String = m
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT 1 FROM items
                 WHERE coalesce(local_key, local_path) = odbackup_name_key('x') AND NOT (drive_id = 'd' AND item_id = 'i')",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("items_local_key"), "{plan}");
    }

    #[test]
    fn a_listed_folder_stays_listed_when_its_etag_changes() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        list(&mut m, crawl, vec![folder("/F")]);
        m.commit_page(
            crawl,
            &PageCommit {
                drive_id: drive(),
                folder_id: ItemId::from("/F"),
                items: vec![],
                next_link: None,
            },
        )
        .unwrap();
        assert_eq!(state_of(&m, "/F").0, "done");
        let mut changed = folder("/F");
        changed.etag = Some("e9".into());
        list(&mut m, crawl, vec![changed]);
        assert_eq!(state_of(&m, "/F").0, "done");
    }

    #[test]
    fn a_thousand_row_page_commits_in_milliseconds() {
        let (_dir, mut m) = manifest();
        let crawl = m
            .begin_crawl(&drive(), "root", &folder("/"))
            .unwrap()
            .crawl_id;
        let page = |round: usize| -> Vec<NewItem> {
            (0..1000)
                .map(|i| file(&format!("/p{round}/f{i}.jpg"), 1000 + i as u64, "QQ"))
                .collect()
        };
        // Warm the statement cache, then time fresh inserts and re-listings (the conflict path).
        list(&mut m, crawl, page(0));
        let start = std::time::Instant::now();
        list(&mut m, crawl, page(1));
        list(&mut m, crawl, page(1));
        let per_page = start.elapsed() / 2;
        // Generous for an unoptimised test build on a busy CI machine; a release build takes a few ms.
        assert!(
            per_page < std::time::Duration::from_millis(500),
            "{per_page:?}"
        );
    }
}
