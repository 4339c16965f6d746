//! Backing up a whole organisation: discover every user's `OneDrive` and every site's document libraries,
//! take this machine's shard of them, and back each one up as its own resumable unit, several at once behind
//! one client (one connection pool, one token source, one throttle gate: Graph throttles per app per tenant).
//!
//! ```text
//!   discover ─► users (GET /users, paged) ─► GET /users/{id}/drive each ──┐   (no OneDrive: listed, not an error)
//!            └► sites (getAllSites | search) ─► GET /sites/{id}/drives ───┤
//!                                      (or --drives-from FILE) ───────────┴► dedupe by drive ID ─► folders
//!   backup   ─► --shard K/N (stable hash of the drive ID) ─► M drives at once, each app::run_on with
//!               ROOT/<folder>/.odbackup/manifest.sqlite (its own lock, delta link, failures) ─► roll-up
//! ```
//!
//! No coordinator is needed to split a tenant between machines: a drive's shard depends on its ID alone, each
//! drive has its own folder and manifest, and a manifest's run lock refuses a second run of the same drive
//! (that drive's outcome is then `locked`, exit 4). When the number of shards changes between nights, a drive
//! may move to another machine: on a shared volume its manifest is found by its folder and the backup goes on
//! incrementally; on per-machine volumes the new machine starts that drive afresh.
//!
//! Knows the Graph client and `app`'s one-drive run; nothing of the terminal. Progress flows through the
//! reporter, like any run's.

mod folders;
mod shard;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::{self, Credentials, RunSettings, RunSummary};
use crate::error::{Error, ErrorKind};
use crate::graph::{
    DirectoryUser, DriveSelector, GraphClient, GraphError, GraphOptions, Site, SiteListing, SiteRef,
};
use crate::progress::{Event, Reporter};

pub use shard::Shard;

/// Drives backed up at once unless `--drives-at-once` says otherwise: each runs its own transfers
/// (`--concurrency`), so the connections in flight are this times that.
pub const DEFAULT_DRIVES_AT_ONCE: usize = 4;
/// The most drives at once.
pub const MAX_DRIVES_AT_ONCE: usize = 64;
/// Users whose drive, or sites whose libraries, are looked up at once during discovery.
pub(crate) const DISCOVERY_CONCURRENCY: usize = 8;

/// Which drives of the tenant to take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Every user's `OneDrive` (`GET /users`).
    pub all_users: bool,
    /// Every site's document libraries (`getAllSites`, else search).
    pub all_sites: bool,
    /// These users' `OneDrives`, by sign-in name or object ID.
    pub users: Vec<String>,
    /// These sites' libraries.
    pub sites: Vec<SiteRef>,
}

/// What a drive belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Holder {
    /// A user's `OneDrive`.
    User,
    /// A site's document library.
    Site,
}

/// One drive of the tenant, and where its backup goes. What `odbackup drives --all-users --json` lists and
/// `--drives-from` reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDrive {
    /// A user's or a site's.
    pub kind: Holder,
    /// The drive's ID.
    pub drive_id: String,
    /// `business`, `documentLibrary`, …
    #[serde(default)]
    pub drive_type: Option<String>,
    /// Its folder under the root, `users/<upn>` or `sites/<site>/<library>` (recomputed from the fields below
    /// when read back, so a file cannot send a drive elsewhere).
    #[serde(default)]
    pub folder: String,
    /// The user's sign-in name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's object ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's or the site's name shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) display_name: Option<String>,
    /// The site's composite ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) site_id: Option<String>,
    /// The site's URL name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) site_name: Option<String>,
    /// The site's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) site_url: Option<String>,
    /// The library's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) library: Option<String>,
}

impl TenantDrive {
    /// The folder its fields name (before collisions are resolved).
    fn natural_folder(&self) -> String {
        match self.kind {
            Holder::User => folders::user_folder(
                self.user.as_deref(),
                self.user_id.as_deref().unwrap_or(&self.drive_id),
            ),
            Holder::Site => {
                let site = folders::site_folder(
                    self.site_id.as_deref().unwrap_or(&self.drive_id),
                    self.site_name.as_deref(),
                    self.display_name.as_deref(),
                );
                folders::library_folder(&site, self.library.as_deref().unwrap_or(&self.drive_id))
            }
        }
    }

    /// Who or what it belongs to, for messages: the sign-in name, or site and library.
    pub fn label(&self) -> String {
        match self.kind {
            Holder::User => self
                .user
                .clone()
                .or_else(|| self.user_id.clone())
                .unwrap_or_else(|| self.drive_id.clone()),
            Holder::Site => format!(
                "{} / {}",
                self.site_url
                    .as_deref()
                    .or(self.display_name.as_deref())
                    .or(self.site_id.as_deref())
                    .unwrap_or("?"),
                self.library.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// A user the directory lists who has no `OneDrive` to back up (never opened it, no licence): listed, not an
/// error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithoutDrive {
    /// The sign-in name.
    pub user: Option<String>,
    /// The object ID.
    pub user_id: String,
    /// The name shown.
    pub(crate) display_name: Option<String>,
    /// What the service answered (`HTTP 404 ResourceNotFound`).
    pub reason: String,
}

/// A user or site whose drives could not be found out (refused, or the service kept failing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    /// A user's or a site's.
    pub kind: Holder,
    /// The user's sign-in name or ID, or the site's address or ID.
    pub name: String,
    /// What the service answered, and what to do.
    pub reason: String,
}

/// What discovery found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Discovery {
    /// Every drive, each with its own folder, sorted by folder.
    pub drives: Vec<TenantDrive>,
    /// Users without a `OneDrive`.
    #[serde(default)]
    pub without_drive: Vec<WithoutDrive>,
    /// Users and sites whose drives could not be listed.
    #[serde(default)]
    pub unreachable: Vec<Unreachable>,
    /// Users the directory listed.
    #[serde(default)]
    pub users_listed: usize,
    /// Sites found.
    #[serde(default)]
    pub sites_listed: usize,
    /// Whether sites came from `getAllSites` or from search (`None` when no site was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_listing: Option<String>,
}

impl Discovery {
    /// Only the drives of `shard` (and the users without a drive and the unreachable ones only in shard 0, so
    /// that across the shards each is reported once).
    #[must_use]
    pub fn in_shard(mut self, shard: Option<Shard>) -> Self {
        if let Some(shard) = shard {
            self.drives.retain(|d| shard.owns(&d.drive_id));
            if shard.index != 0 {
                self.without_drive.clear();
                self.unreachable.clear();
            }
        }
        self
    }
}

/// `HTTP 404 ResourceNotFound`.
fn reason(err: &GraphError) -> String {
    match (err.status(), err.code()) {
        (Some(status), Some(code)) => format!("HTTP {status} {code}"),
        (Some(status), None) => format!("HTTP {status}"),
        _ => err.to_string(),
    }
}

/// Whether a Graph error means the sign-in itself is refused: nothing else will work either.
fn is_sign_in_refusal(err: &GraphError) -> bool {
    err.is_auth()
}

/// Find the drives `selection` names.
///
/// # Errors
/// A listing the whole discovery depends on failed: `/users` (403 without `User.Read.All`) or the sites
/// (403 without `Sites.Read.All`), or the sign-in is refused. A single user or site that fails is reported in
/// [`Discovery::unreachable`], not as an error.
pub async fn discover(graph: &GraphClient, selection: &Selection) -> Result<Discovery, Error> {
    let mut found = Discovery::default();
    discover_users(graph, selection, &mut found).await?;
    discover_sites(graph, selection, &mut found).await?;
    found.drives = place(found.drives);
    Ok(found)
}

/// The users' drives of `selection` into `found` (users without a drive and unreachable ones beside them).
async fn discover_users(
    graph: &GraphClient,
    selection: &Selection,
    found: &mut Discovery,
) -> Result<(), Error> {
    let mut users: Vec<DirectoryUser> = Vec::new();
    if selection.all_users {
        users = graph
            .users(|_| {})
            .await
            .map_err(|e| explain_listing(e, "listing the users", "User.Read.All"))?;
    }
    for key in &selection.users {
        match graph.user(key).await {
            Ok(user) => users.push(user),
            Err(err) if is_sign_in_refusal(&err) => return Err(Error::from(err)),
            Err(err) => found.unreachable.push(Unreachable {
                kind: Holder::User,
                name: key.clone(),
                reason: match err.status() {
                    Some(404) => format!("{}: no such user in the directory", reason(&err)),
                    Some(403) => format!(
                        "{}: reading users needs the User.Read.All application permission",
                        reason(&err)
                    ),
                    _ => reason(&err),
                },
            }),
        }
    }
    let mut seen_users = HashSet::new();
    users.retain(|u| seen_users.insert(u.id.clone()));
    found.users_listed = users.len();
    for (user, outcome) in bounded(users, |user| {
        let graph = graph.clone();
        async move {
            let answer = graph.drive(&DriveSelector::User(user.id.clone())).await;
            (user, answer)
        }
    })
    .await
    {
        match outcome {
            Ok(drive) => found.drives.push(TenantDrive {
                kind: Holder::User,
                drive_id: drive.id.to_string(),
                drive_type: Some(drive.drive_type),
                folder: String::new(),
                user: user.user_principal_name.clone(),
                user_id: Some(user.id.clone()),
                display_name: user.display_name.clone(),
                site_id: None,
                site_name: None,
                site_url: None,
                library: None,
            }),
            Err(err) if is_sign_in_refusal(&err) => return Err(Error::from(err)),
            // The shapes seen for a OneDrive never provisioned: 404 ResourceNotFound "User's mysite not
            // found" (alcionai/corso #966), 404 "404 FILE NOT FOUND" (alcionai/corso #3846), 400 invalidRequest
            // "…not supported for apponly tokens" (onedrive-api-docs #1572), 400 "Unable to retrieve user's
            // mysite URL" (skilion/onedrive #276). Judged by the status on this request alone.
            Err(err) if matches!(err.status(), Some(400 | 404)) => {
                found.without_drive.push(WithoutDrive {
                    user: user.user_principal_name.clone(),
                    user_id: user.id.clone(),
                    display_name: user.display_name.clone(),
                    reason: reason(&err),
                });
            }
            Err(err) => found.unreachable.push(Unreachable {
                kind: Holder::User,
                name: user.user_principal_name.clone().unwrap_or(user.id.clone()),
                reason: if err.status() == Some(403) {
                    format!(
                        "{}: the app needs the Files.Read.All application permission",
                        reason(&err)
                    )
                } else {
                    reason(&err)
                },
            }),
        }
    }
    Ok(())
}

/// The document libraries of the sites `selection` names into `found` (unreachable sites beside them).
async fn discover_sites(
    graph: &GraphClient,
    selection: &Selection,
    found: &mut Discovery,
) -> Result<(), Error> {
    let mut sites: Vec<Site> = Vec::new();
    if selection.all_sites {
        let (all, how) = graph
            .all_sites()
            .await
            .map_err(|e| explain_listing(e, "listing the sites", "Sites.Read.All"))?;
        found.site_listing = Some(
            match how {
                SiteListing::AllSites => "getAllSites",
                SiteListing::Search => "search",
            }
            .to_owned(),
        );
        // A user's OneDrive is a site too (`…-my.sharepoint.com/personal/…`); whether getAllSites lists them is
        // not documented. They are users' drives, found by --all-users: not backed up twice as sites.
        sites.extend(all.into_iter().filter(|s| !is_personal_site(s)));
    }
    for site in &selection.sites {
        match graph.site(site).await {
            Ok(s) => sites.push(s),
            Err(err) if is_sign_in_refusal(&err) => return Err(Error::from(err)),
            Err(err) => found.unreachable.push(Unreachable {
                kind: Holder::Site,
                name: site.to_string(),
                reason: match err.status() {
                    Some(404) => format!("{}: no such site", reason(&err)),
                    Some(403) => format!(
                        "{}: reading sites needs the Sites.Read.All permission",
                        reason(&err)
                    ),
                    _ => reason(&err),
                },
            }),
        }
    }
    let mut seen_sites = HashSet::new();
    sites.retain(|s| seen_sites.insert(s.id.to_lowercase()));
    found.sites_listed = sites.len();
    for (site, outcome) in bounded(sites, |site| {
        let graph = graph.clone();
        async move {
            let answer = graph.site_drives(&site).await;
            (site, answer)
        }
    })
    .await
    {
        match outcome {
            Ok(libraries) => {
                for drive in libraries {
                    found.drives.push(TenantDrive {
                        kind: Holder::Site,
                        drive_id: drive.id.to_string(),
                        drive_type: Some(drive.drive_type.clone()),
                        folder: String::new(),
                        user: None,
                        user_id: None,
                        display_name: site.display_name.clone(),
                        site_id: Some(site.id.clone()),
                        site_name: site.name.clone(),
                        site_url: site.web_url.clone(),
                        library: drive.name.clone(),
                    });
                }
            }
            Err(err) if is_sign_in_refusal(&err) => return Err(Error::from(err)),
            Err(err) => found.unreachable.push(Unreachable {
                kind: Holder::Site,
                name: site.web_url.clone().unwrap_or(site.id.clone()),
                reason: reason(&err),
            }),
        }
    }
    Ok(())
}

/// Whether a site is a user's `OneDrive` (its address is on the `-my` host, under `/personal/`).
fn is_personal_site(site: &Site) -> bool {
    site.web_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| {
            u.host_str()
                .is_some_and(|h| h.split('.').next().is_some_and(|l| l.ends_with("-my")))
                || u.path().to_ascii_lowercase().starts_with("/personal/")
        })
}

/// Each drive once (the first seen wins: users before sites), each with its own folder, sorted by folder.
fn place(drives: Vec<TenantDrive>) -> Vec<TenantDrive> {
    let mut seen = HashSet::new();
    let mut drives: Vec<TenantDrive> = drives
        .into_iter()
        .filter(|d| seen.insert(shard::canonical_drive_id(&d.drive_id)))
        .collect();
    let natural: Vec<(String, String)> = drives
        .iter()
        .map(|d| (d.drive_id.clone(), d.natural_folder()))
        .collect();
    for (drive, folder) in drives.iter_mut().zip(folders::disambiguate(&natural)) {
        drive.folder = folder;
    }
    drives.sort_by(|a, b| a.folder.cmp(&b.folder));
    drives
}

/// A listing the discovery cannot do without failed: say which permission it takes.
fn explain_listing(err: GraphError, what: &'static str, permission: &str) -> Error {
    if err.status() == Some(403) {
        return Error::Usage(format!(
            "{what} was refused ({}): the app needs the {permission} application permission, with admin \
             consent (Entra admin center → App registrations → API permissions), then re-run the same command",
            reason(&err)
        ));
    }
    Error::Graph { what, source: err }
}

/// Run `job` over `inputs`, [`DISCOVERY_CONCURRENCY`] at a time; results in the inputs' order.
async fn bounded<I, O, F, Fut>(inputs: Vec<I>, job: F) -> Vec<O>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = O>,
{
    let mut results: Vec<Option<O>> = Vec::with_capacity(inputs.len());
    results.resize_with(inputs.len(), || None);
    let mut pending = inputs.into_iter().enumerate();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < DISCOVERY_CONCURRENCY {
            let Some((i, input)) = pending.next() else {
                break;
            };
            let fut = job(input);
            running.push(async move { (i, fut.await) });
        }
        match running.next().await {
            Some((i, out)) => results[i] = Some(out),
            None => break,
        }
    }
    results.into_iter().flatten().collect()
}

/// Read a drive list written by `odbackup drives --all-users --all-sites --json` (the whole document, or just
/// its `drives` array). Folders are recomputed from each entry's names, never taken from the file.
///
/// # Errors
/// [`Error::Usage`] when the file cannot be read or is not such a list.
pub(crate) fn read_drive_list(path: &Path) -> Result<Discovery, Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listed {
        Document(Discovery),
        Drives(Vec<TenantDrive>),
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read --drives-from {}: {e}", path.display())))?;
    let listed: Listed = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Usage(format!(
            "--drives-from {} is not a drive list (the JSON `odbackup drives --all-users --all-sites --json` \
             prints): {e}",
            path.display()
        ))
    })?;
    let mut found = match listed {
        Listed::Document(d) => d,
        Listed::Drives(drives) => Discovery {
            drives,
            ..Discovery::default()
        },
    };
    if let Some(bad) = found.drives.iter().find(|d| d.drive_id.trim().is_empty()) {
        return Err(Error::Usage(format!(
            "--drives-from {}: the entry for {} has no drive_id",
            path.display(),
            bad.label()
        )));
    }
    found.drives = place(found.drives);
    Ok(found)
}

/// Everything a tenant backup needs, resolved by the caller.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    /// The backup root: drives go in its `users/` and `sites/` folders.
    pub root: PathBuf,
    /// How to reach Graph.
    pub graph: GraphOptions,
    /// Where tokens come from (normally an app-only sign-in).
    pub credentials: Credentials,
    /// Which drives: discovered now, or read from a list.
    pub source: DriveSource,
    /// This machine's part, if the tenant is split.
    pub shard: Option<Shard>,
    /// Drives backed up at once.
    pub drives_at_once: usize,
    /// Each drive's run: filters, transfers, layout… (`dest`, `manifest` and `drive` are set per drive).
    pub run: RunSettings,
}

/// Where the drives come from.
#[derive(Debug, Clone)]
pub enum DriveSource {
    /// Discovered from the directory now.
    Discover(Selection),
    /// Read from a list made earlier (`--drives-from`).
    File(PathBuf),
}

/// How one drive's backup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriveStatus {
    /// Everything wanted is on disk.
    Ok,
    /// Some files failed or are left (they are in its manifest).
    Incomplete,
    /// Stopped by a signal; its state is saved.
    Interrupted,
    /// Another run holds its manifest.
    Locked,
    /// The run failed (see the error).
    Failed,
    /// Its user or site could not be listed.
    Unreachable,
    /// Not started: the run was stopped, the sign-in was refused, or the service asked for a wait longer than a
    /// run waits, first.
    NotStarted,
}

/// How bad an outcome is for the whole run, the worst of which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Done.
    Ok,
    /// Some items failed (exit 1).
    SomeFailed,
    /// Another run holds the drive (exit 4).
    Locked,
    /// A usage or configuration problem of this drive (exit 2).
    Usage,
    /// The run could not go on (exit 5).
    Run,
    /// The sign-in was refused (exit 3).
    Auth,
    /// Stopped by a signal (exit 128 + signal).
    Interrupted,
}

impl Verdict {
    fn of_kind(kind: ErrorKind) -> Verdict {
        match kind {
            ErrorKind::Usage => Verdict::Usage,
            ErrorKind::Auth => Verdict::Auth,
            ErrorKind::Locked => Verdict::Locked,
            ErrorKind::Run => Verdict::Run,
        }
    }
}

/// One drive in the roll-up.
#[derive(Debug, Clone, Serialize)]
pub struct DriveReport {
    /// The drive, as discovered.
    #[serde(flatten)]
    pub drive: TenantDrive,
    /// How it ended.
    pub status: DriveStatus,
    /// What it means for the exit code.
    #[serde(skip)]
    pub verdict: Verdict,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Files fetched this run.
    pub files_downloaded: u64,
    /// Files already on disk.
    pub(crate) files_present: u64,
    /// Files that failed.
    pub files_failed: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Wall time of its run, seconds.
    pub elapsed_secs: f64,
    /// Its run's summary, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
}

/// What a tenant backup did.
#[derive(Debug, Clone, Serialize)]
pub struct TenantSummary {
    /// The shard taken, `K/N`.
    pub shard: Option<String>,
    /// Drives discovered (all shards).
    pub drives_discovered: usize,
    /// Each drive of this shard, by folder.
    pub drives: Vec<DriveReport>,
    /// Users without a `OneDrive` (listed by shard 0 only).
    pub without_drive: Vec<WithoutDrive>,
    /// Users and sites whose drives could not be listed.
    pub unreachable: Vec<Unreachable>,
    /// Requests sent, through the one client all drives shared.
    pub requests: u64,
    /// Times the service throttled that client.
    pub throttle_events: u64,
    /// Wall time, seconds.
    pub elapsed_secs: f64,
    /// Whether a signal stopped the run.
    pub interrupted: bool,
}

impl TenantSummary {
    /// The worst outcome of any drive: the run's exit code. A user or site that could not be listed counts as
    /// incomplete.
    pub fn verdict(&self) -> Verdict {
        let drives = self.drives.iter().map(|d| d.verdict);
        let unreachable = (!self.unreachable.is_empty()).then_some(Verdict::SomeFailed);
        let stopped = self.interrupted.then_some(Verdict::Interrupted);
        drives
            .chain(unreachable)
            .chain(stopped)
            .max()
            .unwrap_or(Verdict::Ok)
    }
}

/// Tag the file paths a drive reports with its folder, so lines from drives running side by side say whose
/// they are; crawl ends are left out (they would end the display's crawl for every drive).
struct DriveReporter {
    inner: Arc<dyn Reporter>,
    folder: String,
}

impl Reporter for DriveReporter {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::CrawlFinished { .. } | Event::CrawlStarted { .. } => {}
            Event::FileFailed {
                path,
                class,
                message,
            } => {
                let path = format!("{}{path}", self.folder);
                self.inner.event(&Event::FileFailed {
                    path: &path,
                    class,
                    message,
                });
            }
            Event::Planned { path, bytes } => {
                let path = format!("{}{path}", self.folder);
                self.inner.event(&Event::Planned {
                    path: &path,
                    bytes: *bytes,
                });
            }
            Event::Notice {
                kind,
                path,
                message,
                detail,
            } => {
                // A notice about no one item is about the drive: it names the drive's folder.
                let path = format!("{}{}", self.folder, path.unwrap_or_default());
                self.inner.event(&Event::Notice {
                    kind: *kind,
                    path: Some(&path),
                    message,
                    detail: *detail,
                });
            }
            other => self.inner.event(other),
        }
    }
}

/// Setting file under `ROOT/.odbackup/` that keeps the end of the last throttle pause (Unix milliseconds): the
/// service's `Retry-After` holds for the app, so for the next night's run too.
const THROTTLED_UNTIL_FILE: &str = "throttled_until";

/// Back up the drives `settings` names: discover (or read) them, take this shard's, and run each, at most
/// `drives_at_once` at a time, through one client.
///
/// # Errors
/// Only what stops the whole run: the sign-in, the discovery, the root. Each drive's own failure is in its
/// [`DriveReport`].
pub async fn backup(
    settings: &TenantSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<TenantSummary, Error> {
    let started = Instant::now();
    let tokens = app::token_source(&settings.credentials)?;
    let graph = GraphClient::new(settings.graph.clone(), tokens)?;
    let root = crate::fsdest::Dest::open(&settings.root)
        .map_err(|e| Error::Usage(format!("backup root: {e}")))?;
    keep_pauses(&graph, &root, &*reporter)?;
    let discovery = match &settings.source {
        DriveSource::Discover(selection) => discover(&graph, selection).await?,
        DriveSource::File(path) => read_drive_list(path)?,
    };
    let discovered = discovery.drives.len();
    let discovery = discovery.in_shard(settings.shard);
    tracing::info!(
        discovered,
        in_shard = discovery.drives.len(),
        shard = ?settings.shard.map(|s| s.to_string()),
        "tenant drives to back up"
    );
    let at_once = settings.drives_at_once.clamp(1, MAX_DRIVES_AT_ONCE);
    let mut reports: Vec<Option<DriveReport>> = vec![None; discovery.drives.len()];
    let mut queue = discovery.drives.iter().cloned().enumerate();
    let mut running = FuturesUnordered::new();
    let mut stop_starting = false;
    loop {
        while !stop_starting && !cancel.is_cancelled() && running.len() < at_once {
            let Some((i, drive)) = queue.next() else {
                break;
            };
            let graph = graph.clone();
            let reporter: Arc<dyn Reporter> = Arc::new(DriveReporter {
                inner: Arc::clone(&reporter),
                folder: format!("{}/", drive.folder),
            });
            let run = drive_settings(&settings.run, &settings.root, &root, &drive);
            running.push(async move {
                let report = back_up_one(&graph, drive, run, reporter, cancel).await;
                (i, report)
            });
        }
        let Some((i, report)) = running.next().await else {
            break;
        };
        reporter.event(&Event::DriveFinished {
            folder: &report.drive.folder,
            status: status_name(report.status),
            error: report.error.as_deref(),
        });
        if report.verdict == Verdict::Auth {
            // The sign-in is refused: every drive left would be refused too.
            stop_starting = true;
        }
        if let Some(left) = graph.told_to_wait_for() {
            // The one client all drives share was told to wait longer than a run waits: every drive started
            // now would fail at its first request. They are left for the next run, which waits out the rest
            // of the pause kept under `ROOT/.odbackup/` first.
            tracing::info!(
                wait_s = left.as_secs(),
                "told to wait: no more drives started this run"
            );
            stop_starting = true;
        }
        reports[i] = Some(report);
    }
    let drives: Vec<DriveReport> = reports
        .into_iter()
        .zip(discovery.drives.iter())
        .map(|(report, drive)| report.unwrap_or_else(|| not_started(drive.clone())))
        .collect();
    let stats = graph.stats();
    Ok(TenantSummary {
        shard: settings.shard.map(|s| s.to_string()),
        drives_discovered: discovered,
        drives,
        without_drive: discovery.without_drive,
        unreachable: discovery.unreachable,
        requests: stats.requests,
        throttle_events: stats.throttle_events,
        elapsed_secs: started.elapsed().as_secs_f64(),
        interrupted: cancel.is_cancelled(),
    })
}

fn status_name(status: DriveStatus) -> &'static str {
    match status {
        DriveStatus::Ok => "ok",
        DriveStatus::Incomplete => "incomplete",
        DriveStatus::Interrupted => "interrupted",
        DriveStatus::Locked => "locked",
        DriveStatus::Failed => "failed",
        DriveStatus::Unreachable => "unreachable",
        DriveStatus::NotStarted => "not_started",
    }
}

/// Wait out a pause the service asked of an earlier run, and keep each new one under `ROOT/.odbackup/`; an
/// earlier pause longer than a run waits is the error to stop with.
fn keep_pauses(
    graph: &GraphClient,
    root: &crate::fsdest::Dest,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    // Through the root's handle, never following a link planted at `.odbackup` or at the file's name.
    let kept = root
        .state_folder()
        .ok()
        .and_then(|state| state.read_file(THROTTLED_UNTIL_FILE).ok().flatten());
    match app::earlier_pause(
        kept.as_deref(),
        std::time::SystemTime::now(),
        graph.longest_wait(),
    ) {
        app::EarlierPause::Over => {}
        app::EarlierPause::TooLong(until) => {
            return Err(Error::ToldToWait {
                until: until.into(),
            });
        }
        app::EarlierPause::Wait(left) => {
            reporter.event(&crate::progress::Event::Notice {
            kind: crate::progress::NoticeKind::WaitingForService,
            path: None,
            message: &format!(
                "the service asked the previous run to wait (Retry-After); waiting {} s more before the first \
                 request",
                left.as_secs()
            ),
            detail: None,
        });
            graph.hold_for(left);
        }
    }
    let root = root.clone();
    graph.on_pause(Arc::new(move |until| {
        let ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            let written = root
                .state_folder()
                .map_err(std::io::Error::other)
                .and_then(|state| state.replace_file(THROTTLED_UNTIL_FILE, ms.as_bytes()));
            if let Err(err) = written {
                // A diagnostic, not a notice: it runs on the client's pause callback, outside the run's
                // reporter, and costs at most one early request of the next run, which is told to wait again.
                tracing::warn!(error = %err, "could not keep the throttle pause for the next run");
            }
        });
    }));
    Ok(())
}

/// One drive's run settings: its folder as the destination, its own manifest, the drive by ID.
fn drive_settings(
    template: &RunSettings,
    root_path: &Path,
    root: &crate::fsdest::Dest,
    drive: &TenantDrive,
) -> Result<RunSettings, Error> {
    // Created (or found) folder by folder without following links: a link planted at `users/<upn>` (or at
    // `users`) is refused, so it cannot carry a drive's files and manifest elsewhere. The run then opens the
    // folder by its path; `still_holds` checks that nothing was swapped in between.
    let folder = root
        .create_item_folder(&drive.folder)
        .map_err(|e| Error::Usage(format!("{}: {e}", drive.folder)))?;
    if !root.still_holds(&folder) {
        return Err(Error::Usage(format!(
            "{}: the folder was replaced while it was being opened; re-run to try again",
            drive.folder
        )));
    }
    let dest = root_path.join(&drive.folder);
    let pin = folder
        .pin()
        .map_err(|e| Error::Usage(format!("{}: {e}", drive.folder)))?;
    Ok(RunSettings {
        manifest: app::default_manifest_path(&dest),
        dest_pin: Some(pin),
        dest,
        drive: DriveSelector::Id(drive.drive_id.clone().into()),
        ..template.clone()
    })
}

fn not_started(drive: TenantDrive) -> DriveReport {
    DriveReport {
        drive,
        status: DriveStatus::NotStarted,
        verdict: Verdict::SomeFailed,
        error: None,
        files_downloaded: 0,
        files_present: 0,
        files_failed: 0,
        bytes: 0,
        elapsed_secs: 0.0,
        summary: None,
    }
}

async fn back_up_one(
    graph: &GraphClient,
    drive: TenantDrive,
    settings: Result<RunSettings, Error>,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> DriveReport {
    let started = Instant::now();
    let outcome = match settings {
        Ok(settings) => {
            tracing::info!(folder = %drive.folder, drive = %drive.drive_id, "drive backup started");
            Box::pin(app::run_on(graph, &settings, reporter, cancel)).await
        }
        Err(err) => Err(err),
    };
    let mut report = not_started(drive);
    report.elapsed_secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok(summary) => {
            let fatal = summary.fatal_kind();
            (report.status, report.verdict) = if let Some(kind) = fatal {
                (DriveStatus::Failed, Verdict::of_kind(kind))
            } else if summary.interrupted {
                (DriveStatus::Interrupted, Verdict::Interrupted)
            } else if summary.all_done() {
                (DriveStatus::Ok, Verdict::Ok)
            } else {
                (DriveStatus::Incomplete, Verdict::SomeFailed)
            };
            if let Some(d) = &summary.download {
                report.files_downloaded = d.downloaded;
                report.files_present = d.adopted;
                report.files_failed = d.failed;
                report.bytes = d.bytes;
                report.error = d.fatal.as_ref().map(|f| f.message.clone());
            }
            report.summary = Some(summary);
        }
        Err(err) => {
            let kind = err.kind();
            report.status = if kind == ErrorKind::Locked {
                DriveStatus::Locked
            } else {
                DriveStatus::Failed
            };
            report.verdict = Verdict::of_kind(kind);
            report.error = Some(err.to_string());
        }
    }
    tracing::info!(
        folder = %report.drive.folder,
        status = status_name(report.status),
        "drive backup finished"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(drive: &str, upn: &str) -> TenantDrive {
        TenantDrive {
            kind: Holder::User,
            drive_id: drive.to_owned(),
            drive_type: Some("business".into()),
            folder: String::new(),
            user: Some(upn.to_owned()),
            user_id: Some(format!("id-{drive}")),
            display_name: None,
            site_id: None,
            site_name: None,
            site_url: None,
            library: None,
        }
    }

    #[test]
    fn a_drive_listed_twice_is_kept_once_and_folders_never_meet() {
        let placed = place(vec![
            user("b!A", "adele@x"),
            user("b!B", "Adele@X"),
            user("b!A", "adele@x"),
            user("b!C", "megan@x"),
        ]);
        assert_eq!(placed.len(), 3);
        let folders: HashSet<String> = placed.iter().map(|d| d.folder.to_lowercase()).collect();
        assert_eq!(folders.len(), 3, "{placed:?}");
        assert!(placed.iter().any(|d| d.folder == "users/megan@x"));
    }

    #[test]
    fn the_worst_drive_decides_and_an_interruption_beats_all() {
        let mut summary = TenantSummary {
            shard: None,
            drives_discovered: 0,
            drives: vec![],
            without_drive: vec![],
            unreachable: vec![],
            requests: 0,
            throttle_events: 0,
            elapsed_secs: 0.0,
            interrupted: false,
        };
        assert_eq!(summary.verdict(), Verdict::Ok);
        for (verdict, status) in [
            (Verdict::Ok, DriveStatus::Ok),
            (Verdict::Locked, DriveStatus::Locked),
            (Verdict::SomeFailed, DriveStatus::Incomplete),
        ] {
            let mut r = not_started(user("b!x", "x@x"));
            r.verdict = verdict;
            r.status = status;
            summary.drives.push(r);
        }
        assert_eq!(summary.verdict(), Verdict::Locked);
        summary.interrupted = true;
        assert_eq!(summary.verdict(), Verdict::Interrupted);
    }

    #[test]
    fn personal_sites_are_recognised_by_their_address() {
        let site = |url: &str| Site {
            id: "h,1,2".into(),
            name: None,
            display_name: None,
            web_url: Some(url.into()),
        };
        assert!(is_personal_site(&site(
            "https://contoso-my.sharepoint.com/personal/adele_contoso_com"
        )));
        assert!(!is_personal_site(&site(
            "https://contoso.sharepoint.com/sites/Team"
        )));
    }

    /// Keeps the paths of the notices it is told.
    #[derive(Default)]
    struct NoticePaths(std::sync::Mutex<Vec<Option<String>>>);

    impl Reporter for NoticePaths {
        fn event(&self, event: &Event<'_>) {
            if let Event::Notice { path, .. } = event {
                self.0.lock().unwrap().push(path.map(str::to_owned));
            }
        }
    }

    #[test]
    fn a_notice_from_one_of_several_drives_says_whose_it_is() {
        let seen = Arc::new(NoticePaths::default());
        let reporter = DriveReporter {
            inner: Arc::clone(&seen) as Arc<dyn Reporter>,
            folder: "users/adele@x/".to_owned(),
        };
        for path in [Some("Photos/a.jpg"), None] {
            reporter.event(&Event::Notice {
                kind: crate::progress::NoticeKind::LocalFileDisplaced,
                path,
                message: "moved aside",
                detail: None,
            });
        }
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                Some("users/adele@x/Photos/a.jpg".to_owned()),
                Some("users/adele@x/".to_owned())
            ]
        );
    }
}
