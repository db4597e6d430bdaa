//! The runtime: routes calls over engines with deadlines, circuit breakers, bounded queues,
//! CPU fallback and shadow parity, and counts everything in telemetry.
//!
//! ```text
//! let rt = Runtime::builder()
//!     .engine(coreml)            // preferred
//!     .engine(cpu)               // fallback
//!     .telemetry(telemetry.clone())
//!     .build();
//! let model = rt.load("models/efficientnet-lite0")?;   // every engine that can take it
//! let (outputs, report) = model.run(inputs)?;           // report.engine, report.fell_back, ...
//! println!("{}", rt.telemetry().summary_text());
//! ```
//!
//! Policies live in small modules: [`breaker`] (circuit breaker state machine), `deadline`
//! (worker hand-off, timeout, quarantine), [`queue`] (bounded admission), [`shadow`] (parity
//! drift), [`router`] (routing order). The builder documents the order they apply in.
//! This crate depends on no backend: engines arrive as `Arc<dyn Engine>`.
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod breaker;
mod builder;
pub mod clock;
mod deadline;
mod model;
pub mod queue;
pub mod router;
pub mod shadow;
#[cfg(feature = "testing")]
pub mod testing;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Outcome};
pub use builder::{EngineLoad, LoadReport, Runtime, RuntimeBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use model::LoadedModel;
pub use router::{Routing, RunOptions};
pub use shadow::ShadowConfig;
pub use telemetry::Telemetry;
