//! File content: where a file's bytes come from ([`ContentSource`]), and streaming them with `Range`.
//!
//! `GET …/content` on Graph normally answers 302 to a pre-authenticated [`DownloadUrl`] on another host,
//! which is fetched from a separate HTTP client that never carries the bearer token (the URL itself is the
//! credential). Some tenants answer otherwise, and both are handled: a 200 with the bytes from the Graph host
//! itself (streamed as they come, with the token, which belongs to that host), and a 302 without `Location`
//! (the item's `@microsoft.graph.downloadUrl` is asked for instead). The body stream enforces the read-idle
//! timeout.
//!
//! A download URL is shown by its host alone, everywhere (errors, logs, `Debug`): its path has carried the
//! credential on consumer `OneDrive` (`/y4m…/name`) and its query does on every flavour.
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
use super::transport::read_error_body;
use super::{GraphClient, encode_id};
use crate::ids::{DriveId, ItemId};

/// A pre-authenticated download URL. Its path and query can both be the credential: `Debug`, `Display`
/// and `DownloadUrl::redacted` show only the host (and port); `DownloadUrl::expose` is for making the
/// request. It expires within the hour.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DownloadUrl(String);

impl DownloadUrl {
    /// Wrap a URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The full URL, secret included: for the request only, never for a log or a message.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The host (and port, when one is given): all a message or a log may show of the URL.
    pub(crate) fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => match (u.host_str(), u.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                (None, _) => "the download host".to_owned(),
            },
            Err(_) => "the download host".to_owned(),
        }
    }

    fn host(&self) -> String {
        self.redacted()
    }

    /// `location` (absolute, or relative to this URL) as a download URL.
    fn join(&self, location: &str) -> Option<DownloadUrl> {
        let base = url::Url::parse(&self.0).ok()?;
        let next = base.join(location).ok()?;
        matches!(next.scheme(), "http" | "https").then(|| DownloadUrl(next.into()))
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

/// The item whose `/content` serves its bytes from the Graph host itself (asked with the bearer token,
/// which that host is owed).
#[derive(Clone, PartialEq, Eq)]
pub struct GraphContent {
    drive: DriveId,
    item: ItemId,
    infected_ok: bool,
}

/// Where a file's bytes are fetched from, as the last answer said.
#[derive(Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// A pre-authenticated URL on a download host: asked without the bearer token.
    Url(DownloadUrl),
    /// The item's `/content` on the Graph host, which answered with the bytes rather than a redirect.
    Graph(GraphContent),
}

impl std::fmt::Debug for ContentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentSource::Url(url) => write!(f, "Url({})", url.redacted()),
            ContentSource::Graph(g) => write!(f, "Graph(/content of item {})", g.item),
        }
    }
}

/// How `/content` answered.
enum ContentAnswer {
    /// The bytes themselves (200 or 206).
    Body(Download),
    /// A redirect to a pre-authenticated URL.
    Location(DownloadUrl),
    /// A redirect without `Location`.
    NoLocation,
}

/// Redirects a download host may send before the bytes (each to another pre-authenticated URL).
const MAX_DOWNLOAD_REDIRECTS: u32 = 5;

/// Attempts of one download request that ends in a server error (5xx other than 503): a host that answers
/// every request so has failed, and the file is better failed soon (and the run stopped, if every file fares
/// the same) than retried for minutes. Throttling (429/503) keeps the policy's own, larger budget.
const DOWNLOAD_SERVER_ERROR_ATTEMPTS: u32 = 3;

/// A download's body: chunks as they arrive; an error ends it.
pub type ByteStream = BoxStream<'static, Result<Bytes, GraphError>>;

/// A download whose headers arrived; the bytes follow in `body`.
pub struct Download {
    /// Whether the server honoured the Range (206). On a 200 the body is the whole file from byte 0.
    pub(crate) partial: bool,
    /// The offset of the first byte of `body` (from `Content-Range`; 0 on a 200).
    pub start: u64,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// The body's length, when the server said.
    pub(crate) content_length: Option<u64>,
    /// The bytes. A gap longer than the read-idle timeout ends it with [`GraphError::Stalled`].
    pub(crate) body: ByteStream,
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
    /// without following it, or, when the 302 has no `Location`, the item's `@microsoft.graph.downloadUrl`.
    /// Resolve just before downloading; the URL lasts an hour at most.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>. With `infected_ok` a
    /// malware-flagged file is asked for anyway (`AVOverride=1`); only business tenants that allow it honour
    /// this, elsewhere the answer stays 403 `malwareDetected`.
    ///
    /// # Errors
    /// The item's own refusals come back as [`GraphError::Http`]: 403 `malwareDetected`, 404 for a `OneNote`
    /// package. A `/content` that answers with the bytes themselves is [`GraphError::Unexpected`] here: fetch
    /// with [`GraphClient::open_content`], which takes them.
    #[tracing::instrument(skip_all, fields(drive = %drive, item = %item, infected_ok))]
    #[cfg(test)]
    pub(crate) async fn content_url(
        &self,
        drive: &DriveId,
        item: &ItemId,
        infected_ok: bool,
    ) -> Result<DownloadUrl, GraphError> {
        let what = format!("resolving the download of item {item}");
        let idle = self.inner.options.read_idle_timeout;
        let target = GraphContent {
            drive: drive.clone(),
            item: item.clone(),
            infected_ok,
        };
        match self.ask_content(&target, 0, None, idle).await? {
            ContentAnswer::Location(url) => Ok(url),
            ContentAnswer::NoLocation => self.listed_download_url(drive, item).await,
            ContentAnswer::Body(_) => Err(GraphError::Unexpected {
                what,
                reason: "HTTP 200 with the content where a redirect to it was expected".to_owned(),
            }),
        }
    }

    /// Start fetching an item's bytes `from..=to` (to the end when `to` is `None`) through its `/content`,
    /// whichever way it answers: a redirect is followed to the download host (without the bearer token), a
    /// redirect without `Location` is replaced by the item's `@microsoft.graph.downloadUrl`, and bytes
    /// served by `/content` itself are taken as they come (a `Range` may be honoured with 206 or ignored with
    /// 200: check `partial` and `start`). Returns where the bytes came from, so the rest of the file can be
    /// asked of the same source with [`GraphClient::fetch`].
    ///
    /// # Errors
    /// As [`GraphClient::content_url`] and [`GraphClient::download`].
    #[tracing::instrument(skip_all, fields(drive = %drive, item = %item, from, to = ?to))]
    pub(crate) async fn open_content(
        &self,
        drive: &DriveId,
        item: &ItemId,
        infected_ok: bool,
        from: u64,
        to: Option<u64>,
        idle: Option<Duration>,
    ) -> Result<(ContentSource, Download), GraphError> {
        let idle = idle.unwrap_or(self.inner.options.read_idle_timeout);
        let target = GraphContent {
            drive: drive.clone(),
            item: item.clone(),
            infected_ok,
        };
        let lacks_location = &self.inner.content_lacks_location;
        let url = if lacks_location.load(std::sync::atomic::Ordering::Relaxed) {
            self.listed_download_url(drive, item).await?
        } else {
            match self.ask_content(&target, from, to, idle).await? {
                ContentAnswer::Body(download) => {
                    return Ok((ContentSource::Graph(target), download));
                }
                ContentAnswer::Location(url) => url,
                ContentAnswer::NoLocation => {
                    if !lacks_location.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::info!(
                            "the service redirects /content without a Location; downloads ask each item for its \
                             download URL instead"
                        );
                    }
                    self.listed_download_url(drive, item).await?
                }
            }
        };
        let download = self.fetch_url(Some(item), &url, from, to, idle).await?;
        Ok((ContentSource::Url(url), download))
    }

    /// Fetch bytes `from..=to` of `source` (what `GraphClient::open_content` found). A pre-authenticated
    /// URL is asked directly; Graph's `/content` is asked again, and may answer another way this time.
    ///
    /// # Errors
    /// As `GraphClient::open_content`.
    pub(crate) async fn fetch(
        &self,
        item: &ItemId,
        source: &ContentSource,
        from: u64,
        to: Option<u64>,
        idle: Option<Duration>,
    ) -> Result<(ContentSource, Download), GraphError> {
        match source {
            ContentSource::Url(url) => {
                let idle = idle.unwrap_or(self.inner.options.read_idle_timeout);
                let download = self.fetch_url(Some(item), url, from, to, idle).await?;
                Ok((source.clone(), download))
            }
            ContentSource::Graph(g) => {
                self.open_content(&g.drive, &g.item, g.infected_ok, from, to, idle)
                    .await
            }
        }
    }

    /// The item's `@microsoft.graph.downloadUrl`, for a `/content` redirect that came without `Location`
    /// (onedrive-api-docs #1493, #1587). `GET item` without a select: its default shape carries it.
    async fn listed_download_url(
        &self,
        drive: &DriveId,
        item: &ItemId,
    ) -> Result<DownloadUrl, GraphError> {
        tracing::debug!(item = %item, "/content redirected without a Location; asking the item for its download URL");
        self.item(drive, item)
            .await?
            .download_url
            .ok_or_else(|| GraphError::Unexpected {
                what: format!("resolving the download of item {item}"),
                reason: "the service redirected without a Location header, and the item has no \
                         @microsoft.graph.downloadUrl; it is tried again on the next run"
                    .to_owned(),
            })
    }

    /// `GET …/content` with the bearer token and the `Range`, under the retry policy, redirects not followed.
    async fn ask_content(
        &self,
        target: &GraphContent,
        from: u64,
        to: Option<u64>,
        idle: Duration,
    ) -> Result<ContentAnswer, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}/content{}",
            encode_id(target.drive.as_str()),
            encode_id(target.item.as_str()),
            if target.infected_ok {
                "?AVOverride=1"
            } else {
                ""
            }
        ));
        let what = format!("downloading item {} from the Graph host", target.item);
        let timeout = self.inner.options.request_timeout;
        let host = self
            .inner
            .base
            .host_str()
            .unwrap_or("the Graph host")
            .to_owned();
        let mut tally = super::transport::Tally::default();
        let mut refreshed = false;
        loop {
            self.pass_gate().await?;
            let token = self.inner.tokens.access_token().await?;
            self.count_request();
            let request = with_range(
                self.inner.api.get(&url).bearer_auth(token.expose()),
                from,
                to,
            );
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
                    tracing::debug!(status, "/content answered");
                    self.watch_rate_limit(response.headers());
                    match status {
                        200 | 206 => {
                            return Self::start_download(response, what, idle)
                                .map(ContentAnswer::Body);
                        }
                        416 => {
                            let total = response
                                .headers()
                                .get(header::CONTENT_RANGE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_content_range)
                                .and_then(|r| r.total);
                            return Err(GraphError::RangeNotSatisfiable { from, total });
                        }
                        300..=399 => {
                            let location = response
                                .headers()
                                .get(header::LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            return Ok(match location {
                                None => ContentAnswer::NoLocation,
                                Some(location) => ContentAnswer::Location(resolve_location(
                                    &url, &location, &what,
                                )?),
                            });
                        }
                        _ if response.status().is_success() => {
                            return Err(GraphError::Unexpected {
                                what,
                                reason: format!(
                                    "HTTP {status} where the content or a redirect to it was expected"
                                ),
                            });
                        }
                        _ => {
                            let headers = response.headers().clone();
                            let body = read_error_body(response, timeout).await;
                            Self::http_failure(&what, status, &headers, &body, refreshed)
                        }
                    }
                }
            };
            if failure.0 == (super::retry::Outcome::Unauthorized { refreshed: false }) {
                refreshed = true;
                self.inner.tokens.reject(&token).await?;
                continue;
            }
            self.wait_before_retry(&mut tally, failure).await?;
        }
    }

    /// GET a pre-authenticated URL from byte `from` on (`Range: bytes={from}-` when `from > 0`), without the
    /// bearer token, under the retry policy until the headers arrive. The caller checks `partial` and
    /// `start`: a server may ignore the Range and send the whole file.
    ///
    /// # Errors
    /// [`GraphError::DownloadUrlExpired`] on 401/403/404/410 (resolve a fresh URL and resume: not a failure),
    /// [`GraphError::RangeNotSatisfiable`] on 416.
    pub async fn download(&self, url: &DownloadUrl, from: u64) -> Result<Download, GraphError> {
        self.download_with_idle(url, from, self.inner.options.read_idle_timeout)
            .await
    }

    /// [`GraphClient::download`], with `idle` as the stall timeout of the body (no bytes for that long ends
    /// it with [`GraphError::Stalled`]) instead of the client's `read_idle_timeout`.
    pub(crate) async fn download_with_idle(
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
    pub(crate) async fn download_range(
        &self,
        url: &DownloadUrl,
        from: u64,
        to: Option<u64>,
        idle: Option<Duration>,
    ) -> Result<Download, GraphError> {
        let idle = idle.unwrap_or(self.inner.options.read_idle_timeout);
        self.fetch_url(None, url, from, to, idle).await
    }

    /// [`GraphClient::download_range`], naming `item` in its errors. Redirects of the download host are
    /// followed here (never by the HTTP client, which would log the URLs), at most
    /// [`MAX_DOWNLOAD_REDIRECTS`] of them.
    #[tracing::instrument(skip_all, fields(host = %url, item = ?item.map(ItemId::as_str), from, to = ?to))]
    async fn fetch_url(
        &self,
        item: Option<&ItemId>,
        url: &DownloadUrl,
        from: u64,
        to: Option<u64>,
        idle: Duration,
    ) -> Result<Download, GraphError> {
        let mut url = url.clone();
        let what = |url: &DownloadUrl| match item {
            Some(item) => format!("downloading item {item} from {url}"),
            None => format!("downloading from {url}"),
        };
        let timeout = self.inner.options.request_timeout;
        let mut tally = super::transport::Tally::default();
        let mut redirects = 0u32;
        loop {
            let what = what(&url);
            self.pass_gate().await?;
            self.count_request();
            let request = with_range(self.inner.downloads.get(url.expose()), from, to);
            // Only the wait for the headers is bounded here; the body has the read-idle timeout instead.
            let failure = match tokio::time::timeout(timeout, request.send()).await {
                Err(_) => (
                    super::retry::Outcome::Network,
                    GraphError::Timeout {
                        what: what.clone(),
                        timeout,
                    },
                ),
                Ok(Err(e)) => self.transport_failure(&what, e, &url.host()),
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    tracing::debug!(status, "download answered");
                    self.watch_rate_limit(response.headers());
                    match status {
                        200 | 206 => return Self::start_download(response, what, idle),
                        // The service does not document how a dead URL answers; 404 too (an expired
                        // signature, or the blob of a version replaced since the listing) is resolved afresh
                        // through `/content`, which tells a file really gone by its own 404.
                        401 | 403 | 404 | 410 => {
                            return Err(GraphError::DownloadUrlExpired {
                                status,
                                host: url.host(),
                            });
                        }
                        416 => {
                            let total = response
                                .headers()
                                .get(header::CONTENT_RANGE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_content_range)
                                .and_then(|r| r.total);
                            return Err(GraphError::RangeNotSatisfiable { from, total });
                        }
                        301 | 302 | 303 | 307 | 308 => {
                            let next = response
                                .headers()
                                .get(header::LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|l| url.join(l));
                            match next {
                                Some(next) if redirects < MAX_DOWNLOAD_REDIRECTS => {
                                    redirects += 1;
                                    url = next;
                                    continue;
                                }
                                _ => {
                                    return Err(GraphError::Unexpected {
                                        what,
                                        reason: format!(
                                            "HTTP {status}: a redirect without a usable Location, or more than {MAX_DOWNLOAD_REDIRECTS} in a row"
                                        ),
                                    });
                                }
                            }
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
            if failure.0 == super::retry::Outcome::ServerError
                && tally.failures() + 1 >= DOWNLOAD_SERVER_ERROR_ATTEMPTS
            {
                return Err(failure.1);
            }
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

/// `Range: bytes={from}-{to}` (to the end when `to` is `None`; nothing from byte 0 to the end).
fn with_range(
    request: reqwest::RequestBuilder,
    from: u64,
    to: Option<u64>,
) -> reqwest::RequestBuilder {
    match to {
        Some(to) => request.header(header::RANGE, format!("bytes={from}-{to}")),
        None if from > 0 => request.header(header::RANGE, format!("bytes={from}-")),
        None => request,
    }
}

/// A `Location` (absolute in practice; a relative one is resolved against the request) as a download URL.
fn resolve_location(request: &str, location: &str, what: &str) -> Result<DownloadUrl, GraphError> {
    url::Url::parse(request)
        .and_then(|base| base.join(location))
        .map_err(|e| e.to_string())
        .and_then(|u| {
            if matches!(u.scheme(), "http" | "https") {
                Ok(DownloadUrl::new(u.into()))
            } else {
                Err(format!("the scheme {} is not http(s)", u.scheme()))
            }
        })
        .map_err(|reason| GraphError::Unexpected {
            what: what.to_owned(),
            reason: format!("the Location header is not a download URL: {reason}"),
        })
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
    fn a_download_url_shows_its_host_only() {
        let url = DownloadUrl::new(
            "https://contoso-my.sharepoint.com/personal/a/_layouts/15/download.aspx?UniqueId=1&tempauth=SECRET"
                .to_owned(),
        );
        let shown = format!("{url} {url:?} {}", url.redacted());
        assert!(
            !shown.contains("SECRET") && !shown.contains("UniqueId") && !shown.contains("personal"),
            "{shown}"
        );
        assert_eq!(url.to_string(), "contoso-my.sharepoint.com");
        // Consumer URLs have carried the credential as a path segment.
        let url = DownloadUrl::new("http://127.0.0.1:8080/y4mSECRET/a.jpg?download".to_owned());
        assert_eq!(
            format!("{url} {url:?}"),
            "127.0.0.1:8080 DownloadUrl(127.0.0.1:8080)"
        );
        assert_eq!(
            format!("{:?}", DownloadUrl::new("not a url?x=1".into())),
            "DownloadUrl(the download host)"
        );
        let source = ContentSource::Url(url);
        assert!(!format!("{source:?}").contains("SECRET"));
    }
}
