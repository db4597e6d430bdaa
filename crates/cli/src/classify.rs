//! `infer classify`: top-K labels for photos, with the engine that served and its latency.

use std::path::PathBuf;

use anyhow::{Context, Result};
use inference_api::{NamedTensors, softmax, top_k};
use serde::Serialize;

use crate::{common, finite};

/// Arguments of `infer classify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// PNG or JPEG files (default: the bundled sample photos).
    photos: Vec<PathBuf>,
    /// Model folder with a manifest.toml, or a .mlpackage / .mlmodel (default: the bundled
    /// EfficientNet-Lite0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// For a bare .mlpackage / .mlmodel: the model folder whose preprocessing and labels to use
    /// (default: the bundled EfficientNet-Lite0, when the package takes a [1, 3, H, W] input).
    #[arg(long)]
    preprocess_from: Option<PathBuf>,
    /// How many labels to print per photo.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print the run's telemetry summary after the results.
    #[arg(long)]
    stats: bool,
    /// Serve only from this engine (`candle-cpu`, `coreml`).
    #[arg(long)]
    engine: Option<String>,
    /// CPU engine worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Prediction {
    class: usize,
    label: String,
    probability: f32,
}

#[derive(Debug, Serialize)]
struct PhotoResult {
    photo: String,
    engine: String,
    fell_back: bool,
    latency_ms: f64,
    top: Vec<Prediction>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    load_ms: f64,
    results: Vec<PhotoResult>,
}

fn default_photos() -> Result<Vec<PathBuf>> {
    let dir = crate::models_dir().join("samples");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing bundled photos in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg" || x == "jpeg"))
        .collect();
    photos.sort();
    Ok(photos)
}

pub(crate) fn main(args: Args) -> Result<()> {
    let model_dir =
        args.model.clone().unwrap_or_else(|| crate::models_dir().join("efficientnet-lite0"));
    let photos = if args.photos.is_empty() { default_photos()? } else { args.photos.clone() };
    let (rt, model, bundle) = common::load_with(
        &model_dir,
        args.threads,
        args.engine.as_deref(),
        args.preprocess_from.as_deref(),
    )?;
    let prep = bundle.manifest.preprocessing.clone().with_context(|| {
        format!(
            "{} has no [preprocessing] section, so it cannot classify images",
            model_dir.display()
        )
    })?;
    let input_name = model.io_schema().inputs[0].name.clone();
    let output_name = model.io_schema().outputs[0].name.clone();
    let load_ms = model
        .load_report()
        .engines
        .iter()
        .filter(|e| e.loaded)
        .map(|e| e.load_time.as_secs_f64() * 1e3)
        .next()
        .unwrap_or(0.0);
    if !args.json {
        println!(
            "{} {} ({}): {}",
            bundle.manifest.name,
            bundle.manifest.version,
            bundle.manifest.license,
            common::load_line(&model)
        );
    }
    let mut results = Vec::new();
    for photo in &photos {
        let x = crate::image_input::photo_tensor(photo, &prep, &model.io_schema().inputs[0])?;
        let inputs = NamedTensors::new().with(input_name.clone(), x);
        finite::check_inputs(&inputs, &photo.display().to_string())?;
        let (out, report) = model.run(inputs)?;
        finite::check_outputs(&out, &bundle.manifest.name, &report.engine)?;
        let logits = out
            .get(&output_name)
            .with_context(|| format!("model produced no `{output_name}`"))?
            .to_f32_vec();
        let probs = softmax(&logits);
        let top = top_k(&probs, args.top)
            .into_iter()
            .map(|i| Prediction { class: i, label: bundle.label(i), probability: probs[i] })
            .collect();
        let r = PhotoResult {
            photo: photo.display().to_string(),
            engine: report.engine.clone(),
            fell_back: report.fell_back,
            latency_ms: report.total.as_secs_f64() * 1e3,
            top,
        };
        if !args.json {
            print_result(&r, report.fallback_reason.as_deref());
        }
        results.push(r);
    }
    if args.json {
        let report = Report { model: bundle.manifest.name.clone(), load_ms, results };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if args.stats {
        println!("\n{}", rt.telemetry().summary_text());
    }
    Ok(())
}

fn print_result(r: &PhotoResult, fallback: Option<&str>) {
    let name = std::path::Path::new(&r.photo)
        .file_name()
        .map_or(r.photo.clone(), |n| n.to_string_lossy().into_owned());
    let fb = if r.fell_back {
        format!(", fell back: {}", fallback.unwrap_or("?"))
    } else {
        String::new()
    };
    println!("\n{name}  [{} in {:.1} ms{fb}]", r.engine, r.latency_ms);
    for (rank, p) in r.top.iter().enumerate() {
        println!(
            "  {:>2}. {:>6.2}%  {:<28} (class {})",
            rank + 1,
            p.probability * 100.0,
            p.label,
            p.class
        );
    }
}
