//! Per-op timing of the kernels: with the `profile` feature built in, the `INFER_PROFILE`
//! environment variable (read once) switches it on and each kernel kind accumulates its call
//! count and wall time, and how busy the pool's threads were during it. Without the feature
//! every function here is a no-op.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: OnceLock<bool> = OnceLock::new();
/// Multiply-add work of convolutions and matmuls, counted always (one relaxed add per call).
static FLOPS: AtomicU64 = AtomicU64::new(0);
static TABLE: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// One kernel kind's accumulated calls and times.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The kernel kind.
    pub kind: &'static str,
    /// Calls.
    pub calls: u64,
    /// Wall time of the calls.
    pub total: Duration,
    /// Of that, the calling thread's time waiting for the pool's other threads to finish
    /// their tasks (its own share done).
    pub waited: Duration,
    /// Thread time spent working: the calling thread outside the pool's loops plus every
    /// thread's time in the loops' tasks.
    pub busy: Duration,
    /// Thread time available: the wall time times the thread count of each call.
    pub capacity: Duration,
}

/// The current call's pool accounting on the calling thread: time inside the pool's loops,
/// time of all threads in their tasks, time waiting for the other threads.
#[derive(Clone, Copy, Default)]
struct Call {
    in_loops: Duration,
    tasks: Duration,
    waited: Duration,
}

thread_local! {
    static CALL: std::cell::Cell<Call> = const {
        std::cell::Cell::new(Call {
            in_loops: Duration::ZERO,
            tasks: Duration::ZERO,
            waited: Duration::ZERO,
        })
    };
}

/// Adds one parallel loop of the current call: `in_loop` of the caller's time inside it,
/// `tasks` of all threads' task time, `waited` of the caller's wait for the others.
pub(crate) fn add_loop(in_loop: Duration, tasks: Duration, waited: Duration) {
    CALL.with(|c| {
        let mut v = c.get();
        v.in_loops += in_loop;
        v.tasks += tasks;
        v.waited += waited;
        c.set(v);
    });
}

/// True when the `profile` feature is built in and `INFER_PROFILE` is set (to anything but `0`).
pub fn enabled() -> bool {
    cfg!(feature = "profile")
        && *ENABLED.get_or_init(|| std::env::var("INFER_PROFILE").is_ok_and(|v| v != "0"))
}

/// A timer for one kernel call; `None` when profiling is off.
pub fn start() -> Option<Instant> {
    enabled().then(|| {
        CALL.with(|c| c.set(Call::default()));
        Instant::now()
    })
}

/// Adds the time since `t` to `kind`.
pub fn record(kind: &'static str, t: Option<Instant>) {
    let Some(t) = t else { return };
    let d = t.elapsed();
    let call = CALL.with(|c| c.replace(Call::default()));
    let busy = call.tasks + d.saturating_sub(call.in_loops);
    let capacity = d * crate::pool::threads() as u32;
    let Ok(mut table) = TABLE.lock() else { return };
    match table.iter_mut().find(|e| e.kind == kind) {
        Some(e) => {
            e.calls += 1;
            e.total += d;
            e.waited += call.waited;
            e.busy += busy;
            e.capacity += capacity;
        }
        None => table.push(Row { kind, calls: 1, total: d, waited: call.waited, busy, capacity }),
    }
}

/// The accumulated rows, largest total first.
pub fn snapshot() -> Vec<Row> {
    let mut v = TABLE.lock().map(|t| t.clone()).unwrap_or_default();
    v.sort_by_key(|e| std::cmp::Reverse(e.total));
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
