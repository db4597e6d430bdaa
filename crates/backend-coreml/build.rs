//! Builds the test-support fake Core ML bridge (tests/fake_bridge) into shared libraries when
//! the target is Linux and the host can run them; tests find them via `COREML_FAKE_BRIDGE_DIR`.
//! Reads the target from CARGO_CFG_TARGET_OS (never #[cfg], which would be the host).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=tests/fake_bridge/fake_bridge.c");
    println!("cargo:rerun-if-changed=../../coreml-bridge/include/coreml_bridge.h");
    println!("cargo:rerun-if-env-changed=CC");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let fake_dir = out_dir.join("fake_bridge");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    let mut built = false;
    if target_os == "linux" && native {
        built = build_fakes(&fake_dir);
    }
    let value = if built { fake_dir.display().to_string() } else { String::new() };
    println!("cargo:rustc-env=COREML_FAKE_BRIDGE_DIR={value}");
}

fn build_fakes(dir: &std::path::Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        println!("cargo:warning=cannot create {}; fake bridge not built", dir.display());
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let variants: [(&str, &[&str]); 3] = [
        ("libfake_bridge.so", &[]),
        ("libfake_bridge_bad_abi.so", &["-DFAKE_ABI_VERSION=999"]),
        ("libfake_bridge_no_predict.so", &["-DFAKE_OMIT_PREDICT"]),
    ];
    for (name, defines) in variants {
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra", "-pthread"])
            .arg("-I../../coreml-bridge/include")
            .args(defines)
            .arg("tests/fake_bridge/fake_bridge.c")
            .arg("-o")
            .arg(dir.join(name))
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                println!(
                    "cargo:warning=building the fake Core ML bridge with `{cc}` failed: {other:?}"
                );
                return false;
            }
        }
    }
    true
}
