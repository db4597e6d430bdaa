//! Chaos test of the runtime (issue 14, item 5): 8 callers for a bounded time against a
//! primary engine that errors, hangs, panics, returns wrong shapes and non-finite values, with
//! the real CPU engine (EfficientNet-Lite0) as fallback. Every call must come back (0 lost),
//! none later than its deadline + 50 ms, and at least 99 % must be answered, with finite
//! outputs. Times are measured around each call; nothing sleeps.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inference_api::{Engine, NamedTensors, Tensor};
use model_manifest::ModelBundle;
use parking_lot::Mutex;
use runtime::testing::{Fault, FaultyEngine};
use runtime::{Routing, RunOptions, Runtime};

const CALLERS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(6);
const DEADLINE: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_millis(50);
const INJECTED: &str = "injected panic (runtime chaos test)";

/// Cumulative probabilities per call: error 5 %, panic 1 %, hang 1 %, wrong shape 1 %, NaN 2 %.
fn draw(state: &mut u64) -> Fault {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    match u {
        u if u < 0.05 => Fault::Error(inference_api::Error::Runtime("injected".into())),
        u if u < 0.06 => Fault::Panic(INJECTED.into()),
        u if u < 0.07 => Fault::Hang,
        u if u < 0.08 => Fault::WrongShape,
        u if u < 0.10 => Fault::WrongValues(f32::NAN),
        _ => Fault::None,
    }
}

#[derive(Default)]
struct Tally {
    started: AtomicU64,
    returned: AtomicU64,
    answered: AtomicU64,
    non_finite: AtomicU64,
    late: Mutex<Vec<Duration>>,
    errors: Mutex<Vec<String>>,
    slowest: Mutex<Duration>,
}

#[test]
fn eight_callers_against_a_faulty_primary_lose_nothing_and_meet_their_deadlines() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let injected = p.downcast_ref::<String>().is_some_and(|m| m == INJECTED)
            || p.downcast_ref::<&str>().is_some_and(|m| *m == INJECTED);
        if !injected {
            default_hook(info);
        }
    }));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/efficientnet-lite0");
    let bundle = ModelBundle::load(dir).unwrap();
    let faulty = FaultyEngine::new("faulty-primary");
    let cpu: Arc<dyn Engine> = Arc::new(backend_candle::CandleEngine::with_threads(1));
    let rt = Runtime::builder().engine(Arc::new(faulty.clone())).engine(cpu).build();
    let model = rt.load_bundle(&bundle).unwrap();
    // The manifest prefers `candle-cpu`: route to the faulty primary first, as `infer soak`.
    model.set_routing(Routing::Prefer("faulty-primary".into()));
    let spec = &model.io_schema().inputs[0];
    let shape = spec.fixed_shape().unwrap();
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let inputs = Arc::new(
        NamedTensors::new().with(spec.name.clone(), Tensor::from_f32(shape, data).unwrap()),
    );

    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let began = Instant::now();
    std::thread::scope(|s| {
        for t in 0..CALLERS {
            let (tally, stop, inputs, model, faulty) = (&tally, &stop, &inputs, &model, &faulty);
            s.spawn(move || {
                let mut state = 14 ^ ((t as u64 + 1) << 32);
                let mut own = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    faulty.push([draw(&mut state)]);
                    // Hung calls are released from time to time, as a device that recovers.
                    own += 1;
                    if t == 0 && own.is_multiple_of(40) {
                        faulty.release_hangs();
                    }
                    tally.started.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    let result =
                        model.run_with(Arc::clone(inputs), &RunOptions::deadline(DEADLINE));
                    let took = t0.elapsed();
                    tally.returned.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut slowest = tally.slowest.lock();
                        *slowest = (*slowest).max(took);
                    }
                    if took > DEADLINE + BOUND {
                        tally.late.lock().push(took);
                    }
                    match result {
                        Ok((out, _)) => {
                            tally.answered.fetch_add(1, Ordering::Relaxed);
                            if out.iter().any(|(_, t)| t.count_non_finite() > 0) {
                                tally.non_finite.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => tally.errors.lock().push(e.to_string()),
                    }
                    if began.elapsed() >= RUN_FOR {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    faulty.release_hangs();
    let started = tally.started.load(Ordering::Relaxed);
    let returned = tally.returned.load(Ordering::Relaxed);
    let answered = tally.answered.load(Ordering::Relaxed);
    let errors = tally.errors.lock().clone();
    let late = tally.late.lock().clone();
    let snap = rt.telemetry().snapshot();
    let m = &snap.models[0];
    let f = snap.series.iter().find(|s| s.engine == "faulty-primary").unwrap();
    let c = snap.series.iter().find(|s| s.engine == "candle-cpu").unwrap();
    eprintln!(
        "chaos: {started} calls in {:.1} s, {answered} answered ({:.2} %), slowest {:?}, \
         {} late, errors {:?}; primary failures {:?}, quarantines {}; cpu served {} \
         ({} as fallback), cpu failures {:?}, cpu quarantines {}; hedges {} (won {}), \
         losers cancelled {}",
        began.elapsed().as_secs_f64(),
        100.0 * answered as f64 / started.max(1) as f64,
        *tally.slowest.lock(),
        late.len(),
        errors.iter().take(5).collect::<Vec<_>>(),
        f.failures,
        f.quarantines,
        c.successes,
        c.served_as_fallback,
        c.failures,
        c.quarantines,
        m.hedges,
        m.hedge_wins,
        m.hedge_cancellations,
    );
    assert!(started >= 100, "too few calls to judge a 99 % rate: {started}");
    assert_eq!(returned, started, "lost calls");
    assert!(late.is_empty(), "calls past deadline + 50 ms: {late:?}");
    let some: Vec<_> = errors.iter().take(10).collect();
    assert!(answered * 100 >= started * 99, "{answered} of {started} answered: {some:?}");
    assert_eq!(tally.non_finite.load(Ordering::Relaxed), 0, "non-finite answers reached callers");
    assert!(f.failures.values().sum::<u64>() > 0, "the faults reached the primary");
    assert!(c.served_as_fallback > 0, "the CPU engine served as fallback");
}
