//! quickXorHash, the content hash OneDrive guarantees on every flavour
//! (<https://learn.microsoft.com/en-us/onedrive/developer/code-snippets/quickxorhash>).
//!
//! Written from the definition in the notes, independently of odbackup's own implementation, so
//! a bug in one is not silently shared by the other.
//!
//! Byte *i* of the stream is XORed into a 160-bit accumulator rotated left by `(11·i) mod 160`.
//! Bytes whose offsets agree modulo 160 share the same rotation, so this version first folds the
//! input into 160 one-byte lanes (20 `u64` words, XORed a whole 160-byte block at a time) and
//! does the rotations once, in [`QuickXorHash::finish`].

use base64::Engine as _;

/// Width of the accumulator in bits (and the number of lanes in bytes).
const WIDTH: usize = 160;

/// XOR `bits` (at most 8 of them, none past bit 159 once placed) into the accumulator at bit `pos`.
fn xor_bits(acc: &mut [u64; 3], pos: usize, bits: u64) {
    let (word, offset) = (pos / 64, pos % 64);
    acc[word] ^= bits << offset;
    if offset > 56 && word + 1 < acc.len() {
        acc[word + 1] ^= bits >> (64 - offset);
    }
}

/// An incremental quickXorHash.
#[derive(Clone, Debug)]
pub struct QuickXorHash {
    /// Lane `k` (byte `k` of this little-endian array) is the XOR of every byte at an offset ≡ k (mod 160).
    lanes: [u64; 20],
    /// Total bytes seen.
    len: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHash {
    /// A hash over no bytes yet.
    pub fn new() -> Self {
        Self {
            lanes: [0; 20],
            len: 0,
        }
    }

    /// Feeds more bytes; chunk boundaries don't matter.
    pub fn update(&mut self, mut data: &[u8]) {
        // Byte-wise until the next lane-0 boundary.
        let phase = (self.len % WIDTH as u64) as usize;
        if phase != 0 {
            let head = (WIDTH - phase).min(data.len());
            self.xor_bytes(phase, &data[..head]);
            self.len += head as u64;
            data = &data[head..];
        }
        // Whole 160-byte blocks, a word at a time.
        let mut blocks = data.chunks_exact(WIDTH);
        for block in &mut blocks {
            for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
                *lane ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
            }
        }
        let tail = blocks.remainder();
        self.len += (data.len() - tail.len()) as u64;
        if !tail.is_empty() {
            self.xor_bytes(0, tail);
            self.len += tail.len() as u64;
        }
    }

    fn xor_bytes(&mut self, start_lane: usize, bytes: &[u8]) {
        for (k, &b) in (start_lane..).zip(bytes) {
            self.lanes[k / 8] ^= u64::from(b) << (8 * (k % 8));
        }
    }

    /// The 20 raw bytes of the hash.
    pub fn finish_bytes(&self) -> [u8; 20] {
        // 160-bit accumulator as three little-endian words (the last holds 32 bits).
        let mut acc = [0u64; 3];
        for k in 0..WIDTH {
            let v = (self.lanes[k / 8] >> (8 * (k % 8))) as u8;
            if v == 0 {
                continue;
            }
            // The lane's 8 bits go to bits shift.. of the accumulator, a whole byte at a time (listings hash
            // every file they show, so this runs once per listed file): what passes bit 159 wraps to bit 0.
            let shift = (11 * k) % WIDTH;
            let fit = (WIDTH - shift).min(8);
            xor_bits(&mut acc, shift, u64::from(v) & ((1 << fit) - 1));
            if fit < 8 {
                xor_bits(&mut acc, 0, u64::from(v) >> fit);
            }
        }
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&acc[0].to_le_bytes());
        out[8..16].copy_from_slice(&acc[1].to_le_bytes());
        out[16..].copy_from_slice(&acc[2].to_le_bytes()[..4]);
        for (o, l) in out[12..].iter_mut().zip(self.len.to_le_bytes()) {
            *o ^= l;
        }
        out
    }

    /// The hash as Graph shows it: standard base64 with padding (28 characters).
    pub fn finish(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finish_bytes())
    }

    /// The hash of one buffer.
    pub fn of(data: &[u8]) -> String {
        let mut h = Self::new();
        h.update(data);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quickxor_vectors::VECTORS;

    fn decode(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("vector input is base64")
    }

    #[test]
    fn every_published_vector_matches_in_one_update() {
        assert!(VECTORS.len() >= 51);
        for &(len, input, want) in VECTORS {
            let bytes = decode(input);
            assert_eq!(bytes.len(), len, "vector {len} decodes to its length");
            assert_eq!(QuickXorHash::of(&bytes), want, "vector of length {len}");
        }
    }

    #[test]
    fn every_vector_matches_whatever_the_chunk_size() {
        for chunk in [1, 2, 3, 4, 7, 8, 16, 32, 64, 128, 159, 160, 161, 256, 512] {
            for &(len, input, want) in VECTORS {
                let bytes = decode(input);
                let mut h = QuickXorHash::new();
                for piece in bytes.chunks(chunk) {
                    h.update(piece);
                }
                assert_eq!(h.finish(), want, "vector {len} fed in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn ascii_vectors_from_the_notes() {
        assert_eq!(QuickXorHash::of(b"a"), "YQAAAAAAAAAAAAAAAQAAAAAAAAA=");
        assert_eq!(QuickXorHash::of(b"abc"), "YRDDGAAAAAAAAAAAAwAAAAAAAAA=");
        assert_eq!(
            QuickXorHash::of(b"hello world"),
            "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
        );
        assert_eq!(
            QuickXorHash::of(b"The quick brown fox jumps over the lazy dog"),
            "bMSlbysmxJL6S75XwfMcQZOpcr4="
        );
        assert_eq!(
            QuickXorHash::of(&[0u8; 1000]),
            "AAAAAAAAAAAAAAAA6AMAAAAAAAA="
        );
        let ramp: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
        assert_eq!(QuickXorHash::of(&ramp), "h7xr2dbCayZCQYR9KKhlwDuT4UI=");
    }

    #[test]
    fn large_input_split_across_odd_buffers_matches_a_single_pass() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let whole = QuickXorHash::of(&data);
        for chunk in [1000, 4096, 65_536, 65_537, 99_991] {
            let mut h = QuickXorHash::new();
            for piece in data.chunks(chunk) {
                h.update(piece);
            }
            assert_eq!(h.finish(), whole, "chunks of {chunk}");
        }
    }
}
