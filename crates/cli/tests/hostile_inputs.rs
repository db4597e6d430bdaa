//! What users hand `infer` that used to go wrong (issue 14): thin photos, NaN inputs and
//! weights, outputs to stdout and pipes, wrong-shaped tensors refused from the header.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the infer binary runs")
}

fn one_line_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected failure: {err}");
    // One of the documented statuses (docs/cli-json.md), not a signal or a panic's 101.
    assert!(matches!(o.status.code(), Some(1..=7)), "exit {:?}: {err}", o.status.code());
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    err
}

fn reference(name: &str) -> PathBuf {
    root().join(format!("../shared/fixtures/efficientnet_lite0/reference/{name}.safetensors"))
}

/// A safetensors file holding one f32 tensor.
fn tensor_file(path: &Path, name: &str, shape: &[usize], values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .unwrap();
    std::fs::write(path, safetensors::serialize([(name, view)], None).unwrap()).unwrap();
}

#[test]
fn a_thin_photo_is_a_clear_error_not_an_abort() {
    // F1: a 100000x1 PNG made classify abort on a 19.6 GB allocation.
    // Past the side limit it is refused from the header; within it, by the resize bound.
    let dir = tempfile::tempdir().unwrap();
    for (w, needle) in [(100_000, "downscale it first"), (16_000, "aspect ratio")] {
        let photo = dir.path().join(format!("thin{w}.png"));
        image::GrayImage::new(w, 1).save(&photo).unwrap();
        let e = one_line_error(&infer(&["classify", photo.to_str().unwrap()]));
        assert!(e.contains(needle) && e.contains(&format!("{w}x1")), "{e}");
    }
}

#[test]
fn nan_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nan.safetensors");
    let mut values = vec![0.5f32; 3 * 224 * 224];
    values[10] = f32::NAN;
    values[20] = f32::INFINITY;
    tensor_file(&input, "input", &[1, 3, 224, 224], &values);
    let e = one_line_error(&infer(&[
        "run",
        "models/efficientnet-lite0",
        "--input",
        input.to_str().unwrap(),
    ]));
    assert!(
        e.contains("`input`") && e.contains("2 NaN or infinite") && e.contains("index 10"),
        "{e}"
    );
}

#[test]
fn nan_weights_with_a_matching_hash_fail_the_run() {
    // F4: NaN weights (hash updated to match) gave 1000 NaN logits with exit 0.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("models/efficientnet-lite0");
    std::fs::copy(src.join("labels.txt"), dir.path().join("labels.txt")).unwrap();
    let weights = std::fs::read(src.join("efficientnet-lite0.safetensors")).unwrap();
    let (n, meta) = safetensors::SafeTensors::read_metadata(&weights).unwrap();
    let mut poisoned = weights.clone();
    let infos = meta.tensors();
    let (name, info) = infos
        .iter()
        .filter(|(_, i)| i.dtype == safetensors::Dtype::F32)
        .min_by_key(|(name, _)| name.as_str())
        .unwrap();
    let start = 8 + n + info.data_offsets.0;
    for chunk in poisoned[start..8 + n + info.data_offsets.1].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(dir.path().join("efficientnet-lite0.safetensors"), &poisoned).unwrap();
    let manifest = std::fs::read_to_string(src.join("manifest.toml"))
        .unwrap()
        .replace(&model_manifest::sha256_hex(&weights), &model_manifest::sha256_hex(&poisoned));
    std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
    let e = one_line_error(&infer(&[
        "run",
        dir.path().to_str().unwrap(),
        "--input",
        reference("coffee").to_str().unwrap(),
    ]));
    // The runtime rejects the engine's NaN output (Error::NonFinite) before the CLI's own check.
    assert!(e.contains("non-finite") && e.contains("logits"), "{name}: {e}");
    let photo = "models/samples/coffee.png";
    let e = one_line_error(&infer(&["classify", photo, "--model", dir.path().to_str().unwrap()]));
    assert!(e.contains("non-finite"), "{e}");
    // Over several photos each failure is reported, and the batch ends with exit 7.
    let o = infer(&["classify", "--model", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{err}");
    assert_eq!(err.matches("non-finite").count(), 2, "{err}");
}

#[test]
fn output_dash_writes_safetensors_to_stdout_and_the_summary_to_stderr() {
    let o = infer(&[
        "run",
        "models/efficientnet-lite0",
        "--input",
        reference("coffee").to_str().unwrap(),
        "--output",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = safetensors::SafeTensors::deserialize(&o.stdout).expect("stdout is safetensors");
    assert_eq!(st.tensor("logits").unwrap().shape(), &[1, 1000]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("logits [1, 1000] f32"));
}

#[test]
fn a_wrong_shape_is_refused_before_the_data_is_read() {
    // F5: a big tensor of the wrong shape was read and converted before the schema refused it.
    // This header claims 1 GiB the file does not hold: only a header check names the shape.
    let dir = tempfile::tempdir().unwrap();
    let header =
        br#"{"input":{"dtype":"F32","shape":[1,3,16384,5461],"data_offsets":[0,1073668096]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    let p = dir.path().join("big.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let e = one_line_error(&infer(&[
        "run",
        "models/efficientnet-lite0",
        "--input",
        p.to_str().unwrap(),
    ]));
    assert!(e.contains("[1, 3, 16384, 5461]") && e.contains("[1, 3, 224, 224]"), "{e}");
}
