//! Runs EfficientNet-Lite0's inverted-residual blocks (random weights) both ways, alternately
//! in one process: the three convolutions one by one, and `InvertedResidual`'s banded kernel;
//! prints each block's median time both ways and checks they agree. Usage:
//! `ir_shapes [THREADS] [ROUNDS]`.

use std::sync::Arc;

use kernels::{Activation, Conv2d, InvertedResidual, Padding};

/// (in, expanded, out, kernel, stride, spatial size) of Lite0's blocks with an expansion.
const BLOCKS: [(usize, usize, usize, usize, usize, usize); 15] = [
    (16, 96, 24, 3, 2, 112),
    (24, 144, 24, 3, 1, 56),
    (24, 144, 40, 5, 2, 56),
    (40, 240, 40, 5, 1, 28),
    (40, 240, 80, 3, 2, 28),
    (80, 480, 80, 3, 1, 14),
    (80, 480, 80, 3, 1, 14),
    (80, 480, 112, 5, 1, 14),
    (112, 672, 112, 5, 1, 14),
    (112, 672, 112, 5, 1, 14),
    (112, 672, 192, 5, 2, 14),
    (192, 1152, 192, 5, 1, 7),
    (192, 1152, 192, 5, 1, 7),
    (192, 1152, 192, 5, 1, 7),
    (192, 1152, 320, 3, 1, 7),
];

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 / 506.0 - 1.0) * 0.3).collect()
}

fn conv(
    co: usize,
    cig: usize,
    k: usize,
    s: usize,
    groups: usize,
    act: Activation,
    seed: usize,
) -> Arc<Conv2d> {
    let w = values(co * cig * k * k, seed);
    let b = values(co, seed + 1);
    let c = Conv2d::new(w, [co, cig, k, k], Some(b), (s, s), (1, 1), groups, Padding::Same, act);
    Arc::new(c.expect("valid conv"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let only: Option<Vec<usize>> = std::env::var("IR_BLOCK")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect());
    let blocks: Vec<_> = match only {
        Some(v) if v.len() == 6 => vec![(v[0], v[1], v[2], v[3], v[4], v[5])],
        _ => BLOCKS.to_vec(),
    };
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(15);
    let (mut sum_a, mut sum_b) = (0.0, 0.0);
    kernels::with_threads(threads, || {
        for (i, &(ci, ce, co, k, s, hw)) in blocks.iter().enumerate() {
            let ex = conv(ce, ci, 1, 1, 1, Activation::Relu6, 10 * i);
            let dw = conv(ce, 1, k, s, ce, Activation::Relu6, 10 * i + 3);
            let pr = conv(co, ce, 1, 1, 1, Activation::None, 10 * i + 6);
            let residual = s == 1 && ci == co;
            let fused = InvertedResidual::new(ex.clone(), dw.clone(), Some(pr.clone()), residual)
                .expect("a block the banded kernel runs");
            let x = values(ci * hw * hw, i);
            let (_, oh, ow) = fused.output_shape(hw, hw).expect("shape");
            let (mut e, mut d) = (vec![0f32; ce * hw * hw], vec![0f32; ce * oh * ow]);
            let (mut ya, mut yb) = (vec![0f32; co * oh * ow], vec![0f32; co * oh * ow]);
            let (mut ta, mut tb) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let t = std::time::Instant::now();
                ex.forward_into(&x, 1, hw, hw, &mut e).expect("expand");
                dw.forward_into(&e, 1, hw, hw, &mut d).expect("depthwise");
                if residual {
                    ya.copy_from_slice(&x);
                    pr.forward_add(&d, 1, oh, ow, &mut ya).expect("project");
                } else {
                    pr.forward_into(&d, 1, oh, ow, &mut ya).expect("project");
                }
                ta.push(t.elapsed().as_secs_f64() * 1e6);
                let t = std::time::Instant::now();
                fused.forward_into(&x, 1, hw, hw, &mut yb).expect("fused");
                tb.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let diff = ya.iter().zip(&yb).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let (ma, mb) = (min(&ta), min(&tb));
            let (a, b) = (median(&mut ta), median(&mut tb));
            (sum_a, sum_b) = (sum_a + a, sum_b + b);
            println!(
                "{ci:>4}->{ce:>5}->{co:>4} k{k} s{s} at {hw:>3}: one by one {a:>7.1} us, banded \
                 {b:>7.1} us ({:>5.2}x; fastest {:>5.2}x), max diff {diff:.1e}",
                a / b,
                ma / mb
            );
        }
    });
    println!("all blocks: one by one {sum_a:.0} us, banded {sum_b:.0} us ({:.2}x)", sum_a / sum_b);
}
