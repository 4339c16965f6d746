//! Backing up a whole organisation — app-only sign-in (certificate or secret), discovery of every
//! user's `OneDrive` and every site's libraries, one manifest per drive under the root, several drives at once
//! behind one throttle gate, and shards that split a tenant between processes with no coordinator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use graphsim::{Failure, MissingOneDrive, RequestKind, Simulator, Tree};

use crate::support::{TestDest, eventually, json, odbackup, run};

const APP: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "contoso.example";
const ROLES: [&str; 3] = ["Files.Read.All", "Sites.Read.All", "User.Read.All"];
const TEAM: &str = "contoso.sharepoint.com:/sites/Team";
const MARKETING: &str = "contoso.sharepoint.com:/sites/Marketing";
/// The test certificate and key (generated for these tests only; not a credential anywhere).
const PEM: &str = include_str!("fixtures/app-cert.pem");
const OTHER_PEM: &str = include_str!("fixtures/other-cert.pem");

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Three users with a `OneDrive` (the main one, a shared one, a private one), one without, and two sites
/// with three libraries between them.
fn organisation() -> Tree {
    Tree::business()
        .file("mine.txt", 1_100)
        .file("Docs/plan.docx", 4_000)
        .user_drive(
            "adele@contoso.example",
            "Adele Vance",
            Tree::business()
                .file("Notes/n1.txt", 900)
                .file("cv.pdf", 2_500),
        )
        .private_user_drive(
            "diego@contoso.example",
            "Diego Siciliani",
            Tree::business().file("secret.txt", 10).folder("Empty"),
        )
        .user_without_drive("new@contoso.example", "New Hire")
        .site_library(
            TEAM,
            "Documents",
            Tree::business()
                .file("Plans/q1.docx", 4_000)
                .file("readme.txt", 300),
        )
        .site_library(
            TEAM,
            "Archive",
            Tree::business().file("2019/report.pdf", 7_000),
        )
        .site_library(
            MARKETING,
            "Documents",
            Tree::business().file("brand.png", 5_000),
        )
}

/// A tenant, an app registered in it, a config folder to sign in from and a backup root.
struct Org {
    sim: Simulator,
    config: tempfile::TempDir,
    root: TestDest,
}

impl Org {
    fn new(tree: Tree) -> Self {
        let sim = Simulator::start(tree);
        // No token but the app's: the default token is refused.
        sim.set_default_token_accepted(false);
        sim.register_app_certificate(APP, PEM, &ROLES);
        Org {
            sim,
            config: tempfile::tempdir().unwrap(),
            root: TestDest::new(),
        }
    }

    /// A private file in the config folder.
    fn private_file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.config.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// `odbackup` with this organisation's endpoints and sign-in folder.
    fn cmd(&self) -> Command {
        let mut cmd = odbackup();
        cmd.env("ODBACKUP_CONFIG_DIR", self.config.path())
            .env("ODBACKUP_GRAPH_URL", self.sim.graph_url())
            .env("ODBACKUP_AUTH_URL", self.sim.auth_url());
        cmd
    }

    fn login(&self, credential: &[&str]) -> Output {
        run(self
            .cmd()
            .args(["login", "--app", "--tenant", TENANT, "--client-id", APP])
            .args(credential))
    }

    fn login_with_certificate(&self) {
        let pem = self.private_file("app.pem", PEM, 0o600);
        let out = self.login(&["--certificate", pem.to_str().unwrap()]);
        assert_exit!(out, 0, "{}", stderr(&out));
    }

    /// `odbackup backup --dest ROOT --json ARGS`.
    fn backup_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("backup")
            .arg("--dest")
            .arg(self.root.path())
            .arg("--json")
            .args(args);
        cmd
    }

    fn backup(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let out = run(&mut self.backup_cmd(args));
        let doc = json(&out);
        (out, doc)
    }

    /// The drive of each folder a user or library of this organisation goes to.
    fn expected_drives(&self) -> BTreeMap<String, String> {
        let s = &self.sim;
        let team = |name| format!("sites/{}/{name}", site_folder(s, TEAM));
        BTreeMap::from([
            ("users/megan@contoso.example".to_owned(), s.drive_id()),
            (
                "users/adele@contoso.example".to_owned(),
                s.user_drive_id("adele@contoso.example"),
            ),
            (
                "users/diego@contoso.example".to_owned(),
                s.user_drive_id("diego@contoso.example"),
            ),
            (team("Documents"), s.library_drive_id(TEAM, "Documents")),
            (team("Archive"), s.library_drive_id(TEAM, "Archive")),
            (
                format!("sites/{}/Documents", site_folder(s, MARKETING)),
                s.library_drive_id(MARKETING, "Documents"),
            ),
        ])
    }
}

/// The start of the folder a site's libraries go under: its name and `~` (then 8 hex digits of its ID's
/// hash, which [`match_folders`] checks by shape: the test does not reimplement the hash).
fn site_folder(_sim: &Simulator, site: &str) -> String {
    format!("{}~", site.rsplit('/').next().unwrap())
}

/// Folder → (status, drive id) from a roll-up.
fn outcomes(doc: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    doc["drives"]
        .as_array()
        .expect("drives")
        .iter()
        .map(|d| {
            (
                d["folder"].as_str().unwrap().to_owned(),
                (
                    d["status"].as_str().unwrap().to_owned(),
                    d["drive_id"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// The drive a backup folder's own manifest holds.
fn manifest_drive(folder: &Path) -> String {
    let drives = crate::support::read_drives(&odbackup::app::default_manifest_path(folder));
    let Some((id, _)) = drives.into_iter().next() else {
        panic!("{}: no drive on record", folder.display())
    };
    id
}

/// Match a roll-up's folders against the expected ones (site folders by prefix, as `site_folder` gives it).
fn match_folders(
    got: &BTreeMap<String, (String, String)>,
    expected: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut matched = BTreeMap::new();
    for (want, drive) in expected {
        let (folder, _) = got
            .iter()
            .find(|(folder, (_, id))| {
                id == drive
                    && if let Some((site, lib)) =
                        want.strip_prefix("sites/").and_then(|r| r.split_once('/'))
                    {
                        let parts: Vec<&str> = folder.split('/').collect();
                        parts.len() == 3
                            && parts[1].starts_with(site)
                            && parts[1].len() == site.len() + 8
                            && parts[1][site.len()..]
                                .bytes()
                                .all(|b| b.is_ascii_hexdigit())
                            && parts[2] == lib
                    } else {
                        *folder == want
                    }
            })
            .unwrap_or_else(|| panic!("no folder for {want} ({drive}) in {got:?}"));
        matched.insert(folder.clone(), drive.clone());
    }
    matched
}

/// Every file of `drive` in `paths` is under `root/folder` with the simulator's bytes.
fn assert_drive_bytes(sim: &Simulator, root: &TestDest, folder: &str, drive: &str, paths: &[&str]) {
    for path in paths {
        let file = root.join(&format!("{folder}/{path}"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            bytes == sim.content_in(drive, path),
            "{folder}/{path} differs"
        );
    }
}

/// The files of each drive of [`organisation`].
fn files_of(folder: &str) -> &'static [&'static str] {
    if folder.ends_with("megan@contoso.example") {
        &["mine.txt", "Docs/plan.docx"]
    } else if folder.ends_with("adele@contoso.example") {
        &["Notes/n1.txt", "cv.pdf"]
    } else if folder.ends_with("diego@contoso.example") {
        &["secret.txt"]
    } else if folder.ends_with("Archive") {
        &["2019/report.pdf"]
    } else if folder.starts_with("sites/Team~") {
        &["Plans/q1.docx", "readme.txt"]
    } else {
        &["brand.png"]
    }
}

const ALL_FILES: u64 = 9;

#[test]
fn an_app_signed_in_with_its_certificate_backs_up_three_users_and_two_sites_in_one_run() {
    let org = Org::new(organisation());
    // A key others can read is refused before anything is sent.
    let loose = org.private_file("loose.pem", PEM, 0o644);
    let out = org.login(&["--certificate", loose.to_str().unwrap()]);
    assert_exit!(out, 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert_eq!(org.sim.requests(RequestKind::Token), 0);
    org.login_with_certificate();
    // What is kept is where the key is, never the key.
    let kept = std::fs::read_to_string(org.config.path().join("accounts/default.json")).unwrap();
    assert!(
        !kept.contains("PRIVATE KEY") && kept.contains("app.pem"),
        "{kept}"
    );

    let (out, doc) = org.backup(&["--all-users", "--all-sites", "--drives-at-once", "3"]);
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_eq!(doc["exit_code"], 0);
    let got = outcomes(&doc);
    let matched = match_folders(&got, &org.expected_drives());
    assert_eq!(got.len(), 6, "3 users and 3 libraries: {got:?}");
    for (folder, drive) in &matched {
        assert_eq!(got[folder].0, "ok", "{folder}");
        assert_drive_bytes(&org.sim, &org.root, folder, drive, files_of(folder));
        assert_eq!(&manifest_drive(&org.root.join(folder)), drive, "{folder}");
    }
    assert!(org.root.join("users/diego@contoso.example/Empty").is_dir());
    // The user without a OneDrive is listed as such, not an error; no folder is made for them.
    let without = &doc["without_drive"];
    assert_eq!(without.as_array().unwrap().len(), 1, "{without}");
    assert_eq!(without[0]["user"], "new@contoso.example");
    assert!(!org.root.join("users/new@contoso.example").exists());
    assert_eq!(org.sim.requests(RequestKind::Download), ALL_FILES);
    // An app has no `/me` (the service answers 400 to app-only tokens): nothing asked for it.
    assert_eq!(org.sim.requests(RequestKind::Me), 0);

    // The next night: every drive asks only for its changes, and nothing is fetched again.
    org.sim.add_file("Docs/new.txt", 50);
    let (out, doc) = org.backup(&["--all-users", "--all-sites"]);
    assert_exit!(out, 0, "{}", stderr(&out));
    assert!(outcomes(&doc).values().all(|(status, _)| status == "ok"));
    assert_eq!(org.sim.requests(RequestKind::Download), ALL_FILES + 1);
    assert_drive_bytes(
        &org.sim,
        &org.root,
        "users/megan@contoso.example",
        &org.sim.drive_id(),
        &["Docs/new.txt"],
    );
}

#[test]
fn a_client_secret_from_a_private_file_or_the_environment_signs_in_and_a_wrong_credential_exits_3()
{
    let org = Org::new(organisation());
    org.sim
        .register_app_secret(APP, "correct-horse-battery", &ROLES);
    let loose = org.private_file("loose-secret", "correct-horse-battery\n", 0o640);
    let out = org.login(&["--client-secret-file", loose.to_str().unwrap()]);
    assert_exit!(out, 2);
    assert!(
        stderr(&out).contains("chmod 600") && !stderr(&out).contains("correct-horse"),
        "{}",
        stderr(&out)
    );
    let secret = org.private_file("secret", "correct-horse-battery\n", 0o600);
    let out = org.login(&["--client-secret-file", secret.to_str().unwrap()]);
    assert_exit!(out, 0, "{}", stderr(&out));
    let kept = std::fs::read_to_string(org.config.path().join("accounts/default.json")).unwrap();
    assert!(
        !kept.contains("correct-horse"),
        "the secret is not stored: {kept}"
    );
    let log = org.config.path().join("run.log");
    let (out, _) = org.backup(&[
        "--users",
        "adele@contoso.example",
        "-vvv",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    assert_exit!(out, 0, "{}", stderr(&out));
    // Neither the secret nor the token it got reach the logs, even at the most verbose level.
    let kept = std::fs::read_to_string(org.config.path().join("accounts/default.json")).unwrap();
    let token: serde_json::Value = serde_json::from_str(&kept).unwrap();
    let token = token["access_token"]
        .as_str()
        .expect("the current token is kept");
    let logged = std::fs::read_to_string(&log).unwrap() + &stderr(&out);
    assert!(logged.contains("DEBUG"), "a verbose log");
    assert!(
        !logged.contains("correct-horse") && !logged.contains(token),
        "{logged}"
    );
    assert_drive_bytes(
        &org.sim,
        &org.root,
        "users/adele@contoso.example",
        &org.sim.user_drive_id("adele@contoso.example"),
        &["Notes/n1.txt", "cv.pdf"],
    );

    // From the environment, as a container's secret would give it.
    let out = run(org
        .cmd()
        .args(["login", "--app", "--tenant", TENANT, "--client-id", APP])
        .env("ODBACKUP_CLIENT_SECRET", "correct-horse-battery"));
    assert_exit!(out, 0, "{}", stderr(&out));

    // A wrong secret, a key the app never registered: refused sign-ins (exit 3), the secret never shown.
    let wrong = org.private_file("wrong", "wrong-secret-value", 0o600);
    let out = org.login(&["--client-secret-file", wrong.to_str().unwrap()]);
    assert_exit!(out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("invalid_client") && !err.contains("wrong-secret-value"),
        "{err}"
    );
    let other = org.private_file("other.pem", OTHER_PEM, 0o600);
    let out = org.login(&["--certificate", other.to_str().unwrap()]);
    assert_exit!(out, 3);
    assert!(stderr(&out).contains("AADSTS700027"), "{}", stderr(&out));
    // Client credentials name one tenant.
    let out = run(org
        .cmd()
        .args(["login", "--app", "--tenant", "common", "--client-id", APP])
        .args(["--client-secret-file", secret.to_str().unwrap()]));
    assert_exit!(out, 2);
}

/// Start `backup --shard K/N` in the background.
fn spawn_shard(org: &Org, shard: &str, extra: &[&str]) -> std::process::Child {
    org.backup_cmd(&["--all-users", "--all-sites", "--shard", shard])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn odbackup")
}

#[test]
fn two_shards_in_two_processes_back_up_every_drive_exactly_once() {
    let org = Org::new(organisation());
    org.login_with_certificate();
    // Both at once, sharing the app's throttling budget as two machines would.
    let first = spawn_shard(&org, "0/2", &[]);
    let second = spawn_shard(&org, "1/2", &[]);
    let (a, b) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert_exit!(a, 0, "{}", stderr(&a));
    assert_exit!(b, 0, "{}", stderr(&b));
    let (a, b) = (outcomes(&json(&a)), outcomes(&json(&b)));
    let shard_a: BTreeSet<String> = a.keys().cloned().collect();
    let shard_b: BTreeSet<String> = b.keys().cloned().collect();
    assert!(shard_a.is_disjoint(&shard_b), "{shard_a:?} {shard_b:?}");
    assert!(
        !shard_a.is_empty() && !shard_b.is_empty(),
        "both take some: {shard_a:?} {shard_b:?}"
    );
    let all: BTreeMap<String, (String, String)> = a.into_iter().chain(b).collect();
    let matched = match_folders(&all, &org.expected_drives());
    assert_eq!(all.len(), 6);
    for (folder, drive) in &matched {
        assert_drive_bytes(&org.sim, &org.root, folder, drive, files_of(folder));
        for path in files_of(folder) {
            assert_eq!(org.sim.downloads_in(drive, path), 1, "{folder}/{path}");
        }
    }
    // The split is the one `drives --shard` shows.
    let listed = json(&run(org.cmd().args([
        "drives",
        "--all-users",
        "--all-sites",
        "--shard",
        "0/2",
        "--json",
    ])));
    let listed: BTreeSet<String> = listed["drives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["folder"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, shard_a);

    // The next night the tenant is split three ways: drives move between shards, and each finds its backup by
    // its folder on the shared root and goes on from it: every drive once, nothing fetched again.
    let downloads = org.sim.requests(RequestKind::Download);
    let mut again = BTreeMap::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let (out, doc) = org.backup(&["--all-users", "--all-sites", "--shard", shard]);
        assert_exit!(out, 0, "{shard}: {}", stderr(&out));
        for (folder, outcome) in outcomes(&doc) {
            assert!(
                again.insert(folder.clone(), outcome).is_none(),
                "{folder} twice"
            );
        }
    }
    assert_eq!(
        again, all,
        "the same folders, each ok, with the same drives"
    );
    assert_eq!(org.sim.requests(RequestKind::Download), downloads);
}

/// Users with many small files, so a run lasts long enough to be stopped in the middle.
fn busy_organisation(users: usize, files: usize) -> Tree {
    let mut tree = Tree::business().file("mine.txt", 100);
    for u in 0..users {
        let mut drive = Tree::business();
        for f in 0..files {
            drive = drive.file(&format!("f{f:03}.bin"), 2_000 + f as u64);
        }
        tree = tree.user_drive(
            &format!("user{u}@contoso.example"),
            &format!("User {u}"),
            drive,
        );
    }
    tree
}

/// Files marked done in every drive manifest under the root.
fn done_in(root: &TestDest) -> BTreeMap<String, BTreeSet<String>> {
    let mut done = BTreeMap::new();
    let Ok(users) = std::fs::read_dir(root.join("users")) else {
        return done;
    };
    for user in users.flatten() {
        let manifest = odbackup::app::default_manifest_path(&user.path());
        let Some(items) = crate::support::read_items(&manifest) else {
            continue;
        };
        let paths: BTreeSet<String> = items
            .into_iter()
            .filter(|(_, r)| r.is_done_file())
            .map(|(path, _)| path)
            .collect();
        done.insert(user.file_name().to_string_lossy().into_owned(), paths);
    }
    done
}

#[test]
fn a_shard_killed_mid_run_resumes_where_it_stopped() {
    let org = Org::new(busy_organisation(4, 12));
    org.login_with_certificate();
    org.sim.set_latency(Duration::from_millis(15));
    let mut child = spawn_shard(
        &org,
        "0/1",
        &["--drives-at-once", "1", "--concurrency", "2"],
    );
    // Killed (SIGKILL: no chance to save anything) once some files of some drive are on disk.
    eventually(Duration::from_secs(60), "some files done", || {
        (done_in(&org.root)
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            >= 6)
            .then_some(())
    });
    child.kill().unwrap();
    let _ = child.wait();
    let before = done_in(&org.root);
    let done_before: usize = before.values().map(BTreeSet::len).sum();
    assert!(done_before < 4 * 12 + 1, "stopped before the end");
    org.sim.set_latency(Duration::ZERO);

    let (out, doc) = org.backup(&["--all-users", "--shard", "0/1"]);
    assert_exit!(out, 0, "{}", stderr(&out));
    assert!(outcomes(&doc).values().all(|(s, _)| s == "ok"), "{doc}");
    for u in 0..4 {
        let upn = format!("user{u}@contoso.example");
        let drive = org.sim.user_drive_id(&upn);
        let folder = format!("users/{upn}");
        let done = before.get(&upn).cloned().unwrap_or_default();
        for f in 0..12 {
            let path = format!("f{f:03}.bin");
            assert_drive_bytes(&org.sim, &org.root, &folder, &drive, &[&path]);
            if done.contains(&format!("/{path}")) || done.contains(&path) {
                assert_eq!(
                    org.sim.downloads_in(&drive, &path),
                    1,
                    "{folder}/{path} was done before the kill: not fetched again"
                );
            }
        }
    }
}

#[test]
fn a_long_run_gets_new_app_tokens_before_they_expire_and_after_a_refusal() {
    let org = Org::new(busy_organisation(3, 10));
    org.sim.set_token_lifetime(Duration::from_secs(1));
    org.login_with_certificate();
    let at_login = org.sim.app_tokens_issued();
    // Every request waits 80 ms, so the run cannot take less than its serial chain of requests: discovery (2),
    // then per drive at least its drive and delta requests and its files two at a time (4 drives: 1 + 5 + 5 + 5
    // rounds of downloads), 25 rounds or 2 s: more than two lifetimes of a token renewed at 0.75 s.
    org.sim.set_latency(Duration::from_millis(80));
    let child = spawn_shard(
        &org,
        "0/1",
        &["--drives-at-once", "1", "--concurrency", "2"],
    );
    // Midway, every token dies at once (a revoked session, a service hiccup): one new token for all.
    eventually(Duration::from_secs(60), "a drive half done", || {
        (done_in(&org.root)
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            >= 5)
            .then_some(())
    });
    let refused_before = org.sim.unauthorized_responses();
    org.sim.expire_access_tokens();
    let out = child.wait_with_output().unwrap();
    assert_exit!(out, 0, "{}", stderr(&out));
    let doc = json(&out);
    assert!(outcomes(&doc).values().all(|(s, _)| s == "ok"), "{doc}");
    let issued = org.sim.app_tokens_issued() - at_login;
    // The run outlived several one-second tokens: each was replaced before it ran out.
    assert!(issued >= 2, "new tokens during the run: {issued}");
    // Only the forced expiry cost refusals (the requests in flight then, two at most): every other token was
    // replaced before it ran out.
    assert_eq!(refused_before, 0, "no token was used past its expiry");
    assert!(
        org.sim.unauthorized_responses() <= 2,
        "401s: {}",
        org.sim.unauthorized_responses()
    );
    let elapsed = doc["elapsed_secs"].as_f64().unwrap();
    assert!(
        (issued as f64) <= elapsed / 0.75 + 3.0,
        "{issued} tokens in {elapsed:.1}s: one per renewal, not one per request"
    );
}

#[test]
fn a_user_without_a_onedrive_is_listed_as_such_whatever_shape_the_service_answers_in() {
    let org = Org::new(organisation());
    org.login_with_certificate();
    for shape in [
        None,
        Some(MissingOneDrive::MysiteNotFound),
        Some(MissingOneDrive::FileNotFound),
        Some(MissingOneDrive::MysiteUrl),
        Some(MissingOneDrive::AppOnlyDefaultDrive),
    ] {
        org.sim.set_missing_onedrive(shape);
        let out = run(org.cmd().args(["drives", "--all-users"]));
        assert_exit!(out, 0, "{shape:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.lines()
                .any(|l| l.contains("new@contoso.example") && l.contains("no OneDrive")),
            "{shape:?}: {text}"
        );
        let (out, doc) = org.backup(&["--users", "new@contoso.example,adele@contoso.example"]);
        assert_exit!(out, 0, "{shape:?}: {}", stderr(&out));
        assert_eq!(doc["without_drive"][0]["user"], "new@contoso.example");
        assert_eq!(
            outcomes(&doc).keys().collect::<Vec<_>>(),
            ["users/adele@contoso.example"]
        );
    }
    // A name the directory does not know is not silently skipped: listed, and the run exits 1.
    let (out, doc) = org.backup(&["--users", "nobody@contoso.example,adele@contoso.example"]);
    assert_exit!(out, 1, "{}", stderr(&out));
    assert_eq!(doc["unreachable"][0]["name"], "nobody@contoso.example");
}

#[test]
fn hostile_names_get_their_own_safe_folders_and_a_listed_file_needs_no_discovery() {
    let tree = Tree::business()
        .file("mine.txt", 10)
        .user_drive(
            "Twin@contoso.example",
            "Twin A",
            Tree::business().file("a.txt", 11),
        )
        .user_drive(
            "twin@contoso.example",
            "Twin B",
            Tree::business().file("b.txt", 12),
        )
        .site_library(TEAM, "..", Tree::business().file("dots.txt", 13))
        .site_library(TEAM, "a/../../escape", Tree::business().file("esc.txt", 14))
        .site_library(TEAM, ".odbackup", Tree::business().file("state.txt", 15));
    let org = Org::new(tree);
    org.login_with_certificate();
    let list = org.config.path().join("drives.json");
    let out = run(org
        .cmd()
        .args(["drives", "--all-users", "--all-sites", "--json"]));
    assert_exit!(out, 0, "{}", stderr(&out));
    std::fs::write(&list, &out.stdout).unwrap();
    let directory_requests = org.sim.requests(RequestKind::Directory);

    let (out, doc) = org.backup(&[
        "--drives-from",
        list.to_str().unwrap(),
        "--drives-at-once",
        "4",
    ]);
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_eq!(
        org.sim.requests(RequestKind::Directory),
        directory_requests,
        "the list stands in for discovery"
    );
    let got = outcomes(&doc);
    assert_eq!(got.len(), 6, "{got:?}");
    let lower: BTreeSet<String> = got.keys().map(|f| f.to_lowercase()).collect();
    assert_eq!(
        lower.len(),
        6,
        "no two drives share a folder, even ignoring case: {got:?}"
    );
    for (folder, (status, drive)) in &got {
        assert_eq!(status, "ok", "{folder}");
        let parts: Vec<&str> = folder.split('/').collect();
        assert!(
            parts.iter().all(|p| !matches!(*p, "" | "." | "..")),
            "{folder}"
        );
        assert!(
            matches!(parts.as_slice(), ["users", _] | ["sites", _, _]),
            "{folder}"
        );
        assert_eq!(&manifest_drive(&org.root.join(folder)), drive, "{folder}");
    }
    // Nothing landed outside the root's two folders (and odbackup's own state).
    let top: BTreeSet<String> = std::fs::read_dir(org.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        top.iter()
            .all(|n| ["users", "sites", ".odbackup"].contains(&n.as_str())),
        "{top:?}"
    );
    assert!(!org.root.path().parent().unwrap().join("escape").exists());
    let twin_a = org.sim.user_drive_id("Twin@contoso.example");
    let twin_b = org.sim.user_drive_id("twin@contoso.example");
    let folder_of = |drive: &str| {
        got.iter()
            .find(|(_, (_, id))| id == drive)
            .map(|(f, _)| f.clone())
            .unwrap()
    };
    assert_drive_bytes(
        &org.sim,
        &org.root,
        &folder_of(&twin_a),
        &twin_a,
        &["a.txt"],
    );
    assert_drive_bytes(
        &org.sim,
        &org.root,
        &folder_of(&twin_b),
        &twin_b,
        &["b.txt"],
    );
}

#[test]
fn one_throttle_answer_pauses_every_drive_and_a_drive_another_run_holds_is_locked() {
    let org = Org::new(organisation());
    org.login_with_certificate();
    // Another run holds Adele's manifest (its run lock, as a second machine on a shared volume would).
    let adele = org.root.join("users/adele@contoso.example/.odbackup");
    std::fs::create_dir_all(&adele).unwrap();
    let lock = std::fs::File::create(adele.join("manifest.sqlite.lock")).unwrap();
    lock.lock().unwrap();
    // A neighbour's link where the root keeps the pause for the next run: it is never written through.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"not odbackup's").unwrap();
    std::fs::create_dir_all(org.root.join(".odbackup")).unwrap();
    std::os::unix::fs::symlink(&victim, org.root.join(".odbackup/throttled_until.tmp")).unwrap();
    // The next answer is a 429: every drive must wait it out, not only the one that got it.
    org.sim.throttle_next(1, 1);
    let (out, doc) = org.backup(&["--all-users", "--all-sites", "--drives-at-once", "6"]);
    drop(lock);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not odbackup's");
    assert_eq!(
        out.status.code(),
        Some(4),
        "the worst drive's code: {}",
        stderr(&out)
    );
    assert_eq!(doc["exit_code"], 4);
    let got = outcomes(&doc);
    assert_eq!(got["users/adele@contoso.example"].0, "locked");
    let ok = got.values().filter(|(s, _)| s == "ok").count();
    assert_eq!(ok, 5, "{got:?}");
    assert!(doc["throttle_events"].as_u64().unwrap() >= 1, "{doc}");
    let violations = org.sim.violations();
    assert!(
        violations.is_empty(),
        "no drive called during the pause: {violations:?}"
    );
    // Once the other run is gone, the same command backs Adele up.
    let (out, doc) = org.backup(&["--all-users", "--all-sites"]);
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_eq!(outcomes(&doc)["users/adele@contoso.example"].0, "ok");
}

/// One `Retry-After` beyond what a run waits (half an hour) stops the organisation's run at the drive that got
/// it: the drives after it share the client and its pause, so they are left for the next run, not started to
/// fail one by one.
#[test]
fn a_retry_after_longer_than_a_run_waits_leaves_the_drives_not_yet_started_for_the_next_run() {
    let org = Org::new(organisation());
    org.login_with_certificate();
    org.sim.set_in_flight_allowance(Duration::from_millis(150));
    org.sim
        .fail_always(Failure::throttled(1800).only(RequestKind::Download));
    let (out, doc) = org.backup(&["--all-users", "--all-sites", "--drives-at-once", "1"]);
    assert_exit!(out, 5, "{}", stderr(&out));
    let got = outcomes(&doc);
    let failed: Vec<_> = got.iter().filter(|(_, (s, _))| s == "failed").collect();
    let not_started = got.values().filter(|(s, _)| s == "not_started").count();
    assert_eq!(failed.len(), 1, "{got:?}");
    assert_eq!(not_started, got.len() - 1, "{got:?}");
    let error = doc["drives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "failed")
        .and_then(|d| d["error"].as_str())
        .unwrap_or_default();
    assert!(
        error.contains("Retry-After") && error.contains("run again after"),
        "{error}"
    );
    assert_eq!(org.sim.requests_during_retry_after(), 0);
    assert!(
        org.sim.violations().is_empty(),
        "{:?}",
        org.sim.violations()
    );
    // Only the first drive's listing and its transfers on their way when the refusal came were sent.
    assert_eq!(org.sim.requests(RequestKind::Delta), 1);
}

#[test]
fn a_delegated_sign_in_finds_the_sites_by_search_where_every_site_is_for_apps_only() {
    // An administrator's own (delegated) token: getAllSites is refused to it, search is not.
    let sim = Simulator::start(organisation());
    sim.set_token_scopes(&["Files.Read.All", "Sites.Read.All", "User.Read.All"]);
    let out = run(odbackup()
        .args([
            "drives",
            "--all-sites",
            "--json",
            "--graph-url",
            &sim.graph_url(),
        ])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token()));
    assert_exit!(out, 0, "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["site_listing"], "search", "{doc}");
    assert_eq!(doc["sites_listed"], 2, "{doc}");
    let libraries: BTreeSet<String> = doc["drives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["drive_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        sim.library_drive_id(TEAM, "Documents"),
        sim.library_drive_id(TEAM, "Archive"),
        sim.library_drive_id(MARKETING, "Documents"),
    ]
    .into();
    assert_eq!(libraries, expected);
}

/// A link planted where a user's folder goes (`users/<upn>` → a folder outside the root) is refused: that
/// drive fails, naming its folder, nothing is written through the link, and the other drives are backed up.
#[test]
fn a_link_planted_where_a_drive_folder_goes_is_refused_and_nothing_is_written_through_it() {
    let org = Org::new(organisation());
    org.login_with_certificate();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(org.root.join("users")).unwrap();
    std::os::unix::fs::symlink(outside.path(), org.root.join("users/adele@contoso.example"))
        .unwrap();
    let (out, doc) = org.backup(&["--all-users"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = outcomes(&doc);
    assert_eq!(got["users/adele@contoso.example"].0, "failed", "{got:?}");
    assert_eq!(got["users/megan@contoso.example"].0, "ok", "{got:?}");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing is written through the link"
    );
}
