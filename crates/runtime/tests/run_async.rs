//! `LoadedModel::run_async` under tokio (a dev-dependency only): answers like `run_with`,
//! many calls concurrently on a single-threaded executor, and dropping the future cancels
//! the call in the engine.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::ErrorKind;
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{LoadedModel, RunOptions, Runtime};

fn model(engine: &FaultyEngine) -> LoadedModel {
    let rt = Runtime::builder().engine(Arc::new(engine.clone())).build();
    rt.load_spec(&bundle(&BundleSpec::default()).unwrap()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn run_async_answers_like_run_with() {
    let engine = FaultyEngine::new("cpu");
    let m = model(&engine);
    let (sync_out, _) = m.run(input([1.0, 2.0, 3.0, 4.0])).unwrap();
    let (out, report) =
        m.run_async(input([1.0, 2.0, 3.0, 4.0]), &RunOptions::default()).await.unwrap();
    assert_eq!(out, sync_out);
    assert_eq!(report.engine, "cpu");
    // Eight calls in flight at once on one executor thread, each 50 ms in the engine: the
    // executor is never blocked, so they overlap (one worker: they queue in the engine).
    engine.set_fault(Fault::Latency(Duration::from_millis(50)));
    let calls: Vec<_> =
        (0..8).map(|i| m.run_async(input([i as f32; 4]), &RunOptions::default())).collect();
    let mut ticks = 0u32;
    let ticker = async {
        loop {
            tokio::task::yield_now().await;
            ticks += 1;
        }
    };
    let all = futures_join(calls);
    tokio::select! {
        results = all => assert!(results.iter().all(|r| r.is_ok())),
        _ = ticker => unreachable!(),
    }
    assert!(ticks > 0, "the executor kept running other tasks while calls were in flight");
}

async fn futures_join(calls: Vec<runtime::RunFuture>) -> Vec<inference_api::Result<()>> {
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.map(|_| ()));
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_future_cancels_the_call_in_the_engine() {
    let engine = FaultyEngine::new("cpu");
    let m = model(&engine);
    engine.set_fault(Fault::SpinUntilCancelled);
    let opts = RunOptions::deadline(Duration::from_secs(20));
    let t = Instant::now();
    let dropped =
        tokio::time::timeout(Duration::from_millis(50), m.run_async(input([0.0; 4]), &opts)).await;
    assert!(dropped.is_err(), "still running when given up");
    // The engine only returns when its token is cancelled: the call leaving the queue
    // proves the drop reached it.
    while m.in_flight() > 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "the engine never saw the cancellation");
        tokio::task::yield_now().await;
    }
    assert_eq!(engine.calls(), 1);
    // A caller's own token still cancels an async call.
    let token = inference_api::CancelToken::new();
    let fut = m.run_async(input([0.0; 4]), &opts.clone().with_cancel(token.clone()));
    token.cancel();
    let e = fut.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
}
