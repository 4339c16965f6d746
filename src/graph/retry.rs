//! The one retry policy of the Graph client, as a pure decision function, plus the shared throttle gate
//! that pauses every request of a client when the service says to wait.
//!
//! Microsoft's guidance is explicit: on 429/503 wait the full `Retry-After`, and pause *all* workers, not
//! only the one that was told (<https://learn.microsoft.com/en-us/graph/throttling>).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What happened to one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// 429, or 503/509 (throttled), with the `Retry-After` the service gave, if any.
    Throttled(Option<Duration>),
    /// Another 5xx, 408, or 423.
    ServerError,
    /// The connection failed or timed out.
    Network,
    /// The host could not be reached at all (refused, no route, DNS): worth a couple of quick retries for a
    /// flapping network, not a long wait on a wrong URL.
    Unreachable,
    /// Anything else: not worth retrying.
    Permanent,
}

/// The policy's knobs.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff for server and network errors; doubles per attempt.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// Attempts when the host cannot be reached at all.
    pub max_connect_attempts: u32,
    /// Pause after a 503 that gave no `Retry-After` (Microsoft suggests at least 5 s for 5xx).
    pub default_throttle: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_connect_attempts: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            default_throttle: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1` after `outcome` (attempts count from 1), or `None` to
    /// give up. `jitter` in `[0, 1)` spreads backoffs of concurrent workers ("full jitter").
    pub fn next_delay(&self, attempt: u32, outcome: Attempt, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match outcome {
            Attempt::Permanent => None,
            Attempt::Unreachable if attempt >= self.max_connect_attempts => None,
            Attempt::Throttled(Some(after)) => Some(after),
            Attempt::Throttled(None) => Some(self.default_throttle),
            Attempt::ServerError | Attempt::Network | Attempt::Unreachable => {
                let exp = self.base.saturating_mul(1 << (attempt - 1).min(16));
                let ceiling = exp.min(self.cap);
                // Full jitter, but never less than a tenth of the ceiling: zero waits just hammer the service.
                Some(ceiling.mul_f64(0.1 + 0.9 * jitter.clamp(0.0, 1.0)))
            }
        }
    }
}

/// Classify an HTTP status for retrying.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        429 | 503 | 509 => Attempt::Throttled(retry_after),
        408 | 423 | 500..=599 => Attempt::ServerError,
        _ => Attempt::Permanent,
    }
}

/// Parse `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// Every request of a client waits here until any pause the service asked for has passed.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    until: Mutex<Option<Instant>>,
}

impl ThrottleGate {
    /// Pause every request for `wait` from now (a longer pause already in force is kept).
    pub fn pause(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut until = self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if until.is_none_or(|u| u < deadline) {
            *until = Some(deadline);
        }
    }

    /// Wait until no pause is in force.
    pub async fn wait(&self) {
        loop {
            let deadline = *self
                .until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match deadline {
                Some(d) if d > Instant::now() => tokio::time::sleep_until(d.into()).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_delay_table() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        let cases = [
            (1, Attempt::Throttled(Some(s(7))), 0.5, Some(s(7))),
            (1, Attempt::Throttled(None), 0.5, Some(s(5))),
            (1, Attempt::Permanent, 0.5, None),
            (1, Attempt::ServerError, 1.0, Some(s(1))),
            (3, Attempt::Network, 1.0, Some(s(4))),
            (5, Attempt::Network, 1.0, Some(s(16))),
            (
                5,
                Attempt::ServerError,
                0.0,
                Some(Duration::from_millis(1600)),
            ),
            (6, Attempt::Network, 1.0, None),
            (2, Attempt::Unreachable, 1.0, Some(s(2))),
            (3, Attempt::Unreachable, 1.0, None),
            (6, Attempt::Throttled(Some(s(1))), 0.5, None),
        ];
        for (attempt, outcome, jitter, want) in cases {
            assert_eq!(
                p.next_delay(attempt, outcome, jitter),
                want,
                "{attempt} {outcome:?}"
            );
        }
        let capped = RetryPolicy {
            max_attempts: 30,
            ..p
        };
        assert_eq!(capped.next_delay(20, Attempt::Network, 1.0), Some(s(30)));
    }

    #[test]
    fn statuses_and_retry_after() {
        assert_eq!(classify_status(429, None), Attempt::Throttled(None));
        assert_eq!(classify_status(502, None), Attempt::ServerError);
        assert_eq!(classify_status(404, None), Attempt::Permanent);
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn the_gate_holds_every_waiter_until_the_pause_ends() {
        let gate = ThrottleGate::default();
        gate.pause(Duration::from_millis(50));
        gate.pause(Duration::from_millis(10)); // shorter: ignored
        let start = Instant::now();
        gate.wait().await;
        assert!(start.elapsed() >= Duration::from_millis(45));
    }
}
