//! Looking before backing up: `ls` and `tree` on the remote drive, and shell completions.

use graphsim::{Simulator, Tree};

use crate::support::{json, odbackup, run, with_token};

fn drive() -> Simulator {
    Simulator::start(
        Tree::personal()
            .file("Pictures/2021/a.jpg", 1_000)
            .file("Pictures/2021/b.jpg", 2_000)
            .file("Pictures/2022/c.mp4", 30_000)
            .file("Pictures/cover.png", 500)
            .file("Documents/cv.pdf", 4_000)
            .folder("Empty"),
    )
}

fn cmd(sim: &Simulator, args: &[&str]) -> std::process::Command {
    let mut cmd = with_token(sim);
    cmd.args(args);
    cmd
}

#[test]
fn ls_lists_a_folder_folders_first_with_sizes_and_a_total() {
    let sim = drive();
    let out = run(&mut cmd(&sim, &["ls", "/Pictures"]));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("folder") && lines[0].ends_with("2021/"),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with("2022/") && lines[2].ends_with("cover.png"),
        "{stdout}"
    );
    assert!(
        lines[0].contains("2.9 KiB"),
        "a folder's size is what is below it: {stdout}"
    );
    assert_eq!(lines[3], "2 folders, 1 files, 32.7 KiB in all");

    let out = run(&mut cmd(&sim, &["ls", "--json"]));
    let entries = json(&out);
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Documents", "Empty", "Pictures"]);
    assert_eq!(entries[2]["size"], 33_500);
}

#[test]
fn tree_draws_folders_to_the_asked_depth_and_files_on_request() {
    let sim = drive();
    let out = run(&mut cmd(&sim, &["tree", "--depth", "2"]));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "/  (36.6 KiB)",
            "├── Documents/  (3.9 KiB, 1 items)",
            "├── Empty/  (0 B, 0 items)",
            "└── Pictures/  (32.7 KiB, 3 items)",
            "    ├── 2021/  (2.9 KiB, 2 items)",
            "    └── 2022/  (29.3 KiB, 1 items)",
        ]
    );
    let out = run(&mut cmd(
        &sim,
        &["tree", "/Pictures", "--depth", "5", "--files"],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("│   ├── a.jpg  (1000 B)"), "{stdout}");
    assert!(stdout.contains("└── cover.png  (500 B)"), "{stdout}");
}

#[test]
fn a_path_that_is_not_on_the_drive_is_a_usage_error() {
    let sim = drive();
    let out = run(&mut cmd(&sim, &["ls", "/Nope"]));
    assert_exit!(out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no /Nope on the drive"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef odbackup"),
        ("fish", "complete -c odbackup"),
    ] {
        let out = run(odbackup().args(["completions", shell]));
        assert_exit!(out, 0);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(marker) && script.contains("dry-run"),
            "{shell}"
        );
    }
}
