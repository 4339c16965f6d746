//! The [`Simulator`] handle: starts the three hosts, exposes the drive's truth for assertions,
//! turns fault knobs, mutates the tree and reads the counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::content::mix;
use crate::identity::{AuthorizeOutcome, DeviceScript};
use crate::server::{Role, bind, serve};
use crate::state::{
    ContentAnswer, DeltaOrder, Failure, FailureRule, HoldRule, IdDrift, ListingUrls,
    MissingOneDrive, PagingFault, RequestKind, ResetRule, Schedule, Shared, SimConfig, Violation,
};
use crate::tree::{FileOpts, Flavour, Kind, Tree, World, split};

/// A running Graph simulator: a Graph host, a download host and an identity host on loopback.
/// Dropping it (or [`Simulator::shutdown`]) stops all three.
pub struct Simulator {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    graph: SocketAddr,
    download: SocketAddr,
    auth: SocketAddr,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("graph", &self.graph)
            .field("download", &self.download)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Serves `tree` with default settings. The listeners are bound before this returns.
    pub fn start(tree: Tree) -> Self {
        Self::start_with(tree, SimConfig::default())
    }

    /// Serves `tree` with `config`. Works from sync tests and from inside a tokio runtime (it runs
    /// its own multi-thread runtime).
    pub fn start_with(tree: Tree, config: SimConfig) -> Self {
        let g = bind(config.graph_port);
        let d = bind(config.download_port);
        let a = bind(config.auth_port);
        let (graph, download, auth) = (
            g.local_addr().expect("graph addr"),
            d.local_addr().expect("download addr"),
            a.local_addr().expect("auth addr"),
        );
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("graphsim");
        if config.worker_threads > 0 {
            builder.worker_threads(config.worker_threads);
        }
        let runtime = builder.build().expect("graphsim runtime");
        let shared = Arc::new(Shared::new(
            tree.world,
            config,
            format!("http://{graph}/v1.0"),
            format!("http://{download}"),
            format!("http://{auth}"),
        ));
        runtime.spawn(serve(g, shared.clone(), Role::Graph));
        runtime.spawn(serve(d, shared.clone(), Role::Download));
        runtime.spawn(serve(a, shared.clone(), Role::Identity));
        // The upload host: where session `uploadUrl`s point, another origin again (pre-authenticated).
        let u = bind(0);
        let upload = u.local_addr().expect("upload addr");
        shared.uploads.set_base(format!("http://{upload}"));
        runtime.spawn(serve(u, shared.clone(), Role::Upload));
        Self {
            shared,
            runtime: Some(runtime),
            graph,
            download,
            auth,
        }
    }

    /// Stops the hosts now (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    // ---- where it is ----------------------------------------------------------------------

    /// Graph base URL, `http://127.0.0.1:P/v1.0`.
    pub fn graph_url(&self) -> String {
        self.shared.graph_base.clone()
    }

    /// Identity base URL, `http://127.0.0.1:P` (serves `/{tenant}/oauth2/v2.0/...`).
    pub fn auth_url(&self) -> String {
        self.shared.auth_base.clone()
    }

    /// Origin of the download host, `http://127.0.0.1:Q`.
    pub fn download_host_url(&self) -> String {
        self.shared.download_base.clone()
    }

    /// The bearer token every Graph endpoint accepts ([`crate::DEFAULT_TOKEN`]).
    pub fn token(&self) -> &'static str {
        crate::DEFAULT_TOKEN
    }

    /// The main drive's ID.
    pub fn drive_id(&self) -> String {
        self.world().drives[0].id.clone()
    }

    /// The flavour being served.
    pub fn flavour(&self) -> Flavour {
        self.world().flavour
    }

    /// The composite ID (`host,guid,guid`) of the site added as `site` (`contoso.sharepoint.com:/sites/Team`).
    pub fn site_id(&self, site: &str) -> String {
        let w = self.world();
        w.sites[self.site_index(&w, site)].id.clone()
    }

    fn site_index(&self, w: &World, site: &str) -> usize {
        let (host, path) = match site.split_once(':') {
            Some((h, p)) => (h.to_owned(), format!("/{}", p.trim_matches('/'))),
            None => (site.to_owned(), "/".to_owned()),
        };
        w.sites
            .iter()
            .position(|s| {
                s.hostname.eq_ignore_ascii_case(&host) && s.path.eq_ignore_ascii_case(&path)
            })
            .unwrap_or_else(|| panic!("graphsim: no site {site:?}"))
    }

    /// The drive ID of the document library `library` of `site`.
    pub fn library_drive_id(&self, site: &str, library: &str) -> String {
        let w = self.world();
        let i = self.site_index(&w, site);
        w.sites[i]
            .libraries
            .iter()
            .find(|&&d| {
                matches!(&w.drives[d].kind, crate::tree::DriveKind::Library { name, .. } if name == library)
            })
            .map(|&d| w.drives[d].id.clone())
            .unwrap_or_else(|| panic!("graphsim: site {site:?} has no library {library:?}"))
    }

    /// The drive ID of the OneDrive of the tenant user `upn`.
    pub fn user_drive_id(&self, upn: &str) -> String {
        let w = self.world();
        let d = w
            .users
            .iter()
            .find(|u| u.upn == upn)
            .or_else(|| w.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn)))
            .and_then(|u| u.drive)
            .unwrap_or_else(|| panic!("graphsim: no user {upn:?} with a drive"));
        w.drives[d].id.clone()
    }

    fn drive_named(&self, w: &World, drive_id: &str) -> usize {
        w.drives
            .iter()
            .position(|d| d.id == drive_id)
            .unwrap_or_else(|| panic!("graphsim: no drive {drive_id:?}"))
    }

    /// [`Simulator::content`] of the file at `path` in the drive `drive_id` (a library, another user's drive).
    pub fn content_in(&self, drive_id: &str, path: &str) -> Vec<u8> {
        let w = self.world();
        let d = self.drive_named(&w, drive_id);
        let idx = w
            .resolve_in(d, path)
            .unwrap_or_else(|| panic!("graphsim: no {path:?} in drive {drive_id:?}"));
        let (seed, _, served) = self.file_facts(&w, idx);
        crate::upload::bytes(&self.shared, seed, served)
    }

    /// Live files and folders of the drive `drive_id` (root excluded).
    pub fn item_count_in(&self, drive_id: &str) -> usize {
        let w = self.world();
        let d = self.drive_named(&w, drive_id);
        w.items
            .iter()
            .filter(|i| i.drive == d && !i.deleted && i.parent.is_some())
            .count()
    }

    // ---- the truth, for assertions --------------------------------------------------------

    fn world(&self) -> std::sync::RwLockReadGuard<'_, World> {
        self.shared.world.read().expect("world lock")
    }

    /// The item an ID names, in the spelling the service gave or the one a client stores (personal item IDs
    /// compared without regard to case, as clients must since the service changed their case in 2025).
    fn by_id(&self, w: &World, id: &str) -> usize {
        (0..w.drives.len())
            .find_map(|d| w.by_id.get(&(d, id.to_owned())).copied())
            .or_else(|| {
                w.by_id
                    .iter()
                    .find(|((_, known), _)| known.eq_ignore_ascii_case(id))
                    .map(|(_, &i)| i)
            })
            .unwrap_or_else(|| panic!("graphsim: no item with id {id:?}"))
    }

    /// (seed, length the listed hashes cover, bytes served).
    fn file_facts(&self, w: &World, idx: usize) -> (u64, u64, u64) {
        let f = w.items[idx]
            .file()
            .unwrap_or_else(|| panic!("graphsim: {:?} is not a file", w.items[idx].name));
        (f.seed, f.hashed_len(), f.served_len())
    }

    /// Whether a live item exists at `path` (main drive; shortcuts are followed).
    pub fn exists(&self, path: &str) -> bool {
        self.world().resolve(path).is_some()
    }

    /// The item ID at `path` (main drive; paths through a remote shortcut reach the other drive).
    pub fn item_id(&self, path: &str) -> String {
        let w = self.world();
        w.items[w.expect(path)].id.clone()
    }

    /// The ID of the child named exactly `raw_name` (no case folding) under the folder at `parent`.
    pub fn item_id_in(&self, parent: &str, raw_name: &str) -> String {
        let w = self.world();
        let p = w.expect(parent);
        let c = w.items[p]
            .children
            .iter()
            .copied()
            .find(|&c| w.items[c].name == raw_name)
            .unwrap_or_else(|| panic!("graphsim: no child {raw_name:?} in {parent:?}"));
        w.items[c].id.clone()
    }

    /// Listed size of the item at `path` (a folder's is the total of its files).
    pub fn size(&self, path: &str) -> u64 {
        let w = self.world();
        let it = &w.items[w.expect(path)];
        it.file().map_or(it.subtree_size, |f| f.size)
    }

    /// The bytes the download host serves for the file at `path` (no fault applied).
    pub fn content(&self, path: &str) -> Vec<u8> {
        let w = self.world();
        let (seed, _, served) = self.file_facts(&w, w.expect_target(path));
        crate::upload::bytes(&self.shared, seed, served)
    }

    /// The listed quickXorHash (base64) of the file at `path`, whether or not the listing shows it.
    pub fn quick_xor(&self, path: &str) -> String {
        let w = self.world();
        let (seed, size, _) = self.file_facts(&w, w.expect(path));
        drop(w);
        self.shared.hashes.quick_xor(seed, size)
    }

    /// The sha1 (uppercase hex) of the listed content of the file at `path`.
    pub fn sha1(&self, path: &str) -> String {
        let w = self.world();
        let (seed, size, _) = self.file_facts(&w, w.expect(path));
        drop(w);
        self.shared.hashes.sha1(seed, size)
    }

    /// [`Simulator::content`] by item ID (any drive), for items with hostile names.
    pub fn content_by_id(&self, id: &str) -> Vec<u8> {
        let w = self.world();
        let (seed, _, served) = self.file_facts(&w, self.by_id(&w, id));
        crate::upload::bytes(&self.shared, seed, served)
    }

    /// [`Simulator::quick_xor`] by item ID (any drive).
    pub fn quick_xor_by_id(&self, id: &str) -> String {
        let w = self.world();
        let (seed, size, _) = self.file_facts(&w, self.by_id(&w, id));
        drop(w);
        self.shared.hashes.quick_xor(seed, size)
    }

    /// [`Simulator::sha1`] by item ID (any drive).
    pub fn sha1_by_id(&self, id: &str) -> String {
        let w = self.world();
        let (seed, size, _) = self.file_facts(&w, self.by_id(&w, id));
        drop(w);
        self.shared.hashes.sha1(seed, size)
    }

    /// A fresh pre-authenticated download URL for the file at `path` (e.g. for `curl`).
    pub fn download_url(&self, path: &str) -> String {
        let w = self.world();
        let idx = w.expect(path);
        assert!(
            w.items[idx].file().is_some(),
            "graphsim: {path:?} is not a file"
        );
        crate::download::mint_url(&self.shared, &w, idx)
    }

    /// Number of live files and folders in the main drive (root excluded).
    pub fn item_count(&self) -> usize {
        let w = self.world();
        w.items
            .iter()
            .filter(|i| i.drive == 0 && !i.deleted && i.parent.is_some())
            .count()
    }

    // ---- knobs ----------------------------------------------------------------------------

    /// Delay before each answer (Graph and download host).
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .knobs
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// When on, the download host ignores `Range` and sends 200 with the whole body.
    pub fn set_ignore_range(&self, on: bool) {
        self.shared.knobs.ignore_range.store(on, Ordering::Relaxed);
    }

    /// How `GET …/content` answers from now on (see [`ContentAnswer`] for the reports behind each).
    pub fn set_content_answer(&self, answer: ContentAnswer) {
        *self
            .shared
            .knobs
            .content_answer
            .lock()
            .expect("content answer") = answer;
    }

    /// Whether delta rounds from a saved link leave deleted items out from now on: "/delta does not
    /// consistently return deleted item tombstones after successful OneDrive deletions"
    /// (<https://github.com/OneDrive/onedrive-api-docs/issues/1927>, 2026; abraunegg/onedrive #3751). A full
    /// listing (no token) never shows them anyway.
    pub fn set_delta_drops_deletions(&self, on: bool) {
        self.shared
            .knobs
            .delta_drops_deletions
            .store(on, Ordering::Relaxed);
    }

    /// Lists the item at `path` (a file or a folder) with `size` set to `listed`, a negative number, from now
    /// on, while it serves and hashes its real bytes. Business drives have listed negative sizes for folders
    /// in delta (onedrive-api-docs #375, #617, #926) and for files such as `Home.aspx` and
    /// `Open Notebook.onetoc2` (#1053).
    pub fn list_negative_size(&self, path: &str, listed: i64) {
        assert!(listed < 0, "a negative size");
        let idx = self.world().expect(path);
        self.shared
            .knobs
            .negative_sizes
            .lock()
            .expect("negative sizes")
            .insert(idx, listed);
    }

    /// Whether drives answer a negative `quota.used` (and `remaining` past `total`): `GET /sites/{id}/drive`
    /// has been seen answering `"used": -1478419` (onedrive-api-docs #1869, 2024).
    pub fn set_negative_quota(&self, on: bool) {
        self.shared
            .knobs
            .negative_quota
            .store(on, Ordering::Relaxed);
    }

    /// When listings and items carry `@microsoft.graph.downloadUrl` from now on (see [`ListingUrls`]).
    pub fn set_listing_urls(&self, policy: ListingUrls) {
        *self.shared.knobs.listing_urls.lock().expect("listing urls") = policy;
    }

    /// When on, download URLs minted from now on carry their credential as a path segment
    /// (`{host}/y4m…/name?download`, the consumer form of onedrive-api-docs #143) instead of a `tempauth`
    /// query value: a client that shows a URL's path shows the credential.
    pub fn set_url_credential_in_path(&self, on: bool) {
        self.shared
            .knobs
            .url_credential_in_path
            .store(on, Ordering::Relaxed);
    }

    /// Hold every request of `kind` (with `path`: only downloads and `/content` bodies of that file, on the
    /// download host) before it is answered, until [`Simulator::release_requests`]. The client sees a slow
    /// answer, nothing else: a test orders events in a running client this way instead of sleeping.
    pub fn hold_requests(&self, kind: RequestKind, path: Option<&str>) {
        self.hold_requests_after(kind, path, 0);
    }

    /// [`Simulator::hold_requests`], letting the next `passes` requests it would hold through first (the
    /// first page of a listing, say, with the pages after it held).
    pub fn hold_requests_after(&self, kind: RequestKind, path: Option<&str>, passes: u64) {
        let item = path.map(|p| self.world().expect(p));
        self.shared
            .knobs
            .holds
            .lock()
            .expect("holds")
            .push(HoldRule {
                kind,
                item,
                passes: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(passes)),
            });
    }

    /// Lets every held request of `kind` go, and holds no more of them.
    pub fn release_requests(&self, kind: RequestKind) {
        self.shared
            .knobs
            .holds
            .lock()
            .expect("holds")
            .retain(|h| h.kind != kind);
        self.shared.hold_released.notify_waiters();
    }

    /// Requests waiting on a hold right now.
    pub fn held_requests(&self) -> u64 {
        self.shared.held_now.load(Ordering::SeqCst)
    }

    /// When on, listing pages are shorter than asked, by a varying amount (never empty).
    pub fn set_ragged_pages(&self, on: bool) {
        self.shared.knobs.ragged_pages.store(on, Ordering::Relaxed);
    }

    /// Caps every page (children and delta) at `cap` items whatever `$top` says.
    pub fn set_page_cap(&self, cap: Option<usize>) {
        self.shared
            .knobs
            .page_cap
            .store(cap.unwrap_or(0) as u64, Ordering::Relaxed);
    }

    /// Enforces a SharePoint-style budget of 1,200 resource units a minute (on) or none (off); see
    /// [`Simulator::set_rate_limit`].
    pub fn set_rate_limit_headers(&self, on: bool) {
        self.set_rate_limit(on.then_some((1200, Duration::from_secs(60))));
    }

    /// Enforces a resource-unit budget per window (`None`: unlimited). A Graph request costs 2 units, a
    /// download 1. Once 80 % of a window is spent, answers carry `RateLimit-Limit/-Remaining/-Reset`;
    /// beyond the budget, requests get 429 `activityLimitReached` with `Retry-After` equal to the reset,
    /// and a request that comes before it is a violation.
    pub fn set_rate_limit(&self, budget: Option<(u64, Duration)>) {
        *self.shared.knobs.rate_budget.lock().expect("budget") =
            budget.map(|(units, window)| (units, window.as_millis().max(1) as u64));
        self.shared
            .knobs
            .rate_window
            .lock()
            .expect("rate window")
            .clear();
    }

    /// Lifetime of download URLs minted from now on (expired → 401 on the download host).
    pub fn set_download_url_lifetime(&self, lifetime: Duration) {
        self.shared
            .knobs
            .url_lifetime_ms
            .store(lifetime.as_millis() as u64, Ordering::Relaxed);
    }

    /// The status an expired download URL answers from now on: 401 by default. The service documents only that
    /// the URL is valid for "a short period of time (a few minutes)"
    /// (<https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>), not how a dead one answers, so a
    /// client must not depend on one status: 403 and 404 let tests check that.
    pub fn set_expired_url_status(&self, status: u16) {
        self.shared
            .knobs
            .expired_url_status
            .store(u64::from(status), Ordering::Relaxed);
    }

    /// Lifetime of access tokens issued from now on by the token endpoint.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared
            .knobs
            .token_lifetime_ms
            .store(lifetime.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether Graph accepts [`crate::DEFAULT_TOKEN`] (on by default).
    pub fn set_default_token_accepted(&self, on: bool) {
        self.shared
            .knobs
            .default_token_ok
            .store(on, Ordering::Relaxed);
    }

    /// Expires every access token issued so far (the next Graph call with one gets 401).
    pub fn expire_access_tokens(&self) {
        self.shared
            .auth
            .lock()
            .expect("auth lock")
            .expire_access_tokens();
    }

    /// Makes every refresh token issued so far unusable (`invalid_grant`, AADSTS700082).
    pub fn revoke_refresh_tokens(&self) {
        self.shared
            .auth
            .lock()
            .expect("auth lock")
            .revoke_refresh_tokens();
    }

    /// The next delta call with a deltaLink token answers 410 `resyncRequired` with a `Location`.
    pub fn require_resync(&self) {
        self.shared.knobs.resync_next.store(true, Ordering::SeqCst);
    }

    /// Order of delta enumerations started from now on.
    pub fn set_delta_order(&self, order: DeltaOrder) {
        self.shared
            .knobs
            .children_first
            .store(order == DeltaOrder::ChildrenFirst, Ordering::Relaxed);
    }

    /// How drive and item IDs are spelled in answers from now on (personal drives; see [`IdDrift`]). Requests
    /// are accepted in any spelling of an ID, as the service accepts them.
    pub fn set_id_drift(&self, drift: IdDrift) {
        *self.shared.knobs.id_drift.lock().expect("id drift") = drift;
    }

    /// A listing that makes no progress (see [`PagingFault`]): for the children of the folder at `folder`, or,
    /// with `None`, for every delta listing. `None` as the fault turns it off.
    pub fn set_paging_fault(&self, fault: Option<PagingFault>, folder: Option<&str>) {
        let idx = folder.map(|p| self.world().expect(p));
        *self.shared.knobs.paging_fault.lock().expect("paging fault") = fault.map(|f| (f, idx));
    }

    /// Every delta nextLink issued so far is refused from now on with `status`: 410 `resyncRequired`, as the
    /// delta docs describe for a token the service no longer knows
    /// (<https://learn.microsoft.com/en-us/graph/api/driveitem-delta>), or 400 `invalidRequest` / 404
    /// `itemNotFound`, which clients have also reported for stale tokens (unconfirmed, so configurable).
    /// Links issued afterwards work.
    pub fn expire_delta_page_links(&self, status: u16) {
        self.shared
            .knobs
            .stale_page_link_status
            .store(u64::from(status), Ordering::SeqCst);
        self.shared
            .knobs
            .page_link_epoch
            .fetch_add(1, Ordering::SeqCst);
    }

    /// Personal drives: `/items/{id}/delta` on any folder but the root answers `status` (400
    /// `invalidRequest` or 501 `notSupported`; 0 turns it off). New personal accounts served from the
    /// SharePoint back end (`b!…` drive IDs, rclone #8695) may not support folder-scoped delta; whether they do
    /// is unconfirmed, so a client must be ready for either.
    pub fn set_folder_delta_refused(&self, status: u16) {
        self.shared
            .knobs
            .folder_delta_status
            .store(u64::from(status), Ordering::SeqCst);
    }

    /// Requests arriving up to this long before a Retry-After ends are not violations (default 50 ms).
    pub fn set_violation_grace(&self, grace: Duration) {
        self.shared
            .knobs
            .violation_grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
    }

    fn arm(&self, failure: Failure, schedule: Schedule) {
        let item = failure.item.as_deref().map(|p| self.world().expect(p));
        self.shared
            .knobs
            .failures
            .lock()
            .expect("failures")
            .push(FailureRule {
                id: self.shared.serial.fetch_add(1, Ordering::Relaxed),
                failure,
                item,
                schedule,
            });
    }

    /// Answers the next `n` matching requests with `failure`.
    pub fn fail_next(&self, n: u64, failure: Failure) {
        self.arm(failure, Schedule::Next(n));
    }

    /// Answers a `fraction` (0..=1) of matching requests with `failure`, evenly spread and
    /// deterministic (the k-th matching request fails when ⌊k·f⌋ grows).
    pub fn fail_fraction(&self, fraction: f64, failure: Failure) {
        self.arm(failure, Schedule::Fraction { fraction, seen: 0 });
    }

    /// Answers `len` of every `every` matching requests with `failure`, in a row: a spent budget refuses
    /// everything for a while, so throttling comes in episodes rather than evenly spread. The first
    /// burst comes after `every - len` requests, not at the very start (where a client has only one request
    /// in flight, so a burst would be refused one request at a time). Requests refused as part of the
    /// episode while already on their way (see [`Simulator::set_in_flight_allowance`]) count towards `len`.
    /// When `failure` carries `Retry-After`, the episode also ends once that window has passed, as a
    /// refilled budget serves again: at most `len` refusals, fewer for a client with few requests in flight.
    pub fn fail_in_bursts(&self, every: u64, len: u64, failure: Failure) {
        let every = every.max(1);
        let len = len.min(every);
        self.arm(
            failure,
            Schedule::Bursts {
                every,
                len,
                seen: len % every,
                until: None,
            },
        );
    }

    /// Requests arriving up to this long after a Retry-After was issued were already on their way: they are
    /// refused too, but are not violations and do not extend the penalty (default zero: every early request
    /// is a violation, right for a client with one request in flight).
    pub fn set_in_flight_allowance(&self, allowance: Duration) {
        self.shared
            .knobs
            .in_flight_allowance_ms
            .store(allowance.as_millis() as u64, Ordering::Relaxed);
    }

    /// Answers each matching request with `failure` independently with probability `fraction`, from a
    /// pseudo-random stream seeded with `seed`: unlike [`Simulator::fail_fraction`] the refusals cluster
    /// and thin out as chance has it, and unlike a spent budget they do not fall when the client sends less.
    pub fn fail_randomly(&self, fraction: f64, seed: u64, failure: Failure) {
        self.arm(
            failure,
            Schedule::Random {
                fraction,
                state: seed,
            },
        );
    }

    /// Answers every matching request that arrives during the first `burst` of each `period` (from now)
    /// with `failure`; its `Retry-After`, when it has one, is what is left of the burst.
    pub fn fail_periodically(&self, period: Duration, burst: Duration, failure: Failure) {
        self.arm(
            failure,
            Schedule::Periodic {
                // The first burst comes a period from now, not at the start.
                epoch: std::time::Instant::now() + period.saturating_sub(burst),
                period,
                burst,
            },
        );
    }

    /// Answers every matching request with `failure` until [`Simulator::clear_failures`].
    pub fn fail_always(&self, failure: Failure) {
        self.arm(failure, Schedule::Always);
    }

    /// Shorthand: the next `n` Graph or download requests get 429 with `Retry-After: secs`.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u64) {
        self.fail_next(n, Failure::throttled(retry_after_secs));
    }

    /// Disarms every failure and ends any Retry-After penalty.
    pub fn clear_failures(&self) {
        self.shared.knobs.failures.lock().expect("failures").clear();
        *self.shared.knobs.penalty.lock().expect("penalty") = None;
    }

    /// The next `times` downloads of the file at `path` send `after_bytes` of their body (half
    /// when `None`) with the full Content-Length, then drop the connection.
    pub fn reset_next_downloads(&self, path: &str, times: u64, after_bytes: Option<u64>) {
        let item = Some(self.world().expect(path));
        self.shared
            .knobs
            .resets
            .lock()
            .expect("resets")
            .push(ResetRule {
                item,
                schedule: Schedule::Next(times),
                after: after_bytes,
                stall: None,
            });
    }

    /// A `fraction` of all downloads is cut after `after_bytes` (half the body when `None`).
    pub fn reset_downloads_fraction(&self, fraction: f64, after_bytes: Option<u64>) {
        self.shared
            .knobs
            .resets
            .lock()
            .expect("resets")
            .push(ResetRule {
                item: None,
                schedule: Schedule::Fraction { fraction, seen: 0 },
                after: after_bytes,
                stall: None,
            });
    }

    /// The next `times` downloads of the file at `path` send `after_bytes` of their body, then nothing for
    /// `stall` (the connection stays open), then the rest: a transfer that hangs without failing.
    pub fn stall_next_downloads(&self, path: &str, times: u64, after_bytes: u64, stall: Duration) {
        let item = Some(self.world().expect(path));
        self.shared
            .knobs
            .resets
            .lock()
            .expect("resets")
            .push(ResetRule {
                item,
                schedule: Schedule::Next(times),
                after: Some(after_bytes),
                stall: Some(stall),
            });
    }

    /// Disarms every reset and stall.
    pub fn clear_resets(&self) {
        self.shared.knobs.resets.lock().expect("resets").clear();
    }

    /// While on, one byte (in the middle) of the file at `path` is served altered; listings keep
    /// the true hashes.
    pub fn corrupt(&self, path: &str, on: bool) {
        let w = self.world();
        let idx = w.expect(path);
        let (_, _, served) = self.file_facts(&w, idx);
        drop(w);
        let mut c = self.shared.knobs.corrupt.lock().expect("corrupt");
        if on {
            c.insert(idx, served / 2);
        } else {
            c.remove(&idx);
        }
    }

    /// Script for device-code sign-ins started from now on.
    pub fn script_device_code(&self, script: DeviceScript) {
        self.shared.auth.lock().expect("auth lock").device_script = script;
    }

    /// What `/authorize` does from now on.
    pub fn set_authorize_outcome(&self, outcome: AuthorizeOutcome) {
        self.shared
            .auth
            .lock()
            .expect("auth lock")
            .authorize_outcome = outcome;
    }

    /// An access token Graph accepts, expiring after the token-lifetime knob.
    pub fn issue_access_token(&self) -> String {
        let life = self.shared.knobs.token_lifetime_ms.load(Ordering::Relaxed);
        self.issue_access_token_for(Duration::from_millis(life))
    }

    /// An access token Graph accepts for `lifetime`, allowing what [`Simulator::set_token_scopes`] says.
    pub fn issue_access_token_for(&self, lifetime: Duration) -> String {
        let now = self.shared.now_ms();
        let grant = self
            .shared
            .knobs
            .default_grant
            .lock()
            .expect("grant")
            .clone();
        self.shared
            .auth
            .lock()
            .expect("auth lock")
            .new_access_token(self.shared.secret, now, lifetime.as_millis() as u64, grant)
    }

    /// The scopes of [`crate::DEFAULT_TOKEN`] and of tokens from [`Simulator::issue_access_token`] (default
    /// `Files.Read Files.Read.All User.Read Sites.Read.All`); for app-only tokens, the application permissions
    /// they carry. A token without `Sites.Read.All` gets 403 `accessDenied` on `/sites/…`. Tokens from the
    /// identity host carry the scopes their sign-in asked for.
    pub fn set_token_scopes(&self, scopes: &[&str]) {
        self.shared
            .knobs
            .default_grant
            .lock()
            .expect("grant")
            .scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Whether [`crate::DEFAULT_TOKEN`] (and the handle's tokens) are app-only, as a client-credentials token
    /// is: no signed-in user, so `/me` and `/me/drive` answer 400 `BadRequest`.
    pub fn set_token_app_only(&self, on: bool) {
        self.shared
            .knobs
            .default_grant
            .lock()
            .expect("grant")
            .app_only = on;
    }

    /// Register the app `client_id` for the client-credentials grant, with a client secret. From the first
    /// registration on, the token endpoint checks every client-credentials request: an unknown app, a wrong
    /// secret, or an assertion not signed by a registered certificate is refused as the service refuses it.
    /// Its tokens carry `roles` (application permissions); [`Simulator::set_app_roles`] changes them.
    pub fn register_app_secret(&self, client_id: &str, secret: &str, roles: &[&str]) {
        let mut auth = self.shared.auth.lock().expect("auth lock");
        let app = auth
            .apps
            .registrations
            .entry(client_id.to_owned())
            .or_default();
        app.secrets.push(secret.to_owned());
        app.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// Register the app `client_id` with the certificate(s) in `pem` (the public part uploaded to an app
    /// registration; a PEM holding a private key too is fine, only `CERTIFICATE` sections are read). Client
    /// assertions must be signed by the matching private key. See [`Simulator::register_app_secret`].
    pub fn register_app_certificate(&self, client_id: &str, pem: &str, roles: &[&str]) {
        let certificates = crate::apps::certificates_of(pem);
        assert!(
            !certificates.is_empty(),
            "graphsim: no CERTIFICATE section in the PEM"
        );
        let mut auth = self.shared.auth.lock().expect("auth lock");
        let app = auth
            .apps
            .registrations
            .entry(client_id.to_owned())
            .or_default();
        app.certificates.extend(certificates);
        app.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// The application permissions consented for a registered app: the `roles` of the tokens issued from now on.
    pub fn set_app_roles(&self, client_id: &str, roles: &[&str]) {
        if let Some(app) = self
            .shared
            .auth
            .lock()
            .expect("auth lock")
            .apps
            .registrations
            .get_mut(client_id)
        {
            app.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        }
    }

    /// Access tokens issued by the client-credentials grant so far.
    pub fn app_tokens_issued(&self) -> u64 {
        self.shared.counters.app_tokens.load(Ordering::Relaxed)
    }

    /// How `/users/{id}/drive` answers for a user who never opened OneDrive (see [`MissingOneDrive`]); `None`
    /// restores the default (404 `ResourceNotFound` to delegated tokens, 400 `invalidRequest` to app-only ones).
    pub fn set_missing_onedrive(&self, answer: Option<MissingOneDrive>) {
        *self.shared.knobs.missing_onedrive.lock().expect("knob") = answer;
    }

    /// The directory object ID of the tenant user `upn` (exact spelling first, then any case).
    pub fn user_id(&self, upn: &str) -> String {
        let w = self.world();
        w.users
            .iter()
            .find(|u| u.upn == upn)
            .or_else(|| w.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn)))
            .map(|u| u.id.clone())
            .unwrap_or_else(|| panic!("graphsim: no user {upn:?}"))
    }

    /// A fresh refresh token the token endpoint accepts once (as if a sign-in had happened).
    pub fn issue_refresh_token(&self) -> String {
        self.shared
            .auth
            .lock()
            .expect("auth lock")
            .new_refresh_token(
                self.shared.secret,
                "Files.Read Files.Read.All offline_access User.Read",
            )
    }

    // ---- mutations (for incremental runs) -------------------------------------------------

    fn mutate<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.shared.world.write().expect("world lock");
        w.seq += 1;
        w.generation += 1;
        f(&mut w)
    }

    /// Marks `idx` changed now (new change sequence, eTag, modified time).
    fn touch(w: &mut World, idx: usize) {
        let seq = w.seq;
        let now = crate::time::now_secs();
        let it = &mut w.items[idx];
        it.seq = seq;
        it.version += 1;
        it.modified = now;
    }

    /// Adds a file (creating missing folders); returns its ID.
    pub fn add_file(&self, path: &str, size: u64) -> String {
        self.add_file_with(path, size, FileOpts::new())
    }

    /// Adds a file with options; returns its ID.
    pub fn add_file_with(&self, path: &str, size: u64, opts: FileOpts) -> String {
        self.mutate(|w| {
            let segs = split(path);
            let (leaf, dirs) = segs.split_last().expect("graphsim: empty path");
            let root = w.drives[0].root;
            let parent = w.ensure_folders(root, dirs);
            let idx = w.add_file(parent, leaf, size, &opts);
            let now = crate::time::now_secs();
            w.items[idx].created = now;
            w.items[idx].modified = now;
            Self::touch(w, parent);
            w.items[idx].id.clone()
        })
    }

    /// The owner of the shared folder (or file) behind the shortcut at `path` stops sharing it: requests naming
    /// its drive answer `status` (404 `itemNotFound` or 403 `accessDenied`), while the shortcut stays in the
    /// user's listing (onedrive-api-docs #586, microsoft-graph-docs-contrib #8254).
    pub fn revoke_shared(&self, path: &str, status: u16) {
        self.mutate(|w| {
            let root = w.drives[0].root;
            let segs = split(path);
            let idx = w
                .walk(root, &segs)
                .unwrap_or_else(|| panic!("graphsim: no shortcut at {path:?}"));
            let Kind::Remote { drive, .. } = w.items[idx].kind else {
                panic!("graphsim: {path:?} is not a shortcut")
            };
            assert!(
                drive != 0,
                "graphsim: the user's own drive cannot be revoked"
            );
            w.drives[drive].revoked = Some(status);
        });
    }

    /// Adds a folder (and missing ancestors); returns its ID.
    pub fn add_folder(&self, path: &str) -> String {
        self.mutate(|w| {
            let root = w.drives[0].root;
            let segs = split(path);
            let idx = w.ensure_folders(root, &segs);
            if let Some(p) = w.items[idx].parent {
                Self::touch(w, p);
            }
            w.items[idx].id.clone()
        })
    }

    /// Gives the file at `path` new content of the same size (new hashes, eTag and cTag).
    pub fn modify_file(&self, path: &str) {
        let size = self.size(path);
        self.resize_file(path, size);
    }

    /// Gives the file at `path` new content of `new_size` bytes.
    pub fn resize_file(&self, path: &str, new_size: u64) {
        self.change_file(path, new_size, true, |f| {
            f.content_version += 1;
            f.seed = mix(f.seed ^ u64::from(f.content_version) ^ new_size.rotate_left(17));
            f.served_size = None;
            f.hashes_of_served = false;
        });
    }

    /// Lists the file at `path` with `listed` as its size from now on (a new eTag, the same cTag), while it
    /// serves and hashes the same bytes as before: a size reading that changes while the content does not.
    /// Old personal JPG/PDF/DOCX items have been listed larger than their bytes, with a SHA-1 matching the
    /// download (onedrive-api-docs #492), and rclone's OneDrive backend calls the service's size readings
    /// unreliable and trusts the body's length instead.
    pub fn flap_listed_size(&self, path: &str, listed: u64) {
        self.change_file(path, listed, false, |f| {
            f.served_size = Some(f.served_len());
            f.hashes_of_served = true;
        });
    }

    /// Give the file at `path` the listed size `size` after `change` (which sees the old size), keeping the
    /// folders' totals, and mark it changed (its file-system time too when `new_content`).
    fn change_file(
        &self,
        path: &str,
        size: u64,
        new_content: bool,
        change: impl FnOnce(&mut crate::tree::FileData),
    ) {
        self.mutate(|w| {
            let idx = w.expect(path);
            let Kind::File(f) = &mut w.items[idx].kind else {
                panic!("graphsim: {path:?} is not a file")
            };
            let old = f.size;
            change(f);
            f.size = size;
            w.add_size(idx, size as i64 - old as i64);
            Self::touch(w, idx);
            if new_content {
                w.items[idx].fs_modified = w.items[idx].modified;
            }
        });
    }

    /// Renames the item at `path` (same ID).
    pub fn rename(&self, path: &str, new_name: &str) {
        self.mutate(|w| {
            let idx = w.expect(path);
            w.items[idx].name = new_name.to_owned();
            Self::touch(w, idx);
        });
    }

    /// Moves the item at `path` into the folder at `new_parent` (same ID).
    pub fn move_item(&self, path: &str, new_parent: &str) {
        self.mutate(|w| {
            let idx = w.expect(path);
            let np = w.expect(new_parent);
            assert!(
                w.items[np].is_container(),
                "graphsim: {new_parent:?} is not a folder"
            );
            let op = w.items[idx].parent.expect("graphsim: cannot move a root");
            let size = w.items[idx]
                .file()
                .map_or(w.items[idx].subtree_size, |f| f.size) as i64;
            w.add_size(op, -size);
            w.items[op].children.retain(|&c| c != idx);
            w.items[idx].parent = Some(np);
            w.items[np].children.push(idx);
            w.add_size(np, size);
            Self::touch(w, idx);
            Self::touch(w, op);
            Self::touch(w, np);
        });
    }

    /// Deletes the item at `path` and everything below it (delta reports each as deleted).
    pub fn delete(&self, path: &str) {
        self.mutate(|w| {
            let idx = w.expect(path);
            let parent = w.items[idx].parent.expect("graphsim: cannot delete a root");
            let size = w.items[idx]
                .file()
                .map_or(w.items[idx].subtree_size, |f| f.size) as i64;
            w.add_size(parent, -size);
            w.items[parent].children.retain(|&c| c != idx);
            let mut stack = vec![idx];
            while let Some(i) = stack.pop() {
                stack.extend(w.items[i].children.iter().copied());
                Self::touch(w, i);
                w.items[i].deleted = true;
            }
            Self::touch(w, parent);
        });
    }

    // ---- counters -------------------------------------------------------------------------

    /// Requests of one kind since start or the last [`Simulator::reset_counters`].
    pub fn requests(&self, kind: RequestKind) -> u64 {
        self.shared.counters.get(kind)
    }

    /// Bodies served for the file at `path`: requests to the download host, and `/content` answers that
    /// carried the bytes themselves ([`ContentAnswer::Inline`]).
    pub fn downloads_of(&self, path: &str) -> u64 {
        let idx = self.world().expect_target(path);
        self.shared
            .counters
            .downloads
            .lock()
            .expect("downloads")
            .get(&idx)
            .map_or(0, |l| l.count)
    }

    /// [`Simulator::downloads_of`] the file at `path` in the drive `drive_id` (a library, another user's drive).
    pub fn downloads_in(&self, drive_id: &str, path: &str) -> u64 {
        let idx = {
            let w = self.world();
            let d = self.drive_named(&w, drive_id);
            w.resolve_in(d, path)
                .unwrap_or_else(|| panic!("graphsim: no {path:?} in drive {drive_id:?}"))
        };
        self.shared
            .counters
            .downloads
            .lock()
            .expect("downloads")
            .get(&idx)
            .map_or(0, |l| l.count)
    }

    /// The `Range` header of each download of the file at `path`, in arrival order.
    pub fn ranges_of(&self, path: &str) -> Vec<Option<String>> {
        let idx = self.world().expect(path);
        self.shared
            .counters
            .downloads
            .lock()
            .expect("downloads")
            .get(&idx)
            .map(|l| l.ranges.clone())
            .unwrap_or_default()
    }

    /// Downloads in flight now (request start to body end or drop).
    pub fn current_downloads(&self) -> u64 {
        self.shared
            .counters
            .download_gauge
            .current
            .load(Ordering::SeqCst)
            .max(0) as u64
    }

    /// Most downloads in flight at once.
    pub fn max_concurrent_downloads(&self) -> u64 {
        self.shared
            .counters
            .download_gauge
            .max
            .load(Ordering::SeqCst)
            .max(0) as u64
    }

    /// Most Graph requests in flight at once.
    pub fn max_concurrent_graph_requests(&self) -> u64 {
        self.shared
            .counters
            .graph_gauge
            .max
            .load(Ordering::SeqCst)
            .max(0) as u64
    }

    /// Requests that came while a Retry-After was in force.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared
            .counters
            .violations
            .lock()
            .expect("violations")
            .clone()
    }

    /// Download-host requests that carried an `Authorization` header (should stay 0).
    pub fn authorization_headers_on_download_host(&self) -> u64 {
        self.shared
            .counters
            .auth_on_download_host
            .load(Ordering::Relaxed)
    }

    /// Successful refresh-token grants.
    pub fn refreshes(&self) -> u64 {
        self.shared.counters.refreshes.load(Ordering::Relaxed)
    }

    /// Armed failures served (throttling included; penalty repeats excluded).
    pub fn failures_served(&self) -> u64 {
        self.shared.counters.failures_served.load(Ordering::Relaxed)
    }

    /// Answers with 429, 503 or 509, whether armed or repeated during a penalty.
    pub fn throttle_answers(&self) -> u64 {
        self.shared
            .counters
            .throttle_answers
            .load(Ordering::Relaxed)
    }

    /// 401 answers from Graph for missing, unknown or expired tokens.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.counters.unauthorized.load(Ordering::Relaxed)
    }

    /// Device-code polls that came sooner than `interval` after the previous one.
    pub fn device_polls_too_fast(&self) -> u64 {
        self.shared.counters.polls_too_fast.load(Ordering::Relaxed)
    }

    /// Requests sent while a `Retry-After` was in force, on any host (requests already on their way when
    /// the refusal went out, within the in-flight allowance, excepted): the count of
    /// [`Simulator::violations`], for tests that assert it stays zero.
    pub fn requests_during_retry_after(&self) -> u64 {
        self.shared
            .counters
            .violations
            .lock()
            .expect("violations")
            .len() as u64
    }

    /// Download-host requests refused (401) because their URL had expired.
    pub fn expired_url_requests(&self) -> u64 {
        self.shared.counters.expired_urls.load(Ordering::Relaxed)
    }

    /// Body bytes sent by the download host.
    pub fn bytes_served(&self) -> u64 {
        self.shared.counters.bytes_served.load(Ordering::Relaxed)
    }

    /// Zeroes every counter (in-flight maxima restart from the current level).
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
        self.shared.uploads.reset_counters();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every request kind with its count, for debugging output.
impl Simulator {
    /// `(kind, count)` for every kind with a non-zero count.
    pub fn request_summary(&self) -> Vec<(RequestKind, u64)> {
        RequestKind::ALL
            .iter()
            .map(|&k| (k, self.requests(k)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Requests that reached the simulator, each counted once (a ranged download is also counted under
    /// `DownloadWithRange`, which is a subset of `Download`, so that kind is left out of the sum).
    pub fn total_requests(&self) -> u64 {
        RequestKind::ALL
            .iter()
            .filter(|&&k| k != RequestKind::DownloadWithRange)
            .map(|&k| self.requests(k))
            .sum()
    }
}

/// The write surface (`upload.rs`): knobs, counters and what was uploaded.
impl Simulator {
    /// Origin of the upload host, `http://127.0.0.1:U`: where upload sessions' `uploadUrl`s point.
    pub fn upload_host_url(&self) -> String {
        self.shared.uploads.base().to_owned()
    }

    /// The main drive's quota (`quota.total`, bytes); writes that would pass it answer 507
    /// `quotaLimitReached`. Default 1 TiB.
    pub fn set_quota(&self, total_bytes: u64) {
        self.shared.uploads.set_quota_total(total_bytes);
    }

    /// Lifetime of upload sessions created from now on, renewed by each fragment (default one hour).
    pub fn set_upload_session_lifetime(&self, lifetime: Duration) {
        self.shared
            .uploads
            .set_session_lifetime_ms(lifetime.as_millis() as u64);
    }

    /// Ends every open upload session now: the next fragment or status request on one answers 404.
    pub fn expire_upload_sessions(&self) {
        self.shared.uploads.expire_sessions();
    }

    /// Upload sessions open now.
    pub fn open_upload_sessions(&self) -> usize {
        self.shared.uploads.open_sessions()
    }

    /// Whether uploaded bytes are kept so downloads serve them (on by default). Off, only their hashes are
    /// kept: for benchmarks uploading gigabytes.
    pub fn set_keep_uploaded_bytes(&self, on: bool) {
        self.shared.uploads.set_keep_bytes(on);
    }

    /// Whether the upload host refuses fragments that carry an `Authorization` header with 401 (on by
    /// default: the docs say such a `PUT` "may result in" a 401).
    pub fn set_refuse_bearer_on_upload_host(&self, on: bool) {
        self.shared.uploads.set_refuse_bearer(on);
    }

    /// Whether fragments other than the last must be a multiple of 320 KiB (on by default).
    pub fn set_strict_fragment_sizes(&self, on: bool) {
        self.shared.uploads.set_strict_fragments(on);
    }

    /// The largest simple upload (`PUT …/content`) accepted; larger bodies answer 413 (default 250 MiB, as
    /// the Graph page says; the OneDrive page says 4 MB).
    pub fn set_max_simple_upload(&self, bytes: u64) {
        self.shared.uploads.set_max_simple(bytes);
    }

    /// Bytes received for the target path (`/a/b.bin`, any case) in fragments and simple uploads,
    /// re-sent ones included.
    pub fn uploaded_bytes_of(&self, path: &str) -> u64 {
        self.shared.uploads.received_for(path)
    }

    /// Bytes received by all uploads.
    pub fn bytes_uploaded(&self) -> u64 {
        self.shared.uploads.bytes_received.load(Ordering::Relaxed)
    }

    /// Upload sessions created.
    pub fn upload_sessions_created(&self) -> u64 {
        self.shared.uploads.sessions_created.load(Ordering::Relaxed)
    }

    /// Requests to the upload host that carried an `Authorization` header (should stay 0).
    pub fn authorization_headers_on_upload_host(&self) -> u64 {
        self.shared
            .uploads
            .auth_on_upload_host
            .load(Ordering::Relaxed)
    }

    /// Most requests to the upload host in flight at once.
    pub fn max_concurrent_uploads(&self) -> u64 {
        self.shared
            .counters
            .upload_gauge
            .max
            .load(Ordering::SeqCst)
            .max(0) as u64
    }

    /// `fileSystemInfo` (created, last modified) of the item at `path`, as the service lists it.
    pub fn file_system_times(&self, path: &str) -> (String, String) {
        let w = self.world();
        let it = &w.items[w.expect(path)];
        (
            crate::time::format(it.fs_created),
            crate::time::format(it.fs_modified),
        )
    }

    /// The names of the live children of the folder at `path` (`""` for the root), as stored.
    pub fn children_names(&self, path: &str) -> Vec<String> {
        let w = self.world();
        let idx = w.expect(path);
        w.items[idx]
            .children
            .iter()
            .map(|&c| w.items[c].name.clone())
            .collect()
    }
}
