//! Progress on a terminal (indicatif bars on stderr), nothing otherwise; log lines that pass over the bars
//! without breaking them; and the `--dry-run -v` list.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use odbackup::progress::{Event, Reporter};

use super::render::{escape_for_terminal, human_bytes, terminal_safe};

/// Every bar of the process hangs here, so log lines can be printed above them (see [`LogWriter`]).
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// The progress display of one run.
pub struct Display {
    bars: Option<Arc<Bars>>,
    json: bool,
}

/// The two bars appear when their phase starts, so a download shows no listing spinner and a crawl no
/// transfer bar.
struct Bars {
    crawl: OnceLock<ProgressBar>,
    files: OnceLock<ProgressBar>,
    folders: AtomicU64,
    files_total: AtomicU64,
    files_done: AtomicU64,
    files_failed: AtomicU64,
    /// Throttle answers so far, and the transfers allowed at once since the last episode.
    throttles: AtomicU64,
    transfers: AtomicU64,
}

/// What a run reports to: the bars (if drawn) and, in a dry run with `-v`, the list of files.
struct RunReporter {
    bars: Option<Arc<Bars>>,
    list_planned: bool,
    /// `--json`: notices go to stderr as JSON lines, not as log lines.
    json: bool,
}

impl Display {
    /// Bars when stderr is a terminal and the user did not ask for quiet; otherwise nothing.
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self {
                bars: None,
                json: false,
            };
        }
        Self {
            json: false,
            bars: Some(Arc::new(Bars {
                crawl: OnceLock::new(),
                files: OnceLock::new(),
                folders: AtomicU64::new(0),
                files_total: AtomicU64::new(0),
                files_done: AtomicU64::new(0),
                files_failed: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                transfers: AtomicU64::new(0),
            })),
        }
    }

    /// No bars (`--json` output is for programs); notices are written to stderr as JSON lines.
    pub fn json() -> Self {
        Self {
            bars: None,
            json: true,
        }
    }

    /// [`Display::json`] when `json`, else [`Display::new`].
    pub fn for_output(quiet: bool, json: bool) -> Self {
        if json { Self::json() } else { Self::new(quiet) }
    }

    /// The reporter that feeds this display; with `list_planned`, a dry run's files are listed on stdout.
    pub fn reporter(&self, list_planned: bool) -> Arc<dyn Reporter> {
        Arc::new(RunReporter {
            bars: self.bars.clone(),
            list_planned,
            json: self.json,
        })
    }

    /// Clear the bars before the summary is printed.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            for bar in [bars.crawl.get(), bars.files.get()].into_iter().flatten() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Bars {
    fn crawl(&self) -> &ProgressBar {
        self.crawl.get_or_init(|| {
            let bar = BARS.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} listing: {msg} folders, {pos} items ({per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message("0");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        })
    }

    fn files(&self) -> &ProgressBar {
        self.files.get_or_init(|| {
            let bar = BARS.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:25} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        })
    }

    fn files_message(&self) {
        let failed = self.files_failed.load(Ordering::Relaxed);
        let throttles = self.throttles.load(Ordering::Relaxed);
        self.files().set_message(format!(
            "{}/{} files{}{}",
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            },
            if throttles > 0 {
                format!(
                    ", throttled {throttles}× ({} at once)",
                    self.transfers.load(Ordering::Relaxed)
                )
            } else {
                String::new()
            }
        ));
    }

    fn event(&self, event: &Event<'_>) {
        match event {
            Event::CrawlStarted { .. } => {
                self.crawl();
            }
            Event::PageListed { items, folder_done } => {
                if *folder_done {
                    let n = self.folders.fetch_add(1, Ordering::Relaxed) + 1;
                    self.crawl().set_message(n.to_string());
                }
                self.crawl().inc(*items as u64);
            }
            Event::CrawlFinished { .. } => self.crawl().finish(),
            Event::Queued { files, bytes } => {
                self.files_total.fetch_add(*files, Ordering::Relaxed);
                self.files().inc_length(*bytes);
                self.files_message();
            }
            Event::Bytes(n) => self.files().inc(*n),
            Event::FileDone { bytes, adopted, .. } => {
                if *adopted {
                    // Its bytes never streamed; count them so the bar still reaches its end.
                    self.files().inc(*bytes);
                }
                self.files_done.fetch_add(1, Ordering::Relaxed);
                self.files_message();
            }
            Event::FileFailed { path, class, .. } => {
                self.files_failed.fetch_add(1, Ordering::Relaxed);
                self.files_message();
                self.files().println(format!(
                    "failed ({}): {}",
                    terminal_safe(class),
                    terminal_safe(path)
                ));
            }
            Event::Displaced { path, trash } => {
                self.files().println(format!(
                    "moved aside (not written by odbackup): {path} → {trash}"
                ));
            }
            // Listed (with `-v`) and said (notices, as log lines passing over the bars) by the reporter.
            Event::Planned { .. } | Event::Notice { .. } => {}
            Event::DedupeFellBack { path, reason } => {
                self.files().println(format!(
                    "hard links refused here ({}), starting with {}: files with the same content are downloaded as copies",
                    terminal_safe(reason),
                    terminal_safe(path)
                ));
            }
            Event::DriveFinished {
                folder,
                status,
                error,
            } => {
                self.files().println(format!(
                    "drive {}: {}{}",
                    terminal_safe(folder),
                    status,
                    error
                        .map(|e| format!(" ({})", terminal_safe(e)))
                        .unwrap_or_default()
                ));
            }
            Event::Throttled { answers, transfers } => {
                self.throttles.store(*answers, Ordering::Relaxed);
                self.transfers.store(*transfers as u64, Ordering::Relaxed);
                self.files_message();
            }
        }
    }
}

impl Reporter for RunReporter {
    fn event(&self, event: &Event<'_>) {
        if let Some(bars) = &self.bars {
            bars.event(event);
        }
        if let Event::Notice {
            kind,
            path,
            message,
            detail,
        } = event
        {
            notice(self.json, *kind, *path, message, *detail);
        }
        if let (true, Event::Planned { path, bytes }) = (self.list_planned, event) {
            BARS.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "would download {:>10}  {}",
                    human_bytes(*bytes),
                    terminal_safe(path)
                );
            });
        }
    }
}

/// Say a notice: a warning log line as before (on stderr, and in the log file), or with `--json` one JSON
/// object per line on stderr (`{"event":"notice","kind":…,"path":…,"message":…,"detail":…}`), kept apart from
/// the summary on stdout (and in the log file at info level).
fn notice(
    json: bool,
    kind: odbackup::progress::NoticeKind,
    path: Option<&str>,
    message: &str,
    detail: Option<&str>,
) {
    if json {
        let line = serde_json::json!({
            "event": "notice",
            "kind": kind.as_str(),
            "path": path,
            "message": message,
            "detail": detail,
        });
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        tracing::info!(kind = kind.as_str(), path, error = detail, "{message}");
    } else {
        tracing::warn!(path, error = detail, "{message}");
    }
}

/// Log output to stderr that hides the bars while a line is written, so logs and progress do not mangle
/// each other.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = escaped_log_line(buf);
        BARS.suspend(|| std::io::stderr().lock().write_all(&line))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A log file's writer: each line escaped as on stderr (`tail -f` shows the file on a terminal).
#[derive(Debug)]
pub struct EscapedLog<W>(pub W);

impl<W: std::io::Write> std::io::Write for EscapedLog<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escaped_log_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One formatted log line (uncoloured: `main` turns the formatter's colours off). The formatter escapes
/// control characters in a line's message only, not in its fields, which name remote paths: every control
/// character and bidirectional override is escaped here but the line's tabs and final newline, so a name can
/// neither command the terminal nor start a log line of its own.
fn escaped_log_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match std::str::from_utf8(buf) {
        Ok(text) => {
            let (body, end) = match text.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (text, ""),
            };
            match escape_for_terminal(body, |c| c == '\t') {
                Cow::Borrowed(_) => Cow::Borrowed(buf),
                Cow::Owned(safe) => Cow::Owned(format!("{safe}{end}").into_bytes()),
            }
        }
        // Not UTF-8 (the formatter writes UTF-8): shown with the invalid bytes replaced, then escaped.
        Err(_) => Cow::Owned(
            escape_for_terminal(&String::from_utf8_lossy(buf), |c| c == '\t' || c == '\n')
                .into_owned()
                .into_bytes(),
        ),
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
