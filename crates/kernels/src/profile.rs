//! Per-op timing of the kernels: with the `profile` feature built in, the `INFER_PROFILE`
//! environment variable (read once) switches it on and each kernel kind accumulates its call
//! count and wall time. Without the feature every function here is a no-op.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: OnceLock<bool> = OnceLock::new();
/// Multiply-add work of convolutions and matmuls, counted always (one relaxed add per call).
static FLOPS: AtomicU64 = AtomicU64::new(0);
static TABLE: Mutex<Vec<(&'static str, u64, Duration)>> = Mutex::new(Vec::new());

/// True when the `profile` feature is built in and `INFER_PROFILE` is set (to anything but `0`).
pub fn enabled() -> bool {
    cfg!(feature = "profile")
        && *ENABLED.get_or_init(|| std::env::var("INFER_PROFILE").is_ok_and(|v| v != "0"))
}

/// A timer for one kernel call; `None` when profiling is off.
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Adds the time since `t` to `kind`.
pub fn record(kind: &'static str, t: Option<Instant>) {
    let Some(t) = t else { return };
    let d = t.elapsed();
    let Ok(mut table) = TABLE.lock() else { return };
    match table.iter_mut().find(|e| e.0 == kind) {
        Some(e) => {
            e.1 += 1;
            e.2 += d;
        }
        None => table.push((kind, 1, d)),
    }
}

/// The accumulated `(kind, calls, total time)` rows, largest first.
pub fn snapshot() -> Vec<(&'static str, u64, Duration)> {
    let mut v = TABLE.lock().map(|t| t.clone()).unwrap_or_default();
    v.sort_by_key(|e| std::cmp::Reverse(e.2));
    v
}

/// Clears the accumulated rows.
pub fn reset() {
    if let Ok(mut t) = TABLE.lock() {
        t.clear();
    }
}

/// Adds `n` floating-point operations (2 per multiply-add) to the counter behind [`flops`].
pub fn add_flops(n: u64) {
    FLOPS.fetch_add(n, Ordering::Relaxed);
}

/// Floating-point operations (2 per multiply-add) of every convolution and matmul run since the
/// process started; with or without the `profile` feature. Benchmarks read it before and after
/// one run to get the model's GFLOP per run.
pub fn flops() -> u64 {
    FLOPS.load(Ordering::Relaxed)
}
