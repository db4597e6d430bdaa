//! `LoadedModel::run_batch`: stacked into one call along an open batch dimension, split back per
//! item; one call per item when the model has a fixed batch; every item answered in order.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use inference_api::{
    CapabilityReport, DType, DeviceClass, Dim, Engine, Error, IoSchema, ModelArtifact, ModelSpec,
    NamedTensors, PlacementReport, PrepareOptions, PreparedModel, Result, RunContext, RunTimings,
    Tensor, TensorSpec,
};
use runtime::{RunOptions, Runtime};

/// A row-wise model: `y[b, i] = 2 * x[b, i] + b_offset` where the output of each row depends
/// only on that row (so stacking must not mix rows), counting its calls.
struct Rows {
    calls: Arc<AtomicUsize>,
    batch: Dim,
}

struct RowsModel {
    schema: IoSchema,
    calls: Arc<AtomicUsize>,
}

impl Engine for Rows {
    fn name(&self) -> &str {
        "cpu"
    }
    fn probe(&self) -> CapabilityReport {
        let mut r = CapabilityReport::new("cpu", DeviceClass::Cpu);
        r.formats = vec![inference_api::ArtifactFormat::Safetensors];
        r.dtypes = vec![DType::F32];
        r
    }
    fn prepare(&self, _: &ModelArtifact, _: &PrepareOptions) -> Result<Arc<dyn PreparedModel>> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![self.batch, Dim::Fixed(3)],
            kind: Default::default(),
        };
        Ok(Arc::new(RowsModel {
            schema: IoSchema {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
                classifier: None,
            },
            calls: Arc::clone(&self.calls),
        }))
    }
}

impl PreparedModel for RowsModel {
    fn io_schema(&self) -> &IoSchema {
        &self.schema
    }
    fn run_timed(
        &self,
        inputs: &NamedTensors,
        _: &RunContext,
    ) -> Result<(NamedTensors, RunTimings)> {
        self.schema.validate_inputs(inputs)?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let x = inputs.get("x").unwrap();
        let y: Vec<f32> = x.as_f32()?.iter().map(|v| 2.0 * v).collect();
        let out = NamedTensors::new().with("y", Tensor::from_f32(x.shape().to_vec(), y)?);
        Ok((out, RunTimings::default()))
    }
    fn cache_key(&self) -> String {
        "rows".into()
    }
    fn placement(&self) -> PlacementReport {
        PlacementReport::new(Default::default(), vec![("cpu".into(), 1.0)], "cpu")
    }
}

fn model(batch: Dim) -> (runtime::LoadedModel, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().engine(Arc::new(Rows { calls: Arc::clone(&calls), batch })).build();
    let artifact = ModelArtifact::from_path("/nonexistent/rows.safetensors").unwrap();
    (rt.load_spec(ModelSpec::from_artifact(artifact)).unwrap(), calls)
}

fn item(k: f32) -> NamedTensors {
    NamedTensors::new().with("x", Tensor::from_f32([1, 3], vec![k, k + 0.5, -k]).unwrap())
}

fn check(answers: &[runtime::BatchItem], ks: &[f32]) {
    assert_eq!(answers.len(), ks.len());
    for (a, &k) in answers.iter().zip(ks) {
        let (out, _) = a.as_ref().unwrap();
        let y = out.get("y").unwrap();
        assert_eq!(y.shape(), &[1, 3]);
        assert_eq!(y.as_f32().unwrap(), &[2.0 * k, 2.0 * k + 1.0, -2.0 * k]);
    }
}

#[test]
fn an_open_batch_dimension_runs_the_items_as_one_call() {
    let (m, calls) = model(Dim::Range { min: 1, max: Some(8) });
    let ks = [1.0, 2.0, 3.0, 4.0, 5.0];
    let items: Vec<_> = ks.iter().map(|&k| item(k)).collect();
    let before = calls.load(Ordering::SeqCst);
    let answers = m.run_batch(&items, &RunOptions::default());
    assert_eq!(calls.load(Ordering::SeqCst) - before, 1, "one stacked call");
    check(&answers, &ks);
}

#[test]
fn a_fixed_batch_or_too_many_items_run_one_by_one() {
    let (m, calls) = model(Dim::Fixed(1));
    let ks = [1.0, 2.0, 3.0];
    let items: Vec<_> = ks.iter().map(|&k| item(k)).collect();
    let answers = m.run_batch(&items, &RunOptions::default());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    check(&answers, &ks);

    // More items than the batch dimension allows: one by one as well.
    let (m, calls) = model(Dim::Range { min: 1, max: Some(2) });
    let answers = m.run_batch(&items, &RunOptions::default());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    check(&answers, &ks);
}

#[test]
fn a_bad_item_gets_its_own_error_and_the_others_their_answers() {
    let (m, _) = model(Dim::Range { min: 1, max: Some(8) });
    let bad = NamedTensors::new().with("x", Tensor::from_f32([1, 2], vec![0.0; 2]).unwrap());
    let answers = m.run_batch(&[item(1.0), bad, item(3.0)], &RunOptions::default());
    assert!(answers[0].is_ok() && answers[2].is_ok());
    assert!(matches!(answers[1], Err(Error::InvalidInput { .. })), "{:?}", answers[1]);
    check(&[answers.into_iter().nth(2).unwrap()], &[3.0]);
}
