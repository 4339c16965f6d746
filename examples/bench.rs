//! Benchmarks against the bundled Graph simulator: wall time, requests and peak memory of the real
//! `odbackup` binary. Run on demand, never by `cargo test`:
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- crawl [--latency-ms 20] [--files 100000] [--folders 5000] [--crawl-method children|delta]
//! cargo build --release && cargo run --release --example bench -- small [--latency-ms 20] [--files 10000] [--listing-urls none]
//! cargo build --release && cargo run --release --example bench -- big [--latency-ms 20] [--gb 2]
//! cargo build --release && cargo run --release --example bench -- big --baseline curl   # curl, same file, same disk
//! cargo build --release && cargo run --release --example bench -- upload [--latency-ms 20] [--files 10000]
//! cargo build --release && cargo run --release --example bench -- upload --gb 2 [--latency-ms 20]
//! cargo build --release && cargo run --release --example bench -- upload --gb 2 --baseline client
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
    gb_given: bool,
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
        gb_given: false,
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
    if o.mode == "upload" {
        upload(&o);
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
        other => panic!("mode {other}: use crawl, small, big or upload"),
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
    let status = Command::new(odbackup_binary())
        .args(["restore", "--quiet", "--json", "--from-folder"])
        .arg(&src)
        .arg("--manifest")
        .arg(work.path().join("state.sqlite"))
        .args(["--graph-url", &sim.graph_url()])
        .args(["--concurrency", &o.concurrency.to_string()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run odbackup");
    let wall = start.elapsed();
    assert!(status.success(), "odbackup exited with {status}");
    let requests = sim.total_requests();
    assert_eq!(sim.bytes_uploaded(), bytes, "every byte arrived once");
    let ideal = requests as f64 * o.latency_ms as f64 / 1000.0 / o.concurrency as f64;
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
    let status = Command::new(odbackup_binary())
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
        let out = Command::new(odbackup_binary())
            .args(["verify", "--quiet", "--json", "--dest"])
            .arg(dest.path())
            .args(["--concurrency", &o.concurrency.min(64).to_string()])
            .output()
            .expect("run odbackup verify");
        let wall = start.elapsed().as_secs_f64();
        assert!(out.status.success(), "verify exited with {}", out.status);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json");
        println!(
            "mode=verify cache={cache} concurrency={} files={} bytes={} wall_s={wall:.2} odbackup_cpu_s={:.2} throughput_MBps={:.1} peak_rss_MiB={:.1}",
            o.concurrency,
            doc["files_checked"],
            doc["bytes_read"],
            children_cpu_s() - cpu_before,
            doc["bytes_read"].as_u64().unwrap_or(0) as f64 / 1e6 / wall,
            children_max_rss_kib() as f64 / 1024.0
        );
    }
}
