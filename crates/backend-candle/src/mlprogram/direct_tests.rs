//! The lowered plan (`direct.rs`) against the interpreter on synthetic programs: residual adds
//! folded into the convolution only where that is safe, splits, concats, transposes, attention
//! ops, aliases and interpreted steps, with buffers reused across steps.

use super::*;
use crate::mlprogram::direct::{Arena, Direct};

/// A 1x1 convolution of `c` channels to `c`, seeded weights, no activation.
fn conv1x1(p: &mut Prog, name: &str, x: &str, c: usize, seed: u64) -> String {
    let w = p.konst(&format!("{name}_w"), f16s(&data(c * c, seed), vec![c, c, 1, 1]));
    let b = p.konst(&format!("{name}_b"), f16s(&data(c, seed ^ 3), vec![c]));
    let pt = p.konst(&format!("{name}_pt"), string("valid"));
    p.op("conv", name, &[("x", x), ("weight", &w), ("bias", &b), ("pad_type", &pt)])
}

/// Runs `f` on `x` through the interpreter (recording shapes) and through the plan lowered
/// for them, twice (the second run reuses the arena); returns both outputs and the lowering.
fn both(f: &Function, x: Vec<f32>, dims: &[usize]) -> (Vec<f32>, Vec<f32>, Direct) {
    let plan = compile("main", f, &identity).expect("compile");
    let xt = Tensor::from_vec(x.clone(), dims, &Device::Cpu).expect("x");
    let mut shapes = Vec::new();
    let want = plan.run(vec![xt], &|| false, Some(&mut shapes)).expect("interpreter");
    let want = want[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
    let direct = Direct::build(&plan, &shapes).expect("lowered");
    let mut arena = Arena::default();
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut write = |_: usize, v: &[f32]| got = v.to_vec();
        direct.run(&plan, &mut arena, &[&x], &|| false, &mut write).expect("lowered run");
    }
    (want, got, direct)
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "value {i}: {g} vs {w}");
    }
}

/// `y = x + conv(x)` cannot accumulate into `x` (an input), `z = y + conv(y)` not into `y`
/// (the convolution reads it), `w = relu(z) + conv(z)` can: the lowering folds exactly one.
#[test]
fn residual_adds_fold_into_the_convolution_only_where_safe() {
    let c = 5;
    let mut p = Prog::default();
    let c1 = conv1x1(&mut p, "c1", "x", c, 1);
    let y = p.op("add", "y", &[("x", &c1), ("y", "x")]);
    let c2 = conv1x1(&mut p, "c2", &y, c, 2);
    let z = p.op("add", "z", &[("x", &y), ("y", &c2)]);
    let r = p.op("relu", "r", &[("x", &z)]);
    let c3 = conv1x1(&mut p, "c3", &z, c, 3);
    let w = p.op("add", "w", &[("x", &c3), ("y", &r)]);
    let (want, got, direct) = both(&p.function(&w), data(c * 36, 9), &[1, c, 6, 6]);
    assert_close(&got, &want);
    let names = direct.op_names();
    assert_eq!(names.iter().filter(|n| **n == "conv+add").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "binary").count(), 2, "{names:?}");
}

/// `relu(conv(x) + a)` with the sum read nowhere else runs as one convolution step (the relu in
/// its epilogue); `relu(conv(b) + e)` whose sum a later add also reads keeps its relu step.
#[test]
fn activations_after_folded_adds_join_the_convolution_only_where_safe() {
    let c = 5;
    let mut p = Prog::default();
    let a = p.op("relu", "a", &[("x", "x")]);
    let c1 = conv1x1(&mut p, "c1", "x", c, 1);
    let y = p.op("add", "y", &[("x", &c1), ("y", &a)]);
    let b = p.op("relu", "b", &[("x", &y)]);
    let e = p.op("relu", "e", &[("x", &b)]);
    let c2 = conv1x1(&mut p, "c2", &b, c, 2);
    let y2 = p.op("add", "y2", &[("x", &c2), ("y", &e)]);
    let f = p.op("relu", "f", &[("x", &y2)]);
    let out = p.op("add", "out", &[("x", &f), ("y", &y2)]);
    let (want, got, direct) = both(&p.function(&out), data(c * 36, 4), &[1, c, 6, 6]);
    assert_close(&got, &want);
    let names = direct.op_names();
    assert_eq!(names.iter().filter(|n| **n == "conv+add").count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "act").count(), 3, "{names:?}");
}

/// An attention-shaped chain: split, transposes (one a pure reshape), matmul with a
/// transposed operand, softmax, concat, layer norm; with buffers reused.
#[test]
fn attention_ops_lower_and_match_the_interpreter() {
    let (t, d) = (7, 6);
    let mut p = Prog::default();
    let ax = p.konst("ax", int(-1));
    let sizes = p.konst("sz", ints(&[3, 3]));
    p.ops.push(Operation {
        op_type: "split".into(),
        inputs: [("x", "x"), ("axis", "ax"), ("split_sizes", "sz")]
            .iter()
            .map(|(k, v)| (k.to_string(), vec![Argument::Name(v.to_string())]))
            .collect(),
        outputs: vec![
            NamedType { name: "q".into(), ty: tensor_type() },
            NamedType { name: "k".into(), ty: tensor_type() },
        ],
        attributes: BTreeMap::new(),
        blocks: vec![],
    });
    let _ = sizes;
    let tt = p.konst("tt", cv(ScalarType::Bool, vec![], ConstData::Bool(vec![true])));
    let ff = p.konst("ff", cv(ScalarType::Bool, vec![], ConstData::Bool(vec![false])));
    let s =
        p.op("matmul", "s", &[("x", "q"), ("y", "k"), ("transpose_x", &ff), ("transpose_y", &tt)]);
    let sm = p.op("softmax", "sm", &[("x", &s), ("axis", &ax)]);
    let o = p.op("matmul", "o", &[("x", &sm), ("y", "k")]);
    let perm = p.konst("perm", ints(&[0, 2, 1]));
    let ot = p.op("transpose", "ot", &[("x", &o), ("perm", &perm)]);
    let back = p.op("transpose", "back", &[("x", &ot), ("perm", &perm)]);
    let cat_axis = p.konst("cax", int(-1));
    let il = p.konst("il", cv(ScalarType::Bool, vec![], ConstData::Bool(vec![false])));
    p.ops.push(Operation {
        op_type: "concat".into(),
        inputs: [
            ("values".to_string(), vec![Argument::Name(back.clone()), Argument::Name("q".into())]),
            ("axis".to_string(), vec![Argument::Name(cat_axis)]),
            ("interleave".to_string(), vec![Argument::Name(il)]),
        ]
        .into_iter()
        .collect(),
        outputs: vec![NamedType { name: "cat".into(), ty: tensor_type() }],
        attributes: BTreeMap::new(),
        blocks: vec![],
    });
    let lax = p.konst("lax", ints(&[-1]));
    let ln = p.op("layer_norm", "ln", &[("x", "cat"), ("axes", &lax)]);
    let (want, got, direct) = both(&p.function(&ln), data(t * d, 4), &[1, t, d]);
    assert_close(&got, &want);
    let names = direct.op_names();
    for op in ["part", "matmul", "softmax", "transpose", "concat", "layer_norm"] {
        assert!(names.contains(&op), "{op} not lowered: {names:?}");
    }
    assert!(!names.contains(&"interp"), "{names:?}");
    assert!(direct.buffers() < names.len(), "no buffer reused: {names:?}");
}

/// A step with no kernel call (nearest upsampling) runs through the interpreter inside the
/// lowered plan, between lowered steps.
#[test]
fn steps_without_a_kernel_call_run_interpreted_in_place() {
    let c = 3;
    let mut p = Prog::default();
    let c1 = conv1x1(&mut p, "c1", "x", c, 5);
    let two = p.konst("two", f32_scalar(2.0));
    let up = p.op(
        "upsample_nearest_neighbor",
        "up",
        &[("x", &c1), ("scale_factor_height", &two), ("scale_factor_width", &two)],
    );
    let r = p.op("relu", "r", &[("x", &up)]);
    let (want, got, direct) = both(&p.function(&r), data(c * 16, 2), &[1, c, 4, 4]);
    assert_close(&got, &want);
    assert_eq!(direct.op_names(), ["conv", "interp", "act"]);
}

/// A convolution of `c` to `o` channels, `k x k`, `groups`, "same" padding, ReLU6 by `clip`
/// when `relu6` (the executor fuses it).
#[allow(clippy::too_many_arguments)]
fn conv_k(
    p: &mut Prog,
    name: &str,
    x: &str,
    (c, o, k): (usize, usize, usize),
    groups: usize,
    relu6: bool,
    seed: u64,
) -> String {
    let w = p.konst(
        &format!("{name}_w"),
        f16s(&data(o * c / groups * k * k, seed), vec![o, c / groups, k, k]),
    );
    let b = p.konst(&format!("{name}_b"), f16s(&data(o, seed ^ 3), vec![o]));
    let pt = p.konst(&format!("{name}_pt"), string("same"));
    let g = p.konst(&format!("{name}_g"), int(groups as i32));
    let y = p.op(
        "conv",
        name,
        &[("x", x), ("weight", &w), ("bias", &b), ("pad_type", &pt), ("groups", &g)],
    );
    if !relu6 {
        return y;
    }
    let lo = p.konst(&format!("{name}_lo"), f32_scalar(0.0));
    let hi = p.konst(&format!("{name}_hi"), f32_scalar(6.0));
    p.op("clip", &format!("{name}_r"), &[("x", &y), ("alpha", &lo), ("beta", &hi)])
}

/// Expand 1x1, depthwise 3x3, project 1x1 and the residual add over a plane whose expansion
/// does not fit a band's cache budget: one banded block step, the interpreter's answer.
#[test]
fn inverted_residual_chains_run_as_one_banded_block() {
    let (c, e, hw) = (8, 96, 56);
    let mut p = Prog::default();
    let ex = conv_k(&mut p, "ex", "x", (c, e, 1), 1, true, 1);
    let dw = conv_k(&mut p, "dw", &ex, (e, e, 3), e, true, 2);
    let pr = conv_k(&mut p, "pr", &dw, (e, c, 1), 1, false, 3);
    let y = p.op("add", "y", &[("x", &pr), ("y", "x")]);
    let (want, got, direct) = both(&p.function(&y), data(c * hw * hw, 5), &[1, c, hw, hw]);
    assert_close(&got, &want);
    assert_eq!(direct.op_names(), ["block"]);
}

/// The same chain without the residual, after another step: the input dies at the
/// expansion, and the block still gives the interpreter's answer.
#[test]
fn a_block_without_a_residual_matches_the_interpreter() {
    let (c, e, hw) = (8, 96, 56);
    let mut p = Prog::default();
    let r = p.op("relu", "r", &[("x", "x")]);
    let ex = conv_k(&mut p, "ex", &r, (c, e, 1), 1, true, 1);
    let dw = conv_k(&mut p, "dw", &ex, (e, e, 3), e, true, 2);
    let pr = conv_k(&mut p, "pr", &dw, (e, 12, 1), 1, false, 3);
    let (want, got, direct) = both(&p.function(&pr), data(c * hw * hw, 6), &[1, c, hw, hw]);
    assert_close(&got, &want);
    assert_eq!(direct.op_names(), ["act", "block"]);
}

/// A squeeze-excite block: the gate needs the whole depthwise output, so the expansion and
/// the depthwise convolution form the banded block and the projection stays a convolution.
#[test]
fn squeeze_excite_blocks_band_the_expansion_and_depthwise() {
    let (c, e, hw) = (8, 96, 56);
    let mut p = Prog::default();
    let ex = conv_k(&mut p, "ex", "x", (c, e, 1), 1, true, 1);
    let dw = conv_k(&mut p, "dw", &ex, (e, e, 3), e, true, 2);
    let axes = p.konst("axes", ints(&[2, 3]));
    let keep = p.konst("keep", cv(ScalarType::Bool, vec![], ConstData::Bool(vec![true])));
    let m = p.op("reduce_mean", "m", &[("x", &dw), ("axes", &axes), ("keep_dims", &keep)]);
    let g = p.op("sigmoid", "g", &[("x", &m)]);
    let y = p.op("mul", "y", &[("x", &dw), ("y", &g)]);
    let pr = conv_k(&mut p, "pr", &y, (e, c, 1), 1, false, 3);
    let (want, got, direct) = both(&p.function(&pr), data(c * hw * hw, 7), &[1, c, hw, hw]);
    assert_close(&got, &want);
    assert_eq!(direct.op_names(), ["block", "mean", "act", "binary", "conv"]);
}

/// A 3x3/2 max pool with "same" padding and a permute the batched-transpose call cannot express
/// lower to their kernels (no interpreted steps).
#[test]
fn max_pools_and_general_permutes_lower_to_their_kernels() {
    let mut p = Prog::default();
    let k = p.konst("k", ints(&[3, 3]));
    let s = p.konst("s", ints(&[2, 2]));
    let pt = p.konst("pt", string("same"));
    let mp = p.op(
        "max_pool",
        "mp",
        &[("x", "x"), ("kernel_sizes", &k), ("strides", &s), ("pad_type", &pt)],
    );
    let perm = p.konst("perm", ints(&[3, 1, 0, 2]));
    let t = p.op("transpose", "t", &[("x", &mp), ("perm", &perm)]);
    let (want, got, direct) = both(&p.function(&t), data(2 * 3 * 9 * 11, 8), &[2, 3, 9, 11]);
    assert_close(&got, &want);
    assert_eq!(direct.op_names(), ["max_pool", "permute"]);
}
