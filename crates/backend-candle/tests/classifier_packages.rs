//! Classifier packages (`ct.convert(..., classifier_config=ct.ClassifierConfig(labels))`,
//! `scripts/make_classifier_fixtures.py`): `main` ends in a `classify` op. The executor runs
//! them, the probabilities come back as a `[1, classes]` f32 tensor matching PyTorch, an int64
//! label output holds the label of the arg-max, and the schema carries the labels the converter
//! was given (`IoSchema::classifier`). A string label output is not in the schema.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    DType, Dim, Drift, Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor,
    TensorData, tolerance,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/classifier_packages")
}

#[path = "support/reference.rs"]
mod reference_file;

/// The named tensors of `<case>.safetensors`.
fn reference(case: &str) -> Vec<(String, Tensor)> {
    reference_file::tensors(&dir().join(format!("{case}.safetensors")))
}

fn get(refs: &[(String, Tensor)], name: &str) -> Tensor {
    refs.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).expect(name)
}

/// The labels given to the converter (ground truth for the spec's labels).
fn labels(case: &str) -> Vec<String> {
    std::fs::read_to_string(dir().join(format!("{case}.labels.txt")))
        .expect("labels file")
        .lines()
        .map(str::to_string)
        .collect()
}

fn prepare(case: &str) -> std::sync::Arc<dyn inference_api::PreparedModel> {
    let artifact =
        ModelArtifact::from_path(dir().join(format!("{case}.mlpackage"))).expect("artifact");
    CandleEngine::new().prepare(&artifact, &PrepareOptions::default()).expect("prepare")
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, k| if v[k] > v[best] { k } else { best })
}

#[test]
fn string_label_image_classifier_runs_and_carries_its_labels() {
    let case = "classifier_string_image";
    let model = prepare(case);
    let schema = model.io_schema();
    let classifier = schema.classifier.as_ref().expect("the schema names the classifier");
    assert_eq!(classifier.labels, labels(case));
    assert_eq!(classifier.output, "classLabel_probs");
    // The string label is not a tensor: only the probabilities are outputs.
    let names: Vec<&str> = schema.outputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["classLabel_probs"]);
    let probs_spec = schema.output("classLabel_probs").expect("probabilities");
    assert_eq!(probs_spec.dtype, DType::F32);
    assert_eq!(probs_spec.shape, [Dim::Fixed(1), Dim::Fixed(5)]);

    let refs = reference(case);
    let out = model
        .run(&NamedTensors::new().with("image", get(&refs, "image")), &RunContext::new())
        .expect("run");
    let got = out.get("classLabel_probs").expect("probabilities");
    assert_eq!(got.shape(), [1, 5]);
    let got = got.as_f32().expect("f32").to_vec();
    let want = get(&refs, "probs").as_f32().expect("f32").to_vec();
    let d = Drift::between(&got, &want);
    assert!(d.within(&tolerance::FP32), "{d:?}");
    assert_eq!(argmax(&got), argmax(&want));
    assert!(out.get("classLabel").is_none(), "no string tensor output");
}

#[test]
fn int64_label_classifier_returns_the_label_of_the_top_class() {
    let case = "classifier_int64";
    let model = prepare(case);
    let schema = model.io_schema();
    let want_labels = labels(case);
    assert_eq!(schema.classifier.as_ref().expect("classifier").labels, want_labels);
    let label_spec = schema.output("classLabel").expect("the int64 label is an output");
    assert_eq!(label_spec.dtype, DType::I64);

    let refs = reference(case);
    let input = get(&refs, "input");
    let want = get(&refs, "probs").as_f32().expect("f32").to_vec();
    let out = model.run(&NamedTensors::new().with("input", input.clone()), &RunContext::new());
    let out = out.expect("run");
    let got = out.get("classLabel_probs").expect("probabilities").as_f32().unwrap().to_vec();
    let d = Drift::between(&got, &want);
    assert!(d.within(&tolerance::FP32), "{d:?}");
    let TensorData::I64(label) = out.get("classLabel").expect("label").data() else {
        panic!("label is not i64")
    };
    assert_eq!(label.as_slice(), [want_labels[argmax(&want)].parse::<i64>().unwrap()]);

    // Other inputs, other top classes: the label follows the scores, not a constant.
    // Constant planes of a grid of values per channel drive the features apart.
    let plane = input.len() / 2;
    let mut seen = std::collections::BTreeSet::new();
    for a in [-6.0f32, -2.0, -0.5, 0.5, 2.0, 6.0] {
        for c in [-6.0f32, -2.0, -0.5, 0.5, 2.0, 6.0] {
            let v: Vec<f32> = (0..input.len()).map(|j| if j < plane { a } else { c }).collect();
            let t = Tensor::new(input.shape().to_vec(), TensorData::F32(v)).unwrap();
            let out = model.run(&NamedTensors::new().with("input", t), &RunContext::new()).unwrap();
            let p = out.get("classLabel_probs").unwrap().as_f32().unwrap().to_vec();
            let TensorData::I64(l) = out.get("classLabel").unwrap().data() else { unreachable!() };
            assert_eq!(l[0].to_string(), want_labels[argmax(&p)]);
            seen.insert(l[0]);
        }
    }
    assert!(seen.len() > 1, "every input gave the same label: {seen:?}");
}
