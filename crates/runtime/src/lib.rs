//! The runtime: routes calls over engines with deadlines, circuit breakers, bounded queues,
//! CPU fallback and shadow parity, and counts everything in telemetry.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use runtime::testing::{BundleSpec, FaultyEngine, bundle, input};
//! use runtime::{RunOptions, Runtime};
//!
//! // Real programs pass `backend_coreml::CoreMlEngine` and `backend_candle::CandleEngine`;
//! // this example uses the test engine from the `testing` feature so it runs anywhere.
//! let coreml = Arc::new(FaultyEngine::new("coreml"));
//! let cpu = Arc::new(FaultyEngine::new("candle-cpu"));
//! let rt = Runtime::builder()
//!     .engine(coreml)            // preferred
//!     .engine(cpu)               // fallback
//!     .build();
//! // The runtime takes a plain `inference_api::ModelSpec`: `model_manifest::ModelBundle::load`
//! // builds one from a model folder (`rt.load_spec(&bundle)`), `rt.load_artifact` takes a
//! // bare artifact; here an in-memory bundle stands in for the folder.
//! let model = rt.load_spec(&bundle(&BundleSpec::default())?)?;
//! let (outputs, report) = model.run(input([1.0, 2.0, 3.0, 4.0]))?;
//! assert_eq!(report.engine, "coreml");
//! assert!(!report.fell_back);
//! assert_eq!(outputs.get("logits").map(|t| t.shape()), Some(&[1, 10][..]));
//! // Per call: a deadline, a cancellation token, a routing override.
//! let opts = RunOptions::deadline(Duration::from_millis(500));
//! model.run_with(input([0.0; 4]), &opts)?;
//! println!("{}", rt.telemetry().summary_text());
//! # Ok(())
//! # }
//! ```
//!
//! Policies live in small modules: [`breaker`] (circuit breaker state machine), `deadline`
//! (worker hand-off, timeout, quarantine, output pool), `race` (hedges, judging answers),
//! [`queue`] (bounded admission), [`shadow`] (parity
//! drift), [`router`] (routing order). The builder documents the order they apply in.
//! This crate depends on no backend: engines arrive as `Arc<dyn Engine>`.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod batch;
pub mod breaker;
mod builder;
pub mod clock;
mod deadline;
mod future;
mod model;
pub mod queue;
mod race;
pub mod router;
pub mod shadow;
#[cfg(feature = "testing")]
pub mod testing;

pub use batch::BatchItem;
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Outcome};
pub use builder::{EngineLoad, LoadReport, Runtime, RuntimeBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use future::RunFuture;
pub use model::LoadedModel;
pub use router::{Routing, RunOptions};
pub use shadow::ShadowConfig;
pub use telemetry::Telemetry;
