//! The thin async shell that carries out the retry policy for Graph calls (reads and writes): wait at the
//! throttle gate, take a token, send, read the whole answer under the request timeout, and on failure ask
//! [`RetryPolicy::next_delay`](super::RetryPolicy::next_delay) what to do. A 401 triggers one
//! [`TokenSource::reject`](crate::auth::TokenSource::reject) and a retry with the fresh token; more 401s to a
//! fresh token back off like server errors until the policy's attempts for them run out.
//!
//! Nothing here decides anything that is not in `retry.rs`; nothing here logs a token or a URL.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap};

use super::GraphClient;
use super::error::{ErrorBody, GraphError, HttpError};
use super::retry::{Outcome, Pace, classify_status, parse_retry_after, rate_limit_pace};
use crate::auth::AuthError;

/// What a call counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// A 2xx with a body.
    Json,
    /// A 2xx, or a 410 handed back as is (delta resync carries a `Location`).
    JsonOrGone,
}

impl Expect {
    fn accepts(self, status: u16) -> bool {
        match self {
            Expect::Json => (200..300).contains(&status),
            Expect::JsonOrGone => (200..300).contains(&status) || status == 410,
        }
    }
}

/// A whole answer: small JSON bodies are read inside the retry loop, so a reset mid-body is retried too.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// The body of a write to Graph, and its content type.
#[derive(Debug, Clone)]
pub(super) struct Payload {
    pub bytes: Bytes,
    pub(crate) content_type: &'static str,
}

impl Payload {
    /// A JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            bytes: Bytes::from(value.to_string()),
            content_type: "application/json",
        }
    }
}

/// Attempts of one request so far, counted the way [`RetryPolicy::next_delay`](super::RetryPolicy) wants.
#[derive(Debug, Default)]
pub(super) struct Tally {
    failures: u32,
    throttled: u32,
    /// 401s answered to a fresh token (just renewed, or one that cannot be renewed).
    unauthorized: u32,
}

impl Tally {
    /// Attempts so far that ended in an error other than throttling.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }
}

/// Times one answer that cannot be read (JSON cut short, fields of the wrong type) is asked for again. A
/// gateway that cut one answer short serves the next one whole; an answer wrong every time will stay wrong,
/// so this is fewer than the attempts for a 5xx.
const UNREADABLE_ATTEMPTS: u32 = 3;

impl GraphClient {
    /// GET a Graph URL with the bearer token under the retry policy, then `read` the answer. An answer `read` cannot make sense of
    /// ([`GraphError::Decode`]) is asked for again after the policy's backoff for a 5xx, up to
    /// [`UNREADABLE_ATTEMPTS`] times, and then reported.
    pub(super) async fn call_and_read<T>(
        &self,
        what: &str,
        url: &str,
        expect: Expect,
        read: impl Fn(&Answer) -> Result<T, GraphError>,
    ) -> Result<T, GraphError> {
        self.send_expecting_and_read(what, reqwest::Method::GET, url, None, expect, read)
            .await
    }

    /// [`GraphClient::send`], then `read` the answer (as [`GraphClient::call_and_read`] does for a GET).
    pub(super) async fn send_and_read<T>(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Payload>,
        read: impl Fn(&Answer) -> Result<T, GraphError>,
    ) -> Result<T, GraphError> {
        self.send_expecting_and_read(what, method, url, body, Expect::Json, read)
            .await
    }

    /// Send, then `read` the answer; an answer that cannot be read is asked for again a few times (a gateway
    /// may cut a body short).
    async fn send_expecting_and_read<T>(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Payload>,
        expect: Expect,
        read: impl Fn(&Answer) -> Result<T, GraphError>,
    ) -> Result<T, GraphError> {
        let mut tally = Tally::default();
        loop {
            let answer = self.send(what, method.clone(), url, body, expect).await?;
            match read(&answer) {
                Err(err @ GraphError::Decode { .. })
                    if tally.failures + 1 < UNREADABLE_ATTEMPTS =>
                {
                    tracing::debug!(error = %err, "the answer could not be read; asking again");
                    self.wait_before_retry(&mut tally, (Outcome::ServerError, err))
                        .await?;
                }
                result => return result,
            }
        }
    }

    /// Send `method` to a Graph URL with the bearer token and `body`, under the retry policy. The body is
    /// sent again on every retry (it is small: JSON, or a file of at most a few MiB).
    pub(super) async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Payload>,
        expect: Expect,
    ) -> Result<Answer, GraphError> {
        let mut tally = Tally::default();
        // A token that cannot be renewed is as fresh as it will ever be.
        let renewable = self.inner.tokens.renewable();
        let mut refreshed = !renewable;
        loop {
            self.pass_gate().await?;
            let token = self.inner.tokens.access_token().await?;
            self.count_request();
            let sent = async {
                let mut request = self
                    .inner
                    .api
                    .request(method.clone(), url)
                    .bearer_auth(token.expose())
                    .timeout(self.inner.options.request_timeout);
                if let Some(payload) = body {
                    request = request
                        .header(header::CONTENT_TYPE, payload.content_type)
                        .body(payload.bytes.clone());
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = read_capped(response, MAX_ANSWER_BYTES).await?;
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            let failure = match sent {
                Ok(answer) => {
                    tracing::trace!(what, status = answer.status, "graph answered");
                    self.watch_rate_limit(&answer.headers);
                    if expect.accepts(answer.status) {
                        return Ok(answer);
                    }
                    Self::http_failure(
                        what,
                        answer.status,
                        &answer.headers,
                        &answer.body,
                        refreshed,
                    )
                }
                Err(e) => {
                    let host = self.inner.base.host_str().unwrap_or("the Graph host");
                    self.transport_failure(what, e, host)
                }
            };
            if failure.0 == (Outcome::Unauthorized { refreshed: false }) {
                // Expired or revoked: one refresh, shared by every worker that saw the same token.
                tracing::debug!(what, "token refused; asking for a fresh one");
                refreshed = true;
                self.inner.tokens.reject(&token).await?;
                continue;
            }
            let unauthorized = matches!(failure.0, Outcome::Unauthorized { .. });
            if let Err(error) = self.wait_before_retry(&mut tally, failure).await {
                if !unauthorized {
                    return Err(error);
                }
                // A fresh token refused every time: the sign-in itself is refused. A static source says
                // what to do with its token; a renewed sign-in has to be made again.
                if !renewable {
                    self.inner.tokens.reject(&token).await?;
                }
                return Err(AuthError::StillRefused {
                    reason: error.to_string(),
                }
                .into());
            }
        }
    }

    /// An error answer as an outcome and an error.
    pub(super) fn http_failure(
        what: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        refreshed: bool,
    ) -> (Outcome, GraphError) {
        let retry_after = retry_after_of(headers);
        let parsed = ErrorBody::parse(body);
        let error = HttpError {
            what: what.to_owned(),
            status,
            codes: parsed.codes,
            message: parsed.message,
            retry_after,
            request_id: parsed.request_id,
        };
        // A 403 that passes is retried with backoff like a server error, never taken as a permission the
        // sign-in lacks.
        let outcome = if error.is_read_only_window() {
            Outcome::ServerError
        } else {
            classify_status(status, retry_after, refreshed)
        };
        (outcome, error.into())
    }

    /// A failed send as an outcome and an error. The URL is dropped first: a download URL's query is a
    /// credential.
    pub(super) fn transport_failure(
        &self,
        what: &str,
        e: reqwest::Error,
        host: &str,
    ) -> (Outcome, GraphError) {
        let e = e.without_url();
        if e.is_connect() {
            (
                Outcome::Unreachable,
                GraphError::Connect {
                    host: host.to_owned(),
                    reason: innermost(&e),
                },
            )
        } else if e.is_timeout() {
            (
                Outcome::Network,
                GraphError::Timeout {
                    what: what.to_owned(),
                    timeout: self.inner.options.request_timeout,
                },
            )
        } else {
            (
                Outcome::Network,
                GraphError::Network {
                    what: what.to_owned(),
                    reason: error_chain(&e),
                },
            )
        }
    }

    /// Wait as the policy says, or give up with the error. Throttle waits go through the shared gate, so
    /// every request of this client waits them out; backoffs after errors concern this request only.
    pub(super) async fn wait_before_retry(
        &self,
        tally: &mut Tally,
        (outcome, error): (Outcome, GraphError),
    ) -> Result<(), GraphError> {
        let attempt = match outcome {
            Outcome::Throttled { .. } => {
                tally.throttled += 1;
                tally.throttled
            }
            Outcome::Unauthorized { .. } => {
                tally.unauthorized += 1;
                tally.unauthorized
            }
            _ => {
                tally.failures += 1;
                tally.failures
            }
        };
        let Some(delay) = self
            .inner
            .policy
            .next_delay(attempt, &outcome, rand::random::<f64>())
        else {
            return Err(self.give_up(&outcome, error));
        };
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Throttled { .. } = outcome {
            self.inner.throttles.fetch_add(1, Ordering::Relaxed);
            self.add_pause(delay);
            tracing::info!(
                wait_ms = delay.as_millis() as u64,
                error = %error,
                "throttled: pausing every request of this client"
            );
        } else {
            tracing::debug!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// The error a request gives up with. A pause longer than the policy waits out still holds every request
    /// of this client (and, through the pause hook, the next run's): asking sooner only lengthens it.
    fn give_up(&self, outcome: &Outcome, error: GraphError) -> GraphError {
        let Some(wait) = self.inner.policy.wait_beyond_limit(outcome) else {
            return error;
        };
        let GraphError::Http(answer) = error else {
            return error;
        };
        self.inner.throttles.fetch_add(1, Ordering::Relaxed);
        self.add_pause(wait);
        *self
            .inner
            .long_pause
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(answer.clone());
        tracing::debug!(wait_s = wait.as_secs(), error = %answer, "told to wait longer than a run waits");
        GraphError::ToldToWait {
            wait,
            until: chrono::Utc::now() + wait,
            answer,
        }
    }

    /// The time left of a pause longer than the policy waits out, and the answer that asked for it, while one
    /// is in force: every request of this client fails at its gate until it ends.
    fn long_pause(&self) -> Option<(Duration, Box<HttpError>)> {
        // The answer first: it is there only once a run was told to stop, so a request in the common case pays
        // for one uncontended lock, not a look at the gate's clock as well.
        let answer = self
            .inner
            .long_pause
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let left = self.inner.gate.paused_for()?;
        (left > self.inner.policy.max_retry_after).then_some((left, answer))
    }

    /// How long the service has asked this client to wait beyond what a run waits out, while that pause is in
    /// force: a caller with more work for the same service (the next drive of an organisation) should not start
    /// it, since each of its requests would fail at once.
    #[must_use]
    pub fn told_to_wait_for(&self) -> Option<Duration> {
        self.long_pause().map(|(left, _)| left)
    }

    /// Wait at the client's gate (throttle pauses, rate-limit spacing) before sending.
    ///
    /// # Errors
    /// [`GraphError::ToldToWait`], at once, while a pause longer than the policy waits out is in force: the
    /// request that was told so has already given up and stopped its run, and any other request (the crawl's
    /// next page, a transfer just starting) waiting there for half an hour would only hold that run's end,
    /// out of reach of Ctrl-C.
    pub(super) async fn pass_gate(&self) -> Result<(), GraphError> {
        if let Some((left, answer)) = self.long_pause() {
            return Err(GraphError::ToldToWait {
                wait: left,
                until: chrono::Utc::now() + left,
                answer,
            });
        }
        if self.inner.gate.wait().await {
            self.inner.paced.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `RateLimit-*` headers arrive once 80 % of the budget is used: slow down before running into a 429.
    pub(super) fn watch_rate_limit(&self, headers: &HeaderMap) {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let remaining = number("ratelimit-remaining");
        match rate_limit_pace(
            remaining,
            number("ratelimit-limit"),
            number("ratelimit-reset"),
        ) {
            Some(Pace::Pause(wait)) => {
                self.add_pause(wait);
                tracing::info!(
                    remaining,
                    wait_s = wait.as_secs(),
                    "rate limit nearly spent: pausing until it resets"
                );
            }
            Some(Pace::Spread { spacing, window }) => {
                self.inner.gate.space(spacing, window);
                tracing::debug!(
                    remaining,
                    spacing_ms = spacing.as_millis() as u64,
                    "rate limit mostly spent: spreading requests"
                );
            }
            None => {}
        }
    }

    fn add_pause(&self, wait: Duration) {
        let extended = self.inner.gate.pause(wait);
        self.inner
            .throttle_wait_micros
            .fetch_add(extended.as_micros() as u64, Ordering::Relaxed);
        if !extended.is_zero()
            && let (Some(hook), Some(left)) =
                (self.inner.pause_hook.get(), self.inner.gate.paused_for())
        {
            hook(std::time::SystemTime::now() + left);
        }
    }

    /// Have `hook` told the end of every throttle pause as it starts or grows, so a caller can keep it
    /// beyond this process: the service's `Retry-After` holds for the next run too. Set once; later calls
    /// are ignored.
    pub(crate) fn on_pause(&self, hook: super::PauseHook) {
        let _ = self.inner.pause_hook.set(hook);
    }

    /// Send nothing for `wait` from now: the service asked an earlier run to wait that long. Not counted
    /// as a throttle event of this client.
    pub(crate) fn hold_for(&self, wait: Duration) {
        self.inner.gate.pause(wait);
    }

    /// The longest `Retry-After` a request waits out; a longer one stops the request
    /// ([`GraphError::ToldToWait`]).
    pub(crate) fn longest_wait(&self) -> Duration {
        self.inner.policy.max_retry_after
    }

    pub(super) fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// `Retry-After` of an answer.
pub(super) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Most of an error answer's body, or nothing if it does not come in time.
pub(super) async fn read_error_body(response: reqwest::Response, timeout: Duration) -> Bytes {
    match tokio::time::timeout(timeout, read_capped(response, MAX_ERROR_BODY_BYTES)).await {
        Ok(Ok(body)) => body,
        _ => Bytes::new(),
    }
}

/// The most of a JSON answer that is read: a page of 1,000 items is about a megabyte. A host that sends more
/// (a proxy streaming something else, a wrong `--graph-url`) has the rest cut off, so the answer fails to
/// decode instead of growing the process's memory without end.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The most of an error's body that is read: what names the error is its first few hundred bytes.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The body of `response`, cut off after `cap` bytes.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, reqwest::Error> {
    let declared = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut body = bytes::BytesMut::with_capacity(declared.min(cap));
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            tracing::warn!(
                cap,
                "an answer longer than any the service sends was cut off"
            );
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Every distinct cause of an error, outermost first: `error sending request: connection closed`.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

/// The innermost cause, which says what really happened (`connection refused`), without the
/// `(os error 111)` noise.
fn innermost(e: &dyn std::error::Error) -> String {
    let mut last = e;
    while let Some(cause) = last.source() {
        last = cause;
    }
    let text = last.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}
