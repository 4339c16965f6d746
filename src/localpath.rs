//! Remote names → safe local names and paths under the destination.
//!
//! Item names come from the server and are untrusted input: a name may be `..`, contain `/`, `\` or NUL, or
//! be longer than the 255 bytes a Linux/macOS file name may have. This module turns one remote name into one
//! safe path segment, deterministically (the same item always maps to the same local name, so a re-run finds
//! it), and joins segments under the destination so that nothing can escape it.
//!
//! Policy (documented in the README):
//! - Characters that cannot appear in a local name (`/`, `\`, NUL, other ASCII control characters) are
//!   percent-encoded (`a/b` → `a%2Fb`); a name that is empty, `.` or `..` has its dots encoded (`%2E%2E`).
//! - A name that had to change gets a short stable suffix derived from the item ID (`a%2Fb~1c9e0f`), so a
//!   sanitised hostile name can never land on the name of a legitimate sibling.
//! - A name over `MAX_NAME_BYTES` keeps its extension and as much of its stem as fits, plus the suffix.
//!
//! - At the top of the destination, a name that is odbackup's own state folder (`.odbackup`, in any letter
//!   case, compared as a case-folding file system would) is reserved: the remote item goes to
//!   `<name> (from OneDrive)` instead (`STATE_DIR_STAND_IN`), so drive content can never land in, over or
//!   beside the manifest and its lock.
//! - Anywhere, a name shaped like one of odbackup's own part files or span journals
//!   (`.odbackup-<16 hex>-<8 hex>.part`, optionally `.chunks`, in any letter case) counts as changed and gets
//!   the suffix, so the end-of-run sweep of stale part files can never take a file that came from the drive,
//!   and a part file can never be opened over one on a case-folding disk.
//!
//! It also says how the destination compares names (`NameRules`, probed once per run by `fsdest::Folder::probe_name_rules`):
//! whether two names are the same file there.
//!
//! It knows nothing of Graph, `SQLite` or the network: names in, names out.

use std::fmt::Write as _;

use sha1::{Digest, Sha1};

/// The folder inside the destination that holds odbackup's own state (the manifest, the trash).
pub(crate) const STATE_DIR: &str = ".odbackup";

/// Appended to the name of a remote item that would take the state folder's name at the top of the
/// destination (a drive holding its own `.odbackup/`, for instance a backup of a backup): `.odbackup` is
/// stored as `.odbackup (from OneDrive)`, stable across runs. Documented in the README.
pub(crate) const STATE_DIR_STAND_IN: &str = " (from OneDrive)";

/// Whether `name` (a local name, as [`safe_name`] made it) is the state folder's name as any file system could
/// see it: compared after full Unicode case folding and NFC normalisation, and without trailing dots and
/// spaces (which Windows drops).
pub(crate) fn is_state_dir_name(name: &str) -> bool {
    let trimmed = name.trim_end_matches(['.', ' ']);
    NameRules::FOLDING.key(trimmed) == STATE_DIR
}

/// The local name for an item at the top of the destination: its safe name, unless that is the state folder's
/// (see [`STATE_DIR_STAND_IN`]).
pub(crate) fn top_level_name(safe: String) -> String {
    if !is_state_dir_name(&safe) {
        return safe;
    }
    let mut cut = safe.len().min(MAX_NAME_BYTES - STATE_DIR_STAND_IN.len());
    while !safe.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{STATE_DIR_STAND_IN}", &safe[..cut])
}

/// How a destination's file system compares names: whether `Ä.jpg` and `ä.jpg`, or an NFC name and its NFD twin,
/// are one file there. macOS (APFS, HFS+), Windows (NTFS) and exFAT fold case, and macOS also normalises;
/// Linux file systems do neither. Decides when two items' local paths clash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameRules {
    /// Names differing only in letter case are the same file.
    pub(crate) folds_case: bool,
    /// Names differing only in Unicode normalisation (NFC/NFD) are the same file.
    pub(crate) normalises: bool,
}

impl NameRules {
    /// A file system that folds case and normalises: the safe assumption when nothing is known.
    pub(crate) const FOLDING: NameRules = NameRules {
        folds_case: true,
        normalises: true,
    };

    /// A file system that compares names byte for byte (ext4, XFS, btrfs).
    pub(crate) const EXACT: NameRules = NameRules {
        folds_case: false,
        normalises: false,
    };

    /// The form under which two paths are the same file on such a file system: NFC when it normalises, then
    /// full Unicode case folding (`ß` → `ss`, `K` (Kelvin) → `k`, not only ASCII) when it folds case, then NFC
    /// again (folding can denormalise).
    pub fn key(self, path: &str) -> String {
        use unicode_normalization::UnicodeNormalization as _;
        let mut key: String = if self.normalises {
            path.nfc().collect()
        } else {
            path.to_owned()
        };
        if self.folds_case {
            key = caseless::default_case_fold_str(&key);
            if self.normalises {
                key = key.nfc().collect();
            }
        }
        key
    }

    /// The rules [`NameRules::as_str`] spelled.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::FOLDING,
            Self::EXACT,
            Self {
                folds_case: true,
                normalises: false,
            },
            Self {
                folds_case: false,
                normalises: true,
            },
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// A stable spelling for the manifest's settings.
    pub fn as_str(self) -> &'static str {
        match (self.folds_case, self.normalises) {
            (true, true) => "fold-case,normalise",
            (true, false) => "fold-case",
            (false, true) => "normalise",
            (false, false) => "exact",
        }
    }
}

/// Where a local file goes when it leaves the backup's tree (`--mirror-deletes`, `--keep-versions`):
/// `.odbackup/trash/<YYYY-MM-DD>/<its relative path>`, relative to the destination.
pub(crate) fn trash_path(date: &str, relative: &str) -> String {
    format!("{STATE_DIR}/trash/{date}/{relative}")
}

/// The longest file name, in UTF-8 bytes, that ext4, XFS, btrfs and APFS accept.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Extensions longer than this are not worth keeping when a name must be shortened.
const MAX_KEPT_EXTENSION_BYTES: usize = 16;

/// A local name derived from a remote one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SafeName {
    /// The name to use on disk.
    pub name: String,
    /// Whether it differs from the remote name (the manifest records this, and `status` reports it).
    pub changed: bool,
}

/// Map one remote item name to a safe local file or folder name.
///
/// `item_id` only feeds the stable suffix added when the name had to change.
pub(crate) fn safe_name(remote_name: &str, item_id: &str) -> SafeName {
    let mut out = String::with_capacity(remote_name.len());
    let mut changed = false;
    for c in remote_name.chars() {
        if c == '/' || c == '\\' || c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", u32::from(c));
            changed = true;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.chars().all(|c| c == '.') && out.len() <= 2 {
        out = if out.is_empty() {
            "%00".to_owned()
        } else {
            out.replace('.', "%2E")
        };
        changed = true;
    }
    // Only a name starting with a dot can be one (folding never changes the dot), so most names skip the fold.
    if out.starts_with('.') && is_own_part_name(&NameRules::FOLDING.key(&out)) {
        changed = true;
    }
    if changed || out.len() > MAX_NAME_BYTES {
        out = with_suffix(&out, &stable_suffix(item_id));
        changed = true;
    }
    SafeName { name: out, changed }
}

/// Whether `name` is exactly one of odbackup's part files or span journals
/// (`.odbackup-<16 hex>-<8 hex>.part`, optionally `.chunks`, hex in lower case): nothing else is ever swept,
/// and `safe_name` never gives a drive item such a name.
pub fn is_own_part_name(name: &str) -> bool {
    let stem = name.strip_suffix(".chunks").unwrap_or(name);
    let Some(middle) = stem
        .strip_prefix(".odbackup-")
        .and_then(|s| s.strip_suffix(".part"))
    else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    matches!(middle.split_once('-'), Some((item, version)) if hex(item, 16) && hex(version, 8))
}

/// `name` with the stable suffix of `item_id` before its extension (`IMG_1.jpg` → `IMG_1~1c9e0f.jpg`): where an
/// item goes when another item already holds its local path, for example `Foo` beside `foo`.
pub(crate) fn disambiguated(name: &str, item_id: &str) -> String {
    with_suffix(name, &stable_suffix(item_id))
}

/// How remote items are placed under the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `DEST/<remote path>`: the drive's folders, mirrored.
    #[default]
    Mirror,
    /// `DEST/YYYY/MM/<name>` by the date a photo or video was taken (else its modification date), for photo
    /// libraries; names that meet in one month get a stable suffix.
    Date,
}

impl Layout {
    /// The spelling on the command line, in config files and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Mirror => "mirror",
            Layout::Date => "date",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mirror" => Ok(Layout::Mirror),
            "date" => Ok(Layout::Date),
            other => Err(format!("unknown layout {other:?}: expected mirror or date")),
        }
    }
}

/// The `YYYY/MM` folder of the date layout for an RFC 3339 time (in UTC), or `undated`.
pub(crate) fn date_folder(when: Option<&str>) -> String {
    when.and_then(|w| chrono::DateTime::parse_from_rfc3339(w).ok())
        .map_or_else(
            || "undated".to_owned(),
            |t| t.with_timezone(&chrono::Utc).format("%Y/%m").to_string(),
        )
}

/// Six hex digits derived from the item ID: short, stable across runs, different for siblings.
fn stable_suffix(item_id: &str) -> String {
    let digest = Sha1::digest(item_id.as_bytes());
    format!("~{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}

/// Insert `suffix` before the extension, shortening the stem so the whole fits in [`MAX_NAME_BYTES`].
pub(crate) fn with_suffix(name: &str, suffix: &str) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES => name.split_at(dot),
        _ => (name, ""),
    };
    let budget = MAX_NAME_BYTES - suffix.len() - ext.len();
    let mut cut = stem.len().min(budget);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}{ext}", &stem[..cut])
}

/// The relative local path of a child named `child` (already safe) inside the folder at `parent`.
pub(crate) fn child_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drive_name_shaped_like_a_part_file_is_never_kept_as_is() {
        let part = ".odbackup-0123456789abcdef-89abcdef.part";
        for name in [
            part.to_owned(),
            format!("{part}.chunks"),
            part.to_uppercase(),
            format!("{}.CHUNKS", part.to_uppercase()),
        ] {
            let safe = safe_name(&name, "ID!1");
            assert!(safe.changed, "{name}");
            assert!(
                !is_own_part_name(&NameRules::FOLDING.key(&safe.name)),
                "{name} → {}",
                safe.name
            );
            assert_eq!(safe, safe_name(&name, "ID!1"), "stable");
        }
        // Look-alikes that are not the shape stay as they are.
        for name in [
            ".odbackup-0123456789abcdef-89abcdef.partial",
            ".odbackup-0123-89abcdef.part",
            "odbackup-0123456789abcdef-89abcdef.part",
            ".odbackup",
        ] {
            assert_eq!(safe_name(name, "ID!1").name, name);
        }
    }

    #[test]
    fn the_state_folder_name_is_reserved_at_the_top_in_every_spelling() {
        for name in [
            ".odbackup",
            ".ODBACKUP",
            ".OdBackup",
            ".odbackup.",
            ".odbackup ",
            ".odbac\u{212a}up",
        ] {
            assert!(is_state_dir_name(name), "{name:?}");
            let stand_in = top_level_name(name.to_owned());
            assert!(
                stand_in.ends_with(STATE_DIR_STAND_IN) && !is_state_dir_name(&stand_in),
                "{stand_in:?}"
            );
            assert_eq!(stand_in, top_level_name(name.to_owned()), "stable");
        }
        assert_eq!(
            top_level_name(".odbackup".to_owned()),
            ".odbackup (from OneDrive)"
        );
        for name in [
            ".odbackup-x",
            "odbackup",
            ".odbackup (from OneDrive)",
            "a.odbackup",
        ] {
            assert!(!is_state_dir_name(name), "{name:?}");
            assert_eq!(top_level_name(name.to_owned()), name);
        }
    }

    #[test]
    fn name_keys_fold_and_normalise_only_where_the_file_system_does() {
        let nfc = "\u{c4}.jpg";
        let nfd = "A\u{308}.jpg";
        let lower = "\u{e4}.jpg";
        let folding = NameRules::FOLDING;
        assert_eq!(folding.key(nfc), folding.key(nfd));
        assert_eq!(folding.key(nfc), folding.key(lower));
        assert_eq!(
            folding.key("Stra\u{df}e"),
            folding.key("STRASSE"),
            "full folding, not ASCII only"
        );
        let exact = NameRules::EXACT;
        assert_ne!(exact.key(nfc), exact.key(nfd));
        assert_ne!(exact.key(nfc), exact.key(lower));
        let case_only = NameRules {
            folds_case: true,
            normalises: false,
        };
        assert_eq!(case_only.key(nfc), case_only.key(lower));
        assert_ne!(case_only.key(nfc), case_only.key(nfd));
        let norm_only = NameRules {
            folds_case: false,
            normalises: true,
        };
        assert_eq!(norm_only.key(nfc), norm_only.key(nfd));
        assert_ne!(norm_only.key(nfc), norm_only.key(lower));
    }

    #[test]
    fn date_folders_come_from_the_utc_date_or_say_undated() {
        assert_eq!(date_folder(Some("2021-06-30T23:30:00-02:00")), "2021/07");
        assert_eq!(date_folder(Some("2019-01-02T03:04:05Z")), "2019/01");
        assert_eq!(date_folder(Some("garbage")), "undated");
        assert_eq!(date_folder(None), "undated");
    }

    #[test]
    fn a_disambiguated_name_keeps_its_extension_and_is_stable() {
        let a = disambiguated("IMG_0001.JPG", "item-1");
        assert!(
            a.starts_with("IMG_0001~") && a.rsplit_once('.').unwrap().1 == "JPG",
            "{a}"
        );
        assert_eq!(a, disambiguated("IMG_0001.JPG", "item-1"));
        assert_ne!(a, disambiguated("IMG_0001.JPG", "item-2"));
    }

    #[test]
    fn plain_names_pass_through_unchanged() {
        for name in [
            "a.jpg",
            "Foo Bar (1).heic",
            "日本語.png",
            "😀.mp4",
            ".hidden",
            "100% done",
            "...",
        ] {
            let safe = safe_name(name, "id");
            assert_eq!(safe.name, name);
            assert!(!safe.changed);
        }
    }

    #[test]
    fn hostile_names_are_encoded_and_suffixed() {
        let cases = [
            ("..", "%2E%2E~"),
            (".", "%2E~"),
            ("", "%00~"),
            ("a/b", "a%2Fb~"),
            ("/etc/x", "%2Fetc%2Fx~"),
            ("a\\b", "a%5Cb~"),
            ("nul\0byte", "nul%00byte~"),
        ];
        for (name, prefix) in cases {
            let safe = safe_name(name, "item-1");
            assert!(safe.name.starts_with(prefix), "{name:?} → {:?}", safe.name);
            assert!(safe.changed);
            assert!(!safe.name.contains('/') && !safe.name.contains('\0'));
            assert!(safe.name != "." && safe.name != "..");
        }
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension_and_stay_distinct() {
        let long = "日".repeat(100) + ".jpg"; // 304 bytes
        let a = safe_name(&long, "id-a");
        let b = safe_name(&long, "id-b");
        assert!(a.name.len() <= MAX_NAME_BYTES, "{}", a.name.len());
        assert!(
            std::path::Path::new(&a.name)
                .extension()
                .is_some_and(|e| e == "jpg")
        );
        assert!(a.changed);
        assert_ne!(a.name, b.name);
        assert_eq!(a, safe_name(&long, "id-a"), "deterministic");
        let exact = "x".repeat(MAX_NAME_BYTES);
        assert_eq!(safe_name(&exact, "i").name, exact);
    }
}
