//! `odbackup verify`: the backup read back from disk and checked against the manifest; `--repair` sends what
//! is wrong back to pending, moving changed files into the trash first.

use std::os::unix::fs::symlink;
use std::process::Command;

use graphsim::{FileOpts, Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, json, odbackup, run};

fn verify(dest: &TestDest) -> Command {
    let mut cmd = odbackup();
    cmd.args(["verify", "--json", "--dest"]).arg(dest.path());
    cmd
}

fn tree() -> Tree {
    Tree::personal()
        .file("Photos/a.jpg", 300_000)
        .file("Photos/b.jpg", 4_000)
        .file("Photos/c.jpg", 5_000)
        .file("Photos/d.jpg", 6_000)
        .file("Docs/e.txt", 7_000)
        .file("Docs/f.txt", 8_000)
        .file_with("Docs/old.doc", 9_000, FileOpts::new().sha1())
        .file_with("Docs/nohash.bin", 1_000, FileOpts::new().no_hashes())
        .file("Docs/empty.txt", 0)
}

fn backed_up() -> (Simulator, TestDest) {
    let sim = Simulator::start(tree());
    let dest = TestDest::new();
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_eq!(out.status.code(), Some(0));
    // As a business drive lists an old file (sha1Hash without quickXorHash), and odbackup verified it by that.
    dest.as_if_verified_by_sha1("old.doc");
    (sim, dest)
}

fn problems(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

#[test]
fn an_intact_backup_verifies_by_the_hash_each_file_was_written_with() {
    let (_sim, dest) = backed_up();
    let out = run(&mut verify(&dest));
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["files_checked"], 9);
    assert_eq!(doc["by_quick_xor"], 6, "{doc}");
    assert_eq!(doc["by_sha1"], 1, "{doc}");
    assert_eq!(
        doc["by_size_only"], 2,
        "no hash listed, and the empty file: {doc}"
    );
    assert_eq!(doc["bytes_read"], 340_000);
    assert!(problems(&doc).is_empty());
    let (command, outcome) = dest.runs().pop().expect("a run on record");
    assert_eq!(
        (command.as_str(), outcome.as_deref()),
        ("verify", Some("ok"))
    );
}

#[test]
// One story told in order: each damage, what verify says of it, what the next backup repairs.
#[allow(clippy::too_many_lines)]
fn edits_bit_rot_deletions_and_swapped_in_links_are_found_and_repaired_by_the_next_backup() {
    let (sim, dest) = backed_up();
    let outside = tempfile::tempdir().unwrap();
    // Bit rot: one byte flipped, the length unchanged.
    let mut bytes = std::fs::read(dest.join("Photos/a.jpg")).unwrap();
    bytes[150_000] ^= 0x40;
    std::fs::write(dest.join("Photos/a.jpg"), &bytes).unwrap();
    // A user's edit of a SHA-1-verified file (same length).
    let mut doc = std::fs::read(dest.join("Docs/old.doc")).unwrap();
    doc[0] ^= 1;
    std::fs::write(dest.join("Docs/old.doc"), &doc).unwrap();
    // Truncated, deleted, and a link to an identical copy outside the destination (never followed).
    std::fs::write(dest.join("Photos/b.jpg"), b"short").unwrap();
    std::fs::remove_file(dest.join("Photos/c.jpg")).unwrap();
    let copy = outside.path().join("d.jpg");
    std::fs::copy(dest.join("Photos/d.jpg"), &copy).unwrap();
    std::fs::remove_file(dest.join("Photos/d.jpg")).unwrap();
    symlink(&copy, dest.join("Photos/d.jpg")).unwrap();

    let out = run(&mut verify(&dest));
    assert_eq!(out.status.code(), Some(1));
    let found = json(&out);
    assert_eq!(
        problems(&found),
        [
            ("changed", "Docs/old.doc"),
            ("changed", "Photos/a.jpg"),
            ("changed", "Photos/b.jpg"),
            ("changed", "Photos/d.jpg"),
            ("missing", "Photos/c.jpg"),
        ]
        .map(|(k, p)| (k.to_owned(), p.to_owned()))
    );
    assert_eq!(
        (found["changed"].as_u64(), found["missing"].as_u64()),
        (Some(4), Some(1))
    );
    let mut status = odbackup();
    let out = run(status.args(["status", "--dest"]).arg(dest.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("last verify: started")
            && text.contains("9 files checked, 1 missing, 4 changed, 0 unreadable"),
        "{text}"
    );
    // Without --repair nothing is touched.
    assert_eq!(std::fs::read(dest.join("Photos/a.jpg")).unwrap(), bytes);
    assert_eq!(dest.items()["/Photos/a.jpg"].state, "done");

    let out = run(verify(&dest).arg("--repair"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the backup is still short until the next run"
    );
    let repaired = json(&out);
    assert_eq!(repaired["repaired"], 5);
    assert_eq!(repaired["trashed"], 4);
    let mut trashed = Vec::new();
    entries_under(&dest.join(".odbackup/trash"), &mut trashed);
    trashed.sort();
    let names: Vec<&str> = trashed
        .iter()
        .map(|p| p.rsplit_once("trash/").unwrap().1)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for (i, want) in [
        "Docs/old.doc",
        "Photos/a.jpg",
        "Photos/b.jpg",
        "Photos/d.jpg",
    ]
    .iter()
    .enumerate()
    {
        assert!(names[i].ends_with(want), "{names:?}");
    }
    assert_eq!(
        std::fs::read(&trashed[1]).unwrap(),
        bytes,
        "the changed file is kept in the trash"
    );
    assert!(
        std::fs::symlink_metadata(&trashed[3])
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is moved as a link"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        sim.content("Photos/d.jpg"),
        "the link's target is untouched"
    );
    for path in [
        "/Photos/a.jpg",
        "/Photos/b.jpg",
        "/Photos/c.jpg",
        "/Photos/d.jpg",
        "/Docs/old.doc",
    ] {
        assert_eq!(dest.items()[path].state, "pending", "{path}");
    }

    let out = run(&mut against(&sim, &dest, "backup"));
    assert_eq!(out.status.code(), Some(0));
    for path in ["Photos/a.jpg", "Photos/c.jpg", "Docs/e.txt"] {
        let expected = u64::from(path != "Docs/e.txt") + 1;
        assert_eq!(
            sim.downloads_of(path),
            expected,
            "{path}: fetched again only if repaired"
        );
    }
    assert_same_bytes(
        &sim,
        &dest,
        [
            "Photos/a.jpg",
            "Photos/b.jpg",
            "Photos/c.jpg",
            "Photos/d.jpg",
            "Docs/old.doc",
        ],
    );
    let out = run(&mut verify(&dest));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["files_checked"], 9);
}

#[test]
fn a_folder_swapped_for_a_link_is_never_read_through() {
    let (_sim, dest) = backed_up();
    let outside = tempfile::tempdir().unwrap();
    let moved = outside.path().join("Docs");
    std::fs::rename(dest.join("Docs"), &moved).unwrap();
    symlink(&moved, dest.join("Docs")).unwrap();
    let out = run(&mut verify(&dest));
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["missing"], 5, "{doc}");
    assert_eq!(doc["bytes_read"], 315_000, "only Photos was read");
    let mut human = odbackup();
    let out = run(human.args(["verify", "--dest"]).arg(dest.path()));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("5 missing"), "{text}");
    assert!(
        text.contains("Docs is a symbolic link or not a folder now (never followed)"),
        "{text}"
    );
    assert!(text.contains("odbackup verify --repair"), "{text}");
}

#[test]
fn a_sample_checks_about_that_share_of_the_files() {
    let (_sim, dest) = backed_up();
    std::fs::remove_file(dest.join("Photos/c.jpg")).unwrap();
    let out = run(verify(&dest).args(["--sample", "0"]));
    assert_eq!(out.status.code(), Some(0), "nothing sampled, nothing found");
    let doc = json(&out);
    assert_eq!(
        (
            doc["files_checked"].as_u64(),
            doc["files_in_backup"].as_u64()
        ),
        (Some(0), Some(9))
    );
    let out = run(verify(&dest).args(["--sample", "100"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["files_checked"], 9);
    let out = run(verify(&dest).args(["--sample", "150"]));
    assert_eq!(out.status.code(), Some(2), "not a percentage");
}

/// Every file or link below `dir`, as full paths.
fn entries_under(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            entries_under(&entry.path(), out);
        } else {
            out.push(entry.path().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn a_backup_whose_lock_cannot_be_created_is_checked_without_being_recorded() {
    let (_sim, dest) = backed_up();
    // As on read-only media: nothing can create the lock file beside the manifest, so no run can be writing.
    let lock = dest.join(".odbackup/manifest.sqlite.lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let runs = || dest.runs().len();
    let before = runs();
    let out = run(&mut verify(&dest));
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(
        (doc["files_checked"].as_u64(), doc["unrecorded"].as_bool()),
        (Some(9), Some(true))
    );
    assert_eq!(runs(), before, "nothing written");
    let out = run(verify(&dest).arg("--repair"));
    assert_eq!(out.status.code(), Some(5), "a repair needs the lock");
}
