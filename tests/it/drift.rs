//! The real Microsoft Graph of 2024–26 drifts under a backup — IDs change their spelling, folders
//! move into a scope alone, saved links die, folders are refused for a while, listings loop. A re-run must
//! neither lose nor redo anything.

use graphsim::{DeltaOrder, Failure, IdCase, IdDrift, PagingFault, RequestKind, Simulator, Tree};

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
fn drift_marks(dest: &TestDest) -> (usize, usize, usize) {
    // The suffix a name clash adds: `~` and six hex digits of the item's id.
    let clash_suffixed = |path: &str| {
        path.match_indices('~').any(|(at, _)| {
            let tail = &path.as_bytes()[at + 1..];
            tail.len() >= 6
                && tail[..6]
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    let items = dest.items();
    (
        items.values().filter(|r| r.remote_deleted).count(),
        items
            .values()
            .filter(|r| r.local_path.as_deref().is_some_and(clash_suffixed))
            .count(),
        items.values().filter(|r| r.is_file()).count(),
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
        assert_exit!(first, 0, "{name}");
        let before = drift_marks(&dest);
        assert_eq!(before, (0, 0, paths.len()), "{name}");

        // The spelling changes, and so does the drive: the changes arrive under the new spelling.
        sim.set_id_drift(drift);
        sim.add_file("Photos/2025/new.jpg", 777);
        sim.modify_file("top.txt");
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(["--crawl-method", method, "--json"]));
        assert_exit!(out, 0, "{name}");
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
            (0, 0, all.len()),
            "{name}: nothing flagged, no ~suffix, no new rows"
        );
        assert_exact_mirror(&sim, &dest, &all);

        // A full listing under the new spelling finds everything where it was.
        sim.reset_counters();
        let out = run(backup(&sim, &dest).args(["--full", "--crawl-method", method, "--json"]));
        assert_exit!(out, 0, "{name}");
        assert_eq!(sim.requests(RequestKind::Download), 0, "{name}");
        assert_eq!(json(&out)["download"]["moved"], 0, "{name}");
        assert_eq!(drift_marks(&dest), (0, 0, all.len()), "{name}");
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
        assert_exit!(out, 0, "{name}");
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

/// Sixty photos in three folders, listed ten to a page.
fn paged_tree(sim_pages: usize) -> (Simulator, Vec<String>) {
    let mut tree = Tree::personal();
    let mut paths = Vec::new();
    for i in 0..60 {
        let path = format!("Camera/{}/IMG_{i:03}.jpg", 2020 + i % 3);
        tree = tree.file(&path, 500 + i as u64);
        paths.push(path);
    }
    let sim = Simulator::start(tree);
    sim.set_page_cap(Some(sim_pages));
    (sim, paths)
}

#[test]
fn an_interrupted_full_listing_whose_saved_page_link_died_starts_again_in_the_same_run() {
    for status in [410, 400, 404] {
        let (sim, paths) = paged_tree(10);
        let dest = TestDest::new();
        // The third page is refused: the listing stops with its position saved.
        sim.fail_in_bursts(3, 1, Failure::access_denied().only(RequestKind::Delta));
        let out = run(&mut backup(&sim, &dest));
        assert_ne!(out.status.code(), Some(0), "{status}");
        let cursor = dest.delta_cursors().pop().flatten();
        assert!(cursor.is_some(), "{status}: the position is saved");

        // Later the saved page link is dead: this run starts the listing again, and completes it.
        sim.clear_failures();
        sim.expire_delta_page_links(status);
        let out = run(&mut backup(&sim, &dest));
        assert_exit!(out, 0, "{status}");
        assert_exact_mirror(&sim, &dest, &paths);
        assert_eq!(drift_marks(&dest), (0, 0, 60), "{status}");
        let cursor = dest.delta_cursors().pop().flatten();
        assert_eq!(cursor, None, "{status}");
    }
}

#[test]
fn an_interrupted_full_listing_by_delta_resumes_at_its_saved_page_with_nothing_lost_or_stored_twice()
 {
    let (sim, paths) = paged_tree(10);
    let clean = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &clean)), 0);
    let whole = sim.requests(RequestKind::Delta);

    let dest = TestDest::new();
    // The fourth page is refused: the pages before it are in the manifest, with the position after them.
    sim.fail_in_bursts(4, 1, Failure::access_denied().only(RequestKind::Delta));
    assert_ne!(run(&mut backup(&sim, &dest)).status.code(), Some(0));
    let files = |dest: &TestDest| -> (i64, i64) {
        dest.db()
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT item_id) FROM items WHERE kind = 'file'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (stored, _) = files(&dest);
    assert!(
        stored > 0,
        "the pages listed before the refusal are stored as they arrived"
    );
    sim.clear_failures();
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert!(
        sim.requests(RequestKind::Delta) < whole,
        "the listing resumed at its saved page instead of starting again"
    );
    assert_exact_mirror(&sim, &dest, &paths);
    assert_eq!(files(&dest), (60, 60), "every file once");
}

#[test]
fn full_always_starts_a_listing_by_delta_from_the_beginning() {
    let (sim, paths) = paged_tree(10);
    let clean = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &clean)), 0);
    let whole = sim.requests(RequestKind::Delta);

    let dest = TestDest::new();
    sim.fail_in_bursts(4, 1, Failure::access_denied().only(RequestKind::Delta));
    assert_ne!(run(&mut backup(&sim, &dest)).status.code(), Some(0));
    sim.clear_failures();
    sim.reset_counters();
    assert_eq!(
        run(backup(&sim, &dest).arg("--full")).status.code(),
        Some(0)
    );
    assert_eq!(
        sim.requests(RequestKind::Delta),
        whole,
        "every page again, none resumed"
    );
    assert_exact_mirror(&sim, &dest, &paths);
}

#[test]
fn a_folder_refused_for_a_while_is_asked_for_again_and_one_that_stays_refused_is_listed_next_run() {
    let (sim, paths) = paged_tree(1000);
    // Refused twice, then listed: nothing is lost, the run ends well.
    sim.fail_next(
        2,
        Failure::object_handle_invalid()
            .only(RequestKind::Children)
            .for_item("Camera/2021"),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 0, "{}", json(&out));
    assert_eq!(sim.failures_served(), 2);
    assert_exact_mirror(&sim, &dest, &paths);

    // Refused every time (403 and 404 too): the rest is backed up, the run says it is incomplete, and the
    // changes link is not taken past the folder.
    for failure in [
        Failure::object_handle_invalid(),
        Failure::access_denied(),
        Failure::status(404, "itemNotFound", "Item does not exist"),
    ] {
        sim.clear_failures();
        sim.fail_always(failure.only(RequestKind::Children).for_item("Camera/2022"));
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
        assert_exit!(out, 1);
        assert_eq!(json(&out)["crawl"]["folders_unreadable"], 1);
        let (inside, outside): (Vec<&String>, Vec<&String>) =
            paths.iter().partition(|p| p.starts_with("Camera/2022/"));
        assert_same_bytes(&sim, &dest, &outside);
        assert!(inside.iter().all(|p| !dest.join(p).exists()));
        let reason = dest.items()["/Camera/2022"]
            .skip_reason
            .clone()
            .unwrap_or_default();
        assert!(reason.contains("next run lists it again"), "{reason}");

        // The service lets it be listed again: the next run lists it (not just changes since) and completes.
        sim.clear_failures();
        let out = run(backup(&sim, &dest).arg("--json"));
        assert_exit!(out, 0);
        let summary = json(&out);
        assert!(
            summary["crawl"]["incremental"].is_null(),
            "a full listing: {summary}"
        );
        assert_exact_mirror(&sim, &dest, &paths);
    }
}

#[test]
fn a_personal_vault_at_the_top_is_reported_once_by_name_and_is_no_failure() {
    let sim = Simulator::start(
        Tree::personal()
            .file("Docs/a.pdf", 1_000)
            .vault("Personal Vault"),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(
        summary["crawl"]["inaccessible"],
        serde_json::json!(["/Personal Vault"])
    );
    assert_eq!(summary["crawl"]["folders_unreadable"], 0);
    assert_same_bytes(&sim, &dest, ["Docs/a.pdf"]);

    // Every full listing finds it again and says so once, in words; it never counts as a failure.
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--full"]));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("skipped /Personal Vault").count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("does not let apps"), "{stdout}");
    let failures = json(&run(crate::support::odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path())));
    assert_eq!(failures.as_array().map_or(0, Vec::len), 0, "{failures}");

    // The same folder lower down is an ordinary refusal, not a vault: the run is incomplete.
    let sim = Simulator::start(
        Tree::personal()
            .file("Docs/a.pdf", 1_000)
            .vault("Docs/Locked"),
    );
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
    assert_exit!(out, 1);
    assert_eq!(json(&out)["crawl"]["folders_unreadable"], 1);
}

#[test]
fn listings_that_make_no_progress_end_within_a_few_requests_naming_the_folder() {
    for fault in [
        PagingFault::RepeatSameLink,
        PagingFault::PointBackToFirst,
        PagingFault::EmptyPagesForever,
    ] {
        let (sim, paths) = paged_tree(5);
        sim.set_paging_fault(Some(fault), Some("Camera/2020"));
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--crawl-method", "children", "--json"]));
        assert_exit!(out, 1, "{fault:?}");
        assert!(
            sim.requests(RequestKind::Children) < 20,
            "{fault:?}: {} listings",
            sim.requests(RequestKind::Children)
        );
        let (looping, rest): (Vec<&String>, Vec<&String>) =
            paths.iter().partition(|p| p.starts_with("Camera/2020/"));
        assert_same_bytes(&sim, &dest, &rest);
        assert!(!looping.is_empty());
        let reason = dest.items()["/Camera/2020"]
            .skip_reason
            .clone()
            .unwrap_or_default();
        assert!(reason.contains("listing stopped"), "{fault:?}: {reason}");

        // The service behaves again: the next run lists the folder.
        sim.set_paging_fault(None, None);
        assert_eq!(
            run(&mut backup(&sim, &dest)).status.code(),
            Some(0),
            "{fault:?}"
        );
        assert_exact_mirror(&sim, &dest, &paths);
    }

    // A delta listing that loops gives way to walking the folders, in the same run.
    for fault in [PagingFault::RepeatSameLink, PagingFault::EmptyPagesForever] {
        let (sim, paths) = paged_tree(5);
        sim.set_paging_fault(Some(fault), None);
        let dest = TestDest::new();
        let out = run(&mut backup(&sim, &dest));
        assert_exit!(out, 0, "{fault:?}");
        assert!(sim.requests(RequestKind::Delta) < 20, "{fault:?}");
        assert!(sim.requests(RequestKind::Children) > 0, "{fault:?}");
        assert_exact_mirror(&sim, &dest, &paths);
    }
}

#[test]
fn folder_scoped_delta_refused_falls_back_to_walking_and_sharepoint_backed_personal_drives_work() {
    // A personal drive that refuses delta on a folder: `--root` is listed by walking it.
    for status in [400, 501] {
        let (sim, paths) = paged_tree(1000);
        sim.set_folder_delta_refused(status);
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--root", "/Camera"]));
        assert_exit!(out, 0, "{status}");
        assert!(sim.requests(RequestKind::Children) > 0, "{status}");
        assert_exact_mirror(&sim, &dest, &paths);
        sim.add_file("Camera/2020/late.jpg", 10);
        assert_eq!(
            run(backup(&sim, &dest).args(["--root", "/Camera"]))
                .status
                .code(),
            Some(0)
        );
        assert_same_bytes(&sim, &dest, ["Camera/2020/late.jpg"]);
    }

    // A new account on the SharePoint back end: `b!…` IDs, `driveType: personal`.
    let sim = Simulator::start(
        Tree::personal_sharepoint_backed()
            .file("Camera/2024/a.jpg", 1_000)
            .file("Camera/2025/b.jpg", 2_000)
            .file("Other/c.txt", 300),
    );
    sim.set_folder_delta_refused(400);
    assert!(sim.drive_id().starts_with("b!"));
    let dest = TestDest::new();
    assert_eq!(
        run(backup(&sim, &dest).args(["--root", "/Camera"]))
            .status
            .code(),
        Some(0)
    );
    assert_same_bytes(&sim, &dest, ["Camera/2024/a.jpg", "Camera/2025/b.jpg"]);
    sim.add_file("Camera/2025/new.jpg", 30);
    sim.add_file("Other/d.txt", 40);
    sim.reset_counters();
    assert_eq!(
        run(backup(&sim, &dest).args(["--root", "/Camera"]))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        sim.requests(RequestKind::Children),
        0,
        "changes come from the drive's delta"
    );
    assert_eq!(sim.requests(RequestKind::Download), 1);
    assert_same_bytes(&sim, &dest, ["Camera/2025/new.jpg"]);
    assert!(!dest.join("Other").exists());
}

#[test]
fn children_listed_before_their_parents_and_ragged_pages_lose_and_duplicate_nothing() {
    let mut tree = Tree::personal()
        .folder("Empty/Deeper")
        .onenote_package("Notebooks/Work")
        .file("Notebooks/Work/Section.one", 10);
    // The notebook's section file is backed up like any file (tests/it/onenote.rs).
    let mut paths = vec!["Notebooks/Work/Section.one".to_owned()];
    for i in 0..120 {
        let path = format!("L1-{}/L2-{}/L3/f{i:03}.txt", i % 4, i % 3);
        tree = tree.file(&path, 100 + i as u64);
        paths.push(path);
    }
    for (order, ragged, method) in [
        (DeltaOrder::ChildrenFirst, false, "delta"),
        (DeltaOrder::ChildrenFirst, true, "delta"),
        (DeltaOrder::ParentsFirst, true, "children"),
        (DeltaOrder::ParentsFirst, true, "delta"),
    ] {
        let sim = Simulator::start(tree.clone());
        sim.set_delta_order(order);
        sim.set_ragged_pages(ragged);
        sim.set_page_cap(Some(16));
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--crawl-method", method]));
        assert_exit!(out, 0, "{order:?} {ragged} {method}");
        assert_exact_mirror(&sim, &dest, &paths);
        assert!(dest.join("Empty/Deeper").is_dir());
        let rows = dest.items().len(); // panics on a duplicate path
        // The root, Empty/Deeper, Notebooks and its notebook with its section, the folders and the files.
        assert_eq!(
            rows,
            1 + 2 + 3 + 4 + 12 + 12 + 120,
            "{order:?} {ragged} {method}"
        );
        if method == "delta" {
            assert_eq!(
                sim.requests(RequestKind::Children),
                0,
                "listed by delta alone"
            );
        }
        // Files that waited for their parents kept the download URLs their listing gave: no `/content`.
        assert_eq!(
            sim.requests(RequestKind::Content),
            0,
            "{order:?} {ragged} {method}"
        );
        assert_eq!(dest.listed_url_count(), 0, "no credential left behind");

        // An incremental round in the same order: a new folder with files, a renamed folder, a deletion.
        sim.add_file("New/Inner/n1.txt", 11);
        sim.add_file("New/n2.txt", 12);
        sim.rename("L1-0", "Renamed");
        sim.delete("L1-1/L2-1");
        let out = run(&mut backup(&sim, &dest));
        assert_exit!(out, 0, "{order:?} {ragged} {method}");
        assert_same_bytes(&sim, &dest, ["New/Inner/n1.txt", "New/n2.txt"]);
        assert!(dest.join("Renamed/L2-0/L3").is_dir() && !dest.join("L1-0").exists());
        let gone = dest.items().values().filter(|r| r.remote_deleted).count();
        assert!(gone > 0, "{order:?} {ragged} {method}");
    }
}

#[test]
fn a_remote_item_reference_missing_its_leading_zero_is_recorded_canonically() {
    let tree = Tree::personal()
        .file("a.txt", 10)
        .remote_item("Shared/Holiday", Tree::personal().file("x.jpg", 10));
    let sim = Simulator::start_with(
        tree,
        graphsim::SimConfig {
            quirky_remote_drive_ids: true,
            ..graphsim::SimConfig::default()
        },
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    let shortcut = format!("/Shared/Holiday{}", crate::support::SHORTCUT_KEY);
    let remote_ref = dest.items()[&shortcut]
        .remote_ref
        .clone()
        .expect("the shortcut's reference");
    let (drive, item) = remote_ref.split_once('/').unwrap();
    assert_eq!(drive.len(), 16, "{remote_ref}: the dropped zero is back");
    assert!(
        drive.starts_with('0') && drive == drive.to_ascii_lowercase(),
        "{remote_ref}"
    );
    assert!(item.starts_with(drive), "{remote_ref}");
}

#[test]
fn a_special_folder_the_drive_does_not_have_is_named_with_what_to_do() {
    // Camera Roll is not available on OneDrive for Business (404); a read-only sign-in asking for a special
    // folder that does not exist yet gets 403 (drive-get-specialfolder).
    let sim = Simulator::start(Tree::business().file("Docs/a.pdf", 1_000));
    for refusal in [None, Some(Failure::access_denied().only(RequestKind::Item))] {
        sim.clear_failures();
        if let Some(failure) = refusal {
            sim.fail_always(failure);
        }
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(["--special", "cameraroll"]));
        assert_eq!(out.status.code(), Some(5));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no special folder \"cameraroll\"") && stderr.contains("--root"),
            "{stderr}"
        );
        assert_eq!(sim.requests(RequestKind::Download), 0);
    }
}
