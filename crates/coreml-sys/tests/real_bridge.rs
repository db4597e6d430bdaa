//! Smoke test of the real Swift bridge on a Mac: the library `cargo xtask build-bridge` built
//! opens, reports this crate's ABI version, answers the model-free entry points and refuses bad
//! arguments with a status and a message instead of crashing. Ignored by default (it needs the
//! built dylib); the macOS workflow runs it with `-- --ignored`.
#![cfg(target_os = "macos")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};

use coreml_sys::{
    Bridge, CMB_ABI_VERSION, CMB_DEVICE_CPU, CMB_ERR_INVALID_ARGUMENT, CMB_ERR_UNSUPPORTED, CMB_OK,
    SearchPolicy,
};

fn bridge() -> Bridge {
    Bridge::locate(&SearchPolicy::Default)
        .expect("the bridge must be built first: cargo xtask build-bridge")
}

/// Takes a bridge-allocated string, frees it through the bridge and returns its text.
fn take(b: &Bridge, s: *mut c_char) -> String {
    assert!(!s.is_null(), "the bridge returned no string");
    // SAFETY: the bridge returns a NUL-terminated string it allocated; freed once below.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // SAFETY: `s` came from the bridge and is freed exactly once.
    unsafe { (b.fns().string_free)(s) };
    text
}

#[test]
#[ignore = "needs the built bridge: cargo xtask build-bridge, then cargo test -p coreml-sys -- --ignored"]
fn the_real_bridge_loads_and_answers() {
    let b = bridge();
    assert_eq!(b.abi_version(), CMB_ABI_VERSION);

    let mut out: *mut c_char = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid for writes.
    let status = unsafe { (b.fns().os_build)(&mut out, &mut err) };
    assert_eq!(status, CMB_OK);
    assert!(err.is_null());
    let os = take(&b, out);
    assert!(os.starts_with("macOS"), "{os}");

    let mut mask = 0u32;
    // SAFETY: valid out-pointers.
    let status = unsafe { (b.fns().compute_devices)(&mut mask, &mut err) };
    if status == CMB_OK {
        assert!(mask & CMB_DEVICE_CPU != 0, "no CPU in device mask {mask:#x}");
    } else {
        // macOS 13 has no device inventory: UNSUPPORTED with a message
        assert_eq!(status, CMB_ERR_UNSUPPORTED);
        assert!(take(&b, err).contains("macOS 14"));
    }
}

#[test]
#[ignore = "needs the built bridge: cargo xtask build-bridge, then cargo test -p coreml-sys -- --ignored"]
fn bad_arguments_get_a_status_and_a_message() {
    let b = bridge();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: a NULL handle is allowed by the contract and must be refused, not dereferenced.
    let status = unsafe { (b.fns().model_cancel)(std::ptr::null_mut(), &mut err) };
    assert_eq!(status, CMB_ERR_INVALID_ARGUMENT);
    assert!(take(&b, err).contains("NULL model handle"));

    let mut out = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    let path = c"/nonexistent/model.mlmodelc";
    // SAFETY: valid C string and out-pointers; the code 99 is refused before any load.
    let status = unsafe { (b.fns().model_load)(path.as_ptr(), 99, &mut out, &mut err) };
    assert_eq!(status, CMB_ERR_INVALID_ARGUMENT);
    assert!(out.is_null());
    assert!(take(&b, err).contains("compute units"));

    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: as above, with a valid code: loading a missing model fails with LOAD.
    let status = unsafe { (b.fns().model_load)(path.as_ptr(), 1, &mut out, &mut err) };
    assert_eq!(status, coreml_sys::CMB_ERR_LOAD);
    assert!(out.is_null());
    assert!(take(&b, err).contains("/nonexistent/model.mlmodelc"));
}
