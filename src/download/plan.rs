//! Pure decisions of the downloader: what to do with a file given what is on disk, and how to classify a
//! failure. No I/O here, so every rule is a table-driven unit test.

use crate::graph::GraphError;
use crate::manifest::FailureClass;

/// What is on disk for one manifest row, as observed just before the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalState {
    /// Size of the file under its final name, if there is one.
    pub final_len: Option<u64>,
    /// Size of the part file for this item's current version, if there is one.
    pub part_len: Option<u64>,
}

/// What the transfer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A file of the right size is already there: hash it, and adopt it if it matches.
    CheckExisting,
    /// Continue the part file from this offset (its prefix is hashed first).
    Resume(u64),
    /// Download from the start.
    Fetch,
}

/// Decide how to get `expected_size` bytes on disk.
pub fn plan(expected_size: u64, local: LocalState) -> Action {
    if local.final_len == Some(expected_size) {
        return Action::CheckExisting;
    }
    match local.part_len {
        // A part file that is complete (killed between fsync and rename) is verified like any resume: the
        // resumed request then asks for nothing more.
        Some(len) if len > 0 && len <= expected_size => Action::Resume(len),
        _ => Action::Fetch,
    }
}

/// The manifest's failure class for a Graph error met while downloading.
pub fn classify(err: &GraphError) -> FailureClass {
    if err.is_auth() {
        return FailureClass::Auth;
    }
    if let Some(code) = err.code()
        && code.eq_ignore_ascii_case("malwareDetected")
    {
        return FailureClass::Malware;
    }
    match err.status() {
        Some(429 | 503 | 509) => FailureClass::Throttled,
        Some(403) => FailureClass::AccessDenied,
        Some(404 | 410) => FailureClass::NotFound,
        Some(_) => FailureClass::HttpStatus,
        None if err.is_timeout() => FailureClass::Timeout,
        None if err.is_transient() => FailureClass::Network,
        None => FailureClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_local_state() {
        let none = LocalState {
            final_len: None,
            part_len: None,
        };
        let cases = [
            (100, none, Action::Fetch),
            (
                100,
                LocalState {
                    final_len: Some(100),
                    ..none
                },
                Action::CheckExisting,
            ),
            (
                100,
                LocalState {
                    final_len: Some(99),
                    ..none
                },
                Action::Fetch,
            ),
            (
                100,
                LocalState {
                    part_len: Some(40),
                    ..none
                },
                Action::Resume(40),
            ),
            (
                100,
                LocalState {
                    part_len: Some(100),
                    ..none
                },
                Action::Resume(100),
            ),
            (
                100,
                LocalState {
                    part_len: Some(0),
                    ..none
                },
                Action::Fetch,
            ),
            (
                100,
                LocalState {
                    part_len: Some(140),
                    ..none
                },
                Action::Fetch,
            ),
            (
                100,
                LocalState {
                    final_len: Some(3),
                    part_len: Some(50),
                },
                Action::Resume(50),
            ),
            (
                0,
                LocalState {
                    final_len: Some(0),
                    ..none
                },
                Action::CheckExisting,
            ),
        ];
        for (size, local, want) in cases {
            assert_eq!(plan(size, local), want, "{size} {local:?}");
        }
    }
}
