//! Human tables and `--json` documents for results, and error lines with what to do next.

use std::io::Write as _;

use odbackup::Error;
use odbackup::app::RunSummary;
use odbackup::manifest::{FailureRow, StatusReport};

/// Print a run-level error: one line saying what failed, then its causes.
pub fn error(err: &Error) {
    let mut line = format!("odbackup: error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    error_line(&line);
}

/// Print one line to stderr.
pub fn error_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Print a note to stderr.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "odbackup: {line}");
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// The end-of-run summary.
pub fn summary(summary: &RunSummary, json: bool) {
    if json {
        print_json(summary);
        return;
    }
    let mut out = String::new();
    if let Some(c) = &summary.crawl {
        out.push_str(&format!(
            "crawl: {} folders listed, {} items recorded{}{}{}{}\n",
            c.folders_listed,
            c.items_seen,
            if c.resumed { " (resumed)" } else { "" },
            if c.folders_refused > 0 {
                format!(", {} folders refused", c.folders_refused)
            } else {
                String::new()
            },
            if c.marked_deleted > 0 {
                format!(", {} gone from the drive (kept locally)", c.marked_deleted)
            } else {
                String::new()
            },
            if c.complete {
                ""
            } else {
                ", not finished: re-run to resume"
            },
        ));
    }
    if let Some(d) = &summary.download {
        let secs = summary.elapsed.as_secs_f64().max(0.001);
        out.push_str(&format!(
            "download: {} downloaded, {} already present, {} failed; {} in {:.1}s ({}/s)\n",
            d.downloaded,
            d.adopted,
            d.failed,
            human_bytes(d.bytes),
            secs,
            human_bytes((d.bytes as f64 / secs) as u64),
        ));
        if d.requeued > 0 {
            out.push_str(&format!(
                "  {} files marked done were missing or changed on disk and were fetched again\n",
                d.requeued
            ));
        }
        for (class, n) in &d.failures_by_class {
            out.push_str(&format!("  {n} failed: {class}\n"));
        }
        if let Some(fatal) = &d.fatal {
            out.push_str(&format!("stopped early: {fatal}\n"));
            if d.fatal_class.as_deref() == Some("auth") {
                out.push_str("  the access token was refused: set a fresh ODBACKUP_ACCESS_TOKEN, then re-run the same command\n");
            }
        }
        if d.failed > 0 {
            out.push_str(
                "see `odbackup failures --dest …` for details; re-run the same command to retry\n",
            );
        }
    }
    if summary.interrupted {
        out.push_str("interrupted: re-run the same command to resume\n");
    }
    let _ = write!(std::io::stdout(), "{out}");
}

/// `odbackup status`.
pub fn status(report: &StatusReport, json: bool) {
    if json {
        print_json(report);
        return;
    }
    let _ = write!(std::io::stdout(), "{report}");
}

/// `odbackup failures`.
pub fn failures(rows: &[FailureRow], json: bool) {
    if json {
        print_json(&rows);
        return;
    }
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        let _ = writeln!(out, "no failures");
        return;
    }
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>8}  {}",
        "CLASS", "HTTP", "ATTEMPTS", "PATH / MESSAGE"
    );
    for row in rows {
        let status = row
            .http_status
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>8}  {}",
            row.class, status, row.attempts, row.remote_path
        );
        let _ = writeln!(out, "{:<33}  {}", "", row.message);
    }
    let _ = writeln!(
        out,
        "{} failed; re-run the same backup or download command to retry them",
        rows.len()
    );
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
