//! Runtime overhead per call (router + breaker + telemetry + worker hand-off) against calling
//! the engine directly, with a no-op engine: `cargo bench -p runtime --bench overhead`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use inference_api::{Engine, NamedTensors, PrepareOptions, RunContext};
use runtime::Runtime;
use runtime::testing::{BundleSpec, FaultyEngine, bundle, input};

const BATCH: usize = 2_000;
const ROUNDS: usize = 40;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn rounds(mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..BATCH {
        f();
    }
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_nanos() as f64 / BATCH as f64 / 1e3
        })
        .collect()
}

fn main() {
    let b = bundle(&BundleSpec::default()).expect("bundle");
    let engine = FaultyEngine::new("noop");
    let direct = engine.prepare(&b.artifact, &PrepareOptions::default()).expect("prepare");
    let inputs: Arc<NamedTensors> = Arc::new(input([1.0, 2.0, 3.0, 4.0]));

    let rt = Runtime::builder().engine(Arc::new(engine.clone())).build();
    let model = rt.load_bundle(&b).expect("load");

    let d = median(rounds(|| {
        black_box(direct.run_timed(&inputs, &RunContext::new()).ok());
    }));
    let r = median(rounds(|| {
        black_box(model.run(Arc::clone(&inputs)).ok());
    }));
    println!(
        "no-op engine, direct PreparedModel::run_timed: median {:.2} µs/call (p10 {:.2}, p90 {:.2})",
        d.0, d.1, d.2
    );
    println!(
        "no-op engine, through Runtime::run:           median {:.2} µs/call (p10 {:.2}, p90 {:.2})",
        r.0, r.1, r.2
    );
    println!("runtime overhead: {:.2} µs/call (median difference)", r.0 - d.0);
    let snap = rt.telemetry().snapshot();
    println!("calls counted: {}", snap.models[0].calls);
}
