//! One deterministic test per failure kind: error, hang, slow, panic, wrong shape.
//! Each shows the caller's answer or error within deadline + bound, the fallback counts and
//! reasons, the breaker opening and later closing (clock advanced, never slept).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{DeviceClass, Error};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{BreakerConfig, BreakerState, LoadedModel, ManualClock, RunOptions, Runtime};

/// Scheduling slack allowed beyond a deadline on a loaded 2-core CI machine.
const BOUND: Duration = Duration::from_millis(100);

struct Rig {
    primary: FaultyEngine,
    cpu: FaultyEngine,
    clock: ManualClock,
    rt: Runtime,
    model: LoadedModel,
}

fn rig(sla_ms: u64) -> Rig {
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let clock = ManualClock::new();
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu.clone()))
        .clock(Arc::new(clock.clone()))
        .breaker(
            BreakerConfig::default()
                .with_window(4)
                .with_min_calls(4)
                .with_cooldown(Duration::from_secs(1))
                .with_half_open_probes(2),
        )
        .max_abandoned_workers(4)
        .build();
    let model =
        rt.load_bundle(&bundle(&BundleSpec { sla_ms, ..Default::default() }).unwrap()).unwrap();
    Rig { primary, cpu, clock, rt, model }
}

fn timed(
    m: &LoadedModel,
    opts: &RunOptions,
) -> (Result<(inference_api::NamedTensors, inference_api::RunReport), Error>, Duration) {
    let t = Instant::now();
    let r = m.run_with(input([1.0, 2.0, 3.0, 4.0]), opts);
    (r, t.elapsed())
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// A fault that makes the primary answer with an error: 4 calls fall back with `reason`,
/// the breaker opens, the next call skips the primary, then recovery.
fn fails_then_recovers(fault: Fault, reason: &str) {
    let r = rig(200);
    r.primary.set_fault(fault);
    let opts = RunOptions::deadline(Duration::from_secs(2));
    for i in 0..4 {
        let (res, took) = timed(&r.model, &opts);
        let (_, rep) = res.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert!(took < Duration::from_secs(2) + BOUND);
        assert_eq!(rep.engine, "cpu");
        assert!(rep.fell_back);
        assert!(rep.fallback_reason.as_deref().unwrap().starts_with("primary: "), "{rep:?}");
    }
    assert!(matches!(r.model.breaker_state("primary"), Some(BreakerState::Open { .. })));
    let before = r.primary.calls();
    let (res, _) = timed(&r.model, &opts);
    let rep = res.unwrap().1;
    assert_eq!(rep.engine, "cpu");
    assert!(rep.fallback_reason.unwrap().contains("circuit open"));
    assert_eq!(r.primary.calls(), before, "open breaker: primary not called");

    let t = r.rt.telemetry();
    let m = t.model("tiny");
    assert_eq!(m.fallbacks_for(reason), 4);
    assert_eq!(m.fallbacks_for("circuit_open"), 1);
    assert_eq!(m.calls(), 5);
    assert_eq!(m.successes(), 5);
    let ps = t.series("tiny", "primary", "all");
    assert_eq!(ps.failures(reason), 4);
    assert_eq!(ps.circuit_open_rejections(), 1);
    assert_eq!(t.series("tiny", "cpu", "all").served_as_fallback(), 5);

    // Recovery: engine healthy again, cooldown over, two probes close the breaker.
    r.primary.set_fault(Fault::None);
    r.clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        let rep = timed(&r.model, &opts).0.unwrap().1;
        assert_eq!(rep.engine, "primary");
        assert!(!rep.fell_back);
    }
    assert_eq!(r.model.breaker_state("primary"), Some(BreakerState::Closed));
    use telemetry::BreakerGauge::*;
    assert_eq!(ps.transitions(Closed, Open), 1);
    assert_eq!(ps.transitions(Open, HalfOpen), 1);
    assert_eq!(ps.transitions(HalfOpen, Closed), 1);
    assert_eq!(ps.breaker_state(), Closed);
}

#[test]
fn engine_error_falls_back_and_trips() {
    fails_then_recovers(Fault::Error(Error::Runtime("device lost".into())), "runtime");
}

#[test]
fn engine_panic_is_runtime_error_and_trips() {
    fails_then_recovers(Fault::Panic("kernel exploded".into()), "runtime");
}

#[test]
fn wrong_output_shape_is_caught_and_trips() {
    fails_then_recovers(Fault::WrongShape, "runtime");
}

#[test]
fn non_finite_outputs_are_the_engines_failure_and_trip() {
    fails_then_recovers(Fault::WrongValues(f32::NAN), "non_finite");
}

#[test]
fn a_timeout_cancels_the_engine_so_its_worker_comes_back() {
    let r = rig(200);
    r.primary.set_fault(Fault::SpinUntilCancelled);
    let opts = RunOptions::deadline(Duration::from_millis(50))
        .with_routing(runtime::Routing::Require("primary".into()));
    let (res, took) = timed(&r.model, &opts);
    assert!(matches!(res, Err(Error::Timeout { .. })), "{res:?}");
    assert!(took < Duration::from_millis(50) + BOUND, "{took:?}");
    // The engine only stops when the token is cancelled (it ignores the deadline), so its
    // worker coming back proves the runtime's cancellation reached it.
    wait_until("the abandoned worker to return", || r.model.abandoned_workers("primary") == 0);
}

#[test]
fn a_caller_cancellation_stops_the_engine_and_is_not_its_failure() {
    let r = rig(200);
    r.primary.set_fault(Fault::SpinUntilCancelled);
    let token = inference_api::CancelToken::new();
    let opts = RunOptions::deadline(Duration::from_secs(20)).with_cancel(token.clone());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
    });
    let (res, took) = timed(&r.model, &opts);
    t.join().unwrap();
    let e = res.unwrap_err();
    assert_eq!(e.kind(), inference_api::ErrorKind::Cancelled, "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let b = r.model.breaker("primary").unwrap();
    assert_eq!(b.window().calls, 0, "a cancelled call is not an outcome for the breaker");
    assert_eq!(r.cpu.calls(), 0, "no fallback after a cancellation");
    // A token cancelled before the call stops it before any engine work.
    let done = inference_api::CancelToken::new();
    done.cancel();
    let before = r.primary.calls();
    let e = timed(&r.model, &RunOptions::default().with_cancel(done)).0.unwrap_err();
    assert_eq!(e.kind(), "cancelled");
    assert_eq!(r.primary.calls(), before);
}

#[test]
fn require_returns_the_engines_own_error() {
    let r = rig(200);
    r.primary.set_fault(Fault::Panic("boom".into()));
    let opts = RunOptions::deadline(Duration::from_secs(2))
        .with_routing(runtime::Routing::Require("primary".into()));
    let e = timed(&r.model, &opts).0.unwrap_err();
    assert!(matches!(&e, Error::Runtime(m) if m.contains("panicked: boom")), "{e}");
    r.primary.set_fault(Fault::WrongShape);
    let e = timed(&r.model, &opts).0.unwrap_err();
    assert!(e.to_string().contains("wrong form"), "{e}");
    // Prefer the CPU engine: served there without fallback.
    let opts = RunOptions::default().with_routing(runtime::Routing::Prefer("cpu".into()));
    let rep = timed(&r.model, &opts).0.unwrap().1;
    assert_eq!((rep.engine.as_str(), rep.fell_back), ("cpu", false));
    // Unknown engine.
    let opts = RunOptions::default().with_routing(runtime::Routing::Require("tpu".into()));
    assert_eq!(timed(&r.model, &opts).0.unwrap_err().kind(), "unavailable");
}

#[test]
fn slow_calls_over_sla_trip_the_breaker() {
    let r = rig(10);
    r.primary.set_fault(Fault::Latency(Duration::from_millis(25)));
    let opts = RunOptions::deadline(Duration::from_secs(2));
    for _ in 0..4 {
        let rep = timed(&r.model, &opts).0.unwrap().1;
        assert_eq!(rep.engine, "primary", "slow calls still answer");
    }
    assert!(matches!(r.model.breaker_state("primary"), Some(BreakerState::Open { .. })));
    let rep = timed(&r.model, &opts).0.unwrap().1;
    assert_eq!(rep.engine, "cpu");
    assert!(rep.fallback_reason.unwrap().contains("circuit open"));
    let t = r.rt.telemetry();
    assert_eq!(t.snapshot().series.iter().find(|s| s.engine == "primary").unwrap().slow, 4);
    r.primary.set_fault(Fault::None);
    r.clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        assert_eq!(timed(&r.model, &opts).0.unwrap().1.engine, "primary");
    }
    assert_eq!(r.model.breaker_state("primary"), Some(BreakerState::Closed));
}

#[test]
fn hang_times_out_within_deadline_quarantines_caps_and_recovers() {
    let r = rig(200);
    r.primary.set_fault(Fault::Hang);
    let deadline = Duration::from_millis(100);
    let opts = RunOptions::deadline(deadline);
    // Required on the primary: nothing to hedge onto, so its hang is the call's timeout (with
    // the CPU engine allowed, the call is hedged onto it: tests/hedging.rs).
    let only = opts.clone().with_routing(runtime::Routing::Require("primary".into()));
    for i in 1..=4 {
        wait_until("primary instance ready", || r.model.engine_ready("primary"));
        let (res, took) = timed(&r.model, &only);
        let e = res.unwrap_err();
        assert!(
            matches!(&e, Error::Timeout { engine, deadline_ms: 100, .. } if engine == "primary"),
            "{e}"
        );
        assert!(took >= deadline && took < deadline + BOUND, "took {took:?}");
        assert_eq!(r.model.abandoned_workers("primary"), i);
    }
    // Four timeouts: breaker open, and the abandoned-worker cap (4) stops rebuilding.
    assert!(matches!(r.model.breaker_state("primary"), Some(BreakerState::Open { .. })));
    assert!(!r.model.engine_ready("primary"));
    let rep = timed(&r.model, &opts).0.unwrap().1;
    assert_eq!(rep.engine, "cpu");
    let t = r.rt.telemetry();
    let snap = t.snapshot();
    let ps = snap.series.iter().find(|s| s.engine == "primary").unwrap();
    assert_eq!(ps.timeouts, 4);
    assert_eq!(ps.quarantines, 4);
    assert_eq!(ps.abandoned_workers, 4);
    assert_eq!(snap.models[0].failures["timeout"], 4);

    // The engine comes back: stuck workers return and exit, the lane rebuilds, probes close.
    r.primary.set_fault(Fault::None);
    r.primary.release_hangs();
    wait_until("abandoned workers to exit", || r.model.abandoned_workers("primary") == 0);
    r.clock.advance(Duration::from_secs(1));
    // First probe finds the lane quarantined: it is rebuilt and the call served by the CPU.
    let rep = timed(&r.model, &opts).0.unwrap().1;
    assert_eq!(rep.engine, "cpu");
    assert!(rep.fallback_reason.unwrap().contains("quarantined"));
    wait_until("rebuilt", || r.model.engine_ready("primary"));
    for _ in 0..2 {
        assert_eq!(timed(&r.model, &opts).0.unwrap().1.engine, "primary");
    }
    assert_eq!(r.model.breaker_state("primary"), Some(BreakerState::Closed));
    assert_eq!(t.model("tiny").fallbacks_for("quarantined"), 1);
    assert_eq!(r.cpu.calls(), 2);
}

#[test]
fn full_queue_is_overloaded_at_once() {
    let primary = FaultyEngine::new("primary");
    let rt = Runtime::builder().engine(Arc::new(primary.clone())).queue_capacity(2).build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    primary.set_fault(Fault::Hang);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    model.run_with(input([0.0; 4]), &RunOptions::deadline(Duration::from_secs(5)))
                })
            })
            .collect();
        wait_until("two calls admitted", || model.in_flight() == 2 && primary.calls() >= 1);
        let t = Instant::now();
        // Both slots are taken (one running, one queued): rejected without waiting.
        let e = model.run(input([0.0; 4])).unwrap_err();
        assert_eq!(e.kind(), "overloaded", "{e}");
        assert!(t.elapsed() < Duration::from_millis(50));
        primary.set_fault(Fault::None);
        primary.release_hangs();
        for h in hs {
            assert!(h.join().unwrap().is_ok());
        }
    });
    assert_eq!(rt.telemetry().model("tiny").failures("overloaded"), 1);
}

#[test]
fn shadow_parity_records_drift_and_trips_on_wrong_values() {
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu.clone()))
        .breaker(BreakerConfig::default().with_window(4).with_min_calls(4))
        .shadow(runtime::ShadowConfig::default().with_reference("cpu").with_sample_rate(0.5))
        .build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    for _ in 0..4 {
        model.run(input([1.0; 4])).unwrap();
    }
    assert!(model.wait_shadow_idle(Duration::from_secs(5)));
    let snap = rt.telemetry().snapshot();
    let p = &snap.series.iter().find(|s| s.engine == "primary").unwrap().parity;
    assert_eq!((p.checks, p.exceeded), (2, 0));
    assert_eq!(p.max_abs, 0.0);
    assert_eq!(p.mean_topk_agreement, Some(1.0));
    // Wrong values beyond the tolerance (fp16 tolerance 1e-2 for a virtual device): failures.
    primary.set_fault(Fault::WrongValues(0.5));
    for _ in 0..8 {
        model.run(input([1.0; 4])).unwrap();
        assert!(model.wait_shadow_idle(Duration::from_secs(5)));
    }
    let snap = rt.telemetry().snapshot();
    let p = &snap.series.iter().find(|s| s.engine == "primary").unwrap().parity;
    // Two sampled drifts beyond tolerance open the breaker (window 4, 50 %); calls then go to
    // the reference engine itself and are no longer compared.
    assert_eq!(p.exceeded, 2);
    assert!((p.max_abs - 0.5).abs() < 1e-6);
    assert!(matches!(model.breaker_state("primary"), Some(BreakerState::Open { .. })));
}

#[test]
fn the_abandoned_worker_cap_is_one_for_the_whole_runtime() {
    // Two models on one runtime share the cap of 2 stuck workers: model A's hang leaves 1
    // stuck (A is rebuilt), model B's hang makes it 2, so B is not rebuilt while both workers
    // stay stuck, although B alone has only one. A per-model cap would rebuild B at once.
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu.clone()))
        .max_abandoned_workers(2)
        .build();
    let spec = BundleSpec { sla_ms: 200, ..Default::default() };
    let a = rt.load_bundle(&bundle(&spec).unwrap()).unwrap();
    let b = rt.load_bundle(&bundle(&spec).unwrap()).unwrap();
    let only = RunOptions::deadline(Duration::from_millis(100))
        .with_routing(runtime::Routing::Require("primary".into()));
    primary.set_fault(Fault::Hang);

    let e = timed(&a, &only).0.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    wait_until("model A's primary rebuilt (1 stuck < cap 2)", || a.engine_ready("primary"));

    let e = timed(&b, &only).0.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!((a.abandoned_workers("primary"), b.abandoned_workers("primary")), (1, 1));
    // New calls would not hang (the two stuck workers stay stuck until released). Every call on
    // B asks for a rebuild; none may start while 2 workers are stuck in the runtime.
    primary.set_fault(Fault::None);
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        let _ = timed(&b, &only);
        assert!(!b.engine_ready("primary"), "B rebuilt although the runtime's cap was reached");
    }

    // The stuck workers come back: the cap frees and B is rebuilt on its next call.
    primary.release_hangs();
    wait_until("stuck workers to exit", || {
        a.abandoned_workers("primary") + b.abandoned_workers("primary") == 0
    });
    let _ = timed(&b, &only);
    wait_until("model B's primary rebuilt", || b.engine_ready("primary"));
}
