//! Microsoft's quickXorHash: the one content hash `OneDrive` guarantees on every drive type.
//!
//! Byte `i` of the stream is `XORed` into a 160-bit accumulator at bit offset `(11 * i) mod 160`, wrapping
//! around; the total length is `XORed` into the last 8 bytes at the end. Since 160 = 8 · 20 and 11 is odd,
//! bytes 160 apart land on the same offset, so the accumulator is kept as 160 one-byte-wide *lanes*: lane `k`
//! holds the XOR of every byte whose position is ≡ k (mod 160). Hashing is then a plain XOR of each 160-byte
//! block into the lanes (which the compiler vectorises), and the rotation into the 160-bit value happens once,
//! in `finalize`. See <https://learn.microsoft.com/en-us/onedrive/developer/code-snippets/quickxorhash>.

use base64::Engine as _;

/// Width of the hash in bits.
const WIDTH_BITS: usize = 160;
/// Bit shift between consecutive bytes.
const SHIFT: usize = 11;

/// A streaming quickXorHash.
#[derive(Clone)]
pub struct QuickXorHash {
    lanes: [u8; WIDTH_BITS],
    /// Bytes hashed so far; also the position of the next byte.
    len: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QuickXorHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickXorHash")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl QuickXorHash {
    /// An empty hash.
    pub fn new() -> Self {
        Self {
            lanes: [0; WIDTH_BITS],
            len: 0,
        }
    }

    /// A hash of the part of a stream that starts at byte `offset`, for hashing parts of one file apart (a
    /// file fetched as concurrent ranges): a byte's contribution depends only on its position, so the parts'
    /// hashes fold into the whole one with [`QuickXorHash::absorb`].
    pub(crate) fn starting_at(offset: u64) -> Self {
        Self {
            lanes: [0; WIDTH_BITS],
            len: offset,
        }
    }

    /// Fold in the hash of another part of the same stream (made with [`QuickXorHash::starting_at`]). The
    /// parts must not overlap; once they cover the stream from its first byte to its last, the result is the
    /// stream's hash. Its length becomes the furthest end either has reached.
    pub(crate) fn absorb(&mut self, part: &QuickXorHash) {
        for (l, p) in self.lanes.iter_mut().zip(&part.lanes) {
            *l ^= p;
        }
        self.len = self.len.max(part.len);
    }

    /// Bytes hashed so far (for a part: its end in the stream).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed yet.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hash more bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        let mut lane = (self.len % WIDTH_BITS as u64) as usize;
        self.len += data.len() as u64;
        // Fill up to the next block boundary so the bulk loop works on whole, aligned blocks.
        if lane != 0 {
            let head = (WIDTH_BITS - lane).min(data.len());
            for (l, b) in self.lanes[lane..lane + head].iter_mut().zip(&data[..head]) {
                *l ^= b;
            }
            data = &data[head..];
            lane = (lane + head) % WIDTH_BITS;
            if lane != 0 {
                return;
            }
        }
        let mut blocks = data.chunks_exact(WIDTH_BITS);
        for block in &mut blocks {
            for (l, b) in self.lanes.iter_mut().zip(block) {
                *l ^= b;
            }
        }
        for (l, b) in self.lanes.iter_mut().zip(blocks.remainder()) {
            *l ^= b;
        }
    }

    /// The 20-byte hash.
    pub(crate) fn finalize(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (k, &value) in self.lanes.iter().enumerate() {
            if value == 0 {
                continue;
            }
            let bit = (k * SHIFT) % WIDTH_BITS;
            let (byte, offset) = (bit / 8, bit % 8);
            // An 8-bit value at bit offset `offset` spans this byte and, unless aligned, the next one
            // (wrapping from byte 19 to byte 0).
            let wide = u16::from(value) << offset;
            out[byte] ^= wide as u8;
            out[(byte + 1) % 20] ^= (wide >> 8) as u8;
        }
        for (o, l) in out[12..].iter_mut().zip(self.len.to_le_bytes()) {
            *o ^= l;
        }
        out
    }

    /// The hash as `OneDrive` writes it: standard base64 with padding (28 characters).
    pub fn finalize_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// rclone's published vectors (input base64 → hash), from its quickxorhash test table
    /// (<https://github.com/rclone/rclone>, `backend/onedrive/quickxorhash/quickxorhash_test.go`).
    const VECTORS: &[(&str, &str)] = &[
        ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
        ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
        ("0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="),
        ("XoJ1AsoR4fDYJrDqYs4=", "XhBEHQSgjAiEAx7YPgEs1CEGZwA="),
        ("gQaybEqS/4UlDc8e4IJm", "gDCALNigBEn8oxAlZ8AzPAAOQZg="),
        ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
        (
            "T6LYJIfDh81JrAK309H2JMJTXis=",
            "zBTHrspn3mEcohlJdIUAbjGNaNg=",
        ),
        (
            "NbYXsp5/K6mR+NmHwExjvWeWDJFnXTKWVlzYHoesp2E=",
            "wjuAuWDiq04qDt1R8hHWDDcwVoQ=",
        ),
    ];

    fn cases() -> Vec<(Vec<u8>, String)> {
        let mut cases: Vec<(Vec<u8>, String)> = VECTORS
            .iter()
            .map(|(i, h)| (b64(i), (*h).to_owned()))
            .collect();
        for (input, hash) in [
            (&b"a"[..], "YQAAAAAAAAAAAAAAAQAAAAAAAAA="),
            (b"abc", "YRDDGAAAAAAAAAAAAwAAAAAAAAA="),
            (b"hello world", "aCgDG9jwBhDc4Q1yawMZAAAAAAA="),
            (
                b"The quick brown fox jumps over the lazy dog",
                "bMSlbysmxJL6S75XwfMcQZOpcr4=",
            ),
        ] {
            cases.push((input.to_vec(), hash.to_owned()));
        }
        cases.push((vec![0u8; 1000], "AAAAAAAAAAAAAAAA6AMAAAAAAAA=".to_owned()));
        let ramp: Vec<u8> = (0..1024u32).map(|i| (i % 256) as u8).collect();
        cases.push((ramp, "h7xr2dbCayZCQYR9KKhlwDuT4UI=".to_owned()));
        cases
    }

    #[test]
    fn published_vectors_match_in_one_update() {
        for (input, want) in cases() {
            let mut h = QuickXorHash::new();
            h.update(&input);
            assert_eq!(h.finalize_base64(), want, "len {}", input.len());
        }
    }

    /// Microsoft's reference definition
    /// (<https://learn.microsoft.com/en-us/onedrive/developer/code-snippets/quickxorhash>) taken literally, one bit at a time: slow, obviously right.
    fn reference(data: &[u8]) -> [u8; 20] {
        let mut acc = [0u8; 20];
        for (i, &b) in data.iter().enumerate() {
            let shift = (SHIFT * i) % WIDTH_BITS;
            for bit in 0..8 {
                if b >> bit & 1 == 1 {
                    let at = (shift + bit) % WIDTH_BITS;
                    acc[at / 8] ^= 1 << (at % 8);
                }
            }
        }
        for (a, l) in acc[12..].iter_mut().zip((data.len() as u64).to_le_bytes()) {
            *a ^= l;
        }
        acc
    }

    /// Deterministic pseudo-random bytes (xorshift64).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn the_reference_model_reproduces_the_published_vectors() {
        for (input, want) in cases() {
            let got = base64::engine::general_purpose::STANDARD.encode(reference(&input));
            assert_eq!(got, want, "len {}", input.len());
        }
    }

    #[test]
    fn random_inputs_in_random_pieces_match_the_reference_model() {
        let lengths = (0..=330).chain([479, 480, 481, 1000, 4096 + 7, 65_536 + 3]);
        for (n, len) in lengths.enumerate() {
            let data = noise(len, n as u64 + 1);
            let want = reference(&data);
            let mut whole = QuickXorHash::new();
            whole.update(&data);
            assert_eq!(whole.finalize(), want, "len {len} in one piece");
            // Pieces of varying size, empty ones included, cut by a second generator.
            let cuts = noise(64, len as u64 + 99);
            let mut h = QuickXorHash::new();
            let (mut rest, mut k) = (&data[..], 0);
            while !rest.is_empty() {
                let size = usize::from(cuts[k % cuts.len()]) % 200;
                k += 1;
                let (piece, tail) = rest.split_at(size.min(rest.len()));
                h.update(piece);
                rest = tail;
            }
            assert_eq!(h.len(), len as u64);
            assert_eq!(h.finalize(), want, "len {len} in pieces");
        }
    }

    #[test]
    fn vectors_match_whatever_the_buffer_split() {
        for (input, want) in cases() {
            for chunk in [1, 3, 7, 64, 159, 160, 161, 512] {
                let mut h = QuickXorHash::new();
                for piece in input.chunks(chunk) {
                    h.update(piece);
                }
                assert_eq!(
                    h.finalize_base64(),
                    want,
                    "len {} chunk {chunk}",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn parts_hashed_apart_in_any_order_fold_into_the_whole_hash() {
        let data: Vec<u8> = (0..100_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let whole = {
            let mut h = QuickXorHash::new();
            h.update(&data);
            h.finalize_base64()
        };
        // Uneven cuts, none on a 160-byte boundary except 0, folded last-first; one part fed in pieces.
        let cuts = [0usize, 7, 161, 33_333, 33_334, 70_001, data.len()];
        let mut folded = QuickXorHash::new();
        for w in cuts.windows(2).rev() {
            let mut part = QuickXorHash::starting_at(w[0] as u64);
            for piece in data[w[0]..w[1]].chunks(997) {
                part.update(piece);
            }
            assert_eq!(part.len(), w[1] as u64);
            folded.absorb(&part);
        }
        assert_eq!(folded.len(), data.len() as u64);
        assert_eq!(folded.finalize_base64(), whole);
        // A missing part gives another hash.
        let mut gap = QuickXorHash::new();
        let mut tail = QuickXorHash::starting_at(161);
        tail.update(&data[161..]);
        gap.absorb(&tail);
        assert_ne!(gap.finalize_base64(), whole);
    }
}
