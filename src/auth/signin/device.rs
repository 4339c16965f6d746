//! The device authorization grant (RFC 8628): a code the user types on another device while this one polls
//! the token endpoint (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::token::{describe_json_error, opt_seconds, post_form, request_tokens, seconds};
use super::{AuthSettings, Endpoint, Secret, SignInError, TokenResponse};

/// RFC 8628 §3.5: the poll interval when the service names none, and the step added on `slow_down`.
const RFC8628_INTERVAL: Duration = Duration::from_secs(5);
/// Network blips in a row that device-code polling rides out before giving up.
const MAX_POLL_TRANSIENT_FAILURES: u32 = 5;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::test_support::{TestServer, oauth_error, token_json};
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
}
