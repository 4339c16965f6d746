//! File content that is never stored: a counter-based PRNG stream keyed by a per-version seed.
//!
//! Byte `i` of a file is byte `i % 8` of `word(seed, i / 8)`, so any range can be produced without
//! producing what comes before it (Range requests, resumed downloads), and a 2 GB file costs
//! nothing until someone reads it. Hashes of that content are computed on first need and cached
//! per `(seed, length)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sha1::{Digest as _, Sha1};

use crate::quickxor::QuickXorHash;

/// How many bytes one generated chunk holds (one body frame on the download host).
pub(crate) const CHUNK: usize = 64 * 1024;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser: a cheap, well-mixed bijection on `u64`.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `index`-th 8-byte word of the stream for `seed`.
#[inline]
fn word(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// FNV-1a over bytes: turns an item ID into a seed.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The seed of a file's first version, from its ID and size.
pub(crate) fn seed_for(item_id: &str, size: u64) -> u64 {
    mix(fnv1a(item_id.as_bytes()) ^ size.wrapping_mul(GOLDEN))
}

/// Fills `buf` with the stream for `seed`, starting at byte `offset`.
pub(crate) fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    // Unaligned head: part of one word.
    let skip = (pos % 8) as usize;
    if skip != 0 {
        let w = word(seed, pos / 8).to_le_bytes();
        let n = (8 - skip).min(rest.len());
        rest[..n].copy_from_slice(&w[skip..skip + n]);
        rest = &mut rest[n..];
        pos += n as u64;
    }
    let mut index = pos / 8;
    let mut words = rest.chunks_exact_mut(8);
    for out in &mut words {
        out.copy_from_slice(&word(seed, index).to_le_bytes());
        index += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let w = word(seed, index).to_le_bytes();
        let n = tail.len();
        tail.copy_from_slice(&w[..n]);
    }
}

/// The first `len` bytes of the stream for `seed`, in memory (the simulator's own tests; the handle goes
/// through `upload::bytes`, which knows uploaded content too).
#[cfg(test)]
pub(crate) fn bytes(seed: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; usize::try_from(len).expect("content fits in memory")];
    fill(seed, 0, &mut v);
    v
}

/// The hashes Graph lists for some content.
#[derive(Default)]
struct Entry {
    quick_xor: OnceLock<String>,
    sha1: OnceLock<String>,
}

/// Lazily computed hashes, shared by every request (computed once even under concurrency).
#[derive(Default)]
pub(crate) struct HashCache {
    entries: Mutex<HashMap<(u64, u64), Arc<Entry>>>,
}

impl HashCache {
    fn entry(&self, seed: u64, len: u64) -> Arc<Entry> {
        let mut map = self.entries.lock().expect("hash cache lock");
        map.entry((seed, len)).or_default().clone()
    }

    /// quickXorHash (base64) of the first `len` bytes of `seed`'s stream.
    pub(crate) fn quick_xor(&self, seed: u64, len: u64) -> String {
        let e = self.entry(seed, len);
        e.quick_xor
            .get_or_init(|| hash_stream(seed, len, false).0)
            .clone()
    }

    /// Record the hashes of content that is not generated (an upload), so listings show them.
    pub(crate) fn insert(&self, seed: u64, len: u64, quick_xor: String, sha1: String) {
        let e = self.entry(seed, len);
        let _ = e.quick_xor.set(quick_xor);
        let _ = e.sha1.set(sha1);
    }

    /// sha1 (uppercase hex) of the first `len` bytes of `seed`'s stream; computes quickXor alongside.
    pub(crate) fn sha1(&self, seed: u64, len: u64) -> String {
        let e = self.entry(seed, len);
        if let Some(s) = e.sha1.get() {
            return s.clone();
        }
        let (qx, sha) = hash_stream(seed, len, true);
        let _ = e.quick_xor.set(qx);
        e.sha1.get_or_init(|| sha.expect("sha1 requested")).clone()
    }
}

/// Generates the stream once and hashes it chunk by chunk.
fn hash_stream(seed: u64, len: u64, want_sha1: bool) -> (String, Option<String>) {
    let mut qx = QuickXorHash::new();
    let mut sha = want_sha1.then(Sha1::new);
    // No bigger than the content: listings hash thousands of small files, each with its own buffer.
    let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(CHUNK as u64) as usize;
        fill(seed, pos, &mut buf[..n]);
        qx.update(&buf[..n]);
        if let Some(s) = sha.as_mut() {
            s.update(&buf[..n]);
        }
        pos += n as u64;
    }
    let sha = sha.map(|s| {
        s.finalize()
            .iter()
            .fold(String::with_capacity(40), |mut acc, b| {
                use std::fmt::Write as _;
                let _ = write!(acc, "{b:02X}");
                acc
            })
    });
    (qx.finish(), sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_equals_the_same_slice_of_the_whole() {
        let whole = bytes(42, 1000);
        for (start, end) in [
            (0, 1000),
            (1, 9),
            (3, 4),
            (7, 999),
            (8, 16),
            (13, 1000),
            (500, 500),
        ] {
            let mut part = vec![0u8; end - start];
            fill(42, start as u64, &mut part);
            assert_eq!(part, whole[start..end], "range {start}..{end}");
        }
    }

    #[test]
    fn different_seeds_give_different_content() {
        assert_ne!(bytes(1, 64), bytes(2, 64));
        assert_ne!(seed_for("A!1", 10), seed_for("A!1", 11));
    }

    #[test]
    fn cached_hashes_match_hashing_the_bytes() {
        let cache = HashCache::default();
        let data = bytes(7, 200_000);
        assert_eq!(cache.quick_xor(7, 200_000), QuickXorHash::of(&data));
        let sha = cache.sha1(7, 200_000);
        assert_eq!(sha.len(), 40);
        assert_eq!(sha, sha.to_uppercase());
        let mut h = Sha1::new();
        h.update(&data);
        let want: String = h.finalize().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(sha, want);
    }
}
