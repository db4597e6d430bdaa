//! Unit tests of the breaker's transitions with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;

fn breaker() -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let cfg = BreakerConfig {
        window: 4,
        min_calls: 4,
        cooldown: Duration::from_secs(1),
        max_cooldown: Duration::from_secs(3),
        half_open_probes: 2,
        ..BreakerConfig::default()
    };
    (CircuitBreaker::new(cfg, Arc::new(clock.clone())), clock)
}

fn call(b: &CircuitBreaker, o: Outcome) -> bool {
    match b.try_acquire() {
        Ok(p) => {
            b.record(p, o);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn opens_cools_down_probes_and_closes() {
    let (b, clock) = breaker();
    for _ in 0..2 {
        call(&b, Outcome::Success);
    }
    call(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, Outcome::Failure); // 2 of 4 = 50 %
    assert!(matches!(b.state(), BreakerState::Open { .. }));
    assert_eq!(b.try_acquire().unwrap_err().retry_after, Duration::from_secs(1));
    clock.advance(Duration::from_millis(999));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert!(b.try_acquire().is_err(), "only two probes");
    b.record(p1, Outcome::Success);
    b.record(p2, Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.trips(), 0);
}

#[test]
fn backoff_grows_and_caps() {
    let (b, clock) = breaker();
    for _ in 0..4 {
        call(&b, Outcome::Failure);
    }
    assert_eq!(b.last_cooldown(), Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    call(&b, Outcome::Failure);
    assert_eq!(b.last_cooldown(), Duration::from_secs(2));
    clock.advance(Duration::from_secs(2));
    call(&b, Outcome::Slow);
    assert_eq!(b.last_cooldown(), Duration::from_secs(3), "capped");
}

#[test]
fn a_dropped_permit_gives_its_probe_slot_back() {
    let (b, clock) = breaker();
    for _ in 0..4 {
        call(&b, Outcome::Failure);
    }
    clock.advance(Duration::from_secs(1));
    let p1 = b.try_acquire().unwrap();
    {
        let _p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "both probe slots taken");
    } // _p2 dropped unsettled: its slot comes back
    let p2 = b.try_acquire().expect("the dropped permit's slot is free again");
    p1.record(Outcome::Success);
    p2.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn stale_results_are_ignored() {
    let (b, _clock) = breaker();
    let late = b.try_acquire().unwrap();
    for _ in 0..4 {
        call(&b, Outcome::Failure);
    }
    b.record(late, Outcome::Success);
    assert!(matches!(b.state(), BreakerState::Open { .. }));
}

#[test]
fn observer_sees_transitions() {
    let clock = ManualClock::new();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let b = CircuitBreaker::new(
        BreakerConfig { window: 2, min_calls: 2, half_open_probes: 1, ..Default::default() },
        Arc::new(clock.clone()),
    )
    .with_observer(move |f, t| s2.lock().push((f.gauge(), t.gauge())));
    call(&b, Outcome::Failure);
    call(&b, Outcome::Failure);
    clock.advance(Duration::from_secs(5));
    call(&b, Outcome::Success);
    use telemetry::BreakerGauge::*;
    assert_eq!(*seen.lock(), vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
}

#[test]
fn a_bypass_is_admitted_in_every_state_and_never_counted() {
    let (b, clock) = breaker();
    for _ in 0..4 {
        call(&b, Outcome::Failure);
    }
    let open = b.state();
    assert!(matches!(open, BreakerState::Open { .. }));
    // Open: the bypass is admitted; neither a success nor a failure changes the state.
    let p = b.bypass();
    assert!(p.is_bypass() && !p.is_probe());
    p.record(Outcome::Success);
    b.bypass().record(Outcome::Failure);
    drop(b.bypass());
    assert_eq!(b.state(), open);
    assert_eq!(b.trips(), 1);
    // Half-open with every probe slot taken: a bypass neither closes nor re-opens it, and
    // giving it back frees no probe slot it never took.
    clock.advance(Duration::from_secs(1));
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    assert!(b.try_acquire().is_err());
    b.bypass().record(Outcome::Failure);
    drop(b.bypass());
    assert!(b.try_acquire().is_err(), "a bypass freed a probe slot");
    b.bypass().record(Outcome::Success);
    b.bypass().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::HalfOpen { admitted: 2, succeeded: 0 });
    p1.record(Outcome::Success);
    p2.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    // Closed: a bypass outcome is not in the window.
    b.bypass().record(Outcome::Failure);
    assert_eq!(b.window(), WindowStats::default());
}
