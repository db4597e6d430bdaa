//! Reads the real `.mlpackage` fixtures: schema, metadata, program, op histogram, every const.

use std::collections::BTreeMap;
use std::path::PathBuf;

use coreml_format::{Argument, ConstData, MlModel, ModelType, ScalarType, ValueType};
use inference_api::{DType, Dim, FeatureKind};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel)
}

fn lite0() -> MlModel {
    MlModel::open(fixture("efficientnet_lite0/efficientnet_lite0.mlpackage")).expect("open lite0")
}

fn fastvit() -> MlModel {
    MlModel::open(fixture("fastvit_t8/fastvit_t8.mlpackage")).expect("open fastvit")
}

fn check_schema(m: &MlModel, side: usize) {
    assert_eq!(m.model_type(), ModelType::MlProgram);
    assert!(m.spec_version() >= 7, "spec version {}", m.spec_version());
    let s = m.io_schema().expect("schema");
    assert_eq!(s.inputs.len(), 1);
    assert_eq!(s.outputs.len(), 1);
    let i = &s.inputs[0];
    assert_eq!(i.name, "input");
    assert_eq!(i.dtype, DType::F32);
    assert_eq!(i.kind, FeatureKind::MultiArray);
    assert_eq!(i.shape, [1, 3, side, side].map(Dim::Fixed).to_vec());
    let o = &s.outputs[0];
    assert_eq!(o.name, "logits");
    assert_eq!(o.dtype, DType::F32);
    assert_eq!(o.fixed_shape(), Some(vec![1, 1000]));
}

/// Resolves every const of `main`, checks counts and dtypes; returns the dtypes of blob consts.
fn check_consts(m: &MlModel) -> BTreeMap<ScalarType, usize> {
    let main = m.main_function().expect("main");
    let mut blob_dtypes = BTreeMap::new();
    // coremltools binds every op input to a named variable (consts included): no inline values,
    // and ops carry no attributes but `name` (consts: `name` and `val`).
    for op in &main.block.operations {
        for args in op.inputs.values() {
            assert!(args.iter().all(|a| matches!(a, Argument::Name(_))), "{}", op.op_type);
        }
        let mut keys: Vec<&str> = op.attributes.keys().map(String::as_str).collect();
        keys.retain(|k| *k != "name" && *k != "val");
        assert!(keys.is_empty(), "{} has attributes {keys:?}", op.op_type);
        assert!(op.blocks.is_empty());
    }
    let mut n = 0;
    for op in main.block.operations.iter().filter(|o| o.op_type == "const") {
        let name = op.output_name().expect("const output");
        let raw = main.const_value(name).expect("const by name");
        let v = m.resolve(raw).expect("resolve");
        assert!(!v.is_blob());
        assert_eq!(v.stored_len(), v.element_count(), "const {name}");
        if let ValueType::Tensor { dtype, .. } = &op.outputs[0].ty {
            assert_eq!(*dtype, v.dtype, "const {name}");
        }
        let (_, shape) = op.outputs[0].ty.fixed_tensor().expect("fixed const type");
        assert_eq!(shape, v.shape, "const {name}");
        if raw.is_blob() {
            *blob_dtypes.entry(v.dtype).or_insert(0) += 1;
            let f = v.to_f32_vec().expect("numeric");
            assert!(f.iter().all(|x| x.is_finite()), "const {name}");
        }
        // The lookup through the model gives the same resolved value.
        assert_eq!(m.const_value(name).expect("lookup"), Some(v));
        n += 1;
    }
    assert!(n > 50, "only {n} consts");
    blob_dtypes
}

#[test]
fn efficientnet_lite0_schema_program_and_weights() {
    let m = lite0();
    check_schema(&m, 224);
    let p = m.program().expect("program");
    let main = p.main().expect("main");
    assert_eq!(main.inputs.len(), 1);
    assert_eq!(main.inputs[0].name, "input");
    assert_eq!(main.block.outputs, ["logits"]);
    let h = p.op_histogram();
    for op in ["conv", "clip", "add", "reduce_mean", "linear", "const"] {
        assert!(h.get(op).copied().unwrap_or(0) > 0, "no {op} in {h:?}");
    }
    let expected: BTreeMap<String, usize> = [
        ("add", 9),
        ("cast", 2),
        ("clip", 33),
        ("const", 431),
        ("conv", 49),
        ("linear", 1),
        ("pad", 5),
        ("reduce_mean", 1),
        ("reshape", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(h, expected);
    let dts = check_consts(&m);
    assert_eq!(dts.keys().copied().collect::<Vec<_>>(), [ScalarType::F16], "{dts:?}");
}

#[test]
fn fastvit_t8_schema_program_and_weights() {
    let m = fastvit();
    check_schema(&m, 256);
    let h = m.program().expect("program").op_histogram();
    let expected: BTreeMap<String, usize> = [
        ("add", 10),
        ("cast", 2),
        ("const", 380),
        ("conv", 52),
        ("gelu", 17),
        ("linear", 1),
        ("mul", 1),
        ("reduce_mean", 2),
        ("relu", 1),
        ("reshape", 1),
        ("sigmoid", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(h, expected);
    let dts = check_consts(&m);
    assert_eq!(dts.keys().copied().collect::<Vec<_>>(), [ScalarType::F16], "{dts:?}");
}

#[test]
fn conv_arguments_are_named_consts() {
    let m = lite0();
    let main = m.main_function().expect("main");
    let conv = main.block.operations.iter().find(|o| o.op_type == "conv").expect("a conv");
    // The stem conv reads `input` cast to fp16 and padded TF-"SAME" style by an explicit pad.
    let x = conv.input_name("x").expect("x is a variable");
    let pad = main.block.producer(x).expect("x has a producer");
    assert_eq!(pad.op_type, "pad");
    let pads = m.const_value(pad.input_name("pad").expect("pad")).expect("ok").expect("const");
    assert_eq!(pads.to_i64_vec(), Some(vec![0, 0, 0, 0, 0, 1, 0, 1]));
    let cast = main.block.producer(pad.input_name("x").expect("x")).expect("cast");
    assert_eq!(cast.op_type, "cast");
    assert_eq!(cast.input_name("x"), Some("input"));
    let w = conv.input_name("weight").expect("weight is a variable");
    let wv = m.const_value(w).expect("resolve").expect("weight is a const");
    assert_eq!(wv.dtype, ScalarType::F16);
    assert_eq!(wv.shape.len(), 4);
    for a in ["strides", "dilations", "groups", "pad_type", "pad"] {
        assert!(matches!(conv.input(a), Some(Argument::Name(_))), "{a} is bound to a const");
        let v = main.const_input(conv, a).unwrap_or_else(|| panic!("conv has no const `{a}`"));
        assert!(!matches!(v.data, ConstData::Blob(_)), "{a} is small");
    }
    assert_eq!(main.const_input(conv, "groups").and_then(|v| v.scalar_i64()), Some(1));
    assert!(main.const_input(conv, "x").is_none(), "x is computed");
    let consts = main.block.consts();
    assert_eq!(consts.len(), 431);
    assert!(consts[w].is_blob());
    let pad_type = m.const_value(conv.input_name("pad_type").expect("name")).expect("ok");
    assert_eq!(pad_type.as_ref().and_then(|v| v.as_str()), Some("valid"));
    let strides = m.const_value(conv.input_name("strides").expect("name")).expect("ok");
    assert_eq!(strides.and_then(|v| v.to_usize_vec()), Some(vec![2, 2]));
}

#[test]
fn summary_serializes_with_histogram_and_weights() {
    let m = lite0();
    let s = m.summary();
    assert_eq!(s.model_type, "mlProgram");
    assert_eq!(s.format, "mlpackage");
    assert_eq!(s.functions, ["main"]);
    assert_eq!(s.op_count, s.op_histogram.values().sum::<usize>());
    let fp16 = s.weights_by_dtype.get("fp16").expect("fp16 weights");
    // EfficientNet-Lite0 has about 4.65 M parameters, stored as fp16.
    assert!((4_000_000..5_000_000).contains(&fp16.elements), "{fp16:?}");
    assert!(s.blob_bytes > 9_000_000 && s.blob_bytes < 9_269_200, "{}", s.blob_bytes);
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["inputs"][0]["spec"]["shape"], serde_json::json!([1, 3, 224, 224]));
    assert!(json["op_histogram"]["conv"].as_u64().unwrap_or(0) > 0);
    assert!(!s.metadata.user_defined.is_empty(), "coremltools records its version");
}
