//! The identity host (`/{tenant}/oauth2/v2.0/{devicecode,token,authorize}`), scriptable.
//!
//! Device-code polls follow a [`DeviceScript`]; refresh tokens rotate (a used one is refused
//! with `invalid_grant`); authorization codes check PKCE S256. Issued access tokens expire after
//! the token-lifetime knob; Graph checks them against this state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::content::mix;
use crate::server::{SimBody, failure_response, plain_json, set_header};
use crate::state::{RequestKind, Shared};

/// How the next device-code sign-ins answer their polls: `slow_down` × `slow_down`, then
/// `authorization_pending` × `pending`, then the outcome.
#[derive(Clone, Debug)]
pub struct DeviceScript {
    /// Polls answered `authorization_pending` (after the `slow_down` ones).
    pub pending: u32,
    /// Polls answered `slow_down` first.
    pub slow_down: u32,
    /// What the poll after those gets.
    pub outcome: DeviceOutcome,
}

impl Default for DeviceScript {
    fn default() -> Self {
        Self {
            pending: 1,
            slow_down: 0,
            outcome: DeviceOutcome::Approve,
        }
    }
}

/// The end of a device-code sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// The user signs in: tokens are issued.
    Approve,
    /// `authorization_declined`.
    Decline,
    /// `expired_token`.
    Expire,
}

/// What the scripted browser does at `/authorize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizeOutcome {
    /// Redirects to `redirect_uri` with `code` and `state`.
    #[default]
    Approve,
    /// Redirects with `error=access_denied`.
    Deny,
}

struct DeviceCode {
    script: DeviceScript,
    polls: u32,
    last_poll_ms: Option<u64>,
    expires_ms: u64,
    scope: String,
    done: bool,
}

struct RefreshToken {
    used: bool,
    scope: String,
}

struct AuthCode {
    redirect_uri: String,
    challenge: Option<(String, String)>,
    scope: String,
    expires_ms: u64,
    used: bool,
}

/// What a token allows: its delegated scopes (the `scp` claim) or, for an app-only token, the application
/// permissions consented for the app (the `roles` claim). Graph checks them per endpoint: `/sites/…` needs
/// `Sites.Read.All` (<https://learn.microsoft.com/en-us/graph/api/site-getbypath>), and `/me` is for delegated
/// tokens only ("/me request is only valid with delegated authentication flow.", msgraph-sdk-php #1163).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Scope or role names, as asked for (`Files.Read.All`, or fully qualified
    /// `https://graph.microsoft.com/Files.Read.All`).
    pub scopes: Vec<String>,
    /// A client-credentials token: no signed-in user.
    pub app_only: bool,
    /// The app (client ID) a client-credentials token was issued to: throttling budgets are kept per app.
    pub app: Option<String>,
}

impl Grant {
    /// A delegated grant of the space-separated `scope`.
    pub fn delegated(scope: &str) -> Self {
        Self {
            scopes: scope.split_whitespace().map(str::to_owned).collect(),
            app_only: false,
            app: None,
        }
    }

    /// Whether any of `names` is granted (case-insensitive; a fully qualified name counts by its last part).
    pub fn has_any(&self, names: &[&str]) -> bool {
        self.scopes.iter().any(|s| {
            let short = s.rsplit('/').next().unwrap_or(s);
            names.iter().any(|n| n.eq_ignore_ascii_case(short))
        })
    }

    /// Whether SharePoint sites may be read: `Sites.Read.All` or a wider `Sites.*` permission.
    pub fn reads_sites(&self) -> bool {
        self.has_any(&[
            "Sites.Read.All",
            "Sites.ReadWrite.All",
            "Sites.Manage.All",
            "Sites.FullControl.All",
        ])
    }
}

/// The scopes of [`crate::DEFAULT_TOKEN`] and of tokens the handle issues, unless a test narrows them: all a
/// read-only backup can use, sites included.
pub(crate) const DEFAULT_SCOPES: &str = "Files.Read Files.Read.All User.Read Sites.Read.All";

/// Sign-in state: issued tokens and codes.
#[derive(Default)]
pub(crate) struct AuthState {
    /// Access token → expiry (ms since start), `None` = never.
    pub access_tokens: HashMap<String, Option<u64>>,
    /// Access token → what it allows.
    pub grants: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, RefreshToken>,
    device_codes: HashMap<String, DeviceCode>,
    codes: HashMap<String, AuthCode>,
    pub device_script: DeviceScript,
    pub authorize_outcome: AuthorizeOutcome,
    /// App registrations for the client-credentials grant.
    pub apps: crate::apps::Apps,
    serial: u64,
}

impl AuthState {
    fn next(&mut self, secret: u64) -> (u64, u64) {
        self.serial += 1;
        (self.serial, mix(secret ^ self.serial))
    }

    /// A new access token valid for `lifetime_ms` from `now_ms`, allowing what `grant` says.
    pub fn new_access_token(
        &mut self,
        secret: u64,
        now_ms: u64,
        lifetime_ms: u64,
        grant: Grant,
    ) -> String {
        let (n, r) = self.next(secret);
        let t = format!("EwA.gs{n}.{r:016x}{:016x}", mix(r));
        self.access_tokens
            .insert(t.clone(), Some(now_ms + lifetime_ms));
        self.grants.insert(t.clone(), grant);
        t
    }

    /// A new, unused refresh token.
    pub fn new_refresh_token(&mut self, secret: u64, scope: &str) -> String {
        let (n, r) = self.next(secret);
        let t = format!("M.C5.gs{n}.{r:016x}{:016x}", mix(r ^ 1));
        self.refresh_tokens.insert(
            t.clone(),
            RefreshToken {
                used: false,
                scope: scope.to_owned(),
            },
        );
        t
    }

    /// Makes every issued access token expired.
    pub fn expire_access_tokens(&mut self) {
        for exp in self.access_tokens.values_mut() {
            *exp = Some(0);
        }
    }

    /// Marks every issued refresh token as used up.
    pub fn revoke_refresh_tokens(&mut self) {
        for rt in self.refresh_tokens.values_mut() {
            rt.used = true;
        }
    }
}

/// An identity-platform error body (`error`, `error_description` with an AADSTS code, …).
fn oauth_error(
    shared: &Shared,
    status: u16,
    error: &str,
    aadsts: u32,
    text: &str,
) -> Response<SimBody> {
    let trace = shared.request_id();
    let corr = shared.request_id();
    let ts = crate::time::format(crate::time::now_secs()).replace('T', " ");
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"),
        "error_codes": [aadsts],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("{}/error?code={aadsts}", shared.auth_base),
    });
    plain_json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &body,
    )
}

/// Entry point for the identity listener.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let endpoint = match parts.as_slice() {
        [_tenant, "oauth2", "v2.0", e] => *e,
        _ => "",
    };
    let kind = match (req.method(), endpoint) {
        (&Method::POST, "token") => RequestKind::Token,
        (&Method::POST, "devicecode") => RequestKind::DeviceCode,
        (&Method::GET, "authorize") => RequestKind::Authorize,
        _ => RequestKind::Other,
    };
    shared.counters.count(kind);
    let latency = shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if kind != RequestKind::Other
        && let Some(f) = shared.pick_failure(kind, false, None)
    {
        return failure_response(&shared, &f);
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    match kind {
        RequestKind::Authorize => authorize(&shared, &query),
        RequestKind::Token | RequestKind::DeviceCode => {
            let Ok(body) = req.into_body().collect().await else {
                return oauth_error(
                    &shared,
                    400,
                    "invalid_request",
                    900_144,
                    "Unreadable request body.",
                );
            };
            let form: HashMap<String, String> = url::form_urlencoded::parse(&body.to_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if !form.contains_key("client_id") {
                return oauth_error(
                    &shared,
                    400,
                    "invalid_request",
                    900_144,
                    "The request body must contain the following parameter: 'client_id'.",
                );
            }
            if kind == RequestKind::DeviceCode {
                device_code(&shared, &form)
            } else {
                let token_url = format!("{}{path}", shared.auth_base);
                token(&shared, &form, &token_url)
            }
        }
        _ => crate::server::graph_error(
            &shared,
            404,
            "notFound",
            "No such endpoint on the identity host",
        ),
    }
}

fn device_code(shared: &Shared, form: &HashMap<String, String>) -> Response<SimBody> {
    let cfg = &shared.config;
    let mut st = shared.auth.lock().expect("auth lock");
    let (n, r) = st.next(shared.secret);
    let code = format!("GAQABAAEAAA.gs{n}.{r:016x}");
    let user_code = format!("GS{:06}", r % 1_000_000);
    let script = st.device_script.clone();
    st.device_codes.insert(
        code.clone(),
        DeviceCode {
            script,
            polls: 0,
            last_poll_ms: None,
            expires_ms: shared.now_ms() + cfg.device_code_expires_in * 1000,
            scope: form.get("scope").cloned().unwrap_or_default(),
            done: false,
        },
    );
    let uri = format!("{}/devicelogin", shared.auth_base);
    plain_json(
        StatusCode::OK,
        &json!({
            "user_code": user_code,
            "device_code": code,
            "verification_uri": uri,
            "expires_in": cfg.device_code_expires_in,
            "interval": cfg.device_code_interval,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }),
    )
}

/// Issues an access token (and a refresh token when `offline_access` was asked for) for the delegated `scope`.
fn issue(shared: &Shared, st: &mut AuthState, scope: &str, refresh: bool) -> Response<SimBody> {
    issue_with(shared, st, scope, refresh, Grant::delegated(scope))
}

fn issue_with(
    shared: &Shared,
    st: &mut AuthState,
    scope: &str,
    refresh: bool,
    grant: Grant,
) -> Response<SimBody> {
    let lifetime = shared.knobs.token_lifetime_ms.load(Ordering::Relaxed);
    let at = st.new_access_token(shared.secret, shared.now_ms(), lifetime, grant);
    let shown: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "offline_access" | "openid" | "profile"))
        .collect();
    let mut v = json!({
        "token_type": "Bearer",
        "scope": shown.join(" "),
        "expires_in": lifetime / 1000,
        "ext_expires_in": lifetime / 1000,
        "access_token": at,
    });
    if refresh {
        v["refresh_token"] = Value::String(st.new_refresh_token(shared.secret, scope));
    }
    plain_json(StatusCode::OK, &v)
}

fn wants_refresh(scope: &str) -> bool {
    scope.split_whitespace().any(|s| s == "offline_access")
}

// The token endpoint's grants side by side (device code, refresh, authorization code, client credentials).
#[allow(clippy::too_many_lines)]
fn token(shared: &Shared, form: &HashMap<String, String>, token_url: &str) -> Response<SimBody> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let now = shared.now_ms();
    let mut st = shared.auth.lock().expect("auth lock");
    match get("grant_type") {
        "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
            let interval_ms = shared.config.device_code_interval * 1000;
            let Some(dc) = st.device_codes.get_mut(get("device_code")) else {
                return oauth_error(
                    shared,
                    400,
                    "bad_verification_code",
                    70_019,
                    "Verification code is invalid.",
                );
            };
            if dc.done {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    54_005,
                    "OAuth2 Authorization code was already redeemed.",
                );
            }
            if now >= dc.expires_ms {
                return oauth_error(
                    shared,
                    400,
                    "expired_token",
                    70_020,
                    "The provided device code has expired.",
                );
            }
            if dc
                .last_poll_ms
                .is_some_and(|last| now + 200 < last + interval_ms)
            {
                shared
                    .counters
                    .polls_too_fast
                    .fetch_add(1, Ordering::Relaxed);
            }
            dc.last_poll_ms = Some(now);
            let k = dc.polls;
            dc.polls += 1;
            let s = dc.script.clone();
            if k < s.slow_down {
                return oauth_error(
                    shared,
                    400,
                    "slow_down",
                    70_016,
                    "Polling too fast; slow down.",
                );
            }
            if k < s.slow_down + s.pending {
                return oauth_error(
                    shared,
                    400,
                    "authorization_pending",
                    70_016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                );
            }
            match s.outcome {
                DeviceOutcome::Decline => oauth_error(
                    shared,
                    400,
                    "authorization_declined",
                    70_000,
                    "The user declined the sign-in request.",
                ),
                DeviceOutcome::Expire => oauth_error(
                    shared,
                    400,
                    "expired_token",
                    70_020,
                    "The provided device code has expired.",
                ),
                DeviceOutcome::Approve => {
                    dc.done = true;
                    let scope = dc.scope.clone();
                    issue(shared, &mut st, &scope, wants_refresh(&scope))
                }
            }
        }
        "refresh_token" => {
            let rt_value = get("refresh_token");
            let Some(rt) = st.refresh_tokens.get_mut(rt_value) else {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    9_002_313,
                    "Invalid request. Request is malformed or invalid.",
                );
            };
            if rt.used {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    700_082,
                    "The refresh token has expired due to inactivity. The token was issued on 2024-01-01T00:00:00Z and was inactive for 90.00:00:00.",
                );
            }
            rt.used = true;
            let scope = form
                .get("scope")
                .cloned()
                .unwrap_or_else(|| rt.scope.clone());
            shared.counters.refreshes.fetch_add(1, Ordering::Relaxed);
            issue(shared, &mut st, &scope, true)
        }
        "authorization_code" => {
            let Some(code) = st.codes.get_mut(get("code")) else {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    70_008,
                    "The provided authorization code or refresh token has expired.",
                );
            };
            if code.used {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    54_005,
                    "OAuth2 Authorization code was already redeemed.",
                );
            }
            if now >= code.expires_ms {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    70_008,
                    "The provided authorization code has expired.",
                );
            }
            if code.redirect_uri != get("redirect_uri") {
                return oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    500_112,
                    "The reply address does not match the reply address provided when requesting the authorization code.",
                );
            }
            if let Some((challenge, method)) = &code.challenge {
                let verifier = get("code_verifier");
                let derived = if method.eq_ignore_ascii_case("plain") {
                    verifier.to_owned()
                } else {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(verifier.as_bytes()))
                };
                if verifier.is_empty() || derived != *challenge {
                    return oauth_error(
                        shared,
                        400,
                        "invalid_grant",
                        501_481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    );
                }
            }
            code.used = true;
            let scope = code.scope.clone();
            issue(shared, &mut st, &scope, wants_refresh(&scope))
        }
        // App-only: the app's consented permissions are the roles. With no app registered, any credentials
        // pass and the handle's token scopes stand for the roles (older tests); with one, the secret or the
        // signed assertion is checked as `apps.rs` describes.
        "client_credentials" => {
            if !get("scope").ends_with("/.default") {
                return oauth_error(
                    shared,
                    400,
                    "invalid_scope",
                    1_002_012,
                    &format!(
                        "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                        get("scope")
                    ),
                );
            }
            let client_id = get("client_id");
            let roles = if st.apps.any() {
                let now = crate::time::now_secs();
                match st.apps.authenticate(client_id, form, token_url, now) {
                    Ok(roles) => roles,
                    Err((status, error, aadsts, text)) => {
                        return oauth_error(shared, status, error, aadsts, &text);
                    }
                }
            } else {
                shared
                    .knobs
                    .default_grant
                    .lock()
                    .expect("grant")
                    .scopes
                    .clone()
            };
            let grant = Grant {
                scopes: roles,
                app_only: true,
                app: Some(client_id.to_owned()),
            };
            shared.counters.app_tokens.fetch_add(1, Ordering::Relaxed);
            issue_with(shared, &mut st, get("scope"), false, grant)
        }
        other => oauth_error(
            shared,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

fn authorize(shared: &Shared, q: &HashMap<String, String>) -> Response<SimBody> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id").is_empty() {
        return oauth_error(
            shared,
            400,
            "invalid_request",
            900_144,
            "The request must contain the parameter 'client_id'.",
        );
    }
    let Ok(mut target) = url::Url::parse(get("redirect_uri")) else {
        return oauth_error(
            shared,
            400,
            "invalid_request",
            50_011,
            "The redirect URI is missing or malformed.",
        );
    };
    let loopback = matches!(target.host_str(), Some("localhost" | "127.0.0.1"));
    if target.scheme() != "http" || !loopback {
        return oauth_error(
            shared,
            400,
            "invalid_request",
            50_011,
            "The redirect URI does not match the redirect URIs configured for the application.",
        );
    }
    if get("response_type") != "code" {
        return oauth_error(
            shared,
            400,
            "unsupported_response_type",
            70_005,
            "response_type must be 'code'.",
        );
    }
    let mut st = shared.auth.lock().expect("auth lock");
    {
        let mut pairs = target.query_pairs_mut();
        match st.authorize_outcome {
            AuthorizeOutcome::Approve => {
                let (n, r) = st.next(shared.secret);
                let code = format!("M.C5.code.gs{n}.{r:016x}");
                let challenge = (!get("code_challenge").is_empty()).then(|| {
                    let m = if get("code_challenge_method").is_empty() {
                        "plain"
                    } else {
                        get("code_challenge_method")
                    };
                    (get("code_challenge").to_owned(), m.to_owned())
                });
                st.codes.insert(
                    code.clone(),
                    AuthCode {
                        redirect_uri: get("redirect_uri").to_owned(),
                        challenge,
                        scope: get("scope").to_owned(),
                        expires_ms: shared.now_ms() + 600_000,
                        used: false,
                    },
                );
                pairs.append_pair("code", &code);
            }
            AuthorizeOutcome::Deny => {
                pairs.append_pair("error", "access_denied");
                pairs.append_pair(
                    "error_description",
                    "AADSTS65004: User declined to consent to access the app.",
                );
            }
        }
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
    }
    let mut r = crate::server::empty(StatusCode::FOUND);
    set_header(&mut r, "location", target.as_str());
    r
}
