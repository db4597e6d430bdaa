//! Test support shared by the fake-bridge tests: where the fake libraries are, its control
//! calls and counters, and a lock that serializes tests so counter deltas are exact.
#![allow(dead_code, unreachable_pub, unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use backend_coreml::{CoreMlConfig, CoreMlEngine};
use coreml_sys::SearchPolicy;

/// Mirror of the fake's `fake_stats_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeStats {
    pub models_allocated: u64,
    pub models_freed: u64,
    pub strings_allocated: u64,
    pub strings_freed: u64,
    pub bad_frees: u64,
    pub compiles: u64,
    pub loads: u64,
    pub predicts: u64,
    pub overlaps: u64,
    pub max_in_flight: u64,
    pub hung_now: u64,
    pub outputs_too_small: u64,
    pub last_plan_timeout_ms: u64,
    pub cancel_calls: u64,
    pub cancelled: u64,
}

/// Folder holding the fake libraries built by build.rs.
pub fn fake_dir() -> PathBuf {
    let dir = env!("COREML_FAKE_BRIDGE_DIR");
    assert!(!dir.is_empty(), "the fake bridge was not built (needs a Linux target and `cc`)");
    PathBuf::from(dir)
}

pub fn fake_lib() -> PathBuf {
    fake_dir().join("libfake_bridge.so")
}

struct Control {
    _lib: libloading::Library,
    stats: unsafe extern "C" fn(*mut FakeStats),
    release: unsafe extern "C" fn(i32),
    reset_peak: unsafe extern "C" fn(),
}

fn control() -> &'static Control {
    static CONTROL: OnceLock<Control> = OnceLock::new();
    CONTROL.get_or_init(|| {
        // SAFETY: the fake library has no initialisers beyond libc's; opening the same path
        // as the engine gives the same instance (and counters).
        let lib = unsafe { libloading::Library::new(fake_lib()) }.expect("open fake bridge");
        // SAFETY: the signatures match fake_bridge.c's definitions.
        unsafe {
            let stats = *lib.get::<unsafe extern "C" fn(*mut FakeStats)>(b"fake_stats").unwrap();
            let release = *lib.get::<unsafe extern "C" fn(i32)>(b"fake_release_hangs").unwrap();
            let reset_peak = *lib.get::<unsafe extern "C" fn()>(b"fake_reset_peak").unwrap();
            Control { _lib: lib, stats, release, reset_peak }
        }
    })
}

pub fn stats() -> FakeStats {
    let mut s = FakeStats::default();
    // SAFETY: `s` is a valid, writable fake_stats_t.
    unsafe { (control().stats)(&mut s) };
    s
}

/// 1 releases blocked and future "hang" predictions; 0 makes them block again.
pub fn release_hangs(released: bool) {
    // SAFETY: plain int argument.
    unsafe { (control().release)(i32::from(released)) };
}

pub fn reset_peak() {
    // SAFETY: no arguments.
    unsafe { (control().reset_peak)() };
}

/// Serializes the tests of one binary: the fake's counters are process-global.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn config(cache: &Path) -> CoreMlConfig {
    CoreMlConfig {
        bridge: SearchPolicy::Explicit(fake_lib()),
        cache_dir: Some(cache.to_path_buf()),
        instances: 1,
        stale_after: Duration::from_secs(3600),
        plan_timeout: Duration::from_secs(10),
    }
}

pub fn engine(cache: &Path) -> CoreMlEngine {
    CoreMlEngine::with_config(config(cache))
}

/// A compiled-model folder whose name picks the fake's behaviour.
pub fn compiled_model(dir: &Path, behaviour: &str) -> PathBuf {
    let p = dir.join(format!("{behaviour}.mlmodelc"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Waits (at most 10 s) until every model handle the fake handed out since `before` is freed:
/// an abandoned runtime worker frees its model when its prediction finally returns.
pub fn wait_for_models_freed(before: &FakeStats) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = stats();
        if now.models_freed - before.models_freed >= now.models_allocated - before.models_allocated
        {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts that everything the fake handed out since `before` was freed exactly once.
pub fn assert_balanced(before: &FakeStats) {
    let now = stats();
    assert_eq!(
        now.models_allocated - before.models_allocated,
        now.models_freed - before.models_freed,
        "model handles leaked or double-freed: {now:?}"
    );
    assert_eq!(
        now.strings_allocated - before.strings_allocated,
        now.strings_freed - before.strings_freed,
        "bridge strings leaked: {now:?}"
    );
    assert_eq!(now.bad_frees, before.bad_frees, "a pointer was freed twice or was never ours");
}
