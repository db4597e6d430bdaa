//! The kernels' parallel loop: a persistent pool built for inference. Each op hands its tasks
//! (tiles, planes) to `threads - 1` long-lived workers plus the calling thread, which all claim
//! task indices from one atomic counter; no allocation per op, no work-stealing deques. Idle
//! workers spin for a short while (the next op usually follows within microseconds) and then
//! park on a condition variable, so an idle engine costs no CPU.
//!
//! The thread count is the one [`with_threads`] set for the calling thread, else the current
//! rayon pool's (`rayon::current_num_threads()`, which the engine sets per model); one pool per thread count is created on first use and lives for the
//! process. When that pool is busy (another model running at the same time), the loop falls
//! back to rayon. `INFER_POOL=rayon` forces the fallback, for A/B measurements. A loop started
//! from inside a task runs inline on that task's thread: the task is already its thread's share
//! of the work (an op that parallelises over groups runs each group's own loops serially).

#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(50);

thread_local! {
    /// Set while this thread runs a task of a parallel loop.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// The thread count [`with_threads`] set for this thread (0: none set, use rayon's).
    static THREADS: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` on the calling thread with the kernels' parallel loops spread over `threads`
/// threads (this one and `threads - 1` of the pool's workers), whichever rayon pool the caller
/// is or is not in. For callers that run only kernels (the native networks): no hand-off to a
/// rayon pool per run, and nothing allocated for it. Loops inside `f` that fall back to the
/// `gemm` crate run it single-threaded (their callers tile over the pool already).
pub fn with_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREADS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(THREADS.with(|c| c.replace(threads.max(1))));
    f()
}

/// The thread count for the `gemm` crate's own parallelism: rayon's, or 1 inside
/// [`with_threads`] (where the calling thread is not a worker of the pool rayon would use).
pub(crate) fn gemm_crate_threads() -> usize {
    if THREADS.with(Cell::get) > 0 { 1 } else { rayon::current_num_threads() }
}

/// Runs task `i` of `f` with this thread marked as inside a task (unmarked again on the way
/// out, panics included).
fn run_task(f: &(dyn Fn(usize) + Sync), i: usize) {
    struct Unmark(bool);
    impl Drop for Unmark {
        fn drop(&mut self) {
            IN_TASK.with(|c| c.set(self.0));
        }
    }
    let _unmark = Unmark(IN_TASK.with(|c| c.replace(true)));
    f(i);
}

/// A value on a cache line of its own, so threads writing it do not also invalidate what
/// others read nearby (the claim and completion counters, the epoch the workers spin on).
#[repr(align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One parallel loop: the closure, its task count, and the claim / completion counters.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: Line<AtomicUsize>,
    completed: Line<AtomicUsize>,
    /// Nanoseconds all threads spent in the tasks (counted only when profiling).
    busy: Line<AtomicU64>,
}

impl Job<'_> {
    /// Claims and runs tasks until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            if crate::profile::enabled() {
                let t = Instant::now();
                run_task(self.f, i);
                let ns = t.elapsed().as_nanos() as u64;
                self.busy.fetch_add(ns, Ordering::Relaxed);
            } else {
                run_task(self.f, i);
            }
            self.completed.fetch_add(1, Ordering::Release);
        }
    }
}

/// A pool of `workers` persistent threads (the caller is the extra one).
struct Pool {
    /// Held by the one caller currently using the pool.
    busy: AtomicBool,
    /// Bumped for every job; workers wait for it to change.
    epoch: Line<AtomicU64>,
    /// The current job (on the caller's stack), or null between jobs.
    job: AtomicPtr<Job<'static>>,
    /// Workers currently between noticing a job and finishing with it; the caller waits for
    /// zero before its job goes out of scope.
    active: Line<AtomicUsize>,
    /// Parked workers, and what they park on.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Pool {
    fn start(workers: usize) -> &'static Pool {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            busy: AtomicBool::new(false),
            epoch: Line(AtomicU64::new(0)),
            job: AtomicPtr::new(std::ptr::null_mut()),
            active: Line(AtomicUsize::new(0)),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }));
        for i in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("kernels-{i}"))
                .spawn(move || pool.worker());
            if spawned.is_err() {
                // Without its workers the pool still runs every job on the caller.
                break;
            }
        }
        pool
    }

    fn worker(&self) {
        let mut seen = self.epoch.load(Ordering::Acquire);
        loop {
            let t0 = Instant::now();
            let mut spins = 0u32;
            while self.epoch.load(Ordering::Acquire) == seen {
                std::hint::spin_loop();
                spins += 1;
                if spins.is_multiple_of(256) && t0.elapsed() > SPIN {
                    let Ok(mut g) = self.lock.lock() else { return };
                    self.sleeping.fetch_add(1, Ordering::SeqCst);
                    while self.epoch.load(Ordering::SeqCst) == seen {
                        g = match self.wake.wait(g) {
                            Ok(g) => g,
                            Err(_) => return,
                        };
                    }
                    self.sleeping.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
            }
            seen = self.epoch.load(Ordering::Acquire);
            self.active.fetch_add(1, Ordering::SeqCst);
            let p = self.job.load(Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: `p` points to the job of a caller that is inside `run`: a caller
                // nulls `job` and then waits for `active` to reach zero before its job goes
                // out of scope, and we incremented `active` before loading `p` (both SeqCst),
                // so either we saw null or the caller will wait for our decrement below.
                unsafe { (*p).work() };
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs `f(0..n)` on the workers and the calling thread; `false` (nothing run) when the
    /// pool is in use.
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if self.busy.swap(true, Ordering::Acquire) {
            return false;
        }
        let entered = crate::profile::enabled().then(Instant::now);
        let job = Job {
            f,
            n,
            next: Line(AtomicUsize::new(0)),
            completed: Line(AtomicUsize::new(0)),
            busy: Line(AtomicU64::new(0)),
        };
        let p = (&job as *const Job<'_>).cast_mut().cast::<Job<'static>>();
        self.job.store(p, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock();
            self.wake.notify_all();
        }
        job.work();
        let waiting = entered.map(|_| Instant::now());
        let mut spins = 0u32;
        while job.completed.load(Ordering::Acquire) < n {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.job.store(std::ptr::null_mut(), Ordering::SeqCst);
        while self.active.load(Ordering::SeqCst) > 0 {
            std::hint::spin_loop();
        }
        if let (Some(entered), Some(waiting)) = (entered, waiting) {
            let tasks = Duration::from_nanos(job.busy.load(Ordering::Relaxed));
            crate::profile::add_loop(entered.elapsed(), tasks, waiting.elapsed());
        }
        self.busy.store(false, Ordering::Release);
        true
    }
}

/// The pool for `threads` threads (created on first use).
fn pool_for(threads: usize) -> Option<&'static Pool> {
    static POOLS: OnceLock<Mutex<Vec<(usize, &'static Pool)>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut v = pools.lock().ok()?;
    if let Some(&(_, p)) = v.iter().find(|(t, _)| *t == threads) {
        return Some(p);
    }
    let p = Pool::start(threads - 1);
    v.push((threads, p));
    Some(p)
}

fn rayon_only() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("INFER_POOL").is_ok_and(|v| v == "rayon"))
}

/// Runs `f(i)` for every `i` in `0..n`, in parallel over the current rayon pool's thread count
/// (see the module docs); returns when all have finished. Tasks must be independent.
pub(crate) fn for_each_task(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = threads();
    if n <= 1 || threads <= 1 || IN_TASK.with(Cell::get) {
        (0..n).for_each(f);
        return;
    }
    if !rayon_only() && pool_for(threads).is_some_and(|p| p.run(n, f)) {
        return;
    }
    (0..n).into_par_iter().for_each(|i| run_task(f, i));
}

/// Runs `f` with this thread's buffer `key`, grown to at least `len` values (contents
/// unspecified; a fresh buffer when the thread's is already in use further up the stack). The
/// kernels' scratch (strips, im2col columns, packed rows) lives in such buffers, kept between
/// runs, so a steady-state run allocates nothing.
pub(crate) fn with_scratch<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// [`with_scratch`] with the slice starting on a 64-byte cache line: the packed kernels' 16-lane
/// loads from it then never straddle two lines (an unaligned strip cost the 1x1 GEMM a fifth
/// of its speed on cache-resident shapes).
pub(crate) fn with_aligned_scratch<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    with_scratch(key, len + 16, |buf| {
        let skip = buf.as_ptr().align_offset(64).min(16);
        f(&mut buf[skip..skip + len])
    })
}

/// A mutable slice shared by parallel tasks that each write their own disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: only used to hand disjoint sub-slices of one exclusively borrowed slice to the tasks
// of one parallel loop (see `slice`).
unsafe impl Send for SharedMut {}
// SAFETY: as above; sharing only copies the address.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Wraps `s`, which must stay borrowed for as long as the wrapper is used.
    pub(crate) fn new(s: &mut [f32]) -> SharedMut {
        SharedMut { ptr: s.as_mut_ptr(), len: s.len() }
    }

    /// The wrapped slice's first element, for tasks that write disjoint blocks through raw
    /// pointers (each task's own bounds and exclusivity argued at its use).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn ptr(&self) -> *mut f32 {
        self.ptr
    }

    /// The sub-slice `start..start + len`.
    ///
    /// # Safety
    /// The wrapped slice must still be live and not otherwise accessed, and no two live
    /// sub-slices handed out may overlap.
    ///
    /// # Panics
    /// When the range is out of bounds.
    pub(crate) unsafe fn slice<'a>(&self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(start.checked_add(len).is_some_and(|e| e <= self.len), "SharedMut range");
        // SAFETY: in bounds (checked); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Number of threads [`for_each_task`] spreads over here.
pub(crate) fn threads() -> usize {
    match THREADS.with(Cell::get) {
        0 => rayon::current_num_threads().max(1),
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for n in [0usize, 1, 2, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                for_each_task(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
            }
        });
    }

    #[test]
    fn a_loop_inside_a_task_runs_inline_on_that_thread() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            let hits: Vec<AtomicUsize> = (0..8 * 50).map(|_| AtomicUsize::new(0)).collect();
            let foreign = AtomicUsize::new(0);
            for_each_task(8, &|outer| {
                let me = std::thread::current().id();
                for_each_task(50, &|inner| {
                    if std::thread::current().id() != me {
                        foreign.fetch_add(1, Ordering::Relaxed);
                    }
                    hits[outer * 50 + inner].fetch_add(1, Ordering::Relaxed);
                });
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            assert_eq!(foreign.load(Ordering::Relaxed), 0, "inner tasks ran on other threads");
            // Marked only inside tasks: a loop started afterwards is parallel again.
            assert!(!IN_TASK.with(Cell::get));
        });
    }

    #[test]
    fn concurrent_callers_fall_back_and_still_finish() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    pool.install(|| {
                        for _ in 0..200 {
                            for_each_task(16, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                    })
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 200 * 16);
    }
}
