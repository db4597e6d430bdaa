//! Build script: on a Mac with a Swift toolchain, builds the Core ML bridge (`coreml-bridge/`,
//! a SwiftPM package) and puts `libCoreMLBridge.dylib` in the target folder, next to the
//! executables cargo builds, where the loader looks first. Elsewhere (Linux, Windows, a cross
//! build from Linux) it does nothing. Without Swift, or when SwiftPM fails, the build still
//! succeeds: a warning says why, and the reason reaches `infer doctor` through
//! `COREML_BRIDGE_BUILD_NOTE`. Set `COREML_BRIDGE_SKIP_BUILD=1` to skip it (for example when the
//! app ships a bridge built by `cargo xtask build-bridge`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIBRARY: &str = "libCoreMLBridge.dylib";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=COREML_BRIDGE_SKIP_BUILD");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "macos" {
        return;
    }
    if !cfg!(target_os = "macos") {
        note("the bridge is built only when building on a Mac (this is a cross build)");
        return;
    }
    if env::var_os("COREML_BRIDGE_SKIP_BUILD").is_some_and(|v| !v.is_empty() && v != "0") {
        note("COREML_BRIDGE_SKIP_BUILD is set: the bridge was not built by cargo");
        return;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let package = manifest_dir.join("../../coreml-bridge");
    if !package.join("Package.swift").is_file() {
        note(&format!("the bridge sources are not at {}", package.display()));
        return;
    }
    for p in ["Package.swift", "Sources", "include"] {
        println!("cargo:rerun-if-changed={}", package.join(p).display());
    }
    let swift_ok =
        Command::new("swift").arg("--version").output().is_ok_and(|o| o.status.success());
    if !swift_ok {
        warn_and_note(
            "no Swift toolchain (`swift` not found): the Core ML bridge was not built and Core ML \
             is off; install Xcode or the Command Line Tools (`xcode-select --install`) and build \
             again",
        );
        return;
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    let scratch = out_dir.join("swiftpm");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default().as_str() {
        "aarch64" => "arm64",
        "x86_64" => "x86_64",
        other => {
            warn_and_note(&format!("no Core ML bridge for the architecture `{other}`"));
            return;
        }
    };
    let swift = |extra: &[&str]| {
        let mut c = Command::new("swift");
        c.args(["build", "-c", "release", "--arch", arch, "--package-path"])
            .arg(&package)
            .arg("--scratch-path")
            .arg(&scratch)
            .args(extra);
        c
    };
    match swift(&["--product", "CoreMLBridge"]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            warn_and_note(&format!(
                "`swift build` of the Core ML bridge failed ({s}); Core ML is off"
            ));
            return;
        }
        Err(e) => {
            warn_and_note(&format!("cannot run `swift build`: {e}; Core ML is off"));
            return;
        }
    }
    let bin = swift(&["--show-bin-path"]).output().ok().filter(|o| o.status.success());
    let Some(bin) = bin else {
        warn_and_note("`swift build --show-bin-path` failed; Core ML is off");
        return;
    };
    let built = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim()).join(LIBRARY);
    if !built.is_file() {
        warn_and_note(&format!("swift build succeeded but {} is missing", built.display()));
        return;
    }
    // The loader looks here when the library is not next to the executable.
    println!("cargo:rustc-env=COREML_BRIDGE_BUILT={}", built.display());
    // OUT_DIR is <target>/<profile>/build/coreml-sys-<hash>/out: put a copy next to the
    // executables of this profile (what `cargo run` starts and an app bundles).
    if let Some(profile_dir) = out_dir.ancestors().nth(3)
        && let Err(e) = install(&built, profile_dir)
    {
        println!(
            "cargo:warning=could not copy the Core ML bridge to {}: {e}",
            profile_dir.display()
        );
    }
}

/// Copies `lib` into `dir` under a temporary name, then renames it: a running program never
/// sees half a library.
fn install(lib: &Path, dir: &Path) -> std::io::Result<()> {
    let partial = dir.join(format!(".{LIBRARY}.partial"));
    std::fs::copy(lib, &partial)?;
    std::fs::rename(&partial, dir.join(LIBRARY))
}

/// Why the bridge was not built, compiled into the crate for error messages and `doctor`.
fn note(msg: &str) {
    println!("cargo:rustc-env=COREML_BRIDGE_BUILD_NOTE={msg}");
}

fn warn_and_note(msg: &str) {
    println!("cargo:warning={msg}");
    note(msg);
}
