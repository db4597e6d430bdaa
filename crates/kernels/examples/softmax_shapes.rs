//! Times MobileViT-XXS's attention softmaxes (rows of 256, 64 and 16 scores, one thread) and
//! prints the median per shape in ns per element, for same-machine A/B runs of the row
//! kernels. Usage: `softmax_shapes [ITERS]`.

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    // (rows, row length) of the three stages' attention maps ([4 patches x 4 heads x n, n]).
    let shapes = [(16 * 256, 256), (16 * 64, 64), (16 * 16, 16)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    for (rows, len) in shapes {
        let x: Vec<f32> = (0..rows * len).map(|i| ((i * 7919 % 1013) as f32) * 0.01).collect();
        let mut y = vec![0f32; x.len()];
        let mut times = Vec::with_capacity(iters);
        pool.install(|| {
            for _ in 0..iters {
                let t = std::time::Instant::now();
                assert!(kernels::softmax(&x, &mut y, rows, len, 1));
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        });
        times.sort_by(f64::total_cmp);
        let us = times[iters / 2];
        println!(
            "softmax {rows} x {len}: median {us:.1} us, {:.3} ns per element (checksum {})",
            us * 1e3 / x.len() as f64,
            y[y.len() / 3]
        );
    }
}
