//! Helpers shared by the kernels' property tests: a thread pool of a given size and the FP32
//! tolerance check against a naive reference.

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
