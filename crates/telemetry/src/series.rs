//! Recording handles: one [`Series`] per (model, engine, compute units), one [`ModelSeries`] per model.
//!
//! Counters are atomics; the latency histograms of a series share one short `parking_lot`
//! mutex (a few hundred nanoseconds held per call); rare events (breaker transitions,
//! fallbacks, parity checks, loads) take their own small mutexes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use crate::hist::{LatencyHist, Phase};

/// Error kinds known in advance (the `kind()` names of `inference_api::Error`); counted
/// without locking. Any other kind string is counted too, under a mutex.
pub const ERROR_KINDS: [&str; 12] = [
    "unavailable",
    "compile",
    "load",
    "invalid_input",
    "timeout",
    "cancelled",
    "runtime",
    "non_finite",
    "circuit_open",
    "overloaded",
    "io",
    "integrity",
];

/// Identity of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Model name.
    pub model: String,
    /// Engine name.
    pub engine: String,
    /// Compute units the engine was prepared with (`all`, `cpu_only`, ...).
    pub compute_units: String,
}

/// Breaker state as exported (the runtime maps its own state onto this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakerGauge {
    /// Calls flow.
    Closed,
    /// Calls are rejected until the cooldown ends.
    Open,
    /// A few probe calls are admitted.
    HalfOpen,
}

impl BreakerGauge {
    /// Every state, in export order.
    pub const ALL: [BreakerGauge; 3] =
        [BreakerGauge::Closed, BreakerGauge::Open, BreakerGauge::HalfOpen];

    /// Label used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerGauge::Closed => "closed",
            BreakerGauge::Open => "open",
            BreakerGauge::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> BreakerGauge {
        match v {
            1 => BreakerGauge::Open,
            2 => BreakerGauge::HalfOpen,
            _ => BreakerGauge::Closed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            BreakerGauge::Closed => 0,
            BreakerGauge::Open => 1,
            BreakerGauge::HalfOpen => 2,
        }
    }
}

/// Phase latencies of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latencies {
    /// Wall time of the attempt as the router saw it (queue + hand-off + engine).
    pub total: Duration,
    /// Time in the queue before a worker picked the call up.
    pub queue: Duration,
    /// Engine-reported marshal-in time.
    pub marshal_in: Duration,
    /// Engine-reported compute time.
    pub compute: Duration,
    /// Engine-reported marshal-out time.
    pub marshal_out: Duration,
}

/// Output drift of one shadow comparison against the reference engine.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DriftSample {
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest relative difference.
    pub max_rel: f64,
    /// Cosine similarity of the flattened outputs.
    pub cosine: f64,
    /// Fraction of the reference top-k found in the primary's top-k.
    pub topk_agreement: f64,
    /// Whether the drift exceeded the manifest tolerance.
    pub exceeded: bool,
}

/// Counts per error kind: lock-free for the known kinds.
#[derive(Debug, Default)]
pub(crate) struct KindCounters {
    known: [AtomicU64; ERROR_KINDS.len()],
    other: Mutex<BTreeMap<String, u64>>,
}

impl KindCounters {
    pub(crate) fn add(&self, kind: &str) {
        match ERROR_KINDS.iter().position(|k| *k == kind) {
            Some(i) => {
                self.known[i].fetch_add(1, Relaxed);
            }
            None => *self.other.lock().entry(kind.to_string()).or_default() += 1,
        }
    }

    pub(crate) fn get(&self, kind: &str) -> u64 {
        match ERROR_KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.known[i].load(Relaxed),
            None => self.other.lock().get(kind).copied().unwrap_or(0),
        }
    }

    pub(crate) fn to_map(&self) -> BTreeMap<String, u64> {
        let mut m = self.other.lock().clone();
        for (k, c) in ERROR_KINDS.iter().zip(&self.known) {
            let v = c.load(Relaxed);
            if v > 0 {
                m.insert((*k).to_string(), v);
            }
        }
        m
    }

    pub(crate) fn total(&self) -> u64 {
        self.known.iter().map(|c| c.load(Relaxed)).sum::<u64>()
            + self.other.lock().values().sum::<u64>()
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct LoadStats {
    pub(crate) available: bool,
    pub(crate) loads: u64,
    pub(crate) failures: u64,
    pub(crate) last: Option<Duration>,
    pub(crate) last_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ParityStats {
    pub(crate) checks: u64,
    pub(crate) exceeded: u64,
    pub(crate) dropped: u64,
    pub(crate) max_abs: f64,
    pub(crate) max_rel: f64,
    pub(crate) min_cosine: Option<f64>,
    pub(crate) topk_sum: f64,
    pub(crate) last: Option<DriftSample>,
}

/// Everything recorded for one (model, engine, compute units).
#[derive(Debug)]
pub struct Series {
    pub(crate) key: SeriesKey,
    pub(crate) requests: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: KindCounters,
    pub(crate) slow: AtomicU64,
    pub(crate) rejected_circuit_open: AtomicU64,
    pub(crate) breaker_bypasses: AtomicU64,
    pub(crate) rejected_overloaded: AtomicU64,
    pub(crate) served_as_fallback: AtomicU64,
    pub(crate) quarantines: AtomicU64,
    pub(crate) abandoned_workers: AtomicU64,
    pub(crate) abandoned_total: AtomicU64,
    pub(crate) breaker_state: AtomicU8,
    pub(crate) transitions: Mutex<BTreeMap<(BreakerGauge, BreakerGauge), u64>>,
    pub(crate) load: Mutex<LoadStats>,
    pub(crate) parity: Mutex<ParityStats>,
    pub(crate) hists: Mutex<[LatencyHist; 5]>,
}

impl Series {
    pub(crate) fn new(key: SeriesKey) -> Series {
        Series {
            key,
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: KindCounters::default(),
            slow: AtomicU64::new(0),
            rejected_circuit_open: AtomicU64::new(0),
            breaker_bypasses: AtomicU64::new(0),
            rejected_overloaded: AtomicU64::new(0),
            served_as_fallback: AtomicU64::new(0),
            quarantines: AtomicU64::new(0),
            abandoned_workers: AtomicU64::new(0),
            abandoned_total: AtomicU64::new(0),
            breaker_state: AtomicU8::new(0),
            transitions: Mutex::new(BTreeMap::new()),
            load: Mutex::new(LoadStats::default()),
            parity: Mutex::new(ParityStats::default()),
            hists: Mutex::new(std::array::from_fn(|_| LatencyHist::new())),
        }
    }

    /// The series identity.
    pub fn key(&self) -> &SeriesKey {
        &self.key
    }

    /// A successful attempt: counts a request and a success, records every phase.
    pub fn record_success(&self, lat: &Latencies) {
        self.requests.fetch_add(1, Relaxed);
        self.successes.fetch_add(1, Relaxed);
        let mut h = self.hists.lock();
        h[0].record(lat.total);
        h[1].record(lat.queue);
        h[2].record(lat.marshal_in);
        h[3].record(lat.compute);
        h[4].record(lat.marshal_out);
        drop(h);
        tracing::trace!(model = %self.key.model, engine = %self.key.engine, total_us = lat.total.as_micros() as u64, "call served");
    }

    /// A failed attempt of the given error kind (`timeout` also counts as a timeout);
    /// only the total and queue latencies are recorded.
    pub fn record_failure(&self, kind: &str, total: Duration, queue: Duration) {
        self.requests.fetch_add(1, Relaxed);
        self.failures.add(kind);
        let mut h = self.hists.lock();
        h[0].record(total);
        h[1].record(queue);
        drop(h);
        tracing::debug!(model = %self.key.model, engine = %self.key.engine, kind, "call failed");
    }

    /// A successful attempt slower than the SLA (counted in addition to the success).
    pub fn record_slow(&self) {
        self.slow.fetch_add(1, Relaxed);
    }

    /// A call not attempted because this engine's circuit breaker is open.
    pub fn record_circuit_open(&self) {
        self.rejected_circuit_open.fetch_add(1, Relaxed);
    }

    /// A call let through this engine's open breaker: the engine was the last one the call
    /// could use (the breaker does not count its outcome).
    pub fn record_breaker_bypass(&self) {
        self.breaker_bypasses.fetch_add(1, Relaxed);
    }

    /// A call rejected because this engine's queue was full.
    pub fn record_overloaded(&self) {
        self.rejected_overloaded.fetch_add(1, Relaxed);
    }

    /// This engine served a call after a preferred engine failed or was skipped.
    pub fn record_served_as_fallback(&self) {
        self.served_as_fallback.fetch_add(1, Relaxed);
    }

    /// The engine instance was quarantined (after a timeout) and will be rebuilt.
    pub fn record_quarantine(&self) {
        self.quarantines.fetch_add(1, Relaxed);
        tracing::warn!(model = %self.key.model, engine = %self.key.engine, "instance quarantined");
    }

    /// A worker was abandoned inside the engine (`+1`) or came back and exited (`-1`).
    pub fn record_abandoned_worker(&self, delta: i64) {
        if delta >= 0 {
            self.abandoned_workers.fetch_add(delta.unsigned_abs(), Relaxed);
            self.abandoned_total.fetch_add(delta.unsigned_abs(), Relaxed);
        } else {
            let d = delta.unsigned_abs();
            let _ = self
                .abandoned_workers
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(d)));
        }
    }

    /// The breaker moved from `from` to `to`.
    pub fn record_breaker_transition(&self, from: BreakerGauge, to: BreakerGauge) {
        self.breaker_state.store(to.to_u8(), Relaxed);
        *self.transitions.lock().entry((from, to)).or_default() += 1;
        if to == BreakerGauge::Open {
            tracing::warn!(model = %self.key.model, engine = %self.key.engine, from = from.as_str(), "circuit breaker opened");
        } else {
            tracing::info!(model = %self.key.model, engine = %self.key.engine, from = from.as_str(), to = to.as_str(), "circuit breaker transition");
        }
    }

    /// Current breaker state as last recorded.
    pub fn breaker_state(&self) -> BreakerGauge {
        BreakerGauge::from_u8(self.breaker_state.load(Relaxed))
    }

    /// A model load (prepare) on this engine: its duration, or why it failed.
    pub fn record_load(&self, result: Result<Duration, &str>) {
        let mut l = self.load.lock();
        match result {
            Ok(d) => {
                l.available = true;
                l.loads += 1;
                l.last = Some(d);
            }
            Err(reason) => {
                l.available = false;
                l.failures += 1;
                l.last_error = Some(reason.to_string());
                drop(l);
                tracing::warn!(model = %self.key.model, engine = %self.key.engine, reason, "model load failed");
            }
        }
    }

    /// True when the last load on this engine succeeded (the engine serves the model).
    pub fn available(&self) -> bool {
        self.load.lock().available
    }

    /// One shadow parity comparison.
    pub fn record_parity(&self, d: &DriftSample) {
        let mut p = self.parity.lock();
        p.checks += 1;
        p.exceeded += u64::from(d.exceeded);
        p.max_abs = p.max_abs.max(d.max_abs);
        p.max_rel = p.max_rel.max(d.max_rel);
        p.min_cosine = Some(p.min_cosine.map_or(d.cosine, |c| c.min(d.cosine)));
        p.topk_sum += d.topk_agreement;
        p.last = Some(*d);
        drop(p);
        if d.exceeded {
            tracing::warn!(model = %self.key.model, engine = %self.key.engine, max_abs = d.max_abs, "parity drift beyond tolerance");
        }
    }

    /// A shadow comparison skipped because the shadow queue was full.
    pub fn record_parity_dropped(&self) {
        self.parity.lock().dropped += 1;
    }

    /// Attempts counted so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Successful attempts so far.
    pub fn successes(&self) -> u64 {
        self.successes.load(Relaxed)
    }

    /// Failed attempts of one kind.
    pub fn failures(&self, kind: &str) -> u64 {
        self.failures.get(kind)
    }

    /// Failed attempts of every kind.
    pub fn failures_total(&self) -> u64 {
        self.failures.total()
    }

    /// Calls skipped because the breaker was open.
    pub fn circuit_open_rejections(&self) -> u64 {
        self.rejected_circuit_open.load(Relaxed)
    }

    /// Calls let through this engine's open breaker as the last engine left.
    pub fn breaker_bypasses(&self) -> u64 {
        self.breaker_bypasses.load(Relaxed)
    }

    /// Calls this engine served as a fallback.
    pub fn served_as_fallback(&self) -> u64 {
        self.served_as_fallback.load(Relaxed)
    }

    /// Workers currently abandoned inside the engine.
    pub fn abandoned_workers(&self) -> u64 {
        self.abandoned_workers.load(Relaxed)
    }

    /// How often the breaker went `from` → `to`.
    pub fn transitions(&self, from: BreakerGauge, to: BreakerGauge) -> u64 {
        self.transitions.lock().get(&(from, to)).copied().unwrap_or(0)
    }

    pub(crate) fn phase_quantiles(&self) -> Vec<(Phase, crate::Quantiles)> {
        let h = self.hists.lock();
        Phase::ALL.iter().zip(h.iter()).map(|(p, h)| (*p, h.quantiles())).collect()
    }
}

/// Identity of a fallback: from which engine, to which, and why (an error kind or
/// `circuit_open` / `quarantined`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FallbackKey {
    /// Engine that was preferred.
    pub from: String,
    /// Engine tried next.
    pub to: String,
    /// Why the preferred engine did not serve.
    pub reason: String,
}

/// Caller-level counts for one model: every `run` call is counted here exactly once.
#[derive(Debug)]
pub struct ModelSeries {
    pub(crate) model: String,
    pub(crate) calls: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: KindCounters,
    pub(crate) fallbacks: Mutex<BTreeMap<FallbackKey, u64>>,
    pub(crate) hists: Mutex<[LatencyHist; 2]>,
    pub(crate) queue_depth: AtomicU64,
    pub(crate) queue_capacity: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) hedge_wins: AtomicU64,
    pub(crate) hedge_cancellations: AtomicU64,
}

impl ModelSeries {
    pub(crate) fn new(model: String) -> ModelSeries {
        ModelSeries {
            model,
            calls: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: KindCounters::default(),
            fallbacks: Mutex::new(BTreeMap::new()),
            hists: Mutex::new([LatencyHist::new(), LatencyHist::new()]),
            queue_depth: AtomicU64::new(0),
            queue_capacity: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedge_wins: AtomicU64::new(0),
            hedge_cancellations: AtomicU64::new(0),
        }
    }

    /// A hedge started: a preferred engine had not answered when only the next engine's
    /// expected time was left, so the next engine was started beside it.
    pub fn record_hedge(&self) {
        self.hedges.fetch_add(1, Relaxed);
    }

    /// A hedged engine answered first (the engine it was started beside lost).
    pub fn record_hedge_win(&self) {
        self.hedge_wins.fetch_add(1, Relaxed);
    }

    /// An attempt still running or queued when another engine answered the call was
    /// cancelled (its token cancelled, its answer no longer awaited).
    pub fn record_hedge_cancellation(&self) {
        self.hedge_cancellations.fetch_add(1, Relaxed);
    }

    /// Hedges started so far.
    pub fn hedges(&self) -> u64 {
        self.hedges.load(Relaxed)
    }

    /// Hedges that answered first.
    pub fn hedge_wins(&self) -> u64 {
        self.hedge_wins.load(Relaxed)
    }

    /// Losing attempts cancelled after another engine answered.
    pub fn hedge_cancellations(&self) -> u64 {
        self.hedge_cancellations.load(Relaxed)
    }

    /// The model's queue holds at most `n` calls (running or waiting).
    pub fn set_queue_capacity(&self, n: usize) {
        self.queue_capacity.store(n as u64, Relaxed);
    }

    /// A call entered the model's queue.
    pub fn queue_enter(&self) {
        self.queue_depth.fetch_add(1, Relaxed);
    }

    /// A call left the model's queue (answered, whatever the outcome).
    pub fn queue_leave(&self) {
        let _ = self.queue_depth.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }

    /// Calls in the model's queue now (running or waiting).
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Relaxed)
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// A call answered with outputs.
    pub fn record_ok(&self, total: Duration, queue: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.successes.fetch_add(1, Relaxed);
        let mut h = self.hists.lock();
        h[0].record(total);
        h[1].record(queue);
    }

    /// A call answered with an error of the given kind.
    pub fn record_err(&self, kind: &str, total: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.failures.add(kind);
        self.hists.lock()[0].record(total);
    }

    /// The router moved past `from` to `to` for `reason`.
    pub fn record_fallback(&self, from: &str, to: &str, reason: &str) {
        let key = FallbackKey { from: from.into(), to: to.into(), reason: reason.into() };
        *self.fallbacks.lock().entry(key).or_default() += 1;
        tracing::debug!(model = %self.model, from, to, reason, "fell back");
    }

    /// Calls counted so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// Calls answered with outputs.
    pub fn successes(&self) -> u64 {
        self.successes.load(Relaxed)
    }

    /// Calls answered with an error of `kind`.
    pub fn failures(&self, kind: &str) -> u64 {
        self.failures.get(kind)
    }

    /// Calls answered with any error.
    pub fn failures_total(&self) -> u64 {
        self.failures.total()
    }

    /// Fallbacks counted so far, all reasons together.
    pub fn fallbacks_total(&self) -> u64 {
        self.fallbacks.lock().values().sum()
    }

    /// Fallbacks for one reason (any from/to).
    pub fn fallbacks_for(&self, reason: &str) -> u64 {
        self.fallbacks.lock().iter().filter(|(k, _)| k.reason == reason).map(|(_, v)| v).sum()
    }
}
