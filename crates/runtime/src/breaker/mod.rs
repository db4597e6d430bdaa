//! The circuit breaker per (model, engine): closed / open / half-open over a count-based window.
//!
//! - **Closed**: every call is admitted; outcomes go into a sliding window of the last
//!   `window` calls. Once the window holds at least `min_calls` outcomes, a failure rate
//!   `>= failure_rate` or a slow-call rate `>= slow_rate` (slow = succeeded but over the SLA)
//!   opens the breaker.
//! - **Open**: calls are rejected without being attempted for a cooldown. The cooldown of the
//!   k-th consecutive trip is `min(cooldown * backoff^(k-1), max_cooldown)`.
//! - **Half-open**: after the cooldown, up to `half_open_probes` calls are admitted as probes.
//!   One failed or slow probe re-opens (with the next, longer cooldown); when all probes
//!   succeed the breaker closes, the window and the trip count start afresh.
//!
//! Results carry the epoch of the state that admitted them: a late result from a call admitted
//! before a transition is ignored. Time comes from an injectable [`Clock`].
//!
//! A [`Permit`] is a guard: it is settled exactly once, by [`Permit::record`] (an outcome) or
//! [`Permit::cancel`] (never attempted); a permit dropped unsettled is cancelled, so a
//! half-open probe slot can never leak.
//!
//! A breaker can be **bypassed** ([`CircuitBreaker::bypass`]) for the last engine a call can
//! use: the runtime never refuses a call while some engine could still answer it. A bypassed
//! call is a trial whose outcome the breaker does not count (its cooldown and its half-open
//! probes still decide when it closes).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;

/// Breaker settings; start from [`BreakerConfig::default`] and change fields with the `with_`
/// methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Outcomes kept in the sliding window.
    pub window: usize,
    /// Outcomes needed in the window before rates are judged.
    pub min_calls: usize,
    /// Failure rate (0..=1) at or above which the breaker opens.
    pub failure_rate: f64,
    /// Slow-call rate (0..=1) at or above which the breaker opens.
    pub slow_rate: f64,
    /// A successful call slower than this is slow; `None` takes the manifest SLA.
    pub slow_call: Option<Duration>,
    /// Cooldown after the first trip.
    pub cooldown: Duration,
    /// Multiplier applied to the cooldown on each consecutive trip.
    pub backoff: f64,
    /// Upper bound of the cooldown.
    pub max_cooldown: Duration,
    /// Probe calls admitted in half-open; all must succeed to close.
    pub half_open_probes: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_rate: 0.8,
            slow_call: None,
            cooldown: Duration::from_secs(5),
            backoff: 2.0,
            max_cooldown: Duration::from_secs(60),
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// Sets `window`: Outcomes kept in the sliding window.
    pub fn with_window(mut self, window: usize) -> BreakerConfig {
        self.window = window;
        self
    }

    /// Sets `min_calls`: Outcomes needed in the window before rates are judged.
    pub fn with_min_calls(mut self, min_calls: usize) -> BreakerConfig {
        self.min_calls = min_calls;
        self
    }

    /// Sets `failure_rate`: Failure rate (0..=1) at or above which the breaker opens.
    pub fn with_failure_rate(mut self, failure_rate: f64) -> BreakerConfig {
        self.failure_rate = failure_rate;
        self
    }

    /// Sets `slow_rate`: Slow-call rate (0..=1) at or above which the breaker opens.
    pub fn with_slow_rate(mut self, slow_rate: f64) -> BreakerConfig {
        self.slow_rate = slow_rate;
        self
    }

    /// Sets `slow_call`: Slow-call threshold (`None` takes the manifest SLA).
    pub fn with_slow_call(mut self, slow_call: Option<Duration>) -> BreakerConfig {
        self.slow_call = slow_call;
        self
    }

    /// Sets `cooldown`: Cooldown after the first trip.
    pub fn with_cooldown(mut self, cooldown: Duration) -> BreakerConfig {
        self.cooldown = cooldown;
        self
    }

    /// Sets `backoff`: Cooldown multiplier per consecutive trip.
    pub fn with_backoff(mut self, backoff: f64) -> BreakerConfig {
        self.backoff = backoff;
        self
    }

    /// Sets `max_cooldown`: Upper bound of the cooldown.
    pub fn with_max_cooldown(mut self, max_cooldown: Duration) -> BreakerConfig {
        self.max_cooldown = max_cooldown;
        self
    }

    /// Sets `half_open_probes`: Probe calls admitted in half-open.
    pub fn with_half_open_probes(mut self, half_open_probes: usize) -> BreakerConfig {
        self.half_open_probes = half_open_probes;
        self
    }

    /// The cooldown of the `trip`-th consecutive trip (1-based).
    pub fn cooldown_for(&self, trip: u32) -> Duration {
        let exp = trip.saturating_sub(1).min(64) as i32;
        let secs = self.cooldown.as_secs_f64() * self.backoff.max(1.0).powi(exp);
        let max = self.max_cooldown.max(self.cooldown);
        if !secs.is_finite() || secs >= max.as_secs_f64() {
            max
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are rejected until `until` (clock time).
    Open {
        /// Clock time at which probes are admitted.
        until: Duration,
    },
    /// Probes are admitted: `admitted` so far, `succeeded` of them done well.
    HalfOpen {
        /// Probes admitted.
        admitted: usize,
        /// Probes that succeeded.
        succeeded: usize,
    },
}

impl BreakerState {
    /// The state as exported to telemetry.
    pub fn gauge(&self) -> telemetry::BreakerGauge {
        match self {
            BreakerState::Closed => telemetry::BreakerGauge::Closed,
            BreakerState::Open { .. } => telemetry::BreakerGauge::Open,
            BreakerState::HalfOpen { .. } => telemetry::BreakerGauge::HalfOpen,
        }
    }
}

/// How a call went, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded within the SLA.
    Success,
    /// Succeeded, slower than the SLA.
    Slow,
    /// Failed (error, timeout, panic, bad output, parity drift).
    Failure,
}

/// Admission to call the engine: a guard settled once with its outcome ([`Permit::record`]) or
/// given back ([`Permit::cancel`]); dropping it unsettled gives it back.
#[must_use = "report the outcome with Permit::record, or drop/cancel it if the call never ran"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    /// The epoch of the state that admitted the call ([`BYPASS_EPOCH`] for a bypass).
    epoch: u64,
    probe: bool,
    settled: bool,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("epoch", &self.epoch).field("probe", &self.probe).finish()
    }
}

impl Permit<'_> {
    /// True when this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// True when this call was let through a breaker that refused it ([`CircuitBreaker::bypass`]).
    pub fn is_bypass(&self) -> bool {
        self.epoch == BYPASS_EPOCH
    }

    /// Reports how the admitted call went (consumes the permit: it cannot be recorded twice).
    pub fn record(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.epoch, outcome);
    }

    /// Gives the permit back without an outcome (the call was never attempted).
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.release(self.epoch);
        }
    }
}

/// The epoch of bypass permits: never the breaker's (epochs count up from 0 by one per
/// transition), so their outcome and their release are ignored.
const BYPASS_EPOCH: u64 = u64::MAX;

/// The breaker's answer when it does not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time until probes are admitted (zero when half-open probes are all in flight).
    pub retry_after: Duration,
}

/// Counts of the closed-state window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowStats {
    /// Outcomes in the window.
    pub calls: usize,
    /// Failures among them.
    pub failures: usize,
    /// Slow successes among them.
    pub slow: usize,
}

/// A state change, reported to the observer.
pub type Transition = (BreakerState, BreakerState);

type Observer = Arc<dyn Fn(BreakerState, BreakerState) + Send + Sync>;

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    epoch: u64,
    window: VecDeque<Outcome>,
    stats: WindowStats,
    trips: u32,
    last_cooldown: Duration,
}

/// A circuit breaker; see the module documentation for the state machine.
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("cfg", &self.cfg)
            .field("inner", &self.inner)
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig, clock: Arc<dyn Clock>) -> CircuitBreaker {
        CircuitBreaker {
            cfg,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                epoch: 0,
                window: VecDeque::new(),
                stats: WindowStats::default(),
                trips: 0,
                last_cooldown: Duration::ZERO,
            }),
            observer: None,
        }
    }

    /// Calls `f(from, to)` on every transition (outside the breaker's lock).
    pub fn with_observer(
        mut self,
        f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static,
    ) -> CircuitBreaker {
        self.observer = Some(Arc::new(f));
        self
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// The current state (an open breaker whose cooldown is over reads as half-open).
    pub fn state(&self) -> BreakerState {
        let t = {
            let mut g = self.inner.lock();
            self.maybe_half_open(&mut g)
        };
        self.notify(t);
        self.inner.lock().state
    }

    /// Counts in the closed-state window.
    pub fn window(&self) -> WindowStats {
        self.inner.lock().stats
    }

    /// Consecutive trips since the breaker last closed.
    pub fn trips(&self) -> u32 {
        self.inner.lock().trips
    }

    /// Cooldown applied at the last trip.
    pub fn last_cooldown(&self) -> Duration {
        self.inner.lock().last_cooldown
    }

    /// Classifies a finished call: failures fail, successes over the slow threshold are slow.
    pub fn classify(&self, ok: bool, elapsed: Duration, sla: Option<Duration>) -> Outcome {
        match (ok, self.cfg.slow_call.or(sla)) {
            (false, _) => Outcome::Failure,
            (true, Some(limit)) if elapsed > limit => Outcome::Slow,
            _ => Outcome::Success,
        }
    }

    /// Asks to call the engine.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let (res, t) = {
            let mut g = self.inner.lock();
            let t = self.maybe_half_open(&mut g);
            let epoch = g.epoch;
            let permit = |probe| Permit { breaker: self, epoch, probe, settled: false };
            let res = match &mut g.state {
                BreakerState::Closed => Ok(permit(false)),
                BreakerState::Open { until } => {
                    Err(Rejected { retry_after: until.saturating_sub(self.clock.now()) })
                }
                BreakerState::HalfOpen { admitted, .. } => {
                    if *admitted < self.cfg.half_open_probes.max(1) {
                        *admitted += 1;
                        Ok(permit(true))
                    } else {
                        Err(Rejected { retry_after: Duration::ZERO })
                    }
                }
            };
            (res, t)
        };
        self.notify(t);
        res
    }

    /// Admits a call whatever the state, for the last engine a call can use when every other
    /// engine is out (its breaker open, quarantined, or already failed on this call): refusing
    /// it would refuse a call that a slow or recovering engine may still answer. The permit is
    /// neither a probe nor counted: its outcome is ignored, so the breaker keeps its state,
    /// cooldown and half-open probes. Ask [`Self::try_acquire`] first (a call it admits counts).
    pub fn bypass(&self) -> Permit<'_> {
        Permit { breaker: self, epoch: BYPASS_EPOCH, probe: false, settled: false }
    }

    /// Gives a permit back without an outcome (the call was never attempted); the same as
    /// [`Permit::cancel`] (the permit settles with the breaker that issued it).
    pub fn cancel(&self, permit: Permit<'_>) {
        permit.cancel();
    }

    /// Reports how an admitted call went; the same as [`Permit::record`] (the permit settles
    /// with the breaker that issued it).
    pub fn record(&self, permit: Permit<'_>, outcome: Outcome) {
        permit.record(outcome);
    }

    fn release(&self, epoch: u64) {
        let mut g = self.inner.lock();
        if g.epoch == epoch
            && let BreakerState::HalfOpen { admitted, .. } = &mut g.state
        {
            *admitted = admitted.saturating_sub(1);
        }
    }

    fn settle(&self, epoch: u64, outcome: Outcome) {
        let t = {
            let mut g = self.inner.lock();
            if g.epoch != epoch { None } else { self.apply(&mut g, outcome) }
        };
        self.notify(t);
    }

    /// Reports a failure found after the fact (shadow parity drift): counted in the closed
    /// window only.
    pub fn record_external_failure(&self) {
        let t = {
            let mut g = self.inner.lock();
            if g.state == BreakerState::Closed {
                self.apply(&mut g, Outcome::Failure)
            } else {
                None
            }
        };
        self.notify(t);
    }

    fn apply(&self, g: &mut Inner, outcome: Outcome) -> Option<Transition> {
        match g.state {
            BreakerState::Closed => {
                g.window.push_back(outcome);
                bump(&mut g.stats, outcome, 1);
                while g.window.len() > self.cfg.window.max(1) {
                    if let Some(old) = g.window.pop_front() {
                        bump(&mut g.stats, old, -1);
                    }
                }
                let s = g.stats;
                if s.calls >= self.cfg.min_calls.max(1) {
                    let fr = s.failures as f64 / s.calls as f64;
                    let sr = s.slow as f64 / s.calls as f64;
                    if fr >= self.cfg.failure_rate || sr >= self.cfg.slow_rate {
                        return Some(self.trip(g));
                    }
                }
                None
            }
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen { admitted, succeeded } => match outcome {
                Outcome::Success => {
                    let succeeded = succeeded + 1;
                    if succeeded >= self.cfg.half_open_probes.max(1) {
                        let from = g.state;
                        g.state = BreakerState::Closed;
                        g.trips = 0;
                        self.reset_window(g);
                        Some((from, g.state))
                    } else {
                        g.state = BreakerState::HalfOpen { admitted, succeeded };
                        None
                    }
                }
                Outcome::Slow | Outcome::Failure => Some(self.trip(g)),
            },
        }
    }

    fn trip(&self, g: &mut Inner) -> Transition {
        let from = g.state;
        g.trips = g.trips.saturating_add(1);
        g.last_cooldown = self.cfg.cooldown_for(g.trips);
        g.state = BreakerState::Open { until: self.clock.now() + g.last_cooldown };
        self.reset_window(g);
        (from, g.state)
    }

    fn reset_window(&self, g: &mut Inner) {
        g.window.clear();
        g.stats = WindowStats::default();
        g.epoch += 1;
    }

    fn maybe_half_open(&self, g: &mut Inner) -> Option<Transition> {
        if let BreakerState::Open { until } = g.state
            && self.clock.now() >= until
        {
            let from = g.state;
            g.state = BreakerState::HalfOpen { admitted: 0, succeeded: 0 };
            g.epoch += 1;
            return Some((from, g.state));
        }
        None
    }

    fn notify(&self, t: Option<Transition>) {
        if let (Some((from, to)), Some(f)) = (t, self.observer.as_ref()) {
            f(from, to);
        }
    }
}

fn bump(s: &mut WindowStats, o: Outcome, d: isize) {
    let add = |v: &mut usize| *v = v.saturating_add_signed(d);
    add(&mut s.calls);
    match o {
        Outcome::Failure => add(&mut s.failures),
        Outcome::Slow => add(&mut s.slow),
        Outcome::Success => {}
    }
}

#[cfg(test)]
mod tests;
