//! Predictions across the bridge: tensor descriptors over caller memory, the output buffers
//! and the one rerun when an output did not fit, and the hook the cancel watcher uses to stop a
//! prediction in flight (`cmb_model_cancel`).

use std::ffi::{CString, c_char, c_void};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coreml_sys::{
    Bridge, CMB_ERR_CANCELLED, CMB_ERR_OUTPUT, CMB_ERR_UNSUPPORTED, CMB_MAX_RANK, CMB_OK, CmbModel,
    CmbTensor,
};
use inference_api::{DType, Error, Result, RunContext, Tensor, TensorData};

use super::{ModelHandle, check, take_string};
use crate::watch::Watcher;

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

impl ModelHandle {
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
