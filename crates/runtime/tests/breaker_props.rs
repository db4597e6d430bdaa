//! Property tests of the breaker state machine over random outcomes and clock advances.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use runtime::{BreakerConfig, BreakerState, CircuitBreaker, Clock, ManualClock, Outcome};

#[derive(Debug, Clone)]
enum Op {
    Call(Outcome),
    /// Acquire and hold a permit (a call in flight).
    Hold,
    /// Finish the oldest held permit.
    Finish(Outcome),
    Advance(u64),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![4 => Just(Outcome::Success), 3 => Just(Outcome::Failure), 1 => Just(Outcome::Slow)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => outcome().prop_map(Op::Call),
        1 => Just(Op::Hold),
        1 => outcome().prop_map(Op::Finish),
        2 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

fn cfg() -> impl Strategy<Value = BreakerConfig> {
    (1usize..12, 1usize..12, 0.1f64..1.0, 0.1f64..1.0, 1usize..4, 1.0f64..3.0).prop_map(
        |(window, min, fr, sr, probes, backoff)| {
            BreakerConfig::default()
                .with_window(window)
                .with_min_calls(min.min(window))
                .with_failure_rate(fr)
                .with_slow_rate(sr)
                .with_slow_call(None)
                .with_cooldown(Duration::from_millis(500))
                .with_backoff(backoff)
                .with_max_cooldown(Duration::from_millis(4_000))
                .with_half_open_probes(probes)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn invariants_hold(cfg in cfg(), ops in proptest::collection::vec(op(), 1..300)) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(cfg.clone(), Arc::new(clock.clone()));
        let mut held = std::collections::VecDeque::new();
        let mut prev_trips = 0u32;
        let mut open_until: Option<Duration> = None;
        for op in ops {
            match op {
                Op::Call(o) => {
                    let before = b.state();
                    match b.try_acquire() {
                        Ok(p) => {
                            // Cooldown respected: never admitted while open.
                            let was_open = matches!(before, BreakerState::Open { .. });
                            prop_assert!(!was_open);
                            b.record(p, o);
                        }
                        Err(rej) => {
                            match b.state() {
                                BreakerState::Open { until } => {
                                    prop_assert_eq!(rej.retry_after, until - clock.now());
                                    prop_assert!(clock.now() < until);
                                }
                                BreakerState::HalfOpen { admitted, .. } => {
                                    prop_assert_eq!(admitted, cfg.half_open_probes);
                                }
                                BreakerState::Closed => prop_assert!(false, "closed rejects"),
                            }
                        }
                    }
                }
                Op::Hold => {
                    if let Ok(p) = b.try_acquire() {
                        held.push_back(p);
                    }
                }
                Op::Finish(o) => {
                    if let Some(p) = held.pop_front() {
                        b.record(p, o);
                    }
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
            }
            let state = b.state();
            let w = b.window();
            match state {
                BreakerState::Closed => {
                    // Never closed while the window's rates are over threshold after min calls.
                    if w.calls >= cfg.min_calls {
                        prop_assert!((w.failures as f64 / w.calls as f64) < cfg.failure_rate);
                        prop_assert!((w.slow as f64 / w.calls as f64) < cfg.slow_rate);
                    }
                    prop_assert!(w.calls <= cfg.window);
                    prop_assert_eq!(b.trips(), 0, "closing resets backoff");
                    open_until = None;
                }
                BreakerState::Open { until } => {
                    prop_assert!(clock.now() < until);
                    let trips = b.trips();
                    prop_assert!(trips >= 1);
                    // Backoff: the cooldown of the k-th consecutive trip.
                    prop_assert_eq!(b.last_cooldown(), cfg.cooldown_for(trips));
                    prop_assert!(b.last_cooldown() <= cfg.max_cooldown);
                    if open_until != Some(until) {
                        // A fresh trip: one more than before, cooldown never shrinks.
                        prop_assert!(trips == prev_trips + 1 || prev_trips == 0);
                        open_until = Some(until);
                    }
                }
                BreakerState::HalfOpen { admitted, succeeded } => {
                    // Probes bounded.
                    prop_assert!(admitted <= cfg.half_open_probes);
                    prop_assert!(succeeded < cfg.half_open_probes.max(1));
                    prop_assert!(succeeded <= admitted);
                }
            }
            prev_trips = b.trips();
        }
    }

    #[test]
    fn recovers_after_cooldown_with_good_probes(cfg in cfg(), fails in 1usize..30) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(cfg.clone(), Arc::new(clock.clone()));
        for _ in 0..fails.max(cfg.min_calls) {
            if let Ok(p) = b.try_acquire() { b.record(p, Outcome::Failure); }
        }
        let open = matches!(b.state(), BreakerState::Open { .. });
        prop_assert!(open);
        clock.advance(cfg.max_cooldown);
        for _ in 0..cfg.half_open_probes {
            let p = b.try_acquire();
            prop_assert!(p.is_ok());
            if let Ok(p) = p { b.record(p, Outcome::Success); }
        }
        prop_assert_eq!(b.state(), BreakerState::Closed);
    }
}

#[test]
fn cooldown_backoff_sequence() {
    let cfg = BreakerConfig::default()
        .with_cooldown(Duration::from_secs(1))
        .with_backoff(2.0)
        .with_max_cooldown(Duration::from_secs(10));
    let seq: Vec<u64> = (1..=6).map(|k| cfg.cooldown_for(k).as_secs()).collect();
    assert_eq!(seq, vec![1, 2, 4, 8, 10, 10]);
}
