//! The tenant's directory, as a whole-organisation backup discovers it: every user (`GET /users`, paged), one
//! user (`GET /users/{id-or-upn}`), and every site (`GET /sites/getAllSites`, application permission only, or
//! `GET /sites?search=`).
//!
//! - `/users`: `$select` and `$top` (1 to 999, default 100) as <https://learn.microsoft.com/en-us/graph/api/user-list>
//!   documents, pages joined by an opaque `@odata.nextLink`; needs `User.Read.All` (or a wider `User.*` or
//!   `Directory.*` permission), else 403 `Authorization_RequestDenied` "Insufficient privileges to complete the
//!   operation.", the directory's refusal. The signed-in user (the main drive's owner) is one of the users.
//! - `/sites/getAllSites`: every site of the tenant, for application permissions only (`Sites.Read.All`); a
//!   delegated token is refused (<https://learn.microsoft.com/en-us/graph/api/site-getallsites>: "Delegated: Not
//!   supported"; the refusal's shape is unconfirmed, answered here as 403 `accessDenied`). Paged like `/users`.
//! - `/sites?search=…`: sites whose name or display name holds the text (`*` or nothing: all of them), for
//!   delegated and app-only tokens with `Sites.Read.All` (<https://learn.microsoft.com/en-us/graph/api/site-search>).

use std::collections::HashMap;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Ctx, seal, unseal};
use crate::server::{SimBody, enc_query};
use crate::state::Shared;
use crate::tree::{Flavour, TenantUser, World};

/// A directory route.
#[derive(Clone, Debug)]
pub(crate) enum DirectoryRoute {
    /// `GET /users`.
    Users,
    /// `GET /users/{id-or-upn}`.
    User(String),
    /// `GET /sites/getAllSites`.
    AllSites,
    /// `GET /sites` (with or without `search`).
    SiteSearch,
}

/// Users listed per page when `$top` is absent, and the most `$top` may ask.
const USERS_PAGE: usize = 100;
const USERS_MAX_PAGE: usize = 999;
/// Sites listed per page.
const SITES_PAGE: usize = 200;

/// The directory route `p` (after `/v1.0`, no trailing `/`) names, if any.
pub(crate) fn parse(p: &str) -> Option<DirectoryRoute> {
    match p {
        "/users" => return Some(DirectoryRoute::Users),
        "/sites" => return Some(DirectoryRoute::SiteSearch),
        "/sites/getAllSites" | "/sites/microsoft.graph.getAllSites()" | "/sites/getAllSites()" => {
            return Some(DirectoryRoute::AllSites);
        }
        _ => {}
    }
    let rest = p.strip_prefix("/users/")?;
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    super::decode(rest)
        .filter(|u| !u.is_empty())
        .map(DirectoryRoute::User)
}

/// The directory ID of the main drive's owner (the signed-in user of delegated tokens).
pub(crate) fn main_user_id(shared: &Shared) -> String {
    crate::directory_guid(&format!("main:{}", shared.config.user_principal_name))
}

/// The tenant user `key` names: by directory ID exactly, else by sign-in name (case-insensitive, as the
/// directory matches UPNs).
pub(crate) fn find_user<'w>(world: &'w World, key: &str) -> Option<&'w TenantUser> {
    world
        .users
        .iter()
        .find(|u| u.id == key)
        .or_else(|| world.users.iter().find(|u| u.upn.eq_ignore_ascii_case(key)))
}

/// One directory entry: (id, upn, display name).
fn entries(shared: &Shared, world: &World) -> Vec<(String, String, String)> {
    let mut all = Vec::with_capacity(world.users.len() + 1);
    if world.flavour == Flavour::Business {
        all.push((
            main_user_id(shared),
            shared.config.user_principal_name.clone(),
            shared.config.display_name.clone(),
        ));
    }
    all.extend(
        world
            .users
            .iter()
            .map(|u| (u.id.clone(), u.upn.clone(), u.display_name.clone())),
    );
    all
}

impl Ctx<'_> {
    pub(super) fn directory(
        &self,
        route: &DirectoryRoute,
        query: &HashMap<String, String>,
    ) -> Response<SimBody> {
        match route {
            DirectoryRoute::Users | DirectoryRoute::User(_) if !self.reads_users() => self.err(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ),
            DirectoryRoute::Users => self.users(query),
            DirectoryRoute::User(key) => self.one_user(key),
            DirectoryRoute::AllSites if !self.grant.app_only => {
                self.err(403, "accessDenied", "Access denied")
            }
            DirectoryRoute::AllSites | DirectoryRoute::SiteSearch if !self.grant.reads_sites() => {
                self.err(403, "accessDenied", "Access denied")
            }
            DirectoryRoute::AllSites => self.sites(query, "getAllSites", None),
            DirectoryRoute::SiteSearch => {
                let term = query
                    .get("search")
                    .map(|s| s.trim().trim_matches('"').to_owned())
                    .filter(|s| !s.is_empty() && s != "*");
                self.sites(query, "", term)
            }
        }
    }

    /// `User.Read.All` or a wider permission over users or the directory.
    fn reads_users(&self) -> bool {
        self.grant.has_any(&[
            "User.Read.All",
            "User.ReadBasic.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }

    fn user_json(&self, id: &str, upn: &str, name: &str) -> Value {
        let all = json!({
            "id": id,
            "userPrincipalName": upn,
            "displayName": name,
            "mail": upn,
            "businessPhones": [],
        });
        match &self.select {
            None => all,
            Some(fields) => {
                let mut m = serde_json::Map::new();
                for (k, v) in all.as_object().expect("object") {
                    if k == "id" || fields.contains(&k.to_ascii_lowercase()) {
                        m.insert(k.clone(), v.clone());
                    }
                }
                Value::Object(m)
            }
        }
    }

    fn users(&self, query: &HashMap<String, String>) -> Response<SimBody> {
        let all = entries(self.shared, self.world);
        let top = match query.get("top").map(|t| t.parse::<usize>()) {
            None => USERS_PAGE,
            Some(Ok(n @ 1..=USERS_MAX_PAGE)) => n,
            Some(_) => {
                return self.err(
                    400,
                    "Request_UnsupportedQuery",
                    "Invalid page size specified: the value must be between 1 and 999.",
                );
            }
        };
        let Some(offset) = self.offset(query, "u") else {
            return self.err(400, "Request_BadRequest", "Invalid skip token");
        };
        let end = (offset + top).min(all.len());
        let value: Vec<Value> = all
            .get(offset..end)
            .unwrap_or(&[])
            .iter()
            .map(|(id, upn, name)| self.user_json(id, upn, name))
            .collect();
        let mut page = json!({
            "@odata.context": format!("{}/$metadata#users", self.shared.graph_base),
            "value": value,
        });
        if end < all.len() {
            page["@odata.nextLink"] = Value::String(format!(
                "{}/users?{}$top={top}&$skiptoken={}",
                self.shared.graph_base,
                self.select_raw
                    .as_ref()
                    .map(|s| format!("$select={}&", enc_query(s)))
                    .unwrap_or_default(),
                seal(&format!("u.{end}"))
            ));
        }
        crate::server::json(StatusCode::OK, &page)
    }

    fn one_user(&self, key: &str) -> Response<SimBody> {
        let main = main_user_id(self.shared);
        let me = &self.shared.config;
        if self.world.flavour == Flavour::Business
            && (key == main || key.eq_ignore_ascii_case(&me.user_principal_name))
        {
            return crate::server::json(
                StatusCode::OK,
                &self.user_json(&main, &me.user_principal_name, &me.display_name),
            );
        }
        match find_user(self.world, key) {
            Some(u) => crate::server::json(
                StatusCode::OK,
                &self.user_json(&u.id, &u.upn, &u.display_name),
            ),
            None => self.err(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
                ),
            ),
        }
    }

    /// The page offset a `$skiptoken` of kind `kind` carries (0 without one); `None` for a bad token.
    fn offset(&self, query: &HashMap<String, String>, kind: &str) -> Option<usize> {
        match query.get("skiptoken") {
            None => Some(0),
            Some(token) => unseal(token)?
                .strip_prefix(kind)?
                .strip_prefix('.')?
                .parse()
                .ok(),
        }
    }

    fn sites(
        &self,
        query: &HashMap<String, String>,
        path: &str,
        term: Option<String>,
    ) -> Response<SimBody> {
        let matching: Vec<usize> = (0..self.world.sites.len())
            .filter(|&i| {
                let site = &self.world.sites[i];
                term.as_ref().is_none_or(|t| {
                    let t = t.to_lowercase();
                    site.display_name.to_lowercase().contains(&t)
                        || site.path.to_lowercase().contains(&t)
                })
            })
            .collect();
        let top = query
            .get("top")
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .map_or(SITES_PAGE, |n| n.min(1000));
        let Some(offset) = self.offset(query, "s") else {
            return self.err(400, "invalidRequest", "Invalid skip token");
        };
        let end = (offset + top).min(matching.len());
        let value: Vec<Value> = matching
            .get(offset..end)
            .unwrap_or(&[])
            .iter()
            .map(|&i| {
                let mut v = self.site_json(i);
                if let Some(m) = v.as_object_mut() {
                    m.remove("@odata.context");
                }
                v
            })
            .collect();
        let mut page = json!({
            "@odata.context": format!("{}/$metadata#sites", self.shared.graph_base),
            "value": value,
        });
        if end < matching.len() {
            let search = term
                .as_ref()
                .map(|t| format!("search={}&", enc_query(t)))
                .unwrap_or_default();
            let tail = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            page["@odata.nextLink"] = Value::String(format!(
                "{}/sites{tail}?{search}$top={top}&$skiptoken={}",
                self.shared.graph_base,
                seal(&format!("s.{end}"))
            ));
        }
        crate::server::json(StatusCode::OK, &page)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::{Simulator, Tree};

    async fn get(sim: &Simulator, url: &str) -> (u16, Value) {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", sim.graph_url())
        };
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, body)
    }

    fn tenant() -> Simulator {
        Simulator::start(
            Tree::business()
                .user_drive("a@x", "A", Tree::business())
                .user_drive("b@x", "B", Tree::business())
                .user_without_drive("c@x", "C")
                .site_library(
                    "x.sharepoint.com:/sites/Team",
                    "Documents",
                    Tree::business(),
                ),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_come_in_pages_joined_by_next_links_and_need_a_directory_permission() {
        let sim = tenant();
        let (status, body) = get(&sim, "/users").await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
        sim.set_token_scopes(&["Files.Read.All", "User.Read.All"]);
        let (status, _) = get(&sim, "/users?$top=0").await;
        assert_eq!(status, 400);
        let mut url = "/users?$select=id,userPrincipalName&$top=2".to_owned();
        let mut upns = Vec::new();
        for _ in 0..10 {
            let (status, page) = get(&sim, &url).await;
            assert_eq!(status, 200, "{page}");
            for u in page["value"].as_array().unwrap() {
                assert!(u["id"].is_string() && u.get("displayName").is_none(), "{u}");
                upns.push(u["userPrincipalName"].as_str().unwrap().to_owned());
            }
            match page["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        // The signed-in user and the three others, one without a OneDrive.
        assert_eq!(upns.len(), 4, "{upns:?}");
        assert!(upns.contains(&"c@x".to_owned()));
        let id = sim.user_id("a@x");
        let (status, user) = get(&sim, &format!("/users/{id}")).await;
        assert_eq!(
            (status, user["userPrincipalName"].as_str()),
            (200, Some("a@x"))
        );
        let (status, _) = get(&sim, &format!("/users/{id}/drive")).await;
        assert_eq!(status, 200, "a user's drive by their object ID");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_site_is_listed_to_apps_only_and_search_serves_delegated_tokens() {
        let sim = tenant();
        sim.set_token_scopes(&["Files.Read.All", "Sites.Read.All"]);
        let (status, _) = get(&sim, "/sites/getAllSites").await;
        assert_eq!(status, 403, "getAllSites is for application permissions");
        let (status, found) = get(&sim, "/sites?search=*").await;
        assert_eq!(status, 200);
        assert_eq!(found["value"].as_array().unwrap().len(), 1, "{found}");
        sim.set_token_app_only(true);
        let (status, all) = get(&sim, "/sites/getAllSites").await;
        assert_eq!(status, 200);
        assert_eq!(all["value"][0]["id"], found["value"][0]["id"]);
        let (status, me) = get(&sim, "/me").await;
        assert_eq!(status, 400, "no /me for an app: {me}");
    }
}
