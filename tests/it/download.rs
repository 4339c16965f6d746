//! Downloading the manifest — bounded, verified, every failure on record.

use std::time::Duration;

use graphsim::{Failure, FileOpts, RequestKind, Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, json, odbackup, run};

pub fn backup(sim: &Simulator, dest: &TestDest) -> std::process::Command {
    crate::support::against(sim, dest, "backup")
}

/// Mixed sizes: mostly small photos, some medium, a few larger, and empty files.
fn mixed_tree(files: usize) -> (Tree, Vec<(String, u64)>) {
    let mut tree = Tree::personal().folder("Empty Folder/Nested");
    let mut list = Vec::new();
    for i in 0..files {
        let size = match i % 50 {
            0 => 3_000_000 + i as u64,
            1 => 0,
            2..=9 => 200_000 + i as u64 * 7,
            _ => 1_000 + (i as u64 * 37) % 20_000,
        };
        let path = format!("Photos/{}/{}/IMG_{i:05}.jpg", 2015 + i % 7, i % 12);
        let month = i % 12 + 1;
        tree = tree.file_with(
            &path,
            size,
            FileOpts::new().modified(&format!("2019-{month:02}-03T04:05:06Z")),
        );
        list.push((path, size));
    }
    (tree, list)
}

#[test]
fn a_backup_of_thousands_of_files_mirrors_bytes_folders_and_mtimes() {
    let (tree, files) = mixed_tree(2000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--concurrency", "6"]));
    assert_exit!(out, 0);

    for (path, _) in files.iter().step_by(7) {
        let bytes = std::fs::read(dest.join(path)).unwrap();
        assert!(
            bytes == sim.content(path),
            "{path} differs from the simulator's bytes"
        );
    }
    for (i, (path, size)) in files.iter().enumerate() {
        let meta = std::fs::metadata(dest.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.len(), *size, "{path}");
        let month = i % 12 + 1;
        let want =
            chrono::DateTime::parse_from_rfc3339(&format!("2019-{month:02}-03T04:05:06Z")).unwrap();
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        assert_eq!(mtime.unix_seconds(), want.timestamp(), "{path} mtime");
    }
    assert!(
        dest.join("Empty Folder/Nested").is_dir(),
        "empty folders are mirrored"
    );
    let on_disk = dest.files_on_disk();
    assert_eq!(
        on_disk.len(),
        files.len(),
        "no part files or strays: {:?}",
        on_disk.iter().find(|f| f.contains(".part"))
    );
    let items = dest.items();
    assert!(
        items
            .values()
            .filter(|r| r.kind == "file")
            .all(|r| r.state == "done")
    );
    assert!(
        sim.max_concurrent_downloads() <= 6,
        "saw {} concurrent downloads",
        sim.max_concurrent_downloads()
    );
    assert_eq!(
        sim.authorization_headers_on_download_host(),
        0,
        "the bearer token never goes to the download host"
    );

    let summary = json(&run(backup(&sim, &dest).arg("--json")));
    assert_eq!(
        summary["download"]["downloaded"], 0,
        "a re-run fetches nothing"
    );
}

#[test]
fn concurrency_is_never_exceeded() {
    let (tree, _) = mixed_tree(300);
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(20));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--concurrency", "3"]));
    assert_exit!(out, 0);
    let max = sim.max_concurrent_downloads();
    assert!((1..=3).contains(&max), "max concurrent downloads {max}");
}

#[test]
fn a_corrupted_file_fails_with_hash_mismatch_and_a_rerun_after_the_fault_fixes_it() {
    let (tree, files) = mixed_tree(200);
    let sim = Simulator::start(tree);
    let bad = &files[3].0;
    sim.corrupt(bad, true);
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 1);
    assert!(
        !dest.join(bad).exists(),
        "a corrupted file is never kept under its final name"
    );
    assert!(sim.downloads_of(bad) >= 2, "it was retried");
    assert!(
        !dest.files_on_disk().iter().any(|f| f.contains(".part")),
        "no part file of wrong bytes is kept"
    );
    let failures = json(&run(odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path())));
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["remote_path"], format!("/{bad}"));
    assert_eq!(failures[0]["class"], "hash_mismatch");
    assert!(failures[0]["attempts"].as_u64().unwrap() >= 2);
    for (path, _) in files.iter().filter(|(p, _)| p != bad) {
        assert!(dest.join(path).exists(), "{path}");
    }

    sim.corrupt(bad, false);
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(std::fs::read(dest.join(bad)).unwrap(), sim.content(bad));
    assert_eq!(
        sim.requests(RequestKind::Download),
        1,
        "only the failed file is fetched again"
    );
}

#[test]
fn a_reset_mid_body_and_a_503_are_survived_and_the_attempts_recorded() {
    let tree = Tree::personal()
        .file("v/big.mov", 4_000_000)
        .file("v/small.jpg", 5_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_eq!(
        run(&mut against(&sim, &dest, "crawl")).status.code(),
        Some(0)
    );
    sim.reset_next_downloads("v/big.mov", 2, Some(1_000_000));
    sim.fail_next(1, Failure::unavailable(Some(1)).only(RequestKind::Content));
    // One transfer at a time, so no request is already in flight when the 503 arrives: every later one
    // must wait out the Retry-After.
    let mut download = against(&sim, &dest, "download");
    download.args(["--concurrency", "1", "--json"]);
    let out = run(&mut download);
    assert_exit!(out, 0);
    assert_eq!(
        std::fs::read(dest.join("v/big.mov")).unwrap(),
        sim.content("v/big.mov")
    );
    let ranges = sim.ranges_of("v/big.mov");
    assert!(
        ranges
            .iter()
            .flatten()
            .any(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-")),
        "the retry resumed with a Range from the bytes already on disk: {ranges:?}"
    );
    assert!(
        sim.violations().is_empty(),
        "Retry-After was honoured: {:?}",
        sim.violations()
    );
}

#[test]
fn files_already_on_disk_with_the_right_hash_are_adopted_without_downloading() {
    let tree = Tree::personal()
        .file("a/one.jpg", 50_000)
        .file("a/two.jpg", 60_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    std::fs::create_dir_all(dest.join("a")).unwrap();
    std::fs::write(dest.join("a/one.jpg"), sim.content("a/one.jpg")).unwrap();
    let mut wrong = sim.content("a/two.jpg");
    wrong[10] ^= 1;
    std::fs::write(dest.join("a/two.jpg"), &wrong).unwrap();
    let summary = json(&run(backup(&sim, &dest).arg("--json")));
    assert_eq!(summary["download"]["adopted"], 1);
    assert_eq!(summary["download"]["downloaded"], 1);
    assert_eq!(sim.downloads_of("a/one.jpg"), 0);
    assert_eq!(
        std::fs::read(dest.join("a/two.jpg")).unwrap(),
        sim.content("a/two.jpg")
    );
}

#[test]
fn a_done_file_missing_on_disk_is_fetched_again() {
    let tree = Tree::personal().file("a/one.jpg", 50_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    std::fs::remove_file(dest.join("a/one.jpg")).unwrap();
    assert_exit!(run(&mut against(&sim, &dest, "download")), 0);
    assert_eq!(
        std::fs::read(dest.join("a/one.jpg")).unwrap(),
        sim.content("a/one.jpg")
    );
}

#[test]
fn download_urls_that_expire_are_replaced_and_a_host_refusing_every_url_fails_the_file_not_the_run()
{
    let tree = Tree::personal()
        .file("a/one.jpg", 300_000)
        .file("a/two.jpg", 200_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    // Every URL is dead on arrival: each file is failed after a bounded number of fresh URLs.
    sim.set_download_url_lifetime(Duration::ZERO);
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 1);
    let failures = json(&run(odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path())));
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(
        failures
            .iter()
            .all(|f| f["class"] == "access_denied" && f["http_status"] == 401),
        "{failures:?}"
    );
    assert!(
        sim.requests(RequestKind::Content) <= 2 * 6,
        "bounded: {}",
        sim.requests(RequestKind::Content)
    );
    // URLs that live a while are simply re-resolved when they lapse; the re-run completes.
    sim.set_download_url_lifetime(Duration::from_secs(60));
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(
        std::fs::read(dest.join("a/one.jpg")).unwrap(),
        sim.content("a/one.jpg")
    );
}

/// How a dead download URL answers is not documented: a 404 (or 403) from the download host is resolved
/// afresh through `/content` like the 401 the simulator sends by default, not taken for a file gone.
#[test]
fn listing_urls_that_die_with_404_or_403_are_resolved_again_not_taken_for_files_gone() {
    let tree = (0..30).fold(Tree::personal(), |t, i| {
        t.file(&format!("p/{i:02}.jpg"), 2_000 + i * 7)
    });
    let paths: Vec<String> = (0..30).map(|i| format!("p/{i:02}.jpg")).collect();
    for status in [404, 403] {
        let sim = Simulator::start(tree.clone());
        sim.set_expired_url_status(status);
        let dest = TestDest::new();
        // Every URL the listing gives is dead by the time the downloads start; fresh ones live.
        sim.set_download_url_lifetime(Duration::ZERO);
        assert_exit!(run(&mut against(&sim, &dest, "crawl")), 0);
        sim.set_download_url_lifetime(Duration::from_secs(60));
        let out = run(&mut backup(&sim, &dest));
        assert_exit!(out, 0, "{status}: {}", String::from_utf8_lossy(&out.stderr));
        assert_same_bytes(&sim, &dest, &paths);
        assert!(sim.expired_url_requests() >= 1, "{status}");
        assert!(sim.requests(RequestKind::Content) >= 1, "{status}");
    }
}

#[test]
fn a_file_changed_remotely_is_fetched_again_by_the_rerun_even_when_listed_after_newer_rows() {
    let tree = Tree::personal()
        .file("A/first.jpg", 10_000)
        .file("Z/old.jpg", 20_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    // A new file in A (a new, higher row) and a change to a file in Z (an old, lower row). Listing A first puts
    // the downloader's cursor past Z/old.jpg's row before the crawl marks it pending again.
    sim.add_file("A/new.jpg", 5_000);
    sim.modify_file("Z/old.jpg");
    sim.set_latency(Duration::from_millis(30));
    let out = run(backup(&sim, &dest).args(["--list-concurrency", "1"]));
    assert_exit!(out, 0);
    assert!(
        std::fs::read(dest.join("Z/old.jpg")).unwrap() == sim.content("Z/old.jpg"),
        "the changed file is current"
    );
    assert!(
        std::fs::read(dest.join("A/new.jpg")).unwrap() == sim.content("A/new.jpg"),
        "the new file is there"
    );
}

/// Downloads start as soon as files are in the manifest, whichever way the drive is listed: a first full
/// listing by delta of a large drive is thousands of pages, and its first files need not wait for its last.
#[test]
fn a_full_listing_by_delta_hands_its_files_to_the_downloader_page_by_page() {
    use crate::support::eventually;
    let mut tree = Tree::personal();
    let files: Vec<String> = (0..40).map(|i| format!("f{i:02}.bin")).collect();
    for (i, file) in files.iter().enumerate() {
        tree = tree.file(file, 1_000 + i as u64);
    }
    let sim = Simulator::start(tree);
    sim.set_page_cap(Some(10));
    // The listing's first page is answered; every page after it waits until released.
    sim.hold_requests_after(RequestKind::Delta, None, 1);
    let dest = TestDest::new();
    let mut child = backup(&sim, &dest)
        .args(["--crawl-method", "delta"])
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "files of the first page downloaded while the rest of the listing waits",
        || (sim.held_requests() >= 1 && sim.requests(RequestKind::Download) >= 1).then_some(()),
    );
    sim.release_requests(RequestKind::Delta);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    crate::support::assert_same_bytes(&sim, &dest, &files);
}
