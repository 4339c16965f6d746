//! Nothing on the drive or beside the destination can break the backup: a folder swapped for a symbolic link
//! mid-run, names swapped on the drive, stale part files, the user's own files where a download must go.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use graphsim::{RequestKind, Simulator, Tree};

use crate::download::backup;
use crate::support::{
    TestDest, against, against_at, assert_same_bytes, json, odbackup, read_rows, run,
};

/// Every file below `root`, never following a link (links are listed as files), relative to `root`.
fn every_file(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Files of odbackup's own naming (part files, span journals) anywhere under `dir`.
fn part_files(dir: &Path) -> Vec<PathBuf> {
    every_file(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(".odbackup-")
        })
        .collect()
}

/// What the manifest at `dest/.odbackup` says of every file row: each is done, and its file is where it
/// belongs with the remote bytes; the database is sound.
fn assert_manifest_matches_disk(sim: &Simulator, dest: &Path) {
    crate::support::assert_manifest_sound(&odbackup::app::default_manifest_path(dest));
    let rows = read_rows(&odbackup::app::default_manifest_path(dest)).expect("manifest rows");
    let files: Vec<_> = rows.into_iter().filter(|(_, r)| r.is_file()).collect();
    assert!(!files.is_empty());
    for (remote, row) in files {
        assert_eq!(row.state, "done", "{remote}");
        let local = row.local_path.expect("a local path");
        assert_eq!(
            row.written_path.as_deref(),
            Some(local.as_str()),
            "{remote}"
        );
        let bytes = std::fs::read(dest.join(&local)).unwrap_or_else(|e| panic!("{local}: {e}"));
        assert!(
            bytes == sim.content_by_id(&row.item_id),
            "{local} holds other bytes than {remote}"
        );
    }
}

/// A neighbour swaps a folder of the destination with a symbolic link to a folder outside it,
/// again and again, while a backup of a few hundred files runs. Every write is relative to folder handles
/// opened without following links, so nothing lands outside the destination; files caught by a swap fail
/// as `path` and the next run, once the swapping stops, completes them.
#[test]
fn a_folder_swapped_for_a_symlink_during_a_backup_never_gets_a_file_written_outside() {
    let mut tree = Tree::personal();
    for i in 0..300u64 {
        tree = tree.file(&format!("Photos/IMG_{i:03}.jpg"), 1_000 + i * 13);
    }
    for i in 0..20u64 {
        tree = tree.file(&format!("Photos/sub/v{i}.mov"), 5_000 + i);
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(2));
    let outer = tempfile::tempdir().unwrap();
    let dest_path = outer.path().join("dest");
    let evil = outer.path().join("elsewhere");
    let swap = outer.path().join("swap");
    std::fs::create_dir_all(dest_path.join("Photos")).unwrap();
    std::fs::create_dir_all(&evil).unwrap();
    std::os::unix::fs::symlink(&evil, &swap).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
        let folder = dest_path.join("Photos");
        let swap = swap.clone();
        std::thread::spawn(move || {
            // `renameat2(RENAME_EXCHANGE)`: the folder and the link trade places atomically, so the name
            // is never missing (odbackup would otherwise just create a fresh folder there).
            let exchange = || {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &folder,
                    rustix::fs::CWD,
                    &swap,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .expect("exchange the folder and the link");
            };
            while !stop.load(Ordering::Relaxed) {
                exchange();
                std::thread::sleep(Duration::from_micros(300));
                exchange();
                swaps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let mut cmd = against_at(&sim, &dest_path, "backup");
    let first = run(&mut cmd);
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        swaps.load(Ordering::Relaxed) > 20,
        "the folder was swapped throughout the run"
    );
    assert!(
        dest_path.join("Photos").is_dir() && swap.is_symlink(),
        "swapping ended restored"
    );

    // Nothing outside the destination: beside it only the link (never followed), and nothing behind it.
    assert_eq!(
        every_file(&evil),
        Vec::<PathBuf>::new(),
        "files were written through the link"
    );
    let beside: Vec<PathBuf> = every_file(outer.path())
        .into_iter()
        .filter(|p| !p.starts_with("dest"))
        .collect();
    assert_eq!(beside, [PathBuf::from("swap")]);

    // Files caught by a swap failed as `path`; the rest are done.
    assert!(matches!(first.status.code(), Some(0 | 1)), "{first:?}");
    let mut failures = odbackup();
    failures
        .args(["failures", "--json", "--dest"])
        .arg(&dest_path);
    let failures = json(&run(&mut failures));
    assert!(
        failures
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["class"] == "path"),
        "{failures}"
    );

    // Once the swapping stops, a re-run completes the backup and the manifest matches the disk.
    let out = run(&mut cmd);
    assert_exit!(out, 0);
    assert_manifest_matches_disk(&sim, &dest_path);
    assert_eq!(every_file(&dest_path.join("Photos")).len(), 320);
    assert_eq!(part_files(&dest_path), Vec::<PathBuf>::new());
    assert_eq!(every_file(&evil), Vec::<PathBuf>::new());
}

/// Names swapped on the drive (b ↔ c, a 3-cycle, two folders) are swapped on disk through
/// temporary names, without a download, and every file ends under its own name.
#[test]
fn names_swapped_on_the_drive_are_swapped_on_disk_without_fetching_again() {
    let tree = Tree::personal()
        .file("Docs/b.txt", 1_000)
        .file("Docs/c.txt", 1_000)
        .file("Cycle/a.jpg", 2_000)
        .file("Cycle/b.jpg", 2_000)
        .file("Cycle/c.jpg", 2_000)
        .file("F/1.txt", 3_000)
        .file("F/2.txt", 3_100)
        .file("G/1.txt", 3_000)
        .file("G/2.txt", 3_100)
        .file("Docs/d.txt", 500);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    // A file of the user's own where a renamed one now goes: it makes way into the trash.
    std::fs::write(dest.join("Docs/e.txt"), b"the user's").unwrap();
    sim.rename("Docs/d.txt", "e.txt");

    // b ↔ c.
    sim.rename("Docs/b.txt", "tmp");
    sim.rename("Docs/c.txt", "b.txt");
    sim.rename("Docs/tmp", "c.txt");
    // a → b → c → a: a's bytes now named b, b's named c, c's named a.
    sim.rename("Cycle/a.jpg", "tmp");
    sim.rename("Cycle/c.jpg", "a.jpg");
    sim.rename("Cycle/b.jpg", "c.jpg");
    sim.rename("Cycle/tmp", "b.jpg");
    // Two folders trade names.
    sim.rename("F", "T");
    sim.rename("G", "F");
    sim.rename("T", "G");
    sim.reset_counters();

    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Download), 0, "moved, not fetched");
    let summary = json(&out);
    assert_eq!(summary["download"]["moved"], 10, "{summary}");
    assert_eq!(summary["download"]["displaced"], 1, "{summary}");
    assert_eq!(
        std::fs::read(trash_day(&dest).join("Docs/e.txt")).unwrap(),
        b"the user's"
    );
    // Every row's file is under the local path the manifest gives it, with that item's bytes, and nothing
    // else is on disk (no temporary name left behind). (Where a name was claimed by another item at the
    // moment the change was applied, the manifest may give it a suffixed local name: what matters here is
    // that disk and manifest agree, byte for byte.)
    assert_manifest_matches_disk(&sim, dest.path());
    let mut local: Vec<String> = dest
        .rows()
        .into_iter()
        .filter(|(_, r)| r.is_file())
        .map(|(_, r)| r.local_path.expect("a local path"))
        .collect();
    local.sort();
    assert_eq!(dest.files_on_disk(), local);
}

/// Part files of an older version or of a deleted item are removed at the end of a run; the part
/// file of an item still to be fetched stays, and is resumed. Nothing that is not odbackup's, and nothing
/// behind a link, is touched.
#[test]
fn stale_part_files_are_removed_and_a_pending_ones_is_kept_for_its_resume() {
    let tree = Tree::personal()
        .file("A/changed.bin", 3_000_000)
        .file("A/deleted.bin", 3_000_000)
        .file("A/pending.bin", 3_000_000)
        .file("A/small.txt", 100);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    for path in ["A/changed.bin", "A/deleted.bin", "A/pending.bin"] {
        sim.reset_next_downloads(path, 1_000, Some(100_000));
    }
    assert_exit!(run(&mut backup(&sim, &dest)), 1);
    let parts = part_files(&dest.join("A"));
    assert_eq!(parts.len(), 3, "three interrupted transfers: {parts:?}");
    let pending_part = |dest: &TestDest| {
        part_files(&dest.join("A"))
            .into_iter()
            .map(|p| std::fs::metadata(dest.join("A").join(p)).unwrap().len())
            .collect::<Vec<_>>()
    };
    // Decoys: the user's own `.part` file, and a name of odbackup's pattern behind a link out of the backup.
    std::fs::write(dest.join("A/notes.part"), b"mine").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let planted = outside.path().join(parts[0].file_name().unwrap());
    std::fs::write(&planted, b"not under the destination").unwrap();
    std::os::unix::fs::symlink(outside.path(), dest.join("A/link")).unwrap();

    sim.clear_resets();
    sim.modify_file("A/changed.bin");
    sim.delete("A/deleted.bin");
    sim.reset_next_downloads("A/pending.bin", 1_000, Some(100_000));
    let before = pending_part(&dest);
    // The changes first, then the download (a backup would start retrying the failed files before the
    // changes arrive), which ends with the sweep.
    assert_eq!(
        run(&mut against(&sim, &dest, "crawl")).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&mut against(&sim, &dest, "download")).status.code(),
        Some(1)
    );

    let after = pending_part(&dest);
    assert_eq!(
        after.len(),
        1,
        "only the pending file's part is left: {:?}",
        part_files(&dest.join("A"))
    );
    assert!(
        after[0] > *before.iter().max().unwrap(),
        "it was resumed, not restarted"
    );
    assert_same_bytes(&sim, &dest, ["A/changed.bin", "A/small.txt"]);
    assert_eq!(std::fs::read(dest.join("A/notes.part")).unwrap(), b"mine");
    assert!(planted.exists(), "nothing behind a link is removed");

    // Once the file can be fetched, it finishes from its part file, and no part file is left.
    sim.clear_resets();
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_same_bytes(&sim, &dest, ["A/pending.bin"]);
    assert_eq!(part_files(&dest.join("A")), Vec::<PathBuf>::new());
}

/// A local file that odbackup did not write, where a remote file must go, is moved into the
/// trash (and reported), never renamed over; one with the right bytes is adopted; odbackup's own previous
/// version of a changed file is replaced as before.
#[test]
fn a_users_own_file_in_the_way_is_moved_to_the_trash_and_reported() {
    let tree = Tree::personal()
        .file("Docs/report.txt", 1_000)
        .file("Docs/same-size.txt", 1_000)
        .file("Docs/adopt.txt", 500);
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    std::fs::create_dir_all(dest.join("Docs")).unwrap();
    std::fs::write(dest.join("Docs/report.txt"), b"my own draft").unwrap();
    std::fs::write(dest.join("Docs/same-size.txt"), vec![b'x'; 1_000]).unwrap();
    std::fs::write(dest.join("Docs/adopt.txt"), sim.content("Docs/adopt.txt")).unwrap();

    let out = run(backup(&sim, &dest).arg("--json"));
    assert_exit!(out, 0);
    assert_same_bytes(
        &sim,
        &dest,
        ["Docs/report.txt", "Docs/same-size.txt", "Docs/adopt.txt"],
    );
    assert_eq!(sim.downloads_of("Docs/adopt.txt"), 0, "adopted");
    let summary = json(&out);
    assert_eq!(summary["download"]["displaced"], 2, "{summary}");
    let trash = trash_day(&dest);
    assert_eq!(
        std::fs::read(trash.join("Docs/report.txt")).unwrap(),
        b"my own draft"
    );
    assert_eq!(
        std::fs::read(trash.join("Docs/same-size.txt")).unwrap(),
        vec![b'x'; 1_000]
    );

    // A later version of a file odbackup wrote replaces it (the default: no versions kept).
    sim.modify_file("Docs/report.txt");
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, ["Docs/report.txt"]);
    assert_eq!(every_file(&trash).len(), 2, "nothing more in the trash");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("in the way"));
}

/// The only day folder under the trash.
fn trash_day(dest: &TestDest) -> PathBuf {
    let days: Vec<_> = std::fs::read_dir(dest.join(".odbackup/trash"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(days.len(), 1, "{days:?}");
    days[0].clone()
}

#[test]
fn a_state_folder_or_manifest_replaced_by_a_symlink_is_refused_and_nothing_is_written_through_it() {
    let sim = Simulator::start(Tree::personal().file("a.txt", 1_000));
    let outside = TestDest::new();

    // The state folder itself is a link to a folder outside the destination.
    let dest = TestDest::new();
    std::os::unix::fs::symlink(outside.path(), dest.join(".odbackup")).unwrap();
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_ne!(
        out.status.code(),
        Some(0),
        "a linked state folder is refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "the message says why"
    );
    assert!(
        every_file(outside.path()).is_empty(),
        "nothing written through the link"
    );
    assert!(!dest.join("a.txt").exists());

    // A real state folder whose manifest and lock are links to files outside.
    let dest = TestDest::new();
    std::fs::create_dir(dest.join(".odbackup")).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dest.join(".odbackup/manifest.sqlite.lock")).unwrap();
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_ne!(out.status.code(), Some(0), "a linked lock file is refused");
    std::fs::remove_file(dest.join(".odbackup/manifest.sqlite.lock")).unwrap();
    std::os::unix::fs::symlink(&victim, dest.join(".odbackup/manifest.sqlite")).unwrap();
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_ne!(out.status.code(), Some(0), "a linked manifest is refused");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(every_file(outside.path()), vec![PathBuf::from("victim")]);

    // Once the links are gone, the same command backs up.
    std::fs::remove_file(dest.join(".odbackup/manifest.sqlite")).unwrap();
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_exit!(out, 0);
    assert_same_bytes(&sim, &dest, ["a.txt"]);
}
