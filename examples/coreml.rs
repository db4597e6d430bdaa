//! Core ML for real: prepare an EfficientNet-Lite0 Core ML package on the Core ML engine (and on
//! the CPU engine's ML Program executor, the reference), classify a photo with both, and print
//! where Core ML planned the work, the top-3 classes and the drift between the two engines.
//!
//! `cargo run --release -p cli --example coreml -- [MODEL.mlpackage] [PHOTO]`
//!
//! The package defaults to `../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage`
//! (the shared fixtures beside the repository; the bundled model folder ships only safetensors),
//! the photo to `models/samples/coffee.png`; preprocessing and labels come from the bundled
//! `models/efficientnet-lite0`. When the package is absent the example says so (and how to build
//! one: `scripts/build_coreml_model.py`) and stops. On
//! Linux, or a Mac without the bridge library, Core ML is unavailable: the example says why and
//! classifies with the CPU engine only. On a Mac, `cargo xtask build-bridge` first (or set
//! `COREML_BRIDGE_PATH`).

use std::path::{Path, PathBuf};

use inference_api::{
    ComputeUnits, Drift, Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, softmax,
    top_k,
};
use model_manifest::ModelBundle;

const DEFAULT_PACKAGE: &str = "../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage";

fn is_model(p: &str) -> bool {
    let lower = p.trim_end_matches('/').to_ascii_lowercase();
    [".mlpackage", ".mlmodel", ".mlmodelc"].iter().any(|ext| lower.ends_with(ext))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let package = args.iter().find(|a| is_model(a)).cloned().unwrap_or(DEFAULT_PACKAGE.into());
    let photo = args.iter().find(|a| !is_model(a)).cloned();
    let photo = photo.unwrap_or_else(|| "models/samples/coffee.png".into());
    let package = PathBuf::from(package);
    if !package.exists() {
        eprintln!(
            "no Core ML package at {}: pass the path of an EfficientNet-Lite0 .mlpackage, run \
             from a checkout with the shared fixtures beside it (../shared/fixtures), or build \
             one from the bundled weights with `python3 scripts/build_coreml_model.py` (needs \
             coremltools 9.0; writes target/gates-models/efficientnet_lite0.mlpackage)",
            package.display()
        );
        std::process::exit(2);
    }

    let coreml = backend_coreml::CoreMlEngine::new();
    let cpu = backend_candle::CandleEngine::new();
    for probe in [coreml.probe(), cpu.probe()] {
        match &probe.reason {
            None => println!("{:<10} available ({})", probe.engine, probe.os),
            Some(why) => println!("{:<10} unavailable: {why}", probe.engine),
        }
    }

    let bundle = ModelBundle::load("models/efficientnet-lite0")?;
    let prep = bundle.manifest.preprocessing.as_ref().ok_or("model has no preprocessing")?;
    let input = model_manifest::preprocess::preprocess_file(photo.as_ref(), prep)?;
    let inputs = NamedTensors::new().with("input", input);
    let artifact = ModelArtifact::from_path(&package)?;

    // The reference: the same package on the CPU engine's ML Program executor.
    let reference = cpu.prepare(&artifact, &PrepareOptions::default())?;
    let want =
        reference.run(&inputs, &RunContext::new())?.get("logits").ok_or("no logits")?.to_f32_vec();
    print_top3(&bundle, "candle-cpu (ML Program executor)", &want);

    if !coreml.probe().available {
        println!("\nCore ML did not run (see above); the CPU engine answered alone.");
        return Ok(());
    }
    let options = PrepareOptions::new().with_compute_units(ComputeUnits::All);
    let model = coreml.prepare_model(&artifact, &options)?;
    let placement = inference_api::PreparedModel::placement(model.as_ref());
    println!("\nCore ML prepared {} ({})", display(&package), placement.served_by);
    if placement.planned.is_empty() {
        println!("  compute plan: none ({})", model.notes().join("; "));
    }
    for (device, share) in &placement.planned {
        println!("  compute plan: {:>5.1}% of the estimated cost on {device}", share * 100.0);
    }
    let got = inference_api::PreparedModel::run(model.as_ref(), &inputs, &RunContext::new())?;
    let got = got.get("logits").ok_or("no logits")?.to_f32_vec();
    print_top3(&bundle, "coreml", &got);
    let d = Drift::between(&got, &want);
    println!(
        "\ndrift Core ML vs CPU engine: max abs {:.2e}, max rel to peak {:.2e}, cosine {:.6}, \
         top-1 {}",
        d.max_abs,
        d.max_rel_to_peak,
        d.cosine,
        if d.top1_agree { "agrees" } else { "DIFFERS" }
    );
    Ok(())
}

fn display(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn print_top3(bundle: &ModelBundle, engine: &str, logits: &[f32]) {
    println!("\n{engine}:");
    let probs = softmax(logits);
    for class in top_k(&probs, 3) {
        println!("  {:>6.2}%  {}", probs[class] * 100.0, bundle.label(class));
    }
}
