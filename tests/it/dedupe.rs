//! `--dedupe hardlink`: the same photo in several folders is downloaded once and stored once, as hard links;
//! a later change to one copy on the drive leaves the others' bytes alone.

use std::os::unix::fs::MetadataExt as _;

use graphsim::{FileOpts, RequestKind, Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, json, odbackup, run};

const COPIES: [&str; 3] = [
    "Pictures/Camera Roll/IMG_0001.jpg",
    "Pictures/Albums/Trip/IMG_0001.jpg",
    "Pictures/Albums/Best of/beach.jpg",
];
const SIZE: u64 = 40_000;

fn library() -> Tree {
    COPIES
        .iter()
        .fold(Tree::personal(), |tree, path| {
            tree.file_with(
                path,
                SIZE,
                FileOpts::new()
                    .photo("2024-07-01T10:00:00Z")
                    .same_content(7),
            )
        })
        .file("Pictures/Camera Roll/IMG_0002.jpg", 30_000)
}

fn inode(dest: &TestDest, path: &str) -> u64 {
    std::fs::symlink_metadata(dest.join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

fn status(dest: &TestDest) -> (serde_json::Value, String) {
    let out = run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path()));
    let human = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    (
        json(&out),
        String::from_utf8_lossy(&human.stdout).into_owned(),
    )
}

fn downloads(sim: &Simulator) -> Vec<u64> {
    COPIES.iter().map(|p| sim.downloads_of(p)).collect()
}

#[test]
fn three_copies_are_downloaded_once_and_a_later_change_to_one_leaves_the_others_alone() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    let out = run(against(&sim, &dest, "backup").args(["--dedupe", "hardlink", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = json(&out);
    assert_eq!(
        downloads(&sim).iter().sum::<u64>(),
        1,
        "one download for three copies"
    );
    assert_eq!(
        sim.requests(RequestKind::Download),
        2,
        "the copies and the other photo"
    );
    assert_same_bytes(&sim, &dest, COPIES);
    let first = inode(&dest, COPIES[0]);
    assert!(
        COPIES.iter().all(|p| inode(&dest, p) == first),
        "the three copies are one file on disk"
    );
    assert_eq!(summary["download"]["deduplicated"], 2);
    assert_eq!(summary["download"]["dedupe_bytes_saved"], 2 * SIZE);
    let (report, human) = status(&dest);
    assert_eq!(report["deduplicated"]["files"], 2);
    assert_eq!(report["deduplicated"]["bytes_saved"], 2 * SIZE);
    assert!(human.contains("deduplicated: 2 files"), "{human}");
    let checked = run(odbackup().args(["verify", "--dest"]).arg(dest.path()));
    assert_eq!(
        checked.status.code(),
        Some(0),
        "linked files verify like any: {checked:?}"
    );

    // The drive changes the copy that was downloaded (the one the others were linked to).
    let leader = COPIES
        .iter()
        .copied()
        .find(|p| sim.downloads_of(p) == 1)
        .unwrap();
    let others: Vec<&str> = COPIES.iter().copied().filter(|p| *p != leader).collect();
    let old_bytes = std::fs::read(dest.join(leader)).unwrap();
    sim.modify_file(leader);
    let out = run(against(&sim, &dest, "backup").args(["--dedupe", "hardlink"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(sim.downloads_of(leader), 2, "the changed copy is fetched");
    assert!(others.iter().all(|p| sim.downloads_of(p) == 0));
    assert_same_bytes(&sim, &dest, COPIES);
    for other in &others {
        assert_eq!(
            std::fs::read(dest.join(other)).unwrap(),
            old_bytes,
            "{other} keeps the old bytes"
        );
    }
    assert_eq!(
        inode(&dest, others[0]),
        inode(&dest, others[1]),
        "still one file"
    );
    assert_ne!(inode(&dest, leader), inode(&dest, others[0]));
    let (report, _) = status(&dest);
    assert_eq!(
        report["deduplicated"]["files"], 1,
        "two copies share one file now"
    );
    assert_eq!(report["deduplicated"]["bytes_saved"], SIZE);

    // One of the two remaining links is deleted on the drive: it goes to the trash, the other stays whole.
    sim.delete(others[0]);
    let out =
        run(against(&sim, &dest, "backup").args(["--dedupe", "hardlink", "--mirror-deletes"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!dest.join(others[0]).exists(), "moved into the trash");
    assert_eq!(std::fs::read(dest.join(others[1])).unwrap(), old_bytes);
    let (report, _) = status(&dest);
    assert_eq!(report["deduplicated"]["files"], 0);
}

#[test]
fn without_the_option_every_copy_is_downloaded() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    let out = run(against(&sim, &dest, "backup").arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(downloads(&sim), [1, 1, 1]);
    assert_same_bytes(&sim, &dest, COPIES);
    assert_ne!(inode(&dest, COPIES[0]), inode(&dest, COPIES[1]));
    assert_eq!(json(&out)["download"]["deduplicated"], 0);
}

#[test]
fn a_copy_changed_on_disk_is_never_linked_to_and_the_others_are_downloaded() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    // The first run backs up the Camera Roll only.
    let out = run(against(&sim, &dest, "backup").args(["--include", "/Pictures/Camera Roll/**"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(downloads(&sim), [1, 0, 0]);
    // The user edits it in place (same length): it no longer has the listed bytes.
    let edited = vec![b'x'; usize::try_from(SIZE).unwrap()];
    std::fs::write(dest.join(COPIES[0]), &edited).unwrap();
    let out = run(against(&sim, &dest, "backup").args(["--dedupe", "hardlink", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        sim.downloads_of(COPIES[1]) + sim.downloads_of(COPIES[2]),
        1,
        "the album copies are fetched once, not linked to the edited file"
    );
    assert_same_bytes(&sim, &dest, &COPIES[1..]);
    assert_eq!(
        std::fs::read(dest.join(COPIES[0])).unwrap(),
        edited,
        "left alone"
    );
    assert_ne!(inode(&dest, COPIES[0]), inode(&dest, COPIES[1]));
    assert_eq!(inode(&dest, COPIES[1]), inode(&dest, COPIES[2]));
}

#[test]
fn the_config_key_turns_it_on_and_the_run_summary_says_what_was_saved() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("odbackup.toml");
    std::fs::write(&config, "dedupe = \"hardlink\"\n").unwrap();
    let out = run(against(&sim, &dest, "backup").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(downloads(&sim).iter().sum::<u64>(), 1);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("2 files stored as hard links of a copy with the same content"),
        "{said}"
    );
}

#[test]
fn many_groups_of_copies_are_each_downloaded_once_whatever_the_concurrency() {
    let paths: Vec<(u64, String)> = (0..5u64)
        .flat_map(|group| {
            (0..4).map(move |copy| (group, format!("Album {copy}/photo {group}.jpg")))
        })
        .collect();
    let tree = paths.iter().fold(Tree::personal(), |tree, (group, path)| {
        tree.file_with(
            path,
            10_000 + group,
            FileOpts::new().same_content(100 + group),
        )
    });
    for concurrency in ["1", "2", "8"] {
        let sim = Simulator::start(tree.clone());
        let dest = TestDest::new();
        let out = run(against(&sim, &dest, "backup").args([
            "--dedupe",
            "hardlink",
            "--concurrency",
            concurrency,
            "--json",
        ]));
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            sim.requests(RequestKind::Download),
            5,
            "one per group ({concurrency} at once)"
        );
        assert_same_bytes(&sim, &dest, paths.iter().map(|(_, p)| p));
        for group in 0..5u64 {
            let inodes: std::collections::BTreeSet<u64> = paths
                .iter()
                .filter(|(g, _)| *g == group)
                .map(|(_, p)| inode(&dest, p))
                .collect();
            assert_eq!(inodes.len(), 1, "group {group} is one file");
        }
        assert_eq!(json(&out)["download"]["deduplicated"], 15);
    }
}
