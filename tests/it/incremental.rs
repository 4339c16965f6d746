//! Incremental backups: after a full one, a re-run asks `/delta` for what changed and applies only that.

use graphsim::{RequestKind, Simulator, Tree};

use crate::crawl::crawl;
use crate::download::backup;
use crate::support::{TestDest, json, odbackup, run};

fn twelve_folders() -> Tree {
    let mut tree = Tree::personal();
    for folder in ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"] {
        for i in 0..15 {
            tree = tree.file(&format!("{folder}/f{i}.jpg"), 1_000 + i * 10);
        }
    }
    tree.file("F/sub/deep.jpg", 2_500)
}

fn assert_mirrors(sim: &Simulator, dest: &TestDest, paths: &[&str]) {
    for path in paths {
        let on_disk = std::fs::read(dest.join(path)).unwrap_or_default();
        assert!(on_disk == sim.content(path), "{path}: not the remote bytes");
    }
}

#[test]
fn a_rerun_applies_only_the_changes_with_a_handful_of_requests() {
    let sim = Simulator::start(twelve_folders());
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);

    sim.add_file("A/new.jpg", 4_321);
    sim.modify_file("B/f1.jpg");
    sim.rename("C/f2.jpg", "renamed.jpg");
    sim.move_item("D/f3.jpg", "E");
    sim.rename("F", "F2");
    sim.delete("G/f4.jpg");
    sim.delete("H");
    sim.reset_counters();

    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("changes: "), "{stdout}");

    // O(changes): the drive, one page of changes, and the two new or changed files; no listing.
    assert_eq!(sim.requests(RequestKind::Children), 0);
    assert_eq!(sim.requests(RequestKind::Delta), 1);
    assert_eq!(sim.requests(RequestKind::Download), 2);
    assert_eq!(sim.downloads_of("A/new.jpg"), 1);
    assert_eq!(sim.downloads_of("B/f1.jpg"), 1);

    // The destination is the new tree, plus what was deleted on the drive (kept: this is a backup).
    assert_mirrors(
        &sim,
        &dest,
        &[
            "A/new.jpg",
            "B/f1.jpg",
            "C/renamed.jpg",
            "E/f3.jpg",
            "F2/f0.jpg",
            "F2/sub/deep.jpg",
        ],
    );
    assert!(!dest.join("C/f2.jpg").exists() && !dest.join("D/f3.jpg").exists());
    assert!(
        !dest.join("F").exists(),
        "the renamed folder's old name is gone"
    );
    assert!(dest.join("G/f4.jpg").is_file() && dest.join("H/f0.jpg").is_file());
    let rows = dest.rows();
    let deleted = rows.iter().filter(|(_, r)| r.remote_deleted).count();
    assert_eq!(deleted, 1 + 1 + 15, "G/f4.jpg, and H with its 15 files");
    let rows = rows.iter().filter(|(_, r)| r.is_file()).count();
    assert_eq!(rows, 12 * 15 + 1 + 1, "one row per item: no duplicates");

    // status says when the last incremental ran and what it applied.
    let status = json(&run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    let inc = &status["incremental"][0];
    assert_eq!(inc["scope"], "root");
    assert!(inc["last_changes"].as_u64().unwrap() >= 7, "{inc}");
    assert!(inc["last_applied_at"].is_string());

    // Nothing changed: one delta request, nothing else.
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Delta), 1);
    assert_eq!(
        sim.requests(RequestKind::Children) + sim.requests(RequestKind::Download),
        0
    );
}

#[test]
fn a_moved_large_file_is_moved_on_disk_not_downloaded_again() {
    let sim = Simulator::start(
        Tree::personal()
            .file("Videos/2019/holiday.mp4", 1 << 30)
            .folder("Archive"),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    sim.move_item("Videos/2019/holiday.mp4", "Archive");
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_eq!(sim.bytes_served(), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 files renamed or moved"));
    let moved = dest.join("Archive/holiday.mp4");
    assert_eq!(std::fs::metadata(&moved).unwrap().len(), 1 << 30);
    assert!(!dest.join("Videos/2019/holiday.mp4").exists());
}

#[test]
fn a_forced_resync_lists_again_and_reconciles_with_the_manifest() {
    let sim = Simulator::start(twelve_folders());
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    sim.delete("A/f0.jpg");
    sim.add_file("B/late.jpg", 999);
    sim.require_resync();
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    // The refused link, then a full listing from nothing.
    assert!(sim.requests(RequestKind::Delta) >= 2, "listed in full");
    assert_eq!(sim.requests(RequestKind::Download), 1, "only the new file");
    let items = dest.items();
    assert_eq!(
        items.values().filter(|r| r.kind == "file").count(),
        12 * 15 + 2
    );
    let gone: Vec<String> = dest
        .items()
        .into_iter()
        .filter(|(_, r)| r.remote_deleted)
        .map(|(path, _)| path)
        .collect();
    assert_eq!(gone, ["/A/f0.jpg"]);
    assert!(dest.join("A/f0.jpg").is_file(), "kept locally");
    // And the next run is incremental again.
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(sim.requests(RequestKind::Children), 0);
    assert_eq!(sim.requests(RequestKind::Delta), 1);
}

#[test]
fn a_business_subtree_follows_the_root_delta_and_ignores_changes_elsewhere() {
    let sim = Simulator::start(
        Tree::business()
            .file("Photos/2020/a.jpg", 1_000)
            .file("Photos/2021/b.jpg", 2_000)
            .file("Docs/report.docx", 3_000),
    );
    let dest = TestDest::new();
    assert_eq!(
        run(backup(&sim, &dest).args(["--root", "/Photos"]))
            .status
            .code(),
        Some(0)
    );
    sim.add_file("Docs/other.docx", 10);
    sim.add_file("Photos/2021/c.jpg", 20);
    sim.move_item("Photos/2020/a.jpg", "Docs");
    sim.reset_counters();
    let out = run(backup(&sim, &dest).args(["--root", "/Photos"]));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Children), 0);
    assert_eq!(sim.requests(RequestKind::Download), 1);
    assert_mirrors(&sim, &dest, &["Photos/2021/c.jpg", "Photos/2021/b.jpg"]);
    let paths = dest.file_paths();
    assert!(!paths.iter().any(|p| p.starts_with("/Docs")), "{paths:?}");
    let moved_out = dest.items()["/Photos/2020/a.jpg"].remote_deleted;
    assert!(
        moved_out,
        "moved out of the backed-up folder: gone from it, kept on disk"
    );
    assert!(dest.join("Photos/2020/a.jpg").is_file());
}

#[test]
fn mirror_deletes_moves_deleted_files_to_the_trash_and_keep_versions_keeps_the_old_bytes() {
    let sim = Simulator::start(twelve_folders());
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    let old_bytes = std::fs::read(dest.join("B/f1.jpg")).unwrap();
    sim.delete("A/f0.jpg");
    sim.delete("H");
    sim.modify_file("B/f1.jpg");
    let out = run(backup(&sim, &dest).args(["--mirror-deletes", "--keep-versions"]));
    assert_exit!(out, 0);
    let today = trash_day(&dest);
    let trash = dest.join(&format!(".odbackup/trash/{today}"));
    assert!(trash.join("A/f0.jpg").is_file() && trash.join("H/f3.jpg").is_file());
    assert!(!dest.join("A/f0.jpg").exists() && !dest.join("H").exists());
    assert_eq!(std::fs::read(trash.join("B/f1.jpg")).unwrap(), old_bytes);
    assert!(std::fs::read(dest.join("B/f1.jpg")).unwrap() == sim.content("B/f1.jpg"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("16 files deleted on the drive moved into .odbackup/trash/"),
        "{stdout}"
    );
    assert!(stdout.contains("1 previous versions"), "{stdout}");
    // A re-run changes nothing: trashed files are not brought back or fetched again.
    sim.reset_counters();
    assert_eq!(
        run(backup(&sim, &dest).arg("--mirror-deletes"))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert!(!dest.join("A/f0.jpg").exists());
}

/// The trash folder's date, as the run named it (the only entry under `.odbackup/trash`).
fn trash_day(dest: &TestDest) -> String {
    let mut entries: Vec<_> = std::fs::read_dir(dest.join(".odbackup/trash"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let day = entries.pop().unwrap();
    assert!(
        day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-',
        "{day}"
    );
    day
}

#[test]
fn a_full_listing_by_delta_records_what_the_children_walk_records_in_a_few_requests() {
    let mut tree = twelve_folders();
    for i in 0..1_500 {
        tree = tree.file(&format!("Many/{}/m{i}.jpg", i % 30), 100);
    }
    let sim = Simulator::start(tree.folder("Empty/Nested"));
    let walked = TestDest::new();
    assert_eq!(
        run(crawl(&sim, &walked).args(["--crawl-method", "children"]))
            .status
            .code(),
        Some(0)
    );
    let listings = sim.requests(RequestKind::Children);
    sim.reset_counters();
    let paged = TestDest::new();
    assert_eq!(
        run(backup(&sim, &paged).args(["--crawl-method", "delta"]))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sim.requests(RequestKind::Children), 0);
    let pages = sim.requests(RequestKind::Delta);
    assert!(
        pages >= 2 && pages * 10 < listings,
        "{pages} delta pages vs {listings} listings"
    );
    let summarise = |dest: &TestDest| {
        dest.items()
            .into_iter()
            .map(|(path, row)| (path, row.kind, row.local_path))
            .collect::<Vec<_>>()
    };
    assert_eq!(summarise(&walked), summarise(&paged));
    assert!(paged.join("Empty/Nested").is_dir() && paged.join("Many/7/m7.jpg").is_file());
    // The enumeration's link serves the next run.
    sim.add_file("Many/0/late.jpg", 5);
    sim.reset_counters();
    assert_exit!(run(&mut backup(&sim, &paged)), 0);
    assert_eq!(sim.requests(RequestKind::Delta), 1);
    assert_eq!(sim.requests(RequestKind::Download), 1);
}

#[test]
fn a_file_deleted_and_made_again_under_its_name_takes_its_plain_name_back() {
    for order in [
        graphsim::DeltaOrder::ParentsFirst,
        graphsim::DeltaOrder::ChildrenFirst,
    ] {
        deleted_and_made_again(order);
    }
}

fn deleted_and_made_again(order: graphsim::DeltaOrder) {
    let sim = Simulator::start(twelve_folders());
    sim.set_delta_order(order);
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    // Deleted and uploaded again between two runs (a new item ID, the same name), as phone apps do on
    // re-upload; and a file deleted in one run and made again before the next.
    sim.delete("A/f0.jpg");
    sim.add_file("A/f0.jpg", 4_321);
    sim.delete("B/f1.jpg");
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    sim.add_file("B/f1.jpg", 5_432);
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    let rows = dest.rows();
    for path in ["A/f0.jpg", "B/f1.jpg"] {
        let live: Vec<_> = rows
            .iter()
            .filter(|(p, r)| *p == format!("/{path}") && !r.remote_deleted)
            .collect();
        assert_eq!(live.len(), 1, "{path}: {rows:#?}");
        let row = &live[0].1;
        assert_eq!(row.state, "done", "{path}");
        assert_eq!(
            row.local_path.as_deref(),
            Some(path),
            "{path}: its plain name"
        );
        assert_mirrors(&sim, &dest, &[path]);
    }
    // The deleted file's copy made way into the trash, and its row followed it: mirroring deletions now
    // leaves the new file where it is.
    let old_copy = |path: &str| {
        rows.iter()
            .find(|(p, r)| *p == format!("/{path}") && r.remote_deleted)
            .and_then(|(_, r)| r.written_path.clone())
            .unwrap_or_else(|| panic!("{path}: the deleted row's copy"))
    };
    let trashed = old_copy("A/f0.jpg");
    assert!(trashed.starts_with(".odbackup/trash/"), "{trashed}");
    assert_eq!(std::fs::metadata(dest.join(&trashed)).unwrap().len(), 1_000);
    assert_exit!(run(backup(&sim, &dest).arg("--mirror-deletes")), 0);
    assert_mirrors(&sim, &dest, &["A/f0.jpg", "B/f1.jpg"]);
    assert_eq!(std::fs::metadata(dest.join(&trashed)).unwrap().len(), 1_000);
}

/// The change feed has been seen to leave deletions out (onedrive-api-docs #1927, 2026): a scope whose last
/// full listing is older than `full_listing_days` (30 by default) is listed in full again, which finds them.
#[test]
fn deletions_the_change_feed_leaves_out_are_found_by_a_full_listing_once_the_last_is_a_month_old() {
    let sim = Simulator::start(twelve_folders());
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    sim.set_delta_drops_deletions(true);
    sim.delete("B/f3.jpg");
    let deleted = |dest: &TestDest| dest.items()["/B/f3.jpg"].remote_deleted;
    // A fresh full listing: the change round is trusted, and misses the deletion.
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert!(!deleted(&dest));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("days old"));
    // The last full listing a month and more ago.
    let age_it = || {
        rusqlite::Connection::open(dest.manifest())
            .unwrap()
            .execute(
                "UPDATE crawls SET completed_at = '2000-01-01T00:00:00Z'",
                [],
            )
            .unwrap();
    };
    age_it();
    // Not on age alone when told so.
    let out = run(backup(&sim, &dest).args(["--full-listing-days", "0"]));
    assert_exit!(out, 0);
    assert!(!deleted(&dest));
    // And a changes round that was interrupted left its cursor beside the link: the full listing starts from
    // nothing, not from there (paging on from it, its end marked every item it did not see deleted).
    rusqlite::Connection::open(dest.manifest())
        .unwrap()
        .execute("UPDATE delta_state SET cursor = delta_link", [])
        .unwrap();
    sim.reset_counters();
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("days old: listing in full"), "{said}");
    assert!(deleted(&dest), "the full listing found the deletion");
    let marked = dest.items().values().filter(|r| r.remote_deleted).count();
    assert_eq!(marked, 1, "only the deleted file is marked deleted");
    assert_eq!(
        sim.requests(RequestKind::Download),
        0,
        "nothing fetched again"
    );
    // Listed in full now: the next run is incremental again.
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("days old"));
}
