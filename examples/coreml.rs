//! Core ML preferred, the CPU engine as fallback, through the runtime: load the bundled
//! EfficientNet-Lite0, say which engine can serve it and why the other cannot, classify a photo.
//!
//! `cargo run --release -p cli --example coreml -- models/samples/coffee.png`
//!
//! On Linux (or a Mac without the bridge library) it prints that Core ML is unavailable and
//! why, then serves from the CPU. Set `COREML_BRIDGE_PATH` to a built bridge on a Mac
//! (`cargo xtask build-bridge`) for the Core ML engine to load.

use std::sync::Arc;

use inference_api::{Engine, NamedTensors, softmax, top_k};
use model_manifest::ModelBundle;
use runtime::Runtime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let photo = std::env::args().nth(1).unwrap_or_else(|| "models/samples/coffee.png".into());
    let coreml = Arc::new(backend_coreml::CoreMlEngine::new());
    let cpu = Arc::new(backend_candle::CandleEngine::new());

    // What each engine can do on this machine, before loading anything.
    for probe in [coreml.probe(), cpu.probe()] {
        match &probe.reason {
            None => println!("{:<10} available ({})", probe.engine, probe.os),
            Some(why) => println!("{:<10} unavailable: {why}", probe.engine),
        }
    }

    // Engines in preference order: Core ML first, the CPU engine as the fallback.
    let rt = Runtime::builder().engine(coreml).engine(cpu).build();
    let bundle = ModelBundle::load("models/efficientnet-lite0")?;
    let model = rt.load_bundle(&bundle)?;
    print!("\n{}", model.load_report());
    println!("serving engines, in order: {}", model.engines().join(", "));

    let prep = bundle.manifest.preprocessing.as_ref().ok_or("model has no preprocessing")?;
    let input = model_manifest::preprocess::preprocess_file(photo.as_ref(), prep)?;
    let (outputs, report) = model.run(NamedTensors::new().with("input", input))?;
    let fallback = match (&report.fell_back, &report.fallback_reason) {
        (true, Some(why)) => format!(", fell back: {why}"),
        _ => String::new(),
    };
    println!(
        "\n{photo}: served by {} in {:.1} ms{fallback}",
        report.engine,
        report.total.as_secs_f64() * 1e3
    );
    let probs = softmax(outputs.get("logits").ok_or("no logits")?.as_f32()?);
    for class in top_k(&probs, 3) {
        println!("  {:>6.2}%  {}", probs[class] * 100.0, bundle.label(class));
    }
    Ok(())
}
