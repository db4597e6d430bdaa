//! Cost of recording one call: `cargo bench -p telemetry --bench record`.
//!
//! Measures a full per-call record as the runtime does it (attempt series success with five
//! phase latencies + model series ok), single-threaded and with 4 threads on one series.

use std::hint::black_box;
use std::time::{Duration, Instant};

use telemetry::{Latencies, Telemetry};

const BATCH: u64 = 10_000;
const ROUNDS: usize = 50;

fn lat(i: u64) -> Latencies {
    let d = Duration::from_nanos(1_000 + (i * 7919) % 500_000);
    Latencies { total: d, queue: d / 10, marshal_in: d / 20, compute: d / 2, marshal_out: d / 20 }
}

fn per_call_ns(threads: usize) -> Vec<f64> {
    let t = Telemetry::new();
    let s = t.series("bench", "noop", "all");
    let m = t.model("bench");
    let mut rounds = Vec::with_capacity(ROUNDS);
    // Warm-up (also grows the histograms to their working size).
    for i in 0..BATCH {
        s.record_success(&lat(i));
        m.record_ok(lat(i).total, lat(i).queue);
    }
    for _ in 0..ROUNDS {
        let start = Instant::now();
        std::thread::scope(|sc| {
            for _ in 0..threads {
                sc.spawn(|| {
                    for i in 0..BATCH {
                        let l = black_box(lat(i));
                        s.record_success(&l);
                        m.record_ok(l.total, l.queue);
                    }
                });
            }
        });
        rounds.push(start.elapsed().as_nanos() as f64 / (BATCH as f64 * threads as f64));
    }
    rounds.sort_by(f64::total_cmp);
    rounds
}

fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    for threads in [1, 4] {
        let r = per_call_ns(threads);
        println!(
            "record one call, {threads} thread(s): median {:.0} ns/call, p10 {:.0}, p90 {:.0} (over {} rounds of {} calls/thread)",
            pct(&r, 0.5),
            pct(&r, 0.1),
            pct(&r, 0.9),
            ROUNDS,
            BATCH
        );
    }
    // Snapshot / export cost, for scrape intervals.
    let t = Telemetry::new();
    for e in ["a", "b"] {
        let s = t.series("bench", e, "all");
        for i in 0..100_000 {
            s.record_success(&lat(i));
        }
    }
    let start = Instant::now();
    let n = 100;
    for _ in 0..n {
        black_box(t.prometheus_text());
    }
    println!(
        "prometheus_text with 2 series: {:.0} µs",
        start.elapsed().as_micros() as f64 / n as f64
    );
}
