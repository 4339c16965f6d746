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
    pub(crate) len: u64,
    /// quickXorHash, base64.
    pub(crate) quick_xor: String,
    /// SHA-1, uppercase hex, when it was asked for.
    pub(crate) sha1: Option<String>,
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
    pub(crate) fn len(&self) -> u64 {
        self.quick_xor.len()
    }

    /// Whether nothing was hashed yet.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
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
    pub(crate) quick_xor: Option<String>,
    /// SHA-1, hex, if listed.
    pub(crate) sha1: Option<String>,
}

impl Expected {
    /// The listed quickXorHash; an empty one counts as absent.
    fn listed_quick_xor(&self) -> Option<&str> {
        self.quick_xor.as_deref().filter(|s| !s.is_empty())
    }

    /// The listed SHA-1; an empty one counts as absent.
    fn listed_sha1(&self) -> Option<&str> {
        self.sha1.as_deref().filter(|s| !s.is_empty())
    }

    /// Whether the listing gives a hash to judge the bytes by.
    pub(crate) fn has_hash(&self) -> bool {
        self.listed_quick_xor().is_some() || self.listed_sha1().is_some()
    }
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
    /// The size differs from the listing, but the bytes have the listed hash (quickXorHash when listed, else
    /// SHA-1): the listing's size is what is wrong. quickXorHash folds the length in, so a match vouches for
    /// exactly these bytes.
    SizeListedWrong {
        /// `quickXorHash` or `sha1Hash`: the hash that matched.
        algorithm: &'static str,
        /// Listed size.
        expected: u64,
        /// Received size.
        actual: u64,
    },
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
    #[cfg(test)]
    pub(crate) fn is_ok(&self) -> bool {
        matches!(self, Self::QuickXor | Self::Sha1 | Self::SizeOnly)
    }

    /// How bytes kept after this comparison were verified, in the manifest's spelling (`status` and `--json`
    /// count them by it): `quickxor`, `sha1`, `size_only`, or `unverified` for a mismatch kept only because a
    /// known service quirk explains it.
    pub(crate) fn as_stored(&self) -> &'static str {
        match self {
            Self::SizeListedWrong { algorithm, .. } if *algorithm == "sha1Hash" => "sha1",
            Self::QuickXor | Self::SizeListedWrong { .. } => "quickxor",
            Self::Sha1 => "sha1",
            Self::SizeOnly => "size_only",
            Self::SizeMismatch { .. } | Self::HashMismatch { .. } => "unverified",
        }
    }
}

/// Compare a digest with the listing: size first, then quickXorHash (exactly: base64 is case-sensitive),
/// else SHA-1 (in any case: the service writes hex in uppercase, other tools in lowercase). An empty listed
/// hash counts as absent. A listed SHA-1 that the [`ContentHasher`] was not asked to compute cannot be
/// checked, so the result is then [`Verification::SizeOnly`]: create the hasher with
/// `ContentHasher::new(expected.quick_xor.is_none() && expected.sha1.is_some())` or simply `true`.
///
/// A size that differs while the hash (the one that decides, as above) matches is
/// [`Verification::SizeListedWrong`]: old personal items have been listed larger than the bytes served with a
/// hash of those bytes (onedrive-api-docs #492).
pub fn verify(expected: &Expected, digest: &ContentDigest) -> Verification {
    if digest.len != expected.size {
        let matched = match (
            expected.listed_quick_xor(),
            expected.listed_sha1(),
            &digest.sha1,
        ) {
            (Some(want), _, _) => (want == digest.quick_xor).then_some("quickXorHash"),
            (None, Some(want), Some(got)) => want.eq_ignore_ascii_case(got).then_some("sha1Hash"),
            _ => None,
        };
        if let Some(algorithm) = matched {
            return Verification::SizeListedWrong {
                algorithm,
                expected: expected.size,
                actual: digest.len,
            };
        }
        return Verification::SizeMismatch {
            expected: expected.size,
            actual: digest.len,
        };
    }
    if let Some(want) = expected.listed_quick_xor() {
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
    if let (Some(want), Some(got)) = (expected.listed_sha1(), &digest.sha1) {
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
    // A table of cases, one per rule.
    #[allow(clippy::too_many_lines)]
    fn verification_rules() {
        let d = digest_of(b"abc");
        let qx = d.quick_xor.clone();
        let sha_lower = "a9993e364706816aba3e25717850c26c9cd0d89d";
        let sha_upper = "A9993E364706816ABA3E25717850C26C9CD0D89D";
        let exp = |size, q: Option<&str>, s: Option<&str>| Expected {
            size,
            quick_xor: q.map(str::to_owned),
            sha1: s.map(str::to_owned),
        };
        let qx_mismatch = |expected: &str| Verification::HashMismatch {
            algorithm: "quickXorHash",
            expected: expected.to_owned(),
            actual: qx.clone(),
        };
        let zero_qx = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let cases = [
            (
                "quickXor matches",
                exp(3, Some(&qx), None),
                Verification::QuickXor,
            ),
            (
                "quickXor preferred over a wrong sha1",
                exp(3, Some(&qx), Some("00")),
                Verification::QuickXor,
            ),
            (
                "a wrong quickXor fails even if sha1 matches",
                exp(3, Some(zero_qx), Some(sha_upper)),
                qx_mismatch(zero_qx),
            ),
            (
                "quickXor compared exactly (base64 is case-sensitive)",
                exp(3, Some(&qx.to_lowercase()), None),
                qx_mismatch(&qx.to_lowercase()),
            ),
            (
                "sha1 uppercase",
                exp(3, None, Some(sha_upper)),
                Verification::Sha1,
            ),
            (
                "sha1 lowercase",
                exp(3, None, Some(sha_lower)),
                Verification::Sha1,
            ),
            (
                "an empty quickXor counts as absent",
                exp(3, Some(""), Some(sha_lower)),
                Verification::Sha1,
            ),
            (
                "sha1 mismatch",
                exp(3, None, Some("0000")),
                Verification::HashMismatch {
                    algorithm: "sha1Hash",
                    expected: "0000".to_owned(),
                    actual: sha_upper.to_owned(),
                },
            ),
            ("no hash listed", exp(3, None, None), Verification::SizeOnly),
            (
                "size checked before hashes",
                exp(4, Some(zero_qx), None),
                Verification::SizeMismatch {
                    expected: 4,
                    actual: 3,
                },
            ),
            (
                "size mismatch without hashes",
                exp(2, None, None),
                Verification::SizeMismatch {
                    expected: 2,
                    actual: 3,
                },
            ),
            (
                "a size listed wrong with the right quickXor",
                exp(300, Some(&qx), Some("00")),
                Verification::SizeListedWrong {
                    algorithm: "quickXorHash",
                    expected: 300,
                    actual: 3,
                },
            ),
            (
                "a size listed wrong with the right sha1 and no quickXor",
                exp(300, None, Some(sha_lower)),
                Verification::SizeListedWrong {
                    algorithm: "sha1Hash",
                    expected: 300,
                    actual: 3,
                },
            ),
            (
                "a wrong quickXor decides even if sha1 matches",
                exp(300, Some(zero_qx), Some(sha_upper)),
                Verification::SizeMismatch {
                    expected: 300,
                    actual: 3,
                },
            ),
        ];
        for (name, expected, want) in cases {
            assert_eq!(verify(&expected, &d), want, "{name}");
            assert_eq!(
                want.is_ok(),
                matches!(
                    want,
                    Verification::QuickXor | Verification::Sha1 | Verification::SizeOnly
                )
            );
        }
    }

    #[test]
    fn an_empty_file_verifies_with_or_without_its_hash() {
        let d = ContentHasher::new(false).finish();
        assert_eq!(
            (d.len, d.quick_xor.as_str(), d.sha1.as_deref()),
            (0, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", None)
        );
        let with_hash = Expected {
            size: 0,
            quick_xor: Some(d.quick_xor.clone()),
            sha1: None,
        };
        assert_eq!(verify(&with_hash, &d), Verification::QuickXor);
        let without = Expected {
            size: 0,
            quick_xor: None,
            sha1: None,
        };
        assert_eq!(verify(&without, &d), Verification::SizeOnly);
    }

    #[test]
    fn a_sha1_not_computed_leaves_the_file_unverified_rather_than_failed() {
        let d = ContentHasher::new(false).finish();
        let expected = Expected {
            size: 0,
            quick_xor: None,
            sha1: Some("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709".into()),
        };
        assert_eq!(verify(&expected, &d), Verification::SizeOnly);
    }

    #[test]
    fn the_content_hasher_agrees_with_quickxor_alone_across_pieces() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut h = ContentHasher::new(true);
        assert!(h.is_empty());
        for piece in data.chunks(333) {
            h.update(piece);
        }
        assert_eq!(h.len(), 10_000);
        let mut qx = QuickXorHash::new();
        qx.update(&data);
        let d = h.finish();
        assert_eq!(d.quick_xor, qx.finalize_base64());
        assert_eq!(d.sha1, digest_of(&data).sha1);
    }
}
