//! Property tests of the executor's element-wise kernels against naive references: broadcast
//! binary ops over arbitrary strides (broadcast, permuted storage), activations copied into a
//! new vector, row means and row softmax written once, on every ISA path this machine has and on 1-3 threads, with sizes
//! on both sides of one parallel task.

use kernels::{
    Activation, BinaryOp, Isa, activation_to_vec, binary_with, mean_rows, softmax_rows_to_vec_with,
};
use proptest::prelude::*;

mod common;
use common::{check, pool};

/// Seeded values in [-4, 4).
fn values(len: usize, seed: u64) -> Vec<f32> {
    common::values(len, seed).into_iter().map(|v| v * 4.0).collect()
}

const ISAS: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];
const OPS: [BinaryOp; 6] =
    [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min];

/// Strides of an operand of `dims` that is broadcast along the dimensions in `bcast` (stride 0)
/// and stored with its dimensions in the order `order` (outermost first); its length.
fn operand_strides(dims: &[usize], bcast: &[bool], order: &[usize]) -> (Vec<usize>, usize) {
    let own: Vec<usize> = dims.iter().zip(bcast).map(|(&d, &b)| if b { 1 } else { d }).collect();
    let mut strides = vec![0usize; dims.len()];
    let mut step = 1;
    for &d in order.iter().rev() {
        strides[d] = if bcast[d] { 0 } else { step };
        step *= own[d];
    }
    (strides, step)
}

fn naive(op: BinaryOp, x: f32, y: f32) -> f32 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Max => {
            if x > y {
                x
            } else {
                y
            }
        }
        BinaryOp::Min => {
            if x < y {
                x
            } else {
                y
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn binary_matches_naive(
        dims in prop::collection::vec(1usize..=10, 1..=4),
        big in 1usize..=30,
        bits in any::<u64>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let mut dims = dims;
        // Make some shapes larger than one task.
        dims[0] *= big;
        let rank = dims.len();
        let bcast = |shift: u32| -> Vec<bool> { (0..rank).map(|d| bits >> (shift + d as u32) & 1 == 1).collect() };
        let (ba, bb) = (bcast(0), bcast(8));
        let order = |rev: bool| -> Vec<usize> { if rev { (0..rank).rev().collect() } else { (0..rank).collect() } };
        let (sa, la) = operand_strides(&dims, &ba, &order(bits >> 16 & 1 == 1));
        let (sb, lb) = operand_strides(&dims, &bb, &order(bits >> 17 & 1 == 1));
        let a = values(la, seed);
        let b: Vec<f32> = values(lb, seed ^ 1).iter().map(|v| if *v == 0.0 { 1.0 } else { *v }).collect();
        let shape: Vec<(usize, usize, usize)> = (0..rank).map(|d| (dims[d], sa[d], sb[d])).collect();
        let total: usize = dims.iter().product();
        for op in OPS {
            let want: Vec<f32> = (0..total)
                .map(|mut i| {
                    let (mut oa, mut ob) = (0, 0);
                    for d in (0..rank).rev() {
                        let k = i % dims[d];
                        i /= dims[d];
                        oa += k * sa[d];
                        ob += k * sb[d];
                    }
                    naive(op, a[oa], b[ob])
                })
                .collect();
            for isa in ISAS {
                let got = pool(threads).install(|| binary_with(isa, op, &shape, &a, &b));
                prop_assert!(got.is_some());
                let got = got.unwrap_or_default();
                prop_assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{:?} {:?} dims {:?}", op, isa, dims);
            }
        }
        // An operand too short for its strides is refused.
        if la > 1 {
            prop_assert!(binary_with(Isa::Auto, BinaryOp::Add, &shape, &a[..la - 1], &b).is_none());
        }
    }

    #[test]
    fn activation_and_means_match_naive(
        len in 1usize..=300,
        rows in 1usize..=200,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let x = values(rows * len, seed);
        for (act, f) in [
            (Activation::Relu, (|v: f64| v.max(0.0)) as fn(f64) -> f64),
            (Activation::Relu6, |v: f64| v.clamp(0.0, 6.0)),
            (Activation::Sigmoid, |v: f64| 1.0 / (1.0 + (-v).exp())),
            (Activation::HardSwish, |v: f64| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        ] {
            let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
            let got = pool(threads).install(|| activation_to_vec(&x, act));
            check(&got, &want, &format!("{act:?}"))?;
        }
        // Every activation gives exactly the in-place kernel's values.
        for act in [
            Activation::None,
            Activation::Gelu,
            Activation::Silu,
            Activation::HardSigmoid,
            Activation::Clip { lo_milli: -1500, hi_milli: 2250 },
        ] {
            let mut want = x.clone();
            kernels::apply_activation(&mut want, act);
            let got = pool(threads).install(|| activation_to_vec(&x, act));
            prop_assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "{:?}", act);
            prop_assert_eq!(got.len(), want.len());
        }
        let want: Vec<f32> = x
            .chunks_exact(len)
            .map(|r| (r.iter().map(|&v| v as f64).sum::<f64>() / len as f64) as f32)
            .collect();
        let got = pool(threads).install(|| mean_rows(&x, len));
        prop_assert!(got.is_some());
        check(&got.unwrap_or_default(), &want, "mean_rows")?;
        prop_assert!(mean_rows(&x, 0).is_none());
    }

    #[test]
    fn softmax_rows_to_vec_matches_naive(
        len in 1usize..=300,
        rows in 1usize..=300,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let x = values(rows * len, seed);
        let want: Vec<f32> = x
            .chunks_exact(len)
            .flat_map(|r| {
                let max = r.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = r.iter().map(|&v| (v as f64 - max).exp()).sum();
                r.iter().map(move |&v| ((v as f64 - max).exp() / sum) as f32)
            })
            .collect();
        for isa in ISAS {
            let got = pool(threads).install(|| softmax_rows_to_vec_with(isa, &x, len));
            prop_assert!(got.is_some());
            check(&got.unwrap_or_default(), &want, &format!("softmax rows {isa:?}"))?;
        }
        prop_assert!(softmax_rows_to_vec_with(Isa::Auto, &x, 0).is_none());
    }
}
