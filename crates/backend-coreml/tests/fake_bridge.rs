//! The Core ML engine driven through the real loader against the test-support fake bridge:
//! results, error messages, handle and string ownership, validation, placement, image inputs.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use backend_coreml::CoreMlModel;
use common::*;
use inference_api::{
    DType, Engine, Error, FeatureKind, ImageFormat, ModelArtifact, NamedTensors, PrepareOptions,
    PreparedModel, RunContext, Tensor, TensorData,
};

fn prepare(engine: &backend_coreml::CoreMlEngine, path: &std::path::Path) -> Arc<CoreMlModel> {
    let artifact = ModelArtifact::from_path(path).unwrap();
    engine.prepare_model(&artifact, &PrepareOptions::default()).unwrap()
}

fn input(values: [f32; 4]) -> NamedTensors {
    NamedTensors::new().with("input", Tensor::from_f32([1, 4], values.to_vec()).unwrap())
}

#[test]
fn success_gives_known_outputs_and_frees_every_handle_once() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let probe = engine.probe();
        assert!(probe.available, "{probe:?}");
        assert!(probe.details.iter().any(|(k, v)| k == "os_build" && v.contains("FAKE42")));
        assert_eq!(probe.compute_devices, ["cpu", "neural_engine"]);
        let model = prepare(&engine, &compiled_model(dir.path(), "ok"));
        let schema = model.io_schema();
        assert_eq!(schema.inputs[0].name, "input");
        assert_eq!(schema.outputs[0].fixed_shape(), Some(vec![1, 4]));
        for _ in 0..3 {
            let out = model.run(&input([0.0, 1.0, 2.0, -1.0]), &RunContext::new()).unwrap();
            assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [1.0, 3.0, 5.0, -1.0]);
        }
        let placement = model.placement();
        assert!(placement.planned.is_empty(), "no plan means no share: {placement:?}");
        let info = engine.bridge_info().unwrap();
        assert_eq!(info.abi_version, coreml_sys::CMB_ABI_VERSION);
        let doctor = engine.doctor();
        assert!(doctor.available && doctor.bridge.is_some());
    }
    assert_balanced(&before);
    assert!(stats().models_allocated > before.models_allocated);
}

#[test]
fn errors_and_messages_arrive_intact_and_strings_are_freed_once() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "predict_error"));
        let err = model.run(&input([1.0; 4]), &RunContext::new()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert!(
            text.contains("fake bridge: prediction failed: scripted failure (model ")
                && text.contains("predict_error.mlmodelc"),
            "{text}"
        );
        assert!(text.contains("bridge status 4, predict"), "{text}");
        // The instance survives a failed prediction: no rebuild, same answer again.
        assert!(model.run(&input([1.0; 4]), &RunContext::new()).is_err());
        assert_eq!((model.stats().loads, model.stats().instances), (1, 1));

        let artifact = ModelArtifact::from_path(compiled_model(dir.path(), "load_error")).unwrap();
        let err = engine.prepare(&artifact, &PrepareOptions::default()).err().unwrap();
        assert!(matches!(err, Error::Load(_)), "{err:?}");
        assert!(err.to_string().contains("fake bridge: cannot load"), "{err}");

        let pkg = dir.path().join("compile_error.mlpackage");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("Manifest.json"), b"{}").unwrap();
        let err = engine
            .prepare(&ModelArtifact::from_path(&pkg).unwrap(), &PrepareOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, Error::Compile(_)), "{err:?}");
        assert!(err.to_string().contains("compile_error.mlpackage: scripted failure"), "{err}");
    }
    let now = stats();
    assert!(now.strings_allocated - before.strings_allocated >= 4, "{now:?}");
    assert_balanced(&before);
}

#[test]
fn inputs_are_validated_before_any_ffi_call() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare(&engine, &compiled_model(dir.path(), "ok"));
    let before = stats();
    let wrong_shape =
        NamedTensors::new().with("input", Tensor::from_f32([1, 5], vec![0.0; 5]).unwrap());
    let err = model.run(&wrong_shape, &RunContext::new()).unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { tensor, .. } if tensor == "input"), "{err}");
    let wrong_dtype = NamedTensors::new().with("input", Tensor::zeros([1, 4], DType::F16).unwrap());
    assert!(matches!(model.run(&wrong_dtype, &RunContext::new()), Err(Error::InvalidInput { .. })));
    assert!(matches!(
        model.run(&NamedTensors::new(), &RunContext::new()),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(stats().predicts, before.predicts, "a bad input reached the bridge");
}

#[test]
fn a_bridge_that_lies_about_output_size_is_refused() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(&dir.path().join("cache"));
        let model = prepare(&engine, &compiled_model(dir.path(), "badsize"));
        let err = model.run(&input([1.0; 4]), &RunContext::new()).unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("output `output`") && text.contains("[1, 5]"), "{text}");
    }
    assert_balanced(&before);
}

#[test]
fn placement_comes_from_the_compute_plan_cost_weighted() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare(&engine, &compiled_model(dir.path(), "plan"));
    let p = model.placement();
    assert_eq!(p.requested, inference_api::ComputeUnits::All);
    let names: Vec<&str> = p.planned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cpu", "neural_engine"]);
    assert!((p.planned[0].1 - 0.3).abs() < 1e-9 && (p.planned[1].1 - 0.7).abs() < 1e-9, "{p:?}");
}

#[test]
fn image_inputs_are_u8_height_width_channels() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("cache"));
    let model = prepare(&engine, &compiled_model(dir.path(), "image"));
    let spec = &model.io_schema().inputs[0];
    assert_eq!(spec.kind, FeatureKind::Image { width: 2, height: 2, format: ImageFormat::Rgb });
    assert_eq!(spec.fixed_shape(), Some(vec![2, 2, 3]));
    let pixels: Vec<u8> = (0..12).collect();
    let inputs =
        NamedTensors::new().with("image", Tensor::new([2, 2, 3], TensorData::U8(pixels)).unwrap());
    let out = model.run(&inputs, &RunContext::new()).unwrap();
    assert_eq!(out.get("output").unwrap().as_f32().unwrap(), [3.0, 12.0, 21.0, 30.0]);
}

#[test]
fn packages_compile_once_through_the_cache() {
    let _g = serial();
    let before = stats();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("ok.mlpackage");
    std::fs::create_dir_all(pkg.join("Data")).unwrap();
    std::fs::write(pkg.join("Data").join("model.mlmodel"), b"spec").unwrap();
    let cache_dir = dir.path().join("cache");
    {
        let engine = engine(&cache_dir);
        let artifact = ModelArtifact::from_path(&pkg).unwrap();
        // One compiled model serves every compute-units setting.
        for units in [inference_api::ComputeUnits::CpuOnly, inference_api::ComputeUnits::All] {
            let options = PrepareOptions::new().with_compute_units(units);
            let model = engine.prepare(&artifact, &options).unwrap();
            assert_eq!(model.run(&input([0.0; 4]), &RunContext::new()).unwrap().len(), 1);
            assert_eq!(model.placement().requested, units);
        }
        let cache = engine.cache().unwrap().stats();
        assert_eq!((cache.hits, cache.misses), (1, 1));
        assert!(engine.doctor().cache_size_bytes > 0);
    }
    assert_eq!(stats().compiles - before.compiles, 1);
    let names: Vec<String> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("v") && !names[0].starts_with(".staging"), "{names:?}");
    let entry = cache_dir.join(&names[0]);
    assert!(entry.join("model.mlmodelc").is_dir() && entry.join("complete").is_file());
    assert_balanced(&before);
}
