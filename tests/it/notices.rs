//! Notices (what a user should hear of that is not a file's failure) reach `--json` output as events, and
//! skips are on record with their class.

use graphsim::{Failure, RequestKind, Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, run};

/// The JSON objects of `--json`'s stderr (one a line; log lines, if any, are not JSON and are left out).
fn json_lines(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(serde_json::Value::is_object)
        .collect()
}

#[test]
fn a_revoked_share_is_a_notice_event_in_json_output_and_its_skip_is_classed() {
    let tree = Tree::personal()
        .file("mine.txt", 100)
        .remote_item("Shared/Holiday", Tree::personal().file("b.txt", 200));
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
    sim.revoke_shared("Shared/Holiday", 404);

    let out = run(against(&sim, &dest, "backup").arg("--json"));
    assert_exit!(out, 0);
    // stdout is still one JSON summary.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
    assert!(summary.is_object(), "{summary}");
    let notices: Vec<_> = json_lines(&out.stderr)
        .into_iter()
        .filter(|e| e["event"] == "notice")
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["kind"], "shared_not_accessible", "{notices:?}");
    assert_eq!(notices[0]["path"], "/Shared/Holiday", "{notices:?}");
    assert!(
        notices[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("its files on disk are kept")),
        "{notices:?}"
    );
    let class: String = dest
        .db()
        .query_row(
            "SELECT skip_class FROM items WHERE kind = 'remote' AND state = 'skipped'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(class, "inaccessible");
    assert!(dest.join("Shared/Holiday/b.txt").exists(), "kept on disk");
}

/// The `notice` events of `--json`'s stderr.
fn notices(stderr: &[u8]) -> Vec<serde_json::Value> {
    json_lines(stderr)
        .into_iter()
        .filter(|e| e["event"] == "notice")
        .collect()
}

#[test]
fn a_scope_the_service_gives_no_delta_link_for_is_a_notice_that_the_next_run_lists_it_in_full() {
    let sim = Simulator::start(Tree::personal().file("Docs/a.txt", 300));
    sim.fail_always(
        Failure::status(400, "invalidRequest", "delta is not available here")
            .only(RequestKind::Delta),
    );
    let dest = TestDest::new();
    let out = run(against(&sim, &dest, "backup").args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, ["Docs/a.txt"]);
    assert!(
        sim.requests(RequestKind::Delta) > 0,
        "a delta link was asked for"
    );
    let notices = notices(&out.stderr);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["kind"], "incremental_unavailable", "{notices:?}");
    assert!(
        notices[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lists it in full")),
        "{notices:?}"
    );
    assert!(
        notices[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("400") || d.contains("invalidRequest")),
        "{notices:?}"
    );

    // As it says: the next run lists the scope in full (walking its folders) rather than asking for changes.
    sim.clear_failures();
    sim.reset_counters();
    let out = run(against(&sim, &dest, "backup").args(["--crawl-method", "children"]));
    assert_exit!(out, 0);
    assert!(
        sim.requests(RequestKind::Children) > 0,
        "listed in full again"
    );
}

#[test]
fn a_local_file_in_the_way_of_a_download_is_a_notice_naming_where_it_went() {
    let sim = Simulator::start(Tree::personal().file("Docs/report.txt", 1_000));
    let dest = TestDest::new();
    std::fs::create_dir_all(dest.join("Docs")).unwrap();
    std::fs::write(dest.join("Docs/report.txt"), b"my own draft").unwrap();
    let out = run(against(&sim, &dest, "backup").arg("--json"));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, ["Docs/report.txt"]);
    let notices = notices(&out.stderr);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["kind"], "local_file_displaced", "{notices:?}");
    assert_eq!(notices[0]["path"], "Docs/report.txt", "{notices:?}");
    let message = notices[0]["message"].as_str().unwrap();
    let trash = message
        .rsplit_once('(')
        .and_then(|(_, t)| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no trash path in {message:?}"));
    assert_eq!(std::fs::read(dest.join(trash)).unwrap(), b"my own draft");
}
