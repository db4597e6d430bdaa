//! Every call runs in a `tracing` span `infer.run` with model, engine and outcome fields,
//! seen through a minimal capturing subscriber (no tracing-subscriber needed).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use inference_api::Error;
use parking_lot::Mutex;
use runtime::Runtime;
use runtime::testing::{self, BundleSpec, Fault, FaultyEngine};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

#[derive(Default)]
struct Spans {
    spans: Mutex<Vec<(String, Fields)>>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Spans>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let mut f = Fields::new();
        a.record(&mut Collect(&mut f));
        let mut spans = self.0.spans.lock();
        spans.push((a.metadata().name().to_string(), f));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.0.spans.lock();
        let i = id.into_u64() as usize - 1;
        values.record(&mut Collect(&mut spans[i].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn each_call_has_a_span_with_model_engine_and_outcome() {
    let primary = FaultyEngine::new("primary");
    let fallback = FaultyEngine::new("fallback");
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(fallback.clone()))
        .build();
    let model = rt.load_bundle(&testing::bundle(&BundleSpec::default()).unwrap()).unwrap();
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        model.run(testing::input([1.0; 4])).unwrap();
        primary.push([Fault::Error(Error::Runtime("boom".into()))]);
        model.run(testing::input([1.0; 4])).unwrap();
        primary.push([Fault::Error(Error::Runtime("boom".into()))]);
        fallback.push([Fault::Error(Error::Runtime("boom".into()))]);
        assert!(model.run(testing::input([1.0; 4])).is_err());
        let wrong = runtime::testing::input([1.0; 4]);
        let mut bad = inference_api::NamedTensors::new();
        for (n, _) in wrong.iter() {
            bad.insert(n, inference_api::Tensor::from_f32([1, 2], vec![0.0; 2]).unwrap());
        }
        assert!(model.run(bad).is_err());
    });
    let spans: Vec<Fields> = capture
        .0
        .spans
        .lock()
        .iter()
        .filter(|(n, _)| n == "infer.run")
        .map(|(_, f)| f.clone())
        .collect();
    assert_eq!(spans.len(), 4, "{spans:?}");
    let get = |i: usize, k: &str| spans[i].get(k).cloned().unwrap_or_default();
    assert!(spans.iter().all(|s| s.get("model").map(String::as_str) == Some("tiny")));
    assert_eq!(
        (get(0, "engine"), get(0, "outcome"), get(0, "fell_back")),
        ("primary".into(), "ok".into(), "false".into())
    );
    assert_eq!(
        (get(1, "engine"), get(1, "outcome"), get(1, "fell_back")),
        ("fallback".into(), "ok".into(), "true".into())
    );
    assert_eq!((get(2, "engine"), get(2, "outcome")), ("fallback".into(), "runtime".into()));
    assert_eq!(get(3, "outcome"), "invalid_input");
}
