//! The Core ML engine: runs Core ML models on the Neural Engine, GPU or CPU through the Swift
//! bridge library (`coreml-bridge/`), loaded at run time by `coreml-sys`.
//!
//! [`CoreMlEngine`] compiles on every OS. When the bridge library is not found (always, off
//! Apple platforms, unless `COREML_BRIDGE_PATH` or an explicit path names one) or reports
//! another ABI version, [`inference_api::Engine::probe`] says unavailable and why, and
//! `prepare` returns [`inference_api::Error::Unavailable`]. The same code runs on Linux against
//! the test-support fake bridge (`tests/fake_bridge/`).
//!
//! What a prepared model does: compiles through a [`CompileCache`], loads the model once and
//! more instances only when calls overlap (one prediction in flight per instance, run on the
//! caller's thread), validates inputs against the schema the model describes before any FFI
//! call, honours the call's [`inference_api::RunContext`] (a prediction whose deadline passed
//! or whose token was cancelled is stopped with `cmb_model_cancel` where Core ML can stop it,
//! macOS 14+), and reports placement from Core ML's compute plan only. Timeouts, quarantine and
//! rebuilds (a rebuild is `prepare` again) belong to the runtime.
#![warn(clippy::unwrap_used)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cache;
mod engine;
mod ffi;
mod model;
mod pool;
mod schema;
mod watch;

pub use cache::{CacheStats, CompileCache, content_hash};
pub use engine::{BridgeInfo, CoreMlConfig, CoreMlEngine, DoctorReport};
pub use model::CoreMlModel;
pub use pool::PoolStats;

/// The engine's name, as reported by [`inference_api::Engine::name`] and in timeouts.
pub const ENGINE_NAME: &str = "coreml";

/// Test support only, never a backend: lets other crates' tests (e.g. `cargo xtask gates`'s)
/// drive the engine against the scripted fake bridge this crate's build script compiles.
#[doc(hidden)]
pub mod test_support {
    /// The fake bridge library (`tests/fake_bridge/`), when the build script built it (Linux
    /// targets with a C compiler); `None` elsewhere.
    pub fn fake_bridge_library() -> Option<std::path::PathBuf> {
        let dir = env!("COREML_FAKE_BRIDGE_DIR");
        let lib = std::path::PathBuf::from(dir).join("libfake_bridge.so");
        (!dir.is_empty() && lib.is_file()).then_some(lib)
    }
}
