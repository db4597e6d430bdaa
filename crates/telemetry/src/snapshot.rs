//! The serde snapshot: a plain, dashboard-friendly view of everything recorded.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use crate::hist::Quantiles;
use crate::series::{ModelSeries, Series};

/// Everything recorded, at one instant. Lists are sorted, so two snapshots of the same
/// recordings serialize identically.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Process-wide facts.
    pub process: ProcessStats,
    /// Caller-level counts, one entry per model.
    pub models: Vec<ModelSnapshot>,
    /// Per-engine attempt counts, one entry per (model, engine, compute units).
    pub series: Vec<SeriesSnapshot>,
}

/// Process resident memory as sampled by [`crate::Telemetry::sample_rss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Most recent RSS sample in bytes (`None` where the platform gives none).
    pub rss_bytes: Option<u64>,
    /// First RSS sample in bytes.
    pub rss_first_bytes: Option<u64>,
    /// Largest RSS sample in bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Number of samples taken.
    pub rss_samples: u64,
}

/// Caller-level counts for one model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelSnapshot {
    /// Model name.
    pub model: String,
    /// `run` calls (each counted once, whatever happened).
    pub calls: u64,
    /// Calls answered with outputs.
    pub successes: u64,
    /// Calls answered with an error, by error kind.
    pub failures: BTreeMap<String, u64>,
    /// Fallbacks: the router moved past one engine to the next.
    pub fallbacks: Vec<FallbackCount>,
    /// Caller-seen latency (`total`) and queue wait (`queue`).
    pub latency_us: BTreeMap<String, Quantiles>,
    /// Calls in the model's queue (running or waiting) when the snapshot was taken.
    #[serde(default)]
    pub queue_depth: u64,
    /// Capacity of the model's queue (0 when the runtime did not say).
    #[serde(default)]
    pub queue_capacity: u64,
    /// Hedges started (the next engine started beside a preferred one that had not answered).
    #[serde(default)]
    pub hedges: u64,
    /// Hedges that answered first.
    #[serde(default)]
    pub hedge_wins: u64,
    /// Losing attempts cancelled after another engine answered the call.
    #[serde(default)]
    pub hedge_cancellations: u64,
}

/// One fallback route and how often it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FallbackCount {
    /// Engine that did not serve.
    pub from: String,
    /// Engine tried next.
    pub to: String,
    /// Why: an error kind, `circuit_open` or `quarantined`.
    pub reason: String,
    /// How often.
    pub count: u64,
}

/// Per-engine counts for one model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeriesSnapshot {
    /// Model name.
    pub model: String,
    /// Engine name.
    pub engine: String,
    /// Compute units the engine was prepared with.
    pub compute_units: String,
    /// Attempts on this engine.
    pub requests: u64,
    /// Attempts that returned outputs.
    pub successes: u64,
    /// Failed attempts by error kind (`timeout` included).
    pub failures: BTreeMap<String, u64>,
    /// Timed-out attempts (also in `failures.timeout`).
    pub timeouts: u64,
    /// Successful attempts slower than the SLA.
    pub slow: u64,
    /// Calls not attempted: `circuit_open`, `overloaded`.
    pub rejections: BTreeMap<String, u64>,
    /// Calls this engine served after a preferred engine did not.
    pub served_as_fallback: u64,
    /// Instances quarantined after a timeout.
    pub quarantines: u64,
    /// Workers currently stuck inside the engine.
    pub abandoned_workers: u64,
    /// Workers ever abandoned.
    pub abandoned_workers_total: u64,
    /// Circuit breaker state and transitions.
    pub breaker: BreakerSnapshot,
    /// Model loads on this engine.
    pub load: LoadSnapshot,
    /// Shadow parity against the reference engine.
    pub parity: ParitySnapshot,
    /// Latency per phase: `total`, `queue`, `marshal_in`, `compute`, `marshal_out`.
    pub latency_us: BTreeMap<String, Quantiles>,
}

/// Breaker state and transition counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Times the breaker opened.
    pub trips: u64,
    /// Every transition seen, with its count.
    pub transitions: Vec<TransitionCount>,
    /// Calls let through while the breaker was not admitting them, the engine being the last
    /// one the call could use (their outcomes are not counted by the breaker).
    #[serde(default)]
    pub bypasses: u64,
}

/// One breaker transition and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransitionCount {
    /// State left.
    pub from: String,
    /// State entered.
    pub to: String,
    /// How often.
    pub count: u64,
}

/// Model loads (prepare) on one engine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadSnapshot {
    /// True when the last load succeeded: the engine serves the model.
    #[serde(default)]
    pub available: bool,
    /// Successful loads (including rebuilds after quarantine).
    pub loads: u64,
    /// Failed loads.
    pub failures: u64,
    /// Duration of the last successful load in milliseconds.
    pub last_ms: Option<f64>,
    /// Why the last failed load failed.
    pub last_error: Option<String>,
}

/// Shadow parity drift against the reference engine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParitySnapshot {
    /// Comparisons made.
    pub checks: u64,
    /// Comparisons beyond tolerance.
    pub exceeded: u64,
    /// Comparisons skipped because the shadow queue was full.
    pub dropped: u64,
    /// Largest absolute difference seen.
    pub max_abs: f64,
    /// Largest relative difference seen.
    pub max_rel: f64,
    /// Smallest cosine similarity seen.
    pub min_cosine: Option<f64>,
    /// Mean top-k agreement.
    pub mean_topk_agreement: Option<f64>,
}

pub(crate) fn model_snapshot(m: &ModelSeries) -> ModelSnapshot {
    let fallbacks = m
        .fallbacks
        .lock()
        .iter()
        .map(|(k, v)| FallbackCount {
            from: k.from.clone(),
            to: k.to.clone(),
            reason: k.reason.clone(),
            count: *v,
        })
        .collect();
    let h = m.hists.lock();
    let latency_us = BTreeMap::from([
        ("total".to_string(), h[0].quantiles()),
        ("queue".to_string(), h[1].quantiles()),
    ]);
    drop(h);
    ModelSnapshot {
        model: m.model.clone(),
        calls: m.calls.load(Relaxed),
        successes: m.successes.load(Relaxed),
        failures: m.failures.to_map(),
        fallbacks,
        latency_us,
        queue_depth: m.queue_depth.load(Relaxed),
        queue_capacity: m.queue_capacity.load(Relaxed),
        hedges: m.hedges.load(Relaxed),
        hedge_wins: m.hedge_wins.load(Relaxed),
        hedge_cancellations: m.hedge_cancellations.load(Relaxed),
    }
}

pub(crate) fn series_snapshot(s: &Series) -> SeriesSnapshot {
    let transitions: Vec<TransitionCount> = s
        .transitions
        .lock()
        .iter()
        .map(|((f, t), c)| TransitionCount {
            from: f.as_str().into(),
            to: t.as_str().into(),
            count: *c,
        })
        .collect();
    let trips = transitions.iter().filter(|t| t.to == "open").map(|t| t.count).sum();
    let load = s.load.lock().clone();
    let parity = s.parity.lock().clone();
    let failures = s.failures.to_map();
    let mut rejections = BTreeMap::new();
    rejections.insert("circuit_open".to_string(), s.rejected_circuit_open.load(Relaxed));
    rejections.insert("overloaded".to_string(), s.rejected_overloaded.load(Relaxed));
    SeriesSnapshot {
        model: s.key.model.clone(),
        engine: s.key.engine.clone(),
        compute_units: s.key.compute_units.clone(),
        requests: s.requests.load(Relaxed),
        successes: s.successes.load(Relaxed),
        timeouts: failures.get("timeout").copied().unwrap_or(0),
        failures,
        slow: s.slow.load(Relaxed),
        rejections,
        served_as_fallback: s.served_as_fallback.load(Relaxed),
        quarantines: s.quarantines.load(Relaxed),
        abandoned_workers: s.abandoned_workers.load(Relaxed),
        abandoned_workers_total: s.abandoned_total.load(Relaxed),
        breaker: BreakerSnapshot {
            state: s.breaker_state().as_str().into(),
            trips,
            transitions,
            bypasses: s.breaker_bypasses.load(Relaxed),
        },
        load: LoadSnapshot {
            available: load.available,
            loads: load.loads,
            failures: load.failures,
            last_ms: load.last.map(|d| d.as_secs_f64() * 1e3),
            last_error: load.last_error,
        },
        parity: ParitySnapshot {
            checks: parity.checks,
            exceeded: parity.exceeded,
            dropped: parity.dropped,
            max_abs: parity.max_abs,
            max_rel: parity.max_rel,
            min_cosine: parity.min_cosine,
            mean_topk_agreement: (parity.checks > 0)
                .then(|| parity.topk_sum / parity.checks as f64),
        },
        latency_us: s
            .phase_quantiles()
            .into_iter()
            .map(|(p, q)| (p.as_str().to_string(), q))
            .collect(),
    }
}
