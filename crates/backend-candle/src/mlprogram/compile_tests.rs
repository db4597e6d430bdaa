//! Synthetic ML Programs built from `coreml-format` types: conv variants through the compiled
//! plan (shared kernels, pad and activation fusion) against a naive convolution, and
//! prepare-time errors for unsupported ops.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use coreml_format::{
    Argument, Block, ConstData, ConstValue, Function, MilDim, NamedType, Operation, ScalarType,
    ValueType,
};
use proptest::prelude::*;

use super::compile::compile;

fn cv(dtype: ScalarType, shape: Vec<usize>, data: ConstData) -> ConstValue {
    ConstValue { dtype, shape, data }
}
fn ints(v: &[i32]) -> ConstValue {
    cv(ScalarType::I32, vec![v.len()], ConstData::I32(v.to_vec()))
}
fn int(v: i32) -> ConstValue {
    cv(ScalarType::I32, vec![], ConstData::I32(vec![v]))
}
fn string(s: &str) -> ConstValue {
    cv(ScalarType::String, vec![], ConstData::String(vec![s.into()]))
}
fn f16s(v: &[f32], shape: Vec<usize>) -> ConstValue {
    cv(ScalarType::F16, shape, ConstData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect()))
}
fn f32_scalar(v: f32) -> ConstValue {
    cv(ScalarType::F32, vec![], ConstData::F32(vec![v]))
}

fn tensor_type() -> ValueType {
    ValueType::Tensor { dtype: ScalarType::F32, shape: vec![MilDim::Unknown { variadic: true }] }
}

/// A little program builder: named consts as `const` ops, like coremltools writes them.
#[derive(Default)]
struct Prog {
    ops: Vec<Operation>,
}

impl Prog {
    fn konst(&mut self, name: &str, v: ConstValue) -> String {
        let mut attributes = BTreeMap::new();
        attributes.insert("val".to_string(), v);
        self.ops.push(Operation {
            op_type: "const".into(),
            inputs: BTreeMap::new(),
            outputs: vec![NamedType { name: name.into(), ty: tensor_type() }],
            attributes,
            blocks: vec![],
        });
        name.into()
    }

    fn op(&mut self, ty: &str, out: &str, inputs: &[(&str, &str)]) -> String {
        self.ops.push(Operation {
            op_type: ty.into(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![Argument::Name(v.to_string())]))
                .collect(),
            outputs: vec![NamedType { name: out.into(), ty: tensor_type() }],
            attributes: BTreeMap::new(),
            blocks: vec![],
        });
        out.into()
    }

    fn function(self, output: &str) -> Function {
        Function {
            inputs: vec![NamedType { name: "x".into(), ty: tensor_type() }],
            opset: "CoreML7".into(),
            block: Block { inputs: vec![], operations: self.ops, outputs: vec![output.into()] },
            other_blocks: BTreeMap::new(),
            attributes: BTreeMap::new(),
        }
    }
}

fn identity(v: &ConstValue) -> inference_api::Result<ConstValue> {
    Ok(v.clone())
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Naive grouped, strided, dilated convolution with explicit padding `[t, b, l, r]`.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    wt: &[f32],
    (o, k): (usize, usize),
    groups: usize,
    s: usize,
    d: usize,
    [pt, pb, pl, pr]: [usize; 4],
) -> (Vec<f32>, usize, usize) {
    let eff = (k - 1) * d + 1;
    let oh = (h + pt + pb - eff) / s + 1;
    let ow = (w + pl + pr - eff) / s + 1;
    let (cig, opg) = (c / groups, o / groups);
    let mut y = vec![0f32; o * oh * ow];
    for oc in 0..o {
        let g = oc / opg;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0f32;
                for ic in 0..cig {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky * d) as i64 - pt as i64;
                            let ix = (ox * s + kx * d) as i64 - pl as i64;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue;
                            }
                            let xv = x[(g * cig + ic) * h * w + iy as usize * w + ix as usize];
                            acc += xv * wt[((oc * cig + ic) * k + ky) * k + kx];
                        }
                    }
                }
                y[(oc * oh + oy) * ow + ox] = acc;
            }
        }
    }
    (y, oh, ow)
}

fn same_pads(i: usize, k: usize, s: usize, d: usize) -> (usize, usize) {
    let total = ((i.div_ceil(s) - 1) * s + (k - 1) * d + 1).saturating_sub(i);
    (total / 2, total - total / 2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// conv with groups, strides, dilations and each pad type, with a preceding zero `pad` op
    /// (folded into the conv) and a following activation (fused) on some cases: a relu6 clip,
    /// coremltools' hard-swish chain (`thresholded_relu`, `sigmoid_hard`, `mul` in either
    /// operand order) or a lone hard sigmoid.
    #[test]
    fn conv_variants_match_naive(g in 1usize..4, cpg in 1usize..3, opg in 1usize..3, k in 1usize..4,
                                 s in 1usize..3, d in 1usize..3, hw in 4usize..9,
                                 pad_type in 0usize..3, pre_pad: bool, tail in 0usize..4, seed: u64) {
        let (c, o) = (g * cpg, g * opg);
        let x = data(c * hw * hw, seed);
        let wt = data(o * cpg * k * k, seed ^ 7);
        let bias = data(o, seed ^ 9);
        let mut p = Prog::default();
        let mut xin = "x".to_string();
        if pre_pad {
            let pads = p.konst("pp", ints(&[0, 0, 0, 0, 1, 0, 0, 1]));
            let mode = p.konst("pm", string("constant"));
            let val = p.konst("pv", f32_scalar(0.0));
            xin = p.op("pad", "padded", &[("x", "x"), ("pad", &pads), ("mode", &mode), ("constant_val", &val)]);
        }
        let (h0, w0, extra) = if pre_pad { (hw + 1, hw + 1, [1, 0, 0, 1]) } else { (hw, hw, [0; 4]) };
        let (ptype, pads) = match pad_type {
            0 => ("valid", [0; 4]),
            1 => ("custom", [1, 0, 2, 1]),
            _ => {
                let (t, b) = same_pads(h0, k, s, d);
                let (l, r) = same_pads(w0, k, s, d);
                ("same", [t, b, l, r])
            }
        };
        prop_assume!(!(pre_pad && ptype == "same"));
        prop_assume!(h0 + pads[0] + pads[1] > (k - 1) * d);
        let w = p.konst("w", f16s(&wt, vec![o, cpg, k, k]));
        let b = p.konst("b", f16s(&bias, vec![o]));
        let st = p.konst("st", ints(&[s as i32, s as i32]));
        let di = p.konst("di", ints(&[d as i32, d as i32]));
        let gr = p.konst("gr", int(g as i32));
        let pt = p.konst("pt", string(ptype));
        let pd = p.konst("pd", ints(&pads.map(|v| v as i32)));
        let mut out = p.op("conv", "y", &[("x", &xin), ("weight", &w), ("bias", &b), ("strides", &st),
            ("dilations", &di), ("groups", &gr), ("pad_type", &pt), ("pad", &pd)]);
        let (sixth, half) = (p.konst("a6", f32_scalar(1.0 / 6.0)), p.konst("b2", f32_scalar(0.5)));
        let hard = [("alpha", sixth.as_str()), ("beta", half.as_str())];
        match tail {
            1 => {
                let lo = p.konst("lo", f32_scalar(0.0));
                let hi = p.konst("hi", f32_scalar(6.0));
                out = p.op("clip", "z", &[("x", &out), ("alpha", &lo), ("beta", &hi)]);
            }
            2 => {
                let m3 = p.konst("m3", f32_scalar(-3.0));
                let t = p.op("thresholded_relu", "t", &[("x", &out), ("alpha", &m3)]);
                let hs = p.op("sigmoid_hard", "hs", &[("x", &t), hard[0], hard[1]]);
                let (a, b) = if seed % 2 == 0 { (&t, &hs) } else { (&hs, &t) };
                out = p.op("mul", "z", &[("x", a), ("y", b)]);
            }
            3 => out = p.op("sigmoid_hard", "z", &[("x", &out), hard[0], hard[1]]),
            _ => {}
        }
        let f = p.function(&out);
        let plan = compile("main", &f, &identity).expect("compile");
        // Pad folded and the activation fused: one conv step.
        prop_assert_eq!(plan.steps.len(), 1);
        let xt = Tensor::from_vec(x.clone(), (1, c, hw, hw), &Device::Cpu).expect("x");
        let got = plan.run(vec![xt], &|| false, None).expect("run");
        let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() };
        let all = [pads[0] + extra[0], pads[1] + extra[1], pads[2] + extra[2], pads[3] + extra[3]];
        let (mut want, oh, ow) = naive_conv(&x, (c, hw, hw), &round(&wt), (o, k), g, s, d, all);
        let rb = round(&bias);
        for (i, v) in want.iter_mut().enumerate() {
            *v += rb[i / (oh * ow)];
            let hsig = |v: f32| (f64::from(v) / 6.0 + 0.5).clamp(0.0, 1.0) as f32;
            match tail {
                1 => *v = v.clamp(0.0, 6.0),
                2 => *v *= hsig(*v),
                3 => *v = hsig(*v),
                _ => {}
            }
        }
        prop_assert_eq!(got[0].dims(), &[1, o, oh, ow]);
        let gv = got[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
        for (a, b) in gv.iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-4, "{} vs {}", a, b);
        }
    }
}

#[test]
fn unsupported_op_fails_at_compile_naming_op_and_place() {
    let mut p = Prog::default();
    let y = p.op("relu", "r", &[("x", "x")]);
    let z = p.op("non_maximum_suppression", "nms_out", &[("x", &y)]);
    let f = p.function(&z);
    let e = compile("main", &f, &identity).expect_err("unsupported");
    let msg = e.to_string();
    assert!(matches!(e, inference_api::Error::Unavailable(_)), "{e:?}");
    for part in ["non_maximum_suppression", "op #1", "nms_out", "function `main`"] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn runtime_parameters_are_rejected_at_compile() {
    let mut p = Prog::default();
    let y = p.op("reshape", "r", &[("x", "x"), ("shape", "x")]);
    let e = compile("main", &p.function(&y), &identity).expect_err("runtime shape");
    assert!(e.to_string().contains("input `shape` is computed at run time"), "{e}");
}

#[test]
fn affine_dequantize_then_linear() {
    let mut p = Prog::default();
    let q = p.konst("q", cv(ScalarType::I8, vec![2, 3], ConstData::I8(vec![1, 2, 3, -1, -2, -3])));
    let zp = p.konst("zp", cv(ScalarType::I8, vec![2], ConstData::I8(vec![0, 1])));
    let sc = p.konst("sc", cv(ScalarType::F32, vec![2], ConstData::F32(vec![0.5, 2.0])));
    let ax = p.konst("ax", int(0));
    let w = p.op(
        "constexpr_affine_dequantize",
        "w",
        &[("quantized_data", &q), ("zero_point", &zp), ("scale", &sc), ("axis", &ax)],
    );
    let y = p.op("linear", "y", &[("x", "x"), ("weight", &w)]);
    let plan = compile("main", &p.function(&y), &identity).expect("compile");
    let x = Tensor::from_vec(vec![1f32, 1.0, 1.0], (1, 3), &Device::Cpu).expect("x");
    let out = plan.run(vec![x], &|| false, None).expect("run");
    let v = out[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
    // rows: [0.5, 1, 1.5] -> 3; [(-2)*2, (-3)*2, (-4)*2] -> -18.
    assert_eq!(v, [3.0, -18.0]);
}

#[test]
fn a_plan_stops_before_the_next_op_when_asked() {
    let mut p = Prog::default();
    let w = p.konst("w", cv(ScalarType::F32, vec![2, 3], ConstData::F32(vec![1.0; 6])));
    let y = p.op("linear", "y", &[("x", "x"), ("weight", &w)]);
    let plan = compile("main", &p.function(&y), &identity).expect("compile");
    assert!(
        plan.run(
            vec![Tensor::ones((1, 3), candle_core::DType::F32, &Device::Cpu).expect("x")],
            &|| false,
            None
        )
        .is_ok()
    );
    let x = Tensor::from_vec(vec![1f32, 1.0, 1.0], (1, 3), &Device::Cpu).expect("x");
    let e = plan.run(vec![x], &|| true, None).expect_err("stopped");
    assert!(e.contains("stopped early"), "{e}");
}

#[path = "direct_tests.rs"]
mod direct_tests;
