//! Crawling a drive into the manifest.

use std::collections::BTreeMap;
use std::time::Duration;

use graphsim::{FileOpts, Simulator, Tree};

use crate::support::{TestDest, eventually, json, odbackup, run};

/// `odbackup crawl` of `dest` against the simulator.
pub fn crawl(sim: &Simulator, dest: &TestDest) -> std::process::Command {
    crate::support::against(sim, dest, "crawl")
}

/// A tree with every shape the issue names: a folder of 2,500 children (paging), depth 21, unicode names
/// (NFC, NFD, emoji, CJK near the 255-character limit), zero-byte files, a `OneNote` package, a remote item.
fn awkward_tree() -> (Tree, Vec<(String, u64)>) {
    let mut files = Vec::new();
    let mut tree = Tree::personal();
    for i in 0..2500 {
        let path = format!("Big/f{i:04}.txt");
        tree = tree.file(&path, (i % 7) as u64 * 100);
        files.push((path, (i % 7) as u64 * 100));
    }
    let deep = (0..21)
        .map(|d| format!("d{d}"))
        .collect::<Vec<_>>()
        .join("/")
        + "/";
    let deep_file = format!("{deep}bottom.bin");
    tree = tree.file(&deep_file, 1234);
    files.push((deep_file, 1234));
    let cjk = "写".repeat(84) + ".jpg"; // 84 × 3 bytes + 4 = 256 bytes: one byte over the local limit
    for name in [
        "café.jpg".to_owned(),            // NFC
        "cafe\u{301}-nfd.jpg".to_owned(), // NFD
        "🎉 party 🎂.mp4".to_owned(),
        cjk,
        "space and + plus #hash %pct.txt".to_owned(),
    ] {
        let path = format!("Unicode/{name}");
        tree = tree.file_with(&path, 2048, FileOpts::new().photo("2021-06-01T10:00:00Z"));
        files.push((path, 2048));
    }
    tree = tree.file("Empty/zero.bin", 0).file_with(
        "Empty/nohash.bin",
        0,
        FileOpts::new().no_hashes(),
    );
    files.push(("Empty/zero.bin".into(), 0));
    files.push(("Empty/nohash.bin".into(), 0));
    tree = tree
        .onenote_package("Notebooks/Work")
        .remote_item("Shared/Holiday", Tree::personal().file("x.jpg", 10));
    (tree, files)
}

#[test]
fn a_crawl_records_exactly_the_simulators_items_with_paths_sizes_and_hashes() {
    let (tree, files) = awkward_tree();
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    // The folder walk, whose paging this checks (a delta listing is checked in incremental.rs).
    let out = run(crawl(&sim, &dest).args(["--crawl-method", "children"]));
    assert_exit!(out, 0);

    let items = dest.items();
    for (path, size) in &files {
        let row = items
            .get(&format!("/{path}"))
            .unwrap_or_else(|| panic!("{path} missing from the manifest"));
        assert_eq!(row.kind, "file", "{path}");
        assert_eq!(row.state, "pending", "{path}");
        assert_eq!(row.size, Some(*size as i64), "{path}");
        // Stored canonically: personal drive prefixes in lower case (the service spells them both ways).
        assert_eq!(
            row.item_id,
            sim.item_id(path).to_ascii_lowercase(),
            "{path}"
        );
        if *size > 0 {
            assert_eq!(
                row.quick_xor.as_deref(),
                Some(sim.quick_xor(path).as_str()),
                "{path}"
            );
        }
    }
    // A OneNote notebook is listed as a folder of its section files (tests/it/onenote.rs).
    let pkg = &items["/Notebooks/Work"];
    assert_eq!((pkg.kind.as_str(), pkg.state.as_str()), ("folder", "done"));
    // A shared folder added to My files is followed (tests/it/shared.rs): its shortcut is on record, and the
    // folder and its file are listed from their own drive.
    let shortcut = &items[&format!("/Shared/Holiday{}", crate::support::SHORTCUT_KEY)];
    assert_eq!(
        (shortcut.kind.as_str(), shortcut.state.as_str()),
        ("remote", "done")
    );
    let shared = &items["/Shared/Holiday"];
    assert_eq!(
        (shared.kind.as_str(), shared.state.as_str()),
        ("folder", "done")
    );
    assert_eq!(items["/Shared/Holiday/x.jpg"].size, Some(10));
    // Nothing else: every file row is one the simulator has.
    let file_rows = items.values().filter(|r| r.kind == "file").count();
    assert_eq!(file_rows, files.len() + 1, "and the shared x.jpg");
    // The 2,500-child folder took several pages of at most 1,000.
    assert!(sim.requests(graphsim::RequestKind::Children) >= 3 + 21);

    let status = json(&run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    // The shared x.jpg counts among the files.
    assert_eq!(status["files"]["total"], files.len() as u64 + 1);
    assert_eq!(status["files"]["pending"], files.len() as u64 + 1);
    let total_bytes: u64 = files.iter().map(|(_, s)| s).sum::<u64>() + 10;
    assert_eq!(status["bytes"]["total"], total_bytes);
    assert_eq!(status["last_run"]["outcome"], "ok");
    let table = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("files {:>12} total", files.len() + 1)),
        "{table}"
    );
}

#[test]
fn root_and_special_crawl_only_their_subtree() {
    let tree = Tree::personal()
        .file("Pictures/Camera Roll/a.jpg", 10)
        .file("Pictures/Camera Roll/2021/b.jpg", 20)
        .file("Pictures/other.png", 30)
        .file("Documents/c.txt", 40)
        .special("cameraroll", "Pictures/Camera Roll")
        .special("photos", "Pictures");
    let sim = Simulator::start(tree);

    let dest = TestDest::new();
    let out = run(crawl(&sim, &dest).args(["--special", "cameraroll"]));
    assert_exit!(out, 0);
    assert_eq!(
        dest.file_paths(),
        [
            "/Pictures/Camera Roll/2021/b.jpg",
            "/Pictures/Camera Roll/a.jpg"
        ]
    );

    let dest = TestDest::new();
    run(crawl(&sim, &dest).args(["--special", "photos"]));
    assert_eq!(dest.file_paths().len(), 3);

    let dest = TestDest::new();
    let out = run(crawl(&sim, &dest).args(["--root", "/Documents"]));
    assert_exit!(out, 0);
    assert_eq!(dest.file_paths(), ["/Documents/c.txt"]);
}

#[test]
fn a_crawl_killed_midway_resumes_without_duplicates_or_relisting_finished_folders() {
    let mut tree = Tree::personal();
    for f in 0..60 {
        for i in 0..30 {
            tree = tree.file(&format!("F{f:02}/sub/x{i}.jpg"), 100);
        }
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(15));
    let dest = TestDest::new();
    let mut child = crawl(&sim, &dest)
        .args(["--list-concurrency", "2"])
        .spawn()
        .unwrap();
    // Kill once some pages are committed (the manifest has rows), mid-crawl.
    eventually(Duration::from_secs(30), "a few committed folders", || {
        let n = dest.try_items()?.values().filter(|r| r.is_file()).count();
        (n >= 300).then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = dest.items();
    let listed_before: BTreeMap<String, i64> = before
        .values()
        .filter(|r| r.kind == "folder")
        .filter_map(|r| Some((r.item_id.clone(), r.listed_crawl?)))
        .collect();
    let files_before = before.values().filter(|r| r.is_file()).count();
    assert!(
        files_before < 1800,
        "the kill came too late to test anything ({files_before} files)"
    );

    sim.reset_counters();
    let out = run(&mut crawl(&sim, &dest));
    assert_exit!(out, 0);
    let items = dest.items(); // asserts no duplicate paths
    assert_eq!(items.values().filter(|r| r.kind == "file").count(), 1800);
    assert_eq!(items.values().filter(|r| r.kind == "folder").count(), 121); // root + 60 + 60
    // No folder whose listing was committed before the kill was listed again.
    let children_requests = sim.requests(graphsim::RequestKind::Children);
    let unlisted = 121 - listed_before.len() as u64;
    assert!(
        children_requests <= unlisted,
        "re-run made {children_requests} listing requests for {unlisted} unlisted folders"
    );
    let resumed = String::from_utf8_lossy(&out.stdout).contains("resumed");
    assert!(resumed, "the summary says the crawl resumed");
}
