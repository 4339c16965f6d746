//! Remote names are untrusted input: nothing is ever written outside the destination.

use graphsim::{Simulator, Tree};

use crate::support::{against_at, odbackup, run};

#[test]
fn hostile_names_never_escape_the_destination_and_safe_items_are_all_downloaded() {
    let tree = Tree::personal()
        .folder("In")
        .file_named_in("In", "..", 11)
        .file_named_in("In", ".", 12)
        .file_named_in("In", "a/b", 13)
        .file_named_in("In", "/etc/x", 14)
        .file_named_in("In", "nul\0byte", 15)
        .file_named_in("In", &("写".repeat(100) + ".jpg"), 16)
        .file_named_in("In", "Foo", 17)
        .file_named_in("In", "foo", 18)
        .folder_named_in("In", "..")
        .file("In/plain.txt", 19);
    let sim = Simulator::start(tree);
    let outer = tempfile::tempdir().unwrap();
    let dest_path = outer.path().join("dest");
    std::fs::create_dir(&dest_path).unwrap();
    let mut cmd = against_at(&sim, &dest_path, "backup");
    let out = run(&mut cmd);
    assert_exit!(out, 0);
    // Nothing next to the destination: the parent holds only `dest`.
    let siblings: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["dest"]);
    // Every file is inside `dest/In`, one per remote item, with the remote bytes.
    let inside: Vec<_> = std::fs::read_dir(dest_path.join("In"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let files: Vec<_> = inside
        .iter()
        .filter(|e| e.file_type().unwrap().is_file())
        .collect();
    assert_eq!(
        files.len(),
        9,
        "{:?}",
        inside
            .iter()
            .map(std::fs::DirEntry::file_name)
            .collect::<Vec<_>>()
    );
    let mut sizes: Vec<u64> = files.iter().map(|e| e.metadata().unwrap().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [11, 12, 13, 14, 15, 16, 17, 18, 19]);
    assert_eq!(
        std::fs::read(dest_path.join("In/plain.txt")).unwrap(),
        sim.content("In/plain.txt")
    );
    assert!(!outer.path().join("etc").exists() && !std::path::Path::new("/etc/x").exists());
}

#[test]
fn a_symlink_inside_the_destination_is_never_followed_out_of_it() {
    let tree = Tree::personal()
        .file("In/a.jpg", 1_000)
        .file("In/sub/b.jpg", 2_000)
        .file("Ok/c.jpg", 3_000);
    let sim = Simulator::start(tree);
    let outer = tempfile::tempdir().unwrap();
    let (dest, elsewhere) = (outer.path().join("dest"), outer.path().join("elsewhere"));
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dest.join("In")).unwrap();
    let mut cmd = against_at(&sim, &dest, "backup");
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the two files behind the link fail"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing was written through the link"
    );
    assert_eq!(
        std::fs::read(dest.join("Ok/c.jpg")).unwrap(),
        sim.content("Ok/c.jpg")
    );
    let mut failures = odbackup();
    failures.args(["failures", "--json", "--dest"]).arg(&dest);
    let failures: serde_json::Value = serde_json::from_slice(&run(&mut failures).stdout).unwrap();
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(
        failures.iter().all(|f| f["class"] == "path"),
        "{failures:?}"
    );
}
