//! One function per subcommand: arguments → settings → `odbackup::app` → rendered output.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Args, Command, CommonArgs, DestArgs, RemoteArgs, progress, render};
use odbackup::app::{self, Phases, RunSettings, RunSummary};
use odbackup::crawl::Scope;
use odbackup::graph::{DriveSelector, GraphOptions};
use odbackup::ids::DriveId;
use odbackup::progress::Reporter;
use odbackup::{Error, ErrorKind};

/// How a command ended, for `main` to turn into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything wanted is on disk and verified (or the read-only command succeeded).
    Success,
    /// Some items failed; they are on record.
    SomeFailed,
    /// The user interrupted the run.
    Interrupted,
    /// A run-level error of this kind stopped it (already printed).
    Failed(ErrorKind),
}

/// Run the parsed command line.
pub fn run(args: Args) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            render::error_line(&format!("could not start the async runtime: {err}"));
            return Outcome::Failed(ErrorKind::Run);
        }
    };
    let quiet = args.quiet;
    let result = runtime.block_on(async move {
        match args.command {
            Command::Crawl { remote, json } => run_job(remote_settings(&remote, Phases::Crawl, 1), json, quiet).await,
            Command::Backup {
                remote,
                concurrency,
                json,
            } => run_job(remote_settings(&remote, Phases::Backup, concurrency), json, quiet).await,
            Command::Download {
                common,
                concurrency,
                json,
            } => {
                let settings = settings(&common, Phases::Download, concurrency, DriveSelector::Me, Scope::Root, 1);
                run_job(settings, json, quiet).await
            }
            Command::Status { dest, json } => {
                let report = app::status(&manifest_path(&dest))?;
                render::status(&report, json);
                Ok(Outcome::Success)
            }
            Command::Failures { dest, json } => {
                let rows = app::failures(&manifest_path(&dest))?;
                render::failures(&rows, json);
                Ok(Outcome::Success)
            }
        }
    });
    // Don't wait for stray blocking tasks (a hashing job of an interrupted transfer) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(outcome) => outcome,
        Err(err) => {
            render::error(&err);
            Outcome::Failed(err.kind())
        }
    }
}

async fn run_job(settings: Result<RunSettings, Error>, json: bool, quiet: bool) -> Result<Outcome, Error> {
    let settings = settings?;
    let cancel = CancellationToken::new();
    spawn_interrupt_handler(cancel.clone());
    let display = progress::Display::new(quiet || json);
    let reporter: Arc<dyn Reporter> = display.reporter();
    let summary = app::run(&settings, reporter, &cancel).await;
    display.finish();
    let summary = summary?;
    render::summary(&summary, json);
    Ok(outcome_of(&summary))
}

fn outcome_of(summary: &RunSummary) -> Outcome {
    if let Some(download) = &summary.download {
        if download.fatal_class.as_deref() == Some("auth") {
            return Outcome::Failed(ErrorKind::Auth);
        }
        if download.fatal.is_some() {
            return Outcome::Failed(ErrorKind::Run);
        }
    }
    if summary.interrupted {
        Outcome::Interrupted
    } else if summary.all_done() {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    }
}

/// First Ctrl-C: stop scheduling, let in-flight transfers stop at a chunk boundary, record what finished.
/// Second: leave at once (every manifest write is a transaction, so it stays consistent).
fn spawn_interrupt_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        render::note("interrupted: finishing in-flight work and saving state (Ctrl-C again to quit at once)");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            render::note("interrupted again: quitting now; re-run the same command to resume");
            std::process::exit(130);
        }
    });
}

fn manifest_path(dest: &DestArgs) -> std::path::PathBuf {
    dest.manifest.clone().unwrap_or_else(|| app::default_manifest_path(&dest.dest))
}

fn remote_settings(remote: &RemoteArgs, phases: Phases, concurrency: usize) -> Result<RunSettings, Error> {
    let scope = match (&remote.root, &remote.special) {
        (Some(path), _) => Scope::Path(path.clone()),
        (None, Some(name)) => Scope::Special(name.clone()),
        (None, None) => Scope::Root,
    };
    let drive = remote
        .drive_id
        .as_ref()
        .map_or(DriveSelector::Me, |id| DriveSelector::Id(DriveId::from(id.as_str())));
    settings(&remote.common, phases, concurrency, drive, scope, remote.list_concurrency)
}

fn settings(
    common: &CommonArgs,
    phases: Phases,
    concurrency: usize,
    drive: DriveSelector,
    scope: Scope,
    list_concurrency: usize,
) -> Result<RunSettings, Error> {
    let url = url::Url::parse(&common.graph_url)
        .map_err(|e| Error::Usage(format!("--graph-url {:?} is not a URL: {e}", common.graph_url)))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Error::Usage(format!("--graph-url must be http(s), not {}", url.scheme())));
    }
    let graph = GraphOptions {
        base_url: common.graph_url.trim_end_matches('/').to_owned(),
        ..GraphOptions::default()
    };
    let access_token = std::env::var("ODBACKUP_ACCESS_TOKEN").ok().filter(|t| !t.trim().is_empty());
    Ok(RunSettings {
        manifest: manifest_path(&common.dest),
        dest: common.dest.dest.clone(),
        graph,
        access_token,
        drive,
        scope,
        list_concurrency,
        concurrency,
        phases,
    })
}
