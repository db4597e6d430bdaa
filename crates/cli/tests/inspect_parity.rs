//! `infer inspect` snapshots on the fixtures, and `infer run` / `classify` / `parity` on a bare
//! Core ML package, through the built binary.

mod common;

use common::{infer, root};

const LITE0_PKG: &str = "../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage";
const FASTVIT_PKG: &str = "../shared/fixtures/fastvit_t8/fastvit_t8.mlpackage";

fn inspect(args: &[&str]) -> String {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    let (ok, out, err) = infer(&all);
    assert!(ok, "infer {all:?} failed: {err}");
    out
}

#[test]
fn inspect_lite0_package() {
    insta::assert_snapshot!(inspect(&[LITE0_PKG]));
}

#[test]
fn inspect_fastvit_package() {
    insta::assert_snapshot!(inspect(&[FASTVIT_PKG]));
}

#[test]
fn inspect_lite0_package_json() {
    let v: serde_json::Value =
        serde_json::from_str(&inspect(&[LITE0_PKG, "--json"])).expect("json");
    insta::assert_json_snapshot!(v);
}

#[test]
fn inspect_manifest_folder() {
    insta::assert_snapshot!(inspect(&["models/efficientnet-lite0"]));
}

#[test]
fn inspect_safetensors_file() {
    insta::assert_snapshot!(inspect(&["models/efficientnet-lite0/efficientnet-lite0.safetensors"]));
}

#[test]
fn inspect_refuses_other_files() {
    let (ok, _, err) = infer(&["inspect", "models/efficientnet-lite0/labels.txt"]);
    assert!(!ok);
    assert!(err.contains("cannot inspect") && err.contains(".mlpackage"), "{err}");
}

#[test]
fn classify_and_run_take_a_package() {
    let (ok, out, err) = infer(&["classify", "--model", LITE0_PKG, "--top", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("tiger cat") && out.contains("espresso"), "{out}");
    let input = "../shared/fixtures/efficientnet_lite0/reference/chelsea.safetensors";
    let (ok, out, err) = infer(&["run", LITE0_PKG, "--input", input]);
    assert!(ok, "{err}");
    assert!(out.contains("logits [1, 1000] f32"), "{out}");
}

#[test]
fn parity_native_vs_package_passes_and_mismatched_inputs_fail() {
    let (ok, out, err) =
        infer(&["parity", "models/efficientnet-lite0", LITE0_PKG, "--n", "2", "--seed", "11"]);
    assert!(ok, "{out}\n{err}");
    for col in ["max_abs", "max_rel", "rmse", "cosine", "top1", "top5", "tolerance fp16"] {
        assert!(out.contains(col), "{col} missing: {out}");
    }
    // fp16 weights cannot meet the `exact` budget: the table row is printed, the exit is non-zero.
    let (ok, out, err) = infer(&[
        "parity",
        "models/efficientnet-lite0",
        LITE0_PKG,
        "--n",
        "1",
        "--tolerance",
        "exact",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("EXCEEDED"), "{out}");
    assert!(err.contains("exceeded the exact tolerance"), "{err}");
    let (ok, _, err) = infer(&["parity", LITE0_PKG, FASTVIT_PKG, "--n", "1"]);
    assert!(!ok);
    assert!(err.contains("take different inputs"), "{err}");
}

#[test]
fn classify_takes_a_package_whose_input_is_an_image() {
    // A BGR image feature with scale and bias: classify hands it the cropped u8 RGB photo (the
    // package applies its own colour layout and normalisation), not normalised float planes.
    let pkg = "crates/backend-candle/tests/image_inputs/bgr_scale_bias.mlpackage";
    let (ok, out, err) = infer(&["classify", "--model", pkg, "--top", "2"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("chelsea") && out.contains("coffee"), "{out}");
    let gray = "crates/backend-candle/tests/image_inputs/gray_scale.mlpackage";
    let (ok, _, err) = infer(&["classify", "--model", gray]);
    assert!(!ok);
    assert!(err.contains("grayscale") && err.contains("infer run"), "{err}");
}

#[test]
fn an_image_package_made_a_folder_keeps_its_colour_layout() {
    // `manifest init` records the image input as u8 [H, W, 3] (a manifest has no image kind);
    // the folder must still classify photos and hand the executor the package's BGR layout, so
    // `infer run` on the folder and on the bare package write the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("crates/backend-candle/tests/image_inputs/bgr_scale_bias.mlpackage");
    let pkg = dir.path().join("bgr_scale_bias.mlpackage");
    common::copy_dir(&src, &pkg);
    let (d, p) = (dir.path().to_str().unwrap(), pkg.to_str().unwrap());
    let (ok, out, err) = infer(&["manifest", "init", "--model", p]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("carries its own normalisation") || out.contains("carries its own"));
    let (ok, out, err) = infer(&["classify", "--model", d, "--top", "1"]);
    assert!(ok, "{out}\n{err}");
    let input = "crates/backend-candle/tests/image_inputs/bgr_scale_bias.safetensors";
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    for (model, dest) in [(d, &a), (p, &b)] {
        let (ok, _, err) =
            infer(&["run", "--model", model, "--input", input, "--output", dest.to_str().unwrap()]);
        assert!(ok, "{err}");
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn inspect_shows_a_flexible_output_with_the_rank_the_program_returns() {
    let pkg = "crates/backend-candle/tests/op_packages/flexible_range_hw.mlpackage";
    let out = inspect(&[pkg]);
    assert!(out.contains("[1, 3, 8..=64, 8..=64]"), "{out}");
    assert!(out.contains("output       f32  [1, 2, 1.., 1..]"), "{out}");
}
