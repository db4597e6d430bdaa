//! `cargo xtask build-bridge`: builds the Swift Core ML bridge (`coreml-bridge/`) with SwiftPM
//! and copies the dylib to `target/coreml-bridge/`, where `coreml-sys` looks for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// File name of the bridge library; `coreml_sys::LIBRARY_FILE_NAME` must say the same.
const LIBRARY_FILE_NAME: &str = "libCoreMLBridge.dylib";

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

const USAGE: &str = "usage: cargo xtask build-bridge [--debug] [--out DIR]

Builds coreml-bridge/ with `swift build` (release unless --debug) and copies
libCoreMLBridge.dylib to DIR (default: target/coreml-bridge/ in the workspace).";

/// Runs the command with its arguments (everything after `build-bridge`).
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut config = "release";
    let mut out_dir = workspace_root().join("target").join("coreml-bridge");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--debug" => config = "debug",
            "--out" => out_dir = PathBuf::from(it.next().context("--out needs a folder")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if !cfg!(target_os = "macos") {
        bail!(
            "build-bridge needs macOS with Xcode or the Swift toolchain; this is {} {}. \
             Nothing was built. Off Apple platforms the Core ML engine reports itself \
             unavailable and the CPU engine serves",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    let swift_ok =
        Command::new("swift").arg("--version").output().is_ok_and(|o| o.status.success());
    if !swift_ok {
        bail!("`swift` was not found or does not run; install Xcode or `xcode-select --install`");
    }
    let package = workspace_root().join("coreml-bridge");
    println!("building {} ({config})", package.display());
    let status = Command::new("swift")
        .args(["build", "-c", config, "--product", "CoreMLBridge"])
        .current_dir(&package)
        .status()
        .context("running `swift build`")?;
    if !status.success() {
        bail!("`swift build -c {config}` failed in {} ({status})", package.display());
    }
    let bin = Command::new("swift")
        .args(["build", "-c", config, "--show-bin-path"])
        .current_dir(&package)
        .output()
        .context("running `swift build --show-bin-path`")?;
    let bin_dir = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
    let built = bin_dir.join(LIBRARY_FILE_NAME);
    if !built.is_file() {
        bail!("swift build succeeded but {} is missing", built.display());
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // Copy under a temporary name, then rename: a running process never sees half a library.
    let target = out_dir.join(LIBRARY_FILE_NAME);
    let partial = out_dir.join(format!(".{LIBRARY_FILE_NAME}.partial"));
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("installing {}", target.display()))?;
    println!("installed {}", target.display());
    println!(
        "the Core ML engine finds it there; elsewhere, set COREML_BRIDGE_PATH={}",
        target.display()
    );
    Ok(())
}
