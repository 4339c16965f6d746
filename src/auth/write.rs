//! Write access: the delegated scope a restore needs, and whether a stored sign-in asked for one. A backup
//! signs in read-only (`Files.Read.All`); uploading needs `Files.ReadWrite` or more
//! (<https://learn.microsoft.com/en-us/graph/api/driveitem-createuploadsession>, "Permissions").
//!
//! Knows scope names only: nothing of the token store or of HTTP.

/// The scope `odbackup login --write` asks for instead of `Files.Read.All`: read and write the user's files
/// and the files shared with them (`Files.ReadWrite` would cover the user's own drive only).
pub const WRITE_SCOPE: &str = "Files.ReadWrite.All";

/// Delegated scopes that allow writing to a drive.
const WRITING_SCOPES: [&str; 5] = [
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
];

/// The bare scope name (`https://graph.microsoft.us/Files.Read` → `Files.Read`: national clouds may spell
/// scopes in full).
fn bare(scope: &str) -> &str {
    scope.rsplit('/').next().unwrap_or(scope)
}

/// Whether `scopes` include one that allows writing files.
pub fn has_write_scope(scopes: &[String]) -> bool {
    scopes.iter().any(|s| {
        WRITING_SCOPES
            .iter()
            .any(|w| bare(s).eq_ignore_ascii_case(w))
    })
}

/// Whether `scopes` include a `SharePoint` sites scope (`Sites.Read.All`, `Sites.Selected`, …), in any spelling of
/// resource or letter case.
pub fn has_sites_scope(scopes: &[String]) -> bool {
    scopes.iter().any(|s| {
        let name = bare(s);
        name.len() > 6
            && name
                .get(..6)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sites."))
    })
}

/// `scopes` with write access: the read-only files scopes become [`WRITE_SCOPE`] (in the same place and
/// spelling of resource), or it is added; scopes that already allow writing are left as they are.
pub fn with_write_scope(scopes: Vec<String>) -> Vec<String> {
    if has_write_scope(&scopes) {
        return scopes;
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len() + 1);
    let mut replaced = false;
    for scope in scopes {
        let name = bare(&scope);
        if name.eq_ignore_ascii_case("Files.Read") || name.eq_ignore_ascii_case("Files.Read.All") {
            if !replaced {
                let prefix = &scope[..scope.len() - name.len()];
                out.push(format!("{prefix}{WRITE_SCOPE}"));
                replaced = true;
            }
        } else {
            out.push(scope);
        }
    }
    if !replaced {
        out.push(WRITE_SCOPE.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn read_only_scopes_become_read_write_and_others_stay() {
        assert!(!has_write_scope(&v(&[
            "Files.Read.All",
            "offline_access",
            "User.Read"
        ])));
        assert!(has_write_scope(&v(&["files.readwrite", "offline_access"])));
        assert!(has_write_scope(&v(&[
            "https://graph.microsoft.us/Files.ReadWrite.All"
        ])));
        assert_eq!(
            with_write_scope(v(&[
                "Files.Read.All",
                "offline_access",
                "User.Read",
                "Files.Read"
            ])),
            v(&["Files.ReadWrite.All", "offline_access", "User.Read"])
        );
        assert_eq!(
            with_write_scope(v(&[
                "https://graph.microsoft.us/Files.Read",
                "offline_access"
            ])),
            v(&[
                "https://graph.microsoft.us/Files.ReadWrite.All",
                "offline_access"
            ])
        );
        assert_eq!(
            with_write_scope(v(&["offline_access", "Sites.Read.All"])),
            v(&["offline_access", "Sites.Read.All", "Files.ReadWrite.All"])
        );
        let writing = v(&["Files.ReadWrite", "offline_access"]);
        assert_eq!(with_write_scope(writing.clone()), writing);
    }

    #[test]
    fn a_sites_scope_is_found_in_any_spelling_and_other_names_never_panic() {
        let scopes = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(has_sites_scope(&scopes(&[
            "https://graph.microsoft.com/sites.read.all"
        ])));
        assert!(has_sites_scope(&scopes(&["Files.Read", "Sites.Selected"])));
        assert!(!has_sites_scope(&scopes(&[
            "Sites.",
            "Files.Read.All",
            "User.Read"
        ])));
        // A multi-byte character across the sixth byte used to panic a byte slice.
        assert!(!has_sites_scope(&scopes(&["Filesé.Read", "ééééé"])));
    }
}
