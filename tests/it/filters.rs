//! Filtered media exports: each filter selects exactly the expected files, excluded items stay on record,
//! changing filters fetches only what is newly wanted, `--dry-run` writes nothing, the date layout, and the
//! precedence of flags, environment and config file.

use graphsim::{FileOpts, RequestKind, Simulator, Tree};

use crate::download::backup;
use crate::support::{TestDest, against, json, odbackup, run};

/// A small drive with photos, videos, documents and music, with taken and modified dates.
fn library() -> Tree {
    Tree::personal()
        .file_with(
            "Camera Roll/2020/IMG_1.jpg",
            100_000,
            FileOpts::new().photo("2020-05-01T10:00:00Z"),
        )
        .file_with(
            "Camera Roll/2021/IMG_2.heic",
            200_000,
            FileOpts::new().photo("2021-03-04T08:30:00Z"),
        )
        .file_with(
            "Camera Roll/2021/VID_3.mp4",
            3_000_000,
            FileOpts::new()
                .video(12_000)
                .modified("2021-07-01T12:00:00Z"),
        )
        .file_with(
            "Camera Roll/2022/IMG_4.JPG",
            50_000,
            FileOpts::new().photo("2022-01-01T00:00:01Z"),
        )
        // No photo facet: a photo by its extension, dated by its modification time.
        .file_with(
            "Camera Roll/2022/raw.dng",
            2_000_000,
            FileOpts::new().modified("2022-02-02T02:02:02Z"),
        )
        .file_with(
            "Documents/report.docx",
            30_000,
            FileOpts::new().modified("2021-05-05T05:05:05Z"),
        )
        .file_with(
            "Documents/Private/secret.txt",
            1_000,
            FileOpts::new().modified("2019-01-01T00:00:00Z"),
        )
        .file_with(
            "Documents/notes.TMP",
            500,
            FileOpts::new().modified("2023-03-03T03:03:03Z"),
        )
        .file_with(
            "Music/song.mp3",
            4_000_000,
            FileOpts::new().modified("2018-08-08T08:08:08Z"),
        )
        .folder("Empty/Nested")
}

const ALL_FILES: [&str; 9] = [
    "Camera Roll/2020/IMG_1.jpg",
    "Camera Roll/2021/IMG_2.heic",
    "Camera Roll/2021/VID_3.mp4",
    "Camera Roll/2022/IMG_4.JPG",
    "Camera Roll/2022/raw.dng",
    "Documents/Private/secret.txt",
    "Documents/notes.TMP",
    "Documents/report.docx",
    "Music/song.mp3",
];

fn sorted(paths: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn each_filter_and_combination_downloads_exactly_the_expected_files() {
    let sim = Simulator::start(library());
    let photos = [
        "Camera Roll/2020/IMG_1.jpg",
        "Camera Roll/2021/IMG_2.heic",
        "Camera Roll/2022/IMG_4.JPG",
        "Camera Roll/2022/raw.dng",
    ];
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "extensions, any case",
            vec!["--ext", "jpg,heic"],
            vec![
                "Camera Roll/2020/IMG_1.jpg",
                "Camera Roll/2021/IMG_2.heic",
                "Camera Roll/2022/IMG_4.JPG",
            ],
        ),
        (
            "photos by facet or extension",
            vec!["--media", "photos"],
            photos.to_vec(),
        ),
        (
            "videos",
            vec!["--media", "videos"],
            vec!["Camera Roll/2021/VID_3.mp4"],
        ),
        (
            "photos and videos",
            vec!["--media", "all"],
            [&photos[..], &["Camera Roll/2021/VID_3.mp4"]].concat(),
        ),
        (
            "an include glob takes a whole folder",
            vec!["--include", "/camera roll/2021"],
            vec!["Camera Roll/2021/IMG_2.heic", "Camera Roll/2021/VID_3.mp4"],
        ),
        (
            "exclude globs, unanchored and anchored",
            vec!["--exclude", "*.tmp", "--exclude", "/Documents/Private"],
            ALL_FILES
                .iter()
                .copied()
                .filter(|p| !p.ends_with("notes.TMP") && !p.ends_with("secret.txt"))
                .collect(),
        ),
        (
            "a year of media by date taken (modified for the video)",
            vec![
                "--media",
                "all",
                "--since",
                "2021-01-01",
                "--until",
                "2021-12-31",
            ],
            vec!["Camera Roll/2021/IMG_2.heic", "Camera Roll/2021/VID_3.mp4"],
        ),
        (
            "documents by date modified",
            vec!["--until", "2019-12-31"],
            vec!["Documents/Private/secret.txt", "Music/song.mp3"],
        ),
        (
            "size range",
            vec!["--min-size", "40K", "--max-size", "2M"],
            vec![
                "Camera Roll/2020/IMG_1.jpg",
                "Camera Roll/2021/IMG_2.heic",
                "Camera Roll/2022/IMG_4.JPG",
                "Camera Roll/2022/raw.dng",
            ],
        ),
        (
            "everything combined",
            vec![
                "--ext",
                "heic,mp4,docx",
                "--include",
                "/Camera Roll/**",
                "--since",
                "2021-01-01",
                "--max-size",
                "1M",
            ],
            vec!["Camera Roll/2021/IMG_2.heic"],
        ),
    ];
    for (case, args, expected) in cases {
        let dest = TestDest::new();
        let out = run(backup(&sim, &dest).args(&args));
        assert_exit!(out, 0, "{case}");
        assert_eq!(dest.files_on_disk(), sorted(&expected), "{case}");
        for path in &expected {
            assert_eq!(
                std::fs::read(dest.join(path)).unwrap(),
                sim.content(path),
                "{case}: {path}"
            );
        }
        // Every item stays on record; the ones left out are marked with why.
        let rows = dest.file_rows();
        let files = rows.len();
        let excluded = rows.values().filter(|r| r.excluded.is_some()).count();
        assert_eq!(files, ALL_FILES.len(), "{case}");
        assert_eq!(excluded, ALL_FILES.len() - expected.len(), "{case}");
    }
}

#[test]
fn content_filters_do_not_recreate_every_folder_empty_but_a_plain_backup_does() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    assert_eq!(
        run(backup(&sim, &dest).args(["--media", "videos"]))
            .status
            .code(),
        Some(0)
    );
    assert!(!dest.join("Music").exists() && !dest.join("Empty").exists());
    assert!(dest.join("Camera Roll/2021/VID_3.mp4").is_file());
    let plain = TestDest::new();
    assert_exit!(run(&mut backup(&sim, &plain)), 0);
    assert!(plain.join("Empty/Nested").is_dir());
}

#[test]
fn changing_filters_on_a_rerun_downloads_only_the_newly_wanted_files_without_relisting() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    assert_eq!(
        run(backup(&sim, &dest).args(["--media", "photos"]))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sim.requests(RequestKind::Download), 4);

    // `download` judges the manifest's rows again: the video is fetched, nothing else, no listing.
    sim.reset_counters();
    let mut cmd = against(&sim, &dest, "download");
    cmd.args(["--media", "all"]);
    let out = run(&mut cmd);
    assert_exit!(out, 0);
    assert_eq!(sim.requests(RequestKind::Children), 0);
    assert_eq!(sim.requests(RequestKind::Download), 1);
    assert_eq!(sim.downloads_of("Camera Roll/2021/VID_3.mp4"), 1);
    assert!(dest.join("Camera Roll/2021/VID_3.mp4").is_file());

    // Narrowing again deletes nothing: what is on disk stays, and status says so.
    sim.reset_counters();
    assert_eq!(
        run(backup(&sim, &dest).args(["--ext", "heic"]))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_eq!(
        sim.requests(RequestKind::Children),
        0,
        "a re-run asks for changes only"
    );
    assert_eq!(dest.files_on_disk().len(), 5);
    let status = json(&run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    assert_eq!(status["excluded"]["files"], 8);
    assert_eq!(status["excluded"]["on_disk"], 4);
    assert_eq!(status["files"]["done"], 1);
    assert_eq!(status["files"]["pending"], 0);
}

#[test]
fn a_dry_run_writes_no_file_and_says_what_it_would_fetch() {
    let sim = Simulator::start(library());
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--media", "all", "--dry-run", "--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(summary["dry_run"]["files"], 5);
    assert_eq!(
        summary["dry_run"]["bytes"],
        100_000 + 200_000 + 3_000_000 + 50_000 + 2_000_000
    );
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert!(
        dest.files_on_disk().is_empty(),
        "{:?}",
        dest.files_on_disk()
    );
    let dirs: Vec<_> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(dirs, [".odbackup"], "only the manifest's folder");

    // -v lists the files, one line each.
    let out = run(backup(&sim, &dest).args(["--ext", "jpg", "--dry-run", "-v"]));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("would download"))
        .collect();
    assert_eq!(listed.len(), 2, "{stdout}");
    assert!(stdout.contains("/Camera Roll/2022/IMG_4.JPG"), "{stdout}");
    assert!(
        stdout.contains("dry run: would download 2 files"),
        "{stdout}"
    );
    assert!(dest.files_on_disk().is_empty());
}

#[test]
fn the_date_layout_files_media_by_month_taken_with_stable_suffixes_for_twins() {
    let tree = Tree::personal()
        .file_with(
            "A/IMG_0001.JPG",
            1_000,
            FileOpts::new().photo("2021-03-04T08:30:00Z"),
        )
        .file_with(
            "B/IMG_0001.JPG",
            2_000,
            FileOpts::new().photo("2021-03-20T08:30:00Z"),
        )
        .file_with(
            "B/img_0001.jpg",
            3_000,
            FileOpts::new().photo("2021-03-21T08:30:00Z"),
        )
        .file_with(
            "C/clip.mov",
            4_000,
            FileOpts::new()
                .video(1_000)
                .modified("2020-12-31T23:00:00Z"),
        )
        .file_with(
            "notes.txt",
            5,
            FileOpts::new().modified("2019-06-01T00:00:00Z"),
        );
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--layout", "date", "--media", "all"]));
    assert_exit!(out, 0);
    let on_disk = dest.files_on_disk();
    assert_eq!(on_disk.len(), 4, "{on_disk:?}");
    assert!(
        on_disk.contains(&"2020/12/clip.mov".to_owned()),
        "{on_disk:?}"
    );
    let march: Vec<&String> = on_disk
        .iter()
        .filter(|p| p.starts_with("2021/03/"))
        .collect();
    assert_eq!(march.len(), 3, "{on_disk:?}");
    // Each file holds its own item's bytes, whatever name it got.
    for (remote, _) in [
        ("A/IMG_0001.JPG", 0),
        ("B/IMG_0001.JPG", 0),
        ("B/img_0001.jpg", 0),
    ] {
        // The manifest keys items by their canonical ID (personal drive prefixes in lower case).
        let id = sim.item_id(remote).to_ascii_lowercase();
        let local = dest
            .items()
            .into_values()
            .find(|r| r.item_id == id)
            .and_then(|r| r.local_path)
            .expect("a row with a local path");
        assert!(local.starts_with("2021/03/"), "{local}");
        assert_eq!(
            std::fs::read(dest.join(&local)).unwrap(),
            sim.content(remote)
        );
    }
    // A re-run names them the same: nothing is fetched again.
    sim.reset_counters();
    assert_eq!(
        run(backup(&sim, &dest).args(["--layout", "date", "--media", "all"]))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sim.requests(RequestKind::Download), 0);
    assert_eq!(dest.files_on_disk(), on_disk);
    // The layout is the destination's: another one is refused with a clear message.
    let out = run(backup(&sim, &dest).args(["--layout", "mirror"]));
    assert_exit!(out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layout date"));
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_config_file_which_beats_the_default() {
    let sim = Simulator::start(library());
    let config = tempfile::tempdir().unwrap();
    let config_file = config.path().join("config.toml");
    std::fs::write(&config_file, "ext = [\"jpg\"]\nconcurrency = 2\n").unwrap();
    let planned = |config: bool, env: bool, flag: bool| -> u64 {
        let dest = TestDest::new();
        let mut cmd = backup(&sim, &dest);
        cmd.args(["--dry-run", "--json"]);
        if config {
            cmd.arg("--config").arg(&config_file);
        }
        if env {
            cmd.env("ODBACKUP_EXT", "heic,dng");
        }
        if flag {
            cmd.args(["--ext", "mp4"]);
        }
        let out = run(&mut cmd);
        assert_exit!(out, 0);
        json(&out)["dry_run"]["files"].as_u64().unwrap()
    };
    assert_eq!(planned(false, false, false), 9, "default: everything");
    assert_eq!(
        planned(true, false, false),
        2,
        "file: jpg (IMG_1.jpg, IMG_4.JPG)"
    );
    assert_eq!(planned(true, true, false), 2, "env over file: heic and dng");
    assert_eq!(planned(true, true, true), 1, "flag over env: mp4");
}

#[test]
fn a_bad_config_key_or_value_is_an_error_naming_it_and_its_line() {
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("config.toml");
    for (text, needle, line) in [
        (
            "dest = \"/tmp/x\"\nexclud = [\"*.tmp\"]\n",
            "exclud",
            "line 2",
        ),
        ("\n\nmedia = \"pictures\"\n", "pictures", "line 3"),
        ("[profiles.p]\nmin_size = \"lots\"\n", "lots", "line 2"),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = run(odbackup().args(["status", "--config"]).arg(&path));
        assert_exit!(out, 2, "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains(line), "{text}: {err}");
    }
    let out = run(odbackup().args(["backup", "--dest", "/tmp/x", "--since", "last tuesday"]));
    assert_exit!(out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}
