//! Loading model folders: verification of hashes, missing files and malformed manifests.

use inference_api::{ArtifactFormat, Error};
use model_manifest::{ModelBundle, sha256_hex};

fn manifest(weights_sha: &str, size: usize, extra: &str) -> String {
    format!(
        r#"
name = "tiny"
version = "1"
task = "image-classification"
license = "MIT"
architecture = "tiny-net"
{extra}
[origin]
source = "made in a test"
how = "run the test again"

[[files]]
path = "w.safetensors"
role = "weights"
sha256 = "{weights_sha}"
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

fn folder(weights: &[u8], manifest_text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.safetensors"), weights).unwrap();
    std::fs::write(dir.path().join("manifest.toml"), manifest_text).unwrap();
    dir
}

#[test]
fn good_folder_loads_with_verified_artifact() {
    let w = b"weights";
    let dir = folder(w, &manifest(&sha256_hex(w), w.len(), ""));
    let b = ModelBundle::load(dir.path()).unwrap();
    assert_eq!(b.artifact.format, ArtifactFormat::Safetensors);
    assert_eq!(b.artifact.architecture.as_deref(), Some("tiny-net"));
    assert_eq!(b.io_schema.inputs[0].shape_string(), "[1, 3, 4, 4]");
    assert_eq!(b.manifest.serving.timeout_ms, 2000);
}

#[test]
fn hash_mismatch_is_integrity_naming_file_and_both_hashes() {
    let w = b"weights";
    let recorded = sha256_hex(b"other weights");
    let dir = folder(w, &manifest(&recorded, w.len(), ""));
    let err = ModelBundle::load(dir.path()).unwrap_err();
    match &err {
        Error::Integrity { path, expected, actual } => {
            assert!(path.ends_with("w.safetensors"));
            assert_eq!(expected, &recorded);
            assert_eq!(actual, &sha256_hex(w));
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert!(err.to_string().contains(&recorded));
}

#[test]
fn missing_file_is_io_with_how_to_get_it() {
    let dir = folder(b"x", &manifest(&sha256_hex(b"x"), 1, ""));
    std::fs::remove_file(dir.path().join("w.safetensors")).unwrap();
    let err = ModelBundle::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, message, .. } if path.ends_with("w.safetensors") && message.contains("run the test again")),
        "{err}"
    );
}

#[test]
fn malformed_manifests_are_load_errors_naming_the_file() {
    for text in [
        "name = ".to_string(),
        manifest(&sha256_hex(b"x"), 1, "unknown_key = 3"),
        manifest("xyz", 1, ""),
        manifest(&sha256_hex(b"x"), 1, "")
            .replace("dtype = \"f32\"\nshape = [1, 3, 4, 4]", "dtype = \"f64\"\nshape = [1]"),
    ] {
        let dir = folder(b"x", &text);
        let err = ModelBundle::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Load(_)), "{err:?}");
        assert!(err.to_string().contains("manifest.toml"), "{err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let err = ModelBundle::load(empty.path()).unwrap_err();
    assert!(err.to_string().contains("no manifest.toml"), "{err}");
}

#[test]
fn a_manifest_written_as_toml_parses_back_to_the_same_manifest() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/efficientnet-lite0");
    let m = ModelBundle::load(&dir).unwrap().manifest;
    let text = m.to_toml().unwrap();
    let back = model_manifest::Manifest::parse(&text, "round trip").unwrap();
    assert_eq!(back, m);
}

#[test]
fn the_bundled_manifest_becomes_a_plain_model_spec() {
    use std::time::Duration;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/efficientnet-lite0");
    let b = ModelBundle::load(dir).unwrap();
    let spec = inference_api::ModelSpec::from(&b);
    assert_eq!(spec.name, b.manifest.name);
    assert_eq!(spec.artifact, b.artifact);
    assert_eq!(spec.io_schema.as_ref(), Some(&b.io_schema));
    let s = &b.manifest.serving;
    assert_eq!(spec.serving.sla, Some(Duration::from_millis(s.sla_ms)));
    assert_eq!(spec.serving.timeout, Duration::from_millis(s.timeout_ms));
    let preferred: Vec<&str> = spec.serving.preferred_engines.iter().map(|e| e.as_str()).collect();
    assert_eq!(preferred, s.preferred_backends);
    assert_eq!(spec.serving.compute_units, s.compute_units);
    assert_eq!(spec.tolerance, inference_api::tolerance::FP16);
}
