//! Runs ResNet-18's convolutions but the 1x1 stride-1 ones (each shape once per iteration, one thread, ReLU fused)
//! and prints the mean wall time per shape and the achieved GFLOP/s, for same-machine A/B runs
//! of the implicit GEMM. Usage: `conv3_shapes [ITERS [THREADS [INDEX]]]` (one thread by default;
//! INDEX runs just that shape of the list, for profiling).

use kernels::{Activation, Conv2d, Padding};

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    // (in, out, input size, stride, how many times ResNet-18 runs the shape, kernel size); the
    // 7x7 stem and the 1x1 stride-2 shortcuts too, which also run on the implicit GEMM.
    let shapes = [
        (3, 64, 224, 2, 1, 7),
        (64, 128, 56, 2, 1, 1),
        (128, 256, 28, 2, 1, 1),
        (256, 512, 14, 2, 1, 1),
        (64, 64, 56, 1, 4, 3),
        (64, 128, 56, 2, 1, 3),
        (128, 128, 28, 1, 3, 3),
        (128, 256, 28, 2, 1, 3),
        (256, 256, 14, 1, 3, 3),
        (256, 512, 14, 2, 1, 3),
        (512, 512, 7, 1, 3, 3),
    ];
    let threads: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    // Just the shape at this index of the list (for profiling one shape).
    let only: Option<usize> = std::env::args().nth(3).and_then(|a| a.parse().ok());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let mut convs: Vec<(Conv2d, Vec<f32>, Vec<f32>)> = shapes
        .iter()
        .map(|&(ci, co, hw, s, _, k)| {
            let w: Vec<f32> =
                (0..ci * co * k * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
            let conv = Conv2d::new(
                w,
                [co, ci, k, k],
                None,
                (s, s),
                (1, 1),
                1,
                Padding::Explicit([k / 2; 4]),
                Activation::Relu,
            )
            .expect("valid conv");
            let x: Vec<f32> = (0..ci * hw * hw).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            let y = vec![0f32; co * (hw / s) * (hw / s)];
            (conv, x, y)
        })
        .collect();
    let mut sum = 0f32;
    let mut per = vec![Vec::new(); convs.len()];
    pool.install(|| {
        for _ in 0..iters {
            for (i, ((conv, x, y), p)) in convs.iter_mut().zip(&mut per).enumerate() {
                if only.is_some_and(|o| o != i) {
                    continue;
                }
                let hw = (x.len() / conv.in_channels()).isqrt();
                let t = std::time::Instant::now();
                conv.forward_into(x, 1, hw, hw, y).expect("forward");
                p.push(t.elapsed().as_secs_f64());
                sum += y[y.len() / 2];
            }
        }
    });
    let (mut total, mut flop) = (0f64, 0f64);
    for (&(ci, co, hw, s, times, k), p) in shapes.iter().zip(&mut per) {
        if p.is_empty() {
            continue;
        }
        p.sort_by(f64::total_cmp);
        let us = p[p.len() / 2] * 1e6;
        let o = hw / s;
        let f = 2.0 * (ci * co * k * k * o * o) as f64;
        total += us * times as f64;
        flop += f * times as f64;
        println!(
            "  {k}x{k} {ci:>4} -> {co:>4} at {hw:>3}x{hw:<3} /{s} x{times} {us:>8.1} us {:>7.1} GFLOP/s",
            f / us / 1e3
        );
    }
    println!(
        "resnet18 convs (median each, weighted by use): {:.3} ms, {:.1} GFLOP/s (checksum {sum})",
        total / 1e3,
        flop / total / 1e3
    );
}
