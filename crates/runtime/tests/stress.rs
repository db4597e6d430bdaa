//! Concurrency stress: 8 threads x 2 000 calls over good and faulty engines. No deadlock, every
//! call counted exactly once, memory bounded.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inference_api::Error;
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{BreakerConfig, RunOptions, Runtime};

#[test]
fn eight_threads_every_call_counted_once() {
    const THREADS: usize = 8;
    const CALLS: usize = 2_000;
    let flaky = FaultyEngine::new("flaky");
    flaky.set_random(0.2, Fault::Error(Error::Runtime("flaky".into())), 7);
    let shapey = FaultyEngine::new("shapey");
    shapey.set_random(0.3, Fault::WrongShape, 11);
    let good = FaultyEngine::new("good");
    good.set_random(0.01, Fault::Error(Error::Runtime("rare".into())), 3);
    let rt = Runtime::builder()
        .engine(Arc::new(flaky.clone()))
        .engine(Arc::new(shapey.clone()))
        .engine(Arc::new(good.clone()))
        .workers_per_engine(2)
        .queue_capacity(6)
        .breaker(
            BreakerConfig::default()
                .with_window(10)
                .with_min_calls(5)
                .with_cooldown(Duration::from_millis(5))
                .with_max_cooldown(Duration::from_millis(20)),
        )
        .build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    let t = rt.telemetry().clone();
    for _ in 0..200 {
        let _ = model.run(input([1.0; 4]));
    }
    let rss0 = t.sample_rss();
    let (ok, err) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for th in 0..THREADS {
            let (model, ok, err) = (&model, &ok, &err);
            s.spawn(move || {
                for i in 0..CALLS {
                    let opts = RunOptions::deadline(Duration::from_secs(5));
                    match model.run_with(input([th as f32, i as f32, 0.0, 1.0]), &opts) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => err.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let rss1 = t.sample_rss();
    let n = (THREADS * CALLS) as u64 + 200;
    let snap = t.snapshot();
    let m = &snap.models[0];
    let (ok, err) = (ok.load(Ordering::Relaxed), err.load(Ordering::Relaxed));
    assert_eq!(ok + err + 200, n);
    assert_eq!(m.calls, n, "every call counted once");
    assert_eq!(m.successes + m.failures.values().sum::<u64>(), n);
    assert_eq!(m.latency_us["total"].count, n);
    let attempts: u64 = snap.series.iter().map(|s| s.requests).sum();
    for s in &snap.series {
        assert_eq!(s.requests, s.successes + s.failures.values().sum::<u64>(), "{}", s.engine);
    }
    // Every engine attempt reached the engine exactly once.
    assert_eq!(attempts, flaky.calls() + shapey.calls() + good.calls());
    // Every success was served by exactly one engine.
    let served: u64 = snap.series.iter().map(|s| s.successes).sum();
    assert_eq!(served, m.successes);
    // Fallback counts match attempts that moved on.
    let moved: u64 = m.fallbacks.iter().map(|f| f.count).sum();
    assert!(moved > 0);
    eprintln!(
        "{n} calls in {elapsed:?}: {} ok, {:?} errors, {moved} fallbacks, rss {:?} -> {:?}",
        m.successes, m.failures, rss0, rss1
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        assert!(b < a + 64 * 1024 * 1024, "rss grew from {a} to {b}");
    }
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
