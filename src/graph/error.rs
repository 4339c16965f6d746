//! What can go wrong talking to Graph, parsed from the real error JSON, with the questions callers ask
//! (`is_transient`, `is_auth`, `retry_after`). Messages name the request, never a token or a download URL's
//! query.

use std::time::Duration;

use crate::auth::AuthError;

/// A failed Graph request.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The service answered with an error status.
    #[error("{what}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        /// What was being done (`listing children of item X`).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The most specific error code found in the body.
        code: Option<String>,
        /// The service's message.
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// The host could not be reached at all.
    #[error("could not reach {host}: {reason}; check the URL (--graph-url) and your network")]
    Connect {
        /// The host.
        host: String,
        /// Why (connection refused, DNS, TLS).
        reason: String,
    },
    /// The connection failed mid-request (reset, closed).
    #[error("{what}: connection failed: {reason}")]
    Network {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("{what}: timed out")]
    Timeout {
        /// What was being done.
        what: String,
    },
    /// A download received no bytes for too long.
    #[error("download stalled: no data for {secs} s")]
    Stalled {
        /// The stall limit.
        secs: u64,
    },
    /// The answer was not the JSON expected.
    #[error("{what}: unexpected answer: {reason}")]
    Decode {
        /// What was being done.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// No token could be had.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A paging link pointed at another host (we never send the token elsewhere).
    #[error("refusing to follow a link to {host}: it is not the configured Graph host")]
    ForeignLink {
        /// The link's host.
        host: String,
    },
    /// The pre-authenticated download URL is no longer accepted; resolve a fresh one.
    #[error("the download URL expired (HTTP {status})")]
    DownloadUrlExpired {
        /// The status the download host gave.
        status: u16,
    },
    /// A delta link is too old; the listing must start over.
    #[error("the delta link expired (HTTP 410): a full re-listing is needed")]
    ResyncRequired,
}

impl GraphError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http { status, .. } | GraphError::DownloadUrlExpired { status } => {
                Some(*status)
            }
            GraphError::ResyncRequired => Some(410),
            _ => None,
        }
    }

    /// The most specific error code in the body.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// `Retry-After`, when the service gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again later may succeed (network trouble, throttling, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Http { status, .. } => matches!(status, 408 | 423 | 429 | 500..=599),
            GraphError::Network { .. }
            | GraphError::Timeout { .. }
            | GraphError::Stalled { .. }
            | GraphError::Connect { .. }
            | GraphError::DownloadUrlExpired { .. } => true,
            _ => false,
        }
    }

    /// Whether it is a timeout or a stall.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            GraphError::Timeout { .. } | GraphError::Stalled { .. }
        )
    }

    /// Whether sign-in is needed: the token was refused even after a refresh, or none could be had.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            GraphError::Http { status: 401, .. } | GraphError::Auth(_)
        )
    }

    /// Whether it is an "unreachable host" error.
    pub fn is_connect(&self) -> bool {
        matches!(self, GraphError::Connect { .. })
    }
}

/// Parse an error body tolerantly: Graph's `innerError` and `OneDrive`'s `innererror` chains, empty or HTML
/// bodies. Returns the most specific code and the outermost message.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() || text.starts_with('<') {
            "no error details".to_owned()
        } else {
            text.chars().take(200).collect()
        };
        return (None, message);
    };
    let Some(error) = value.get("error") else {
        // The identity platform's shape: {"error": "code", "error_description": "…"} is handled by auth.
        return (None, "no error details".to_owned());
    };
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("no error details")
        .to_owned();
    let mut code = error
        .get("code")
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let mut inner = error.get("innerError").or_else(|| error.get("innererror"));
    while let Some(node) = inner {
        if let Some(c) = node.get("code").and_then(|c| c.as_str()) {
            code = Some(c.to_owned());
        }
        inner = node.get("innerError").or_else(|| node.get("innererror"));
    }
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_parsed_tolerantly() {
        let graph = br#"{"error":{"code":"itemNotFound","message":"Item does not exist","innerError":{"date":"x","request-id":"r"}}}"#;
        assert_eq!(
            parse_error_body(graph),
            (Some("itemNotFound".into()), "Item does not exist".into())
        );
        let nested = br#"{"error":{"code":"activityLimitReached","message":"throttled","innererror":{"code":"throttledRequest"}}}"#;
        assert_eq!(
            parse_error_body(nested).0.as_deref(),
            Some("throttledRequest")
        );
        assert_eq!(parse_error_body(b"").0, None);
        assert_eq!(
            parse_error_body(b"<html>malware</html>").1,
            "no error details"
        );
        assert_eq!(
            parse_error_body(b"{\"error\":{\"code\":5}}").1,
            "no error details"
        );
    }

    #[test]
    fn transient_and_auth_classification() {
        let http = |status| GraphError::Http {
            what: "x".into(),
            status,
            code: None,
            message: String::new(),
            retry_after: None,
        };
        assert!(http(503).is_transient() && http(429).is_transient() && http(500).is_transient());
        assert!(!http(404).is_transient() && !http(403).is_transient());
        assert!(http(401).is_auth() && !http(403).is_auth());
    }
}
