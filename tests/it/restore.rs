//! `odbackup restore`: a backup put back on a drive — another account's, or another folder — under the original
//! names and folders, verified, resumable, idempotent; and a plain folder uploaded the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use graphsim::{Failure, FileOpts, RequestKind, Simulator, Tree};

use crate::support::{TestDest, eventually, json, odbackup, run, signed_in, with_token};

/// `odbackup restore --from DEST` against the simulator, with its token.
fn restore(sim: &Simulator, from: &Path) -> Command {
    let mut cmd = with_token(sim);
    cmd.args(["restore", "--from"]).arg(from);
    cmd
}

/// `odbackup restore --from-folder DIR`, keeping its state in `state` (a manifest path).
fn restore_folder(sim: &Simulator, dir: &Path, state: &Path) -> Command {
    let mut cmd = odbackup();
    cmd.args(["restore", "--from-folder"])
        .arg(dir)
        .arg("--manifest")
        .arg(state)
        .args(["--graph-url", &sim.graph_url()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token());
    cmd
}

fn backup(sim: &Simulator, dest: &TestDest) -> Command {
    crate::support::against(sim, dest, "backup")
}

/// Names that need care everywhere: spaces and URL characters, accents and emoji, a name too long for a local
/// file name (odbackup shortens it on disk), an empty file, a file large enough for an upload session, one
/// fetched and sent in many pieces, deep nesting and an empty folder.
fn odd_tree(big: u64) -> Tree {
    let long_name = format!("{}.jpg", "長".repeat(100));
    Tree::personal()
        .file_with(
            "Photos/2021/IMG 0001 #1 + 100%.jpg",
            150_000,
            FileOpts::new()
                .photo("2021-06-01T10:00:00Z")
                .created("2021-06-01T10:00:00Z")
                .modified("2021-06-01T10:00:05Z"),
        )
        .file_with(
            "Docs/résumé – final (v2).docx",
            20_000,
            FileOpts::new().modified("2019-01-02T03:04:05Z"),
        )
        .file_with(
            "Docs/empty.txt",
            0,
            FileOpts::new().modified("2018-01-01T00:00:00Z"),
        )
        .file_with(
            &format!("Long/{long_name}"),
            3_000,
            FileOpts::new().modified("2017-07-07T07:07:07Z"),
        )
        .file_with(
            "Music/🎵 it's a song.mp3",
            5_000_000,
            FileOpts::new().modified("2016-06-06T06:06:06Z"),
        )
        .file_with(
            "Videos/big.mov",
            big,
            FileOpts::new().modified("2015-05-05T05:05:05Z"),
        )
        .file_with(
            "a/b/c/d/deep.txt",
            10,
            FileOpts::new().modified("2014-04-04T04:04:04Z"),
        )
        .folder("Empty/Nested")
}

/// `remote path → (kind, size, quickXorHash)` of a backup, and each file's bytes and mtime by remote path.
type Listing = BTreeMap<String, (String, Option<i64>, Option<String>)>;

fn listing(dest: &TestDest) -> Listing {
    dest.items()
        .into_iter()
        .filter(|(path, _)| path != "/")
        .map(|(path, row)| (path, (row.kind, row.size, row.quick_xor)))
        .collect()
}

fn contents(dest: &TestDest) -> BTreeMap<String, (Vec<u8>, i64)> {
    dest.items()
        .into_iter()
        .filter(|(_, row)| row.kind == "file")
        .map(|(path, row)| {
            let local = dest.join(row.local_path.as_deref().unwrap());
            let bytes = std::fs::read(&local).unwrap_or_else(|e| panic!("{path}: {e}"));
            let meta = std::fs::metadata(&local).unwrap();
            let mtime = filetime::FileTime::from_last_modification_time(&meta).unix_seconds();
            (path, (bytes, mtime))
        })
        .collect()
}

#[test]
fn a_backup_restored_into_an_empty_drive_backs_up_byte_identical_under_the_same_names() {
    let big = 24_000_000;
    let a = Simulator::start(odd_tree(big));
    let first = TestDest::new();
    let out = run(backup(&a, &first).args(["--chunk-size", "1M"]));
    assert_exit!(out, 0);
    assert!(
        a.ranges_of("Videos/big.mov").len() > 10,
        "the big file was fetched in ranges"
    );

    let b = Simulator::start(Tree::personal());
    let out = run(restore(&b, first.path()).args(["--chunk-size", "1M", "--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(summary["uploaded"], 7, "{summary}");
    assert_eq!(summary["failed"], 0);
    // Small files went up in one PUT each, the two larger ones in sessions of 960 KiB fragments.
    assert_eq!(b.requests(RequestKind::Upload), 5);
    assert_eq!(b.upload_sessions_created(), 2);
    let fragments = (big.div_ceil(983_040)) + 5_000_000u64.div_ceil(983_040);
    assert_eq!(b.requests(RequestKind::UploadFragment), fragments);
    let total: u64 = 150_000 + 20_000 + 3_000 + 5_000_000 + big + 10;
    assert_eq!(b.bytes_uploaded(), total, "every byte sent once");
    assert_eq!(
        b.authorization_headers_on_upload_host(),
        0,
        "upload URLs are pre-authenticated: the bearer never goes there"
    );
    assert_eq!(
        b.file_system_times("Photos/2021/IMG 0001 #1 + 100%.jpg"),
        (
            "2021-06-01T10:00:00Z".to_owned(),
            "2021-06-01T10:00:05Z".to_owned()
        )
    );
    assert!(b.exists("Empty/Nested"), "empty folders come back too");

    let second = TestDest::new();
    let out = run(backup(&b, &second).args(["--chunk-size", "1M"]));
    assert_exit!(out, 0);
    assert_eq!(
        listing(&first),
        listing(&second),
        "the same names, sizes and hashes"
    );
    let (one, two) = (contents(&first), contents(&second));
    assert_eq!(one.len(), 7);
    for (path, (bytes, mtime)) in &one {
        let (other, other_mtime) = &two[path];
        assert!(bytes == other, "{path}: the bytes differ");
        assert_eq!(mtime, other_mtime, "{path}: the modification time differs");
    }
    assert!(second.join("Empty/Nested").is_dir());

    // A re-run uploads nothing, and says why.
    b.reset_counters();
    let out = run(restore(&b, first.path()).args(["--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(summary["uploaded"], 0);
    let folders = listing(&first)
        .values()
        .filter(|(kind, _, _)| kind == "folder")
        .count();
    assert_eq!(summary["already_done"], 7 + folders as u64, "{summary}");
    assert_eq!(b.bytes_uploaded(), 0);
    assert_eq!(
        b.requests(RequestKind::Upload)
            + b.requests(RequestKind::CreateUploadSession)
            + b.requests(RequestKind::CreateFolder),
        0
    );
}

/// A drive with one large file, for the session tests.
fn one_big_file(size: u64) -> (Simulator, TestDest) {
    let a = Simulator::start(Tree::personal().file("Videos/clip.mov", size));
    let dest = TestDest::new();
    let out = run(&mut backup(&a, &dest));
    assert_exit!(out, 0);
    (a, dest)
}

/// Start a restore, and kill it once the simulator has received `fragments` fragments of `path`.
fn kill_during_upload(b: &Simulator, from: &TestDest, path: &str, fragments: u64) {
    let mut child = restore(b, from.path())
        .args(["--chunk-size", "320K"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), "fragments to arrive", || {
        (b.uploaded_bytes_of(path) >= fragments * 327_680).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_restore_killed_during_a_large_upload_resumes_without_sending_finished_fragments_again() {
    let size = 6_000_000;
    let (a, from) = one_big_file(size);
    let b = Simulator::start(Tree::personal());
    b.set_latency(Duration::from_millis(40));
    kill_during_upload(&b, &from, "/Videos/clip.mov", 4);
    let before = b.uploaded_bytes_of("/Videos/clip.mov");
    assert!(before < size, "killed before the end");
    assert_eq!(b.open_upload_sessions(), 1);
    b.set_latency(Duration::ZERO);
    let out = run(restore(&b, from.path()).args(["--chunk-size", "320K", "--json"]));
    assert_exit!(out, 0);
    assert_eq!(json(&out)["sessions_resumed"], 1);
    assert_eq!(b.upload_sessions_created(), 1, "the same session, resumed");
    // At most the fragment in flight at the kill is sent again.
    let received = b.uploaded_bytes_of("/Videos/clip.mov");
    assert!(
        received <= size + 327_680,
        "{received} bytes received for a {size}-byte file"
    );
    assert_eq!(b.content("Videos/clip.mov"), a.content("Videos/clip.mov"));
}

#[test]
fn an_expired_session_starts_a_new_upload_and_the_file_still_arrives_whole() {
    let size = 5_000_000;
    let (a, from) = one_big_file(size);
    let b = Simulator::start(Tree::personal());
    b.set_latency(Duration::from_millis(40));
    kill_during_upload(&b, &from, "/Videos/clip.mov", 3);
    b.set_latency(Duration::ZERO);
    b.expire_upload_sessions();
    let out = run(restore(&b, from.path()).args(["--chunk-size", "320K"]));
    assert_exit!(out, 0);
    assert_eq!(b.upload_sessions_created(), 2);
    assert_eq!(b.content("Videos/clip.mov"), a.content("Videos/clip.mov"));
    assert_eq!(b.open_upload_sessions(), 0);
}

#[test]
fn restored_into_another_folder_with_filters_only_the_wanted_files_arrive_there() {
    let a = Simulator::start(
        Tree::personal()
            .file("Photos/a.jpg", 1_000)
            .file("Photos/b.heic", 2_000)
            .file("Docs/c.pdf", 3_000),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal().file("Mine/keep.txt", 5));
    let out = run(restore(&b, dest.path()).args([
        "--to",
        "/From Old/Account",
        "--media",
        "photos",
        "--json",
    ]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(
        (summary["uploaded"].as_u64(), summary["excluded"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        b.content("From Old/Account/Photos/a.jpg"),
        a.content("Photos/a.jpg")
    );
    assert!(b.exists("From Old/Account/Photos/b.heic"));
    assert!(!b.exists("From Old/Account/Docs/c.pdf"));
    assert!(b.exists("Mine/keep.txt"));
}

#[test]
fn what_is_already_there_is_skipped_replaced_or_kept_beside_as_asked() {
    let b = Simulator::start(
        Tree::personal()
            .file("Up/same.bin", 4_000)
            .file("Up/other.bin", 4_000)
            .file("Up/big.bin", 5_000_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/Up");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("same.bin"), b.content("Up/same.bin")).unwrap();
    std::fs::write(src.join("other.bin"), b"not what the drive has").unwrap();
    std::fs::write(src.join("big.bin"), b.content("Up/big.bin")).unwrap();
    let state = dir.path().join("state.sqlite");
    let out = run(restore_folder(&b, &dir.path().join("src"), &state).arg("--json"));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(summary["already_there"], 2, "same size and hash: {summary}");
    assert_eq!(summary["skipped_existing"], 1);
    assert_eq!(summary["uploaded"], 0);
    assert_eq!(b.bytes_uploaded(), 0);
    assert_eq!(b.content("Up/other.bin").len(), 4_000, "theirs is kept");

    let out =
        run(restore_folder(&b, &dir.path().join("src"), &state).args(["--on-conflict", "rename"]));
    assert_exit!(out, 0);
    assert_eq!(b.content("Up/other 1.bin"), b"not what the drive has");
    assert_eq!(b.content("Up/other.bin").len(), 4_000);

    let state2 = dir.path().join("state2.sqlite");
    let out = run(
        restore_folder(&b, &dir.path().join("src"), &state2).args(["--on-conflict", "replace"])
    );
    assert_exit!(out, 0);
    assert_eq!(b.content("Up/other.bin"), b"not what the drive has");
}

#[test]
fn names_the_service_refuses_are_refused_before_upload_or_renamed_and_reported() {
    let b = Simulator::start(Tree::personal());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("ok")).unwrap();
    for name in [
        "bad:name.txt",
        "trailing.",
        "CON",
        "~$lock.docx",
        " lead.txt",
    ] {
        std::fs::write(src.join("ok").join(name), name.as_bytes()).unwrap();
    }
    std::fs::write(src.join("ok/fine.txt"), b"fine").unwrap();
    let state = dir.path().join("state.sqlite");
    let out = run(restore_folder(&b, &src, &state).arg("--json"));
    assert_exit!(out, 1, "refused names are failures");
    let summary = json(&out);
    assert_eq!(
        (summary["refused"].as_u64(), summary["uploaded"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(
        b.requests(RequestKind::Upload),
        1,
        "nothing refused was sent"
    );
    let failures = json(&run(odbackup()
        .args(["failures", "--json", "--manifest"])
        .arg(&state)));
    let rows = failures.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let colon = rows
        .iter()
        .find(|r| r["source"] == "ok/bad:name.txt")
        .unwrap();
    assert_eq!(colon["operation"], "restore");
    assert_eq!(colon["class"], "path");
    assert!(
        colon["message"]
            .as_str()
            .unwrap()
            .contains("--rename-invalid"),
        "{colon}"
    );

    let out = run(restore_folder(&b, &src, &state).args(["--rename-invalid", "--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(summary["renamed"], 5, "{summary}");
    let renamed: Vec<String> = summary["renamed_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        renamed.contains(&"/ok/bad：name.txt".to_owned()),
        "{renamed:?}"
    );
    assert_eq!(b.content("ok/bad：name.txt"), b"bad:name.txt");
    assert_eq!(b.content("ok/trailing．"), b"trailing.");
    assert_eq!(b.content("ok/_CON"), b"CON");
    assert!(
        json(&run(odbackup()
            .args(["failures", "--json", "--manifest"])
            .arg(&state)))
        .as_array()
        .unwrap()
        .is_empty()
    );
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_planted_in_a_backup_is_never_followed_nor_its_target_uploaded() {
    let a = Simulator::start(
        Tree::personal()
            .file("Docs/a.txt", 100)
            .file("Docs/b.txt", 100)
            .file("Pics/p.jpg", 100),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"THE SECRET OUTSIDE THE BACKUP").unwrap();
    // A file swapped for a link to a file outside, and a folder swapped for a link to a folder outside.
    std::fs::remove_file(dest.join("Docs/a.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, dest.join("Docs/a.txt")).unwrap();
    std::fs::create_dir_all(outside.path().join("Pics")).unwrap();
    std::fs::write(
        outside.path().join("Pics/p.jpg"),
        b"THE SECRET OUTSIDE THE BACKUP",
    )
    .unwrap();
    std::fs::remove_dir_all(dest.join("Pics")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("Pics"), dest.join("Pics")).unwrap();

    let b = Simulator::start(Tree::personal());
    let out = run(restore(&b, dest.path()).arg("--json"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "files that cannot be put back are failures"
    );
    let summary = json(&out);
    assert_eq!(summary["uploaded"], 1, "{summary}");
    assert_eq!(
        summary["refused"], 3,
        "a.txt, the Pics folder and p.jpg: {summary}"
    );
    assert!(b.exists("Docs/b.txt"));
    assert!(!b.exists("Docs/a.txt") && !b.exists("Pics/p.jpg"));
    assert_eq!(
        b.bytes_uploaded(),
        100,
        "only the real file's bytes left the machine"
    );
}

#[test]
fn a_full_drive_stops_the_run_with_the_space_needed_and_free() {
    let a = Simulator::start(
        Tree::personal()
            .file("x/one.bin", 300_000)
            .file("x/two.bin", 300_000)
            .file("x/three.bin", 5_000_000),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal().file("theirs.bin", 100_000));
    b.set_quota(700_000);
    let out = run(restore(&b, dest.path()).args(["--json", "--concurrency", "1"]));
    assert_exit!(out, 5, "a full drive stops the run");
    let summary = json(&out);
    assert_eq!(summary["fatal_class"], "quota", "{summary}");
    let fatal = summary["fatal"].as_str().unwrap();
    assert!(
        fatal.contains("still to upload") && fatal.contains("free"),
        "{fatal}"
    );
    assert_eq!(summary["space_needed"], 5_000_000);
    assert_eq!(summary["space_free"], 700_000 - 100_000 - 600_000);
    // Once there is room, the same command finishes the job.
    b.set_quota(1 << 30);
    let out = run(&mut restore(&b, dest.path()));
    assert_exit!(out, 0);
    assert_eq!(b.content("x/three.bin"), a.content("x/three.bin"));
}

#[test]
fn a_sign_in_refused_the_write_exits_3_saying_how_to_get_write_access() {
    let a = Simulator::start(Tree::personal().file("Docs/a.txt", 100));
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal());
    b.fail_always(Failure::access_denied().only(RequestKind::CreateFolder));
    let out = run(&mut restore(&b, dest.path()));
    assert_exit!(out, 3);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("login --write"), "{text}");
}

fn stored_scopes(config: &Path) -> Vec<String> {
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("accounts/default.json")).unwrap())
            .unwrap();
    stored["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_read_only_sign_in_is_refused_before_any_write_and_login_write_fixes_it() {
    let a = Simulator::start(Tree::personal().file("Docs/a.txt", 100));
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal());
    let config = tempfile::tempdir().unwrap();
    let approve = || graphsim::DeviceScript {
        pending: 0,
        slow_down: 0,
        outcome: graphsim::DeviceOutcome::Approve,
    };
    b.script_device_code(approve());
    assert_eq!(
        run(signed_in(&b, config.path()).arg("login")).status.code(),
        Some(0)
    );
    assert!(
        !stored_scopes(config.path())
            .iter()
            .any(|s| s.contains("ReadWrite"))
    );
    b.reset_counters();
    let out = run(signed_in(&b, config.path())
        .args(["restore", "--from"])
        .arg(dest.path()));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_exit!(out, 3, "{text}");
    assert!(
        text.contains("login --write") && text.contains("Files.ReadWrite"),
        "{text}"
    );
    assert_eq!(b.total_requests(), 0, "refused before any request");

    b.script_device_code(approve());
    assert_eq!(
        run(signed_in(&b, config.path()).args(["login", "--write"]))
            .status
            .code(),
        Some(0)
    );
    let scopes = stored_scopes(config.path());
    assert!(
        scopes.contains(&"Files.ReadWrite.All".to_owned()),
        "{scopes:?}"
    );
    assert!(!scopes.contains(&"Files.Read.All".to_owned()), "{scopes:?}");
    // The token expires as the restore starts: it is refreshed once, as for a backup.
    b.expire_access_tokens();
    let refreshes = b.refreshes();
    let out = run(signed_in(&b, config.path())
        .args(["restore", "--from"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    assert_eq!(b.content("Docs/a.txt"), a.content("Docs/a.txt"));
    assert_eq!(b.refreshes(), refreshes + 1);
}

#[test]
fn a_personal_backup_goes_to_a_business_library_with_its_stricter_folder_rules() {
    let a = Simulator::start(
        Tree::personal()
            .file("~old/a.txt", 10)
            .file("forms/b.txt", 20)
            .file("ok/c.txt", 30),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::business());
    let out = run(restore(&b, dest.path()).arg("--json"));
    assert_exit!(out, 1);
    let summary = json(&out);
    // `~old` and `forms` (at a library's root) are refused as folders there, with what is in them.
    assert_eq!(summary["uploaded"], 1, "{summary}");
    assert_eq!(b.content("ok/c.txt"), a.content("ok/c.txt"));
    let out = run(restore(&b, dest.path()).args(["--rename-invalid", "--json"]));
    assert_exit!(out, 0);
    assert_eq!(b.content("～old/a.txt"), a.content("~old/a.txt"));
    assert_eq!(b.content("_forms/b.txt"), a.content("forms/b.txt"));
}

#[test]
fn a_dry_run_uploads_nothing_and_status_shows_what_a_restore_did() {
    let a = Simulator::start(
        Tree::personal()
            .file("p/a.jpg", 1_000)
            .file("p/b.jpg", 2_000),
    );
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal());
    let out = run(restore(&b, dest.path()).args(["--dry-run", "--json"]));
    assert_exit!(out, 0);
    let summary = json(&out);
    assert_eq!(
        (
            summary["planned"].as_u64(),
            summary["planned_bytes"].as_u64()
        ),
        (Some(3), Some(3_000)),
        "two files and their folder: {summary}"
    );
    assert_eq!(
        b.requests(RequestKind::Upload) + b.requests(RequestKind::CreateFolder),
        0
    );
    assert_exit!(run(&mut restore(&b, dest.path())), 0);
    let status = json(&run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    let restored = &status["restores"][0];
    assert_eq!(restored["files"]["done"], 2, "{status}");
    assert_eq!(restored["bytes"]["done"], 3_000);
    assert_eq!(status["last_run"]["command"], "restore");
}

#[test]
fn throttled_uploads_wait_out_retry_after_and_every_file_arrives() {
    let mut tree = Tree::personal();
    for i in 0..30 {
        tree = tree.file(&format!("t/{i}.bin"), 10_000 + i);
    }
    let a = Simulator::start(tree.file("t/big.bin", 4_500_000));
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal());
    b.set_in_flight_allowance(Duration::from_millis(300));
    b.fail_next(3, Failure::throttled(1).only(RequestKind::Upload));
    b.fail_next(
        2,
        Failure::unavailable(Some(1)).only(RequestKind::UploadFragment),
    );
    let out = run(restore(&b, dest.path()).args(["--json", "--chunk-size", "1M"]));
    assert_exit!(out, 0);
    assert!(json(&out)["throttled"].as_u64().unwrap() >= 2);
    assert!(b.violations().is_empty(), "{:?}", b.violations());
    for i in 0..30 {
        assert_eq!(
            b.content(&format!("t/{i}.bin")),
            a.content(&format!("t/{i}.bin"))
        );
    }
    assert_eq!(b.content("t/big.bin"), a.content("t/big.bin"));
}

#[test]
fn a_verbose_restore_log_shows_no_upload_url_and_no_token() {
    let (_a, from) = one_big_file(5_000_000);
    let b = Simulator::start(Tree::personal());
    let out = run(restore(&b, from.path()).args(["-vvv", "--chunk-size", "1M"]));
    assert_exit!(out, 0);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() > 10, "the log is verbose");
    assert!(
        !log.contains("/up/"),
        "an upload URL's secret path is in the log"
    );
    assert!(!log.contains(b.token()), "the token is in the log");
}

#[test]
fn a_target_folder_whose_listing_makes_no_progress_fails_its_files_within_a_few_requests() {
    use graphsim::PagingFault;
    for fault in [
        PagingFault::RepeatSameLink,
        PagingFault::PointBackToFirst,
        PagingFault::EmptyPagesForever,
    ] {
        let mut tree = Tree::personal();
        for i in 0..30 {
            tree = tree.file(&format!("Up/there_{i:02}.bin"), 100 + i);
        }
        let b = Simulator::start(tree);
        b.set_page_cap(Some(5));
        b.set_paging_fault(Some(fault), Some("Up"));
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/Up");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("mine.bin"), b"a file of mine").unwrap();
        let state = dir.path().join("state.sqlite");
        b.reset_counters();
        let out = run(restore_folder(&b, &dir.path().join("src"), &state).arg("--json"));
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {}", json(&out));
        assert!(
            b.requests(RequestKind::Children) <= 12,
            "{fault:?}: {} listing requests",
            b.requests(RequestKind::Children)
        );
        assert_eq!(
            json(&out)["uploaded"],
            0,
            "{fault:?}: nothing judged against half a listing"
        );
        assert!(!b.exists("Up/mine.bin"), "{fault:?}");
    }
}

#[test]
fn a_target_answering_every_upload_with_a_server_error_stops_the_restore_early() {
    let mut tree = Tree::personal();
    for i in 0..60 {
        tree = tree.file(&format!("t/{i:02}.bin"), 1_000 + i);
    }
    let a = Simulator::start(tree);
    let dest = TestDest::new();
    assert_exit!(run(&mut backup(&a, &dest)), 0);
    let b = Simulator::start(Tree::personal());
    b.fail_always(Failure::server_error().only(RequestKind::Upload));
    let out = run(restore(&b, dest.path()).args(["--json", "--concurrency", "16"]));
    assert_exit!(out, 5, "a target that fails every upload stops the run");
    let summary = json(&out);
    let fatal = summary["fatal"].as_str().unwrap_or_default();
    assert!(
        fatal.contains("transfers in a row failed with server errors"),
        "{summary}"
    );
    // Sixteen failed uploads in a row stopped it: the files not yet tried were left for the next run, not
    // each sent its whole retry budget.
    let failed = summary["failed"].as_u64().unwrap();
    assert!((16..=32).contains(&failed), "{failed} failed: {summary}");
    let sent = b.requests(RequestKind::Upload);
    assert!(
        sent <= 32 * 6,
        "{sent} uploads sent for {failed} failed files"
    );
    // The service is back: the same command puts everything there.
    b.clear_failures();
    assert_exit!(run(&mut restore(&b, dest.path())), 0);
    for i in 0..60 {
        let path = format!("t/{i:02}.bin");
        assert_eq!(b.content(&path), a.content(&path), "{path}");
    }
}
