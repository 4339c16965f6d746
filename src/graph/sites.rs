//! Reaching drives other than the signed-in user's own: `SharePoint` sites and their document libraries, other
//! users' `OneDrives`, and the list of drives each offers, so a backup can name exactly one.
//!
//! A site is named the ways users copy it: its URL (`https://contoso.sharepoint.com/sites/Team`, even with a
//! library or page path after it), `host:/server-relative-path`, its composite ID (`host,guid,guid`), or a bare
//! host (its root site). Reading a site needs `Sites.Read.All`
//! (<https://learn.microsoft.com/en-us/graph/api/site-getbypath>); a library reached by its drive ID needs only
//! `Files.Read.All`.
//!
//! Knows HTTP and JSON only, like the rest of `graph`.

use serde::Deserialize;

use super::model::{Drive, RawDrive};
use super::{GraphClient, GraphError, encode_id, encode_path, paging};

/// Managed paths under which `SharePoint` keeps site collections: a site URL's path is cut after the segment that
/// follows one of these (`/sites/Team/Shared Documents/…` → `/sites/Team`).
const MANAGED_PATHS: [&str; 3] = ["sites", "teams", "personal"];

/// Drive pages followed at most when listing a site's libraries: a site has a few, not thousands, and a
/// service that kept sending next links must not keep a listing going forever.
const MAX_DRIVE_PAGES: usize = 50;

/// A `SharePoint` site, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRef {
    /// `contoso.sharepoint.com` and `/sites/Team` (`GET /sites/{host}:/{path}`).
    Path {
        /// The `SharePoint` host.
        host: String,
        /// The server-relative path, starting with `/`.
        path: String,
    },
    /// A composite ID `host,site-collection-guid,web-guid`, or a bare host for its root site
    /// (`GET /sites/{id}`).
    Id(String),
}

impl SiteRef {
    /// Read what a user wrote for a site: a URL, `host:/path`, `host,guid,guid` or a bare host.
    ///
    /// # Errors
    /// A sentence saying which forms are accepted, when `input` is none of them.
    pub fn parse(input: &str) -> Result<SiteRef, String> {
        let input = input.trim();
        let shapes = "give the site's address (https://contoso.sharepoint.com/sites/Team), host:/path \
                      (contoso.sharepoint.com:/sites/Team) or its ID (contoso.sharepoint.com,<guid>,<guid>)";
        if input.starts_with("https://") || input.starts_with("http://") {
            let url =
                url::Url::parse(input).map_err(|e| format!("site {input:?}: {e}; {shapes}"))?;
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("site {input:?} has no host; {shapes}"))?
                .to_ascii_lowercase();
            let segments: Vec<String> = url
                .path_segments()
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect();
            let kept = match segments.first() {
                Some(first) if MANAGED_PATHS.iter().any(|m| first.eq_ignore_ascii_case(m)) => {
                    &segments[..segments.len().min(2)]
                }
                // The host's root site: whatever follows is a library or a page in it.
                _ => &segments[..0],
            };
            return Ok(if kept.is_empty() {
                SiteRef::Id(host)
            } else {
                SiteRef::Path {
                    host,
                    path: format!("/{}", kept.join("/")),
                }
            });
        }
        if let Some((host, path)) = input.split_once(':') {
            let host = host.trim();
            if host.is_empty() || host.contains(['/', ',', ' ']) {
                return Err(format!("site {input:?}: {shapes}"));
            }
            let path = path.trim().trim_end_matches(':');
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            return Ok(if segments.is_empty() {
                SiteRef::Id(host.to_ascii_lowercase())
            } else {
                SiteRef::Path {
                    host: host.to_ascii_lowercase(),
                    path: format!("/{}", segments.join("/")),
                }
            });
        }
        let parts: Vec<&str> = input.split(',').collect();
        let plausible_host = |h: &str| !h.is_empty() && h.contains('.') && !h.contains(['/', ' ']);
        match parts.as_slice() {
            [host] if plausible_host(host) => Ok(SiteRef::Id((*host).to_ascii_lowercase())),
            [host, a, b] if plausible_host(host) && !a.is_empty() && !b.is_empty() => {
                Ok(SiteRef::Id(input.to_owned()))
            }
            _ => Err(format!("site {input:?}: {shapes}")),
        }
    }

    /// The Graph path that finds the site.
    fn api_path(&self) -> String {
        match self {
            SiteRef::Path { host, path } => {
                format!("/sites/{}:{}", encode_id(host), encode_path(path))
            }
            SiteRef::Id(id) => format!("/sites/{}", encode_id(id)),
        }
    }
}

impl std::fmt::Display for SiteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteRef::Path { host, path } => write!(f, "{host}:{path}"),
            SiteRef::Id(id) => f.write_str(id),
        }
    }
}

/// A site, as far as a backup cares.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// The composite ID, `host,guid,guid`.
    pub id: String,
    /// The site's URL name (`Team` for `/sites/Team`); absent for a host's root site.
    #[serde(default)]
    pub name: Option<String>,
    /// The name shown in `SharePoint`.
    pub(crate) display_name: Option<String>,
    /// The site's address.
    pub(crate) web_url: Option<String>,
}

/// A page of drives.
#[derive(Debug, Deserialize)]
struct DrivePage {
    #[serde(default)]
    value: Vec<RawDrive>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl GraphClient {
    /// Find a site. Needs `Sites.Read.All`: without it the service answers 403 `accessDenied`.
    /// See <https://learn.microsoft.com/en-us/graph/api/site-getbypath> and
    /// <https://learn.microsoft.com/en-us/graph/api/site-get>.
    #[tracing::instrument(skip_all, fields(site = %site))]
    pub(crate) async fn site(&self, site: &SiteRef) -> Result<Site, GraphError> {
        self.get_json(
            &format!("finding the site {site}"),
            &self.url(&site.api_path()),
        )
        .await
    }

    /// A site's default document library. See <https://learn.microsoft.com/en-us/graph/api/drive-get>.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn site_drive(&self, site: &Site) -> Result<Drive, GraphError> {
        let raw: RawDrive = self
            .get_json(
                &format!("reading the document library of site {}", site.id),
                &self.url(&format!("/sites/{}/drive", encode_id(&site.id))),
            )
            .await?;
        Ok(raw.into())
    }

    /// Every document library of a site, one drive each.
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-list>.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn site_drives(&self, site: &Site) -> Result<Vec<Drive>, GraphError> {
        self.drive_list(
            &format!("listing the libraries of site {}", site.id),
            &format!("/sites/{}/drives", encode_id(&site.id)),
        )
        .await
    }

    /// The drives of a user (by UPN or ID): their `OneDrive`.
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-list>.
    #[tracing::instrument(skip_all, fields(user = user))]
    pub(crate) async fn user_drives(&self, user: &str) -> Result<Vec<Drive>, GraphError> {
        self.drive_list(
            &format!("listing the drives of user {user}"),
            &format!("/users/{}/drives", encode_id(user)),
        )
        .await
    }

    /// The drives available to the signed-in user (delegated tokens only).
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-list>.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn my_drives(&self) -> Result<Vec<Drive>, GraphError> {
        self.drive_list("listing your drives", "/me/drives").await
    }

    /// A drive collection, following its next links on the configured origin (a bounded number).
    async fn drive_list(&self, what: &str, path: &str) -> Result<Vec<Drive>, GraphError> {
        let mut drives = Vec::new();
        let mut url = self.url(path);
        for _ in 0..MAX_DRIVE_PAGES {
            let page: DrivePage = self.get_json(what, &url).await?;
            drives.extend(page.value.into_iter().map(Drive::from));
            match page.next_link {
                Some(next) => {
                    paging::same_origin(&self.inner.base, &next)?;
                    url = next;
                }
                None => return Ok(drives),
            }
        }
        Err(GraphError::Unexpected {
            what: what.to_owned(),
            reason: format!("more than {MAX_DRIVE_PAGES} pages of drives"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(host: &str, path: &str) -> SiteRef {
        SiteRef::Path {
            host: host.to_owned(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn sites_are_read_in_every_form_users_copy_them() {
        let team = path("contoso.sharepoint.com", "/sites/Team");
        let cases = [
            ("https://contoso.sharepoint.com/sites/Team", team.clone()),
            ("https://Contoso.SharePoint.com/sites/Team/", team.clone()),
            (
                "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Forms/AllItems.aspx",
                team.clone(),
            ),
            ("contoso.sharepoint.com:/sites/Team", team.clone()),
            ("contoso.sharepoint.com:/sites/Team:", team.clone()),
            (" contoso.sharepoint.com:sites/Team ", team),
            (
                "https://contoso.sharepoint.com/teams/Marketing%20EU",
                path("contoso.sharepoint.com", "/teams/Marketing EU"),
            ),
            (
                "https://contoso.sharepoint.com/Shared%20Documents",
                SiteRef::Id("contoso.sharepoint.com".into()),
            ),
            (
                "contoso.sharepoint.com",
                SiteRef::Id("contoso.sharepoint.com".into()),
            ),
            (
                "contoso.sharepoint.com:/",
                SiteRef::Id("contoso.sharepoint.com".into()),
            ),
            (
                "contoso.sharepoint.com,2c6f3b0a-1111-4a4a-9b9b-0123456789ab,7f0e1d2c-2222-4c4c-8d8d-ba9876543210",
                SiteRef::Id(
                    "contoso.sharepoint.com,2c6f3b0a-1111-4a4a-9b9b-0123456789ab,7f0e1d2c-2222-4c4c-8d8d-ba9876543210"
                        .into(),
                ),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(SiteRef::parse(input), Ok(want), "{input}");
        }
        for bad in ["", "Team", "/sites/Team", ":/sites/Team", "a,b", "host,,x"] {
            let err = SiteRef::parse(bad).unwrap_err();
            assert!(err.contains("host:/path"), "{bad}: {err}");
        }
    }

    #[test]
    fn each_form_has_its_graph_path() {
        assert_eq!(
            SiteRef::parse("contoso.sharepoint.com:/sites/Marketing Team")
                .unwrap()
                .api_path(),
            "/sites/contoso.sharepoint.com:/sites/Marketing%20Team"
        );
        assert_eq!(
            SiteRef::parse("contoso.sharepoint.com,1111,2222")
                .unwrap()
                .api_path(),
            "/sites/contoso.sharepoint.com,1111,2222"
        );
        assert_eq!(
            SiteRef::parse("https://contoso.sharepoint.com/sites/Team")
                .unwrap()
                .to_string(),
            "contoso.sharepoint.com:/sites/Team"
        );
    }
}
