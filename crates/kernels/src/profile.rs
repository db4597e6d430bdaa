//! Per-op timing of the kernels: with the `profile` feature built in, the `INFER_PROFILE`
//! environment variable (read once) switches it on and each kernel kind accumulates its call
//! count and wall time. Without the feature every function here is a no-op.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ENABLED: OnceLock<bool> = OnceLock::new();
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
