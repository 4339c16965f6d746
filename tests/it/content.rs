//! Content, download URLs and verification against the Graph of 2024–26: `/content` answering with the bytes
//! or with a redirect that has no `Location`, listings that leave the download URL out under `$select`, sizes
//! that lie while the hash is right, download URLs whose path is the credential, outcomes of a transfer that
//! the drive overtook, and a download host that answers every request with a server error.

use graphsim::{ContentAnswer, ListingUrls, RequestKind, Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, run};

/// Large enough to be fetched as ranges with `RANGED`.
const BIG: &str = "Videos/big.mov";
const BIG_SIZE: u64 = 5_000_000;
/// Files above 1 MiB are fetched as 1 MiB spans, three at once.
const RANGED: [&str; 4] = ["--chunk-size", "1M", "--streams-per-file", "3"];

/// A dozen small photos and one file large enough to be fetched in spans.
fn tree_with_a_big_file() -> (Tree, Vec<String>) {
    let mut tree = Tree::personal().file(BIG, BIG_SIZE);
    let mut paths = vec![BIG.to_owned()];
    for i in 0..12 {
        let path = format!("Photos/IMG_{i:03}.jpg");
        tree = tree.file(&path, 3_000 + i * 977);
        paths.push(path);
    }
    (tree, paths)
}

fn backup(sim: &Simulator, dest: &TestDest) -> std::process::Command {
    against(sim, dest, "backup")
}

/// The distinct `Range` headers the simulator saw for `path`, in arrival order.
fn ranges(sim: &Simulator, path: &str) -> Vec<String> {
    sim.ranges_of(path).into_iter().flatten().collect()
}

#[test]
fn content_that_answers_with_the_bytes_is_streamed_from_the_graph_host_small_and_ranged() {
    let (tree, paths) = tree_with_a_big_file();
    let sim = Simulator::start(tree);
    // Every file goes through `/content` (no listing URLs), which serves the bytes itself.
    sim.set_listing_urls(ListingUrls::NotInListings);
    sim.set_content_answer(ContentAnswer::Inline);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(RANGED));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(
        sim.requests(RequestKind::Download),
        0,
        "nothing was asked of a download host"
    );
    // The big file came as 1 MiB ranges from `/content` itself: five spans, each a Graph request.
    let spans = ranges(&sim, BIG);
    assert_eq!(spans.len(), 5, "{spans:?}");
    assert!(
        spans.contains(&"bytes=4194304-4999999".to_owned()),
        "{spans:?}"
    );
    assert_eq!(sim.requests(RequestKind::Content), 12 + 5);
    assert_eq!(sim.authorization_headers_on_download_host(), 0);
    assert_eq!(dest.files_on_disk().len(), paths.len(), "no part file left");
}

#[test]
fn a_reset_mid_body_from_content_resumes_with_a_range_and_restarts_where_the_range_is_ignored() {
    const FILE: &str = "Videos/clip.mov";
    for ignore_range in [false, true] {
        let sim = Simulator::start(Tree::personal().file(FILE, 3_000_000));
        sim.set_listing_urls(ListingUrls::NotInListings);
        sim.set_content_answer(ContentAnswer::Inline);
        sim.set_ignore_range(ignore_range);
        sim.reset_next_downloads(FILE, 1, Some(1_000_000));
        let dest = TestDest::new();
        // One stream: the resume is a `Range` from where the part file ends.
        let out = run(backup(&sim, &dest).args(["--streams-per-file", "1"]));
        assert_exit!(out, 0, "ignore_range {ignore_range}");
        assert_same_bytes(&sim, &dest, [FILE]);
        let asked = sim.ranges_of(FILE);
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert_eq!(asked[0], None, "the first request asks for the whole file");
        let resumed = asked[1].as_deref().expect("the resume sends a Range");
        let from: u64 = resumed
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        assert!(
            (1..=1_000_000).contains(&from),
            "resumed from the bytes kept: {resumed}"
        );
        // Whether the range was honoured (206) or ignored (200 from byte 0), the bytes are the file's.
        assert!(
            sim.bytes_served() >= 3_000_000 + if ignore_range { from } else { 0 },
            "ignore_range {ignore_range}: {} bytes served",
            sim.bytes_served()
        );
    }
}

#[test]
fn a_ranged_file_from_content_survives_a_reset_mid_span_and_a_host_that_ignores_ranges() {
    for (answer, ignore_range) in [
        (ContentAnswer::Inline, false),
        (ContentAnswer::Inline, true),
        (ContentAnswer::RedirectWithoutLocation, false),
        (ContentAnswer::Redirect, true),
    ] {
        let sim = Simulator::start(Tree::personal().file(BIG, BIG_SIZE));
        sim.set_listing_urls(ListingUrls::NotInListings);
        sim.set_content_answer(answer);
        sim.set_ignore_range(ignore_range);
        // The second request of the file is cut 300 kB into its body.
        sim.reset_next_downloads(BIG, 1, Some(300_000));
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(RANGED));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{answer:?}, ignore_range {ignore_range}"
        );
        assert_same_bytes(&sim, &dest, [BIG]);
        assert_eq!(
            dest.files_on_disk(),
            vec![BIG.to_owned()],
            "no part file left"
        );
        if !ignore_range {
            // The cut span went on from where it stopped, not from its start.
            let spans = ranges(&sim, BIG);
            assert!(
                spans.iter().any(|r| r.starts_with("bytes=300000-")),
                "{spans:?}"
            );
        }
    }
}

/// A host that cuts every body of a file before its first byte is not asked back to back: its spans share
/// one budget for the whole run (not one per round of spans), the file fails with its cause, the others
/// finish, and the next run fetches it.
#[test]
fn a_ranged_file_whose_every_body_breaks_at_once_is_given_up_after_a_few_spaced_tries() {
    let (tree, paths) = tree_with_a_big_file();
    let sim = Simulator::start(tree);
    sim.reset_next_downloads(BIG, 1_000, Some(0));
    let dest = TestDest::new();
    let started = std::time::Instant::now();
    let out = run(backup(&sim, &dest).args(RANGED));
    assert_exit!(out, 1);
    let asked = sim.downloads_of(BIG);
    assert!(
        (6..=10).contains(&asked),
        "the first spans, then one probe per try: {asked}"
    );
    // The tries after the first ones waited ½ s, 1 s, 2 s and 4 s (jittered down to half).
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(3_500),
        "the tries were spaced: {:?}",
        started.elapsed()
    );
    assert_same_bytes(&sim, &dest, &paths[1..]);
    let failures = crate::support::json(&run(crate::support::odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path())));
    let rows = failures.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{failures}");
    assert_eq!(rows[0]["class"], "network", "{failures}");

    sim.clear_resets();
    assert_exit!(run(backup(&sim, &dest).args(RANGED)), 0);
    assert_same_bytes(&sim, &dest, &paths);
}

#[test]
fn a_redirect_without_location_is_resolved_through_the_items_download_url() {
    let (tree, paths) = tree_with_a_big_file();
    let sim = Simulator::start(tree);
    sim.set_listing_urls(ListingUrls::NotInListings);
    sim.set_content_answer(ContentAnswer::RedirectWithoutLocation);
    let dest = TestDest::new();
    assert_eq!(
        run(&mut against(&sim, &dest, "crawl")).status.code(),
        Some(0)
    );
    sim.reset_counters();
    let out = run(against(&sim, &dest, "download").args(RANGED));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &paths);
    // The first `/content` answer says there is no `Location`; from then on each file costs one item read
    // (the ranged one included: its spans share the URL) and its download. Only transfers that started
    // before that answer (at most the 8 at once) asked `/content`.
    assert!(
        sim.requests(RequestKind::Content) <= 8,
        "{:?}",
        sim.request_summary()
    );
    assert_eq!(sim.requests(RequestKind::Item), 13);
    assert_eq!(ranges(&sim, BIG).len(), 5);
    assert_eq!(
        sim.authorization_headers_on_download_host(),
        0,
        "the pre-authenticated URLs never get the token"
    );
}

#[test]
fn listings_bring_download_urls_where_dollar_select_would_drop_them_and_the_summary_counts_them() {
    for method in ["children", "delta"] {
        let (tree, paths) = tree_with_a_big_file();
        let sim = Simulator::start(tree);
        // The simulator's default: the annotation is left out under `$select`, kept under `select=`.
        sim.set_listing_urls(ListingUrls::DroppedUnderDollarSelect);
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--crawl-method", method, "--json"]));
        assert_exit!(out, 0, "{method}");
        assert_same_bytes(&sim, &dest, &paths);
        assert_eq!(
            sim.requests(RequestKind::Content),
            0,
            "{method}: every file came with its listing's URL"
        );
        let summary = crate::support::json(&out);
        assert_eq!(summary["download"]["with_listing_url"], 13, "{method}");
        assert_eq!(summary["download"]["by_listing_url"], 13, "{method}");
    }
    // A service that never sends it: every file through `/content`, and the summary says none came with one.
    let (tree, paths) = tree_with_a_big_file();
    let sim = Simulator::start(tree);
    sim.set_listing_urls(ListingUrls::NotInListings);
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(sim.requests(RequestKind::Content), 13);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("13 downloaded")
            && stdout.contains("0 came with their listing's download URL"),
        "{stdout}"
    );
}

#[test]
fn a_file_whose_bytes_have_the_listed_hash_is_kept_whatever_the_listed_size_says() {
    use graphsim::{FileOpts, Hashes};
    // Listed a few hundred bytes larger than served, with the hashes of the bytes served.
    let files = [
        ("Pictures/2009/old.jpg", 48_000, 47_700, FileOpts::new()),
        ("Documents/report.pdf", 90_000, 89_500, FileOpts::new()),
        (
            "Documents/letter.docx",
            20_000,
            19_800,
            FileOpts::new().hashes(Hashes::WithSha1),
        ),
        (BIG, BIG_SIZE, BIG_SIZE - 313, FileOpts::new()),
    ];
    let mut tree = Tree::personal().file("Pictures/fine.jpg", 5_000);
    for (path, listed, served, opts) in &files {
        tree = tree.file_with(path, *listed, opts.clone().size_listed_wrong(*served));
    }
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(RANGED));
    assert_exit!(out, 0);
    let paths: Vec<&str> = files.iter().map(|f| f.0).collect();
    assert_same_bytes(&sim, &dest, &paths);
    let items = dest.items();
    for (path, listed, served, _) in &files {
        let row = &items[&format!("/{path}")];
        assert_eq!(
            (
                row.state.as_str(),
                row.caveat_class.as_deref(),
                row.local_size
            ),
            ("done", Some("size_metadata"), i64::try_from(*served).ok()),
            "{path} (listed {listed})"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 kept with a caveat: size_metadata"),
        "the summary says so"
    );
    let status = crate::support::json(&run(crate::support::odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    assert!(
        status["accepted_by_caveat"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == "size_metadata" && c["count"] == 4),
        "{status}"
    );
    // Kept for good: the next run fetches nothing.
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_eq!(sim.requests(RequestKind::Content), 0);
}

#[test]
fn a_listed_size_that_changes_under_an_unchanged_hash_fetches_nothing_again() {
    let sim = Simulator::start(
        Tree::personal()
            .file("Pictures/2009/old.png", 48_000)
            .file("Pictures/fine.jpg", 5_000),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    let bytes = std::fs::read(dest.join("Pictures/2009/old.png")).unwrap();
    // The listing now says 48,313 bytes; the bytes and their hash are what they were.
    sim.flap_listed_size("Pictures/2009/old.png", 48_313);
    for args in [&[][..], &["--full"][..]] {
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(args));
        assert_exit!(out, 0, "{args:?}");
        assert_eq!(sim.requests(RequestKind::Download), 0, "{args:?}");
        assert_eq!(
            std::fs::read(dest.join("Pictures/2009/old.png")).unwrap(),
            bytes
        );
        let row = &dest.items()["/Pictures/2009/old.png"];
        assert_eq!(
            (
                row.state.as_str(),
                row.caveat_class.as_deref(),
                row.local_size
            ),
            ("done", Some("size_metadata"), Some(48_000)),
            "{args:?}"
        );
    }
    // `verify` finds the file sound.
    let out = run(crate::support::odbackup()
        .args(["verify", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    // The reading comes back to the truth: the caveat goes.
    sim.flap_listed_size("Pictures/2009/old.png", 48_000);
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    let row = &dest.items()["/Pictures/2009/old.png"];
    assert_eq!((row.caveat_class.as_deref(), row.local_size), (None, None));
    // Real new content of another size still comes down.
    sim.resize_file("Pictures/2009/old.png", 50_000);
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Download), 1);
    assert_same_bytes(&sim, &dest, ["Pictures/2009/old.png"]);
}

/// Every text value of every table of the manifest at `dest`, as `table.column: value`.
fn manifest_text(dest: &TestDest) -> Vec<String> {
    let db = dest.db();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns: Vec<String> = stmt
            .column_names()
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, column) in columns.iter().enumerate() {
                if let Ok(Some(text)) = row.get::<_, Option<String>>(i) {
                    out.push(format!("{table}.{column}: {text}"));
                }
            }
        }
    }
    out
}

#[test]
fn a_download_url_whose_path_is_the_credential_appears_in_no_message_log_or_manifest_row() {
    use graphsim::Failure;
    let sim = Simulator::start(
        Tree::personal()
            .file("Photos/refused.jpg", 40_000)
            .file("Photos/broken.jpg", 40_000)
            .file("Photos/cut.jpg", 40_000)
            .file("Photos/fine.jpg", 40_000),
    );
    // Consumer URLs of the `/y4m…/name` form: the path segment is the credential.
    sim.set_url_credential_in_path(true);
    let on = |path: &str, failure: Failure| {
        sim.fail_always(failure.only(RequestKind::Download).for_item(path));
    };
    on("Photos/refused.jpg", Failure::access_denied());
    on("Photos/broken.jpg", Failure::server_error());
    sim.reset_next_downloads("Photos/cut.jpg", 40, Some(100));
    let dest = TestDest::new();
    let logs = TestDest::new();
    let log_file = logs.join("odbackup.log");
    let out = run(backup(&sim, &dest)
        .env("RUST_LOG", "trace")
        .args(["-vvv", "--json", "--log-file"])
        .arg(&log_file));
    assert_exit!(out, 1);
    assert!(dest.join("Photos/fine.jpg").exists());
    let failures = run(crate::support::odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path()));
    let failures_json = crate::support::json(&failures);
    assert_eq!(
        failures_json.as_array().unwrap().len(),
        3,
        "{failures_json}"
    );
    for row in failures_json.as_array().unwrap() {
        let message = row["message"].as_str().unwrap();
        assert!(
            message.contains("item ") && message.contains("127.0.0.1"),
            "names the item and the host: {message}"
        );
    }
    let texts = [
        (
            "stdout of the backup",
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            "stderr of the backup",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        ("the log file", std::fs::read_to_string(&log_file).unwrap()),
        (
            "failures --json",
            String::from_utf8_lossy(&failures.stdout).into_owned(),
        ),
        ("the manifest", manifest_text(&dest).join("\n")),
    ];
    assert!(texts[2].1.lines().count() > 20, "the log is verbose");
    for (place, text) in &texts {
        for secret in ["y4m", "psid", "tempauth"] {
            assert!(
                !text.contains(secret),
                "{place} shows a download URL's credential ({secret}): {}",
                text.lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default()
            );
        }
    }
}

#[test]
fn a_file_changed_on_the_drive_while_its_old_version_is_fetched_ends_with_the_new_version() {
    use crate::support::eventually;
    use std::time::Duration;
    const FILE: &str = "Docs/plan.bin";
    let sim = Simulator::start(
        Tree::personal()
            .file(FILE, 200_000)
            .file("Docs/other.bin", 5_000),
    );
    let dest = TestDest::new();
    // A crawl lists both (and keeps their download URLs); the backup then downloads them while its own
    // incremental listing runs.
    assert_eq!(
        run(&mut against(&sim, &dest, "crawl")).status.code(),
        Some(0)
    );
    let old = sim.quick_xor(FILE);
    // Hold the backup's listing and the old version's download until the drive has changed.
    sim.hold_requests(RequestKind::Delta, None);
    sim.hold_requests(RequestKind::Download, Some(FILE));
    let mut child = backup(&sim, &dest).spawn().unwrap();
    eventually(
        Duration::from_secs(30),
        "the listing and the download held",
        || (sim.held_requests() >= 2).then_some(()),
    );
    sim.modify_file(FILE);
    let new = sim.quick_xor(FILE);
    assert_ne!(old, new);
    sim.release_requests(RequestKind::Delta);
    // The same run's listing has recorded the new version while the old one is still being fetched.
    eventually(Duration::from_secs(30), "the new version listed", || {
        let listed = dest.try_items()?.remove(&format!("/{FILE}"))?.quick_xor;
        (listed.as_deref() == Some(new.as_str())).then_some(())
    });
    sim.release_requests(RequestKind::Download);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The old bytes arrived first, and were not recorded as the new version: the new one was fetched too.
    assert!(sim.downloads_of(FILE) >= 2, "{}", sim.downloads_of(FILE));
    assert_same_bytes(&sim, &dest, [FILE, "Docs/other.bin"]);
    let row = &dest.items()[&format!("/{FILE}")];
    assert_eq!(
        (row.state.as_str(), row.quick_xor.as_deref()),
        ("done", Some(new.as_str()))
    );
    // And it stays right.
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_same_bytes(&sim, &dest, [FILE]);
}

#[test]
fn a_download_host_answering_every_request_with_a_server_error_stops_the_run_early() {
    use graphsim::Failure;
    for failure in [Failure::server_error(), Failure::unavailable(Some(0))] {
        let status = failure.status;
        let mut tree = Tree::personal();
        let mut paths = Vec::new();
        for i in 0..150 {
            let path = format!("Camera Roll/IMG_{i:04}.jpg");
            tree = tree.file(&path, 2_000 + i);
            paths.push(path);
        }
        let sim = Simulator::start(tree);
        sim.fail_always(failure.only(RequestKind::Download));
        let dest = TestDest::new();
        let out = run(&mut backup(&sim, &dest));
        assert_eq!(
            out.status.code(),
            Some(5),
            "HTTP {status}: the run could not go on"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("transfers in a row failed with server errors"),
            "{stdout}"
        );
        let states = dest.file_states();
        let failed = states.get("failed").copied().unwrap_or(0);
        let pending = states.get("pending").copied().unwrap_or(0);
        assert!(
            failed <= 16 + 8 && pending >= 150 - 16 - 8,
            "HTTP {status}: stopped early: {failed} failed, {pending} pending"
        );
        // Each file cost a bounded number of requests to the dead host: the failed ones their whole
        // budget, and the (at most 8, the default concurrency, which does not grow on errors) transfers
        // still under way when the run stopped at most as much, then left pending.
        // (`Retry-After: 0` makes the 503 a plain server error: no throttle retried back to back.)
        let bound = 3;
        let requests = sim.requests(RequestKind::Download);
        let budget = (u64::try_from(failed).unwrap() + 8) * bound;
        assert!(
            failed > 0 && requests <= budget,
            "HTTP {status}: {requests} requests for {failed} failed files (budget {budget})"
        );
        // The host is back: the next run resumes and fetches everything.
        sim.clear_failures();
        assert_exit!(run(&mut backup(&sim, &dest)), 0);
        assert_same_bytes(&sim, &dest, &paths);
    }
}

#[test]
fn the_summary_says_how_many_files_exit_0_vouches_for_by_hash_and_how_many_carry_a_caveat() {
    use graphsim::FileOpts;
    let sim = Simulator::start(
        Tree::personal()
            .file("Photos/a.jpg", 10_000)
            .file("Photos/b.jpg", 12_000)
            .file_with(
                "Photos/IMG_1.HEIC",
                30_000,
                FileOpts::new().served_size(21_000),
            )
            .file_with(
                "Photos/old.jpg",
                9_000,
                FileOpts::new().size_listed_wrong(8_700),
            )
            .file_with("Docs/unhashed.txt", 4_000, FileOpts::new().no_hashes()),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 0);
    let summary = crate::support::json(&out);
    let d = &summary["download"];
    assert_eq!(d["downloaded"], 5);
    assert_eq!(d["verified_by_hash"], 2, "{d}");
    assert_eq!(d["kept_with_caveat"], 3, "{d}");
    for class in ["live_photo", "size_metadata", "no_hash"] {
        assert_eq!(d["accepted_with_caveat"][class], 1, "{class}: {d}");
    }
    // The same, in words (a fresh destination).
    let dest = TestDest::new();
    let out = run(&mut backup(&sim, &dest));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 match their listed size and hash; 3 kept with a caveat"),
        "{stdout}"
    );
}

#[test]
fn a_file_listed_larger_than_any_drive_holds_is_fetched_as_one_stream_and_judged_by_its_hash() {
    use graphsim::FileOpts;
    const SERVED: u64 = 40 << 20;
    let sim = Simulator::start(Tree::personal().file_with(
        "Video/huge.mp4",
        i64::MAX as u64,
        FileOpts::new().size_listed_wrong(SERVED),
    ));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    // Not an abort on a planned allocation of terabytes of spans: the bytes served, vouched for by the hash.
    assert_exit!(out, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sim.requests(RequestKind::DownloadWithRange), 0);
    assert_same_bytes(&sim, &dest, ["Video/huge.mp4"]);
}

/// Business drives have listed negative sizes for folders (onedrive-api-docs #375, #617, #926) and for files
/// such as `Home.aspx` and `Open Notebook.onetoc2` (#1053), a `/sites/{id}/drive` a negative `quota.used`
/// (#1869), and a `OneNote` file at 170 bytes that served ten megabytes (#927). None of it may cost the drive
/// its backup: a negative number reads as no size, such a file is fetched and judged by its hash, and a body
/// longer than listed is taken as far as the server declared when a hash will judge it.
#[test]
fn negative_sizes_and_quotas_and_a_notebook_served_larger_than_listed_are_backed_up_by_their_hashes()
 {
    use graphsim::FileOpts;
    let tree = Tree::business()
        .file("Home.aspx", 5_000)
        .file("Notebook/Open Notebook.onetoc2", 3_000)
        .file("Notebook/photo.jpg", 400_000)
        .file_with("Notebook/plain.txt", 2_000, FileOpts::new().no_hashes())
        .file_with(
            "Notebook/Section.onetoc2",
            170,
            FileOpts::new().size_listed_wrong(100_000),
        )
        .file("fine.txt", 1_234);
    let files = [
        "Home.aspx",
        "Notebook/Open Notebook.onetoc2",
        "Notebook/photo.jpg",
        "Notebook/plain.txt",
        "Notebook/Section.onetoc2",
        "fine.txt",
    ];
    for method in ["delta", "children"] {
        let sim = Simulator::start(tree.clone());
        sim.set_negative_quota(true);
        for path in [
            "Notebook",
            "Home.aspx",
            "Notebook/Open Notebook.onetoc2",
            "Notebook/photo.jpg",
            "Notebook/plain.txt",
        ] {
            sim.list_negative_size(path, -1_478_419);
        }
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--crawl-method", method]));
        assert_exit!(out, 0, "{method}: {}", String::from_utf8_lossy(&out.stderr));
        assert_same_bytes(&sim, &dest, files);
        let items = dest.items();
        let row = |path: &str| {
            let r = &items[&format!("/{path}")];
            (r.state.as_str(), r.caveat_class.as_deref(), r.local_size)
        };
        for (path, bytes) in [
            ("Home.aspx", 5_000),
            ("Notebook/Open Notebook.onetoc2", 3_000),
            ("Notebook/photo.jpg", 400_000),
            ("Notebook/Section.onetoc2", 100_000),
        ] {
            assert_eq!(
                row(path),
                ("done", Some("size_metadata"), Some(bytes)),
                "{method}: {path}"
            );
        }
        assert_eq!(
            row("Notebook/plain.txt"),
            ("done", Some("no_hash"), Some(2_000)),
            "{method}"
        );
        assert_eq!(row("fine.txt"), ("done", None, None), "{method}");
        // Kept for good: the next run fetches nothing and finds nothing missing.
        sim.reset_counters();
        let again = run(backup(&sim, &dest).args(["--crawl-method", method]));
        assert_exit!(
            again,
            0,
            "{method}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(sim.requests(RequestKind::Download), 0, "{method}");
        let verify = run(crate::support::odbackup()
            .args(["verify", "--dest"])
            .arg(dest.path()));
        assert_exit!(
            verify,
            0,
            "{method}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        // With neither a size nor a hash, an empty file where it goes is no proof of anything: fetched again.
        std::fs::write(dest.join("Notebook/plain.txt"), b"").unwrap();
        let again = run(backup(&sim, &dest).args(["--crawl-method", method]));
        assert_exit!(
            again,
            0,
            "{method}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_same_bytes(&sim, &dest, ["Notebook/plain.txt"]);
    }
}

/// A part file left by a one-stream transfer (cut after a prefix that ends inside a span) is resumed by spans:
/// the span it covers in part is fetched again whole, and its bytes count once in the hash. They counted twice
/// (quickXorHash's parts cancel where they overlap), so the file failed its hash and was fetched again in full.
#[test]
fn a_one_stream_part_file_resumed_by_spans_is_not_fetched_again_whole() {
    const PATH: &str = "Video/clip.mov";
    const SIZE: u64 = 12 << 20;
    let sim = Simulator::start(Tree::personal().file(PATH, SIZE));
    let dest = TestDest::new();
    // Every body is cut after 100,000 bytes: the one stream resumes until its budget for breaks is spent and
    // leaves its part file, a prefix that is no multiple of the span size.
    sim.reset_next_downloads(PATH, 1_000, Some(100_000));
    let first = run(backup(&sim, &dest).args(["--streams-per-file", "1"]));
    assert_exit!(first, 1, "{}", String::from_utf8_lossy(&first.stderr));
    let part = std::fs::read_dir(dest.join("Video"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .map(|e| e.metadata().unwrap().len())
        .expect("a part file stays");
    assert!(part > 0 && part % (1 << 20) != 0 && part < SIZE, "{part}");
    sim.clear_resets();
    sim.reset_counters();
    let second = run(backup(&sim, &dest).args(RANGED));
    assert_exit!(second, 0, "{}", String::from_utf8_lossy(&second.stderr));
    assert_same_bytes(&sim, &dest, [PATH]);
    // The spans not wholly in the part file, and no more: 12 spans of 1 MiB, those the prefix covers kept.
    let spans_left = 12 - part / (1 << 20);
    let asked = sim.downloads_of(PATH);
    assert!(
        asked <= spans_left + 1,
        "{asked} requests for {spans_left} spans left"
    );
}
