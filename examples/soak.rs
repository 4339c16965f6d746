//! Soak test: back up a large generated drive through random faults and random SIGKILLs, until a
//! run ends clean; then check every file on disk against the simulator's truth. Run on demand, never by
//! `cargo test` (it takes minutes):
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- [--files 20000] [--kills 6] [--seed 7]
//! ```
//!
//! Faults while it runs: a throttling episode every ~100 requests, alternately 429 and 503 with Retry-After
//! 1 s, refusing everything (up to 10 requests) until the window has passed; 2 % of download bodies cut
//! mid-way; download URLs that expire after 5 s; 20 ms of latency. Between kills it waits a random 3–90 s, so
//! kills land in the listing, early in the transfers and deep into them. The final run is made with the
//! faults still on; it must exit 0.
//!
//! Figures printed at the end: wall time, runs, kills, requests, refusals, violations of Retry-After, files
//! checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graphsim::{Failure, GenSpec, QuickXorHash, Simulator, Tree};
use rand::{Rng as _, SeedableRng as _};

struct Opts {
    files: usize,
    kills: usize,
    seed: u64,
}

fn parse() -> Opts {
    let mut o = Opts {
        files: 20_000,
        kills: 6,
        seed: 7,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--files" => o.files = value.parse().expect("--files N"),
            "--kills" => o.kills = value.parse().expect("--kills N"),
            "--seed" => o.seed = value.parse().expect("--seed N"),
            other => panic!("unknown flag {other}: use --files, --kills, --seed"),
        }
    }
    o
}

fn odbackup_binary() -> PathBuf {
    // target/<profile>/examples/soak → target/<profile>/odbackup
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("odbackup");
    assert!(
        bin.exists(),
        "build the binary first (cargo build --release): {}",
        bin.display()
    );
    bin
}

fn main() {
    let o = parse();
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed);
    let tree = Tree::generated(GenSpec {
        folders: o.files / 40,
        files: o.files,
        depth: 4,
        min_size: 0,
        max_size: 200_000,
        seed: o.seed,
        no_hash_every: 500,
    });
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(20));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.fail_in_bursts(200, 10, Failure::throttled(1));
    sim.fail_in_bursts(200, 10, Failure::unavailable(Some(1)));
    sim.reset_downloads_fraction(0.02, None);
    sim.set_download_url_lifetime(Duration::from_secs(5));
    let dest = tempfile::Builder::new()
        .prefix("odbackup-soak-")
        .tempdir()
        .expect("temp dir");
    let start = Instant::now();
    let mut runs = 0;
    let mut kills = 0;
    let mut exit = None;
    while exit != Some(0) {
        runs += 1;
        assert!(runs <= o.kills + 10, "no clean run after {runs} runs");
        let mut child = Command::new(odbackup_binary())
            .args(["backup", "--quiet", "--dest"])
            .arg(dest.path())
            .args(["--graph-url", &sim.graph_url()])
            .env("ODBACKUP_ACCESS_TOKEN", sim.token())
            .stdout(Stdio::null())
            .spawn()
            .expect("run odbackup");
        if kills < o.kills {
            let deadline = Instant::now() + Duration::from_millis(rng.random_range(3_000..90_000));
            while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().expect("wait").is_none() {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                kills += 1;
                println!(
                    "run {runs}: killed (SIGKILL) at {:.1?} with {} files done",
                    start.elapsed(),
                    done_files(dest.path())
                );
                continue;
            }
        }
        exit = child.wait().expect("wait").code();
        println!("run {runs}: exit {exit:?} at {:?}", start.elapsed());
    }
    let wall = start.elapsed();

    let checked = check(dest.path(), &sim);
    let requests = sim.total_requests();
    println!("files: {checked} checked against the simulator, all correct");
    println!("wall: {wall:.1?}; runs: {runs}; kills: {kills}");
    println!(
        "requests: {requests}; refused with 429/503: {} ({:.1} %); violations of Retry-After: {}",
        sim.throttle_answers(),
        sim.throttle_answers() as f64 * 100.0 / requests.max(1) as f64,
        sim.violations().len()
    );
    println!("bytes served: {} MB", sim.bytes_served() / 1_000_000);
    assert!(
        sim.violations().is_empty(),
        "{:?}",
        sim.violations().first()
    );
}

/// Files the manifest records as done (0 before it exists).
fn done_files(dest: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(
        dest.join(".odbackup/manifest.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|db| {
        db.query_row(
            "SELECT COUNT(*) FROM items WHERE kind = 'file' AND state = 'done'",
            [],
            |r| r.get(0),
        )
    })
    .unwrap_or(0)
}

/// Every file the manifest lists is on disk with the simulator's bytes (length and quickXorHash of the
/// content it serves), the manifest lists every item of the drive, and no part file is left.
fn check(dest: &Path, sim: &Simulator) -> usize {
    let db = rusqlite::Connection::open(dest.join(".odbackup/manifest.sqlite")).expect("manifest");
    let live: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM items WHERE remote_deleted = 0 AND remote_path != '/'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        usize::try_from(live).unwrap(),
        sim.item_count(),
        "the manifest lists every item"
    );
    let mut stmt = db
        .prepare("SELECT item_id, local_path, state FROM items WHERE kind = 'file'")
        .expect("query");
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect();
    for (id, local, state) in &rows {
        assert_eq!(state, "done", "{local}");
        let bytes = std::fs::read(dest.join(local)).unwrap_or_else(|e| panic!("{local}: {e}"));
        let want = sim.content_by_id(id);
        assert!(
            bytes.len() == want.len() && QuickXorHash::of(&bytes) == QuickXorHash::of(&want),
            "{local}: bytes differ"
        );
    }
    let parts = walk(dest)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".part"))
        .count();
    assert_eq!(parts, 0, "part files left over");
    rows.len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
