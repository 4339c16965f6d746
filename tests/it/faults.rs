//! Surviving the real service and hostile input. Each test turns the simulator's fault knobs the
//! way the service misbehaves, then checks the bytes on disk, the manifest and the exit code.

use std::time::{Duration, Instant};

use std::sync::Arc;

use graphsim::{Failure, FileOpts, RequestKind, Simulator, Tree};
use odbackup::download::{DownloadOptions, DownloadPolicy, DownloadSummary};
use odbackup::graph::{GraphClient, GraphOptions};

use crate::download::backup;
use crate::support::{TestDest, against, against_at, assert_same_bytes, json, odbackup, run};

/// `count` files: mostly small photos, every 25th a larger one (so a reset lands mid-body and a resume
/// has something to resume), every 100th a few megabytes.
fn photo_tree(count: usize) -> (Tree, Vec<String>) {
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for i in 0..count {
        let size = match i % 100 {
            0 => 2_000_000 + i as u64,
            n if n % 25 == 0 => 300_000 + i as u64 * 11,
            _ => 2_000 + (i as u64 * 53) % 30_000,
        };
        let path = format!("Camera Roll/{}/{:02}/IMG_{i:05}.jpg", 2016 + i % 5, i % 12);
        tree = tree.file(&path, size);
        paths.push(path);
    }
    (tree, paths)
}

/// List the drive with the binary, then download through the library with a `policy` the command line does
/// not offer (yet), `concurrency` at once.
fn crawl_then_download(
    sim: &Simulator,
    dest: &TestDest,
    policy: &DownloadPolicy,
    concurrency: usize,
) -> DownloadSummary {
    let crawl = run(&mut against(sim, dest, "crawl"));
    assert_exit!(crawl, 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let tokens = Arc::new(odbackup::auth::StaticTokenSource::new(
            sim.token().to_owned(),
        ));
        let graph = GraphClient::new(
            GraphOptions {
                base_url: sim.graph_url(),
                ..GraphOptions::default()
            },
            tokens,
        )
        .unwrap();
        let manifest = odbackup::shared::SharedManifest::new(
            odbackup::manifest::Manifest::open(&dest.manifest()).unwrap(),
        );
        let (_crawl, progress) = tokio::sync::watch::channel(odbackup::progress::CrawlProgress {
            pages: 0,
            ended: true,
        });
        let options = DownloadOptions {
            dest: dest.path().to_path_buf(),
            concurrency,
            mirror_empty_folders: true,
            keep: odbackup::download::KeepPolicy::default(),
            pin: None,
        };
        odbackup::download::download(
            &graph,
            &manifest,
            &options,
            policy,
            Arc::new(odbackup::progress::NoopReporter),
            &tokio_util::sync::CancellationToken::new(),
            progress,
        )
        .await
        .unwrap()
    })
}

fn failures(dest: &TestDest) -> Vec<serde_json::Value> {
    let out = run(odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    json(&out).as_array().cloned().unwrap_or_default()
}

#[test]
fn a_backup_under_throttling_resets_and_expiring_urls_keeps_every_good_file_and_fails_only_the_corrupt_ones()
 {
    let (tree, paths) = photo_tree(2000);
    let sim = Simulator::start(tree);
    // Up to 10 % of all requests (listing, /content, download host) refused, half 429 and half 503, both
    // with Retry-After: 1, in episodes as a spent budget would refuse them: an episode starts every 100
    // requests and refuses everything until its window has passed (at most 20). How many requests fall into
    // a window is up to the client: one that slows down, as it should, meets fewer refusals.
    sim.fail_in_bursts(200, 20, Failure::throttled(1));
    sim.fail_in_bursts(200, 20, Failure::unavailable(Some(1)));
    // A request already on its way when a 429 is issued is not the client ignoring it.
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.reset_downloads_fraction(0.02, None);
    sim.set_download_url_lifetime(Duration::from_secs(3));
    let corrupt = [&paths[7], &paths[paths.len() * 5 / 8]];
    for p in corrupt {
        sim.corrupt(p, true);
    }
    let dest = TestDest::new();
    let started = Instant::now();
    let out = run(backup(&sim, &dest).arg("--json"));
    let took = started.elapsed();
    assert_exit!(out, 1, "two files failed");
    let summary = json(&out);
    let download = &summary["download"];
    eprintln!(
        "fault mix: {took:?}, throttle answers {} of {:?}, violations {}, summary {download}",
        sim.throttle_answers(),
        sim.request_summary(),
        sim.violations().len()
    );
    let requests = sim.total_requests();
    assert!(
        sim.throttle_answers() * 150 >= requests,
        "a throttling episode about every 100 of {requests} requests: {} refusals",
        sim.throttle_answers()
    );

    // Every good file has the simulator's bytes; the corrupted ones are not on disk under their name.
    for path in &paths {
        let on_disk = dest.join(path);
        if corrupt.contains(&path) {
            assert!(!on_disk.exists(), "{path}: wrong bytes kept");
        } else {
            let bytes = std::fs::read(&on_disk).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(bytes == sim.content(path), "{path}: bytes differ");
        }
    }
    assert!(
        !dest.files_on_disk().iter().any(|f| f.contains(".part")),
        "no part file is left of a finished or wrong file"
    );
    assert!(
        sim.violations().is_empty(),
        "no request came while a Retry-After was in force: {:?}",
        sim.violations().first()
    );

    // The summary, the manifest and `failures --json` tell the same story.
    assert_eq!(download["failed"], 2);
    assert_eq!(download["failures_by_class"]["hash_mismatch"], 2);
    assert_eq!(
        download["throttled"].as_u64(),
        Some(sim.throttle_answers()),
        "every refusal is counted in the summary: {download}"
    );
    let listed = failures(&dest);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mut failed_paths: Vec<&str> = listed
        .iter()
        .map(|f| f["remote_path"].as_str().unwrap())
        .collect();
    failed_paths.sort_unstable();
    let mut want: Vec<String> = corrupt.iter().map(|p| format!("/{p}")).collect();
    want.sort_unstable();
    assert_eq!(failed_paths, want);
    assert!(listed.iter().all(|f| f["class"] == "hash_mismatch"));
    let items = dest.items();
    let done = items
        .values()
        .filter(|r| r.kind == "file" && r.state == "done")
        .count();
    assert_eq!(done, paths.len() - 2);

    // With the faults gone, a re-run fetches only the two and ends clean.
    sim.clear_failures();
    sim.clear_resets();
    for p in corrupt {
        sim.corrupt(p, false);
    }
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    for p in corrupt {
        assert_eq!(std::fs::read(dest.join(p)).unwrap(), sim.content(p));
    }
    assert_eq!(sim.requests(RequestKind::Download), 2);
    assert!(failures(&dest).is_empty());
}

#[test]
fn while_throttled_no_request_reaches_the_service_before_retry_after_even_with_eight_transfers() {
    let (tree, paths) = photo_tree(300);
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(5));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.fail_in_bursts(60, 1, Failure::throttled(2).only(RequestKind::Download));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--concurrency", "8", "--json"]));
    assert_exit!(out, 0);
    assert!(sim.failures_served() >= 4, "{}", sim.failures_served());
    assert!(
        sim.violations().is_empty(),
        "requests during a Retry-After: {:?}",
        sim.violations()
    );
    for p in paths.iter().step_by(13) {
        assert!(
            std::fs::read(dest.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
    let summary = json(&out);
    assert!(summary["download"]["throttled"].as_u64().unwrap() >= 4);
}

#[test]
fn throttling_lowers_the_transfers_in_flight_and_a_healthy_service_lets_them_grow_back() {
    let (tree, paths) = photo_tree(2000);
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(25));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    let dest = TestDest::new();
    let mut child = backup(&sim, &dest)
        .args(["--concurrency", "8", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Full speed first, then one throttling episode, then a healthy service again.
    crate::support::eventually(Duration::from_secs(60), "eight transfers at once", || {
        (sim.current_downloads() >= 8).then_some(())
    });
    sim.throttle_next(1, 1);
    crate::support::eventually(Duration::from_secs(60), "the 429", || {
        (sim.failures_served() == 1).then_some(())
    });
    let throttled_at = Instant::now();
    let mut lowest_after = u64::MAX;
    let mut highest_later = 0;
    while child.try_wait().unwrap().is_none() {
        let now = sim.current_downloads();
        let since = throttled_at.elapsed();
        // The pause lasts a second; the limit is raised by one a second at most.
        if since > Duration::from_millis(1100) && since < Duration::from_millis(1600) {
            lowest_after = lowest_after.min(now);
        }
        if since > Duration::from_secs(3) {
            highest_later = highest_later.max(now);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    assert_exit!(out, 0);
    let summary = json(&out);
    let download = &summary["download"];
    assert!(
        download["concurrency_drops"].as_u64().unwrap() >= 1,
        "{download}"
    );
    assert!(
        download["concurrency_lowest"].as_u64().unwrap() <= 4,
        "{download}"
    );
    assert!(
        lowest_after <= 5,
        "fewer transfers right after the pause: {lowest_after}"
    );
    assert!(
        highest_later >= 7,
        "back near the ceiling later: {highest_later}"
    );
    assert!(sim.max_concurrent_downloads() <= 8);
    for p in paths.iter().step_by(17) {
        assert!(
            std::fs::read(dest.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
}

#[test]
fn rate_limit_headers_slow_the_client_down_before_the_budget_runs_out() {
    let (tree, paths) = photo_tree(250);
    let sim = Simulator::start(tree);
    // 300 resource units per 3 s: the backup needs about three windows' worth.
    sim.set_rate_limit(Some((300, Duration::from_secs(3))));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 0);
    assert_eq!(
        sim.throttle_answers(),
        0,
        "paced ahead of the budget, never refused"
    );
    assert!(sim.violations().is_empty());
    let summary = json(&out);
    assert!(
        summary["download"]["paced"].as_u64().unwrap() > 0,
        "{}",
        summary["download"]
    );
    for p in &paths {
        assert!(
            std::fs::read(dest.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
}

#[test]
fn a_503_without_retry_after_pauses_the_client_for_the_default_five_seconds() {
    let (tree, paths) = photo_tree(30);
    let sim = Simulator::start(tree);
    sim.fail_next(1, Failure::unavailable(None).only(RequestKind::Download));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 0);
    let summary = json(&out);
    let waited = summary["download"]["throttle_wait_secs"].as_f64().unwrap();
    assert!(waited >= 4.9, "{waited}");
    assert_eq!(summary["download"]["throttled"], 1);
    for p in &paths {
        assert!(
            std::fs::read(dest.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
}

#[test]
fn a_stalled_transfer_is_aborted_after_the_stall_timeout_and_resumed() {
    let tree = Tree::personal()
        .file("v/clip.mov", 3_000_000)
        .file("v/other.jpg", 40_000);
    let sim = Simulator::start(tree);
    // The body stops after 1 MB and would hang for a minute; the stall timeout is one second.
    sim.stall_next_downloads("v/clip.mov", 1, 1_000_000, Duration::from_secs(60));
    let dest = TestDest::new();
    let started = Instant::now();
    let summary = crawl_then_download(
        &sim,
        &dest,
        &DownloadPolicy {
            stall_timeout: Some(Duration::from_secs(1)),
            ..DownloadPolicy::default()
        },
        2,
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait for the stall: {:?}",
        started.elapsed()
    );
    assert_eq!((summary.downloaded, summary.failed), (2, 0), "{summary:?}");
    assert_eq!(
        std::fs::read(dest.join("v/clip.mov")).unwrap(),
        sim.content("v/clip.mov")
    );
    let ranges = sim.ranges_of("v/clip.mov");
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=1000000-")),
        "resumed from the bytes on disk: {ranges:?}"
    );
}

/// `(caveat_class, caveat, state, verification)` of the row at `path`.
fn caveat_of(
    dest: &TestDest,
    path: &str,
) -> (Option<String>, Option<String>, String, Option<String>) {
    let row = dest.items().remove(path).expect("a manifest row");
    (row.caveat_class, row.caveat, row.state, row.verification)
}

#[test]
fn known_quirks_are_kept_with_a_caveat_per_item_and_everything_else_still_fails() {
    let tree = Tree::business()
        .file_with(
            "Camera Roll/IMG_0001.HEIC",
            3_000_000,
            FileOpts::new().served_size(1_200_000),
        )
        .file_with(
            "Docs/report.docx",
            50_000,
            FileOpts::new().served_size(53_000),
        )
        .file_with("Docs/scan.pdf", 80_000, FileOpts::new().served_size(79_000))
        .file("Docs/empty.txt", 0)
        .file_with("Docs/old.bin", 1_000, FileOpts::new().no_hashes())
        .file_with(
            "Photos/short.jpg",
            10_000,
            FileOpts::new().served_size(9_000),
        )
        .file("Photos/fine.jpg", 10_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 1, "short.jpg is no known quirk");
    let summary = json(&out);
    let download = &summary["download"];
    assert_eq!(
        download["accepted_with_caveat"],
        serde_json::json!({"live_photo": 1, "rewritten_by_service": 2, "no_hash": 2}),
        "{download}"
    );
    assert_eq!(download["failed"], 1);
    assert_eq!(download["failures_by_class"]["size_mismatch"], 1);

    // The bytes kept are exactly what the service serves.
    for p in [
        "Camera Roll/IMG_0001.HEIC",
        "Docs/report.docx",
        "Docs/scan.pdf",
        "Docs/empty.txt",
        "Docs/old.bin",
        "Photos/fine.jpg",
    ] {
        assert!(
            std::fs::read(dest.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
    assert!(
        !dest.join("Photos/short.jpg").exists(),
        "wrong bytes never kept"
    );
    assert!(!dest.files_on_disk().iter().any(|f| f.contains(".part")));

    let (class, reason, state, verification) = caveat_of(&dest, "/Camera Roll/IMG_0001.HEIC");
    assert_eq!(
        (class.as_deref(), state.as_str()),
        (Some("live_photo"), "done")
    );
    assert!(reason.unwrap().contains("1200000 of the 3000000"));
    assert_eq!(verification.as_deref(), Some("unverified"));
    let (class, reason, ..) = caveat_of(&dest, "/Docs/report.docx");
    assert_eq!(class.as_deref(), Some("rewritten_by_service"));
    assert!(reason.unwrap().contains("same bytes came twice"));
    assert_eq!(
        sim.downloads_of("Docs/report.docx"),
        2,
        "fetched twice to compare"
    );
    assert_eq!(
        caveat_of(&dest, "/Docs/empty.txt").0.as_deref(),
        Some("no_hash")
    );
    assert_eq!(caveat_of(&dest, "/Photos/fine.jpg").0, None);

    // A re-run leaves the accepted files alone (the shorter Live Photo is not "missing") and retries the
    // failure, which fails the same way.
    sim.reset_counters();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 1);
    assert_eq!(json(&out)["download"]["requeued"], 0);
    assert_eq!(sim.downloads_of("Camera Roll/IMG_0001.HEIC"), 0);
    assert_eq!(sim.downloads_of("Docs/report.docx"), 0);
    let listed = failures(&dest);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["class"], "size_mismatch");
}

#[test]
fn malware_flagged_files_are_skipped_unless_the_user_opts_in_and_the_tenant_allows_it() {
    let tree = Tree::business()
        .file_with(
            "Bad/tool.exe",
            20_000,
            FileOpts::new().malware("Trojan:Win32/Sim"),
        )
        .file("Good/a.jpg", 30_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    // By default: skipped and reported, the rest of the run unaffected.
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert!(!dest.join("Bad/tool.exe").exists());
    assert!(dest.join("Good/a.jpg").exists());
    assert_eq!(sim.requests(RequestKind::Download), 1);
    // Opted in: fetched with AVOverride, verified, kept with the caveat.
    let summary = crawl_then_download(
        &sim,
        &dest,
        &DownloadPolicy {
            allow_malware: true,
            ..DownloadPolicy::default()
        },
        2,
    );
    assert_eq!((summary.downloaded, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(
        summary.accepted_with_caveat.get("malware_override"),
        Some(&1)
    );
    assert_eq!(
        std::fs::read(dest.join("Bad/tool.exe")).unwrap(),
        sim.content("Bad/tool.exe")
    );
    let (class, _, state, verification) = caveat_of(&dest, "/Bad/tool.exe");
    assert_eq!(
        (class.as_deref(), state.as_str(), verification.as_deref()),
        (Some("malware_override"), "done", Some("quickxor"))
    );
}

/// A tmpfs mounted on a folder, unmounted on drop. `None` where mounting is not allowed (not root, or no
/// tmpfs in a container): the caller skips, saying so.
struct SmallDisk {
    at: std::path::PathBuf,
    /// The fresh folder it is mounted on, when it made one: held (never read) so it outlives the mount.
    _owned: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// `size_mb` on a fresh folder.
    fn mount(size_mb: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let at = dir.path().to_owned();
        Self::mount_on(&at, &format!("size={size_mb}m"), Some(dir))
    }

    /// On `at`, with mount `options` (`ro`, `size=8m`).
    fn mount_at(at: &std::path::Path, options: &str) -> Option<Self> {
        Self::mount_on(at, options, None)
    }

    /// On `at`, holding `owned` (the folder `at` is, when this made it) until the unmount.
    fn mount_on(
        at: &std::path::Path,
        options: &str,
        owned: Option<tempfile::TempDir>,
    ) -> Option<Self> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            at: at.to_owned(),
            _owned: owned,
        })
    }

    fn path(&self) -> &std::path::Path {
        &self.at
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.at)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn grow(&self, size_mb: u64) {
        self.remount(&format!("size={size_mb}m"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.at).status();
    }
}

#[test]
fn a_destination_that_fills_up_stops_the_run_clearly_and_a_rerun_after_freeing_space_completes() {
    let Some(disk) = SmallDisk::mount(8) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for i in 0..60 {
        let path = format!("Videos/clip{i:02}.mov");
        tree = tree.file(&path, 400_000 + i * 1_000);
        paths.push(path);
    }
    let sim = Simulator::start(tree);
    let dest_path = disk.path().join("backup");
    std::fs::create_dir(&dest_path).unwrap();
    let backup_to = |json: bool| {
        let mut cmd = against_at(&sim, &dest_path, "backup");
        cmd.args(["--concurrency", "4"]);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let out = backup_to(false);
    assert_ne!(out.status.code(), Some(0), "a full disk is not success");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = format!("{stdout}{stderr}");
    // Whichever write meets the full disk first, a file's or the manifest's, the message names it.
    assert!(
        said.to_lowercase().contains("no space left")
            && (said.contains("Videos/clip") || said.contains("manifest.sqlite")),
        "says what happened and where: {said}"
    );

    // The manifest is readable and agrees with the disk: every done row has its exact bytes under its final
    // name. A file renamed just before the manifest could record it stands there with exact bytes too (the
    // re-run adopts it after hashing, as after a kill -9); nothing else does.
    let rows: Vec<(String, String)> =
        crate::support::read_items(&odbackup::app::default_manifest_path(&dest_path))
            .expect("the manifest is readable")
            .into_iter()
            .filter(|(_, r)| r.is_file())
            .map(|(path, r)| (path, r.state))
            .collect();
    assert_eq!(rows.len(), paths.len());
    let mut done = 0;
    for (remote, state) in &rows {
        let path = remote.trim_start_matches('/');
        let local = dest_path.join(path);
        if state == "done" {
            done += 1;
            assert!(
                std::fs::read(&local).unwrap() == sim.content(path),
                "{path}"
            );
        } else if local.exists() {
            assert!(
                std::fs::read(&local).unwrap() == sim.content(path),
                "{path} is {state} and stands under its final name with wrong bytes"
            );
        }
    }
    assert!(
        done > 0 && done < paths.len(),
        "stopped mid-run: {done} done"
    );

    // Room again: the re-run finishes, resuming what it can.
    disk.grow(64);
    let out = backup_to(true);
    assert_exit!(out, 0);
    for p in &paths {
        assert!(
            std::fs::read(dest_path.join(p)).unwrap() == sim.content(p),
            "{p}"
        );
    }
    let leftovers: Vec<_> = walkdir(&dest_path)
        .into_iter()
        .filter(|f| f.contains(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_read_only_folder_in_the_destination_stops_the_run_naming_it_and_a_rerun_after_fixing_it_completes()
 {
    let (tree, paths) = photo_tree(40);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    // A read-only file system mounted where one folder of the backup goes.
    let folder = "Camera Roll/2018";
    let blocked = dest.join(folder);
    std::fs::create_dir_all(&blocked).unwrap();
    let Some(disk) = SmallDisk::mount_at(&blocked, "ro") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let out = run(&mut backup(&sim, &dest));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exit!(out, 5, "stops the run: {said}");
    assert!(
        said.contains("Read-only file system") && said.contains(folder),
        "says what happened and where: {said}"
    );
    // Nothing marked done that is not on disk with its bytes.
    for (remote, row) in dest.items() {
        if row.kind == "file" && row.state == "done" {
            let path = remote.trim_start_matches('/');
            assert!(
                std::fs::read(dest.join(path)).unwrap() == sim.content(path),
                "{path}"
            );
        }
    }

    disk.remount("rw");
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &paths);
    drop(disk);
}

fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn when_the_service_cannot_be_reached_any_more_the_run_stops_soon_and_a_rerun_resumes() {
    let (tree, paths) = photo_tree(300);
    let sim = Simulator::start(tree);
    // Every body is cut before its first byte: for the client, the connection is gone.
    sim.reset_downloads_fraction(1.0, Some(0));
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 5, "the run could not go on");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("transfers in a row could not reach the service"),
        "{stdout}"
    );
    let states = dest.file_states();
    let failed = states.get("failed").copied().unwrap_or(0);
    let pending = states.get("pending").copied().unwrap_or(0);
    assert!(
        failed <= 16 + 8 && pending >= 300 - 16 - 8,
        "stopped early: {failed} failed, {pending} pending"
    );
    sim.clear_resets();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(dest.files_on_disk().len(), paths.len());
}

/// The files of `paths` under `folder` (a remote path prefix) and the rest.
fn split_by_folder<'a>(paths: &'a [String], folder: &str) -> (Vec<&'a String>, Vec<&'a String>) {
    paths
        .iter()
        .partition(|p| p.starts_with(&format!("{folder}/")))
}

#[test]
fn listings_that_cannot_be_read_are_asked_for_again_and_a_folder_that_stays_unreadable_is_listed_next_run()
 {
    let (tree, paths) = photo_tree(60);
    let sim = Simulator::start(tree);
    // Each kind of garbled page once, each in another folder: asked for again, nothing lost.
    for (failure, folder) in [
        (Failure::truncated_json(), "Camera Roll"),
        (Failure::wrong_types(), "Camera Roll/2016"),
        (Failure::missing_fields(), "Camera Roll/2018/03"),
    ] {
        sim.fail_next(1, failure.only(RequestKind::Children).for_item(folder));
    }
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 0, "{}", json(&out));
    assert_eq!(sim.failures_served(), 3);
    assert_same_bytes(&sim, &dest, &paths);

    // A folder whose listing stays garbled: recorded with the reason, everything else backed up, exit 1.
    let unreadable = "Camera Roll/2017";
    sim.fail_always(
        Failure::missing_fields()
            .only(RequestKind::Children)
            .for_item(unreadable),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 1, "not everything was listed");
    let summary = json(&out);
    assert_eq!(summary["crawl"]["folders_unreadable"], 1, "{summary}");
    let (inside, outside) = split_by_folder(&paths, unreadable);
    assert!(!inside.is_empty());
    assert_same_bytes(&sim, &dest, &outside);
    for p in &inside {
        assert!(!dest.join(p).exists(), "{p}: never listed, never written");
    }
    let row = &dest.items()[&format!("/{unreadable}")];
    let reason = row.skip_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("unreadable"), "{reason}");
    assert!(reason.contains("invalid JSON"), "{reason}");
    let human = run(backup(&sim, &dest).args(["--crawl-method", "children"]));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains("could not be read"), "{stdout}");

    // The service answers well again: the next run lists the folder and fetches what is in it.
    sim.clear_failures();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 0, "{}", json(&out));
    assert_same_bytes(&sim, &dest, &paths);
}

/// Delta has failed alone — 500 `cannotSnapshotTree` "Failed to get a coherent view of changes", answers that
/// are not a listing — while folder listings worked; the advice is to back off, then list in full. A backup
/// whose delta listing stays broken past its retries walks the folders instead, on a first run and on an
/// incremental one, and completes.
#[test]
fn a_delta_listing_that_stays_broken_is_replaced_by_a_walk_of_the_folders_and_the_backup_completes()
{
    let (tree, paths) = photo_tree(40);
    let sim = Simulator::start(tree);
    sim.fail_always(Failure::wrong_types().only(RequestKind::Delta));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "delta"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit!(out, 0, "{stderr}");
    assert!(stderr.contains("walking the folders instead"), "{stderr}");
    assert!(stderr.contains("invalid JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_same_bytes(&sim, &dest, &paths);
    assert!(sim.requests(RequestKind::Children) > 0);

    // Delta works again for a while: the next run is incremental. Then its saved link fails on the service's
    // side: that run lists in full, walks the folders when delta fails there too, and finds the new file.
    sim.clear_failures();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "delta"]));
    assert_exit!(out, 0);
    sim.add_file("Photos/new.jpg", 3_000);
    // (Answers that are no listing: a 500 `cannotSnapshotTree` takes the same way once its retries, about
    // 15 s of backoff per request, are spent.)
    sim.fail_always(Failure::wrong_types().only(RequestKind::Delta));
    let out = run(backup(&sim, &dest).args(["--crawl-method", "delta"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit!(out, 0, "{stderr}");
    assert!(
        stderr.contains("listing the changes keeps failing"),
        "{stderr}"
    );
    let mut all = paths.clone();
    all.push("Photos/new.jpg".to_owned());
    assert_same_bytes(&sim, &dest, &all);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn a_download_answered_with_other_bytes_than_the_file_is_never_kept_under_its_name() {
    let (tree, paths) = photo_tree(30);
    let sim = Simulator::start(tree);
    let (short, long) = (&paths[3], &paths[4]);
    assert!(sim.content(long).len() < 5_000);
    // Once each: a short JSON body with 200 instead of the file, and a body longer than the file.
    sim.fail_next(
        1,
        Failure::garbled(r#"{"error":"gateway"}"#)
            .only(RequestKind::Download)
            .for_item(short),
    );
    sim.fail_next(
        1,
        Failure::garbled(&"x".repeat(5_000))
            .only(RequestKind::Download)
            .for_item(long),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    let summary = json(&out);
    assert_eq!(sim.failures_served(), 2);
    // A body that ends before the listed size is fetched again and comes out right.
    assert_same_bytes(&sim, &dest, [short]);
    // A body running past the listed size is not the file: dropped and fetched again from scratch.
    assert_same_bytes(&sim, &dest, [long]);
    assert_exit!(out, 0, "{summary}");

    // Every time: failed for this run with the cause, nothing under its name, and the re-run asks again.
    let other = &paths[5];
    sim.fail_always(
        Failure::garbled(&"y".repeat(40_000))
            .only(RequestKind::Download)
            .for_item(other),
    );
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 1);
    assert!(!dest.join(other).exists(), "wrong bytes kept");
    let listed = failures(&dest);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["remote_path"], format!("/{other}"));
    assert_eq!(listed[0]["class"], "size_mismatch");
    assert!(!dest.files_on_disk().iter().any(|f| f.contains(".part")));
    sim.clear_failures();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, [other]);
}

#[test]
fn a_run_killed_while_told_to_wait_leaves_the_wait_to_the_next_run() {
    let (tree, paths) = photo_tree(200);
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(10));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    let dest = TestDest::new();
    let mut child = backup(&sim, &dest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::eventually(Duration::from_secs(60), "transfers under way", || {
        (sim.requests(RequestKind::Download) >= 20).then_some(())
    });
    sim.throttle_next(1, 3);
    crate::support::eventually(Duration::from_secs(60), "the 429", || {
        (sim.failures_served() == 1).then_some(())
    });
    // Killed mid-pause, once the pause is on record.
    crate::support::eventually(Duration::from_secs(2), "the pause kept", || {
        dest.setting("throttled_until")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Past the simulator's in-flight allowance, so the next run's first request cannot pass for one that was
    // already on its way when the 429 went out: this is the time axis of the test, not a wait for an event.
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("asked the previous run to wait"),
        "the wait is said, not a silent hang: {stderr}"
    );
    assert!(
        sim.violations().is_empty(),
        "the new run called while the old one's Retry-After was in force: {:?}",
        sim.violations()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited the rest"
    );
    assert_same_bytes(&sim, &dest, paths.iter().step_by(7));
}

#[test]
fn one_request_in_ten_refused_evenly_is_waited_out_every_time_and_nothing_is_lost() {
    // The literal rate, spread evenly rather than in episodes: every tenth request (listing, /content,
    // download host) is answered 429 or 503 with Retry-After 1, with resets, expiring URLs and a corrupt file.
    let (tree, paths) = photo_tree(100);
    let sim = Simulator::start(tree);
    sim.fail_fraction(0.05, Failure::throttled(1));
    sim.fail_fraction(0.05, Failure::unavailable(Some(1)));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.reset_downloads_fraction(0.02, None);
    sim.set_download_url_lifetime(Duration::from_secs(3));
    let corrupt = &paths[11];
    sim.corrupt(corrupt, true);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 1, "the corrupt file failed");
    let summary = json(&out);
    let requests = sim.total_requests();
    assert!(
        sim.throttle_answers() * 10 >= requests,
        "one in ten of {requests} requests refused: {}",
        sim.throttle_answers()
    );
    assert!(
        sim.violations().is_empty(),
        "{:?}",
        sim.violations().first()
    );
    assert_eq!(
        summary["download"]["throttled"].as_u64(),
        Some(sim.throttle_answers()),
        "{summary}"
    );
    for p in &paths {
        if p == corrupt {
            assert!(!dest.join(p).exists(), "wrong bytes kept");
        } else {
            assert!(
                std::fs::read(dest.join(p)).unwrap() == sim.content(p),
                "{p}"
            );
        }
    }
    let listed = failures(&dest);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["class"], "hash_mismatch");
}

/// A maintenance window answers 403 `serviceReadOnly` ("Database Is Read Only") even to reads
/// (<https://github.com/rclone/rclone/issues/9794>): a 403 that passes. Finding the drive, listing and
/// downloading each meet it twice; the backup waits it out and completes, with nothing failed as access denied.
#[test]
fn a_service_read_only_window_is_waited_out_not_taken_as_access_denied() {
    let (tree, paths) = photo_tree(6);
    let sim = Simulator::start(tree);
    for kind in [
        RequestKind::Drive,
        RequestKind::Children,
        RequestKind::Download,
    ] {
        sim.fail_next(2, Failure::service_read_only().only(kind));
    }
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0, "a read-only window is no lack of permission");
    assert!(failures(&dest).is_empty(), "{:?}", failures(&dest));
    assert_same_bytes(&sim, &dest, &paths);
}
