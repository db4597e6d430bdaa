/*
 * coreml_bridge.h - the C ABI between the Rust crate `coreml-sys` and the Swift Core ML bridge.
 *
 * This header is the contract. The Swift package in this folder implements it with @_cdecl;
 * crates/coreml-sys mirrors it in Rust; crates/backend-coreml/tests/fake_bridge/fake_bridge.c
 * implements it with scripted behaviour for tests on Linux. docs/ffi-contract.md states ownership,
 * lifetimes and threading for every function. Change CMB_ABI_VERSION on any change to a struct
 * layout, a signature, a status code or a meaning.
 *
 * Conventions:
 *   - Every function except cmb_abi_version, cmb_model_free and cmb_string_free returns a status
 *     (CMB_OK = 0) and takes `char **err` as its last parameter. On failure, when err is not NULL,
 *     *err receives a NUL-terminated UTF-8 message allocated by the bridge, which the caller frees
 *     exactly once with cmb_string_free. On success *err is left NULL. The caller sets *err = NULL
 *     before the call.
 *   - Handles (cmb_model *) are opaque, created by the bridge and freed exactly once with
 *     cmb_model_free.
 *   - No Swift error, Objective-C exception or Rust panic crosses this boundary.
 *   - Enumerations travel as int32_t codes; the values below are stable within an ABI version.
 */
#ifndef COREML_BRIDGE_H
#define COREML_BRIDGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this contract. cmb_abi_version() must return exactly this value. */
#define CMB_ABI_VERSION 2

/* Largest tensor rank that crosses the boundary. */
#define CMB_MAX_RANK 8
/* Capacity of fixed name buffers, including the terminating NUL. */
#define CMB_NAME_CAPACITY 256
/* Capacity of the operator-name buffer of a compute-plan entry, including the NUL. */
#define CMB_OP_NAME_CAPACITY 64

/* Status codes. */
#define CMB_OK 0
#define CMB_ERR_INVALID_ARGUMENT 1 /* a NULL pointer, bad code, unknown feature, bad descriptor */
#define CMB_ERR_COMPILE 2          /* MLModel.compileModel failed */
#define CMB_ERR_LOAD 3             /* MLModel(contentsOf:configuration:) failed */
#define CMB_ERR_PREDICT 4          /* prediction failed */
#define CMB_ERR_OUTPUT 5           /* an output does not fit the caller's buffer or dtype */
#define CMB_ERR_UNSUPPORTED 6      /* the OS or the model lacks the feature (e.g. compute plan) */
#define CMB_ERR_IO 7               /* a file operation failed */
#define CMB_ERR_INTERNAL 8         /* anything else */
#define CMB_ERR_CANCELLED 9        /* cmb_model_cancel stopped the prediction (ABI 2) */
#define CMB_ERR_TIMEOUT 10         /* a bounded wait ran out (compute plan; ABI 2) */

/* Compute units (inference_api::ComputeUnits <-> coreml_sys::compute_units_code). */
#define CMB_COMPUTE_ALL 0
#define CMB_COMPUTE_CPU_ONLY 1
#define CMB_COMPUTE_CPU_AND_GPU 2
#define CMB_COMPUTE_CPU_AND_NEURAL_ENGINE 3

/* Element types (inference_api::DType <-> coreml_sys::dtype_code). */
#define CMB_DTYPE_F32 0
#define CMB_DTYPE_F16 1
#define CMB_DTYPE_I32 2
#define CMB_DTYPE_I64 3
#define CMB_DTYPE_I8 4
#define CMB_DTYPE_U8 5

/* Feature kinds. */
#define CMB_FEATURE_MULTIARRAY 0
#define CMB_FEATURE_IMAGE 1
#define CMB_FEATURE_OTHER 2 /* a kind the bridge cannot pass (string, dictionary, sequence...) */

/* Image pixel layouts, as the caller supplies pixels: interleaved rows, height x width x channels. */
#define CMB_IMAGE_RGB 0 /* 3 channels, R G B; the bridge fills the model's pixel buffer format */
#define CMB_IMAGE_BGR 1 /* 3 channels, B G R */
#define CMB_IMAGE_GRAY 2 /* 1 channel */

/* Which side of the model a description is about. */
#define CMB_IO_INPUT 0
#define CMB_IO_OUTPUT 1

/* Compute devices (bit values for masks; single values for "preferred"). */
#define CMB_DEVICE_CPU 1
#define CMB_DEVICE_GPU 2
#define CMB_DEVICE_NEURAL_ENGINE 4

/* A loaded model. Opaque; owned by the caller from cmb_model_load until cmb_model_free. */
typedef struct cmb_model cmb_model;

/*
 * One input or output feature as the model declares it. Plain data: no pointers.
 * An OUTPUT the bridge cannot deliver (an element type other than f32/f16/i32/float64, an image
 * pixel format other than 32BGRA/32ARGB/OneComponent8, a rank above CMB_MAX_RANK, a string or
 * dictionary...) is described with kind CMB_FEATURE_OTHER, so the caller leaves it out of the
 * schema; the model stays usable (ABI 2). An INPUT keeps its kind with dtype -1 or image_format
 * -1, so the caller can name why the model cannot be fed.
 */
typedef struct cmb_feature_desc {
    char name[CMB_NAME_CAPACITY]; /* NUL-terminated UTF-8 */
    int32_t kind;                 /* CMB_FEATURE_* */
    int32_t dtype;                /* CMB_DTYPE_*; -1 when the kind has no element type */
    uint32_t rank;                /* number of valid entries in shape */
    int32_t flexible;             /* 1 when the model accepts other shapes than `shape` */
    int64_t shape[CMB_MAX_RANK];  /* declared (default) shape, outermost first */
    int64_t image_width;          /* image features: pixels wide; 0 otherwise */
    int64_t image_height;         /* image features: pixels high; 0 otherwise */
    int32_t image_format;         /* image features: CMB_IMAGE_*; -1 otherwise */
    uint32_t image_pixel_format;  /* image features: the model's CoreVideo OSType; 0 otherwise */
} cmb_feature_desc;

/*
 * A tensor crossing the boundary. Inputs: everything is read by the bridge and borrowed only for
 * the duration of cmb_model_predict. Outputs: name, data, bytes and dtype are read; the bridge
 * writes rank, shape, strides (dense, in elements) and bytes_written.
 * Image inputs and image outputs (ABI 2) are u8 tensors of shape [height, width, channels] in the
 * layout the description names (RGB for colour, 1 channel for gray); image outputs are copied out
 * of the model's CVPixelBuffer.
 * When an output does not fit its buffer (e.g. a flexible or undeclared output shape), the bridge
 * still writes its rank and shape, sets bytes_written to 0 and returns CMB_ERR_OUTPUT, so the
 * caller can size the buffer from the shape and run again (ABI 2).
 */
typedef struct cmb_tensor {
    const char *name;               /* NUL-terminated feature name, borrowed */
    void *data;                     /* element storage, borrowed; inputs are only read */
    uint64_t bytes;                 /* size of the storage at data, in bytes */
    int32_t dtype;                  /* CMB_DTYPE_* of the storage */
    uint32_t rank;                  /* number of valid entries in shape and strides */
    int64_t shape[CMB_MAX_RANK];    /* outermost first */
    int64_t strides[CMB_MAX_RANK];  /* in elements, outermost first */
    uint64_t bytes_written;         /* outputs: bytes the bridge wrote at data; inputs: ignored */
} cmb_tensor;

/* One operation of an ML Program's compute plan (MLComputePlan, macOS 14.4+). */
typedef struct cmb_plan_op {
    char op_name[CMB_OP_NAME_CAPACITY]; /* operator name, e.g. "ios17.conv"; truncated, NUL-terminated */
    int32_t preferred_device;           /* CMB_DEVICE_*; 0 when Core ML did not say */
    uint32_t supported_devices;         /* mask of CMB_DEVICE_* */
    double estimated_cost;              /* relative cost weight in [0, 1]; negative when unknown */
} cmb_plan_op;

/* The ABI version the library implements (CMB_ABI_VERSION at build time). Never fails. */
uint32_t cmb_abi_version(void);

/* The OS name, version and build, e.g. "macOS Version 14.4 (Build 23E214)". *out is freed with
 * cmb_string_free. */
int32_t cmb_os_build(char **out, char **err);

/* Compute devices this machine has, as a mask of CMB_DEVICE_* (MLModel.availableComputeDevices). */
int32_t cmb_compute_devices(uint32_t *out_mask, char **err);

/*
 * Compiles an .mlmodel file or .mlpackage directory into dest_dir (an existing directory). On
 * success *out_path receives the path of the compiled .mlmodelc directory inside dest_dir, freed
 * with cmb_string_free. The caller moves it to its final place.
 */
int32_t cmb_compile_model(const char *model_path, const char *dest_dir, char **out_path, char **err);

/* Loads a compiled .mlmodelc with the given CMB_COMPUTE_* code. *out is freed with cmb_model_free. */
int32_t cmb_model_load(const char *compiled_path, int32_t compute_units, cmb_model **out, char **err);

/* Frees a model. NULL is ignored. The handle must not be in use by another call. */
void cmb_model_free(cmb_model *model);

/* Number of inputs (io = CMB_IO_INPUT) or outputs (CMB_IO_OUTPUT). Stable for the model's life. */
int32_t cmb_model_feature_count(const cmb_model *model, int32_t io, uint32_t *out_count, char **err);

/* Describes feature `index` (0-based, in a stable order) of the given side into *out. */
int32_t cmb_model_feature_describe(const cmb_model *model, int32_t io, uint32_t index,
                                   cmb_feature_desc *out, char **err);

/*
 * The compute plan of the function the model runs (its default function; ABI 2: no longer every
 * function of a multi-function program), flattened over nested blocks. Writes up to `capacity`
 * entries to ops (which may be NULL when capacity is 0) and the total number of entries to
 * *out_total. Call with capacity 0 to learn the size; the plan is computed once and cached in the
 * handle. Waits at most timeout_ms (> 0) for Core ML to build the plan, then returns
 * CMB_ERR_TIMEOUT (nothing cached; a later call tries again). CMB_ERR_UNSUPPORTED when the OS is
 * older than macOS 14.4 / iOS 17.4 or the model is not an ML Program.
 */
int32_t cmb_model_compute_plan(cmb_model *model, uint32_t timeout_ms, cmb_plan_op *ops,
                               uint32_t capacity, uint32_t *out_total, char **err);

/*
 * Runs one prediction. inputs[0..n_inputs) name every model input; outputs[0..n_outputs) name the
 * outputs wanted, each with a caller buffer of `bytes` capacity and the dtype wanted. The bridge
 * copies each output into its buffer densely (reading the model's strides), converting f16 or f64
 * results to f32 when the caller asks for f32, and fills rank/shape/strides/bytes_written.
 * At most one call per model handle at a time. On macOS 14+ / iOS 17+ the bridge runs Core ML's
 * async prediction, which cmb_model_cancel can stop (then CMB_ERR_CANCELLED); on older systems a
 * synchronous prediction, which cannot be stopped. Either way the call returns only once Core ML
 * no longer uses the caller's memory.
 */
int32_t cmb_model_predict(cmb_model *model, const cmb_tensor *inputs, uint32_t n_inputs,
                          cmb_tensor *outputs, uint32_t n_outputs, char **err);

/*
 * Asks the prediction running on `model` to stop (ABI 2). The one call that may run on another
 * thread while cmb_model_predict runs on the same handle (never concurrently with or after
 * cmb_model_free). CMB_OK when a stop was requested, or when no prediction is running (nothing to
 * do; a later prediction is not affected). CMB_ERR_UNSUPPORTED before macOS 14 / iOS 17, where a
 * synchronous prediction cannot be stopped: the caller abandons it instead.
 */
int32_t cmb_model_cancel(cmb_model *model, char **err);

/* Frees a string the bridge returned (an error message or a path). NULL is ignored. */
void cmb_string_free(char *s);

#ifdef __cplusplus
}
#endif

#endif /* COREML_BRIDGE_H */
