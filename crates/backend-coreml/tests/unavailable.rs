//! When the bridge is missing, incomplete or of another ABI version, the engine says
//! unavailable and why, and `prepare` returns `Error::Unavailable`.
#![cfg(target_os = "linux")] // the fake bridge is built for Linux targets only (build.rs)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::PathBuf;

use backend_coreml::{CoreMlConfig, CoreMlEngine};
use coreml_sys::SearchPolicy;
use inference_api::{Engine, Error, ModelArtifact, PrepareOptions};

fn engine_at(path: PathBuf) -> CoreMlEngine {
    let dir = std::env::temp_dir().join("coreml-unavailable-test-cache");
    CoreMlEngine::with_config(CoreMlConfig {
        bridge: SearchPolicy::Explicit(path),
        cache_dir: Some(dir),
        ..CoreMlConfig::default()
    })
}

fn assert_unavailable(engine: &CoreMlEngine, needle: &str) {
    let probe = engine.probe();
    assert!(!probe.available);
    let reason = probe.reason.unwrap();
    assert!(reason.contains(needle), "{reason}");
    assert!(reason.contains("cargo xtask build-bridge"), "{reason}");
    let artifact = ModelArtifact::from_path("/models/m.mlmodelc").unwrap();
    let err = engine.prepare(&artifact, &PrepareOptions::default()).err().unwrap();
    assert!(matches!(&err, Error::Unavailable(m) if m.contains(needle)), "{err:?}");
}

#[test]
fn abi_mismatch_is_unavailable_with_both_versions() {
    let engine = engine_at(common::fake_dir().join("libfake_bridge_bad_abi.so"));
    let expected = format!(
        "implements ABI version 999 but this build expects {}",
        coreml_sys::CMB_ABI_VERSION
    );
    assert_unavailable(&engine, &expected);
}

#[test]
fn a_missing_symbol_is_unavailable_naming_it() {
    let engine = engine_at(common::fake_dir().join("libfake_bridge_no_predict.so"));
    assert_unavailable(&engine, "lacks the entry point `cmb_model_predict`");
}

#[test]
fn a_missing_library_is_unavailable() {
    let engine = engine_at(PathBuf::from("/nonexistent/libCoreMLBridge.dylib"));
    assert_unavailable(&engine, "/nonexistent/libCoreMLBridge.dylib");
    assert!(engine.doctor().bridge.is_none());
}

#[test]
fn off_apple_the_default_engine_is_unavailable() {
    if cfg!(any(target_os = "macos", target_os = "ios"))
        || std::env::var_os(coreml_sys::BRIDGE_PATH_ENV).is_some()
    {
        return; // only meaningful on a non-Apple machine with no bridge configured
    }
    let engine = CoreMlEngine::new();
    assert_unavailable(&engine, "Core ML runs only on Apple platforms");
}
