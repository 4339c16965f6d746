//! The token endpoint (and the error body every identity-platform endpoint shares): one form `POST`, a
//! token response read strictly, and errors built without any secret the form carried.

use std::time::Duration;

use serde::Deserialize;

use super::{AccessToken, AuthSettings, Endpoint, RefreshToken, SignInError, TokenResponse};

/// One request to the sign-in service may take this long before it counts as a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Service error descriptions are cut to this many characters (they end in trace IDs and timestamps).
const MAX_DESCRIPTION_CHARS: usize = 300;

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
pub(in crate::auth) async fn request_tokens(
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
        expires_in: token_lifetime(raw.expires_in),
        scope: raw.scope,
    })
}

/// The shortest access-token lifetime taken as sent: an `expires_in` of 0 would make every request renew the
/// token first (the token is used instead, and a 401 renews it).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
/// The longest: Microsoft's access tokens live at most a day ("Access token lifetime … maximum: 1 day",
/// <https://learn.microsoft.com/en-us/entra/identity-platform/configurable-token-lifetimes>); a larger
/// `expires_in` is a mistake, and taken as sent it would overflow the clock arithmetic that schedules renewal.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The lifetime a token response's `expires_in` (seconds) stands for, kept between
/// [`MIN_TOKEN_LIFETIME`] and [`MAX_TOKEN_LIFETIME`].
fn token_lifetime(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in).clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME)
}

/// `POST` a form to an endpoint; a 2xx answer's status and body, or the OAuth error it carried.
pub(super) async fn post_form(
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
pub(super) fn clean_description(description: &str, secrets: &[&str]) -> String {
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
pub(super) fn describe_json_error(err: &serde_json::Error) -> String {
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
pub(super) fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
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

pub(super) fn opt_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    seconds(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_token_lifetime_of_zero_or_beyond_a_day_is_kept_within_bounds() {
        assert_eq!(token_lifetime(0), MIN_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(3599), Duration::from_secs(3599));
        assert_eq!(token_lifetime(u64::MAX), MAX_TOKEN_LIFETIME);
        // The largest one still schedules a renewal without overflowing.
        let _ = std::time::SystemTime::now() + token_lifetime(u64::MAX);
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
}
