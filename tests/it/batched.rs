//! Finished transfers are recorded in the manifest in batches, after their files have their final names: a
//! kill between a batch's renames and its commit leaves rows pending whose files are complete on disk.

use graphsim::{Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, json, run};

#[test]
fn files_renamed_before_their_batch_was_committed_are_verified_and_adopted_not_fetched_again() {
    let tree = Tree::personal()
        .file("a/one.jpg", 40_000)
        .file("a/two.jpg", 50_000)
        .file("b/three.txt", 3_000)
        .file("b/four.bin", 600_000);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let first = run(&mut against(&sim, &dest, "backup"));
    assert_eq!(first.status.code(), Some(0));
    // What a kill after the renames and before the batch's commit leaves: every file under its final name,
    // its row still pending.
    let reset = rusqlite::Connection::open(dest.manifest())
        .unwrap()
        .execute("UPDATE items SET state = 'pending' WHERE kind = 'file'", [])
        .unwrap();
    assert_eq!(reset, 4);
    let summary = json(&run(against(&sim, &dest, "backup").arg("--json")));
    assert_eq!(summary["download"]["adopted"], 4, "{summary}");
    assert_eq!(summary["download"]["downloaded"], 0, "{summary}");
    let paths = ["a/one.jpg", "a/two.jpg", "b/three.txt", "b/four.bin"];
    for path in paths {
        assert_eq!(sim.downloads_of(path), 1, "{path} was fetched again");
    }
    assert_same_bytes(&sim, &dest, paths);
    let pending: i64 = rusqlite::Connection::open(dest.manifest())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM items WHERE kind = 'file' AND state != 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "every adopted file is recorded done");
}
