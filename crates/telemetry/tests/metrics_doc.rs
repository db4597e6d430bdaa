//! docs/metrics.md and the Prometheus exporter agree: every family written is documented with
//! its type, every documented family is written; histograms are well formed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::time::Duration;

use telemetry::{BreakerGauge, DriftSample, LATENCY_BUCKETS_SECONDS, Latencies, Telemetry};

/// Records at least one value of every kind, including a failed load.
fn everything() -> Telemetry {
    let t = Telemetry::new();
    let m = t.model("m");
    m.set_queue_capacity(8);
    m.queue_enter();
    m.record_ok(Duration::from_millis(3), Duration::from_micros(10));
    m.record_err("timeout", Duration::from_millis(30));
    m.record_fallback("coreml", "candle-cpu", "runtime");
    m.record_hedge();
    m.record_hedge_win();
    m.record_hedge_cancellation();
    let ok = t.series("m", "candle-cpu", "all");
    ok.record_load(Ok(Duration::from_millis(20)));
    ok.record_success(&Latencies { total: Duration::from_millis(2), ..Default::default() });
    ok.record_failure("timeout", Duration::from_millis(30), Duration::ZERO);
    ok.record_slow();
    ok.record_circuit_open();
    ok.record_breaker_bypass();
    ok.record_served_as_fallback();
    ok.record_quarantine();
    ok.record_abandoned_worker(1);
    ok.record_breaker_transition(BreakerGauge::Closed, BreakerGauge::Open);
    ok.record_parity(&DriftSample { max_abs: 1e-4, cosine: 1.0, ..Default::default() });
    let failed = t.series("m", "coreml", "all");
    failed.record_load(Err("no Core ML bridge library found"));
    t.record_rss(1 << 20);
    t
}

fn documented() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | `name` | type | labels | meaning |
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("infer_").then(|| (name.to_string(), cells[2].to_string()))
        })
        .collect()
}

#[test]
fn docs_and_exporter_list_the_same_families() {
    let text = everything().prometheus_text();
    let exported: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (n, k) = l.split_once(' ').unwrap();
            (n.to_string(), k.to_string())
        })
        .collect();
    let docs = documented();
    let missing: Vec<_> = exported.difference(&docs).collect();
    let stale: Vec<_> = docs.difference(&exported).collect();
    assert!(missing.is_empty(), "exported but not in docs/metrics.md: {missing:?}");
    assert!(stale.is_empty(), "in docs/metrics.md but not exported: {stale:?}");
    // Every family has samples when everything was recorded.
    for (name, _) in &exported {
        assert!(
            text.lines().any(|l| !l.starts_with('#') && l.starts_with(name.as_str())),
            "{name} has no sample"
        );
    }
}

#[test]
fn load_failures_show_as_unavailable_without_a_breaker() {
    let text = everything().prometheus_text();
    let coreml = "model=\"m\",engine=\"coreml\",compute_units=\"all\"";
    assert!(text.contains(&format!("infer_engine_available{{{coreml}}} 0")), "{text}");
    assert!(text.contains(&format!("infer_load_failures_total{{{coreml}}} 1")));
    assert!(!text.contains(&format!("infer_breaker_state{{{coreml}")), "{text}");
    let cpu = "model=\"m\",engine=\"candle-cpu\",compute_units=\"all\"";
    assert!(text.contains(&format!("infer_engine_available{{{cpu}}} 1")));
    assert!(text.contains("infer_queue_depth{model=\"m\"} 1"));
    assert!(text.contains("infer_queue_capacity{model=\"m\"} 8"));
    let summary = everything().summary_text();
    assert!(summary.contains("coreml [all]: not available, load failed 1x"), "{summary}");
}

#[test]
fn histograms_are_cumulative_and_parse() {
    let text = everything().prometheus_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let total = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "infer_model_latency_seconds" && s.labels.get("phase") == Some("total")
        })
        .unwrap();
    let prometheus_parse::Value::Histogram(buckets) = &total.value else {
        panic!("not a histogram: {:?}", total.value)
    };
    assert_eq!(buckets.len(), LATENCY_BUCKETS_SECONDS.len() + 1);
    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "not cumulative: {counts:?}");
    // 3 ms and 30 ms: none at 2.5 ms, one by 5 ms, both by 50 ms and +Inf.
    let at = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le || (b.less_than - le).abs() < 1e-12)
            .unwrap()
            .count
    };
    assert_eq!((at(0.0025), at(0.005), at(0.05), at(f64::INFINITY)), (0.0, 1.0, 2.0, 2.0));
}
