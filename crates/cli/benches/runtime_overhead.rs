//! Runtime overhead with the real EfficientNet-Lite0 on `candle-cpu`: the same photo through
//! `PreparedModel::run_timed` directly and through `LoadedModel::run` (admission, routing,
//! breaker, deadline hand-off to a worker thread, output validation, telemetry), both prepared
//! with the same thread count, alternating in blocks with warm-up.
//!
//! `cargo bench -p cli --bench runtime_overhead` (env: `THREADS`, default 1; `CALLS` per side,
//! default 200; `BLOCK`, default 5).
//!
//! Two estimates are printed:
//! - A/B: median wall time through the runtime minus median wall time direct. Honest but noisy:
//!   the model's own jitter (hundreds of µs) is far larger than the overhead.
//! - in-call: per call, the caller's wall time minus the engine's own reported time
//!   (`RunTimings::total`, measured inside `run_timed`) for each path; the difference of the
//!   medians is what the runtime adds around the engine, with the model's jitter cancelled.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use inference_api::{Engine, NamedTensors, PrepareOptions, RunContext};
use model_manifest::ModelBundle;
use runtime::Runtime;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Per-call samples, µs: wall time as the caller saw it, and wall minus the engine's own time.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    outside: Vec<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads = env_usize("THREADS", 1);
    let calls = env_usize("CALLS", 200);
    let block = env_usize("BLOCK", 5).max(1);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let bundle = ModelBundle::load(format!("{root}/efficientnet-lite0"))?;
    let prep = bundle.manifest.preprocessing.as_ref().ok_or("no preprocessing")?;
    let photo = model_manifest::preprocess::preprocess_file(
        format!("{root}/samples/coffee.png").as_ref(),
        prep,
    )?;
    let inputs = Arc::new(NamedTensors::new().with("input", photo));

    let opts = PrepareOptions::new().with_threads(Some(threads));
    let direct =
        backend_candle::CandleEngine::with_threads(threads).prepare(&bundle.artifact, &opts)?;
    let rt = Runtime::builder()
        .engine(Arc::new(backend_candle::CandleEngine::with_threads(threads)))
        .threads(threads)
        .build();
    let model = rt.load_bundle(&bundle)?;

    let mut d = Samples::default();
    let mut r = Samples::default();
    let direct_call = |s: &mut Samples| -> Result<(), Box<dyn std::error::Error>> {
        let t = Instant::now();
        let (out, timings) = direct.run_timed(&inputs, &RunContext::new())?;
        let wall = t.elapsed().as_secs_f64() * 1e6;
        black_box(out);
        s.wall.push(wall);
        s.outside.push(wall - timings.total().as_secs_f64() * 1e6);
        Ok(())
    };
    let runtime_call = |s: &mut Samples| -> Result<(), Box<dyn std::error::Error>> {
        let t = Instant::now();
        let (out, rep) = model.run(Arc::clone(&inputs))?;
        let wall = t.elapsed().as_secs_f64() * 1e6;
        black_box(out);
        s.wall.push(wall);
        s.outside.push(wall - rep.timings.total().as_secs_f64() * 1e6);
        Ok(())
    };

    // Warm-up: both paths, caches and thread pools hot.
    let mut sink = Samples::default();
    for _ in 0..10 {
        direct_call(&mut sink)?;
        runtime_call(&mut sink)?;
    }
    let t0 = Instant::now();
    let mut i = 0;
    while d.wall.len() < calls {
        // Alternate which path goes first in each block pair.
        let order = if i % 2 == 0 { [true, false] } else { [false, true] };
        for first_direct in order {
            for _ in 0..block {
                if first_direct {
                    direct_call(&mut d)?;
                } else {
                    runtime_call(&mut r)?;
                }
            }
        }
        i += 1;
    }
    let secs = t0.elapsed().as_secs_f64();

    let (dm, rm) = (median(&d.wall), median(&r.wall));
    let (dout, rout) = (median(&d.outside), median(&r.outside));
    println!(
        "EfficientNet-Lite0 on candle-cpu, {threads} thread(s), {} calls per path in blocks of \
         {block}, alternating ({secs:.0} s)",
        d.wall.len()
    );
    println!(
        "direct PreparedModel::run_timed: median {:>9.0} µs (p10 {:.0}, p90 {:.0})",
        dm,
        pct(&d.wall, 0.1),
        pct(&d.wall, 0.9)
    );
    println!(
        "through LoadedModel::run:        median {:>9.0} µs (p10 {:.0}, p90 {:.0})",
        rm,
        pct(&r.wall, 0.1),
        pct(&r.wall, 0.9)
    );
    println!(
        "A/B overhead (median difference): {:.1} µs/call = {:.3} % of model latency",
        rm - dm,
        (rm - dm) / dm * 100.0
    );
    println!(
        "in-call overhead (wall - engine time): runtime median {:.1} µs (p90 {:.1}), direct median \
         {:.1} µs => {:.1} µs/call = {:.3} % of model latency",
        rout,
        pct(&r.outside, 0.9),
        dout,
        rout - dout,
        (rout - dout) / dm * 100.0
    );
    let snap = rt.telemetry().snapshot();
    println!("runtime calls counted: {}", snap.models.first().map_or(0, |m| m.calls));
    Ok(())
}
