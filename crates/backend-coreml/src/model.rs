//! A prepared Core ML model: schema, instance pool, cache key and placement.

use std::ffi::CString;
use std::time::{Duration, Instant};

use inference_api::{
    Error, IoSchema, NamedTensors, PlacementReport, PreparedModel, Result, RunContext, RunTimings,
};

use crate::ffi::OutputRequest;
use crate::pool::{Job, Pool, PoolStats};
use crate::schema::{output_capacity, output_tensor};

/// A model prepared by [`crate::CoreMlEngine`]; shareable across threads.
pub struct CoreMlModel {
    pub(crate) name: String,
    pub(crate) schema: IoSchema,
    pub(crate) pool: Pool,
    pub(crate) cache_key: String,
    pub(crate) placement: PlacementReport,
    pub(crate) deadline: Duration,
    /// What prepare left out or could not tell (outputs left out of the schema, no plan).
    pub(crate) notes: Vec<String>,
}

impl std::fmt::Debug for CoreMlModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreMlModel")
            .field("name", &self.name)
            .field("cache_key", &self.cache_key)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name)
        .map_err(|_| Error::invalid_input(name, "a name without NUL bytes", "a NUL byte"))
}

impl CoreMlModel {
    /// Runs the model with an explicit deadline instead of the engine's default. The caller
    /// gets an answer within the deadline plus a small bound, whatever the bridge does.
    pub fn run_with_deadline(
        &self,
        inputs: &NamedTensors,
        deadline: Duration,
    ) -> Result<(NamedTensors, RunTimings)> {
        // Validate before any FFI call: names, dtypes, shapes against the described schema.
        self.schema.validate_inputs(inputs)?;
        let t0 = Instant::now();
        let mut owned = Vec::with_capacity(self.schema.inputs.len());
        for spec in &self.schema.inputs {
            let tensor = inputs.get(&spec.name).ok_or_else(|| {
                Error::invalid_input(&spec.name, "a tensor", "nothing (input missing)")
            })?;
            // A clone shares the storage: the worker holds the same elements, no copy.
            owned.push((c_name(&spec.name)?, tensor.clone()));
        }
        let mut outputs = Vec::with_capacity(self.schema.outputs.len());
        for spec in &self.schema.outputs {
            outputs.push(OutputRequest {
                name: c_name(&spec.name)?,
                dtype: spec.dtype,
                capacity: output_capacity(spec),
            });
        }
        let marshal_in = t0.elapsed();
        let done = self.pool.run(Job { inputs: owned, outputs }, deadline)?;
        let t1 = Instant::now();
        let mut result = NamedTensors::new();
        for (spec, raw) in self.schema.outputs.iter().zip(done.raw) {
            result.insert(spec.name.clone(), output_tensor(spec, raw)?);
        }
        let timings = RunTimings { marshal_in, compute: done.compute, marshal_out: t1.elapsed() };
        Ok((result, timings))
    }

    /// What prepare left out or could not tell: outputs the bridge cannot deliver (left out
    /// of the schema, the model stays usable) and why there is no compute plan, if none.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The deadline `run` uses.
    pub fn default_deadline(&self) -> Duration {
        self.deadline
    }

    /// Pool counters: predictions, timeouts, rebuilds, abandoned workers.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Waits until every abandoned worker has returned and freed its instance (for orderly
    /// shutdown and tests). True when none is left within `timeout`.
    pub fn wait_for_abandoned_workers(&self, timeout: Duration) -> bool {
        self.pool.wait_for_abandoned(timeout)
    }

    /// Waits until no instance is being rebuilt. True when none is within `timeout`.
    pub fn wait_for_rebuilds(&self, timeout: Duration) -> bool {
        self.pool.wait_for_rebuilds(timeout)
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
        let deadline = ctx.remaining().map_or(self.deadline, |left| left.min(self.deadline));
        self.run_with_deadline(inputs, deadline)
    }

    fn cache_key(&self) -> String {
        self.cache_key.clone()
    }

    fn placement(&self) -> PlacementReport {
        self.placement.clone()
    }
}
