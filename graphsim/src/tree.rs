//! The simulated drives: a [`Tree`] builder for tests, and the [`World`] the server reads and mutates.
//!
//! Items live in one arena (`World::items`) and refer to each other by index; a drive is a root
//! index plus its ID. File content is never stored: a file holds a seed and a size (see `content`).
//! Deleted items stay in the arena as tombstones so that delta can report them.

use std::collections::HashMap;

use base64::Engine as _;
use unicode_normalization::UnicodeNormalization as _;

use crate::content::{mix, seed_for};
use crate::time;

/// Which OneDrive the simulator plays; it changes hashes, delta scope, ID shapes and special folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// OneDrive personal (consumer): 16-hex-digit drive IDs, `DRIVE!n` item IDs, delta on any folder.
    Personal,
    /// OneDrive for Business (SharePoint): `b!…` drive IDs, quickXorHash only, delta on the root only,
    /// every ancestor of a changed item repeated on each delta page.
    Business,
}

impl Flavour {
    /// `driveType` as Graph spells it.
    pub fn drive_type(self) -> &'static str {
        match self {
            Flavour::Personal => "personal",
            Flavour::Business => "business",
        }
    }
}

/// Which hashes a file's `file` facet lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hashes {
    /// The flavour's default: quickXorHash (plus sha1Hash when `SimConfig::personal_sha1` is set on a
    /// personal drive); `hashes: {}` for a zero-byte file unless `SimConfig::zero_byte_hashes`.
    #[default]
    Default,
    /// quickXorHash only, even on a zero-byte file.
    QuickXor,
    /// quickXorHash and sha1Hash (personal before mid-2023), even on a zero-byte file.
    WithSha1,
    /// `"hashes": {}`: no hash at all (files being co-authored, old business files).
    Empty,
    /// `"file": {}` with no `hashes` key and no mimeType.
    BareFileFacet,
}

/// Options for a file beyond its path and size; build with the chained methods.
#[derive(Clone, Debug, Default)]
pub struct FileOpts {
    /// `file.mimeType`; guessed from the extension when `None`.
    pub mime: Option<String>,
    /// `photo.takenDateTime` (ISO-8601); adds `photo` and `image` facets.
    pub taken: Option<String>,
    /// `video.duration` in milliseconds; adds a `video` facet.
    pub video_ms: Option<u64>,
    /// `fileSystemInfo.lastModifiedDateTime` (ISO-8601).
    pub modified: Option<String>,
    /// `fileSystemInfo.createdDateTime` (ISO-8601).
    pub created: Option<String>,
    /// Which hashes are listed.
    pub hashes: Hashes,
    /// `malware.description`; the item's `/content` then answers 403 `malwareDetected`.
    pub malware: Option<String>,
    /// How many bytes the download host serves when that differs from the listed size: larger for a
    /// SharePoint-"enriched" Office file, smaller for a Live Photo. Listed size and hashes stay those
    /// of the listed content; the served bytes are a prefix/extension of the same stream.
    pub served_size: Option<u64>,
    /// The listed hashes are those of the bytes served (`served_size` of them), not of the listed size: the
    /// listing's size is wrong while its hashes are right (see [`FileOpts::size_listed_wrong`]).
    pub hashes_of_served: bool,
    /// Files given the same key have the same bytes (and so the same quickXorHash), whatever their IDs.
    pub content_key: Option<u64>,
}

impl FileOpts {
    /// No options: a plain file with the flavour's default hashes.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `file.mimeType`.
    #[must_use]
    pub fn mime(mut self, mime: &str) -> Self {
        self.mime = Some(mime.to_owned());
        self
    }
    /// Adds a `photo` facet with this `takenDateTime` (and an `image` facet).
    #[must_use]
    pub fn photo(mut self, taken: &str) -> Self {
        self.taken = Some(taken.to_owned());
        self
    }
    /// Adds a `video` facet of this duration.
    #[must_use]
    pub fn video(mut self, duration_ms: u64) -> Self {
        self.video_ms = Some(duration_ms);
        self
    }
    /// Sets `fileSystemInfo.lastModifiedDateTime` (what a backup should use as mtime).
    #[must_use]
    pub fn modified(mut self, iso: &str) -> Self {
        self.modified = Some(iso.to_owned());
        self
    }
    /// Sets `fileSystemInfo.createdDateTime`.
    #[must_use]
    pub fn created(mut self, iso: &str) -> Self {
        self.created = Some(iso.to_owned());
        self
    }
    /// Lists `"hashes": {}`.
    #[must_use]
    pub fn no_hashes(mut self) -> Self {
        self.hashes = Hashes::Empty;
        self
    }
    /// Lists `"file": {}` (no hashes, no mimeType).
    #[must_use]
    pub fn bare_file_facet(mut self) -> Self {
        self.hashes = Hashes::BareFileFacet;
        self
    }
    /// Lists sha1Hash next to quickXorHash.
    #[must_use]
    pub fn sha1(mut self) -> Self {
        self.hashes = Hashes::WithSha1;
        self
    }
    /// Sets which hashes are listed (`Hashes::QuickXor` forces them on a zero-byte file).
    #[must_use]
    pub fn hashes(mut self, hashes: Hashes) -> Self {
        self.hashes = hashes;
        self
    }
    /// Flags the file as malware (`/content` → 403 `malwareDetected`).
    #[must_use]
    pub fn malware(mut self, description: &str) -> Self {
        self.malware = Some(description.to_owned());
        self
    }
    /// Serves this many bytes instead of the listed size (see the field).
    #[must_use]
    pub fn served_size(mut self, bytes: u64) -> Self {
        self.served_size = Some(bytes);
        self
    }
    /// Serves `served_bytes` (fewer than the listed size) and lists the hashes *of those bytes*: a size that
    /// lies while the hash is right. Old personal JPG/PDF/DOCX items have been listed a few hundred bytes
    /// larger than what downloads, with a SHA-1 matching the download (onedrive-api-docs #492; rclone trusts
    /// the body's length for OneDrive, calling its size readings unreliable).
    #[must_use]
    pub fn size_listed_wrong(mut self, served_bytes: u64) -> Self {
        self.served_size = Some(served_bytes);
        self.hashes_of_served = true;
        self
    }
    /// The same bytes as every other file of this size with the same `key`: a photo stored in several folders
    /// (Camera Roll and an album). The service lists such copies as separate items with their own IDs and
    /// eTags but the same quickXorHash, which is a function of the content alone
    /// (<https://learn.microsoft.com/en-us/onedrive/developer/code-snippets/quickxorhash>).
    #[must_use]
    pub fn same_content(mut self, key: u64) -> Self {
        self.content_key = Some(key);
        self
    }
}

/// Parameters of a generated tree (`Tree::generated`): cheap even at 100,000 items.
#[derive(Clone, Debug)]
pub struct GenSpec {
    /// Folders to create (besides the root).
    pub folders: usize,
    /// Files to create, spread over the root and the folders.
    pub files: usize,
    /// Maximum folder depth below the root (at least 1).
    pub depth: usize,
    /// Smallest file size in bytes.
    pub min_size: u64,
    /// Largest file size in bytes (inclusive).
    pub max_size: u64,
    /// Seed for the layout, names, sizes and media facets.
    pub seed: u64,
    /// Every n-th file lists `"hashes": {}` (0 = never).
    pub no_hash_every: usize,
}

impl Default for GenSpec {
    fn default() -> Self {
        Self {
            folders: 10,
            files: 100,
            depth: 3,
            min_size: 0,
            max_size: 64 * 1024,
            seed: 1,
            no_hash_every: 0,
        }
    }
}

/// A file's stored facts (its bytes are generated on demand from `seed`).
#[derive(Clone, Debug)]
pub(crate) struct FileData {
    pub size: u64,
    pub seed: u64,
    pub served_size: Option<u64>,
    /// Listed hashes are of the served bytes.
    pub hashes_of_served: bool,
    pub mime: String,
    pub hashes: Hashes,
    pub taken: Option<i64>,
    pub video_ms: Option<u64>,
    pub malware: Option<String>,
    /// Bumped on each content change (cTag).
    pub content_version: u32,
}

impl FileData {
    /// Bytes the download host serves.
    pub fn served_len(&self) -> u64 {
        self.served_size.unwrap_or(self.size)
    }

    /// How many bytes of the stream the listed hashes cover.
    pub fn hashed_len(&self) -> u64 {
        if self.hashes_of_served {
            self.served_len()
        } else {
            self.size
        }
    }
}

/// What an item is.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A drive's root folder.
    Root,
    /// An ordinary folder; `vault` marks the personal vault (listing → 400).
    Folder { vault: bool },
    /// A file.
    File(Box<FileData>),
    /// A OneNote notebook (`package: {type: oneNote}`).
    Package,
    /// A shortcut to a folder in another drive (`remoteItem`).
    Remote { drive: usize, item: usize },
}

/// One drive item (or tombstone).
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub drive: usize,
    pub id: String,
    pub name: String,
    pub parent: Option<usize>,
    pub kind: Kind,
    /// Live children, in insertion order.
    pub children: Vec<usize>,
    pub created: i64,
    pub modified: i64,
    pub fs_created: i64,
    pub fs_modified: i64,
    /// Bumped on every change (eTag).
    pub version: u32,
    /// Change sequence of the last change (delta).
    pub seq: u64,
    pub deleted: bool,
    /// Special-folder alias pointing here.
    pub special: Option<String>,
    /// Total bytes of files below (folder `size`).
    pub subtree_size: u64,
}

impl Item {
    pub fn is_container(&self) -> bool {
        matches!(self.kind, Kind::Root | Kind::Folder { .. } | Kind::Package)
    }
    pub fn file(&self) -> Option<&FileData> {
        match &self.kind {
            Kind::File(f) => Some(f),
            _ => None,
        }
    }
}

/// One drive.
#[derive(Clone, Debug)]
pub(crate) struct Drive {
    pub id: String,
    pub root: usize,
    pub serial: u64,
    /// Whose drive it is.
    pub kind: DriveKind,
    /// The owner stopped sharing this drive's folders with the signed-in user: every request naming the drive
    /// is answered with this status (404 `itemNotFound` as for a folder shared no more, onedrive-api-docs #586,
    /// microsoft-graph-docs-contrib #8254; or 403 `accessDenied`). Set by `Simulator::revoke_shared`.
    pub revoked: Option<u16>,
}

/// Whose drive a drive is, which decides its `driveType`, `name` and `owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DriveKind {
    /// The signed-in user's OneDrive (drive 0).
    Main,
    /// Another account's drive that a shared folder (`remoteItem`) lives in.
    Shared,
    /// A document library of `sites[site]`, shown as `name` (`driveType: documentLibrary`).
    Library { site: usize, name: String },
    /// The OneDrive of `users[user]`.
    User { user: usize },
}

/// A SharePoint site: found by `/sites/{hostname}:/{path}` or `/sites/{id}`, its libraries at
/// `/sites/{id}/drives` (the first is the default one, `/sites/{id}/drive`).
/// See <https://learn.microsoft.com/en-us/graph/api/site-getbypath> and
/// <https://learn.microsoft.com/en-us/graph/api/drive-list>.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    /// `contoso.sharepoint.com`.
    pub hostname: String,
    /// The server-relative path, `/sites/Team` (`/` for the host's root site).
    pub path: String,
    /// The composite ID, `{hostname},{site-collection-guid},{web-guid}`.
    pub id: String,
    /// `displayName`: the path's last segment.
    pub display_name: String,
    /// Its document libraries (drive indexes), the default first.
    pub libraries: Vec<usize>,
}

/// A user of the tenant other than the signed-in one, reached by `/users/{upn}/drive`.
#[derive(Clone, Debug)]
pub(crate) struct TenantUser {
    /// The directory object ID (a GUID), what `/users` lists as `id`.
    pub id: String,
    pub upn: String,
    pub display_name: String,
    /// Their OneDrive; `None` until they first open it (the service has none to show).
    pub drive: Option<usize>,
    /// Whether a delegated token may read that OneDrive (an app-only one with the permission always may).
    pub shared: bool,
}

/// Every drive and item the simulator serves.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub flavour: Flavour,
    pub drives: Vec<Drive>,
    pub items: Vec<Item>,
    /// (drive, item ID) → index.
    pub by_id: HashMap<(usize, String), usize>,
    /// Latest change sequence.
    pub seq: u64,
    /// Special-folder alias → item (main drive).
    pub special: HashMap<String, usize>,
    /// Bumped on every mutation (cache key for delta enumerations).
    pub generation: u64,
    /// SharePoint sites (business only).
    pub sites: Vec<Site>,
    /// Other users of the tenant (business only).
    pub users: Vec<TenantUser>,
    /// A personal drive served from the SharePoint back end: `b!…` drive IDs and `01…` item IDs while
    /// `driveType` stays `personal` (new accounts since 2024, rclone #8695).
    pub sharepoint_ids: bool,
}

/// Base time of generated timestamps: 2021-03-01T00:00:00Z.
const BASE_TIME: i64 = 1_614_556_800;

fn b32(mut v: u64, out: &mut String, n: usize) {
    const ALPHA: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    for _ in 0..n {
        out.push(ALPHA[(v & 31) as usize] as char);
        v >>= 5;
    }
}

/// Splits a `/`-separated builder path into segments (empty segments dropped).
pub(crate) fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Extension-based MIME guess.
fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "one" | "onetoc2" => "application/msonenote",
        _ => "application/octet-stream",
    }
}

impl World {
    fn new(flavour: Flavour) -> Self {
        Self::with_ids(flavour, false)
    }

    fn with_ids(flavour: Flavour, sharepoint_ids: bool) -> Self {
        let mut w = Self {
            flavour,
            drives: Vec::new(),
            items: Vec::new(),
            by_id: HashMap::new(),
            seq: 1,
            special: HashMap::new(),
            generation: 0,
            sites: Vec::new(),
            users: Vec::new(),
            sharepoint_ids,
        };
        w.new_drive_of(DriveKind::Main);
        w
    }

    /// Adds a drive for a shared folder (with its root) and returns its index.
    pub fn new_drive(&mut self) -> usize {
        self.new_drive_of(DriveKind::Shared)
    }

    /// `driveType` of drive `d`, as Graph spells it.
    pub fn drive_type(&self, d: usize) -> &'static str {
        match self.drives[d].kind {
            DriveKind::Library { .. } => "documentLibrary",
            _ => self.flavour.drive_type(),
        }
    }

    /// The drive at `path` from drive `d`'s root (no shortcut following).
    pub fn resolve_in(&self, d: usize, path: &str) -> Option<usize> {
        self.walk(self.drives[d].root, &split(path))
    }

    /// Adds a drive of `kind` (with its root) and returns its index.
    pub fn new_drive_of(&mut self, kind: DriveKind) -> usize {
        let n = self.drives.len();
        let id = match self.flavour {
            // The main personal drive; later ones start with `0` so the "leading zero dropped" quirk shows.
            Flavour::Personal if n == 0 && !self.sharepoint_ids => "5EA4B1C0D2E3F617".to_owned(),
            Flavour::Personal if !self.sharepoint_ids => format!("0{:015X}", mix(n as u64) >> 4),
            Flavour::Personal | Flavour::Business => {
                let mut raw = Vec::with_capacity(48);
                for k in 0..6u64 {
                    raw.extend_from_slice(&mix((n as u64) << 8 | k).to_le_bytes());
                }
                format!(
                    "b!{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
                )
            }
        };
        self.drives.push(Drive {
            id,
            root: usize::MAX,
            serial: 100,
            kind,
            revoked: None,
        });
        let root = self.push_item(n, None, "root".to_owned(), Kind::Root);
        self.drives[n].root = root;
        n
    }

    fn new_item_id(&mut self, drive: usize, is_root: bool) -> String {
        let d = &mut self.drives[drive];
        d.serial += 1;
        match self.flavour {
            Flavour::Personal if !self.sharepoint_ids => format!("{}!{}", d.id, d.serial),
            Flavour::Personal | Flavour::Business => {
                // Every ODB library's root has the same item ID (seen since 2016: two libraries
                // answering the same `root` ID).
                let salt = if is_root {
                    0x0D8
                } else {
                    mix(drive as u64 + 1) ^ d.serial
                };
                let mut s = String::from("01");
                b32(mix(salt), &mut s, 12);
                b32(mix(salt ^ 0xFFFF), &mut s, 12);
                b32(mix(salt ^ 0xAAAA), &mut s, 8);
                s
            }
        }
    }

    fn push_item(
        &mut self,
        drive: usize,
        parent: Option<usize>,
        name: String,
        kind: Kind,
    ) -> usize {
        let id = self.new_item_id(drive, parent.is_none());
        let idx = self.items.len();
        let t = BASE_TIME + (idx as i64) * 37;
        self.items.push(Item {
            drive,
            id: id.clone(),
            name,
            parent,
            kind,
            children: Vec::new(),
            created: t,
            modified: t + 3600,
            fs_created: t,
            fs_modified: t + 3600,
            version: 1,
            seq: self.seq,
            deleted: false,
            special: None,
            subtree_size: 0,
        });
        self.by_id.insert((drive, id), idx);
        if let Some(p) = parent {
            self.items[p].children.push(idx);
        }
        idx
    }

    /// Adds a file under `parent`; the seed comes from the new ID and the size.
    pub fn add_file(&mut self, parent: usize, name: &str, size: u64, opts: &FileOpts) -> usize {
        let drive = self.items[parent].drive;
        let data = FileData {
            size,
            seed: 0,
            served_size: opts.served_size,
            hashes_of_served: opts.hashes_of_served,
            mime: opts
                .mime
                .clone()
                .unwrap_or_else(|| guess_mime(name).to_owned()),
            hashes: opts.hashes,
            taken: opts
                .taken
                .as_deref()
                .map(|t| time::parse(t).unwrap_or_else(|| panic!("bad takenDateTime {t:?}"))),
            video_ms: opts.video_ms,
            malware: opts.malware.clone(),
            content_version: 1,
        };
        let idx = self.push_item(
            drive,
            Some(parent),
            name.to_owned(),
            Kind::File(Box::new(data)),
        );
        let seed = opts
            .content_key
            .map_or_else(|| seed_for(&self.items[idx].id, size), mix);
        if let Kind::File(f) = &mut self.items[idx].kind {
            f.seed = seed;
        }
        let item = &mut self.items[idx];
        if let Some(m) = &opts.modified {
            item.fs_modified = time::parse(m).unwrap_or_else(|| panic!("bad modified time {m:?}"));
        }
        if let Some(c) = &opts.created {
            item.fs_created = time::parse(c).unwrap_or_else(|| panic!("bad created time {c:?}"));
        }
        self.add_size(idx, size as i64);
        idx
    }

    /// Adds a container (folder, package, vault) under `parent`.
    pub fn add_container(&mut self, parent: usize, name: &str, kind: Kind) -> usize {
        let drive = self.items[parent].drive;
        self.push_item(drive, Some(parent), name.to_owned(), kind)
    }

    /// Adds `delta` bytes to the subtree size of `idx`'s ancestors (and itself).
    pub fn add_size(&mut self, idx: usize, delta: i64) {
        let mut cur = Some(idx);
        while let Some(i) = cur {
            let it = &mut self.items[i];
            it.subtree_size = it.subtree_size.saturating_add_signed(delta);
            cur = it.parent;
        }
    }

    /// The live child of `parent` called `name`: exact match first, then case-insensitive, then
    /// case- and normalization-insensitive (the service's names are case-insensitive).
    pub fn child_named(&self, parent: usize, name: &str) -> Option<usize> {
        let kids = &self.items[parent].children;
        if let Some(&c) = kids.iter().find(|&&c| self.items[c].name == name) {
            return Some(c);
        }
        let lower = name.to_lowercase();
        if let Some(&c) = kids
            .iter()
            .find(|&&c| self.items[c].name.to_lowercase() == lower)
        {
            return Some(c);
        }
        let nfc: String = lower.nfc().collect();
        kids.iter()
            .copied()
            .find(|&c| self.items[c].name.to_lowercase().nfc().collect::<String>() == nfc)
    }

    /// Walks `segments` from `start`; `None` if any is missing.
    pub fn walk<S: AsRef<str>>(&self, start: usize, segments: &[S]) -> Option<usize> {
        let mut cur = start;
        for s in segments {
            cur = self.child_named(cur, s.as_ref())?;
        }
        Some(cur)
    }

    /// Resolves a builder-style path in the main drive, following remote shortcuts into their drive.
    pub fn resolve(&self, path: &str) -> Option<usize> {
        let mut cur = self.drives[0].root;
        for s in split(path) {
            if let Kind::Remote { item, .. } = self.items[cur].kind {
                cur = item;
            }
            cur = self.child_named(cur, s)?;
        }
        Some(cur)
    }

    /// Like `resolve`, panicking with the path when it is missing (test helpers).
    pub fn expect(&self, path: &str) -> usize {
        self.resolve(path)
            .unwrap_or_else(|| panic!("graphsim: no item at {path:?}"))
    }

    /// Like `expect`, and a shortcut at the end of the path stands for what it names (a shared file's bytes).
    pub fn expect_target(&self, path: &str) -> usize {
        match self.items[self.expect(path)].kind {
            Kind::Remote { item, .. } => item,
            _ => self.expect(path),
        }
    }

    /// Creates the folders of `segments` that don't exist yet, from `start`.
    pub fn ensure_folders(&mut self, start: usize, segments: &[&str]) -> usize {
        let mut cur = start;
        for s in segments {
            // Through a shortcut into the shared folder it names, as `resolve` goes.
            if let Kind::Remote { item, .. } = self.items[cur].kind {
                cur = item;
            }
            cur = match self.items[cur]
                .children
                .iter()
                .copied()
                .find(|&c| self.items[c].name == *s)
            {
                Some(c) => {
                    assert!(
                        self.items[c].is_container()
                            || matches!(self.items[c].kind, Kind::Remote { .. }),
                        "graphsim: {s:?} is not a folder"
                    );
                    c
                }
                None => self.add_container(cur, s, Kind::Folder { vault: false }),
            };
        }
        if let Kind::Remote { item, .. } = self.items[cur].kind {
            cur = item;
        }
        cur
    }

    /// The path segments from the drive root down to `idx` (empty for a root).
    pub fn segments(&self, idx: usize) -> Vec<&str> {
        let mut out = Vec::new();
        let mut cur = idx;
        while let Some(p) = self.items[cur].parent {
            out.push(self.items[cur].name.as_str());
            cur = p;
        }
        out.reverse();
        out
    }

    /// Copies `src`'s children (from another world) under `dst`, with new IDs and seeds.
    fn graft(&mut self, other: &World, src: usize, dst: usize) {
        for &c in &other.items[src].children {
            let it = &other.items[c];
            let new = match &it.kind {
                Kind::File(f) => {
                    let opts = FileOpts {
                        mime: Some(f.mime.clone()),
                        taken: f.taken.map(time::format),
                        video_ms: f.video_ms,
                        modified: Some(time::format(it.fs_modified)),
                        created: Some(time::format(it.fs_created)),
                        hashes: f.hashes,
                        malware: f.malware.clone(),
                        served_size: f.served_size,
                        content_key: None,
                        hashes_of_served: f.hashes_of_served,
                    };
                    self.add_file(dst, &it.name, f.size, &opts)
                }
                Kind::Remote { .. } | Kind::Root => continue,
                k => self.add_container(dst, &it.name, k.clone()),
            };
            self.graft(other, c, new);
        }
    }

    fn generate(&mut self, spec: &GenSpec) {
        let mut state = spec.seed ^ 0x5EED_0000;
        let mut rand = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix(state)
        };
        let root = self.drives[0].root;
        let depth = spec.depth.max(1);
        let mut containers: Vec<usize> = vec![root];
        let mut eligible: Vec<(usize, usize)> = vec![(root, 0)];
        for i in 0..spec.folders {
            let (parent, d) = eligible[(rand() % eligible.len() as u64) as usize];
            let idx = self.add_container(
                parent,
                &format!("Folder {i:05}"),
                Kind::Folder { vault: false },
            );
            containers.push(idx);
            if d + 1 < depth {
                eligible.push((idx, d + 1));
            }
        }
        let span = spec
            .max_size
            .saturating_sub(spec.min_size)
            .saturating_add(1);
        for j in 0..spec.files {
            let parent = containers[(rand() % containers.len() as u64) as usize];
            let size = spec.min_size + rand() % span;
            let r = rand();
            let (ext, mut opts) = match r % 20 {
                0..=7 => (
                    "jpg",
                    FileOpts::new()
                        .photo(&time::format(1_420_070_400 + (r >> 8) as i64 % 280_000_000)),
                ),
                8 => (
                    "heic",
                    FileOpts::new()
                        .photo(&time::format(1_600_000_000 + (r >> 8) as i64 % 60_000_000)),
                ),
                9..=10 => ("mp4", FileOpts::new().video(1000 + (r >> 8) % 600_000)),
                11..=13 => ("docx", FileOpts::new()),
                14..=15 => ("pdf", FileOpts::new()),
                _ => ("txt", FileOpts::new()),
            };
            if spec.no_hash_every > 0 && (j + 1) % spec.no_hash_every == 0 {
                opts = opts.no_hashes();
            }
            self.add_file(parent, &format!("file-{j:06}.{ext}"), size, &opts);
        }
    }
}

/// A drive tree to serve, built with chained calls. Paths are `/`-separated and relative to the
/// drive root; missing intermediate folders are created.
///
/// ```
/// use graphsim::{FileOpts, Tree};
/// let tree = Tree::personal()
///     .folder("Documents")
///     .file("Pictures/2019/a.jpg", 3_000_000)
///     .file_with("Pictures/b.jpg", 10, FileOpts::new().photo("2019-07-01T10:00:00Z"))
///     .special("photos", "Pictures");
/// ```
#[derive(Clone, Debug)]
pub struct Tree {
    pub(crate) world: World,
}

impl Tree {
    /// An empty OneDrive personal drive.
    pub fn personal() -> Self {
        Self {
            world: World::new(Flavour::Personal),
        }
    }

    /// An empty OneDrive for Business drive.
    pub fn business() -> Self {
        Self {
            world: World::new(Flavour::Business),
        }
    }

    /// An empty OneDrive personal drive of a new account, served from the SharePoint back end: `b!…` drive
    /// and `01…` item IDs, `driveType: personal` (rclone #8695). Pair it with
    /// `Simulator::set_folder_delta_refused` for the folder-scoped delta such accounts may refuse.
    pub fn personal_sharepoint_backed() -> Self {
        Self {
            world: World::with_ids(Flavour::Personal, true),
        }
    }

    /// A personal drive filled by [`GenSpec`].
    pub fn generated(spec: GenSpec) -> Self {
        Self::personal().with_generated(spec)
    }

    /// The flavour this tree was made with.
    pub fn flavour(&self) -> Flavour {
        self.world.flavour
    }

    /// Adds generated folders and files to this tree.
    #[must_use]
    pub fn with_generated(mut self, spec: GenSpec) -> Self {
        self.world.generate(&spec);
        self
    }

    /// Creates a folder (and its missing ancestors).
    #[must_use]
    pub fn folder(mut self, path: &str) -> Self {
        let root = self.world.drives[0].root;
        self.world.ensure_folders(root, &split(path));
        self
    }

    /// Adds a file of `size` bytes (creating missing folders).
    #[must_use]
    pub fn file(self, path: &str, size: u64) -> Self {
        self.file_with(path, size, FileOpts::new())
    }

    /// Adds a file with options.
    #[must_use]
    pub fn file_with(mut self, path: &str, size: u64, opts: FileOpts) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs
            .split_last()
            .unwrap_or_else(|| panic!("graphsim: empty file path"));
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        assert!(
            !self.world.items[parent]
                .children
                .iter()
                .any(|&c| self.world.items[c].name == *leaf),
            "graphsim: {path:?} added twice"
        );
        self.world.add_file(parent, leaf, size, &opts);
        self
    }

    /// Adds a file with a raw name that may hold anything (`..`, `a/b`, NUL, 300-byte names,
    /// case or NFC/NFD twins of a sibling) under the folder at `parent` ("" for the root).
    #[must_use]
    pub fn file_named_in(self, parent: &str, raw_name: &str, size: u64) -> Self {
        self.file_named_in_with(parent, raw_name, size, FileOpts::new())
    }

    /// [`Tree::file_named_in`] with options.
    #[must_use]
    pub fn file_named_in_with(
        mut self,
        parent: &str,
        raw_name: &str,
        size: u64,
        opts: FileOpts,
    ) -> Self {
        let root = self.world.drives[0].root;
        let p = self.world.ensure_folders(root, &split(parent));
        self.world.add_file(p, raw_name, size, &opts);
        self
    }

    /// Adds a folder with a raw name under the folder at `parent` ("" for the root).
    #[must_use]
    pub fn folder_named_in(mut self, parent: &str, raw_name: &str) -> Self {
        let root = self.world.drives[0].root;
        let p = self.world.ensure_folders(root, &split(parent));
        self.world
            .add_container(p, raw_name, Kind::Folder { vault: false });
        self
    }

    /// Maps a special-folder alias (`photos`, `cameraroll`, `documents`, `music`, `approot`) to the
    /// folder at `path` (created if missing); the folder gets a `specialFolder` facet.
    #[must_use]
    pub fn special(mut self, alias: &str, path: &str) -> Self {
        let root = self.world.drives[0].root;
        let idx = self.world.ensure_folders(root, &split(path));
        self.world.items[idx].special = Some(alias.to_owned());
        self.world.special.insert(alias.to_owned(), idx);
        self
    }

    /// Adds a OneNote notebook at `path`: a `package` item (business also shows a `folder` facet)
    /// whose `/content` is 404; add its section files with `.file("path/Section.one", n)`.
    #[must_use]
    pub fn onenote_package(mut self, path: &str) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs.split_last().expect("graphsim: empty package path");
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        self.world.add_container(parent, leaf, Kind::Package);
        self
    }

    /// Adds a Personal Vault folder at `path`: its item is listed, but listing its children
    /// answers 400 `invalidResourceId` "ObjectHandle is Invalid", and delta never shows its contents.
    #[must_use]
    pub fn vault(mut self, path: &str) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs.split_last().expect("graphsim: empty vault path");
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        self.world
            .add_container(parent, leaf, Kind::Folder { vault: true });
        self
    }

    /// Adds a document library called `library` to the SharePoint site `site` (`contoso.sharepoint.com:/sites/Team`,
    /// or `contoso.sharepoint.com` for the host's root site), holding `content`'s files; the site is created
    /// with its first library, which becomes its default one (`/sites/{id}/drive`). Libraries are
    /// `documentLibrary` drives with business behaviour: quickXorHash only, delta on the root only.
    /// Sites exist only in business tenants, so this panics on a personal tree.
    #[must_use]
    pub fn site_library(mut self, site: &str, library: &str, content: Tree) -> Self {
        assert_eq!(
            self.world.flavour,
            Flavour::Business,
            "graphsim: SharePoint sites exist only in business tenants"
        );
        let (hostname, path) = match site.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), format!("/{}", p.trim_matches('/'))),
            None => (site.to_ascii_lowercase(), "/".to_owned()),
        };
        let index = match self
            .world
            .sites
            .iter()
            .position(|s| s.hostname == hostname && s.path.eq_ignore_ascii_case(&path))
        {
            Some(i) => i,
            None => {
                let salt = crate::content::fnv1a(format!("{hostname}{path}").as_bytes());
                let guid = |x: u64| {
                    let (a, b) = (mix(x), mix(x ^ 0x5A5A));
                    format!(
                        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xffff,
                        b >> 48,
                        b & 0xffff_ffff_ffff
                    )
                };
                self.world.sites.push(Site {
                    id: format!("{hostname},{},{}", guid(salt), guid(salt ^ 1)),
                    display_name: split(&path)
                        .last()
                        .map_or_else(|| "Communication site".to_owned(), |s| (*s).to_owned()),
                    hostname,
                    path,
                    libraries: Vec::new(),
                });
                self.world.sites.len() - 1
            }
        };
        let d = self.world.new_drive_of(DriveKind::Library {
            site: index,
            name: library.to_owned(),
        });
        self.world.sites[index].libraries.push(d);
        let (dst, src) = (self.world.drives[d].root, content.world.drives[0].root);
        self.world.graft(&content.world, src, dst);
        self
    }

    /// Adds a user `upn` of the tenant whose OneDrive holds `content`'s files, readable by the signed-in user
    /// (`/users/{upn}/drive`). Business only.
    #[must_use]
    pub fn user_drive(self, upn: &str, display_name: &str, content: Tree) -> Self {
        self.tenant_user(upn, display_name, Some(content), true)
    }

    /// Adds a user whose OneDrive the signed-in user may not read: delegated tokens get 403 `accessDenied`
    /// on it (an app-only token with the permission reads it). Business only.
    #[must_use]
    pub fn private_user_drive(self, upn: &str, display_name: &str, content: Tree) -> Self {
        self.tenant_user(upn, display_name, Some(content), false)
    }

    /// Adds a user who never opened OneDrive, so has none: `/users/{upn}/drive` answers 404 `ResourceNotFound`
    /// "User's mysite not found." to delegated tokens (alcionai/corso #966) and 400 `invalidRequest` "Call was
    /// made to the default drive, which is not supported for apponly tokens." to app-only ones, which cannot
    /// provision it (onedrive-api-docs #965, #1572). Business only.
    #[must_use]
    pub fn user_without_drive(self, upn: &str, display_name: &str) -> Self {
        self.tenant_user(upn, display_name, None, true)
    }

    fn tenant_user(
        mut self,
        upn: &str,
        display_name: &str,
        content: Option<Tree>,
        shared: bool,
    ) -> Self {
        assert_eq!(
            self.world.flavour,
            Flavour::Business,
            "graphsim: other users' drives are a business tenant's"
        );
        let user = self.world.users.len();
        let drive = content.map(|content| {
            let d = self.world.new_drive_of(DriveKind::User { user });
            let (dst, src) = (self.world.drives[d].root, content.world.drives[0].root);
            self.world.graft(&content.world, src, dst);
            d
        });
        self.world.users.push(TenantUser {
            id: crate::directory_guid(&format!("{user}:{upn}")),
            upn: upn.to_owned(),
            display_name: display_name.to_owned(),
            drive,
            shared,
        });
        self
    }

    /// Adds a shortcut at `path` (a `remoteItem`) to a folder shared from another drive; that
    /// folder holds `shared`'s content (its root's children). List it with
    /// `/drives/{remoteItem.parentReference.driveId}/items/{remoteItem.id}/children`.
    #[must_use]
    pub fn remote_item(mut self, path: &str, shared: Tree) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs.split_last().expect("graphsim: empty remote path");
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        let d = self.world.new_drive();
        let other_root = self.world.drives[d].root;
        let folder = self
            .world
            .add_container(other_root, leaf, Kind::Folder { vault: false });
        let src_root = shared.world.drives[0].root;
        self.world.graft(&shared.world, src_root, folder);
        self.world.add_container(
            parent,
            leaf,
            Kind::Remote {
                drive: d,
                item: folder,
            },
        );
        self
    }

    /// Adds a shortcut at `path` to a file shared from another drive ("Add to My files" on a file): a
    /// `remoteItem` carrying a `file` facet (<https://learn.microsoft.com/en-us/graph/api/resources/remoteitem>).
    #[must_use]
    pub fn remote_file(mut self, path: &str, size: u64) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs.split_last().expect("graphsim: empty remote path");
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        let d = self.world.new_drive();
        let other_root = self.world.drives[d].root;
        let file = self
            .world
            .add_file(other_root, leaf, size, &FileOpts::new());
        self.world.add_container(
            parent,
            leaf,
            Kind::Remote {
                drive: d,
                item: file,
            },
        );
        self
    }

    /// Adds a shortcut at `path` to the item already at `target` (both resolved through shortcuts, so a
    /// shortcut may sit inside a shared folder and point into this drive or into another shared folder): the
    /// shapes that loop or copy twice in a client that follows shortcuts blindly (abraunegg/onedrive #3147
    /// shows shortcuts living inside shared folders).
    #[must_use]
    pub fn shortcut(mut self, path: &str, target: &str) -> Self {
        let segs = split(path);
        let (leaf, dirs) = segs.split_last().expect("graphsim: empty shortcut path");
        let root = self.world.drives[0].root;
        let parent = self.world.ensure_folders(root, dirs);
        let mut item = self.world.expect(target);
        if let Kind::Remote { item: named, .. } = self.world.items[item].kind {
            item = named; // a shortcut to a shortcut names what the second names
        }
        let drive = self.world.items[item].drive;
        self.world
            .add_container(parent, leaf, Kind::Remote { drive, item });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_create_folders_and_resolve_case_insensitively() {
        let t = Tree::personal().file("A/B/c.jpg", 5).folder("A/D");
        let w = &t.world;
        let c = w.resolve("a/b/C.JPG").unwrap();
        assert_eq!(w.items[c].name, "c.jpg");
        assert_eq!(w.segments(c), vec!["A", "B", "c.jpg"]);
        assert_eq!(w.items[w.drives[0].root].subtree_size, 5);
        assert!(w.resolve("A/X").is_none());
    }

    #[test]
    fn exact_twins_resolve_exactly() {
        let t = Tree::personal()
            .file_named_in("", "Foo", 1)
            .file_named_in("", "foo", 2);
        let w = &t.world;
        assert_eq!(w.items[w.resolve("foo").unwrap()].file().unwrap().size, 2);
        assert_eq!(w.items[w.resolve("Foo").unwrap()].file().unwrap().size, 1);
    }

    #[test]
    fn ids_look_like_the_flavour() {
        let p = Tree::personal().file("a", 1);
        let id = &p.world.items[p.world.resolve("a").unwrap()].id;
        assert!(id.starts_with("5EA4B1C0D2E3F617!"), "{id}");
        let b = Tree::business().file("a", 1);
        let id = &b.world.items[b.world.resolve("a").unwrap()].id;
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("01"));
        assert_eq!(b.world.drives[0].id.len(), 66);
    }

    #[test]
    fn generated_tree_has_the_asked_counts_and_depth() {
        let t = Tree::generated(GenSpec {
            folders: 50,
            files: 500,
            depth: 3,
            ..GenSpec::default()
        });
        let w = &t.world;
        let files = w.items.iter().filter(|i| i.file().is_some()).count();
        let folders = w
            .items
            .iter()
            .filter(|i| matches!(i.kind, Kind::Folder { .. }))
            .count();
        assert_eq!((files, folders), (500, 50));
        assert!((0..w.items.len()).all(|i| w.segments(i).len() <= 4));
    }

    #[test]
    fn remote_items_point_into_another_drive() {
        let t = Tree::personal().remote_item("Shared/Holiday", Tree::personal().file("x/a.jpg", 7));
        let w = &t.world;
        let s = w.resolve("Shared/Holiday").unwrap();
        let Kind::Remote { drive, item } = w.items[s].kind else {
            panic!("not remote")
        };
        assert_eq!(drive, 1);
        assert!(w.drives[1].id.starts_with('0'));
        assert_eq!(w.items[item].name, "Holiday");
        let a = w.resolve("Shared/Holiday/x/a.jpg").unwrap();
        assert_eq!(w.items[a].drive, 1);
    }
}
