//! The Microsoft Graph seam: typed calls for the endpoints a backup needs, one retry policy with a shared
//! throttle gate, and downloads from pre-authenticated URLs that never see the bearer token.
//!
//! It knows HTTP and JSON only: nothing of `SQLite`, local paths, filters or progress. It returns typed
//! items ([`DriveItem`], [`Page`]) and byte streams ([`Download`]); tokens come from an
//! [`auth::TokenSource`](crate::auth::TokenSource).
//!
//! ```text
//! crawl:    drive(sel) → root / item_by_path / special_folder → children(d, folder, saved nextLink) …
//! download: content_url(d, item) → download(url, from) → body stream   (DownloadUrlExpired → content_url again)
//! ```
//!
//! Every JSON call and the headers of every download go through one policy (`retry.rs`): 429/503 honour
//! `Retry-After` and pause the whole client; other 5xx, timeouts and resets back off with full jitter; a 401
//! refreshes the token once; other 4xx fail at once.

mod content;
mod error;
mod model;
mod paging;
mod retry;
#[cfg(test)]
mod tests;
mod transport;
mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

pub use content::{ByteStream, Download, DownloadUrl};
pub use error::{ErrorBody, GraphError, HttpError};
pub use model::{
    DeletedFacet, Drive, DriveItem, FileFacet, FileSystemInfo, FolderFacet, Hashes, ImageFacet,
    ItemReference, MalwareFacet, PackageFacet, PhotoFacet, Quota, RemoteItem, RootFacet,
    SpecialFolder, User, VideoFacet,
};
pub use paging::{ITEM_SELECT, PAGE_SIZE, Page};
pub use retry::{Outcome, Pace, RetryPolicy};
pub use upload::{
    ConflictBehavior, FragmentBody, FragmentOutcome, SessionStatus, UploadProperties,
    UploadSession, UploadUrl, is_name_taken, is_quota,
};

use crate::auth::TokenSource;
use crate::ids::{DriveId, ItemId};
use retry::ThrottleGate;
use transport::Expect;

/// Characters encoded in a path segment (a file or folder name): everything but RFC 3986 unreserved
/// characters, so `+` becomes `%2B` (one server read a literal `+` as a space) and `/` never appears.
const NAME_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters encoded in an ID segment: as for names, but `!` (personal item IDs, `b!` drive IDs), `,`
/// (composite site IDs) and `@` (UPNs) stay literal, as Graph writes them; all are legal in a path segment.
const ID_SEGMENT: &AsciiSet = &NAME_SEGMENT.remove(b'!').remove(b',').remove(b'@');

/// How to reach Graph, and how patiently.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Base URL, e.g. `https://graph.microsoft.com/v1.0`. Paging links are followed only on its origin.
    pub base_url: String,
    /// `User-Agent`, labelled as Microsoft asks (`ISV|company|app/version`) so the traffic is prioritised.
    pub user_agent: String,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a JSON call to complete, body included; also the wait for a download's headers.
    pub request_timeout: Duration,
    /// A download receiving no bytes for this long is stalled.
    pub read_idle_timeout: Duration,
    /// Attempts per request that may end in an error (5xx, reset, timeout), the first included.
    pub max_attempts: u32,
    /// Attempts when the host cannot be reached at all: a wrong `--graph-url` should fail fast.
    pub max_connect_attempts: u32,
    /// Times one request may be throttled (429/503) before it gives up.
    pub max_throttled_attempts: u32,
    /// First backoff after an error; doubles per attempt, with full jitter.
    pub base_backoff: Duration,
    /// Longest backoff after an error.
    pub max_backoff: Duration,
    /// Pause of the whole client after a 429/503 that gave no `Retry-After`.
    pub default_throttle_pause: Duration,
    /// A `Retry-After` longer than this fails the request instead of stalling the run.
    pub max_retry_after: Duration,
}

impl Default for GraphOptions {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Self {
            base_url: "https://graph.microsoft.com/v1.0".to_owned(),
            user_agent: format!("ISV|odbackup|odbackup/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            read_idle_timeout: Duration::from_secs(60),
            max_attempts: retry.max_attempts,
            max_connect_attempts: retry.max_connect_attempts,
            max_throttled_attempts: retry.max_throttled_attempts,
            base_backoff: retry.base_backoff,
            max_backoff: retry.max_backoff,
            default_throttle_pause: retry.default_throttle_pause,
            max_retry_after: retry.max_retry_after,
        }
    }
}

impl GraphOptions {
    /// The retry policy these options describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            max_connect_attempts: self.max_connect_attempts.max(1),
            max_throttled_attempts: self.max_throttled_attempts.max(1),
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            default_throttle_pause: self.default_throttle_pause,
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Counters of one client's traffic (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent, to Graph and to download hosts, retries included.
    pub requests: u64,
    /// Of which retries.
    pub retries: u64,
    /// Times the service throttled us (429/503/509).
    pub throttle_events: u64,
    /// Wall time the client was paused by throttling or by `RateLimit-*` headers (overlapping pauses
    /// counted once).
    pub throttle_wait_total: Duration,
    /// Requests held back for their turn while `RateLimit-*` headers asked us to spread them.
    pub paced: u64,
}

/// Which drive to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveSelector {
    /// The signed-in user's own drive (`/me/drive`; delegated tokens only).
    Me,
    /// Any drive by ID (`/drives/{id}`).
    Id(DriveId),
    /// A user's `OneDrive`, by UPN or ID (`/users/{upn}/drive`).
    User(String),
    /// A `SharePoint` site's default document library: `host:/sites/name` (or a site ID).
    Site(String),
}

/// Called with the end of a throttle pause (wall clock) whenever one starts or is extended.
pub type PauseHook = Arc<dyn Fn(std::time::SystemTime) + Send + Sync>;

/// A Microsoft Graph client. Cheap to clone; clones share connections, the throttle gate and the counters.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    options: GraphOptions,
    policy: RetryPolicy,
    base: url::Url,
    /// For Graph: carries the bearer token; never follows redirects (so `/content`'s 302 is ours to read).
    api: reqwest::Client,
    /// For pre-authenticated download URLs: never has an `Authorization` header, so none can follow a
    /// redirect either.
    downloads: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    gate: ThrottleGate,
    /// Told when a throttle pause starts or grows, with its end (see [`GraphClient::on_pause`]).
    pause_hook: std::sync::OnceLock<PauseHook>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
    throttle_wait_micros: AtomicU64,
    paced: AtomicU64,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.inner.options.base_url)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client for `options.base_url`, authenticating with `tokens`.
    ///
    /// # Errors
    /// [`GraphError::Setup`] when the base URL is not an http(s) URL with a host.
    pub fn new(options: GraphOptions, tokens: Arc<dyn TokenSource>) -> Result<Self, GraphError> {
        let trimmed = options.base_url.trim_end_matches('/');
        let base = url::Url::parse(trimmed).map_err(|e| GraphError::Setup {
            reason: format!("the Graph URL {trimmed:?} is not a URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(GraphError::Setup {
                reason: format!("the Graph URL {trimmed:?} must be http(s) with a host"),
            });
        }
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .redirect(redirects)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| GraphError::Setup {
                    reason: transport::error_chain(&e.without_url()),
                })
        };
        let api = build(reqwest::redirect::Policy::none())?;
        let downloads = build(reqwest::redirect::Policy::limited(5))?;
        Ok(Self {
            inner: Arc::new(Inner {
                policy: options.retry_policy(),
                options,
                base,
                api,
                downloads,
                tokens,
                gate: ThrottleGate::default(),
                pause_hook: std::sync::OnceLock::new(),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                throttle_wait_micros: AtomicU64::new(0),
                paced: AtomicU64::new(0),
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
            throttle_wait_total: Duration::from_micros(
                i.throttle_wait_micros.load(Ordering::Relaxed),
            ),
            paced: i.paced.load(Ordering::Relaxed),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.inner.options.base_url.trim_end_matches('/')
        )
    }

    /// The signed-in user. See <https://learn.microsoft.com/en-us/graph/api/user-get>.
    #[tracing::instrument(skip_all)]
    pub async fn me(&self) -> Result<User, GraphError> {
        self.get_json("reading the signed-in user", &self.url("/me"))
            .await
    }

    /// A drive: the user's own, one by ID, a user's, or a site's default library (found by path first).
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-get> and
    /// <https://learn.microsoft.com/en-us/graph/api/site-getbypath>.
    #[tracing::instrument(skip_all, fields(drive = ?selector))]
    pub async fn drive(&self, selector: &DriveSelector) -> Result<Drive, GraphError> {
        let (what, path) = match selector {
            DriveSelector::Me => ("reading your drive".to_owned(), "/me/drive".to_owned()),
            DriveSelector::Id(id) => (
                format!("reading drive {id}"),
                format!("/drives/{}", encode_id(id.as_str())),
            ),
            DriveSelector::User(upn) => (
                format!("reading the drive of user {upn}"),
                format!("/users/{}/drive", encode_id(upn)),
            ),
            DriveSelector::Site(site) => {
                let site_path = match site.split_once(':') {
                    Some((host, path)) if !encode_path(path).is_empty() => {
                        format!("/sites/{}:{}", encode_id(host), encode_path(path))
                    }
                    Some((host, _)) => format!("/sites/{}", encode_id(host)),
                    None => format!("/sites/{}", encode_id(site)),
                };
                let found: model::RawSite = self
                    .get_json(&format!("finding the site {site}"), &self.url(&site_path))
                    .await?;
                (
                    format!("reading the document library of site {site}"),
                    format!("/sites/{}/drive", encode_id(&found.id)),
                )
            }
        };
        let raw: model::RawDrive = self.get_json(&what, &self.url(&path)).await?;
        Ok(raw.into())
    }

    /// The drive's root folder. See <https://learn.microsoft.com/en-us/graph/api/driveitem-get>.
    #[tracing::instrument(skip_all, fields(drive = %drive))]
    pub async fn root(&self, drive: &DriveId) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/root?$select={ITEM_SELECT}",
            encode_id(drive.as_str())
        ));
        self.get_json(&format!("reading the root of drive {drive}"), &url)
            .await
    }

    /// An item by ID, with every field (including a fresh `@microsoft.graph.downloadUrl` for files).
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-get>.
    #[tracing::instrument(skip_all, fields(drive = %drive, item = %item))]
    pub async fn item(&self, drive: &DriveId, item: &ItemId) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}",
            encode_id(drive.as_str()),
            encode_id(item.as_str())
        ));
        self.get_json(&format!("reading item {item}"), &url).await
    }

    /// An item by path from the drive root (`/Photos/2024`, each segment encoded on its own; `/` or an
    /// empty path is the root). Resolve once, then use IDs: paths break on renames.
    /// See <https://learn.microsoft.com/en-us/graph/onedrive-addressing-driveitems>.
    #[tracing::instrument(skip_all, fields(drive = %drive, path = path))]
    pub async fn item_by_path(&self, drive: &DriveId, path: &str) -> Result<DriveItem, GraphError> {
        let encoded = encode_path(path);
        let url = if encoded.is_empty() {
            self.url(&format!(
                "/drives/{}/root?$select={ITEM_SELECT}",
                encode_id(drive.as_str())
            ))
        } else {
            self.url(&format!(
                "/drives/{}/root:{encoded}:?$select={ITEM_SELECT}",
                encode_id(drive.as_str())
            ))
        };
        self.get_json(&format!("reading {path:?}"), &url).await
    }

    /// A special folder by alias (`photos`, `cameraroll`, `documents`, `music`, `approot`). Under
    /// read-only scopes a folder that was never created answers 403 (or 404).
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-get-specialfolder>.
    #[tracing::instrument(skip_all, fields(drive = %drive, name = name))]
    pub async fn special_folder(
        &self,
        drive: &DriveId,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/special/{}?$select={ITEM_SELECT}",
            encode_id(drive.as_str()),
            utf8_percent_encode(name, NAME_SEGMENT)
        ));
        self.get_json(&format!("reading the special folder {name:?}"), &url)
            .await
    }

    /// One page of a folder's children: the first (`cursor` = `None`, `$top=1000`, [`ITEM_SELECT`]) or the
    /// one a saved nextLink points at, followed verbatim.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-list-children>.
    ///
    /// # Errors
    /// [`GraphError::ForeignLink`] when `cursor` is not on the configured Graph origin (nothing is sent).
    #[tracing::instrument(skip_all, fields(drive = %drive, folder = %folder, resumed = cursor.is_some()))]
    pub async fn children(
        &self,
        drive: &DriveId,
        folder: &ItemId,
        cursor: Option<&str>,
    ) -> Result<Page, GraphError> {
        let url = match cursor {
            Some(link) => {
                paging::same_origin(&self.inner.base, link)?;
                link.to_owned()
            }
            None => self.url(&format!(
                "/drives/{}/items/{}/children?$top={PAGE_SIZE}&$select={ITEM_SELECT}",
                encode_id(drive.as_str()),
                encode_id(folder.as_str())
            )),
        };
        self.get_json(&format!("listing children of item {folder}"), &url)
            .await
    }

    /// One page of changes under `folder` (the root, on business drives): from scratch (`link` = `None`),
    /// or from a saved nextLink or deltaLink, followed verbatim.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-delta>.
    ///
    /// # Errors
    /// [`GraphError::ResyncRequired`] on 410 (list everything again and reconcile);
    /// [`GraphError::ForeignLink`] as for [`GraphClient::children`].
    #[tracing::instrument(skip_all, fields(drive = %drive, folder = %folder, resumed = link.is_some()))]
    pub async fn delta(
        &self,
        drive: &DriveId,
        folder: &ItemId,
        link: Option<&str>,
    ) -> Result<Page, GraphError> {
        let url = match link {
            Some(link) => {
                paging::same_origin(&self.inner.base, link)?;
                link.to_owned()
            }
            None => self.url(&format!(
                "/drives/{}/items/{}/delta?$top={PAGE_SIZE}&$select={ITEM_SELECT}",
                encode_id(drive.as_str()),
                encode_id(folder.as_str())
            )),
        };
        let what = format!("listing changes under item {folder}");
        self.call_and_read(&what, &url, Expect::JsonOrGone, |answer| {
            if answer.status == 410 {
                let restart_link = answer
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .filter(|l| paging::same_origin(&self.inner.base, l).is_ok())
                    .map(str::to_owned);
                return Err(GraphError::ResyncRequired {
                    what: what.clone(),
                    code: ErrorBody::parse(&answer.body).code().map(str::to_owned),
                    restart_link,
                });
            }
            decode(&what, &answer.body)
        })
        .await
    }

    /// A delta link meaning "changes from now on" for `folder` (`?token=latest`: no items are listed).
    /// Taken before a full crawl, it lets the next run ask only for what changed since the crawl began.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-delta>.
    #[tracing::instrument(skip_all, fields(drive = %drive, folder = %folder))]
    pub async fn delta_latest(
        &self,
        drive: &DriveId,
        folder: &ItemId,
    ) -> Result<String, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}/delta?$select={ITEM_SELECT}&token=latest",
            encode_id(drive.as_str()),
            encode_id(folder.as_str())
        ));
        let what = format!("asking for a delta link of item {folder}");
        let page: Page = self.get_json(&what, &url).await?;
        page.delta_link.ok_or_else(|| GraphError::Unexpected {
            what,
            reason: "the answer holds no @odata.deltaLink".to_owned(),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, what: &str, url: &str) -> Result<T, GraphError> {
        self.call_and_read(what, url, Expect::Json, |answer| decode(what, &answer.body))
            .await
    }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|source| GraphError::Decode {
        what: what.to_owned(),
        source,
    })
}

/// An opaque ID (drive, item, site, UPN) as one path segment.
fn encode_id(id: &str) -> String {
    utf8_percent_encode(id, ID_SEGMENT).to_string()
}

/// `/a b/c+d` → `/a%20b/c%2Bd`: each segment encoded on its own, the `/` between them never; empty
/// segments dropped; empty for the root.
fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |mut out, s| {
            out.push('/');
            out.extend(utf8_percent_encode(s, NAME_SEGMENT));
            out
        })
}
