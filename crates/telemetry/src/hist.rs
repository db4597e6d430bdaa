//! Latency histograms (HdrHistogram, bounded relative error) and their quantile summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits kept by every histogram: values are exact to 0.1 %.
const SIGFIG: u8 = 3;

/// Upper bounds in seconds of the fixed Prometheus latency buckets (`le`); a `+Inf` bucket
/// follows. The same in every process, so fleets can sum buckets and take quantiles of the sum.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Number of fixed buckets including `+Inf`.
pub const BUCKETS: usize = LATENCY_BUCKETS_SECONDS.len() + 1;

/// Upper bounds of [`LATENCY_BUCKETS_SECONDS`] in nanoseconds.
const BUCKET_NS: [u64; BUCKETS - 1] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One latency distribution in nanoseconds: an HdrHistogram for quantiles, fixed-bucket
/// counts for Prometheus, and the exact sum for `_sum`. Its memory depends on the largest value
/// recorded, not on how many were: a process can record latencies for ever (e.g. `infer soak`).
#[derive(Debug, Clone)]
pub struct LatencyHist {
    hist: Option<Histogram<u64>>,
    buckets: [u64; BUCKETS],
    sum_ns: u128,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist::new()
    }
}

impl LatencyHist {
    /// An empty distribution.
    pub fn new() -> LatencyHist {
        // Auto-resizing: memory grows with the largest value seen, not with the count.
        LatencyHist { hist: Histogram::new(SIGFIG).ok(), buckets: [0; BUCKETS], sum_ns: 0 }
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NS.iter().position(|&b| ns <= b).unwrap_or(BUCKETS - 1);
        self.buckets[i] += 1;
        if let Some(h) = self.hist.as_mut() {
            // `record` grows the auto-resizing histogram; if growing fails, clamp instead.
            if h.record(ns).is_err() {
                h.saturating_record(ns);
            }
        }
        self.sum_ns = self.sum_ns.saturating_add(u128::from(ns));
    }

    /// Adds every value of `other` to this distribution.
    pub fn merge(&mut self, other: &LatencyHist) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        if let (Some(h), Some(o)) = (self.hist.as_mut(), other.hist.as_ref())
            && h.add(o).is_err()
        {
            for v in o.iter_recorded() {
                h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Quantiles of the values recorded so far.
    pub fn quantiles(&self) -> Quantiles {
        let buckets = self.buckets;
        let Some(h) = self.hist.as_ref().filter(|h| !h.is_empty()) else {
            return Quantiles { buckets, ..Quantiles::default() };
        };
        let us = |ns: u64| ns as f64 / 1_000.0;
        Quantiles {
            buckets,
            count: h.len(),
            sum_us: self.sum_ns as f64 / 1_000.0,
            min_us: us(h.min()),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Quantiles of one latency distribution, in microseconds.
///
/// Quantiles come from an HdrHistogram with 3 significant digits: each is within 0.1 % of the
/// true order statistic. Empty distributions report zeros and `count = 0`. `buckets` are
/// exact counts per fixed bucket ([`LATENCY_BUCKETS_SECONDS`], then `+Inf`), not cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quantiles {
    /// Number of recorded values.
    pub count: u64,
    /// Exact sum of recorded values.
    pub sum_us: f64,
    /// Smallest value.
    pub min_us: f64,
    /// Mean value.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest value.
    pub max_us: f64,
    /// Values per fixed bucket: `buckets[i]` counts values in
    /// `(LATENCY_BUCKETS_SECONDS[i-1], LATENCY_BUCKETS_SECONDS[i]]`; the last counts the rest.
    #[serde(default)]
    pub buckets: [u64; BUCKETS],
}

impl Quantiles {
    /// `(quantile, value in µs)` pairs for exposition: 0.5, 0.9, 0.95, 0.99, 0.999.
    pub fn pairs(&self) -> [(f64, f64); 5] {
        [
            (0.5, self.p50_us),
            (0.9, self.p90_us),
            (0.95, self.p95_us),
            (0.99, self.p99_us),
            (0.999, self.p999_us),
        ]
    }
}

/// The phases a call's latency is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Wall time of the whole attempt as the router saw it.
    Total,
    /// Waiting in the model's queue before a worker picked the call up.
    Queue,
    /// Converting caller tensors into the engine's form.
    MarshalIn,
    /// The model's computation.
    Compute,
    /// Converting results back.
    MarshalOut,
}

impl Phase {
    /// Every phase, in export order.
    pub const ALL: [Phase; 5] =
        [Phase::Total, Phase::Queue, Phase::MarshalIn, Phase::Compute, Phase::MarshalOut];

    /// Label used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Total => "total",
            Phase::Queue => "queue",
            Phase::MarshalIn => "marshal_in",
            Phase::Compute => "compute",
            Phase::MarshalOut => "marshal_out",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_have_bounded_relative_error() {
        let mut h = LatencyHist::new();
        for i in 1..=10_000u64 {
            h.record(Duration::from_micros(i));
        }
        let q = h.quantiles();
        assert_eq!(q.count, 10_000);
        for (want, got) in [(5_000.0, q.p50_us), (9_900.0, q.p99_us), (9_990.0, q.p999_us)] {
            assert!((got - want).abs() / want < 0.002, "want {want} got {got}");
        }
        assert!((q.sum_us - 50_005_000.0).abs() < 1.0);
    }

    #[test]
    fn fixed_buckets_count_each_value_once() {
        let mut h = LatencyHist::new();
        // On a bound (inclusive), just over it, and past the last bound.
        for d in [
            Duration::from_micros(500),
            Duration::from_micros(501),
            Duration::from_millis(3),
            Duration::from_secs(11),
        ] {
            h.record(d);
        }
        let b = h.quantiles().buckets;
        assert_eq!(b.iter().sum::<u64>(), 4);
        assert_eq!((b[0], b[1], b[3], b[BUCKETS - 1]), (1, 1, 1, 1));
        for (ns, s) in BUCKET_NS.iter().zip(LATENCY_BUCKETS_SECONDS) {
            assert_eq!(*ns, (s * 1e9).round() as u64);
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (LatencyHist::new(), LatencyHist::new(), LatencyHist::new());
        for i in 1..=1_000u64 {
            let d = Duration::from_micros(i * 37 % 5_000 + 1);
            if i % 3 == 0 {
                a.record(d)
            } else {
                b.record(d)
            }
            all.record(d);
        }
        a.merge(&b);
        assert_eq!(a.quantiles(), all.quantiles());
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(LatencyHist::new().quantiles(), Quantiles::default());
    }
}
