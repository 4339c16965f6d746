//! Notices (what a user should hear of that is not a file's failure) reach `--json` output as events, and
//! skips are on record with their class.

use graphsim::{Simulator, Tree};

use crate::support::{TestDest, against, run};

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
