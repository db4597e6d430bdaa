//! The small zoo (`scripts/make_small_zoo.py`): reduced-width MobileNetV3, ConvNeXt, RegNetX,
//! DeiT, a BERT-style encoder with int32 token ids, a segmentation head, an FPN neck with three
//! outputs, a 4-bit palettized and an int8-quantized model, and fp16 versions of two of them,
//! each converted from PyTorch by coremltools. Every output must be within 1e-4 of its peak of
//! PyTorch's fp32 output (fp16 packages: the FP16 tolerance), with the same arg-max.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    Drift, Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor, TensorData,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/small_zoo")
}

#[path = "support/reference.rs"]
mod reference_file;

fn reference(path: &Path) -> (NamedTensors, Vec<(String, Tensor)>) {
    reference_file::inputs_and_outputs(path)
}

#[test]
fn every_small_zoo_model_matches_pytorch() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/small_zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mlpackage"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 11, "expected the generated small zoo, found {cases:?}");
    let mut failures = Vec::new();
    for pkg in &cases {
        let name = pkg.file_stem().unwrap().to_string_lossy().into_owned();
        let (inputs, want) = reference(&pkg.with_extension("safetensors"));
        let artifact = ModelArtifact::from_path(pkg).expect("artifact");
        let model = match CandleEngine::new().prepare(&artifact, &PrepareOptions::default()) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: prepare: {e}"));
                continue;
            }
        };
        // fp16 packages declare fp16 inputs: hand them the reference input rounded to fp16.
        let mut inputs = inputs;
        for spec in &model.io_schema().inputs {
            if let (inference_api::DType::F16, Some(t)) = (spec.dtype, inputs.get(&spec.name)) {
                let half = t.to_f32_vec().into_iter().map(half::f16::from_f32).collect();
                let t = Tensor::new(t.shape().to_vec(), TensorData::F16(half)).expect("f16 input");
                inputs.insert(spec.name.clone(), t);
            }
        }
        // The first run goes through the interpreter; the second, where the plan could be
        // lowered for these shapes, through the lowered plan's buffers.
        for pass in ["first run", "second run"] {
            let out = match model.run(&inputs, &RunContext::new()) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{name} ({pass}): run: {e}"));
                    continue;
                }
            };
            for (oname, expected) in &want {
                let got = out.get(oname).expect("declared output");
                assert_eq!(got.shape(), expected.shape(), "{name}.{oname}");
                let d = Drift::between(&got.to_f32_vec(), &expected.to_f32_vec());
                println!(
                    "{name}.{oname} ({pass}): max_abs {:.2e} rel_to_peak {:.2e} top1 {}",
                    d.max_abs, d.max_rel_to_peak, d.top1_agree
                );
                // Arg-max: of the logits for a classifier ([1, classes]); per pixel over the
                // channels for a dense map, where the reference's top two differ by more than 1e-5
                // (a flat arg-max over a whole map would compare near-ties of smooth upsampling).
                let argmax_ok = match *expected.shape() {
                    [1, _] => d.top1_agree,
                    [1, c, h, w] => {
                        class_maps_agree(&got.to_f32_vec(), &expected.to_f32_vec(), c, h * w)
                    }
                    _ => true,
                };
                // fp16 packages (`*_fp16`): the FP16 tolerance; fp32: 1e-4 of the peak.
                let close = if name.ends_with("_fp16") {
                    d.within(&inference_api::tolerance::FP16)
                } else {
                    d.max_rel_to_peak <= 1e-4
                };
                if !close || !argmax_ok {
                    failures.push(format!(
                        "{name}.{oname} ({pass}): {d:?} arg-max agrees: {argmax_ok}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

/// Per-pixel arg-max over `c` channel planes of `hw` pixels agrees wherever the reference's best
/// class leads the second by more than 1e-5.
fn class_maps_agree(got: &[f32], want: &[f32], c: usize, hw: usize) -> bool {
    let best = |v: &[f32], p: usize| {
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| v[b * hw + p].total_cmp(&v[a * hw + p]));
        order
    };
    (0..hw).all(|p| {
        let w = best(want, p);
        let margin = if c > 1 { want[w[0] * hw + p] - want[w[1] * hw + p] } else { f32::INFINITY };
        margin <= 1e-5 || best(got, p)[0] == w[0]
    })
}
