//! A serializable one-look summary of a model, as `infer inspect` prints it.

use std::collections::{BTreeMap, BTreeSet};

use crate::description::{Feature, Metadata};
use crate::model::MlModel;
use crate::program::Argument;
use crate::types::ScalarType;
use crate::value::{ConstData, ConstValue};

/// Bytes and element counts of constants of one element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct WeightStats {
    /// Number of distinct constants.
    pub count: usize,
    /// Elements over all of them.
    pub elements: u64,
    /// Bytes as stored (packed sizes for sub-byte types); shared blobs are counted once.
    pub bytes: u64,
}

/// What a model is, what it takes and returns, what it is made of.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Path it was opened from.
    pub path: String,
    /// `mlpackage` or `mlmodel`.
    pub format: String,
    /// Spec version.
    pub spec_version: i32,
    /// Model type, e.g. `mlProgram`.
    pub model_type: String,
    /// Declared inputs.
    pub inputs: Vec<Feature>,
    /// Declared outputs.
    pub outputs: Vec<Feature>,
    /// Metadata.
    pub metadata: Metadata,
    /// ML Program function names (empty for other model types).
    pub functions: Vec<String>,
    /// Opset of `main` (e.g. `CoreML6`), when an ML Program.
    pub opset: Option<String>,
    /// Operations per type, consts included, over all functions.
    pub op_histogram: BTreeMap<String, usize>,
    /// Total number of operations.
    pub op_count: usize,
    /// Constant weights per element type (`fp16`, `fp32`, `int32`, ...): consts and inline
    /// values, as declared in the spec (blob files are not read); strings and composite values
    /// are left out.
    pub weights_by_dtype: BTreeMap<String, WeightStats>,
    /// Bytes of constant data held in weight files.
    pub blob_bytes: u64,
    /// Bytes of constant data stored inline in the spec.
    pub inline_bytes: u64,
}

impl Summary {
    /// Summarizes an opened model without reading its weight files.
    pub fn of(model: &MlModel) -> Summary {
        let mut weights: BTreeMap<String, WeightStats> = BTreeMap::new();
        let (mut blob_bytes, mut inline_bytes) = (0u64, 0u64);
        let mut seen_blobs = BTreeSet::new();
        let mut add = |v: &ConstValue| {
            if v.dtype == ScalarType::String || matches!(v.data, ConstData::Items(_)) {
                return;
            }
            if let ConstData::Blob(b) = &v.data
                && !seen_blobs.insert((b.file.clone(), b.offset))
            {
                return;
            }
            let bytes = v.byte_len() as u64;
            let s = weights.entry(v.dtype.mil_name().to_string()).or_default();
            s.count += 1;
            s.elements = s.elements.saturating_add(v.element_count() as u64);
            s.bytes = s.bytes.saturating_add(bytes);
            if v.is_blob() {
                blob_bytes = blob_bytes.saturating_add(bytes);
            } else {
                inline_bytes = inline_bytes.saturating_add(bytes);
            }
        };
        let (mut functions, mut opset, mut op_histogram) = (Vec::new(), None, BTreeMap::new());
        // A NeuralNetwork's "ops" are its layers, by type.
        op_histogram.extend(crate::neural_network::layer_histogram(model.spec()));
        if let Some(p) = model.program() {
            functions = p.functions.keys().cloned().collect();
            opset = p.main().map(|f| f.opset.clone());
            op_histogram = p.op_histogram();
            for f in p.functions.values() {
                f.block.visit_ops(&mut |op| {
                    if let Some(v) = op.const_value() {
                        add(v);
                    }
                    for arg in op.inputs.values().flatten() {
                        if let Argument::Value(v) = arg {
                            add(v);
                        }
                    }
                });
            }
        }
        Summary {
            path: model.path().display().to_string(),
            format: model.format().to_string(),
            spec_version: model.spec_version(),
            model_type: model.model_type().to_string(),
            inputs: model.inputs().to_vec(),
            outputs: model.outputs().to_vec(),
            metadata: model.metadata().clone(),
            functions,
            opset,
            op_count: op_histogram.values().sum(),
            op_histogram,
            weights_by_dtype: weights,
            blob_bytes,
            inline_bytes,
        }
    }
}

impl MlModel {
    /// A serializable summary (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        Summary::of(self)
    }
}
