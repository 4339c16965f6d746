//! Progress is drawn on a terminal and only there: under a pseudo-terminal the bars appear; piped, the
//! output is the summary alone, without a control sequence.

use std::time::Duration;

use graphsim::{Failure, RequestKind, Simulator, Tree};

use crate::download::backup;
use crate::support::{TestDest, run};

fn slow_drive() -> Simulator {
    let mut tree = Tree::personal();
    for i in 0..120 {
        tree = tree.file(&format!("Photos/{}/IMG_{i:04}.jpg", i % 6), 20_000 + i);
    }
    let sim = Simulator::start(tree);
    // Slow enough that the run lasts a few of the bars' refresh intervals.
    sim.set_latency(Duration::from_millis(15));
    sim
}

#[test]
fn on_a_terminal_the_run_draws_listing_and_transfer_progress() {
    let sim = slow_drive();
    // One throttling episode late in the run, which the transfer bar shows.
    sim.fail_in_bursts(100, 1, Failure::throttled(1).only(RequestKind::Download));
    let dest = TestDest::new();
    let cmd = backup(&sim, &dest);
    // `script` (util-linux) runs the command on a pseudo-terminal and copies what it shows to stdout.
    let mut line = shell_quote(cmd.get_program().to_str().unwrap());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(arg.to_str().unwrap()));
    }
    line.push_str(" --concurrency 2");
    let mut script = std::process::Command::new("script");
    script.args(["-qefc", &line, "/dev/null"]);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => script.env(key, v),
            None => script.env_remove(key),
        };
    }
    let out = run(&mut script);
    assert_exit!(out, 0);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("listing:"), "the crawl spinner: {shown}");
    assert!(shown.contains("/120 files"), "the transfer bar: {shown}");
    assert!(
        shown.contains("throttled 1× (1 at once)"),
        "the throttling episode and the transfers left: {shown}"
    );
    assert!(
        shown.contains('\u{1b}'),
        "drawn with terminal control sequences"
    );
    assert!(
        shown.contains("download: 120 downloaded"),
        "the summary follows: {shown}"
    );
    assert_eq!(dest.files_on_disk().len(), 120);
}

#[test]
fn piped_logs_and_the_log_file_carry_no_colour_codes() {
    let sim = slow_drive();
    let dest = TestDest::new();
    let log = dest.path().with_extension("log");
    let out = run(backup(&sim, &dest).arg("-vv").arg("--log-file").arg(&log));
    assert_exit!(out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
        "logs at -vv"
    );
    assert!(!out.stderr.contains(&0x1b));
    let logged = std::fs::read(&log).unwrap();
    assert!(String::from_utf8_lossy(&logged).contains("INFO"));
    assert!(!logged.contains(&0x1b));
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn piped_output_is_the_summary_alone_without_control_sequences() {
    let sim = slow_drive();
    let dest = TestDest::new();
    let out = run(backup(&sim, &dest).args(["--concurrency", "2"]));
    assert_exit!(out, 0);
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !stream.contains(&0x1b),
            "{}",
            String::from_utf8_lossy(stream)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("crawl: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
