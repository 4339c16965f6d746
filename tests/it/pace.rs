//! Going at the service's pace: transfers that grow from the default while the service keeps up, refusals
//! that sending less does not reduce, and listing URLs that expire together.

use std::time::Duration;

use graphsim::{Failure, RequestKind, Simulator, Tree};

use crate::download::backup;
use crate::support::{TestDest, against, assert_same_bytes, json, run};

/// `count` small files in a few folders.
fn small_files(count: usize) -> (Tree, Vec<String>) {
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for i in 0..count {
        let path = format!("Photos/{:02}/IMG_{i:05}.jpg", i % 7);
        tree = tree.file(&path, 1_000 + (i as u64 * 37) % 4_000);
        paths.push(path);
    }
    (tree, paths)
}

#[test]
fn default_settings_grow_past_eight_transfers_while_the_service_keeps_up_and_a_given_concurrency_caps_them()
 {
    // Request-bound (100 ms an answer, tiny files): more transfers at once finish more files.
    let (tree, paths) = small_files(700);
    let sim = Simulator::start(tree.clone());
    sim.set_latency(Duration::from_millis(100));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let download = &json(&out)["download"];
    let highest = download["concurrency_highest"].as_u64().unwrap();
    assert!(
        sim.max_concurrent_downloads() > 8,
        "grew past the default: {} at most ({download})",
        sim.max_concurrent_downloads()
    );
    assert!((9..=32).contains(&highest), "{download}");
    assert!(sim.max_concurrent_downloads() <= 32);
    assert_same_bytes(&sim, &dest, paths.iter().step_by(13));

    // A --concurrency the user gives is a hard cap.
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(100));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--concurrency", "6", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        sim.max_concurrent_downloads() <= 6,
        "{}",
        sim.max_concurrent_downloads()
    );
    assert_eq!(json(&out)["download"]["concurrency_highest"], 6);
}

#[test]
fn refusals_at_random_that_do_not_fall_when_fewer_are_sent_stop_lowering_the_transfers_and_every_retry_after_is_waited_out()
 {
    // One request in ten refused whatever the pace (a third each 429 and 503 with Retry-After, and 500),
    // on every host, with cut bodies.
    let (tree, paths) = small_files(300);
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(20));
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.fail_randomly(0.034, 7, Failure::throttled(1));
    sim.fail_randomly(0.033, 8, Failure::unavailable(Some(1)));
    sim.fail_randomly(0.033, 9, Failure::server_error());
    sim.reset_downloads_fraction(0.05, None);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "every file in one run");
    assert_same_bytes(&sim, &dest, &paths);
    assert_eq!(
        sim.requests_during_retry_after(),
        0,
        "{:?}",
        sim.violations().first()
    );
    let download = &json(&out)["download"];
    assert!(sim.throttle_answers() >= 10, "{}", sim.throttle_answers());
    // Halving on every refusal would take the limit down to one and keep it there; once the refusal share is
    // seen not to fall, it stops.
    assert!(
        download["concurrency_lowest"].as_u64().unwrap() >= 2,
        "{download}"
    );
    assert!(
        download["concurrency_drops"].as_u64().unwrap() <= 3,
        "{download}"
    );
}

#[test]
fn a_refused_listing_url_sends_the_rest_of_its_listing_through_content_and_its_lifetime_is_remembered()
 {
    let (tree, paths) = small_files(120);
    let sim = Simulator::start(tree);
    // The listing's URLs are dead on arrival; those /content gives later live a minute.
    sim.set_download_url_lifetime(Duration::ZERO);
    let dest = TestDest::new();
    assert_eq!(
        run(&mut against(&sim, &dest, "crawl")).status.code(),
        Some(0)
    );
    sim.set_download_url_lifetime(Duration::from_secs(60));
    let out = run(against(&sim, &dest, "download").args(["--concurrency", "2"]));
    assert_eq!(out.status.code(), Some(0));
    assert_same_bytes(&sim, &dest, &paths);
    // One refusal for the listing (one per transfer already on its way), not one per file.
    assert!(
        sim.expired_url_requests() <= 2,
        "{} requests to expired URLs for {} files",
        sim.expired_url_requests(),
        paths.len()
    );
    assert!(sim.requests(RequestKind::Content) >= 118);
    // What was learned is kept for the next run: at most the age at which a URL was refused.
    let remembered = dest
        .setting("listed_url_lifetime_ms")
        .expect("the lifetime is remembered");
    let ms: i64 = remembered.parse().unwrap();
    assert!((0..60_000).contains(&ms), "{ms}");
}

#[test]
fn a_remembered_lifetime_that_listing_urls_outlive_is_tried_once_and_learned_anew() {
    let (tree, paths) = small_files(40);
    let sim = Simulator::start(tree);
    sim.set_download_url_lifetime(Duration::from_secs(3600));
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "crawl")), 0);
    // An earlier run learned (from a passing refusal, say) that listing URLs die at once.
    dest.set_setting("listed_url_lifetime_ms", "1");
    let out = run(against(&sim, &dest, "download").args(["--concurrency", "1", "--json"]));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, &paths);
    // One listing URL was tried past that lifetime and served: the estimate is twice its age now, remembered.
    let ms: i64 = dest
        .setting("listed_url_lifetime_ms")
        .expect("remembered")
        .parse()
        .unwrap();
    assert!(ms > 1, "{ms}");
    let download = &json(&out)["download"];
    assert!(
        download["by_listing_url"].as_u64().unwrap() >= 1,
        "{download}"
    );
    assert_eq!(sim.expired_url_requests(), 0);
    assert!(sim.requests(RequestKind::Content) < 40);
}

#[test]
fn a_retry_after_longer_than_a_run_waits_stops_the_run_at_once_sends_nothing_more_and_is_kept_for_the_next()
 {
    let (tree, _) = small_files(40);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "crawl")), 0);
    // Half an hour: beyond the 15 minutes a run waits out. The first transfers go out together: those on
    // their way when the first refusal is sent are not early.
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.fail_always(Failure::throttled(1800).only(RequestKind::Download));
    let started = std::time::Instant::now();
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 5);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.requests_during_retry_after(), 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    // Only the transfers already on their way when the first refusal came were sent.
    assert!(
        sim.requests(RequestKind::Download) <= 8,
        "{}",
        sim.requests(RequestKind::Download)
    );
    let summary = json(&out);
    let fatal = summary["download"]["fatal"].as_str().unwrap();
    assert!(
        fatal.contains("Retry-After") && fatal.contains("30 min"),
        "{fatal}"
    );
    assert_eq!(summary["download"]["fatal_class"], "throttled");
    // The pause is kept: the next run waits out the rest rather than asking early.
    let kept = kept_pause(&dest);
    assert!(
        kept > Duration::from_secs(1_700) && kept <= Duration::from_secs(1_800),
        "{kept:?}"
    );
    // Run again at once: nothing is sent, and the run says until when.
    sim.reset_counters();
    let again = run(&mut backup(&sim, &dest));
    assert_exit!(again, 5);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("asked an earlier run for no request until"),
        "{said}"
    );
    assert_eq!(
        sim.requests(RequestKind::Download) + sim.requests(RequestKind::Delta),
        0
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn a_retry_after_too_large_for_any_clock_stops_the_run_like_a_long_one_and_is_kept_as_a_day() {
    let (tree, _) = small_files(10);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "crawl")), 0);
    sim.set_in_flight_allowance(Duration::from_millis(150));
    sim.fail_always(Failure::throttled(u64::MAX).only(RequestKind::Download));
    let out = run(backup(&sim, &dest).arg("--json"));
    // Not a panic (exit 101): the run stops as for any wait longer than it waits out.
    assert_exit!(out, 5, "{}", String::from_utf8_lossy(&out.stderr));
    let summary = json(&out);
    assert_eq!(summary["download"]["fatal_class"], "throttled", "{summary}");
    assert_eq!(sim.requests_during_retry_after(), 0);
    let kept = kept_pause(&dest);
    assert!(
        kept > Duration::from_secs(86_000) && kept <= Duration::from_secs(86_400),
        "kept for {kept:?}: a day at most"
    );
}

/// How much longer the pause kept in `dest`'s manifest for the next run lasts.
fn kept_pause(dest: &TestDest) -> Duration {
    let until_ms: u64 = dest.setting("throttled_until").unwrap().parse().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Duration::from_millis(until_ms.saturating_sub(now_ms))
}

#[test]
fn a_download_host_refusing_every_request_as_out_of_range_fails_the_file_instead_of_asking_for_ever()
 {
    let tree = Tree::personal().file("a.bin", 5_000).file("b.jpg", 700);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "crawl")), 0);
    // A 416 without Content-Range, even to a GET that asks for no range.
    sim.fail_always(
        Failure::status(416, "invalidRange", "Requested range not satisfiable")
            .only(RequestKind::Download),
    );
    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 1);
    assert!(
        sim.requests(RequestKind::Download) <= 4,
        "{}",
        sim.requests(RequestKind::Download)
    );
    let rows = dest.file_rows();
    for name in ["/a.bin", "/b.jpg"] {
        assert_eq!(rows[name].state, "failed", "{name}");
    }
    assert!(!dest.join("a.bin").exists() && !dest.join("b.jpg").exists());
}

#[test]
fn a_retry_after_longer_than_a_run_waits_on_the_listing_stops_the_run_at_once_too() {
    let (tree, _) = small_files(30);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    for listing in [RequestKind::Delta, RequestKind::Children] {
        sim.clear_failures();
        sim.fail_always(Failure::throttled(3600).only(listing));
        let started = std::time::Instant::now();
        let out = run(backup(&sim, &dest).args([
            "--crawl-method",
            if listing == RequestKind::Delta {
                "delta"
            } else {
                "children"
            },
        ]));
        assert_exit!(out, 5);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{listing:?}: {:?}",
            started.elapsed()
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("Retry-After") && said.contains("run again after"),
            "{said}"
        );
        assert_eq!(sim.requests(listing), 1, "{listing:?}");
        dest.set_setting("throttled_until", "0");
        sim.reset_counters();
    }
}
