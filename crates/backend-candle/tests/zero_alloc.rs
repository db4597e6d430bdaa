//! A steady-state run of a native network, or of a Core ML package through the executor's
//! lowered plan, allocates nothing: a counting global allocator sees
//! every allocation of every thread (the caller's and the kernels' pool workers') while
//! prepared models run into outputs the caller already holds. One test in this binary, so no
//! other test allocates while it counts.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor};
use kernels::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator::new();

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// Allocations during `runs` steady-state runs of `artifact` at `threads` threads, after
/// warm-up runs that let every buffer (the model's, each thread's kernel scratch) grow.
fn allocations(artifact: &ModelArtifact, input: &[usize], threads: usize, runs: usize) -> usize {
    let options = PrepareOptions::default().with_threads(Some(threads));
    let model = CandleEngine::new().prepare(artifact, &options).expect("prepare");
    let n: usize = input.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let inputs = NamedTensors::new().with("input", Tensor::from_f32(input.to_vec(), x).unwrap());
    let ctx = RunContext::new();
    let mut outputs = NamedTensors::new();
    for _ in 0..20 {
        model.run_into(&inputs, &mut outputs, &ctx).expect("warm-up run");
    }
    let before = outputs.get("logits").expect("logits").as_f32().unwrap().to_vec();
    let ((), count) = GLOBAL.count(|| {
        for _ in 0..runs {
            model.run_into(&inputs, &mut outputs, &ctx).expect("run");
        }
    });
    let after = outputs.get("logits").expect("logits").as_f32().unwrap();
    // The counted runs did the work: the same input gives the same logits.
    assert_eq!(after, before.as_slice(), "the steady-state runs changed their answer");
    assert!(after.iter().all(|v| v.is_finite()) && after.iter().any(|&v| v != 0.0));
    count
}

#[test]
fn steady_state_runs_allocate_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut lite0 = ModelArtifact::from_path(
        root.join("models/efficientnet-lite0/efficientnet-lite0.safetensors"),
    )
    .unwrap();
    lite0.architecture = Some("efficientnet-lite0".into());
    let mut fastvit =
        ModelArtifact::from_path(fixtures().join("fastvit_t8/fastvit_t8.train_form.safetensors"))
            .unwrap();
    fastvit.architecture = Some("fastvit-t8".into());
    let mut seen = Vec::new();
    for (name, artifact, size) in
        [("efficientnet-lite0", &lite0, 224), ("fastvit-t8", &fastvit, 256)]
    {
        for threads in [1, 2] {
            let count = allocations(artifact, &[1, 3, size, size], threads, 20);
            println!("{name} at {threads} threads: {count} allocations in 20 runs");
            seen.push((name, threads, count));
        }
    }
    for (name, size) in [("efficientnet_lite0", 224), ("fastvit_t8", 256)] {
        let path = fixtures().join(format!("{name}/{name}.mlpackage"));
        let artifact = ModelArtifact::from_path(path).unwrap();
        for threads in [1, 2] {
            let count = allocations(&artifact, &[1, 3, size, size], threads, 20);
            println!("{name}.mlpackage at {threads} threads: {count} allocations in 20 runs");
            seen.push((name, threads, count));
        }
    }
    assert!(seen.iter().all(|s| s.2 == 0), "allocations in steady-state runs: {seen:?}");
}
