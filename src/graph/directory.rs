//! The organisation's directory, as a whole-tenant backup discovers it: every user (`GET /users`, paged), one
//! user (`GET /users/{id-or-upn}`), and every `SharePoint` site (`GET /sites/getAllSites`, else
//! `GET /sites?search=*`).
//!
//! - Users: <https://learn.microsoft.com/en-us/graph/api/user-list> (`$select`, `$top` up to 999, pages joined
//!   by `@odata.nextLink`); an app needs the `User.Read.All` application permission.
//! - Sites: `getAllSites` lists every site of the tenant (across geographies) and is documented for application
//!   permissions only (<https://learn.microsoft.com/en-us/graph/api/site-getallsites>); a delegated sign-in is
//!   refused it, so a refusal (400/403/404/501) falls back to search, which delegated tokens may use
//!   (<https://learn.microsoft.com/en-us/graph/api/site-search>; `search=*` lists all that the user may see).
//!
//! Every listing is bounded (a service that kept sending next links, or the same one again, cannot keep it
//! going) and follows next links only on the configured Graph origin. Knows HTTP and JSON only.

use serde::Deserialize;

use super::{GraphClient, GraphError, encode_id, paging};
use crate::graph::Site;

/// Pages of users followed at most: 10,000 pages of 999 is more users than any tenant has.
const MAX_USER_PAGES: usize = 10_000;
/// Users asked for per page: the most `/users` allows.
const USERS_PER_PAGE: usize = 999;
/// Pages of sites followed at most.
const MAX_SITE_PAGES: usize = 10_000;
/// The user fields discovery needs.
const USER_SELECT: &str = "id,userPrincipalName,displayName,mail";

/// A user of the directory.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    /// The object ID (a GUID): what `/users/{id}/drive` takes, and never changes.
    pub id: String,
    /// The sign-in name (`adele@contoso.com`).
    pub user_principal_name: Option<String>,
    /// The name shown.
    pub(crate) display_name: Option<String>,
    /// The mail address.
    pub(crate) mail: Option<String>,
}

/// How the sites were listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteListing {
    /// `GET /sites/getAllSites`: every site of the tenant.
    AllSites,
    /// `GET /sites?search=*`: the sites search finds (the fallback for a sign-in that may not list all).
    Search,
}

#[derive(Deserialize)]
struct Collection<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl GraphClient {
    /// Every user of the directory, page by page (`on_page` sees each page's count as it arrives).
    /// See <https://learn.microsoft.com/en-us/graph/api/user-list>.
    ///
    /// # Errors
    /// The first page's or a later page's error (403 without `User.Read.All`); [`GraphError::Unexpected`]
    /// when the pages do not end.
    #[tracing::instrument(skip_all)]
    pub async fn users(
        &self,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<DirectoryUser>, GraphError> {
        let first = self.url(&format!(
            "/users?$select={USER_SELECT}&$top={USERS_PER_PAGE}"
        ));
        self.collection(
            "listing the users of the directory",
            first,
            MAX_USER_PAGES,
            &mut on_page,
        )
        .await
    }

    /// One user, by object ID or sign-in name. See <https://learn.microsoft.com/en-us/graph/api/user-get>.
    #[tracing::instrument(skip_all, fields(user = key))]
    pub async fn user(&self, key: &str) -> Result<DirectoryUser, GraphError> {
        self.get_json(
            &format!("reading user {key}"),
            &self.url(&format!("/users/{}?$select={USER_SELECT}", encode_id(key))),
        )
        .await
    }

    /// Every site of the tenant: `getAllSites`, or the search when the sign-in is refused that.
    ///
    /// # Errors
    /// The search's error when both are refused (403 without `Sites.Read.All`).
    #[tracing::instrument(skip_all)]
    pub async fn all_sites(&self) -> Result<(Vec<Site>, SiteListing), GraphError> {
        let what = "listing the sites of the tenant";
        let all = self.url("/sites/getAllSites?$select=id,name,displayName,webUrl");
        match self
            .collection(what, all, MAX_SITE_PAGES, &mut |_| {})
            .await
        {
            Ok(sites) => Ok((sites, SiteListing::AllSites)),
            Err(err) if matches!(err.status(), Some(400 | 403 | 404 | 501)) => {
                tracing::info!(error = %err, "getAllSites refused (it is for app-only sign-ins); searching instead");
                let search = self.url("/sites?search=*&$select=id,name,displayName,webUrl");
                let sites = self
                    .collection(what, search, MAX_SITE_PAGES, &mut |_| {})
                    .await?;
                Ok((sites, SiteListing::Search))
            }
            Err(err) => Err(err),
        }
    }

    /// A collection from `first`, following next links on the configured origin, at most `max_pages`, and
    /// stopping with an error on a next link seen before or after
    /// [`MAX_PAGES_WITHOUT_PROGRESS`](paging::MAX_PAGES_WITHOUT_PROGRESS) empty pages in a row that still
    /// point on (the same stall [`PagingGuard`](paging::PagingGuard) ends drive listings on).
    async fn collection<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        first: String,
        max_pages: usize,
        on_page: &mut dyn FnMut(usize),
    ) -> Result<Vec<T>, GraphError> {
        let mut all = Vec::new();
        let mut url = first;
        let mut seen = std::collections::HashSet::new();
        let mut empty_in_a_row = 0u32;
        for _ in 0..max_pages {
            let page: Collection<T> = self.get_json(what, &url).await?;
            on_page(page.value.len());
            empty_in_a_row = if page.value.is_empty() {
                empty_in_a_row + 1
            } else {
                0
            };
            if empty_in_a_row >= paging::MAX_PAGES_WITHOUT_PROGRESS && page.next_link.is_some() {
                return Err(GraphError::Unexpected {
                    what: what.to_owned(),
                    reason: paging::NoProgress::NothingNew.to_string(),
                });
            }
            all.extend(page.value);
            match page.next_link {
                Some(next) => {
                    paging::same_origin(&self.inner.base, &next)?;
                    if !seen.insert(next.clone()) {
                        return Err(GraphError::Unexpected {
                            what: what.to_owned(),
                            reason: "the service sent the same next link twice".to_owned(),
                        });
                    }
                    url = next;
                }
                None => return Ok(all),
            }
        }
        Err(GraphError::Unexpected {
            what: what.to_owned(),
            reason: format!("more than {max_pages} pages"),
        })
    }
}
