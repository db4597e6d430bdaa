//! Recurrent NeuralNetwork layers (`scripts/make_nn_recurrent_fixtures.py`): `simpleRecurrent`,
//! `gru`, `uniDirectionalLSTM`, `biDirectionalLSTM` and `copy` models built with coremltools'
//! NeuralNetworkBuilder, against float64 numpy references written from NeuralNetwork.proto's
//! definitions (no Core ML on Linux to run them). Every output must be within 1e-5 of its peak
//! of the reference.

use std::path::{Path, PathBuf};

use inference_api::Error;

#[path = "support/reference.rs"]
mod reference_file;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nn_recurrent")
}

#[path = "support/model_dir.rs"]
mod model_dir;
use model_dir::prepare;

#[test]
fn every_recurrent_model_matches_numpy() {
    let failures = model_dir::failures(&dir(), 8, |d| d.max_rel_to_peak <= 1e-5);
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

/// An LSTM with a coupled input and forget gate (which the MIL `lstm` has no form of) fails at
/// prepare, naming the layer and the option.
#[test]
fn a_coupled_input_forget_gate_is_named_at_prepare() {
    use coreml_format::proto as pb;
    use prost::Message;
    let path = dir().join("lstm_reverse_clip.mlmodel");
    let mut spec = pb::Model::decode(std::fs::read(&path).expect("read").as_slice()).expect("spec");
    let Some(pb::model::Type::NeuralNetwork(nn)) = spec.r#type.as_mut() else {
        panic!("a neuralNetwork spec")
    };
    let l = nn.layers.first_mut().expect("a layer");
    let Some(pb::neural_network_layer::Layer::UniDirectionalLstm(p)) = l.layer.as_mut() else {
        panic!("an LSTM layer")
    };
    p.params.as_mut().expect("params").coupled_input_and_forget_gate = true;
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.mlmodel");
    std::fs::write(&bad, spec.encode_to_vec()).expect("write");
    let err = prepare(&bad).err().expect("a coupled gate fails");
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(msg.contains("lstm") && msg.contains("coupledInputAndForgetGate"), "{msg}");
}
