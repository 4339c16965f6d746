//! Interruptions. kill -9 at several points, then a re-run: every file correct, nothing finished
//! fetched twice, and a large file resumed by Range.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use graphsim::{Simulator, Tree};
use sha1::{Digest as _, Sha1};

use crate::download::backup;
use crate::support::{TestDest, eventually, run};

const BIG: &str = "A/big.mov";
const BIG_SIZE: u64 = 120_000_000;
/// This test is about the one-stream resume from a part file's length (ranged files resume by their span
/// journal: `speed.rs`), so the large file is not split.
const ONE_STREAM: [&str; 4] = ["--concurrency", "4", "--streams-per-file", "1"];

fn done_paths(dest: &TestDest) -> BTreeSet<String> {
    dest.items()
        .into_iter()
        .filter(|(_, r)| r.kind == "file" && r.state == "done")
        .map(|(p, _)| p.trim_start_matches('/').to_owned())
        .collect()
}

fn part_len(dest: &TestDest) -> u64 {
    let dir = dest.join("A");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

fn file_sha1(path: &std::path::Path) -> String {
    let mut hasher = Sha1::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02X}");
        out
    })
}

#[test]
fn sigkill_at_several_points_then_a_rerun_finishes_without_refetching_finished_files() {
    let mut tree = Tree::personal().file(BIG, BIG_SIZE);
    let mut small = Vec::new();
    for i in 0..400 {
        let path = format!("B/{}/p{i:03}.jpg", i % 9);
        tree = tree.file(&path, 20_000 + i * 97);
        small.push(path);
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(5));
    let dest = TestDest::new();
    // For every file done at a kill: how many download requests it had taken by then.
    let mut finished_before_a_kill: BTreeMap<String, u64> = BTreeMap::new();
    let snapshot = |finished: &mut BTreeMap<String, u64>| {
        for path in done_paths(&dest) {
            let seen = sim.downloads_of(&path);
            finished.entry(path).or_insert(seen);
        }
    };

    // Kill 1: while the large file is part-way through.
    let mut child = backup(&sim, &dest).args(ONE_STREAM).spawn().unwrap();
    eventually(
        Duration::from_secs(120),
        "a part file of the large file",
        || (part_len(&dest) > 8_000_000).then_some(()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    snapshot(&mut finished_before_a_kill);
    assert!(
        !dest.join(BIG).exists(),
        "the killed large file is not under its final name"
    );

    // Kill 2: after some more files have finished.
    // Forty more, or all of them if fewer are left: the run may finish everything before the kill lands.
    let target = (finished_before_a_kill.len() + 40).min(small.len() + 1);
    let mut child = backup(&sim, &dest).args(ONE_STREAM).spawn().unwrap();
    eventually(Duration::from_secs(120), "more finished files", || {
        (dest.done_files()? >= target).then_some(())
    });
    let _ = child.kill(); // it may have finished on its own
    child.wait().unwrap();
    snapshot(&mut finished_before_a_kill);

    // The re-run completes.
    let out = run(backup(&sim, &dest).args(ONE_STREAM));
    assert_exit!(out, 0);
    for path in &small {
        assert_eq!(
            std::fs::read(dest.join(path)).unwrap(),
            sim.content(path),
            "{path}"
        );
    }
    assert_eq!(file_sha1(&dest.join(BIG)), sim.sha1(BIG));
    for (path, requests_then) in &finished_before_a_kill {
        assert_eq!(
            sim.downloads_of(path),
            *requests_then,
            "{path} was finished before a kill and fetched again"
        );
    }
    let ranges = sim.ranges_of(BIG);
    assert!(
        ranges.iter().flatten().any(|r| !r.starts_with("bytes=0-")),
        "the large file resumed with a Range: {ranges:?}"
    );
    assert!(
        !dest.files_on_disk().iter().any(|f| f.contains(".part")),
        "no part files left"
    );
}

#[test]
fn ctrl_c_stops_scheduling_keeps_the_manifest_consistent_and_a_rerun_finishes() {
    let mut tree = Tree::personal().file(BIG, 60_000_000);
    for i in 0..300 {
        tree = tree.file(&format!("B/q{i:03}.jpg"), 30_000);
    }
    let sim = Simulator::start(tree);
    sim.set_latency(Duration::from_millis(10));
    let dest = TestDest::new();
    let child = backup(&sim, &dest)
        .args(["--concurrency", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), "some finished files", || {
        (dest.done_files()? >= 20).then_some(())
    });
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sending SIGINT to our own child process, whose pid we hold.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit!(out, 130, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let done = done_paths(&dest);
    assert!(done.len() < 301, "it stopped before the end");
    for path in &done {
        assert!(
            dest.join(path).exists(),
            "{path} is recorded done, so it is on disk"
        );
    }
    assert_exit!(run(&mut backup(&sim, &dest)), 0);
    assert_eq!(done_paths(&dest).len(), 301);
    assert_eq!(file_sha1(&dest.join(BIG)), sim.sha1(BIG));
}
