//! `graphsim`: serves a generated OneDrive on loopback until killed, for benchmarks (`curl`
//! against the printed URLs) and for trying odbackup without an account.
//!
//! Prints one line, `graph_url=… token=… auth_url=… download_host=… drive_id=…` (plus
//! `big_file_url=…` with `--big-file-gb`), then serves.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use graphsim::{GenSpec, SimConfig, Simulator, Tree};

const USAGE: &str = "\
usage: graphsim [options]
  --files N            files to generate (default 1000)
  --folders N          folders to generate (default 50)
  --depth N            maximum folder depth (default 4)
  --min-size BYTES     smallest file (default 0; suffixes K, M, G)
  --max-size BYTES     largest file (default 1M)
  --seed N             layout seed (default 1)
  --big-file-gb G      also serve big.bin of G GiB (fractions allowed)
  --latency-ms L       delay before every answer
  --port P             Graph port (default: any free port)
  --download-port P    download-host port (default: any free port)
  --auth-port P        identity-host port (default: any free port)
  --business           serve a OneDrive for Business drive (default: personal)
  --url-lifetime-s S   lifetime of download URLs (default 3600)
";

/// `123`, `64K`, `1M`, `2G` (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

struct Args {
    spec: GenSpec,
    config: SimConfig,
    big_gb: Option<f64>,
    business: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        spec: GenSpec {
            folders: 50,
            files: 1000,
            depth: 4,
            min_size: 0,
            max_size: 1 << 20,
            seed: 1,
            no_hash_every: 0,
        },
        config: SimConfig::default(),
        big_gb: None,
        business: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--business" {
            a.business = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        const VALUED: [&str; 12] = [
            "--files",
            "--folders",
            "--depth",
            "--seed",
            "--min-size",
            "--max-size",
            "--big-file-gb",
            "--latency-ms",
            "--port",
            "--download-port",
            "--auth-port",
            "--url-lifetime-s",
        ];
        if !VALUED.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        let num = || value.parse::<u64>().map_err(|_| bad());
        let port = || value.parse::<u16>().map_err(|_| bad());
        match flag.as_str() {
            "--files" => a.spec.files = num()? as usize,
            "--folders" => a.spec.folders = num()? as usize,
            "--depth" => a.spec.depth = num()? as usize,
            "--seed" => a.spec.seed = num()?,
            "--min-size" => a.spec.min_size = parse_size(&value).ok_or_else(bad)?,
            "--max-size" => a.spec.max_size = parse_size(&value).ok_or_else(bad)?,
            "--big-file-gb" => a.big_gb = Some(value.parse::<f64>().map_err(|_| bad())?),
            "--latency-ms" => a.config.latency = Duration::from_millis(num()?),
            "--port" => a.config.graph_port = port()?,
            "--download-port" => a.config.download_port = port()?,
            "--auth-port" => a.config.auth_port = port()?,
            "--url-lifetime-s" => a.config.download_url_lifetime = Duration::from_secs(num()?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.spec.min_size > a.spec.max_size {
        return Err("--min-size is larger than --max-size".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("graphsim: {msg}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = if args.business {
        Tree::business()
    } else {
        Tree::personal()
    };
    let mut tree = base.with_generated(args.spec);
    if let Some(gb) = args.big_gb {
        tree = tree.file("big.bin", (gb * f64::from(1u32 << 30)) as u64);
    }
    let sim = Simulator::start_with(tree, args.config);
    let mut line = format!(
        "graph_url={} token={} auth_url={} download_host={} drive_id={} items={}",
        sim.graph_url(),
        sim.token(),
        sim.auth_url(),
        sim.download_host_url(),
        sim.drive_id(),
        sim.item_count()
    );
    if args.big_gb.is_some() {
        line.push_str(&format!(" big_file_url={}", sim.download_url("big.bin")));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
