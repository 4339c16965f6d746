//! Progress on a terminal (indicatif bars on stderr), nothing otherwise.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use odbackup::progress::{Event, NoopReporter, Reporter};

/// The progress display of one run.
pub struct Display {
    bars: Option<Arc<Bars>>,
}

struct Bars {
    crawl: ProgressBar,
    files: ProgressBar,
}

impl Display {
    /// Bars when stderr is a terminal and the user did not ask for quiet; otherwise nothing.
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let crawl = multi.add(ProgressBar::new_spinner());
        crawl.set_style(
            ProgressStyle::with_template("{spinner} listing: {pos} items ({per_sec}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        crawl.enable_steady_tick(Duration::from_millis(200));
        let files = multi.add(ProgressBar::new(0));
        files.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files  ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bars: Some(Arc::new(Bars { crawl, files })),
        }
    }

    /// The reporter that feeds this display.
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        match &self.bars {
            Some(bars) => Arc::clone(bars) as Arc<dyn Reporter>,
            None => Arc::new(NoopReporter),
        }
    }

    /// Clear the bars before the summary is printed.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.crawl.finish_and_clear();
            bars.files.finish_and_clear();
        }
    }
}

impl Reporter for Bars {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::CrawlStarted { scope, resumed } => {
                self.crawl.set_message(format!(
                    "{scope}{}",
                    if *resumed { " (resuming)" } else { "" }
                ));
            }
            Event::PageListed { items, .. } => self.crawl.inc(*items as u64),
            Event::CrawlFinished { .. } => self.crawl.finish_with_message("done"),
            Event::Queued { files, .. } => self.files.inc_length(*files),
            Event::Bytes(_) => {}
            Event::FileDone { .. } => self.files.inc(1),
            Event::FileFailed { path, class, .. } => {
                self.files.inc(1);
                self.files.println(format!("failed ({class}): {path}"));
            }
            Event::Throttled { wait } => self
                .files
                .set_message(format!("throttled, waiting {}s", wait.as_secs())),
        }
    }
}
