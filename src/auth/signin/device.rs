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
    pub(crate) interval_override: Option<Duration>,
    /// Added to the interval each time the service answers `slow_down` (RFC 8628 §3.5: 5 seconds).
    pub(crate) slow_down_step: Duration,
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
    // Both numbers are the service's, and bound how long and how often we poll: a code is valid for 15
    // minutes (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>), so an
    // answer claiming more is held to an hour, and an interval of 0 would poll back to back.
    let expires_in = Duration::from_secs(raw.expires_in).min(MAX_DEVICE_CODE_LIFETIME);
    Ok(DeviceAuthorization {
        user_code: raw.user_code,
        verification_uri: raw.verification_uri,
        message,
        expires_in,
        // An interval longer than the code lives would sleep past its expiry before the first poll.
        interval: raw
            .interval
            .map_or(RFC8628_INTERVAL, Duration::from_secs)
            .max(MIN_POLL_INTERVAL)
            .min(expires_in.max(MIN_POLL_INTERVAL)),
        device_code: Secret(raw.device_code),
        expires_at: Instant::now() + expires_in,
    })
}

/// The longest a device code is polled for, whatever the service says it lasts.
const MAX_DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The shortest pause between two polls, whatever interval the service gives.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

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
    use graphsim::{DeviceOutcome, DeviceScript, Failure, RequestKind, Simulator, Tree};

    use super::*;

    /// A simulator whose next device code sign-in answers `slow_down` polls `slow_down` times, then
    /// `authorization_pending` `pending` times, then `outcome`.
    fn identity_host(slow_down: u32, pending: u32, outcome: DeviceOutcome) -> Simulator {
        let sim = Simulator::start(Tree::personal());
        sim.script_device_code(DeviceScript {
            pending,
            slow_down,
            outcome,
        });
        sim
    }

    fn settings(sim: &Simulator) -> AuthSettings {
        AuthSettings {
            login_base_url: sim.auth_url(),
            ..AuthSettings::new("client-123")
        }
    }

    fn fast() -> PollPacing {
        PollPacing {
            interval_override: Some(Duration::from_millis(5)),
            slow_down_step: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn device_code_polls_through_slow_down_and_pending_to_tokens() {
        let sim = identity_host(1, 2, DeviceOutcome::Approve);
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let auth = start_device_code(&http, &s).await.unwrap();
        assert!(auth.user_code.starts_with("GS"), "{auth:?}");
        assert_eq!(
            auth.verification_uri,
            format!("{}/devicelogin", sim.auth_url())
        );
        assert!(auth.message.contains(&auth.user_code), "{}", auth.message);
        assert_eq!(auth.interval, Duration::from_secs(1));
        assert!(!format!("{auth:?}").contains(&auth.device_code.0));

        let tokens = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap();
        // The simulator only answers a poll that names the device code it issued and the client, and only
        // hands out a refresh token when `offline_access` was asked for.
        assert_eq!(sim.requests(RequestKind::DeviceCode), 1);
        assert_eq!(sim.requests(RequestKind::Token), 4);
        assert!(tokens.refresh_token.is_some());
        assert_eq!(tokens.scope, "Files.Read.All User.Read");
        assert_eq!(tokens.expires_in, Duration::from_secs(3599));
        let debug = format!("{tokens:?}");
        assert!(
            !debug.contains(tokens.access_token.expose())
                && !debug.contains(tokens.refresh_token.as_ref().unwrap().expose()),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn slow_down_lengthens_the_interval() {
        let sim = identity_host(2, 0, DeviceOutcome::Approve);
        let http = reqwest::Client::new();
        let s = settings(&sim);
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
        assert_eq!(sim.requests(RequestKind::Token), 3);
    }

    #[tokio::test]
    async fn a_declined_sign_in_stops_polling() {
        let sim = identity_host(0, 1, DeviceOutcome::Decline);
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let auth = start_device_code(&http, &s).await.unwrap();
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Declined), "{err:?}");
        assert_eq!(
            err.to_string(),
            "sign-in was declined; run `odbackup login` again to retry"
        );
        assert_eq!(sim.requests(RequestKind::Token), 2);
    }

    #[tokio::test]
    async fn an_expired_code_says_to_log_in_again() {
        let sim = identity_host(0, 0, DeviceOutcome::Expire);
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let auth = start_device_code(&http, &s).await.unwrap();
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Expired), "{err:?}");
        assert!(err.to_string().contains("run `odbackup login` again"));
    }

    #[tokio::test]
    async fn polling_stops_at_the_codes_own_deadline() {
        let sim = identity_host(0, 100_000, DeviceOutcome::Approve);
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let mut auth = start_device_code(&http, &s).await.unwrap();
        auth.expires_at = Instant::now() + Duration::from_millis(50);
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        assert!(matches!(err, SignInError::Expired), "{err:?}");
    }

    #[tokio::test]
    async fn network_blips_while_polling_are_ridden_out() {
        let sim = identity_host(0, 1, DeviceOutcome::Approve);
        sim.fail_next(2, Failure::unavailable(None).only(RequestKind::Token));
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let auth = start_device_code(&http, &s).await.unwrap();
        poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap();
        assert_eq!(sim.requests(RequestKind::Token), 4);
        assert_eq!(sim.failures_served(), 2);
    }

    #[tokio::test]
    async fn other_service_errors_carry_the_aadsts_text_but_no_secret() {
        let sim = identity_host(0, 1, DeviceOutcome::Approve);
        let http = reqwest::Client::new();
        let s = settings(&sim);
        let auth = start_device_code(&http, &s).await.unwrap();
        // What a registration without "Allow public client flows" answers.
        sim.fail_next(
            1,
            Failure::oauth(
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
            .only(RequestKind::Token),
        );
        let err = poll_device_code_paced(&http, &s, &auth, fast())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.oauth_code(), Some("invalid_client"));
        assert!(
            text.contains(
                "(HTTP 401, invalid_client): AADSTS7000218: The request body must contain"
            ),
            "{text}"
        );
        assert!(
            !text.contains("Trace ID") && !text.contains(&auth.device_code.0),
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
