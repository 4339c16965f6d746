//! Helpers in the domain's words: a destination folder, the real binary, the manifest's rows, polling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Assert a finished command's exit code, with what it printed when it is another; an optional message in
/// `format!` form says which case this is.
macro_rules! assert_exit {
    ($out:expr, $code:expr) => {
        $crate::support::check_exit(&$out, $code, "")
    };
    ($out:expr, $code:expr, $($context:tt)+) => {
        $crate::support::check_exit(&$out, $code, &format!($($context)+))
    };
}

/// What [`assert_exit!`] checks: the exit code is `want` (a run killed by a signal has none, and fails this).
#[track_caller]
pub fn check_exit(out: &Output, want: i32, context: &str) {
    let got = out.status.code();
    assert!(
        got == Some(want),
        "exit code {got:?}, expected {want}{}{context}\n--- stdout\n{}\n--- stderr\n{}",
        if context.is_empty() { "" } else { ": " },
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary backup destination.
/// What [`TestDest::items`] appends to a shortcut's remote path (its target's row holds the path itself).
pub const SHORTCUT_KEY: &str = " (shortcut)";

pub struct TestDest {
    dir: tempfile::TempDir,
}

impl TestDest {
    /// A fresh, empty destination.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("odbackup-it-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// The destination folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the destination.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    /// The manifest's default location, as the binary finds it.
    pub fn manifest(&self) -> PathBuf {
        odbackup::app::default_manifest_path(self.dir.path())
    }

    /// A read-only connection to the manifest, for assertions with plain SQL.
    pub fn db(&self) -> Connection {
        Connection::open_with_flags(self.manifest(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open manifest")
    }

    /// How many files the manifest calls done, or `None` while it is not readable yet (a run is still creating
    /// it): for polling a running backup.
    pub fn done_files(&self) -> Option<usize> {
        Some(
            self.try_items()?
                .values()
                .filter(|r| r.is_done_file())
                .count(),
        )
    }

    /// Make every download URL the last crawl stored look `minutes` older, as if the crawl had run that long
    /// ago: past their freshness window, downloads resolve each file by `/content` (a Graph request) again.
    pub fn age_listed_urls(&self, minutes: i64) {
        Connection::open(self.manifest())
            .expect("open manifest")
            .execute(
                "UPDATE listed_urls SET fetched_at = fetched_at - ?1",
                [minutes * 60_000],
            )
            .expect("age listed URLs");
    }

    /// `remote_path → (kind, state, size, quick_xor)` for every item in the manifest: every row by remote path; a shortcut's row (kind `remote`) by its path and [`SHORTCUT_KEY`].
    pub fn items(&self) -> BTreeMap<String, ItemRow> {
        self.try_items().expect("read the manifest's rows")
    }

    /// [`TestDest::items`], or `None` while the manifest is not readable yet (a run is still creating it): for
    /// polling a running backup.
    pub fn try_items(&self) -> Option<BTreeMap<String, ItemRow>> {
        read_items(&self.manifest())
    }

    /// How many file rows are in each state (`done`, `pending`, `failed`, …).
    pub fn file_states(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for row in self.file_rows().into_values() {
            *counts.entry(row.state).or_insert(0) += 1;
        }
        counts
    }

    /// Every row, with its remote path, including rows the drive no longer has (which may share a path with
    /// the item that took their place).
    pub fn rows(&self) -> Vec<(String, ItemRow)> {
        read_rows(&self.manifest()).expect("read the manifest's rows")
    }

    /// Only the file rows of [`TestDest::items`], by remote path.
    pub fn file_rows(&self) -> BTreeMap<String, ItemRow> {
        self.items()
            .into_iter()
            .filter(|(_, r)| r.is_file())
            .collect()
    }

    /// How many file rows the manifest holds.
    pub fn file_count(&self) -> usize {
        self.file_rows().len()
    }

    /// A value the manifest keeps in its `settings` table (a learned lifetime, a throttle deadline, …), or
    /// `None` while there is none or the manifest is not readable yet.
    pub fn setting(&self, key: &str) -> Option<String> {
        Connection::open_with_flags(self.manifest(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .ok()
    }

    /// Put `value` under `key` in the manifest's `settings` table, as an earlier run would have left it.
    pub fn set_setting(&self, key: &str, value: &str) {
        Connection::open(self.manifest())
            .expect("open manifest")
            .execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .expect("write the setting");
    }

    /// How many pre-authenticated download URLs from listings the manifest holds.
    pub fn listed_url_count(&self) -> i64 {
        self.db()
            .query_row("SELECT count(*) FROM listed_urls", [], |r| r.get(0))
            .expect("count listed URLs")
    }

    /// Every run the manifest recorded, oldest first, as `(command, outcome)`.
    pub fn runs(&self) -> Vec<(String, Option<String>)> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT command, outcome FROM runs ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// `(drive_id, drive_type)` of every drive the manifest knows, in the order they were recorded.
    pub fn drives(&self) -> Vec<(String, String)> {
        read_drives(&self.manifest())
    }

    /// As a business drive lists an old file (`sha1Hash` without `quickXorHash`): the file row named `name`
    /// loses its quickXorHash and counts as verified by SHA-1.
    pub fn as_if_verified_by_sha1(&self, name: &str) {
        Connection::open(self.manifest())
            .expect("open manifest")
            .execute(
                "UPDATE items SET quick_xor = NULL, verification = 'sha1' \
                 WHERE name = ?1 AND sha1 IS NOT NULL",
                [name],
            )
            .expect("rewrite the row");
    }

    /// The saved delta cursors (one per listed scope).
    pub fn delta_cursors(&self) -> Vec<Option<String>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT cursor FROM delta_state").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Remote paths of the file rows in the manifest, sorted.
    pub fn file_paths(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .filter(|(_, r)| r.kind == "file")
            .map(|(p, _)| p)
            .collect()
    }

    /// Every file under the destination (relative, `/`-separated), excluding odbackup's own state folder.
    pub fn files_on_disk(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

/// Every row of the manifest at `manifest` with its remote path (a shortcut's with [`SHORTCUT_KEY`]), or
/// `None` while it is not readable. A row the drive no longer has can share its path with the item that
/// took its place.
pub fn read_rows(manifest: &Path) -> Option<Vec<(String, ItemRow)>> {
    let db =
        Connection::open_with_flags(manifest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;

    let mut stmt = db
        .prepare(
            "SELECT remote_path, kind, state, size, quick_xor, sha1, skip_reason, item_id, local_path, \
             drive_id, name, remote_deleted, excluded, caveat_class, caveat, verification, local_size, \
             written_path, package, remote_ref, listed_crawl FROM items",
        )
        .ok()?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ItemRow {
                    kind: r.get(1)?,
                    state: r.get(2)?,
                    size: r.get(3)?,
                    quick_xor: r.get(4)?,
                    sha1: r.get(5)?,
                    skip_reason: r.get(6)?,
                    item_id: r.get(7)?,
                    local_path: r.get(8)?,
                    drive_id: r.get(9)?,
                    name: r.get(10)?,
                    remote_deleted: r.get(11)?,
                    excluded: r.get(12)?,
                    caveat_class: r.get(13)?,
                    caveat: r.get(14)?,
                    verification: r.get(15)?,
                    local_size: r.get(16)?,
                    written_path: r.get(17)?,
                    package: r.get(18)?,
                    remote_ref: r.get(19)?,
                    listed_crawl: r.get(20)?,
                },
            ))
        })
        .ok()?;
    let mut list = Vec::new();
    for row in rows {
        let (mut path, item) = row.ok()?;
        // A shortcut to a shared folder or file shares its remote path with its target's row.
        if item.kind == "remote" {
            path.push_str(SHORTCUT_KEY);
        }
        list.push((path, item));
    }
    Some(list)
}

/// The rows of the manifest at `manifest` as [`TestDest::items`] gives them, or `None` while it is not
/// readable; for a destination that is not a [`TestDest`]. Asserts one live row per remote path.
pub fn read_items(manifest: &Path) -> Option<BTreeMap<String, ItemRow>> {
    let mut map = BTreeMap::new();
    for (path, item) in read_rows(manifest)? {
        assert!(
            map.insert(path.clone(), item).is_none(),
            "duplicate remote path {path}"
        );
    }
    Some(map)
}

/// The manifest at `manifest` opens, passes the database's integrity check and is still odbackup's (its
/// application id).
pub fn assert_manifest_sound(manifest: &Path) {
    let db = Connection::open_with_flags(manifest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let app_id: i64 = db
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app_id, 0x6f64_626b, "still odbackup's manifest");
}

/// `(drive_id, drive_type)` of every drive the manifest at `manifest` knows, in the order they were recorded.
pub fn read_drives(manifest: &Path) -> Vec<(String, String)> {
    let db = Connection::open_with_flags(manifest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut stmt = db
        .prepare("SELECT drive_id, drive_type FROM drives ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".odbackup" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        } else {
            out.push(rel);
        }
    }
}

/// One manifest row, as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub kind: String,
    pub state: String,
    pub size: Option<i64>,
    pub quick_xor: Option<String>,
    pub sha1: Option<String>,
    pub skip_reason: Option<String>,
    pub item_id: String,
    pub local_path: Option<String>,
    pub drive_id: String,
    pub name: String,
    /// A completed listing of its scope no longer saw it (the local copy is kept).
    pub remote_deleted: bool,
    /// Why the filters left it out, if they did.
    pub excluded: Option<String>,
    pub caveat_class: Option<String>,
    pub caveat: Option<String>,
    /// How its bytes were checked (`quickxor`, `sha1`, …) once done.
    pub verification: Option<String>,
    pub local_size: Option<i64>,
    /// Where the file was last written under the destination.
    pub written_path: Option<String>,
    pub package: Option<String>,
    /// A shortcut's reference to its target.
    pub remote_ref: Option<String>,
    /// The crawl that last listed this folder to its end.
    pub listed_crawl: Option<i64>,
}

impl ItemRow {
    /// A file row (not a folder, package or shortcut).
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }

    /// A file row the manifest calls done.
    pub fn is_done_file(&self) -> bool {
        self.is_file() && self.state == "done"
    }
}

/// The real binary, with a clean environment apart from what the test sets.
pub fn odbackup() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_odbackup"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ODBACKUP_") {
            cmd.env_remove(key);
        }
    }
    // Never the developer's own config file or sign-ins; tests that need a config dir set their own.
    cmd.env("ODBACKUP_CONFIG_DIR", "/nonexistent/odbackup-tests")
        .env_remove("RUST_LOG");
    cmd
}

/// `odbackup` against the simulator's Graph host (by `ODBACKUP_GRAPH_URL`), signed in with its token; the
/// caller adds the command and its arguments.
pub fn with_token(sim: &graphsim::Simulator) -> Command {
    let mut cmd = odbackup();
    cmd.env("ODBACKUP_GRAPH_URL", sim.graph_url())
        .env("ODBACKUP_ACCESS_TOKEN", sim.token());
    cmd
}

/// `odbackup <command> --dest DEST` against the simulator, signed in with its token.
pub fn against(sim: &graphsim::Simulator, dest: &TestDest, command: &str) -> Command {
    against_at(sim, dest.path(), command)
}

/// [`against`] for a destination that is not a [`TestDest`] (a folder inside a test's own layout).
pub fn against_at(sim: &graphsim::Simulator, dest: &Path, command: &str) -> Command {
    let mut cmd = odbackup();
    cmd.args([command, "--dest"])
        .arg(dest)
        .args(["--graph-url", &sim.graph_url()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token());
    cmd
}

/// Every file of `paths` is on disk under `dest` with the simulator's bytes.
pub fn assert_same_bytes<S: AsRef<str>>(
    sim: &graphsim::Simulator,
    dest: &TestDest,
    paths: impl IntoIterator<Item = S>,
) {
    for path in paths {
        let path = path.as_ref();
        let bytes = std::fs::read(dest.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            bytes == sim.content(path),
            "{path} differs from the simulator's bytes"
        );
    }
}

/// `odbackup` with its token store in `config` and the simulator's sign-in and Graph hosts (no
/// `ODBACKUP_ACCESS_TOKEN`): a user who signed in with `odbackup login`.
pub fn signed_in(sim: &graphsim::Simulator, config: &Path) -> Command {
    let mut cmd = odbackup();
    cmd.env("ODBACKUP_CONFIG_DIR", config)
        .env("ODBACKUP_GRAPH_URL", sim.graph_url())
        .env("ODBACKUP_AUTH_URL", sim.auth_url())
        .env("ODBACKUP_CLIENT_ID", "00000000-test-client");
    cmd
}

/// `odbackup login` (with `extra` arguments) by the device code flow, the user approving after `pending`
/// polls; it must succeed.
pub fn device_login(
    sim: &graphsim::Simulator,
    config: &Path,
    pending: u32,
    extra: &[&str],
) -> Output {
    sim.script_device_code(graphsim::DeviceScript {
        pending,
        slow_down: 0,
        outcome: graphsim::DeviceOutcome::Approve,
    });
    let out = run(signed_in(sim, config).arg("login").args(extra));
    assert_exit!(out, 0);
    out
}

/// Run and capture, with the output shown if an assertion on it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run odbackup");
    eprintln!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Poll `check` until it returns `Some`, or panic after `deadline`.
pub fn eventually<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout as a JSON value.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
