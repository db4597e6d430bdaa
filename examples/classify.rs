//! The shortest honest program that runs a model: load the bundled EfficientNet-Lite0 on the
//! CPU engine, classify one photo, print the top label.
//!
//! `cargo run --release -p cli --example classify -- models/samples/coffee.png`

use inference_api::{Engine, NamedTensors, PrepareOptions, RunContext, softmax, top_k};
use model_manifest::ModelBundle;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let photo = std::env::args().nth(1).unwrap_or_else(|| "models/samples/chelsea.png".into());
    // Verifies every file's sha256 against the manifest.
    let bundle = ModelBundle::load("models/efficientnet-lite0")?;
    let engine = backend_candle::CandleEngine::new();
    let model = engine.prepare(&bundle.artifact, &PrepareOptions::default())?;

    let prep = bundle.manifest.preprocessing.as_ref().ok_or("model has no preprocessing")?;
    let input = model_manifest::preprocess::preprocess_file(photo.as_ref(), prep)?;
    let outputs = model.run(&NamedTensors::new().with("input", input), &RunContext::new())?;

    let probs = softmax(outputs.get("logits").ok_or("no logits")?.as_f32()?);
    for class in top_k(&probs, 3) {
        println!("{:>6.2}%  {}", probs[class] * 100.0, bundle.label(class));
    }
    Ok(())
}
