//! The two interactive sign-in flows of the Microsoft identity platform (v2 endpoints), as a public client:
//! the device authorization grant (RFC 8628, for SSH sessions and headless machines) and the authorization
//! code grant with PKCE (RFC 7636) and a loopback redirect on 127.0.0.1 (for a desktop with a browser).
//! Both end in a [`TokenResponse`]; `refresh.rs` reuses the token-endpoint call here to renew it.
//!
//! This module talks HTTP to the sign-in service only. It never prints, never opens a browser and knows
//! nothing of argument parsing, the config file or the token files: the command line shows
//! [`DeviceAuthorization::message`] or [`BrowserLogin::authorize_url`], and decides where the tokens go.
//! Secrets (the device code, the authorization code, the PKCE verifier, access and refresh tokens) live in
//! types whose `Debug` shows `***`, and every error message is built without them.
//!
//! See <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code> and
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::AccessToken;

/// The global cloud's sign-in host; national clouds have their own
/// (<https://learn.microsoft.com/en-us/graph/deployments>).
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";
/// Personal and work/school accounts alike.
pub const DEFAULT_TENANT: &str = "common";
/// Read-only by default: every file the user can see, a refresh token, and `/me` for `whoami`.
pub const DEFAULT_SCOPES: [&str; 3] = ["Files.Read.All", "offline_access", "User.Read"];
/// How long [`BrowserLogin::finish`] waits for the browser to come back unless told otherwise.
pub const DEFAULT_BROWSER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One request to the sign-in service may take this long before it counts as a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 8628 §3.5: the poll interval when the service names none, and the step added on `slow_down`.
const RFC8628_INTERVAL: Duration = Duration::from_secs(5);
/// Network blips in a row that device-code polling rides out before giving up.
const MAX_POLL_TRANSIENT_FAILURES: u32 = 5;
/// The loopback listener reads at most this much of a request: the request line and headers only.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// A browser connection that sends nothing for this long is dropped (and the listener keeps waiting).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Service error descriptions are cut to this many characters (they end in trace IDs and timestamps).
const MAX_DESCRIPTION_CHARS: usize = 300;

/// Where and as whom to sign in: the resolved form of the `auth_url`, `tenant`, `client_id` and `scopes`
/// settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The sign-in host, e.g. [`DEFAULT_LOGIN_BASE_URL`] or `https://login.microsoftonline.us`.
    pub login_base_url: String,
    /// `common`, `consumers` (personal accounts only), `organizations` (work/school only), or a tenant ID
    /// or domain.
    pub tenant: String,
    /// The application (client) ID of the public client app the user registered.
    pub client_id: String,
    /// Delegated scopes; keep `offline_access` or there is no refresh token.
    pub scopes: Vec<String>,
}

impl AuthSettings {
    /// Settings for the global cloud, tenant `common` and the default read-only scopes.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            login_base_url: DEFAULT_LOGIN_BASE_URL.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            client_id: client_id.into(),
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The URL of one identity-platform endpoint: `{login_base_url}/{tenant}/oauth2/v2.0/{endpoint}`.
    pub fn endpoint_url(&self, endpoint: Endpoint) -> String {
        format!(
            "{}/{}/oauth2/v2.0/{}",
            self.login_base_url.trim_end_matches('/'),
            self.tenant,
            endpoint.path()
        )
    }

    /// The `scope` parameter: the scopes, space-separated.
    pub fn scope_param(&self) -> String {
        self.scopes.join(" ")
    }

    /// Catch settings the service would reject with a puzzling message.
    fn check(&self) -> Result<(), SignInError> {
        let problem = if self.client_id.trim().is_empty() {
            "client_id is empty: register a public client app (see the README's sign-in section) and set \
             `client_id` in the config file"
        } else if self.tenant.is_empty() || self.tenant.contains(['/', '?', '#', ' ']) {
            "tenant must be `common`, `consumers`, `organizations`, or a tenant ID or domain"
        } else if crate::endpoint::check_credential_url("auth_url", &self.login_base_url).is_err() {
            "the sign-in URL (`auth_url`) must be an https URL such as https://login.microsoftonline.com \
             (plain http only for a loopback host: 127.0.0.1, ::1 or localhost)"
        } else if self.scopes.is_empty() {
            "no scopes configured: use the default `Files.Read.All offline_access User.Read`"
        } else {
            return Ok(());
        };
        Err(SignInError::Settings { problem })
    }
}

/// An endpoint of the identity platform; names the endpoint in errors without a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `…/oauth2/v2.0/devicecode`: starts the device authorization grant.
    DeviceCode,
    /// `…/oauth2/v2.0/token`: redeems codes and refresh tokens.
    Token,
    /// `…/oauth2/v2.0/authorize`: where the browser signs in.
    Authorize,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::DeviceCode => "devicecode",
            Endpoint::Token => "token",
            Endpoint::Authorize => "authorize",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} endpoint", self.path())
    }
}

/// A refresh token: lives for up to 90 days, so it is as secret as a password. `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// Wrap a refresh token read from the service or the token file.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself, for the token request and the token file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// A secret that only this module handles (device code, PKCE verifier); `Debug` shows `***`.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What the token endpoint hands back after a successful sign-in or refresh.
#[derive(Debug)]
pub struct TokenResponse {
    /// The bearer token for Graph (about an hour).
    pub access_token: AccessToken,
    /// Present when `offline_access` was granted; replaces the previous one on every refresh.
    pub refresh_token: Option<RefreshToken>,
    /// The access token's lifetime, counted from when the response arrived.
    pub expires_in: Duration,
    /// The scopes actually granted, space-separated.
    pub scope: String,
}

/// Why a sign-in or a token refresh failed. Messages never contain a token, code or verifier.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The settings can't work; nothing was sent.
    #[error("sign-in settings: {problem}")]
    Settings {
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
    /// The sign-in service could not be reached or did not answer in time.
    #[error(
        "could not reach the sign-in service ({endpoint} at {url}); check the network and the `auth_url` setting"
    )]
    Network {
        /// Which endpoint.
        endpoint: Endpoint,
        /// The endpoint's URL (contains no secret).
        url: String,
        /// What went wrong; its text carries no URL.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an OAuth error (or a non-JSON failure page).
    #[error(
        "the sign-in service refused the request at its {endpoint} (HTTP {status}, {code}): {description}"
    )]
    Service {
        /// Which endpoint.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, e.g. `invalid_scope`, or `HTTP 502` when the body was not OAuth JSON.
        code: String,
        /// The first line of `error_description` (starts with the `AADSTSnnnnn` code), secrets removed.
        description: String,
    },
    /// The service answered 2xx with a body that isn't what the protocol promises.
    #[error("the sign-in service's {endpoint} sent an unexpected answer (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// Which endpoint.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// What was wrong with it (never the body itself: it may hold tokens).
        detail: String,
    },
    /// Device code flow: nobody finished signing in before the code ran out.
    #[error("the code expired before sign-in finished; run `odbackup login` again")]
    Expired,
    /// Device code flow or browser: the user (or their admin) said no.
    #[error("sign-in was declined; run `odbackup login` again to retry")]
    Declined,
    /// Device code flow: the service didn't recognise the device code it issued.
    #[error(
        "the sign-in service did not recognise the device code (bad_verification_code); run `odbackup login` again, and report it if it keeps happening"
    )]
    BadVerificationCode,
    /// Browser flow: could not listen on the loopback interface for the redirect.
    #[error(
        "could not listen on 127.0.0.1 for the browser's redirect; use `odbackup login` (device code) instead"
    )]
    Listener {
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Browser flow: the browser did not come back in time.
    #[error("the browser did not return to odbackup within {} seconds; run `odbackup login --browser` again, or `odbackup login` on a machine without a browser", .waited.as_secs())]
    BrowserTimeout {
        /// How long we waited.
        waited: Duration,
    },
    /// Browser flow: the redirect's `state` was not the one we sent, so it is not the answer to our request.
    #[error(
        "the browser's redirect did not carry the state odbackup sent (a stale or forged request); run `odbackup login --browser` again"
    )]
    StateMismatch,
    /// Browser flow: the redirect carried an OAuth error other than `access_denied`.
    #[error(
        "sign-in failed in the browser ({code}): {description}; run `odbackup login --browser` again"
    )]
    Redirect {
        /// The OAuth `error` code from the redirect.
        code: String,
        /// Its `error_description`, cut short.
        description: String,
    },
    /// Refresh: the service no longer accepts the refresh token (expired after 90 days idle, revoked,
    /// password changed, consent withdrawn). Only a new interactive sign-in helps.
    #[error(
        "sign-in expired or was revoked ({code}: {description}); run `odbackup login`, then re-run the same command"
    )]
    Refused {
        /// The OAuth `error` code, e.g. `invalid_grant`.
        code: String,
        /// The `AADSTSnnnnn` description, e.g. AADSTS700082 for 90 days of inactivity.
        description: String,
    },
    /// Refresh: the access token ran out and there is no refresh token to renew it with.
    #[error(
        "the stored sign-in can't be renewed: it has no refresh token (is `offline_access` in the scopes?); run `odbackup login`, then re-run the same command"
    )]
    NoRefreshToken,
}

impl SignInError {
    /// True when only a new interactive sign-in helps (`odbackup login`); the command line exits with 3.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            SignInError::Refused { .. } | SignInError::NoRefreshToken
        )
    }

    /// True when trying the same request again later may succeed: network failures, 5xx, 429,
    /// `temporarily_unavailable`.
    pub fn is_transient(&self) -> bool {
        match self {
            SignInError::Network { .. } => true,
            SignInError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || code == "temporarily_unavailable"
                    || code == "server_error"
            }
            _ => false,
        }
    }

    /// The OAuth `error` code the service answered with, if it answered with one.
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            SignInError::Service { code, .. }
            | SignInError::Redirect { code, .. }
            | SignInError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Device authorization grant

/// A started device code sign-in: show [`message`](Self::message) (or the URL and code) to the user, then
/// call [`poll_device_code`]. `Debug` hides the device code.
#[derive(Debug)]
pub struct DeviceAuthorization {
    /// The short code the user types on the verification page.
    pub user_code: String,
    /// The page where the user types it (print it as given; it differs between clouds and account types).
    pub verification_uri: String,
    /// A ready-made instruction for the user, naming the URL and the code.
    pub message: String,
    /// How long the code stays valid (about 15 minutes).
    pub expires_in: Duration,
    /// How long to wait between polls, as the service asked.
    pub interval: Duration,
    device_code: Secret,
    expires_at: Instant,
}

/// How fast [`poll_device_code_paced`] polls. `Default` follows the service's interval and RFC 8628.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPacing {
    /// Poll at this interval instead of the one the service asked for. For tests against a simulator:
    /// polling the real service faster than asked only earns `slow_down`.
    pub interval_override: Option<Duration>,
    /// Added to the interval each time the service answers `slow_down` (RFC 8628 §3.5: 5 seconds).
    pub slow_down_step: Duration,
}

impl Default for PollPacing {
    fn default() -> Self {
        Self {
            interval_override: None,
            slow_down_step: RFC8628_INTERVAL,
        }
    }
}

/// The device code endpoint's answer, as sent.
#[derive(Deserialize)]
struct RawDeviceAuthorization {
    device_code: String,
    user_code: String,
    // The v1 endpoint spelled it `verification_url`; accept both.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
    #[serde(default, deserialize_with = "opt_seconds")]
    interval: Option<u64>,
}

/// Start the device authorization grant: `POST {tenant}/oauth2/v2.0/devicecode` with the client ID and
/// scopes. The caller shows the result to the user, then calls [`poll_device_code`].
///
/// See <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code#device-authorization-request>.
pub async fn start_device_code(
    http: &reqwest::Client,
    settings: &AuthSettings,
) -> Result<DeviceAuthorization, SignInError> {
    settings.check()?;
    let scope = settings.scope_param();
    let form = [
        ("client_id", settings.client_id.as_str()),
        ("scope", scope.as_str()),
    ];
    let (status, body) = post_form(http, settings, Endpoint::DeviceCode, &form, &[]).await?;
    let raw: RawDeviceAuthorization =
        serde_json::from_slice(&body).map_err(|e| SignInError::UnexpectedResponse {
            endpoint: Endpoint::DeviceCode,
            status,
            detail: describe_json_error(&e),
        })?;
    let message = raw.message.unwrap_or_else(|| {
        format!(
            "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
            raw.verification_uri, raw.user_code
        )
    });
    let expires_in = Duration::from_secs(raw.expires_in);
    Ok(DeviceAuthorization {
        user_code: raw.user_code,
        verification_uri: raw.verification_uri,
        message,
        expires_in,
        interval: raw.interval.map_or(RFC8628_INTERVAL, Duration::from_secs),
        device_code: Secret(raw.device_code),
        expires_at: Instant::now() + expires_in,
    })
}

/// Wait for the user to finish signing in: poll the token endpoint at the service's interval until it
/// hands out tokens, the user declines, or the code expires.
///
/// # Errors
/// [`SignInError::Expired`], [`SignInError::Declined`], [`SignInError::BadVerificationCode`], or whatever
/// else the service answered. Up to five network failures in a row are ridden out.
pub async fn poll_device_code(
    http: &reqwest::Client,
    settings: &AuthSettings,
    authorization: &DeviceAuthorization,
) -> Result<TokenResponse, SignInError> {
    poll_device_code_paced(http, settings, authorization, PollPacing::default()).await
}

/// [`poll_device_code`] with explicit pacing (tests shrink the interval).
pub async fn poll_device_code_paced(
    http: &reqwest::Client,
    settings: &AuthSettings,
    authorization: &DeviceAuthorization,
    pacing: PollPacing,
) -> Result<TokenResponse, SignInError> {
    let mut interval = pacing.interval_override.unwrap_or(authorization.interval);
    let device_code = authorization.device_code.0.as_str();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", settings.client_id.as_str()),
        ("device_code", device_code),
    ];
    let mut transient_failures = 0;
    loop {
        // Wait first: nobody has typed the code yet when we start.
        tokio::time::sleep(interval).await;
        if Instant::now() >= authorization.expires_at {
            return Err(SignInError::Expired);
        }
        let err = match request_tokens(http, settings, &form, &[device_code]).await {
            Ok(tokens) => return Ok(tokens),
            Err(err) => err,
        };
        match poll_step(&err) {
            PollStep::KeepPolling => transient_failures = 0,
            PollStep::SlowDown => {
                transient_failures = 0;
                interval += pacing.slow_down_step;
            }
            PollStep::Retry if transient_failures < MAX_POLL_TRANSIENT_FAILURES => {
                transient_failures += 1;
                tracing::debug!(error = %err, "device code poll failed; polling again");
            }
            PollStep::Retry => return Err(err),
            PollStep::Stop(outcome) => return Err(outcome.unwrap_or(err)),
        }
    }
}

/// What one failed poll of the device code grant means.
#[derive(Debug)]
enum PollStep {
    /// `authorization_pending`: the user hasn't finished yet.
    KeepPolling,
    /// `slow_down`: poll less often.
    SlowDown,
    /// A network failure or 5xx: try again at the same pace.
    Retry,
    /// Give up, with this error instead of the raw one when it has a clearer message.
    Stop(Option<SignInError>),
}

fn poll_step(err: &SignInError) -> PollStep {
    if err.is_transient() {
        return PollStep::Retry;
    }
    match err.oauth_code() {
        Some("authorization_pending") => PollStep::KeepPolling,
        Some("slow_down") => PollStep::SlowDown,
        Some("expired_token" | "code_expired") => PollStep::Stop(Some(SignInError::Expired)),
        Some("authorization_declined" | "access_denied") => {
            PollStep::Stop(Some(SignInError::Declined))
        }
        Some("bad_verification_code") => PollStep::Stop(Some(SignInError::BadVerificationCode)),
        _ => PollStep::Stop(None),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Authorization code + PKCE with a loopback redirect

/// A started browser sign-in: a listener on a random loopback port and the authorize URL that leads back
/// to it. Print [`authorize_url`](Self::authorize_url) (and open it if you can), then call
/// [`finish`](Self::finish). `Debug` hides the PKCE verifier.
#[derive(Debug)]
pub struct BrowserLogin {
    settings: AuthSettings,
    /// 127.0.0.1 on a random port.
    v4: TcpListener,
    /// `[::1]` on the same port when it is free: browsers may try `localhost` over IPv6 first.
    v6: Option<TcpListener>,
    redirect_uri: String,
    authorize_url: String,
    state: Secret,
    verifier: Secret,
    timeout: Duration,
}

/// What one request on the loopback listener turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    /// The sign-in's answer: an authorization code.
    Code(String),
    /// The sign-in's answer: an OAuth error.
    Error { code: String, description: String },
    /// Something carrying a `code` or `error` but not our `state`.
    StateMismatch,
    /// Anything else (favicon, a reload, a probe): answer 404 and keep waiting.
    Other,
}

impl BrowserLogin {
    /// Listen on `127.0.0.1:0` and build the authorize URL with a fresh `state` and PKCE verifier.
    ///
    /// The redirect URI is `http://localhost:{port}`: the identity platform ignores the port when it
    /// matches loopback redirect URIs, so the app registration lists `http://localhost` once and any free
    /// port works (<https://learn.microsoft.com/en-us/entra/identity-platform/reply-url#localhost-exceptions>).
    /// `localhost` rather than `127.0.0.1` because that is the URI the portal accepts for desktop apps
    /// without editing the manifest.
    pub async fn start(settings: &AuthSettings) -> Result<Self, SignInError> {
        settings.check()?;
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|source| SignInError::Listener { source })?;
        let port = v4
            .local_addr()
            .map_err(|source| SignInError::Listener { source })?
            .port();
        let v6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .await
            .ok();
        let redirect_uri = format!("http://localhost:{port}");
        let state = random_token(16);
        let verifier = random_token(32);
        let scope = settings.scope_param();
        let authorize_url = url::Url::parse_with_params(
            &settings.endpoint_url(Endpoint::Authorize),
            &[
                ("client_id", settings.client_id.as_str()),
                ("response_type", "code"),
                ("redirect_uri", redirect_uri.as_str()),
                ("response_mode", "query"),
                ("scope", scope.as_str()),
                ("state", state.as_str()),
                ("code_challenge", code_challenge(&verifier).as_str()),
                ("code_challenge_method", "S256"),
                // Let a user with several accounts pick one instead of being signed in silently.
                ("prompt", "select_account"),
            ],
        )
        .map_err(|_| SignInError::Settings {
            problem: "the sign-in URL (`auth_url`) is not a valid URL",
        })?
        .to_string();
        Ok(Self {
            settings: settings.clone(),
            v4,
            v6,
            redirect_uri,
            authorize_url,
            state: Secret(state),
            verifier: Secret(verifier),
            timeout: DEFAULT_BROWSER_TIMEOUT,
        })
    }

    /// The URL to open in a browser. Safe to print: it carries the PKCE challenge, never the verifier.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// The redirect URI the service sends the browser back to, `http://localhost:{port}`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Wait this long for the browser instead of [`DEFAULT_BROWSER_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Wait for the browser's redirect, check its `state`, redeem the code (with the PKCE verifier) at the
    /// token endpoint, and tell the browser how it went.
    ///
    /// Requests for other paths (`/favicon.ico`) or without a code get a 404 and the wait goes on.
    ///
    /// # Errors
    /// [`SignInError::BrowserTimeout`], [`SignInError::StateMismatch`], [`SignInError::Declined`] (the user
    /// cancelled), [`SignInError::Redirect`], or the token endpoint's error.
    pub async fn finish(self, http: &reqwest::Client) -> Result<TokenResponse, SignInError> {
        let deadline = Instant::now() + self.timeout;
        // Each connection is read on its own task: a browser's speculative preconnect that never sends a
        // request must not hold up the real redirect behind it.
        let (requests, mut arrived) = tokio::sync::mpsc::channel::<(TcpStream, String)>(8);
        loop {
            let (mut stream, target) = tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SignInError::BrowserTimeout { waited: self.timeout });
                }
                accepted = self.accept() => {
                    let mut stream = accepted.map_err(|source| SignInError::Listener { source })?;
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        let read = tokio::time::timeout(
                            REQUEST_READ_TIMEOUT,
                            read_request_target(&mut stream),
                        );
                        if let Ok(Some(target)) = read.await {
                            let _ = requests.send((stream, target)).await;
                        }
                    });
                    continue;
                }
                Some(request) = arrived.recv() => request,
            };
            let result = match parse_redirect(&target, &self.state.0) {
                Redirect::Other => {
                    respond(&mut stream, "404 Not Found", PAGE_NOT_HERE).await;
                    continue;
                }
                Redirect::StateMismatch => Err(SignInError::StateMismatch),
                Redirect::Error { code, .. } if code == "access_denied" => {
                    Err(SignInError::Declined)
                }
                Redirect::Error { code, description } => {
                    Err(SignInError::Redirect { code, description })
                }
                Redirect::Code(code) => self.redeem(http, &code).await,
            };
            let page = if result.is_ok() {
                ("200 OK", PAGE_SIGNED_IN)
            } else {
                ("400 Bad Request", PAGE_FAILED)
            };
            respond(&mut stream, page.0, page.1).await;
            return result;
        }
    }

    async fn accept(&self) -> std::io::Result<TcpStream> {
        let (stream, _) = match &self.v6 {
            Some(v6) => tokio::select! {
                r = self.v4.accept() => r?,
                r = v6.accept() => r?,
            },
            None => self.v4.accept().await?,
        };
        Ok(stream)
    }

    /// `POST /token` with `grant_type=authorization_code`; a public client sends no secret.
    async fn redeem(
        &self,
        http: &reqwest::Client,
        code: &str,
    ) -> Result<TokenResponse, SignInError> {
        let scope = self.settings.scope_param();
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", self.settings.client_id.as_str()),
            ("code", code),
            // Must be byte-for-byte the one in the authorize request.
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", self.verifier.0.as_str()),
            ("scope", scope.as_str()),
        ];
        request_tokens(http, &self.settings, &form, &[code, &self.verifier.0]).await
    }
}

const PAGE_SIGNED_IN: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Signed in; you can close this window and return to the terminal.</p>";
const PAGE_FAILED: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Sign-in did not complete. The terminal says why; you can close this window.</p>";
const PAGE_NOT_HERE: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Not found. odbackup is waiting for the sign-in page to send you back.</p>";

/// A random URL-safe string from `bytes` random bytes (32 bytes make a 43-character PKCE verifier, the
/// length RFC 7636 §4.1 recommends).
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buf)
}

/// The PKCE S256 challenge: base64url without padding of SHA-256 of the verifier (RFC 7636 §4.2).
fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Read a request's head (up to the blank line, so the browser isn't cut off mid-send) and return the
/// request target of a `GET`. `None` for anything unreadable.
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            break;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_owned())
}

/// Decide what a request target on the loopback listener is. Pure, so the cases are table-tested.
fn parse_redirect(target: &str, expected_state: &str) -> Redirect {
    // Browsers send origin-form (`/?code=…`); tolerate absolute-form too.
    let origin_form = target
        .strip_prefix("http://")
        .map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let (path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    if path != "/" {
        return Redirect::Other;
    }
    let (mut code, mut error, mut description, mut state) = (None, None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "code" => code = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            _ => {}
        }
    }
    if code.is_none() && error.is_none() {
        return Redirect::Other;
    }
    if state.as_deref() != Some(expected_state) {
        return Redirect::StateMismatch;
    }
    match (code, error) {
        (_, Some(code)) => Redirect::Error {
            code,
            description: clean_description(description.as_deref().unwrap_or(""), &[]),
        },
        (Some(code), None) => Redirect::Code(code),
        (None, None) => Redirect::Other,
    }
}

/// Answer the browser and close the connection. Failures are ignored: the browser may be gone already,
/// and the terminal is where the outcome is reported.
async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------
// The token endpoint

/// The token endpoint's success body, as sent.
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
    #[serde(default)]
    scope: String,
}

/// The error body every identity-platform endpoint uses.
#[derive(Deserialize)]
struct RawOAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// `POST` a form to the token endpoint and read a token response. `secrets` are the form's secret values:
/// they are cut out of any error description before it becomes part of an error.
pub(super) async fn request_tokens(
    http: &reqwest::Client,
    settings: &AuthSettings,
    form: &[(&str, &str)],
    secrets: &[&str],
) -> Result<TokenResponse, SignInError> {
    let (status, body) = post_form(http, settings, Endpoint::Token, form, secrets).await?;
    let raw: RawTokenResponse =
        serde_json::from_slice(&body).map_err(|e| SignInError::UnexpectedResponse {
            endpoint: Endpoint::Token,
            status,
            detail: describe_json_error(&e),
        })?;
    Ok(TokenResponse {
        access_token: AccessToken::new(raw.access_token),
        refresh_token: raw.refresh_token.map(RefreshToken::new),
        expires_in: Duration::from_secs(raw.expires_in),
        scope: raw.scope,
    })
}

/// `POST` a form to an endpoint; a 2xx answer's status and body, or the OAuth error it carried.
async fn post_form(
    http: &reqwest::Client,
    settings: &AuthSettings,
    endpoint: Endpoint,
    form: &[(&str, &str)],
    secrets: &[&str],
) -> Result<(u16, Vec<u8>), SignInError> {
    let url = settings.endpoint_url(endpoint);
    let network = |source: reqwest::Error| SignInError::Network {
        endpoint,
        url: url.clone(),
        source: source.without_url(),
    };
    let response = http
        .post(&url)
        .form(form)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(network)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(network)?.to_vec();
    if (200..300).contains(&status) {
        return Ok((status, body));
    }
    Err(match serde_json::from_slice::<RawOAuthError>(&body) {
        Ok(raw) => SignInError::Service {
            endpoint,
            status,
            code: raw.error,
            description: clean_description(&raw.error_description, secrets),
        },
        Err(_) => SignInError::Service {
            endpoint,
            status,
            code: format!("HTTP {status}"),
            description: "the answer was not an OAuth error".to_owned(),
        },
    })
}

/// The useful part of an `error_description`: its first line (the rest is trace and correlation IDs and
/// a timestamp), cut short, with any secret we sent replaced by `***`.
fn clean_description(description: &str, secrets: &[&str]) -> String {
    let first = description
        .split(['\r', '\n'])
        .next()
        .unwrap_or("")
        .split(" Trace ID:")
        .next()
        .unwrap_or("")
        .trim();
    let mut cleaned = first.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        cleaned = cleaned.replace(secret, "***");
    }
    if cleaned.chars().count() > MAX_DESCRIPTION_CHARS {
        cleaned = cleaned
            .chars()
            .take(MAX_DESCRIPTION_CHARS)
            .collect::<String>()
            + "…";
    }
    cleaned
}

/// Describe a JSON error without quoting the body: serde's "invalid type" messages repeat the value,
/// which may be a token.
fn describe_json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.starts_with("missing field") {
        text
    } else {
        format!(
            "malformed JSON or a field of the wrong type near line {} column {}",
            err.line(),
            err.column()
        )
    }
}

/// Seconds as a JSON number, or as a string of digits (older endpoints quoted them).
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(u64),
        Str(String),
    }
    match NumOrString::deserialize(d)? {
        NumOrString::Num(n) => Ok(n),
        NumOrString::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("expected a number of seconds")),
    }
}

fn opt_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    seconds(d).map(Some)
}

#[cfg(test)]
pub(super) mod test_support {
    //! A tiny HTTP/1.1 server for the auth tests: binds 127.0.0.1:0, hands each request (method, path,
    //! form fields) to a handler, answers its canned status and JSON, and closes the connection.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub path: String,
        pub form: HashMap<String, String>,
    }

    type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

    /// A running server; it stops when the test's runtime ends.
    pub struct TestServer {
        pub base_url: String,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        pub async fn start(
            handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base_url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Handler> = Arc::new(handler);
            let log = Arc::clone(&seen);
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let handler = Arc::clone(&handler);
                    let log = Arc::clone(&log);
                    tokio::spawn(async move {
                        let Some(request) = read_request(&mut stream).await else {
                            return;
                        };
                        log.lock().unwrap().push(request.clone());
                        let (status, body) = handler(&request);
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
            Self { base_url, seen }
        }

        /// How many requests reached `path` (e.g. `/common/oauth2/v2.0/token`).
        pub fn count(&self, path: &str) -> usize {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.path == path)
                .count()
        }

        /// The requests so far.
        pub fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
        }
        let path = head.split(' ').nth(1)?.to_owned();
        let form = url::form_urlencoded::parse(&data[head_end..head_end + length])
            .into_owned()
            .collect();
        Some(Seen { path, form })
    }

    /// A token endpoint success body.
    pub fn token_json(access: &str, refresh: &str, expires_in: u64) -> String {
        format!(
            r#"{{"token_type":"Bearer","scope":"Files.Read.All User.Read","expires_in":{expires_in},"access_token":"{access}","refresh_token":"{refresh}"}}"#
        )
    }

    /// An OAuth error body the way the identity platform writes it.
    pub fn oauth_error(error: &str, aadsts: &str) -> String {
        format!(
            r#"{{"error":"{error}","error_description":"{aadsts}: something happened.\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2024-01-01 00:00:00Z","error_codes":[70016]}}"#
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::test_support::{TestServer, oauth_error, token_json};
    use super::*;

    const TOKEN_PATH: &str = "/common/oauth2/v2.0/token";
    const DEVICE_PATH: &str = "/common/oauth2/v2.0/devicecode";

    fn settings(server: &TestServer) -> AuthSettings {
        AuthSettings {
            login_base_url: server.base_url.clone(),
            ..AuthSettings::new("client-123")
        }
    }

    fn fast() -> PollPacing {
        PollPacing {
            interval_override: Some(Duration::from_millis(5)),
            slow_down_step: Duration::from_millis(5),
        }
    }

    /// A device code server whose token endpoint answers the scripted errors in order, then tokens.
    async fn device_server(script: &'static [&'static str]) -> TestServer {
        let polls = Arc::new(AtomicUsize::new(0));
        TestServer::start(move |req| match req.path.as_str() {
            DEVICE_PATH => (
                200,
                r#"{"device_code":"DEVICE-SECRET-1","user_code":"ABCD-EFGH","verification_uri":"https://www.microsoft.com/link","expires_in":900,"interval":5,"message":"Go to https://www.microsoft.com/link and enter ABCD-EFGH"}"#.to_owned(),
            ),
            TOKEN_PATH => match script.get(polls.fetch_add(1, Ordering::SeqCst)) {
                Some(error) => (400, oauth_error(error, "AADSTS70016")),
                None => (200, token_json("AT-1", "RT-1", 3599)),
            },
            _ => (404, String::new()),
        })
        .await
    }

    #[test]
    fn endpoints_follow_the_v2_authority_layout() {
        let mut s = AuthSettings::new("id");
        s.login_base_url = "https://login.microsoftonline.us/".into();
        s.tenant = "organizations".into();
        assert_eq!(
            s.endpoint_url(Endpoint::Token),
            "https://login.microsoftonline.us/organizations/oauth2/v2.0/token"
        );
        assert_eq!(
            AuthSettings::new("id").endpoint_url(Endpoint::DeviceCode),
            "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
        );
        assert_eq!(
            AuthSettings::new("id").scope_param(),
            "Files.Read.All offline_access User.Read"
        );
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_token(32);
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(verifier, random_token(32));
    }

    #[test]
    fn redirect_targets_are_classified() {
        let cases: &[(&str, Redirect)] = &[
            ("/?code=abc&state=S1", Redirect::Code("abc".into())),
            (
                "http://localhost:1234/?state=S1&code=a%2Fb",
                Redirect::Code("a/b".into()),
            ),
            ("/?code=abc&state=other", Redirect::StateMismatch),
            ("/?code=abc", Redirect::StateMismatch),
            (
                "/?error=access_denied&error_description=AADSTS65004%3A+User+declined.%0D%0ATrace+ID%3A+x&state=S1",
                Redirect::Error {
                    code: "access_denied".into(),
                    description: "AADSTS65004: User declined.".into(),
                },
            ),
            ("/favicon.ico", Redirect::Other),
            ("/", Redirect::Other),
            ("/?foo=bar", Redirect::Other),
            ("/cb?code=abc&state=S1", Redirect::Other),
        ];
        for (target, expected) in cases {
            assert_eq!(&parse_redirect(target, "S1"), expected, "{target}");
        }
    }

    #[test]
    fn descriptions_lose_trace_ids_and_secrets() {
        let d = "AADSTS70000: The code SECRETCODE is bad.\r\nTrace ID: 1\r\nCorrelation ID: 2";
        assert_eq!(
            clean_description(d, &["SECRETCODE"]),
            "AADSTS70000: The code *** is bad."
        );
        let long = "x".repeat(1000);
        assert_eq!(
            clean_description(&long, &[]).chars().count(),
            MAX_DESCRIPTION_CHARS + 1
        );
    }

    #[test]
    fn json_errors_do_not_quote_values() {
        let err = serde_json::from_str::<RawTokenResponse>(r#"{"access_token":42,"expires_in":1}"#)
            .err()
            .unwrap();
        assert!(!describe_json_error(&err).contains("42"));
        let err = serde_json::from_str::<RawTokenResponse>(r#"{"expires_in":1}"#)
            .err()
            .unwrap();
        assert_eq!(
            describe_json_error(&err),
            "missing field `access_token` at line 1 column 16"
        );
    }

    #[test]
    fn empty_client_id_is_caught_before_any_request() {
        let err = AuthSettings::new("  ").check().unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
    }

    #[tokio::test]
    async fn device_code_polls_through_pending_and_slow_down_to_tokens() {
        let server = device_server(&[
            "authorization_pending",
            "slow_down",
            "authorization_pending",
        ])
        .await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let auth = start_device_code(&http, &s).await.unwrap();
        assert_eq!(auth.user_code, "ABCD-EFGH");
        assert_eq!(auth.verification_uri, "https://www.microsoft.com/link");
        assert_eq!(auth.interval, Duration::from_secs(5));
        assert!(!format!("{auth:?}").contains("DEVICE-SECRET-1"));

        let tokens = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap();
        assert_eq!(tokens.access_token.expose(), "AT-1");
        assert_eq!(tokens.refresh_token.as_ref().unwrap().expose(), "RT-1");
        assert_eq!(tokens.expires_in, Duration::from_secs(3599));
        let debug = format!("{tokens:?}");
        assert!(
            !debug.contains("AT-1") && !debug.contains("RT-1"),
            "{debug}"
        );

        assert_eq!(server.count(TOKEN_PATH), 4);
        let polls = server.requests();
        let poll = polls.iter().find(|r| r.path == TOKEN_PATH).unwrap();
        assert_eq!(
            poll.form["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(poll.form["device_code"], "DEVICE-SECRET-1");
        assert_eq!(poll.form["client_id"], "client-123");
        let start = polls.iter().find(|r| r.path == DEVICE_PATH).unwrap();
        assert_eq!(
            start.form["scope"],
            "Files.Read.All offline_access User.Read"
        );
    }

    #[tokio::test]
    async fn slow_down_lengthens_the_interval() {
        let server = device_server(&["slow_down", "slow_down"]).await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let auth = start_device_code(&http, &s).await.unwrap();
        let pacing = PollPacing {
            interval_override: Some(Duration::from_millis(1)),
            slow_down_step: Duration::from_millis(60),
        };
        let started = std::time::Instant::now();
        poll_device_code_paced(&http, &s, &auth, pacing)
            .await
            .unwrap();
        // 1 ms, then 61 ms, then 121 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(180),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_declined_sign_in_stops_polling() {
        let server = device_server(&["authorization_pending", "authorization_declined"]).await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let auth = start_device_code(&http, &s).await.unwrap();
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Declined), "{err:?}");
        assert_eq!(
            err.to_string(),
            "sign-in was declined; run `odbackup login` again to retry"
        );
        assert_eq!(server.count(TOKEN_PATH), 2);
    }

    #[tokio::test]
    async fn an_expired_code_says_to_log_in_again() {
        let server = device_server(&["expired_token"]).await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let auth = start_device_code(&http, &s).await.unwrap();
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Expired), "{err:?}");
        assert!(err.to_string().contains("run `odbackup login` again"));
    }

    #[tokio::test]
    async fn polling_stops_at_the_codes_own_deadline() {
        let server = device_server(&["authorization_pending"; 1000]).await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let mut auth = start_device_code(&http, &s).await.unwrap();
        auth.expires_at = Instant::now() + Duration::from_millis(50);
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Expired), "{err:?}");
    }

    #[tokio::test]
    async fn other_service_errors_carry_the_aadsts_text_but_no_secret() {
        let server = device_server(&["invalid_client"]).await;
        let http = reqwest::Client::new();
        let s = settings(&server);
        let auth = start_device_code(&http, &s).await.unwrap();
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.oauth_code(), Some("invalid_client"));
        assert!(text.contains("AADSTS70016: something happened."), "{text}");
        assert!(
            !text.contains("Trace ID") && !text.contains("DEVICE-SECRET-1"),
            "{text}"
        );
        assert!(!err.is_transient() && !err.is_refused());
    }

    #[tokio::test]
    async fn an_unreachable_service_is_a_transient_network_error() {
        // Bind and drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = AuthSettings::new("client-123");
        s.login_base_url = format!("http://127.0.0.1:{port}");
        let err = start_device_code(&reqwest::Client::new(), &s)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SignInError::Network {
                    endpoint: Endpoint::DeviceCode,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    /// Play the browser: follow the authorize URL's `redirect_uri` with the given query and return the
    /// status line and body the listener answered.
    async fn browser_hits(redirect_uri: &str, path_and_query: &str) -> String {
        let addr = redirect_uri.strip_prefix("http://localhost:").unwrap();
        let mut stream = TcpStream::connect(format!("127.0.0.1:{addr}"))
            .await
            .unwrap();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: localhost:{addr}\r\nUser-Agent: test\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    fn query_param(url: &str, name: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    #[tokio::test]
    async fn browser_login_redeems_the_code_with_the_pkce_verifier() {
        let server = TestServer::start(|req| {
            if req.path == TOKEN_PATH
                && req.form.get("code").map(String::as_str) == Some("AUTH-CODE-9")
            {
                (200, token_json("AT-B", "RT-B", 3599))
            } else {
                (400, oauth_error("invalid_grant", "AADSTS70000"))
            }
        })
        .await;
        let s = settings(&server);
        let login = BrowserLogin::start(&s).await.unwrap();
        let url = login.authorize_url().to_owned();
        assert!(url.starts_with(&format!(
            "{}/common/oauth2/v2.0/authorize?",
            server.base_url
        )));
        for (k, v) in [
            ("client_id", "client-123"),
            ("response_type", "code"),
            ("response_mode", "query"),
            ("code_challenge_method", "S256"),
            ("scope", "Files.Read.All offline_access User.Read"),
        ] {
            assert_eq!(query_param(&url, k), v, "{k}");
        }
        let redirect_uri = query_param(&url, "redirect_uri");
        assert_eq!(redirect_uri, login.redirect_uri());
        assert!(redirect_uri.starts_with("http://localhost:"));
        let state = query_param(&url, "state");
        let challenge = query_param(&url, "code_challenge");
        assert!(!format!("{login:?}").contains(&login.verifier.0));

        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        // A speculative preconnect that never sends anything must not hold up what follows.
        let port = redirect_uri.strip_prefix("http://localhost:").unwrap();
        let _idle = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        // The browser asks for the favicon first; that must not end the wait.
        let favicon = browser_hits(&redirect_uri, "/favicon.ico").await;
        assert!(favicon.starts_with("HTTP/1.1 404"), "{favicon}");
        let page = browser_hits(
            &redirect_uri,
            &format!("/?code=AUTH-CODE-9&state={state}&session_state=x"),
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("you can close this window"), "{page}");

        let tokens = finish.await.unwrap().unwrap();
        assert_eq!(tokens.access_token.expose(), "AT-B");
        let redeem = server
            .requests()
            .into_iter()
            .find(|r| r.path == TOKEN_PATH)
            .unwrap();
        assert_eq!(redeem.form["grant_type"], "authorization_code");
        assert_eq!(redeem.form["redirect_uri"], redirect_uri);
        assert_eq!(redeem.form["client_id"], "client-123");
        assert!(!redeem.form.contains_key("client_secret"));
        assert_eq!(code_challenge(&redeem.form["code_verifier"]), challenge);
    }

    #[tokio::test]
    async fn browser_login_rejects_a_foreign_state() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server)).await.unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        let page = browser_hits(&redirect_uri, "/?code=AUTH-CODE-9&state=forged").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::StateMismatch), "{err:?}");
        assert_eq!(
            server.count(TOKEN_PATH),
            0,
            "a forged code must not be redeemed"
        );
    }

    #[tokio::test]
    async fn browser_login_reports_a_cancelled_sign_in_as_declined() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server)).await.unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let state = query_param(login.authorize_url(), "state");
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        browser_hits(
            &redirect_uri,
            &format!("/?error=access_denied&error_description=AADSTS65004&state={state}"),
        )
        .await;
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::Declined), "{err:?}");
    }

    #[tokio::test]
    async fn browser_login_gives_up_after_its_timeout() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server))
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        let err = login.finish(&reqwest::Client::new()).await.unwrap_err();
        assert!(matches!(err, SignInError::BrowserTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains("did not return"), "{err}");
    }
}
