//! The CPU engine against PyTorch ground truth from ../shared/fixtures.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    ArtifactFormat, DType, Drift, Engine, Error, ModelArtifact, NamedTensors, PrepareOptions,
    RunContext, Tensor, tolerance, top_k,
};
use model_manifest::ModelBundle;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    root().join("../shared/fixtures")
}

/// Reads `input` and `logits` from a reference safetensors file.
fn reference(path: &Path) -> (Tensor, Vec<f32>) {
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let input = &map["input"];
    let x =
        Tensor::from_f32(input.dims().to_vec(), input.flatten_all().unwrap().to_vec1().unwrap())
            .unwrap();
    let logits = map["logits"].flatten_all().unwrap().to_vec1().unwrap();
    (x, logits)
}

fn lite0() -> (ModelBundle, std::sync::Arc<dyn inference_api::PreparedModel>) {
    let bundle = ModelBundle::load(root().join("models/efficientnet-lite0")).unwrap();
    let model = CandleEngine::new().prepare(&bundle.artifact, &PrepareOptions::default()).unwrap();
    (bundle, model)
}

#[test]
fn efficientnet_lite0_matches_pytorch_on_every_reference() {
    let (_, model) = lite0();
    for name in ["chelsea", "coffee", "noise"] {
        let (x, want) =
            reference(&fixtures().join(format!("efficientnet_lite0/reference/{name}.safetensors")));
        let out = model.run(&NamedTensors::new().with("input", x), &RunContext::new()).unwrap();
        let got = out.get("logits").unwrap().as_f32().unwrap().to_vec();
        let d = Drift::between(&got, &want);
        println!("{name}: max_abs {:.2e} rmse {:.2e} cosine {:.7}", d.max_abs, d.rmse, d.cosine);
        assert!(
            d.max_abs <= tolerance::FP32.max_abs,
            "{name}: max abs {} over {}",
            d.max_abs,
            tolerance::FP32.max_abs
        );
        assert_eq!(top_k(&got, 5), top_k(&want, 5), "{name}: top-5 differs");
    }
}

#[test]
fn efficientnet_lite0_classifies_the_bundled_photos() {
    let (bundle, model) = lite0();
    let prep = bundle.manifest.preprocessing.clone().unwrap();
    for (img, allowed) in [("chelsea.png", &[281usize, 282, 285][..]), ("coffee.png", &[967][..])] {
        let x = model_manifest::preprocess::preprocess_file(
            &root().join("models/samples").join(img),
            &prep,
        )
        .unwrap();
        let out = model.run(&NamedTensors::new().with("input", x), &RunContext::new()).unwrap();
        let top1 = top_k(out.get("logits").unwrap().as_f32().unwrap(), 1)[0];
        assert!(
            allowed.contains(&top1),
            "{img}: top-1 {top1} ({}) not in {allowed:?}",
            bundle.label(top1)
        );
    }
}

#[test]
fn fastvit_t8_matches_pytorch_relative_to_logit_magnitude() {
    let mut artifact =
        ModelArtifact::from_path(fixtures().join("fastvit_t8/fastvit_t8.train_form.safetensors"))
            .unwrap();
    artifact.architecture = Some("fastvit-t8".into());
    let model = CandleEngine::new().prepare(&artifact, &PrepareOptions::default()).unwrap();
    let (x, want) = reference(&fixtures().join("fastvit_t8/reference/noise1.safetensors"));
    let out = model.run(&NamedTensors::new().with("input", x), &RunContext::new()).unwrap();
    let d = Drift::between(out.get("logits").unwrap().as_f32().unwrap(), &want);
    println!("fastvit-t8: max_abs {:.2e} rel {:.2e}", d.max_abs, d.max_rel_to_peak);
    assert!(
        d.max_rel_to_peak <= tolerance::FP32.max_rel_to_peak,
        "relative error {}",
        d.max_rel_to_peak
    );
}

#[test]
fn wrong_shape_and_dtype_are_invalid_input_naming_the_tensor() {
    let (_, model) = lite0();
    let e = model
        .run(
            &NamedTensors::new()
                .with("input", Tensor::zeros([1, 3, 100, 100], DType::F32).unwrap()),
            &RunContext::new(),
        )
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { tensor, .. } if tensor == "input"), "{e}");
    assert!(
        e.to_string().contains("[1, 3, 224, 224]") && e.to_string().contains("[1, 3, 100, 100]"),
        "{e}"
    );
    let e = model
        .run(
            &NamedTensors::new()
                .with("input", Tensor::zeros([1, 3, 224, 224], DType::F16).unwrap()),
            &RunContext::new(),
        )
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { tensor, .. } if tensor == "input"), "{e}");
    assert!(e.to_string().contains("f16"), "{e}");
}

#[test]
fn corrupted_weights_file_is_a_load_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("models/efficientnet-lite0/efficientnet-lite0.safetensors");
    let bytes = std::fs::read(&src).unwrap();
    let path = dir.path().join("broken.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let artifact = ModelArtifact {
        name: "broken".into(),
        format: ArtifactFormat::Safetensors,
        path: path.clone(),
        sha256: None,
        architecture: Some("efficientnet-lite0".into()),
        io_schema: None,
    };
    let e = match CandleEngine::new().prepare(&artifact, &PrepareOptions::default()) {
        Err(e) => e,
        Ok(_) => panic!("a truncated file must not load"),
    };
    assert!(matches!(e, Error::Load(_)), "{e:?}");
    assert!(e.to_string().contains("broken.safetensors"), "{e}");
}
