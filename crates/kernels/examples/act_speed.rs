//! Times the activations over 16 K values in cache (one thread) and prints ns per value; for
//! A/B runs of the activation kernels (`INFER_NO_AVX512=1` takes the AVX2 path).

use kernels::{Activation, apply_activation};

fn main() {
    let mut v: Vec<f32> = (0..1 << 14).map(|i| ((i % 97) as f32 - 48.0) * 0.1).collect();
    let acts = [
        Activation::Relu6,
        Activation::Silu,
        Activation::Sigmoid,
        Activation::Gelu,
        Activation::HardSwish,
    ];
    for act in acts {
        let mut best = f64::INFINITY;
        for _ in 0..3000 {
            let t = std::time::Instant::now();
            apply_activation(&mut v, act);
            best = best.min(t.elapsed().as_secs_f64() * 1e9 / v.len() as f64);
            v.iter_mut().for_each(|x| *x = x.clamp(-5.0, 5.0));
        }
        println!("{act:?}: {best:.3} ns per value (best of 3000 passes over 16 K values)");
    }
}
