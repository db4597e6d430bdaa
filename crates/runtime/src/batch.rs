//! Many inputs through one loaded model: `LoadedModel::run_batch`. When every input of the
//! model has an open first (batch) dimension, the items are stacked along it and run as one
//! call, and each output is split back per item; otherwise (the bundled models have a fixed
//! batch of 1) the items run one after another. Either way each item gets its own answer, so
//! one bad item does not lose the others.

use std::sync::Arc;

use inference_api::{Dim, Error, IoSchema, NamedTensors, Result, RunReport, Tensor, TensorData};

use crate::model::LoadedModel;
use crate::router::RunOptions;

/// One item's answer in a batch: its outputs and the report of the call that served it.
pub type BatchItem = Result<(NamedTensors, RunReport)>;

impl LoadedModel {
    /// Runs every item of `items`; answers come back in order, one per item. Items are stacked
    /// into one call along the batch dimension when the model has one (every input's first
    /// dimension open, and all items the same shape and dtype per input); otherwise, or when
    /// an item does not fit the stack, items run one by one. A failure of a stacked call is
    /// the answer of every item in it.
    pub fn run_batch(&self, items: &[NamedTensors], opts: &RunOptions) -> Vec<BatchItem> {
        if items.len() > 1 && batchable(self.io_schema(), items) {
            match stack(self.io_schema(), items) {
                Ok(stacked) => {
                    return match self.run_with(stacked, opts) {
                        Ok((out, report)) => split(&out, items.len())
                            .map(|parts| {
                                parts.into_iter().map(|p| Ok((p, report.clone()))).collect()
                            })
                            .unwrap_or_else(|e| same_error(&e, items.len())),
                        Err(e) => same_error(&e, items.len()),
                    };
                }
                Err(e) => tracing::debug!("batch not stacked: {e}"),
            }
        }
        items.iter().map(|x| self.run_with(Arc::new(x.clone()), opts)).collect()
    }
}

/// True when every input's first dimension is open and every item has exactly the model's
/// inputs with batch size 1.
fn batchable(schema: &IoSchema, items: &[NamedTensors]) -> bool {
    let n = items.len();
    schema.inputs.iter().all(|spec| match spec.shape.first() {
        Some(d @ Dim::Range { .. }) => d.accepts(n) && d.accepts(1),
        _ => false,
    }) && items.iter().all(|item| {
        item.len() == schema.inputs.len()
            && schema
                .inputs
                .iter()
                .all(|s| item.get(&s.name).is_some_and(|t| t.shape().first() == Some(&1)))
    })
}

/// The items' tensors concatenated along the first dimension, per input.
fn stack(schema: &IoSchema, items: &[NamedTensors]) -> Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for spec in &schema.inputs {
        let parts: Vec<&Tensor> = items.iter().filter_map(|i| i.get(&spec.name)).collect();
        let first = parts[0];
        if parts.iter().any(|t| t.shape() != first.shape() || t.dtype() != first.dtype()) {
            return Err(Error::invalid_input(
                &spec.name,
                "the same shape and dtype in every item of a stacked batch",
                "items that differ",
            ));
        }
        let mut shape = first.shape().to_vec();
        shape[0] = parts.len();
        out.insert(spec.name.clone(), Tensor::new(shape, concat(&parts)?)?);
    }
    Ok(out)
}

fn concat(parts: &[&Tensor]) -> Result<TensorData> {
    macro_rules! cat {
        ($variant:ident) => {{
            let mut v = Vec::new();
            for p in parts {
                let TensorData::$variant(d) = p.data() else {
                    return Err(Error::Runtime("batch items of mixed dtypes".into()));
                };
                v.extend_from_slice(d);
            }
            TensorData::$variant(v)
        }};
    }
    Ok(match parts[0].data() {
        TensorData::F32(_) => cat!(F32),
        TensorData::F16(_) => cat!(F16),
        TensorData::I32(_) => cat!(I32),
        TensorData::I64(_) => cat!(I64),
        TensorData::I8(_) => cat!(I8),
        TensorData::U8(_) => cat!(U8),
    })
}

/// Each output cut into `n` pieces along its first dimension (which must be `n`).
fn split(out: &NamedTensors, n: usize) -> Result<Vec<NamedTensors>> {
    let mut parts: Vec<NamedTensors> = (0..n).map(|_| NamedTensors::new()).collect();
    for name in out.names() {
        let t = out.get(name).ok_or_else(|| Error::Runtime(format!("output `{name}` vanished")))?;
        if t.shape().first() != Some(&n) {
            return Err(Error::Runtime(format!(
                "a stacked batch of {n} gave output `{name}` of shape {:?}, not [{n}, ...]",
                t.shape()
            )));
        }
        let mut shape = t.shape().to_vec();
        shape[0] = 1;
        let per = t.len() / n;
        macro_rules! cut {
            ($variant:ident, $d:expr) => {
                for (k, chunk) in $d.chunks_exact(per.max(1)).take(n).enumerate() {
                    parts[k].insert(
                        name.to_string(),
                        Tensor::new(shape.clone(), TensorData::$variant(chunk.to_vec()))?,
                    );
                }
            };
        }
        match t.data() {
            TensorData::F32(d) => cut!(F32, d),
            TensorData::F16(d) => cut!(F16, d),
            TensorData::I32(d) => cut!(I32, d),
            TensorData::I64(d) => cut!(I64, d),
            TensorData::I8(d) => cut!(I8, d),
            TensorData::U8(d) => cut!(U8, d),
        }
    }
    Ok(parts)
}

/// `n` copies of a stacked call's error, one per item.
fn same_error(e: &Error, n: usize) -> Vec<BatchItem> {
    (0..n).map(|_| Err(e.clone())).collect()
}
