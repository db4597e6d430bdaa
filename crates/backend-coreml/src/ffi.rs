//! The only module that calls the bridge: status-to-Result mapping, owned bridge strings, the
//! owning model handle (freed exactly once on Drop) and marshalling of tensor descriptors.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use coreml_sys::{
    Bridge, CMB_DEVICE_CPU, CMB_DEVICE_GPU, CMB_DEVICE_NEURAL_ENGINE, CMB_ERR_CANCELLED,
    CMB_ERR_COMPILE, CMB_ERR_INTERNAL, CMB_ERR_INVALID_ARGUMENT, CMB_ERR_IO, CMB_ERR_LOAD,
    CMB_ERR_OUTPUT, CMB_ERR_PREDICT, CMB_ERR_TIMEOUT, CMB_ERR_UNSUPPORTED, CMB_IO_INPUT,
    CMB_IO_OUTPUT, CMB_MAX_RANK, CMB_OK, CmbFeatureDesc, CmbModel, CmbPlanOp, CmbTensor,
};
use inference_api::{ComputeUnits, DType, Error, Result, RunContext, Tensor, TensorData};

use crate::watch::Watcher;

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

/// One output the caller wants: its name, element type and buffer capacity in elements.
#[derive(Debug, Clone)]
pub(crate) struct OutputRequest {
    pub(crate) name: CString,
    pub(crate) dtype: DType,
    pub(crate) capacity: usize,
}

/// What the bridge wrote for one output.
#[derive(Debug)]
pub(crate) struct RawOutput {
    pub(crate) rank: u32,
    pub(crate) shape: Vec<i64>,
    pub(crate) bytes_written: u64,
    pub(crate) data: TensorData,
}

fn data_ptr(data: &TensorData) -> *const c_void {
    match data {
        TensorData::F32(v) => v.as_ptr().cast(),
        TensorData::F16(v) => v.as_ptr().cast(),
        TensorData::I32(v) => v.as_ptr().cast(),
        TensorData::I64(v) => v.as_ptr().cast(),
        TensorData::I8(v) => v.as_ptr().cast(),
        TensorData::U8(v) => v.as_ptr().cast(),
    }
}

fn data_ptr_mut(data: &mut TensorData) -> *mut c_void {
    match data {
        TensorData::F32(v) => v.as_mut_ptr().cast(),
        TensorData::F16(v) => v.as_mut_ptr().cast(),
        TensorData::I32(v) => v.as_mut_ptr().cast(),
        TensorData::I64(v) => v.as_mut_ptr().cast(),
        TensorData::I8(v) => v.as_mut_ptr().cast(),
        TensorData::U8(v) => v.as_mut_ptr().cast(),
    }
}

fn empty_descriptor() -> CmbTensor {
    CmbTensor {
        name: std::ptr::null(),
        data: std::ptr::null_mut(),
        bytes: 0,
        dtype: 0,
        rank: 0,
        shape: [0; CMB_MAX_RANK],
        strides: [0; CMB_MAX_RANK],
        bytes_written: 0,
    }
}

/// A dense descriptor over `tensor`'s storage; valid while `name` and `tensor` live.
fn input_descriptor(name: &CString, tensor: &Tensor) -> Result<CmbTensor> {
    let shape = tensor.shape();
    if shape.len() > CMB_MAX_RANK {
        return Err(Error::invalid_input(
            name.to_string_lossy(),
            format!("rank <= {CMB_MAX_RANK}"),
            format!("rank {}", shape.len()),
        ));
    }
    let mut d = empty_descriptor();
    d.name = name.as_ptr();
    d.data = data_ptr(tensor.data()).cast_mut();
    d.bytes = (tensor.len() * tensor.dtype().size_of()) as u64;
    d.dtype = coreml_sys::dtype_code(tensor.dtype());
    d.rank = shape.len() as u32;
    let mut stride = 1i64;
    for i in (0..shape.len()).rev() {
        d.shape[i] = shape[i] as i64;
        d.strides[i] = stride;
        stride = stride.saturating_mul(shape[i] as i64);
    }
    Ok(d)
}

/// What `cmb_model_cancel` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// A stop was requested (or nothing was running).
    Requested,
    /// The bridge cannot stop a prediction (synchronous Core ML, before macOS 14).
    Unsupported,
    /// The call failed otherwise (message dropped: the prediction simply runs on).
    Failed,
}

/// Lets the cancel watcher ask the prediction on one handle to stop. Made only inside
/// [`ModelHandle::predict`], registered with the watcher for the length of the FFI call and
/// unregistered (by the [`crate::watch::Watch`] guard) before `predict` returns, so it never
/// outlives the handle or the call.
pub(crate) struct CancelHook {
    bridge: Arc<Bridge>,
    ptr: NonNull<CmbModel>,
}

// SAFETY: the contract allows cmb_model_cancel from any thread while cmb_model_predict runs
// on the same handle; the hook is only used while its prediction is registered (see above).
unsafe impl Send for CancelHook {}

impl CancelHook {
    /// Calls `cmb_model_cancel` on the handle.
    pub(crate) fn cancel(&self) -> CancelOutcome {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handle is live: the hook is unregistered before the prediction returns,
        // and a handle is freed only after that (ModelHandle::drop needs the lease back). The
        // contract allows this call concurrently with cmb_model_predict on the same handle.
        let status = unsafe { (self.bridge.fns().model_cancel)(self.ptr.as_ptr(), &mut err) };
        let _ = take_string(&self.bridge, err);
        match status {
            CMB_OK => CancelOutcome::Requested,
            CMB_ERR_UNSUPPORTED => CancelOutcome::Unsupported,
            _ => CancelOutcome::Failed,
        }
    }
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

    /// Runs one prediction (see [`ModelHandle::predict_unwatched`]) while `watcher` watches
    /// `ctx`: once the deadline passes or the token is cancelled, the bridge is asked to stop
    /// (`cmb_model_cancel`). Returns the outputs and whether a stop was requested; a stopped
    /// prediction is `Err(Error::Cancelled)`.
    pub(crate) fn predict(
        &mut self,
        inputs: &[(CString, Tensor)],
        outputs: &[OutputRequest],
        watcher: &Watcher,
        ctx: &RunContext,
        unsupported: &Arc<AtomicBool>,
    ) -> (Result<Vec<RawOutput>>, bool) {
        let hook = CancelHook { bridge: self.bridge.clone(), ptr: self.ptr };
        let watch = watcher.watch(hook, ctx, unsupported);
        let result = self.predict_unwatched(inputs, outputs);
        let requested = watch.is_some_and(|w| w.finish());
        (result, requested)
    }

    /// Runs one prediction. Inputs are read in place; outputs land in fresh buffers of the
    /// requested capacity, or of the declared default shape, or of the largest size this
    /// handle has seen for that output, whichever is largest. When an output does not fit
    /// (a flexible or undeclared shape), the bridge reports its shape (ABI 2): the buffer is
    /// sized from it and the prediction runs once more. The caller validates inputs first and
    /// outputs afterwards.
    fn predict_unwatched(
        &mut self,
        inputs: &[(CString, Tensor)],
        outputs: &[OutputRequest],
    ) -> Result<Vec<RawOutput>> {
        let in_desc: Vec<CmbTensor> =
            inputs.iter().map(|(n, t)| input_descriptor(n, t)).collect::<Result<_>>()?;
        let mut capacities: Vec<usize> = outputs
            .iter()
            .map(|o| {
                let name = o.name.to_string_lossy();
                let hint = self.hints.get(name.as_ref()).copied().unwrap_or(0);
                let seen = self.seen.get(name.as_ref()).copied().unwrap_or(0);
                o.capacity.max(hint).max(seen).max(1)
            })
            .collect();
        match self.predict_once(&in_desc, outputs, &capacities)? {
            Attempt::Done(raw) => Ok(raw),
            Attempt::TooSmall(needed, first_message) => {
                for (i, need) in needed {
                    capacities[i] = need;
                    let name = outputs[i].name.to_string_lossy().into_owned();
                    let seen = self.seen.entry(name).or_insert(0);
                    *seen = (*seen).max(need);
                }
                match self.predict_once(&in_desc, outputs, &capacities)? {
                    Attempt::Done(raw) => Ok(raw),
                    Attempt::TooSmall(_, message) => Err(Error::Runtime(format!(
                        "prediction: an output still did not fit a buffer sized from the shape \
                         the bridge reported ({message}; first attempt: {first_message}); the \
                         bridge is inconsistent: rebuild it with `cargo xtask build-bridge`"
                    ))),
                }
            }
        }
    }

    fn predict_once(
        &mut self,
        in_desc: &[CmbTensor],
        outputs: &[OutputRequest],
        capacities: &[usize],
    ) -> Result<Attempt> {
        let mut buffers: Vec<TensorData> =
            outputs.iter().zip(capacities).map(|(o, &n)| TensorData::zeros(o.dtype, n)).collect();
        let mut out_desc: Vec<CmbTensor> = outputs
            .iter()
            .zip(buffers.iter_mut())
            .map(|(o, buf)| {
                let mut d = empty_descriptor();
                d.name = o.name.as_ptr();
                d.bytes = (buf.len() * o.dtype.size_of()) as u64;
                d.data = data_ptr_mut(buf);
                d.dtype = coreml_sys::dtype_code(o.dtype);
                d
            })
            .collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: every descriptor points into `inputs`, `outputs` or `buffers`, all of which
        // outlive the call; byte counts match the allocations; `ptr` is live and this handle
        // is used by one thread at a time (`&mut self`).
        let status = unsafe {
            (self.bridge.fns().predict)(
                self.ptr.as_ptr(),
                in_desc.as_ptr(),
                in_desc.len() as u32,
                out_desc.as_mut_ptr(),
                out_desc.len() as u32,
                &mut err,
            )
        };
        if status == CMB_ERR_OUTPUT {
            let needed: Vec<(usize, usize)> = out_desc
                .iter()
                .zip(outputs)
                .enumerate()
                .filter_map(|(i, (d, o))| reported_need(d, o.dtype).map(|n| (i, n)))
                .collect();
            if !needed.is_empty() {
                let message = take_string(&self.bridge, err)
                    .unwrap_or_else(|| "the bridge gave no message".into());
                for &(i, n) in &needed {
                    if n > MAX_OUTPUT_ELEMENTS {
                        return Err(Error::Runtime(format!(
                            "prediction: output `{}` reports {n} elements, more than the \
                             {MAX_OUTPUT_ELEMENTS} this engine allocates ({message})",
                            outputs[i].name.to_string_lossy()
                        )));
                    }
                }
                return Ok(Attempt::TooSmall(needed, message));
            }
        }
        if status == CMB_ERR_CANCELLED {
            let _ = take_string(&self.bridge, err);
            return Err(Error::Cancelled { engine: crate::ENGINE_NAME.to_string() });
        }
        check(&self.bridge, status, err, "prediction")?;
        Ok(Attempt::Done(
            out_desc
                .iter()
                .zip(buffers)
                .map(|(d, data)| RawOutput {
                    rank: d.rank,
                    shape: d.shape[..(d.rank as usize).min(CMB_MAX_RANK)].to_vec(),
                    bytes_written: d.bytes_written,
                    data,
                })
                .collect(),
        ))
    }
}

/// Largest output buffer, in elements, that a reported shape may ask for (4 Gi elements).
const MAX_OUTPUT_ELEMENTS: usize = 1 << 32;

/// The element count a too-small output needs, when the bridge reported its shape for it:
/// nothing written, a valid rank and shape, and more elements than the buffer holds.
fn reported_need(d: &CmbTensor, dtype: DType) -> Option<usize> {
    let rank = d.rank as usize;
    if d.bytes_written != 0 || rank == 0 || rank > CMB_MAX_RANK {
        return None;
    }
    let n = d.shape[..rank]
        .iter()
        .try_fold(1usize, |acc, &s| usize::try_from(s).ok().and_then(|s| acc.checked_mul(s)))?;
    let have = usize::try_from(d.bytes).ok()? / dtype.size_of();
    (n > have).then_some(n)
}

/// One call to `cmb_model_predict`.
enum Attempt {
    /// Every output fitted.
    Done(Vec<RawOutput>),
    /// Outputs (index, elements needed) that did not fit, and the bridge's message.
    TooSmall(Vec<(usize, usize)>, String),
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
