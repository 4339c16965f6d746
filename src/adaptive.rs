//! Adaptive concurrency: how many transfers may run at once, lowered when the service throttles and raised
//! again while it is healthy, never above `--concurrency`.
//!
//! The rule is additive increase, multiplicative decrease (AIMD, as TCP congestion control): a throttling
//! episode halves the limit; each full window of transfers finished without a new episode adds one. Every
//! 429/503 already pauses *all* requests until `Retry-After` has passed (`graph/retry.rs`); this is the
//! second half of Microsoft's guidance, sending less afterwards so the next window is not spent at once
//! (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/scan-guidance>).
//!
//! [`Aimd`] decides (pure, unit-tested); [`AdaptiveLimit`] applies its decisions to a semaphore. It learns
//! of throttling by the client's running count of throttle events, so it knows nothing of HTTP. A leaf shared
//! by the downloader and the restore, which both schedule transfers through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Throttle answers closer together than this are one episode: the transfers in flight when the service
/// started refusing all get their 429 at about the same time, and that is one signal, not eight.
const EPISODE: Duration = Duration::from_secs(1);

/// Shortest time between two raises of the limit. The service budgets per minute, so a limit back at the
/// ceiling a few hundred milliseconds after an episode would only spend the next window at once.
const GROWTH_INTERVAL: Duration = Duration::from_secs(1);

/// The limit's state and rules. No clock or I/O: the caller passes the time and the throttle count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aimd {
    /// The ceiling (`--concurrency`).
    max: usize,
    /// Transfers allowed at once now.
    limit: usize,
    /// Transfers finished well since the limit last changed.
    successes: usize,
    /// The client's throttle count when last looked at.
    throttles_seen: u64,
    /// When the last episode lowered the limit.
    last_drop: Option<Instant>,
    /// When the limit last changed.
    last_change: Option<Instant>,
    /// The lowest limit reached.
    lowest: usize,
    /// Times the limit was lowered.
    drops: u64,
}

impl Aimd {
    /// Start at the ceiling, with the client's throttle count so far.
    pub fn new(max: usize, throttles_so_far: u64) -> Self {
        let max = max.max(1);
        Self {
            max,
            limit: max,
            successes: 0,
            throttles_seen: throttles_so_far,
            last_drop: None,
            last_change: None,
            lowest: max,
            drops: 0,
        }
    }

    /// Transfers allowed at once now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The lowest limit reached so far.
    pub fn lowest(&self) -> usize {
        self.lowest
    }

    /// Times throttling lowered the limit.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// Look at the client's throttle count: a new episode halves the limit (not below one). Returns the
    /// change of the limit.
    pub fn observe(&mut self, throttles: u64, now: Instant) -> isize {
        if throttles <= self.throttles_seen {
            return 0;
        }
        self.throttles_seen = throttles;
        if self
            .last_drop
            .is_some_and(|at| now.saturating_duration_since(at) < EPISODE)
        {
            return 0;
        }
        self.last_drop = Some(now);
        self.last_change = Some(now);
        self.successes = 0;
        let before = self.limit;
        self.limit = (before / 2).max(1);
        self.lowest = self.lowest.min(self.limit);
        if self.limit < before {
            self.drops += 1;
        }
        self.limit as isize - before as isize
    }

    /// A transfer finished well: a full window of these adds one to the limit (up to the ceiling), at most
    /// once per [`GROWTH_INTERVAL`]. Returns the change of the limit.
    pub fn success(&mut self, now: Instant) -> isize {
        if self.limit >= self.max {
            return 0;
        }
        self.successes += 1;
        let waited = self
            .last_change
            .is_none_or(|at| now.saturating_duration_since(at) >= GROWTH_INTERVAL);
        if self.successes < self.limit || !waited {
            return 0;
        }
        self.successes = 0;
        self.last_change = Some(now);
        self.limit += 1;
        1
    }
}

/// A semaphore whose size follows an [`Aimd`]. Lowering it takes effect as transfers finish: their permits
/// are retired instead of returned.
#[derive(Debug)]
pub struct AdaptiveLimit {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    aimd: Aimd,
    /// Permits to retire as they come back (the limit went down while they were held).
    debt: usize,
}

impl AdaptiveLimit {
    /// At most `max` at once, starting there.
    pub fn new(max: usize, throttles_so_far: u64) -> Self {
        let aimd = Aimd::new(max, throttles_so_far);
        Self {
            permits: Arc::new(Semaphore::new(aimd.limit())),
            state: Mutex::new(State { aimd, debt: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for a free slot.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Take the client's throttle count into account. Returns the new limit when this lowered it (a new
    /// throttling episode).
    pub fn observe(&self, throttles: u64) -> Option<usize> {
        let mut state = self.state();
        let change = state.aimd.observe(throttles, Instant::now());
        self.apply(&mut state, change);
        (change < 0).then(|| state.aimd.limit())
    }

    /// Give a slot back after a transfer; `healthy` when it was not ended by throttling.
    pub fn release(&self, permit: OwnedSemaphorePermit, healthy: bool) {
        let mut state = self.state();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        if healthy {
            let change = state.aimd.success(Instant::now());
            self.apply(&mut state, change);
        }
    }

    fn apply(&self, state: &mut State, change: isize) {
        if change < 0 {
            let wanted = change.unsigned_abs();
            let retired = self.permits.forget_permits(wanted);
            state.debt += wanted - retired;
        } else if change > 0 {
            for _ in 0..change {
                if state.debt > 0 {
                    state.debt -= 1;
                } else {
                    self.permits.add_permits(1);
                }
            }
        }
    }

    /// `(current limit, lowest limit, times lowered)`.
    pub fn figures(&self) -> (usize, usize, u64) {
        let state = self.state();
        (state.aimd.limit(), state.aimd.lowest(), state.aimd.drops())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_halves_the_limit_once_and_healthy_windows_grow_it_back_to_the_ceiling() {
        let t0 = Instant::now();
        let mut a = Aimd::new(8, 3);
        assert_eq!(a.observe(3, t0), 0, "no new throttle event");
        assert_eq!(a.observe(5, t0), -4);
        assert_eq!(a.limit(), 4);
        // More 429s of the same episode change nothing.
        assert_eq!(a.observe(9, t0 + Duration::from_millis(300)), 0);
        assert_eq!(a.limit(), 4);
        // A later episode halves again, down to one at most.
        assert_eq!(a.observe(10, t0 + Duration::from_secs(2)), -2);
        assert_eq!(a.observe(11, t0 + Duration::from_secs(4)), -1);
        assert_eq!(a.observe(12, t0 + Duration::from_secs(6)), 0);
        assert_eq!((a.limit(), a.lowest(), a.drops()), (1, 1, 3));
        // Additive increase: one per window of `limit` successes, at most once a second.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(a.success(t1 + Duration::from_millis(500)), 0, "too soon");
        let mut grown = Vec::new();
        for i in 1..=40 {
            if a.success(t1 + Duration::from_millis(1000 * i)) > 0 {
                grown.push((i, a.limit()));
            }
        }
        // Growth 2 at once (two successes seen, a second passed); then every `limit` successes.
        assert_eq!(
            grown,
            [(1, 2), (3, 3), (6, 4), (10, 5), (15, 6), (21, 7), (28, 8)]
        );
        assert_eq!(
            a.success(t1 + Duration::from_secs(100)),
            0,
            "never above the ceiling"
        );
        assert_eq!(a.limit(), 8);
    }

    #[tokio::test]
    async fn lowering_the_limit_retires_permits_as_transfers_finish() {
        let limit = AdaptiveLimit::new(4, 0);
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| limit.acquire())).await;
        assert_eq!(limit.permits.available_permits(), 0);
        limit.observe(1);
        assert_eq!(limit.figures().0, 2);
        let mut held = held.into_iter();
        // The first two finishers pay the debt; only then do permits come back.
        limit.release(held.next().unwrap(), false);
        limit.release(held.next().unwrap(), false);
        assert_eq!(limit.permits.available_permits(), 0);
        limit.release(held.next().unwrap(), false);
        assert_eq!(limit.permits.available_permits(), 1);
        limit.release(held.next().unwrap(), true);
        assert_eq!(limit.permits.available_permits(), 2);
        // Two healthy transfers at limit 2 would make it 3, but not within a second of the drop.
        let a = limit.acquire().await;
        limit.release(a, true);
        assert_eq!(limit.figures().0, 2);
        assert_eq!(limit.permits.available_permits(), 2);
    }
}
