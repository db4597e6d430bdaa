//! `infer doctor` end to end: the text and JSON reports, with and without a bridge library.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn doctor(args: &[&str], cache_home: &Path, bridge: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_infer"));
    cmd.arg("doctor").args(args).env("XDG_CACHE_HOME", cache_home);
    match bridge {
        Some(p) => cmd.env("COREML_BRIDGE_PATH", p),
        None => cmd.env_remove("COREML_BRIDGE_PATH"),
    };
    let out = cmd.output().expect("run infer doctor");
    assert!(out.status.success(), "infer doctor failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A cache folder holding one 1000-byte "compiled model".
fn cache_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let entry = home.path().join("infer-rs/coreml/abc.mlmodelc");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("model.mil"), vec![0u8; 1000]).unwrap();
    home
}

/// Replaces machine-specific values (temp paths, CPU features, thread count, platform).
fn redact(text: &str, home: &Path) -> String {
    let mut out = Vec::new();
    for line in text.replace(&home.display().to_string(), "[CACHE_HOME]").lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let redacted = if t.starts_with("cpu features ") {
            format!("{indent}cpu features     [CPU_FEATURES]")
        } else if t.starts_with("threads ") {
            format!("{indent}threads          [N]")
        } else if t.starts_with("platform ") {
            format!("{indent}platform         [OS ARCH]")
        } else if t.starts_with("infer ") {
            "infer [VERSION] doctor".to_string()
        } else {
            line.replace(
                &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                "[OS ARCH]",
            )
        };
        out.push(redacted);
    }
    out.join("\n")
}

#[test]
fn text_without_bridge_says_why_and_shows_cpu_and_cache() {
    let home = cache_home();
    let text = doctor(&[], home.path(), None);
    assert!(text.contains("coreml      UNAVAILABLE"), "{text}");
    assert!(text.contains("candle-cpu  available"), "{text}");
    assert!(text.contains("cargo xtask build-bridge"), "{text}");
    for f in backend_candle::cpu_features() {
        assert!(text.contains(f), "cpu feature {f} missing: {text}");
    }
    assert!(text.contains("1000 B"), "cache size missing: {text}");
    if cfg!(target_os = "linux") {
        // The Core ML part only: the CPU engine's details grow with the engine.
        let redacted = redact(&text, home.path());
        let coreml = redacted.split("\ncoreml:\n").nth(1).unwrap().split("\ncandle-cpu:").next();
        let head: Vec<&str> = redacted.lines().take(5).collect();
        let snap = format!("{}\n...\ncoreml:\n{}", head.join("\n"), coreml.unwrap());
        insta::assert_snapshot!("doctor_text_no_bridge_linux", snap);
    }
}

#[test]
fn json_without_bridge() {
    let home = cache_home();
    let json: serde_json::Value =
        serde_json::from_str(&doctor(&["--json"], home.path(), None)).expect("valid JSON");
    let engines = json["engines"].as_array().unwrap();
    let names: Vec<&str> = engines.iter().map(|e| e["engine"].as_str().unwrap()).collect();
    assert_eq!(names, ["coreml", "candle-cpu"]);
    assert_eq!(engines[1]["available"], true);
    let c = &json["coreml"];
    assert_eq!(c["bridge_found"], false);
    assert_eq!(c["cache_size_bytes"], 1000);
    assert_eq!(c["cache_exists"], true);
    assert!(c["cache_dir"].as_str().unwrap().starts_with(&home.path().display().to_string()));
    let features: Vec<String> = json["cpu"]["cpu_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> =
        backend_candle::cpu_features().iter().map(|s| s.to_string()).collect();
    assert_eq!(features, expected);
    if cfg!(not(any(target_os = "macos", target_os = "ios"))) {
        assert_eq!(c["available"], false);
        assert!(c["reason"].as_str().unwrap().contains("only on Apple platforms"));
        assert_eq!(c["searched"].as_array().unwrap().len(), 0);
    }
}

#[test]
fn a_missing_bridge_path_is_listed_as_searched() {
    let home = cache_home();
    let missing = home.path().join("nowhere/libCoreMLBridge.dylib");
    let json: serde_json::Value =
        serde_json::from_str(&doctor(&["--json"], home.path(), Some(&missing))).unwrap();
    let c = &json["coreml"];
    assert_eq!(c["bridge_found"], false);
    assert_eq!(c["searched"][0], missing.display().to_string());
    assert!(c["reason"].as_str().unwrap().contains("nowhere"), "{c}");
}

/// The test-support fake bridge built by backend-coreml's build script, when this target dir
/// has one (it does whenever backend-coreml's tests were built on Linux).
fn fake_bridge() -> Option<PathBuf> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_infer"));
    let build = exe.parent()?.join("build");
    std::fs::read_dir(build).ok()?.flatten().find_map(|e| {
        let p = e.path().join("out/fake_bridge/libfake_bridge.so");
        (e.file_name().to_string_lossy().starts_with("backend-coreml-") && p.is_file()).then_some(p)
    })
}

#[test]
fn with_the_fake_bridge_reports_abi_os_build_and_devices() {
    let Some(lib) = fake_bridge() else {
        eprintln!("skipped: no fake bridge in this target dir (build backend-coreml on Linux)");
        return;
    };
    let home = cache_home();
    let text = doctor(&[], home.path(), Some(&lib));
    assert!(text.contains("coreml      available"), "{text}");
    assert!(text.contains(&format!("found at {}", lib.display())), "{text}");
    let abi = coreml_sys::CMB_ABI_VERSION;
    assert!(text.contains(&format!("abi version      {abi} (this build expects {abi})")), "{text}");
    assert!(text.contains("FakeOS"), "{text}");
    assert!(text.contains("neural_engine"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&doctor(&["--json"], home.path(), Some(&lib))).unwrap();
    assert_eq!(json["coreml"]["bridge_found"], true);
    assert_eq!(json["coreml"]["abi_version"], abi);
    assert_eq!(json["coreml"]["bridge_path"], lib.display().to_string());
}
