//! Every path the Swift bridge can take, through the fake bridge's scripted scenarios: several
//! inputs and outputs, f16/i32/float64, flexible and undeclared shapes, gray and BGRA images,
//! image outputs, undeliverable outputs and inputs, names over the limit, internal errors and
//! a compute plan that is never ready.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_coreml::{CoreMlEngine, CoreMlModel};
use common::*;
use half::f16;
use inference_api::{
    DType, Dim, Error, FeatureKind, ImageFormat, ModelArtifact, NamedTensors, PrepareOptions,
    PreparedModel, Tensor, TensorData,
};

fn prepare_at(engine: &CoreMlEngine, dir: &std::path::Path, mode: &str) -> Arc<CoreMlModel> {
    let artifact = ModelArtifact::from_path(compiled_model(dir, mode)).unwrap();
    engine.prepare_model(&artifact, &PrepareOptions::default()).unwrap()
}

fn prepare_err(engine: &CoreMlEngine, dir: &std::path::Path, mode: &str) -> Error {
    let artifact = ModelArtifact::from_path(compiled_model(dir, mode)).unwrap();
    engine.prepare_model(&artifact, &PrepareOptions::default()).unwrap_err()
}

fn f32s(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(shape.to_vec(), v.to_vec()).unwrap()
}

#[test]
fn several_inputs_and_outputs_are_matched_by_name() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare_at(&engine, dir.path(), "multi");
        let s = model.io_schema();
        let ins: Vec<&str> = s.inputs.iter().map(|t| t.name.as_str()).collect();
        let outs: Vec<&str> = s.outputs.iter().map(|t| t.name.as_str()).collect();
        assert_eq!((ins, outs), (vec!["a", "b"], vec!["prod", "sum"]));
        let a = [1.0, 2.0, -3.0, 0.5];
        let b = [4.0, -1.0, 2.0, 8.0];
        // Given in the other order: inputs travel by name.
        let inputs = NamedTensors::new().with("b", f32s(&b, &[1, 4])).with("a", f32s(&a, &[1, 4]));
        let out = model.run(&inputs, &inference_api::RunContext::new()).unwrap();
        let prod: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(out.get("prod").unwrap().as_f32().unwrap(), prod);
        assert_eq!(out.get("sum").unwrap().as_f32().unwrap(), sum);
        let missing = NamedTensors::new().with("a", f32s(&a, &[1, 4]));
        let err = model.run(&missing, &inference_api::RunContext::new()).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { tensor, .. } if tensor == "b"), "{err}");
    }
    assert_balanced(&before);
}

#[test]
fn f16_crosses_as_raw_half_bits() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "f16");
    let spec = &model.io_schema().outputs[0];
    assert_eq!((spec.dtype, spec.fixed_shape()), (DType::F16, Some(vec![2, 3])));
    let x: Vec<f16> =
        [0.5f32, -1.25, 3.0, 65504.0, 1e-7, -0.0].iter().map(|&v| f16::from_f32(v)).collect();
    let inputs =
        NamedTensors::new().with("x", Tensor::new([2, 3], TensorData::F16(x.clone())).unwrap());
    let out = model.run(&inputs, &inference_api::RunContext::new()).unwrap();
    let want: Vec<f16> = x.iter().map(|&v| -v).collect();
    assert_eq!(out.get("y").unwrap().data(), &TensorData::F16(want));
    // An f32 tensor is refused before the bridge sees it.
    let wrong = NamedTensors::new().with("x", f32s(&[0.0; 6], &[2, 3]));
    assert!(matches!(
        model.run(&wrong, &inference_api::RunContext::new()),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn i32_tensors_round_trip() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "i32");
    let ids = vec![0, 7, -4, 100_000, i32::MAX / 3];
    let inputs =
        NamedTensors::new().with("ids", Tensor::new([1, 5], TensorData::I32(ids.clone())).unwrap());
    let out = model.run(&inputs, &inference_api::RunContext::new()).unwrap();
    let want: Vec<i32> = ids.iter().map(|v| 3 * v - 1).collect();
    assert_eq!(out.get("next").unwrap().data(), &TensorData::I32(want));
}

#[test]
fn float64_models_are_f32_on_the_rust_side() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "f64");
    assert_eq!(model.io_schema().inputs[0].dtype, DType::F32);
    assert_eq!(model.io_schema().outputs[0].dtype, DType::F32);
    let x = [1.0f32, 2.0, -7.0];
    let out = model
        .run(&NamedTensors::new().with("x", f32s(&x, &[1, 3])), &inference_api::RunContext::new())
        .unwrap();
    let want: Vec<f32> = x.iter().map(|&v| (f64::from(v) / 3.0) as f32).collect();
    assert_eq!(out.get("y").unwrap().as_f32().unwrap(), want);
}

#[test]
fn flexible_outputs_are_sized_from_the_default_shape_then_from_the_result() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare_at(&engine, dir.path(), "flex");
        let spec = &model.io_schema().outputs[0];
        assert_eq!(spec.shape, vec![Dim::Range { min: 1, max: None }; 2]);
        // The declared default shape [1, 4] fits in one prediction (a one-element buffer
        // would need a second one).
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let s0 = stats();
        let out = model
            .run(
                &NamedTensors::new().with("x", f32s(&x, &[1, 4])),
                &inference_api::RunContext::new(),
            )
            .unwrap();
        assert_eq!(out.get("y").unwrap().as_f32().unwrap(), [10.0, 20.0, 30.0, 40.0]);
        let s1 = stats();
        assert_eq!(
            (s1.predicts - s0.predicts, s1.outputs_too_small - s0.outputs_too_small),
            (1, 0)
        );
        // A larger result: the bridge reports its shape, the buffer is sized from it and the
        // prediction runs once more...
        let big: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let out = model
            .run(
                &NamedTensors::new().with("x", f32s(&big, &[4, 6])),
                &inference_api::RunContext::new(),
            )
            .unwrap();
        let y = out.get("y").unwrap();
        assert_eq!(y.shape(), [4, 6]);
        assert_eq!(y.as_f32().unwrap(), big.iter().map(|v| v * 10.0).collect::<Vec<_>>());
        let s2 = stats();
        assert_eq!(
            (s2.predicts - s1.predicts, s2.outputs_too_small - s1.outputs_too_small),
            (2, 1)
        );
        // ...and the instance remembers the size: the next large call runs once.
        let out = model
            .run(
                &NamedTensors::new().with("x", f32s(&big[..20], &[5, 4])),
                &inference_api::RunContext::new(),
            )
            .unwrap();
        assert_eq!(out.get("y").unwrap().shape(), [5, 4]);
        assert_eq!(stats().predicts - s2.predicts, 1);
    }
    assert_balanced(&before);
}

#[test]
fn an_output_with_no_declared_shape_takes_the_result_rank() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "undeclared");
    assert!(model.io_schema().outputs[0].shape.is_empty(), "no declared shape: any rank");
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let out = model
        .run(&NamedTensors::new().with("x", f32s(&x, &[3, 4])), &inference_api::RunContext::new())
        .unwrap();
    let y = out.get("y").unwrap();
    assert_eq!(y.shape(), [12], "rank 1, unlike the rank-2 input");
    assert_eq!(y.as_f32().unwrap(), x.iter().map(|v| v + 0.5).collect::<Vec<_>>());
}

#[test]
fn gray_images_are_one_channel() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "gray");
    let spec = &model.io_schema().inputs[0];
    assert_eq!(spec.kind, FeatureKind::Image { width: 3, height: 2, format: ImageFormat::Gray });
    assert_eq!(spec.fixed_shape(), Some(vec![2, 3, 1]));
    let px: Vec<u8> = vec![10, 20, 30, 40, 50, 60];
    let inputs = NamedTensors::new()
        .with("image", Tensor::new([2, 3, 1], TensorData::U8(px.clone())).unwrap());
    let out = model.run(&inputs, &inference_api::RunContext::new()).unwrap();
    let want: f32 = px.iter().enumerate().map(|(i, &p)| (i + 1) as f32 * f32::from(p)).sum();
    assert_eq!(out.get("weighted").unwrap().as_f32().unwrap(), [want]);
    let rgb = NamedTensors::new().with("image", Tensor::zeros([2, 3, 3], DType::U8).unwrap());
    assert!(matches!(
        model.run(&rgb, &inference_api::RunContext::new()),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn bgra_models_take_rgb_pixels_in_rgb_order() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "bgra");
    let spec = &model.io_schema().inputs[0];
    assert_eq!(spec.kind, FeatureKind::Image { width: 2, height: 2, format: ImageFormat::Rgb });
    // Four distinct R, G, B pixels; the fake fills a 32BGRA buffer and reads R, G, B back.
    let px: Vec<u8> = vec![1, 2, 3, 40, 50, 60, 255, 0, 7, 9, 8, 200];
    let inputs = NamedTensors::new()
        .with("image", Tensor::new([2, 2, 3], TensorData::U8(px.clone())).unwrap());
    let out = model.run(&inputs, &inference_api::RunContext::new()).unwrap();
    let want: Vec<f32> = px
        .chunks(3)
        .map(|p| f32::from(p[0]) * 65536.0 + f32::from(p[1]) * 256.0 + f32::from(p[2]))
        .collect();
    assert_eq!(out.get("packed").unwrap().as_f32().unwrap(), want);
}

#[test]
fn image_outputs_arrive_as_u8_height_width_channels() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare_at(&engine, dir.path(), "imageout");
        let outs = &model.io_schema().outputs;
        assert_eq!(
            outs[0].kind,
            FeatureKind::Image { width: 2, height: 2, format: ImageFormat::Gray }
        );
        assert_eq!((outs[1].dtype, outs[1].fixed_shape()), (DType::U8, Some(vec![2, 2, 3])));
        let x = [10.0f32, 20.0, 30.0, 40.0];
        let s0 = stats();
        let out = model
            .run(
                &NamedTensors::new().with("x", f32s(&x, &[1, 4])),
                &inference_api::RunContext::new(),
            )
            .unwrap();
        assert_eq!(stats().predicts - s0.predicts, 1, "image buffers sized right the first time");
        let mask = out.get("mask").unwrap();
        assert_eq!(
            (mask.shape(), mask.data()),
            (&[2, 2, 1][..], &TensorData::U8(vec![10, 20, 30, 40]))
        );
        let rendered = out.get("rendered").unwrap();
        let want: Vec<u8> = x.iter().flat_map(|&v| [v as u8, v as u8 + 1, v as u8 + 2]).collect();
        assert_eq!((rendered.shape(), rendered.data()), (&[2, 2, 3][..], &TensorData::U8(want)));
    }
    assert_balanced(&before);
}

#[test]
fn an_undeliverable_output_is_left_out_and_the_model_serves() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare_at(&engine, dir.path(), "baddtype");
    let outs: Vec<&str> = model.io_schema().outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(outs, ["output"], "labels (a string) and raw (i64) are left out");
    let notes = model.notes().join("\n");
    assert!(notes.contains("output `labels` is left out"), "{notes}");
    assert!(notes.contains("output `raw` is left out") && notes.contains("code 3"), "{notes}");
    // The fake fails if asked for a left-out output, so success proves they were not asked.
    let out = model
        .run(
            &NamedTensors::new().with("input", f32s(&[1.0; 4], &[1, 4])),
            &inference_api::RunContext::new(),
        )
        .unwrap();
    assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [3.0; 4]);
}

#[test]
fn an_input_of_an_unsupported_type_makes_the_model_unavailable_with_its_name() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let err = prepare_err(&engine, dir.path(), "badinput");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("input `tokens`") && text.contains("CPU engine"), "{text}");
}

#[test]
fn names_over_the_limit_are_refused_clearly() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let err = prepare_err(&engine, dir.path(), "longname");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("is longer than 255 bytes") && text.contains("outputs"), "{text}");
        // A faulty bridge that fills the name buffer without a NUL is caught, not over-read.
        let err = prepare_err(&engine, dir.path(), "nonul");
        assert!(matches!(err, Error::Load(_)), "{err:?}");
        assert!(err.to_string().contains("without a terminating NUL"), "{err}");
    }
    assert_balanced(&before);
}

#[test]
fn internal_errors_keep_the_bridge_message() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare_at(&engine, dir.path(), "internal_error");
        let err = model
            .run(
                &NamedTensors::new().with("input", f32s(&[0.0; 4], &[1, 4])),
                &inference_api::RunContext::new(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("NSInternalInconsistencyException: scripted exception"), "{text}");
        assert!(text.contains("bridge status 8, internal"), "{text}");
    }
    assert_balanced(&before);
}

#[test]
fn the_compute_plan_wait_is_bounded_by_the_config() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("cache"));
    cfg.plan_timeout = Duration::from_millis(120);
    let engine = CoreMlEngine::with_config(cfg);
    let model = prepare_at(&engine, dir.path(), "plan_slow");
    // The plan is read the first time placement is asked for (prepare loads the model once).
    let t = Instant::now();
    let placement = model.placement();
    let took = t.elapsed();
    assert_eq!(stats().last_plan_timeout_ms, 120, "the configured bound reaches the bridge");
    assert!(took >= Duration::from_millis(120) && took < Duration::from_secs(5), "{took:?}");
    assert!(placement.planned.is_empty(), "no plan, no guess");
    let notes = model.notes().join("\n");
    assert!(notes.contains("not ready within 120 ms"), "{notes}");
    let ctx = inference_api::RunContext::new();
    assert!(model.run(&NamedTensors::new().with("input", f32s(&[0.0; 4], &[1, 4])), &ctx).is_ok());
}
