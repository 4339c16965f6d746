//! Benchmarks against the bundled Graph simulator: wall time, requests and peak memory of the real
//! `odbackup` binary. Run on demand, never by `cargo test`:
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- crawl [--latency-ms 20] [--files 100000] [--folders 5000] [--crawl-method children|delta]
//! cargo build --release && cargo run --release --example bench -- small [--latency-ms 20] [--files 10000] [--listing-urls none]
//! cargo build --release && cargo run --release --example bench -- big [--latency-ms 20] [--gb 2]
//! cargo build --release && cargo run --release --example bench -- big --baseline curl   # curl, same file, same disk
//! ```
//!
//! `--baseline curl` fetches the big file's pre-authenticated URL with `curl -o` into the same kind of
//! temporary folder instead of running odbackup: the loopback throughput a plain HTTP client gets from the
//! same simulator, which is the ideal the big-file figure is compared with.
//!
//! `--listing-urls` sets when the simulator's listings carry `@microsoft.graph.downloadUrl`: `dropped-under-dollar`
//! (its default: left out under `$select`, kept under `select=`), `selected` (whenever selected) or `none`
//! (never in a listing, so every file costs a `/content` round trip).
//!
//! Peak RSS is the child's `ru_maxrss` (getrusage), i.e. odbackup's own high-water mark.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use graphsim::{GenSpec, ListingUrls, Simulator, Tree};

struct Opts {
    mode: String,
    latency_ms: u64,
    files: usize,
    folders: usize,
    gb: u64,
    concurrency: usize,
    crawl_method: String,
    baseline: Option<String>,
    listing_urls: String,
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        mode: args.next().unwrap_or_else(|| "crawl".to_owned()),
        latency_ms: 0,
        files: 0,
        folders: 0,
        gb: 2,
        concurrency: 8,
        crawl_method: "children".to_owned(),
        baseline: None,
        listing_urls: "dropped-under-dollar".to_owned(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--latency-ms" => o.latency_ms = value.parse().expect("--latency-ms N"),
            "--files" => o.files = value.parse().expect("--files N"),
            "--folders" => o.folders = value.parse().expect("--folders N"),
            "--gb" => o.gb = value.parse().expect("--gb N"),
            "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
            "--crawl-method" => o.crawl_method = value,
            "--baseline" => o.baseline = Some(value),
            "--listing-urls" => o.listing_urls = value,
            other => panic!("unknown flag {other}"),
        }
    }
    o
}

fn odbackup_binary() -> PathBuf {
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

/// CPU seconds (user + system) the child used: with the wall time, tells whether odbackup or the
/// simulator (this process) was the busy one.
fn children_cpu_s() -> f64 {
    let u = children_usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn main() {
    let o = parse();
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
        "small" => {
            let files = if o.files == 0 { 10_000 } else { o.files };
            let spec = GenSpec {
                folders: files / 100 + 1,
                files,
                depth: 3,
                min_size: 50_000,
                max_size: 2_000_000,
                seed: 11,
                ..GenSpec::default()
            };
            (Tree::generated(spec), "backup")
        }
        "big" => (
            Tree::personal().file("Videos/big.mov", o.gb * 1_000_000_000),
            "backup",
        ),
        other => panic!("mode {other}: use crawl, small or big"),
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
    let start = Instant::now();
    let status = Command::new(odbackup_binary())
        .args([command, "--quiet", "--json", "--dest"])
        .arg(dest.path())
        .args(["--graph-url", &sim.graph_url()])
        .args(["--crawl-method", &o.crawl_method])
        .args(if command == "backup" {
            vec!["--concurrency".to_owned(), o.concurrency.to_string()]
        } else {
            vec![]
        })
        .env("ODBACKUP_ACCESS_TOKEN", sim.token())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run odbackup");
    let wall = start.elapsed();
    assert!(status.success(), "odbackup exited with {status}");
    let rss_mib = children_max_rss_kib() as f64 / 1024.0;
    let requests = sim.total_requests();
    let bytes = sim.bytes_served();
    println!(
        "mode={} method={} listing_urls={} items={} latency_ms={} wall_s={:.2} odbackup_cpu_s={:.2} requests={} bytes={} throughput_MBps={:.1} peak_rss_MiB={:.1}",
        o.mode,
        o.crawl_method,
        o.listing_urls,
        sim.item_count(),
        o.latency_ms,
        wall.as_secs_f64(),
        children_cpu_s(),
        requests,
        bytes,
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        rss_mib
    );
    for (kind, n) in sim.request_summary() {
        if n > 0 {
            println!("  {kind:?}: {n}");
        }
    }
}
