//! Pure decisions of the downloader: what to do with a file given what is on disk, and how to classify a
//! failure. No I/O here, so every rule is a table-driven unit test.

use super::chunks::MAX_RANGED_SIZE;
use crate::graph::GraphError;
use crate::hash::Verification;
use crate::manifest::{Caveat, CaveatClass, FailureClass};

/// How long a download URL from a listing is used after it was stored. Real ones last about an hour (the
/// driveItem page says one hour, the download page "a few minutes":
/// <https://learn.microsoft.com/en-us/graph/api/resources/driveitem>,
/// <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>); half of that leaves room
/// for clock skew and a listing that took a while to reach the downloader. Guessing wrong costs little either
/// way: an expired URL is refused (401/403/404/410) and replaced by one `/content` round trip, never failing the file.
pub const LISTED_URL_FRESHNESS: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Whether a listing URL stored at `fetched_at_ms` is young enough to use at `now_ms` (both Unix
/// milliseconds). One stored "in the future" (the clock went back) is not trusted.
pub fn listed_url_is_fresh(
    fetched_at_ms: i64,
    now_ms: i64,
    freshness: std::time::Duration,
) -> bool {
    let age = now_ms.saturating_sub(fetched_at_ms);
    let window = i64::try_from(freshness.as_millis()).unwrap_or(i64::MAX);
    (0..window).contains(&age)
}

/// The manifest setting that keeps the lifetime of listing download URLs a run observed (milliseconds), so
/// the next run does not learn it again one refused request at a time.
pub const LISTED_URL_LIFETIME_SETTING: &str = "listed_url_lifetime_ms";

/// Which download URLs from listings are still worth a request, as the run learns how long they last.
///
/// Two lessons, both from a refused URL (401/403/404/410 from the download host):
/// - **That listing is over.** URLs are minted together when a listing page is served and expire together,
///   so once one stored at `t` is refused, every URL stored at or before `t` is taken as expired: the files
///   they were for go through `/content` at once, one refused request for the listing instead of one per
///   file.
/// - **The lifetime.** When a fresh URL for the same file then serves it, the refused one was merely old, and
///   its age bounds the lifetime from above: the window for using stored URLs shrinks below it, for the rest
///   of the run and (through [`LISTED_URL_LIFETIME_SETTING`]) the next. The service documents about an hour
///   on the driveItem page and "a few minutes" on the download page
///   (<https://learn.microsoft.com/en-us/graph/api/resources/driveitem>,
///   <https://learn.microsoft.com/en-us/graph/api/driveitem-get-content>); tenants differ.
/// - **A lesson can be wrong.** One refusal that a fresh URL then got past may have been a passing refusal,
///   not an expiry, and a remembered lifetime may be an old tenant's. So while the window is below the
///   default, one URL past the learned lifetime (younger than the default window) is tried now and then
///   ([`ListedUse::Probe`], at most once every [`PROBE_INTERVAL_MS`], never within that long of a lesson): if
///   it serves, the lifetime is longer than its age and the estimate doubles from there; if it is refused, it
///   costs that one request.
///
/// No clock or I/O: times are Unix milliseconds passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUrlLifetime {
    /// Use a stored URL while it is younger than this.
    window_ms: i64,
    /// URLs stored at or before this time are expired (one stored then was refused).
    expired_up_to_ms: Option<i64>,
    /// The shortest age at which a URL was confirmed expired (this run or, remembered, an earlier one).
    learned_ms: Option<i64>,
    /// Whether `learned_ms` changed since [`Self::take_learned`] last looked.
    changed: bool,
    /// When a URL past the window was last tried, or a lesson learned (whichever came last).
    last_probe_ms: Option<i64>,
}

/// The shortest time between two tries of a listing URL past the learned window (and between a lesson and
/// the next try): a refused try costs one request, so one a minute costs nothing a user would notice.
pub const PROBE_INTERVAL_MS: i64 = 60_000;

/// What to do with a listing's download URL, as [`ListedUrlLifetime::choose`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedUse {
    /// Young enough: use it.
    Fresh,
    /// Past the learned window but young enough to test it: use it, and report how it went
    /// ([`ListedUrlLifetime::outlived`] when it serves).
    Probe,
    /// Expired, or not worth a request: ask `/content`.
    Skip,
}

impl ListedUrlLifetime {
    /// Start from the default window, or from the lifetime an earlier run observed.
    pub fn new(remembered_ms: Option<i64>) -> Self {
        let default = Self::default_window_ms();
        let learned_ms = remembered_ms.filter(|ms| *ms >= 0);
        Self {
            window_ms: learned_ms.map_or(default, |l| Self::window_for(l).min(default)),
            expired_up_to_ms: None,
            learned_ms,
            changed: false,
            last_probe_ms: None,
        }
    }

    /// [`LISTED_URL_FRESHNESS`] in milliseconds.
    fn default_window_ms() -> i64 {
        i64::try_from(LISTED_URL_FRESHNESS.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether a URL stored at `fetched_at_ms` is used at `now_ms`: [`Self::usable`], or now and then a try of
    /// one past the learned window (see the type's doc).
    pub fn choose(&mut self, fetched_at_ms: i64, now_ms: i64) -> ListedUse {
        if self.usable(fetched_at_ms, now_ms) {
            return ListedUse::Fresh;
        }
        let Some(learned) = self.learned_ms else {
            return ListedUse::Skip;
        };
        let age = now_ms.saturating_sub(fetched_at_ms);
        let default = Self::default_window_ms();
        let worth_trying = self.window_ms < default
            && self.expired_up_to_ms.is_none_or(|t| fetched_at_ms > t)
            && (learned..default).contains(&age)
            && self
                .last_probe_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= PROBE_INTERVAL_MS);
        if !worth_trying {
            return ListedUse::Skip;
        }
        self.last_probe_ms = Some(now_ms);
        ListedUse::Probe
    }

    /// A URL stored at `fetched_at_ms`, tried as a [`ListedUse::Probe`], served the file at `served_at_ms`:
    /// the lifetime is longer than its age. Past the learned lifetime, the estimate becomes twice that age
    /// (a refusal brings it down again); returns whether it grew.
    pub fn outlived(&mut self, fetched_at_ms: i64, served_at_ms: i64) -> bool {
        let age = served_at_ms.saturating_sub(fetched_at_ms);
        if age < 0 || self.learned_ms.is_none_or(|l| age < l) {
            return false;
        }
        let estimate = age.saturating_mul(2);
        self.learned_ms = Some(estimate);
        self.changed = true;
        self.window_ms = Self::window_for(estimate).min(Self::default_window_ms());
        true
    }

    /// The window left under an observed lifetime: a tenth of it (at least a second) spared for the time
    /// between the service minting a URL and the manifest storing it, and for clocks.
    fn window_for(lifetime_ms: i64) -> i64 {
        let margin = (lifetime_ms / 10).max(1_000);
        lifetime_ms.saturating_sub(margin).max(0)
    }

    /// How long a stored URL is used now.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.window_ms).unwrap_or(0))
    }

    /// Whether a URL stored at `fetched_at_ms` is worth a request at `now_ms`.
    pub fn usable(&self, fetched_at_ms: i64, now_ms: i64) -> bool {
        self.expired_up_to_ms.is_none_or(|t| fetched_at_ms > t)
            && listed_url_is_fresh(fetched_at_ms, now_ms, self.window())
    }

    /// A URL stored at `fetched_at_ms` was refused: it and every URL stored before it are expired.
    pub fn refused(&mut self, fetched_at_ms: i64) {
        self.expired_up_to_ms = Some(
            self.expired_up_to_ms
                .map_or(fetched_at_ms, |t| t.max(fetched_at_ms)),
        );
    }

    /// The file of a URL stored at `fetched_at_ms` and refused at `refused_at_ms` was then served by a fresh
    /// URL: the stored one had expired at that age. Shrinks the window if the lifetime is shorter than
    /// thought; returns whether it did.
    pub fn confirmed_expired(&mut self, fetched_at_ms: i64, refused_at_ms: i64) -> bool {
        let age = refused_at_ms.saturating_sub(fetched_at_ms);
        if age < 0 || self.learned_ms.is_some_and(|l| l <= age) {
            return false;
        }
        self.learned_ms = Some(age);
        self.changed = true;
        self.last_probe_ms = self.last_probe_ms.max(Some(refused_at_ms));
        let window = Self::window_for(age);
        if window < self.window_ms {
            self.window_ms = window;
        }
        true
    }

    /// The lifetime observed since the last look, if it changed (to be remembered for the next run).
    pub fn take_learned(&mut self) -> Option<i64> {
        std::mem::take(&mut self.changed)
            .then_some(self.learned_ms)
            .flatten()
    }
}

/// What is on disk for one manifest row, as observed just before the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalState {
    /// Size of the file under its final name, if there is one.
    pub(crate) final_len: Option<u64>,
    /// Size of the part file for this item's current version, if there is one.
    pub(crate) part_len: Option<u64>,
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

/// What to do with bytes that arrived complete (the body ended without an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Keep them under the final name: how they were verified, and the caveat when a known quirk explains
    /// why they could not be verified against the listing.
    Keep {
        /// The comparison the bytes passed, or the mismatch the caveat explains (stored as
        /// [`Verification::as_stored`] says).
        verification: Verification,
        /// The quirk, if one applies.
        caveat: Option<Caveat>,
    },
    /// Throw them away and fetch again: transit corruption differs from one fetch to the next, a file the
    /// service really holds differently does not.
    FetchAgain,
    /// Throw them away; the item failed.
    Fail {
        /// Its class.
        class: FailureClass,
        /// What happened.
        message: String,
    },
}

/// The second fetch of a file that did not match its listing, compared with the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// This is the first fetch.
    None,
    /// The first fetch brought exactly these bytes (same length and hash).
    Same,
    /// The first fetch brought other bytes.
    Different,
}

/// Live Photos are stored by iOS as HEIC; the service lists the still and the motion part together but
/// serves the still only (onedrive-api-docs#1532, #1723).
fn is_live_photo_candidate(name: &str) -> bool {
    has_extension(name, &["heic", "heif"])
}

/// File types `SharePoint` rewrites after upload, injecting its metadata (onedrive-api-docs#935, #1068;
/// rclone#2599): Office documents, PDF and HTML.
fn is_rewrite_candidate(name: &str) -> bool {
    has_extension(
        name,
        &[
            "doc", "docx", "docm", "dot", "dotx", "xls", "xlsx", "xlsm", "xlt", "xltx", "ppt",
            "pptx", "pptm", "pot", "potx", "pps", "ppsx", "vsd", "vsdx", "one", "pdf", "htm",
            "html", "aspx", "msg",
        ],
    )
}

fn has_extension(name: &str, extensions: &[&str]) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| extensions.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Whether the body of a file may run longer than its listed size: a rewritten file may have grown. The cap
/// keeps a hostile or broken server from filling the disk.
pub fn allowed_length(name: &str, listed: u64) -> u64 {
    if is_rewrite_candidate(name) {
        listed.saturating_mul(2).saturating_add(1 << 20)
    } else {
        listed
    }
}

/// How many bytes a one-stream body of `name` may bring before it is cut off as too long: what its listed size
/// allows ([`allowed_length`]), or, when the listing gives a hash to judge the bytes by, as many as the server
/// declared if that is more — business drives have listed `OneNote` files at a fraction of what they serve, the
/// served file being the right one (onedrive-api-docs #927) — and, when the listing gave no usable size
/// (`listed` is `None`), what the server declared or else the largest file the service holds. Never more than
/// that largest file ([`MAX_RANGED_SIZE`]): the cap keeps a broken server from filling the disk.
pub fn body_limit(name: &str, listed: Option<u64>, declared: Option<u64>, hashed: bool) -> u64 {
    let by_server = declared.filter(|_| hashed || listed.is_none());
    match (listed.map(|size| allowed_length(name, size)), by_server) {
        (Some(by_listing), Some(by_server)) => by_listing.max(by_server.min(MAX_RANGED_SIZE)),
        (Some(by_listing), None) => by_listing,
        (None, Some(by_server)) => by_server.min(MAX_RANGED_SIZE),
        (None, None) => MAX_RANGED_SIZE,
    }
}

/// Decide what to do with the complete bytes of `name`, given how they compare with the listing, the length
/// the server declared for them, and the earlier fetch in this run if there was one.
pub fn judge(
    name: &str,
    verification: &Verification,
    declared: Option<u64>,
    earlier: Earlier,
) -> Judgement {
    let again_or = |class: FailureClass, message: String| {
        if earlier == Earlier::None {
            Judgement::FetchAgain
        } else {
            Judgement::Fail { class, message }
        }
    };
    let quirk = |class: CaveatClass, reason: String| Judgement::Keep {
        verification: verification.clone(),
        caveat: Some(Caveat { class, reason }),
    };
    match verification {
        Verification::QuickXor => Judgement::Keep {
            verification: Verification::QuickXor,
            caveat: None,
        },
        Verification::Sha1 => Judgement::Keep {
            verification: Verification::Sha1,
            caveat: None,
        },
        Verification::SizeOnly => Judgement::Keep {
            verification: Verification::SizeOnly,
            caveat: Some(Caveat {
                class: CaveatClass::NoHash,
                reason: if declared == Some(0) {
                    "empty file listed without a hash: nothing to verify".to_owned()
                } else {
                    "the listing gave no hash: checked by size only".to_owned()
                },
            }),
        },
        Verification::SizeListedWrong {
            algorithm,
            expected,
            actual,
        } => Judgement::Keep {
            verification: verification.clone(),
            caveat: Some(Caveat {
                class: CaveatClass::SizeMetadata,
                reason: format!(
                    "the listing says {expected} bytes but the service serves {actual}, whose {algorithm} is the listed one: the listed size is wrong, the file is kept as served"
                ),
            }),
        },
        Verification::SizeMismatch { expected, actual } => {
            let message = format!("received {actual} bytes, the listing says {expected}");
            // A quirk is only believable when the server itself announced the length it sent.
            if declared != Some(*actual) {
                return again_or(FailureClass::SizeMismatch, message);
            }
            if is_live_photo_candidate(name) && *actual > 0 && actual < expected {
                return quirk(
                    CaveatClass::LivePhoto,
                    format!(
                        "iPhone Live Photo: OneDrive serves the still image only ({actual} of the {expected} listed bytes); the motion part cannot be downloaded through Graph"
                    ),
                );
            }
            if is_rewrite_candidate(name) {
                return match earlier {
                    Earlier::None => Judgement::FetchAgain,
                    Earlier::Same => quirk(
                        CaveatClass::Rewritten,
                        format!(
                            "rewritten by the service after upload: {actual} bytes served, {expected} listed; the same bytes came twice"
                        ),
                    ),
                    Earlier::Different => Judgement::Fail {
                        class: FailureClass::SizeMismatch,
                        message,
                    },
                };
            }
            again_or(FailureClass::SizeMismatch, message)
        }
        Verification::HashMismatch {
            algorithm,
            expected,
            actual,
        } => {
            let message = format!(
                "{algorithm} of the received bytes is {actual}, the listing says {expected}"
            );
            if is_rewrite_candidate(name) && earlier == Earlier::Same {
                return quirk(
                    CaveatClass::Rewritten,
                    format!(
                        "rewritten by the service after upload: {algorithm} {actual} served, {expected} listed; the same bytes came twice"
                    ),
                );
            }
            again_or(FailureClass::HashMismatch, message)
        }
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
        Some(403) if err.is_read_only_window() => FailureClass::Throttled,
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
    fn a_listing_url_is_used_only_within_its_freshness_window() {
        let window = std::time::Duration::from_secs(1800);
        let t = 1_700_000_000_000i64;
        let cases = [
            (t, t, true),
            (t, t + 1_799_999, true),
            (t, t + 1_800_000, false),
            (t, t + 86_400_000, false),
            (t, t - 1, false),
            (0, i64::MAX, false),
        ];
        for (fetched, now, want) in cases {
            assert_eq!(
                listed_url_is_fresh(fetched, now, window),
                want,
                "{fetched} {now}"
            );
        }
        assert!(!listed_url_is_fresh(t, t, std::time::Duration::ZERO));
    }

    #[test]
    fn a_refused_listing_url_expires_its_listing_and_a_confirmed_one_teaches_the_lifetime() {
        let t = 1_700_000_000_000i64;
        let mut l = ListedUrlLifetime::new(None);
        assert_eq!(l.window(), LISTED_URL_FRESHNESS);
        // Three pages stored a second apart; the middle one's URL is refused 61 s later.
        let (page1, page2, page3) = (t, t + 1_000, t + 2_000);
        let now = t + 62_000;
        assert!(l.usable(page1, now) && l.usable(page2, now) && l.usable(page3, now));
        l.refused(page2);
        assert!(!l.usable(page1, now), "older: expired with it");
        assert!(!l.usable(page2, now), "the same listing: expired");
        assert!(l.usable(page3, now), "a later page was minted later");
        // An older refusal does not move the mark back.
        l.refused(page1);
        assert!(!l.usable(page2, now));
        assert_eq!(
            l.take_learned(),
            None,
            "nothing learned before a fresh URL served the file"
        );
        // A fresh URL served the file: 61 s is an upper bound of the lifetime; the window drops below it.
        assert!(l.confirmed_expired(page2, t + 62_000));
        assert_eq!(l.window(), std::time::Duration::from_millis(54_900));
        assert!(!l.usable(page3, page3 + 55_000));
        assert!(l.usable(page3 + 1, page3 + 50_000));
        assert_eq!(l.take_learned(), Some(61_000));
        assert_eq!(l.take_learned(), None, "said once");
        // A longer age teaches nothing; a shorter one shrinks it again.
        assert!(!l.confirmed_expired(page3, page3 + 70_000));
        assert!(l.confirmed_expired(page3, page3 + 20_000));
        assert_eq!(l.window(), std::time::Duration::from_secs(18));
        // A very short lifetime leaves no window at all (every file goes through /content).
        assert!(l.confirmed_expired(page3, page3 + 800));
        assert_eq!(l.window(), std::time::Duration::ZERO);
        assert!(!l.usable(now, now));
        // The next run starts from what was remembered, never from more than the default window.
        let next = ListedUrlLifetime::new(Some(61_000));
        assert_eq!(next.window(), std::time::Duration::from_millis(54_900));
        assert!(next.usable(t, t + 54_000));
        assert_eq!(
            ListedUrlLifetime::new(Some(i64::MAX)).window(),
            LISTED_URL_FRESHNESS
        );
        assert_eq!(
            ListedUrlLifetime::new(Some(-5)).window(),
            LISTED_URL_FRESHNESS
        );
    }

    #[test]
    fn a_lifetime_learned_too_short_is_tried_now_and_then_and_grows_back_when_urls_outlive_it() {
        let t = 1_700_000_000_000i64;
        // Remembered from an earlier run: 60 s (window 54 s).
        let mut l = ListedUrlLifetime::new(Some(60_000));
        assert_eq!(l.choose(t, t + 10_000), ListedUse::Fresh);
        // Past the window: one try, then none for a minute.
        assert_eq!(l.choose(t, t + 70_000), ListedUse::Probe);
        assert_eq!(l.choose(t + 1, t + 70_001), ListedUse::Skip);
        assert_eq!(l.choose(t, t + 100_000), ListedUse::Skip);
        // It served at 70 s: the estimate is 140 s (window 126 s), remembered for the next run.
        assert!(l.outlived(t, t + 70_000));
        assert_eq!(l.window(), std::time::Duration::from_secs(126));
        assert_eq!(l.take_learned(), Some(140_000));
        assert_eq!(l.choose(t, t + 100_000), ListedUse::Fresh);
        // A young URL serving teaches nothing.
        assert!(!l.outlived(t, t + 10_000));
        // A refusal past the new lifetime is learned as before, and no try comes within a minute of it.
        l.refused(t);
        assert!(l.confirmed_expired(t, t + 130_000));
        assert_eq!(l.take_learned(), Some(130_000));
        let later = t + 10_000;
        assert_eq!(l.choose(later, later + 125_000), ListedUse::Skip);
        assert_eq!(
            l.choose(later, t + 130_000 + PROBE_INTERVAL_MS),
            ListedUse::Probe
        );
        // Once the estimate passes the default, the default window holds and nothing is tried.
        assert!(l.outlived(later, later + 3_600_000));
        assert_eq!(l.window(), LISTED_URL_FRESHNESS);
        assert_eq!(l.choose(later, later + 4_000_000), ListedUse::Skip);
        // Never one older than the default window, nor one whose listing was seen expired.
        let mut short = ListedUrlLifetime::new(Some(10_000));
        assert_eq!(short.choose(t, t + 1_900_000), ListedUse::Skip);
        short.refused(t);
        assert_eq!(short.choose(t, t + 20_000), ListedUse::Skip);
        assert_eq!(short.choose(t + 1, t + 20_000), ListedUse::Probe);
        // Nothing learned, nothing tried: the default window is all there is.
        let mut fresh = ListedUrlLifetime::new(None);
        assert_eq!(fresh.choose(t, t + 3_000_000), ListedUse::Skip);
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table of cases
    fn judgements_keep_what_a_known_quirk_explains_and_nothing_else() {
        let short = Verification::SizeMismatch {
            expected: 3_000,
            actual: 1_000,
        };
        let long = Verification::SizeMismatch {
            expected: 1_000,
            actual: 1_200,
        };
        let bad_hash = Verification::HashMismatch {
            algorithm: "quickXorHash",
            expected: "A".into(),
            actual: "B".into(),
        };
        let caveat = |j: &Judgement| match j {
            Judgement::Keep { caveat, .. } => caveat.as_ref().map(|c| c.class),
            _ => None,
        };
        let kind = |j: &Judgement| match j {
            Judgement::Keep { verification, .. } => format!("keep:{}", verification.as_stored()),
            Judgement::FetchAgain => "again".to_owned(),
            Judgement::Fail { class, .. } => format!("fail:{}", class.as_str()),
        };
        // (name, verification, declared, earlier, judgement, caveat)
        let cases = [
            (
                "a.jpg",
                Verification::QuickXor,
                Some(5),
                Earlier::None,
                "keep:quickxor",
                None,
            ),
            (
                "a.jpg",
                Verification::Sha1,
                Some(5),
                Earlier::Same,
                "keep:sha1",
                None,
            ),
            (
                "e.txt",
                Verification::SizeOnly,
                Some(0),
                Earlier::None,
                "keep:size_only",
                Some(CaveatClass::NoHash),
            ),
            (
                "IMG_1.HEIC",
                short.clone(),
                Some(1_000),
                Earlier::None,
                "keep:unverified",
                Some(CaveatClass::LivePhoto),
            ),
            // A short body the server did not announce is a broken transfer, Live Photo or not.
            (
                "IMG_1.heic",
                short.clone(),
                Some(3_000),
                Earlier::None,
                "again",
                None,
            ),
            (
                "IMG_1.heic",
                short.clone(),
                None,
                Earlier::Same,
                "fail:size_mismatch",
                None,
            ),
            (
                "IMG_1.heic",
                long.clone(),
                Some(1_200),
                Earlier::None,
                "again",
                None,
            ),
            (
                "a.jpg",
                short.clone(),
                Some(1_000),
                Earlier::None,
                "again",
                None,
            ),
            (
                "a.jpg",
                short.clone(),
                Some(1_000),
                Earlier::Same,
                "fail:size_mismatch",
                None,
            ),
            (
                "r.docx",
                long.clone(),
                Some(1_200),
                Earlier::None,
                "again",
                None,
            ),
            (
                "r.docx",
                long.clone(),
                Some(1_200),
                Earlier::Same,
                "keep:unverified",
                Some(CaveatClass::Rewritten),
            ),
            (
                "r.docx",
                long.clone(),
                Some(1_200),
                Earlier::Different,
                "fail:size_mismatch",
                None,
            ),
            (
                "r.PDF",
                bad_hash.clone(),
                Some(9),
                Earlier::Same,
                "keep:unverified",
                Some(CaveatClass::Rewritten),
            ),
            (
                "r.pdf",
                bad_hash.clone(),
                Some(9),
                Earlier::Different,
                "fail:hash_mismatch",
                None,
            ),
            (
                "a.jpg",
                bad_hash.clone(),
                Some(9),
                Earlier::None,
                "again",
                None,
            ),
            (
                "a.jpg",
                bad_hash.clone(),
                Some(9),
                Earlier::Same,
                "fail:hash_mismatch",
                None,
            ),
            // Bytes whose hash is the listed one are kept whatever the listed size says, on the first fetch.
            (
                "old.jpg",
                Verification::SizeListedWrong {
                    algorithm: "quickXorHash",
                    expected: 1_300,
                    actual: 1_000,
                },
                Some(1_000),
                Earlier::None,
                "keep:quickxor",
                Some(CaveatClass::SizeMetadata),
            ),
            (
                "letter.docx",
                Verification::SizeListedWrong {
                    algorithm: "sha1Hash",
                    expected: 1_300,
                    actual: 1_000,
                },
                None,
                Earlier::None,
                "keep:sha1",
                Some(CaveatClass::SizeMetadata),
            ),
        ];
        for (name, v, declared, earlier, want, want_caveat) in cases {
            let j = judge(name, &v, declared, earlier);
            assert_eq!(
                (kind(&j).as_str(), caveat(&j)),
                (want, want_caveat),
                "{name} {v:?} {earlier:?}"
            );
        }
        assert_eq!(allowed_length("a.jpg", 10), 10);
        assert_eq!(allowed_length("a.xlsx", 10), 20 + (1 << 20));
    }

    #[test]
    fn a_body_may_run_to_what_the_server_declared_only_when_a_hash_will_judge_it() {
        // Listed 170 bytes, served 10 MB: with a hash the declared length is allowed, without one not.
        assert_eq!(
            body_limit("S.onetoc2", Some(170), Some(10_116_025), true),
            10_116_025
        );
        assert_eq!(
            body_limit("S.onetoc2", Some(170), Some(10_116_025), false),
            170
        );
        assert_eq!(body_limit("a.jpg", Some(500), Some(100), true), 500);
        assert_eq!(body_limit("a.jpg", Some(500), None, true), 500);
        assert_eq!(body_limit("a.docx", Some(10), None, false), 20 + (1 << 20));
        // No usable size listed: what the server declares, else the largest file the service holds.
        assert_eq!(body_limit("a.jpg", None, Some(42), false), 42);
        assert_eq!(body_limit("a.jpg", None, None, true), MAX_RANGED_SIZE);
        // A declared length past any file the service holds is held to that.
        assert_eq!(
            body_limit("a.jpg", Some(5), Some(u64::MAX), true),
            MAX_RANGED_SIZE
        );
    }

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
