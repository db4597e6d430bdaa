//! Deadlines, quarantine and rebuild, and one prediction in flight per instance, against the
//! test-support fake bridge.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_coreml::{CoreMlEngine, CoreMlModel};
use common::*;
use inference_api::{
    Error, ModelArtifact, NamedTensors, PrepareOptions, PreparedModel, RunContext, Tensor,
};

fn input() -> NamedTensors {
    NamedTensors::new().with("input", Tensor::from_f32([1, 4], vec![1.0; 4]).unwrap())
}

fn prepare(engine: &CoreMlEngine, path: &std::path::Path) -> Arc<CoreMlModel> {
    let artifact = ModelArtifact::from_path(path).unwrap();
    engine.prepare_model(&artifact, &PrepareOptions::default()).unwrap()
}

#[test]
fn timeout_answers_on_time_and_the_instance_is_rebuilt() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "hang"));
        let deadline = Duration::from_millis(150);
        let t = Instant::now();
        let err = model.run_with_deadline(&input(), deadline).unwrap_err();
        let waited = t.elapsed();
        assert!(matches!(err, Error::Timeout { deadline_ms: 150, .. }), "{err:?}");
        assert!(waited >= deadline && waited < deadline + Duration::from_millis(100), "{waited:?}");
        assert!(err.to_string().contains("coreml"), "{err}");

        assert!(model.wait_for_rebuilds(Duration::from_secs(5)));
        let s = model.stats();
        assert_eq!((s.timeouts, s.rebuilds, s.abandoned_now, s.abandoned_total), (1, 1, 1, 1));
        assert_eq!(s.instances, 1);
        assert_eq!(stats().loads - before.loads, 2, "one load at prepare, one rebuild");

        // The hung prediction returns; the abandoned worker frees its instance on its own.
        release_hangs(true);
        let out = model.run(&input(), &RunContext::new()).unwrap();
        assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [3.0; 4]);
        assert!(model.wait_for_abandoned_workers(Duration::from_secs(5)));
        assert_eq!(model.stats().abandoned_now, 0);
    }
    assert_eq!(stats().hung_now, 0);
    assert_balanced(&before);
}

#[test]
fn abandoned_workers_are_bounded() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    release_hangs(false);
    {
        let engine = engine(&dir.path().join("cache")); // max_abandoned = 2
        let model = prepare(&engine, &compiled_model(dir.path(), "hang"));
        let d = Duration::from_millis(50);
        for _ in 0..3 {
            assert!(matches!(model.run_with_deadline(&input(), d), Err(Error::Timeout { .. })));
            assert!(model.wait_for_rebuilds(Duration::from_secs(5)));
        }
        let s = model.stats();
        assert_eq!((s.abandoned_now, s.rebuilds, s.instances), (3, 2, 0), "{s:?}");
        let err = model.run_with_deadline(&input(), d).unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert!(err.to_string().contains("never returned"), "{err}");
        release_hangs(true);
        assert!(model.wait_for_abandoned_workers(Duration::from_secs(5)));
        // With the stuck workers gone, the next call rebuilds and serves.
        assert!(model.run(&input(), &RunContext::new()).is_ok());
    }
    assert_balanced(&before);
}

#[test]
fn concurrent_predictions_are_serialized_per_instance() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    for instances in [1usize, 2] {
        let mut cfg = config(&dir.path().join("cache"));
        cfg.instances = instances;
        let engine = CoreMlEngine::with_config(cfg);
        let model = prepare(&engine, &compiled_model(dir.path(), "slow"));
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
        assert_eq!(model.stats().predictions, 12);
    }
    assert_balanced(&before);
}
