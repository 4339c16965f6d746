//! Reaching the right drive — `SharePoint` sites and their libraries, other users' `OneDrives`, the
//! `drives` list, the `Sites.Read.All` permission, app-only tokens.

use graphsim::{RequestKind, Simulator, Tree};

use crate::support::{TestDest, device_login, json, odbackup, run, signed_in};

const TEAM: &str = "contoso.sharepoint.com:/sites/Team";
const TEAM_URL: &str = "https://contoso.sharepoint.com/sites/Team";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tenant: the signed-in user's `OneDrive`, a site with two libraries, and three other users.
fn tenant() -> Tree {
    Tree::business()
        .file("mine.txt", 11)
        .site_library(
            TEAM,
            "Documents",
            Tree::business()
                .file("Plans/q1.docx", 4_000)
                .file("Plans/q2.docx", 5_000)
                .file("readme.txt", 300),
        )
        .site_library(
            TEAM,
            "Archive",
            Tree::business()
                .file("2019/report.pdf", 7_000)
                .file("2019/Deep/old.txt", 120)
                .folder("Empty"),
        )
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
            Tree::business().file("secret.txt", 10),
        )
        .user_without_drive("new@contoso.example", "New Hire")
}

/// Every file of the drive `drive_id` in `paths` is under `dest` with the simulator's bytes.
fn assert_drive_bytes(sim: &Simulator, drive_id: &str, dest: &TestDest, paths: &[&str]) {
    for path in paths {
        let on_disk = std::fs::read(dest.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            on_disk == sim.content_in(drive_id, path),
            "{path} differs from the library's bytes"
        );
    }
}

fn drive_rows(dest: &TestDest) -> Vec<(String, String)> {
    dest.drives()
}

#[test]
fn a_site_library_is_backed_up_by_address_or_id_and_a_non_default_one_by_name() {
    let sim = Simulator::start(tenant());
    let docs = sim.library_drive_id(TEAM, "Documents");
    let archive = sim.library_drive_id(TEAM, "Archive");
    let site_id = sim.site_id(TEAM);

    // The site's address, as copied from a browser (a page inside it), then host:/path, then its ID: each
    // reaches the default library.
    for site in [
        format!("{TEAM_URL}/Shared%20Documents/Forms/AllItems.aspx"),
        TEAM.to_owned(),
        site_id.clone(),
    ] {
        let dest = TestDest::new();
        let out = run(crate::support::against(&sim, &dest, "backup").args(["--site", &site]));
        assert_exit!(out, 0, "{site}: {}", stderr(&out));
        assert_drive_bytes(
            &sim,
            &docs,
            &dest,
            &["Plans/q1.docx", "Plans/q2.docx", "readme.txt"],
        );
        assert!(!dest.join("mine.txt").exists(), "not the user's own drive");
        assert_eq!(
            drive_rows(&dest),
            [(docs.clone(), "documentLibrary".to_owned())]
        );
    }

    // Another library by name (any case); the incremental run after it asks only the root's delta.
    let dest = TestDest::new();
    let archive_backup = || {
        let mut cmd = crate::support::against(&sim, &dest, "backup");
        cmd.args(["--site", TEAM, "--library", "archive"]);
        cmd
    };
    let out = run(&mut archive_backup());
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(
        &sim,
        &archive,
        &dest,
        &["2019/report.pdf", "2019/Deep/old.txt"],
    );
    assert!(dest.join("Empty").is_dir());
    assert_eq!(
        drive_rows(&dest),
        [(archive.clone(), "documentLibrary".to_owned())]
    );
    let out = run(&mut archive_backup());
    assert_exit!(out, 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("changes: none"), "{}", stdout(&out));
    // The default library into the same destination would mix two drives' files: refused, nothing written.
    let before = dest.files_on_disk();
    let out = run(crate::support::against(&sim, &dest, "backup").args(["--site", TEAM]));
    assert_exit!(out, 2);
    assert!(stderr(&out).contains("another drive"), "{}", stderr(&out));
    assert_eq!(dest.files_on_disk(), before);
    assert_eq!(drive_rows(&dest).len(), 1);

    // A library the site does not have: a usage error naming the ones it has.
    let out = run(
        crate::support::against(&sim, &TestDest::new(), "backup").args([
            "--site",
            TEAM_URL,
            "--library",
            "Photos",
        ]),
    );
    assert_exit!(out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("Photos") && err.contains("Documents, Archive"),
        "{err}"
    );
    // --library without a site says what is missing.
    let out =
        run(crate::support::against(&sim, &TestDest::new(), "backup")
            .args(["--library", "Archive"]));
    assert_exit!(out, 2);
    assert!(stderr(&out).contains("--site"), "{}", stderr(&out));
    // A site that is not there.
    let out = run(crate::support::against(&sim, &TestDest::new(), "crawl")
        .args(["--site", "contoso.sharepoint.com:/sites/Nope"]));
    assert_exit!(out, 2);
    assert!(
        stderr(&out).contains("no SharePoint site"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn drives_lists_ids_names_types_and_quotas_and_a_listed_id_backs_up_without_sites_read_all() {
    let sim = Simulator::start(tenant());
    let list = |args: &[&str]| {
        run(odbackup()
            .arg("drives")
            .args(args)
            .args(["--graph-url", &sim.graph_url()])
            .env("ODBACKUP_ACCESS_TOKEN", sim.token()))
    };
    let out = list(&["--site", TEAM_URL, "--json"]);
    assert_exit!(out, 0, "{}", stderr(&out));
    let drives = json(&out);
    let drives = drives.as_array().unwrap();
    let names: Vec<&str> = drives.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Documents", "Archive"]);
    assert!(drives.iter().all(|d| d["drive_type"] == "documentLibrary"));
    assert!(drives.iter().all(|d| d["quota_total"].as_u64().is_some()));
    let archive = drives[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(archive, sim.library_drive_id(TEAM, "Archive"));

    let out = list(&["--site", TEAM]);
    let text = stdout(&out);
    assert!(
        text.contains("Documents") && text.contains("Archive") && text.contains(&archive),
        "{text}"
    );
    assert!(text.contains("--drive-id"), "says how to use it: {text}");

    let out = list(&["--json"]);
    assert_eq!(json(&out)[0]["id"], sim.drive_id().as_str());
    let out = list(&["--user", "adele@contoso.example", "--json"]);
    assert_eq!(
        json(&out)[0]["id"],
        sim.user_drive_id("adele@contoso.example").as_str()
    );
    assert_eq!(json(&out)[0]["owner"], "Adele Vance");

    // A library by its drive ID needs Files.Read.All only: no site is read.
    sim.set_token_scopes(&["Files.Read.All", "User.Read"]);
    sim.reset_counters();
    let dest = TestDest::new();
    let out = run(crate::support::against(&sim, &dest, "backup").args(["--drive-id", &archive]));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(&sim, &archive, &dest, &["2019/report.pdf"]);
    assert_eq!(sim.requests(RequestKind::Site), 0);
}

#[test]
fn a_site_the_sign_in_may_not_read_is_a_usage_error_naming_the_permission_and_the_command() {
    let sim = Simulator::start(tenant());
    let docs = sim.library_drive_id(TEAM, "Documents");

    // A plain login asks for the default scopes, without Sites.Read.All: the site is refused (403), and the
    // message says which permission and which command, not a raw Graph error with exit 5.
    let config = tempfile::tempdir().unwrap();
    device_login(&sim, config.path(), 0, &[]);
    let dest = TestDest::new();
    let backup = |dest: &TestDest| {
        let mut cmd = signed_in(&sim, config.path());
        cmd.args(["backup", "--site", TEAM_URL, "--dest"])
            .arg(dest.path());
        cmd
    };
    let out = run(&mut backup(&dest));
    assert_exit!(out, 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Sites.Read.All") && err.contains("run `odbackup login --sites`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // The way out works: sign in again with the permission, and the same command backs the site up.
    device_login(&sim, config.path(), 0, &["--sites"]);
    let out = run(&mut backup(&dest));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(&sim, &docs, &dest, &["readme.txt"]);

    // A config file that names a site gets the permission asked for at login by itself.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.toml"),
        format!("site = \"{TEAM_URL}\"\nlibrary = \"Archive\"\n"),
    )
    .unwrap();
    let out = device_login(&sim, config.path(), 0, &[]);
    assert!(stdout(&out).contains("Sites.Read.All"), "{}", stdout(&out));
    let dest = TestDest::new();
    let out = run(signed_in(&sim, config.path())
        .args(["backup", "--dest"])
        .arg(dest.path()));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(
        &sim,
        &sim.library_drive_id(TEAM, "Archive"),
        &dest,
        &["2019/report.pdf"],
    );

    // A token from the environment without the permission: the advice is about that token.
    sim.set_token_scopes(&["Files.Read.All"]);
    let out = run(crate::support::against(&sim, &TestDest::new(), "backup").args(["--site", TEAM]));
    assert_exit!(out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("ODBACKUP_ACCESS_TOKEN") && err.contains("Sites.Read.All"),
        "{err}"
    );
    let out = run(odbackup()
        .args(["drives", "--site", TEAM, "--graph-url", &sim.graph_url()])
        .env("ODBACKUP_ACCESS_TOKEN", sim.token()));
    assert_exit!(out, 2);
    assert!(stderr(&out).contains("Sites.Read.All"), "{}", stderr(&out));
}

#[test]
fn another_users_drive_is_backed_up_and_unknown_or_closed_users_are_clear_usage_errors() {
    let sim = Simulator::start(tenant());
    let adele = sim.user_drive_id("adele@contoso.example");
    let dest = TestDest::new();
    let out =
        run(crate::support::against(&sim, &dest, "backup")
            .args(["--user", "adele@contoso.example"]));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(&sim, &adele, &dest, &["Notes/n1.txt", "cv.pdf"]);
    assert_eq!(drive_rows(&dest), [(adele, "business".to_owned())]);

    for (user, says) in [
        ("nobody@contoso.example", "no such user"),
        ("new@contoso.example", "never set up"),
        ("diego@contoso.example", "not allowed"),
    ] {
        let dest = TestDest::new();
        let out = run(crate::support::against(&sim, &dest, "backup").args(["--user", user]));
        assert_exit!(out, 2, "{user}");
        let err = stderr(&out);
        assert!(err.contains(user) && err.contains(says), "{user}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn an_app_only_token_has_no_me_so_whoami_shows_what_it_can_and_runs_ask_for_a_drive() {
    let sim = Simulator::start(tenant());
    sim.set_token_app_only(true);
    let whoami = |args: &[&str]| {
        run(odbackup()
            .arg("whoami")
            .args(args)
            .args(["--graph-url", &sim.graph_url()])
            .env("ODBACKUP_ACCESS_TOKEN", sim.token()))
    };
    let out = whoami(&[]);
    assert_exit!(out, 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("no signed-in user") && text.contains("--user"),
        "{text}"
    );
    let who = json(&whoami(&["--json"]));
    assert_eq!(who["signed_in_user"], false);
    assert!(who["drive_id"].is_null(), "{who}");

    let who = json(&whoami(&["--user", "diego@contoso.example", "--json"]));
    assert_eq!(
        who["drive_id"],
        sim.user_drive_id("diego@contoso.example").as_str(),
        "an app-only token reads any user's OneDrive"
    );
    assert_eq!(who["owner"], "Diego Siciliani");
    let text = stdout(&whoami(&["--site", TEAM]));
    assert!(
        text.contains("documentLibrary") && text.contains("Documents"),
        "{text}"
    );

    // A run must name a drive, and a user's OneDrive must exist already.
    let out = run(&mut crate::support::against(
        &sim,
        &TestDest::new(),
        "backup",
    ));
    assert_exit!(out, 2);
    assert!(
        stderr(&out).contains("no drive of its own") && stderr(&out).contains("--user"),
        "{}",
        stderr(&out)
    );
    let out = run(crate::support::against(&sim, &TestDest::new(), "backup")
        .args(["--user", "new@contoso.example"]));
    assert_exit!(out, 2);
    assert!(
        stderr(&out).contains("must already exist"),
        "{}",
        stderr(&out)
    );
    let dest = TestDest::new();
    let out =
        run(crate::support::against(&sim, &dest, "backup")
            .args(["--user", "diego@contoso.example"]));
    assert_exit!(out, 0, "{}", stderr(&out));
    assert_drive_bytes(
        &sim,
        &sim.user_drive_id("diego@contoso.example"),
        &dest,
        &["secret.txt"],
    );
}
