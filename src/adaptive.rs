//! Adaptive concurrency: how many transfers may run at once. It grows from where it starts while the service
//! keeps up, is lowered when the service throttles, and never exceeds its ceiling.
//!
//! - **Growth.** Each full window of transfers (as many as the limit, at least a second) that ended well, with
//!   the slots busy (taken for at least [`BUSY`] of the window's slot-time: the limit, not the work, was the
//!   bound) and no throttling, may raise the limit: by a quarter until the service first throttles
//!   (a slow start, as TCP's), by one afterwards. A raise is kept only if it paid: when the windows after it
//!   did not finish files (or bytes) faster by at least a quarter of the raise's proportion, the link, the
//!   disk or the service is the bound, and the limit holds there (trying once more after a while, as
//!   conditions change). A raise whose first window falls short is measured over one more before it is
//!   given up: one window's rate varies by several per cent with the sizes of the files that happened to
//!   end in it, and a raise wrongly given up costs [`REPROBE_WINDOWS`] windows at the lower limit.
//!   Up to where it started (the configured concurrency) growth needs no such proof: after throttling the
//!   limit climbs back there one step per window, as AIMD does.
//! - **Throttling.** A throttling episode halves the limit (additive increase, multiplicative decrease, as
//!   TCP congestion control). Every 429/503 already pauses *all* requests until `Retry-After` has passed
//!   (`graph/retry.rs`); this is the second half of Microsoft's guidance, sending less afterwards so the next
//!   window is not spent at once
//!   (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/scan-guidance>).
//! - **Refusals that sending less does not reduce.** A service can refuse a share of whatever arrives, for
//!   its own reasons (load elsewhere, a gateway): lowering the limit then only slows the backup. So the share
//!   of refused requests is measured at each limit; when, after a halving, it has not fallen to at most half
//!   of what it was above, the refusals are taken as independent of our rate: the limit goes back to where
//!   it was, and refusals at about that share no longer lower it nor count as throttling for growth. Clearly
//!   more refusals than that share explains (three standard deviations above it) are throttling again.
//!   The share is measured over everything sent since the last halving, and the limit does not grow while a
//!   halving waits to be judged (until the share above would have brought a few refusals, or long enough):
//!   a growth step between two refusals would otherwise turn every judgement into a new descent.
//!   Every `Retry-After` is still honoured by every request: that is the gate's job, not this one's.
//!
//! [`Aimd`] decides (pure, table-tested); [`AdaptiveLimit`] applies its decisions to a semaphore. It learns
//! of throttling by the client's running counts of throttle events and requests, so it knows nothing of
//! HTTP. A leaf shared by the downloader and the restore, which both schedule transfers through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Throttle answers closer together than this are one episode: the transfers in flight when the service
/// started refusing all get their 429 at about the same time, and that is one signal, not eight.
const EPISODE: Duration = Duration::from_secs(1);

/// Shortest time between two raises of the limit (and shortest growth window). The service budgets per
/// minute, so a limit back at the ceiling a few hundred milliseconds after an episode would only spend the
/// next window at once.
const GROWTH_INTERVAL: Duration = Duration::from_secs(1);

/// Requests a refusal share is measured over before it is compared with another.
const MIN_SAMPLE: u64 = 40;

/// After a halving, a refusal share at least this fraction of the one before means lowering did not help.
const SAME_SHARE: f64 = 0.5;

/// A raise of the limit is kept when the windows after it were faster by at least this fraction of the
/// raise's proportion (a raise from 8 to 10, +25 %, must bring +6.25 %). Measured on a machine whose CPU
/// bounds the transfers (`bench small --latency-ms 50 --concurrency N`: 120, 199, 247 and 279 MB/s at 8,
/// 16, 24 and 32), each step brought 0.4–0.7 of its proportion in throughput, still worth taking; a link or
/// service at its bound brings none.
const GAIN: f64 = 0.25;

/// Windows to hold at a limit whose raise did not pay before trying to raise it again.
const REPROBE_WINDOWS: u32 = 20;

/// The share of a window's slot-time (limit × its length) that slots must have been taken for, for the
/// limit rather than the work to have been the bound. Measured over time, not at the instants transfers
/// end: transfers started together end together, and each of them but the first sees the slots the others
/// just gave back, not yet taken again.
const BUSY: f64 = 0.75;

/// A window of transfers finished at one limit.
#[derive(Debug, Clone, Default, PartialEq)]
struct Window {
    started: Option<Instant>,
    files: u64,
    bytes: u64,
    /// Slot-seconds taken since the window started (slots in use, integrated over time).
    slot_secs: f64,
    /// Whether throttling (beyond the background share) came during it.
    throttled: bool,
}

/// How fast a closed window went, at which limit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    limit: usize,
    files_per_s: f64,
    bytes_per_s: f64,
}

/// What the first window after a raise finished, when it fell short: the raise is judged again over it
/// and the next window together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Unpaid {
    files: u64,
    bytes: u64,
    secs: f64,
}

/// Requests and refusals counted at one limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Share {
    requests: u64,
    refusals: u64,
}

impl Share {
    fn of(self) -> Option<f64> {
        (self.requests >= MIN_SAMPLE).then(|| self.refusals as f64 / self.requests as f64)
    }
}

/// Requests over which the recent refusal share is measured (an exponential moving window: older requests
/// weigh less, by half every ~140 of them).
const RECENT: f64 = 200.0;

/// Requests and refusals of the last [`RECENT`] or so requests, whatever the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Recent {
    requests: f64,
    refusals: f64,
}

impl Recent {
    fn add(&mut self, requests: u64, refusals: u64) {
        let keep = (-(requests as f64) / RECENT).exp();
        self.requests = self.requests * keep + requests as f64;
        self.refusals = self.refusals * keep + refusals as f64;
    }

    /// Whether these refusals are clearly more than a `background` share would bring: more than three
    /// standard deviations (and one refusal) above its expectation. `false` while too few requests were
    /// counted to tell.
    fn beyond(self, background: f64) -> bool {
        if self.requests < MIN_SAMPLE as f64 {
            return false;
        }
        let expected = self.requests * background;
        let spread = (self.requests * background * (1.0 - background)).sqrt();
        self.refusals > expected + 3.0 * spread + 1.0
    }
}

/// The limit's state and rules. No clock or I/O: the caller passes the time and the client's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    /// The ceiling (`--concurrency`, or the default's growth ceiling).
    max: usize,
    /// Transfers allowed at once now.
    limit: usize,
    /// Where the limit started: growing back up to it after throttling needs no proof that it pays.
    start: usize,
    /// The client's throttle count when last looked at.
    throttles_seen: u64,
    /// The client's request count when last looked at (`None`: never given, so no shares are measured).
    requests_seen: Option<u64>,
    /// When the last episode lowered the limit (or was taken as background).
    last_drop: Option<Instant>,
    /// When the limit last changed.
    last_change: Option<Instant>,
    /// The lowest and highest limit reached.
    lowest: usize,
    highest: usize,
    /// Times the limit was lowered.
    drops: u64,
    /// Raises by a quarter until the service throttles, by one afterwards.
    slow_start: bool,
    /// The window being measured, and the last one closed.
    window: Window,
    previous: Option<Rate>,
    /// The first window after a raise, when it did not pay: judged again with the next.
    unpaid: Option<Unpaid>,
    /// Windows held since a raise did not pay (`None`: growth is not on hold).
    plateau: Option<u32>,
    /// Refusals at the current limit, and lately.
    share: Share,
    recent: Recent,
    /// The limit before the last halving and the refusal share measured there, until the halving is judged.
    above: Option<(usize, Option<f64>)>,
    /// The refusal share that lowering the limit did not reduce, once learned.
    background: Option<f64>,
    /// Slots in use, as last told, and since when.
    in_use: usize,
    in_use_since: Option<Instant>,
}

/// How a transfer ended, for [`Aimd::finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Not ended by throttling (a failure for another reason still counts as an answer).
    pub(crate) healthy: bool,
    /// Bytes it fetched.
    pub bytes: u64,
    /// Slots still taken once it gave its own back.
    pub(crate) in_use: usize,
}

impl Aimd {
    /// Start at the ceiling, with the client's throttle count so far: it is lowered on throttling and grows
    /// back, never above `max`.
    pub fn new(max: usize, throttles_so_far: u64) -> Self {
        Self::growing(max, max, throttles_so_far)
    }

    /// Start at `start` and grow up to `max` while the service keeps up.
    pub fn growing(start: usize, max: usize, throttles_so_far: u64) -> Self {
        let max = max.max(1);
        let start = start.clamp(1, max);
        Self {
            max,
            limit: start,
            start,
            throttles_seen: throttles_so_far,
            requests_seen: None,
            last_drop: None,
            last_change: None,
            lowest: start,
            highest: start,
            drops: 0,
            slow_start: true,
            window: Window::default(),
            previous: None,
            unpaid: None,
            plateau: None,
            share: Share::default(),
            recent: Recent::default(),
            above: None,
            background: None,
            in_use: 0,
            in_use_since: None,
        }
    }

    /// Slots in use changed to `count` (a transfer took one): see [`BUSY`].
    pub fn in_use(&mut self, count: usize, now: Instant) {
        self.count_slot_time(now);
        self.in_use = count;
    }

    /// Add the slot-time since the last change of slots in use to the window (from its start).
    fn count_slot_time(&mut self, now: Instant) {
        if let (Some(since), Some(started)) = (self.in_use_since, self.window.started) {
            let from = since.max(started);
            self.window.slot_secs +=
                self.in_use as f64 * now.saturating_duration_since(from).as_secs_f64();
        }
        self.in_use_since = Some(now);
    }

    /// Transfers allowed at once now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The lowest limit reached so far.
    pub fn lowest(&self) -> usize {
        self.lowest
    }

    /// The highest limit reached so far.
    pub fn highest(&self) -> usize {
        self.highest
    }

    /// Times throttling lowered the limit.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// The share of requests refused whatever the limit, once learned.
    #[cfg(test)]
    pub(crate) fn background_share(&self) -> Option<f64> {
        self.background
    }

    /// Set the limit; `measure_anew` starts a new refusal share (after a halving, or a return from one),
    /// which growth does not: the share since the last halving is what the next one is judged against.
    fn set_limit(&mut self, limit: usize, now: Instant, measure_anew: bool) -> isize {
        let before = self.limit;
        self.limit = limit.clamp(1, self.max);
        self.lowest = self.lowest.min(self.limit);
        self.highest = self.highest.max(self.limit);
        self.last_change = Some(now);
        self.window = Window::default();
        self.unpaid = None;
        if measure_anew {
            self.share = Share::default();
        }
        self.limit as isize - before as isize
    }

    /// Lowering the limit did not make refusals rarer: they are not ours to reduce. Back to where the
    /// descent started, and growth as before the first halving.
    fn refusals_are_background(&mut self, share: f64, above_limit: usize, now: Instant) -> isize {
        self.last_drop = Some(now);
        self.background = Some(share);
        self.above = None;
        self.slow_start = true;
        self.plateau = None;
        self.previous = None;
        self.set_limit(above_limit.max(self.limit), now, true)
    }

    /// Look at the client's throttle count (and, when given, its request count): a new episode halves the
    /// limit (not below one), unless the refusal shares measured at each limit show that lowering it does
    /// not make them rarer (see the module's doc). Returns the change of the limit.
    pub fn observe_with_requests(
        &mut self,
        throttles: u64,
        requests: Option<u64>,
        now: Instant,
    ) -> isize {
        let new_refusals = throttles.saturating_sub(self.throttles_seen);
        self.throttles_seen = self.throttles_seen.max(throttles);
        if let Some(requests) = requests {
            let before = self.requests_seen.unwrap_or(requests);
            let sent = requests.saturating_sub(before);
            self.share.requests += sent;
            self.share.refusals += new_refusals;
            self.recent.add(sent, new_refusals);
            self.requests_seen = Some(requests.max(before));
        }
        if new_refusals == 0 {
            return 0;
        }
        if let Some(background) = self.background
            && !self.recent.beyond(background)
        {
            // The share sending less does not reduce: waited out at the gate, not a reason to send less.
            return 0;
        }
        self.window.throttled = true;
        if self
            .last_drop
            .is_some_and(|at| now.saturating_duration_since(at) < EPISODE)
        {
            return 0;
        }
        let here = self.share.of();
        if let (Some((above_limit, above_share)), Some(_)) = (self.above, self.requests_seen) {
            match (here, above_share) {
                // Not yet enough requests at this limit to judge the last halving: hold.
                (None, _) => return 0,
                (Some(here), Some(above)) if here >= SAME_SHARE * above => {
                    return self.refusals_are_background(here.max(above), above_limit, now);
                }
                _ => {}
            }
        }
        self.last_drop = Some(now);
        self.slow_start = false;
        self.previous = None;
        let halved = (self.limit / 2).max(1);
        if halved >= self.limit {
            return 0;
        }
        // A halving made before the one before it could be judged belongs to the same descent: if lowering
        // turns out not to help, the limit goes back to where the descent started.
        let return_to = match self.above {
            Some((from, None)) => from.max(self.limit),
            _ => self.limit,
        };
        self.above = Some((return_to, here));
        self.drops += 1;
        self.set_limit(halved, now, true)
    }

    /// While a halving waits to be judged, whether enough has been sent since to judge it here (without a
    /// new refusal). `Some(change)` ends [`Self::finished`] with that change; `None` goes on to growth.
    fn judge_halving(&mut self, now: Instant) -> Option<isize> {
        let (above_limit, above_share) = self.above?;
        let Some(here) = self.share.of() else {
            // Too few requests since the halving to tell: no growth until then.
            return Some(0);
        };
        // A share that fell is told from chance only once the share above would have brought a few
        // refusals here (six: at that share, none at all comes by chance once in 400); a long stretch is
        // enough in any case.
        let sent = self.share.requests;
        let long = sent >= 4 * MIN_SAMPLE;
        match above_share {
            Some(above) if sent as f64 * above < 6.0 && !long => Some(0),
            Some(above) if here >= SAME_SHARE * above => {
                Some(self.refusals_are_background(here.max(above), above_limit, now))
            }
            // Refusals fell (or stopped): lowering helped, and the limit grows back as AIMD's does.
            Some(_) => {
                self.above = None;
                None
            }
            // Nothing measured above to compare with; a refusal meanwhile would have halved again.
            None if long => {
                self.above = None;
                None
            }
            None => Some(0),
        }
    }

    /// A transfer ended: windows of these decide growth (see the module's doc). Returns the change of the
    /// limit.
    pub fn finished(&mut self, done: Finished, now: Instant) -> isize {
        self.count_slot_time(now);
        self.in_use = done.in_use;
        if !done.healthy {
            return 0;
        }
        if let Some(change) = self.judge_halving(now) {
            return change;
        }
        let window = &mut self.window;
        let started = *window.started.get_or_insert(now);
        window.files += 1;
        window.bytes += done.bytes;
        let elapsed = now.saturating_duration_since(started);
        let waited = self
            .last_change
            .is_none_or(|at| now.saturating_duration_since(at) >= GROWTH_INTERVAL);
        if window.files < self.limit as u64 || elapsed < GROWTH_INTERVAL || !waited {
            return 0;
        }
        let closed = std::mem::take(&mut self.window);
        let idle = closed.slot_secs < BUSY * self.limit as f64 * elapsed.as_secs_f64();
        if closed.throttled || idle || self.limit >= self.max {
            // Throttled, or the work (not the limit) was the bound: nothing to learn about growth.
            self.previous = None;
            self.unpaid = None;
            return 0;
        }
        // The first window after a raise that fell short counts with this one.
        let second_look = self.unpaid.is_some();
        let before = self.unpaid.take().unwrap_or_default();
        let measured = Unpaid {
            files: before.files + closed.files,
            bytes: before.bytes + closed.bytes,
            secs: before.secs + elapsed.as_secs_f64(),
        };
        let secs = measured.secs.max(1e-3);
        let rate = Rate {
            limit: self.limit,
            files_per_s: measured.files as f64 / secs,
            bytes_per_s: measured.bytes as f64 / secs,
        };
        // Only a raise past the start has to pay for itself.
        if let Some(prev) = self
            .previous
            .filter(|p| p.limit < rate.limit && rate.limit > self.start)
        {
            let wanted = 1.0 + GAIN * (rate.limit - prev.limit) as f64 / prev.limit as f64;
            let paid = rate.files_per_s >= prev.files_per_s * wanted
                || (prev.bytes_per_s > 0.0 && rate.bytes_per_s >= prev.bytes_per_s * wanted);
            if !paid && !second_look {
                // One window is a small sample: measure one more at this limit before giving the raise up.
                self.unpaid = Some(measured);
                return 0;
            }
            if !paid {
                // More slots did not finish more: back to the limit that did as well, and hold there.
                self.plateau = Some(0);
                self.previous = None;
                return self.set_limit(prev.limit.max(self.start), now, false);
            }
        }
        self.previous = Some(rate);
        let past_start = self.limit >= self.start;
        if let Some(held) = self.plateau.as_mut().filter(|_| past_start) {
            *held += 1;
            if *held < REPROBE_WINDOWS {
                return 0;
            }
            self.plateau = None;
        }
        let step = if self.slow_start {
            (self.limit / 4).max(1)
        } else {
            1
        };
        self.set_limit(self.limit + step, now, false)
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
        Self::with(Aimd::new(max, throttles_so_far))
    }

    /// Starting at `start`, growing up to `max` while the service keeps up.
    pub fn growing(start: usize, max: usize, throttles_so_far: u64) -> Self {
        Self::with(Aimd::growing(start, max, throttles_so_far))
    }

    fn with(aimd: Aimd) -> Self {
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
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut state = self.state();
        let in_use = self.in_use(&state);
        state.aimd.in_use(in_use, Instant::now());
        permit
    }

    /// Slots taken now: the semaphore holds the limit's permits and those owed to a lowering (`debt`,
    /// retired as they come back).
    fn in_use(&self, state: &State) -> usize {
        (state.aimd.limit() + state.debt).saturating_sub(self.permits.available_permits())
    }

    /// Take the client's throttle count (and, when it counts them, its request count) into account. Returns
    /// the new limit when this lowered it (a new throttling episode); see [`Aimd::observe_with_requests`].
    pub fn observe_with_requests(&self, throttles: u64, requests: Option<u64>) -> Option<usize> {
        let mut state = self.state();
        let change = state
            .aimd
            .observe_with_requests(throttles, requests, Instant::now());
        self.apply(&mut state, change);
        (change < 0).then(|| state.aimd.limit())
    }

    /// Give a slot back after a transfer; `healthy` when it was not ended by throttling.
    pub fn release(&self, permit: OwnedSemaphorePermit, healthy: bool) {
        self.release_after(permit, healthy, 0);
    }

    /// [`Self::release`], with the bytes the transfer fetched (growth compares windows by files and bytes
    /// per second).
    pub fn release_after(&self, permit: OwnedSemaphorePermit, healthy: bool, bytes: u64) {
        let mut state = self.state();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        let in_use = self.in_use(&state);
        let change = state.aimd.finished(
            Finished {
                healthy,
                bytes,
                in_use,
            },
            Instant::now(),
        );
        self.apply(&mut state, change);
    }

    fn apply(&self, state: &mut State, change: isize) {
        if change != 0 {
            tracing::debug!(
                limit = state.aimd.limit(),
                change,
                "transfers allowed at once changed"
            );
        }
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

    /// The highest limit reached.
    pub fn highest(&self) -> usize {
        self.state().aimd.highest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(50);

    /// A service answering each slot once per 50 ms tick: `served(limit)` files per tick are done (the rest
    /// of the slots wait), and `refused(limit)` of each tick's requests are refused with throttling. Drives
    /// `a` for `secs` and returns its limit at the end of every second.
    fn drive(
        a: &mut Aimd,
        t0: Instant,
        secs: u64,
        served: impl Fn(usize) -> usize,
        refused: impl Fn(usize) -> f64,
    ) -> Vec<usize> {
        drive_with(a, t0, secs, served, refused, true)
    }

    /// [`drive`], saying whether every slot stays taken (`busy`) or only those serving (the work is the
    /// bound).
    fn drive_with(
        a: &mut Aimd,
        t0: Instant,
        secs: u64,
        served: impl Fn(usize) -> usize,
        refused: impl Fn(usize) -> f64,
        busy: bool,
    ) -> Vec<usize> {
        let (mut requests, mut throttles, mut owed) = (0u64, 0u64, 0.0f64);
        let mut limits = Vec::new();
        for tick in 1..=secs * 20 {
            let now = t0 + TICK * u32::try_from(tick).unwrap();
            let limit = a.limit();
            requests += limit as u64;
            owed += limit as f64 * refused(limit);
            let refusals = owed.floor();
            owed -= refusals;
            throttles += refusals as u64;
            a.observe_with_requests(throttles, Some(requests), now);
            let done = served(limit).min(limit).saturating_sub(refusals as usize);
            let in_use = if busy { limit } else { done };
            for _ in 0..done {
                a.finished(
                    Finished {
                        healthy: true,
                        bytes: 100_000,
                        in_use,
                    },
                    now,
                );
            }
            if tick % 20 == 0 {
                limits.push(a.limit());
            }
        }
        limits
    }

    #[test]
    fn the_limit_grows_from_its_start_while_more_transfers_finish_more_files_and_holds_where_they_stop()
     {
        let t0 = Instant::now();
        // Request-bound: every slot finishes a file per tick. A quarter more per window until the ceiling.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 12, |l| l, |_| 0.0);
        assert_eq!(limits, [8, 10, 12, 15, 18, 22, 27, 32, 32, 32, 32, 32]);
        assert_eq!((a.lowest(), a.highest(), a.drops()), (8, 32, 0));

        // Bound elsewhere at 12 files a tick: the raise past it did not pay (over two windows), so the limit
        // goes back and holds there, trying again after a while.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 30, |l| l.min(12), |_| 0.0);
        assert_eq!(&limits[..7], [8, 10, 12, 15, 15, 12, 12]);
        assert!(
            limits.iter().all(|&l| l <= 15),
            "held near the bound: {limits:?}"
        );

        // Slots left idle (the work, not the limit, is the bound): no growth at all.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive_with(&mut a, t0, 5, |_| 4, |_| 0.0, false);
        assert!(limits.iter().all(|&l| l == 8), "{limits:?}");

        // The plain constructor starts at the ceiling and never passes it.
        let mut a = Aimd::new(16, 0);
        let limits = drive(&mut a, t0, 3, |l| l, |_| 0.0);
        assert_eq!(limits, [16, 16, 16]);

        // Halved by throttling where four at once finish as much as more would: back up to the start one
        // step a window all the same (the user asked for it), no further.
        // (The halving is judged first: 160 requests without a refusal say it helped.)
        let mut a = Aimd::new(8, 0);
        assert_eq!(a.observe_with_requests(0, Some(0), t0), 0);
        assert_eq!(a.observe_with_requests(1, Some(8), t0), -4);
        let later = t0 + Duration::from_secs(1);
        let limits = drive(&mut a, later, 10, |l| l.min(4), |_| 0.0);
        assert_eq!(limits, [4, 4, 4, 5, 6, 7, 8, 8, 8, 8]);
        let mut a = Aimd::growing(8, 32, 0);
        assert_eq!(a.observe_with_requests(0, Some(0), t0), 0);
        assert_eq!(a.observe_with_requests(1, Some(8), t0), -4);
        let limits = drive(&mut a, later, 30, |l| l.min(4), |_| 0.0);
        assert_eq!(&limits[..7], [4, 4, 4, 5, 6, 7, 8]);
        assert!(limits.iter().all(|&l| l <= 9), "{limits:?}");
    }

    #[test]
    fn a_raise_whose_first_window_falls_short_by_chance_is_kept_when_the_next_makes_up_for_it() {
        // The first second at 10 finishes no more than 8 did (its files happened to be large); the next
        // finishes 10 a tick. Over the two the raise paid, so growth goes on instead of holding at 8.
        let t0 = Instant::now();
        let tick = std::cell::Cell::new(0u32);
        let served = |l: usize| {
            tick.set(tick.get() + 1);
            if (21..=40).contains(&tick.get()) {
                8
            } else {
                l
            }
        };
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 5, served, |_| 0.0);
        assert_eq!(limits, [8, 10, 10, 12, 15]);

        // Both windows short: given up, back to 8.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 4, |l| l.min(8), |_| 0.0);
        assert_eq!(limits, [8, 10, 10, 8]);
    }

    /// Each tick (for 100), `slots(limit)` transfers end at the same instant and as many are started again a
    /// moment later, as a scheduler does after answers that all took as long. Returns the limit every second.
    fn end_together_and_refill(
        a: &mut Aimd,
        t0: Instant,
        slots: impl Fn(usize) -> usize,
    ) -> Vec<usize> {
        let mut limits = Vec::new();
        for tick in 1..=100u32 {
            let now = t0 + TICK * tick;
            let ending = slots(a.limit());
            for left in (0..ending).rev() {
                let done = Finished {
                    healthy: true,
                    bytes: 1_000,
                    in_use: left,
                };
                a.finished(done, now);
            }
            let again = now + Duration::from_millis(1);
            for taken in 1..=slots(a.limit()) {
                a.in_use(taken, again);
            }
            if tick % 20 == 0 {
                limits.push(a.limit());
            }
        }
        limits
    }

    #[test]
    fn transfers_that_end_together_and_are_replaced_at_once_count_as_busy_slots() {
        // Each finisher but the first sees the slots the others just gave back, which the scheduler takes
        // again a moment later: the slots were busy all the same.
        let t0 = Instant::now();
        let mut a = Aimd::growing(8, 32, 0);
        assert_eq!(
            end_together_and_refill(&mut a, t0, |limit| limit),
            [8, 10, 12, 15, 18]
        );

        // Only half the slots taken (the work is the bound): no growth.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = end_together_and_refill(&mut a, t0, |limit| limit / 2);
        assert!(limits.iter().all(|&l| l == 8), "{limits:?}");
    }

    #[test]
    fn an_episode_halves_the_limit_once_and_the_next_halving_waits_for_evidence() {
        let t0 = Instant::now();
        let mut a = Aimd::new(8, 3);
        assert_eq!(
            a.observe_with_requests(3, None, t0),
            0,
            "no new throttle event"
        );
        assert_eq!(a.observe_with_requests(5, None, t0), -4);
        assert_eq!(a.limit(), 4);
        // More 429s of the same episode change nothing.
        assert_eq!(
            a.observe_with_requests(9, None, t0 + Duration::from_millis(300)),
            0
        );
        // Without request counts nothing can be judged: later episodes keep halving, down to one.
        assert_eq!(
            a.observe_with_requests(10, None, t0 + Duration::from_secs(2)),
            -2
        );
        assert_eq!(
            a.observe_with_requests(11, None, t0 + Duration::from_secs(4)),
            -1
        );
        assert_eq!(
            a.observe_with_requests(12, None, t0 + Duration::from_secs(6)),
            0
        );
        assert_eq!((a.limit(), a.lowest(), a.drops()), (1, 1, 3));

        // With request counts, a halving is judged before the next: fewer than 40 requests at the new limit
        // hold it.
        let mut a = Aimd::new(8, 0);
        assert_eq!(a.observe_with_requests(0, Some(0), t0), 0);
        assert_eq!(a.observe_with_requests(1, Some(50), t0), -4);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            a.observe_with_requests(2, Some(60), later),
            0,
            "10 requests"
        );
        // Refusals fell from 2 % to well under half of it... (one in 400)
        assert_eq!(
            a.observe_with_requests(3, Some(460), later + Duration::from_secs(2)),
            -2
        );
        assert_eq!(a.background_share(), None);
    }

    #[test]
    fn refusals_that_do_not_fall_when_the_limit_falls_stop_lowering_it() {
        let t0 = Instant::now();
        // One request in ten refused whatever the pace: after at most two halvings the limit is back, and
        // the rest of the run grows on.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 40, |l| l, |_| 0.1);
        let share = a.background_share().expect("learned");
        assert!((0.05..0.2).contains(&share), "{share}");
        assert!(a.lowest() >= 2, "{limits:?}");
        assert!(a.drops() <= 2, "{} drops: {limits:?}", a.drops());
        assert!(
            limits[2] >= 8,
            "back to where the descent started: {limits:?}"
        );
        assert_eq!(*limits.last().unwrap(), 32, "{limits:?}");

        // The same at 2 %, as mild faults are.
        let mut a = Aimd::growing(8, 32, 0);
        let limits = drive(&mut a, t0, 40, |l| l, |_| 0.02);
        assert!(a.background_share().is_some(), "{limits:?}");
        assert_eq!(*limits.last().unwrap(), 32, "{limits:?}");

        // A service that can take 3 at once and refuses what comes beyond: refusals fall with the limit, so
        // it keeps halving to below 4, and never learns them as background.
        let mut a = Aimd::growing(16, 32, 0);
        let limits = drive(
            &mut a,
            t0,
            40,
            |l| l.min(3),
            |l| l.saturating_sub(3) as f64 / l as f64,
        );
        assert_eq!(a.background_share(), None, "{limits:?}");
        assert!(a.lowest() <= 3, "{limits:?}");
        assert!(limits[10..].iter().all(|&l| l <= 4), "{limits:?}");

        // Background known, then a burst far above it (a spent budget): throttling again, one halving.
        let mut a = Aimd::growing(8, 32, 0);
        let t1 = t0 + Duration::from_secs(40);
        drive(&mut a, t0, 40, |l| l, |_| 0.1);
        let before = a.limit();
        let (throttles, requests) = (a.throttles_seen, a.requests_seen.unwrap());
        assert_eq!(
            a.observe_with_requests(throttles + 30, Some(requests + 60), t1),
            -((before - before / 2) as isize)
        );
    }

    #[test]
    fn refusals_that_pause_every_request_for_a_second_are_learned_as_background_all_the_same() {
        // As the client's gate does: each tick the slots send a request each; any refusal (6.7 % at random,
        // whatever the pace) stops everything for the second its Retry-After asks. Few requests a second, and
        // growth windows that span the pauses.
        let t0 = Instant::now();
        let mut a = Aimd::growing(8, 32, 0);
        let (mut requests, mut throttles, mut paused) = (0u64, 0u64, 0u32);
        let mut x: u64 = 12_345;
        let mut chance = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for tick in 1..=1200u32 {
            let now = t0 + TICK * tick;
            if paused > 0 {
                paused -= 1;
                continue;
            }
            let limit = a.limit();
            let refused = (0..limit).filter(|_| chance() < 0.067).count();
            requests += limit as u64;
            throttles += refused as u64;
            a.observe_with_requests(throttles, Some(requests), now);
            for _ in refused..limit {
                a.finished(
                    Finished {
                        healthy: true,
                        bytes: 1_000,
                        in_use: limit,
                    },
                    now,
                );
            }
            if refused > 0 {
                paused = 20;
            }
        }
        assert!(a.background_share().is_some(), "learned");
        assert!(a.lowest() >= 2, "lowest {}", a.lowest());
        assert!(a.drops() <= 3, "{} drops", a.drops());
        assert!(a.limit() >= 8, "limit {}", a.limit());
    }

    #[tokio::test]
    async fn lowering_the_limit_retires_permits_as_transfers_finish() {
        let limit = AdaptiveLimit::new(4, 0);
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| limit.acquire())).await;
        assert_eq!(limit.permits.available_permits(), 0);
        limit.observe_with_requests(1, None);
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
