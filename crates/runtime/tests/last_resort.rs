//! The last-resort engine is never refused while every other engine is out (issue 14): with
//! the primary's breaker open and the last resort's open too, a call is let through to the
//! last resort (uncounted by its breaker) instead of failing `circuit_open`, and a slow but
//! answering last resort keeps answering. `Require` keeps its contract (the one engine's own
//! answer, `CircuitOpen` included). The clock is manual: cooldowns never pass on their own.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use inference_api::{DeviceClass, Error};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{
    BreakerConfig, BreakerState, LoadedModel, ManualClock, Routing, RunOptions, Runtime,
};

struct Rig {
    primary: FaultyEngine,
    cpu: FaultyEngine,
    rt: Runtime,
    model: LoadedModel,
}

fn rig(sla_ms: u64) -> Rig {
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu.clone()))
        .clock(Arc::new(ManualClock::new()))
        .breaker(BreakerConfig::default().with_window(4).with_min_calls(4))
        .build();
    let model =
        rt.load_bundle(&bundle(&BundleSpec { sla_ms, ..Default::default() }).unwrap()).unwrap();
    Rig { primary, cpu, rt, model }
}

fn opts() -> RunOptions {
    RunOptions::deadline(Duration::from_secs(2))
}

fn is_open(m: &LoadedModel, engine: &str) -> bool {
    matches!(m.breaker_state(engine), Some(BreakerState::Open { .. }))
}

#[test]
fn with_both_breakers_open_the_last_resort_answers() {
    let r = rig(200);
    // Both engines fail until both breakers are open.
    r.primary.set_fault(Fault::Error(Error::Runtime("device lost".into())));
    r.cpu.set_fault(Fault::Error(Error::Runtime("out of memory".into())));
    for _ in 0..4 {
        assert_eq!(
            r.model.run_with(input([1.0, 2.0, 3.0, 4.0]), &opts()).unwrap_err().kind(),
            "runtime"
        );
    }
    assert!(is_open(&r.model, "primary") && is_open(&r.model, "cpu"));

    // The CPU engine recovers; its breaker is still open (the cooldown has not passed).
    r.cpu.set_fault(Fault::None);
    let (primary_before, cpu_before) = (r.primary.calls(), r.cpu.calls());
    for _ in 0..5 {
        let (out, rep) = r.model.run_with(input([1.0, 2.0, 3.0, 4.0]), &opts()).unwrap();
        assert_eq!(rep.engine, "cpu");
        assert!(rep.fell_back);
        assert!(rep.fallback_reason.unwrap().contains("circuit open"));
        assert!(out.get("logits").is_some());
    }
    assert_eq!(r.primary.calls(), primary_before, "the primary's open breaker is respected");
    assert_eq!(r.cpu.calls(), cpu_before + 5);
    // The bypassed calls are not the breaker's outcomes: it stays open until its cooldown.
    assert!(is_open(&r.model, "cpu"));
    let t = r.rt.telemetry();
    let cpu = t.series("tiny", "cpu", "all");
    assert_eq!(cpu.breaker_bypasses(), 5);
    assert_eq!(cpu.circuit_open_rejections(), 0);
    assert_eq!(t.series("tiny", "primary", "all").circuit_open_rejections(), 5);
    assert_eq!(t.model("tiny").failures("circuit_open"), 0);

    // A failing last resort let through gives its own error, not `circuit_open`.
    r.cpu.set_fault(Fault::Error(Error::Runtime("out of memory".into())));
    let e = r.model.run_with(input([1.0, 2.0, 3.0, 4.0]), &opts()).unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");

    // `Require` is the one engine's own answer: still refused while its breaker is open.
    r.cpu.set_fault(Fault::None);
    let e = r
        .model
        .run_with(input([1.0, 2.0, 3.0, 4.0]), &opts().with_routing(Routing::Require("cpu".into())))
        .unwrap_err();
    assert_eq!(e.kind(), "circuit_open", "{e}");
}

#[test]
fn a_slow_but_answering_last_resort_keeps_answering() {
    // SLA 10 ms; the CPU engine answers in 25 ms, so its breaker opens on the slow-call rate
    // (the soak's starved machine), while the primary's opens on errors.
    let r = rig(10);
    r.primary.set_fault(Fault::Error(Error::Runtime("device lost".into())));
    r.cpu.set_fault(Fault::Latency(Duration::from_millis(25)));
    for i in 0..12 {
        let res = r.model.run_with(input([1.0, 2.0, 3.0, 4.0]), &opts());
        let (_, rep) = res.unwrap_or_else(|e| panic!("call {i} refused: {e}"));
        assert_eq!(rep.engine, "cpu");
    }
    assert!(is_open(&r.model, "primary") && is_open(&r.model, "cpu"));
    let cpu = r.rt.telemetry().series("tiny", "cpu", "all");
    assert_eq!(cpu.breaker_bypasses(), 8, "calls 5-12 went through the open breaker");
    assert_eq!(cpu.successes(), 12);
}
