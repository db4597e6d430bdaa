//! Times ResNet-18's 3x3 / 2 max pool (64 planes of 112 x 112, padding 1, one thread) and
//! prints the median per run, for same-machine A/B runs of the pooling kernel. Usage:
//! `pool_shapes [ITERS]`.

use kernels::{PoolGeometry, max_pool2d};

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let (planes, h) = (64, 112);
    let g = PoolGeometry {
        h,
        w: h,
        oh: 56,
        ow: 56,
        kh: 3,
        kw: 3,
        stride: (2, 2),
        pad_top: 1,
        pad_left: 1,
    };
    let x: Vec<f32> = (0..planes * h * h).map(|i| ((i * 7919 % 1013) as f32) * 0.01).collect();
    let mut out = vec![0f32; planes * 56 * 56];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    let mut times = Vec::with_capacity(iters);
    pool.install(|| {
        for _ in 0..iters {
            let t = std::time::Instant::now();
            max_pool2d(&x, planes, g, &mut out).expect("pool");
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    });
    times.sort_by(f64::total_cmp);
    let sum: f32 = out.iter().step_by(97).sum();
    println!("max pool 64x112x112 3x3/2: median {:.1} us (checksum {sum})", times[iters / 2]);
}
