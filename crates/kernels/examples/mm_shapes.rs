//! Times `matmul_packed` on DeiT-tiny's four `linear` shapes (m = 197 tokens) on one thread and
//! prints GFLOP/s per shape, for same-binary A/B runs of the transformer GEMM.
//! Usage: `mm_shapes [ITERS]`.

use kernels::{PackedB, Strided, matmul_packed};
use std::time::Instant;

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    for (m, k, n) in [(197, 192, 576), (197, 192, 192), (197, 192, 768), (197, 768, 192)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let pb = PackedB::new(Strided { data: &w, batch: 0, row: n, col: 1 }, k, n).expect("b");
        let bias = vec![0.5f32; n];
        let mut c = vec![0f32; m * n];
        let sa = Strided { data: &a, batch: 0, row: k, col: 1 };
        pool.install(|| {
            for _ in 0..10 {
                matmul_packed(m, sa, &pb, Some(&bias), &mut c);
            }
            let t = Instant::now();
            for _ in 0..iters {
                matmul_packed(m, sa, &pb, Some(&bias), &mut c);
            }
            let s = t.elapsed().as_secs_f64();
            let gf = 2.0 * (m * n * k * iters) as f64 / s / 1e9;
            println!("{m}x{k}x{n}: {:.3} ms, {gf:.1} GFLOP/s", 1e3 * s / iters as f64);
        });
    }
}
