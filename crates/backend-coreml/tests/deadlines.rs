//! Deadlines and cancellation reach the bridge, against the test-support fake bridge: the
//! engine calls `cmb_model_cancel` on a prediction whose deadline passed or whose token was
//! cancelled ("cancellable" models stop, as Core ML's async prediction does on macOS 14+); the
//! runtime owns timeouts, quarantine and rebuilds (a rebuild is `prepare` again, one load) and
//! abandons a prediction that cannot be stopped ("hang" models, as on macOS 13). Prepare loads
//! a model once; more instances are loaded only when calls overlap, one prediction in flight
//! per instance.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_coreml::{CoreMlEngine, CoreMlModel};
use common::*;
use inference_api::{
    ArtifactFormat, CancelToken, DType, Error, IoSchema, ModelArtifact, NamedTensors,
    PrepareOptions, PreparedModel, RunContext, Tensor, TensorSpec,
};
use model_manifest::ModelBundle;
use runtime::testing::{BundleSpec, bundle};
use runtime::{RunOptions, Runtime};

/// Scheduling slack allowed beyond a deadline on a loaded 2-core machine (the runtime's own
/// tests allow the same).
const BOUND: Duration = Duration::from_millis(100);

fn input() -> NamedTensors {
    NamedTensors::new().with("input", Tensor::from_f32([1, 4], vec![1.0; 4]).unwrap())
}

fn prepare(engine: &CoreMlEngine, path: &std::path::Path) -> Arc<CoreMlModel> {
    let artifact = ModelArtifact::from_path(path).unwrap();
    engine.prepare_model(&artifact, &PrepareOptions::default()).unwrap()
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_prediction_past_its_deadline_is_cancelled_and_its_instance_serves_again() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "hang_cancellable"));
        let deadline = Duration::from_millis(150);
        let t = Instant::now();
        let err = model.run(&input(), &RunContext::new().with_timeout(deadline)).unwrap_err();
        let waited = t.elapsed();
        // The engine's own answer: the bridge stopped the prediction (no runtime involved).
        assert!(matches!(err, Error::Timeout { deadline_ms: 150, .. }), "{err:?}");
        assert!(err.to_string().contains("coreml"), "{err}");
        assert!(waited >= deadline, "{waited:?}");
        let now = stats();
        assert_eq!(now.cancelled - before.cancelled, 1, "the bridge stopped it: {now:?}");
        assert_eq!(now.hung_now, 0);
        let s = model.stats();
        assert_eq!((s.cancel_requests, s.cancelled, s.loads, s.instances), (1, 1, 1, 1), "{s:?}");
        assert!(waited < deadline + BOUND, "answered {waited:?} after a {deadline:?} deadline");

        // The instance was not abandoned: the same handle serves the next call.
        release_hangs(true);
        let out = model.run(&input(), &RunContext::new()).unwrap();
        assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [3.0; 4]);
        assert_eq!(model.stats().loads, 1);
        assert_eq!(stats().loads - before.loads, 1, "one load, no rebuild");
    }
    assert_balanced(&before);
}

#[test]
fn a_cancelled_token_stops_the_prediction() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "hang_cancellable"));
        let token = CancelToken::new();
        let ctx = RunContext::new().with_cancel(token.clone());
        std::thread::scope(|s| {
            let call = s.spawn(|| model.run(&input(), &ctx));
            wait_until("the prediction to start", || stats().hung_now == 1);
            token.cancel();
            let err = call.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
        });
        assert_eq!(stats().cancelled - before.cancelled, 1);
        assert_eq!(model.stats().cancel_requests, 1);
        // A cancelled call does not leave a stop pending for the next prediction.
        release_hangs(true);
        assert!(
            model.run(&input(), &RunContext::new().with_timeout(Duration::from_secs(5))).is_ok()
        );
        assert_eq!(stats().cancelled - before.cancelled, 1);
    }
    assert_balanced(&before);
}

#[test]
fn a_short_deadline_is_honoured_while_a_long_one_is_in_flight() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let mut cfg = config(&dir.path().join("cache"));
        cfg.instances = 2;
        let engine = CoreMlEngine::with_config(cfg);
        let model = prepare(&engine, &compiled_model(dir.path(), "hang_cancellable"));
        let long = RunContext::new().with_timeout(Duration::from_secs(30));
        std::thread::scope(|s| {
            // The watcher now sleeps until the long deadline; the short call must wake it.
            let first = s.spawn(|| model.run(&input(), &long));
            wait_until("the long call to start", || stats().hung_now == 1);
            let deadline = Duration::from_millis(150);
            let t = Instant::now();
            let err = model.run(&input(), &RunContext::new().with_timeout(deadline)).unwrap_err();
            let waited = t.elapsed();
            assert!(matches!(err, Error::Timeout { deadline_ms: 150, .. }), "{err:?}");
            assert!(waited >= deadline && waited < deadline + BOUND, "{waited:?}");
            assert_eq!(stats().hung_now, 1, "only the short call was stopped");
            release_hangs(true);
            assert!(first.join().unwrap().is_ok());
        });
        assert_eq!(model.stats().cancel_requests, 1);
        assert_eq!(model.stats().loads, 2, "two calls overlapped: a second instance");
    }
    assert_balanced(&before);
}

#[test]
fn without_a_deadline_or_token_nothing_is_watched() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "cancellable"));
        for _ in 0..3 {
            assert!(model.run(&input(), &RunContext::new()).is_ok());
        }
        // A deadline that does not pass: watched, never cancelled.
        let ctx = RunContext::new().with_timeout(Duration::from_secs(30));
        assert!(model.run(&input(), &ctx).is_ok());
        assert_eq!(stats().cancel_calls, before.cancel_calls);
        assert_eq!(model.stats().cancel_requests, 0);
    }
    assert_balanced(&before);
}

/// A runtime serving only Core ML with the fake's `behaviour` model, `timeout_ms` deadline.
fn runtime_model(
    dir: &std::path::Path,
    behaviour: &str,
    max_abandoned: usize,
) -> (Runtime, ModelBundle) {
    let mut b = bundle(&BundleSpec {
        name: "fake".into(),
        timeout_ms: 150,
        sla_ms: 150,
        preferred: vec!["coreml".into()],
        ..Default::default()
    })
    .unwrap();
    let schema = IoSchema {
        inputs: vec![TensorSpec::fixed("input", DType::F32, &[1, 4])],
        outputs: vec![TensorSpec::fixed("output", DType::F32, &[1, 4])],
        classifier: None,
    };
    b.artifact.format = ArtifactFormat::MlModelc;
    b.artifact.path = compiled_model(dir, behaviour);
    b.artifact.io_schema = Some(schema.clone());
    b.io_schema = schema;
    let rt = Runtime::builder()
        .engine(Arc::new(engine(&dir.join("cache"))))
        .workers_per_engine(1)
        .max_abandoned_workers(max_abandoned)
        .build();
    (rt, b)
}

#[test]
fn through_the_runtime_a_timed_out_prediction_is_cancelled_and_no_worker_stays_stuck() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let (rt, b) = runtime_model(dir.path(), "hang_cancellable", 2);
        let model = rt.load_bundle(&b).unwrap();
        let t = Instant::now();
        let err = model.run(input()).unwrap_err();
        let waited = t.elapsed();
        assert!(matches!(err, Error::Timeout { deadline_ms: 150, .. }), "{err:?}");
        assert!(waited < Duration::from_millis(150) + BOUND, "{waited:?}");
        // The engine cancelled the prediction: the worker the runtime gave up on comes back
        // without the hang ever being released.
        wait_until("the abandoned worker to return", || model.abandoned_workers("coreml") == 0);
        assert_eq!(stats().cancelled - before.cancelled, 1);
        assert_eq!(stats().hung_now, 0);
        // Whichever saw the deadline first (the engine's stopped call answering, or the
        // runtime's own wait, which then retires the instance and prepares it again with one
        // load), the lane serves again, after at most one rebuild.
        wait_until("a ready instance", || model.engine_ready("coreml"));
        assert!(stats().loads - before.loads <= 2, "one load at prepare, one at a rebuild");
        release_hangs(true);
        let (out, rep) = model.run(input()).unwrap();
        assert_eq!(rep.engine, "coreml");
        assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [3.0; 4]);
    }
    assert!(wait_for_models_freed(&before));
    assert_balanced(&before);
}

#[test]
fn through_the_runtime_a_prediction_that_cannot_stop_is_abandoned_within_the_cap() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        // "hang" without "cancellable": cmb_model_cancel answers unsupported (macOS 13).
        let (rt, b) = runtime_model(dir.path(), "hang", 2);
        let model = rt.load_bundle(&b).unwrap();
        for i in 0..2 {
            wait_until("a ready instance", || model.engine_ready("coreml"));
            let t = Instant::now();
            let err = model.run(input()).unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "call {i}: {err:?}");
            assert!(t.elapsed() < Duration::from_millis(150) + BOUND, "{:?}", t.elapsed());
        }
        // Two workers stuck: the runtime's cap; no instance is rebuilt while they are.
        assert_eq!(model.abandoned_workers("coreml"), 2);
        assert!(!model.engine_ready("coreml"));
        let s = stats();
        assert_eq!(s.cancelled, before.cancelled, "nothing could be stopped");
        assert!(s.cancel_calls > before.cancel_calls, "the engine asked");
        assert_eq!(s.hung_now, 2);
        let err = model.run(input()).unwrap_err();
        assert!(err.to_string().contains("quarantined"), "{err}");

        // The hung predictions return; the stuck workers free their instances.
        release_hangs(true);
        wait_until("the stuck workers", || model.abandoned_workers("coreml") == 0);
        let rebuilt = Instant::now() + Duration::from_secs(10);
        let served = loop {
            if let Ok((out, _)) =
                model.run_with(input(), &RunOptions::deadline(Duration::from_secs(5)))
            {
                break out;
            }
            assert!(Instant::now() < rebuilt, "no rebuild after the stuck workers returned");
            std::thread::yield_now();
        };
        assert_eq!(served.get("output").unwrap().as_f32().unwrap(), [3.0; 4]);
    }
    assert!(wait_for_models_freed(&before));
    assert_balanced(&before);
}

#[test]
fn prepare_loads_once_and_instances_grow_only_when_calls_overlap() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    for instances in [1usize, 2] {
        let mut cfg = config(&dir.path().join("cache"));
        cfg.instances = instances;
        let engine = CoreMlEngine::with_config(cfg);
        let loads0 = stats().loads;
        let model = prepare(&engine, &compiled_model(dir.path(), "slow_plan"));
        assert_eq!(stats().loads - loads0, 1, "prepare loads the model once");
        // One call at a time: the first instance serves all of them; the plan loads nothing.
        for _ in 0..3 {
            assert!(model.run(&input(), &RunContext::new()).is_ok());
        }
        assert!(!model.placement().planned.is_empty());
        assert_eq!((stats().loads - loads0, model.stats().instances), (1, 1));
        reset_peak();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..3 {
                        assert!(model.run(&input(), &RunContext::new()).is_ok());
                    }
                });
            }
        });
        let now = stats();
        assert_eq!(now.overlaps, before.overlaps, "two predictions overlapped on one handle");
        assert!(now.max_in_flight <= instances as u64, "{now:?}");
        assert_eq!(model.stats().predictions, 15);
        assert!(model.stats().instances <= instances, "{:?}", model.stats());
        assert_eq!(now.loads - loads0, model.stats().loads);
        assert!(model.stats().loads <= instances as u64);
    }
    assert_balanced(&before);
}
