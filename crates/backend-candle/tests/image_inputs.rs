//! Image inputs the way Core ML takes them: packages whose input is an `ImageType` (BGR, RGB and
//! gray, each with a scale and per-channel bias) run from a u8 `[height, width, channels]` RGB
//! image and match PyTorch on the planes Core ML would build (`scripts/make_image_fixtures.py`).

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    DType, Dim, Drift, Engine, ErrorKind, FeatureKind, ImageFormat, ModelArtifact, NamedTensors,
    PrepareOptions, RunContext, Tensor, TensorData, tolerance,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/image_inputs")
}

/// The reference image (u8 [H, W, C]) and PyTorch's logits.
fn reference(case: &str) -> (Tensor, Vec<f32>) {
    let bytes = std::fs::read(dir().join(format!("{case}.safetensors"))).expect("reference file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let image = st.tensor("image").expect("image");
    assert_eq!(image.dtype(), safetensors::Dtype::U8);
    let image = Tensor::new(image.shape().to_vec(), TensorData::U8(image.data().to_vec()))
        .expect("image tensor");
    let logits = st.tensor("logits").expect("logits");
    let logits = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (image, logits)
}

fn prepare(case: &str) -> std::sync::Arc<dyn inference_api::PreparedModel> {
    let artifact =
        ModelArtifact::from_path(dir().join(format!("{case}.mlpackage"))).expect("artifact");
    CandleEngine::new().prepare(&artifact, &PrepareOptions::default()).expect("prepare")
}

#[test]
fn image_packages_take_rgb_hwc_and_match_pytorch() {
    for (case, format, channels) in [
        ("bgr_scale_bias", ImageFormat::Bgr, 3),
        ("rgb_scale_bias", ImageFormat::Rgb, 3),
        ("gray_scale", ImageFormat::Gray, 1),
    ] {
        let model = prepare(case);
        let spec = &model.io_schema().inputs[0];
        assert_eq!(spec.dtype, DType::U8, "{case}");
        let FeatureKind::Image { width, height, format: declared } = spec.kind else {
            panic!("{case}: input is not an image: {spec:?}")
        };
        assert_eq!(declared, format, "{case}");
        assert_eq!(
            spec.shape,
            [Dim::Fixed(height), Dim::Fixed(width), Dim::Fixed(channels)],
            "{case}: images are [height, width, channels]"
        );
        let (image, want) = reference(case);
        // The first run goes through the interpreter, the second through the lowered plan.
        for pass in ["first run", "second run"] {
            let out = model
                .run(&NamedTensors::new().with("image", image.clone()), &RunContext::new())
                .expect("run");
            let got = out.get("logits").expect("logits").as_f32().expect("f32").to_vec();
            let d = Drift::between(&got, &want);
            assert!(d.within(&tolerance::FP32), "{case} ({pass}): {d:?}");
        }

        if format == ImageFormat::Bgr {
            // The same pixels with red and blue swapped are a different picture: the executor
            // must not hand the planes over in the caller's order.
            let TensorData::U8(px) = image.data() else { unreachable!() };
            let mut swapped = px.clone();
            for p in swapped.chunks_exact_mut(3) {
                p.swap(0, 2);
            }
            let swapped = Tensor::new(image.shape().to_vec(), TensorData::U8(swapped)).unwrap();
            let out = model
                .run(&NamedTensors::new().with("image", swapped), &RunContext::new())
                .expect("run");
            let other = out.get("logits").unwrap().as_f32().unwrap().to_vec();
            let d = Drift::between(&other, &want);
            assert!(!d.within(&tolerance::FP32), "{case}: channel order ignored: {d:?}");
        }
    }
}

#[test]
fn planar_or_float_images_are_refused_with_the_expected_layout() {
    let model = prepare("bgr_scale_bias");
    let (image, _) = reference("bgr_scale_bias");
    let &[h, w, c] = image.shape() else { panic!() };
    // After a good run (the plan lowered for the image's size), bad images are still refused.
    model.run(&NamedTensors::new().with("image", image.clone()), &RunContext::new()).unwrap();
    let planar = Tensor::new(vec![1, c, h, w], TensorData::U8(vec![0; c * h * w])).unwrap();
    let err =
        model.run(&NamedTensors::new().with("image", planar), &RunContext::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("image"), "{err}");
    let float = Tensor::from_f32(vec![h, w, c], vec![0.0; h * w * c]).unwrap();
    let err = model.run(&NamedTensors::new().with("image", float), &RunContext::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}
