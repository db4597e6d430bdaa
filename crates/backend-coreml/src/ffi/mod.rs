//! The only module that calls the bridge: status-to-Result mapping, owned bridge strings, the
//! owning model handle (freed exactly once on Drop), describe and the compute plan; predictions
//! and cancellation are in `predict.rs`.
#![allow(unsafe_code)]

mod predict;

pub(crate) use predict::{CancelHook, CancelOutcome, OutputRequest, RawOutput};

use std::collections::HashMap;
use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use coreml_sys::{
    Bridge, CMB_DEVICE_CPU, CMB_DEVICE_GPU, CMB_DEVICE_NEURAL_ENGINE, CMB_ERR_CANCELLED,
    CMB_ERR_COMPILE, CMB_ERR_INTERNAL, CMB_ERR_INVALID_ARGUMENT, CMB_ERR_IO, CMB_ERR_LOAD,
    CMB_ERR_OUTPUT, CMB_ERR_PREDICT, CMB_ERR_TIMEOUT, CMB_ERR_UNSUPPORTED, CMB_IO_INPUT,
    CMB_IO_OUTPUT, CMB_OK, CmbFeatureDesc, CmbModel, CmbPlanOp,
};
use inference_api::{ComputeUnits, Error, Result};

/// Name of a status code, for messages.
pub(crate) fn status_name(status: i32) -> &'static str {
    match status {
        CMB_OK => "ok",
        CMB_ERR_INVALID_ARGUMENT => "invalid argument",
        CMB_ERR_COMPILE => "compile",
        CMB_ERR_LOAD => "load",
        CMB_ERR_PREDICT => "predict",
        CMB_ERR_OUTPUT => "output",
        CMB_ERR_UNSUPPORTED => "unsupported",
        CMB_ERR_IO => "io",
        CMB_ERR_INTERNAL => "internal",
        CMB_ERR_CANCELLED => "cancelled",
        CMB_ERR_TIMEOUT => "timeout",
        _ => "unknown status",
    }
}

/// Copies a bridge-allocated string and frees it with the bridge's own free function, exactly
/// once. NULL gives `None`.
fn take_string(bridge: &Bridge, ptr: *mut c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL string from the bridge is NUL-terminated and stays valid until we
    // free it, which happens right below and nowhere else.
    let text = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy().into_owned();
    // SAFETY: `ptr` came from this bridge and has not been freed; ownership ends here.
    unsafe { (bridge.fns().string_free)(ptr) };
    Some(text)
}

/// The one place a status becomes a `Result`. Always takes ownership of `err` (freeing it, even
/// on success, should a faulty bridge set it). `what` says which call failed.
pub(crate) fn check(bridge: &Bridge, status: i32, err: *mut c_char, what: &str) -> Result<()> {
    let message = take_string(bridge, err);
    if status == CMB_OK {
        return Ok(());
    }
    let message = message.unwrap_or_else(|| "the bridge gave no message".to_string());
    let text = format!("{what}: {message} (bridge status {status}, {})", status_name(status));
    Err(match status {
        CMB_ERR_COMPILE => Error::Compile(text),
        CMB_ERR_LOAD => Error::Load(text),
        CMB_ERR_UNSUPPORTED => Error::Unavailable(text),
        CMB_ERR_IO => Error::io_message(what, text),
        _ => Error::Runtime(text),
    })
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::io_message(path, "path contains a NUL byte"))
}

/// OS name, version and build, as the bridge reports them.
pub(crate) fn os_build(bridge: &Bridge) -> Result<String> {
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid for writes; strings returned are freed by take_string.
    let status = unsafe { (bridge.fns().os_build)(&mut out, &mut err) };
    let value = take_string(bridge, out);
    check(bridge, status, err, "cmb_os_build")?;
    value.ok_or_else(|| Error::Runtime("cmb_os_build returned no string".into()))
}

/// Compute devices present, as names (`cpu`, `gpu`, `neural_engine`).
pub(crate) fn compute_devices(bridge: &Bridge) -> Result<Vec<String>> {
    let mut mask = 0u32;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid for writes.
    let status = unsafe { (bridge.fns().compute_devices)(&mut mask, &mut err) };
    check(bridge, status, err, "cmb_compute_devices")?;
    Ok([CMB_DEVICE_CPU, CMB_DEVICE_GPU, CMB_DEVICE_NEURAL_ENGINE]
        .into_iter()
        .filter(|bit| mask & bit != 0)
        .map(|bit| device_name(bit as i32).to_string())
        .collect())
}

/// Name of a single `CMB_DEVICE_*` value.
pub(crate) fn device_name(device: i32) -> &'static str {
    match device as u32 {
        CMB_DEVICE_CPU => "cpu",
        CMB_DEVICE_GPU => "gpu",
        CMB_DEVICE_NEURAL_ENGINE => "neural_engine",
        _ => "unknown",
    }
}

/// Compiles `model` into `dest_dir`; returns the compiled `.mlmodelc` path.
pub(crate) fn compile(bridge: &Bridge, model: &Path, dest_dir: &Path) -> Result<PathBuf> {
    let model_c = c_path(model)?;
    let dest_c = c_path(dest_dir)?;
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: the C strings live across the call; out-pointers are valid for writes.
    let status = unsafe {
        (bridge.fns().compile_model)(model_c.as_ptr(), dest_c.as_ptr(), &mut out, &mut err)
    };
    let path = take_string(bridge, out);
    check(bridge, status, err, &format!("compiling {}", model.display()))?;
    path.map(PathBuf::from)
        .ok_or_else(|| Error::Compile("cmb_compile_model returned no path".into()))
}

/// An owned model handle: created by `cmb_model_load`, freed exactly once by Drop. The
/// handle keeps the bridge library loaded. Not `Sync`: one call at a time per handle.
pub(crate) struct ModelHandle {
    bridge: Arc<Bridge>,
    ptr: NonNull<CmbModel>,
    /// First-buffer sizes of outputs by name (declared default shapes).
    hints: Arc<HashMap<String, usize>>,
    /// Largest size, in elements, this handle has seen for each output.
    seen: HashMap<String, usize>,
}

// SAFETY: the contract lets any thread use a handle as long as calls on it never overlap;
// ModelHandle is not Sync and every call goes through `&self`/`&mut self` of one owner.
unsafe impl Send for ModelHandle {}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle").field("ptr", &self.ptr).finish_non_exhaustive()
    }
}

impl Drop for ModelHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from cmb_model_load and is freed only here; Drop runs once.
        unsafe { (self.bridge.fns().model_free)(self.ptr.as_ptr()) };
    }
}

impl ModelHandle {
    /// Loads a compiled model with the given compute units.
    pub(crate) fn load(bridge: &Arc<Bridge>, compiled: &Path, units: ComputeUnits) -> Result<Self> {
        let path_c = c_path(compiled)?;
        let mut out: *mut CmbModel = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the C string lives across the call; out-pointers are valid for writes.
        let status = unsafe {
            (bridge.fns().model_load)(
                path_c.as_ptr(),
                coreml_sys::compute_units_code(units),
                &mut out,
                &mut err,
            )
        };
        let owned = NonNull::new(out).map(|ptr| ModelHandle {
            bridge: bridge.clone(),
            ptr,
            hints: Arc::default(),
            seen: HashMap::new(),
        });
        check(bridge, status, err, &format!("loading {}", compiled.display()))?;
        owned.ok_or_else(|| Error::Load("cmb_model_load succeeded but returned no model".into()))
    }

    /// Describes every input (`CMB_IO_INPUT`) or output (`CMB_IO_OUTPUT`).
    pub(crate) fn describe(&self, io: i32) -> Result<Vec<CmbFeatureDesc>> {
        let side = if io == CMB_IO_INPUT { "inputs" } else { "outputs" };
        debug_assert!(io == CMB_IO_INPUT || io == CMB_IO_OUTPUT);
        let mut count = 0u32;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ptr` is a live handle; out-pointers are valid for writes.
        let status = unsafe {
            (self.bridge.fns().feature_count)(self.ptr.as_ptr(), io, &mut count, &mut err)
        };
        check(&self.bridge, status, err, &format!("counting the model's {side}"))?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let mut desc = CmbFeatureDesc::default();
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: `ptr` is live; `desc` is a valid, writable cmb_feature_desc.
            let status = unsafe {
                (self.bridge.fns().feature_describe)(
                    self.ptr.as_ptr(),
                    io,
                    index,
                    &mut desc,
                    &mut err,
                )
            };
            check(&self.bridge, status, err, &format!("describing the model's {side}"))?;
            out.push(desc);
        }
        Ok(out)
    }

    /// The compute plan of the function the model runs, waiting at most `timeout` for Core ML
    /// to build it. Never a guess: no plan (old OS, not an ML Program) or a wait that ran out
    /// is reported as such.
    pub(crate) fn compute_plan(&mut self, timeout: Duration) -> Result<PlanOutcome> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1);
        let mut total = 0u32;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ptr` is live; capacity 0 with a NULL array is allowed by the contract.
        let status = unsafe {
            (self.bridge.fns().compute_plan)(
                self.ptr.as_ptr(),
                timeout_ms,
                std::ptr::null_mut(),
                0,
                &mut total,
                &mut err,
            )
        };
        match status {
            CMB_ERR_UNSUPPORTED => {
                let why = take_string(&self.bridge, err);
                return Ok(PlanOutcome::None(why.unwrap_or_else(|| "no compute plan".into())));
            }
            CMB_ERR_TIMEOUT => {
                let why = take_string(&self.bridge, err);
                return Ok(PlanOutcome::TimedOut(format!(
                    "the compute plan was not ready within {timeout_ms} ms ({})",
                    why.unwrap_or_else(|| "no message".into())
                )));
            }
            _ => check(&self.bridge, status, err, "reading the compute plan")?,
        }
        let mut ops = vec![CmbPlanOp::default(); total as usize];
        let mut written = 0u32;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ops` holds `total` writable entries and we pass that capacity.
        let status = unsafe {
            (self.bridge.fns().compute_plan)(
                self.ptr.as_ptr(),
                timeout_ms,
                ops.as_mut_ptr(),
                total,
                &mut written,
                &mut err,
            )
        };
        check(&self.bridge, status, err, "reading the compute plan")?;
        ops.truncate(written.min(total) as usize);
        Ok(PlanOutcome::Planned(ops))
    }

    /// Sets the first-buffer size of outputs by name (from the declared default shapes);
    /// every handle of a model gets the same hints from the engine's factory.
    pub(crate) fn with_size_hints(mut self, hints: Arc<HashMap<String, usize>>) -> Self {
        self.hints = hints;
        self
    }
}

/// What the bridge said about the compute plan.
pub(crate) enum PlanOutcome {
    /// The plan's operations.
    Planned(Vec<CmbPlanOp>),
    /// The OS or the model has none (the bridge's words).
    None(String),
    /// Core ML did not build it within the bound.
    TimedOut(String),
}
