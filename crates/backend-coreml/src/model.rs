//! A prepared Core ML model: schema, instances, cache key and placement (from the compute
//! plan, read the first time placement is asked for). A call runs on the caller's thread and
//! honours its [`RunContext`]: the engine asks the bridge to stop a prediction whose deadline
//! passed or whose token was cancelled.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inference_api::{
    Error, IoSchema, NamedTensors, PlacementReport, PreparedModel, Result, RunContext, RunTimings,
};

use crate::ffi::{OutputRequest, PlanOutcome};
use crate::pool::{Pool, PoolStats};
use crate::schema::{output_capacity, output_tensor, planned_share};
use crate::watch::Watcher;

/// The compute plan as far as it is known.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Not read yet, or the last read timed out (why, then; a later read tries again).
    Unknown(Option<String>),
    /// Read: planned share per device (empty when there is none), and the note saying why
    /// there is none.
    Known(Vec<(String, f64)>, Option<String>),
}

/// A model prepared by [`crate::CoreMlEngine`]; shareable across threads.
pub struct CoreMlModel {
    pub(crate) name: String,
    pub(crate) schema: IoSchema,
    pub(crate) pool: Pool,
    pub(crate) watcher: Arc<Watcher>,
    /// Set once the bridge answered that it cannot stop a prediction (before macOS 14).
    pub(crate) cancel_unsupported: Arc<AtomicBool>,
    pub(crate) cache_key: String,
    pub(crate) units: inference_api::ComputeUnits,
    pub(crate) plan_timeout: Duration,
    pub(crate) plan: Mutex<Plan>,
    /// What prepare left out (outputs left out of the schema).
    pub(crate) notes: Vec<String>,
}

impl std::fmt::Debug for CoreMlModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreMlModel")
            .field("name", &self.name)
            .field("cache_key", &self.cache_key)
            .finish_non_exhaustive()
    }
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name)
        .map_err(|_| Error::invalid_input(name, "a name without NUL bytes", "a NUL byte"))
}

impl CoreMlModel {
    /// What prepare left out or could not tell: outputs the bridge cannot deliver (left out
    /// of the schema, the model stays usable) and, once placement was asked for, why there is
    /// no compute plan, if none.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        match &*self.plan.lock().unwrap_or_else(|p| p.into_inner()) {
            Plan::Known(_, Some(why)) => notes.push(format!("no compute plan: {why}")),
            Plan::Unknown(Some(why)) => notes.push(format!("no compute plan yet: {why}")),
            _ => {}
        }
        notes
    }

    /// Instance and prediction counters.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The planned share per device, reading the compute plan on first use (bounded by
    /// `CoreMlConfig::plan_timeout`; it costs Core ML a load of the plan, which is why
    /// prepare does not do it). Empty when there is no plan: never a guess.
    fn planned(&self) -> Vec<(String, f64)> {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if let Plan::Known(shares, _) = &*plan {
            return shares.clone();
        }
        let mut lease = match self.pool.checkout(&RunContext::new().with_timeout(self.plan_timeout))
        {
            Ok(lease) => lease,
            Err(_) => return Vec::new(), // every instance busy for the whole bound: ask later
        };
        let known = match lease.handle().compute_plan(self.plan_timeout) {
            Ok(PlanOutcome::Planned(ops)) => Plan::Known(planned_share(&ops), None),
            Ok(PlanOutcome::None(why)) => Plan::Known(Vec::new(), Some(why)),
            Ok(PlanOutcome::TimedOut(why)) => Plan::Unknown(Some(why)),
            Err(e) => Plan::Known(Vec::new(), Some(e.to_string())),
        };
        *plan = known;
        match &*plan {
            Plan::Known(shares, _) => shares.clone(),
            Plan::Unknown(_) => Vec::new(),
        }
    }
}

impl PreparedModel for CoreMlModel {
    fn io_schema(&self) -> &IoSchema {
        &self.schema
    }

    fn run_timed(
        &self,
        inputs: &NamedTensors,
        ctx: &RunContext,
    ) -> Result<(NamedTensors, RunTimings)> {
        ctx.check(crate::ENGINE_NAME)?;
        // Validate before any FFI call: names, dtypes, shapes against the described schema.
        self.schema.validate_inputs(inputs)?;
        let t0 = Instant::now();
        let mut borrowed = Vec::with_capacity(self.schema.inputs.len());
        for spec in &self.schema.inputs {
            let tensor = inputs.get(&spec.name).ok_or_else(|| {
                Error::invalid_input(&spec.name, "a tensor", "nothing (input missing)")
            })?;
            // A clone shares the storage (an `Arc`): no element is copied.
            borrowed.push((c_name(&spec.name)?, tensor.clone()));
        }
        let mut outputs = Vec::with_capacity(self.schema.outputs.len());
        for spec in &self.schema.outputs {
            outputs.push(OutputRequest {
                name: c_name(&spec.name)?,
                dtype: spec.dtype,
                capacity: output_capacity(spec),
            });
        }
        let mut lease = self.pool.checkout(ctx)?;
        let marshal_in = t0.elapsed();
        let start = Instant::now();
        self.pool.predictions.fetch_add(1, Ordering::Relaxed);
        let (result, requested) = lease.handle().predict(
            &borrowed,
            &outputs,
            &self.watcher,
            ctx,
            &self.cancel_unsupported,
        );
        let compute = start.elapsed();
        drop(lease);
        if requested {
            self.pool.cancel_requests.fetch_add(1, Ordering::Relaxed);
        }
        let raw = match result {
            Ok(raw) => raw,
            Err(Error::Cancelled { .. }) => {
                self.pool.cancelled.fetch_add(1, Ordering::Relaxed);
                // Stopped because the deadline passed (a timeout) or the token was cancelled.
                ctx.check(crate::ENGINE_NAME)?;
                return Err(Error::Cancelled { engine: crate::ENGINE_NAME.to_string() });
            }
            Err(e) => return Err(e),
        };
        let t1 = Instant::now();
        let mut result = NamedTensors::new();
        for (spec, raw) in self.schema.outputs.iter().zip(raw) {
            result.insert(spec.name.clone(), output_tensor(spec, raw)?);
        }
        let timings = RunTimings { marshal_in, compute, marshal_out: t1.elapsed() };
        Ok((result, timings))
    }

    fn cache_key(&self) -> String {
        self.cache_key.clone()
    }

    fn placement(&self) -> PlacementReport {
        let planned = self.planned();
        PlacementReport::new(self.units, planned, format!("coreml ({})", self.units))
    }
}
