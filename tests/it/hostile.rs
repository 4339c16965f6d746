//! Nothing on the drive can break the backup. A drive may hold a folder named like odbackup's own
//! state (`.odbackup`, with a `manifest.sqlite` and its lock inside: a backup of a backup, say); it is stored
//! beside the state, under `<name> (from OneDrive)`, and never over it.

use graphsim::{RequestKind, Simulator, Tree};

use crate::support::{against_at, read_items, run};

/// A drive whose top holds a `.odbackup` folder with a would-be manifest, lock and trash, plus plain files.
fn drive_with_a_state_folder() -> Tree {
    Tree::personal()
        .file_with(
            ".odbackup/manifest.sqlite",
            8_192,
            graphsim::FileOpts::new().modified("2021-05-01T10:00:00Z"),
        )
        .file(".odbackup/manifest.sqlite.lock", 64)
        .file(".odbackup/trash/2024-01-01/old.jpg", 3_000)
        .file("Stuff/keep.txt", 1_234)
        .file_with(
            "Photos/a.jpg",
            2_048,
            graphsim::FileOpts::new().photo("2022-03-04T05:06:07Z"),
        )
}

/// `odbackup backup` into `dest`, a folder inside a fresh parent (to see that nothing lands beside it).
fn backup_into(sim: &Simulator, dest: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = against_at(sim, dest, "backup");
    cmd.args(extra);
    run(&mut cmd)
}

/// The manifest at `dest` is a sound odbackup manifest with `files` file rows.
fn assert_manifest_intact(dest: &std::path::Path, files: usize) {
    let manifest = odbackup::app::default_manifest_path(dest);
    crate::support::assert_manifest_sound(&manifest);
    let rows = read_items(&manifest).expect("the manifest's rows");
    assert_eq!(rows.values().filter(|r| r.is_file()).count(), files);
    let inside = rows
        .values()
        .filter_map(|r| r.local_path.as_deref())
        .filter(|local| {
            let first = local.split('/').next().unwrap_or_default();
            first.eq_ignore_ascii_case(".odbackup")
        })
        .count();
    assert_eq!(inside, 0, "no item is placed inside the state folder");
}

fn same_bytes(sim: &Simulator, dest: &std::path::Path, local: &str, remote: &str) {
    let on_disk = std::fs::read(dest.join(local)).unwrap_or_else(|e| panic!("{local}: {e}"));
    assert!(on_disk == sim.content(remote), "{local} is not {remote}");
}

#[test]
fn a_remote_folder_named_like_the_state_folder_is_stored_beside_it_never_over_it() {
    let sim = Simulator::start(drive_with_a_state_folder());
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    assert_eq!(backup_into(&sim, &dest, &[]).status.code(), Some(0));
    assert_manifest_intact(&dest, 5);
    let stand_in = ".odbackup (from OneDrive)";
    for remote in [
        ".odbackup/manifest.sqlite",
        ".odbackup/manifest.sqlite.lock",
        ".odbackup/trash/2024-01-01/old.jpg",
    ] {
        let local = remote.replacen(".odbackup", stand_in, 1);
        same_bytes(&sim, &dest, &local, remote);
    }
    same_bytes(&sim, &dest, "Stuff/keep.txt", "Stuff/keep.txt");
    assert!(!dest.join(".odbackup/trash/2024-01-01/old.jpg").exists());
    // Nothing beside the destination.
    let siblings: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["dest"]);

    // Incremental runs: the same; what moves into the remote `.odbackup` goes beside the state too.
    sim.reset_counters();
    assert_eq!(backup_into(&sim, &dest, &[]).status.code(), Some(0));
    assert_eq!(sim.requests(RequestKind::Download), 0);
    sim.move_item("Photos/a.jpg", ".odbackup");
    sim.add_file(".odbackup/manifest.sqlite-wal", 32);
    assert_eq!(backup_into(&sim, &dest, &[]).status.code(), Some(0));
    assert_manifest_intact(&dest, 6);
    same_bytes(&sim, &dest, &format!("{stand_in}/a.jpg"), ".odbackup/a.jpg");
    same_bytes(
        &sim,
        &dest,
        &format!("{stand_in}/manifest.sqlite-wal"),
        ".odbackup/manifest.sqlite-wal",
    );
    assert!(
        !dest.join(".odbackup/manifest.sqlite-wal").exists() || {
            // SQLite's own WAL may exist; it must not hold the remote file's bytes.
            std::fs::read(dest.join(".odbackup/manifest.sqlite-wal")).unwrap()
                != sim.content(".odbackup/manifest.sqlite-wal")
        }
    );

    // The remote folder's deletion sends its copy to the trash, not the state folder's contents.
    sim.delete(".odbackup");
    assert_eq!(
        backup_into(&sim, &dest, &["--mirror-deletes"])
            .status
            .code(),
        Some(0)
    );
    assert_manifest_intact(&dest, 6);
    assert!(!dest.join(stand_in).join("manifest.sqlite").exists());

    // A folder renamed to the state folder's name, in another letter case, is placed beside it as well.
    sim.rename("Stuff", ".ODBackup");
    assert_eq!(backup_into(&sim, &dest, &[]).status.code(), Some(0));
    assert_manifest_intact(&dest, 6);
    let local = read_items(&odbackup::app::default_manifest_path(&dest))
        .expect("the manifest's rows")
        .remove("/.ODBackup/keep.txt")
        .and_then(|r| r.local_path)
        .expect("a local path");
    // (With a clash suffix where the destination folds case: the trashed stand-in still holds its name.)
    assert!(local.starts_with(".ODBackup (from OneDrive)"), "{local}");
    same_bytes(&sim, &dest, &local, ".ODBackup/keep.txt");
    assert!(!dest.join("Stuff").exists());
}

#[test]
fn the_state_folder_is_reserved_in_the_date_layout_and_for_a_root_of_that_name() {
    let sim = Simulator::start(drive_with_a_state_folder());
    let dated = tempfile::tempdir().unwrap();
    assert_eq!(
        backup_into(&sim, dated.path(), &["--layout", "date"])
            .status
            .code(),
        Some(0)
    );
    assert_manifest_intact(dated.path(), 5);
    same_bytes(&sim, dated.path(), "2022/03/a.jpg", "Photos/a.jpg");
    same_bytes(
        &sim,
        dated.path(),
        "2021/05/manifest.sqlite",
        ".odbackup/manifest.sqlite",
    );

    let rooted = tempfile::tempdir().unwrap();
    assert_eq!(
        backup_into(&sim, rooted.path(), &["--root", "/.odbackup"])
            .status
            .code(),
        Some(0)
    );
    assert_manifest_intact(rooted.path(), 3);
    same_bytes(
        &sim,
        rooted.path(),
        ".odbackup (from OneDrive)/manifest.sqlite.lock",
        ".odbackup/manifest.sqlite.lock",
    );
}

#[test]
fn drive_files_named_like_part_files_are_kept_under_a_suffixed_name_and_never_swept() {
    let part = ".odbackup-0123456789abcdef-89abcdef.part";
    let names = [
        format!("Photos/{part}"),
        format!("Photos/{part}.chunks"),
        part.to_uppercase(),
    ];
    let mut tree = Tree::personal().file("Photos/a.jpg", 2_000);
    for (i, name) in names.iter().enumerate() {
        tree = tree.file(name, 3_000 + i as u64);
    }
    let sim = Simulator::start(tree);
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    for round in 0..2 {
        assert_eq!(
            backup_into(&sim, &dest, &[]).status.code(),
            Some(0),
            "run {round}"
        );
        let rows = read_items(&odbackup::app::default_manifest_path(&dest)).expect("the rows");
        for remote in &names {
            let row = &rows[&format!("/{remote}")];
            assert_eq!(row.state, "done", "{remote}");
            let local = row.local_path.as_deref().expect("a local path");
            let file_name = local.rsplit('/').next().unwrap();
            assert!(
                !odbackup::localpath::is_own_part_name(&file_name.to_lowercase()),
                "{remote} kept a part file's name: {local}"
            );
            // The sweep at the end of each run left it, with its bytes.
            same_bytes(&sim, &dest, local, remote);
        }
    }
    assert_eq!(
        sim.requests(RequestKind::Download),
        4,
        "the second run found every file done"
    );
}
