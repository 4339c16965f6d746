//! Shared folders and files added to "My files" (shortcuts, `remoteItem`): backed up where the shortcut sits,
//! keyed by their own drive, listed again on every run, left out by `--no-shared`, kept when access is revoked,
//! and never followed in a loop or copied twice.

use graphsim::{RequestKind, SimConfig, Simulator, Tree};

use crate::support::{SHORTCUT_KEY, TestDest, against, assert_same_bytes, json, odbackup, run};

fn shared_tree(tree: Tree) -> Tree {
    tree.file("mine.txt", 100)
        .remote_item(
            "Shared/Holiday",
            Tree::personal()
                .file("beach/a.jpg", 3_000)
                .file("b.txt", 200)
                .file("c.txt", 300),
        )
        .remote_file("Shared/report.pdf", 1_234)
}

const SHARED_FILES: [&str; 4] = [
    "Shared/Holiday/beach/a.jpg",
    "Shared/Holiday/b.txt",
    "Shared/Holiday/c.txt",
    "Shared/report.pdf",
];

fn status(dest: &TestDest) -> String {
    let out = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The drive a row is keyed by.
fn drive_of(dest: &TestDest, remote_path: &str) -> String {
    dest.items()[remote_path].drive_id.clone()
}

#[test]
fn shared_folders_and_files_are_backed_up_where_their_shortcuts_sit_keyed_by_their_own_drive() {
    for (tree, quirky) in [
        (Tree::personal(), false),
        (Tree::personal(), true),
        (Tree::business(), false),
    ] {
        let config = SimConfig {
            quirky_remote_drive_ids: quirky,
            ..SimConfig::default()
        };
        let sim = Simulator::start_with(shared_tree(tree), config);
        let dest = TestDest::new();
        let out = run(against(&sim, &dest, "backup").arg("--json"));
        assert_exit!(out, 0);
        assert_same_bytes(&sim, &dest, SHARED_FILES);
        assert_same_bytes(&sim, &dest, ["mine.txt"]);
        let summary = json(&out);
        assert_eq!(summary["shared"]["shortcuts_followed"], 2, "{summary}");
        assert_eq!(summary["shared"]["files_done"], 4);
        assert_eq!(summary["crawl"]["shared"]["followed"], 2);
        // Keyed by the shared drive, canonically (a personal one padded to 16 lower-case digits).
        let own = drive_of(&dest, "/mine.txt");
        let theirs = drive_of(&dest, "/Shared/Holiday/b.txt");
        assert_ne!(own, theirs);
        if !theirs.starts_with("b!") {
            assert_eq!(theirs.len(), 16, "{theirs}");
            assert_eq!(theirs, theirs.to_ascii_lowercase());
        }
        assert_ne!(drive_of(&dest, "/Shared/report.pdf"), own);
        let items = dest.items();
        assert_eq!(
            items[&format!("/Shared/Holiday{SHORTCUT_KEY}")].state,
            "done"
        );
        assert!(
            status(&dest).contains("shared items added to My files: 2 backed up (4 files on disk)"),
            "{}",
            status(&dest)
        );
    }
}

#[test]
fn an_add_a_modify_and_a_delete_inside_a_shared_folder_are_seen_by_the_next_incremental_run() {
    let sim = Simulator::start(shared_tree(Tree::personal()));
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
    assert_same_bytes(&sim, &dest, SHARED_FILES);
    let old_b = std::fs::read(dest.join("Shared/Holiday/b.txt")).unwrap();

    sim.add_file("Shared/Holiday/beach/new.jpg", 777);
    sim.modify_file("Shared/Holiday/b.txt");
    sim.delete("Shared/Holiday/c.txt");
    let out = run(against(&sim, &dest, "backup").arg("--json"));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert!(
        !summary["crawl"]["incremental"].is_null(),
        "the drive itself was asked for its changes: {summary}"
    );
    assert_same_bytes(
        &sim,
        &dest,
        ["Shared/Holiday/beach/new.jpg", "Shared/Holiday/b.txt"],
    );
    assert_ne!(
        std::fs::read(dest.join("Shared/Holiday/b.txt")).unwrap(),
        old_b,
        "the modified file was fetched again"
    );
    let deleted = dest.items()["/Shared/Holiday/c.txt"].remote_deleted;
    assert!(deleted, "the delete inside the shared folder is on record");
    assert!(
        dest.join("Shared/Holiday/c.txt").exists(),
        "its local copy is kept, as for any remote delete"
    );
    assert_eq!(
        sim.downloads_of("Shared/Holiday/beach/a.jpg"),
        1,
        "the unchanged file is not fetched again"
    );
}

#[test]
fn no_shared_leaves_shortcuts_out_with_the_reason_on_record_by_flag_and_by_config_key() {
    let sim = Simulator::start(shared_tree(Tree::personal()));
    let config = tempfile::tempdir().unwrap();
    let config_file = config.path().join("config.toml");
    std::fs::write(&config_file, "shared = false\n").unwrap();
    for how in ["flag", "config"] {
        let dest = TestDest::new();
        let mut cmd = against(&sim, &dest, "backup");
        if how == "flag" {
            cmd.arg("--no-shared");
        } else {
            cmd.arg("--config").arg(&config_file);
        }
        assert_exit!(run(&mut cmd), 0);
        assert_same_bytes(&sim, &dest, ["mine.txt"]);
        for path in SHARED_FILES {
            assert!(!dest.join(path).exists(), "{path} ({how})");
        }
        let items = dest.items();
        for shortcut in ["/Shared/Holiday", "/Shared/report.pdf"] {
            let row = &items[&format!("{shortcut}{SHORTCUT_KEY}")];
            assert_eq!(row.state, "skipped", "{shortcut} ({how})");
            assert!(
                row.skip_reason.as_deref().unwrap().contains("--no-shared"),
                "{row:?}"
            );
        }
        assert!(
            !items.contains_key("/Shared/Holiday/b.txt"),
            "nothing of the shared folder is listed ({how})"
        );
    }
}

#[test]
fn a_revoked_share_is_reported_once_by_name_and_its_local_files_are_kept() {
    for status_code in [404, 403] {
        let sim = Simulator::start(shared_tree(Tree::personal()));
        let dest = TestDest::new();
        assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
        sim.revoke_shared("Shared/Holiday", status_code);
        let out = run(&mut against(&sim, &dest, "backup"));
        assert_exit!(out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout
                .matches("shared item not accessible any more: /Shared/Holiday")
                .count(),
            1,
            "{stdout}"
        );
        for path in &SHARED_FILES[..3] {
            assert!(dest.join(path).exists(), "{path} kept ({status_code})");
        }
        let flagged = dest
            .items()
            .iter()
            .filter(|(path, r)| path.starts_with("/Shared/Holiday/") && r.remote_deleted)
            .count();
        assert_eq!(
            flagged, 0,
            "nothing of it is flagged deleted ({status_code})"
        );
        let shortcut = &dest.items()[&format!("/Shared/Holiday{SHORTCUT_KEY}")];
        assert_eq!(shortcut.state, "skipped");
        assert!(
            shortcut
                .skip_reason
                .as_deref()
                .unwrap()
                .contains("not accessible"),
            "{shortcut:?}"
        );
        // The shared file is still followed.
        assert_same_bytes(&sim, &dest, ["Shared/report.pdf"]);
    }
}

#[test]
fn shortcuts_into_the_backup_and_shortcuts_to_each_other_never_loop_or_copy_twice() {
    let tree = Tree::personal()
        .file("Photos/p.jpg", 500)
        .remote_item("Shared/Team", Tree::personal().file("doc.txt", 100))
        .remote_item("Shared/Other", Tree::personal().file("o.txt", 10))
        .shortcut("Shared/Team/ToOther", "Shared/Other")
        .shortcut("Shared/Other/ToTeam", "Shared/Team")
        .shortcut("Shared/Team/Self", "Shared/Team")
        .shortcut("Shared/MyPhotos", "Photos");
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    for round in 0..2 {
        assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
        assert_same_bytes(
            &sim,
            &dest,
            ["Photos/p.jpg", "Shared/Team/doc.txt", "Shared/Other/o.txt"],
        );
        for twice in [
            "Shared/MyPhotos/p.jpg",
            "Shared/Team/ToOther/o.txt",
            "Shared/Other/ToTeam/doc.txt",
            "Shared/Team/Self/doc.txt",
        ] {
            assert!(!dest.join(twice).exists(), "{twice} (round {round})");
        }
        let file_rows = dest.file_count();
        assert_eq!(file_rows, 3, "each file recorded once (round {round})");
    }
    for path in ["Photos/p.jpg", "Shared/Team/doc.txt", "Shared/Other/o.txt"] {
        assert_eq!(sim.downloads_of(path), 1, "{path}");
    }
    let items = dest.items();
    for shortcut in [
        "/Shared/MyPhotos",
        "/Shared/Team/ToOther",
        "/Shared/Other/ToTeam",
        "/Shared/Team/Self",
    ] {
        let row = &items[&format!("{shortcut}{SHORTCUT_KEY}")];
        assert_eq!(row.state, "skipped", "{shortcut}");
        assert!(
            row.skip_reason.as_deref().unwrap().contains("twice"),
            "{shortcut}: {row:?}"
        );
    }
    // Each shared tree is listed once per run: a bounded number of listings, not a loop.
    assert!(sim.requests(RequestKind::Children) < 40);
}

#[test]
fn a_shortcut_to_a_folder_inside_another_shared_folder_is_not_copied_twice_whichever_comes_first() {
    // `Sub` sits at the top, so it is listed (and followed) before `Shared/Team`, whose tree holds its target.
    let tree = Tree::personal()
        .remote_item(
            "Shared/Team",
            Tree::personal().file("sub/s.txt", 40).file("t.txt", 50),
        )
        .shortcut("Sub", "Shared/Team/sub");
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    for round in 0..2 {
        assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
        let rows = dest
            .file_rows()
            .values()
            .filter(|r| r.name == "s.txt")
            .count();
        assert_eq!(rows, 1, "round {round}");
        let sub = &dest.items()[&format!("/Sub{SHORTCUT_KEY}")];
        assert_eq!(sub.state, "skipped", "round {round}: {sub:?}");
        assert!(
            sub.skip_reason
                .as_deref()
                .unwrap()
                .contains("Shared/Team/sub"),
            "{sub:?}"
        );
    }
    assert_same_bytes(&sim, &dest, ["Shared/Team/sub/s.txt", "Shared/Team/t.txt"]);
    assert!(
        !dest.join("Sub/s.txt").exists(),
        "one copy, in the larger tree"
    );
}

#[test]
fn a_shortcut_removed_from_my_files_flags_its_tree_deleted_and_keeps_the_local_copies() {
    let sim = Simulator::start(shared_tree(Tree::personal()));
    let dest = TestDest::new();
    assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
    sim.delete("Shared/Holiday"); // the shortcut in the user's drive; the owner's folder stays
    assert_exit!(run(&mut against(&sim, &dest, "backup")), 0);
    let shortcut = format!("/Shared/Holiday{SHORTCUT_KEY}");
    let (flagged, live): (Vec<_>, Vec<_>) = dest
        .items()
        .into_iter()
        .filter(|(path, _)| {
            path == "/Shared/Holiday" || *path == shortcut || path.starts_with("/Shared/Holiday/")
        })
        .partition(|(_, r)| r.remote_deleted);
    let (flagged, live) = (flagged.len(), live.len());
    assert_eq!(live, 0, "nothing of the removed shortcut's tree is live");
    assert!(flagged >= 5, "{flagged}");
    for path in &SHARED_FILES[..3] {
        assert!(dest.join(path).exists(), "{path} kept");
    }
}
