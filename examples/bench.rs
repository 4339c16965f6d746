//! Benchmarks against the bundled Graph simulator: wall time, requests and peak memory of the real
//! `odbackup` binary. Run on demand, never by `cargo test`:
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- crawl [--latency-ms 20] [--files 100000] [--folders 5000] [--crawl-method children|delta]
//! cargo build --release && cargo run --release --example bench -- small [--latency-ms 20] [--files 10000] [--listing-urls none]
//! cargo build --release && cargo run --release --example bench -- big [--latency-ms 20] [--gb 2]
//! cargo build --release && cargo run --release --example bench -- big --baseline curl   # curl, same file, same disk
//! cargo build --release && cargo run --release --example bench -- small --files 10000 --min-kb 20 --max-kb 200 --latency-ms 50
//! cargo build --release && cargo run --release --example bench -- faults-mild --latency-ms 50     # 10,000 files, 600 s budget
//! cargo build --release && cargo run --release --example bench -- faults-heavy --latency-ms 50    # 2,010 files, 600 s budget
//! cargo build --release && cargo run --release --example bench -- upload [--latency-ms 20] [--files 10000]
//! cargo build --release && cargo run --release --example bench -- upload --gb 2 [--latency-ms 20]
//! cargo build --release && cargo run --release --example bench -- upload --gb 2 --baseline client
//! cargo build --release && cargo run --release --example bench -- tenant [--drives 50] [--files 20] [--drives-at-once 8] [--latency-ms 20]
//! ```
//!
//! Without `--concurrency` odbackup runs with its default settings (transfers start at 8 and grow while the
//! service keeps up); `--concurrency N` passes the flag, a hard cap. `--binary PATH` runs another build of
//! odbackup (an earlier one, say) against the same simulator, for before/after figures made side by side.
//!
//! The fault modes sign in (device code against the simulator's identity host), so access tokens expire and
//! are refreshed during the run, and stop odbackup at the `--budget-s` (600 s) if it has not finished; they
//! print the files done within the budget.
//!
//! - `faults-mild`: 10,000 files of 20–200 KB; 1 % of requests refused with 429 and 1 % with 503 (each with
//!   `Retry-After: 1`), at random; a 2 s burst refusing everything once a minute (429, `Retry-After` what is
//!   left of it); 2 % of download bodies cut mid-way; download URLs that expire after 60 s; tokens after 120 s.
//! - `faults-heavy`: 2,010 files of 2–50 KB; about 10 % of requests refused at random, a third each 429 and
//!   503 (`Retry-After: 1`) and 500 (no `Retry-After`); 8 % of bodies cut; a 5 s burst once a minute; URLs
//!   that expire after 30 s; tokens after 60 s.
//!
//! In both, random refusals hit a share of whatever arrives, so sending less does not make them rarer; a
//! request that comes while a `Retry-After` is in force is counted as a violation (150 ms are allowed for
//! requests already on their way when the refusal was sent).
//! cargo build --release && cargo run --release --example bench -- verify [--files 2000] [--concurrency 4]
//! ```
//!
//! `verify` backs up `--files` small files (50 KB–2 MB), then reads them back three ways, each after dropping
//! them from the page cache (`posix_fadvise(DONTNEED)`): a plain sequential read of every file in 4 MiB blocks
//! with no hashing (the disk's read speed, the ideal), `odbackup verify` cold, and `odbackup verify` again with
//! the files left in the cache (the hashing and manifest cost alone).
//!
//! `upload` restores a plain folder (`restore --from-folder`) into an empty simulated drive: `--files N` small
//! files (50 KB–2 MB, as `small` downloads), or one `--gb` file. The simulator keeps the hashes of what it
//! receives, not the bytes (10 GB would not fit in memory). `--baseline client` sends the big file's
//! fragments from memory with a plain HTTP client instead: what the simulator can take over loopback with no
//! disk read, no hashing and no manifest, the ideal the upload figure is compared with.
//!
//! `BENCH_KEEP_DEST=1` keeps the destination (and its manifest) instead of deleting it.
//!
//! `--baseline curl` fetches the big file's pre-authenticated URL with `curl -o` into the same kind of
//! temporary folder instead of running odbackup: the loopback throughput a plain HTTP client gets from the
//! same simulator, which is the ideal the big-file figure is compared with.
//!
//! `--listing-urls` sets when the simulator's listings carry `@microsoft.graph.downloadUrl`: `dropped-under-dollar`
//! (its default: left out under `$select`, kept under `select=`), `selected` (whenever selected) or `none`
//! (never in a listing, so every file costs a `/content` round trip).
//!
//! `tenant` backs up a whole organisation (`backup --all-users`) of `--drives` small `OneDrives` with `--files`
//! files each (1–20 KB), `--drives-at-once` of them at a time, with an app-only token. Its ideal is the request
//! latency's critical path: discovery (one `/users` page, then each user's drive 8 at once), then per drive its
//! chain of listing requests one after the other and its downloads `--concurrency` at a time, `--drives-at-once`
//! drives side by side.
//!
//! Peak RSS: for `crawl`, `small` and the fault modes, odbackup's own high-water mark (`VmHWM` of
//! `/proc/<pid>/status`, read every 20 ms while it runs). The child's `ru_maxrss` is not that: Linux starts a
//! child's maximum at the RSS of the process that spawned it, and this one holds the simulator's whole tree (a
//! million items is ~0.6 GB), so `ru_maxrss` measured the bench, not odbackup. Other modes still print
//! `ru_maxrss`, an upper bound.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use graphsim::{DeviceOutcome, DeviceScript, Failure, GenSpec, ListingUrls, Simulator, Tree};

struct Opts {
    mode: String,
    latency_ms: u64,
    files: usize,
    folders: usize,
    gb: u64,
    concurrency: Option<usize>,
    crawl_method: String,
    baseline: Option<String>,
    listing_urls: String,
    min_kb: u64,
    max_kb: u64,
    binary: Option<PathBuf>,
    budget_s: u64,
    seed: u64,
    gb_given: bool,
    drives: usize,
    drives_at_once: usize,
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        mode: args.next().unwrap_or_else(|| "crawl".to_owned()),
        latency_ms: 0,
        files: 0,
        folders: 0,
        gb: 2,
        concurrency: None,
        crawl_method: "children".to_owned(),
        baseline: None,
        listing_urls: "dropped-under-dollar".to_owned(),
        min_kb: 0,
        max_kb: 0,
        binary: None,
        budget_s: 600,
        seed: 11,
        gb_given: false,
        drives: 50,
        drives_at_once: 8,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--latency-ms" => o.latency_ms = value.parse().expect("--latency-ms N"),
            "--files" => o.files = value.parse().expect("--files N"),
            "--folders" => o.folders = value.parse().expect("--folders N"),
            "--gb" => {
                o.gb = value.parse().expect("--gb N");
                o.gb_given = true;
            }
            "--concurrency" => o.concurrency = Some(value.parse().expect("--concurrency N")),
            "--min-kb" => o.min_kb = value.parse().expect("--min-kb N"),
            "--max-kb" => o.max_kb = value.parse().expect("--max-kb N"),
            "--binary" => o.binary = Some(PathBuf::from(value)),
            "--budget-s" => o.budget_s = value.parse().expect("--budget-s N"),
            "--seed" => o.seed = value.parse().expect("--seed N"),
            "--crawl-method" => o.crawl_method = value,
            "--baseline" => o.baseline = Some(value),
            "--listing-urls" => o.listing_urls = value,
            "--drives" => o.drives = value.parse().expect("--drives N"),
            "--drives-at-once" => o.drives_at_once = value.parse().expect("--drives-at-once N"),
            other => panic!("unknown flag {other}"),
        }
    }
    o
}

fn odbackup_binary(given: Option<&PathBuf>) -> PathBuf {
    if let Some(path) = given {
        assert!(path.exists(), "{} not found", path.display());
        return path.clone();
    }
    // target/release/examples/bench → target/release/odbackup
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("odbackup");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn children_usage() -> libc::rusage {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer we pass, which points at enough memory.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    }
}

fn children_max_rss_kib() -> i64 {
    children_usage().ru_maxrss
}

/// The high-water mark of `pid`'s resident memory in KiB (`VmHWM`), or `None` once it has gone.
fn peak_rss_kib_of(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds (user + system) the child used: with the wall time, tells whether odbackup or the
/// simulator (this process) was the busy one.
fn children_cpu_s() -> f64 {
    let u = children_usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

#[allow(clippy::too_many_lines)] // one dispatch over the bench modes, each printing its own table
fn main() {
    let o = parse();
    if o.mode == "upload" {
        upload(&o);
        return;
    }
    if o.mode == "tenant" {
        tenant(&o);
        return;
    }
    if o.mode == "verify" {
        verify(&o);
        return;
    }
    let (tree, command) = match o.mode.as_str() {
        "crawl" => {
            let files = if o.files == 0 { 95_000 } else { o.files };
            let folders = if o.folders == 0 { 5_000 } else { o.folders };
            let spec = GenSpec {
                folders,
                files,
                depth: 6,
                // Sizes don't matter to a crawl, but the simulator hashes every file it lists: keep that cheap so
                // the figure is odbackup's, not the simulator's.
                min_size: 100,
                max_size: 4_000,
                seed: 7,
                ..GenSpec::default()
            };
            (Tree::generated(spec), "crawl")
        }
        "small" | "faults-mild" | "faults-heavy" => {
            let (files, min_kb, max_kb) = match o.mode.as_str() {
                "small" => (10_000, 50, 2_000),
                "faults-mild" => (10_000, 20, 200),
                _ => (2_010, 2, 50),
            };
            let files = if o.files == 0 { files } else { o.files };
            let spec = GenSpec {
                folders: files / 100 + 1,
                files,
                depth: 3,
                min_size: 1_000 * if o.min_kb == 0 { min_kb } else { o.min_kb },
                max_size: 1_000 * if o.max_kb == 0 { max_kb } else { o.max_kb },
                seed: o.seed,
                ..GenSpec::default()
            };
            (Tree::generated(spec), "backup")
        }
        "big" => (
            Tree::personal().file("Videos/big.mov", o.gb * 1_000_000_000),
            "backup",
        ),
        other => panic!("mode {other}: use crawl, small, big, upload, faults-mild or faults-heavy"),
    };
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(o.latency_ms));
    sim.set_listing_urls(match o.listing_urls.as_str() {
        "dropped-under-dollar" => ListingUrls::DroppedUnderDollarSelect,
        "selected" => ListingUrls::Selected,
        "none" => ListingUrls::NotInListings,
        other => panic!("--listing-urls {other}: use dropped-under-dollar, selected or none"),
    });
    let dest = tempfile::Builder::new()
        .prefix("odbackup-bench-")
        .tempdir()
        .expect("temp dir");
    if let Some(tool) = &o.baseline {
        assert!(
            tool == "curl" && o.mode == "big",
            "--baseline curl goes with the big mode"
        );
        let url = sim.download_url("Videos/big.mov");
        let start = Instant::now();
        let status = Command::new("curl")
            .args(["-sS", "--fail", "-o"])
            .arg(dest.path().join("big.mov"))
            .arg(&url)
            .status()
            .expect("run curl");
        let wall = start.elapsed();
        assert!(status.success(), "curl exited with {status}");
        // odbackup makes every file durable before it calls it done; curl does not. The same fsync after
        // curl gives the baseline of a writer that does.
        std::fs::File::open(dest.path().join("big.mov"))
            .and_then(|f| f.sync_all())
            .expect("fsync");
        let durable = start.elapsed();
        let bytes = sim.bytes_served();
        println!(
            "mode=big baseline=curl latency_ms={} wall_s={:.2} throughput_MBps={:.1} with_fsync_wall_s={:.2} with_fsync_MBps={:.1} bytes={} peak_rss_MiB={:.1}",
            o.latency_ms,
            wall.as_secs_f64(),
            bytes as f64 / 1e6 / wall.as_secs_f64(),
            durable.as_secs_f64(),
            bytes as f64 / 1e6 / durable.as_secs_f64(),
            bytes,
            children_max_rss_kib() as f64 / 1024.0
        );
        return;
    }
    let faults = o.mode.starts_with("faults-");
    let config = tempfile::Builder::new()
        .prefix("odbackup-bench-config-")
        .tempdir()
        .expect("temp dir");
    let mut cmd = Command::new(odbackup_binary(o.binary.as_ref()));
    if faults {
        // Signed in through the simulator's identity host, so access tokens expire and are refreshed.
        let heavy = o.mode == "faults-heavy";
        sim.set_token_lifetime(Duration::from_secs(if heavy { 60 } else { 120 }));
        sign_in(&sim, config.path(), o.binary.as_ref());
        arm_faults(&sim, heavy, o.seed);
        cmd.env("ODBACKUP_CONFIG_DIR", config.path())
            .env("ODBACKUP_AUTH_URL", sim.auth_url())
            .env("ODBACKUP_CLIENT_ID", "00000000-bench-client");
    } else {
        cmd.env("ODBACKUP_ACCESS_TOKEN", sim.token());
    }
    cmd.args([command, "--quiet", "--json", "--dest"])
        .arg(dest.path())
        .args(["--graph-url", &sim.graph_url()])
        .args(["--crawl-method", &o.crawl_method]);
    if let (Some(n), "backup") = (o.concurrency, command) {
        cmd.args(["--concurrency", &n.to_string()]);
    }
    let out_path = config.path().join("summary.json");
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).expect("summary file"))
        .spawn()
        .expect("run odbackup");
    let budget = Duration::from_secs(o.budget_s);
    let mut over_budget = false;
    let mut peak_kib = 0i64;
    let status = loop {
        if let Some(kib) = peak_rss_kib_of(child.id()) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if faults && start.elapsed() >= budget {
            child.kill().expect("SIGKILL");
            over_budget = true;
            break child.wait().expect("reap");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed();
    assert!(faults || status.success(), "odbackup exited with {status}");
    let rss_mib = peak_kib as f64 / 1024.0;
    let requests = sim.total_requests();
    let bytes = sim.bytes_served();
    let summary: serde_json::Value = std::fs::read(&out_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let download = &summary["download"];
    println!(
        "mode={} method={} listing_urls={} items={} latency_ms={} concurrency={} wall_s={:.2} odbackup_cpu_s={:.2} requests={} bytes={} throughput_MBps={:.1} peak_rss_MiB={:.1}",
        o.mode,
        o.crawl_method,
        o.listing_urls,
        sim.item_count(),
        o.latency_ms,
        o.concurrency
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        wall.as_secs_f64(),
        children_cpu_s(),
        requests,
        bytes,
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        rss_mib
    );
    if command == "backup" && o.latency_ms > 0 {
        let reached = sim.max_concurrent_downloads().max(1);
        let ideal = requests as f64 * o.latency_ms as f64 / 1000.0 / reached as f64;
        println!(
            "  transfers at once: most {} (simulator's gauge), highest limit {}, lowest {}, drops {}; ideal at that concurrency {:.1} s ({requests} requests x {} ms / {reached}), ratio {:.2}",
            reached,
            download["concurrency_highest"],
            download["concurrency_lowest"],
            download["concurrency_drops"],
            ideal,
            o.latency_ms,
            wall.as_secs_f64() / ideal.max(1e-9),
        );
    }
    if faults {
        let files = match (o.files, o.mode.as_str()) {
            (0, "faults-mild") => 10_000,
            (0, _) => 2_010,
            (n, _) => n,
        };
        println!(
            "  {} of {} files done{} (exit {:?}); refused with 429/503: {}; violations of Retry-After: {}; requests to expired URLs: {}; token refreshes: {}",
            done_files(dest.path()),
            files,
            if over_budget {
                format!(" when stopped at the {} s budget", o.budget_s)
            } else {
                String::new()
            },
            status.code(),
            sim.throttle_answers(),
            sim.requests_during_retry_after(),
            sim.expired_url_requests(),
            sim.refreshes(),
        );
        // Waiting out every Retry-After is not optional: that time plus the requests' own is the ideal.
        let waited = download["throttle_wait_secs"].as_f64().unwrap_or(0.0);
        println!(
            "  paused by Retry-After: {waited:.1} s of the {:.1} s",
            wall.as_secs_f64()
        );
    }
    for (kind, n) in sim.request_summary() {
        if n > 0 {
            println!("  {kind:?}: {n}");
        }
    }
    if std::env::var_os("BENCH_KEEP_DEST").is_some() {
        // To look at the manifest (failures, say) afterwards.
        println!("  destination kept: {}", dest.keep().display());
    }
}

/// `odbackup login` by device code against the simulator, into the token store in `config`.
fn sign_in(sim: &Simulator, config: &std::path::Path, binary: Option<&PathBuf>) {
    sim.script_device_code(DeviceScript {
        pending: 0,
        slow_down: 0,
        outcome: DeviceOutcome::Approve,
    });
    let status = Command::new(odbackup_binary(binary))
        .arg("login")
        .env("ODBACKUP_CONFIG_DIR", config)
        .env("ODBACKUP_GRAPH_URL", sim.graph_url())
        .env("ODBACKUP_AUTH_URL", sim.auth_url())
        .env("ODBACKUP_CLIENT_ID", "00000000-bench-client")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run odbackup login");
    assert!(status.success(), "login exited with {status}");
}

/// The fault mix of `faults-mild` or `faults-heavy` (see the module's doc).
fn arm_faults(sim: &Simulator, heavy: bool, seed: u64) {
    sim.set_in_flight_allowance(Duration::from_millis(150));
    let minute = Duration::from_secs(60);
    if heavy {
        sim.fail_randomly(0.034, seed, Failure::throttled(1));
        sim.fail_randomly(0.033, seed + 1, Failure::unavailable(Some(1)));
        sim.fail_randomly(0.033, seed + 2, Failure::server_error());
        sim.fail_periodically(minute, Duration::from_secs(5), Failure::throttled(5));
        sim.reset_downloads_fraction(0.08, None);
        sim.set_download_url_lifetime(Duration::from_secs(30));
    } else {
        sim.fail_randomly(0.01, seed, Failure::throttled(1));
        sim.fail_randomly(0.01, seed + 1, Failure::unavailable(Some(1)));
        sim.fail_periodically(minute, Duration::from_secs(2), Failure::throttled(2));
        sim.reset_downloads_fraction(0.02, None);
        sim.set_download_url_lifetime(Duration::from_secs(60));
    }
}

fn manifest_count(dest: &std::path::Path, sql: &str) -> usize {
    rusqlite::Connection::open_with_flags(
        dest.join(".odbackup/manifest.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|db| db.query_row(sql, [], |r| r.get::<_, i64>(0)))
    .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// Files the manifest records as done.
fn done_files(dest: &std::path::Path) -> usize {
    manifest_count(
        dest,
        "SELECT COUNT(*) FROM items WHERE kind = 'file' AND state = 'done'",
    )
}

/// A cheap deterministic byte stream (xorshift), so generated files are neither all zeros nor alike.
fn fill(seed: u64, buf: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// The source folder of an upload benchmark: `files` small files, or one `gb` file.
fn upload_source(o: &Opts, dir: &std::path::Path) -> (u64, u64) {
    use std::io::Write as _;
    let mut bytes = 0u64;
    if o.gb_given {
        let size = o.gb * 1_000_000_000;
        let mut f = std::fs::File::create(dir.join("big.mov")).expect("create");
        let mut buf = vec![0u8; 8 << 20];
        let mut left = size;
        let mut seed = 7;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            fill(seed, &mut buf[..n]);
            f.write_all(&buf[..n]).expect("write");
            left -= n as u64;
            seed += 1;
        }
        return (1, size);
    }
    let files = if o.files == 0 { 10_000 } else { o.files };
    let mut state = 11u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buf = vec![0u8; 2_000_001];
    for i in 0..files {
        let folder = dir.join(format!("Folder {:03}", i % (files / 100 + 1)));
        std::fs::create_dir_all(&folder).expect("mkdir");
        let size = 50_000 + next() % 1_950_001;
        fill(next(), &mut buf[..size as usize]);
        std::fs::write(
            folder.join(format!("file-{i:06}.jpg")),
            &buf[..size as usize],
        )
        .expect("write");
        bytes += size;
    }
    (files as u64, bytes)
}

/// `upload`: restore a generated folder into an empty drive, or (`--baseline client`) send the big file's
/// fragments from memory with a plain client.
fn upload(o: &Opts) {
    let sim = Simulator::start(Tree::personal());
    sim.set_keep_uploaded_bytes(false);
    sim.set_quota(1 << 50);
    sim.set_latency(Duration::from_millis(o.latency_ms));
    let work = tempfile::Builder::new()
        .prefix("odbackup-bench-")
        .tempdir()
        .expect("temp dir");
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    if let Some(tool) = &o.baseline {
        assert!(
            tool == "client" && o.gb_given,
            "--baseline client goes with upload --gb N"
        );
        let size = o.gb * 1_000_000_000;
        let (wall, fragments) = client_upload(&sim, size);
        println!(
            "mode=upload baseline=client latency_ms={} wall_s={:.2} throughput_MBps={:.1} fragments={} bytes={}",
            o.latency_ms,
            wall.as_secs_f64(),
            size as f64 / 1e6 / wall.as_secs_f64(),
            fragments,
            sim.bytes_uploaded()
        );
        return;
    }
    let (files, bytes) = upload_source(o, &src);
    // The source was just written: flush it first, so its write-back does not compete with the reads timed.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::sync();
    }
    let start = Instant::now();
    let mut cmd = Command::new(odbackup_binary(o.binary.as_ref()));
    cmd.args(["restore", "--quiet", "--json", "--from-folder"])
        .arg(&src)
        .arg("--manifest")
        .arg(work.path().join("state.sqlite"))
        .args(["--graph-url", &sim.graph_url()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token());
    if let Some(n) = o.concurrency {
        cmd.args(["--concurrency", &n.to_string()]);
    }
    let status = cmd
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run odbackup");
    let wall = start.elapsed();
    assert!(status.success(), "odbackup exited with {status}");
    let requests = sim.total_requests();
    assert_eq!(sim.bytes_uploaded(), bytes, "every byte arrived once");
    let concurrency = o.concurrency.unwrap_or(8);
    let ideal = requests as f64 * o.latency_ms as f64 / 1000.0 / concurrency as f64;
    println!(
        "mode=upload files={files} latency_ms={} wall_s={:.2} odbackup_cpu_s={:.2} requests={requests} bytes={bytes} throughput_MBps={:.1} peak_rss_MiB={:.1} request_ideal_s={ideal:.2}",
        o.latency_ms,
        wall.as_secs_f64(),
        children_cpu_s(),
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        children_max_rss_kib() as f64 / 1024.0
    );
    for (kind, n) in sim.request_summary() {
        if n > 0 {
            println!("  {kind:?}: {n}");
        }
    }
}

/// One upload session with a plain client: fragments of the size odbackup uses by default, from memory,
/// one after the other (the service takes them in order). Returns the wall time and the fragment count.
fn client_upload(sim: &Simulator, size: u64) -> (Duration, u64) {
    const FRAGMENT: u64 = 102 * 320 * 1024; // odbackup's default: 32 MiB rounded down to a multiple of 320 KiB
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut data = vec![0u8; FRAGMENT as usize];
        fill(3, &mut data);
        let data = bytes::Bytes::from(data);
        let start = Instant::now();
        let session: serde_json::Value = client
            .post(format!(
                "{}/drives/{}/root:/big.mov:/createUploadSession",
                sim.graph_url(),
                sim.drive_id()
            ))
            .bearer_auth(sim.token())
            .header("content-type", "application/json")
            .body(r#"{"item":{"@microsoft.graph.conflictBehavior":"fail"}}"#)
            .send()
            .await
            .expect("create session")
            .json()
            .await
            .expect("session JSON");
        let url = session["uploadUrl"].as_str().expect("uploadUrl").to_owned();
        let mut offset = 0u64;
        let mut fragments = 0u64;
        while offset < size {
            let n = FRAGMENT.min(size - offset);
            let status = client
                .put(&url)
                .header(
                    "content-range",
                    format!("bytes {offset}-{}/{size}", offset + n - 1),
                )
                .body(data.slice(..n as usize))
                .send()
                .await
                .expect("fragment")
                .status();
            assert!(status.is_success(), "fragment answered {status}");
            offset += n;
            fragments += 1;
        }
        (start.elapsed(), fragments)
    })
}

/// `tenant`: `backup --all-users` of `--drives` small drives, `--drives-at-once` at a time, against the
/// request-latency ideal (see the module's docs).
fn tenant(o: &Opts) {
    let files = if o.files == 0 { 20 } else { o.files };
    let drive = |seed: usize| {
        (0..files).fold(Tree::business(), |t, f| {
            t.file(
                &format!("Docs/f{f:03}.txt"),
                1_000 + ((seed * 7_919 + f * 104_729) % 19_000) as u64,
            )
        })
    };
    let mut tree = drive(0);
    for u in 1..o.drives.max(1) {
        tree = tree.user_drive(
            &format!("user{u:03}@contoso.example"),
            &format!("User {u}"),
            drive(u),
        );
    }
    let sim = Simulator::start(tree);
    sim.set_token_app_only(true);
    sim.set_token_scopes(&["Files.Read.All", "User.Read.All"]);
    sim.set_latency(Duration::from_millis(o.latency_ms));
    let root = tempfile::Builder::new()
        .prefix("odbackup-bench-")
        .tempdir()
        .expect("temp dir");
    // Each drive's 20 files take ⌈20 ÷ 8⌉ rounds at the starting concurrency (a given one caps it).
    let concurrency = o.concurrency.unwrap_or(8);
    let mut cmd = Command::new(odbackup_binary(o.binary.as_ref()));
    cmd.args(["backup", "--all-users", "--quiet", "--json", "--dest"])
        .arg(root.path())
        .args(["--graph-url", &sim.graph_url()])
        .args(["--drives-at-once", &o.drives_at_once.to_string()]);
    if let Some(n) = o.concurrency {
        cmd.args(["--concurrency", &n.to_string()]);
    }
    let start = Instant::now();
    let out = cmd
        .env("ODBACKUP_ACCESS_TOKEN", sim.token())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run odbackup");
    let wall = start.elapsed();
    assert!(out.status.success(), "odbackup exited with {}", out.status);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the roll-up's JSON");
    let drives = doc["drives"].as_array().map_or(0, Vec::len);
    assert_eq!(drives, o.drives.max(1), "every drive backed up");
    let requests = sim.total_requests();
    let directory = sim.requests(graphsim::RequestKind::Directory);
    let downloads = sim.requests(graphsim::RequestKind::Download);
    // Discovery: the /users page(s), then each user's drive, 8 at once (as `tenant::DISCOVERY_CONCURRENCY`).
    let user_drives = drives as u64;
    let discovery_rounds = directory + user_drives.div_ceil(8);
    // Each drive: its listing requests one after the other, then its files `--concurrency` at a time.
    let chain = (requests - directory - user_drives - downloads) / user_drives;
    let per_drive = chain + (files as u64).div_ceil(concurrency as u64);
    let rounds = discovery_rounds + user_drives.div_ceil(o.drives_at_once as u64) * per_drive;
    let ideal = rounds as f64 * o.latency_ms as f64 / 1000.0;
    println!(
        "mode=tenant drives={drives} files_per_drive={files} drives_at_once={} concurrency={} latency_ms={} wall_s={:.2} odbackup_cpu_s={:.2} requests={requests} listing_chain_per_drive={chain} request_ideal_s={ideal:.2} ratio={} peak_rss_MiB={:.1}",
        o.drives_at_once,
        concurrency,
        o.latency_ms,
        wall.as_secs_f64(),
        children_cpu_s(),
        if ideal > 0.0 {
            format!("{:.2}", wall.as_secs_f64() / ideal)
        } else {
            "CPU-bound".to_owned()
        },
        children_max_rss_kib() as f64 / 1024.0
    );
    for (kind, n) in sim.request_summary() {
        println!("  {kind:?}: {n}");
    }
}

/// Every regular file under `dir` (the state folder left out).
fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.file_name() == ".odbackup" {
            continue;
        }
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            files_under(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// Drop the files' pages from the page cache, so the next read comes from the disk.
fn drop_cached(files: &[PathBuf]) {
    for path in files {
        let file = std::fs::File::open(path).expect("open");
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    }
}

fn verify(o: &Opts) {
    use std::io::Read as _;
    let files = if o.files == 0 { 2_000 } else { o.files };
    let spec = GenSpec {
        folders: files / 100 + 1,
        files,
        depth: 3,
        min_size: 50_000,
        max_size: 2_000_000,
        seed: 11,
        ..GenSpec::default()
    };
    let sim = Simulator::start(Tree::generated(spec));
    let dest = tempfile::Builder::new()
        .prefix("odbackup-bench-")
        .tempdir()
        .expect("temp dir");
    let status = Command::new(odbackup_binary(o.binary.as_ref()))
        .args(["backup", "--quiet", "--dest"])
        .arg(dest.path())
        .args(["--graph-url", &sim.graph_url()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run odbackup");
    assert!(status.success(), "backup exited with {status}");
    let mut paths = Vec::new();
    files_under(dest.path(), &mut paths);
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum();

    drop_cached(&paths);
    let start = Instant::now();
    let mut buf = vec![0u8; 4 << 20];
    for path in &paths {
        let mut file = std::fs::File::open(path).expect("open");
        while file.read(&mut buf).expect("read") > 0 {}
    }
    let plain = start.elapsed().as_secs_f64();
    println!(
        "mode=verify baseline=plain-read files={} bytes={bytes} wall_s={plain:.2} throughput_MBps={:.1}",
        paths.len(),
        bytes as f64 / 1e6 / plain
    );
    for cache in ["cold", "warm"] {
        if cache == "cold" {
            drop_cached(&paths);
        }
        let cpu_before = children_cpu_s();
        let start = Instant::now();
        let readers = o.concurrency.unwrap_or(4).min(64);
        let out = Command::new(odbackup_binary(o.binary.as_ref()))
            .args(["verify", "--quiet", "--json", "--dest"])
            .arg(dest.path())
            .args(["--concurrency", &readers.to_string()])
            .output()
            .expect("run odbackup verify");
        let wall = start.elapsed().as_secs_f64();
        assert!(out.status.success(), "verify exited with {}", out.status);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json");
        println!(
            "mode=verify cache={cache} concurrency={readers} files={} bytes={} wall_s={wall:.2} odbackup_cpu_s={:.2} throughput_MBps={:.1} peak_rss_MiB={:.1}",
            doc["files_checked"],
            doc["bytes_read"],
            children_cpu_s() - cpu_before,
            doc["bytes_read"].as_u64().unwrap_or(0) as f64 / 1e6 / wall,
            children_max_rss_kib() as f64 / 1024.0
        );
    }
}
