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
//!
//! The rooms: this file holds the settings ([`AuthSettings`]), the token and error types and the entry
//! points; `token` the token endpoint (one form `POST`, responses and OAuth errors read without quoting a
//! secret); `device` the device code grant and its polling; `browser` the authorization code grant with
//! PKCE; `loopback` the local listener the browser is redirected to.
//!
//! Why not the `oauth2` crate: it would replace the form building and response parsing (about 350 lines),
//! but its newest release on the registry (5.0.0) is built on reqwest 0.12, so it would either compile a
//! second HTTP stack beside our reqwest 0.13 or need an adapter of our own for its `AsyncHttpClient` trait.
//! Either way it would still need the parts that make up most of these files: the identity platform's own
//! codes (`authorization_declined`, `bad_verification_code`, `AADSTS` descriptions cut to their first line),
//! secrets removed from every error text, `verification_url` spelled the v1 way, seconds sent as strings,
//! poll pacing that tests can shorten, and the loopback listener, which it does not provide.

mod browser;
mod device;
mod loopback;
mod token;

use std::fmt;
use std::time::Duration;

use super::AccessToken;

pub use browser::BrowserLogin;
pub use device::{DeviceAuthorization, poll_device_code, start_device_code};
pub(super) use token::request_tokens;

/// The global cloud's sign-in host; national clouds have their own
/// (<https://learn.microsoft.com/en-us/graph/deployments>).
pub(crate) const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";
/// Personal and work/school accounts alike.
pub(crate) const DEFAULT_TENANT: &str = "common";
/// Read-only by default: every file the user can see, a refresh token, and `/me` for `whoami`.
pub(crate) const DEFAULT_SCOPES: [&str; 3] = ["Files.Read.All", "offline_access", "User.Read"];
/// How long [`BrowserLogin::finish`] waits for the browser to come back unless told otherwise.
pub(crate) const DEFAULT_BROWSER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where and as whom to sign in: the resolved form of the `auth_url`, `tenant`, `client_id` and `scopes`
/// settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The sign-in host, e.g. `DEFAULT_LOGIN_BASE_URL` or `https://login.microsoftonline.us`.
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
    pub(crate) fn endpoint_url(&self, endpoint: Endpoint) -> String {
        format!(
            "{}/{}/oauth2/v2.0/{}",
            self.login_base_url.trim_end_matches('/'),
            self.tenant,
            endpoint.path()
        )
    }

    /// The `scope` parameter: the scopes, space-separated.
    pub(crate) fn scope_param(&self) -> String {
        self.scopes.join(" ")
    }

    /// Catch settings the service would reject with a puzzling message.
    pub(super) fn check(&self) -> Result<(), SignInError> {
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
    pub(super) fn path(self) -> &'static str {
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
pub(crate) struct RefreshToken(String);

impl RefreshToken {
    /// Wrap a refresh token read from the service or the token file.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself, for the token request and the token file only.
    pub(crate) fn expose(&self) -> &str {
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
    pub(crate) refresh_token: Option<RefreshToken>,
    /// The access token's lifetime, counted from when the response arrived.
    pub(crate) expires_in: Duration,
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
    #[cfg(test)]
    pub(crate) fn is_refused(&self) -> bool {
        matches!(
            self,
            SignInError::Refused { .. } | SignInError::NoRefreshToken
        )
    }

    /// True when trying the same request again later may succeed: network failures, 5xx, 429,
    /// `temporarily_unavailable`.
    pub(crate) fn is_transient(&self) -> bool {
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
    pub(crate) fn oauth_code(&self) -> Option<&str> {
        match self {
            SignInError::Service { code, .. }
            | SignInError::Redirect { code, .. }
            | SignInError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn empty_client_id_is_caught_before_any_request() {
        let err = AuthSettings::new("  ").check().unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
    }
}
