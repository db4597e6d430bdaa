//! Runtime telemetry: per-(model, engine, compute units) series, exported as JSON or Prometheus.
//!
//! A [`Telemetry`] is a cheap-to-clone registry. The runtime asks it once for a [`Series`]
//! handle per (model, engine, compute units) and a [`ModelSeries`] per model, then records on
//! those handles: counters are atomics, latency histograms (HdrHistogram, 3 significant
//! digits) sit behind one short uncontended mutex per series. Reading is [`Telemetry::snapshot`]
//! (serde), [`Telemetry::prometheus_text`], [`Telemetry::summary_text`]; breaker transitions,
//! fallbacks, quarantines and failures are also emitted as `tracing` events. This crate installs
//! no subscriber: binaries do.
//!
//! Error kinds are plain strings (the `kind()` names of the inference API), so this crate
//! depends on nothing of ours.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod hist;
mod prometheus;
mod rss;
mod series;
mod snapshot;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use hist::{BUCKETS, LATENCY_BUCKETS_SECONDS, LatencyHist, Phase, Quantiles};
pub use rss::resident_bytes;
pub use series::{
    BreakerGauge, DriftSample, ERROR_KINDS, FallbackKey, Latencies, ModelSeries, Series, SeriesKey,
};
pub use snapshot::{
    BreakerSnapshot, FallbackCount, LoadSnapshot, ModelSnapshot, ParitySnapshot, ProcessStats,
    SeriesSnapshot, Snapshot, TransitionCount,
};

/// The telemetry registry: clone it freely, every clone records into the same series.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    series: RwLock<BTreeMap<SeriesKey, Arc<Series>>>,
    models: RwLock<BTreeMap<String, Arc<ModelSeries>>>,
    process: Mutex<ProcessStats>,
}

impl Telemetry {
    /// An empty registry.
    pub fn new() -> Telemetry {
        Telemetry::default()
    }

    /// The series for (model, engine, compute units), created on first use. Keep the handle:
    /// recording on it takes no registry lock.
    pub fn series(&self, model: &str, engine: &str, compute_units: &str) -> Arc<Series> {
        let key = SeriesKey {
            model: model.to_string(),
            engine: engine.to_string(),
            compute_units: compute_units.to_string(),
        };
        if let Some(s) = self.inner.series.read().get(&key) {
            return Arc::clone(s);
        }
        let mut w = self.inner.series.write();
        Arc::clone(w.entry(key.clone()).or_insert_with(|| Arc::new(Series::new(key))))
    }

    /// The caller-level series of a model, created on first use.
    pub fn model(&self, model: &str) -> Arc<ModelSeries> {
        if let Some(m) = self.inner.models.read().get(model) {
            return Arc::clone(m);
        }
        let mut w = self.inner.models.write();
        Arc::clone(
            w.entry(model.to_string())
                .or_insert_with(|| Arc::new(ModelSeries::new(model.to_string()))),
        )
    }

    /// Samples process RSS now and records it; returns the value in bytes when available.
    /// Costs a `/proc` read (Linux) or a `ps` run (macOS): call it per batch, not per call.
    pub fn sample_rss(&self) -> Option<u64> {
        let v = resident_bytes();
        if let Some(b) = v {
            self.record_rss(b);
        }
        v
    }

    /// Records an RSS value measured elsewhere.
    pub fn record_rss(&self, bytes: u64) {
        let mut p = self.inner.process.lock();
        p.rss_bytes = Some(bytes);
        p.rss_first_bytes.get_or_insert(bytes);
        p.rss_peak_bytes = Some(p.rss_peak_bytes.map_or(bytes, |x| x.max(bytes)));
        p.rss_samples += 1;
    }

    /// Everything recorded, now.
    pub fn snapshot(&self) -> Snapshot {
        let models = self.inner.models.read().values().cloned().collect::<Vec<_>>();
        let series = self.inner.series.read().values().cloned().collect::<Vec<_>>();
        Snapshot {
            process: *self.inner.process.lock(),
            models: models.iter().map(|m| snapshot::model_snapshot(m)).collect(),
            series: series.iter().map(|s| snapshot::series_snapshot(s)).collect(),
        }
    }

    /// The snapshot as pretty JSON.
    pub fn to_json(&self) -> String {
        snapshot_json(&self.snapshot())
    }

    /// Prometheus text exposition of everything recorded.
    pub fn prometheus_text(&self) -> String {
        prometheus::render(&self.snapshot())
    }

    /// A short readable summary of the run (calls, errors, latency quantiles, fallbacks,
    /// breaker states, parity, RSS), e.g. for `infer classify --stats`.
    pub fn summary_text(&self) -> String {
        summary::render(&self.snapshot())
    }
}

/// A snapshot as pretty JSON.
pub fn snapshot_json(s: &Snapshot) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A snapshot as Prometheus text.
pub fn snapshot_prometheus(s: &Snapshot) -> String {
    prometheus::render(s)
}

/// A snapshot as a readable summary.
pub fn snapshot_summary(s: &Snapshot) -> String {
    summary::render(s)
}
