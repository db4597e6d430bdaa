//! docs/cli-json.md and the binary agree: each `--json` command writes exactly one document
//! on stdout with the documented top-level fields and `schema_version`; exit statuses are the
//! documented ones; a closed pipe ends quietly; `infer manifest init` makes a copied fixture
//! package a model folder that classifies and runs like the package itself.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LITE0_PKG: &str = "../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage";

use common::root;

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the infer binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn docs() -> String {
    std::fs::read_to_string(root().join("docs/cli-json.md")).expect("docs/cli-json.md")
}

/// The field names (first column, in backticks) of the first table under `## {section}`.
fn documented_fields(section: &str) -> BTreeSet<String> {
    let doc = docs();
    let body = doc
        .split(&format!("\n## {section}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/cli-json.md has no `## {section}`"));
    body.lines()
        .skip_while(|l| !l.starts_with("| field"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap_or("").trim().trim_matches('`').to_string())
        .collect()
}

fn documented_schema_version() -> u64 {
    let doc = docs();
    let at = doc.find("currently **").expect("the schema version in the docs") + 12;
    doc[at..].split("**").next().unwrap().parse().expect("a number")
}

/// Stdout is exactly one JSON object (serde rejects trailing text), with the documented
/// fields, version and command.
fn check_document(o: &Output, section: &str) -> serde_json::Value {
    assert!(o.status.success(), "{section}: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{section}: stdout is not one JSON document ({e}):\n{}", text(&o.stdout))
    });
    let got: BTreeSet<String> = v.as_object().expect("an object").keys().cloned().collect();
    assert_eq!(got, documented_fields(section), "{section}: fields differ from docs/cli-json.md");
    assert_eq!(v["schema_version"], documented_schema_version());
    assert_eq!(v["command"], section);
    v
}

#[test]
fn every_json_command_matches_the_docs() {
    let o = infer(&["classify", "models/samples/coffee.png", "--json", "--stats", "--top", "2"]);
    let v = check_document(&o, "classify");
    assert_eq!(v["results"][0]["top"][0]["label"], "espresso");
    assert!(text(&o.stderr).contains("loaded on"), "the human line goes to stderr");

    let o = infer(&["inspect", "--model", LITE0_PKG, "--json"]);
    let v = check_document(&o, "inspect");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 224, 224]));

    let o = infer(&["doctor", "--json"]);
    check_document(&o, "doctor");

    let o = infer(&["bench", "--iters", "2", "--warmup", "0", "--threads", "1", "--json", "-"]);
    let v = check_document(&o, "bench");
    assert_eq!(v["iters"], 2);
    assert!(text(&o.stderr).contains("latency"), "the text report goes to stderr");

    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_fixture_package(dir.path());
    let o = infer(&["manifest", "init", pkg.to_str().unwrap(), "--json"]);
    let v = check_document(&o, "manifest init");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 1000]));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // About 100 KB of JSON, more than a pipe buffers: the write meets the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["classify", "models/samples/coffee.png", "--json", "--top", "1000"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "status {status:?}, stderr {err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}

#[test]
fn exit_statuses_are_the_documented_ones() {
    // A missing photo is found before the model (which does not exist either) is looked at.
    let o = infer(&["classify", "no-such-photo.png", "--model", "no-such-model"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no-such-photo.png"), "{}", text(&o.stderr));

    // Likewise a missing input tensor file for `infer run`.
    let o = infer(&["run", "--model", "no-such-model", "--input", "no-such-input.safetensors"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no-such-input.safetensors"), "{}", text(&o.stderr));

    for args in [["classify", "--top", "0"], ["classify", "--threads", "0"]] {
        let o = infer(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("at least 1"), "{}", text(&o.stderr));
    }

    let empty = tempfile::tempdir().unwrap();
    let o = infer(&[
        "classify",
        "models/samples/coffee.png",
        "--model",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));

    let o = infer(&[
        "parity",
        "--model",
        "models/efficientnet-lite0",
        "--against",
        LITE0_PKG,
        "--n",
        "1",
        "--tolerance",
        "exact",
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(6), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stderr).contains("exceeded the exact tolerance"), "{}", text(&o.stderr));
}

#[test]
fn a_batch_reports_each_failed_photo_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    for p in ["chelsea.png", "coffee.png"] {
        std::fs::copy(root().join("models/samples").join(p), dir.path().join(p)).unwrap();
    }
    std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
    let o = infer(&["classify", dir.path().to_str().unwrap(), "--json", "--top", "1"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(v["failed"], 1);
    assert!(results[0]["error"].as_str().unwrap().contains("broken.png"), "{}", results[0]);
    assert_eq!(results[2]["top"][0]["label"], "espresso");
    assert!(text(&o.stderr).contains("1 of 3 photos"), "{}", text(&o.stderr));
}

#[test]
fn a_bare_package_is_labelled_as_what_it_is() {
    let o = infer(&["classify", "models/samples/coffee.png", "--model", LITE0_PKG, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"]["name"], "efficientnet_lite0");
    assert_ne!(v["model"]["version"], "0.1.0", "the bundled model's version");
    assert_ne!(v["model"]["license"], "Apache-2.0", "the bundled model's licence");
}

/// A copy of the Lite0 fixture package and the bundled labels in `dir`; returns the package.
fn copy_fixture_package(dir: &Path) -> PathBuf {
    let pkg = dir.join("efficientnet_lite0.mlpackage");
    common::copy_dir(&root().join(LITE0_PKG), &pkg);
    std::fs::copy(root().join("models/efficientnet-lite0/labels.txt"), dir.join("labels.txt"))
        .unwrap();
    pkg
}

#[test]
fn manifest_init_makes_a_package_a_model_folder_in_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_fixture_package(dir.path());
    let d = dir.path().to_str().unwrap();
    let o = infer(&[
        "manifest",
        "init",
        pkg.to_str().unwrap(),
        "--preprocess-from",
        "models/efficientnet-lite0",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The printed folder hash is the package's hash as the manifest crate computes it.
    let (hash, size) = model_manifest::sha256_path(&pkg).unwrap();
    let out = text(&o.stdout);
    assert!(out.contains(&hash) && out.contains(&size.to_string()), "{out}");

    // A second init does not overwrite the user's edits without --force.
    let again = infer(&["manifest", "init", pkg.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("--force"), "{}", text(&again.stderr));

    // The folder classifies the photo as the package does, labels included.
    let o = infer(&["classify", "models/samples/coffee.png", "--model", d, "--json", "--top", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"][0]["top"][0]["label"], "espresso");
    assert_eq!(v["model"]["name"], "efficientnet_lite0");

    // `infer run` on the folder writes the same logits as on the bare package.
    let input = "../shared/fixtures/efficientnet_lite0/reference/coffee.safetensors";
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    for (model, dest) in [(d, &a), (pkg.to_str().unwrap(), &b)] {
        let o = infer(&[
            "run",
            "--model",
            model,
            "--input",
            input,
            "--output",
            dest.to_str().unwrap(),
            "--threads",
            "1",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // Changing the package afterwards is caught by the hash the manifest recorded.
    let weights = std::fs::read_dir(pkg.join("Data/com.apple.CoreML/weights"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let o = infer(&["classify", "models/samples/coffee.png", "--model", d]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("integrity"), "{}", text(&o.stderr));
}

#[test]
fn manifest_init_on_safetensors_records_the_hash_the_bundled_manifest_has() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("models/efficientnet-lite0");
    let weights = dir.path().join("efficientnet-lite0.safetensors");
    std::fs::copy(src.join("efficientnet-lite0.safetensors"), &weights).unwrap();
    let w = weights.to_str().unwrap();
    // Without --arch a weights-only file is a usage error.
    assert_eq!(infer(&["manifest", "init", w]).status.code(), Some(2));
    let o = infer(&["manifest", "init", w, "--arch", "efficientnet-lite0", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The hash `cargo xtask import-weights` recorded for the same file.
    let bundled = model_manifest::ModelBundle::load(&src).unwrap().manifest;
    let want = bundled.weights().unwrap();
    assert_eq!(v["files"][0]["sha256"], want.sha256.as_str());
    assert_eq!(v["files"][0]["size"], want.size);
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 224, 224]));
    let o = infer(&[
        "run",
        "--model",
        dir.path().to_str().unwrap(),
        "--input",
        "../shared/fixtures/efficientnet_lite0/reference/coffee.safetensors",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}
