//! The runtime falls back from Core ML to the CPU engine when the (fake) bridge fails: the run
//! report names the CPU engine, says it fell back with the Core ML error as the reason, and
//! telemetry counts the fallbacks and trips the Core ML breaker.
//!
//! The CPU engine is a `runtime::testing::FaultyEngine` named `candle-cpu`: the fake bridge's
//! model (input `input` f32 [1, 4], output `output` f32 [1, 4]) is a `.mlmodelc` folder, which
//! the real Candle engine cannot read, so a stand-in with the same schema serves the fallback.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use common::*;
use inference_api::{ArtifactFormat, DType, DeviceClass, IoSchema, TensorSpec};
use model_manifest::ModelBundle;
use runtime::testing::{BundleSpec, FaultyEngine, bundle, input};
use runtime::{BreakerConfig, BreakerState, Runtime};

/// A bundle whose artifact is the fake's compiled model named after `behaviour`.
fn fake_bundle(dir: &std::path::Path, behaviour: &str) -> ModelBundle {
    let mut b = bundle(&BundleSpec {
        name: "fake-classifier".into(),
        preferred: vec!["coreml".into(), "candle-cpu".into()],
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
    b
}

fn runtime(dir: &std::path::Path) -> Runtime {
    let coreml = engine(&dir.join("cache"));
    let cpu = FaultyEngine::new("candle-cpu").with_device(DeviceClass::Cpu);
    Runtime::builder()
        .engine(Arc::new(coreml))
        .engine(Arc::new(cpu))
        .breaker(BreakerConfig::default().with_window(4).with_min_calls(4).with_failure_rate(0.5))
        .build()
}

#[test]
fn predict_error_falls_back_to_cpu_with_the_core_ml_error_as_reason() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = runtime(dir.path());
        let model = rt.load_bundle(&fake_bundle(dir.path(), "predict_error")).unwrap();
        assert_eq!(model.engines(), ["coreml", "candle-cpu"], "{}", model.load_report());

        let calls = 6;
        for i in 0..calls {
            let (out, rep) = model.run(input([1.0, 2.0, 3.0, i as f32])).unwrap();
            assert_eq!(rep.engine, "candle-cpu");
            assert!(rep.fell_back, "call {i}: {rep:?}");
            let reason = rep.fallback_reason.clone().unwrap_or_default();
            if i < 4 {
                // The breaker is closed: Core ML was tried and its error is the reason.
                assert!(reason.contains("scripted failure"), "call {i}: {reason}");
            }
            assert!(reason.contains("coreml"), "call {i}: the reason names the engine: {reason}");
            assert!(out.get("output").is_some());
        }
        // Four failures in a window of four open the breaker; later calls skip Core ML.
        assert!(matches!(model.breaker_state("coreml"), Some(BreakerState::Open { .. })));

        let snap = rt.telemetry().snapshot();
        let m = snap.models.iter().find(|m| m.model == "fake-classifier").unwrap();
        assert_eq!(m.calls, calls);
        assert_eq!(m.successes, calls);
        let fell: u64 = m
            .fallbacks
            .iter()
            .filter(|f| f.from == "coreml" && f.to == "candle-cpu")
            .map(|f| f.count)
            .sum();
        assert_eq!(fell, calls, "{:?}", m.fallbacks);
        let series = |engine: &str| {
            snap.series.iter().find(|s| s.model == "fake-classifier" && s.engine == engine).unwrap()
        };
        assert_eq!(series("candle-cpu").served_as_fallback, calls);
        let coreml = series("coreml");
        assert_eq!(coreml.successes, 0);
        assert_eq!(coreml.failures.values().sum::<u64>(), 4, "{:?}", coreml.failures);
        assert_eq!(coreml.breaker.trips, 1);
        let prom = rt.telemetry().prometheus_text();
        assert!(prom.contains("fallback"), "{prom}");
    }
    // Everything the fake handed out (models, error strings) was freed exactly once. The
    // runtime's worker threads own the prepared model and exit after the runtime is dropped,
    // so wait (bounded) for them to let go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stats().models_freed - before.models_freed
        < stats().models_allocated - before.models_allocated
        && std::time::Instant::now() < deadline
    {
        std::thread::yield_now();
    }
    assert_balanced(&before);
}

#[test]
fn a_healthy_fake_bridge_serves_without_fallback() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let model = rt.load_bundle(&fake_bundle(dir.path(), "ok")).unwrap();
    let (out, rep) = model.run(input([1.0, 2.0, 3.0, 4.0])).unwrap();
    assert_eq!(rep.engine, "coreml");
    assert!(!rep.fell_back);
    assert_eq!(out.get("output").unwrap().to_f32_vec(), [3.0, 5.0, 7.0, 9.0]);
}
