//! Malformed and truncated packages: each is an error naming the file and the problem.

use std::path::{Path, PathBuf};

use coreml_format::proto::mil_spec;
use coreml_format::{FormatError, MlModel, proto};
use prost::Message;

const LITE0: &str = "efficientnet_lite0/efficientnet_lite0.mlpackage";

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel)
}

/// A writable copy of the Lite0 package in a temporary folder.
fn copy_package() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixture(LITE0);
    let dst = dir.path().join("m.mlpackage");
    for rel in [
        "Manifest.json",
        "Data/com.apple.CoreML/model.mlmodel",
        "Data/com.apple.CoreML/weights/weight.bin",
    ] {
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src.join(rel), &to).expect("copy");
    }
    (dir, dst)
}

fn weight_bin(pkg: &Path) -> PathBuf {
    pkg.join("Data/com.apple.CoreML/weights/weight.bin")
}

fn spec_file(pkg: &Path) -> PathBuf {
    pkg.join("Data/com.apple.CoreML/model.mlmodel")
}

/// Resolves every const of `main`; returns the first error.
fn resolve_all(m: &MlModel) -> Result<usize, FormatError> {
    let main = m.main_function()?;
    let mut n = 0;
    for op in &main.block.operations {
        if let Some(v) = op.const_value() {
            m.resolve(v)?;
            n += 1;
        }
    }
    Ok(n)
}

fn assert_names(e: &FormatError, file: &str, words: &[&str]) {
    let s = e.to_string();
    assert!(e.path().ends_with(file), "error should name {file}: {s}");
    assert!(s.contains(file.rsplit('/').next().unwrap_or(file)), "{s}");
    for w in words {
        assert!(s.contains(w), "error should say `{w}`: {s}");
    }
}

/// Rewrites the spec of a package copy.
fn edit_spec(pkg: &Path, f: impl FnOnce(&mut mil_spec::Program)) {
    let bytes = std::fs::read(spec_file(pkg)).expect("read spec");
    let mut spec = proto::Model::decode(bytes.as_slice()).expect("decode");
    match spec.r#type.as_mut() {
        Some(proto::model::Type::MlProgram(p)) => f(p),
        _ => panic!("not an ML Program"),
    }
    std::fs::write(spec_file(pkg), spec.encode_to_vec()).expect("write spec");
}

/// Sets the blob offset of the first blob-backed const of `main`.
fn set_first_blob_offset(p: &mut mil_spec::Program, offset: u64) {
    use mil_spec::value::Value as V;
    let main = p.functions.get_mut("main").expect("main");
    let block = main.block_specializations.values_mut().next().expect("block");
    for op in &mut block.operations {
        if let Some(val) = op.attributes.get_mut("val")
            && let Some(V::BlobFileValue(b)) = val.value.as_mut()
        {
            b.offset = offset;
            return;
        }
    }
    panic!("no blob const");
}

#[test]
fn intact_copy_resolves() {
    let (_d, pkg) = copy_package();
    let m = MlModel::open(&pkg).expect("open");
    assert!(resolve_all(&m).expect("resolve") > 100);
}

#[test]
fn truncated_weight_file() {
    let (_d, pkg) = copy_package();
    let w = weight_bin(&pkg);
    let bytes = std::fs::read(&w).expect("read");
    std::fs::write(&w, &bytes[..bytes.len() / 2]).expect("truncate");
    let m = MlModel::open(&pkg).expect("the spec is fine; weights load lazily");
    let e = resolve_all(&m).expect_err("truncated");
    assert_names(&e, "weights/weight.bin", &["past the end", "truncated"]);
    // Shorter than the header.
    std::fs::write(&w, &bytes[..10]).expect("truncate");
    let m = MlModel::open(&pkg).expect("open");
    let e = resolve_all(&m).expect_err("truncated");
    assert_names(&e, "weights/weight.bin", &["header"]);
}

#[test]
fn bad_sentinel() {
    let (_d, pkg) = copy_package();
    let w = weight_bin(&pkg);
    let mut bytes = std::fs::read(&w).expect("read");
    bytes[64..68].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    std::fs::write(&w, &bytes).expect("write");
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("bad sentinel");
    assert_names(&e, "weights/weight.bin", &["sentinel", "0x12345678", "offset 64"]);
}

#[test]
fn wrong_blob_dtype_and_data_offset_past_end() {
    let (_d, pkg) = copy_package();
    let w = weight_bin(&pkg);
    let orig = std::fs::read(&w).expect("read");
    let mut bytes = orig.clone();
    bytes[68..72].copy_from_slice(&2u32.to_le_bytes()); // fp32
    std::fs::write(&w, &bytes).expect("write");
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("dtype");
    assert_names(&e, "weights/weight.bin", &["holds fp32", "declares fp16"]);

    let mut bytes = orig;
    bytes[80..88].copy_from_slice(&(u64::MAX - 8).to_le_bytes()); // data offset
    std::fs::write(&w, &bytes).expect("write");
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("data offset");
    assert_names(&e, "weights/weight.bin", &["past the end"]);
}

#[test]
fn blob_offset_past_end_of_file() {
    let (_d, pkg) = copy_package();
    edit_spec(&pkg, |p| set_first_blob_offset(p, 1 << 40));
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("offset");
    assert_names(&e, "weights/weight.bin", &["offset 1099511627776", "outside the file"]);
    edit_spec(&pkg, |p| set_first_blob_offset(p, u64::MAX));
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("offset");
    assert_names(&e, "weights/weight.bin", &["outside the file"]);
}

#[test]
fn missing_weight_file_and_escaping_names() {
    let (_d, pkg) = copy_package();
    std::fs::remove_file(weight_bin(&pkg)).expect("rm");
    let e = resolve_all(&MlModel::open(&pkg).expect("open")).expect_err("missing");
    assert!(matches!(e, FormatError::Io { .. }), "{e}");
    assert!(e.to_string().contains("weight.bin"), "{e}");
    let m = MlModel::open(fixture(LITE0)).expect("open");
    let e = m.weights().path_of("@model_path/../../../etc/passwd").expect_err("escape");
    assert!(e.to_string().contains("inside the model"), "{e}");
    assert!(m.weights().path_of("/etc/passwd").is_err());
}

#[test]
fn missing_manifest() {
    let (_d, pkg) = copy_package();
    std::fs::remove_file(pkg.join("Manifest.json")).expect("rm");
    let e = MlModel::open(&pkg).expect_err("no manifest");
    assert!(matches!(e, FormatError::Io { .. }), "{e}");
    assert_names(&e, "Manifest.json", &["cannot read"]);
    let api: inference_api::Error = e.into();
    assert_eq!(api.kind(), "io");
    assert!(api.to_string().contains("Manifest.json"), "{api}");
}

#[test]
fn bad_manifests() {
    let (_d, pkg) = copy_package();
    let man = pkg.join("Manifest.json");
    for (text, words) in [
        ("{ not json", &["not JSON"][..]),
        (r#"{"itemInfoEntries": {}}"#, &["rootModelIdentifier"][..]),
        (r#"{"rootModelIdentifier": "x", "itemInfoEntries": {}}"#, &["no path", "`x`"][..]),
        (
            r#"{"rootModelIdentifier": "x", "itemInfoEntries": {"x": {"path": "../../m"}}}"#,
            &["not a path inside"][..],
        ),
    ] {
        std::fs::write(&man, text).expect("write");
        let e = MlModel::open(&pkg).expect_err(text);
        assert_names(&e, "Manifest.json", words);
    }
}

#[test]
fn garbage_spec() {
    let (_d, pkg) = copy_package();
    let spec = spec_file(&pkg);
    let orig = std::fs::read(&spec).expect("read");
    for bytes in [
        b"this is not a protobuf, just text \xff\xff\xff\xff".to_vec(),
        vec![0u8; 100],
        Vec::new(),
        orig[..orig.len() / 2].to_vec(),
    ] {
        std::fs::write(&spec, &bytes).expect("write");
        let e = MlModel::open(&pkg).expect_err("garbage");
        assert!(matches!(e, FormatError::Malformed { .. }), "{e}");
        assert_names(&e, "com.apple.CoreML/model.mlmodel", &[]);
        let api: inference_api::Error = e.into();
        assert_eq!(api.kind(), "load");
        assert!(api.to_string().contains("model.mlmodel"), "{api}");
    }
}

#[test]
fn program_errors_name_the_op() {
    let (_d, pkg) = copy_package();
    edit_spec(&pkg, |p| {
        let main = p.functions.get_mut("main").expect("main");
        main.opset = "NoSuchOpset".into();
    });
    let e = MlModel::open(&pkg).expect_err("bad opset");
    assert_names(&e, "model.mlmodel", &["NoSuchOpset", "function `main`"]);

    let (_d2, pkg) = copy_package();
    edit_spec(&pkg, |p| {
        let main = p.functions.get_mut("main").expect("main");
        let block = main.block_specializations.values_mut().next().expect("block");
        let op = block.operations.iter_mut().find(|o| o.r#type == "const").expect("const");
        op.attributes.remove("val");
    });
    let e = MlModel::open(&pkg).expect_err("const without val");
    assert_names(&e, "model.mlmodel", &["operation #0", "`const`", "without a `val`"]);
}

#[test]
fn legacy_single_file_opens_with_weights_beside_it() {
    let m = MlModel::open(fixture(LITE0).join("Data/com.apple.CoreML/model.mlmodel"))
        .expect("open .mlmodel");
    assert_eq!(m.format(), inference_api::ArtifactFormat::MlModel);
    assert!(resolve_all(&m).expect("resolve") > 100);
    let e = MlModel::open(fixture("no/such.mlmodel")).expect_err("missing");
    assert!(matches!(e, FormatError::Io { .. }) && e.to_string().contains("such.mlmodel"));
}

#[test]
fn undefined_variables_are_refused() {
    use mil_spec::argument::binding::Binding;
    let (_d, pkg) = copy_package();
    edit_spec(&pkg, |p| {
        let main = p.functions.get_mut("main").expect("main");
        let block = main.block_specializations.values_mut().next().expect("block");
        let op = block.operations.iter_mut().find(|o| o.r#type == "conv").expect("conv");
        let x = op.inputs.get_mut("x").expect("x");
        x.arguments[0].binding = Some(Binding::Name("nowhere".into()));
    });
    let e = MlModel::open(&pkg).expect_err("undefined");
    assert_names(&e, "model.mlmodel", &["`conv`", "input `x` refers to `nowhere`"]);

    let (_d2, pkg) = copy_package();
    edit_spec(&pkg, |p| {
        let main = p.functions.get_mut("main").expect("main");
        let block = main.block_specializations.values_mut().next().expect("block");
        block.outputs = vec!["ghost".into()];
    });
    let e = MlModel::open(&pkg).expect_err("undefined output");
    assert_names(&e, "model.mlmodel", &["block output `ghost`"]);
}

#[test]
fn compiled_models_are_refused_clearly() {
    let e = MlModel::open("some/model.mlmodelc").expect_err("compiled");
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("model.mlmodelc") && e.to_string().contains(".mlpackage"));
}

#[test]
fn models_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MlModel>();
    assert_send_sync::<coreml_format::Program>();
}
