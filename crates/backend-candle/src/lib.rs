//! The Candle CPU engine: runs native models (EfficientNet-Lite0, FastViT-T8) from safetensors
//! on every machine, with fused CPU kernels where stock candle is slow, and Core ML ML Programs
//! (`.mlpackage` / `.mlmodel`) through an interpreter over the same kernels. The kernels
//! themselves (all of the CPU side's `unsafe` and SIMD) live in the `kernels` crate.
//!
//! ```no_run
//! use inference_api::{Engine, ModelArtifact, PrepareOptions};
//! let engine = backend_candle::CandleEngine::new();
//! let mut artifact = ModelArtifact::from_path("models/efficientnet-lite0/efficientnet-lite0.safetensors")?;
//! artifact.architecture = Some("efficientnet-lite0".into());
//! let model = engine.prepare(&artifact, &PrepareOptions::default())?;
//! # Ok::<(), inference_api::Error>(())
//! ```
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod conv_op;
mod cpu_model;
mod engine;
mod mlprogram;
mod models;
mod neural_network;

pub use engine::{CandleEngine, ENGINE_NAME, cpu_features};
