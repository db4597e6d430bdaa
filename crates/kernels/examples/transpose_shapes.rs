//! Times MobileViT-XXS's patch unfold / fold and head transposes (`[b, r, c, inner]` ->
//! `[b, c, r, inner]`, one thread) and prints the median per shape, for same-machine A/B runs
//! of the transpose kernel. Usage: `transpose_shapes [ITERS]`.

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let shapes = [
        [1024, 16, 2, 2],
        [1024, 2, 16, 2],
        [640, 8, 2, 2],
        [640, 2, 8, 2],
        [384, 4, 2, 2],
        [384, 2, 4, 2],
        [4, 4, 256, 16],
        [4, 4, 64, 20],
        [4, 4, 16, 24],
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    let mut total = 0f64;
    for brci in shapes {
        let n: usize = brci.iter().product();
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut y = vec![0f32; n];
        let mut times = Vec::with_capacity(iters);
        pool.install(|| {
            for _ in 0..iters {
                let t = std::time::Instant::now();
                kernels::transpose_batched(&x, brci, &mut y).expect("transpose");
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        });
        times.sort_by(f64::total_cmp);
        let us = times[iters / 2];
        total += us;
        println!("transpose {brci:?}: median {us:.1} us (checksum {})", y[n / 3]);
    }
    println!("all shapes: {total:.1} us");
}
