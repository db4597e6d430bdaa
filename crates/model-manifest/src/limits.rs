//! Upper bounds on what users hand us: image files and dimensions, resize outputs, manifest
//! sizes and numbers. Every limit is listed with its test in `docs/limits.md`.

/// Largest image file read for preprocessing, in bytes (256 MiB). A longer file (or an endless
/// device such as `/dev/zero`) is refused after this many bytes.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Largest width or height of a decoded image, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Largest decoded image, in pixels (8192 x 8192; about 200 MB as 8-bit RGB).
pub const MAX_IMAGE_PIXELS: u64 = 8192 * 8192;

/// Largest image a resize may produce, in pixels (4096 x 4096). The resize keeps the aspect
/// ratio, so a very thin image (e.g. 100000 x 1) would otherwise become enormous.
pub const MAX_RESIZED_PIXELS: u64 = 4096 * 4096;

/// Largest `preprocessing.resize_shorter` and `preprocessing.crop` side in a manifest.
pub const MAX_PREPROCESS_SIDE: u32 = 4096;

/// Largest number of elements of one tensor declared in a manifest (2^28, 1 GiB as f32).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// Largest number of dimensions of a tensor declared in a manifest.
pub const MAX_TENSOR_RANK: usize = 8;

/// Largest `serving.timeout_ms` and `serving.sla_ms` in a manifest (one hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Largest `manifest.toml`, in bytes (1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
