//! Identifiers shared by `graph` and `manifest`: the only types both seams know.
//!
//! Graph IDs are opaque strings: never parse them. Item IDs are unique only inside one drive, so an item is
//! always keyed on `(DriveId, ItemId)`.

use std::fmt;

/// A drive's ID as the service gave it (`b!…` on business, 16 hex digits on personal).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(transparent)]
pub struct DriveId(pub String);

/// An item's ID, unique only within its drive.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(transparent)]
pub struct ItemId(pub String);

macro_rules! string_id {
    ($t:ty) => {
        impl $t {
            /// The ID as the service spelled it.
            pub fn as_str(&self) -> &str {
                &self.0
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
