//! Runs EfficientNet-Lite0's depthwise convolutions (each shape once per iteration, one thread)
//! and prints the mean wall time per shape and per iteration; for same-binary A/B runs of the depthwise
//! kernels (`INFER_NO_AVX512=1`) and for `valgrind --tool=callgrind` instruction counts of the
//! AVX2 and portable paths (valgrind does not run AVX-512). Usage: `dw_shapes [ITERS [PATH]]`,
//! PATH one of `auto` (default), `padded`, `avx512`, `avx2`, `portable`, `lanes` (the kernel
//! forced).

use kernels::{Activation, Conv2d, DwIsa, Padding};

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    // (channels, input size, kernel, stride) of Lite0's 16 blocks.
    let shapes = [
        (32, 112, 3, 1),
        (96, 112, 3, 2),
        (144, 56, 3, 1),
        (144, 56, 5, 2),
        (240, 28, 5, 1),
        (240, 28, 3, 2),
        (480, 14, 3, 1),
        (480, 14, 5, 1),
        (672, 14, 5, 1),
        (672, 14, 5, 2),
        (1152, 7, 5, 1),
        (1152, 7, 3, 1),
    ];
    let path = match std::env::args().nth(2).as_deref() {
        None | Some("auto") => None,
        Some("padded") => Some(DwIsa::Padded),
        Some("avx512") => Some(DwIsa::Avx512),
        Some("avx2") => Some(DwIsa::Avx2),
        Some("portable") => Some(DwIsa::Portable),
        Some("lanes") => Some(DwIsa::Lanes),
        Some(other) => {
            eprintln!("unknown path {other}: use auto, padded, avx512, avx2, portable or lanes");
            std::process::exit(2);
        }
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    let mut convs: Vec<(Conv2d, Vec<f32>, usize, Vec<f32>)> = shapes
        .iter()
        .map(|&(c, hw, k, s)| {
            let w: Vec<f32> = (0..c * k * k).map(|i| ((i % 13) as f32 - 6.0) * 0.05).collect();
            let conv = Conv2d::new(
                w,
                [c, 1, k, k],
                None,
                (s, s),
                (1, 1),
                c,
                Padding::Same,
                Activation::Relu6,
            )
            .expect("valid conv");
            let x: Vec<f32> = (0..c * hw * hw).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            let o = hw.div_ceil(s);
            (conv, x, hw, vec![0f32; c * o * o])
        })
        .collect();
    let t = std::time::Instant::now();
    let mut sum = 0f32;
    let mut per = vec![0f64; convs.len()];
    pool.install(|| {
        for _ in 0..iters {
            for ((conv, x, hw, out), p) in convs.iter_mut().zip(&mut per) {
                let t = std::time::Instant::now();
                let y = match path {
                    // Into a kept buffer, as the models' arenas do (a fresh output of over
                    // 128 KB would be mapped and page-faulted on every call).
                    None => conv.forward_into(x, 1, *hw, *hw, out).map(|_| &*out),
                    Some(p) => conv.forward_depthwise_with(p, x, 1, *hw, *hw).map(|y| {
                        out.copy_from_slice(&y);
                        &*out
                    }),
                }
                .expect("forward");
                *p += t.elapsed().as_secs_f64();
                sum += y[y.len() / 2];
            }
        }
    });
    for (&(c, hw, k, s), p) in shapes.iter().zip(&per) {
        let us = p * 1e6 / iters.max(1) as f64;
        let o = hw.div_ceil(s);
        let gf = 2.0 * (c * o * o * k * k) as f64 / us / 1e3;
        println!("  {c:>5} ch {hw:>3}x{hw:<3} k{k} s{s} {us:>8.1} us {gf:>7.1} GFLOP/s");
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / iters.max(1) as f64;
    let p = path.map_or("auto".to_string(), |p| format!("{p:?}"));
    println!("depthwise (Lite0 shapes, {p}): {ms:.3} ms per iteration (checksum {sum})");
}
