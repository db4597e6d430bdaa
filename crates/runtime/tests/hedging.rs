//! Deadline-aware routing (issue 14, F6/F7): a preferred engine that has not answered when only
//! the fallback's expected time is left is hedged onto the fallback; time waiting in a queue is
//! not an engine failure; admission waits are bounded. Every time asserted is measured around
//! the call; the engines' latencies are scripted faults, not sleeps in the test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{DeviceClass, Error, ErrorKind};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{LoadedModel, RunOptions, Runtime};

/// Scheduling slack allowed beyond a deadline on a loaded 2-core CI machine.
const BOUND: Duration = Duration::from_millis(100);

fn rig(engines: &[&FaultyEngine]) -> (Runtime, LoadedModel) {
    let mut b = Runtime::builder();
    for e in engines {
        b = b.engine(Arc::new((*e).clone()));
    }
    let rt = b.build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    (rt, model)
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

#[test]
fn a_hung_primary_is_hedged_onto_the_fallback_within_the_deadline() {
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let (rt, model) = rig(&[&primary, &cpu]);
    primary.set_fault(Fault::Hang);
    let deadline = Duration::from_millis(300);
    let opts = RunOptions::deadline(deadline);
    for i in 0..5 {
        let (res, took) = timed(&model, &opts);
        let (_, rep) = res.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(rep.engine, "cpu", "call {i}");
        assert!(rep.fell_back);
        assert!(took < deadline + BOUND, "call {i} took {took:?}");
        if i == 0 {
            // The first call reached the hung primary, then was hedged.
            assert!(rep.fallback_reason.as_deref().unwrap().contains("hedged on `cpu`"), "{rep:?}");
        }
    }
    let m = rt.telemetry().model("tiny");
    assert_eq!(m.successes(), 5);
    assert!(m.hedges() >= 1 && m.hedge_wins() >= 1, "{} {}", m.hedges(), m.hedge_wins());
    // The worker stuck inside the primary past the grace got its instance quarantined.
    let ps = rt.telemetry().series("tiny", "primary", "all");
    let snap = rt.telemetry().snapshot();
    let p = snap.series.iter().find(|s| s.engine == "primary").unwrap();
    assert!(p.quarantines >= 1, "{p:?}");
    // Only calls an instance was running are the primary's failures (one per instance: the
    // first and each rebuilt one hang); calls queued behind a hung call are not.
    let timeouts = ps.failures("timeout");
    assert!(timeouts >= 1 && timeouts <= p.quarantines + 1, "{timeouts} {p:?}");
    assert!(timeouts < 5);
    primary.release_hangs();
}

#[test]
fn a_slow_primary_is_hedged_and_the_caller_gets_the_cpu_answer() {
    // Issue 14, F6: Core ML at 300 ms with a 200 ms deadline returned Timeout although the CPU
    // answers in 25 ms. Scaled up for a loaded CI machine: 1.5 s primary, 1 s deadline.
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let (rt, model) = rig(&[&primary, &cpu]);
    primary.set_fault(Fault::Latency(Duration::from_millis(1500)));
    cpu.set_fault(Fault::Latency(Duration::from_millis(25)));
    let deadline = Duration::from_secs(1);
    for i in 0..2 {
        let (res, took) = timed(&model, &RunOptions::deadline(deadline));
        let rep = res.unwrap_or_else(|e| panic!("call {i}: {e}")).1;
        assert_eq!(rep.engine, "cpu");
        assert!(took < deadline + BOUND, "call {i} took {took:?}");
        let reason = rep.fallback_reason.unwrap();
        if i == 0 {
            // The primary kept at least half the budget: the hedge started in its last part.
            assert!(took >= deadline / 2, "call {i} took {took:?}");
            assert!(reason.contains("hedged on `cpu`"), "{reason}");
        } else {
            // The first call found the primary far past its expected time (it had never
            // answered): its instance was quarantined. The next call goes to the CPU at once
            // while the rebuild runs, or is hedged again if the fresh instance is already up.
            assert!(
                reason.contains("quarantined") || reason.contains("hedged on `cpu`"),
                "{reason}"
            );
        }
    }
    let m = rt.telemetry().model("tiny");
    assert!((1..=2).contains(&m.hedges()), "{}", m.hedges());
    assert_eq!(m.hedge_wins(), m.hedges());
    assert_eq!(m.fallbacks_for("hedge"), m.hedges());
    let snap = rt.telemetry().snapshot();
    assert!(snap.series.iter().find(|s| s.engine == "primary").unwrap().quarantines >= 1);
}

#[test]
fn the_primary_can_still_win_a_hedge_and_the_fallback_is_cancelled_without_blame() {
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let (rt, model) = rig(&[&primary, &cpu]);
    // Deadline 1 s; the CPU has not answered yet, so the SLA (200 ms) stands in for its p99:
    // the hedge starts at 1 s - 305 ms. The primary answers at 750 ms, before the CPU (250 ms
    // after the hedge).
    primary.set_fault(Fault::Latency(Duration::from_millis(750)));
    cpu.set_fault(Fault::Latency(Duration::from_millis(250)));
    let (res, took) = timed(&model, &RunOptions::deadline(Duration::from_secs(1)));
    let rep = res.unwrap().1;
    assert_eq!((rep.engine.as_str(), rep.fell_back), ("primary", false));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(cpu.calls(), 1, "the hedge reached the CPU engine");
    let m = rt.telemetry().model("tiny");
    assert_eq!((m.hedges(), m.hedge_wins(), m.hedge_cancellations()), (1, 0, 1));
    assert_eq!(model.breaker("cpu").unwrap().window().calls, 0, "a cancelled loser is no outcome");
}

#[test]
fn waiting_in_a_busy_last_resort_queue_is_not_its_failure() {
    // Issue 14, F7: timeouts of calls queued behind a long call quarantined and tripped a
    // healthy CPU engine. Here the only engine runs one 600 ms call while five 50 ms calls
    // queue behind it and time out.
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let (rt, model) = rig(&[&cpu]);
    cpu.push([Fault::Latency(Duration::from_millis(600))]);
    std::thread::scope(|s| {
        let long = s.spawn(|| timed(&model, &RunOptions::deadline(Duration::from_secs(5))));
        wait_until("the long call to run", || cpu.calls() == 1);
        let deadline = Duration::from_millis(50);
        for i in 0..5 {
            let (res, took) = timed(&model, &RunOptions::deadline(deadline));
            let e = res.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "call {i}: {e}");
            assert!(took >= deadline && took < deadline + BOUND, "call {i} took {took:?}");
        }
        assert!(long.join().unwrap().0.is_ok());
    });
    assert!(model.engine_ready("cpu"), "never quarantined for being busy");
    let snap = rt.telemetry().snapshot();
    let c = snap.series.iter().find(|s| s.engine == "cpu").unwrap();
    assert_eq!((c.quarantines, c.timeouts), (0, 0), "{c:?}");
    assert_eq!(model.breaker("cpu").unwrap().window().failures, 0);
    assert_eq!(cpu.calls(), 1, "calls that expired in the queue never reached the engine");
    assert_eq!(rt.telemetry().model("tiny").failures("timeout"), 5);
    // The engine serves the next call at once.
    assert!(timed(&model, &RunOptions::deadline(Duration::from_secs(1))).0.is_ok());
}

#[test]
fn admission_waits_for_a_slot_but_only_as_long_as_asked() {
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder().engine(Arc::new(cpu.clone())).queue_capacity(1).build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default()).unwrap()).unwrap();
    cpu.push([Fault::Latency(Duration::from_millis(400))]);
    std::thread::scope(|s| {
        let long = s.spawn(|| timed(&model, &RunOptions::deadline(Duration::from_secs(5))));
        wait_until("the long call to hold the only slot", || cpu.calls() == 1);
        let wait = Duration::from_millis(30);
        let opts = RunOptions::deadline(Duration::from_secs(5)).with_admission_wait(wait);
        let (res, took) = timed(&model, &opts);
        assert_eq!(res.unwrap_err().kind(), ErrorKind::Overloaded);
        assert!(took >= wait && took < wait + BOUND, "{took:?}");
        // A longer wait gets the slot when the long call leaves.
        let opts = RunOptions::deadline(Duration::from_secs(5))
            .with_admission_wait(Duration::from_secs(5));
        let (res, _) = timed(&model, &opts);
        assert!(res.is_ok(), "{res:?}");
        assert!(long.join().unwrap().0.is_ok());
    });
}

#[test]
fn a_call_queued_behind_a_stuck_worker_moves_on_without_waiting_for_its_hedge_point() {
    // Issue 14, F6: "one stuck call sinks the calls queued behind it".
    let primary = FaultyEngine::new("primary");
    let cpu = FaultyEngine::new("cpu").with_device(DeviceClass::Cpu);
    let (rt, model) = rig(&[&primary, &cpu]);
    let opts = RunOptions::deadline(Duration::from_secs(2));
    for _ in 0..5 {
        assert_eq!(timed(&model, &opts).0.unwrap().1.engine, "primary"); // its p99 is known
    }
    primary.push([Fault::Hang]);
    std::thread::scope(|s| {
        let hung = s.spawn(|| timed(&model, &opts));
        wait_until("the hang to start", || primary.calls() == 6);
        // Queued behind the hung worker: moved to the CPU engine after the primary's stuck
        // threshold (2 x its p99 + 10 ms), long before the hedge point (about 1.8 s).
        let (res, took) = timed(&model, &opts);
        let rep = res.unwrap().1;
        assert_eq!(rep.engine, "cpu");
        assert!(took < Duration::from_millis(500), "{took:?}");
        // The hung call itself is hedged at its hedge point, within its deadline.
        let (res, took) = hung.join().unwrap();
        assert_eq!(res.unwrap().1.engine, "cpu");
        assert!(took < Duration::from_secs(2) + BOUND, "{took:?}");
    });
    assert_eq!(rt.telemetry().model("tiny").hedge_wins(), 2);
    primary.release_hangs();
}
