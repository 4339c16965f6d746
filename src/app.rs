//! One run of odbackup: take the manifest's lock, build the Graph client, run the crawler and the downloader
//! side by side, and hand back a summary. This is the only module that knows both seams and both halves of
//! the core; it still never prints (the command line renders what it returns).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::{StaticTokenSource, TokenSource};
use crate::crawl::{self, CrawlOptions, CrawlProgress, CrawlSummary, Scope};
use crate::download::{self, DownloadOptions, DownloadSummary};
use crate::error::Error;
use crate::graph::{DriveSelector, GraphClient, GraphOptions};
use crate::manifest::{DriveRecord, FailureRow, Manifest, RunLock, StatusReport};
use crate::progress::Reporter;
use crate::shared::SharedManifest;

/// The manifest's file name inside `DEST/.odbackup/`.
pub const MANIFEST_FILE: &str = "manifest.sqlite";
/// The folder inside the destination that holds odbackup's own state.
pub const STATE_DIR: &str = ".odbackup";

/// The manifest path for a destination unless `--manifest` says otherwise.
pub fn default_manifest_path(dest: &Path) -> PathBuf {
    dest.join(STATE_DIR).join(MANIFEST_FILE)
}

/// Which phases a run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// List the drive into the manifest only.
    Crawl,
    /// Fetch what the manifest holds only.
    Download,
    /// Both, overlapped: downloads start while the crawl is listing.
    Backup,
}

impl Phases {
    fn name(self) -> &'static str {
        match self {
            Phases::Crawl => "crawl",
            Phases::Download => "download",
            Phases::Backup => "backup",
        }
    }
}

/// Everything a run needs, resolved and validated by the caller.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The backup's root folder.
    pub dest: PathBuf,
    /// Where the manifest lives.
    pub manifest: PathBuf,
    /// How to reach Graph.
    pub graph: GraphOptions,
    /// A bearer token to use as is (`ODBACKUP_ACCESS_TOKEN`).
    pub access_token: Option<String>,
    /// Which drive.
    pub drive: DriveSelector,
    /// Where the crawl starts.
    pub scope: Scope,
    /// Folders listed at once.
    pub list_concurrency: usize,
    /// Transfers at once.
    pub concurrency: usize,
    /// What to do.
    pub phases: Phases,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// `crawl`, `download` or `backup`.
    pub command: &'static str,
    /// The crawl's summary, when the run crawled.
    pub crawl: Option<CrawlSummary>,
    /// The download's summary, when the run downloaded.
    pub download: Option<DownloadSummary>,
    /// Wall time.
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
    /// Whether the user interrupted it.
    pub interrupted: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RunSummary {
    /// Whether everything wanted is on disk and verified (exit 0) or something failed or is left (exit 1).
    pub fn all_done(&self) -> bool {
        !self.interrupted
            && self
                .download
                .as_ref()
                .is_none_or(|d| d.failed == 0 && d.fatal.is_none())
            && self.crawl.as_ref().is_none_or(|c| c.complete)
    }
}

/// Run a crawl, a download or a backup.
pub async fn run(
    settings: &RunSettings,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<RunSummary, Error> {
    let started = Instant::now();
    let tokens: Arc<dyn TokenSource> = match &settings.access_token {
        Some(token) => Arc::new(StaticTokenSource::new(token.clone())),
        None => return Err(Error::NoCredentials),
    };
    let _lock = RunLock::acquire(&settings.manifest)?;
    let mut manifest = Manifest::open(&settings.manifest)?;
    let run_id = manifest.begin_run(settings.phases.name())?;
    let manifest = SharedManifest::new(manifest);
    let graph = GraphClient::new(settings.graph.clone(), tokens)?;

    let outcome = run_phases(settings, &graph, &manifest, reporter, cancel).await;
    let (outcome_name, summary_json) = match &outcome {
        Ok((crawl, download)) => {
            let summary = RunSummary {
                command: settings.phases.name(),
                crawl: crawl.clone(),
                download: download.clone(),
                elapsed: started.elapsed(),
                interrupted: cancel.is_cancelled(),
            };
            let name = if summary.interrupted {
                "interrupted"
            } else if summary.all_done() {
                "ok"
            } else {
                "incomplete"
            };
            (name, serde_json::to_string(&summary).unwrap_or_default())
        }
        Err(err) => (
            "error",
            serde_json::json!({ "error": err.to_string() }).to_string(),
        ),
    };
    let outcome_name = outcome_name.to_owned();
    manifest
        .call(move |m| m.finish_run(run_id, &outcome_name, &summary_json))
        .await?;
    let (crawl, download) = outcome?;
    Ok(RunSummary {
        command: settings.phases.name(),
        crawl,
        download,
        elapsed: started.elapsed(),
        interrupted: cancel.is_cancelled(),
    })
}

async fn run_phases(
    settings: &RunSettings,
    graph: &GraphClient,
    manifest: &SharedManifest,
    reporter: Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<(Option<CrawlSummary>, Option<DownloadSummary>), Error> {
    let (progress_tx, progress_rx) = watch::channel(CrawlProgress::default());
    let download_options = DownloadOptions {
        dest: settings.dest.clone(),
        concurrency: settings.concurrency,
    };
    if settings.phases == Phases::Download {
        progress_tx.send_modify(|p| p.ended = true);
        let summary = download::download(
            graph,
            manifest,
            &download_options,
            reporter,
            cancel,
            progress_rx,
        )
        .await?;
        return Ok((None, Some(summary)));
    }

    let drive = graph
        .drive(&settings.drive)
        .await
        .map_err(Error::from_graph("reading the drive"))?;
    let record = DriveRecord {
        drive_id: drive.id.clone(),
        drive_type: drive.drive_type.clone(),
        owner: drive.owner.clone(),
        root_item_id: None,
    };
    manifest.call(move |m| m.upsert_drive(&record)).await?;
    let crawl_options = CrawlOptions {
        scope: settings.scope.clone(),
        list_concurrency: settings.list_concurrency,
    };
    let crawl_fut = crawl::crawl(
        graph,
        manifest,
        &drive.id,
        &crawl_options,
        Arc::clone(&reporter),
        cancel,
        &progress_tx,
    );
    if settings.phases == Phases::Crawl {
        let summary = crawl_fut.await?;
        return Ok((Some(summary), None));
    }
    // Backup: the downloader follows the crawl. If the crawl fails, the downloader still finishes what was
    // found (it sees `ended`), and the crawl error is reported after.
    let download_fut = download::download(
        graph,
        manifest,
        &download_options,
        reporter,
        cancel,
        progress_rx,
    );
    let (crawled, downloaded) = tokio::join!(crawl_fut, download_fut);
    let downloaded = downloaded?;
    let crawled = crawled?;
    Ok((Some(crawled), Some(downloaded)))
}

/// The manifest's counts, for `status`. Reads without taking the run lock (`SQLite`'s WAL lets a reader in
/// while a run writes).
pub fn status(manifest_path: &Path) -> Result<StatusReport, Error> {
    let manifest = open_existing(manifest_path)?;
    Ok(manifest.status()?)
}

/// Every failed item, for `failures`.
pub fn failures(manifest_path: &Path) -> Result<Vec<FailureRow>, Error> {
    let manifest = open_existing(manifest_path)?;
    Ok(manifest.failures()?)
}

fn open_existing(path: &Path) -> Result<Manifest, Error> {
    if !path.exists() {
        return Err(Error::NoManifest {
            path: path.to_path_buf(),
        });
    }
    Ok(Manifest::open(path)?)
}
