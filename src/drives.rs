//! Which drive a run reads, resolved with the service, and the drives there are to choose from
//! (`odbackup drives`). A drive that cannot be reached because of how it was named, or because of what the
//! sign-in allows, is a [`DriveError`]: a usage error saying what to do (the permission to add and the command
//! that adds it, the name to check), decided by the answer's status on the request that named the drive, never
//! by the service's wording. Other failures (the network, throttling, a refused sign-in) pass through as they are.
//!
//! Knows the Graph client and a few facts about the sign-in (to word its advice); nothing of the manifest or the
//! terminal.

use serde::Serialize;

use crate::error::Error;
use crate::graph::{Drive, DriveSelector, GraphClient, GraphError, SiteRef};

/// The permission reading a site takes (<https://learn.microsoft.com/en-us/graph/api/site-getbypath>); any
/// wider `Sites.*` permission includes it.
pub const SITES_SCOPE: &str = "Sites.Read.All";

/// What is known of the sign-in in use, to say how to get a permission it lacks.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignInFacts {
    /// The stored sign-in is an app's (client credentials): permissions are the app's, granted by an admin.
    pub(crate) app_only: bool,
    /// The token comes from `ODBACKUP_ACCESS_TOKEN`: nothing odbackup stored.
    pub(crate) static_token: bool,
    /// The stored sign-in's account name.
    pub account: String,
    /// Whether the account is the default one (no `--account` to repeat).
    pub(crate) default_account: bool,
    /// The scopes the stored sign-in asked for, when there is one.
    pub scopes: Option<Vec<String>>,
}

impl SignInFacts {
    /// Whether the stored sign-in asked for a permission that reads sites.
    fn has_sites_scope(&self) -> Option<bool> {
        self.scopes
            .as_ref()
            .map(|scopes| crate::auth::write::has_sites_scope(scopes))
    }

    /// The `login` command that adds the sites permission to this sign-in.
    fn login_command(&self) -> String {
        if self.default_account {
            "odbackup login --sites".to_owned()
        } else {
            format!("odbackup login --sites --account {}", self.account)
        }
    }

    /// What to do when a site was refused (403).
    fn sites_advice(&self) -> String {
        if self.app_only {
            return format!(
                "the app needs the {SITES_SCOPE} application permission, with admin consent (Entra admin \
                 center → App registrations → API permissions → Microsoft Graph → Application permissions), \
                 then re-run the same command"
            );
        }
        if self.static_token {
            return format!(
                "the token in ODBACKUP_ACCESS_TOKEN must carry {SITES_SCOPE} (for an app-only token: the \
                 {SITES_SCOPE} application permission, with admin consent); or unset it and run `{}`",
                self.login_command()
            );
        }
        match self.has_sites_scope() {
            Some(false) | None => format!(
                "reading a SharePoint site needs the {SITES_SCOPE} permission, which this sign-in did not ask \
                 for: run `{}`, then re-run the same command (or back up the library by its ID with --drive-id, \
                 which needs no more than you have: `odbackup drives` lists what you can reach)",
                self.login_command()
            ),
            Some(true) => format!(
                "the sign-in has {SITES_SCOPE}, so your account itself may not be allowed on this site: check \
                 the address, or ask the site's owner for access"
            ),
        }
    }
}

/// A drive that cannot be reached the way it was named. Every variant is a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The service refused to show the site: the sign-in lacks `Sites.Read.All`, or the user may not see it.
    #[error("cannot read SharePoint site {site} ({reason}): {advice}")]
    SiteRefused {
        /// The site, as named.
        site: String,
        /// The status and code the service answered.
        reason: String,
        /// What to do, for this sign-in.
        advice: String,
    },
    /// No site answers to that name.
    #[error(
        "there is no SharePoint site {site} ({reason}): check the address (https://contoso.sharepoint.com/sites/Team, \
         or host:/sites/Team)"
    )]
    SiteNotFound {
        /// The site, as named.
        site: String,
        /// The status and code the service answered.
        reason: String,
    },
    /// The site has no library of that name.
    #[error("{0}; pick one with --library, or list them with `odbackup drives --site …`")]
    NoSuchLibrary(String),
    /// A user's `OneDrive` cannot be read.
    #[error("cannot read the OneDrive of user {user} ({reason}): {problem}")]
    User {
        /// The user, as named.
        user: String,
        /// The status and code the service answered.
        reason: String,
        /// What it means and what to do.
        problem: &'static str,
    },
    /// The token has no drive of its own: an app-only token acts as an application, not a user (and a work
    /// account that never opened `OneDrive` has none yet: "Unable to retrieve user's mysite URL", skilion/onedrive
    /// #276).
    #[error(
        "this token has no drive of its own ({reason}): an app-only token acts as an application, not as a \
         user, and a work account that never opened OneDrive has none yet; name the drive with --user UPN, \
         --site SITE or --drive-id ID (or open OneDrive once in a browser)"
    )]
    NoOwnDrive {
        /// The status and code the service answered.
        reason: String,
    },
    /// No drive has that ID, or the user may not see it.
    #[error(
        "there is no drive {id} that you can read ({reason}): check the ID (`odbackup drives` lists the ones \
         you can reach)"
    )]
    NoSuchDrive {
        /// The ID given.
        id: String,
        /// The status and code the service answered.
        reason: String,
    },
}

/// `HTTP 403 (accessDenied)`.
fn reason(err: &GraphError) -> String {
    match (err.status(), err.code()) {
        (Some(status), Some(code)) => format!("HTTP {status} {code}"),
        (Some(status), None) => format!("HTTP {status}"),
        _ => err.to_string(),
    }
}

/// Turn a Graph error met while reaching the drive `selector` names into what the user should read.
fn explain(err: GraphError, selector: &DriveSelector, facts: &SignInFacts) -> Error {
    let status = err.status();
    let drive_error = match (selector, status) {
        (_, _) if matches!(err, GraphError::NoSuchLibrary { .. }) => {
            DriveError::NoSuchLibrary(err.to_string())
        }
        // A maintenance window that outlasted the retries: no permission is missing, so none is named.
        (_, _) if err.is_read_only_window() => {
            return Error::Graph {
                what: "reading the drive (the service is in a read-only maintenance window; try again later)",
                source: err,
            };
        }
        (DriveSelector::Site { site, .. }, Some(403)) => DriveError::SiteRefused {
            site: site.to_string(),
            reason: reason(&err),
            advice: facts.sites_advice(),
        },
        (DriveSelector::Site { site, .. }, Some(404)) => DriveError::SiteNotFound {
            site: site.to_string(),
            reason: reason(&err),
        },
        (DriveSelector::User(user), Some(s @ (400 | 403 | 404))) => DriveError::User {
            user: user.clone(),
            reason: reason(&err),
            problem: match s {
                404 => {
                    "no such user, or their OneDrive was never set up (it is created when they first open \
                     OneDrive); check the sign-in name, e.g. adele@contoso.com"
                }
                403 => {
                    "your account is not allowed to read it; its owner or an administrator must grant access \
                     (an app-only token needs the Files.Read.All application permission)"
                }
                _ => {
                    "the service would not open it; with an app-only token the OneDrive must already exist \
                     (the user opens OneDrive once)"
                }
            },
        },
        (DriveSelector::Me, Some(400)) => DriveError::NoOwnDrive {
            reason: reason(&err),
        },
        (DriveSelector::Id(id), Some(400 | 404)) => DriveError::NoSuchDrive {
            id: id.to_string(),
            reason: reason(&err),
        },
        _ => {
            return Error::Graph {
                what: "reading the drive",
                source: err,
            };
        }
    };
    Error::Drive(drive_error)
}

/// Read the drive `selector` names.
///
/// # Errors
/// [`Error::Drive`] when the name or the sign-in is the problem (what to do is in the message); the Graph
/// error otherwise.
pub(crate) async fn resolve(
    graph: &GraphClient,
    selector: &DriveSelector,
    facts: &SignInFacts,
) -> Result<Drive, Error> {
    graph
        .drive(selector)
        .await
        .map_err(|e| explain(e, selector, facts))
}

/// Whose drives to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrivesOf {
    /// The signed-in user's.
    Me,
    /// A user's, by UPN or ID.
    User(String),
    /// A site's document libraries.
    Site(SiteRef),
}

/// One drive there is to back up, for `odbackup drives`.
#[derive(Debug, Clone, Serialize)]
pub struct DriveInfo {
    /// The ID to pass to `--drive-id`.
    pub id: String,
    /// Its name (a library's name for `--library`).
    pub name: Option<String>,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: String,
    /// The owner's display name.
    pub owner: Option<String>,
    /// Bytes used.
    pub quota_used: Option<u64>,
    /// Bytes available in all.
    pub quota_total: Option<u64>,
    /// Its address in a browser.
    pub(crate) web_url: Option<String>,
}

impl From<Drive> for DriveInfo {
    fn from(d: Drive) -> Self {
        Self {
            id: d.id.to_string(),
            name: d.name,
            drive_type: d.drive_type,
            owner: d.owner,
            quota_used: d.quota.as_ref().and_then(|q| q.used),
            quota_total: d.quota.as_ref().and_then(|q| q.total),
            web_url: d.web_url,
        }
    }
}

/// The drives of `of`.
///
/// # Errors
/// As [`resolve`], for the user or site `of` names.
pub(crate) async fn list(
    graph: &GraphClient,
    of: &DrivesOf,
    facts: &SignInFacts,
) -> Result<Vec<DriveInfo>, Error> {
    let (listed, selector) = match of {
        DrivesOf::Me => (graph.my_drives().await, DriveSelector::Me),
        DrivesOf::User(user) => (
            graph.user_drives(user).await,
            DriveSelector::User(user.clone()),
        ),
        DrivesOf::Site(site) => {
            let selector = DriveSelector::Site {
                site: site.clone(),
                library: None,
            };
            let listed = match graph.site(site).await {
                Ok(found) => graph.site_drives(&found).await,
                Err(e) => Err(e),
            };
            (listed, selector)
        }
    };
    listed
        .map(|drives| drives.into_iter().map(DriveInfo::from).collect())
        .map_err(|e| explain(e, &selector, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_for_a_refused_site_fits_the_sign_in() {
        let stored = |scopes: &[&str], account: &str| SignInFacts {
            app_only: false,
            static_token: false,
            account: account.to_owned(),
            default_account: account == "default",
            scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
        };
        let without = stored(&["Files.Read.All", "offline_access"], "default").sites_advice();
        assert!(
            without.contains("Sites.Read.All") && without.contains("run `odbackup login --sites`"),
            "{without}"
        );
        let work = stored(&["Files.Read.All"], "work").sites_advice();
        assert!(
            work.contains("`odbackup login --sites --account work`"),
            "{work}"
        );
        let with =
            stored(&["https://graph.microsoft.com/Sites.Read.All"], "default").sites_advice();
        assert!(with.contains("may not be allowed on this site"), "{with}");
        let token = SignInFacts {
            static_token: true,
            ..SignInFacts::default()
        }
        .sites_advice();
        assert!(
            token.contains("ODBACKUP_ACCESS_TOKEN must carry Sites.Read.All"),
            "{token}"
        );
    }
}
