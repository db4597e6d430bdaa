//! Loading from a manifest folder: the load report keeps each engine's reason.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use inference_api::Error;
use model_manifest::{ModelBundle, sha256_hex};
use runtime::Runtime;
use runtime::testing::{FaultyEngine, input};

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = b"weights";
    std::fs::write(dir.path().join("w.safetensors"), w).unwrap();
    let text = format!(
        r#"
name = "tiny"
version = "1"
task = "test"
license = "MIT"
[origin]
source = "test"
[[files]]
path = "w.safetensors"
role = "weights"
sha256 = "{}"
size = {}
[[inputs]]
name = "input"
dtype = "f32"
shape = [1, 4]
[[outputs]]
name = "logits"
dtype = "f32"
shape = [1, 10]
[serving]
sla_ms = 50
timeout_ms = 500
preferred_backends = ["coreml", "candle-cpu"]
compute_units = "all"
"#,
        sha256_hex(w),
        w.len()
    );
    std::fs::write(dir.path().join("manifest.toml"), text).unwrap();
    dir
}

#[test]
fn load_report_keeps_reasons_and_manifest_order() {
    let dir = folder();
    let rt = Runtime::builder()
        .engine(Arc::new(FaultyEngine::new("candle-cpu")))
        .engine(Arc::new(FaultyEngine::new("coreml").unavailable("not a Mac: Core ML needs macOS")))
        .engine(Arc::new(
            FaultyEngine::new("broken")
                .failing_prepare(Error::Compile("op `foo` unsupported".into())),
        ))
        .build();
    let model = rt.load_spec(&ModelBundle::load(dir.path()).unwrap()).unwrap();
    let rep = model.load_report();
    let names: Vec<&str> = rep.engines.iter().map(|e| e.engine.as_str()).collect();
    assert_eq!(names, ["coreml", "candle-cpu", "broken"], "manifest order first");
    assert!(!rep.engines[0].loaded);
    assert!(rep.engines[0].reason.as_deref().unwrap().contains("not a Mac"));
    assert!(rep.engines[1].loaded);
    assert!(rep.engines[2].reason.as_deref().unwrap().contains("unsupported"));
    assert_eq!(model.engines(), ["candle-cpu"]);
    let text = rep.to_string();
    assert!(
        text.contains("coreml: not loaded: engine unavailable")
            || text.contains("coreml: not loaded: not a Mac"),
        "{text}"
    );
    let (_, r) = model.run(input([0.0; 4])).unwrap();
    assert_eq!(r.engine, "candle-cpu");
    // Bad input: the caller's error, counted once, no engine blamed.
    let e = model.run(inference_api::NamedTensors::new()).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    let t = rt.telemetry();
    assert_eq!(t.model("tiny").calls(), 2);
    assert_eq!(t.series("tiny", "candle-cpu", "all").requests(), 1);
}

#[test]
fn no_engine_is_unavailable_with_every_reason() {
    let dir = folder();
    let rt = Runtime::builder()
        .engine(Arc::new(FaultyEngine::new("coreml").unavailable("not a Mac")))
        .build();
    let e = rt.load_spec(&ModelBundle::load(dir.path()).unwrap()).unwrap_err();
    assert!(matches!(&e, Error::Unavailable(m) if m.contains("coreml: not a Mac")), "{e}");
}

#[test]
fn a_bare_artifact_is_routed_with_the_schema_its_engine_reports() {
    // No manifest, no schema: the first engine that prepares it says what it takes.
    let artifact = inference_api::ModelArtifact::from_path("/nonexistent/tiny.mlpackage").unwrap();
    let primary = FaultyEngine::new("primary");
    primary.set_fault(runtime::testing::Fault::Error(Error::Runtime("device lost".into())));
    let rt = Runtime::builder()
        .engine(Arc::new(primary))
        .engine(Arc::new(FaultyEngine::new("candle-cpu")))
        .build();
    let model = rt.load_artifact(artifact).unwrap();
    assert_eq!(model.name(), "tiny");
    assert_eq!(model.io_schema().inputs[0].name, "input");
    let inputs = inference_api::NamedTensors::new()
        .with("input", inference_api::Tensor::from_f32([1, 4], vec![0.5; 4]).unwrap());
    let (out, report) = model.run(inputs).unwrap();
    assert_eq!((report.engine.as_str(), report.fell_back), ("candle-cpu", true));
    assert_eq!(out.get("output").unwrap().shape(), [1, 10]);
    // Bad input is refused against the reported schema.
    let wrong = inference_api::NamedTensors::new()
        .with("input", inference_api::Tensor::from_f32([1, 3], vec![0.5; 3]).unwrap());
    let e = model.run(wrong).unwrap_err();
    assert_eq!(e.kind(), "invalid_input", "{e}");
}
