//! A primary engine starts failing mid-stream: the breaker opens, the CPU engine serves,
//! the half-open probe goes through after the cooldown, the primary recovers; then the
//! telemetry snapshot. Run: `cargo run -p runtime --example fallback`.
//!
//! Both engines are `runtime::testing::FaultyEngine`s (test support) so the story is
//! deterministic; the breaker's clock is a `ManualClock` advanced by the example.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use inference_api::{DeviceClass, Error};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{BreakerConfig, BreakerState, ManualClock, Runtime};

fn state(s: Option<BreakerState>) -> &'static str {
    match s {
        Some(BreakerState::Closed) => "closed",
        Some(BreakerState::Open { .. }) => "OPEN",
        Some(BreakerState::HalfOpen { .. }) => "half-open",
        None => "-",
    }
}

fn main() -> Result<(), Error> {
    let primary = FaultyEngine::new("coreml").with_device(DeviceClass::NeuralEngine);
    let cpu = FaultyEngine::new("candle-cpu").with_device(DeviceClass::Cpu);
    let clock = ManualClock::new();
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu))
        .clock(Arc::new(clock.clone()))
        .breaker(BreakerConfig {
            window: 6,
            min_calls: 4,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(5),
            half_open_probes: 2,
            ..Default::default()
        })
        .build();
    let model = rt.load_bundle(&bundle(&BundleSpec {
        name: "demo-classifier".into(),
        ..Default::default()
    })?)?;
    print!("{}", model.load_report());

    for call in 1..=18 {
        match call {
            6 => {
                println!("-- coreml starts failing (device lost)");
                primary.set_fault(Fault::Error(Error::Runtime("ANE device lost".into())));
            }
            13 => {
                println!("-- coreml is healthy again; clock +5 s (cooldown over)");
                primary.set_fault(Fault::None);
                clock.advance(Duration::from_secs(5));
            }
            _ => {}
        }
        let before = state(model.breaker_state("coreml"));
        let (_, rep) = model.run(input([0.1, 0.2, 0.3, 0.4]))?;
        let after = state(model.breaker_state("coreml"));
        let why = rep.fallback_reason.map(|r| format!("  <- {r}")).unwrap_or_default();
        println!(
            "call {call:2}: breaker {before:>9} -> {after:>9}  served by {:<10}{why}",
            rep.engine
        );
    }
    rt.telemetry().sample_rss();
    println!("\n{}", rt.telemetry().summary_text());
    println!("{}", rt.telemetry().to_json());
    Ok(())
}
