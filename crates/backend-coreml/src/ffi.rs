//! The only module that calls the bridge: status-to-Result mapping, owned bridge strings, the
//! owning model handle (freed exactly once on Drop) and marshalling of tensor descriptors.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use coreml_sys::{
    Bridge, CMB_DEVICE_CPU, CMB_DEVICE_GPU, CMB_DEVICE_NEURAL_ENGINE, CMB_ERR_COMPILE,
    CMB_ERR_INTERNAL, CMB_ERR_INVALID_ARGUMENT, CMB_ERR_IO, CMB_ERR_LOAD, CMB_ERR_OUTPUT,
    CMB_ERR_PREDICT, CMB_ERR_UNSUPPORTED, CMB_IO_INPUT, CMB_IO_OUTPUT, CMB_MAX_RANK, CMB_OK,
    CmbFeatureDesc, CmbModel, CmbPlanOp, CmbTensor,
};
use inference_api::{ComputeUnits, DType, Error, Result, Tensor, TensorData};

/// Name of a status code, for messages.
/// How long the bridge may wait for Core ML to build a compute plan (ABI 2 bounds the wait).
const COMPUTE_PLAN_TIMEOUT_MS: u32 = 60_000;

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
        CMB_ERR_IO => Error::Io { path: what.to_string(), message: text },
        _ => Error::Runtime(text),
    })
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.to_string_lossy().as_bytes()).map_err(|_| Error::Io {
        path: path.display().to_string(),
        message: "path contains a NUL byte".into(),
    })
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
    d.dtype = tensor.dtype().abi_code() as i32;
    d.rank = shape.len() as u32;
    let mut stride = 1i64;
    for i in (0..shape.len()).rev() {
        d.shape[i] = shape[i] as i64;
        d.strides[i] = stride;
        stride = stride.saturating_mul(shape[i] as i64);
    }
    Ok(d)
}

/// An owned model handle: created by `cmb_model_load`, freed exactly once by Drop. The
/// handle keeps the bridge library loaded. Not `Sync`: one call at a time per handle.
pub(crate) struct ModelHandle {
    bridge: Arc<Bridge>,
    ptr: NonNull<CmbModel>,
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
            (bridge.fns().model_load)(path_c.as_ptr(), units.abi_code() as i32, &mut out, &mut err)
        };
        let owned = NonNull::new(out).map(|ptr| ModelHandle { bridge: bridge.clone(), ptr });
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

    /// The compute plan, or `None` when the OS or model has none (never a guess).
    pub(crate) fn compute_plan(&mut self) -> Result<Option<Vec<CmbPlanOp>>> {
        let mut total = 0u32;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ptr` is live; capacity 0 with a NULL array is allowed by the contract.
        let status = unsafe {
            (self.bridge.fns().compute_plan)(
                self.ptr.as_ptr(),
                COMPUTE_PLAN_TIMEOUT_MS,
                std::ptr::null_mut(),
                0,
                &mut total,
                &mut err,
            )
        };
        if status == CMB_ERR_UNSUPPORTED {
            take_string(&self.bridge, err);
            return Ok(None);
        }
        check(&self.bridge, status, err, "reading the compute plan")?;
        let mut ops = vec![CmbPlanOp::default(); total as usize];
        let mut written = 0u32;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ops` holds `total` writable entries and we pass that capacity.
        let status = unsafe {
            (self.bridge.fns().compute_plan)(
                self.ptr.as_ptr(),
                COMPUTE_PLAN_TIMEOUT_MS,
                ops.as_mut_ptr(),
                total,
                &mut written,
                &mut err,
            )
        };
        check(&self.bridge, status, err, "reading the compute plan")?;
        ops.truncate(written.min(total) as usize);
        Ok(Some(ops))
    }

    /// Runs one prediction. Inputs are read in place; outputs land in fresh buffers of the
    /// requested capacity. The caller validates inputs first and outputs afterwards.
    pub(crate) fn predict(
        &mut self,
        inputs: &[(CString, Tensor)],
        outputs: &[OutputRequest],
    ) -> Result<Vec<RawOutput>> {
        let in_desc: Vec<CmbTensor> =
            inputs.iter().map(|(n, t)| input_descriptor(n, t)).collect::<Result<_>>()?;
        let mut buffers: Vec<TensorData> =
            outputs.iter().map(|o| TensorData::zeros(o.dtype, o.capacity)).collect();
        let mut out_desc: Vec<CmbTensor> = outputs
            .iter()
            .zip(buffers.iter_mut())
            .map(|(o, buf)| {
                let mut d = empty_descriptor();
                d.name = o.name.as_ptr();
                d.data = data_ptr_mut(buf);
                d.bytes = (o.capacity * o.dtype.size_of()) as u64;
                d.dtype = o.dtype.abi_code() as i32;
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
        check(&self.bridge, status, err, "prediction")?;
        Ok(out_desc
            .iter()
            .zip(buffers)
            .map(|(d, data)| RawOutput {
                rank: d.rank,
                shape: d.shape[..(d.rank as usize).min(CMB_MAX_RANK)].to_vec(),
                bytes_written: d.bytes_written,
                data,
            })
            .collect())
    }
}
