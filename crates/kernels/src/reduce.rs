//! Plane reductions for pooling heads: the mean of one contiguous plane with lane-wise partial
//! sums (a plain `f32` sum is sequential and does not vectorise).

/// Lanes of partial sums (one AVX-512 vector, two AVX2 vectors).
const LANES: usize = 16;

/// The mean of `x` (0 for an empty plane).
pub fn plane_mean(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    (acc.iter().sum::<f32>() + tail) / x.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_matches_an_f64_reference_at_every_length() {
        for len in 0..200usize {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let want =
                if len == 0 { 0.0 } else { x.iter().map(|&v| v as f64).sum::<f64>() / len as f64 };
            let got = plane_mean(&x) as f64;
            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "len {len}: {got} vs {want}");
        }
    }
}
