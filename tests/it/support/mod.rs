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
        let db = Connection::open_with_flags(
            self.manifest(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row(
            "SELECT count(*) FROM items WHERE kind = 'file' AND state = 'done'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .and_then(|n| usize::try_from(n).ok())
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
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT remote_path, kind, state, size, quick_xor, sha1, skip_reason, item_id, local_path FROM items")
            .unwrap();
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
                    },
                ))
            })
            .unwrap();
        let mut map = BTreeMap::new();
        for row in rows {
            let (mut path, item) = row.unwrap();
            // A shortcut to a shared folder or file shares its remote path with its target's row.
            if item.kind == "remote" {
                path.push_str(SHORTCUT_KEY);
            }
            assert!(
                map.insert(path.clone(), item).is_none(),
                "duplicate remote path {path}"
            );
        }
        map
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
