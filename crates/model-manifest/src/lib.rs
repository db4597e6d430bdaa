//! Model manifests: the `manifest.toml` that describes a model folder, verified on load.
//!
//! A model folder holds `manifest.toml`, the weights and the labels. [`ModelBundle::load`]
//! parses the manifest, checks it for consistency, verifies every listed file's sha256 and
//! returns the artifact an engine prepares, the labels and the serving settings.
//! With the `image` feature, [`preprocess`] turns a PNG or JPEG into the model's input tensor
//! following the manifest's preprocessing section.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod bundle;
mod hash;
pub mod limits;
mod manifest;
#[cfg(feature = "image")]
pub mod preprocess;

pub use bundle::ModelBundle;
pub use hash::{sha256_file, sha256_file_max, sha256_hex, sha256_path, sha256_path_max};
pub use manifest::{
    FileEntry, FileRole, Interpolation, Manifest, Origin, ParityTolerances, Preprocessing, Serving,
};
