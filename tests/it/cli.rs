//! The command-line contract: exit codes, clear one-line errors, the manifest lock.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use graphsim::{Simulator, Tree};

use crate::download::backup;
use crate::support::{TestDest, eventually, json, odbackup, run};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A crawl against whatever listens (or not) on a loopback port.
fn crawl_against_port(port: u16) -> std::process::Output {
    let dest = TestDest::new();
    run(odbackup()
        .args(["crawl", "--dest"])
        .arg(dest.path())
        .args(["--graph-url", &format!("http://127.0.0.1:{port}/v1.0")])
        .env("ODBACKUP_ACCESS_TOKEN", "t"))
}

#[test]
fn a_refused_token_exits_3_with_one_clear_line_and_leaves_the_manifest_usable() {
    let sim = Simulator::start(Tree::personal().file("a.jpg", 10));
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).env("ODBACKUP_ACCESS_TOKEN", "not-a-token"));
    assert_exit!(out, 3);
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("not-a-token"),
        "the token is never printed"
    );
    let out = run(backup(&sim, &dest).env_remove("ODBACKUP_ACCESS_TOKEN"));
    assert_exit!(out, 3);
    assert!(stderr(&out).contains("ODBACKUP_ACCESS_TOKEN"));
    // The manifest is intact, and the next good run completes.
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
}

#[test]
fn an_unreachable_graph_url_exits_5_naming_the_host() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound, then closed
    let out = crawl_against_port(port);
    assert_exit!(out, 5);
    assert!(
        stderr(&out).contains("could not reach 127.0.0.1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_malformed_json_answer_exits_5_naming_what_failed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "{\"id\": \"d\", \"driveType\": ";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = crawl_against_port(port);
    assert_exit!(out, 5);
    let err = stderr(&out);
    assert!(
        err.contains("reading the drive") && err.contains("invalid JSON"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn a_second_run_on_the_same_manifest_exits_4_while_the_first_holds_it() {
    let mut tree = Tree::personal();
    for i in 0..400 {
        tree = tree.file(&format!("x/{i}.jpg"), 1000);
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(40));
    let dest = TestDest::new();
    let mut first = backup(&sim, &dest)
        .args(["--concurrency", "1"])
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the first run to start downloading",
        || (sim.requests(graphsim::RequestKind::Download) > 0).then_some(()),
    );
    let out = run(&mut backup(&sim, &dest));
    assert_exit!(out, 4);
    assert!(
        stderr(&out).contains("another odbackup run"),
        "{}",
        stderr(&out)
    );
    // status reads while the run writes.
    let status = json(&run(odbackup()
        .args(["status", "--json", "--dest"])
        .arg(dest.path())));
    assert!(status["files"]["total"].as_u64().unwrap() > 0);
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn status_on_a_destination_without_a_manifest_exits_2() {
    let dest = TestDest::new();
    let out = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    assert_exit!(out, 2);
    assert!(stderr(&out).contains("no manifest"));
}

#[test]
fn a_foreign_file_as_manifest_is_a_clear_error_not_a_panic() {
    let dest = TestDest::new();
    std::fs::create_dir_all(dest.join(".odbackup")).unwrap();
    std::fs::write(dest.manifest(), "x".repeat(5000)).unwrap();
    let out = run(odbackup().args(["status", "--dest"]).arg(dest.path()));
    assert_exit!(out, 5);
    assert!(
        stderr(&out).contains("not an odbackup manifest"),
        "{}",
        stderr(&out)
    );
}
