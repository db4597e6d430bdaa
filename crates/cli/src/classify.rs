//! `infer classify`: top-K labels for photos (files or folders of them), with the engine that
//! served and its latency. Every named path is checked before the model loads; a photo that
//! fails later (cannot be decoded, a failed call) is reported and the batch goes on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use inference_api::{NamedTensors, softmax, top_k};
use runtime::RunOptions;
use serde::Serialize;

use crate::exit::{Exit, TagExit, fail};
use crate::json::human;
use crate::{common, finite, json};

/// Arguments of `infer classify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// PNG or JPEG files, or folders of them (default: the bundled sample photos).
    photos: Vec<PathBuf>,
    /// Model folder with a manifest.toml, or a .mlpackage / .mlmodel (default: the bundled
    /// EfficientNet-Lite0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// For a bare .mlpackage / .mlmodel: the model folder whose preprocessing and labels to use
    /// (default: the bundled EfficientNet-Lite0, when the package takes a [1, 3, H, W] input).
    #[arg(long)]
    preprocess_from: Option<PathBuf>,
    /// How many labels to print per photo (at least 1).
    #[arg(long, default_value_t = 5, value_parser = common::at_least_one)]
    top: usize,
    /// Print one JSON document on stdout (docs/cli-json.md) instead of text.
    #[arg(long)]
    json: bool,
    /// Add the run's telemetry: a summary after the results, or `stats` in the JSON.
    #[arg(long)]
    stats: bool,
    /// Serve only from this engine (`candle-cpu`, `coreml`).
    #[arg(long)]
    engine: Option<String>,
    /// CPU engine worker threads (at least 1; default: all cores).
    #[arg(long, value_parser = common::at_least_one)]
    threads: Option<usize>,
    /// Photos per call when the model's batch dimension is open (stacked into one call whose
    /// deadline is the model's timeout times the photos; each photo's latency is then the
    /// call's). The default, 1, runs them one by one: stacking has not been shown to make the
    /// CPU engine faster. Models with a fixed batch always run one photo per call.
    #[arg(long, default_value_t = 1, value_parser = common::at_least_one)]
    batch: usize,
}

#[derive(Debug, Serialize)]
struct Prediction {
    class: usize,
    label: String,
    probability: f32,
}

/// One photo's outcome: predictions, or the error that stopped this photo alone.
#[derive(Debug, Serialize)]
struct PhotoResult {
    photo: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fell_back: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<Vec<Prediction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    name: String,
    version: String,
    license: String,
    path: String,
}

#[derive(Debug, Serialize)]
struct Report {
    model: ModelInfo,
    load_ms: f64,
    results: Vec<PhotoResult>,
    failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<telemetry::Snapshot>,
}

fn is_photo(p: &Path) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| ["png", "jpg", "jpeg"].contains(&x.to_ascii_lowercase().as_str()))
}

/// The photos in `dir` (PNG/JPEG by extension, not recursive), sorted by name.
fn photos_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing photos in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_photo(p))
        .collect();
    photos.sort();
    Ok(photos)
}

/// The photos the arguments name, folders expanded; every path must exist. Runs before the
/// model loads, so a typo costs nothing.
pub(crate) fn expand_photos(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if args.is_empty() {
        return photos_in(&crate::models_dir().join("samples"));
    }
    let mut out = Vec::new();
    for p in args {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let found = photos_in(p).exit(Exit::BadInput)?;
                if found.is_empty() {
                    return Err(fail(
                        Exit::BadInput,
                        format!("{} holds no .png, .jpg or .jpeg files", p.display()),
                    ));
                }
                out.extend(found);
            }
            Ok(_) => out.push(p.clone()),
            Err(e) => {
                return Err(fail(
                    Exit::BadInput,
                    format!("photo {} cannot be read: {e}; check the path", p.display()),
                ));
            }
        }
    }
    Ok(out)
}

pub(crate) fn main(args: Args) -> Result<()> {
    if args.json {
        json::reserve_stdout();
    }
    let model_dir =
        args.model.clone().unwrap_or_else(|| crate::models_dir().join("efficientnet-lite0"));
    let photos = expand_photos(&args.photos)?;
    let (rt, model, bundle) = common::load_with(
        &model_dir,
        args.threads,
        args.engine.as_deref(),
        args.preprocess_from.as_deref(),
    )
    .exit(Exit::LoadFailed)?;
    let prep = bundle.manifest.preprocessing.clone().ok_or_else(|| {
        fail(
            Exit::LoadFailed,
            format!(
                "{} has no [preprocessing] section, so it cannot classify images: add one to \
                 its manifest.toml (see `infer manifest init`) or pass --preprocess-from DIR",
                model_dir.display()
            ),
        )
    })?;
    let input_name = model.io_schema().inputs[0].name.clone();
    let output_name = scores_output(model.io_schema(), bundle.labels.as_ref().map(Vec::len));
    let load_ms = model
        .load_report()
        .engines
        .iter()
        .filter(|e| e.loaded)
        .map(|e| e.load_time.as_secs_f64() * 1e3)
        .next()
        .unwrap_or(0.0);
    let m = &bundle.manifest;
    human!("{} {} ({}): {}", m.name, m.version, m.license, common::load_line(&model));
    let mut results = Vec::new();
    let mut only_error = None;
    // Photos go through in groups: one stacked call per group when the model's batch
    // dimension is open (`LoadedModel::run_batch`), else one call per photo.
    let batch = if batch_open(model.io_schema()) { args.batch } else { 1 };
    let spec = model.io_schema().inputs[0].clone();
    for group in photos.chunks(batch) {
        let prepared: Vec<Result<NamedTensors>> = group
            .iter()
            .map(|photo| {
                let x =
                    crate::image_input::photo_tensor(photo, &prep, &spec).exit(Exit::BadInput)?;
                let inputs = NamedTensors::new().with(input_name.clone(), x);
                finite::check_inputs(&inputs, &photo.display().to_string()).exit(Exit::BadInput)?;
                Ok(inputs)
            })
            .collect();
        let ready: Vec<NamedTensors> =
            prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        // A stacked call does the work of every photo in it: its deadline is the model's
        // per-call timeout times the photos.
        let opts = if ready.len() > 1 {
            let per_call = m.serving.timeout_ms.max(1);
            RunOptions::deadline(std::time::Duration::from_millis(per_call * ready.len() as u64))
        } else {
            RunOptions::default()
        };
        let mut answers = model.run_batch(&ready, &opts).into_iter();
        for (photo, prepared) in group.iter().zip(prepared) {
            let outcome = prepared.and_then(|_| {
                let (out, report) = answers
                    .next()
                    .ok_or_else(|| fail(Exit::RunFailed, "the batch returned too few answers"))?
                    .exit(Exit::RunFailed)?;
                finite::check_outputs(&out, &m.name, &report.engine).exit(Exit::RunFailed)?;
                let logits = out
                    .get(&output_name)
                    .ok_or_else(|| {
                        fail(Exit::RunFailed, format!("model produced no `{output_name}`"))
                    })?
                    .to_f32_vec();
                let probs = probabilities(&logits);
                let top = top_k(&probs, args.top)
                    .into_iter()
                    .map(|i| Prediction { class: i, label: bundle.label(i), probability: probs[i] })
                    .collect();
                let r = PhotoResult {
                    photo: photo.display().to_string(),
                    engine: Some(report.engine.clone()),
                    fell_back: Some(report.fell_back),
                    latency_ms: Some(report.total.as_secs_f64() * 1e3),
                    top: Some(top),
                    error: None,
                };
                Ok((r, report.fallback_reason.clone()))
            });
            match outcome {
                Ok((r, fallback)) => {
                    print_result(&r, fallback.as_deref());
                    results.push(r);
                }
                Err(e) => {
                    let msg = common::one_line(&e);
                    if photos.len() == 1 {
                        // One photo: its error is the command's error (one line, its own status).
                        only_error = Some(e);
                    } else {
                        eprintln!("error: {}: {msg}", photo.display());
                    }
                    results.push(PhotoResult {
                        photo: photo.display().to_string(),
                        engine: None,
                        fell_back: None,
                        latency_ms: None,
                        top: None,
                        error: Some(msg),
                    });
                }
            }
        }
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        let report = Report {
            model: ModelInfo {
                name: m.name.clone(),
                version: m.version.clone(),
                license: m.license.clone(),
                path: model_dir.display().to_string(),
            },
            load_ms,
            results,
            failed,
            stats: args.stats.then(|| rt.telemetry().snapshot()),
        };
        json::emit("classify", &report)?;
    } else if args.stats {
        human!("\n{}", rt.telemetry().summary_text());
    }
    match (failed, only_error) {
        (0, _) => Ok(()),
        (_, Some(e)) => Err(e),
        _ => Err(fail(
            Exit::PartialBatch,
            format!("{failed} of {} photos could not be classified (see above)", photos.len()),
        )),
    }
}

/// True when the model's (first) input has an open batch dimension that takes more than one
/// photo.
fn batch_open(schema: &inference_api::IoSchema) -> bool {
    schema.inputs.len() == 1
        && matches!(schema.inputs[0].shape.first(), Some(d @ inference_api::Dim::Range { .. }) if d.accepts(1) && d.accepts(2))
}

/// The output holding the class scores: a classifier's (named by the package), else the first
/// float output with one score per label, else the first output.
fn scores_output(schema: &inference_api::IoSchema, labels: Option<usize>) -> String {
    if let Some(c) = schema.classifier.as_ref().filter(|c| schema.output(&c.output).is_some()) {
        return c.output.clone();
    }
    let float = |s: &&inference_api::TensorSpec| {
        matches!(s.dtype, inference_api::DType::F32 | inference_api::DType::F16)
    };
    schema
        .outputs
        .iter()
        .filter(float)
        .find(|s| labels.is_some() && s.fixed_shape().and_then(|d| d.last().copied()) == labels)
        .or_else(|| schema.outputs.iter().find(float))
        .or(schema.outputs.first())
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// Class probabilities from a model's scores: scores that already are a distribution (every
/// value in [0, 1], summing to 1, as a Core ML classifier's probabilities or a network ending
/// in softmax give them) are kept as they are; anything else is taken as logits (softmax).
fn probabilities(scores: &[f32]) -> Vec<f32> {
    let sum: f64 = scores.iter().map(|&p| f64::from(p)).sum();
    let distribution = !scores.is_empty()
        && scores.iter().all(|p| (0.0..=1.0).contains(p))
        && (sum - 1.0).abs() < 1e-3;
    if distribution { scores.to_vec() } else { softmax(scores) }
}

fn print_result(r: &PhotoResult, fallback: Option<&str>) {
    let name = Path::new(&r.photo)
        .file_name()
        .map_or(r.photo.clone(), |n| n.to_string_lossy().into_owned());
    let fb = if r.fell_back == Some(true) {
        format!(", fell back: {}", fallback.unwrap_or("?"))
    } else {
        String::new()
    };
    human!(
        "\n{name}  [{} in {:.1} ms{fb}]",
        r.engine.as_deref().unwrap_or("?"),
        r.latency_ms.unwrap_or(0.0)
    );
    for (rank, p) in r.top.iter().flatten().enumerate() {
        human!(
            "  {:>2}. {:>6.2}%  {:<28} (class {})",
            rank + 1,
            p.probability * 100.0,
            p.label,
            p.class
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_api::{ClassLabels, DType, IoSchema, TensorSpec};

    #[test]
    fn probabilities_are_kept_and_logits_softmaxed() {
        let p = [0.1f32, 0.7, 0.2];
        assert_eq!(probabilities(&p), p.to_vec());
        let logits = [1.0f32, 3.0, 2.0];
        assert_eq!(probabilities(&logits), softmax(&logits));
        // Values in [0, 1] that do not sum to 1 are not a distribution.
        let sigmoids = [0.9f32, 0.8, 0.7];
        assert_eq!(probabilities(&sigmoids), softmax(&sigmoids));
    }

    #[test]
    fn the_scores_output_is_the_classifiers_then_one_score_per_label() {
        let label = TensorSpec::fixed("classLabel", DType::I64, &[1]);
        let probs = TensorSpec::fixed("classLabel_probs", DType::F32, &[1, 4]);
        let mut schema = IoSchema::new(vec![], vec![label, probs]);
        // A manifest's schema has no classifier: the float output with one score per label.
        assert_eq!(scores_output(&schema, Some(4)), "classLabel_probs");
        schema.classifier =
            Some(ClassLabels { output: "classLabel_probs".into(), labels: vec![String::new(); 4] });
        assert_eq!(scores_output(&schema, None), "classLabel_probs");
        let plain = IoSchema::new(vec![], vec![TensorSpec::fixed("logits", DType::F32, &[1, 9])]);
        assert_eq!(scores_output(&plain, Some(4)), "logits");
    }
}
