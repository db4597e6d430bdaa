//! A steady stream of `LoadedModel::run` calls makes no per-call output-buffer allocation
//! (issue 12): the runtime's output pool hands the engine's `run_into` the buffers of an
//! earlier call once the caller has dropped them. Measured with a counting global allocator
//! (`stats_alloc`), alone in this test binary so no other test allocates meanwhile.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::sync::Arc;

use inference_api::{
    DType, Engine, IoSchema, ModelArtifact, ModelSpec, NamedTensors, PrepareOptions, RunContext,
    Tensor, TensorSpec,
};
use runtime::Runtime;
use runtime::testing::FaultyEngine;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Output elements: 1 MiB of f32, far above anything else a call allocates.
const OUT: usize = 1 << 18;
const OUT_BYTES: usize = OUT * 4;
const CALLS: usize = 200;

fn spec() -> ModelSpec {
    let schema = IoSchema {
        inputs: vec![TensorSpec::fixed("input", DType::F32, &[1, 4])],
        outputs: vec![TensorSpec::fixed("logits", DType::F32, &[1, OUT])],
        classifier: None,
    };
    let mut artifact = ModelArtifact::from_path("/nonexistent/big.safetensors").unwrap();
    artifact.io_schema = Some(schema);
    ModelSpec::from_artifact(artifact)
}

#[test]
fn steady_runs_reuse_output_buffers() {
    let engine = FaultyEngine::new("cpu");
    let rt = Runtime::builder().engine(Arc::new(engine.clone())).build();
    let model = rt.load_spec(spec()).unwrap();
    let inputs = Arc::new(
        NamedTensors::new().with("input", Tensor::from_f32([1, 4], vec![1.0; 4]).unwrap()),
    );
    let run = || {
        let (out, _) = model.run(Arc::clone(&inputs)).unwrap();
        assert_eq!(out.get("logits").unwrap().len(), OUT);
    };
    for _ in 0..20 {
        run(); // warm-up: the pool fills, telemetry histograms size themselves
    }
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        run();
    }
    let through_runtime = region.change();
    let per_call = through_runtime.bytes_allocated / CALLS;
    eprintln!(
        "through the runtime: {per_call} bytes and {} allocations per call (output {OUT_BYTES} bytes)",
        through_runtime.allocations / CALLS
    );
    assert!(per_call < OUT_BYTES / 8, "{per_call} bytes per call: outputs are allocated per call");

    // The same engine called directly allocates its outputs on every call: the measurement
    // would see a missing pool.
    let direct = engine.prepare(&spec().artifact, &PrepareOptions::new()).unwrap();
    let region = Region::new(GLOBAL);
    for _ in 0..20 {
        drop(direct.run(&inputs, &RunContext::new()).unwrap());
    }
    let per_direct_call = region.change().bytes_allocated / 20;
    assert!(per_direct_call >= OUT_BYTES, "{per_direct_call}");
}
