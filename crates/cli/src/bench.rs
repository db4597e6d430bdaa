//! `infer bench`: load a model once, warm up, time single-image runs, report latency
//! percentiles, throughput, load time, memory and parity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use inference_api::{
    Drift, Engine, ModelArtifact, NamedTensors, PrepareOptions, PreparedModel, RunContext, Tensor,
    tolerance, top_k,
};
use model_manifest::ModelBundle;
use serde::Serialize;

use crate::exit::{Exit, TagExit, fail};
use crate::json::human;
use crate::{common, json};

/// Arguments of `infer bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model folder with a manifest.toml (default: the bundled EfficientNet-Lite0), a Core ML
    /// package (.mlpackage/.mlmodel, run by the CPU engine's ML Program executor or by Core ML),
    /// or a .safetensors file together with `--arch` (e.g. the FastViT-T8 fixture weights).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Architecture of a bare .safetensors `--model` (`efficientnet-lite0`, `fastvit-t8`).
    #[arg(long)]
    arch: Option<String>,
    /// Engine to time (`candle-cpu`, `coreml`), or `all` for every engine that loads it.
    #[arg(long, default_value = "candle-cpu")]
    engine: String,
    /// CPU engine worker threads (at least 1; default: all cores).
    #[arg(long, value_parser = common::at_least_one)]
    threads: Option<usize>,
    /// Timed runs (at least 1).
    #[arg(long, default_value_t = 100, value_parser = common::at_least_one)]
    iters: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// safetensors file with `input` (and optionally reference `logits`); default: the shared
    /// fixture reference for a known architecture when present, else a fixed pseudo-random input.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Write the results as one JSON document here (`-` for stdout; the text report then goes
    /// to stderr). See docs/cli-json.md.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Parity of one engine's output against a reference.
#[derive(Debug, Serialize)]
struct Parity {
    against: String,
    max_abs: f32,
    max_rel_to_peak: f32,
    cosine: f32,
    top5_agree: bool,
    within_fp32: bool,
}

/// Results for one engine; the first engine's numbers are repeated at the top level of the JSON.
#[derive(Debug, Serialize)]
struct EngineResult {
    engine: String,
    model: String,
    threads: usize,
    iters: usize,
    warmup: usize,
    load_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    images_per_s: f64,
    peak_rss_mb: Option<f64>,
    /// GFLOP (2 per multiply-add) of convolutions and matmuls per run, counted by the kernels.
    gflop_per_run: Option<f64>,
    rss_before_mb: Option<f64>,
    rss_after_mb: Option<f64>,
    rss_growth_kb: Option<i64>,
    parity: Option<Parity>,
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    first: EngineResultRef,
    engines: Vec<EngineResult>,
}

#[derive(Debug, Serialize)]
struct EngineResultRef {
    engine: String,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    threads: usize,
    iters: usize,
    load_ms: f64,
    peak_rss_mb: Option<f64>,
    gflop_per_run: Option<f64>,
    rss_growth_kb: Option<i64>,
}

/// `VmHWM` and `VmRSS` of this process in KiB (Linux only).
fn rss_kb() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn default_reference(arch: &str) -> Option<PathBuf> {
    let file = match arch {
        "efficientnet-lite0" => "efficientnet_lite0/reference/noise.safetensors",
        "fastvit-t8" => "fastvit_t8/reference/noise1.safetensors",
        _ => return None,
    };
    let rel = Path::new("../shared/fixtures").join(file);
    let beside =
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")).join(file);
    [rel, beside].into_iter().find(|p| p.exists())
}

/// The input tensor and optional reference logits.
fn load_input(
    reference: Option<&Path>,
    shape: &[usize],
) -> Result<(Tensor, Option<Vec<f32>>, String)> {
    if let Some(path) = reference {
        let mut file = crate::tensors_io::read(path)?;
        let x = file
            .remove("input")
            .with_context(|| format!("{} has no `input` tensor", path.display()))?;
        if x.dtype() != inference_api::DType::F32 {
            bail!("{}: `input` is {}, expected f32", path.display(), x.dtype());
        }
        let logits = file.get("logits").map(Tensor::to_f32_vec);
        return Ok((x, logits, path.display().to_string()));
    }
    // A fixed pseudo-random input, the same one `infer parity --seed 0` uses first, so runs
    // are repeatable.
    let n: usize = shape.iter().product();
    let x = crate::parity::seeded_values(0, n);
    Ok((Tensor::from_f32(shape.to_vec(), x)?, None, "pseudo-random input (seed 0)".into()))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn engines(threads: Option<usize>, wanted: &str) -> Vec<Arc<dyn Engine>> {
    common::engines(threads).into_iter().filter(|e| wanted == "all" || e.name() == wanted).collect()
}

pub(crate) fn main(args: Args) -> Result<()> {
    if args.json.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        json::reserve_stdout();
    }
    if let Some(r) = &args.reference
        && let Err(e) = std::fs::metadata(r)
    {
        return Err(fail(
            Exit::BadInput,
            format!("reference file {} cannot be read: {e}; check the path", r.display()),
        ));
    }
    let model_path =
        args.model.clone().unwrap_or_else(|| crate::models_dir().join("efficientnet-lite0"));
    let (artifact, name): (ModelArtifact, String) =
        if model_path.is_dir() && !crate::package::is_package(&model_path) {
            let bundle = ModelBundle::load(&model_path)
                .with_context(|| format!("loading model folder {}", model_path.display()))
                .exit(Exit::LoadFailed)?;
            let mut a = bundle.artifact.clone();
            if let Some(arch) = &args.arch {
                a.architecture = Some(arch.clone());
            }
            (a, bundle.manifest.name.clone())
        } else {
            let mut a = ModelArtifact::from_path(&model_path).exit(Exit::LoadFailed)?;
            if args.arch.is_some() {
                a.architecture = args.arch.clone();
            }
            let name = a.architecture.clone().unwrap_or_else(|| a.name.clone());
            (a, name)
        };
    // A package has no architecture: its file stem names the model (efficientnet_lite0).
    let arch = artifact.architecture.clone().unwrap_or_else(|| name.replace('_', "-"));
    let reference = args.reference.clone().or_else(|| default_reference(&arch));
    let engines = engines(args.threads, &args.engine);
    if engines.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!("no engine called `{}` (engines: coreml, candle-cpu, all)", args.engine),
        ));
    }
    let options = PrepareOptions::new().with_threads(args.threads);

    let mut results: Vec<EngineResult> = Vec::new();
    let mut first_output: Option<(String, Vec<f32>)> = None;
    for engine in engines {
        let t0 = Instant::now();
        let model: Arc<dyn PreparedModel> = match engine.prepare(&artifact, &options) {
            Ok(m) => m,
            Err(e) if args.engine == "all" => {
                eprintln!("{}: skipped ({e})", engine.name());
                continue;
            }
            Err(e) => {
                return Err(e)
                    .context(format!("preparing {name} on {}", engine.name()))
                    .exit(Exit::LoadFailed);
            }
        };
        let load = t0.elapsed();
        let spec = model.io_schema().inputs.first().context("model has no input")?.clone();
        let out_name =
            model.io_schema().outputs.first().context("model has no output")?.name.clone();
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|d| match *d {
                inference_api::Dim::Fixed(n) => n,
                inference_api::Dim::Range { min, .. } => min.max(1),
            })
            .collect();
        let (x, want, input_desc) =
            load_input(reference.as_deref(), &shape).exit(Exit::BadInput)?;
        let inputs = NamedTensors::new().with(spec.name.clone(), x);
        let run = || -> Result<Vec<f32>> {
            let out = model.run(&inputs, &RunContext::new())?;
            Ok(out.get(&out_name).context("output missing")?.as_f32()?.to_vec())
        };
        for _ in 0..args.warmup {
            run().exit(Exit::RunFailed)?;
        }
        let f0 = kernels::profile::flops();
        let output = run().exit(Exit::RunFailed)?;
        // Convolution and matmul work of one run as counted by the CPU kernels (none for an
        // engine that does not run on them).
        let flops = kernels::profile::flops().saturating_sub(f0);
        let gflop_per_run = (flops > 0).then(|| flops as f64 / 1e9);
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let bar = (!args.quiet && args.iters >= 200).then(|| {
            let b = indicatif::ProgressBar::new(args.iters as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(engine.name().to_string());
            b
        });
        kernels::profile::reset();
        let (_, rss_before) = rss_kb();
        let mut times = Vec::with_capacity(args.iters);
        let wall = Instant::now();
        for i in 0..args.iters {
            let t = Instant::now();
            let out = model.run(&inputs, &RunContext::new()).exit(Exit::RunFailed)?;
            times.push(t.elapsed());
            drop(out);
            if let Some(b) = &bar
                && i % 16 == 15
            {
                b.set_position(i as u64 + 1);
            }
        }
        let wall = wall.elapsed();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let (hwm, rss_after) = rss_kb();
        print_profile(args.iters, wall);
        times.sort();
        let mean = times.iter().map(|d| d.as_secs_f64()).sum::<f64>() / times.len().max(1) as f64;
        let parity = match (&want, &first_output) {
            (Some(w), _) => Some(("reference logits in ".to_string() + &input_desc, w.clone())),
            (None, Some((e, o))) => Some((format!("engine {e}"), o.clone())),
            _ => None,
        }
        .map(|(against, w)| {
            let d = Drift::between(&output, &w);
            Parity {
                against,
                max_abs: d.max_abs,
                max_rel_to_peak: d.max_rel_to_peak,
                cosine: d.cosine,
                top5_agree: top_k(&output, 5) == top_k(&w, 5),
                within_fp32: d.max_rel_to_peak <= tolerance::FP32.max_rel_to_peak,
            }
        });
        if first_output.is_none() {
            first_output = Some((engine.name().to_string(), output));
        }
        let mb = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);
        results.push(EngineResult {
            engine: engine.name().to_string(),
            model: name.clone(),
            threads,
            iters: args.iters,
            warmup: args.warmup,
            load_ms: load.as_secs_f64() * 1e3,
            p50_ms: percentile(&times, 0.50),
            p90_ms: percentile(&times, 0.90),
            p99_ms: percentile(&times, 0.99),
            mean_ms: mean * 1e3,
            min_ms: percentile(&times, 0.0),
            images_per_s: args.iters as f64 / wall.as_secs_f64().max(1e-9),
            peak_rss_mb: mb(hwm),
            gflop_per_run,
            rss_before_mb: mb(rss_before),
            rss_after_mb: mb(rss_after),
            rss_growth_kb: rss_before.zip(rss_after).map(|(b, a)| a as i64 - b as i64),
            parity,
        });
    }
    let Some(first) = results.first() else {
        return Err(fail(Exit::LoadFailed, format!("no engine could load {name}")));
    };
    for r in &results {
        print_result(r);
    }
    if let Some(path) = &args.json {
        let report = Report {
            first: EngineResultRef {
                engine: first.engine.clone(),
                p50_ms: first.p50_ms,
                p90_ms: first.p90_ms,
                p99_ms: first.p99_ms,
                mean_ms: first.mean_ms,
                threads: first.threads,
                iters: first.iters,
                load_ms: first.load_ms,
                peak_rss_mb: first.peak_rss_mb,
                gflop_per_run: first.gflop_per_run,
                rss_growth_kb: first.rss_growth_kb,
            },
            engines: results,
        };
        let text = json::document("bench", &report)?;
        if path.as_os_str() == "-" {
            json::write_stdout(&text);
        } else {
            crate::output::write_bytes(path, text.as_bytes())?;
        }
    }
    Ok(())
}

/// With `INFER_PROFILE=1`: time per run spent in each kernel kind (CPU engine only).
fn print_profile(iters: usize, wall: Duration) {
    let rows = kernels::profile::snapshot();
    if rows.is_empty() || iters == 0 {
        return;
    }
    let per_run = wall.as_secs_f64() * 1e3 / iters as f64;
    human!("  profile  (INFER_PROFILE: mean ms per run by kernel; wall {per_run:.2} ms per run)");
    let mut covered = 0.0;
    for r in rows {
        let ms = r.total.as_secs_f64() * 1e3 / iters as f64;
        covered += ms;
        let busy = 100.0 * r.busy.as_secs_f64() / r.capacity.as_secs_f64().max(1e-12);
        let waited = r.waited.as_secs_f64() * 1e3 / iters as f64;
        human!(
            "    {:<16} {ms:>7.2} ms  {:>5.1}%  ({} calls per run; threads busy {busy:.0} %, caller \
             waited {waited:.2} ms)",
            r.kind,
            100.0 * ms / per_run,
            r.calls / iters as u64
        );
    }
    human!(
        "    {:<16} {:>7.2} ms  {:>5.1}%",
        "other",
        per_run - covered,
        100.0 * (per_run - covered) / per_run
    );
}

fn print_result(r: &EngineResult) {
    human!(
        "{} on {} ({} threads, {} runs after {} warm-up)",
        r.model,
        r.engine,
        r.threads,
        r.iters,
        r.warmup
    );
    human!(
        "  latency  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  mean {:.2} ms  min {:.2} ms",
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.mean_ms,
        r.min_ms
    );
    human!("  throughput {:.1} images/s   load {:.0} ms", r.images_per_s, r.load_ms);
    if let (Some(peak), Some(g)) = (r.peak_rss_mb, r.rss_growth_kb) {
        human!("  memory   peak RSS {peak:.1} MB   RSS growth over the run {g} KB");
    }
    match &r.parity {
        Some(p) => human!(
            "  parity   vs {}: max_abs {:.2e} rel {:.2e} cosine {:.7} top-5 {} ({})",
            p.against,
            p.max_abs,
            p.max_rel_to_peak,
            p.cosine,
            if p.top5_agree { "agrees" } else { "DIFFERS" },
            if p.within_fp32 { "within fp32 tolerance" } else { "OUTSIDE fp32 tolerance" }
        ),
        None => human!("  parity   no reference (pass --reference FILE or --engine all)"),
    }
}
