//! Splitting a tenant's drives between machines without a coordinator: `--shard K/N` takes the drives whose
//! stable hash falls in shard K of N. Every machine computes the same split from the drive IDs alone, so N
//! machines (a Kubernetes Indexed Job, N timers, N `parallel` slots) back up disjoint sets, each drive into its
//! own folder with its own manifest and lock.
//!
//! The hash must be the same on every machine, platform, process and Rust version, which `DefaultHasher` does
//! not promise: it is the first 8 bytes (big-endian) of SHA-256 over the drive ID's canonical form, modulo N.

use sha2::{Digest as _, Sha256};

/// The most shards a tenant may be split into.
pub const MAX_SHARDS: u32 = 100_000;

/// One shard of N: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0 (as a Kubernetes `JOB_COMPLETION_INDEX` counts).
    pub(crate) index: u32,
    /// How many shards in all.
    pub count: u32,
}

impl Shard {
    /// Read `K/N` (0 ≤ K < N).
    ///
    /// # Errors
    /// A sentence saying what is accepted.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "--shard {text:?}: give K/N with 0 <= K < N <= {MAX_SHARDS}, e.g. 0/4 … 3/4 (K counts from 0, as \
                 JOB_COMPLETION_INDEX does)"
            )
        };
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard a drive falls in, of `count`.
    pub(crate) fn of(drive_id: &str, count: u32) -> u32 {
        (stable_hash(&canonical_drive_id(drive_id)) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard takes the drive `drive_id`.
    pub fn owns(&self, drive_id: &str) -> bool {
        Shard::of(drive_id, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64 bits of SHA-256 of `text`, the same everywhere.
pub fn stable_hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The one form of a drive ID that shards and duplicates are judged by: the crate's canonical spelling
/// ([`crate::ids::canonical_drive_id`]: a personal drive ID lower case and zero-padded, as the service has sent
/// it in both cases and without its leading zero, onedrive-api-docs #1902, abraunegg/onedrive #3115; a business
/// `b!…` ID, case-sensitive base64url, as it is), so a drive falls in the same shard however it was spelled.
pub fn canonical_drive_id(id: &str) -> String {
    crate::ids::canonical_drive_id(id.trim()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_zero_and_refuse_what_cannot_be() {
        assert_eq!(Shard::parse("0/2"), Ok(Shard { index: 0, count: 2 }));
        assert_eq!(Shard::parse(" 3 / 4 "), Ok(Shard { index: 3, count: 4 }));
        assert_eq!(Shard::parse("0/1").unwrap().to_string(), "0/1");
        for bad in ["", "1", "2/2", "-1/2", "1/0", "a/b", "1/2/3", "0/100001"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_fixed_forever_and_every_drive_falls_in_exactly_one_shard() {
        // Pinned: a change here moves drives between machines on the next night.
        assert_eq!(stable_hash(""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(
            stable_hash("b!abc"),
            u64::from_be_bytes(Sha256::digest(b"b!abc")[..8].try_into().unwrap())
        );
        let ids: Vec<String> = (0..200).map(|i| format!("b!drive-{i}")).collect();
        for n in [1, 2, 3, 7] {
            let mut per_shard = vec![0; n as usize];
            for id in &ids {
                let owners: Vec<u32> = (0..n)
                    .filter(|&k| Shard { index: k, count: n }.owns(id))
                    .collect();
                assert_eq!(owners.len(), 1, "{id} in {owners:?} of {n}");
                per_shard[owners[0] as usize] += 1;
            }
            // Roughly even: no shard gets less than half its share.
            assert!(
                per_shard.iter().all(|&c| c * 2 * n as usize >= ids.len()),
                "{per_shard:?}"
            );
        }
    }

    #[test]
    fn personal_ids_are_one_whatever_their_case_or_lost_zero_and_business_ids_keep_their_case() {
        assert_eq!(canonical_drive_id("0A1B2C3D4E5F6071"), "0a1b2c3d4e5f6071");
        assert_eq!(canonical_drive_id("a1b2c3d4e5f6071"), "0a1b2c3d4e5f6071");
        assert_eq!(
            Shard::of("0A1B2C3D4E5F6071", 5),
            Shard::of("a1b2c3d4e5f6071", 5)
        );
        assert_eq!(canonical_drive_id("b!AbC-_x"), "b!AbC-_x");
        assert_ne!(canonical_drive_id("b!ABC"), canonical_drive_id("b!abc"));
    }
}
