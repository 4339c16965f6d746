//! The Graph API host (`/v1.0/...`): routing, bearer check, items, children, delta and `/content`.
//!
//! Route shapes follow <https://learn.microsoft.com/en-us/graph/onedrive-addressing-driveitems>: `/me/drive`, `/drives/{id}`, `root`, `root:/path:`,
//! `items/{id}`, `items/{id}:/rel:`, `special/{name}`, each with an optional `/children`,
//! `/content` or `/delta`. Paths are split on the raw `/` first and percent-decoded per segment,
//! so a name holding an encoded `/` stays one segment.

// Helpers return the error *answer* as `Err`: built at most once per request, so its size is moot.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, LOCATION};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use crate::content::{fnv1a, mix};
use crate::identity::Grant;
use crate::server::{SimBody, enc_query, enc_segment, failure_response, graph_error, set_header};
use crate::state::{IdCase, IdDrift, InFlight, PagingFault, RequestKind, Shared, Which};
use crate::tree::{DriveKind, Flavour, Item, Kind, World};
use crate::{DEFAULT_TOKEN, time};

mod directory;

/// Which drive a route names.
#[derive(Clone, Debug)]
pub(crate) enum DriveRef {
    Me,
    Id(String),
    /// `/users/{id-or-upn}/drive`.
    User(String),
    /// `/sites/{site}/drive`: the site's default library.
    Site(SiteKey),
}

/// How a route names a SharePoint site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SiteKey {
    /// `/sites/{hostname}:/{server-relative-path}`.
    Path { host: String, path: String },
    /// `/sites/{hostname},{guid},{guid}`, `/sites/{hostname}` (its root site) or `/sites/root`.
    Id(String),
}

/// Whose drives a `…/drives` route lists.
#[derive(Clone, Debug)]
pub(crate) enum Owner {
    Me,
    User(String),
    Site(SiteKey),
}

/// The item a route starts from.
#[derive(Clone, Debug)]
pub(crate) enum Base {
    Root,
    Id(String),
    Special(String),
}

/// What is asked of the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Children,
    Content,
    Delta,
}

#[derive(Clone, Debug)]
pub(crate) enum Route {
    Me,
    /// The directory (`directory.rs`).
    Directory(directory::DirectoryRoute),
    Drives(Owner),
    Site(SiteKey),
    Drive(DriveRef),
    Item {
        drive: DriveRef,
        base: Base,
        rel: Vec<String>,
        op: Op,
    },
    Unknown,
}

impl Route {
    fn kind(&self) -> RequestKind {
        match self {
            Route::Me => RequestKind::Me,
            Route::Drives(_) | Route::Drive(_) => RequestKind::Drive,
            Route::Site(_) => RequestKind::Site,
            Route::Directory(_) => RequestKind::Directory,
            Route::Item { op: Op::Get, .. } => RequestKind::Item,
            Route::Item {
                op: Op::Children, ..
            } => RequestKind::Children,
            Route::Item {
                op: Op::Content, ..
            } => RequestKind::Content,
            Route::Item { op: Op::Delta, .. } => RequestKind::Delta,
            Route::Unknown => RequestKind::Other,
        }
    }
}

fn decode(seg: &str) -> Option<String> {
    percent_decode_str(seg)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Splits `s` at its first `/` or `:`: (head, rest starting with the delimiter).
fn take_segment(s: &str) -> (&str, &str) {
    let end = s.find(['/', ':']).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Parses `:/a/b:/tail` (the part after `root` or `items/{id}`) into (relative path, tail).
fn parse_path_addressing(s: &str) -> Option<(Vec<String>, &str)> {
    let Some(after) = s.strip_prefix(':') else {
        return Some((Vec::new(), s));
    };
    let (path, tail) = match after.find(':') {
        Some(i) => (&after[..i], &after[i + 1..]),
        None => (after, ""),
    };
    let rel = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(decode)
        .collect::<Option<Vec<_>>>()?;
    Some((rel, tail))
}

pub(crate) fn parse_route(path: &str) -> Route {
    let Some(p) = path.strip_prefix("/v1.0") else {
        return Route::Unknown;
    };
    let p = p.trim_end_matches('/');
    if p == "/me" {
        return Route::Me;
    }
    if p == "/me/drives" {
        return Route::Drives(Owner::Me);
    }
    if let Some(route) = directory::parse(p) {
        return Route::Directory(route);
    }
    let (drive, rest) = if let Some(r) = p.strip_prefix("/sites/") {
        match parse_site_route(r) {
            SiteRoute::Done(route) => return route,
            SiteRoute::Drive(key, rest) => (DriveRef::Site(key), rest),
        }
    } else if let Some(r) = p.strip_prefix("/me/drive") {
        (DriveRef::Me, r)
    } else if let Some(r) = p.strip_prefix("/drives/") {
        let (id, rest) = take_segment(r);
        match decode(id) {
            Some(id) if !id.is_empty() => (DriveRef::Id(id), rest),
            _ => return Route::Unknown,
        }
    } else if let Some(r) = p.strip_prefix("/users/") {
        let (user, rest) = take_segment(r);
        let Some(user) = decode(user).filter(|u| !u.is_empty()) else {
            return Route::Unknown;
        };
        if rest == "/drives" {
            return Route::Drives(Owner::User(user));
        }
        match rest.strip_prefix("/drive") {
            Some(r) => (DriveRef::User(user), r),
            None => return Route::Unknown,
        }
    } else if let Some(r) = p.strip_prefix("/drive") {
        (DriveRef::Me, r)
    } else {
        return Route::Unknown;
    };
    if rest.is_empty() {
        return Route::Drive(drive);
    }
    let (base, after) = if let Some(r) = rest.strip_prefix("/root") {
        (Base::Root, r)
    } else if let Some(r) = rest.strip_prefix("/items/") {
        let (id, after) = take_segment(r);
        match decode(id) {
            Some(id) if !id.is_empty() => (Base::Id(id), after),
            _ => return Route::Unknown,
        }
    } else if let Some(r) = rest.strip_prefix("/special/") {
        let (name, after) = take_segment(r);
        match decode(name) {
            Some(n) if !n.is_empty() => (Base::Special(n.to_ascii_lowercase()), after),
            _ => return Route::Unknown,
        }
    } else {
        return Route::Unknown;
    };
    let Some((rel, tail)) = parse_path_addressing(after) else {
        return Route::Unknown;
    };
    let op = match tail.trim_end_matches('/') {
        "" => Op::Get,
        "/children" => Op::Children,
        "/content" => Op::Content,
        "/delta" | "/delta()" | "/microsoft.graph.delta()" => Op::Delta,
        _ => return Route::Unknown,
    };
    Route::Item {
        drive,
        base,
        rel,
        op,
    }
}

/// A `/sites/…` route: complete in itself, or a site's default drive with what follows `/drive`.
enum SiteRoute<'a> {
    Done(Route),
    Drive(SiteKey, &'a str),
}

/// Parses what follows `/sites/`: `{hostname}:/{path}` (then nothing, `:`, `:/drive` or `:/drives`), or `{id}`
/// (then nothing, `/drives`, or `/drive` and an item route).
/// See <https://learn.microsoft.com/en-us/graph/api/site-getbypath> and
/// <https://learn.microsoft.com/en-us/graph/api/site-get>.
fn parse_site_route(r: &str) -> SiteRoute<'_> {
    let (head, rest) = take_segment(r);
    let Some(head) = decode(head).filter(|h| !h.is_empty()) else {
        return SiteRoute::Done(Route::Unknown);
    };
    if let Some(after) = rest.strip_prefix(':') {
        let (path, tail) = match after.find(':') {
            Some(i) => (&after[..i], &after[i + 1..]),
            None => (after, ""),
        };
        let Some(segments) = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(decode)
            .collect::<Option<Vec<_>>>()
        else {
            return SiteRoute::Done(Route::Unknown);
        };
        let key = SiteKey::Path {
            host: head,
            path: format!("/{}", segments.join("/")),
        };
        return SiteRoute::Done(match tail {
            "" => Route::Site(key),
            "/drive" => Route::Drive(DriveRef::Site(key)),
            "/drives" => Route::Drives(Owner::Site(key)),
            _ => Route::Unknown,
        });
    }
    let key = SiteKey::Id(head);
    match rest {
        "" => SiteRoute::Done(Route::Site(key)),
        "/drives" => SiteRoute::Done(Route::Drives(Owner::Site(key))),
        _ => match rest.strip_prefix("/drive") {
            Some(after) => SiteRoute::Drive(key, after),
            None => SiteRoute::Done(Route::Unknown),
        },
    }
}

/// Whether a `/content` request asks for a malware-flagged file anyway.
fn wants_infected(query: &HashMap<String, String>, headers: &hyper::HeaderMap) -> bool {
    query.get("avoverride").is_some_and(|v| v == "1")
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("forceinfecteddownload"))
}

/// Query options, keys lower-cased with the optional `$` removed.
pub(crate) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| {
            (
                k.trim_start_matches('$').to_ascii_lowercase(),
                v.into_owned(),
            )
        })
        .collect()
}

/// Whether the request selects with `$select` (rather than the OneDrive dialect's bare `select`).
fn uses_dollar_select(q: Option<&str>) -> bool {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .any(|(k, _)| k.eq_ignore_ascii_case("$select"))
}

/// Entry point for the Graph listener.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    if req.method() != Method::GET {
        return crate::upload::handle_graph(shared, req).await;
    }
    let _in_flight = InFlight::new(&shared, Which::Graph);
    let route = if req.method() == Method::GET {
        parse_route(req.uri().path())
    } else {
        Route::Unknown
    };
    let kind = route.kind();
    shared.counters.count(kind);
    let uri = req.uri().to_string();
    let app = app_of(&shared, req.headers());
    let (refusal, rate_headers) = shared.admit(kind, &uri, 2, &app, false).await;
    let mut resp = if let Some(f) = refusal {
        failure_response(&shared, &f)
    } else {
        shared.wait_while_held(kind, None).await;
        match check_bearer(&shared, req.headers()) {
            Err(r) => r,
            Ok(grant) => {
                let query = parse_query(req.uri().query());
                let dollar_select = uses_dollar_select(req.uri().query());
                let headers = req.headers().clone();
                let s2 = shared.clone();
                tokio::task::spawn_blocking(move || {
                    answer(&s2, &route, &query, dollar_select, &headers, &grant)
                })
                .await
                .unwrap_or_else(|_| {
                    graph_error(
                        &shared,
                        500,
                        "generalException",
                        "graphsim handler panicked",
                    )
                })
            }
        }
    };
    if let Some(id) = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
    {
        set_header(&mut resp, "client-request-id", id);
    }
    add_rate_limit_headers(&mut resp, rate_headers);
    resp
}

/// `RateLimit-Limit/-Remaining/-Reset`, when the budget says to send them.
pub(crate) fn add_rate_limit_headers(
    resp: &mut Response<SimBody>,
    values: Option<(u64, u64, u64)>,
) {
    if let Some((limit, remaining, reset)) = values {
        set_header(resp, "ratelimit-limit", &limit.to_string());
        set_header(resp, "ratelimit-remaining", &remaining.to_string());
        set_header(resp, "ratelimit-reset", &reset.to_string());
    }
}

fn unauthorized(shared: &Shared, message: &str) -> Response<SimBody> {
    shared.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
    let mut r = graph_error(shared, 401, "InvalidAuthenticationToken", message);
    let www = format!(
        "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        shared.auth_base
    );
    set_header(&mut r, "www-authenticate", &www);
    r
}

/// The app whose budget a request spends: the client ID of its app-only token, `""` for any other token.
pub(crate) fn app_of(shared: &Shared, headers: &HeaderMap) -> String {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
        .unwrap_or_default();
    let grant = if token == DEFAULT_TOKEN {
        Some(shared.knobs.default_grant.lock().expect("grant").clone())
    } else {
        shared
            .auth
            .lock()
            .expect("auth lock")
            .grants
            .get(token)
            .cloned()
    };
    grant.and_then(|g| g.app).unwrap_or_default()
}

/// 401 unless the request carries an accepted, unexpired bearer token; what the token allows otherwise.
pub(crate) fn check_bearer(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Grant, Response<SimBody>> {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized(shared, "Access token is empty."));
    };
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(unauthorized(shared, "Access token is empty.")),
    };
    if token == DEFAULT_TOKEN && shared.knobs.default_token_ok.load(Ordering::Relaxed) {
        return Ok(shared.knobs.default_grant.lock().expect("grant").clone());
    }
    let (expiry, grant) = {
        let auth = shared.auth.lock().expect("auth lock");
        (
            auth.access_tokens.get(token).copied(),
            auth.grants.get(token).cloned(),
        )
    };
    match expiry {
        Some(Some(exp)) if shared.now_ms() >= exp => Err(unauthorized(
            shared,
            "Lifetime validation failed, the token is expired.",
        )),
        Some(_) => Ok(grant.unwrap_or_else(|| Grant::delegated(crate::identity::DEFAULT_SCOPES))),
        None => {
            let msg = match shared.world.read().expect("world").flavour {
                Flavour::Personal => "CompactToken parsing failed with error code: 80049217",
                Flavour::Business => "IDX14100: JWT is not well formed, there are no dots (.).",
            };
            Err(unauthorized(shared, msg))
        }
    }
}

/// Rendering context for one request.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    world: &'a World,
    /// What the request's token allows.
    grant: &'a Grant,
    /// `$select`, lower-cased; `None` = every field.
    select: Option<HashSet<String>>,
    /// Raw `$select` value, carried into next/delta links.
    select_raw: Option<String>,
    /// Whether the request wrote `$select` (links carry the same dialect back).
    dollar_select: bool,
    /// How IDs are spelled in this answer.
    drift: IdDrift,
}

/// The root ID form many personal accounts moved to in 2024–25 (onedrive-api-docs #1890).
const SEA_ROOT_SUFFIX: &str = "sea8cc6beffdb43d7976fbc7da445c639";

/// How an item is being shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    List,
    Delta,
}

const DOWNLOAD_URL: &str = "@microsoft.graph.downloadUrl";

/// One item's JSON as `GET item` shows it (for the answers of the write routes), with the IDs spelled as the
/// drift knob says.
pub(crate) fn item_json(shared: &Arc<Shared>, world: &World, idx: usize) -> Value {
    let grant = Grant::delegated(crate::identity::DEFAULT_SCOPES);
    write_ctx(shared, world, &grant).render(idx, Mode::Single)
}

/// The drive a write route names, found as a read route finds it (any spelling of its ID, a user's or a site's
/// drive).
pub(crate) fn write_drive(shared: &Arc<Shared>, world: &World, d: &DriveRef) -> Option<usize> {
    let grant = Grant::delegated(crate::identity::DEFAULT_SCOPES);
    write_ctx(shared, world, &grant).drive_index(d).ok()
}

fn write_ctx<'a>(shared: &'a Arc<Shared>, world: &'a World, grant: &'a Grant) -> Ctx<'a> {
    Ctx {
        shared,
        world,
        grant,
        select: None,
        select_raw: None,
        dollar_select: false,
        drift: *shared.knobs.id_drift.lock().expect("id drift"),
    }
}

fn answer(
    shared: &Arc<Shared>,
    route: &Route,
    query: &HashMap<String, String>,
    dollar_select: bool,
    headers: &HeaderMap,
    grant: &Grant,
) -> Response<SimBody> {
    let world = shared.world.read().expect("world lock");
    let select_raw = query.get("select").cloned();
    let select = select_raw.as_ref().map(|s| {
        s.split(',')
            .map(|f| f.trim().to_ascii_lowercase())
            .collect()
    });
    let ctx = Ctx {
        shared,
        world: &world,
        select,
        select_raw,
        dollar_select,
        grant,
        drift: *shared.knobs.id_drift.lock().expect("id drift"),
    };
    match route {
        Route::Directory(route) => ctx.directory(route, query),
        Route::Me if grant.app_only => ctx.me_refused(),
        Route::Me => ctx.me(),
        Route::Drives(owner) => match ctx.drives_of(owner) {
            Ok(drives) => {
                let value: Vec<Value> = drives.into_iter().map(|d| ctx.drive_json(d)).collect();
                crate::server::json(StatusCode::OK, &json!({ "value": value }))
            }
            Err(r) => r,
        },
        Route::Site(key) => match ctx.site_index(key) {
            Ok(i) => crate::server::json(StatusCode::OK, &ctx.site_json(i)),
            Err(r) => r,
        },
        Route::Drive(d) => match ctx.drive_index(d) {
            Ok(i) => crate::server::json(StatusCode::OK, &ctx.drive_json(i)),
            Err(r) => r,
        },
        Route::Item {
            drive,
            base,
            rel,
            op,
        } => {
            let d = match ctx.drive_index(drive) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let idx = match ctx.resolve(d, base, rel) {
                Ok(i) => i,
                Err(r) => return r,
            };
            if let Some(f) = shared.pick_failure(route.kind(), false, Some(idx)) {
                return failure_response(shared, &f);
            }
            match op {
                Op::Get => {
                    let v = ctx.render(idx, Mode::Single);
                    crate::server::json(
                        StatusCode::OK,
                        &ctx.with_context(
                            v,
                            &format!("drives('{}')/items/$entity", world.drives[d].id),
                        ),
                    )
                }
                Op::Children => ctx.children(idx, query),
                Op::Content => ctx.content(idx, wants_infected(query, headers), headers),
                Op::Delta => ctx.delta(d, idx, query, headers),
            }
        }
        Route::Unknown => ctx.err(400, "invalidRequest", "Invalid request"),
    }
}

impl Ctx<'_> {
    fn err(&self, status: u16, code: &str, message: &str) -> Response<SimBody> {
        graph_error(self.shared, status, code, message)
    }

    fn with_context(&self, v: Value, what: &str) -> Value {
        let mut m = match v {
            Value::Object(m) => m,
            other => return other,
        };
        m.insert(
            "@odata.context".into(),
            Value::String(format!("{}/$metadata#{what}", self.shared.graph_base)),
        );
        Value::Object(m)
    }

    fn me(&self) -> Response<SimBody> {
        let c = &self.shared.config;
        let v = json!({
            "@odata.context": format!("{}/$metadata#users/$entity", self.shared.graph_base),
            "id": format!("{:016x}", mix(fnv1a(c.user_principal_name.as_bytes()))),
            "displayName": c.display_name,
            "userPrincipalName": c.user_principal_name,
            "mail": c.user_principal_name,
        });
        crate::server::json(StatusCode::OK, &v)
    }

    /// `/me` for an app-only token: there is no signed-in user (msgraph-sdk-php #1163).
    fn me_refused(&self) -> Response<SimBody> {
        self.err(
            400,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        )
    }

    /// The site a route names, or the answer when it is not to be had: 403 `accessDenied` without
    /// `Sites.Read.All` (the permission `site-get` and `site-getbypath` list; a token without it was refused so,
    /// microsoft-graph-explorer-v4 #2570, acsone/msgraphfs #9), 404 `itemNotFound` for no such site.
    fn site_index(&self, key: &SiteKey) -> Result<usize, Response<SimBody>> {
        if !self.grant.reads_sites() {
            return Err(self.err(403, "accessDenied", "Access denied"));
        }
        let sites = &self.world.sites;
        let found = match key {
            SiteKey::Path { host, path } => sites.iter().position(|s| {
                s.hostname.eq_ignore_ascii_case(host) && s.path.eq_ignore_ascii_case(path)
            }),
            SiteKey::Id(id) if id.eq_ignore_ascii_case("root") => {
                sites.iter().position(|s| s.path == "/")
            }
            SiteKey::Id(id) if id.contains(',') => {
                sites.iter().position(|s| s.id.eq_ignore_ascii_case(id))
            }
            SiteKey::Id(host) => sites
                .iter()
                .position(|s| s.hostname.eq_ignore_ascii_case(host) && s.path == "/"),
        };
        found.ok_or_else(|| self.err(404, "itemNotFound", "Requested site could not be found"))
    }

    fn site_json(&self, i: usize) -> Value {
        let site = &self.world.sites[i];
        json!({
            "@odata.context": format!("{}/$metadata#sites/$entity", self.shared.graph_base),
            "id": site.id,
            "name": split_last(&site.path),
            "displayName": site.display_name,
            "webUrl": format!("https://{}{}", site.hostname, site.path.trim_end_matches('/')),
            "createdDateTime": time::format(1_600_000_000),
            "siteCollection": { "hostname": site.hostname },
        })
    }

    /// The user a `/users/{id-or-upn}` route names: the signed-in one (drive 0) or one of the tenant's others,
    /// with the drive the token may read, or the answer when there is none to read.
    fn user_drive(&self, user: &str) -> Result<usize, Response<SimBody>> {
        let me = &self.shared.config.user_principal_name;
        if user.eq_ignore_ascii_case(me) || user == directory::main_user_id(self.shared) {
            return Ok(0);
        }
        // [U] for a name the directory does not know: the directory's own 404 wording.
        let Some(u) = directory::find_user(self.world, user) else {
            return Err(self.err(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{user}' does not exist or one of its queried reference-property objects are not present."
                ),
            ));
        };
        let missing = *self.shared.knobs.missing_onedrive.lock().expect("knob");
        match u.drive {
            None => Err(match missing {
                Some(crate::MissingOneDrive::MysiteNotFound) => {
                    self.err(404, "ResourceNotFound", "User's mysite not found.")
                }
                Some(crate::MissingOneDrive::FileNotFound) => {
                    self.err(404, "UnknownError", "404 FILE NOT FOUND")
                }
                Some(crate::MissingOneDrive::MysiteUrl) => {
                    self.err(400, "BadRequest", "Unable to retrieve user's mysite URL.")
                }
                Some(crate::MissingOneDrive::AppOnlyDefaultDrive) => self.err(
                    400,
                    "invalidRequest",
                    "Call was made to the default drive, which is not supported for apponly tokens.",
                ),
                None if self.grant.app_only => self.err(
                    400,
                    "invalidRequest",
                    "Call was made to the default drive, which is not supported for apponly tokens.",
                ),
                None => self.err(404, "ResourceNotFound", "User's mysite not found."),
            }),
            Some(_) if !u.shared && !self.grant.app_only => {
                Err(self.err(403, "accessDenied", "Access denied"))
            }
            Some(d) => Ok(d),
        }
    }

    /// The drives `GET …/drives` lists for `owner`.
    fn drives_of(&self, owner: &Owner) -> Result<Vec<usize>, Response<SimBody>> {
        match owner {
            Owner::Me if self.grant.app_only => Err(self.me_refused()),
            Owner::Me => Ok(vec![0]),
            Owner::User(user) => self.user_drive(user).map(|d| vec![d]),
            Owner::Site(key) => {
                let i = self.site_index(key)?;
                Ok(self.world.sites[i].libraries.clone())
            }
        }
    }

    fn drive_index(&self, d: &DriveRef) -> Result<usize, Response<SimBody>> {
        let not_found = || self.err(404, "itemNotFound", "The drive does not exist.");
        match d {
            DriveRef::Me if self.grant.app_only => Err(self.me_refused()),
            DriveRef::Me => Ok(0),
            DriveRef::User(user) => self.user_drive(user),
            DriveRef::Site(key) => {
                let i = self.site_index(key)?;
                self.world.sites[i]
                    .libraries
                    .first()
                    .copied()
                    .ok_or_else(not_found)
            }
            DriveRef::Id(id) => {
                let d = self.drive_by_id(id).ok_or_else(not_found)?;
                match self.world.drives[d].revoked {
                    Some(403) => Err(self.err(403, "accessDenied", "Access denied")),
                    Some(status) => {
                        Err(self.err(status, "itemNotFound", "The resource could not be found."))
                    }
                    None => Ok(d),
                }
            }
        }
    }

    fn drive_by_id(&self, id: &str) -> Option<usize> {
        let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
        self.world
            .drives
            .iter()
            .position(|x| x.id.eq_ignore_ascii_case(id))
            .or_else(|| {
                (self.world.flavour == Flavour::Personal)
                    .then(|| {
                        self.world
                            .drives
                            .iter()
                            .position(|x| norm(&x.id) == norm(id))
                    })
                    .flatten()
            })
    }

    /// The paging fault armed for a children listing of `folder` (`Some`) or for a delta listing (`None`).
    fn paging_fault(&self, folder: Option<usize>) -> Option<PagingFault> {
        match *self.shared.knobs.paging_fault.lock().expect("paging fault") {
            Some((fault, None)) if folder.is_none() => Some(fault),
            Some((fault, Some(want))) if folder == Some(want) => Some(fault),
            _ => None,
        }
    }

    /// Whether this world's IDs have the personal shape (`{16 hex}` drives, `{drive}!{n}` items) that drifts.
    fn personal_ids(&self) -> bool {
        self.world.flavour == Flavour::Personal && !self.world.sharepoint_ids
    }

    /// Drive `d`'s ID as this kind of answer spells it.
    fn drive_id_out(&self, d: usize, case: IdCase) -> String {
        let id = &self.world.drives[d].id;
        if self.personal_ids() {
            case.apply(id)
        } else {
            id.clone()
        }
    }

    /// Item `idx`'s ID as answers spell it now (see [`IdDrift`]).
    fn item_id_out(&self, idx: usize) -> String {
        let w = self.world;
        let it = &w.items[idx];
        if !self.personal_ids() {
            return it.id.clone();
        }
        let drive = &w.drives[it.drive].id;
        let Some(rest) = it
            .id
            .strip_prefix(drive.as_str())
            .and_then(|r| r.strip_prefix('!'))
        else {
            return it.id.clone();
        };
        let rest = if self.drift.sea_root_id && it.parent.is_none() {
            SEA_ROOT_SUFFIX
        } else {
            rest
        };
        format!("{}!{rest}", self.drift.item_ids.apply(drive))
    }

    /// The live-or-tombstone item an ID names in drive `d`, whatever spelling of it the client sent: the
    /// service's own answers use several (see [`IdDrift`]), so it accepts them all.
    fn find_item(&self, d: usize, id: &str) -> Option<usize> {
        let w = self.world;
        if let Some(&i) = w.by_id.get(&(d, id.to_owned())) {
            return Some(i);
        }
        if !self.personal_ids() {
            return None;
        }
        let (prefix, rest) = id.split_once('!')?;
        let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
        let drive = &w.drives[d].id;
        if norm(prefix) != norm(drive) {
            return None;
        }
        if rest == SEA_ROOT_SUFFIX {
            return Some(w.drives[d].root);
        }
        w.by_id.get(&(d, format!("{drive}!{rest}"))).copied()
    }

    fn drive_json(&self, d: usize) -> Value {
        let w = self.world;
        let used = w.items[w.drives[d].root].subtree_size;
        let total = self.shared.uploads.quota_total().max(used);
        let state = crate::upload::quota_state(total, used);
        let (name, owner) = match &w.drives[d].kind {
            DriveKind::Main => (
                "OneDrive".to_owned(),
                json!({ "user": { "displayName": self.shared.config.display_name, "id": directory::main_user_id(self.shared) } }),
            ),
            DriveKind::Shared => (
                "OneDrive".to_owned(),
                json!({ "user": { "displayName": "Alex Wilber", "id": "graphsim-sharer" } }),
            ),
            DriveKind::User { user } => (
                "OneDrive".to_owned(),
                json!({ "user": { "displayName": w.users[*user].display_name, "id": w.users[*user].id } }),
            ),
            // A library belongs to its site's group.
            DriveKind::Library { site, name } => (
                name.clone(),
                json!({ "group": { "displayName": format!("{} Owners", w.sites[*site].display_name), "id": format!("graphsim-group-{site}") } }),
            ),
        };
        json!({
            "id": self.drive_id_out(d, self.drift.drive),
            "driveType": w.drive_type(d),
            "name": name,
            "owner": owner,
            "quota": if self.shared.knobs.negative_quota.load(std::sync::atomic::Ordering::Relaxed) {
                json!({ "total": total, "used": -1_478_419, "remaining": total + 1_478_419, "deleted": 0, "state": state })
            } else {
                json!({ "total": total, "used": used, "remaining": total - used, "deleted": 0, "state": state })
            },
            "webUrl": self.web_url(d, &[]),
        })
    }

    fn resolve(&self, d: usize, base: &Base, rel: &[String]) -> Result<usize, Response<SimBody>> {
        let w = self.world;
        let not_found = || self.err(404, "itemNotFound", "Item does not exist");
        let start = match base {
            Base::Root => w.drives[d].root,
            Base::Id(id) => match self.find_item(d, id) {
                Some(i) if !w.items[i].deleted => i,
                _ => return Err(not_found()),
            },
            Base::Special(name) => {
                let known: &[&str] = match w.flavour {
                    Flavour::Personal => &[
                        "documents",
                        "photos",
                        "cameraroll",
                        "approot",
                        "music",
                        "recordings",
                    ],
                    Flavour::Business => &["documents", "photos", "approot"],
                };
                if !known.contains(&name.as_str()) {
                    return Err(not_found());
                }
                match (d, w.special.get(name)) {
                    (0, Some(&i)) if !w.items[i].deleted => i,
                    _ if w.flavour == Flavour::Business && name == "documents" => w.drives[d].root,
                    _ => {
                        return Err(match self.shared.config.missing_special_status {
                            404 => not_found(),
                            s => self.err(s, "accessDenied", "Access denied"),
                        });
                    }
                }
            }
        };
        w.walk(start, rel).ok_or_else(not_found)
    }

    fn web_url(&self, d: usize, segs: &[&str]) -> String {
        let path: String = segs
            .iter()
            .map(|s| format!("/{}", enc_segment(s)))
            .collect();
        match self.world.flavour {
            Flavour::Personal => format!(
                "https://onedrive.live.com/?cid={}&path={}",
                self.world.drives[d].id, path
            ),
            Flavour::Business => match &self.world.drives[d].kind {
                DriveKind::Library { site, name } => {
                    let site = &self.world.sites[*site];
                    format!(
                        "https://{}{}/{}{path}",
                        site.hostname,
                        site.path.trim_end_matches('/'),
                        enc_segment(name)
                    )
                }
                _ => format!("https://contoso-my.sharepoint.com/personal/megan/Documents{path}"),
            },
        }
    }

    fn guid(id: &str) -> String {
        let a = mix(fnv1a(id.as_bytes()));
        let b = mix(a);
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    fn etag(&self, it: &Item) -> String {
        match self.world.flavour {
            Flavour::Personal => format!(
                "a{}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(it.id.as_bytes()),
                it.version
            ),
            Flavour::Business => format!("\"{{{}}},{}\"", Self::guid(&it.id), it.version),
        }
    }

    fn ctag(&self, it: &Item) -> String {
        let v = it.file().map_or(it.version, |f| f.content_version);
        match self.world.flavour {
            Flavour::Personal => format!(
                "aYzo{}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(it.id.as_bytes()),
                v
            ),
            Flavour::Business => format!("\"c:{{{}}},{}\"", Self::guid(&it.id), v),
        }
    }

    fn parent_path(&self, idx: usize) -> String {
        let w = self.world;
        let d = w.items[idx].drive;
        let prefix = if w.flavour == Flavour::Personal && d == 0 {
            "/drive/root:".to_owned()
        } else {
            format!(
                "/drives/{}/root:",
                self.drive_id_out(d, self.drift.references)
            )
        };
        let segs = w.segments(idx);
        let parent_segs = &segs[..segs.len().saturating_sub(1)];
        let enc = self.shared.config.encode_parent_path;
        parent_segs.iter().fold(prefix, |mut acc, s| {
            acc.push('/');
            if enc {
                acc.push_str(&enc_segment(s));
            } else {
                acc.push_str(s);
            }
            acc
        })
    }

    fn wants(&self, field: &str) -> bool {
        self.select
            .as_ref()
            .is_none_or(|s| s.contains(&field.to_ascii_lowercase()))
    }

    fn hashes_json(&self, f: &crate::tree::FileData) -> Option<Value> {
        use crate::tree::Hashes;
        let cfg = &self.shared.config;
        let cache = &self.shared.hashes;
        let (quick, sha1) = match f.hashes {
            Hashes::BareFileFacet => return None,
            Hashes::Empty => (false, false),
            Hashes::QuickXor => (true, false),
            Hashes::WithSha1 => (true, true),
            Hashes::Default if f.size == 0 && !cfg.zero_byte_hashes => (false, false),
            Hashes::Default => (
                true,
                self.world.flavour == Flavour::Personal && cfg.personal_sha1,
            ),
        };
        let mut m = Map::new();
        let len = f.hashed_len();
        if sha1 {
            m.insert("sha1Hash".into(), Value::String(cache.sha1(f.seed, len)));
        }
        if quick {
            m.insert(
                "quickXorHash".into(),
                Value::String(cache.quick_xor(f.seed, len)),
            );
        }
        Some(Value::Object(m))
    }

    fn parent_reference(&self, idx: usize, mode: Mode) -> Value {
        let w = self.world;
        let it = &w.items[idx];
        let d = it.drive;
        let mut m = Map::new();
        m.insert(
            "driveId".into(),
            Value::String(self.drive_id_out(d, self.drift.references)),
        );
        m.insert("driveType".into(), Value::String(w.drive_type(d).into()));
        if let Some(p) = it.parent {
            m.insert("id".into(), Value::String(self.item_id_out(p)));
            if !matches!(w.items[p].kind, Kind::Root) && !w.items[p].deleted {
                m.insert("name".into(), Value::String(w.items[p].name.clone()));
            }
            // Delta never fills in the path (<https://learn.microsoft.com/en-us/graph/api/driveitem-delta>).
            if mode != Mode::Delta && !it.deleted {
                m.insert("path".into(), Value::String(self.parent_path(idx)));
            }
            if w.flavour == Flavour::Business {
                m.insert(
                    "siteId".into(),
                    Value::String(Self::guid(&w.drives[d].id).to_lowercase()),
                );
            }
        }
        Value::Object(m)
    }

    fn user(&self) -> Value {
        json!({ "user": { "displayName": self.shared.config.display_name, "id": "graphsim-user" } })
    }

    /// An item's JSON, honouring `$select` (hashes are only computed when `file` is wanted).
    // Every facet of an item's JSON side by side, in the order Graph's driveItem resource lists them.
    #[allow(clippy::too_many_lines)]
    fn render(&self, idx: usize, mode: Mode) -> Value {
        let w = self.world;
        let it = &w.items[idx];
        if it.deleted {
            return self.render_deleted(idx);
        }
        let business = w.flavour == Flavour::Business;
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.item_id_out(idx)));
        if let Some(f) = it.file() {
            let policy = *self.shared.knobs.listing_urls.lock().expect("listing urls");
            let want_url = match (&self.select, policy) {
                (_, crate::state::ListingUrls::NotInListings) if mode != Mode::Single => false,
                (Some(_), crate::state::ListingUrls::DroppedUnderDollarSelect)
                    if self.dollar_select =>
                {
                    false
                }
                (Some(s), _) => s.contains(&DOWNLOAD_URL.to_ascii_lowercase()),
                // The default shape carries it, in a listing too.
                (None, _) => true,
            };
            if want_url && f.malware.is_none() {
                let url = crate::download::mint_url(self.shared, w, idx);
                m.insert(DOWNLOAD_URL.into(), Value::String(url));
            }
        }
        let mut put = |k: &str, v: &dyn Fn() -> Value| {
            if self.wants(k) {
                m.insert(k.to_owned(), v());
            }
        };
        put("name", &|| Value::String(it.name.clone()));
        put("createdDateTime", &|| {
            Value::String(time::format(it.created))
        });
        put("lastModifiedDateTime", &|| {
            Value::String(time::format(it.modified))
        });
        put("eTag", &|| Value::String(self.etag(it)));
        let size = it.file().map_or(it.subtree_size, |f| f.size);
        let negative = self
            .shared
            .knobs
            .negative_sizes
            .lock()
            .expect("negative sizes")
            .get(&idx)
            .copied();
        put("size", &|| {
            negative.map_or_else(|| json!(size), |n| json!(n))
        });
        put("webUrl", &|| {
            Value::String(self.web_url(it.drive, &w.segments(idx)))
        });
        put("createdBy", &|| self.user());
        put("lastModifiedBy", &|| self.user());
        put("parentReference", &|| self.parent_reference(idx, mode));
        put(
            "fileSystemInfo",
            &|| json!({ "createdDateTime": time::format(it.fs_created), "lastModifiedDateTime": time::format(it.fs_modified) }),
        );
        // cTag: never on ODB folders, and left out of ODB delta entirely.
        let has_ctag = match (&it.kind, w.flavour) {
            (Kind::File(_), Flavour::Personal) => true,
            (Kind::File(_), Flavour::Business) => mode != Mode::Delta,
            (_, Flavour::Personal) => !matches!(it.kind, Kind::Remote { .. }),
            (_, Flavour::Business) => false,
        };
        if has_ctag {
            put("cTag", &|| Value::String(self.ctag(it)));
        }
        let folder_facet = || json!({ "childCount": it.children.len() });
        match &it.kind {
            Kind::Root => {
                put("root", &|| json!({}));
                put("folder", &folder_facet);
            }
            Kind::Folder { .. } => put("folder", &folder_facet),
            Kind::Package => {
                put("package", &|| json!({ "type": "oneNote" }));
                if business {
                    put("folder", &folder_facet);
                }
            }
            Kind::File(f) => {
                put("file", &|| {
                    let mut file = Map::new();
                    if let Some(h) = self.hashes_json(f) {
                        file.insert("mimeType".into(), Value::String(f.mime.clone()));
                        file.insert("hashes".into(), h);
                    }
                    Value::Object(file)
                });
                if let Some(t) = f.taken {
                    put("photo", &|| {
                        if business {
                            json!({ "takenDateTime": time::format(t) })
                        } else {
                            json!({
                                "takenDateTime": time::format(t), "cameraMake": "Apple", "cameraModel": "iPhone 12",
                                "fNumber": 1.6, "exposureNumerator": 1.0, "exposureDenominator": 120.0,
                                "focalLength": 4.2, "iso": 64
                            })
                        }
                    });
                    put("image", &|| json!({ "width": 4032, "height": 3024 }));
                }
                if let Some(ms) = f.video_ms {
                    put("video", &|| {
                        json!({
                            "duration": ms, "width": 1920, "height": 1080, "bitrate": 8_000_000,
                            "frameRate": 30.0, "fourCC": "avc1", "audioFormat": "AAC", "audioChannels": 2,
                            "audioBitsPerSample": 16, "audioSamplesPerSecond": 48000
                        })
                    });
                }
                if let Some(desc) = &f.malware {
                    put("malware", &|| json!({ "description": desc }));
                }
            }
            Kind::Remote { drive, item } => {
                put("remoteItem", &|| self.remote_json(*drive, *item));
            }
        }
        if let Some(alias) = &it.special {
            put("specialFolder", &|| json!({ "name": alias }));
        }
        Value::Object(m)
    }

    fn remote_json(&self, d: usize, target: usize) -> Value {
        let w = self.world;
        let t = &w.items[target];
        let mut drive_id = self.drive_id_out(d, self.drift.references);
        if self.shared.config.quirky_remote_drive_ids && w.flavour == Flavour::Personal {
            drive_id = drive_id.trim_start_matches('0').to_ascii_lowercase();
        }
        let mut out = json!({
            "id": self.item_id_out(target),
            "name": t.name,
            "size": t.file().map_or(t.subtree_size, |f| f.size),
            "createdDateTime": time::format(t.created),
            "lastModifiedDateTime": time::format(t.modified),
            "fileSystemInfo": { "createdDateTime": time::format(t.fs_created), "lastModifiedDateTime": time::format(t.fs_modified) },
            "parentReference": { "driveId": drive_id, "driveType": w.flavour.drive_type() },
            "webUrl": self.web_url(d, &w.segments(target)),
        });
        // A shortcut carries the facet of what it names: `folder` or `file`
        // (https://learn.microsoft.com/en-us/graph/api/resources/remoteitem).
        if let Some(f) = t.file() {
            let mut file = Map::new();
            file.insert("mimeType".into(), Value::String(f.mime.clone()));
            if let Some(h) = self.hashes_json(f) {
                file.insert("hashes".into(), h);
            }
            out["file"] = Value::Object(file);
        } else {
            out["folder"] = json!({ "childCount": t.children.len() });
        }
        out
    }

    /// A deleted entry as delta shows it: ODB drops `name` and zeroes `size`; personal drops `size`.
    fn render_deleted(&self, idx: usize) -> Value {
        let w = self.world;
        let it = &w.items[idx];
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.item_id_out(idx)));
        m.insert("deleted".into(), json!({ "state": "deleted" }));
        m.insert(
            "parentReference".into(),
            self.parent_reference(idx, Mode::Delta),
        );
        match w.flavour {
            Flavour::Personal => {
                m.insert("name".into(), Value::String(it.name.clone()));
                m.insert(
                    "lastModifiedDateTime".into(),
                    Value::String(time::format(it.modified)),
                );
            }
            Flavour::Business => {
                m.insert("size".into(), json!(0));
                m.insert(
                    "lastModifiedDateTime".into(),
                    Value::String("0001-01-01T00:00:00Z".into()),
                );
            }
        }
        if it.file().is_some() {
            m.insert("file".into(), json!({}));
        } else {
            m.insert("folder".into(), json!({ "childCount": 0 }));
        }
        Value::Object(m)
    }

    /// `$top` → page size (default 200, capped at 1000 and by the page-cap knob; ragged if asked).
    fn page_size(
        &self,
        query: &HashMap<String, String>,
        salt: u64,
    ) -> Result<usize, Response<SimBody>> {
        let cfg = &self.shared.config;
        let mut n = match query.get("top") {
            None => cfg.default_page,
            Some(t) => match t.parse::<usize>() {
                Ok(v) if v > 0 => v.min(cfg.max_page),
                _ => return Err(self.err(400, "invalidRequest", "Invalid $top value")),
            },
        };
        let cap = self.shared.knobs.page_cap.load(Ordering::Relaxed) as usize;
        if cap > 0 {
            n = n.min(cap);
        }
        if self.shared.knobs.ragged_pages.load(Ordering::Relaxed) && n > 1 {
            n -= (mix(salt) % (n as u64 / 2 + 1)) as usize;
        }
        Ok(n.max(1))
    }

    /// The request's select, for a next or delta link, in the request's dialect (`$select` or `select`).
    fn select_param(&self) -> String {
        let dollar = if self.dollar_select { "$" } else { "" };
        self.select_raw
            .as_ref()
            .map(|s| format!("{dollar}select={}&", enc_query(s)))
            .unwrap_or_default()
    }

    fn children(&self, idx: usize, query: &HashMap<String, String>) -> Response<SimBody> {
        let w = self.world;
        let it = &w.items[idx];
        if matches!(it.kind, Kind::Folder { vault: true }) {
            // The vault's answer, as rclone #8098 shows it: `invalidRequest` with `invalidResourceId` inside.
            return crate::server::graph_error_nested(
                self.shared,
                400,
                "invalidRequest",
                "invalidResourceId",
                "ObjectHandle is Invalid",
            );
        }
        let (offset, empties) = match query.get("skiptoken") {
            None => (0, 0),
            Some(tok) => match unseal(tok).and_then(|p| parse_children_token(&p)) {
                Some((i, off, empties)) if i == idx => (off, empties),
                _ => return self.err(400, "invalidRequest", "Invalid skip token"),
            },
        };
        let fault = self.paging_fault(Some(idx));
        let kids = &it.children;
        let n = match self.page_size(query, (idx as u64) << 32 ^ offset as u64) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let mut end = (offset + n).min(kids.len());
        // Where the nextLink points: (offset, empty pages so far), or nowhere.
        let mut next_at = (end < kids.len()).then_some((end, 0));
        match fault {
            Some(PagingFault::RepeatSameLink) if offset > 0 => next_at = Some((offset, empties)),
            Some(PagingFault::PointBackToFirst) if offset > 0 => next_at = Some((0, 0)),
            Some(PagingFault::EmptyPagesForever) if offset > 0 => {
                end = offset;
                next_at = Some((offset, empties + 1));
            }
            _ => {}
        }
        let drive_id = &w.drives[it.drive].id;
        let context = format!(
            "{}/$metadata#drives('{}')/items('{}')/children",
            self.shared.graph_base, drive_id, it.id
        );
        let next = next_at.map(|(at, empties)| {
            let mut top = String::new();
            if let Some(t) = query.get("top") {
                top = format!("$top={}&", enc_query(t));
            }
            let next = format!(
                "{}/drives/{}/items/{}/children?{}{}$skiptoken={}",
                self.shared.graph_base,
                enc_segment(&self.drive_id_out(it.drive, self.drift.drive)),
                enc_segment(&self.item_id_out(idx)),
                self.select_param(),
                top,
                seal(&format!("c.{idx}.{at}.{empties}"))
            );
            ("@odata.nextLink".to_owned(), next)
        });
        self.page(
            &context,
            kids.get(offset..end).unwrap_or(&[]),
            Mode::List,
            next,
        )
    }

    /// A collection page, each item serialised as soon as it is rendered (no page-sized tree).
    fn page(
        &self,
        context: &str,
        items: &[usize],
        mode: Mode,
        link: Option<(String, String)>,
    ) -> Response<SimBody> {
        let mut buf = Vec::with_capacity(256 + items.len() * 1024);
        buf.extend_from_slice(b"{\"@odata.context\":");
        serde_json::to_writer(&mut buf, context).expect("JSON");
        buf.extend_from_slice(b",\"value\":[");
        for (k, &i) in items.iter().enumerate() {
            if k > 0 {
                buf.push(b',');
            }
            serde_json::to_writer(&mut buf, &self.render(i, mode)).expect("JSON");
        }
        buf.push(b']');
        if let Some((key, url)) = link {
            buf.push(b',');
            serde_json::to_writer(&mut buf, &key).expect("JSON");
            buf.push(b':');
            serde_json::to_writer(&mut buf, &url).expect("JSON");
        }
        buf.push(b'}');
        crate::server::json_bytes(StatusCode::OK, buf)
    }

    /// `/content`: 302 to a fresh download URL, or whatever [`ContentAnswer`](crate::ContentAnswer) says. A
    /// malware-flagged file answers 403 `malwareDetected`, unless the client asks to download it anyway
    /// (`AVOverride=1` or `Prefer: forceInfectedDownload`) on a business drive: only business tenants honour
    /// that (onedrive-api-docs issue threads on `malwareDetected`, 2022–26).
    fn content(&self, idx: usize, force_infected: bool, headers: &HeaderMap) -> Response<SimBody> {
        let it = &self.world.items[idx];
        let overridden = force_infected && self.world.flavour == crate::tree::Flavour::Business;
        let answer = *self
            .shared
            .knobs
            .content_answer
            .lock()
            .expect("content answer");
        match &it.kind {
            Kind::File(f) if f.malware.is_some() && !overridden => {
                self.err(403, "malwareDetected", "Malware detected")
            }
            Kind::File(_) if answer == crate::state::ContentAnswer::RedirectWithoutLocation => {
                crate::server::empty(StatusCode::FOUND)
            }
            Kind::File(f) if answer == crate::state::ContentAnswer::Inline => {
                let body = crate::download::FileBody {
                    idx,
                    seed: f.seed,
                    len: f.served_len(),
                    name: it.name.clone(),
                    etag: format!("\"{{{:016X}}},{}\"", f.seed, it.version),
                };
                let range = headers
                    .get(hyper::header::RANGE)
                    .and_then(|v| v.to_str().ok());
                crate::download::serve_file(self.shared, &body, range, false, None)
            }
            Kind::File(_) => {
                let url = crate::download::mint_url_with(self.shared, self.world, idx, overridden);
                let mut r = crate::server::empty(StatusCode::FOUND);
                if let Ok(v) = hyper::header::HeaderValue::from_str(&url) {
                    r.headers_mut().insert(LOCATION, v);
                }
                r
            }
            _ => self.err(404, "itemNotFound", "The resource could not be found."),
        }
    }

    fn delta_link(&self, d: usize, scope: usize, kind: &str, token: &str) -> (String, String) {
        let w = self.world;
        let root = w.drives[d].root == scope;
        let place = if root {
            "root".to_owned()
        } else {
            format!("items/{}", enc_segment(&self.item_id_out(scope)))
        };
        let url = format!(
            "{}/drives/{}/{}/delta?{}token={}",
            self.shared.graph_base,
            enc_segment(&self.drive_id_out(d, self.drift.drive)),
            place,
            self.select_param(),
            token
        );
        (kind.to_owned(), url)
    }

    // The delta endpoint's rules (token, paging, order, drift knobs) in the order they apply to one request.
    #[allow(clippy::too_many_lines)]
    fn delta(
        &self,
        d: usize,
        scope: usize,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Response<SimBody> {
        let w = self.world;
        if w.flavour == Flavour::Business && scope != w.drives[d].root {
            return self.err(
                501,
                "notSupported",
                "view.delta can only be called on the root.",
            );
        }
        let refused = self.shared.knobs.folder_delta_status.load(Ordering::SeqCst);
        if w.flavour == Flavour::Personal && scope != w.drives[d].root && refused != 0 {
            return match refused {
                501 => self.err(
                    501,
                    "notSupported",
                    "view.delta can only be called on the root.",
                ),
                s => self.err(s as u16, "invalidRequest", "Invalid request"),
            };
        }
        let epoch = self.shared.knobs.page_link_epoch.load(Ordering::SeqCst);
        let (since, upto, offset, empties) = match query.get("token").map(String::as_str) {
            None => (0, w.seq, 0, 0),
            Some("latest") => {
                let link = self.delta_link(
                    d,
                    scope,
                    "@odata.deltaLink",
                    &seal(&format!("d.{d}.{scope}.{}", w.seq)),
                );
                let mut body = Map::new();
                body.insert("value".into(), Value::Array(Vec::new()));
                body.insert(link.0, Value::String(link.1));
                return crate::server::json(StatusCode::OK, &Value::Object(body));
            }
            Some(tok) => match unseal(tok)
                .as_deref()
                .map(|p| p.split('.').collect::<Vec<_>>())
            {
                Some(p)
                    if p.len() == 4
                        && p[0] == "d"
                        && p[1] == d.to_string()
                        && p[2] == scope.to_string() =>
                {
                    if self.shared.knobs.resync_next.swap(false, Ordering::SeqCst) {
                        return self.resync(d, scope);
                    }
                    let since = p[3].parse().unwrap_or(0);
                    (since, w.seq, 0, 0)
                }
                Some(p)
                    if p.len() >= 6
                        && p[0] == "n"
                        && p[1] == d.to_string()
                        && p[2] == scope.to_string() =>
                {
                    let n = |i: usize| p.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    if n(6) < epoch {
                        return match self
                            .shared
                            .knobs
                            .stale_page_link_status
                            .load(Ordering::SeqCst)
                        {
                            404 => self.err(404, "itemNotFound", "Item does not exist"),
                            400 => self.err(400, "invalidRequest", "Invalid token"),
                            _ => self.resync(d, scope),
                        };
                    }
                    (n(3), n(4), n(5) as usize, n(7))
                }
                _ => return self.resync(d, scope),
            },
        };
        let list = self.enumeration(d, scope, since, upto);
        let n = match self.page_size(query, upto ^ (offset as u64) << 20) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let mut end = (offset + n).min(list.len());
        // Where the nextLink points: (offset, empty pages so far); `None` ends the round with a deltaLink.
        let mut next_at = (end < list.len()).then_some((end, 0));
        match self.paging_fault(None) {
            Some(PagingFault::RepeatSameLink) if offset > 0 => next_at = Some((offset, empties)),
            Some(PagingFault::PointBackToFirst) if offset > 0 => next_at = Some((0, 0)),
            Some(PagingFault::EmptyPagesForever) if offset > 0 => {
                end = offset;
                next_at = Some((offset, empties + 1));
            }
            _ => {}
        }
        let page = list.get(offset..end).unwrap_or(&[]);
        let mut entries: Vec<usize> = Vec::with_capacity(page.len() + 8);
        if w.flavour == Flavour::Business {
            // ODB repeats every ancestor of each changed item on every page (reported "by design" on onedrive-api-docs in 2016).
            let exclude_parent = headers.get_all("prefer").iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.to_ascii_lowercase().contains("deltaexcludeparent"))
            });
            let in_page: HashSet<usize> = page.iter().copied().collect();
            let mut seen = HashSet::new();
            for &i in page {
                let mut chain = Vec::new();
                let mut cur = w.items[i].parent;
                while let Some(p) = cur {
                    chain.push(p);
                    cur = w.items[p].parent;
                }
                for &a in chain.iter().rev() {
                    let is_root = w.items[a].parent.is_none();
                    if (exclude_parent && !is_root) || in_page.contains(&a) || w.items[a].deleted {
                        continue;
                    }
                    if seen.insert(a) {
                        entries.push(a);
                    }
                }
            }
        }
        entries.extend_from_slice(page);
        let (k, url) = if let Some((at, empties)) = next_at {
            let mut top = String::new();
            if let Some(t) = query.get("top") {
                top = format!("$top={}&", enc_query(t));
            }
            let (k, url) = self.delta_link(
                d,
                scope,
                "@odata.nextLink",
                &seal(&format!(
                    "n.{d}.{scope}.{since}.{upto}.{at}.{epoch}.{empties}"
                )),
            );
            (k, url.replacen("token=", &format!("{top}token="), 1))
        } else {
            self.delta_link(
                d,
                scope,
                "@odata.deltaLink",
                &seal(&format!("d.{d}.{scope}.{upto}")),
            )
        };
        let context = format!("{}/$metadata#Collection(driveItem)", self.shared.graph_base);
        self.page(&context, &entries, Mode::Delta, Some((k, url)))
    }

    fn resync(&self, d: usize, scope: usize) -> Response<SimBody> {
        let (_, fresh) = self.delta_link(d, scope, "", "");
        let fresh = fresh
            .trim_end_matches("token=")
            .trim_end_matches(['?', '&'])
            .to_owned();
        let mut r = self.err(
            410,
            "resyncRequired",
            "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
        );
        set_header(&mut r, "location", &fresh);
        r
    }

    /// The ordered items of one delta round (cached so every page of it sees the same list).
    fn enumeration(&self, d: usize, scope: usize, since: u64, upto: u64) -> Arc<Vec<usize>> {
        let children_first = self.shared.knobs.children_first.load(Ordering::Relaxed);
        let drop_deletions = self
            .shared
            .knobs
            .delta_drops_deletions
            .load(Ordering::Relaxed);
        let key = (
            d,
            scope,
            since,
            upto,
            u64::from(children_first) | u64::from(drop_deletions) << 1,
        );
        {
            let cache = self.shared.delta_cache.lock().expect("delta cache");
            if let Some((_, list)) = cache.iter().find(|(k, _)| *k == key) {
                return list.clone();
            }
        }
        let w = self.world;
        let mut list = Vec::new();
        if since == 0 {
            // Full enumeration: the live tree in pre-order, vault contents hidden.
            let mut stack = vec![scope];
            while let Some(i) = stack.pop() {
                list.push(i);
                if !matches!(w.items[i].kind, Kind::Folder { vault: true }) {
                    stack.extend(w.items[i].children.iter().rev());
                }
            }
        } else {
            let drop_deletions = self
                .shared
                .knobs
                .delta_drops_deletions
                .load(Ordering::Relaxed);
            let mut changed: Vec<usize> = (0..w.items.len())
                .filter(|&i| {
                    let it = &w.items[i];
                    it.drive == d
                        && it.seq > since
                        && it.seq <= upto
                        && in_scope(w, i, scope)
                        && !(drop_deletions && it.deleted)
                })
                .collect();
            changed.sort_by_key(|&i| (w.items[i].seq, i));
            list = changed;
        }
        if children_first {
            list.reverse();
        }
        let list = Arc::new(list);
        let mut cache = self.shared.delta_cache.lock().expect("delta cache");
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((key, list.clone()));
        list
    }
}

/// The last segment of a `/`-path (`""` for `/`).
fn split_last(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("")
}

/// Whether `idx` (live or tombstone) lies at or below `scope`, outside any vault.
fn in_scope(w: &World, idx: usize, scope: usize) -> bool {
    let mut cur = Some(idx);
    let mut first = true;
    while let Some(i) = cur {
        if !first && matches!(w.items[i].kind, Kind::Folder { vault: true }) {
            return false;
        }
        if i == scope {
            return true;
        }
        first = false;
        cur = w.items[i].parent;
    }
    false
}

/// `c.{folder}.{offset}[.{empty pages served}]` → its numbers.
fn parse_children_token(p: &str) -> Option<(usize, usize, usize)> {
    let mut it = p.split('.');
    if it.next()? != "c" {
        return None;
    }
    let folder = it.next()?.parse().ok()?;
    let offset = it.next()?.parse().ok()?;
    let empties = it.next().map_or(Some(0), |e| e.parse().ok())?;
    Some((folder, offset, empties))
}

/// Wraps a payload into an opaque, checksummed, URL-safe token.
pub(crate) fn seal(payload: &str) -> String {
    let check = mix(fnv1a(payload.as_bytes()) ^ 0x6772_6170_6873_696d) & 0xffff_ffff;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{payload}~{check:08x}"))
}

/// The payload of a token made by [`seal`], if it is intact.
pub(crate) fn unseal(token: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (payload, check) = s.rsplit_once('~')?;
    (seal(payload) == token.trim() && check.len() == 8).then(|| payload.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(r: &Route) -> (String, Vec<String>, Op) {
        match r {
            Route::Item { base, rel, op, .. } => (format!("{base:?}"), rel.clone(), *op),
            other => panic!("not an item route: {other:?}"),
        }
    }

    #[test]
    fn routes_parse_like_graph() {
        assert!(matches!(parse_route("/v1.0/me"), Route::Me));
        assert!(matches!(
            parse_route("/v1.0/me/drive"),
            Route::Drive(DriveRef::Me)
        ));
        assert!(
            matches!(parse_route("/v1.0/drives/b!x-y_z"), Route::Drive(DriveRef::Id(ref s)) if s == "b!x-y_z")
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/root")),
            ("Root".into(), vec![], Op::Get)
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/root/children")).2,
            Op::Children
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/root:/A%20B/a%2Fb:/children")),
            (
                "Root".into(),
                vec!["A B".into(), "a/b".into()],
                Op::Children
            )
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/root:/A/c.jpg")),
            ("Root".into(), vec!["A".into(), "c.jpg".into()], Op::Get)
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/root:/A/c.jpg:/content")).2,
            Op::Content
        );
        assert_eq!(
            item(&parse_route("/v1.0/drives/D/items/D!12:/x/y:")),
            ("Id(\"D!12\")".into(), vec!["x".into(), "y".into()], Op::Get)
        );
        assert_eq!(
            item(&parse_route("/v1.0/drives/D/items/D!12/delta")).2,
            Op::Delta
        );
        assert_eq!(
            item(&parse_route("/v1.0/me/drive/special/Photos/children")),
            ("Special(\"photos\")".into(), vec![], Op::Children)
        );
        assert!(matches!(parse_route("/v1.0/me/drive/nope"), Route::Unknown));
        assert!(matches!(parse_route("/beta/me"), Route::Unknown));
    }

    #[test]
    fn sealed_tokens_round_trip_and_reject_tampering() {
        let t = seal("c.4.200");
        assert_eq!(unseal(&t).as_deref(), Some("c.4.200"));
        let mut bad = t.clone();
        bad.replace_range(0..1, if t.starts_with('Y') { "Z" } else { "Y" });
        assert_eq!(unseal(&bad), None);
        assert_eq!(unseal("latest"), None);
    }
}
