//! Where a setting comes from, through the real binary: a flag beats its environment variable, which beats
//! the config file, which beats the default; and every switch the config file turns on or off can be turned
//! the other way on the command line (`--no-…`, `--…`).

use graphsim::{RequestKind, Simulator, Tree};

use crate::support::{TestDest, against, odbackup, run, with_token};

fn config_with(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_value_comes_from_the_flag_then_the_environment_then_the_config_file() {
    let config = config_with("dest = \"/nonexistent/from-file\"\n");
    let status = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = odbackup();
        cmd.env("ODBACKUP_CONFIG_DIR", config.path()).arg("status");
        if let Some(dest) = env {
            cmd.env("ODBACKUP_DEST", dest);
        }
        if let Some(dest) = flag {
            cmd.args(["--dest", dest]);
        }
        stderr(&run(&mut cmd))
    };
    let from_file = status(None, None);
    assert!(from_file.contains("/nonexistent/from-file/"), "{from_file}");
    let from_env = status(Some("/nonexistent/from-env"), None);
    assert!(from_env.contains("/nonexistent/from-env/"), "{from_env}");
    let from_flag = status(
        Some("/nonexistent/from-env"),
        Some("/nonexistent/from-flag"),
    );
    assert!(from_flag.contains("/nonexistent/from-flag/"), "{from_flag}");
}

#[test]
fn a_switch_comes_from_the_flag_then_the_environment_then_the_config_file() {
    let sim = Simulator::start(
        Tree::personal()
            .file("mine.txt", 100)
            .remote_file("Shared/report.pdf", 1_234),
    );
    let off = config_with("shared = false\n");
    let on = config_with("shared = true\n");
    // (config file, ODBACKUP_SHARED, flag) → whether the shared file is backed up.
    let cases: [(&tempfile::TempDir, Option<&str>, Option<&str>, bool); 5] = [
        (&off, None, None, false),
        (&off, None, Some("--shared"), true),
        (&off, Some("true"), None, true),
        (&off, Some("true"), Some("--no-shared"), false),
        (&on, None, Some("--no-shared"), false),
    ];
    for (config, env, flag, backed_up) in cases {
        let dest = TestDest::new();
        let mut cmd = against(&sim, &dest, "backup");
        cmd.env("ODBACKUP_CONFIG_DIR", config.path());
        if let Some(value) = env {
            cmd.env("ODBACKUP_SHARED", value);
        }
        cmd.args(flag);
        let out = run(&mut cmd);
        assert_exit!(out, 0);
        assert!(dest.join("mine.txt").exists());
        assert_eq!(
            dest.join("Shared/report.pdf").exists(),
            backed_up,
            "{env:?} {flag:?}: {}",
            stderr(&out)
        );
    }
}

/// Files of `size` bytes each in a new folder, for `restore --from-folder`.
fn folder_of(files: usize, size: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..files {
        let bytes: Vec<u8> = (0..size).map(|b| (b * 31 + i) as u8).collect();
        std::fs::write(dir.path().join(format!("file-{i}.bin")), bytes).unwrap();
    }
    dir
}

#[test]
fn restore_takes_concurrency_and_chunk_size_from_the_config_file_unless_a_flag_or_env_says_otherwise()
 {
    // Above 4 MiB each file goes up in an upload session, in fragments of `chunk_size` rounded down to a
    // multiple of 320 KiB: 1M gives 960 KiB fragments, 2M 1920 KiB ones.
    let size = 4_500_000usize;
    let config = config_with("concurrency = 1\nchunk_size = \"1M\"\n");
    let restore = |extra: &[&str], env: Option<(&str, &str)>| {
        let sim = Simulator::start(Tree::personal());
        sim.set_latency(std::time::Duration::from_millis(20));
        let from = folder_of(4, size);
        let state = tempfile::tempdir().unwrap();
        let mut cmd = with_token(&sim);
        cmd.env("ODBACKUP_CONFIG_DIR", config.path())
            .args(["restore", "--from-folder"])
            .arg(from.path())
            .arg("--manifest")
            .arg(state.path().join("restore.sqlite"))
            .args(extra);
        if let Some((key, value)) = env {
            cmd.env(key, value);
        }
        let out = run(&mut cmd);
        assert_exit!(out, 0);
        (
            sim.max_concurrent_uploads(),
            sim.requests(RequestKind::UploadFragment),
        )
    };
    let per_file = |fragment: u64| 4 * (size as u64).div_ceil(fragment);

    let (at_once, fragments) = restore(&[], None);
    assert_eq!(at_once, 1, "the file's concurrency");
    assert_eq!(fragments, per_file(983_040), "the file's chunk_size");

    let (at_once, fragments) = restore(&["--concurrency", "4", "--chunk-size", "2M"], None);
    assert!(
        (2..=4).contains(&at_once),
        "the flag's concurrency: {at_once}"
    );
    assert_eq!(fragments, per_file(1_966_080), "the flag's chunk size");

    let (at_once, fragments) = restore(&[], Some(("ODBACKUP_CHUNK_SIZE", "2M")));
    assert_eq!(at_once, 1);
    assert_eq!(
        fragments,
        per_file(1_966_080),
        "the environment's chunk size"
    );
}

#[test]
fn every_command_that_reaches_the_service_takes_graph_url_from_the_config_file_then_env_then_flag()
{
    let sim = Simulator::start(Tree::personal().file("Docs/a.txt", 100));
    let other = Simulator::start(Tree::personal().file("Docs/a.txt", 100));
    let config = config_with(&format!("graph_url = \"{}\"\n", sim.graph_url()));
    let from = folder_of(1, 10);
    let from_path = from.path().to_str().unwrap().to_owned();
    // (ODBACKUP_GRAPH_URL, --graph-url) → whether the command reaches `sim` (else `other`).
    for (env, flag, reaches_sim) in [
        (None, None, true),
        (Some(other.graph_url()), None, false),
        (Some(other.graph_url()), Some(sim.graph_url()), true),
    ] {
        let dest = TestDest::new();
        let state = tempfile::tempdir().unwrap();
        let dest_path = dest.path().to_str().unwrap().to_owned();
        let state_path = state.path().join("r.sqlite").to_str().unwrap().to_owned();
        let commands: [&[&str]; 8] = [
            &["whoami"],
            &["drives"],
            &["ls", "/Docs"],
            &["tree"],
            &["crawl", "--dest", &dest_path],
            &["download", "--dest", &dest_path],
            &["backup", "--dest", &dest_path],
            &[
                "restore",
                "--from-folder",
                &from_path,
                "--manifest",
                &state_path,
                "--to",
                "/Restored",
            ],
        ];
        for args in commands {
            let before = (sim.total_requests(), other.total_requests());
            let mut cmd = odbackup();
            cmd.env("ODBACKUP_CONFIG_DIR", config.path())
                .env("ODBACKUP_ACCESS_TOKEN", sim.token())
                .args(args);
            if let Some(url) = &env {
                cmd.env("ODBACKUP_GRAPH_URL", url);
            }
            if let Some(url) = &flag {
                cmd.args(["--graph-url", url]);
            }
            let out = run(&mut cmd);
            assert_exit!(out, 0, "{args:?}");
            let after = (sim.total_requests(), other.total_requests());
            let (here, there) = if reaches_sim {
                (after.0 - before.0, after.1 - before.1)
            } else {
                (after.1 - before.1, after.0 - before.0)
            };
            assert!(here > 0, "{args:?} {env:?} {flag:?}: not reached");
            assert_eq!(there, 0, "{args:?} {env:?} {flag:?}: the other one reached");
        }
    }
}

#[test]
fn logout_takes_the_account_from_the_config_file_unless_the_flag_or_env_names_one() {
    let config = config_with("account = \"from-file\"\n");
    let logout = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = odbackup();
        cmd.env("ODBACKUP_CONFIG_DIR", config.path()).arg("logout");
        if let Some(account) = env {
            cmd.env("ODBACKUP_ACCOUNT", account);
        }
        if let Some(account) = flag {
            cmd.args(["--account", account]);
        }
        let out = run(&mut cmd);
        assert_exit!(out, 0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(logout(None, None).contains("\"from-file\""));
    assert!(logout(Some("from-env"), None).contains("\"from-env\""));
    assert!(logout(Some("from-env"), Some("from-flag")).contains("\"from-flag\""));
}

#[test]
fn the_config_files_verbose_lists_a_dry_runs_files_and_logs_at_info_level() {
    let sim = Simulator::start(Tree::personal().file("a.txt", 100));
    let dest = TestDest::new();
    let quiet = config_with("");
    let chatty = config_with("verbose = 1\n");
    for (config, verbose) in [(&quiet, false), (&chatty, true)] {
        let mut cmd = against(&sim, &dest, "backup");
        cmd.env("ODBACKUP_CONFIG_DIR", config.path())
            .env_remove("RUST_LOG")
            .arg("--dry-run");
        let out = run(&mut cmd);
        assert_exit!(out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let listed = stdout
            .lines()
            .any(|l| l.starts_with("would download") && l.ends_with("a.txt"));
        assert_eq!(listed, verbose, "{stdout}");
        assert_eq!(stderr(&out).contains("INFO"), verbose, "{}", stderr(&out));
    }
}
