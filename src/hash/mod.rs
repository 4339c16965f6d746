//! Content hashing and verification: quickXorHash (always) and SHA-1 (when the listing has one), computed
//! in one pass while bytes stream, then compared with what the listing promised.
//!
//! A leaf module: it knows bytes and hash strings, nothing of Graph, files or the manifest.

mod quickxor;

use std::fmt::Write as _;

pub use quickxor::QuickXorHash;
use sha1::{Digest as _, Sha1};

/// Hashes of a byte stream, computed in one pass.
#[derive(Debug, Clone)]
pub struct ContentHasher {
    quick_xor: QuickXorHash,
    sha1: Option<Sha1>,
}

/// What a [`ContentHasher`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// Bytes hashed.
    pub len: u64,
    /// quickXorHash, base64.
    pub quick_xor: String,
    /// SHA-1, uppercase hex, when it was asked for.
    pub sha1: Option<String>,
}

impl ContentHasher {
    /// A fresh hasher; SHA-1 only costs time, so it is computed only when there is one to compare with.
    pub fn new(with_sha1: bool) -> Self {
        Self {
            quick_xor: QuickXorHash::new(),
            sha1: with_sha1.then(Sha1::new),
        }
    }

    /// Hash more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.quick_xor.update(data);
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(data);
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.quick_xor.len()
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.quick_xor.is_empty()
    }

    /// The digests.
    pub fn finish(self) -> ContentDigest {
        ContentDigest {
            len: self.quick_xor.len(),
            quick_xor: self.quick_xor.finalize_base64(),
            sha1: self.sha1.map(|s| {
                s.finalize()
                    .iter()
                    .fold(String::with_capacity(40), |mut out, b| {
                        let _ = write!(out, "{b:02X}");
                        out
                    })
            }),
        }
    }
}

/// What the listing says a file should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Size in bytes.
    pub size: u64,
    /// quickXorHash, base64, if listed.
    pub quick_xor: Option<String>,
    /// SHA-1, hex, if listed.
    pub sha1: Option<String>,
}

/// The result of comparing received bytes with the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Size and quickXorHash match.
    QuickXor,
    /// Size and SHA-1 match (no quickXorHash was listed).
    Sha1,
    /// Size matches; the listing had no hash, so the content is unverified.
    SizeOnly,
    /// The size differs.
    SizeMismatch {
        /// Listed size.
        expected: u64,
        /// Received size.
        actual: u64,
    },
    /// The size matches but the hash does not.
    HashMismatch {
        /// `quickXorHash` or `sha1Hash`.
        algorithm: &'static str,
        /// Listed value.
        expected: String,
        /// Computed value.
        actual: String,
    },
}

impl Verification {
    /// Whether the bytes may be kept under the final name.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::QuickXor | Self::Sha1 | Self::SizeOnly)
    }
}

/// Compare a digest with the listing: size first, then quickXorHash (exact), else SHA-1 (any case).
pub fn verify(expected: &Expected, digest: &ContentDigest) -> Verification {
    if digest.len != expected.size {
        return Verification::SizeMismatch {
            expected: expected.size,
            actual: digest.len,
        };
    }
    if let Some(want) = expected.quick_xor.as_deref().filter(|s| !s.is_empty()) {
        return if want == digest.quick_xor {
            Verification::QuickXor
        } else {
            Verification::HashMismatch {
                algorithm: "quickXorHash",
                expected: want.to_owned(),
                actual: digest.quick_xor.clone(),
            }
        };
    }
    if let (Some(want), Some(got)) = (
        expected.sha1.as_deref().filter(|s| !s.is_empty()),
        &digest.sha1,
    ) {
        return if want.eq_ignore_ascii_case(got) {
            Verification::Sha1
        } else {
            Verification::HashMismatch {
                algorithm: "sha1Hash",
                expected: want.to_owned(),
                actual: got.clone(),
            }
        };
    }
    Verification::SizeOnly
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> ContentDigest {
        let mut h = ContentHasher::new(true);
        h.update(data);
        h.finish()
    }

    #[test]
    fn sha1_is_uppercase_hex() {
        assert_eq!(
            digest_of(b"abc").sha1.unwrap(),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
    }

    #[test]
    fn verification_rules() {
        let d = digest_of(b"abc");
        let qx = d.quick_xor.clone();
        let sha = "a9993e364706816aba3e25717850c26c9cd0d89d".to_owned();
        let exp = |size, q: Option<&str>, s: Option<&str>| Expected {
            size,
            quick_xor: q.map(str::to_owned),
            sha1: s.map(str::to_owned),
        };
        let cases = [
            (exp(3, Some(&qx), None), Verification::QuickXor),
            (exp(3, Some(&qx), Some("00")), Verification::QuickXor),
            (exp(3, None, Some(&sha)), Verification::Sha1),
            (exp(3, Some(""), Some(&sha)), Verification::Sha1),
            (exp(3, None, None), Verification::SizeOnly),
            (
                exp(4, Some(&qx), None),
                Verification::SizeMismatch {
                    expected: 4,
                    actual: 3,
                },
            ),
        ];
        for (expected, want) in cases {
            assert_eq!(verify(&expected, &d), want, "{expected:?}");
        }
        assert!(matches!(
            verify(&exp(3, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="), None), &d),
            Verification::HashMismatch {
                algorithm: "quickXorHash",
                ..
            }
        ));
        assert!(matches!(
            verify(&exp(3, None, Some("0000")), &d),
            Verification::HashMismatch {
                algorithm: "sha1Hash",
                ..
            }
        ));
    }
}
