//! Identifiers shared by `graph` and `manifest`: the only types both seams know.
//!
//! Graph IDs are opaque strings and are never parsed for meaning. Item IDs are unique only inside one drive,
//! so an item is always keyed on `(DriveId, ItemId)`.
//!
//! Each ID keeps the server's own spelling ([`DriveId::as_str`], sent back in URLs and shown to the user) and
//! has a canonical form ([`DriveId::key`]) that every comparison uses: `==`, hashing and ordering go through it,
//! and the manifest stores it. The two differ only for `OneDrive` Personal drive IDs (16 hex digits) and the
//! item IDs that start with one (`{driveId}!{n}`), because since 2025 the service spells the same drive in
//! upper or lower case depending on the endpoint and the day (onedrive-api-docs #1902, abraunegg/onedrive
//! #3336), and drops a leading zero from drive IDs inside `remoteItem` references (abraunegg/onedrive #3115,
//! #3072). The canonical form is the one rclone and abraunegg/onedrive settled on: lower case, left-padded
//! with zeros to 16 digits. Every other shape — business `b!…` drive IDs (case-sensitive base64), `01…` item
//! IDs — is its own canonical form, byte for byte.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Digits of a `OneDrive` Personal drive ID.
const PERSONAL_DRIVE_ID_DIGITS: usize = 16;

/// The shortest run of hex digits still read as a personal drive ID that lost leading zeros. A bound keeps
/// short hex-looking IDs of other shapes (`b`, `cafe`) out of the rule.
const MIN_PERSONAL_DRIVE_ID_DIGITS: usize = 12;

/// Whether `s` has the shape of a `OneDrive` Personal drive ID, possibly with leading zeros dropped.
fn is_personal_drive_id(s: &str) -> bool {
    (MIN_PERSONAL_DRIVE_ID_DIGITS..=PERSONAL_DRIVE_ID_DIGITS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The canonical spelling of a drive ID: personal ones lower case and zero-padded to 16 digits.
pub(crate) fn canonical_drive_id(id: &str) -> Cow<'_, str> {
    if is_personal_drive_id(id)
        && (id.len() < PERSONAL_DRIVE_ID_DIGITS || id.bytes().any(|b| b.is_ascii_uppercase()))
    {
        Cow::Owned(format!(
            "{:0>width$}",
            id.to_ascii_lowercase(),
            width = PERSONAL_DRIVE_ID_DIGITS
        ))
    } else {
        Cow::Borrowed(id)
    }
}

/// The canonical spelling of an item ID: a personal drive prefix (`5EA4…F617!123`) canonical like a drive ID,
/// the rest as the server wrote it.
pub(crate) fn canonical_item_id(id: &str) -> Cow<'_, str> {
    match id.split_once('!') {
        Some((prefix, rest)) => match canonical_drive_id(prefix) {
            Cow::Borrowed(_) => Cow::Borrowed(id),
            Cow::Owned(mut canonical) => {
                canonical.push('!');
                canonical.push_str(rest);
                Cow::Owned(canonical)
            }
        },
        None => Cow::Borrowed(id),
    }
}

/// A drive's ID (`b!…` on business, 16 hex digits on personal). Holds the server's spelling; compares,
/// hashes and orders by its canonical form.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct DriveId(pub String);

/// An item's ID, unique only within its drive. Holds the server's spelling; compares, hashes and orders by its
/// canonical form.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct ItemId(pub String);

impl DriveId {
    /// The canonical form: what the manifest stores and what comparisons use.
    pub fn key(&self) -> Cow<'_, str> {
        canonical_drive_id(&self.0)
    }
}

impl ItemId {
    /// The canonical form: what the manifest stores and what comparisons use.
    pub fn key(&self) -> Cow<'_, str> {
        canonical_item_id(&self.0)
    }

    /// The ID as `OneDrive` Personal spelled it before 2025 (its drive prefix in upper case, 16 digits),
    /// whatever the spelling now: what stable local-name suffixes are derived from, so that they neither change
    /// with the service's spelling nor differ from what earlier versions gave.
    pub(crate) fn stable_spelling(&self) -> Cow<'_, str> {
        match canonical_item_id(&self.0) {
            Cow::Borrowed(id) if !id.contains('!') => Cow::Borrowed(id),
            canonical => match canonical.split_once('!') {
                Some((prefix, rest)) if is_personal_drive_id(prefix) => {
                    Cow::Owned(format!("{}!{rest}", prefix.to_ascii_uppercase()))
                }
                _ => Cow::Owned(canonical.into_owned()),
            },
        }
    }
}

macro_rules! string_id {
    ($t:ty) => {
        impl $t {
            /// The ID as the service spelled it: what goes back into URLs.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The same ID spelled canonically.
            #[must_use]
            pub(crate) fn canonical(&self) -> Self {
                Self(self.key().into_owned())
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.0 == other.0 || self.key() == other.key()
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.key().hash(state);
            }
        }
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> Ordering {
                self.key().cmp(&other.key())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0).finish()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}
string_id!(DriveId);
string_id!(ItemId);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn personal_drive_ids_compare_without_regard_to_case_or_a_dropped_leading_zero() {
        let upper = DriveId::from("0A1B2C3D4E5F6071");
        let lower = DriveId::from("0a1b2c3d4e5f6071");
        let short = DriveId::from("a1b2c3d4e5f6071");
        assert_eq!(upper, lower);
        assert_eq!(upper, short);
        assert_eq!(upper.key(), "0a1b2c3d4e5f6071");
        assert_eq!(short.canonical().as_str(), "0a1b2c3d4e5f6071");
        // The server's spelling is kept for URLs.
        assert_eq!(upper.as_str(), "0A1B2C3D4E5F6071");
        let set: HashSet<DriveId> = [upper, lower, short].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn business_and_other_ids_are_compared_byte_for_byte() {
        let b = DriveId::from("b!AbCdEf-12_3");
        assert_eq!(b.key(), "b!AbCdEf-12_3");
        assert_ne!(b, DriveId::from("b!abcdef-12_3"));
        assert_ne!(ItemId::from("01ABCDEF"), ItemId::from("01abcdef"));
        // Short hex-looking IDs of other shapes are not personal drive IDs.
        assert_eq!(canonical_drive_id("cafe"), "cafe");
        assert_eq!(canonical_item_id("b!x"), "b!x");
        assert_eq!(canonical_item_id("ABCDEF!1"), "ABCDEF!1");
    }

    #[test]
    fn personal_item_ids_have_their_drive_prefix_canonical_and_the_rest_kept() {
        let a = ItemId::from("5EA4B1C0D2E3F617!101");
        let b = ItemId::from("5ea4b1c0d2e3f617!101");
        assert_eq!(a, b);
        assert_eq!(a.key(), "5ea4b1c0d2e3f617!101");
        assert_eq!(
            canonical_item_id("EA4B1C0D2E3F617!sea8cc6beffdb43d7976fbc7da445c639"),
            "0ea4b1c0d2e3f617!sea8cc6beffdb43d7976fbc7da445c639"
        );
        assert_ne!(a, ItemId::from("5EA4B1C0D2E3F617!102"));
        assert_eq!(b.stable_spelling(), "5EA4B1C0D2E3F617!101");
        assert_eq!(ItemId::from("01abc").stable_spelling(), "01abc");
        assert!(ItemId::from("5EA4B1C0D2E3F617!1") < ItemId::from("5ea4b1c0d2e3f617!2"));
    }
}
