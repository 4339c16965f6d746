//! Issue 13: the real Microsoft Graph of 2024–26 drifts under a backup — IDs change their spelling, folders
//! move into a scope alone, saved links die, folders are refused for a while, listings loop. A re-run must
//! neither lose nor redo anything.

use graphsim::{IdCase, IdDrift, RequestKind, Simulator, Tree};

use crate::download::backup;
use crate::support::{TestDest, assert_same_bytes, json, run};

/// A small personal drive: a few folders, a nested one, a file at the top.
fn small_tree() -> (Tree, Vec<String>) {
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for (i, path) in [
        "Photos/2024/a.jpg",
        "Photos/2024/b.jpg",
        "Photos/2025/c.jpg",
        "Docs/report.pdf",
        "Docs/Old/notes.txt",
        "top.txt",
    ]
    .into_iter()
    .enumerate()
    {
        tree = tree.file(path, 1_000 + i as u64 * 113);
        paths.push(path.to_owned());
    }
    (tree, paths)
}

/// `(remote_deleted rows, rows whose local path carries a clash suffix, file rows)` of the manifest.
fn drift_marks(dest: &TestDest) -> (i64, i64, i64) {
    let db = dest.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    (
        count("SELECT count(*) FROM items WHERE remote_deleted = 1"),
        count(
            "SELECT count(*) FROM items WHERE local_path GLOB '*~[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*'",
        ),
        count("SELECT count(*) FROM items WHERE kind = 'file'"),
    )
}

/// After the run, the destination holds exactly `paths` with the simulator's bytes, nothing else.
fn assert_exact_mirror(sim: &Simulator, dest: &TestDest, paths: &[String]) {
    assert_same_bytes(sim, dest, paths);
    let mut want = paths.to_vec();
    want.sort();
    assert_eq!(dest.files_on_disk(), want);
}

#[test]
fn personal_ids_that_change_their_spelling_between_runs_change_nothing_locally() {
    for (name, drift, method) in [
        (
            "lower case everywhere",
            IdDrift {
                drive: IdCase::Lower,
                references: IdCase::Lower,
                item_ids: IdCase::Lower,
                sea_root_id: false,
            },
            "delta",
        ),
        (
            "mixed case between endpoints",
            IdDrift {
                drive: IdCase::Lower,
                references: IdCase::Upper,
                item_ids: IdCase::Lower,
                sea_root_id: false,
            },
            "children",
        ),
        (
            "the new root id form",
            IdDrift {
                drive: IdCase::AsIs,
                references: IdCase::AsIs,
                item_ids: IdCase::Lower,
                sea_root_id: true,
            },
            "delta",
        ),
        (
            "the new root id form, listed by walking",
            IdDrift {
                sea_root_id: true,
                ..IdDrift::default()
            },
            "children",
        ),
    ] {
        let (tree, paths) = small_tree();
        let sim = Simulator::start(tree);
        let dest = TestDest::new();
        let first = run(backup(&sim, &dest).args(["--crawl-method", method]));
        assert_eq!(first.status.code(), Some(0), "{name}");
        let before = drift_marks(&dest);
        assert_eq!(before, (0, 0, paths.len() as i64), "{name}");

        // The spelling changes, and so does the drive: the changes arrive under the new spelling.
        sim.set_id_drift(drift);
        sim.add_file("Photos/2025/new.jpg", 777);
        sim.modify_file("top.txt");
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(["--crawl-method", method, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{name}");
        let summary = json(&out);
        assert_eq!(sim.downloads_of("Photos/2025/new.jpg"), 1, "{name}");
        assert_eq!(
            sim.requests(RequestKind::Download),
            2,
            "{name}: only the new and the changed file"
        );
        assert_eq!(
            summary["download"]["moved"], 0,
            "{name}: nothing renamed: {summary}"
        );
        let mut all = paths.clone();
        all.push("Photos/2025/new.jpg".to_owned());
        assert_eq!(
            drift_marks(&dest),
            (0, 0, all.len() as i64),
            "{name}: nothing flagged, no ~suffix, no new rows"
        );
        assert_exact_mirror(&sim, &dest, &all);

        // A full listing under the new spelling finds everything where it was.
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(["--full", "--crawl-method", method, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_eq!(sim.requests(RequestKind::Download), 0, "{name}");
        assert_eq!(json(&out)["download"]["moved"], 0, "{name}");
        assert_eq!(drift_marks(&dest), (0, 0, all.len() as i64), "{name}");
        assert_exact_mirror(&sim, &dest, &all);

        // And the run after that needs one request for changes.
        sim.reset_counters();
        assert_eq!(
            run(&mut backup(&sim, &dest)).status.code(),
            Some(0),
            "{name}"
        );
        assert_eq!(sim.requests(RequestKind::Delta), 1, "{name}");
        assert_eq!(sim.requests(RequestKind::Download), 0, "{name}");
    }
}

#[test]
fn a_folder_moved_into_the_scope_is_listed_and_fetched_whole_in_the_same_run() {
    for (name, tree, scope) in [
        ("personal --root", Tree::personal(), ["--root", "/Photos"]),
        ("business --root", Tree::business(), ["--root", "/Photos"]),
        (
            "personal --special",
            Tree::personal().special("photos", "Photos"),
            ["--special", "photos"],
        ),
    ] {
        let tree = tree
            .file("Photos/2024/a.jpg", 1_100)
            .file("Elsewhere/Trip/day1.jpg", 2_100)
            .file("Elsewhere/Trip/day2.jpg", 2_200)
            .file("Elsewhere/Trip/Raw/day1.dng", 3_300)
            .folder("Elsewhere/Trip/Empty");
        let sim = Simulator::start(tree);
        let dest = TestDest::new();
        assert_eq!(
            run(backup(&sim, &dest).args(scope)).status.code(),
            Some(0),
            "{name}"
        );
        assert_eq!(dest.files_on_disk(), ["Photos/2024/a.jpg"], "{name}");

        sim.move_item("Elsewhere/Trip", "Photos");
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(scope));
        assert_eq!(out.status.code(), Some(0), "{name}");
        let moved_in = [
            "Photos/Trip/day1.jpg",
            "Photos/Trip/day2.jpg",
            "Photos/Trip/Raw/day1.dng",
        ];
        assert_same_bytes(&sim, &dest, moved_in);
        assert!(dest.join("Photos/Trip/Empty").is_dir(), "{name}");
        assert_eq!(sim.requests(RequestKind::Download), 3, "{name}");
        // The moved folder and its subfolders were listed; nothing else was.
        assert!(sim.requests(RequestKind::Children) <= 3, "{name}");

        // Nothing left over for the next run.
        sim.reset_counters();
        assert_eq!(
            run(backup(&sim, &dest).args(scope)).status.code(),
            Some(0),
            "{name}"
        );
        assert_eq!(
            sim.requests(RequestKind::Children) + sim.requests(RequestKind::Download),
            0,
            "{name}"
        );
    }
}
