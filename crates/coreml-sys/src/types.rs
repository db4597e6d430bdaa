//! `#[repr(C)]` mirrors of the header's constants, structs and function signatures.

use std::ffi::{c_char, c_void};

/// The ABI version this crate mirrors; the library's `cmb_abi_version()` must return it.
pub const CMB_ABI_VERSION: u32 = 2;
/// Largest tensor rank that crosses the boundary.
pub const CMB_MAX_RANK: usize = 8;
/// Capacity of fixed name buffers, including the terminating NUL.
pub const CMB_NAME_CAPACITY: usize = 256;
/// Capacity of a plan entry's operator-name buffer, including the NUL.
pub const CMB_OP_NAME_CAPACITY: usize = 64;

/// Success.
pub const CMB_OK: i32 = 0;
/// A NULL pointer, bad code, unknown feature or bad descriptor.
pub const CMB_ERR_INVALID_ARGUMENT: i32 = 1;
/// Compiling the model failed.
pub const CMB_ERR_COMPILE: i32 = 2;
/// Loading the compiled model failed.
pub const CMB_ERR_LOAD: i32 = 3;
/// The prediction failed.
pub const CMB_ERR_PREDICT: i32 = 4;
/// An output did not fit the caller's buffer or dtype.
pub const CMB_ERR_OUTPUT: i32 = 5;
/// The OS or the model lacks the feature (e.g. the compute plan).
pub const CMB_ERR_UNSUPPORTED: i32 = 6;
/// A file operation failed.
pub const CMB_ERR_IO: i32 = 7;
/// Anything else.
pub const CMB_ERR_INTERNAL: i32 = 8;
/// `cmb_model_cancel` stopped the prediction (ABI 2).
pub const CMB_ERR_CANCELLED: i32 = 9;
/// A bounded wait ran out, e.g. building the compute plan (ABI 2).
pub const CMB_ERR_TIMEOUT: i32 = 10;

/// Compute units: every device (`MLComputeUnits.all`).
pub const CMB_COMPUTE_ALL: i32 = 0;
/// Compute units: CPU only.
pub const CMB_COMPUTE_CPU_ONLY: i32 = 1;
/// Compute units: CPU and GPU.
pub const CMB_COMPUTE_CPU_AND_GPU: i32 = 2;
/// Compute units: CPU and Neural Engine.
pub const CMB_COMPUTE_CPU_AND_NEURAL_ENGINE: i32 = 3;

/// Element type code: f32.
pub const CMB_DTYPE_F32: i32 = 0;
/// Element type code: f16.
pub const CMB_DTYPE_F16: i32 = 1;
/// Element type code: i32.
pub const CMB_DTYPE_I32: i32 = 2;
/// Element type code: i64.
pub const CMB_DTYPE_I64: i32 = 3;
/// Element type code: i8.
pub const CMB_DTYPE_I8: i32 = 4;
/// Element type code: u8.
pub const CMB_DTYPE_U8: i32 = 5;

/// Feature kind: dense multi-array.
pub const CMB_FEATURE_MULTIARRAY: i32 = 0;
/// Feature kind: image.
pub const CMB_FEATURE_IMAGE: i32 = 1;
/// Feature kind the bridge cannot pass.
pub const CMB_FEATURE_OTHER: i32 = 2;

/// Image pixels supplied as R, G, B.
pub const CMB_IMAGE_RGB: i32 = 0;
/// Image pixels supplied as B, G, R.
pub const CMB_IMAGE_BGR: i32 = 1;
/// Image pixels supplied as one gray channel.
pub const CMB_IMAGE_GRAY: i32 = 2;

/// Describe the model's inputs.
pub const CMB_IO_INPUT: i32 = 0;
/// Describe the model's outputs.
pub const CMB_IO_OUTPUT: i32 = 1;

/// Device bit: CPU.
pub const CMB_DEVICE_CPU: u32 = 1;
/// Device bit: GPU.
pub const CMB_DEVICE_GPU: u32 = 2;
/// Device bit: Neural Engine.
pub const CMB_DEVICE_NEURAL_ENGINE: u32 = 4;

/// Opaque model handle (`cmb_model`).
#[repr(C)]
pub struct CmbModel {
    _private: [u8; 0],
}

/// Mirror of `cmb_feature_desc`: one declared input or output.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CmbFeatureDesc {
    /// NUL-terminated UTF-8 name.
    pub name: [c_char; CMB_NAME_CAPACITY],
    /// `CMB_FEATURE_*`.
    pub kind: i32,
    /// `CMB_DTYPE_*` code ([`crate::dtype_code`]), or -1.
    pub dtype: i32,
    /// Valid entries in `shape`.
    pub rank: u32,
    /// 1 when the model accepts other shapes.
    pub flexible: i32,
    /// Declared shape.
    pub shape: [i64; CMB_MAX_RANK],
    /// Image width in pixels (images only).
    pub image_width: i64,
    /// Image height in pixels (images only).
    pub image_height: i64,
    /// `CMB_IMAGE_*` (images only), else -1.
    pub image_format: i32,
    /// CoreVideo pixel format OSType (images only).
    pub image_pixel_format: u32,
}

impl Default for CmbFeatureDesc {
    fn default() -> Self {
        CmbFeatureDesc {
            name: [0; CMB_NAME_CAPACITY],
            kind: 0,
            dtype: -1,
            rank: 0,
            flexible: 0,
            shape: [0; CMB_MAX_RANK],
            image_width: 0,
            image_height: 0,
            image_format: -1,
            image_pixel_format: 0,
        }
    }
}

/// Mirror of `cmb_tensor`: a binary tensor descriptor over borrowed memory.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CmbTensor {
    /// NUL-terminated feature name, borrowed for the call.
    pub name: *const c_char,
    /// Element storage, borrowed for the call.
    pub data: *mut c_void,
    /// Size of the storage in bytes.
    pub bytes: u64,
    /// `CMB_DTYPE_*` code of the storage ([`crate::dtype_code`]).
    pub dtype: i32,
    /// Valid entries in `shape` and `strides`.
    pub rank: u32,
    /// Shape, outermost first.
    pub shape: [i64; CMB_MAX_RANK],
    /// Strides in elements, outermost first.
    pub strides: [i64; CMB_MAX_RANK],
    /// Outputs: bytes written by the bridge.
    pub bytes_written: u64,
}

/// Mirror of `cmb_plan_op`: one operation of the compute plan.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CmbPlanOp {
    /// Operator name, NUL-terminated.
    pub op_name: [c_char; CMB_OP_NAME_CAPACITY],
    /// `CMB_DEVICE_*`, or 0 when unknown.
    pub preferred_device: i32,
    /// Mask of `CMB_DEVICE_*`.
    pub supported_devices: u32,
    /// Relative cost, negative when unknown.
    pub estimated_cost: f64,
}

impl Default for CmbPlanOp {
    fn default() -> Self {
        CmbPlanOp {
            op_name: [0; CMB_OP_NAME_CAPACITY],
            preferred_device: 0,
            supported_devices: 0,
            estimated_cost: -1.0,
        }
    }
}

// Layout checks against the C header (LP64: 8-byte pointers and int64 alignment).
const _: () = assert!(std::mem::size_of::<CmbFeatureDesc>() == 360);
const _: () = assert!(std::mem::align_of::<CmbFeatureDesc>() == 8);
const _: () = assert!(std::mem::size_of::<CmbTensor>() == 168);
const _: () = assert!(std::mem::align_of::<CmbTensor>() == 8);
const _: () = assert!(std::mem::size_of::<CmbPlanOp>() == 80);
const _: () = assert!(std::mem::offset_of!(CmbTensor, shape) == 32);
const _: () = assert!(std::mem::offset_of!(CmbTensor, bytes_written) == 160);
const _: () = assert!(std::mem::offset_of!(CmbFeatureDesc, shape) == 272);
const _: () = assert!(std::mem::offset_of!(CmbPlanOp, estimated_cost) == 72);

/// `uint32_t cmb_abi_version(void)`.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// `int32_t cmb_os_build(char **out, char **err)`.
pub type OsBuildFn = unsafe extern "C" fn(*mut *mut c_char, *mut *mut c_char) -> i32;
/// `int32_t cmb_compute_devices(uint32_t *out_mask, char **err)`.
pub type ComputeDevicesFn = unsafe extern "C" fn(*mut u32, *mut *mut c_char) -> i32;
/// `int32_t cmb_compile_model(const char *model_path, const char *dest_dir, char **out_path, char **err)`.
pub type CompileModelFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32;
/// `int32_t cmb_model_load(const char *compiled_path, int32_t compute_units, cmb_model **out, char **err)`.
pub type ModelLoadFn =
    unsafe extern "C" fn(*const c_char, i32, *mut *mut CmbModel, *mut *mut c_char) -> i32;
/// `void cmb_model_free(cmb_model *model)`.
pub type ModelFreeFn = unsafe extern "C" fn(*mut CmbModel);
/// `int32_t cmb_model_feature_count(const cmb_model *, int32_t io, uint32_t *out_count, char **err)`.
pub type FeatureCountFn =
    unsafe extern "C" fn(*const CmbModel, i32, *mut u32, *mut *mut c_char) -> i32;
/// `int32_t cmb_model_feature_describe(const cmb_model *, int32_t io, uint32_t index, cmb_feature_desc *out, char **err)`.
pub type FeatureDescribeFn =
    unsafe extern "C" fn(*const CmbModel, i32, u32, *mut CmbFeatureDesc, *mut *mut c_char) -> i32;
/// `int32_t cmb_model_compute_plan(cmb_model *, uint32_t timeout_ms, cmb_plan_op *ops, uint32_t capacity, uint32_t *out_total, char **err)`.
pub type ComputePlanFn = unsafe extern "C" fn(
    *mut CmbModel,
    u32,
    *mut CmbPlanOp,
    u32,
    *mut u32,
    *mut *mut c_char,
) -> i32;
/// `int32_t cmb_model_predict(cmb_model *, const cmb_tensor *inputs, uint32_t n_inputs, cmb_tensor *outputs, uint32_t n_outputs, char **err)`.
pub type PredictFn = unsafe extern "C" fn(
    *mut CmbModel,
    *const CmbTensor,
    u32,
    *mut CmbTensor,
    u32,
    *mut *mut c_char,
) -> i32;
/// `int32_t cmb_model_cancel(cmb_model *model, char **err)` (ABI 2).
pub type ModelCancelFn = unsafe extern "C" fn(*mut CmbModel, *mut *mut c_char) -> i32;
/// `void cmb_string_free(char *s)`.
pub type StringFreeFn = unsafe extern "C" fn(*mut c_char);

/// Every entry point of the bridge, resolved from the loaded library.
#[derive(Clone, Copy)]
pub struct FnTable {
    /// `cmb_abi_version`.
    pub abi_version: AbiVersionFn,
    /// `cmb_os_build`.
    pub os_build: OsBuildFn,
    /// `cmb_compute_devices`.
    pub compute_devices: ComputeDevicesFn,
    /// `cmb_compile_model`.
    pub compile_model: CompileModelFn,
    /// `cmb_model_load`.
    pub model_load: ModelLoadFn,
    /// `cmb_model_free`.
    pub model_free: ModelFreeFn,
    /// `cmb_model_feature_count`.
    pub feature_count: FeatureCountFn,
    /// `cmb_model_feature_describe`.
    pub feature_describe: FeatureDescribeFn,
    /// `cmb_model_compute_plan`.
    pub compute_plan: ComputePlanFn,
    /// `cmb_model_predict`.
    pub predict: PredictFn,
    /// `cmb_model_cancel` (ABI 2).
    pub model_cancel: ModelCancelFn,
    /// `cmb_string_free`.
    pub string_free: StringFreeFn,
}

impl std::fmt::Debug for FnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnTable { .. }")
    }
}
