//! The one retry policy of the Graph client, as pure decision functions ([`RetryPolicy::next_delay`],
//! [`classify_status`], [`parse_retry_after`], [`rate_limit_pace`]), plus the [`ThrottleGate`] that holds
//! every request of a client while the service has asked us to wait or to slow down.
//!
//! Microsoft's guidance: on 429/503 wait the full `Retry-After`, and pause *all* workers, not only the one
//! that was told (<https://learn.microsoft.com/en-us/graph/throttling>,
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/scan-guidance>). This module knows
//! no HTTP client: the async shell that acts on these decisions is `transport.rs`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 429, or 503/509, or another passing error that came with a `Retry-After`: the service asks us to slow
    /// down, with the `Retry-After` it gave, if any.
    Throttled {
        /// The parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Another 5xx (501 and 505 excepted), 408 or 423: may work a bit later.
    ServerError,
    /// The connection broke or timed out after it was made.
    Network,
    /// The host could not be reached at all (refused, DNS, TLS): worth a couple of quick retries for a
    /// flapping network, not a long wait on a wrong `--graph-url`.
    Unreachable,
    /// 401: the token was refused. An expired or revoked token is renewed once and tried again; a 401 to a
    /// token that is fresh (just renewed, or one that cannot be renewed) is retried with backoff a few times,
    /// since Graph sometimes answers 401 `InvalidAuthenticationToken` to a valid token ("Unable to initialize
    /// RPS", <https://github.com/OneDrive/onedrive-api-docs/issues/1489>; rclone retries it,
    /// <https://github.com/rclone/rclone/pull/5273>). Only a 401 that persists is a sign-in failure. Decided by
    /// status and attempts, never by the message.
    Unauthorized {
        /// Whether the token is fresh: already renewed for this request, or not renewable at all.
        refreshed: bool,
    },
    /// Anything else (403, 404, 400, 501…): retrying cannot help.
    Permanent,
}

/// The policy's knobs (built from [`GraphOptions`](super::GraphOptions)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request that may end in an error, the first included.
    pub(crate) max_attempts: u32,
    /// Attempts when the host cannot be reached at all.
    pub(crate) max_connect_attempts: u32,
    /// Times one request may be throttled before it gives up. Throttling is the service pacing us, not a
    /// failure, so it has its own, larger budget.
    pub(crate) max_throttled_attempts: u32,
    /// First backoff for server and network errors; doubles per attempt.
    pub(crate) base_backoff: Duration,
    /// Longest backoff.
    pub(crate) max_backoff: Duration,
    /// Pause after a 429/503 without `Retry-After` (Microsoft suggests at least 5 s).
    pub(crate) default_throttle_pause: Duration,
    /// A `Retry-After` longer than this is not waited out: the request fails and says when to try again.
    pub(crate) max_retry_after: Duration,
    /// Attempts with a fresh token (just renewed, or one that cannot be renewed) that may answer 401 before the
    /// sign-in counts as refused.
    pub(crate) max_unauthorized_attempts: u32,
}

impl RetryPolicy {
    /// This policy with every attempt budget at least one: a request is always sent once.
    #[must_use]
    pub(crate) fn at_least_once(&self) -> Self {
        Self {
            max_attempts: self.max_attempts.max(1),
            max_connect_attempts: self.max_connect_attempts.max(1),
            max_throttled_attempts: self.max_throttled_attempts.max(1),
            max_unauthorized_attempts: self.max_unauthorized_attempts.max(1),
            ..*self
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_connect_attempts: 3,
            max_throttled_attempts: 30,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            default_throttle_pause: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(15 * 60),
            max_unauthorized_attempts: 4,
        }
    }
}

impl RetryPolicy {
    /// How long to wait before trying again after `outcome`, or `None` to give up.
    ///
    /// `attempt` counts the attempts so far that ended like this one, this one included (from 1): throttled
    /// attempts are counted apart from failures, since being asked to wait is not failing. `jitter` in
    /// `[0, 1)` spreads the backoffs of concurrent workers ("full jitter", floored at a tenth of the
    /// ceiling so a retry never fires instantly). Throttle waits are never jittered: the service said how
    /// long.
    pub(crate) fn next_delay(
        &self,
        attempt: u32,
        outcome: &Outcome,
        jitter: f64,
    ) -> Option<Duration> {
        match *outcome {
            Outcome::Permanent => None,
            // Renew the token, then try again at once.
            Outcome::Unauthorized { refreshed: false } => Some(Duration::ZERO),
            Outcome::Unauthorized { refreshed: true }
                if attempt >= self.max_unauthorized_attempts =>
            {
                None
            }
            Outcome::Throttled { retry_after } => {
                if attempt >= self.max_throttled_attempts {
                    return None;
                }
                match retry_after {
                    Some(after) if after > self.max_retry_after => None,
                    Some(after) => Some(after),
                    // No Retry-After: back off exponentially from the default pause, as Microsoft asks
                    // (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/scan-guidance>).
                    None => Some(
                        self.default_throttle_pause
                            .saturating_mul(1 << attempt.saturating_sub(1).min(8))
                            .min(self.max_backoff.max(self.default_throttle_pause)),
                    ),
                }
            }
            Outcome::Unreachable if attempt >= self.max_connect_attempts => None,
            Outcome::ServerError
            | Outcome::Network
            | Outcome::Unreachable
            | Outcome::Unauthorized { refreshed: true } => {
                if attempt >= self.max_attempts {
                    return None;
                }
                let exp = self
                    .base_backoff
                    .saturating_mul(1 << attempt.saturating_sub(1).min(20));
                let ceiling = exp.min(self.max_backoff);
                Some(ceiling.mul_f64(0.1 + 0.9 * jitter.clamp(0.0, 1.0)))
            }
        }
    }
}

impl RetryPolicy {
    /// The pause a throttled answer asked for when it is longer than this policy waits out
    /// (`max_retry_after`): the request gives up, but the pause must still hold every request, in this run and
    /// the next.
    pub(crate) fn wait_beyond_limit(&self, outcome: &Outcome) -> Option<Duration> {
        match *outcome {
            Outcome::Throttled {
                retry_after: Some(after),
            } if after > self.max_retry_after => Some(after),
            _ => None,
        }
    }
}

/// Classify an HTTP status for retrying. `refreshed` says whether this request already got a fresh token.
pub fn classify_status(status: u16, retry_after: Option<Duration>, refreshed: bool) -> Outcome {
    // `Retry-After: 0` (or a date already past) asks for no wait at all: taken at its word, a service that
    // answers so every time would get `max_throttled_attempts` requests back to back from every worker. So
    // it is no throttle: a 5xx carrying it (503 included) is a server error, retried with that class's
    // jittered backoff and smaller budget, and a 429 or 509 pauses by the default throttle backoff, as
    // without the header.
    if retry_after.is_some_and(|after| after.is_zero()) {
        return match status {
            429 | 509 => Outcome::Throttled { retry_after: None },
            503 => Outcome::ServerError,
            _ => classify_status(status, None, refreshed),
        };
    }
    match status {
        401 => Outcome::Unauthorized { refreshed },
        429 | 503 | 509 => Outcome::Throttled { retry_after },
        // 501 notSupported (delta below an ODB root) and 505 will answer the same forever.
        501 | 505 => Outcome::Permanent,
        // A `Retry-After` on another passing error is the service saying when, as on a 503: honoured the
        // same way, for every request (RFC 9110 §10.2.3 allows it on any answer; Graph sends it on 5xx too).
        408 | 423 | 500..=599 if retry_after.is_some() => Outcome::Throttled { retry_after },
        408 | 423 | 500..=599 => Outcome::ServerError,
        _ => Outcome::Permanent,
    }
}

/// The longest `Retry-After` taken as sent. Anything beyond a run's own limit (`max_retry_after`) already
/// stops the run with the time to come back; a larger value (say `18446744073709551615`) would overflow the
/// clock arithmetic that schedules the pause.
const MAX_RETRY_AFTER_PARSED: Duration = Duration::from_secs(86_400);

/// Parse `Retry-After`: delay-seconds or an HTTP date (a date in the past means "now"), at most a day.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = value.parse::<f64>() {
        // Not what RFC 9110 allows, but a fraction of a second is a plain reading of it; round up so the
        // wait is never shorter than asked.
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER_PARSED.as_secs_f64()).ceil())
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
        Duration::from_secs(secs.unsigned_abs())
    };
    Some(wait.min(MAX_RETRY_AFTER_PARSED))
}

/// Longest pause taken on `RateLimit-*` headers alone: the resource-unit window is one minute.
const MAX_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);

/// Resource units one request is assumed to cost when spreading what is left of a budget: a children page
/// costs 2, an item or a download 1 (`SharePoint`'s resource-unit table,
/// <https://learn.microsoft.com/en-us/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online>:
/// about 2 units per request is the safe assumption), so this errs slow.
const UNITS_PER_REQUEST: u64 = 2;

/// What `RateLimit-*` headers ask of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Nearly spent: send nothing until the window resets.
    Pause(Duration),
    /// Spread what is left over the rest of the window: request starts at least `spacing` apart, for
    /// `window` (then the budget refills, and the headers stop until 80 % is used again).
    Spread {
        /// Time between two request starts.
        spacing: Duration,
        /// How long the spacing holds.
        window: Duration,
    },
}

/// How to pace requests on `RateLimit-Remaining`, `RateLimit-Limit` and `RateLimit-Reset` (seconds). Graph
/// sends them once 80 % of the one-minute budget is used. With 5 % or less left (or nothing, when the limit
/// is not given) we pause until the reset; above that, what is left down to that 5 % reserve is spread evenly
/// over the time to the reset, so the budget lasts the window instead of running into a 429.
pub fn rate_limit_pace(
    remaining: Option<u64>,
    limit: Option<u64>,
    reset: Option<u64>,
) -> Option<Pace> {
    let (remaining, reset) = (remaining?, reset?);
    if reset == 0 {
        return None;
    }
    let window = Duration::from_secs(reset).min(MAX_RATE_LIMIT_PAUSE);
    let reserve = match limit {
        Some(limit) if limit > 0 => limit / 20,
        _ => 0,
    };
    let usable = remaining.saturating_sub(reserve) / UNITS_PER_REQUEST;
    if remaining == 0 || usable == 0 || remaining.saturating_mul(20) <= limit.unwrap_or(0) {
        return Some(Pace::Pause(window));
    }
    let spacing = window / u32::try_from(usable).unwrap_or(u32::MAX);
    Some(Pace::Spread { spacing, window })
}

/// Every request of a client waits here before it is sent, until any pause the service asked for has
/// passed, and, while `RateLimit-*` headers ask for it, until its turn in an evenly spaced schedule. The lock
/// is never held across an await.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// No request before this.
    until: Option<Instant>,
    /// Request starts at least this far apart, until `spacing_until`.
    spacing: Duration,
    spacing_until: Option<Instant>,
    /// The next free start under the spacing.
    next_slot: Option<Instant>,
}

impl ThrottleGate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hold every request for `wait` from now; a longer pause already in force is kept. Returns how much
    /// the pause was extended (zero when an existing one already covered it), so waits are counted once
    /// however many workers were told.
    pub fn pause(&self, wait: Duration) -> Duration {
        let now = Instant::now();
        let deadline = now + wait;
        let mut state = self.state();
        let current = state.until.filter(|u| *u > now).unwrap_or(now);
        if deadline > current {
            state.until = Some(deadline);
            deadline - current
        } else {
            Duration::ZERO
        }
    }

    /// What is left of the pause in force, if any.
    pub fn paused_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.state().until.filter(|u| *u > now).map(|u| u - now)
    }

    /// Space request starts `spacing` apart for `window` from now (the latest headers replace earlier ones).
    pub fn space(&self, spacing: Duration, window: Duration) {
        let now = Instant::now();
        let mut state = self.state();
        state.spacing = spacing;
        state.spacing_until = Some(now + window);
    }

    /// Wait until no pause is in force (re-checking, as another worker may extend it meanwhile), then for
    /// this request's slot when requests are being spaced. Returns whether the spacing held it back.
    pub async fn wait(&self) -> bool {
        let mut spaced = false;
        loop {
            let (pause, slot) = {
                let now = Instant::now();
                let mut state = self.state();
                match state.until {
                    Some(d) if d > now => (Some(d), None),
                    _ if spaced => (None, None),
                    _ if state.spacing_until.is_some_and(|u| u > now) => {
                        let slot = state.next_slot.filter(|s| *s > now).unwrap_or(now);
                        state.next_slot = Some(slot + state.spacing);
                        (None, Some(slot).filter(|s| *s > now))
                    }
                    _ => (None, None),
                }
            };
            match (pause, slot) {
                (Some(d), _) => tokio::time::sleep_until(d.into()).await,
                (None, Some(s)) => {
                    spaced = true;
                    tokio::time::sleep_until(s.into()).await;
                }
                (None, None) => return spaced,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn next_delay_table() {
        let p = RetryPolicy::default();
        let throttled = |retry_after| Outcome::Throttled { retry_after };
        let cases = [
            // (attempt, outcome, jitter, expected)
            (1, throttled(Some(s(7))), 0.5, Some(s(7))),
            (1, throttled(Some(s(0))), 0.5, Some(s(0))),
            (1, throttled(None), 0.5, Some(s(5))),
            // Without a Retry-After the pause doubles, to the longest backoff.
            (2, throttled(None), 0.5, Some(s(10))),
            (3, throttled(None), 0.0, Some(s(20))),
            (4, throttled(None), 1.0, Some(s(30))),
            (29, throttled(None), 0.5, Some(s(30))),
            (29, throttled(Some(s(1))), 0.5, Some(s(1))),
            (30, throttled(Some(s(1))), 0.5, None),
            (1, throttled(Some(s(3600))), 0.5, None),
            (1, throttled(Some(s(900))), 0.5, Some(s(900))),
            (1, Outcome::Permanent, 0.5, None),
            (
                1,
                Outcome::Unauthorized { refreshed: false },
                0.5,
                Some(s(0)),
            ),
            // A 401 to a fresh token backs off like a server error, four attempts in all.
            (
                1,
                Outcome::Unauthorized { refreshed: true },
                1.0,
                Some(s(1)),
            ),
            (
                3,
                Outcome::Unauthorized { refreshed: true },
                1.0,
                Some(s(4)),
            ),
            (4, Outcome::Unauthorized { refreshed: true }, 0.5, None),
            (1, Outcome::ServerError, 1.0, Some(s(1))),
            (
                1,
                Outcome::ServerError,
                0.0,
                Some(Duration::from_millis(100)),
            ),
            (3, Outcome::Network, 1.0, Some(s(4))),
            (5, Outcome::Network, 1.0, Some(s(16))),
            (
                5,
                Outcome::ServerError,
                0.0,
                Some(Duration::from_millis(1600)),
            ),
            (5, Outcome::ServerError, 7.0, Some(s(16))), // jitter is clamped
            (6, Outcome::Network, 1.0, None),
            (6, Outcome::ServerError, 0.0, None),
            (2, Outcome::Unreachable, 1.0, Some(s(2))),
            (3, Outcome::Unreachable, 1.0, None),
        ];
        for (attempt, outcome, jitter, want) in cases {
            assert_eq!(
                p.next_delay(attempt, &outcome, jitter),
                want,
                "attempt {attempt}, {outcome:?}, jitter {jitter}"
            );
        }
        let many = RetryPolicy {
            max_attempts: 100,
            ..p
        };
        assert_eq!(many.next_delay(20, &Outcome::Network, 1.0), Some(s(30)));
        assert_eq!(many.next_delay(99, &Outcome::Network, 1.0), Some(s(30)));
    }

    #[test]
    fn statuses_classify() {
        let cases = [
            (401, false, Outcome::Unauthorized { refreshed: false }),
            (401, true, Outcome::Unauthorized { refreshed: true }),
            (429, false, Outcome::Throttled { retry_after: None }),
            (503, false, Outcome::Throttled { retry_after: None }),
            (509, false, Outcome::Throttled { retry_after: None }),
            (500, false, Outcome::ServerError),
            (502, false, Outcome::ServerError),
            (504, false, Outcome::ServerError),
            (408, false, Outcome::ServerError),
            (423, false, Outcome::ServerError),
            (501, false, Outcome::Permanent),
            (400, false, Outcome::Permanent),
            (403, false, Outcome::Permanent),
            (404, false, Outcome::Permanent),
            (410, false, Outcome::Permanent),
        ];
        for (status, refreshed, want) in cases {
            assert_eq!(classify_status(status, None, refreshed), want, "{status}");
        }
        assert_eq!(
            classify_status(429, Some(s(3)), false),
            Outcome::Throttled {
                retry_after: Some(s(3))
            }
        );
        // A Retry-After on another passing error is waited out like a throttle, by every request.
        for status in [408, 423, 500, 502, 504] {
            assert_eq!(
                classify_status(status, Some(s(3)), false),
                Outcome::Throttled {
                    retry_after: Some(s(3))
                },
                "{status}"
            );
        }
        assert_eq!(classify_status(501, Some(s(3)), false), Outcome::Permanent);
        assert_eq!(classify_status(404, Some(s(3)), false), Outcome::Permanent);
        // `Retry-After: 0` is no throttle: nothing is retried back to back on its word.
        for (status, want) in [
            (429, Outcome::Throttled { retry_after: None }),
            (509, Outcome::Throttled { retry_after: None }),
            (503, Outcome::ServerError),
            (500, Outcome::ServerError),
            (504, Outcome::ServerError),
            (501, Outcome::Permanent),
            (404, Outcome::Permanent),
        ] {
            assert_eq!(classify_status(status, Some(s(0)), false), want, "{status}");
        }
    }

    #[test]
    fn a_retry_after_beyond_the_limit_gives_up_the_request_but_names_the_wait() {
        let p = RetryPolicy::default();
        let long = Outcome::Throttled {
            retry_after: Some(s(1800)),
        };
        assert_eq!(p.next_delay(1, &long, 0.5), None);
        assert_eq!(p.wait_beyond_limit(&long), Some(s(1800)));
        let within = Outcome::Throttled {
            retry_after: Some(s(900)),
        };
        assert_eq!(p.wait_beyond_limit(&within), None);
        assert_eq!(
            p.wait_beyond_limit(&Outcome::Throttled { retry_after: None }),
            None
        );
        assert_eq!(p.wait_beyond_limit(&Outcome::ServerError), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 120 "), Some(s(120)));
        assert_eq!(parse_retry_after("0"), Some(s(0)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(s(0))
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc2822();
        let parsed = parse_retry_after(&future).unwrap();
        assert!(parsed >= s(98) && parsed <= s(100), "{parsed:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after("2.5"), Some(s(3)));
        assert_eq!(parse_retry_after("NaN"), None);
        // However large, a pause that can be scheduled.
        for huge in [
            "18446744073709551615",
            "1e300",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            let wait = parse_retry_after(huge).unwrap();
            assert_eq!(wait, MAX_RETRY_AFTER_PARSED, "{huge}");
            let _ = Instant::now() + wait;
            let _ = chrono::Utc::now() + wait;
        }
    }

    #[test]
    fn rate_limit_headers_spread_what_is_left_and_pause_when_nearly_spent() {
        let spread = |ms: u64, window: u64| {
            Some(Pace::Spread {
                spacing: Duration::from_millis(ms),
                window: s(window),
            })
        };
        let cases = [
            // (remaining, limit, reset, expected)
            (Some(5), Some(100), Some(12), Some(Pace::Pause(s(12)))),
            // 9 left above the 5-unit reserve: 4 requests of 2 units over 12 s.
            (Some(14), Some(100), Some(12), spread(3000, 12)),
            (Some(240), Some(1200), Some(30), spread(333, 30)),
            (Some(0), None, Some(3), Some(Pace::Pause(s(3)))),
            (Some(1), None, Some(3), Some(Pace::Pause(s(3)))),
            (Some(10), None, Some(3), spread(600, 3)),
            (Some(0), Some(100), Some(600), Some(Pace::Pause(s(60)))),
            (Some(0), Some(100), Some(0), None),
            (None, Some(100), Some(3), None),
            (Some(0), Some(100), None, None),
        ];
        for (remaining, limit, reset, want) in cases {
            let got = rate_limit_pace(remaining, limit, reset);
            let close = match (got, want) {
                (
                    Some(Pace::Spread {
                        spacing: a,
                        window: w1,
                    }),
                    Some(Pace::Spread {
                        spacing: b,
                        window: w2,
                    }),
                ) => w1 == w2 && a.abs_diff(b) < Duration::from_millis(1),
                _ => got == want,
            };
            assert!(
                close,
                "{remaining:?} {limit:?} {reset:?}: {got:?}, want {want:?}"
            );
        }
    }

    #[tokio::test]
    async fn spaced_requests_start_apart() {
        let gate = ThrottleGate::default();
        gate.space(Duration::from_millis(30), s(10));
        let start = Instant::now();
        assert!(!gate.wait().await, "the first goes at once");
        assert!(gate.wait().await);
        assert!(gate.wait().await);
        assert!(
            start.elapsed() >= Duration::from_millis(58),
            "{:?}",
            start.elapsed()
        );
        gate.space(Duration::from_millis(30), Duration::ZERO);
        let t = Instant::now();
        assert!(!gate.wait().await, "spacing over");
        assert!(t.elapsed() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn the_gate_holds_every_waiter_until_the_pause_ends() {
        let gate = std::sync::Arc::new(ThrottleGate::default());
        let extended = gate.pause(Duration::from_millis(60));
        assert!(extended >= Duration::from_millis(59));
        // A shorter pause inside a longer one adds nothing.
        assert_eq!(gate.pause(Duration::from_millis(10)), Duration::ZERO);
        let start = Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.wait().await;
                    Instant::now()
                })
            })
            .collect();
        for w in waiters {
            let released = w.await.unwrap();
            assert!(released - start >= Duration::from_millis(55));
        }
        // Once passed, the gate is open.
        let t = Instant::now();
        gate.wait().await;
        assert!(t.elapsed() < Duration::from_millis(20));
    }
}
