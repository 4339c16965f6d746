//! Fewer requests and more streams. Small files after a crawl cost one request each (the listing's
//! download URL, no `/content`); a large file is fetched as concurrent ranges on one resolved URL; a stale or
//! refused listing URL falls back to `/content`; a kill mid-way through a ranged file resumes without fetching
//! its finished spans again. These tests count requests at the simulator; none of them is timed.

use std::collections::BTreeSet;
use std::time::Duration;

use graphsim::{RequestKind, Simulator, Tree};

use crate::crawl::crawl;
use crate::download::backup;
use crate::support::{TestDest, assert_same_bytes, eventually, run};

/// `odbackup download` of `dest` against the simulator.
fn download(sim: &Simulator, dest: &TestDest) -> std::process::Command {
    crate::support::against(sim, dest, "download")
}

fn small_tree(files: usize) -> (Tree, Vec<String>) {
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for i in 0..files {
        let path = format!("Photos/{}/IMG_{i:03}.jpg", i % 4);
        tree = tree.file(&path, 2_000 + i as u64 * 131);
        paths.push(path);
    }
    (tree, paths)
}

fn listed_urls(dest: &TestDest) -> i64 {
    dest.listed_url_count()
}

#[test]
fn small_files_after_a_crawl_are_fetched_with_one_request_each_by_either_listing_method() {
    for method in ["children", "delta"] {
        let (tree, paths) = small_tree(40);
        let sim = Simulator::start(tree);
        let dest = TestDest::new();
        let out = run(crawl(&sim, &dest).args(["--crawl-method", method]));
        assert_exit!(out, 0, "{method}");
        assert_eq!(
            listed_urls(&dest),
            40,
            "{method}: a crawl-only run keeps the fresh URLs for a download shortly after"
        );
        sim.reset_counters();
        let out = run(&mut download(&sim, &dest));
        assert_exit!(out, 0, "{method}");
        assert_eq!(
            sim.requests(RequestKind::Content),
            0,
            "{method}: no /content"
        );
        assert_eq!(
            sim.requests(RequestKind::Download),
            40,
            "{method}: one request per file"
        );
        assert_eq!(sim.authorization_headers_on_download_host(), 0);
        assert_same_bytes(&sim, &dest, &paths);
        assert_eq!(listed_urls(&dest), 0, "{method}: no credential left behind");
    }
}

#[test]
fn a_backup_fetches_small_files_by_the_listing_urls_of_the_same_run() {
    let (tree, paths) = small_tree(30);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Content), 0);
    assert_eq!(sim.requests(RequestKind::Download), 30);
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(listed_urls(&dest), 0);
    // The incremental path lists changes with URLs too.
    sim.add_file("Photos/new.jpg", 7_000);
    sim.modify_file("Photos/0/IMG_000.jpg");
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Content), 0);
    assert_eq!(sim.requests(RequestKind::Download), 2);
    assert_same_bytes(
        &sim,
        &dest,
        &[
            "Photos/new.jpg".to_owned(),
            "Photos/0/IMG_000.jpg".to_owned(),
        ],
    );
}

#[test]
fn a_large_file_is_fetched_as_concurrent_ranges_on_one_resolved_url() {
    const BIG: &str = "Videos/big.mov";
    let sim = Simulator::start(Tree::personal().file(BIG, 10_000_000).file("a.txt", 500));
    sim.set_latency(Duration::from_millis(20));
    let dest = TestDest::new();
    assert_exit!(run(&mut crawl(&sim, &dest)), 0);
    // Crawled 31 minutes ago: the stored URLs are past their window and not even tried.
    dest.age_listed_urls(31);
    sim.reset_counters();
    let out = run(download(&sim, &dest).args(["--chunk-size", "1M", "--streams-per-file", "4"]));
    assert_exit!(out, 0);
    assert_eq!(
        sim.requests(RequestKind::Content),
        2,
        "one /content per file, however many ranges"
    );
    let ranges: Vec<String> = sim.ranges_of(BIG).into_iter().flatten().collect();
    let want: BTreeSet<String> = (0..10u64)
        .map(|i| {
            let end = ((i + 1) << 20).min(10_000_000) - 1;
            format!("bytes={}-{end}", i << 20)
        })
        .collect();
    assert_eq!(ranges.len(), 10, "{ranges:?}");
    assert_eq!(ranges.into_iter().collect::<BTreeSet<_>>(), want);
    assert!(
        sim.max_concurrent_downloads() >= 2,
        "ranges overlapped: {}",
        sim.max_concurrent_downloads()
    );
    assert_eq!(sim.authorization_headers_on_download_host(), 0);
    assert_same_bytes(&sim, &dest, &[BIG.to_owned(), "a.txt".to_owned()]);
    assert_eq!(
        dest.files_on_disk(),
        vec!["Videos/big.mov".to_owned(), "a.txt".to_owned()],
        "no part file or journal left"
    );
}

#[test]
fn refused_listing_urls_fall_back_to_content_once_per_file_and_still_deliver_the_bytes() {
    const BIG: &str = "big.bin";
    let (tree, mut paths) = small_tree(12);
    let sim = Simulator::start(tree.file(BIG, 5_000_000));
    paths.push(BIG.to_owned());
    let dest = TestDest::new();
    // The URLs in the listing are dead on arrival (an hour passed, or the host revoked them).
    sim.set_download_url_lifetime(Duration::ZERO);
    assert_exit!(run(&mut crawl(&sim, &dest)), 0);
    sim.set_download_url_lifetime(Duration::from_secs(3600));
    sim.reset_counters();
    let out = run(download(&sim, &dest).args(["--chunk-size", "1M", "--streams-per-file", "3"]));
    assert_exit!(out, 0);
    assert_eq!(
        sim.requests(RequestKind::Content),
        13,
        "one fresh URL per file, the ranged one included"
    );
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(listed_urls(&dest), 0);
}

/// A simulator with four folders of ten files, crawled into `dest` half an hour ago: their listing URLs are
/// past the window. Counters reset.
fn crawled_half_an_hour_ago() -> (Simulator, TestDest, Vec<String>) {
    let (tree, paths) = small_tree(40);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut crawl(&sim, &dest)), 0);
    dest.age_listed_urls(31);
    sim.reset_counters();
    (sim, dest, paths)
}

#[test]
fn files_whose_listing_urls_went_stale_get_fresh_ones_from_one_new_listing_of_their_folder() {
    let (sim, dest, paths) = crawled_half_an_hour_ago();
    let out = run(&mut download(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(
        sim.requests(RequestKind::Children),
        4,
        "each folder listed once again"
    );
    assert_eq!(
        sim.requests(RequestKind::Content),
        0,
        "no `/content` round trip per file"
    );
    assert_eq!(sim.requests(RequestKind::Download), 40);
    assert_eq!(sim.authorization_headers_on_download_host(), 0);
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(listed_urls(&dest), 0, "no credential left behind");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("4 folders listed again for 40 fresh download URLs"),
        "{said}"
    );

    // Folders listed in pages of four: each is paged through (three pages) until its ten files are found.
    let (sim, dest, paths) = crawled_half_an_hour_ago();
    sim.set_page_cap(Some(4));
    assert_exit!(run(&mut download(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Children), 4 * 3);
    assert_eq!(sim.requests(RequestKind::Content), 0);
    assert_same_bytes(&sim, &dest, &paths);

    // A service whose listings leave the URLs out now: one folder is listed in vain, the rest of the files
    // go through `/content` without more listings.
    let (sim, dest, paths) = crawled_half_an_hour_ago();
    sim.set_listing_urls(graphsim::ListingUrls::NotInListings);
    assert_exit!(run(&mut download(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Children), 1);
    assert_eq!(sim.requests(RequestKind::Content), 40);
    assert_same_bytes(&sim, &dest, &paths);

    // A service that refuses the folders' listings now (a spelling of their IDs it no longer takes, say):
    // two refusals turn the refresher off, and every file still arrives through `/content`.
    let (sim, dest, paths) = crawled_half_an_hour_ago();
    sim.fail_always(
        graphsim::Failure::status(404, "itemNotFound", "Item does not exist")
            .only(RequestKind::Children),
    );
    assert_exit!(run(&mut download(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Children), 2);
    assert_eq!(sim.requests(RequestKind::Content), 40);
    assert_same_bytes(&sim, &dest, &paths);
}

#[test]
fn a_kill_mid_way_through_a_ranged_file_resumes_without_fetching_its_finished_spans_again() {
    const BIG: &str = "A/big.mov";
    const SIZE: u64 = 100 * 1024 * 1024;
    let sim = Simulator::start(Tree::personal().file(BIG, SIZE));
    // Slow enough that the kill lands mid-file: 100 spans, 2 at a time, 40 ms before each answer.
    sim.set_latency(Duration::from_millis(40));
    let dest = TestDest::new();
    let args = ["--chunk-size", "1M", "--streams-per-file", "2"];
    let journal = || {
        std::fs::read_dir(dest.join("A"))
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".part.chunks"))
            .map(|e| e.path())
    };
    let recorded = |text: &str| -> BTreeSet<String> {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .map(|(a, b)| format!("bytes={a}-{}", b - 1))
            .collect()
    };
    let mut child = backup(&sim, &dest).args(args).spawn().unwrap();
    eventually(Duration::from_secs(60), "some finished spans", || {
        let text = std::fs::read_to_string(journal()?).ok()?;
        (recorded(&text).len() >= 4).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dest.join(BIG).exists(), "not under its final name");
    let finished = recorded(&std::fs::read_to_string(journal().unwrap()).unwrap());
    let before = sim.ranges_of(BIG).len();

    let out = run(backup(&sim, &dest).args(args));
    assert_exit!(out, 0);
    assert!(
        std::fs::read(dest.join(BIG)).unwrap() == sim.content(BIG),
        "the resumed file is right"
    );
    let again: Vec<String> = sim.ranges_of(BIG)[before..]
        .iter()
        .flatten()
        .filter(|r| finished.contains(*r))
        .cloned()
        .collect();
    assert!(
        again.is_empty(),
        "spans finished before the kill were fetched again: {again:?}"
    );
    assert_eq!(dest.files_on_disk(), vec![BIG.to_owned()]);
}

#[test]
fn a_ranged_file_is_verified_whole_whether_hashed_as_its_ranges_arrive_or_read_back_for_sha1() {
    const BIG: &str = "Videos/big.mov";
    const OLD: &str = "Videos/old.mov";
    let sim = Simulator::start(Tree::personal().file(BIG, 6_000_000).file_with(
        OLD,
        5_000_000,
        graphsim::FileOpts::default().sha1(),
    ));
    let args = ["--chunk-size", "1M", "--streams-per-file", "3"];
    // One byte served wrong in each: the ranges' folded quickXorHash (and the SHA-1 read back) catch it, the
    // file is fetched again from scratch and fails, and nothing is kept under its name.
    sim.corrupt(BIG, true);
    sim.corrupt(OLD, true);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(args));
    assert_exit!(out, 1);
    for path in [BIG, OLD] {
        assert!(!dest.join(path).exists(), "{path}: wrong bytes kept");
    }
    let items = dest.items();
    for path in [BIG, OLD] {
        assert_eq!(items[&format!("/{path}")].state, "failed", "{path}");
    }
    // Served right again: both verified and kept.
    sim.corrupt(BIG, false);
    sim.corrupt(OLD, false);
    let out = run(backup(&sim, &dest).args(args));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &[BIG.to_owned(), OLD.to_owned()]);
    assert!(
        sim.ranges_of(BIG).iter().flatten().count() >= 6,
        "fetched as ranges"
    );
}
