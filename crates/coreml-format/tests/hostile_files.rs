//! Packages whose files are not regular files (F3): links to `/dev/zero`, FIFOs, link loops.
//! Each is refused at once, naming the file, instead of being read for gigabytes or for ever.
#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use coreml_format::MlModel;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage")
}

/// A copy of the fixture package with its spec linked (not copied) to save time.
fn package_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("m.mlpackage");
    let data = pkg.join("Data/com.apple.CoreML");
    std::fs::create_dir_all(data.join("weights")).unwrap();
    let src = fixture();
    std::fs::copy(src.join("Manifest.json"), pkg.join("Manifest.json")).unwrap();
    symlink(src.join("Data/com.apple.CoreML/model.mlmodel"), data.join("model.mlmodel")).unwrap();
    (dir, pkg)
}

fn weights_error(pkg: &Path) -> String {
    let model = MlModel::open(pkg).unwrap();
    model.weights().file("@model_path/weights/weight.bin").unwrap_err().to_string()
}

#[test]
fn weights_linked_to_dev_zero_are_refused_without_reading() {
    let (_dir, pkg) = package_copy();
    symlink("/dev/zero", pkg.join("Data/com.apple.CoreML/weights/weight.bin")).unwrap();
    let e = weights_error(&pkg);
    assert!(e.contains("weight.bin") && e.contains("not a regular file"), "{e}");
}

#[test]
fn a_fifo_spec_is_refused_without_blocking() {
    let (_dir, pkg) = package_copy();
    let spec = pkg.join("Data/com.apple.CoreML/model.mlmodel");
    std::fs::remove_file(&spec).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&spec).status().unwrap().success());
    let e = MlModel::open(&pkg).unwrap_err().to_string();
    assert!(e.contains("model.mlmodel") && e.contains("not a regular file"), "{e}");
}

#[test]
fn a_manifest_linked_to_dev_zero_or_looping_is_named() {
    let (_dir, pkg) = package_copy();
    let manifest = pkg.join("Manifest.json");
    std::fs::remove_file(&manifest).unwrap();
    symlink("/dev/zero", &manifest).unwrap();
    let e = MlModel::open(&pkg).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::remove_file(&manifest).unwrap();
    symlink("Manifest.json", &manifest).unwrap();
    let e = MlModel::open(&pkg).unwrap_err().to_string();
    assert!(e.contains("symlink loop"), "{e}");
}

#[test]
fn a_manifest_over_the_limit_is_refused_by_size() {
    let (_dir, pkg) = package_copy();
    let big = vec![b' '; coreml_format::MAX_PACKAGE_MANIFEST_BYTES as usize + 1];
    std::fs::write(pkg.join("Manifest.json"), big).unwrap();
    let e = MlModel::open(&pkg).unwrap_err().to_string();
    assert!(e.contains("at most 1048576"), "{e}");
}
