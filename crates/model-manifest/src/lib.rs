//! Model manifests: the `manifest.toml` that describes a model folder, verified on load.
//!
//! A model folder holds `manifest.toml`, the weights and the labels. [`ModelBundle::load`]
//! parses the manifest, checks it for consistency, verifies every listed file's sha256 and
//! returns the artifact an engine prepares, the labels and the serving settings.
//! With the `image` feature, [`preprocess`] turns a PNG or JPEG into the model's input tensor
//! following the manifest's preprocessing section, and [`pixels`] does the same for an
//! `image::DynamicImage` or a raw RGB/RGBA/BGRA buffer with a row stride.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod bundle;
mod hash;
pub mod limits;
mod manifest;
#[cfg(feature = "image")]
pub mod pixels;
#[cfg(feature = "image")]
pub mod preprocess;

pub use bundle::ModelBundle;
pub use hash::{sha256_file, sha256_file_max, sha256_hex, sha256_path, sha256_path_max};
/// The `image` crate these helpers take (`image::DynamicImage`), so an app can use the same
/// version.
#[cfg(feature = "image")]
pub use image;
pub use manifest::{
    FileEntry, FileRole, Interpolation, Manifest, Origin, ParityTolerances, Preprocessing, Serving,
    TensorSpecToml,
};
