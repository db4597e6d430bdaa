//! Shadow parity: a sampled fraction of calls also runs on a reference engine, off the hot
//! path, and the output drift goes to telemetry (and to the primary's breaker when it exceeds
//! the manifest tolerance).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use inference_api::{Drift, EngineId, NamedTensors, PreparedModel, RunContext, Tolerance};
use telemetry::{DriftSample, Series};

use crate::breaker::CircuitBreaker;

/// Shadow parity settings; start from [`ShadowConfig::default`] and use the `with_` methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShadowConfig {
    /// Engine whose outputs are the reference (default [`EngineId::CANDLE_CPU`]).
    pub reference: EngineId,
    /// Fraction of calls compared, 0..=1 (sampled evenly: every `1/rate`-th call).
    pub sample_rate: f64,
    /// `k` of the top-k agreement.
    pub top_k: usize,
    /// Comparisons waiting at most; more are dropped (and counted).
    pub queue: usize,
    /// Tolerance from `inference_api::tolerance`; `None` picks by precision (`FP32` for CPU
    /// engines and `cpu_only`, else `FP16`). Judged with [`Drift::within`].
    pub tolerance: Option<Tolerance>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            reference: EngineId::CANDLE_CPU,
            sample_rate: 0.01,
            top_k: 5,
            queue: 16,
            tolerance: None,
        }
    }
}

impl ShadowConfig {
    /// Sets `reference`: engine whose outputs are the reference.
    pub fn with_reference(mut self, reference: impl Into<EngineId>) -> ShadowConfig {
        self.reference = reference.into();
        self
    }

    /// Sets `sample_rate`: fraction of calls compared, 0..=1.
    pub fn with_sample_rate(mut self, sample_rate: f64) -> ShadowConfig {
        self.sample_rate = sample_rate;
        self
    }

    /// Sets `top_k`: `k` of the top-k agreement.
    pub fn with_top_k(mut self, top_k: usize) -> ShadowConfig {
        self.top_k = top_k;
        self
    }

    /// Sets `queue`: comparisons waiting at most.
    pub fn with_queue(mut self, queue: usize) -> ShadowConfig {
        self.queue = queue;
        self
    }

    /// Sets `tolerance` (`None`: picked by the engine's precision).
    pub fn with_tolerance(mut self, tolerance: Option<Tolerance>) -> ShadowConfig {
        self.tolerance = tolerance;
        self
    }
}

/// Compares two output sets: every output present in both, flattened to f32 in name order.
/// Mismatched names or sizes give the largest drift.
pub fn drift(primary: &NamedTensors, reference: &NamedTensors, top_k: usize) -> DriftSample {
    compare(primary, reference, top_k, None)
}

/// [`drift`], with `exceeded` set when the drift is not [`Drift::within`] `tol` (absolute or
/// relative to the reference's peak, the one rule tests and tools use).
pub fn drift_within(
    primary: &NamedTensors,
    reference: &NamedTensors,
    top_k: usize,
    tol: &Tolerance,
) -> DriftSample {
    compare(primary, reference, top_k, Some(tol))
}

fn compare(
    primary: &NamedTensors,
    reference: &NamedTensors,
    top_k: usize,
    tol: Option<&Tolerance>,
) -> DriftSample {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut mismatch = primary.len() != reference.len();
    for (name, r) in reference.iter() {
        match primary.get(name) {
            Some(p) if p.shape() == r.shape() => {
                a.extend(p.to_f32_vec());
                b.extend(r.to_f32_vec());
            }
            _ => mismatch = true,
        }
    }
    if mismatch || a.is_empty() {
        return DriftSample {
            max_abs: f64::MAX,
            max_rel: f64::MAX,
            cosine: 0.0,
            topk_agreement: 0.0,
            exceeded: true,
        };
    }
    let d = Drift::between(&a, &b);
    DriftSample {
        max_abs: f64::from(d.max_abs),
        max_rel: f64::from(d.max_rel),
        cosine: f64::from(d.cosine),
        topk_agreement: f64::from(inference_api::top_k_agreement(&a, &b, top_k.max(1))),
        exceeded: tol.is_some_and(|t| !d.within(t)),
    }
}

/// One comparison to run.
pub(crate) struct ShadowJob {
    pub(crate) inputs: Arc<NamedTensors>,
    pub(crate) outputs: NamedTensors,
    pub(crate) series: Arc<Series>,
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) tolerance: Tolerance,
}

/// The shadow worker of one model: a thread comparing sampled calls against the reference.
pub(crate) struct Shadow {
    pub(crate) cfg: ShadowConfig,
    tx: Sender<ShadowJob>,
    counter: AtomicU64,
    pending: Arc<AtomicUsize>,
}

impl Shadow {
    /// Starts the worker; it exits when the `Shadow` is dropped.
    pub(crate) fn start(cfg: ShadowConfig, reference: Arc<dyn PreparedModel>) -> Option<Shadow> {
        let (tx, rx) = crossbeam_channel::bounded::<ShadowJob>(cfg.queue.max(1));
        let pending = Arc::new(AtomicUsize::new(0));
        let p2 = Arc::clone(&pending);
        let top_k = cfg.top_k;
        std::thread::Builder::new()
            .name("rt-shadow".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        reference.run(&job.inputs, &RunContext::new())
                    }));
                    if let Ok(Ok(reference_out)) = r {
                        let d = drift_within(&job.outputs, &reference_out, top_k, &job.tolerance);
                        job.series.record_parity(&d);
                        if d.exceeded {
                            job.breaker.record_external_failure();
                        }
                    } else {
                        job.series.record_parity_dropped();
                    }
                    p2.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .ok()?;
        Some(Shadow { cfg, tx, counter: AtomicU64::new(0), pending })
    }

    /// True when this call is sampled (evenly spaced: exact rate over any long run).
    pub(crate) fn sample(&self) -> bool {
        let rate = self.cfg.sample_rate.clamp(0.0, 1.0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }

    /// Queues a comparison, dropping it (and counting the drop) when the queue is full.
    pub(crate) fn submit(&self, job: ShadowJob) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                j.series.record_parity_dropped();
            }
        }
    }

    /// Waits until queued comparisons are done, up to `timeout`.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_api::Tensor;

    fn nt(v: Vec<f32>) -> NamedTensors {
        let n = v.len();
        NamedTensors::new().with("y", Tensor::from_f32([1, n], v).unwrap())
    }

    #[test]
    fn identical_outputs_have_no_drift() {
        let d = drift(&nt(vec![1.0, 2.0, 3.0]), &nt(vec![1.0, 2.0, 3.0]), 2);
        assert_eq!(d.max_abs, 0.0);
        assert!((d.cosine - 1.0).abs() < 1e-12);
        assert_eq!(d.topk_agreement, 1.0);
    }

    #[test]
    fn drift_measures_abs_rel_cosine_topk() {
        let d = drift(&nt(vec![3.0, 2.0, 1.0]), &nt(vec![1.0, 2.0, 3.0]), 1);
        assert_eq!(d.max_abs, 2.0);
        assert_eq!(d.max_rel, 2.0);
        assert!(d.cosine < 0.8);
        assert_eq!(d.topk_agreement, 0.0);
    }

    #[test]
    fn tolerance_is_abs_or_relative_to_peak() {
        use inference_api::tolerance::FP16;
        // 1.4e-2 off on a peak of 10: over FP16's 1e-2 absolute, within its 2e-2 of peak.
        let d = drift_within(&nt(vec![10.014, 1.0]), &nt(vec![10.0, 1.0]), 1, &FP16);
        assert!(d.max_abs > 1e-2 && !d.exceeded, "{d:?}");
        let d = drift_within(&nt(vec![10.5, 1.0]), &nt(vec![10.0, 1.0]), 1, &FP16);
        assert!(d.exceeded, "{d:?}");
    }

    #[test]
    fn shape_mismatch_is_max_drift() {
        let d = drift(&nt(vec![1.0, 2.0]), &nt(vec![1.0, 2.0, 3.0]), 1);
        assert!(d.exceeded);
    }
}
