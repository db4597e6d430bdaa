//! Helpers shared by the kernels' property tests: seeded test values, a thread pool of a given
//! size and the FP32 tolerance check against a naive reference.

use inference_api::{Drift, tolerance};
use proptest::prelude::*;

/// A rayon pool of `threads` threads (the kernels spread over the current pool's size).
pub(crate) fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool")
}

/// `got` within the FP32 tolerance of `want`, naming `what` when it is not.
pub(crate) fn check(got: &[f32], want: &[f32], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: length", what);
    let d = Drift::between(got, want);
    prop_assert!(
        d.max_rel_to_peak <= tolerance::FP32.max_rel_to_peak
            && d.max_abs <= tolerance::FP32.max_abs,
        "{}: max_abs {} rel {}",
        what,
        d.max_abs,
        d.max_rel_to_peak
    );
    Ok(())
}

/// `len` seeded pseudo-random values in [-1, 1) (xorshift; the same seed gives the same values).
pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}
