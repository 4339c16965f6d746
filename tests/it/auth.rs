//! Sign-in a real user can complete, and tokens that outlive a long backup.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use graphsim::{DeviceOutcome, DeviceScript, Simulator, Tree};

use crate::support::{TestDest, device_login, eventually, run, signed_in};

fn tree(files: usize) -> Tree {
    (0..files).fold(Tree::personal(), |t, i| {
        t.file(&format!("p/{}/{i}.jpg", i % 5), 2_000 + i as u64)
    })
}

/// Crawl into `dest`, then make the listing's download URLs too old to use: every download then asks Graph
/// for its URL (`/content`, with the bearer token), which is what an expiring or revoked token must meet. Fresh
/// listing URLs need no token at all.
fn crawl_then_age_listed_urls(sim: &Simulator, config: &Path, dest: &TestDest) {
    let out = run(signed_in(sim, config)
        .args(["crawl", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    dest.age_listed_urls(60);
}

fn done_count(dest: &TestDest) -> usize {
    dest.done_files().unwrap_or(0)
}

#[test]
fn device_code_login_stores_a_private_token_file_and_whoami_works_without_the_env_var() {
    let sim = Simulator::start(tree(3));
    let config = tempfile::tempdir().unwrap();
    sim.script_device_code(DeviceScript {
        pending: 1,
        slow_down: 0,
        outcome: DeviceOutcome::Approve,
    });
    let out = run(signed_in(&sim, config.path()).arg("login"));
    assert_exit!(out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("code"),
        "the device-code instructions are shown: {stdout}"
    );
    let file = config.path().join("accounts/default.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = run(signed_in(&sim, config.path()).args(["whoami", "--json"]));
    assert_exit!(out, 0);
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["drive_id"], sim.drive_id());
    assert_eq!(who["account"], "default");
    assert!(who["quota_total"].as_u64().is_some(), "{who}");

    let out = run(signed_in(&sim, config.path()).arg("logout"));
    assert_exit!(out, 0);
    assert!(!file.exists());
    let out = run(signed_in(&sim, config.path()).arg("whoami"));
    assert_exit!(out, 3, "signed out: sign-in needed");
}

#[test]
fn a_declined_device_code_sign_in_exits_3_with_a_clear_message() {
    let sim = Simulator::start(tree(1));
    let config = tempfile::tempdir().unwrap();
    sim.script_device_code(DeviceScript {
        pending: 0,
        slow_down: 0,
        outcome: DeviceOutcome::Decline,
    });
    let out = run(signed_in(&sim, config.path()).arg("login"));
    assert_exit!(out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("declined"));
}

#[test]
fn sixteen_workers_survive_three_token_expiries_with_exactly_one_refresh_each() {
    let sim = Simulator::start(tree(600));
    sim.set_latency(Duration::from_millis(8));
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 1, &[]);
    let dest = TestDest::new();
    crawl_then_age_listed_urls(&sim, config.path(), &dest);
    let mut child = signed_in(&sim, config.path())
        .args(["download", "--concurrency", "16", "--dest"])
        .arg(dest.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for wave in 1..=3 {
        eventually(
            Duration::from_secs(60),
            "progress before the next expiry",
            || (done_count(&dest) >= wave * 120).then_some(()),
        );
        sim.expire_access_tokens();
        // The next wave only after this one was refreshed.
        eventually(Duration::from_secs(30), "the refresh", || {
            (sim.refreshes() >= wave as u64).then_some(())
        });
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        sim.refreshes(),
        3,
        "one refresh per expiry, however many workers saw the 401"
    );
    assert_eq!(done_count(&dest), 600);
}

#[test]
fn a_revoked_refresh_token_exits_3_and_the_manifest_resumes_after_login() {
    let sim = Simulator::start(tree(300));
    sim.set_latency(Duration::from_millis(8));
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 1, &[]);
    let dest = TestDest::new();
    crawl_then_age_listed_urls(&sim, config.path(), &dest);
    let child = signed_in(&sim, config.path())
        .args(["download", "--concurrency", "4", "--dest"])
        .arg(dest.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), "some progress", || {
        (done_count(&dest) >= 30).then_some(())
    });
    sim.revoke_refresh_tokens();
    sim.expire_access_tokens();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exit!(out, 3, "{text}");
    assert!(text.contains("odbackup login"), "{text}");
    let done_before = done_count(&dest);
    assert!(done_before < 300);

    device_login(&sim, config.path(), 1, &[]);
    let out = run(signed_in(&sim, config.path())
        .args(["backup", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    assert_eq!(done_count(&dest), 300);
}

/// The browser's GET, following no redirect; returns the status and the `Location` header.
fn http_get(url: &str) -> (u16, Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let answer = browser.get(url).send().await.unwrap();
        let location = answer
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (answer.status().as_u16(), location)
    })
}

#[test]
fn browser_login_completes_with_pkce_through_a_scripted_redirect() {
    let sim = Simulator::start(tree(1));
    let config = tempfile::tempdir().unwrap();
    let mut child = signed_in(&sim, config.path())
        .args(["login", "--browser"])
        .env("PATH", "") // no browser to open
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let authorize = lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()))
        .expect("the authorize URL is printed");
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("code_challenge="), "{authorize}");
    // The "browser": the identity host redirects to the loopback listener with a code.
    let (status, location) = http_get(&authorize);
    assert_eq!(status, 302);
    let (status, _) = http_get(&location.expect("a redirect to the loopback listener"));
    assert_eq!(status, 200);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(config.path().join("accounts/default.json").exists());
    let out = run(signed_in(&sim, config.path()).arg("whoami"));
    assert_exit!(out, 0);
}

#[test]
fn a_verbose_log_of_a_full_run_contains_no_token_and_no_download_url_secret() {
    let sim = Simulator::start(tree(40));
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 1, &[]);
    sim.expire_access_tokens(); // force a refresh during the run, so refresh tokens are in play too
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config.path().join("accounts/default.json")).unwrap(),
    )
    .unwrap();
    let mut secrets: Vec<String> = ["access_token", "refresh_token"]
        .iter()
        .filter_map(|k| stored[k].as_str().map(str::to_owned))
        .collect();
    assert_eq!(secrets.len(), 2, "{stored}");
    secrets.push("tempauth".to_owned());
    let dest = TestDest::new();
    let out = run(signed_in(&sim, config.path())
        .args(["backup", "-vvv", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() > 20, "the log is verbose");
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config.path().join("accounts/default.json")).unwrap(),
    )
    .unwrap();
    secrets.extend(
        ["access_token", "refresh_token"]
            .iter()
            .filter_map(|k| stored[k].as_str().map(str::to_owned)),
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log contains a secret ({})",
            &secret[..secret.len().min(8)]
        );
    }
    assert_eq!(sim.authorization_headers_on_download_host(), 0);
}
