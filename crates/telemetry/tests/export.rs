//! Exports: JSON snapshot and Prometheus text pinned by insta, and checked by a real parser.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use telemetry::{BreakerGauge, DriftSample, Latencies, ProcessStats, Snapshot, Telemetry};

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

/// A small deterministic run: a primary that fails and trips, a fallback that serves.
fn recorded() -> Telemetry {
    let t = Telemetry::new();
    let m = t.model("tiny");
    let p = t.series("tiny", "coreml", "all");
    let c = t.series("tiny", "candle-cpu", "cpu_only");
    p.record_load(Ok(Duration::from_millis(120)));
    c.record_load(Ok(Duration::from_millis(40)));
    for i in 0..10u64 {
        let lat = Latencies {
            total: us(1_000 + i * 10),
            queue: us(5),
            marshal_in: us(20),
            compute: us(900 + i * 10),
            marshal_out: us(15),
        };
        p.record_success(&lat);
        m.record_ok(us(1_010 + i * 10), us(5));
    }
    for _ in 0..3 {
        p.record_failure("runtime", us(300), us(4));
        c.record_success(&Latencies {
            total: us(4_000),
            queue: us(3),
            marshal_in: us(50),
            compute: us(3_900),
            marshal_out: us(20),
        });
        c.record_served_as_fallback();
        m.record_fallback("coreml", "candle-cpu", "runtime");
        m.record_ok(us(4_400), us(4));
    }
    p.record_failure("timeout", us(50_000), us(4));
    p.record_quarantine();
    m.record_err("timeout", us(50_010));
    p.record_breaker_transition(BreakerGauge::Closed, BreakerGauge::Open);
    p.record_circuit_open();
    m.record_fallback("coreml", "candle-cpu", "circuit_open");
    c.record_breaker_bypass();
    p.record_breaker_transition(BreakerGauge::Open, BreakerGauge::HalfOpen);
    p.record_breaker_transition(BreakerGauge::HalfOpen, BreakerGauge::Closed);
    c.record_parity(&DriftSample {
        max_abs: 2.5e-4,
        max_rel: 1e-3,
        cosine: 0.99999,
        topk_agreement: 1.0,
        exceeded: false,
    });
    t.record_rss(50 * 1024 * 1024);
    t
}

fn fixed(t: &Telemetry) -> Snapshot {
    let mut s = t.snapshot();
    s.process = ProcessStats {
        rss_bytes: Some(52_428_800),
        rss_first_bytes: Some(52_428_800),
        rss_peak_bytes: Some(52_428_800),
        rss_samples: 1,
    };
    s
}

#[test]
fn json_snapshot_shape() {
    let s = fixed(&recorded());
    insta::assert_snapshot!("snapshot_json", telemetry::snapshot_json(&s));
    // Round-trips through serde.
    let back: Snapshot = serde_json::from_str(&telemetry::snapshot_json(&s)).unwrap();
    assert_eq!(back, s);
}

#[test]
fn prometheus_text_is_pinned_and_parses() {
    let s = fixed(&recorded());
    let text = telemetry::snapshot_prometheus(&s);
    insta::assert_snapshot!("prometheus", text);

    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| x.value.clone())
    };
    match find("infer_model_calls_total", &[("model", "tiny")]) {
        Some(prometheus_parse::Value::Counter(v)) => assert_eq!(v, 14.0),
        other => panic!("calls: {other:?}"),
    }
    match find("infer_failures_total", &[("engine", "coreml"), ("kind", "runtime")]) {
        Some(prometheus_parse::Value::Counter(v)) => assert_eq!(v, 3.0),
        other => panic!("failures: {other:?}"),
    }
    match find("infer_breaker_state", &[("engine", "coreml"), ("state", "closed")]) {
        Some(prometheus_parse::Value::Gauge(v)) => assert_eq!(v, 1.0),
        other => panic!("breaker: {other:?}"),
    }
    match find("infer_latency_seconds", &[("engine", "coreml"), ("phase", "compute")]) {
        Some(prometheus_parse::Value::Histogram(bs)) => {
            // Ten compute times of 0.90..0.99 ms: none by 0.5 ms, all by 1 ms.
            assert_eq!(bs.len(), telemetry::LATENCY_BUCKETS_SECONDS.len() + 1);
            let at = |le: f64| bs.iter().find(|b| b.less_than == le).unwrap().count;
            assert_eq!((at(0.0005), at(0.001), at(f64::INFINITY)), (0.0, 10.0, 10.0));
        }
        other => panic!("latency: {other:?}"),
    }
    // Every sample carries the series labels; every family has a HELP line.
    assert!(scrape.docs.contains_key("infer_requests_total"));
    assert!(scrape.docs.len() >= 20, "{}", scrape.docs.len());
}

#[test]
fn summary_text_reads_well() {
    let s = fixed(&recorded());
    insta::assert_snapshot!("summary", telemetry::snapshot_summary(&s));
}

#[test]
fn counters_are_exact_under_threads() {
    let t = Telemetry::new();
    let s = t.series("m", "e", "all");
    let m = t.model("m");
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                for i in 0..5_000u64 {
                    if i % 10 == 0 {
                        s.record_failure("runtime", us(1), us(0));
                        m.record_err("runtime", us(1));
                    } else {
                        s.record_success(&Latencies { total: us(i), ..Default::default() });
                        m.record_ok(us(i), us(0));
                    }
                }
            });
        }
    });
    let snap = t.snapshot();
    assert_eq!(snap.series[0].requests, 40_000);
    assert_eq!(snap.series[0].successes, 36_000);
    assert_eq!(snap.series[0].failures["runtime"], 4_000);
    assert_eq!(snap.models[0].calls, 40_000);
    assert_eq!(snap.series[0].latency_us["total"].count, 40_000);
    assert_eq!(s.failures("unknown_kind"), 0);
    s.record_failure("custom", us(1), us(0));
    assert_eq!(s.failures("custom"), 1);
}
