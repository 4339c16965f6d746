//! The Microsoft Graph seam: typed calls for the endpoints a backup needs, one retry policy with a shared
//! throttle gate, and downloads from pre-authenticated URLs that never see the bearer token.
//!
//! It knows HTTP and JSON only: nothing of `SQLite`, local paths, filters or progress. It returns typed
//! items ([`DriveItem`], [`Page`]) and byte streams ([`Download`]); tokens come from an
//! [`auth::TokenSource`](crate::auth::TokenSource).
//!
//! ```text
//! crawl:    drive(sel) → root / item_by_path / special_folder → children(d, folder, saved nextLink) …
//! download: open_content(d, item, range) → (source, body stream); fetch(source, range) for the rest
//!           (source: the pre-authenticated URL, or Graph's /content itself; DownloadUrlExpired → open_content again)
//! ```
//!
//! Every JSON call and the headers of every download go through one policy (`retry.rs`): 429/503 honour
//! `Retry-After` and pause the whole client; other 5xx, timeouts and resets back off with full jitter; a 401
//! renews the token once, and a 401 to a fresh token backs off a few times before it counts as a refused
//! sign-in; other 4xx fail at once.

mod content;
mod directory;
mod error;
mod lenient;
mod model;
mod paging;
mod retry;
mod sites;
#[cfg(test)]
mod tests;
mod transport;
mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

pub use content::{ByteStream, ContentSource, Download, DownloadUrl, GraphContent};
pub use directory::{DirectoryUser, SiteListing};
pub use error::{ErrorBody, GraphError, HttpError};
pub use model::{
    DeletedFacet, Drive, DriveItem, FileFacet, FileSystemInfo, FolderFacet, Hashes, ImageFacet,
    ItemReference, MalwareFacet, PackageFacet, PhotoFacet, Quota, RemoteItem, RootFacet,
    SpecialFolder, User, VideoFacet,
};
pub use paging::{
    ITEM_SELECT, MAX_PAGES_WITHOUT_PROGRESS, NoProgress, PAGE_SIZE, Page, PagingGuard,
};
pub use retry::{Outcome, Pace, RetryPolicy};
pub use sites::{Site, SiteRef};
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
    /// How patiently requests are retried: attempt budgets, backoff, throttling pauses.
    pub retry: RetryPolicy,
}

impl Default for GraphOptions {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".to_owned(),
            user_agent: DEFAULT_USER_AGENT.clone(),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            read_idle_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Counters of one client's traffic (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientStats {
    /// Requests sent, to Graph and to download hosts, retries included.
    pub requests: u64,
    /// Of which retries.
    pub retries: u64,
    /// Times the service throttled us (429/503/509).
    pub throttle_events: u64,
    /// Wall time the client was paused by throttling or by `RateLimit-*` headers (overlapping pauses
    /// counted once).
    pub(crate) throttle_wait_total: Duration,
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
    /// A `SharePoint` site's document library: its default one, or the one called `library`.
    Site {
        /// The site.
        site: SiteRef,
        /// The library's name (`Documents`, `Archive`); `None` for the default one.
        library: Option<String>,
    },
}

/// Called with the end of a throttle pause (wall clock) whenever one starts or is extended.
pub(crate) type PauseHook = Arc<dyn Fn(std::time::SystemTime) + Send + Sync>;

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
    /// The answer that asked for a pause longer than the policy waits out, once one did: while that pause
    /// lasts, every request fails with it at the gate instead of waiting there (see `pass_gate`).
    long_pause: std::sync::Mutex<Option<Box<HttpError>>>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
    throttle_wait_micros: AtomicU64,
    paced: AtomicU64,
    /// Set once the service refused the `OneDrive` dialect's bare query options (see [`Dialect`]): requests
    /// that select fields then write `$select` and `$top`.
    dollar_dialect: AtomicBool,
    /// Set once `/content` redirected without a `Location`: downloads then ask the item for its
    /// `@microsoft.graph.downloadUrl` straight away, saving the `/content` request that would say nothing.
    content_lacks_location: AtomicBool,
}

/// How the query options of a request that selects [`ITEM_SELECT`] are written. Every option of one
/// request is written the same way.
///
/// The bare form (`select=…&top=…`) is the default because, with the `$` prefix,
/// `$select=…,@microsoft.graph.downloadUrl` has been reported to drop the download-URL annotation while the
/// bare form keeps it (microsoft-graph-docs #20212 on GET item; msgraph-sdk-go #340 on delta), and the
/// `OneDrive` endpoints document the `$` as optional
/// (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/optional-query-parameters>).
/// Graph's maintainers call the bare form accepted rather than promised (msgraph-sdk-go #340), so if the
/// service ever refuses it (400) and the same request with `$` succeeds, the client switches to `$` for good;
/// listings may then come without download URLs, which only costs a `/content` round trip per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// `select=`, `top=`.
    Bare,
    /// `$select=`, `$top=`.
    Dollar,
}

impl Dialect {
    fn prefix(self) -> &'static str {
        match self {
            Dialect::Bare => "",
            Dialect::Dollar => "$",
        }
    }

    /// `select=ITEM_SELECT`, with `top=PAGE_SIZE` first when `paged`.
    fn item_query(self, paged: bool) -> String {
        let d = self.prefix();
        if paged {
            format!("{d}top={PAGE_SIZE}&{d}select={ITEM_SELECT}")
        } else {
            format!("{d}select={ITEM_SELECT}")
        }
    }
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.inner.options.base_url)
            .finish_non_exhaustive()
    }
}

/// How an HTTP client of odbackup is set up (see [`http_client`]).
#[derive(Debug, Clone)]
pub struct HttpSettings<'a> {
    /// The `User-Agent` (Microsoft asks ISVs to decorate their traffic:
    /// <https://learn.microsoft.com/en-us/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online>).
    pub user_agent: &'a str,
    /// How long a connection may take to open.
    pub connect_timeout: std::time::Duration,
    /// How long a whole request may take, if bounded (bodies of any size are not: downloads stream).
    pub timeout: Option<std::time::Duration>,
    /// Whether redirects are followed by the client (Graph's are not: `content.rs` follows download
    /// redirects itself so that no URL reaches a dependency's log).
    pub(crate) follow_redirects: bool,
}

impl HttpSettings<'static> {
    /// The sign-in endpoints' client: short requests (a token, a device code), bounded as a whole.
    pub fn sign_in() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.as_str(),
            connect_timeout: std::time::Duration::from_secs(30),
            timeout: Some(std::time::Duration::from_secs(60)),
            follow_redirects: true,
        }
    }
}

/// The `User-Agent` odbackup sends unless told otherwise.
pub(crate) static DEFAULT_USER_AGENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("ISV|odbackup|odbackup/{}", env!("CARGO_PKG_VERSION")));

/// Build an HTTP client: the one place odbackup makes them (Graph, download hosts, sign-in).
///
/// # Errors
/// [`GraphError::Setup`] when the TLS backend cannot be set up.
pub fn http_client(settings: &HttpSettings<'_>) -> Result<reqwest::Client, GraphError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(settings.user_agent)
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true);
    if let Some(timeout) = settings.timeout {
        builder = builder.timeout(timeout);
    }
    if !settings.follow_redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    builder.build().map_err(|e| GraphError::Setup {
        reason: transport::error_chain(&e.without_url()),
    })
}

impl GraphClient {
    /// A client for `options.base_url`, authenticating with `tokens`.
    ///
    /// # Errors
    /// [`GraphError::Setup`] when the base URL is not an http(s) URL with a host.
    pub fn new(options: GraphOptions, tokens: Arc<dyn TokenSource>) -> Result<Self, GraphError> {
        let trimmed = options.base_url.trim_end_matches('/');
        // Every request carries the bearer token: never in clear beyond this machine.
        let base = crate::endpoint::check_credential_url("the Graph URL", trimmed)
            .map_err(|reason| GraphError::Setup { reason })?;
        let settings = HttpSettings {
            user_agent: &options.user_agent,
            connect_timeout: options.connect_timeout,
            timeout: None,
            follow_redirects: false,
        };
        let api = http_client(&settings)?;
        // Redirects of download hosts are followed by `content.rs` (so no URL reaches a dependency's log).
        let downloads = http_client(&settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                policy: options.retry.at_least_once(),
                options,
                base,
                api,
                downloads,
                tokens,
                gate: ThrottleGate::default(),
                pause_hook: std::sync::OnceLock::new(),
                long_pause: std::sync::Mutex::new(None),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                throttle_wait_micros: AtomicU64::new(0),
                paced: AtomicU64::new(0),
                dollar_dialect: AtomicBool::new(false),
                content_lacks_location: AtomicBool::new(false),
            }),
        })
    }

    /// Traffic counters so far.
    pub(crate) fn stats(&self) -> ClientStats {
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

    /// A drive: the user's own, one by ID, a user's, or a site's library (the site found first; a library named
    /// by its name is picked from the site's list).
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
            DriveSelector::Site { site, library } => {
                let found = self.site(site).await?;
                let Some(library) = library else {
                    return self.site_drive(&found).await;
                };
                let drives = self.site_drives(&found).await?;
                return match drives.iter().position(|d| d.is_called(library)) {
                    Some(i) => Ok(drives.into_iter().nth(i).expect("found above")),
                    None => Err(GraphError::NoSuchLibrary {
                        site: site.to_string(),
                        library: library.clone(),
                        known: drives
                            .iter()
                            .map(|d| d.name.clone().unwrap_or_else(|| d.id.to_string()))
                            .collect(),
                    }),
                };
            }
        };
        let raw: model::RawDrive = self.get_json(&what, &self.url(&path)).await?;
        Ok(raw.into())
    }

    /// The drive's root folder. See <https://learn.microsoft.com/en-us/graph/api/driveitem-get>.
    #[tracing::instrument(skip_all, fields(drive = %drive))]
    pub async fn root(&self, drive: &DriveId) -> Result<DriveItem, GraphError> {
        let what = format!("reading the root of drive {drive}");
        self.selecting(|d| {
            let url = self.url(&format!(
                "/drives/{}/root?{}",
                encode_id(drive.as_str()),
                d.item_query(false)
            ));
            let what = what.clone();
            async move { self.get_json(&what, &url).await }
        })
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
    pub(crate) async fn item_by_path(
        &self,
        drive: &DriveId,
        path: &str,
    ) -> Result<DriveItem, GraphError> {
        let encoded = encode_path(path);
        let what = format!("reading {path:?}");
        self.selecting(|d| {
            let url = if encoded.is_empty() {
                self.url(&format!(
                    "/drives/{}/root?{}",
                    encode_id(drive.as_str()),
                    d.item_query(false)
                ))
            } else {
                self.url(&format!(
                    "/drives/{}/root:{encoded}:?{}",
                    encode_id(drive.as_str()),
                    d.item_query(false)
                ))
            };
            let what = what.clone();
            async move { self.get_json(&what, &url).await }
        })
        .await
    }

    /// A special folder by alias (`photos`, `cameraroll`, `documents`, `music`, `approot`). Under
    /// read-only scopes a folder that was never created answers 403 (or 404).
    /// See <https://learn.microsoft.com/en-us/graph/api/drive-get-specialfolder>.
    #[tracing::instrument(skip_all, fields(drive = %drive, name = name))]
    pub(crate) async fn special_folder(
        &self,
        drive: &DriveId,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let what = format!("reading the special folder {name:?}");
        self.selecting(|d| {
            let url = self.url(&format!(
                "/drives/{}/special/{}?{}",
                encode_id(drive.as_str()),
                utf8_percent_encode(name, NAME_SEGMENT),
                d.item_query(false)
            ));
            let what = what.clone();
            async move { self.get_json(&what, &url).await }
        })
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
        let what = format!("listing children of item {folder}");
        if let Some(link) = cursor {
            paging::same_origin(&self.inner.base, link)?;
            return self.get_json(&what, link).await;
        }
        self.selecting(|d| {
            let url = self.url(&format!(
                "/drives/{}/items/{}/children?{}",
                encode_id(drive.as_str()),
                encode_id(folder.as_str()),
                d.item_query(true)
            ));
            let what = what.clone();
            async move { self.get_json(&what, &url).await }
        })
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
        let what = format!("listing changes under item {folder}");
        if let Some(link) = link {
            paging::same_origin(&self.inner.base, link)?;
            return self.delta_page(&what, link).await;
        }
        self.selecting(|d| {
            let url = self.url(&format!(
                "/drives/{}/items/{}/delta?{}",
                encode_id(drive.as_str()),
                encode_id(folder.as_str()),
                d.item_query(true)
            ));
            let what = what.clone();
            async move { self.delta_page(&what, &url).await }
        })
        .await
    }

    /// One delta page at `url`; a 410 is [`GraphError::ResyncRequired`].
    async fn delta_page(&self, what: &str, url: &str) -> Result<Page, GraphError> {
        let what = what.to_owned();
        self.call_and_read(&what, url, Expect::JsonOrGone, |answer| {
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
    pub(crate) async fn delta_latest(
        &self,
        drive: &DriveId,
        folder: &ItemId,
    ) -> Result<String, GraphError> {
        let what = format!("asking for a delta link of item {folder}");
        let page: Page = self
            .selecting(|d| {
                let url = self.url(&format!(
                    "/drives/{}/items/{}/delta?{}&token=latest",
                    encode_id(drive.as_str()),
                    encode_id(folder.as_str()),
                    d.item_query(false)
                ));
                let what = what.clone();
                async move { self.get_json(&what, &url).await }
            })
            .await?;
        page.delta_link.ok_or_else(|| GraphError::Unexpected {
            what,
            reason: "the answer holds no @odata.deltaLink".to_owned(),
        })
    }

    /// Send a request that selects [`ITEM_SELECT`], built by `send` for a [`Dialect`]: in the bare dialect
    /// unless the service refused it before; a 400 to the bare form is tried once with `$`, and when that
    /// succeeds the client keeps `$` from then on. (A 400 the `$` form gets too, such as the Personal Vault's,
    /// leaves the dialect alone.)
    async fn selecting<T, F, Fut>(&self, send: F) -> Result<T, GraphError>
    where
        F: Fn(Dialect) -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphError>>,
    {
        if self.inner.dollar_dialect.load(Ordering::Relaxed) {
            return send(Dialect::Dollar).await;
        }
        match send(Dialect::Bare).await {
            Err(bare) if bare.status() == Some(400) => match send(Dialect::Dollar).await {
                Ok(value) => {
                    if !self.inner.dollar_dialect.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            error = %bare,
                            "the service refused `select=` without `$`; writing `$select` from now on \
                             (listings may then come without download URLs)"
                        );
                    }
                    Ok(value)
                }
                Err(_) => Err(bare),
            },
            other => other,
        }
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
