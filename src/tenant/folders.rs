//! Where each drive of a tenant goes under the backup root: `users/<upn>/` for a user's `OneDrive`,
//! `sites/<site>~<id>/<library>/` for a site's document library. Each folder is one drive's own destination,
//! with its own manifest (`<folder>/.odbackup/`), so a drive's backup is found by its folder wherever and
//! whenever it ran before.
//!
//! The names come from the service (sign-in names, site and library names) and are hostile input like any
//! item name. They are made safe by the local-path rules ([`crate::localpath::safe_name`]: separators and
//! control characters encoded, `.`/`..`/empty encoded, long names shortened, each change marked with a stable
//! suffix), and stable: the same name gives the same folder every night, on every machine.
//!
//! - A user's folder is their sign-in name in lower case: sign-in names are case-insensitive, so a name
//!   whose case was changed keeps its folder.
//! - A site's folder is its URL name with a suffix from its ID (`Team~1a2b3c4d`): two sites may share a name
//!   (`/sites/Team`, `/teams/Team`, another geography), their IDs never.
//! - A library's folder is its name.
//!
//! Should two drives of one discovery still land on one folder, compared case-insensitively (two users whose
//! sign-in names differ only in case, which the directory does not allow but a listing could show; a library
//! named so that its safe form meets another's), each of them gets a suffix from its drive ID instead: never
//! one folder for two drives. A drive's own manifest would refuse another drive anyway ("holds the backup of
//! another drive").

use std::collections::HashMap;

use crate::localpath::{MAX_NAME_BYTES, safe_name};

use super::shard::{canonical_drive_id, stable_hash};

/// The folder under the root that holds users' `OneDrives`.
pub const USERS_DIR: &str = "users";
/// The folder under the root that holds sites' libraries.
pub const SITES_DIR: &str = "sites";

/// One path segment from `name`, safe under the local-path rules (a name that had to change carries a suffix
/// derived from the name itself).
pub fn segment(name: &str) -> String {
    safe_name(name, name).name
}

/// `base` with `~` and 8 hex digits of `key`'s stable hash at its end, shortened to fit a file name.
pub fn suffixed(base: &str, key: &str) -> String {
    let suffix = format!("~{:08x}", stable_hash(key) >> 32);
    let mut cut = base.len().min(MAX_NAME_BYTES - suffix.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// The folder of a user's `OneDrive`, from their sign-in name (or their object ID when the directory shows
/// none).
pub fn user_folder(upn: Option<&str>, id: &str) -> String {
    let name = upn.filter(|u| !u.trim().is_empty()).unwrap_or(id);
    format!("{USERS_DIR}/{}", segment(&name.to_lowercase()))
}

/// The folder of a site: its URL name (else its display name, else `root`) with a suffix from its ID.
pub fn site_folder(site_id: &str, name: Option<&str>, display_name: Option<&str>) -> String {
    let name = name
        .or(display_name)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or("root");
    suffixed(&segment(name), &site_id.to_lowercase())
}

/// The folder of a site's library.
pub fn library_folder(site_folder: &str, library: &str) -> String {
    format!("{SITES_DIR}/{site_folder}/{}", segment(library))
}

/// Give every drive its own folder: where two or more of `folders` meet as the most forgiving file system
/// compares names (case folded, Unicode normalised: `Équipe` typed precomposed and decomposed), each of them
/// has its last segment suffixed from its drive ID. `folders` are `(drive id, folder)`; the result is in the
/// same order.
pub fn disambiguate(folders: &[(String, String)]) -> Vec<String> {
    let meet = |folder: &str| crate::localpath::NameRules::FOLDING.key(folder);
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, folder) in folders {
        *count.entry(meet(folder)).or_default() += 1;
    }
    folders
        .iter()
        .map(|(drive_id, folder)| {
            if count[&meet(folder)] < 2 {
                return folder.clone();
            }
            let (parent, last) = folder.rsplit_once('/').unwrap_or(("", folder));
            let unique = suffixed(last, &canonical_drive_id(drive_id));
            if parent.is_empty() {
                unique
            } else {
                format!("{parent}/{unique}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_go_under_their_lower_case_sign_in_name_and_hostile_names_stay_one_safe_segment() {
        assert_eq!(
            user_folder(Some("Adele.Vance@Contoso.com"), "id-1"),
            "users/adele.vance@contoso.com"
        );
        assert_eq!(user_folder(None, "0f1e-guid"), "users/0f1e-guid");
        for hostile in ["..", ".", "", "a/../../etc", "x\u{0}y", "\u{1b}[31m"] {
            let folder = user_folder(Some(hostile), "id-9");
            let parts: Vec<&str> = folder.split('/').collect();
            assert_eq!(parts.len(), 2, "{hostile:?} → {folder}");
            assert!(
                !matches!(parts[1], "" | "." | "..") && !parts[1].contains(['\0', '\u{1b}']),
                "{hostile:?} → {folder}"
            );
        }
        let long = "a".repeat(400) + "@contoso.com";
        assert!(user_folder(Some(&long), "id").len() <= "users/".len() + MAX_NAME_BYTES);
    }

    #[test]
    fn sites_carry_their_id_and_libraries_their_name() {
        let a = site_folder(
            "contoso.sharepoint.com,1,2",
            Some("Team"),
            Some("Team site"),
        );
        let b = site_folder(
            "contoso.sharepoint.com,3,4",
            Some("Team"),
            Some("Team site"),
        );
        assert!(
            a.starts_with("Team~") && b.starts_with("Team~") && a != b,
            "{a} {b}"
        );
        assert_eq!(
            a,
            site_folder("Contoso.sharepoint.com,1,2", Some("Team"), None)
        );
        assert_eq!(
            library_folder(&a, "Documents"),
            format!("sites/{a}/Documents")
        );
        let dotdot = library_folder(&a, "..");
        assert!(!dotdot.split('/').any(|s| s == ".."), "{dotdot}");
        assert!(site_folder("h,1,2", None, None).starts_with("root~"));
    }

    #[test]
    fn folders_that_meet_ignoring_case_each_get_their_drive_id_and_others_are_left_alone() {
        let folders = vec![
            ("b!one".to_owned(), "users/adele@x".to_owned()),
            ("b!two".to_owned(), "users/Adele@x".to_owned()),
            ("b!three".to_owned(), "users/megan@x".to_owned()),
        ];
        let out = disambiguate(&folders);
        assert_eq!(out[2], "users/megan@x");
        assert!(out[0].starts_with("users/adele@x~") && out[1].starts_with("users/Adele@x~"));
        assert_ne!(out[0].to_lowercase(), out[1].to_lowercase());
        // The same drives meet the same way tomorrow.
        assert_eq!(disambiguate(&folders), out);
        // Two libraries whose names differ only in their Unicode form meet too.
        let libraries = vec![
            ("b!nfc".to_owned(), "sites/T~1/\u{c9}quipe".to_owned()),
            ("b!nfd".to_owned(), "sites/T~1/E\u{301}quipe".to_owned()),
        ];
        let out = disambiguate(&libraries);
        assert!(
            out.iter()
                .all(|f| f.contains('~') && f.matches('~').count() == 2),
            "{out:?}"
        );
        assert_ne!(out[0], out[1]);
    }
}
