//! File content: resolving `/content`'s 302 to a pre-authenticated [`DownloadUrl`], and streaming it with
//! `Range` from a separate HTTP client that never carries the bearer token (download hosts are other hosts
//! by design; the URL's query is the credential). The body stream enforces the read-idle timeout.
//!
//! This module knows nothing of part files, hashing or the manifest: it hands out bytes.
//! See <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::header;
use serde::Deserialize;

use super::error::GraphError;
use super::transport::{Expect, read_error_body};
use super::{GraphClient, encode_id};
use crate::ids::{DriveId, ItemId};

/// A pre-authenticated download URL. Its query string is a credential: `Debug` and `Display` show only the
/// scheme, host and path; [`DownloadUrl::expose`] is for making the request. It expires within the hour.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DownloadUrl(String);

impl DownloadUrl {
    /// Wrap a URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The full URL, secret included: for the request only, never for a log or a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Scheme, host and path only.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            ),
            Err(_) => "<download url>".to_owned(),
        }
    }

    fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "the download host".to_owned())
    }
}

impl std::fmt::Debug for DownloadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DownloadUrl({})", self.redacted())
    }
}

impl std::fmt::Display for DownloadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A download's body: chunks as they arrive; an error ends it.
pub type ByteStream = BoxStream<'static, Result<Bytes, GraphError>>;

/// A download whose headers arrived; the bytes follow in `body`.
pub struct Download {
    /// Whether the server honoured the Range (206). On a 200 the body is the whole file from byte 0.
    pub partial: bool,
    /// The offset of the first byte of `body` (from `Content-Range`; 0 on a 200).
    pub start: u64,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// The body's length, when the server said.
    pub content_length: Option<u64>,
    /// The bytes. A gap longer than the read-idle timeout ends it with [`GraphError::Stalled`].
    pub body: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("partial", &self.partial)
            .field("start", &self.start)
            .field("total", &self.total)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Resolve an item's content to a pre-authenticated URL: the `Location` of `/content`'s 302, read
    /// without following it. Resolve just before downloading; the URL lasts an hour at most.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>.
    ///
    /// # Errors
    /// The item's own refusals come back as [`GraphError::Http`]: 403 `malwareDetected`, 404 for a `OneNote`
    /// package.
    pub async fn content_url(
        &self,
        drive: &DriveId,
        item: &ItemId,
    ) -> Result<DownloadUrl, GraphError> {
        self.content_url_with(drive, item, false).await
    }

    /// [`GraphClient::content_url`], asking for a malware-flagged file anyway when `infected_ok`
    /// (`AVOverride=1`). Only business tenants that allow it honour this; elsewhere the answer stays 403
    /// `malwareDetected`.
    #[tracing::instrument(skip_all, fields(drive = %drive, item = %item, infected_ok))]
    pub async fn content_url_with(
        &self,
        drive: &DriveId,
        item: &ItemId,
        infected_ok: bool,
    ) -> Result<DownloadUrl, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}/content{}",
            encode_id(drive.as_str()),
            encode_id(item.as_str()),
            if infected_ok { "?AVOverride=1" } else { "" }
        ));
        let what = format!("resolving the download of item {item}");
        let answer = self.call(&what, &url, Expect::Redirect).await?;
        let location = answer
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| GraphError::Unexpected {
                what: what.clone(),
                reason: format!("HTTP {} without a Location header", answer.status),
            })?;
        // Absolute in practice; a relative one is resolved against the request.
        if url::Url::parse(location).is_ok() {
            return Ok(DownloadUrl::new(location.to_owned()));
        }
        url::Url::parse(&url)
            .and_then(|base| base.join(location))
            .map(|u| DownloadUrl::new(u.into()))
            .map_err(|e| GraphError::Unexpected {
                what,
                reason: format!("the Location header is not a URL: {e}"),
            })
    }

    /// GET a pre-authenticated URL from byte `from` on (`Range: bytes={from}-` when `from > 0`), without the
    /// bearer token, under the retry policy until the headers arrive. The caller checks `partial` and
    /// `start`: a server may ignore the Range and send the whole file.
    ///
    /// # Errors
    /// [`GraphError::DownloadUrlExpired`] on 401/403/410 (resolve a fresh URL and resume: not a failure),
    /// [`GraphError::RangeNotSatisfiable`] on 416.
    pub async fn download(&self, url: &DownloadUrl, from: u64) -> Result<Download, GraphError> {
        self.download_with_idle(url, from, self.inner.options.read_idle_timeout)
            .await
    }

    /// [`GraphClient::download`], with `idle` as the stall timeout of the body (no bytes for that long ends
    /// it with [`GraphError::Stalled`]) instead of the client's `read_idle_timeout`.
    pub async fn download_with_idle(
        &self,
        url: &DownloadUrl,
        from: u64,
        idle: Duration,
    ) -> Result<Download, GraphError> {
        self.download_range(url, from, None, Some(idle)).await
    }

    /// GET bytes `from..=to` of a pre-authenticated URL (`Range: bytes={from}-{to}`; to the end when `to` is
    /// `None`), as [`GraphClient::download_with_idle`] does (`idle`: the stall timeout, the client's
    /// `read_idle_timeout` when `None`). Several of these on one URL fetch one file in
    /// parallel pieces, with no Graph request beyond the one that resolved the URL. The caller checks
    /// `partial` and `start`: a server may ignore the Range and send the whole file.
    ///
    /// # Errors
    /// As [`GraphClient::download`].
    #[tracing::instrument(skip_all, fields(url = %url, from = from, to = ?to))]
    pub async fn download_range(
        &self,
        url: &DownloadUrl,
        from: u64,
        to: Option<u64>,
        idle: Option<Duration>,
    ) -> Result<Download, GraphError> {
        let idle = idle.unwrap_or(self.inner.options.read_idle_timeout);
        let what = format!("downloading {url}");
        let host = url.host();
        let timeout = self.inner.options.request_timeout;
        let mut tally = super::transport::Tally::default();
        loop {
            self.pass_gate().await;
            self.count_request();
            let mut request = self.inner.downloads.get(url.expose());
            match to {
                Some(to) => {
                    request = request.header(header::RANGE, format!("bytes={from}-{to}"));
                }
                None if from > 0 => {
                    request = request.header(header::RANGE, format!("bytes={from}-"));
                }
                None => {}
            }
            // Only the wait for the headers is bounded here; the body has the read-idle timeout instead.
            let failure = match tokio::time::timeout(timeout, request.send()).await {
                Err(_) => (
                    super::retry::Outcome::Network,
                    GraphError::Timeout {
                        what: what.clone(),
                        timeout,
                    },
                ),
                Ok(Err(e)) => self.transport_failure(&what, e, &host),
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    tracing::debug!(status, "download answered");
                    self.watch_rate_limit(response.headers());
                    match status {
                        200 | 206 => return Self::start_download(response, what, idle),
                        401 | 403 | 410 => return Err(GraphError::DownloadUrlExpired { status }),
                        416 => {
                            let total = response
                                .headers()
                                .get(header::CONTENT_RANGE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_content_range)
                                .and_then(|r| r.total);
                            return Err(GraphError::RangeNotSatisfiable { from, total });
                        }
                        _ if response.status().is_success() => {
                            return Err(GraphError::Unexpected {
                                what,
                                reason: format!("HTTP {status} where 200 or 206 was expected"),
                            });
                        }
                        _ => {
                            let headers = response.headers().clone();
                            let body = read_error_body(response, timeout).await;
                            Self::http_failure(&what, status, &headers, &body, true)
                        }
                    }
                }
            };
            self.wait_before_retry(&mut tally, failure).await?;
        }
    }

    fn start_download(
        response: reqwest::Response,
        what: String,
        idle: Duration,
    ) -> Result<Download, GraphError> {
        let partial = response.status().as_u16() == 206;
        let content_length = response.content_length();
        let (start, total) = if partial {
            let range = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some(ContentRange {
                    start: Some(start),
                    total,
                }) => (start, total),
                _ => {
                    return Err(GraphError::Unexpected {
                        what,
                        reason: "HTTP 206 without a usable Content-Range".to_owned(),
                    });
                }
            }
        } else {
            (0, content_length)
        };
        Ok(Download {
            partial,
            start,
            total,
            content_length,
            body: idle_limited(response, what, idle),
        })
    }
}

/// The body as a stream that ends with [`GraphError::Stalled`] when no bytes come for `idle`.
fn idle_limited(response: reqwest::Response, what: String, idle: Duration) -> ByteStream {
    let chunks = response.bytes_stream();
    futures_util::stream::unfold(Some(chunks), move |state| {
        let what = what.clone();
        async move {
            let mut chunks = state?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(e))) => Some((
                    Err(GraphError::Network {
                        what,
                        reason: super::transport::error_chain(&e.without_url()),
                    }),
                    None,
                )),
                Ok(None) => None,
                Err(_) => Some((Err(GraphError::Stalled { what, idle }), None)),
            }
        }
    })
    .boxed()
}

/// A parsed `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    /// The first byte sent (`None` for `bytes */total`, as on a 416).
    start: Option<u64>,
    /// The whole size (`None` for `*`).
    total: Option<u64>,
}

/// `bytes 100-199/1000`, `bytes 0-0/*`, `bytes */1000`.
fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => {
            let (start, end) = r.split_once('-')?;
            let start: u64 = start.trim().parse().ok()?;
            let end: u64 = end.trim().parse().ok()?;
            if end < start {
                return None;
            }
            Some(start)
        }
    };
    Some(ContentRange { start, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let r = |start, total| Some(ContentRange { start, total });
        let cases = [
            ("bytes 100-199/1000", r(Some(100), Some(1000))),
            ("bytes 0-0/*", r(Some(0), None)),
            ("bytes */1000", r(None, Some(1000))),
            ("  bytes 5-9/10 ", r(Some(5), Some(10))),
            ("bytes 9-5/10", None),
            ("bytes 5-/10", None),
            ("items 0-1/2", None),
            ("junk", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_content_range(value), want, "{value}");
        }
    }

    #[test]
    fn a_download_url_never_shows_its_query() {
        let url = DownloadUrl::new(
            "https://contoso-my.sharepoint.com/personal/a/_layouts/15/download.aspx?UniqueId=1&tempauth=SECRET"
                .to_owned(),
        );
        let shown = format!("{url} {url:?} {}", url.redacted());
        assert!(
            !shown.contains("SECRET") && !shown.contains("UniqueId"),
            "{shown}"
        );
        assert_eq!(
            url.to_string(),
            "https://contoso-my.sharepoint.com/personal/a/_layouts/15/download.aspx"
        );
        assert_eq!(
            format!("{:?}", DownloadUrl::new("not a url?x=1".into())),
            "DownloadUrl(<download url>)"
        );
    }
}
