//! Reads Core ML models on any OS: `.mlpackage` / `.mlmodel` specs, I/O descriptions, typed
//! ML Programs and their weight blobs. No candle, no `unsafe`.
//!
//! ```no_run
//! let model = coreml_format::MlModel::open("efficientnet_lite0.mlpackage")?;
//! let schema = model.io_schema()?;
//! let main = model.main_function()?;
//! for op in &main.block.operations {
//!     if let Some(value) = op.const_value() {
//!         let value = model.resolve(value)?; // loads weight.bin once, checks the blob
//!         let _weights: Option<Vec<f32>> = value.to_f32_vec();
//!     }
//! }
//! println!("{}", serde_json::to_string_pretty(&model.summary()).unwrap_or_default());
//! # Ok::<(), coreml_format::FormatError>(())
//! ```
//!
//! Conventions:
//! - Every malformed input is a [`FormatError`] naming the file and the problem; it converts
//!   into [`inference_api::Error`] (`Load`, or `Io` for OS errors).
//! - Image features map to [`inference_api::TensorSpec`] with kind `Image`, dtype `u8`
//!   (`f16` for `GRAYSCALE_FLOAT16`) and shape `[1, C, H, W]` (flexible sizes as ranges).
//! - Weight files are read whole into memory on first use (see [`WeightStore`]).

#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod blob;
pub mod classifier;
mod description;
mod error;
pub mod fuzz;
pub mod image;
mod model;
pub mod neural_network;
mod program;
mod summary;
mod types;
mod value;

pub use blob::{Blob, BlobDType, BlobFile};
pub use classifier::Classifier;
pub use description::{Feature, Metadata, ModelType};
pub use error::{
    FormatError, MAX_PACKAGE_MANIFEST_BYTES, MAX_SPEC_BYTES, MAX_WEIGHT_FILE_BYTES, Result,
};
pub use model::{MlModel, WeightStore};
pub use program::{Argument, Block, Function, NamedType, Operation, Program};
pub use summary::{Summary, WeightStats};
pub use types::{MilDim, ScalarType, ValueType};
pub use value::{BlobRef, ConstData, ConstValue, blob_scalar_type};

/// The protobuf types of the Core ML spec (from the `coreml-proto` crate), for raw access.
pub use coreml_proto::proto;
