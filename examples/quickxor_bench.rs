//! Measures quickXorHash throughput on one core: hashes 1 GiB held in memory and prints GB/s.
//!
//! `cargo run --release --example quickxor_bench [MiB] [update_bytes]` (defaults: 1024 MiB fed in 64 KiB
//! updates, about the size of a network read). A measuring tool, not part of the library.

use std::time::Instant;

use odbackup::hash::{ContentHasher, QuickXorHash};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let chunk: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 * 1024)
        .max(1);
    // The whole input is allocated up front, so it is read from RAM rather than from the CPU cache, as a
    // streamed download would be.
    let buffer: Vec<u8> = {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        (0..mib << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };

    let run = |label: &str, feed: &mut dyn FnMut(&[u8])| {
        let start = Instant::now();
        for piece in buffer.chunks(chunk) {
            // black_box: the optimiser must not reason about the bytes it is fed.
            feed(std::hint::black_box(piece));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {:.2} GB/s ({} bytes in {secs:.3} s, {chunk}-byte updates)",
            buffer.len() as f64 / secs / 1e9,
            buffer.len()
        );
    };

    let mut qx = QuickXorHash::new();
    run("quickXorHash", &mut |b| qx.update(b));
    println!("  {}", qx.finalize_base64());
    let mut both = ContentHasher::new(true);
    run("quickXorHash + SHA-1 (ContentHasher)", &mut |b| {
        both.update(b);
    });
    println!("  {:?}", both.finish());
}
