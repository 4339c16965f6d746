//! Where a setting comes from, through the real binary: a flag beats its environment variable, which beats
//! the config file, which beats the default; and every switch the config file turns on or off can be turned
//! the other way on the command line (`--no-…`, `--…`).

use graphsim::{Simulator, Tree};

use crate::support::{TestDest, against, odbackup, run};

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
