//! Times `matmul_strided` on MobileViT-XXS's attention products (16 heads-by-patches batches:
//! `q x k^T` with k^T read through strides, and `scores x v` over 16-wide heads) on one thread
//! and prints the median per shape, for same-machine A/B runs. Usage: `attn_shapes [ITERS]`.

use kernels::{Strided, matmul_strided};

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    // (batches, m, n, k, a strides, b strides) as the lowered plan calls them.
    let shapes = [
        (16, 256, 256, 16, [4096, 16, 1], [4096, 1, 16]),
        (16, 256, 16, 256, [65536, 256, 1], [4096, 16, 1]),
        (16, 64, 64, 20, [1280, 20, 1], [1280, 1, 20]),
        (16, 64, 20, 64, [4096, 64, 1], [1280, 20, 1]),
        (16, 16, 16, 24, [384, 24, 1], [384, 1, 24]),
        (16, 16, 24, 16, [256, 16, 1], [384, 24, 1]),
    ];
    for (nb, m, n, k, sa, sb) in shapes {
        let a: Vec<f32> = (0..nb * sa[0]).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..nb * sb[0]).map(|i| (i % 7) as f32 * 0.1).collect();
        let a = Strided { data: &a, batch: sa[0], row: sa[1], col: sa[2] };
        let b = Strided { data: &b, batch: sb[0], row: sb[1], col: sb[2] };
        let mut c = vec![0f32; nb * m * n];
        let mut times = Vec::with_capacity(iters);
        pool.install(|| {
            for _ in 0..iters {
                let t = std::time::Instant::now();
                assert!(matmul_strided(nb, m, n, k, a, b, None, &mut c));
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        });
        times.sort_by(f64::total_cmp);
        let us = times[iters / 2];
        let gf = 2.0 * (nb * m * n * k) as f64 / us / 1e3;
        println!(
            "{nb} x {m}x{k}x{n}: median {us:.1} us, {gf:.1} GFLOP/s (checksum {})",
            c[c.len() / 3]
        );
    }
}
