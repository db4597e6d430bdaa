//! The inference API: the traits every engine implements and the plain data they exchange.
//!
//! Callers load a model once with [`Engine::prepare`] and run it through [`PreparedModel::run`],
//! passing a [`RunContext`] (deadline, cancellation) that reaches the engine. Tensors share their
//! storage, so passing them around never copies elements.
//! Engines (the Candle CPU engine, the Core ML engine, test engines) implement [`Engine`]; the
//! runtime routes calls between them. This crate holds no backend types and no unsafe code.
//!
//! Input validation lives here once: [`IoSchema::validate_inputs`] checks names, dtypes and shapes
//! and returns [`Error::InvalidInput`] naming the tensor, what was expected and what came.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod context;
mod dtype;
mod engine;
mod engine_id;
mod error;
mod parity;
mod schema;
mod spec;
mod tensor;

pub use context::{CancelToken, RunContext};
pub use dtype::{ComputeUnits, DType};
pub use engine::{
    ArtifactFormat, CapabilityReport, DeviceClass, Engine, ModelArtifact, PlacementReport,
    PrepareOptions, PreparedModel, RunReport, RunTimings,
};
pub use engine_id::EngineId;
pub use error::{Error, ErrorKind, Result};
pub use parity::{Drift, Tolerance, softmax, tolerance, top_k, top_k_agreement};
pub use schema::{ClassLabels, Dim, FeatureKind, ImageFormat, IoSchema, TensorSpec};
pub use spec::{ModelSpec, ServingSpec};
pub use tensor::{NamedTensors, Tensor, TensorData, TensorView, TensorViewData};

/// Re-exported so callers can build fp16 tensors without naming the `half` crate.
pub use half::f16;
