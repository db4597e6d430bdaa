//! A primary engine starts failing mid-stream: the breaker opens, the real CPU engine
//! (EfficientNet-Lite0 on `candle-cpu`) serves, the half-open probe goes through after the
//! cooldown, the primary recovers; then the telemetry snapshot.
//!
//! `cargo run --release -p cli --example fallback`
//!
//! The primary is `runtime::testing::FaultyEngine` named `coreml` (test support: scripted
//! faults, made-up outputs), so the story is deterministic on any machine; the breaker's clock
//! is a `ManualClock` advanced by the example.

use std::sync::Arc;
use std::time::Duration;

use inference_api::{DeviceClass, Error, NamedTensors, softmax, top_k};
use model_manifest::ModelBundle;
use runtime::testing::{Fault, FaultyEngine};
use runtime::{BreakerConfig, BreakerState, ManualClock, Runtime};

fn state(s: Option<BreakerState>) -> &'static str {
    match s {
        Some(BreakerState::Closed) => "closed",
        Some(BreakerState::Open { .. }) => "OPEN",
        Some(BreakerState::HalfOpen { .. }) => "half-open",
        None => "-",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = ModelBundle::load("models/efficientnet-lite0")?;
    let primary = FaultyEngine::new("coreml").with_device(DeviceClass::NeuralEngine);
    let cpu = backend_candle::CandleEngine::new();
    let clock = ManualClock::new();
    let rt = Runtime::builder()
        .engine(Arc::new(primary.clone()))
        .engine(Arc::new(cpu))
        .clock(Arc::new(clock.clone()))
        .breaker(
            BreakerConfig::default()
                .with_window(6)
                .with_min_calls(4)
                .with_failure_rate(0.5)
                .with_cooldown(Duration::from_secs(5))
                .with_half_open_probes(2),
        )
        .build();
    let model = rt.load_bundle(&bundle)?;
    print!("{}", model.load_report());

    let prep = bundle.manifest.preprocessing.as_ref().ok_or("model has no preprocessing")?;
    let photo =
        model_manifest::preprocess::preprocess_file("models/samples/coffee.png".as_ref(), prep)?;
    let inputs = Arc::new(NamedTensors::new().with("input", photo));

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
        let (out, rep) = model.run(Arc::clone(&inputs))?;
        let after = state(model.breaker_state("coreml"));
        let answer = if rep.engine == "candle-cpu" {
            let probs = softmax(out.get("logits").ok_or("no logits")?.as_f32()?);
            let top = top_k(&probs, 1)[0];
            format!(
                "{} {:.0}% in {:.0} ms",
                bundle.label(top),
                probs[top] * 100.0,
                rep.total.as_secs_f64() * 1e3
            )
        } else {
            "(stand-in output)".to_string()
        };
        let why = rep.fallback_reason.map(|r| format!("  <- {r}")).unwrap_or_default();
        println!(
            "call {call:2}: breaker {before:>9} -> {after:>9}  served by {:<10} {answer}{why}",
            rep.engine
        );
    }
    rt.telemetry().sample_rss();
    println!("\n{}", rt.telemetry().summary_text());
    println!("{}", rt.telemetry().to_json());
    Ok(())
}
