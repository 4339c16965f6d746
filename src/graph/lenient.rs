//! Numbers read from the service as it sends them, not as documented. Sizes and counts are documented as
//! `Int64`, but business drives have listed negative sizes for folders and files
//! (<https://github.com/OneDrive/onedrive-api-docs/issues/375>, #617, #926, #1053) and `/sites/{id}/drive` has
//! answered a negative `quota.used` (<https://github.com/OneDrive/onedrive-api-docs/issues/1869>); `OData` may send
//! `Int64` as a string (`IEEE754Compatible=true`). Strict `u64` fields turned one such value into an undecodable
//! page or drive, every run. Here a value that is not a count (negative, fractional, too large for its type, or
//! not a number at all) reads as unknown, and the caller decides what an unknown count means.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A count (`size`, `childCount`, a quota, a dimension) as the service sent it: `None` when absent or not a
/// count. Use with `#[serde(default, deserialize_with = "lenient::count")]`.
///
/// # Errors
/// Only when the JSON itself is malformed; a value of the wrong shape is `None`.
pub(super) fn count<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    Ok(deserializer
        .deserialize_any(CountVisitor)?
        .and_then(|n| T::try_from(n).ok()))
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a count")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).ok())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // 2^64 as a float: anything at or above it does not fit.
        const LIMIT: f64 = 18_446_744_073_709_551_616.0;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // checked: whole, 0 ≤ v < 2^64
        Ok((v.fract() == 0.0 && (0.0..LIMIT).contains(&v)).then_some(v as u64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse().ok())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(CountVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Sized {
        #[serde(default, deserialize_with = "super::count")]
        size: Option<u64>,
        #[serde(default, deserialize_with = "super::count")]
        width: Option<u32>,
    }

    fn read(json: &str) -> (Option<u64>, Option<u32>) {
        let s: Sized = serde_json::from_str(json).unwrap();
        (s.size, s.width)
    }

    #[test]
    fn counts_of_every_shape_the_service_sent_read_as_a_count_or_as_unknown() {
        assert_eq!(read(r#"{"size": 5, "width": 3}"#), (Some(5), Some(3)));
        assert_eq!(read("{}"), (None, None));
        assert_eq!(read(r#"{"size": null}"#), (None, None));
        assert_eq!(read(r#"{"size": -1, "width": -7}"#), (None, None));
        assert_eq!(read(r#"{"size": "123"}"#), (Some(123), None));
        assert_eq!(read(r#"{"size": 12.0, "width": 1.5}"#), (Some(12), None));
        assert_eq!(read(r#"{"size": 1e300}"#), (None, None));
        assert_eq!(read(r#"{"size": true, "width": 4294967296}"#), (None, None));
        assert_eq!(
            read(r#"{"size": [1, {"a": 2}], "width": {"x": [3]}}"#),
            (None, None)
        );
        assert_eq!(
            read(r#"{"size": 18446744073709551615}"#),
            (Some(u64::MAX), None)
        );
        // Malformed JSON is still an error.
        assert!(serde_json::from_str::<Sized>(r#"{"size": -}"#).is_err());
    }
}
