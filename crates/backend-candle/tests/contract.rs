//! The call contract on the CPU engine: `run_into` writes into the caller's buffers, and a
//! cancelled or expired [`RunContext`] stops the computation between ops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backend_candle::CandleEngine;
use inference_api::{
    CancelToken, DType, Drift, Engine, ErrorKind, NamedTensors, PrepareOptions, PreparedModel,
    RunContext, Tensor, tolerance,
};
use model_manifest::ModelBundle;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lite0() -> Arc<dyn PreparedModel> {
    lite0_on(PrepareOptions::new())
}

/// Lite0 on one thread: a run is 0.77 GFLOP, at least 3 ms even at the FMA peak of the
/// fastest core we have seen (about 230 GFLOP/s), so a stop requested 1 ms in lands mid-run.
fn lite0_one_thread() -> Arc<dyn PreparedModel> {
    lite0_on(PrepareOptions::new().with_threads(Some(1)))
}

fn lite0_on(options: PrepareOptions) -> Arc<dyn PreparedModel> {
    let bundle = ModelBundle::load(root().join("models/efficientnet-lite0")).unwrap();
    CandleEngine::new().prepare(&bundle.artifact, &options).unwrap()
}

/// The PyTorch reference input and logits for the coffee photo.
fn coffee() -> (Tensor, Vec<f32>) {
    let path = root().join("../shared/fixtures/efficientnet_lite0/reference/coffee.safetensors");
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let input = &map["input"];
    let x =
        Tensor::from_f32(input.dims().to_vec(), input.flatten_all().unwrap().to_vec1().unwrap())
            .unwrap();
    (x, map["logits"].flatten_all().unwrap().to_vec1().unwrap())
}

#[test]
fn run_into_writes_into_the_callers_buffer() {
    let model = lite0();
    let (x, want) = coffee();
    let inputs = NamedTensors::new().with("input", x);
    let mut outputs =
        NamedTensors::new().with("logits", Tensor::zeros([1, 1000], DType::F32).unwrap());
    let buffer = outputs.get("logits").unwrap().as_f32().unwrap().as_ptr();
    for _ in 0..2 {
        model.run_into(&inputs, &mut outputs, &RunContext::new()).unwrap();
        let got = outputs.get("logits").unwrap().as_f32().unwrap();
        assert_eq!(got.as_ptr(), buffer, "the caller's buffer was replaced, not written");
        let d = Drift::between(got, &want);
        assert!(d.max_abs <= tolerance::FP32.max_abs, "max abs {}", d.max_abs);
    }
    // A buffer of the wrong shape is replaced by a fresh output.
    let mut wrong = NamedTensors::new().with("logits", Tensor::zeros([7], DType::F32).unwrap());
    model.run_into(&inputs, &mut wrong, &RunContext::new()).unwrap();
    assert_eq!(wrong.get("logits").unwrap().shape(), [1, 1000]);
}

#[test]
fn a_cancelled_call_stops_between_ops() {
    let model = lite0_one_thread();
    let (x, _) = coffee();
    let inputs = NamedTensors::new().with("input", x);
    let token = CancelToken::new();
    let ctx = RunContext::new().with_cancel(token.clone());
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1));
        token.cancel();
    });
    // A Lite0 forward pass on one thread is longer than 3 ms anywhere, so the cancel lands
    // mid-run.
    let e = model.run(&inputs, &ctx).expect_err("the run should have stopped");
    canceller.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
}

#[test]
fn an_expired_deadline_stops_the_run_with_a_timeout() {
    let model = lite0_one_thread();
    let (x, _) = coffee();
    let ctx = RunContext::new().with_timeout(Duration::from_millis(1));
    let e = model.run(&NamedTensors::new().with("input", x), &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}
