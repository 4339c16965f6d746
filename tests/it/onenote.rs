//! `OneNote` notebooks: a `package` of type `oneNote` is backed up as a folder of its section files, named like
//! the notebook, on personal drives (package facet alone) and business ones (a folder facet beside it).

use graphsim::{Simulator, Tree};

use crate::support::{TestDest, against, assert_same_bytes, json, odbackup, run};

const SECTIONS: [&str; 4] = [
    "Notebooks/Work/Meetings.one",
    "Notebooks/Work/Ideas.one",
    "Notebooks/Work/Open Notebook.onetoc2",
    "Notebooks/Work/Projects/Plan.one",
];

fn with_notebook(tree: Tree) -> Tree {
    SECTIONS
        .iter()
        .enumerate()
        .fold(tree.onenote_package("Notebooks/Work"), |t, (i, path)| {
            t.file(path, 5_000 + i as u64 * 700)
        })
        .file("Notebooks/readme.txt", 100)
}

fn status(dest: &TestDest) -> String {
    let out = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_notebooks_sections_are_backed_up_and_verified_on_personal_and_business_drives() {
    for (tree, method) in [
        (Tree::personal(), "delta"),
        (Tree::personal(), "children"),
        (Tree::business(), "delta"),
        (Tree::business(), "children"),
    ] {
        let sim = Simulator::start(with_notebook(tree));
        let dest = TestDest::new();
        let out = run(against(&sim, &dest, "backup").args(["--crawl-method", method, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{method}");
        let summary = json(&out);
        assert_eq!(
            summary["notebooks"]["notebooks"], 1,
            "the run summary counts it"
        );
        assert_eq!(summary["notebooks"]["section_files_done"], 4);
        assert_same_bytes(&sim, &dest, SECTIONS);
        assert_eq!(
            sim.downloads_of("Notebooks/Work"),
            0,
            "the notebook itself has no content"
        );
        let items = dest.items();
        for path in SECTIONS {
            let row = &items[&format!("/{path}")];
            assert_eq!(row.state, "done", "{path} ({method})");
        }
        let notebook = &items["/Notebooks/Work"];
        assert_eq!(
            (notebook.kind.as_str(), notebook.package.as_deref()),
            ("folder", Some("oneNote"))
        );
        let verified = items
            .iter()
            .filter(|(path, r)| {
                path.starts_with("/Notebooks/Work/")
                    && r.verification.as_deref() == Some("quickxor")
            })
            .count();
        assert_eq!(verified, 4, "each section checked by its hash ({method})");
        assert!(
            status(&dest).contains("OneNote notebooks: 1 (4 section files on disk)"),
            "{}",
            status(&dest)
        );

        // A new section and a changed one between two runs come with the next (incremental) run.
        sim.add_file("Notebooks/Work/Later.one", 4_321);
        sim.modify_file("Notebooks/Work/Ideas.one");
        let out = run(&mut against(&sim, &dest, "backup"));
        assert_eq!(out.status.code(), Some(0), "{method}");
        assert_same_bytes(
            &sim,
            &dest,
            ["Notebooks/Work/Later.one", "Notebooks/Work/Ideas.one"],
        );
        assert_eq!(
            sim.downloads_of("Notebooks/Work/Meetings.one"),
            1,
            "unchanged sections are not fetched again"
        );

        let out = run(odbackup()
            .args(["verify", "--json", "--dest"])
            .arg(dest.path()));
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(json(&out)["files_checked"], 6);
    }
}

#[test]
fn no_onenote_leaves_notebooks_out_on_record() {
    let sim = Simulator::start(with_notebook(Tree::business()));
    let dest = TestDest::new();
    let out = run(against(&sim, &dest, "backup").arg("--no-onenote"));
    assert_eq!(out.status.code(), Some(0));
    let items = dest.items();
    let notebook = &items["/Notebooks/Work"];
    assert_eq!(
        (notebook.kind.as_str(), notebook.state.as_str()),
        ("package", "skipped")
    );
    assert!(
        notebook
            .skip_reason
            .as_deref()
            .unwrap()
            .contains("--no-onenote")
    );
    assert!(
        !items.keys().any(|p| p.starts_with("/Notebooks/Work/")),
        "nothing below it is listed"
    );
    assert!(!dest.join("Notebooks/Work").exists());
    assert_same_bytes(&sim, &dest, ["Notebooks/readme.txt"]);
    for path in SECTIONS {
        assert_eq!(sim.downloads_of(path), 0, "{path}");
    }

    // Wanted again: the next run lists in full (an incremental round would not mention an unchanged notebook).
    let out = run(&mut against(&sim, &dest, "backup"));
    assert_eq!(out.status.code(), Some(0));
    assert_same_bytes(&sim, &dest, SECTIONS);
    assert_eq!(dest.items()["/Notebooks/Work"].kind, "folder");
}
