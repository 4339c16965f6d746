//! The command line's edges (issues 13 and 14): transient 401s, readers beside a running backup, hostile names
//! on the terminal, stop signals, plain-http endpoints, private log files.

use graphsim::{Failure, RequestKind, Simulator, Tree};

use crate::support::{TestDest, device_login, odbackup, run, signed_in, with_token};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- plain-http endpoints ------------------------------------------------------------------------------

#[test]
fn a_plain_http_graph_or_sign_in_url_off_this_machine_is_refused_before_any_token_is_sent() {
    // Hosts that are not loopback: the run must stop before it connects anywhere.
    let dest = TestDest::new();
    for url in [
        "http://graph.microsoft.com/v1.0",
        "http://10.1.2.3/v1.0",
        "http://[::2]:8080/v1.0",
    ] {
        let out = run(odbackup()
            .args(["crawl", "--dest"])
            .arg(dest.path())
            .args(["--graph-url", url])
            .env("ODBACKUP_ACCESS_TOKEN", "secret-token"));
        assert_exit!(out, 2, "{url}");
        let err = stderr(&out);
        assert!(
            err.contains("plain http") && err.contains("--graph-url") && err.contains("loopback"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        // The environment and the config file are held to the same rule.
        let out = run(odbackup()
            .args(["whoami"])
            .env("ODBACKUP_GRAPH_URL", url)
            .env("ODBACKUP_ACCESS_TOKEN", "secret-token"));
        assert_exit!(out, 2, "{url}");
    }
    let out = run(odbackup().args([
        "login",
        "--client-id",
        "c",
        "--auth-url",
        "http://login.example.com",
    ]));
    assert_exit!(out, 2);
    assert!(stderr(&out).contains("--auth-url"), "{}", stderr(&out));
    // Nothing was created for the refused runs.
    assert!(!dest.manifest().exists());

    // Loopback hosts stay usable (the simulator listens on 127.0.0.1).
    let sim = Simulator::start(Tree::personal().file("a.txt", 3));
    let out = run(&mut crate::support::against(&sim, &dest, "backup"));
    assert_exit!(out, 0);
    let localhost = sim.graph_url().replace("127.0.0.1", "localhost");
    let out = run(odbackup()
        .args(["whoami", "--graph-url", &localhost])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token()));
    assert_exit!(out, 0);
}

// ---- private log file, no URL left in the manifest's free space ------------------------------------------

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn the_log_file_is_readable_by_its_owner_only_even_when_it_already_existed() {
    use std::os::unix::fs::PermissionsExt as _;
    let sim = Simulator::start(Tree::personal().file("Secret Plans/a.txt", 3));
    let logs = tempfile::tempdir().unwrap();
    let fresh = logs.path().join("new.log");
    let older = logs.path().join("old.log");
    std::fs::write(&older, "an earlier run's lines\n").unwrap();
    std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o644)).unwrap();
    for log in [&fresh, &older] {
        let dest = TestDest::new();
        let out = run(crate::support::against(&sim, &dest, "backup")
            .arg("--log-file")
            .arg(log));
        assert_exit!(out, 0);
        assert_eq!(mode(log), 0o600, "{}", log.display());
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("run finished"), "the log was written: {text}");
    }
    assert!(
        std::fs::read_to_string(&older)
            .unwrap()
            .starts_with("an earlier run's lines")
    );
}

/// A link planted at the log's name (a shared folder) would have lines naming the drive's items appended to the
/// file it points at: refused before anything runs, and the file left as it was. A link to a terminal or a
/// descriptor (`/dev/stderr`) still works.
#[cfg(unix)]
#[test]
fn a_log_file_name_that_is_a_link_to_a_file_is_refused_and_the_file_left_alone() {
    let sim = Simulator::start(Tree::personal().file("echo pwned > x; #.txt", 3));
    let logs = tempfile::tempdir().unwrap();
    let victim = logs.path().join("victim.rc");
    std::fs::write(&victim, "export A=1\n").unwrap();
    let log = logs.path().join("odbackup.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let dest = TestDest::new();
    let out = run(crate::support::against(&sim, &dest, "backup")
        .arg("--log-file")
        .arg(&log));
    assert_exit!(out, 2);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("symbolic link"), "{said}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "export A=1\n");
    assert!(dest.files_on_disk().is_empty(), "nothing ran");
    // A link to a file that does not exist yet would have been created through.
    let missing = logs.path().join("profile");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&missing, &log).unwrap();
    let out = run(crate::support::against(&sim, &dest, "backup")
        .arg("--log-file")
        .arg(&log));
    assert_exit!(out, 2);
    assert!(!missing.exists());
    let out = run(crate::support::against(&sim, &dest, "backup")
        .arg("--log-file")
        .arg("/dev/stderr"));
    assert_exit!(out, 0);
}

#[test]
fn no_download_url_stays_readable_in_the_manifest_files_after_a_backup() {
    let tree = (0..300).fold(Tree::personal(), |t, i| {
        t.file(&format!("p/{}/{i}.jpg", i % 7), 100 + i)
    });
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let out = run(&mut crate::support::against(&sim, &dest, "backup"));
    assert_exit!(out, 0);
    assert_eq!(dest.listed_url_count(), 0, "the rows are gone");
    let dir = dest.manifest().parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"tempauth="),
            "{} still holds a download URL's credential in its bytes",
            path.display()
        );
    }
}

// ---- terminal escapes in remote names --------------------------------------------------------------------

/// Names that would command a terminal, with what a terminal must never receive from them.
const HOSTILE: [&str; 5] = [
    "\u{1b}]0;pwned\u{7}title.txt",
    "clear\u{1b}[2J\u{1b}[H.txt",
    "invoice\u{202e}fdp.exe",
    "c1\u{9b}31mred.txt",
    "two\nlines.txt",
];

fn assert_terminal_safe(what: &str, text: &str) {
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(
            !text.contains(bad),
            "{what} sends {bad:?} to the terminal: {text:?}"
        );
    }
}

#[test]
fn remote_names_reach_human_output_escaped_and_json_exact() {
    let mut tree = Tree::personal().folder_named_in("", "dir\u{1b}[31m");
    for name in HOSTILE {
        tree = tree
            .file_named_in("", name, 10)
            .file_named_in("dir\u{1b}[31m", name, 5);
    }
    let sim = Simulator::start(tree);
    let dest = TestDest::new();
    let list = |args: &[&str]| run(with_token(&sim).args(args));
    let out = list(&["ls", "/"]);
    assert_exit!(out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_terminal_safe("ls", &text);
    assert!(text.contains("\\x1b]0;pwned\\x07title.txt"), "{text}");
    assert!(text.contains("invoice\\u{202e}fdp.exe"), "{text}");
    assert_eq!(
        text.lines().count(),
        HOSTILE.len() + 2,
        "one line per entry, a name cannot break one: {text}"
    );
    let out = list(&["tree", "/", "--files"]);
    assert_exit!(out, 0);
    assert_terminal_safe("tree", &String::from_utf8_lossy(&out.stdout));

    // --json keeps every name exact.
    let out = list(&["ls", "/", "--json"]);
    let names: Vec<String> = crate::support::json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    for name in HOSTILE {
        assert!(names.iter().any(|n| n == name), "{name:?} in {names:?}");
    }

    // A file that fails shows its name escaped in the run's output and in `failures`.
    sim.fail_always(
        Failure::access_denied()
            .for_item(HOSTILE[1])
            .only(RequestKind::Download),
    );
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("run.log");
    let out = run(crate::support::against(&sim, &dest, "backup")
        .arg("-vv")
        .arg("--log-file")
        .arg(&log_file));
    assert_exit!(out, 1);
    assert_terminal_safe("the log file", &std::fs::read_to_string(&log_file).unwrap());
    assert_terminal_safe("backup stdout", &String::from_utf8_lossy(&out.stdout));
    let log = stderr(&out);
    assert_terminal_safe("backup log", &log);
    assert!(
        log.contains("invoice\\u{202e}fdp.exe") || log.contains("clear\\x1b[2J"),
        "the log names the files, escaped: {log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("lines.txt")),
        "a name cannot start a log line of its own"
    );
    let out = run(odbackup().args(["failures", "--dest"]).arg(dest.path()));
    assert_exit!(out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_terminal_safe("failures", &text);
    assert!(text.contains("clear\\x1b[2J\\x1b[H.txt"), "{text}");
    let out = run(odbackup()
        .args(["failures", "--json", "--dest"])
        .arg(dest.path()));
    let rows = crate::support::json(&out);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["remote_path"].as_str() == Some(&format!("/{}", HOSTILE[1]))),
        "{rows}"
    );
}

// ---- stop signals --------------------------------------------------------------------------------------

#[cfg(unix)]
fn send(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child process, whose pid we hold and have not yet waited for.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0);
}

#[cfg(unix)]
#[test]
fn sigterm_and_sighup_stop_a_backup_like_ctrl_c_and_the_next_run_finishes() {
    use std::time::Duration;
    let mut tree = Tree::personal().file("big.bin", 40_000_000);
    for i in 0..200 {
        tree = tree.file(&format!("q/{i:03}.jpg"), 20_000);
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(10));
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let dest = TestDest::new();
        let child = crate::support::against(&sim, &dest, "backup")
            .args(["--concurrency", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        crate::support::eventually(Duration::from_secs(60), "some finished files", || {
            (dest.done_files()? >= 10).then_some(())
        });
        send(&child, signal);
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        let outcome = dest.runs().pop().and_then(|(_, outcome)| outcome);
        assert_eq!(
            outcome.as_deref(),
            Some("interrupted"),
            "the run's outcome is on record"
        );
        assert_eq!(
            dest.listed_url_count(),
            0,
            "the listing's download URLs are cleared"
        );
        let out = run(&mut crate::support::against(&sim, &dest, "backup"));
        assert_exit!(out, 0);
        crate::support::assert_same_bytes(&sim, &dest, ["big.bin", "q/000.jpg", "q/199.jpg"]);
    }
}

// ---- readers beside a running backup -------------------------------------------------------------------

#[test]
fn status_and_failures_racing_a_first_backup_fail_neither_and_create_nothing_on_their_own() {
    let tree = (0..30).fold(Tree::personal(), |t, i| {
        t.file(&format!("a/{i}.txt"), 50 + i)
    });
    let sim = Simulator::start(tree);
    for round in 0..15 {
        let dest = TestDest::new();
        let mut backup = crate::support::against(&sim, &dest, "backup")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut reads = 0;
        let finished = loop {
            let command = if reads % 2 == 0 { "status" } else { "failures" };
            let out = odbackup()
                .args([command, "--dest"])
                .arg(dest.path())
                .output()
                .unwrap();
            let err = stderr(&out);
            match out.status.code() {
                Some(0) => {}
                // Before the backup created it: the one answer a reader may give.
                Some(2) if err.contains("no manifest") => {}
                other => panic!("round {round}: {command} exited {other:?}: {err}"),
            }
            reads += 1;
            if let Some(status) = backup.try_wait().unwrap() {
                break status;
            }
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut backup.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(
            finished.code(),
            Some(0),
            "round {round}: the backup failed: {err}"
        );
    }

    // A reader pointed at nothing says so and leaves nothing behind.
    let empty = TestDest::new();
    for command in ["status", "failures"] {
        let out = run(odbackup().args([command, "--dest"]).arg(empty.path()));
        assert_exit!(out, 2);
        assert!(stderr(&out).contains("no manifest"), "{}", stderr(&out));
    }
    let elsewhere = empty.join("not/here/manifest.sqlite");
    let out = run(odbackup().args(["status", "--manifest"]).arg(&elsewhere));
    assert_exit!(out, 2);
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}

// ---- transient 401s ------------------------------------------------------------------------------------

fn folders_tree() -> Tree {
    (0..24).fold(Tree::personal(), |t, i| {
        t.file(&format!("f{}/{i}.txt", i % 12), 10 + i)
    })
}

#[test]
fn a_401_graph_answers_to_a_valid_token_is_retried_and_the_backup_completes() {
    // With ODBACKUP_ACCESS_TOKEN (nothing to refresh): the drive read and a third of the folder listings are
    // refused once.
    let sim = Simulator::start(folders_tree());
    sim.fail_next(
        1,
        Failure::transient_unauthorized().only(RequestKind::Drive),
    );
    sim.fail_fraction(
        0.34,
        Failure::transient_unauthorized().only(RequestKind::Children),
    );
    let dest = TestDest::new();
    let out =
        run(crate::support::against(&sim, &dest, "backup").args(["--crawl-method", "children"]));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert!(sim.failures_served() >= 4, "{}", sim.failures_served());
    assert_eq!(dest.file_paths().len(), 24);
    crate::support::assert_same_bytes(&sim, &dest, ["f0/0.txt", "f11/23.txt"]);

    // Signed in: one refresh for the first 401, then the 401s to the fresh token are waited out.
    let sim = Simulator::start(folders_tree());
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 0, &[]);
    sim.fail_next(
        3,
        Failure::transient_unauthorized().only(RequestKind::Drive),
    );
    let dest = TestDest::new();
    let out = run(signed_in(&sim, config.path())
        .args(["backup", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_eq!(sim.refreshes(), 1, "one refresh, not one per 401");
    assert_eq!(sim.requests(RequestKind::Drive), 4);
    assert_eq!(dest.file_paths().len(), 24);
}

#[test]
fn a_401_that_persists_is_a_refused_sign_in_after_a_few_attempts() {
    let sim = Simulator::start(folders_tree());
    sim.fail_always(Failure::transient_unauthorized());
    let dest = TestDest::new();
    let out = run(&mut crate::support::against(&sim, &dest, "backup"));
    assert_exit!(out, 3);
    assert!(
        stderr(&out).contains("ODBACKUP_ACCESS_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        sim.requests(RequestKind::Drive),
        4,
        "a few attempts, not one and not forever"
    );

    let sim = Simulator::start(folders_tree());
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 0, &[]);
    sim.fail_always(Failure::transient_unauthorized().only(RequestKind::Drive));
    let out = run(signed_in(&sim, config.path())
        .args(["backup", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("odbackup login") && err.contains("renewed"),
        "{err}"
    );
    assert_eq!(sim.refreshes(), 1);
    assert_eq!(
        sim.requests(RequestKind::Drive),
        5,
        "one before the refresh, four after"
    );
}
