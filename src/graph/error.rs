//! What can go wrong talking to Graph or to a download host, parsed from the real error JSON, with the
//! questions callers ask (`status`, `code`, `is_transient`, `is_auth`, `retry_after`).
//!
//! Messages name the request and its subject (an item ID or a path), never a token or a download URL's
//! query. This module knows nothing of the manifest: mapping an error to a failure class is the caller's job.

use std::time::Duration;

use crate::auth::AuthError;

/// A failed Graph request.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The service answered with an error status (after any retries the policy allowed). Boxed: it is the
    /// big variant, and errors travel by value through every `Result`.
    #[error(transparent)]
    Http(Box<HttpError>),
    /// The host could not be reached at all (refused, DNS, TLS).
    #[error("could not reach {host}: {reason}; check --graph-url and your network")]
    Connect {
        /// The host.
        host: String,
        /// Why, from the innermost cause (`connection refused`).
        reason: String,
    },
    /// The connection failed mid-request (reset, closed early).
    #[error("{what}: connection failed: {reason}; it is retried on the next run")]
    Network {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("{what}: no answer within {} s; the service may be slow, try again later", timeout.as_secs())]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// A download received no bytes for too long.
    #[error("{what}: stalled, no data for {} s; the download resumes from where it stopped", idle.as_secs())]
    Stalled {
        /// What was being downloaded (host and path only).
        what: String,
        /// The read-idle limit.
        idle: Duration,
    },
    /// The answer was not the JSON expected.
    #[error("{what}: the service sent invalid JSON: {source}")]
    Decode {
        /// What was being done.
        what: String,
        /// Where and how the JSON was wrong (`expected value at line 1 column 40`).
        #[source]
        source: serde_json::Error,
    },
    /// The answer was well-formed but not what the endpoint promises (a 2xx where a 302 was due, no
    /// `Location`, a 206 without `Content-Range`).
    #[error("{what}: unexpected answer: {reason}")]
    Unexpected {
        /// What was being done.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// The client could not be set up (a malformed `--graph-url`, a TLS backend failure).
    #[error("cannot set up the Graph client: {reason}; check --graph-url")]
    Setup {
        /// What was wrong.
        reason: String,
    },
    /// No token could be had, or the token was refused and could not be refreshed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A paging link pointed at another origin: the bearer token is only ever sent to the configured one.
    #[error(
        "refusing to follow a paging link to {origin}: it is not the configured Graph URL {expected}; \
         if the service moved, set --graph-url to it and start the listing again"
    )]
    ForeignLink {
        /// The link's scheme, host and port.
        origin: String,
        /// The configured scheme, host and port.
        expected: String,
    },
    /// The pre-authenticated download URL is no longer accepted: resolve a fresh one and resume. Not a failure.
    #[error("{host} no longer accepts the download URL (HTTP {status}); a fresh one is needed")]
    DownloadUrlExpired {
        /// The status the download host gave (401, 403, 404 or 410).
        status: u16,
        /// The download host (never the URL: its path or query is the credential).
        host: String,
    },
    /// The download host refused the `Range` (HTTP 416): the part file is longer than the content now is.
    #[error("the download host refused the range from byte {from} (HTTP 416){}; the file is fetched again from the start",
        total.map(|t| format!(", the content is {t} bytes")).unwrap_or_default())]
    RangeNotSatisfiable {
        /// The offset asked for.
        from: u64,
        /// The content's size, from `Content-Range: bytes */total`.
        total: Option<u64>,
    },
    /// A site has no document library of the name asked for.
    #[error("site {site} has no document library called {library:?}; it has: {}", known.join(", "))]
    NoSuchLibrary {
        /// The site, as named.
        site: String,
        /// The name asked for.
        library: String,
        /// The names of the libraries it has.
        known: Vec<String>,
    },
    /// The upload session is gone (HTTP 404 on its URL: expired, cancelled, or never known): the upload starts
    /// over with a new session, as the service asks. Not a failure of the file.
    #[error("the upload session expired or is gone (HTTP 404); the upload starts over")]
    UploadSessionGone,
    /// The upload host refused a fragment's range (HTTP 416): it already has those bytes, or expects others
    /// first. Ask the session's status and go on from there.
    #[error("the upload host refused the fragment from byte {start} (HTTP 416{}); resuming where the service says",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    FragmentRefused {
        /// The fragment's first byte.
        start: u64,
        /// `fragmentOverlap`, `fragmentOutOfOrder`, … when the body said.
        code: Option<String>,
    },
    /// The service asked for a longer pause than a run waits out: a `Retry-After` beyond the client's limit
    /// (15 minutes by default). Every request of the client is held until then and the pause is kept for the
    /// next run; the run stops rather than idle that long. Microsoft asks that the whole wait be honoured
    /// (<https://learn.microsoft.com/en-us/graph/throttling>).
    #[error(
        "{answer}; the service asked for no request for {} (Retry-After): run again after {}, or now \
         (the next run waits out what is left)",
        long_wait(*wait),
        until.format("%Y-%m-%d %H:%M UTC")
    )]
    ToldToWait {
        /// The pause asked for.
        wait: Duration,
        /// When it ends.
        until: chrono::DateTime<chrono::Utc>,
        /// The answer that asked for it (not a `#[source]`: its text is already in this one's).
        answer: Box<HttpError>,
    },
    /// A delta link is no longer valid (HTTP 410): list everything again and reconcile.
    #[error("{what}: the saved change link expired (HTTP 410{}); a full re-listing is needed",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    ResyncRequired {
        /// What was being done.
        what: String,
        /// `resyncRequired`, `resyncChangesApplyDifferences`, … when the body said.
        code: Option<String>,
        /// The `Location` the service suggested to restart from, when it is on the configured origin.
        restart_link: Option<String>,
    },
}

/// An error answer from Graph or a download host.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{what}: HTTP {status}{}: {message}{}",
    self.code().map(|c| format!(" ({c})")).unwrap_or_default(),
    request_id.as_deref().map(|r| format!(" [request-id {r}]")).unwrap_or_default()
)]
pub struct HttpError {
    /// What was being done and on what (`listing children of item X`).
    pub(crate) what: String,
    /// The HTTP status.
    pub status: u16,
    /// Every error code in the body, outermost first; the last is the most specific.
    pub(crate) codes: Vec<String>,
    /// The service's message (outermost), or a note that the body had none.
    pub message: String,
    /// `Retry-After`, when given.
    pub(crate) retry_after: Option<Duration>,
    /// The `request-id` Microsoft support asks for, when given.
    pub(crate) request_id: Option<String>,
}

impl HttpError {
    /// A 403 `serviceReadOnly` ("Database Is Read Only"): the service's maintenance windows answer reads so too
    /// (<https://github.com/rclone/rclone/issues/9794>). It passes; it is not a permission the sign-in lacks.
    pub(crate) fn is_read_only_window(&self) -> bool {
        self.status == 403
            && self
                .codes
                .iter()
                .any(|c| c.eq_ignore_ascii_case("serviceReadOnly"))
    }

    /// The most specific error code: the innermost one.
    pub(crate) fn code(&self) -> Option<&str> {
        self.codes.last().map(String::as_str)
    }
}

impl From<HttpError> for GraphError {
    fn from(e: HttpError) -> Self {
        GraphError::Http(Box::new(e))
    }
}

impl GraphError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http(e) | GraphError::ToldToWait { answer: e, .. } => Some(e.status),
            GraphError::DownloadUrlExpired { status, .. } => Some(*status),
            GraphError::RangeNotSatisfiable { .. } | GraphError::FragmentRefused { .. } => {
                Some(416)
            }
            GraphError::UploadSessionGone => Some(404),
            GraphError::ResyncRequired { .. } => Some(410),
            _ => None,
        }
    }

    /// The most specific error code in the body. Compare with `GraphError::has_code`, which ignores case.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            GraphError::Http(e) | GraphError::ToldToWait { answer: e, .. } => e.code(),
            GraphError::ResyncRequired { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether `code` appears anywhere in the error chain of the body, ignoring case (Graph's casing varies:
    /// `InvalidAuthenticationToken`, `itemNotFound`).
    pub(crate) fn has_code(&self, code: &str) -> bool {
        match self {
            GraphError::Http(e) | GraphError::ToldToWait { answer: e, .. } => {
                e.codes.iter().any(|c| c.eq_ignore_ascii_case(code))
            }
            _ => self.code().is_some_and(|c| c.eq_ignore_ascii_case(code)),
        }
    }

    /// Whether it is the service's maintenance window (403 `serviceReadOnly`, see
    /// [`HttpError::is_read_only_window`]): it passes, and is no permission the sign-in lacks.
    pub(crate) fn is_read_only_window(&self) -> bool {
        matches!(self, GraphError::Http(e) if e.is_read_only_window())
    }

    /// Whether trying again later may succeed: network trouble, throttling, server errors, an expired
    /// download URL. Not a [`GraphError::ToldToWait`]: later, yes, but not within this run.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            GraphError::Http(e) => {
                matches!(e.status, 408 | 423 | 429 | 500..=599) || e.is_read_only_window()
            }
            GraphError::Network { .. }
            | GraphError::Timeout { .. }
            | GraphError::Stalled { .. }
            | GraphError::Connect { .. }
            | GraphError::DownloadUrlExpired { .. } => true,
            _ => false,
        }
    }

    /// Whether a listing failed in a way another way of listing may not share, once the retries are spent: a
    /// server error (500 `cannotSnapshotTree` "Failed to get a coherent view of changes", 501, 502, 504) or an
    /// answer that is not the JSON of a listing. Delta has failed alone for days on an account while folder
    /// listings worked (onedrive-api-docs issue threads, 2022–23). Not throttling (429, 503, 509: every way
    /// of listing is held by it), nor a refused sign-in.
    pub(crate) fn is_listing_broken(&self) -> bool {
        match self {
            GraphError::Http(e) => matches!(e.status, 500 | 501 | 502 | 504),
            GraphError::Decode { .. } => true,
            _ => false,
        }
    }

    /// The pause the service asked for, when it is longer than a run waits out ([`GraphError::ToldToWait`]):
    /// nothing more can be asked of it in this run.
    pub(crate) fn told_to_wait(&self) -> Option<Duration> {
        match self {
            GraphError::ToldToWait { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// Whether it is a timeout or a stall.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(
            self,
            GraphError::Timeout { .. } | GraphError::Stalled { .. }
        )
    }

    /// Whether sign-in is needed: the token was refused even after a refresh, or none could be had.
    /// A 403 is not: the token is fine, the item is not allowed.
    pub(crate) fn is_auth(&self) -> bool {
        match self {
            GraphError::Http(e) => e.status == 401,
            GraphError::Auth(_) => true,
            _ => false,
        }
    }

    /// Whether the host could not be reached at all.
    #[cfg(test)]
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, GraphError::Connect { .. })
    }
}

/// A wait as people say it: `40 min`, `2 h 5 min`, `90 s`.
fn long_wait(wait: Duration) -> String {
    let secs = wait.as_secs();
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600).div_ceil(60)),
    }
}

/// The useful parts of an error body, parsed tolerantly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// Every `code` found, outermost first (`activityLimitReached`, then `throttledRequest`).
    pub(crate) codes: Vec<String>,
    /// The outermost message, or a note saying what the body was instead.
    pub message: String,
    /// `innerError.request-id`, when present.
    pub(crate) request_id: Option<String>,
}

/// Longest message kept from a body, so an HTML page or a long text never floods a log line.
const MAX_MESSAGE_CHARS: usize = 300;

impl ErrorBody {
    /// Parse Graph's `{"error":{"code","message","innerError":{…}}}`, the `OneDrive` dialect's nested
    /// `innererror`s, the identity platform's `{"error":"…","error_description":"…"}`, and empty, text or
    /// HTML bodies (a 403 for malware has been seen as HTML).
    pub fn parse(body: &[u8]) -> ErrorBody {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                "no error details in the answer".to_owned()
            } else if text.starts_with('<') {
                format!("no error details (an HTML page of {} bytes)", body.len())
            } else {
                clip(text)
            };
            return ErrorBody {
                message,
                ..ErrorBody::default()
            };
        };
        let mut out = ErrorBody {
            message: "no error details in the answer".to_owned(),
            ..ErrorBody::default()
        };
        match value.get("error") {
            Some(serde_json::Value::String(code)) => {
                out.codes.push(code.clone());
                if let Some(d) = value.get("error_description").and_then(|d| d.as_str()) {
                    out.message = clip(d);
                }
            }
            Some(error @ serde_json::Value::Object(_)) => {
                if let Some(m) = error.get("message").and_then(|m| m.as_str()) {
                    out.message = clip(m);
                }
                let mut node = Some(error);
                // Walk the chain; a bound keeps a hostile body from costing more than a glance.
                for _ in 0..16 {
                    let Some(n) = node else { break };
                    if let Some(c) = n.get("code").and_then(|c| c.as_str())
                        && !c.is_empty()
                    {
                        out.codes.push(c.to_owned());
                    }
                    if out.request_id.is_none() {
                        out.request_id = n
                            .get("request-id")
                            .and_then(|r| r.as_str())
                            .map(str::to_owned);
                    }
                    node = n.get("innerError").or_else(|| n.get("innererror"));
                }
            }
            _ => {}
        }
        out
    }

    /// The most specific code: the innermost one.
    pub(crate) fn code(&self) -> Option<&str> {
        self.codes.last().map(String::as_str)
    }
}

fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, codes: &[&str]) -> GraphError {
        HttpError {
            what: "listing children of item X".into(),
            status,
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            message: "m".into(),
            retry_after: None,
            request_id: None,
        }
        .into()
    }

    #[test]
    fn a_broken_listing_is_a_server_error_or_no_listing_and_never_throttling_or_sign_in() {
        for broken in [500, 501, 502, 504] {
            assert!(
                http(broken, &["cannotSnapshotTree"]).is_listing_broken(),
                "{broken}"
            );
        }
        for not in [400, 401, 403, 404, 429, 503, 509] {
            assert!(!http(not, &[]).is_listing_broken(), "{not}");
        }
        let decode = GraphError::Decode {
            what: "listing changes".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert!(decode.is_listing_broken());
    }

    #[test]
    fn error_bodies_parse_tolerantly() {
        // (body, codes, message, request-id)
        type Case<'a> = (&'a [u8], &'a [&'a str], &'a str, Option<&'a str>);
        let cases: [Case; 8] = [
            (
                br#"{"error":{"code":"itemNotFound","message":"Item does not exist","innerError":{"date":"x","request-id":"r1"}}}"#,
                &["itemNotFound"],
                "Item does not exist",
                Some("r1"),
            ),
            (
                br#"{"error":{"code":"activityLimitReached","message":"throttled","innererror":{"code":"throttledRequest","innererror":{"code":"deeper"}}}}"#,
                &["activityLimitReached", "throttledRequest", "deeper"],
                "throttled",
                None,
            ),
            (b"", &[], "no error details in the answer", None),
            (
                b"<html><body>malware</body></html>",
                &[],
                "no error details (an HTML page of 33 bytes)",
                None,
            ),
            (
                br#"{"error":{"code":5}}"#,
                &[],
                "no error details in the answer",
                None,
            ),
            (
                br#"{"error":"invalid_grant","error_description":"AADSTS700082: expired"}"#,
                &["invalid_grant"],
                "AADSTS700082: expired",
                None,
            ),
            (b"Service Unavailable", &[], "Service Unavailable", None),
            (b"[1,2]", &[], "no error details in the answer", None),
        ];
        for (body, codes, message, request_id) in cases {
            let parsed = ErrorBody::parse(body);
            assert_eq!(parsed.codes, codes, "{}", String::from_utf8_lossy(body));
            assert_eq!(parsed.message, message);
            assert_eq!(parsed.request_id.as_deref(), request_id);
        }
        let long = "x".repeat(1000);
        assert_eq!(
            ErrorBody::parse(long.as_bytes()).message.chars().count(),
            301
        );
    }

    #[test]
    fn codes_match_case_insensitively_anywhere_in_the_chain() {
        let e = http(429, &["activityLimitReached", "throttledRequest"]);
        assert_eq!(e.code(), Some("throttledRequest"));
        assert!(e.has_code("ACTIVITYLIMITREACHED") && e.has_code("throttledrequest"));
        assert!(!e.has_code("itemNotFound"));
    }

    #[test]
    fn transient_and_auth_classification() {
        assert!(http(503, &[]).is_transient() && http(429, &[]).is_transient());
        assert!(http(500, &[]).is_transient() && http(504, &[]).is_transient());
        assert!(!http(404, &[]).is_transient() && !http(403, &[]).is_transient());
        assert!(http(401, &[]).is_auth() && !http(403, &[]).is_auth());
        assert!(
            GraphError::DownloadUrlExpired {
                status: 403,
                host: "h".into()
            }
            .is_transient()
        );
        let range = GraphError::RangeNotSatisfiable {
            from: 10,
            total: Some(5),
        };
        assert_eq!(range.status(), Some(416));
        assert!(!range.is_transient());
    }

    #[test]
    fn messages_name_the_subject_and_the_way_out() {
        let e = GraphError::Connect {
            host: "graph.microsoft.com".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "could not reach graph.microsoft.com: connection refused; check --graph-url and your network"
        );
        let mut e = http(404, &["itemNotFound"]);
        if let GraphError::Http(inner) = &mut e {
            inner.request_id = Some("r1".into());
        }
        assert_eq!(
            e.to_string(),
            "listing children of item X: HTTP 404 (itemNotFound): m [request-id r1]"
        );
        let source = serde_json::from_str::<serde_json::Value>("{\"value\": [,]}").unwrap_err();
        let e = GraphError::Decode {
            what: "listing children of item X".into(),
            source,
        };
        assert!(
            e.to_string()
                .starts_with("listing children of item X: the service sent invalid JSON: expected value at line 1 column 12"),
            "{e}"
        );
    }
}
