//! One conformance suite written against `&dyn Engine` (`support/conformance_suite.rs`),
//! instantiated for the native Candle model and for the ML Program executor on the same engine.
//!
//! Core ML on a Mac: backend-coreml's macOS-only `tests/conformance_mac.rs` includes the same
//! suite file and runs it on `CoreMlEngine` with the real bridge (backend-candle does not depend
//! on backend-coreml).

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{ModelArtifact, Tensor, tolerance};
use model_manifest::ModelBundle;

#[path = "support/conformance_suite.rs"]
mod suite;
use suite::{Case, conformance};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    root().join("../shared/fixtures")
}

fn lite0_cases() -> Vec<Case> {
    ["chelsea", "coffee", "noise"]
        .iter()
        .map(|name| {
            let path = fixtures().join(format!("efficientnet_lite0/reference/{name}.safetensors"));
            let map = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
                .expect("reference file");
            let x = &map["input"];
            let values = x.flatten_all().and_then(|t| t.to_vec1()).expect("input");
            let logits = map["logits"].flatten_all().and_then(|t| t.to_vec1()).expect("logits");
            Case {
                name: name.to_string(),
                input: Tensor::from_f32(x.dims().to_vec(), values).expect("tensor"),
                logits,
            }
        })
        .collect()
}

#[test]
fn native_candle_conforms() {
    let bundle = ModelBundle::load(root().join("models/efficientnet-lite0")).expect("bundle");
    conformance(&CandleEngine::new(), &bundle.artifact, &lite0_cases(), tolerance::FP32);
}

#[test]
fn ml_program_on_candle_conforms() {
    let path = fixtures().join("efficientnet_lite0/efficientnet_lite0.mlpackage");
    let artifact = ModelArtifact::from_path(path).expect("artifact");
    conformance(&CandleEngine::new(), &artifact, &lite0_cases(), tolerance::FP16);
}
