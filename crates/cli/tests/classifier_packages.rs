//! Classifier packages (`scripts/make_classifier_fixtures.py`) through the built binary:
//! `inspect` shows the labels and what became of the string label output, `classify` on a bare
//! classifier package uses the package's own labels, and `manifest init` writes them out as the
//! folder's labels file.

mod common;

use common::{infer, root};

const DIR: &str = "crates/backend-candle/tests/classifier_packages";

fn labels(case: &str) -> Vec<String> {
    std::fs::read_to_string(root().join(format!("{DIR}/{case}.labels.txt")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn inspect_shows_the_labels_and_says_the_string_label_is_not_a_tensor() {
    let pkg = format!("{DIR}/classifier_string_image.mlpackage");
    let (ok, out, err) = infer(&["inspect", "--model", &pkg]);
    assert!(ok, "{err}");
    assert!(out.contains("classifier: 5 classes, scores in `classLabel_probs`"), "{out}");
    assert!(out.contains("not in the I/O schema"), "{out}");
    assert!(out.contains("classLabel_probs f32  [1, 5]"), "{out}");
    let (ok, out, err) = infer(&["inspect", "--model", &pkg, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<String> = v["classifier"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, labels("classifier_string_image"));
}

#[test]
fn classify_on_a_bare_classifier_package_uses_its_own_labels() {
    let pkg = format!("{DIR}/classifier_string_image.mlpackage");
    let (ok, out, err) = infer(&["classify", "--model", &pkg, "--top", "5", "--json"]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let want = labels("classifier_string_image");
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let top = r["top"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{r}");
        let mut sum = 0.0;
        for p in top {
            let class = p["class"].as_u64().unwrap() as usize;
            assert_eq!(p["label"].as_str().unwrap(), want[class], "{r}");
            sum += p["probability"].as_f64().unwrap();
        }
        assert!((sum - 1.0).abs() < 1e-4, "{r}");
    }
}

#[test]
fn manifest_init_writes_the_classifier_labels_and_classify_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("classifier_string_image.mlpackage");
    common::copy_dir(&root().join(DIR).join("classifier_string_image.mlpackage"), &pkg);
    let (d, p) = (dir.path().to_str().unwrap(), pkg.to_str().unwrap());
    let (ok, out, err) = infer(&["manifest", "init", "--model", p, "--json"]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["labels"], 5, "{v}");
    assert!(v["files"].as_array().unwrap().iter().any(|f| f["role"] == "labels"), "{v}");
    let written = std::fs::read_to_string(dir.path().join("labels.txt")).unwrap();
    let want = labels("classifier_string_image");
    assert_eq!(written.lines().collect::<Vec<_>>(), want);
    let manifest = std::fs::read_to_string(dir.path().join("manifest.toml")).unwrap();
    assert!(manifest.contains("labels.txt"), "{manifest}");

    let (ok, out, err) = infer(&["classify", "--model", d, "--top", "1", "--json"]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in v["results"].as_array().unwrap() {
        let top = &r["top"][0];
        assert_eq!(top["label"].as_str().unwrap(), want[top["class"].as_u64().unwrap() as usize]);
    }
}

#[test]
fn manifest_init_keeps_a_different_labels_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("classifier_int64.mlpackage");
    common::copy_dir(&root().join(DIR).join("classifier_int64.mlpackage"), &pkg);
    std::fs::write(dir.path().join("labels.txt"), "a\nb\nc\nd\n").unwrap();
    let p = pkg.to_str().unwrap();
    let (ok, _, err) = infer(&["manifest", "init", "--model", p]);
    assert!(!ok);
    assert!(err.contains("labels.txt") && err.contains("--force"), "{err}");
    assert!(!dir.path().join("manifest.toml").exists(), "nothing half-written");
    assert_eq!(std::fs::read_to_string(dir.path().join("labels.txt")).unwrap(), "a\nb\nc\nd\n");
    let (ok, out, err) = infer(&["manifest", "init", "--model", p, "--force"]);
    assert!(ok, "{out}\n{err}");
    let written = std::fs::read_to_string(dir.path().join("labels.txt")).unwrap();
    assert_eq!(written.lines().collect::<Vec<_>>(), labels("classifier_int64"));
}

/// `flexible_batch.safetensors`: `input` [3, 3, 12, 12] and PyTorch's `probs` [3, 6].
fn batch_reference() -> (Vec<f32>, Vec<f32>) {
    let bytes = std::fs::read(root().join(DIR).join("flexible_batch.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    (f32s("input"), f32s("probs"))
}

#[test]
fn run_batch_on_a_range_dim_batch_package_matches_per_item_runs_and_pytorch() {
    use inference_api::{ModelArtifact, NamedTensors, Tensor, TensorData};
    let rt = runtime::Runtime::builder()
        .engine(std::sync::Arc::new(backend_candle::CandleEngine::with_threads(1)))
        .build();
    let pkg = root().join(DIR).join("flexible_batch.mlpackage");
    let model = rt.load_artifact(ModelArtifact::from_path(&pkg).unwrap()).unwrap();
    assert!(
        matches!(model.io_schema().inputs[0].shape[0], inference_api::Dim::Range { .. }),
        "{:?}",
        model.io_schema()
    );
    let (x, want) = batch_reference();
    let per = 3 * 12 * 12;
    let items: Vec<NamedTensors> = x
        .chunks_exact(per)
        .map(|c| {
            NamedTensors::new().with(
                "input",
                Tensor::new(vec![1, 3, 12, 12], TensorData::F32(c.to_vec())).unwrap(),
            )
        })
        .collect();
    let batched = model.run_batch(&items, &runtime::RunOptions::default());
    assert_eq!(batched.len(), 3);
    // One stacked call serves all three: they share its report (a call's timing to the ns).
    let totals: Vec<_> = batched.iter().map(|a| a.as_ref().unwrap().1.total).collect();
    assert!(totals.iter().all(|t| *t == totals[0]), "{totals:?}");
    for (k, (item, answer)) in items.iter().zip(&batched).enumerate() {
        let (out, _) = answer.as_ref().expect("batched answer");
        let got = out.get("probs").unwrap();
        assert_eq!(got.shape(), [1, 6]);
        let got = got.to_f32_vec();
        let (single, _) = model.run(item.clone()).unwrap();
        let single = single.get("probs").unwrap().to_f32_vec();
        for (j, ((g, s), w)) in got.iter().zip(&single).zip(&want[k * 6..k * 6 + 6]).enumerate() {
            assert!((g - s).abs() <= 1e-6, "item {k} class {j}: batched {g} vs single {s}");
            assert!((g - w).abs() <= 1e-5, "item {k} class {j}: {g} vs PyTorch {w}");
        }
    }
}
