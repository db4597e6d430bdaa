//! Declarations of the Core ML bridge's C ABI (`coreml-bridge/include/coreml_bridge.h`) and
//! the run-time loader that opens the bridge library and checks its ABI version.
//!
//! This crate holds declarations, the ABI codes of the API's `DType` and `ComputeUnits`
//! ([`dtype_code`], [`compute_units_code`]) and loading only; the safe engine lives in `backend-coreml`.
//! The library is opened at run time (never linked), so builds and tests on any OS stay free of
//! Swift. Search order: `COREML_BRIDGE_PATH`, next to the executable, then the folder
//! `cargo xtask build-bridge` writes to (`target/coreml-bridge/` in the workspace).
#![warn(clippy::unwrap_used)]
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod codes;
mod loader;
mod types;

pub use codes::{compute_units_code, compute_units_from_code, dtype_code, dtype_from_code};

pub use loader::{
    BRIDGE_PATH_ENV, BUILD_NOTE, BUILT_BRIDGE, Bridge, LIBRARY_FILE_NAME, LoadError, SearchPolicy,
    candidate_paths, xtask_output_dir,
};
pub use types::*;
