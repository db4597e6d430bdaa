//! Loading from a manifest folder: the load report keeps each engine's reason.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use inference_api::Error;
use model_manifest::sha256_hex;
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
    let model = rt.load(dir.path()).unwrap();
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
    let e = rt.load(dir.path()).unwrap_err();
    assert!(matches!(&e, Error::Unavailable(m) if m.contains("coreml: not a Mac")), "{e}");
}
