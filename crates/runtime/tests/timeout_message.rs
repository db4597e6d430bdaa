//! F9 (issue 14): a worker-side expiry used to report `timed out after 3 ms (deadline 0 ms)`,
//! the time left when the worker looked instead of the call's budget. Every timeout now names
//! the call's budget and the time since the call started, whichever side (the waiting caller,
//! or the worker finding an expired job in its queue) notices first.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{DeviceClass, Error, RunContext};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{Routing, RunOptions, Runtime};

fn budget_and_elapsed(e: &Error) -> (u64, u64) {
    match e {
        Error::Timeout { deadline_ms, elapsed_ms, .. } => (*deadline_ms, *elapsed_ms),
        other => panic!("not a timeout: {other}"),
    }
}

#[test]
fn the_worker_side_check_names_the_calls_budget() {
    // What a worker sees for a job whose deadline passed while it was queued: the call had
    // 250 ms and started 250 ms before its deadline.
    let deadline = Instant::now();
    let ctx = RunContext::new().with_deadline(deadline, Duration::from_millis(250));
    let e = ctx.check("cpu").unwrap_err();
    let (budget, elapsed) = budget_and_elapsed(&e);
    assert_eq!(budget, 250, "{e}");
    assert!(elapsed >= 250, "{e}");
    assert!(e.to_string().contains("(deadline 250 ms)"), "{e}");
}

#[test]
fn a_call_queued_past_its_deadline_names_its_budget() {
    // One CPU worker busy for 400 ms; a call with 100 ms waits in its queue and expires there.
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder().engine(Arc::new(cpu.clone())).workers_per_engine(1).build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    cpu.push([Fault::Latency(Duration::from_millis(400))]);
    let only =
        RunOptions::deadline(Duration::from_secs(2)).with_routing(Routing::Require("cpu".into()));
    std::thread::scope(|s| {
        let busy = s.spawn(|| model.run_with(input([1.0, 2.0, 3.0, 4.0]), &only));
        while cpu.calls() == 0 {
            std::thread::yield_now();
        }
        let short = only.clone().with_deadline(Duration::from_millis(100));
        let e = model.run_with(input([1.0, 2.0, 3.0, 4.0]), &short).unwrap_err();
        let (budget, elapsed) = budget_and_elapsed(&e);
        assert_eq!(budget, 100, "{e}");
        assert!(elapsed >= 100, "{e}");
        busy.join().unwrap().unwrap();
    });
}
