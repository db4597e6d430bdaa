//! Model folders whose files are not what they claim (F3, F9): links to devices, FIFOs, link
//! loops, self-pointing folder links, files longer than declared. Each is refused quickly with
//! an error saying what the file is.
#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::Path;

use inference_api::Error;
use model_manifest::{ModelBundle, sha256_hex, sha256_path};

fn manifest(weights: &str, sha: &str, size: u64) -> String {
    format!(
        r#"
name = "tiny"
version = "1"
task = "image-classification"
license = "MIT"

[origin]
source = "made in a test"

[[files]]
path = "{weights}"
role = "weights"
sha256 = "{sha}"
size = {size}

[[inputs]]
name = "input"
dtype = "f32"
shape = [1, 3, 4, 4]

[[outputs]]
name = "logits"
dtype = "f32"
shape = [1, 10]
"#
    )
}

fn folder_with(weights: &str, size: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = manifest(weights, &sha256_hex(b"whatever"), size);
    std::fs::write(dir.path().join("manifest.toml"), text).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let e = ModelBundle::load(dir).unwrap_err();
    assert!(matches!(e, Error::Io { .. } | Error::Integrity { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn weights_linked_to_dev_zero_are_refused_without_reading() {
    let dir = folder_with("w.safetensors", 8);
    symlink("/dev/zero", dir.path().join("w.safetensors")).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("w.safetensors") && e.contains("not a regular file"), "{e}");
}

#[test]
fn a_fifo_as_weights_is_refused_without_blocking() {
    let dir = folder_with("w.safetensors", 8);
    let fifo = dir.path().join("w.safetensors");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let e = load_error(dir.path());
    assert!(e.contains("device, pipe or socket"), "{e}");
}

#[test]
fn a_symlink_loop_is_reported_as_a_loop_not_a_missing_file() {
    // F9: `path.exists()` is false for a loop, so it used to read "file ... is missing".
    let dir = folder_with("w.safetensors", 8);
    symlink("w.safetensors", dir.path().join("w.safetensors")).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("symlink loop") && !e.contains("missing"), "{e}");
}

#[test]
fn self_pointing_folder_links_in_a_package_are_not_followed() {
    // F3: two links to `.` made the walk exponential (it never finished).
    let dir = folder_with("m.mlpackage", 8);
    let pkg = dir.path().join("m.mlpackage");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(pkg.join("Manifest.json"), b"{}").unwrap();
    symlink(".", pkg.join("a")).unwrap();
    symlink(".", pkg.join("b")).unwrap();
    let e = sha256_path(&pkg).unwrap_err().to_string();
    assert!(e.contains("symlink to a folder"), "{e}");
    let e = load_error(dir.path());
    assert!(e.contains("symlink to a folder"), "{e}");
}

#[test]
fn a_file_longer_than_declared_is_an_integrity_error_naming_sizes() {
    let dir = folder_with("w.safetensors", 8);
    std::fs::write(dir.path().join("w.safetensors"), vec![7u8; 1 << 20]).unwrap();
    let e = ModelBundle::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("(8 bytes)") && msg.contains("1048576"), "{msg}");
}

#[test]
fn a_package_larger_than_declared_stops_at_the_limit() {
    let dir = folder_with("m.mlpackage", 8);
    let pkg = dir.path().join("m.mlpackage");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(pkg.join("a"), [1u8; 6]).unwrap();
    std::fs::write(pkg.join("b"), [1u8; 6]).unwrap();
    let e = ModelBundle::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
}

#[test]
fn a_manifest_linked_to_dev_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    symlink("/dev/zero", dir.path().join("manifest.toml")).unwrap();
    let e = ModelBundle::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("manifest.toml") && e.contains("not a regular file"), "{e}");
}
