//! The engine conformance suite the CPU engine passes (backend-candle
//! `tests/support/conformance_suite.rs`, included as is), run on Core ML through the real
//! bridge: macOS only (`COREML_BRIDGE_PATH`, or the places the loader searches).
//!
//! The package: `COREML_CONFORMANCE_PACKAGE`, else the shared fixture
//! (`../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage`), else the one
//! `scripts/build_coreml_model.py` writes (`target/gates-models/efficientnet_lite0.mlpackage`,
//! what the macOS workflow uses). The references: the CPU engine's native network on the bundled
//! weights (both packages are EfficientNet-Lite0 made from those weights), on seeded inputs; the
//! tolerance is the fp16 one, as for the fixture package on the CPU engine's executor.
#![cfg(target_os = "macos")]

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use backend_coreml::CoreMlEngine;
use inference_api::{
    Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor, tolerance,
};
use model_manifest::ModelBundle;

#[path = "../../backend-candle/tests/support/conformance_suite.rs"]
mod suite;
use suite::{Case, conformance};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn package() -> Option<PathBuf> {
    [
        std::env::var_os("COREML_CONFORMANCE_PACKAGE").map(PathBuf::from),
        Some(root().join("../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage")),
        Some(root().join("target/gates-models/efficientnet_lite0.mlpackage")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists())
}

/// Seeded inputs in [-1, 1) (the normalized range) and the native network's logits for each.
fn cases() -> Vec<Case> {
    let bundle = ModelBundle::load(root().join("models/efficientnet-lite0")).expect("bundle");
    let cpu = CandleEngine::new();
    let reference = cpu.prepare(&bundle.artifact, &PrepareOptions::default()).expect("prepare");
    (0..3u64)
        .map(|seed| {
            let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
            let values: Vec<f32> = (0..3 * 224 * 224)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
                })
                .collect();
            let input = Tensor::from_f32([1, 3, 224, 224], values).expect("input");
            let feed = NamedTensors::new().with("input", input.clone());
            let out = reference.run(&feed, &RunContext::new()).expect("reference run");
            let logits = out.get("logits").expect("logits").to_f32_vec();
            Case { name: format!("seed {seed}"), input, logits }
        })
        .collect()
}

#[test]
fn core_ml_conforms() {
    let Some(path) = package() else {
        panic!(
            "no EfficientNet-Lite0 .mlpackage: run `python3 scripts/build_coreml_model.py` \
             (writes target/gates-models), or set COREML_CONFORMANCE_PACKAGE"
        );
    };
    let artifact = ModelArtifact::from_path(&path).expect("artifact");
    conformance(&CoreMlEngine::new(), &artifact, &cases(), tolerance::FP16);
}
