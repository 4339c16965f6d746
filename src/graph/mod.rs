//! The Microsoft Graph seam: typed calls for the dozen endpoints a backup needs, one retry policy, a
//! shared throttle gate, and downloads from pre-authenticated URLs without the bearer token.
//!
//! It knows HTTP and JSON only: nothing of `SQLite`, local paths, filters or progress. It returns typed items
//! and byte streams; tokens come from an [`auth::TokenSource`](crate::auth::TokenSource).

mod error;
mod model;
mod retry;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{self, HeaderMap};
use serde::de::DeserializeOwned;

pub use error::{GraphError, parse_error_body};
pub use model::{
    DownloadUrl, Drive, DriveItem, FileFacet, FileSystemInfo, FolderFacet, Hashes, ItemReference,
    PackageFacet, Page, PhotoFacet, Quota, RemoteItem, SpecialFolder, User,
};
pub use retry::{Attempt, RetryPolicy, ThrottleGate, classify_status, parse_retry_after};

use crate::auth::TokenSource;
use crate::ids::{DriveId, ItemId};

/// The fields a listing asks for: only what the manifest stores.
pub const ITEM_SELECT: &str = "id,name,size,eTag,cTag,createdDateTime,lastModifiedDateTime,parentReference,file,\
folder,package,remoteItem,fileSystemInfo,photo,video,root,deleted,specialFolder,malware";

/// Items per listing page: the most Graph accepts.
pub const PAGE_SIZE: u32 = 1000;

/// Path segments are percent-encoded one by one; everything but RFC 3986 unreserved characters is encoded
/// (`+` included: one server read a literal `+` as a space).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How to reach Graph.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Base URL, e.g. `https://graph.microsoft.com/v1.0`.
    pub base_url: String,
    /// `User-Agent`, labelled as Microsoft asks (`ISV|company|app/version`) so the traffic is prioritised.
    pub user_agent: String,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a JSON request to complete.
    pub request_timeout: Duration,
    /// A download receiving no bytes for this long is stalled.
    pub read_idle_timeout: Duration,
    /// The retry policy.
    pub retry: RetryPolicy,
}

impl Default for GraphOptions {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".to_owned(),
            user_agent: format!("ISV|odbackup|odbackup/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            read_idle_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Counters of one client's traffic.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ClientStats {
    /// Requests sent (Graph and download hosts).
    pub requests: u64,
    /// Of which retries.
    pub retries: u64,
    /// Times the service throttled us (429/503).
    pub throttle_events: u64,
    /// Total pause imposed by throttling, in milliseconds.
    pub throttle_wait_ms: u64,
}

/// Which drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveSelector {
    /// The signed-in user's own drive.
    Me,
    /// Any drive by ID.
    Id(DriveId),
    /// A user's `OneDrive` (business), by UPN or ID.
    User(String),
    /// A `SharePoint` site's default document library: `host:/sites/name`.
    Site(String),
}

/// A download in progress.
pub struct Download {
    /// Whether the server honoured the Range (206).
    pub partial: bool,
    /// The offset of the first byte of `body`.
    pub start: u64,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// The body's length, when the server said.
    pub content_length: Option<u64>,
    /// The bytes.
    pub body: Pin<Box<dyn Stream<Item = Result<Bytes, GraphError>> + Send>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("partial", &self.partial)
            .field("start", &self.start)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// A Microsoft Graph client. Cheap to clone; clones share connections, the throttle gate and the counters.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    options: GraphOptions,
    base: url::Url,
    /// For Graph: carries the bearer token, never follows redirects (so `/content`'s 302 is ours to read).
    api: reqwest::Client,
    /// For pre-authenticated download URLs: never has an `Authorization` header.
    downloads: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    gate: ThrottleGate,
    requests: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
    throttle_wait_ms: AtomicU64,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.inner.options.base_url)
            .finish_non_exhaustive()
    }
}

enum Expect {
    Json,
    Redirect,
}

impl GraphClient {
    /// A client for `options.base_url`, authenticating with `tokens`.
    pub fn new(options: GraphOptions, tokens: Arc<dyn TokenSource>) -> Result<Self, GraphError> {
        let base = url::Url::parse(&options.base_url).map_err(|e| GraphError::Decode {
            what: "the Graph base URL".to_owned(),
            reason: e.to_string(),
        })?;
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .redirect(redirects)
                .tcp_nodelay(true)
                .pool_max_idle_per_host(64)
                .build()
                .map_err(|e| GraphError::Decode {
                    what: "building the HTTP client".to_owned(),
                    reason: e.without_url().to_string(),
                })
        };
        let api = build(reqwest::redirect::Policy::none())?;
        let downloads = build(reqwest::redirect::Policy::limited(5))?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                base,
                api,
                downloads,
                tokens,
                gate: ThrottleGate::default(),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                throttle_wait_ms: AtomicU64::new(0),
            }),
        })
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> ClientStats {
        let i = &self.inner;
        ClientStats {
            requests: i.requests.load(Ordering::Relaxed),
            retries: i.retries.load(Ordering::Relaxed),
            throttle_events: i.throttles.load(Ordering::Relaxed),
            throttle_wait_ms: i.throttle_wait_ms.load(Ordering::Relaxed),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.inner.options.base_url.trim_end_matches('/')
        )
    }

    /// The signed-in user. See <https://learn.microsoft.com/en-us/graph/api/user-get>.
    pub async fn me(&self) -> Result<User, GraphError> {
        self.get_json("reading the signed-in user", &self.url("/me"))
            .await
    }

    /// A drive. See <https://learn.microsoft.com/en-us/graph/api/drive-get>.
    pub async fn drive(&self, selector: &DriveSelector) -> Result<Drive, GraphError> {
        let path = match selector {
            DriveSelector::Me => "/me/drive".to_owned(),
            DriveSelector::Id(id) => format!("/drives/{}", encode(id.as_str())),
            DriveSelector::User(upn) => format!("/users/{}/drive", encode(upn)),
            DriveSelector::Site(site) => {
                let (host, path) = site.split_once(':').unwrap_or((site.as_str(), ""));
                let site_path = encode_path(path);
                let site_url = if site_path.is_empty() {
                    self.url(&format!("/sites/{}", encode(host)))
                } else {
                    self.url(&format!("/sites/{}:{site_path}", encode(host)))
                };
                let site: serde_json::Value = self
                    .get_json(&format!("finding the site {site}"), &site_url)
                    .await?;
                let id =
                    site.get("id")
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| GraphError::Decode {
                            what: "finding the site".to_owned(),
                            reason: "the answer has no id".to_owned(),
                        })?;
                format!("/sites/{}/drive", encode(id))
            }
        };
        let raw: model::RawDrive = self.get_json("reading the drive", &self.url(&path)).await?;
        Ok(raw.into())
    }

    /// The drive's root folder. See <https://learn.microsoft.com/en-us/graph/api/driveitem-get>.
    pub async fn root(&self, drive: &DriveId) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/root?$select={ITEM_SELECT}",
            encode(drive.as_str())
        ));
        self.get_json("reading the drive root", &url).await
    }

    /// An item by ID.
    pub async fn item(&self, drive: &DriveId, item: &ItemId) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}",
            encode(drive.as_str()),
            encode(item.as_str())
        ));
        self.get_json(&format!("reading item {item}"), &url).await
    }

    /// An item by path from the drive root (`/a/b`). See
    /// <https://learn.microsoft.com/en-us/graph/onedrive-addressing-driveitems>.
    pub async fn item_by_path(&self, drive: &DriveId, path: &str) -> Result<DriveItem, GraphError> {
        let encoded = encode_path(path);
        let url = if encoded.is_empty() {
            self.url(&format!(
                "/drives/{}/root?$select={ITEM_SELECT}",
                encode(drive.as_str())
            ))
        } else {
            self.url(&format!(
                "/drives/{}/root:{encoded}:?$select={ITEM_SELECT}",
                encode(drive.as_str())
            ))
        };
        self.get_json(&format!("reading {path}"), &url).await
    }

    /// A special folder by alias. See <https://learn.microsoft.com/en-us/graph/api/drive-get-specialfolder>.
    pub async fn special_folder(
        &self,
        drive: &DriveId,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/special/{}?$select={ITEM_SELECT}",
            encode(drive.as_str()),
            encode(name)
        ));
        self.get_json(&format!("reading the special folder {name}"), &url)
            .await
    }

    /// One page of a folder's children: the first (`cursor` = `None`) or the one a saved nextLink points at.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-list-children>.
    pub async fn children(
        &self,
        drive: &DriveId,
        folder: &ItemId,
        cursor: Option<&str>,
    ) -> Result<Page, GraphError> {
        let url = match cursor {
            Some(link) => self.same_origin(link)?,
            None => self.url(&format!(
                "/drives/{}/items/{}/children?$top={PAGE_SIZE}&$select={ITEM_SELECT}",
                encode(drive.as_str()),
                encode(folder.as_str())
            )),
        };
        self.get_json(&format!("listing children of item {folder}"), &url)
            .await
    }

    /// One page of changes under `folder`: from scratch, or from a saved nextLink/deltaLink. A 410 becomes
    /// [`GraphError::ResyncRequired`]. See <https://learn.microsoft.com/en-us/graph/api/driveitem-delta>.
    pub async fn delta(
        &self,
        drive: &DriveId,
        folder: &ItemId,
        link: Option<&str>,
    ) -> Result<Page, GraphError> {
        let url = match link {
            Some(link) => self.same_origin(link)?,
            None => self.url(&format!(
                "/drives/{}/items/{}/delta?$top={PAGE_SIZE}&$select={ITEM_SELECT}",
                encode(drive.as_str()),
                encode(folder.as_str())
            )),
        };
        match self
            .get_json(&format!("listing changes under item {folder}"), &url)
            .await
        {
            Err(GraphError::Http { status: 410, .. }) => Err(GraphError::ResyncRequired),
            other => other,
        }
    }

    /// Resolve an item's content to a pre-authenticated URL (the `Location` of `/content`'s 302), without
    /// downloading. See <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>.
    pub async fn content_url(
        &self,
        drive: &DriveId,
        item: &ItemId,
    ) -> Result<DownloadUrl, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}/content",
            encode(drive.as_str()),
            encode(item.as_str())
        ));
        let what = format!("resolving the download of item {item}");
        let response = self.send(&what, &url, Expect::Redirect).await?;
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| DownloadUrl::new(l.to_owned()))
            .ok_or_else(|| GraphError::Decode {
                what,
                reason: format!(
                    "HTTP {} without a Location header",
                    response.status().as_u16()
                ),
            })
    }

    /// GET a pre-authenticated URL from byte `from` on, without the bearer token.
    pub async fn download(&self, url: &DownloadUrl, from: u64) -> Result<Download, GraphError> {
        let what = format!("downloading {}", url.redacted());
        let policy = self.inner.options.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.inner.gate.wait().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self.inner.downloads.get(url.expose());
            if from > 0 {
                request = request.header(header::RANGE, format!("bytes={from}-"));
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::trace!(url = %url, from, status, "download response");
                    if response.status().is_success() {
                        return Ok(self.start_download(response, from));
                    }
                    let retry_after = retry_after_of(response.headers());
                    if matches!(status, 401 | 403 | 410) {
                        return Err(GraphError::DownloadUrlExpired { status });
                    }
                    let body = response.bytes().await.unwrap_or_default();
                    let (code, message) = parse_error_body(&body);
                    let err = GraphError::Http {
                        what: what.clone(),
                        status,
                        code,
                        message,
                        retry_after,
                    };
                    (classify_status(status, retry_after), err)
                }
                Err(e) => self.transport_failure(&what, e),
            };
            self.back_off(attempt, policy, outcome)?.await;
        }
    }

    fn start_download(&self, response: reqwest::Response, from: u64) -> Download {
        let partial = response.status().as_u16() == 206;
        let content_length = response.content_length();
        let (start, total) = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .map_or((0, content_length), |(s, t)| (s, t));
        let start = if partial { start } else { 0 };
        let _ = from;
        let idle = self.inner.options.read_idle_timeout;
        let stream = response.bytes_stream();
        let body = futures_util::stream::unfold(Some(Box::pin(stream)), move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
                Ok(Some(Err(e))) => Some((
                    Err(GraphError::Network {
                        what: "reading the download".to_owned(),
                        reason: error_chain(&e.without_url()),
                    }),
                    None,
                )),
                Ok(None) => None,
                Err(_) => Some((
                    Err(GraphError::Stalled {
                        secs: idle.as_secs(),
                    }),
                    None,
                )),
            }
        });
        Download {
            partial,
            start,
            total,
            content_length,
            body: Box::pin(body),
        }
    }

    /// Only links on the configured Graph origin are followed: the bearer token goes nowhere else.
    fn same_origin(&self, link: &str) -> Result<String, GraphError> {
        let parsed = url::Url::parse(link).map_err(|e| GraphError::Decode {
            what: "following a paging link".to_owned(),
            reason: e.to_string(),
        })?;
        let base = &self.inner.base;
        if parsed.scheme() != base.scheme()
            || parsed.host_str() != base.host_str()
            || parsed.port_or_known_default() != base.port_or_known_default()
        {
            return Err(GraphError::ForeignLink {
                host: parsed.host_str().unwrap_or("?").to_owned(),
            });
        }
        Ok(link.to_owned())
    }

    async fn get_json<T: DeserializeOwned>(&self, what: &str, url: &str) -> Result<T, GraphError> {
        let response = self.send(what, url, Expect::Json).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        serde_json::from_slice(&body).map_err(|e| GraphError::Decode {
            what: what.to_owned(),
            reason: format!("invalid JSON: {e}"),
        })
    }

    /// Send a GET to Graph under the retry policy: throttle gate, token, one refresh on 401, backoff.
    async fn send(
        &self,
        what: &str,
        url: &str,
        expect: Expect,
    ) -> Result<reqwest::Response, GraphError> {
        let policy = self.inner.options.retry;
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.inner.gate.wait().await;
            let token = self.inner.tokens.access_token().await?;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .inner
                .api
                .get(url)
                .bearer_auth(token.expose())
                .timeout(self.inner.options.request_timeout)
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => {
                    let status = response.status();
                    tracing::trace!(what, status = status.as_u16(), attempt, "graph response");
                    self.watch_rate_limit(response.headers());
                    let wanted = match expect {
                        Expect::Json => status.is_success(),
                        Expect::Redirect => status.is_redirection(),
                    };
                    if wanted {
                        return Ok(response);
                    }
                    let retry_after = retry_after_of(response.headers());
                    let body = response.bytes().await.unwrap_or_default();
                    let (code, message) = parse_error_body(&body);
                    let code_u16 = status.as_u16();
                    if code_u16 == 401 && !refreshed {
                        // The token expired or was revoked: refresh once (shared by all workers), then retry.
                        refreshed = true;
                        attempt -= 1;
                        self.inner.tokens.reject(&token).await?;
                        continue;
                    }
                    let err = GraphError::Http {
                        what: what.to_owned(),
                        status: code_u16,
                        code,
                        message: if status.is_success() {
                            format!("expected a redirect, got HTTP {code_u16}")
                        } else {
                            message
                        },
                        retry_after,
                    };
                    (classify_status(code_u16, retry_after), err)
                }
                Err(e) => self.transport_failure(what, e),
            };
            self.back_off(attempt, policy, outcome)?.await;
        }
    }

    /// Decide whether to retry; returns the wait (throttling pauses every request of this client).
    fn back_off(
        &self,
        attempt: u32,
        policy: RetryPolicy,
        (outcome, err): (Attempt, GraphError),
    ) -> Result<impl Future<Output = ()> + use<>, GraphError> {
        let Some(delay) = policy.next_delay(attempt, outcome, rand::random::<f64>()) else {
            return Err(err);
        };
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
        if let Attempt::Throttled(_) = outcome {
            self.inner.throttles.fetch_add(1, Ordering::Relaxed);
            self.inner
                .throttle_wait_ms
                .fetch_add(delay.as_millis() as u64, Ordering::Relaxed);
            self.inner.gate.pause(delay);
            tracing::info!(wait_ms = delay.as_millis() as u64, error = %err, "throttled; pausing every request");
        } else {
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
        }
        Ok(tokio::time::sleep(delay))
    }

    /// `RateLimit-Remaining` arrives once 80 % of the budget is used; when it is nearly spent, pause until
    /// the window resets instead of running into a 429.
    fn watch_rate_limit(&self, headers: &HeaderMap) {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        if let (Some(remaining), Some(limit), Some(reset)) = (
            number("ratelimit-remaining"),
            number("ratelimit-limit"),
            number("ratelimit-reset"),
        ) && limit > 0
            && remaining * 20 <= limit
        {
            let wait = Duration::from_secs(reset.min(60));
            self.inner.gate.pause(wait);
            tracing::info!(
                remaining,
                limit,
                wait_s = wait.as_secs(),
                "rate limit nearly spent; slowing down"
            );
        }
    }

    fn transport_failure(&self, what: &str, e: reqwest::Error) -> (Attempt, GraphError) {
        let err = self.transport_error(what, e);
        let attempt = if err.is_connect() {
            Attempt::Unreachable
        } else {
            Attempt::Network
        };
        (attempt, err)
    }

    fn transport_error(&self, what: &str, e: reqwest::Error) -> GraphError {
        // Never let a URL (with a download URL's credential in its query) into an error message.
        let e = e.without_url();
        if e.is_timeout() {
            GraphError::Timeout {
                what: what.to_owned(),
            }
        } else if e.is_connect() {
            GraphError::Connect {
                host: self.inner.base.host_str().unwrap_or("?").to_owned(),
                reason: error_chain(&e),
            }
        } else {
            GraphError::Network {
                what: what.to_owned(),
                reason: error_chain(&e),
            }
        }
    }
}

fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The innermost causes of a transport error, which say what really happened ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
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

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `/a b/c+d` → `/a%20b/c%2Bd`; empty for the root.
fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |mut out, s| {
            out.push('/');
            out.push_str(&encode(s));
            out
        })
}

/// `bytes 100-199/1000` → `(100, Some(1000))`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_segment_by_segment() {
        assert_eq!(
            encode_path("/My Photos/a+b#1/100%"),
            "/My%20Photos/a%2Bb%231/100%25"
        );
        assert_eq!(encode_path("/"), "");
        assert_eq!(encode_path("日本"), "/%E6%97%A5%E6%9C%AC");
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("junk"), None);
    }

    #[test]
    fn foreign_links_are_refused() {
        let client = GraphClient::new(
            GraphOptions {
                base_url: "http://127.0.0.1:8080/v1.0".to_owned(),
                ..GraphOptions::default()
            },
            Arc::new(crate::auth::StaticTokenSource::new("t".to_owned())),
        )
        .unwrap();
        assert!(
            client
                .same_origin("http://127.0.0.1:8080/v1.0/x?$skiptoken=1")
                .is_ok()
        );
        assert!(matches!(
            client.same_origin("http://evil.example/v1.0/x"),
            Err(GraphError::ForeignLink { .. })
        ));
        assert!(client.same_origin("http://127.0.0.1:9090/v1.0/x").is_err());
    }
}
