//! A counting global allocator for tests that prove a code path allocates nothing: the system
//! allocator, plus a count of allocations made while counting is switched on (on any thread).
//! It lives here because implementing `GlobalAlloc` takes `unsafe`, which only the kernels and
//! FFI crates may use; a test binary installs it with `#[global_allocator]`.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, counting allocations and reallocations while [`CountingAllocator::count`]
/// runs its closure.
pub struct CountingAllocator {
    on: AtomicBool,
    allocs: AtomicUsize,
}

impl CountingAllocator {
    /// A counter, switched off.
    pub const fn new() -> CountingAllocator {
        CountingAllocator { on: AtomicBool::new(false), allocs: AtomicUsize::new(0) }
    }

    /// Runs `f` and returns its result with the number of allocations made meanwhile, by any
    /// thread of the process.
    pub fn count<R>(&self, f: impl FnOnce() -> R) -> (R, usize) {
        self.allocs.store(0, Ordering::SeqCst);
        self.on.store(true, Ordering::SeqCst);
        let r = f();
        self.on.store(false, Ordering::SeqCst);
        (r, self.allocs.load(Ordering::SeqCst))
    }

    fn note(&self) {
        if self.on.load(Ordering::Relaxed) {
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        CountingAllocator::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping is a
// relaxed atomic load and add, which neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}
