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
use telemetry::LatencyHist;

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
    /// Test of the growth gate: keep this many bytes per call for the whole run, a planted
    /// leak the `--max-rss-growth-kib` check must catch (`cli/tests/soak.rs`).
    #[arg(long, hide = true, default_value_t = 0)]
    plant_leak_bytes: usize,
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

/// Parsed `--faults`: each fault with its probability per call, handed to the faulty engine
/// ([`FaultyEngine::set_mix`]), which draws one per call that reaches it. (The soak used to
/// queue one drawn fault per call from the caller; calls the runtime refused never consumed
/// theirs, and the queue grew by about 90 bytes per refused call.)
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
            plan.push((p, fault));
        }
        if total > 1.0 {
            bail!("fault probabilities add up to {total}, more than 1");
        }
        Ok(FaultPlan(plan))
    }
}

/// Pause after a refusal when the error carries no hint (`overloaded`), or its hint is 0 (a
/// half-open breaker whose probes are all in flight).
const MIN_REFUSAL_PAUSE: Duration = Duration::from_millis(10);

/// How long a caller waits after `e` before calling again, as a `Retry-After` would ask:
/// `None` for an answer or a failure (call again at once), the breaker's remaining cooldown
/// for `circuit_open` (at least [`MIN_REFUSAL_PAUSE`]), [`MIN_REFUSAL_PAUSE`] for
/// `overloaded` (its error carries no hint).
fn refusal_pause(e: &inference_api::Error) -> Option<Duration> {
    match e {
        inference_api::Error::CircuitOpen { retry_after_ms, .. } => {
            Some(Duration::from_millis(*retry_after_ms).max(MIN_REFUSAL_PAUSE))
        }
        inference_api::Error::Overloaded { .. } => Some(MIN_REFUSAL_PAUSE),
        _ => None,
    }
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
    refusals: u64,
    interval_calls: u64,
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
    /// Calls refused without being attempted (`circuit_open`, `overloaded`), by kind; after
    /// each, the caller paused as the error asked ([`refusal_pause`]).
    refusals: BTreeMap<String, u64>,
    /// Total time callers spent paused after refusals.
    refusal_pause_s: f64,
    /// Calls that failed (every error but a refusal), by kind.
    errors: BTreeMap<String, u64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    samples: Vec<Sample>,
    /// Least-squares slope against calls over the samples after the first fifth (warm-up),
    /// times 1,000.
    growth_per_1000_calls: Growth,
    failures: Vec<String>,
}

/// What the callers count. Memory is bounded whatever the number of calls: counters, maps
/// keyed by error kind and a latency histogram per interval (merged into the overall one at
/// each sample). (The soak used to keep every call's latency in a vector: 8-16 bytes per call.)
#[derive(Default)]
struct Shared {
    calls: AtomicU64,
    answers: AtomicU64,
    fallbacks: AtomicU64,
    non_finite: AtomicU64,
    refusals: AtomicU64,
    paused_us: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    interval: Mutex<LatencyHist>,
}

/// p50 and p99 in milliseconds, `None` when nothing was recorded.
fn p50_p99(h: &LatencyHist) -> (Option<f64>, Option<f64>) {
    let q = h.quantiles();
    if q.count == 0 { (None, None) } else { (Some(q.p50_us / 1e3), Some(q.p99_us / 1e3)) }
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

fn kinds(m: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    m.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
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
    if let (Some(plan), Some(f)) = (&plan, &faulty) {
        f.set_mix(plan.0.iter().cloned(), args.seed);
    }
    let inputs = Arc::new(inputs_for(model.io_schema(), args.seed)?);
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = started + args.duration;
    let mut samples = vec![Sample {
        t_s: 0.0,
        calls: 0,
        answers: 0,
        refusals: 0,
        interval_calls: 0,
        p50_ms: None,
        p99_ms: None,
        resources: resources(),
    }];
    let mut all = LatencyHist::new();
    let planted = Mutex::new(Vec::<Vec<u8>>::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            let (shared, stop, inputs, model) = (&shared, &stop, &inputs, &model);
            let (planted, plant) = (&planted, args.plant_leak_bytes);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if plant > 0 {
                        // Touched, so the pages count in RSS.
                        planted.lock().push(vec![1u8; plant]);
                    }
                    let t0 = Instant::now();
                    let result = model.run(inputs.clone());
                    let took = t0.elapsed();
                    shared.calls.fetch_add(1, Ordering::Relaxed);
                    shared.interval.lock().record(took);
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
                        Err(e) => match refusal_pause(&e) {
                            Some(pause) => {
                                shared.refusals.fetch_add(1, Ordering::Relaxed);
                                *shared.refused.lock().entry(e.kind().as_str()).or_default() += 1;
                                // Wait as asked, but not past the end of the soak.
                                let pause =
                                    pause.min(end.saturating_duration_since(Instant::now()));
                                std::thread::sleep(pause);
                                shared
                                    .paused_us
                                    .fetch_add(pause.as_micros() as u64, Ordering::Relaxed);
                            }
                            None => {
                                *shared.errors.lock().entry(e.kind().as_str()).or_default() += 1
                            }
                        },
                    }
                }
            });
        }
        // The main thread samples at each interval until the duration is spent.
        while started.elapsed() < args.duration {
            let left = args.duration.saturating_sub(started.elapsed());
            std::thread::sleep(args.interval.min(left).max(Duration::from_millis(1)));
            let lat = std::mem::take(&mut *shared.interval.lock());
            let (p50_ms, p99_ms) = p50_p99(&lat);
            samples.push(Sample {
                t_s: started.elapsed().as_secs_f64(),
                calls: shared.calls.load(Ordering::Relaxed),
                answers: shared.answers.load(Ordering::Relaxed),
                refusals: shared.refusals.load(Ordering::Relaxed),
                interval_calls: lat.quantiles().count,
                p50_ms,
                p99_ms,
                resources: resources(),
            });
            all.merge(&lat);
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(f) = &faulty {
            f.release_hangs();
        }
    });
    all.merge(&shared.interval.lock());
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
    let (p50_ms, p99_ms) = p50_p99(&all);
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
        refusals: kinds(&shared.refused.lock()),
        refusal_pause_s: shared.paused_us.load(Ordering::Relaxed) as f64 / 1e6,
        errors: kinds(&shared.errors.lock()),
        p50_ms,
        p99_ms,
        samples,
        growth_per_1000_calls: growth,
        failures,
    };
    let text = serde_json::to_string_pretty(&report)?;
    crate::output::write_bytes(&args.json, text.as_bytes())?;
    let g = &report.growth_per_1000_calls;
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:+.2}"));
    println!(
        "{}: {} calls, {} answers ({} fell back, {} non-finite), refusals {:?} (paused {:.1} s), \
         failures {:?}, p50 {} ms, p99 {} ms; growth per 1,000 calls: RSS {} KiB, threads {}, \
         fds {}",
        report.model,
        report.calls,
        report.answers,
        report.fallbacks,
        report.non_finite_answers,
        report.refusals,
        report.refusal_pause_s,
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
        assert!((plan.0[1].0 - 0.5).abs() < 1e-12, "probabilities are kept per fault");
    }

    #[test]
    fn refusals_pause_as_asked_and_failures_do_not() {
        use inference_api::Error;
        let open = |ms| Error::CircuitOpen { engine: "cpu".into(), retry_after_ms: ms };
        assert_eq!(refusal_pause(&open(2500)), Some(Duration::from_millis(2500)));
        assert_eq!(refusal_pause(&open(0)), Some(MIN_REFUSAL_PAUSE));
        let full = Error::Overloaded { model: "m".into(), capacity: 4 };
        assert_eq!(refusal_pause(&full), Some(MIN_REFUSAL_PAUSE));
        assert_eq!(refusal_pause(&Error::Runtime("boom".into())), None);
    }

    #[test]
    fn growth_is_the_slope_after_warm_up() {
        let sample = |calls: u64, rss: u64| Sample {
            t_s: 0.0,
            calls,
            answers: calls,
            refusals: 0,
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
