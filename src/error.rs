//! The crate's run-level error: what stops a whole run (per-item failures are rows in the manifest, not
//! errors). Each variant says what failed and what to do; [`Error::kind`] tells the command line which exit
//! code it maps to.

use std::path::PathBuf;

use crate::auth::AuthError;
use crate::drives::DriveError;
use crate::graph::GraphError;
use crate::manifest::ManifestError;
use crate::restore::RestoreError;
use crate::sync::CrawlError;

/// What kind of failure stopped the run; the command line maps each to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line or configuration is wrong (exit 2).
    Usage,
    /// Sign-in is needed or was refused (exit 3).
    Auth,
    /// Another run holds the manifest (exit 4).
    Locked,
    /// The service, the network, the disk or the manifest stopped the run (exit 5).
    Run,
}

/// A failure that stops a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token and no stored sign-in.
    #[error(
        "not signed in: run `odbackup login` (or set ODBACKUP_ACCESS_TOKEN to a Microsoft Graph bearer token)"
    )]
    NoCredentials,
    /// A command that reads the manifest was pointed at a destination without one.
    #[error(
        "no manifest at {path}: run `odbackup crawl` or `odbackup backup` with this --dest first"
    )]
    NoManifest {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Invalid settings.
    #[error("{0}")]
    Usage(String),
    /// A Graph call that the run depends on failed.
    #[error("{what}: {source}")]
    Graph {
        /// What the run was doing.
        what: &'static str,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// The drive cannot be reached the way it was named (a site without `Sites.Read.All`, an unknown user…).
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// Sign-in failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The crawl stopped.
    #[error(transparent)]
    Crawl(Box<CrawlError>),
    /// The manifest could not be opened, locked or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A restore was asked of a sign-in that may only read.
    #[error(
        "the stored sign-in (account {account:?}) may only read files, and a restore writes: run          `odbackup login --write` (it asks for {}), then re-run the same command",
        crate::auth::write::WRITE_SCOPE
    )]
    ReadOnlySignIn {
        /// The account name.
        account: String,
    },
    /// A restore could not start.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The destination folder could not be opened.
    #[error("the backup folder: {0}")]
    Destination(#[from] crate::fsdest::DestError),
    /// An earlier run was told to send nothing for longer than a run waits (a long `Retry-After`, kept in the
    /// manifest), and that time has not come: nothing is sent, since asking early only lengthens the wait.
    #[error(
        "the service asked an earlier run for no request until {} (Retry-After): run again after that",
        until.format("%Y-%m-%d %H:%M UTC")
    )]
    ToldToWait {
        /// When the pause ends.
        until: chrono::DateTime<chrono::Utc>,
    },
}

impl Error {
    /// Wrap a Graph error with what the run was doing.
    pub(crate) fn from_graph(what: &'static str) -> impl FnOnce(GraphError) -> Error {
        move |source| Error::Graph { what, source }
    }

    /// The exit-code family of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // The app's key or secret file is for the user to fix (its mode, its content), not a refusal.
            Error::Usage(_)
            | Error::NoManifest { .. }
            | Error::Drive(_)
            | Error::Auth(AuthError::AppCredential(_))
            | Error::Restore(RestoreError::NoSource { .. } | RestoreError::Source { .. }) => {
                ErrorKind::Usage
            }
            Error::NoCredentials | Error::Auth(_) | Error::ReadOnlySignIn { .. } => ErrorKind::Auth,
            Error::Restore(RestoreError::Manifest(m)) if m.is_locked() => ErrorKind::Locked,
            Error::Graph { source, .. } if source.is_auth() => ErrorKind::Auth,
            Error::Crawl(c) if c.graph_error().is_some_and(GraphError::is_auth) => ErrorKind::Auth,
            Error::Manifest(m) if m.is_locked() => ErrorKind::Locked,
            Error::Manifest(m) if m.is_usage() => ErrorKind::Usage,
            Error::Crawl(c) if matches!(&**c, CrawlError::Manifest(m) if m.is_locked()) => {
                ErrorKind::Locked
            }
            _ => ErrorKind::Run,
        }
    }
}

impl From<CrawlError> for Error {
    fn from(err: CrawlError) -> Self {
        Error::Crawl(Box::new(err))
    }
}

impl From<GraphError> for Error {
    fn from(source: GraphError) -> Self {
        Error::Graph {
            what: "talking to Microsoft Graph",
            source,
        }
    }
}

/// What stopped a run's transfers for good (a refused sign-in, a full disk or drive, the service gone), kept
/// apart from per-item failures. The class is what the code asks about (the exit code), the message what the
/// user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalStop {
    /// What kind of failure it was.
    pub class: crate::manifest::FailureClass,
    /// What stopped the run, in words (the item, what failed, what to do).
    pub message: String,
}

impl FatalStop {
    /// A stop of `class`, said as `message`.
    pub fn new(class: crate::manifest::FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }

    /// The exit code's kind: a refused sign-in (or one without permission to write) is [`ErrorKind::Auth`],
    /// anything else [`ErrorKind::Run`].
    pub fn kind(&self) -> ErrorKind {
        use crate::manifest::FailureClass;
        match self.class {
            FailureClass::Auth | FailureClass::AccessDenied => ErrorKind::Auth,
            _ => ErrorKind::Run,
        }
    }

    /// Serialize an optional stop as the two flat fields summaries have always had in `--json`: `fatal` (the
    /// message) and `fatal_class` (the class's stored spelling), both `null` when the run was not stopped.
    /// Used with `#[serde(flatten, serialize_with = "FatalStop::serialize_fields")]`.
    #[allow(clippy::ref_option)] // serde's `serialize_with` hands the field by reference
    pub(crate) fn serialize_fields<S: serde::Serializer>(
        stop: &Option<FatalStop>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("fatal", &stop.as_ref().map(|f| f.message.as_str()))?;
        map.serialize_entry("fatal_class", &stop.as_ref().map(|f| f.class.as_str()))?;
        map.end()
    }
}

/// Transfers failing in a row in a way that says the service is gone or refusing us, after their own
/// retries, that stop the run: failing every remaining file slowly, one retry budget after another, would
/// take hours on a large drive. The failed files stay on record and the next run retries them.
pub(crate) const SERVICE_TROUBLE_STREAK: usize = 16;

/// What a failed transfer says about the service, as far as stopping the run early is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceTrouble {
    /// It could not be reached (network, timeouts).
    Unreachable,
    /// It answered with server errors (5xx, after the client's retries), Graph or the download host.
    ServerErrors,
    /// It was still throttling after the client waited out every `Retry-After` its budget allows: the
    /// service is refusing this app or account for now, and asking on, Microsoft warns, prolongs it
    /// (<https://learn.microsoft.com/en-us/graph/throttling>).
    Throttling,
}

impl ServiceTrouble {
    /// The trouble a failure of `class` with `http_status` is a sign of, if any.
    pub(crate) fn of(
        class: crate::manifest::FailureClass,
        http_status: Option<u16>,
    ) -> Option<Self> {
        use crate::manifest::FailureClass;
        if http_status.is_some_and(|s| (500..=599).contains(&s)) {
            Some(Self::ServerErrors)
        } else if matches!(class, FailureClass::Network | FailureClass::Timeout) {
            Some(Self::Unreachable)
        } else if class == FailureClass::Throttled {
            Some(Self::Throttling)
        } else {
            None
        }
    }
}

/// The count of transfers in a row (downloads or uploads) that failed with a [`ServiceTrouble`], and the stop
/// it calls for once it reaches [`SERVICE_TROUBLE_STREAK`]. Any other outcome ends the streak.
#[derive(Debug, Clone, Default)]
pub(crate) struct TroubleStreak {
    in_a_row: usize,
}

impl TroubleStreak {
    /// A transfer ended without trouble: the streak ends.
    pub(crate) fn clear(&mut self) {
        self.in_a_row = 0;
    }

    /// The transfer of `path` failed with `class`, `http_status` and `message`: the run's stop, when this
    /// failure is the one that ends the streak's patience.
    pub(crate) fn failed(
        &mut self,
        class: crate::manifest::FailureClass,
        http_status: Option<u16>,
        path: &str,
        message: &str,
    ) -> Option<FatalStop> {
        let Some(trouble) = ServiceTrouble::of(class, http_status) else {
            self.clear();
            return None;
        };
        self.in_a_row += 1;
        if self.in_a_row != SERVICE_TROUBLE_STREAK {
            return None;
        }
        let (what, advice) = match trouble {
            ServiceTrouble::Unreachable => (
                "could not reach the service",
                "check the connection, then re-run the same command",
            ),
            ServiceTrouble::ServerErrors => (
                "failed with server errors",
                "the service or its download host is having trouble: re-run the same command later",
            ),
            ServiceTrouble::Throttling => (
                "were still throttled after waiting as the service asked",
                "the service is limiting this account or app for now: re-run the same command later",
            ),
        };
        Some(FatalStop::new(
            class,
            format!(
                "{SERVICE_TROUBLE_STREAK} transfers in a row {what} (the last: {path}: {message}); {advice}, it \
                 resumes and retries them"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, FatalStop, SERVICE_TROUBLE_STREAK, ServiceTrouble, TroubleStreak};
    use crate::download::DownloadSummary;
    use crate::manifest::FailureClass;

    /// `--json` keeps the shape scripts read: `fatal` and `fatal_class` side by side, `null` when nothing
    /// stopped the run, the class in its stored spelling when something did.
    #[test]
    fn a_fatal_stop_is_two_flat_fields_in_json_and_picks_the_exit_code() {
        let mut summary = DownloadSummary::default();
        let json = serde_json::to_value(&summary).unwrap();
        assert!(
            json["fatal"].is_null() && json["fatal_class"].is_null(),
            "{json}"
        );
        assert!(json.as_object().unwrap().contains_key("fatal_class"));
        summary.fatal = Some(FatalStop::new(FailureClass::Auth, "/a.txt: 401"));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            (json["fatal"].as_str(), json["fatal_class"].as_str()),
            (Some("/a.txt: 401"), Some("auth"))
        );
        assert_eq!(summary.fatal.unwrap().kind(), ErrorKind::Auth);
        assert_eq!(
            FatalStop::new(FailureClass::Disk, "full").kind(),
            ErrorKind::Run
        );
        assert_eq!(
            FatalStop::new(FailureClass::AccessDenied, "read only").kind(),
            ErrorKind::Auth
        );
    }

    #[test]
    fn throttling_beyond_the_clients_patience_counts_as_service_trouble_like_errors_and_lost_connections()
     {
        let cases = [
            (
                FailureClass::Throttled,
                Some(429),
                Some(ServiceTrouble::Throttling),
            ),
            (
                FailureClass::Throttled,
                Some(503),
                Some(ServiceTrouble::ServerErrors),
            ),
            (
                FailureClass::HttpStatus,
                Some(500),
                Some(ServiceTrouble::ServerErrors),
            ),
            (
                FailureClass::Network,
                None,
                Some(ServiceTrouble::Unreachable),
            ),
            (
                FailureClass::Timeout,
                None,
                Some(ServiceTrouble::Unreachable),
            ),
            (FailureClass::NotFound, Some(404), None),
            (FailureClass::HashMismatch, None, None),
            (FailureClass::Disk, None, None),
        ];
        for (class, status, want) in cases {
            assert_eq!(
                ServiceTrouble::of(class, status),
                want,
                "{class:?} {status:?}"
            );
        }
    }

    #[test]
    fn a_streak_stops_the_run_once_and_any_other_outcome_ends_it() {
        let mut streak = TroubleStreak::default();
        for _ in 1..SERVICE_TROUBLE_STREAK {
            assert!(
                streak
                    .failed(FailureClass::Throttled, Some(429), "/a", "x")
                    .is_none()
            );
        }
        assert!(
            streak
                .failed(FailureClass::NotFound, Some(404), "/b", "gone")
                .is_none()
        );
        for _ in 1..SERVICE_TROUBLE_STREAK {
            assert!(
                streak
                    .failed(FailureClass::Network, None, "/c", "reset")
                    .is_none()
            );
        }
        let stop = streak
            .failed(FailureClass::Throttled, Some(429), "/d", "429")
            .expect("the sixteenth in a row stops the run");
        assert_eq!(stop.class, FailureClass::Throttled);
        assert!(stop.message.contains("/d: 429"), "{}", stop.message);
        assert!(
            streak
                .failed(FailureClass::Network, None, "/e", "reset")
                .is_none(),
            "one stop per run"
        );
    }
}
