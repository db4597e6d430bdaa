//! Legacy NeuralNetwork `.mlmodel`s (`scripts/make_nn_fixtures.py`): reduced MobileNetV2,
//! ResNet and MobileNetV3 (fp16, 8-bit and 4-bit look-up-table weights), a BGR image classifier
//! with string labels, and single-family layer models, each converted from PyTorch by
//! coremltools with `convert_to="neuralnetwork"`; and `legacy_layers`, the rank-5-era layers
//! today's converter no longer emits, built with the NeuralNetworkBuilder, whose reference is
//! numpy written from NeuralNetwork.proto's definitions (no Core ML on Linux to run it). Every
//! output must be within 1e-4 of its peak of the reference, with the same arg-max. (The
//! compressed models' PyTorch weights were put on the stored grid before conversion, so fp32
//! PyTorch is their exact reference too.)

use std::path::{Path, PathBuf};

use inference_api::{DType, Drift, Error, NamedTensors, RunContext, Tensor, TensorData};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nn_models")
}

#[path = "support/reference.rs"]
mod reference_file;

fn reference(path: &Path) -> (NamedTensors, Vec<(String, Tensor)>) {
    reference_file::inputs_and_outputs(path)
}

#[path = "support/model_dir.rs"]
mod model_dir;
use model_dir::prepare;

#[test]
fn every_neural_network_model_matches_pytorch() {
    let failures = model_dir::failures(&dir(), 11, |d| d.max_rel_to_peak <= 1e-4 && d.top1_agree);
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_classifier_surfaces_its_labels_and_scores() {
    let model = prepare(&dir().join("image_classifier.mlmodel")).expect("prepare");
    let schema = model.io_schema();
    let c = schema.classifier.as_ref().expect("classifier labels in the schema");
    assert_eq!(c.labels, ["cat", "dog", "fox", "owl", "bee", "ant", "elk"]);
    let scores = schema.output(&c.output).expect("the scores output is declared");
    assert_eq!((scores.dtype, scores.fixed_shape()), (DType::F32, Some(vec![7])));
    // The predicted-label string output is not in the schema (no string tensors).
    assert_eq!(schema.outputs.len(), 1, "{:?}", schema.outputs);
    let image = schema.inputs.first().expect("image input");
    assert_eq!(image.fixed_shape(), Some(vec![20, 24, 3]));
    assert!(matches!(image.kind, inference_api::FeatureKind::Image { .. }));

    let (inputs, want) = reference(&dir().join("image_classifier.safetensors"));
    let out = model.run(&inputs, &RunContext::new()).expect("run");
    let got = out.get(&c.output).expect("scores").to_f32_vec();
    let expected = want[0].1.to_f32_vec();
    let d = Drift::between(&got, &expected);
    assert!(d.max_rel_to_peak <= 1e-4 && d.top1_agree, "{d:?}");
    assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax probabilities");

    // The same image with R and B swapped is a different input (the BGR layout is applied): its
    // scores miss the reference by more than the tolerance the right input meets.
    let img = inputs.get("image").expect("image");
    let TensorData::U8(px) = img.data() else { panic!("u8 image") };
    let swapped: Vec<u8> = px.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let mut other = NamedTensors::new();
    other.insert("image", Tensor::new(img.shape().to_vec(), TensorData::U8(swapped)).unwrap());
    let out = model.run(&other, &RunContext::new()).expect("run swapped");
    let d = Drift::between(&out.get(&c.output).unwrap().to_f32_vec(), &expected);
    assert!(d.max_rel_to_peak > 1e-4, "swapping R and B changed nothing: {d:?}");
}

/// A spec naming a layer type the CPU engine does not run fails at prepare, naming the layer
/// type and the layer.
#[test]
fn an_unsupported_layer_is_named_at_prepare() {
    use coreml_format::proto as pb;
    use prost::Message;
    let path = dir().join("layers_pad.mlmodel");
    let mut spec = pb::Model::decode(std::fs::read(&path).expect("read").as_slice()).expect("spec");
    let Some(pb::model::Type::NeuralNetwork(nn)) = spec.r#type.as_mut() else {
        panic!("a neuralNetwork spec")
    };
    let l = nn.layers.first_mut().expect("a layer");
    l.name = "my_repeat".into();
    l.layer = Some(pb::neural_network_layer::Layer::SequenceRepeat(Default::default()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.mlmodel");
    std::fs::write(&bad, spec.encode_to_vec()).expect("write");
    let err = prepare(&bad).err().expect("an unsupported layer fails");
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(msg.contains("my_repeat") && msg.contains("sequenceRepeat"), "{msg}");
}
