//! State shared by the handle and the servers: the world, the fault knobs and the counters.
//!
//! Knobs are atomics or short-held mutexes, so a test can turn them while a client is running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::content::HashCache;
use crate::identity::AuthState;
use crate::tree::World;

/// What a request was for; every request is counted under one kind (a ranged download also under
/// [`RequestKind::DownloadWithRange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// `GET /me`.
    Me,
    /// `GET /me/drive`, `/drives/{id}`, `/me/drives`.
    Drive,
    /// `GET` of one item (by ID, path, root or special alias).
    Item,
    /// `GET …/children`.
    Children,
    /// `GET …/delta`.
    Delta,
    /// `GET …/content` on Graph (answered with a 302).
    Content,
    /// Any request to the download host.
    Download,
    /// A download-host request carrying a `Range` header (also counted as `Download`).
    DownloadWithRange,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// `POST /{tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// `GET /{tenant}/oauth2/v2.0/authorize`.
    Authorize,
    /// `PUT …/content` on Graph (a simple upload).
    Upload,
    /// `POST …/createUploadSession` on Graph.
    CreateUploadSession,
    /// A fragment `PUT` to an upload URL (the upload host).
    UploadFragment,
    /// A status `GET` of an upload URL.
    UploadStatus,
    /// A `DELETE` of an upload URL (cancel the session).
    CancelUpload,
    /// `POST …/children` on Graph (a new folder).
    CreateFolder,
    /// `PATCH` of an item on Graph.
    UpdateItem,
    /// Anything else (unknown routes, other methods).
    Other,
    /// `GET /sites/{hostname}:/{path}` or `/sites/{id}`: finding a SharePoint site.
    Site,
    /// The directory: `GET /users`, `/users/{id}`, `/sites/getAllSites`, `/sites?search=`.
    Directory,
}

impl RequestKind {
    /// Every kind, in declaration order.
    pub const ALL: [RequestKind; 21] = [
        RequestKind::Me,
        RequestKind::Drive,
        RequestKind::Item,
        RequestKind::Children,
        RequestKind::Delta,
        RequestKind::Content,
        RequestKind::Download,
        RequestKind::DownloadWithRange,
        RequestKind::Token,
        RequestKind::DeviceCode,
        RequestKind::Authorize,
        RequestKind::Upload,
        RequestKind::CreateUploadSession,
        RequestKind::UploadFragment,
        RequestKind::UploadStatus,
        RequestKind::CancelUpload,
        RequestKind::CreateFolder,
        RequestKind::UpdateItem,
        RequestKind::Other,
        RequestKind::Site,
        RequestKind::Directory,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A scripted error answer: status, Graph error code, optional `Retry-After`, and which requests
/// it applies to. Arm it with `Simulator::fail_next` / `fail_fraction` / `fail_always`.
#[derive(Clone, Debug)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `Retry-After` seconds; `None` sends no header.
    pub retry_after: Option<u64>,
    /// Only requests of this kind (`DownloadWithRange` matches ranged downloads only). Without it
    /// the failure hits any Graph or download-host request, never the identity host.
    pub only: Option<RequestKind>,
    /// Only requests about the item at this path (main drive; resolved when armed).
    pub item: Option<String>,
    /// Sent as the body instead of the Graph error JSON (a garbled answer: see [`Failure::garbled`]).
    pub body: Option<String>,
    /// A more specific code nested in `innerError` (as `invalidResourceId` inside `invalidRequest`).
    pub inner_code: Option<String>,
}

impl Failure {
    /// 429 `activityLimitReached` "The request has been throttled" with `Retry-After: secs`.
    pub fn throttled(retry_after_secs: u64) -> Self {
        Self::status(
            429,
            "activityLimitReached",
            "The request has been throttled",
        )
        .retry_after(Some(retry_after_secs))
    }

    /// 503 `serviceNotAvailable`, with `Retry-After` when `Some` (and without when `None`).
    pub fn unavailable(retry_after_secs: Option<u64>) -> Self {
        Self::status(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Try again later.",
        )
        .retry_after(retry_after_secs)
    }

    /// 500 `generalException` (transient).
    pub fn server_error() -> Self {
        Self::status(
            500,
            "generalException",
            "An unspecified error has occurred.",
        )
    }

    /// 500 `cannotSnapshotTree`, as delta sometimes answers.
    pub fn cannot_snapshot_tree() -> Self {
        Self::status(
            500,
            "cannotSnapshotTree",
            "Failed to get a coherent view of changes. Try again later.",
        )
    }

    /// 401 `InvalidAuthenticationToken` "Unable to initialize RPS", which Graph has answered to valid, fresh
    /// tokens (<https://github.com/OneDrive/onedrive-api-docs/issues/1489>, 2021; rclone retries it,
    /// <https://github.com/rclone/rclone/pull/5273>). Armed with `fail_next` / `fail_fraction`, it hits
    /// whatever token the request carries: a client must neither give up at once nor refresh in a loop.
    pub fn transient_unauthorized() -> Self {
        Self::status(
            401,
            "InvalidAuthenticationToken",
            "Unable to initialize RPS",
        )
    }

    /// 403 `serviceReadOnly` "Database Is Read Only": what `/me/drives` and other routes answered during a
    /// maintenance window (<https://github.com/rclone/rclone/issues/9794>, 2026). A 403, yet it passes: a
    /// client must wait and try again, not take it as a permission it lacks.
    pub fn service_read_only() -> Self {
        Self::status(403, "serviceReadOnly", "Database Is Read Only")
    }

    /// 403 `accessDenied` (a refresh must not fix it).
    pub fn access_denied() -> Self {
        Self::status(403, "accessDenied", "Access denied")
    }

    /// Any status and code.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            retry_after: None,
            only: None,
            item: None,
            body: None,
            inner_code: None,
        }
    }

    /// 400 `invalidRequest` / inner `invalidResourceId` "ObjectHandle is Invalid" on a folder listing: what
    /// the Personal Vault answers every time, and what ordinary folders answered during outages and account
    /// migrations (rclone #8736, #8098; onedrive-api-docs #1905). Arm it with `for_item` on a folder and a
    /// `Next(n)` schedule for the transient kind.
    pub fn object_handle_invalid() -> Self {
        let mut f = Self::status(400, "invalidRequest", "ObjectHandle is Invalid");
        f.inner_code = Some("invalidResourceId".to_owned());
        f
    }

    /// `200 OK` with `body` as JSON: an answer the client must not trust (a gateway that cut it short, a
    /// field of the wrong type). See [`Failure::truncated_json`], [`Failure::wrong_types`],
    /// [`Failure::missing_fields`].
    pub fn garbled(body: &str) -> Self {
        let mut f = Self::status(200, "", "");
        f.body = Some(body.to_owned());
        f
    }

    /// A listing page cut off mid-way (valid JSON up to the cut).
    pub fn truncated_json() -> Self {
        Self::garbled(
            r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#items","value":[{"id":"01BYE5RZ"#,
        )
    }

    /// A listing page whose fields have the wrong JSON types (`value` an object, `size` a string).
    pub fn wrong_types() -> Self {
        Self::garbled(r#"{"value":{"id":7,"name":["x"],"size":"twelve"},"@odata.nextLink":false}"#)
    }

    /// A listing page whose item lacks `id` and `name`.
    pub fn missing_fields() -> Self {
        Self::garbled(r#"{"value":[{"size":12,"file":{}}]}"#)
    }

    /// An identity-platform error body (`error`, `error_description` starting with the `AADSTS` code and
    /// followed by trace and correlation IDs, `error_codes`), as every `/oauth2/v2.0/` endpoint writes it
    /// (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>). Arm it with
    /// `only(RequestKind::Token)` or `only(RequestKind::DeviceCode)`: unfiltered failures never reach sign-in.
    pub fn oauth(status: u16, error: &str, aadsts: u32, text: &str) -> Self {
        let body = serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{aadsts}: {text}\r\nTrace ID: 7b2f0c1e-0000-4000-8000-000000000000\r\nCorrelation ID: 1c9d4e2a-0000-4000-8000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z"
            ),
            "error_codes": [aadsts],
        });
        let mut f = Self::status(status, error, text);
        f.body = Some(body.to_string());
        f
    }

    /// Sets or clears `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    /// Restricts to one kind of request.
    #[must_use]
    pub fn only(mut self, kind: RequestKind) -> Self {
        self.only = Some(kind);
        self
    }

    /// Restricts to requests about the item at `path` (its listing, metadata, content or download).
    #[must_use]
    pub fn for_item(mut self, path: &str) -> Self {
        self.item = Some(path.to_owned());
        self
    }
}

/// A request that arrived while a `Retry-After` the simulator had issued was still in force.
#[derive(Clone, Debug)]
pub struct Violation {
    /// What the request was for.
    pub kind: RequestKind,
    /// Its path and query.
    pub uri: String,
    /// How much earlier than allowed it came.
    pub early_by: Duration,
}

/// When a rule fires.
#[derive(Clone, Debug)]
pub(crate) enum Schedule {
    Next(u64),
    Fraction {
        fraction: f64,
        seen: u64,
    },
    /// Of every `every` matching requests, the first `len` fire: throttling comes in episodes, the way a
    /// spent budget refuses everything until it refills. An episode whose answer carries `Retry-After` also
    /// ends when that window has passed (`until`), as a refilled budget serves again: a client that waited
    /// is not refused again just because fewer of its requests fell into the window than `len`.
    Bursts {
        every: u64,
        len: u64,
        seen: u64,
        until: Option<Instant>,
    },
    Always,
    /// Each matching request independently, with probability `fraction` (a seeded pseudo-random stream, so
    /// a run is reproducible): refusals that do not thin out when the client sends less, as a service
    /// under its own load refuses a share of whatever arrives. The Graph throttling page documents 429 and
    /// 503 answers with `Retry-After` (<https://learn.microsoft.com/en-us/graph/throttling>); the errors page
    /// lists 500 `generalException` as transient (<https://learn.microsoft.com/en-us/graph/errors>).
    Random {
        fraction: f64,
        state: u64,
    },
    /// Every request arriving during the first `burst` of each `period` (counted from `epoch`): a budget
    /// spent at a steady cadence (the resource-unit window is one minute, per
    /// <https://learn.microsoft.com/en-us/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online>),
    /// refusing everything until it refills. An answer carrying `Retry-After` says what is left of the burst,
    /// rounded up to whole seconds, as the service's `Retry-After` equals the budget's reset
    /// (<https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching>).
    Periodic {
        epoch: Instant,
        period: Duration,
        burst: Duration,
    },
}

impl Schedule {
    /// For a periodic burst in force at `now`: what is left of it.
    fn burst_left(&self, now: Instant) -> Option<Duration> {
        let Schedule::Periodic {
            epoch,
            period,
            burst,
        } = self
        else {
            return None;
        };
        let since = now.checked_duration_since(*epoch)?;
        let period_ns = period.as_nanos().max(1);
        let into = Duration::from_nanos((since.as_nanos() % period_ns) as u64);
        (into < *burst).then(|| *burst - into)
    }

    /// Whether this matching request, arriving `now`, is hit (advances the schedule). `window` is how long
    /// the answer tells the client to wait, which bounds a burst's episode in time.
    fn fire(&mut self, now: Instant, window: Option<Duration>) -> bool {
        match self {
            Schedule::Next(n) if *n > 0 => {
                *n -= 1;
                true
            }
            Schedule::Next(_) => false,
            Schedule::Fraction { fraction, seen } => {
                *seen += 1;
                let now = (*seen as f64 * *fraction).floor();
                let before = ((*seen - 1) as f64 * *fraction).floor();
                now > before
            }
            Schedule::Bursts {
                every,
                len,
                seen,
                until,
            } => {
                let k = *seen % (*every).max(1);
                if k > 0 && k < *len && until.is_some_and(|u| now >= u) {
                    // The window passed: the episode is over, the rest of this cycle is served.
                    *seen += *len - k + 1;
                    return false;
                }
                if k == 0 {
                    *until = window.map(|w| now + w);
                }
                *seen += 1;
                k < *len
            }
            Schedule::Always => true,
            Schedule::Random { fraction, state } => {
                *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let x = crate::content::mix(*state);
                ((x >> 11) as f64 / (1u64 << 53) as f64) < *fraction
            }
            Schedule::Periodic { .. } => self.burst_left(now).is_some(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FailureRule {
    /// Identifies the rule, so a penalty it set can count the requests it refuses against its burst.
    pub id: u64,
    pub failure: Failure,
    pub item: Option<usize>,
    pub schedule: Schedule,
}

#[derive(Clone, Debug)]
pub(crate) struct ResetRule {
    pub item: Option<usize>,
    pub schedule: Schedule,
    /// Bytes of body sent before the cut; `None` = half the body.
    pub after: Option<u64>,
    /// Instead of dropping the connection there, send nothing for this long, then go on.
    pub stall: Option<Duration>,
}

/// The order delta lists an enumeration in (undocumented in the real service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeltaOrder {
    /// Parents before children (change order for incremental rounds).
    #[default]
    ParentsFirst,
    /// Reversed: children before their parents.
    ChildrenFirst,
}

/// How the Graph host answers `GET …/content`. The documented answer is a 302 to a pre-authenticated URL
/// on another host (<https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>); some tenants
/// answer otherwise, and a client must survive each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContentAnswer {
    /// 302 with `Location` on the download host (the documented answer).
    #[default]
    Redirect,
    /// 200 with the file's bytes from the Graph host itself, no redirect (onedrive-api-docs #1493, #1587,
    /// #1128; microsoft-graph-docs #11065). A `Range` is honoured with 206 unless
    /// [`Simulator::set_ignore_range`](crate::Simulator::set_ignore_range) is on, then ignored with 200.
    Inline,
    /// 302 with no `Location` header and an empty body (onedrive-api-docs #1493 "a 200 back instead of 302
    /// without any Location", #1587): the client has to ask the item for `@microsoft.graph.downloadUrl`.
    RedirectWithoutLocation,
}

/// When a listing or item answer carries `@microsoft.graph.downloadUrl`. The annotation comes with the
/// default shape (no select) of an item, a children page and a delta page, and when selected with
/// `select=` (no `$`); with `$select=…,@microsoft.graph.downloadUrl` it has been reported left out
/// (microsoft-graph-docs #20212 on GET item, 2023; msgraph-sdk-go #340 on delta, 2022, "with the `$`
/// removed from `$select`, it works"), while msgraph-sdk-dotnet #3069 (2026) says a selected one is
/// returned. Configurable, because the reports disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListingUrls {
    /// Left out when the request selects it with `$select` (the reported behaviour); returned with
    /// `select=` and in the default shape.
    #[default]
    DroppedUnderDollarSelect,
    /// Returned whenever selected, in either dialect (msgraph-sdk-dotnet #3069).
    Selected,
    /// Never in a children or delta page, however asked (a client must not depend on it); `GET item`
    /// still returns it.
    NotInListings,
}

/// How `/users/{id}/drive` answers for a user whose OneDrive was never provisioned (they never opened it).
/// Each shape has been reported; which one a tenant sends is not documented (unconfirmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingOneDrive {
    /// 404 `ResourceNotFound` "User's mysite not found." (alcionai/corso #966; app-only too, onedrive-api-docs
    /// #530).
    MysiteNotFound,
    /// 400 `invalidRequest` "Call was made to the default drive, which is not supported for apponly tokens."
    /// (onedrive-api-docs #965, #1572).
    AppOnlyDefaultDrive,
    /// 404 `UnknownError` "404 FILE NOT FOUND" (alcionai/corso #3846; onedrive-api-docs #530).
    FileNotFound,
    /// 400 `BadRequest` "Unable to retrieve user's mysite URL." (skilion/onedrive #276).
    MysiteUrl,
}

/// Requests held back until released (`Simulator::hold_requests`): a test's way to order events in a
/// running client without sleeping.
#[derive(Clone, Debug)]
pub(crate) struct HoldRule {
    pub kind: RequestKind,
    pub item: Option<usize>,
    /// Requests the rule still lets through before it holds (`Simulator::hold_requests_after`).
    pub passes: Arc<AtomicU64>,
}

impl HoldRule {
    /// Whether this rule lets one more request through, spending a pass.
    fn take_pass(&self) -> bool {
        self.passes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// The letter case of a personal drive ID as one kind of answer spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdCase {
    /// As the drive was created (upper-case hex, as before June 2025).
    #[default]
    AsIs,
    /// Lower-case hex.
    Lower,
    /// Upper-case hex.
    Upper,
}

impl IdCase {
    pub(crate) fn apply(self, id: &str) -> String {
        match self {
            IdCase::AsIs => id.to_owned(),
            IdCase::Lower => id.to_ascii_lowercase(),
            IdCase::Upper => id.to_ascii_uppercase(),
        }
    }
}

/// How a OneDrive Personal drive's IDs drift between runs and between endpoints (personal drives only;
/// requests are accepted in any of these spellings).
///
/// Since about June 2025 the service spells the same driveId in upper or lower case depending on the endpoint
/// and the day, `item.id` prefixes and `parentReference.driveId` included (onedrive-api-docs #1902;
/// abraunegg/onedrive #3336). The root's ID changed to `{driveId}!sea8cc6beffdb43d7976fbc7da445c639` on many
/// accounts and stayed so (onedrive-api-docs #1890, abraunegg/onedrive #2957). A dropped leading zero in
/// `remoteItem` references is `SimConfig::quirky_remote_drive_ids`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdDrift {
    /// The `id` of the drive resource (`/me/drive`, `/drives/{id}`) and the drive in paging links.
    pub drive: IdCase,
    /// `parentReference.driveId` of every item.
    pub references: IdCase,
    /// The drive prefix of item IDs (`{driveId}!n`), in `id`, `parentReference.id` and `remoteItem.id`.
    pub item_ids: IdCase,
    /// The root's ID is `{driveId}!sea8cc6beffdb43d7976fbc7da445c639` instead of `{driveId}!{n}`.
    pub sea_root_id: bool,
}

/// A listing that makes no progress, as the service has answered: the same `@odata.nextLink` with the same
/// items again (onedrive-api-docs #1431; microsoft-graph-docs #2749), a link back to an earlier page, or empty
/// pages that keep pointing on (rclone stops at an empty page for this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingFault {
    /// From the second page on, each page's nextLink is the link that fetched it: the same items forever.
    RepeatSameLink,
    /// The second page's nextLink points back at the first page.
    PointBackToFirst,
    /// After the first page, every page is empty and points on to a new link, forever.
    EmptyPagesForever,
}

/// Runtime-adjustable behaviour.
pub(crate) struct Knobs {
    pub latency_ms: AtomicU64,
    pub ignore_range: AtomicBool,
    pub ragged_pages: AtomicBool,
    pub page_cap: AtomicU64,
    pub url_lifetime_ms: AtomicU64,
    /// The status an expired download URL answers (see [`crate::Simulator::set_expired_url_status`]).
    pub expired_url_status: AtomicU64,
    pub token_lifetime_ms: AtomicU64,
    pub resync_next: AtomicBool,
    pub default_token_ok: AtomicBool,
    pub children_first: AtomicBool,
    /// Changes rounds leave deletions out (see [`crate::Simulator::set_delta_drops_deletions`]).
    pub delta_drops_deletions: AtomicBool,
    /// How IDs are spelled in answers.
    pub id_drift: Mutex<IdDrift>,
    /// A listing that loops, for the children of one folder (`Some(idx)`) or every delta listing (`None`).
    pub paging_fault: Mutex<Option<(PagingFault, Option<usize>)>>,
    /// Delta nextLinks carry the epoch they were issued in; one from an earlier epoch is answered with
    /// `stale_page_link_status`.
    pub page_link_epoch: AtomicU64,
    pub stale_page_link_status: AtomicU64,
    /// Personal drives: delta on a folder other than the root answers this status (0: it works).
    pub folder_delta_status: AtomicU64,
    pub violation_grace_ms: AtomicU64,
    /// Requests arriving this soon after a penalty started were sent before the client could know of it.
    pub in_flight_allowance_ms: AtomicU64,
    pub failures: Mutex<Vec<FailureRule>>,
    pub resets: Mutex<Vec<ResetRule>>,
    pub corrupt: Mutex<HashMap<usize, u64>>,
    /// The current Retry-After penalty.
    pub penalty: Mutex<Option<Penalty>>,
    /// What [`crate::DEFAULT_TOKEN`] and the handle's tokens allow.
    pub default_grant: Mutex<crate::identity::Grant>,
    /// The resource-unit budget (units per window, window in ms), when one is enforced.
    pub rate_budget: Mutex<Option<(u64, u64)>>,
    /// Per app (client ID; `""` for delegated tokens and the default token): (window index since start, units
    /// spent in it). Graph throttles per app per tenant
    /// (<https://learn.microsoft.com/en-us/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online>),
    /// so every process signed in as one app spends one budget.
    pub rate_window: Mutex<HashMap<String, (u64, u64)>>,
    /// How `/content` answers.
    pub content_answer: Mutex<ContentAnswer>,
    /// When listings carry download URLs.
    pub listing_urls: Mutex<ListingUrls>,
    /// Items whose `size` is listed as this negative number instead of their bytes (see
    /// [`crate::Simulator::list_negative_size`]).
    pub negative_sizes: Mutex<HashMap<usize, i64>>,
    /// Drives' `quota.used` (and `remaining`) answered negative (see [`crate::Simulator::set_negative_quota`]).
    pub negative_quota: AtomicBool,
    /// Mint consumer-style URLs whose credential is a path segment (`/y4m…/name`), not a query.
    pub url_credential_in_path: AtomicBool,
    /// Requests held until released.
    pub holds: Mutex<Vec<HoldRule>>,
    /// How a user without a OneDrive is answered; `None`: 404 `ResourceNotFound` to delegated tokens, 400
    /// `invalidRequest` to app-only ones.
    pub missing_onedrive: Mutex<Option<MissingOneDrive>>,
}

/// A Retry-After in force: when it was issued, when it ends, and the answer that set it.
pub(crate) struct Penalty {
    /// The rule that set it.
    pub rule: u64,
    pub since: Instant,
    pub until: Instant,
    pub failure: Failure,
}

/// A current/maximum pair for in-flight counts.
#[derive(Default)]
pub(crate) struct Gauge {
    pub current: AtomicI64,
    pub max: AtomicI64,
}

impl Gauge {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-file download log.
#[derive(Clone, Debug, Default)]
pub(crate) struct DownloadLog {
    pub count: u64,
    pub ranges: Vec<Option<String>>,
}

/// What the simulator has seen.
#[derive(Default)]
pub(crate) struct Counters {
    pub kinds: [AtomicU64; RequestKind::ALL.len()],
    pub downloads: Mutex<HashMap<usize, DownloadLog>>,
    pub download_gauge: Gauge,
    pub graph_gauge: Gauge,
    pub upload_gauge: Gauge,
    pub auth_on_download_host: AtomicU64,
    pub violations: Mutex<Vec<Violation>>,
    pub failures_served: AtomicU64,
    /// Every 429/503/509 answer, penalty repeats included.
    pub throttle_answers: AtomicU64,
    pub refreshes: AtomicU64,
    pub unauthorized: AtomicU64,
    pub polls_too_fast: AtomicU64,
    pub bytes_served: AtomicU64,
    /// Access tokens issued by the client-credentials grant.
    pub app_tokens: AtomicU64,
    /// Download-host requests refused because their URL had expired.
    pub expired_urls: AtomicU64,
}

impl Counters {
    pub fn count(&self, kind: RequestKind) {
        self.kinds[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self, kind: RequestKind) -> u64 {
        self.kinds[kind.index()].load(Ordering::Relaxed)
    }
    pub fn reset(&self) {
        for k in &self.kinds {
            k.store(0, Ordering::SeqCst);
        }
        self.downloads.lock().expect("lock").clear();
        for g in [&self.download_gauge, &self.graph_gauge, &self.upload_gauge] {
            g.max
                .store(g.current.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        for a in [
            &self.auth_on_download_host,
            &self.failures_served,
            &self.throttle_answers,
            &self.refreshes,
            &self.unauthorized,
            &self.polls_too_fast,
            &self.bytes_served,
            &self.expired_urls,
        ] {
            a.store(0, Ordering::SeqCst);
        }
        self.violations.lock().expect("lock").clear();
    }
}

/// Which in-flight gauge a guard holds.
#[derive(Clone, Copy)]
pub(crate) enum Which {
    Graph,
    Download,
    Upload,
}

/// Holds one unit of an in-flight gauge until dropped.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    which: Which,
}

impl InFlight {
    pub fn new(shared: &Arc<Shared>, which: Which) -> Self {
        shared.gauge(which).enter();
        Self {
            shared: shared.clone(),
            which,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.gauge(self.which).leave();
    }
}

/// Settings fixed at start (many can be changed later through the handle).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Delay before answering each request (Graph and download host).
    pub latency: Duration,
    /// Page size when `$top` is absent.
    pub default_page: usize,
    /// Largest page served, whatever `$top` says.
    pub max_page: usize,
    /// Lifetime of pre-authenticated download URLs (then the download host answers 401).
    pub download_url_lifetime: Duration,
    /// Lifetime of access tokens issued by the token endpoint (then Graph answers 401).
    pub token_lifetime: Duration,
    /// List real hashes on zero-byte files (default: `"hashes": {}`, as seen in 2023).
    pub zero_byte_hashes: bool,
    /// On personal drives, list sha1Hash on every file (pre-2023 behaviour).
    pub personal_sha1: bool,
    /// Status for a special-folder alias that is valid but not (yet) created.
    pub missing_special_status: u16,
    /// `interval` returned by the device-code endpoint, in seconds.
    pub device_code_interval: u64,
    /// `expires_in` of a device code, in seconds.
    pub device_code_expires_in: u64,
    /// Requests this early before a Retry-After ends are not counted as violations.
    pub violation_grace: Duration,
    /// Port of the Graph listener (0 = any free port).
    pub graph_port: u16,
    /// Port of the download host (0 = any free port).
    pub download_port: u16,
    /// Port of the identity host (0 = any free port).
    pub auth_port: u16,
    /// `/me` `displayName`.
    pub display_name: String,
    /// `/me` `userPrincipalName`.
    pub user_principal_name: String,
    /// Personal only: `remoteItem.parentReference.driveId` comes back lowercased with its leading
    /// zero dropped, as seen in 2025 (`/drives/{id}` still accepts either form).
    pub quirky_remote_drive_ids: bool,
    /// Percent-encode each segment of `parentReference.path` (the docs say so; unconfirmed on the wire).
    pub encode_parent_path: bool,
    /// Worker threads of the simulator's runtime (0 = tokio's default).
    pub worker_threads: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            default_page: 200,
            max_page: 1000,
            download_url_lifetime: Duration::from_secs(3600),
            token_lifetime: Duration::from_secs(3599),
            zero_byte_hashes: false,
            personal_sha1: false,
            missing_special_status: 403,
            device_code_interval: 1,
            device_code_expires_in: 900,
            violation_grace: Duration::from_millis(50),
            graph_port: 0,
            download_port: 0,
            auth_port: 0,
            display_name: "Megan Bowen".to_owned(),
            user_principal_name: "megan@contoso.example".to_owned(),
            quirky_remote_drive_ids: false,
            encode_parent_path: true,
            worker_threads: 0,
        }
    }
}

/// A cached delta enumeration: key (drive, scope, since, upto, generation) → ordered item list.
pub(crate) type DeltaCache = Mutex<Vec<((usize, usize, u64, u64, u64), Arc<Vec<usize>>)>>;

/// Everything the servers and the handle share.
pub(crate) struct Shared {
    pub world: RwLock<World>,
    pub hashes: HashCache,
    pub knobs: Knobs,
    pub counters: Counters,
    pub auth: Mutex<AuthState>,
    pub config: SimConfig,
    pub graph_base: String,
    pub download_base: String,
    pub auth_base: String,
    pub started: Instant,
    pub serial: AtomicU64,
    pub secret: u64,
    pub delta_cache: DeltaCache,
    /// Woken when held requests are released.
    pub hold_released: tokio::sync::Notify,
    /// Requests waiting on a hold now.
    pub held_now: AtomicU64,
    /// Upload sessions, uploaded content and the write knobs (`upload.rs`).
    pub uploads: crate::upload::Uploads,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    pub fn new(
        world: World,
        config: SimConfig,
        graph_base: String,
        download_base: String,
        auth_base: String,
    ) -> Self {
        let knobs = Knobs {
            latency_ms: AtomicU64::new(ms(config.latency)),
            ignore_range: AtomicBool::new(false),
            ragged_pages: AtomicBool::new(false),
            page_cap: AtomicU64::new(0),
            url_lifetime_ms: AtomicU64::new(ms(config.download_url_lifetime)),
            expired_url_status: AtomicU64::new(401),
            token_lifetime_ms: AtomicU64::new(ms(config.token_lifetime)),
            resync_next: AtomicBool::new(false),
            default_token_ok: AtomicBool::new(true),
            children_first: AtomicBool::new(false),
            delta_drops_deletions: AtomicBool::new(false),
            id_drift: Mutex::new(IdDrift::default()),
            paging_fault: Mutex::new(None),
            page_link_epoch: AtomicU64::new(0),
            stale_page_link_status: AtomicU64::new(0),
            folder_delta_status: AtomicU64::new(0),
            violation_grace_ms: AtomicU64::new(ms(config.violation_grace)),
            in_flight_allowance_ms: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            resets: Mutex::new(Vec::new()),
            corrupt: Mutex::new(HashMap::new()),
            penalty: Mutex::new(None),
            default_grant: Mutex::new(crate::identity::Grant::delegated(
                crate::identity::DEFAULT_SCOPES,
            )),
            rate_budget: Mutex::new(None),
            rate_window: Mutex::new(HashMap::new()),
            content_answer: Mutex::new(ContentAnswer::default()),
            listing_urls: Mutex::new(ListingUrls::default()),
            negative_sizes: Mutex::new(HashMap::new()),
            negative_quota: AtomicBool::new(false),
            url_credential_in_path: AtomicBool::new(false),
            holds: Mutex::new(Vec::new()),
            missing_onedrive: Mutex::new(None),
        };
        let secret = crate::content::mix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64),
        );
        Self {
            world: RwLock::new(world),
            hashes: HashCache::default(),
            knobs,
            counters: Counters::default(),
            auth: Mutex::new(AuthState::default()),
            config,
            graph_base,
            download_base,
            auth_base,
            started: Instant::now(),
            serial: AtomicU64::new(1),
            secret,
            delta_cache: Mutex::new(Vec::new()),
            hold_released: tokio::sync::Notify::new(),
            held_now: AtomicU64::new(0),
            uploads: crate::upload::Uploads::default(),
        }
    }

    /// Wait while a hold matches this request (`item`: the file it is about, when known; a hold for one
    /// item never catches a request whose item is not known).
    pub async fn wait_while_held(&self, kind: RequestKind, item: Option<usize>) {
        // A rule's passes are spent on a request's first look only: a request it holds stays held.
        let held = |s: &Self, first_look: bool| {
            s.knobs.holds.lock().expect("holds lock").iter().any(|h| {
                h.kind == kind
                    && (h.item.is_none() || (item.is_some() && h.item == item))
                    && !(first_look && h.take_pass())
            })
        };
        if !held(self, true) {
            return;
        }
        self.held_now.fetch_add(1, Ordering::SeqCst);
        loop {
            let released = self.hold_released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !held(self, false) {
                break;
            }
            released.await;
        }
        self.held_now.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn gauge(&self, which: Which) -> &Gauge {
        match which {
            Which::Graph => &self.counters.graph_gauge,
            Which::Download => &self.counters.download_gauge,
            Which::Upload => &self.counters.upload_gauge,
        }
    }

    /// A fresh request-id-like string.
    pub fn request_id(&self) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let a = crate::content::mix(n ^ self.secret);
        let b = crate::content::mix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Milliseconds since the simulator started (clock of URL and token expiry).
    pub fn now_ms(&self) -> u64 {
        ms(self.started.elapsed())
    }

    /// What every host does first with a request it has counted: a spent budget's penalty, the configured
    /// latency, the resource `units` it costs under `app`'s budget, then any scripted failure for `kind`. Gives the
    /// refusal to answer with, if any, and the `RateLimit-*` values to add to whatever is answered.
    pub(crate) async fn admit(
        &self,
        kind: RequestKind,
        uri: &str,
        units: u64,
        app: &str,
        ranged: bool,
    ) -> (Option<Failure>, Option<(u64, u64, u64)>) {
        let penalty = self.check_penalty(kind, uri);
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (rate_headers, over_budget) = if penalty.is_some() {
            (None, None)
        } else {
            self.spend_budget(units, app)
        };
        let refusal = penalty
            .or(over_budget)
            .or_else(|| self.pick_failure(kind, ranged, None));
        (refusal, rate_headers)
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.knobs.latency_ms.load(Ordering::Relaxed))
    }

    /// Records a violation if a Retry-After penalty is in force; returns the failure to repeat.
    ///
    /// A request arriving within the in-flight allowance after the penalty began was on its way before the
    /// client could have read the 429: it is refused too, but it is not a violation and does not extend the
    /// penalty.
    pub fn check_penalty(&self, kind: RequestKind, uri: &str) -> Option<Failure> {
        let mut pen = self.knobs.penalty.lock().expect("penalty lock");
        let p = pen.as_ref()?;
        let now = Instant::now();
        let grace = Duration::from_millis(self.knobs.violation_grace_ms.load(Ordering::Relaxed));
        if now + grace >= p.until {
            return None;
        }
        let mut failure = p.failure.clone();
        let allowance =
            Duration::from_millis(self.knobs.in_flight_allowance_ms.load(Ordering::Relaxed));
        if now < p.since + allowance {
            // Refusing a request that was on its way is part of the same episode: it uses up the burst.
            let (rule, left) = (p.rule, p.until - now);
            drop(pen);
            if let Some(r) = self
                .knobs
                .failures
                .lock()
                .expect("failures lock")
                .iter_mut()
                .find(|r| r.id == rule)
                && let Schedule::Bursts {
                    every, len, seen, ..
                } = &mut r.schedule
                && *seen % *every < *len
                && *seen % *every > 0
            {
                *seen += 1;
            }
            // Tell it what is left of the wait, rounded up to whole seconds as the header requires.
            failure.retry_after = failure
                .retry_after
                .map(|_| left.as_secs() + u64::from(left.subsec_nanos() > 0));
            return Some(failure);
        }
        let early_by = p.until - now;
        self.counters
            .violations
            .lock()
            .expect("lock")
            .push(Violation {
                kind,
                uri: uri.to_owned(),
                early_by,
            });
        // Retry-After grows for a client that keeps calling: the penalty restarts now.
        if let Some(secs) = failure.retry_after {
            let rule = p.rule;
            *pen = Some(Penalty {
                rule,
                since: now,
                until: retry_after_end(now, secs),
                failure: failure.clone(),
            });
        }
        Some(failure)
    }

    /// The armed failure that hits this request, if any (`item`: `None` before the target is known).
    pub fn pick_failure(
        &self,
        kind: RequestKind,
        ranged: bool,
        item: Option<usize>,
    ) -> Option<Failure> {
        let mut rules = self.knobs.failures.lock().expect("failures lock");
        let mut hit = None;
        for rule in rules.iter_mut() {
            let identity = matches!(
                kind,
                RequestKind::Token | RequestKind::DeviceCode | RequestKind::Authorize
            );
            let kind_ok = match rule.failure.only {
                // Unfiltered failures are for Graph and the download host, not sign-in.
                None => !identity,
                Some(RequestKind::DownloadWithRange) => kind == RequestKind::Download && ranged,
                Some(k) => k == kind,
            };
            let item_ok = match (rule.item, item) {
                (None, None) => true,
                (Some(want), Some(got)) => want == got,
                _ => false,
            };
            let window = rule.failure.retry_after.map(Duration::from_secs);
            let now = Instant::now();
            if kind_ok && item_ok && rule.schedule.fire(now, window) {
                let mut failure = rule.failure.clone();
                if let (Some(_), Some(left)) = (failure.retry_after, rule.schedule.burst_left(now))
                {
                    failure.retry_after = Some(left.as_secs() + u64::from(left.subsec_nanos() > 0));
                }
                hit = Some((rule.id, failure));
                break;
            }
        }
        rules.retain(|r| !matches!(r.schedule, Schedule::Next(0)));
        drop(rules);
        if let Some((rule, f)) = &hit {
            self.counters
                .failures_served
                .fetch_add(1, Ordering::Relaxed);
            if let Some(secs) = f.retry_after {
                let now = Instant::now();
                let until = retry_after_end(now, secs);
                let mut pen = self.knobs.penalty.lock().expect("penalty lock");
                if pen.as_ref().is_none_or(|p| p.until < until) {
                    *pen = Some(Penalty {
                        rule: *rule,
                        since: now,
                        until,
                        failure: f.clone(),
                    });
                }
            }
        }
        hit.map(|(_, f)| f)
    }

    /// Spend `units` of the resource-unit budget, if one is set. Returns the `RateLimit-*` values to send
    /// (`limit`, `remaining`, `reset` seconds: only once 80 % of the window is used, as the service does) and,
    /// when the budget is spent, the 429 to answer instead, whose `Retry-After` is the window's reset.
    /// The 429 starts a penalty, so a client that does not wait is caught as a violation. Budgets are counted
    /// per `app` (client ID, `""` for delegated and default tokens); the penalty a spent budget starts holds
    /// every client of the simulator (a simplification: tests run one app at a time).
    pub fn spend_budget(
        &self,
        units: u64,
        app: &str,
    ) -> (Option<(u64, u64, u64)>, Option<Failure>) {
        let Some((limit, window_ms)) = *self.knobs.rate_budget.lock().expect("budget lock") else {
            return (None, None);
        };
        let now = self.now_ms();
        let window = now / window_ms.max(1);
        let used = {
            let mut windows = self.knobs.rate_window.lock().expect("rate window");
            let w = windows.entry(app.to_owned()).or_insert((window, 0));
            if w.0 != window {
                *w = (window, 0);
            }
            w.1 += units;
            w.1
        };
        let left_ms = window_ms - now % window_ms.max(1);
        let reset = left_ms.div_ceil(1000);
        let headers = (used * 5 >= limit * 4).then_some((limit, limit.saturating_sub(used), reset));
        if used <= limit {
            return (headers, None);
        }
        let failure = Failure::throttled(reset);
        let since = Instant::now();
        let mut pen = self.knobs.penalty.lock().expect("penalty lock");
        let until = since + Duration::from_millis(left_ms);
        if pen.as_ref().is_none_or(|p| p.until < until) {
            *pen = Some(Penalty {
                rule: u64::MAX,
                since,
                until,
                failure: failure.clone(),
            });
        }
        (headers, Some(failure))
    }

    /// Where to cut (or stall) this download of `item` whose body is `body_len` bytes, if a rule is armed:
    /// the offset into the body, and the stall's length for a stall.
    pub fn pick_reset(&self, item: usize, body_len: u64) -> Option<(u64, Option<Duration>)> {
        let mut rules = self.knobs.resets.lock().expect("resets lock");
        let mut cut = None;
        for rule in rules.iter_mut() {
            if rule.item.is_some_and(|i| i != item) {
                continue;
            }
            if rule.schedule.fire(Instant::now(), None) {
                cut = Some((
                    rule.after
                        .unwrap_or(body_len / 2)
                        .min(body_len.saturating_sub(1)),
                    rule.stall,
                ));
                break;
            }
        }
        rules.retain(|r| !matches!(r.schedule, Schedule::Next(0)));
        cut
    }
}

/// When a `Retry-After` of `secs` sent at `now` ends: a value too large for the clock (tests send
/// `u64::MAX` to see a client cope) ends a century on, which no test outlives.
fn retry_after_end(now: Instant, secs: u64) -> Instant {
    now.checked_add(Duration::from_secs(secs))
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
