//! Runs EfficientNet-Lite0's 1x1 convolutions (each shape once per iteration, one thread by
//! default, ReLU6 fused where the model has it) and prints the mean wall time per iteration and the
//! achieved GFLOP/s; for same-binary A/B runs of the GEMM (`INFER_GEMM=unpacked` switches the
//! packed AVX-512 kernel off). Usage: `pw_shapes [ITERS [THREADS]]`.

use kernels::{Activation, Conv2d, Padding};

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    // (in, out, spatial size, activation) of Lite0's expand / project / head 1x1 convolutions.
    let mut shapes = vec![(32, 16, 112, false), (16, 96, 112, true), (96, 24, 56, false)];
    shapes.extend([(24, 144, 56, true), (144, 24, 56, false), (144, 40, 28, false)]);
    shapes.extend([(40, 240, 28, true), (240, 40, 28, false), (240, 80, 14, false)]);
    shapes.extend([(80, 480, 14, true), (480, 80, 14, false), (480, 112, 14, false)]);
    shapes.extend([(112, 672, 14, true), (672, 112, 14, false), (672, 192, 7, false)]);
    shapes.extend([(192, 1152, 7, true), (1152, 192, 7, false), (1152, 320, 7, false)]);
    shapes.push((320, 1280, 7, true));
    let threads: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let mut flop = 0f64;
    let mut convs: Vec<(Conv2d, Vec<f32>, usize, Vec<f32>)> = shapes
        .iter()
        .map(|&(ci, co, hw, relu6)| {
            let w: Vec<f32> = (0..ci * co).map(|i| ((i % 13) as f32 - 6.0) * 0.05).collect();
            let act = if relu6 { Activation::Relu6 } else { Activation::None };
            let conv = Conv2d::new(w, [co, ci, 1, 1], None, (1, 1), (1, 1), 1, Padding::Valid, act)
                .expect("valid conv");
            flop += 2.0 * (ci * co * hw * hw) as f64;
            let x: Vec<f32> = (0..ci * hw * hw).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            (conv, x, hw, vec![0f32; co * hw * hw])
        })
        .collect();
    let mut sum = 0f32;
    let mut per = vec![0f64; convs.len()];
    let t = std::time::Instant::now();
    pool.install(|| {
        for _ in 0..iters {
            for ((conv, x, hw, y), p) in convs.iter_mut().zip(&mut per) {
                let t = std::time::Instant::now();
                // Into a kept buffer, as the models' arenas do.
                conv.forward_into(x, 1, *hw, *hw, y).expect("forward");
                *p += t.elapsed().as_secs_f64();
                sum += y[y.len() / 2];
            }
        }
    });
    let ms = t.elapsed().as_secs_f64() * 1e3 / iters.max(1) as f64;
    for (&(ci, co, hw, _), p) in shapes.iter().zip(&per) {
        let us = p * 1e6 / iters.max(1) as f64;
        let gf = 2.0 * (ci * co * hw * hw) as f64 / us / 1e3;
        println!("  {ci:>5} -> {co:>5} at {hw:>3}x{hw:<3} {us:>8.1} us {gf:>7.1} GFLOP/s");
    }
    println!(
        "pointwise (Lite0 shapes, {:.3} GFLOP): {ms:.3} ms per iteration, {:.1} GFLOP/s (checksum {sum})",
        flop / 1e9,
        flop / 1e6 / ms
    );
}
