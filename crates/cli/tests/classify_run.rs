//! End-to-end checks of `infer classify` and `infer run` on the bundled model and the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use inference_api::{Drift, tolerance, top_k};

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A failed command: non-zero exit and exactly one line on stderr, no panic text.
fn assert_one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure, stdout: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "stderr should be one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

#[test]
fn classify_without_arguments_labels_the_bundled_photos() {
    let o = infer(&["classify", "--top", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let chelsea = out.split("chelsea.png").nth(1).expect("chelsea section");
    let first = chelsea.lines().nth(1).expect("a ranked line");
    assert!(
        ["tiger cat", "tabby", "Egyptian cat"].iter().any(|l| first.contains(l)),
        "chelsea top-1 line: {first}"
    );
    let coffee = out.split("coffee.png").nth(1).expect("coffee section");
    assert!(coffee.lines().nth(1).unwrap_or("").contains("espresso"), "{out}");
    assert!(out.contains("candle-cpu"), "{out}");
}

#[test]
fn classify_json_has_classes_and_probabilities() {
    let o = infer(&["classify", "models/samples/coffee.png", "--json", "--top", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let top = &v["results"][0]["top"][0];
    assert_eq!(top["class"], 967);
    assert_eq!(top["label"], "espresso");
    assert!(top["probability"].as_f64().unwrap() > 0.9);
}

#[test]
fn run_writes_logits_matching_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["chelsea", "coffee"] {
        let reference = root()
            .join(format!("../shared/fixtures/efficientnet_lite0/reference/{name}.safetensors"));
        let out_path = dir.path().join(format!("{name}.out.safetensors"));
        let o = infer(&[
            "run",
            "models/efficientnet-lite0",
            "--input",
            reference.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("logits [1, 1000] f32"), "{}", stdout(&o));
        let want_bytes = std::fs::read(&reference).unwrap();
        let want = safetensors::SafeTensors::deserialize(&want_bytes).unwrap();
        let got_bytes = std::fs::read(&out_path).unwrap();
        let got = safetensors::SafeTensors::deserialize(&got_bytes).unwrap();
        let want = f32s(want.tensor("logits").unwrap().data());
        let got = f32s(got.tensor("logits").unwrap().data());
        let d = Drift::between(&got, &want);
        assert!(d.max_abs <= tolerance::FP32.max_abs, "{name}: {d:?}");
        assert_eq!(top_k(&got, 5), top_k(&want, 5));
    }
}

#[test]
fn missing_and_truncated_images_are_one_line_errors() {
    let e = assert_one_line_error(&infer(&["classify", "no/such/photo.png"]));
    assert!(e.contains("no/such/photo.png"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join("models/samples/coffee.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = assert_one_line_error(&infer(&["classify", cut.to_str().unwrap()]));
    assert!(e.contains("cut.png") && e.contains("decode"), "{e}");
}

#[test]
fn corrupt_model_and_wrong_inputs_are_one_line_errors() {
    // A copy of the bundled model with one byte of the weights changed.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("models/efficientnet-lite0");
    for f in ["manifest.toml", "labels.txt", "efficientnet-lite0.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let w = dir.path().join("efficientnet-lite0.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&w, bytes).unwrap();
    let e = assert_one_line_error(&infer(&["classify", "--model", dir.path().to_str().unwrap()]));
    assert!(e.contains("integrity") && e.contains("efficientnet-lite0.safetensors"), "{e}");

    // An input file without the tensor the model needs.
    let fastvit_ref = root().join("../shared/fixtures/fastvit_t8/reference/noise1.safetensors");
    let e = assert_one_line_error(&infer(&[
        "run",
        "models/efficientnet-lite0",
        "--input",
        fastvit_ref.to_str().unwrap(),
    ]));
    assert!(
        e.contains("input") && e.contains("[1, 3, 224, 224]") && e.contains("[1, 3, 256, 256]"),
        "{e}"
    );
}
