//! The restore's decisions, as pure functions: which names the service refuses and what `--rename-invalid`
//! makes of them, where an entry goes on the target, what to do when something is already there, and how
//! large a session's fragments are.
//!
//! The name rules are the service's for items it creates (Microsoft's "Restrictions and limitations in
//! `OneDrive` and `SharePoint`",
//! <https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint-64883a5d-228e-48f5-b3d2-eb39e07630fa>):
//! `" * : < > ? / \ |` are not allowed, nor leading or trailing spaces; `.lock`, `CON`, `PRN`, `AUX`, `NUL`,
//! `COM0`–`COM9`, `LPT0`–`LPT9` and `desktop.ini` are reserved; `~$` may not start a name and `_vti_` may not
//! appear in one; a path may not pass 400 characters. On `SharePoint` and `OneDrive` for Business a folder may
//! not start with `~`, and `forms` is reserved at a library's root. A name ending in a dot is refused too, as
//! the service (and Windows under it) drops or refuses the trailing dot. A leading dot is fine (`.bashrc`).

use crate::graph::ConflictBehavior;
use crate::ids::ItemId;

/// Files up to this size go up in one `PUT …/content`; larger ones through an upload session. The
/// `OneDrive` page gives 4 MB as the limit of a simple upload
/// (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem_put_content>).
pub const SIMPLE_UPLOAD_LIMIT: u64 = 4 * 1024 * 1024;

/// Every fragment of a session but the last is a multiple of this ("MUST be a multiple of 320 KiB",
/// <https://learn.microsoft.com/en-us/graph/api/driveitem-createuploadsession>).
pub const FRAGMENT_MULTIPLE: u64 = 320 * 1024;

/// The largest fragment: the biggest multiple of 320 KiB *under* 60 MiB ("less than 60 MiB", same page).
pub const MAX_FRAGMENT: u64 = (60 * 1024 * 1024 / FRAGMENT_MULTIPLE - 1) * FRAGMENT_MULTIPLE;

/// The longest path the service takes, from the drive root, in UTF-16 units.
pub const MAX_PATH_CHARS: usize = 400;

/// The fragment size for `--chunk-size` bytes: rounded down to a multiple of 320 KiB, at least one such
/// multiple, at most `MAX_FRAGMENT` (the largest such multiple under 60 MiB).
pub fn fragment_size(chunk_size: u64) -> u64 {
    let n = (chunk_size.min(MAX_FRAGMENT) / FRAGMENT_MULTIPLE).max(1);
    n * FRAGMENT_MULTIPLE
}

/// What `--on-conflict` does when the target already holds a different item of the same name. An item with
/// the same size and quickXorHash is always taken as already there, whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Leave the existing item, and record the file as skipped.
    #[default]
    Skip,
    /// Replace the existing file's content (a folder in the way is left, and the file skipped).
    Replace,
    /// Keep both: the service gives the upload a free name (`name 1.ext`).
    Rename,
}

impl OnConflict {
    /// The spelling on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Skip => "skip",
            OnConflict::Replace => "replace",
            OnConflict::Rename => "rename",
        }
    }
}

impl std::str::FromStr for OnConflict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "skip" => Ok(OnConflict::Skip),
            "replace" => Ok(OnConflict::Replace),
            "rename" => Ok(OnConflict::Rename),
            other => Err(format!(
                "unknown conflict policy {other:?}: expected skip, replace or rename"
            )),
        }
    }
}

/// Why the service would refuse a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty, `.` or `..`.
    Empty,
    /// One of `" * : < > ? / \ |`, or a control character.
    Character(char),
    /// A space at the start.
    LeadingSpace,
    /// A space at the end.
    TrailingSpace,
    /// A dot at the end.
    TrailingDot,
    /// `CON`, `.lock`, `desktop.ini`, … (device names with any extension).
    Reserved,
    /// Starts with `~$`.
    TildeDollar,
    /// Holds `_vti_`.
    Vti,
    /// A folder starting with `~` (business drives).
    FolderTilde,
    /// `forms` at a library's root (business drives).
    FormsAtRoot,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("the name is empty"),
            NameProblem::Character(c) if c.is_control() => {
                write!(f, "it holds the control character U+{:04X}", u32::from(*c))
            }
            NameProblem::Character(c) => write!(f, "it holds {c:?}, which OneDrive does not allow"),
            NameProblem::LeadingSpace => f.write_str("it starts with a space"),
            NameProblem::TrailingSpace => f.write_str("it ends with a space"),
            NameProblem::TrailingDot => f.write_str("it ends with a dot"),
            NameProblem::Reserved => f.write_str("it is a reserved name"),
            NameProblem::TildeDollar => f.write_str("it starts with ~$"),
            NameProblem::Vti => f.write_str("it holds _vti_"),
            NameProblem::FolderTilde => f.write_str("a folder name may not start with ~ here"),
            NameProblem::FormsAtRoot => f.write_str("forms is reserved at a library's root"),
        }
    }
}

/// Where a name is created, for the rules that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameContext {
    /// Whether the item is a folder.
    pub folder: bool,
    /// Whether it is created directly in the drive's root.
    pub(crate) at_root: bool,
    /// Whether the drive is a business drive or a `SharePoint` library (stricter about folders).
    pub(crate) business: bool,
}

const FORBIDDEN: [char; 9] = ['"', '*', ':', '<', '>', '?', '/', '\\', '|'];
const DEVICES: [&str; 24] = [
    "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    DEVICES.iter().any(|d| stem.eq_ignore_ascii_case(d))
        || name.eq_ignore_ascii_case(".lock")
        || name.eq_ignore_ascii_case("desktop.ini")
}

/// The first reason the service would refuse `name` in `ctx`, if any.
pub fn name_problem(name: &str, ctx: NameContext) -> Option<NameProblem> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(NameProblem::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control())
    {
        return Some(NameProblem::Character(c));
    }
    if name.starts_with(' ') {
        return Some(NameProblem::LeadingSpace);
    }
    if name.ends_with(' ') {
        return Some(NameProblem::TrailingSpace);
    }
    if name.ends_with('.') {
        return Some(NameProblem::TrailingDot);
    }
    if is_reserved(name) {
        return Some(NameProblem::Reserved);
    }
    if name.starts_with("~$") {
        return Some(NameProblem::TildeDollar);
    }
    if name.to_ascii_lowercase().contains("_vti_") {
        return Some(NameProblem::Vti);
    }
    if ctx.business && ctx.folder {
        if name.starts_with('~') {
            return Some(NameProblem::FolderTilde);
        }
        if ctx.at_root && name.eq_ignore_ascii_case("forms") {
            return Some(NameProblem::FormsAtRoot);
        }
    }
    None
}

/// The full-width look-alike of a forbidden character (`:` → `：`), or the control picture of a control
/// character (U+0001 → `␁`): readable, and legal everywhere.
fn look_alike(c: char) -> char {
    match c {
        '"' | '*' | ':' | '<' | '>' | '?' | '/' | '\\' | '|' => {
            char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or('_')
        }
        '\u{7f}' => '\u{2421}',
        c if u32::from(c) < 0x20 => char::from_u32(0x2400 + u32::from(c)).unwrap_or('_'),
        _ => '_',
    }
}

/// A legal name for `name` in `ctx`, made as close to it as the rules allow: forbidden characters become
/// their full-width look-alikes, a leading or trailing space `␠`, a trailing dot `．`, `~` at the start `～`,
/// `_vti_` `_vti＿`, and a reserved name gets a leading `_`. The same name always maps to the same result.
pub fn legal_name(name: &str, ctx: NameContext) -> String {
    if name.is_empty() || name == "." || name == ".." {
        return format!("_{}", name.replace('.', "．"));
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if FORBIDDEN.contains(&c) || c.is_control() {
                look_alike(c)
            } else {
                c
            }
        })
        .collect();
    if out.starts_with(' ') {
        out.replace_range(..1, "\u{2420}");
    }
    if out.ends_with(' ') {
        out.pop();
        out.push('\u{2420}');
    }
    if out.ends_with('.') {
        out.pop();
        out.push('．');
    }
    if out.starts_with("~$") || (ctx.business && ctx.folder && out.starts_with('~')) {
        out.replace_range(..1, "～");
    }
    while let Some(at) = out.to_ascii_lowercase().find("_vti_") {
        out.replace_range(at + 4..at + 5, "＿");
    }
    if is_reserved(&out)
        || (ctx.business && ctx.folder && ctx.at_root && out.eq_ignore_ascii_case("forms"))
    {
        out.insert(0, '_');
    }
    out
}

/// Why an entry cannot go to the target as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A name the service forbids (and `--rename-invalid` is off).
    Name {
        /// The name.
        name: String,
        /// Why.
        problem: NameProblem,
    },
    /// The whole path is longer than the service allows (no renaming helps).
    TooLong {
        /// Its length in UTF-16 units.
        chars: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Name { name, problem } => write!(
                f,
                "OneDrive refuses the name {name:?}: {problem}; pass --rename-invalid to upload it under a legal \
                 look-alike name, or rename it locally"
            ),
            Refusal::TooLong { chars } => write!(
                f,
                "the path would be {chars} characters long on the drive, more than the {MAX_PATH_CHARS} OneDrive \
                 allows; restore it with a shorter --to, or move it up locally"
            ),
        }
    }
}

/// Where an entry goes: its path relative to the target folder, and each name `--rename-invalid` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `/a/b.jpg`, relative to the target folder.
    pub remote_path: String,
    /// `(from, to)` for each name that was made legal.
    pub renamed: Vec<(String, String)>,
}

/// Place an entry whose names, from the source's root down, are `segments` (the last one is the entry's
/// own; `folder` says whether the entry is a folder) under the target folder `target_root` (`/` or
/// `/Restored`). With `rename_invalid`, refused names are made legal; without, the first is a refusal.
pub fn place(
    segments: &[&str],
    folder: bool,
    target_root: &str,
    business: bool,
    rename_invalid: bool,
) -> Result<Placement, Refusal> {
    let root_is_drive_root = target_root.trim_matches('/').is_empty();
    let mut remote_path = String::new();
    let mut renamed = Vec::new();
    for (i, name) in segments.iter().enumerate() {
        let ctx = NameContext {
            folder: folder || i + 1 < segments.len(),
            at_root: root_is_drive_root && i == 0,
            business,
        };
        let legal = match name_problem(name, ctx) {
            None => (*name).to_owned(),
            Some(problem) if !rename_invalid => {
                return Err(Refusal::Name {
                    name: (*name).to_owned(),
                    problem,
                });
            }
            Some(problem) => {
                let made = legal_name(name, ctx);
                if name_problem(&made, ctx).is_some() {
                    return Err(Refusal::Name {
                        name: (*name).to_owned(),
                        problem,
                    });
                }
                renamed.push(((*name).to_owned(), made.clone()));
                made
            }
        };
        remote_path.push('/');
        remote_path.push_str(&legal);
    }
    let full = join(target_root, &remote_path);
    let chars = full.encode_utf16().count();
    if chars > MAX_PATH_CHARS {
        return Err(Refusal::TooLong { chars });
    }
    Ok(Placement {
        remote_path,
        renamed,
    })
}

/// `/To` + `/a/b` → `/To/a/b`; `/` + `/a` → `/a`; `/To` + nothing → `/To`.
pub fn join(root: &str, rel: &str) -> String {
    let root = root.trim_end_matches('/');
    let rel = rel.trim_start_matches('/');
    match (root.is_empty(), rel.is_empty()) {
        (true, true) => "/".to_owned(),
        (true, false) => format!("/{rel}"),
        (false, true) => root.to_owned(),
        (false, false) => format!("{root}/{rel}"),
    }
}

/// `/a/b/c` → `(/a/b, c)`; `/c` → `(/, c)`.
pub fn split_parent(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/".to_owned(), name.to_owned()),
        Some((parent, name)) => (parent.to_owned(), name.to_owned()),
        None => ("/".to_owned(), trimmed.to_owned()),
    }
}

/// An item the target already has under the name an entry goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingItem {
    /// Its ID (compared canonically: the service has changed IDs' letter case between two calls).
    pub id: ItemId,
    /// Whether it is a folder.
    pub folder: bool,
    /// Its size.
    pub size: Option<u64>,
    /// Its quickXorHash.
    pub(crate) quick_xor: Option<String>,
    /// `fileSystemInfo.lastModifiedDateTime`.
    pub modified: Option<String>,
}

/// What to do with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upload it, telling the service this on a name conflict.
    Upload(ConflictBehavior),
    /// The same content is already there (same size and quickXorHash): nothing to send.
    AlreadyThere {
        /// The item.
        id: ItemId,
    },
    /// Leave what is there and skip the file.
    Skip {
        /// Why.
        reason: &'static str,
    },
}

/// Decide for a local file of `size` bytes hashing to `quick_xor`, given what the target has under its name
/// (`None`: nothing) and the policy. `own_previous`: an item an earlier attempt of this restore left there
/// and failed to verify, which is replaced whatever the policy.
pub fn decide(
    size: u64,
    quick_xor: &str,
    existing: Option<&ExistingItem>,
    policy: OnConflict,
    own_previous: Option<&ItemId>,
) -> Decision {
    let Some(there) = existing else {
        // `fail`, not `replace`: an item that appears meanwhile is caught and judged, never overwritten.
        return Decision::Upload(ConflictBehavior::Fail);
    };
    if there.folder {
        return match policy {
            OnConflict::Rename => Decision::Upload(ConflictBehavior::Rename),
            _ => Decision::Skip {
                reason: "a folder of that name is already there",
            },
        };
    }
    if there.size == Some(size) && there.quick_xor.as_deref() == Some(quick_xor) {
        return Decision::AlreadyThere {
            id: there.id.clone(),
        };
    }
    if own_previous == Some(&there.id) {
        return Decision::Upload(ConflictBehavior::Replace);
    }
    match policy {
        OnConflict::Skip => Decision::Skip {
            reason: "a different file of that name is already there (--on-conflict skip)",
        },
        OnConflict::Replace => Decision::Upload(ConflictBehavior::Replace),
        OnConflict::Rename => Decision::Upload(ConflictBehavior::Rename),
    }
}

/// A local file's stamp: its size and modification time, which change when its content does.
pub fn stamp(len: u64, modified_secs: i64, modified_nanos: u32) -> String {
    format!("{len}:{modified_secs}.{modified_nanos:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: NameContext = NameContext {
        folder: false,
        at_root: false,
        business: false,
    };

    #[test]
    fn fragments_are_multiples_of_320_kib_under_60_mib() {
        let cases = [
            (32 * 1024 * 1024, 102 * FRAGMENT_MULTIPLE),
            (256 * 1024, FRAGMENT_MULTIPLE),
            (0, FRAGMENT_MULTIPLE),
            (10 * 1024 * 1024, 32 * FRAGMENT_MULTIPLE),
            (u64::MAX, MAX_FRAGMENT),
        ];
        for (chunk, want) in cases {
            assert_eq!(fragment_size(chunk), want, "{chunk}");
            assert!(fragment_size(chunk).is_multiple_of(FRAGMENT_MULTIPLE));
        }
        const { assert!(MAX_FRAGMENT < 60 * 1024 * 1024) };
    }

    #[test]
    fn the_service_rules_on_names_and_the_legal_look_alikes() {
        let cases: [(&str, Option<NameProblem>, &str); 16] = [
            ("IMG_0001.HEIC", None, "IMG_0001.HEIC"),
            (".bashrc", None, ".bashrc"),
            ("a b #1 + 100%.txt", None, "a b #1 + 100%.txt"),
            ("a:b", Some(NameProblem::Character(':')), "a：b"),
            ("what?.txt", Some(NameProblem::Character('?')), "what？.txt"),
            ("x\\y|z", Some(NameProblem::Character('\\')), "x＼y｜z"),
            ("tab\there", Some(NameProblem::Character('\t')), "tab␉here"),
            (" lead", Some(NameProblem::LeadingSpace), "␠lead"),
            ("trail ", Some(NameProblem::TrailingSpace), "trail␠"),
            ("end.", Some(NameProblem::TrailingDot), "end．"),
            ("CON", Some(NameProblem::Reserved), "_CON"),
            ("com1.txt", Some(NameProblem::Reserved), "_com1.txt"),
            (".lock", Some(NameProblem::Reserved), "_.lock"),
            ("desktop.ini", Some(NameProblem::Reserved), "_desktop.ini"),
            (
                "~$report.docx",
                Some(NameProblem::TildeDollar),
                "～$report.docx",
            ),
            ("my_vti_page", Some(NameProblem::Vti), "my_vti＿page"),
        ];
        for (name, problem, legal) in cases {
            assert_eq!(name_problem(name, FILE), problem, "{name:?}");
            assert_eq!(legal_name(name, FILE), legal, "{name:?}");
            assert_eq!(
                name_problem(&legal_name(name, FILE), FILE),
                None,
                "{name:?}"
            );
        }
        let business_root_folder = NameContext {
            folder: true,
            at_root: true,
            business: true,
        };
        assert_eq!(
            name_problem("Forms", business_root_folder),
            Some(NameProblem::FormsAtRoot)
        );
        assert_eq!(legal_name("Forms", business_root_folder), "_Forms");
        assert_eq!(
            name_problem("~old", business_root_folder),
            Some(NameProblem::FolderTilde)
        );
        assert_eq!(name_problem("~old", FILE), None);
        assert_eq!(name_problem("Forms", FILE), None);
        assert_eq!(name_problem("CONSOLE.txt", FILE), None);
    }

    #[test]
    fn entries_are_placed_under_the_target_or_refused_with_the_reason() {
        let ok = place(&["Photos", "2021", "a.jpg"], false, "/", false, false).unwrap();
        assert_eq!(ok.remote_path, "/Photos/2021/a.jpg");
        let refused = place(&["Photos", "a:b.jpg"], false, "/", false, false).unwrap_err();
        assert!(
            refused.to_string().contains("a:b.jpg")
                && refused.to_string().contains("--rename-invalid"),
            "{refused}"
        );
        let renamed = place(&["Bad|Folder", "a:b.jpg"], false, "/To", false, true).unwrap();
        assert_eq!(renamed.remote_path, "/Bad｜Folder/a：b.jpg");
        assert_eq!(renamed.renamed.len(), 2);
        // The root rule applies only directly under the drive root.
        assert!(place(&["forms"], true, "/", true, false).is_err());
        assert!(place(&["forms"], true, "/To", true, false).is_ok());
        // Too long is too long, renamed or not.
        let long = "x".repeat(200);
        let err = place(&[&long, &long], false, "/To", false, true).unwrap_err();
        assert_eq!(err, Refusal::TooLong { chars: 405 });
        assert!(place(&[&long, &long[..195]], false, "/To", false, false).is_ok());
    }

    #[test]
    fn existing_items_are_judged_by_size_and_hash_then_by_the_policy() {
        use ConflictBehavior as C;
        let there = |size, qx: &str| ExistingItem {
            id: ItemId::from("T1"),
            folder: false,
            size: Some(size),
            quick_xor: Some(qx.into()),
            modified: None,
        };
        let folder = ExistingItem {
            folder: true,
            ..there(0, "")
        };
        let cases = [
            (None, OnConflict::Skip, None, Decision::Upload(C::Fail)),
            (
                Some(there(10, "h")),
                OnConflict::Replace,
                None,
                Decision::AlreadyThere {
                    id: ItemId::from("T1"),
                },
            ),
            (
                Some(there(10, "other")),
                OnConflict::Skip,
                None,
                Decision::Skip {
                    reason: "a different file of that name is already there (--on-conflict skip)",
                },
            ),
            (
                Some(there(11, "h")),
                OnConflict::Replace,
                None,
                Decision::Upload(C::Replace),
            ),
            (
                Some(there(10, "x")),
                OnConflict::Rename,
                None,
                Decision::Upload(C::Rename),
            ),
            (
                Some(there(10, "x")),
                OnConflict::Skip,
                Some("T1"),
                Decision::Upload(C::Replace),
            ),
            (
                Some(folder.clone()),
                OnConflict::Replace,
                None,
                Decision::Skip {
                    reason: "a folder of that name is already there",
                },
            ),
            (
                Some(folder),
                OnConflict::Rename,
                None,
                Decision::Upload(C::Rename),
            ),
        ];
        for (existing, policy, own, want) in cases {
            assert_eq!(
                decide(
                    10,
                    "h",
                    existing.as_ref(),
                    policy,
                    own.map(ItemId::from).as_ref()
                ),
                want,
                "{existing:?} {policy:?}"
            );
        }
        // The item an earlier attempt left is known by its ID in any spelling the service used since.
        let left = ExistingItem {
            id: ItemId::from("5EA4B1C0D2E3F617!118"),
            ..there(10, "x")
        };
        assert_eq!(
            decide(
                10,
                "h",
                Some(&left),
                OnConflict::Skip,
                Some(&ItemId::from("5ea4b1c0d2e3f617!118"))
            ),
            Decision::Upload(C::Replace)
        );
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("/", "/a/b"), "/a/b");
        assert_eq!(join("/To/", "a"), "/To/a");
        assert_eq!(join("/To", ""), "/To");
        assert_eq!(join("/", ""), "/");
        assert_eq!(split_parent("/a/b/c"), ("/a/b".to_owned(), "c".to_owned()));
        assert_eq!(split_parent("/c"), ("/".to_owned(), "c".to_owned()));
        assert_eq!(stamp(10, 5, 7), "10:5.000000007");
    }
}
