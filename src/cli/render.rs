//! Human tables and `--json` documents for results, and error lines with what to do next.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use odbackup::Error;
use odbackup::app::RunSummary;
use odbackup::browse::RemoteEntry;
use odbackup::manifest::{FailureClass, FailureRow, StatusReport};

/// Text that may hold a remote name (a file name, a path, a message quoting one, an owner's name), made safe to
/// show on a terminal or in any human output: control characters (C0 including newline and tab, DEL, C1) and
/// the Unicode bidirectional overrides, isolates and marks are shown as escapes (`\x1b`, `\u{202e}`). A name
/// can then neither send the terminal commands (retitle the window, clear the screen, fake a line) nor make text
/// read in another order than it is. `--json` output is left to serde, which escapes control characters itself
/// and keeps the name exact. OneDrive names cannot hold `\`, so an escape is never ambiguous with a name.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_for_terminal(text, |_| false)
}

/// [`terminal_safe`], keeping the characters `keep` says are the caller's own (a log line's colours: the log
/// formatter has already escaped every ESC that came from a value).
pub fn escape_for_terminal(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        !keep(c)
            && (c.is_control()
                || matches!(
                    c,
                    '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
                        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                ))
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

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
    // Messages quote remote paths and the service's words.
    error_line(&terminal_safe(&line));
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
    let _ = write_summary(&mut std::io::stdout().lock(), summary);
}

#[allow(clippy::too_many_lines)] // the run summary's lines, in the order they are printed
fn write_summary(out: &mut impl std::io::Write, summary: &RunSummary) -> std::io::Result<()> {
    if let Some(delta) = summary
        .crawl
        .as_ref()
        .and_then(|c| c.incremental.as_ref())
        .filter(|d| d.changes == 0)
    {
        writeln!(
            out,
            "changes: none since the last run ({} request{})",
            delta.pages,
            if delta.pages == 1 { "" } else { "s" }
        )?;
    } else if let Some(delta) = summary.crawl.as_ref().and_then(|c| c.incremental.as_ref()) {
        writeln!(
            out,
            "changes: {} applied since the last run ({} deleted on the drive, kept here; {} folders moved) from {} page(s)",
            delta.changes, delta.deleted, delta.folders_moved, delta.pages
        )?;
    } else if let Some(c) = &summary.crawl {
        write!(
            out,
            "crawl: {} folders listed, {} items recorded",
            c.folders_listed, c.items_seen
        )?;
        if c.resumed {
            write!(out, " (resumed)")?;
        }
        if c.folders_refused > 0 {
            write!(out, ", {} folders refused (see status)", c.folders_refused)?;
        }
        if c.folders_unreadable > 0 {
            write!(
                out,
                " of which {} sent answers that could not be read: re-run to list them again",
                c.folders_unreadable
            )?;
        }
        if c.marked_deleted > 0 {
            write!(
                out,
                ", {} gone from the drive (kept locally)",
                c.marked_deleted
            )?;
        }
        if !c.complete {
            write!(out, ", not finished: re-run to resume")?;
        }
        writeln!(out)?;
    }
    if let Some(c) = &summary.crawl {
        // Once per run and by name: not a failure, and nothing the user can fix from here.
        for path in &c.inaccessible {
            writeln!(
                out,
                "skipped {path}: OneDrive does not let apps list it (a Personal Vault)"
            )?;
        }
        if c.incremental.is_some() && c.folders_unreadable > 0 {
            writeln!(
                out,
                "{} folders moved into the backup could not be listed: re-run to list them again",
                c.folders_unreadable
            )?;
        }
    }
    let idle = summary.download.as_ref().is_some_and(|d| {
        d.downloaded
            + d.adopted
            + d.deduplicated
            + d.failed
            + d.moved
            + d.trashed
            + d.versions_kept
            + d.displaced
            == 0
            && d.fatal.is_none()
    });
    if idle {
        if !summary.interrupted {
            writeln!(out, "download: nothing to fetch")?;
        }
    } else if let Some(d) = &summary.download {
        let secs = summary.elapsed.as_secs_f64().max(0.001);
        writeln!(
            out,
            "download: {} downloaded, {} already present, {} failed; {} in {:.1}s ({}/s){}",
            d.downloaded,
            d.adopted,
            d.failed,
            human_bytes(d.bytes),
            secs,
            human_bytes((d.bytes as f64 / secs) as u64),
            if d.downloaded > 0 {
                format!(
                    "; {} came with their listing's download URL",
                    d.with_listing_url
                )
            } else {
                String::new()
            }
        )?;
        if d.folders_relisted > 0 {
            writeln!(
                out,
                "download: {} folders listed again for {} fresh download URLs (their listing's had expired)",
                d.folders_relisted, d.urls_relisted
            )?;
        }
        for (caveat, n) in &d.accepted_with_caveat {
            writeln!(
                out,
                "  {n} kept with a caveat: {caveat} (see `odbackup status`; the manifest says what differed)"
            )?;
        }
        if d.kept_with_caveat > 0 {
            writeln!(
                out,
                "  of the files of this run, {} match their listed size and hash; {} kept with a caveat are as the service serves them, not verified against the listing in full",
                d.verified_by_hash, d.kept_with_caveat
            )?;
        }
        if d.throttled > 0 {
            writeln!(
                out,
                "  throttled {} times by the service: waited {:.0}s in all, transfers at once lowered {} times (to {} at the fewest)",
                d.throttled, d.throttle_wait_secs, d.concurrency_drops, d.concurrency_lowest
            )?;
        }
        if d.superseded > 0 {
            writeln!(
                out,
                "  {} files changed on the drive while they were being fetched; their new version was fetched instead",
                d.superseded
            )?;
        }
        if d.moved > 0 {
            writeln!(
                out,
                "  {} files renamed or moved on the drive were moved on disk (not downloaded again)",
                d.moved
            )?;
        }
        if d.trashed > 0 {
            writeln!(
                out,
                "  {} files deleted on the drive moved into .odbackup/trash/",
                d.trashed
            )?;
        }
        if d.deduplicated > 0 {
            writeln!(
                out,
                "  {} files stored as hard links of a copy with the same content ({} not downloaded)",
                d.deduplicated,
                human_bytes(d.dedupe_bytes_saved)
            )?;
        }
        if let Some(reason) = &d.dedupe_refused {
            writeln!(
                out,
                "  {} files with a copy on disk were downloaded anyway: the destination refused hard links ({})",
                d.dedupe_fell_back,
                terminal_safe(reason)
            )?;
        }
        if d.versions_kept > 0 {
            writeln!(
                out,
                "  {} previous versions of changed files kept in .odbackup/trash/",
                d.versions_kept
            )?;
        }
        if d.displaced > 0 {
            writeln!(
                out,
                "  {} local files odbackup had not written were in the way: moved into .odbackup/trash/ (never overwritten)",
                d.displaced
            )?;
        }
        if d.requeued > 0 {
            writeln!(
                out,
                "  {} files marked done were missing or changed on disk and were fetched again",
                d.requeued
            )?;
        }
        for (class, n) in &d.failures_by_class {
            writeln!(out, "  {n} failed: {class}")?;
        }
        if let Some(fatal) = &d.fatal {
            writeln!(out, "stopped early: {}", terminal_safe(&fatal.message))?;
            if fatal.class == FailureClass::Auth {
                writeln!(
                    out,
                    "  sign-in expired or was refused: run `odbackup login` (or set a fresh ODBACKUP_ACCESS_TOKEN), then re-run the same command"
                )?;
            }
        }
        if d.failed > 0 {
            writeln!(
                out,
                "see `odbackup failures --dest …` for details; re-run the same command to retry"
            )?;
        }
    }
    if let Some(plan) = &summary.dry_run {
        writeln!(
            out,
            "dry run: would download {} files, {}{}; nothing was written but the manifest",
            plan.files,
            human_bytes(plan.bytes),
            if plan.requeued > 0 {
                format!(" ({} of them missing or changed on disk)", plan.requeued)
            } else {
                String::new()
            }
        )?;
    }
    if summary.excluded_files > 0 {
        writeln!(
            out,
            "filters: {} files ({}) left out, recorded in the manifest (see status)",
            summary.excluded_files,
            human_bytes(summary.excluded_bytes)
        )?;
    }
    if summary.notebooks.notebooks > 0 {
        writeln!(
            out,
            "OneNote notebooks: {} ({} section files on disk)",
            summary.notebooks.notebooks, summary.notebooks.section_files_done
        )?;
    }
    shared_lines(out, &summary.shared)?;
    if let Some(shared) = summary.crawl.as_ref().and_then(|c| c.shared.as_ref()) {
        for path in &shared.not_accessible {
            writeln!(
                out,
                "shared item not accessible any more: {path} (its files on disk are kept)"
            )?;
        }
    }
    if summary.interrupted {
        writeln!(out, "interrupted: re-run the same command to resume")?;
    }
    Ok(())
}

/// The end-of-restore summary.
pub fn restore_summary(summary: &odbackup::restore::RestoreSummary, json: bool) {
    if json {
        print_json(summary);
        return;
    }
    let _ = write_restore_summary(&mut std::io::stdout().lock(), summary);
}

fn write_restore_summary(
    out: &mut impl std::io::Write,
    s: &odbackup::restore::RestoreSummary,
) -> std::io::Result<()> {
    if s.dry_run {
        writeln!(
            out,
            "dry run: would upload {} entries, {}, to {} on drive {} ({} put back by an earlier run); nothing was written",
            s.planned,
            human_bytes(s.planned_bytes),
            s.target_root,
            s.target_drive,
            s.already_done
        )?;
    } else {
        writeln!(
            out,
            "restore to {} on drive {}: {} uploaded ({} sent), {} already there, {} put back by an earlier run, {} failed",
            s.target_root,
            s.target_drive,
            s.uploaded,
            human_bytes(s.bytes_sent),
            s.already_there,
            s.already_done,
            s.failed
        )?;
    }
    if s.folders_created > 0 {
        writeln!(out, "  {} folders created", s.folders_created)?;
    }
    if s.sessions_resumed > 0 {
        writeln!(
            out,
            "  {} large uploads resumed where the service said (nothing sent twice)",
            s.sessions_resumed
        )?;
    }
    if s.skipped_existing > 0 {
        writeln!(
            out,
            "  {} left because a different item has the name on the drive (--on-conflict replace or rename to change that)",
            s.skipped_existing
        )?;
    }
    if s.links_skipped > 0 {
        writeln!(
            out,
            "  {} symbolic links or special files skipped (never followed)",
            s.links_skipped
        )?;
    }
    if s.refused > 0 {
        writeln!(
            out,
            "  {} refused before upload (names OneDrive forbids, paths too long, files missing): see `odbackup failures`",
            s.refused
        )?;
    }
    if s.renamed > 0 {
        writeln!(
            out,
            "  {} uploaded under a legal name (--rename-invalid):",
            s.renamed
        )?;
        for r in &s.renamed_paths {
            writeln!(out, "    {} → {}", r.from, r.to)?;
        }
    }
    if s.excluded > 0 {
        writeln!(out, "  {} files left out by the filters", s.excluded)?;
    }
    if s.throttled > 0 {
        writeln!(
            out,
            "  throttled {} times by the service: waited {:.0}s in all, transfers at once lowered {} times (to {} at the fewest)",
            s.throttled, s.throttle_wait_secs, s.concurrency_drops, s.concurrency_lowest
        )?;
    }
    for (class, n) in &s.failures_by_class {
        writeln!(out, "  {n} failed: {class}")?;
    }
    if let Some(fatal) = &s.fatal {
        writeln!(out, "stopped early: {}", fatal.message)?;
    } else if s.interrupted {
        writeln!(out, "interrupted: re-run the same command to resume")?;
    }
    if s.failed > 0 || s.refused > 0 {
        writeln!(
            out,
            "see `odbackup failures` for details; re-run the same command to retry"
        )?;
    }
    Ok(())
}

/// A line for the user on stdout.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `odbackup whoami`.
pub fn whoami(who: &odbackup::app::WhoAmI, json: bool) {
    if json {
        print_json(who);
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "account:  {}", who.account);
    if who.signed_in_user {
        let _ = writeln!(
            out,
            "user:     {}{}",
            terminal_safe(who.user.as_deref().unwrap_or("?")),
            who.user_principal_name
                .as_deref()
                .map(|u| format!(" <{}>", terminal_safe(u)))
                .unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "user:     none (the token has no signed-in user: an app-only token, or one without User.Read)"
        );
    }
    if let (Some(id), Some(kind)) = (&who.drive_id, &who.drive_type) {
        let _ = writeln!(
            out,
            "drive:    {} ({}{})",
            terminal_safe(id),
            terminal_safe(kind),
            who.drive_name
                .as_deref()
                .map(|n| format!(", {}", terminal_safe(n)))
                .unwrap_or_default()
        );
    }
    if let Some(owner) = &who.owner {
        let _ = writeln!(out, "owner:    {}", terminal_safe(owner));
    }
    if let (Some(used), Some(total)) = (who.quota_used, who.quota_total) {
        let _ = writeln!(
            out,
            "quota:    {} used of {}",
            human_bytes(used),
            human_bytes(total)
        );
    }
    if let Some(note) = &who.note {
        let _ = writeln!(out, "note:     {}", terminal_safe(note));
    }
}

/// `odbackup drives`: one line per drive (name, type, quota, ID), then how to back one up.
pub fn drives(drives: &[odbackup::drives::DriveInfo], json: bool) {
    if json {
        print_json(&drives);
        return;
    }
    let mut out = std::io::stdout().lock();
    if drives.is_empty() {
        let _ = writeln!(out, "no drives");
        return;
    }
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:>22}  ID",
        "NAME", "TYPE", "USED / TOTAL"
    );
    for d in drives {
        let quota = match (d.quota_used, d.quota_total) {
            (Some(used), Some(total)) => format!("{} / {}", human_bytes(used), human_bytes(total)),
            (Some(used), None) => human_bytes(used),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:>22}  {}",
            terminal_safe(d.name.as_deref().unwrap_or("?")),
            terminal_safe(&d.drive_type),
            quota,
            terminal_safe(&d.id)
        );
    }
    let _ = writeln!(
        out,
        "back one up with --drive-id ID (or, for a site's library, --site SITE --library NAME)"
    );
}

/// `odbackup status`.
pub fn status(report: &StatusReport, json: bool) {
    if json {
        print_json(report);
        return;
    }
    let _ = write_status(&mut std::io::stdout().lock(), report);
}

#[allow(clippy::too_many_lines)] // the status table's sections in the order they are printed
fn write_status(out: &mut impl std::io::Write, report: &StatusReport) -> std::io::Result<()> {
    let counts =
        |out: &mut dyn std::io::Write, label: &str, c: &odbackup::manifest::StateCounts| {
            writeln!(
                out,
                "{label:<8} {:>9} total {:>9} done {:>9} pending {:>7} failed {:>7} skipped",
                c.total, c.done, c.pending, c.failed, c.skipped
            )
        };
    writeln!(out, "manifest {}", terminal_safe(&report.manifest))?;
    counts(out, "folders", &report.folders)?;
    counts(out, "files", &report.files)?;
    let b = &report.bytes;
    writeln!(
        out,
        "bytes    {:>9} total {:>9} done {:>9} pending {:>7} failed",
        human_bytes(b.total),
        human_bytes(b.done),
        human_bytes(b.pending),
        human_bytes(b.failed)
    )?;
    for c in &report.verified_by {
        writeln!(out, "  verified by {}: {}", c.key, c.count)?;
    }
    for c in &report.accepted_by_caveat {
        writeln!(out, "  kept with caveat ({}): {}", c.key, c.count)?;
    }
    for c in &report.failed_by_class {
        writeln!(out, "  failed ({}): {}", c.key, c.count)?;
    }
    for c in &report.skipped_by_reason {
        writeln!(out, "  skipped ({}): {}", c.key, c.count)?;
    }
    let x = &report.excluded;
    if x.files > 0 {
        writeln!(
            out,
            "excluded by filters: {} files ({}), {} of them on disk from earlier runs",
            x.files,
            human_bytes(x.bytes),
            x.on_disk
        )?;
        for c in &x.by_reason {
            writeln!(out, "  excluded ({}): {}", c.key, c.count)?;
        }
    }
    if report.remote_deleted > 0 {
        writeln!(
            out,
            "  gone from the drive, kept locally: {}",
            report.remote_deleted
        )?;
    }
    if report.crawls_incomplete > 0 {
        writeln!(out, "  an interrupted crawl will resume on the next run")?;
    }
    for inc in &report.incremental {
        match (&inc.last_applied_at, inc.last_changes) {
            (Some(at), Some(n)) => writeln!(
                out,
                "last incremental ({}): {at}, {n} changes applied",
                terminal_safe(&inc.scope)
            )?,
            _ if inc.ready => writeln!(
                out,
                "incremental ({}): ready; the next run asks only for changes",
                terminal_safe(&inc.scope)
            )?,
            _ => {}
        }
    }
    for r in &report.restores {
        writeln!(
            out,
            "restored to {} on drive {}: {} of {} files done ({} of {}), {} pending, {} failed, {} skipped; {} of {} folders",
            r.root_path,
            r.drive_id,
            r.files.done,
            r.files.total,
            human_bytes(r.bytes.done),
            human_bytes(r.bytes.total),
            r.files.pending,
            r.files.failed,
            r.files.skipped,
            r.folders.done,
            r.folders.total
        )?;
        for c in &r.failed_by_class {
            writeln!(out, "  restore failed ({}): {}", c.key, c.count)?;
        }
        for c in &r.skipped_by_reason {
            writeln!(out, "  restore skipped ({}): {}", c.key, c.count)?;
        }
    }
    if report.notebooks > 0 {
        writeln!(
            out,
            "OneNote notebooks: {} ({} section files on disk)",
            report.notebooks, report.notebook_files_done
        )?;
    }
    shared_lines(out, &report.shared)?;
    if report.deduplicated.files > 0 {
        writeln!(
            out,
            "deduplicated: {} files, {} saved (hard links of a copy with the same content)",
            report.deduplicated.files,
            human_bytes(report.deduplicated.bytes_saved)
        )?;
    }
    if let Some(run) = &report.last_verify {
        let counts = run.summary.as_ref().map(|s| {
            let n = |key: &str| s.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
            format!(
                ": {} files checked, {} missing, {} changed, {} unreadable",
                n("files_checked"),
                n("missing"),
                n("changed"),
                n("unreadable")
            )
        });
        writeln!(
            out,
            "last verify: started {} — {}{}",
            run.started_at,
            run.outcome.as_deref().unwrap_or("did not finish (killed?)"),
            counts.unwrap_or_default()
        )?;
    }
    match &report.last_run {
        Some(run) => writeln!(
            out,
            "last run: {} started {} — {}",
            run.command,
            run.started_at,
            run.outcome.as_deref().unwrap_or("did not finish (killed?)")
        ),
        None => writeln!(out, "last run: none"),
    }
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
        "{:<16} {:>6} {:>8}  PATH / MESSAGE",
        "CLASS", "HTTP", "ATTEMPTS"
    );
    for row in rows {
        let status = row
            .http_status
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        let path = match &row.source {
            Some(source) => format!("restore {source} → {}", row.remote_path),
            None => row.remote_path.clone(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>8}  {}",
            row.class,
            status,
            row.attempts,
            terminal_safe(&path)
        );
        let _ = writeln!(out, "{:<33}  {}", "", terminal_safe(&row.message));
    }
    let _ = writeln!(
        out,
        "{} failed; re-run the same backup, download or restore command to retry them",
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

/// `odbackup ls`: one line per entry, folders first, then a total.
pub fn listing(entries: &[RemoteEntry], json: bool) {
    if json {
        print_json(&entries);
        return;
    }
    let mut out = std::io::stdout().lock();
    let (mut folders, mut files, mut bytes) = (0u64, 0u64, 0u64);
    for e in entries {
        if e.kind == "folder" {
            folders += 1;
        } else {
            files += 1;
        }
        bytes = bytes.saturating_add(e.size.unwrap_or(0));
        let _ = writeln!(
            out,
            "{:<7} {:>10}  {:<16}  {}{}",
            e.kind,
            e.size.map_or_else(|| "-".to_owned(), human_bytes),
            terminal_safe(&e.modified.as_deref().map(short_time).unwrap_or_default()),
            terminal_safe(&e.name),
            if e.kind == "folder" { "/" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "{folders} folders, {files} files, {} in all",
        human_bytes(bytes)
    );
}

/// `2024-05-01T10:00:00Z` → `2024-05-01 10:00`.
fn short_time(t: &str) -> String {
    t.get(..16).unwrap_or(t).replacen('T', " ", 1)
}

/// `odbackup tree`: entries drawn as they arrive, in tree order, or collected for `--json`.
pub struct Tree {
    json: bool,
    entries: Vec<RemoteEntry>,
    /// For each depth above the current entry: whether that ancestor was the last of its folder.
    lasts: Vec<bool>,
}

impl Tree {
    /// Start with the top folder's own line.
    pub fn new(top: &RemoteEntry, json: bool) -> Self {
        if !json {
            say(&format!(
                "{}  ({})",
                terminal_safe(&top.path),
                top.size.map_or_else(|| "?".to_owned(), human_bytes)
            ));
        }
        Self {
            json,
            entries: Vec::new(),
            lasts: Vec::new(),
        }
    }

    /// One entry, at its depth.
    pub fn entry(&mut self, e: &RemoteEntry) {
        if self.json {
            self.entries.push(e.clone());
            return;
        }
        self.lasts.truncate(e.depth.saturating_sub(1));
        let mut line = String::new();
        for &last in &self.lasts {
            line.push_str(if last { "    " } else { "│   " });
        }
        line.push_str(if e.last { "└── " } else { "├── " });
        line.push_str(&terminal_safe(&e.name));
        let size = e.size.map_or_else(|| "?".to_owned(), human_bytes);
        let _ = match (e.kind, e.children) {
            ("folder", Some(n)) => write!(line, "/  ({size}, {n} items)"),
            ("folder", None) => write!(line, "/  ({size})"),
            _ => write!(line, "  ({size})"),
        };
        say(&line);
        self.lasts.push(e.last);
    }

    /// Print the collected document when `--json` was asked for.
    pub fn finish(self) {
        if self.json {
            print_json(&self.entries);
        }
    }
}

/// `odbackup drives --all-users --all-sites`: each drive with the folder it goes to, then the users without a
/// `OneDrive` and what could not be listed. `--json` prints the document `backup --drives-from` reads.
pub fn tenant_drives(
    found: &odbackup::tenant::Discovery,
    shard: Option<odbackup::tenant::Shard>,
    json: bool,
) {
    if json {
        print_json(found);
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<5} {:<52} {:<34} DRIVE ID",
        "KIND", "FOLDER", "OWNER"
    );
    for d in &found.drives {
        let kind = match d.kind {
            odbackup::tenant::Holder::User => "user",
            odbackup::tenant::Holder::Site => "site",
        };
        let _ = writeln!(
            out,
            "{kind:<5} {:<52} {:<34} {}",
            terminal_safe(&d.folder),
            terminal_safe(&d.label()),
            terminal_safe(&d.drive_id)
        );
    }
    for u in &found.without_drive {
        let _ = writeln!(
            out,
            "user  {:<52} no OneDrive ({}): never opened, or no licence",
            terminal_safe(u.user.as_deref().unwrap_or(&u.user_id)),
            terminal_safe(&u.reason)
        );
    }
    for u in &found.unreachable {
        let _ = writeln!(
            out,
            "could not list {}: {}",
            terminal_safe(&u.name),
            terminal_safe(&u.reason)
        );
    }
    let _ = writeln!(
        out,
        "{} drive(s){}; {} user(s) and {} site(s) listed, {} user(s) without a OneDrive{}",
        found.drives.len(),
        shard.map(|s| format!(" in shard {s}")).unwrap_or_default(),
        found.users_listed,
        found.sites_listed,
        found.without_drive.len(),
        found
            .site_listing
            .as_deref()
            .map(|how| format!("; sites by {how}"))
            .unwrap_or_default()
    );
}

/// The roll-up of a tenant backup: a line per drive (its folder, outcome, files, bytes, time), then the totals.
/// `--json` prints the summary with each drive's exit code (`code` maps a verdict to one) and the run's.
pub fn tenant_summary(
    summary: &odbackup::tenant::TenantSummary,
    json: bool,
    code: impl Fn(odbackup::tenant::Verdict) -> u8,
) {
    if json {
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        if let Some(drives) = value.get_mut("drives").and_then(|d| d.as_array_mut()) {
            for (entry, report) in drives.iter_mut().zip(&summary.drives) {
                entry["exit_code"] = code(report.verdict).into();
            }
        }
        value["exit_code"] = code(summary.verdict()).into();
        print_json(&value);
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<52} {:<12} {:>4} {:>8} {:>7} {:>10} {:>8}",
        "FOLDER", "STATUS", "EXIT", "FETCHED", "FAILED", "BYTES", "TIME"
    );
    let mut by_status: std::collections::BTreeMap<String, usize> =
        std::collections::BTreeMap::new();
    for d in &summary.drives {
        let status = serde_json::to_value(d.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<52} {:<12} {:>4} {:>8} {:>7} {:>10} {:>7.1}s",
            terminal_safe(&d.drive.folder),
            status,
            code(d.verdict),
            d.files_downloaded,
            d.files_failed,
            human_bytes(d.bytes),
            d.elapsed_secs
        );
        if let Some(error) = &d.error {
            let _ = writeln!(out, "  {}", terminal_safe(error));
        }
        *by_status.entry(status).or_default() += 1;
    }
    for u in &summary.without_drive {
        let _ = writeln!(
            out,
            "{:<52} no OneDrive ({}): nothing to back up",
            terminal_safe(u.user.as_deref().unwrap_or(&u.user_id)),
            terminal_safe(&u.reason)
        );
    }
    for u in &summary.unreachable {
        let _ = writeln!(
            out,
            "could not list {}: {}",
            terminal_safe(&u.name),
            terminal_safe(&u.reason)
        );
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(
        out,
        "drives: {}{} of {} discovered ({}); {} without a OneDrive; {} requests, throttled {} times; {:.1}s; exit {}",
        summary.drives.len(),
        summary
            .shard
            .as_deref()
            .map(|s| format!(" in shard {s}"))
            .unwrap_or_default(),
        summary.drives_discovered,
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        },
        summary.without_drive.len(),
        summary.requests,
        summary.throttle_events,
        summary.elapsed_secs,
        code(summary.verdict())
    );
}

/// `odbackup verify`: what was checked and how, then each problem with what was done about it.
pub fn verify_summary(
    summary: &odbackup::verify::VerifySummary,
    dest: &std::path::Path,
    json: bool,
) {
    if json {
        print_json(summary);
        return;
    }
    let _ = write_verify_summary(&mut std::io::stdout().lock(), summary, dest);
}

fn write_verify_summary(
    out: &mut impl std::io::Write,
    s: &odbackup::verify::VerifySummary,
    dest: &std::path::Path,
) -> std::io::Result<()> {
    let rate = if s.elapsed_secs > 0.0 {
        format!(
            ", {}/s",
            human_bytes((s.bytes_read as f64 / s.elapsed_secs) as u64)
        )
    } else {
        String::new()
    };
    let of = match s.sample_percent {
        Some(p) => format!(" (a {p}% sample of {} files)", s.files_in_backup),
        None => String::new(),
    };
    writeln!(
        out,
        "checked {} files{of}, read {} in {:.1}s{rate}: {} as recorded, {} missing, {} changed, {} unreadable",
        s.files_checked,
        human_bytes(s.bytes_read),
        s.elapsed_secs,
        s.by_quick_xor + s.by_sha1 + s.by_size_only,
        s.missing,
        s.changed,
        s.unreadable
    )?;
    writeln!(
        out,
        "  {} by quickXorHash, {} by SHA-1, {} by length only (kept with a caveat or listed without a hash: no hash vouches for their bytes)",
        s.by_quick_xor, s.by_sha1, s.by_size_only
    )?;
    for p in &s.problems {
        writeln!(
            out,
            "{:<10} {}: {}",
            p.kind.as_str(),
            terminal_safe(&dest.join(&p.path).display().to_string()),
            terminal_safe(&p.reason)
        )?;
        if let Some(trash) = &p.trash {
            writeln!(
                out,
                "           moved into {}",
                terminal_safe(&dest.join(trash).display().to_string())
            )?;
        }
    }
    let found = s.problems_found();
    if found > s.problems.len() as u64 {
        writeln!(out, "… and {} more", found - s.problems.len() as u64)?;
    }
    if s.interrupted {
        writeln!(out, "interrupted: the files not yet read were not checked")?;
    }
    if s.unrecorded {
        writeln!(
            out,
            "the manifest's folder is not writable: this check is not recorded (status will not show it)"
        )?;
    }
    if found > 0 {
        if s.repaired > 0 || s.trashed > 0 {
            writeln!(
                out,
                "{} marked to be fetched again ({} moved into the trash first): run `odbackup backup` with this --dest",
                s.repaired, s.trashed
            )?;
        }
        if !s.repair {
            writeln!(
                out,
                "run `odbackup verify --repair` to have the next backup fetch them again"
            )?;
        } else if s.repaired < found {
            writeln!(
                out,
                "{} could not be repaired: see the reasons above",
                found - s.repaired
            )?;
        }
    }
    Ok(())
}

/// The shared folders and files of a backup, when it has any.
fn shared_lines(
    out: &mut dyn std::io::Write,
    shared: &odbackup::manifest::SharedCounts,
) -> std::io::Result<()> {
    if shared.shortcuts_followed + shared.shortcuts_skipped > 0 {
        writeln!(
            out,
            "shared items added to My files: {} backed up ({} files on disk), {} not (see status skipped)",
            shared.shortcuts_followed, shared.files_done, shared.shortcuts_skipped
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_command_the_terminal_are_shown_escaped() {
        let cases = [
            ("IMG_0001.jpg", "IMG_0001.jpg"),
            ("Ünïcødé 写真 🎉.jpg", "Ünïcødé 写真 🎉.jpg"),
            ("\u{1b}]0;pwned\u{7}.txt", "\\x1b]0;pwned\\x07.txt"),
            ("clear\u{1b}[2J\u{1b}[H.txt", "clear\\x1b[2J\\x1b[H.txt"),
            ("line\nbreak\r\t.txt", "line\\x0abreak\\x0d\\x09.txt"),
            ("del\u{7f}.txt", "del\\x7f.txt"),
            ("c1\u{9b}31m.txt", "c1\\u{009b}31m.txt"),
            ("invoice\u{202e}fdp.exe", "invoice\\u{202e}fdp.exe"),
            ("iso\u{2066}late\u{2069}", "iso\\u{2066}late\\u{2069}"),
            ("nul\u{0}", "nul\\x00"),
        ];
        for (name, shown) in cases {
            assert_eq!(terminal_safe(name), shown, "{name:?}");
        }
        assert!(matches!(terminal_safe("plain"), Cow::Borrowed(_)));
    }
}
