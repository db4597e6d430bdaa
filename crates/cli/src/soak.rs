//! `infer soak`: a model called through the runtime for a while, with optional injected faults,
//! recording calls, answers, error kinds, latency percentiles, RSS, threads and file
//! descriptors over time, and their growth per 1,000 calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use inference_api::{DType, Engine, NamedTensors, Tensor};
use model_manifest::ModelBundle;
use parking_lot::Mutex;
use runtime::testing::{Fault, FaultyEngine};
use runtime::{Routing, Runtime};
use serde::Serialize;

use crate::{common, finite, package, parity};

/// Name of the fault-injecting primary engine `--faults` puts in front of the real ones.
const FAULTY: &str = "faulty-primary";

/// Message of the panics `--faults panic=P` injects.
const INJECTED: &str = "injected panic (infer soak --faults)";

/// Arguments of `infer soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model folder with a manifest.toml, or a .mlpackage / .mlmodel.
    #[arg(long)]
    model: PathBuf,
    /// How long to run: `500ms`, `30s`, `10m`, `1h`.
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// Callers calling the model at the same time.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Faults injected by a scripted primary engine in front of the real engines (which then
    /// serve as fallback): `error=P,panic=P,hang=P,shape=P,nan=P,slow=P:MS` with P the
    /// probability per call, e.g. `error=0.05,slow=0.1:300`.
    #[arg(long)]
    faults: Option<String>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: PathBuf,
    /// Time between samples of RSS, threads and file descriptors.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
    /// Seed of the inputs and of the fault draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Fail (exit 1) when RSS grows by more than this many KiB per 1,000 calls.
    #[arg(long)]
    max_rss_growth_kib: Option<f64>,
    /// Fail (exit 1) when threads or file descriptors grow by more than this per 1,000 calls.
    #[arg(long)]
    max_handle_growth: Option<f64>,
    /// CPU engine worker threads (default: all cores).
    #[arg(long)]
    engine_threads: Option<usize>,
}

/// `500ms`, `30s`, `10m`, `1h` (a bare number is seconds).
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 30s or 10m"))?;
    let secs = match unit {
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unit `{unit}` in `{s}`: use ms, s, m or h")),
    };
    if !(0.0..1e7).contains(&secs) {
        return Err(format!("`{s}` is not a usable duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parsed `--faults`: cumulative probability bounds, in order, and the fault each picks.
#[derive(Debug, Clone, Default)]
struct FaultPlan(Vec<(f64, Fault)>);

impl FaultPlan {
    fn parse(spec: &str) -> Result<FaultPlan> {
        let mut plan = Vec::new();
        let mut total = 0.0;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, rest) = part
                .split_once('=')
                .with_context(|| format!("fault `{part}`: write KIND=PROBABILITY"))?;
            let (p, arg) = rest.split_once(':').map_or((rest, None), |(p, a)| (p, Some(a)));
            let p: f64 =
                p.parse().ok().filter(|p: &f64| (0.0..=1.0).contains(p)).with_context(|| {
                    format!("fault `{part}`: probability must be a number from 0 to 1")
                })?;
            let fault = match (kind, arg) {
                ("error", None) => Fault::Error(inference_api::Error::Runtime("injected".into())),
                ("panic", None) => Fault::Panic(INJECTED.into()),
                ("hang", None) => Fault::Hang,
                ("shape", None) => Fault::WrongShape,
                ("nan", None) => Fault::WrongValues(f32::NAN),
                ("slow", Some(ms)) => Fault::Latency(Duration::from_millis(
                    ms.parse().with_context(|| format!("fault `{part}`: slow=P:MILLISECONDS"))?,
                )),
                _ => bail!(
                    "unknown fault `{part}`: use error=P, panic=P, hang=P, shape=P, nan=P or \
                     slow=P:MS"
                ),
            };
            total += p;
            plan.push((total, fault));
        }
        if total > 1.0 {
            bail!("fault probabilities add up to {total}, more than 1");
        }
        Ok(FaultPlan(plan))
    }

    fn draw(&self, state: &mut u64) -> Fault {
        let u = splitmix(state);
        self.0.iter().find(|(bound, _)| u < *bound).map_or(Fault::None, |(_, f)| f.clone())
    }
}

fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Process resources at one moment (`None` where the OS does not tell, e.g. without /proc).
#[derive(Debug, Clone, Copy, Serialize)]
struct Resources {
    rss_kib: Option<u64>,
    threads: Option<u64>,
    fds: Option<u64>,
}

fn resources() -> Resources {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    Resources { rss_kib: field("VmRSS:"), threads: field("Threads:"), fds }
}

#[derive(Debug, Serialize)]
struct Sample {
    t_s: f64,
    calls: u64,
    answers: u64,
    interval_calls: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    #[serde(flatten)]
    resources: Resources,
}

#[derive(Debug, Default, Serialize)]
struct Growth {
    rss_kib: Option<f64>,
    threads: Option<f64>,
    fds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    duration_s: f64,
    threads: usize,
    faults: Option<String>,
    seed: u64,
    calls: u64,
    answers: u64,
    fallbacks: u64,
    non_finite_answers: u64,
    errors: BTreeMap<String, u64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    samples: Vec<Sample>,
    /// Least-squares slope against calls over the samples after the first fifth (warm-up),
    /// times 1,000.
    growth_per_1000_calls: Growth,
    failures: Vec<String>,
}

#[derive(Default)]
struct Shared {
    calls: AtomicU64,
    answers: AtomicU64,
    fallbacks: AtomicU64,
    non_finite: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    interval_ms: Mutex<Vec<f64>>,
    all_ms: Mutex<Vec<f64>>,
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// Least-squares slope of `y` against `x`, or `None` with fewer than 3 points or no spread.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn growth(samples: &[Sample]) -> Growth {
    let warm = &samples[samples.len() / 5..];
    let per_1000 = |f: &dyn Fn(&Sample) -> Option<u64>| {
        let pts: Option<Vec<(f64, f64)>> =
            warm.iter().map(|s| f(s).map(|v| (s.calls as f64, v as f64))).collect();
        pts.and_then(|p| slope(&p)).map(|s| s * 1000.0)
    };
    Growth {
        rss_kib: per_1000(&|s| s.resources.rss_kib),
        threads: per_1000(&|s| s.resources.threads),
        fds: per_1000(&|s| s.resources.fds),
    }
}

/// Injected panics are expected (the runtime catches them): keep their messages off stderr.
/// Any other panic is reported as usual.
fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info.payload().downcast_ref::<String>().is_some_and(|m| m == INJECTED)
            || info.payload().downcast_ref::<&str>().is_some_and(|m| *m == INJECTED);
        if !injected {
            default(info);
        }
    }));
}

fn inputs_for(schema: &inference_api::IoSchema, seed: u64) -> Result<NamedTensors> {
    let mut inputs = NamedTensors::new();
    for (i, spec) in schema.inputs.iter().enumerate() {
        let shape = spec.fixed_shape().unwrap_or_else(|| vec![1; spec.shape.len()]);
        let n = shape.iter().product();
        let t = match spec.dtype {
            DType::F32 => Tensor::from_f32(shape, parity::seeded_values(seed + i as u64, n))?,
            other => Tensor::zeros(shape, other)?,
        };
        inputs.insert(spec.name.clone(), t);
    }
    Ok(inputs)
}

pub(crate) fn main(args: Args) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let plan = args.faults.as_deref().map(FaultPlan::parse).transpose()?;
    let bundle = if package::is_package(&args.model) {
        package::bundle(&args.model, None)?
    } else {
        ModelBundle::load(&args.model)
            .with_context(|| format!("loading model folder {}", args.model.display()))?
    };
    let faulty = plan.as_ref().map(|_| FaultyEngine::new(FAULTY));
    if faulty.is_some() {
        quiet_injected_panics();
    }
    let mut builder = Runtime::builder();
    if let Some(f) = &faulty {
        builder = builder.engine(Arc::new(f.clone()) as Arc<dyn Engine>);
    }
    for e in common::engines(args.engine_threads) {
        builder = builder.engine(e);
    }
    let rt = builder.build();
    let model = rt.load_bundle(&bundle)?;
    if faulty.is_some() {
        model.set_routing(Routing::Prefer(FAULTY.into()));
    }
    let inputs = Arc::new(inputs_for(model.io_schema(), args.seed)?);
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut samples = vec![Sample {
        t_s: 0.0,
        calls: 0,
        answers: 0,
        interval_calls: 0,
        p50_ms: None,
        p99_ms: None,
        resources: resources(),
    }];
    std::thread::scope(|scope| {
        for t in 0..args.threads {
            let (shared, stop, inputs, model) = (&shared, &stop, &inputs, &model);
            let (plan, faulty) = (plan.as_ref(), faulty.as_ref());
            let mut state = args.seed ^ ((t as u64 + 1) << 32);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let (Some(plan), Some(f)) = (plan, faulty) {
                        f.push([plan.draw(&mut state)]);
                    }
                    let t0 = Instant::now();
                    let result = model.run(inputs.clone());
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    shared.calls.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok((out, report)) => {
                            shared.answers.fetch_add(1, Ordering::Relaxed);
                            if report.fell_back {
                                shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                            }
                            if out.iter().any(|(_, t)| finite::non_finite(t).is_some()) {
                                shared.non_finite.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            *shared.errors.lock().entry(e.kind().to_string()).or_default() += 1
                        }
                    }
                    shared.interval_ms.lock().push(ms);
                }
            });
        }
        // The main thread samples at each interval until the duration is spent.
        while started.elapsed() < args.duration {
            let left = args.duration.saturating_sub(started.elapsed());
            std::thread::sleep(args.interval.min(left).max(Duration::from_millis(1)));
            let mut lat = std::mem::take(&mut *shared.interval_ms.lock());
            lat.sort_by(f64::total_cmp);
            samples.push(Sample {
                t_s: started.elapsed().as_secs_f64(),
                calls: shared.calls.load(Ordering::Relaxed),
                answers: shared.answers.load(Ordering::Relaxed),
                interval_calls: lat.len(),
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
                resources: resources(),
            });
            shared.all_ms.lock().extend(lat);
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(f) = &faulty {
            f.release_hangs();
        }
    });
    let mut all = std::mem::take(&mut *shared.all_ms.lock());
    all.extend(shared.interval_ms.lock().drain(..));
    all.sort_by(f64::total_cmp);
    let growth = growth(&samples);
    let mut failures = Vec::new();
    let check = |what: &str, v: Option<f64>, max: Option<f64>, failures: &mut Vec<String>| {
        if let (Some(v), Some(max)) = (v, max)
            && v > max
        {
            failures.push(format!("{what} grew {v:.2} per 1,000 calls (limit {max})"));
        }
    };
    check("RSS (KiB)", growth.rss_kib, args.max_rss_growth_kib, &mut failures);
    check("threads", growth.threads, args.max_handle_growth, &mut failures);
    check("file descriptors", growth.fds, args.max_handle_growth, &mut failures);
    let calls = shared.calls.load(Ordering::Relaxed);
    if calls == 0 {
        failures.push("no call completed".into());
    }
    let report = Report {
        model: bundle.manifest.name.clone(),
        duration_s: started.elapsed().as_secs_f64(),
        threads: args.threads,
        faults: args.faults.clone(),
        seed: args.seed,
        calls,
        answers: shared.answers.load(Ordering::Relaxed),
        fallbacks: shared.fallbacks.load(Ordering::Relaxed),
        non_finite_answers: shared.non_finite.load(Ordering::Relaxed),
        errors: shared.errors.lock().clone(),
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        samples,
        growth_per_1000_calls: growth,
        failures,
    };
    let text = serde_json::to_string_pretty(&report)?;
    crate::output::write_bytes(&args.json, text.as_bytes())?;
    let g = &report.growth_per_1000_calls;
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:+.2}"));
    println!(
        "{}: {} calls, {} answers ({} fell back, {} non-finite), errors {:?}, p50 {} ms, p99 {} \
         ms; growth per 1,000 calls: RSS {} KiB, threads {}, fds {}",
        report.model,
        report.calls,
        report.answers,
        report.fallbacks,
        report.non_finite_answers,
        report.errors,
        report.p50_ms.map_or("n/a".into(), |v| format!("{v:.1}")),
        report.p99_ms.map_or("n/a".into(), |v| format!("{v:.1}")),
        show(g.rss_kib),
        show(g.threads),
        show(g.fds)
    );
    if !report.failures.is_empty() {
        bail!("soak failed: {}", report.failures.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_fault_specs_parse_or_say_why_not() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5d").unwrap_err().contains("unit `d`"));
        let plan = FaultPlan::parse("error=0.25,slow=0.5:300").unwrap();
        assert_eq!(plan.0.len(), 2);
        assert!(
            FaultPlan::parse("error=0.7,panic=0.7").unwrap_err().to_string().contains("add up")
        );
        assert!(FaultPlan::parse("melt=0.1").unwrap_err().to_string().contains("unknown fault"));
        // Draws follow the probabilities (seeded, so exact counts are reproducible).
        let mut state = 1;
        let drawn: Vec<Fault> = (0..10_000).map(|_| plan.draw(&mut state)).collect();
        let errors = drawn.iter().filter(|f| matches!(f, Fault::Error(_))).count();
        assert!((2300..2700).contains(&errors), "{errors}");
    }

    #[test]
    fn growth_is_the_slope_after_warm_up() {
        let sample = |calls: u64, rss: u64| Sample {
            t_s: 0.0,
            calls,
            answers: calls,
            interval_calls: 0,
            p50_ms: None,
            p99_ms: None,
            resources: Resources { rss_kib: Some(rss), threads: Some(4), fds: None },
        };
        // A 10 MB warm-up jump, then 2 KiB per 1,000 calls.
        let mut s = vec![sample(0, 1000)];
        s.extend((1..10).map(|i| sample(i * 1000, 11_000 + 2 * i)));
        let g = growth(&s);
        assert!((g.rss_kib.unwrap() - 2.0).abs() < 1e-9, "{g:?}");
        assert_eq!(g.threads, Some(0.0));
        assert_eq!(g.fds, None);
    }
}
