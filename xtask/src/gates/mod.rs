//! `cargo xtask gates`: the seed's Core ML figures, measured (Neural Engine speedup and share,
//! p99, memory growth per 1,000 predictions, parity L-inf against the CPU engine), the device
//! matrix (compute units x model x fp16/fp32), compile+load cycles and an optional soak,
//! written to `gates.json` and `gates.md`. On a Mac it builds the bridge first; elsewhere it
//! runs every row it can (CPU engine, ML Program executor, the fake bridge when built, as a
//! check of the harness only) and marks the Core ML rows "needs a Mac".

mod measure;
mod report;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backend_coreml::{CoreMlConfig, CoreMlEngine};
use inference_api::{
    ComputeUnits, Engine, ModelArtifact, NamedTensors, PrepareOptions, PreparedModel,
};
use serde::Serialize;

use measure::{Timing, inputs_for, linf, rss_kib, time_runs};

const USAGE: &str = "usage: cargo xtask gates [--quick] [--soak DURATION] [--iters N] [--warmup N]
                         [--cycles N] [--model PKG]... [--fixtures DIR] [--bridge LIB] [--out DIR]

Measures the Core ML figures and the device matrix into DIR/gates.json and DIR/gates.md
(default DIR: target/gates). On macOS it first builds the bridge (cargo xtask build-bridge)
unless --bridge names one. --quick: 20 timed runs, 3 warm-up, 20 compile+load cycles
(default 200, 10, 10000). --soak 1h (also 30m, 90s, 500ms): predictions for that long.
Models: the fixture packages (efficientnet_lite0, fastvit_t8) in --fixtures (default
../shared/fixtures); an fp32 variant is <stem>_fp32.mlpackage beside the package.";

/// What one invocation does.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) iters: usize,
    pub(crate) warmup: usize,
    pub(crate) cycles: usize,
    pub(crate) soak: Option<Duration>,
    pub(crate) out: PathBuf,
    pub(crate) bridge: Option<PathBuf>,
    pub(crate) models: Vec<PathBuf>,
    pub(crate) fixtures: PathBuf,
    /// Use the fake bridge for harness rows when it was built (Linux).
    pub(crate) fake_rows: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let root = crate::workspace_root();
        let mut o = Options {
            iters: 200,
            warmup: 10,
            cycles: 10_000,
            soak: None,
            out: root.join("target").join("gates"),
            bridge: None,
            models: Vec::new(),
            fixtures: root.join("..").join("shared").join("fixtures"),
            fake_rows: true,
        };
        let mut it = args.iter();
        let num = |v: Option<&String>, flag: &str| -> Result<usize> {
            v.with_context(|| format!("{flag} needs a number"))?
                .parse()
                .with_context(|| format!("{flag} needs a whole number"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => (o.iters, o.warmup, o.cycles) = (20, 3, 20),
                "--iters" => o.iters = num(it.next(), "--iters")?,
                "--warmup" => o.warmup = num(it.next(), "--warmup")?,
                "--cycles" => o.cycles = num(it.next(), "--cycles")?,
                "--soak" => {
                    o.soak = Some(parse_duration(it.next().context("--soak needs a duration")?)?)
                }
                "--out" => o.out = PathBuf::from(it.next().context("--out needs a folder")?),
                "--bridge" => {
                    o.bridge = Some(PathBuf::from(it.next().context("--bridge needs a path")?))
                }
                "--model" => {
                    o.models.push(PathBuf::from(it.next().context("--model needs a path")?))
                }
                "--fixtures" => {
                    o.fixtures = PathBuf::from(it.next().context("--fixtures needs a folder")?)
                }
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown argument `{other}`\n\n{USAGE}"),
            }
        }
        if o.iters == 0 {
            bail!("--iters must be at least 1");
        }
        Ok(o)
    }
}

/// `1h`, `30m`, `90s`, `500ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 =
        n.parse().with_context(|| format!("`{text}` is not a duration like 1h, 30m, 90s"))?;
    Ok(match unit {
        "h" => Duration::from_secs(n * 3600),
        "m" | "min" => Duration::from_secs(n * 60),
        "s" | "" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        _ => bail!("`{text}`: unknown unit `{unit}` (h, m, s, ms)"),
    })
}

/// One row of the device matrix.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) engine: String,
    pub(crate) model: String,
    pub(crate) precision: String,
    pub(crate) compute_units: String,
    /// `measured`, `measured on the fake bridge (harness check, not Core ML)`, `needs a Mac`,
    /// `skipped: ...` or `error: ...`.
    pub(crate) status: String,
    pub(crate) timing: Option<Timing>,
    /// Cost-weighted share of the compute plan on the Neural Engine; None without a plan.
    pub(crate) neural_engine_share: Option<f64>,
    pub(crate) planned: Vec<(String, f64)>,
    pub(crate) parity_linf: Option<f64>,
    pub(crate) parity_against: Option<String>,
}

impl Row {
    fn new(
        engine: &str,
        model: &str,
        precision: &str,
        units: &str,
        status: impl Into<String>,
    ) -> Row {
        Row {
            engine: engine.into(),
            model: model.into(),
            precision: precision.into(),
            compute_units: units.into(),
            status: status.into(),
            timing: None,
            neural_engine_share: None,
            planned: Vec::new(),
            parity_linf: None,
            parity_against: None,
        }
    }
}

/// Compile+load (or prepare) cycles with the process's memory before and after.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cycles {
    pub(crate) engine: String,
    pub(crate) model: String,
    pub(crate) status: String,
    pub(crate) cycles: usize,
    pub(crate) seconds: f64,
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
}

/// A long run of predictions.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Soak {
    pub(crate) engine: String,
    pub(crate) model: String,
    pub(crate) seconds: f64,
    pub(crate) timing: Timing,
}

/// A model package and its precision variants.
struct Package {
    name: String,
    variants: Vec<(String, Option<PathBuf>)>,
    fixture: Option<PathBuf>,
}

fn packages(o: &Options) -> Vec<Package> {
    let paths: Vec<PathBuf> = if o.models.is_empty() {
        ["efficientnet_lite0", "fastvit_t8"]
            .iter()
            .map(|n| o.fixtures.join(n).join(format!("{n}.mlpackage")))
            .collect()
    } else {
        o.models.clone()
    };
    paths
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let fp32 = p.with_file_name(format!("{stem}_fp32.mlpackage"));
            let fixture = p.parent().map(|d| d.join("reference")).and_then(|d| noise_file(&d));
            Package {
                name: stem,
                variants: vec![
                    ("fp16".into(), Some(p.clone()).filter(|p| p.exists())),
                    ("fp32".into(), Some(fp32).filter(|p| p.exists())),
                ],
                fixture,
            }
        })
        .collect()
}

fn noise_file(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("noise")))
        .collect();
    files.sort();
    files.into_iter().next()
}

const UNITS: [ComputeUnits; 4] = [
    ComputeUnits::All,
    ComputeUnits::CpuOnly,
    ComputeUnits::CpuAndGpu,
    ComputeUnits::CpuAndNeuralEngine,
];

fn coreml_engine(bridge: &Path, cache: PathBuf) -> CoreMlEngine {
    CoreMlEngine::with_config(CoreMlConfig {
        bridge: coreml_sys::SearchPolicy::Explicit(bridge.to_path_buf()),
        cache_dir: Some(cache),
        ..CoreMlConfig::default()
    })
}

/// Times one prepared model and fills a row; `reference` is compared output by output.
fn measure_row(
    row: &mut Row,
    model: &dyn PreparedModel,
    fixture: Option<&Path>,
    reference: Option<(&NamedTensors, &str)>,
    o: &Options,
) -> Result<NamedTensors> {
    let inputs = inputs_for(model, fixture)?;
    let (timing, out) = time_runs(model, &inputs, o.warmup, o.iters)?;
    row.timing = Some(timing);
    let placement = model.placement();
    if !placement.planned.is_empty() {
        let ne = placement.planned.iter().find(|(d, _)| d == "neural_engine").map(|p| p.1);
        row.neural_engine_share = Some(ne.unwrap_or(0.0));
    }
    row.planned = placement.planned;
    if let Some((want, label)) = reference {
        let pairs = out.iter().filter_map(|(n, t)| want.get(n).and_then(|w| linf(t, w)));
        row.parity_linf = pairs.fold(None, |acc: Option<f64>, d| Some(acc.map_or(d, |a| a.max(d))));
        if row.parity_linf.is_some() {
            row.parity_against = Some(label.to_string());
        }
    }
    Ok(out)
}

fn error_row(mut row: Row, e: &anyhow::Error) -> Row {
    row.status = format!("error: {}", format!("{e:#}").replace('\n', " "));
    row
}

/// Everything one run found.
#[derive(Debug, Serialize)]
pub(crate) struct Gates {
    pub(crate) platform: String,
    pub(crate) core_ml: String,
    pub(crate) iters: usize,
    pub(crate) warmup: usize,
    pub(crate) figures: Vec<report::Figure>,
    pub(crate) fake_bridge_figures: Vec<report::Figure>,
    pub(crate) matrix: Vec<Row>,
    pub(crate) cycles: Vec<Cycles>,
    pub(crate) soak: Option<Soak>,
}

/// Runs the whole harness and returns what it found (also written to `o.out`).
pub(crate) fn gather(o: &Options) -> Result<Gates> {
    let mac = cfg!(target_os = "macos");
    let bridge = match (&o.bridge, mac) {
        (Some(b), _) => Some(b.clone()),
        (None, true) => {
            crate::build_bridge::run(&[]).context("building the Core ML bridge")?;
            Some(crate::workspace_root().join("target/coreml-bridge/libCoreMLBridge.dylib"))
        }
        (None, false) => None,
    };
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let cache = o.out.join("coreml-cache");
    let cpu = backend_candle::CandleEngine::new();
    let coreml = bridge.as_ref().map(|b| coreml_engine(b, cache.clone()));
    let core_ml = match (&coreml, mac) {
        (Some(e), true) => match e.probe().reason {
            None => "available".to_string(),
            Some(why) => format!("unavailable: {why}"),
        },
        (Some(_), false) => {
            "needs a Mac (a non-Apple bridge was given: its rows are a harness check)".into()
        }
        (None, _) => "needs a Mac".into(),
    };
    let real = coreml.as_ref().filter(|e| mac && e.probe().available);
    let mut matrix = Vec::new();
    let mut cpu_outputs: Vec<(String, String, NamedTensors)> = Vec::new();

    // Bundled model folders: the CPU engine's native models.
    let models_dir = crate::workspace_root().join("models");
    for dir in std::fs::read_dir(&models_dir).into_iter().flatten().flatten() {
        let path = dir.path();
        if !path.join("manifest.toml").is_file() {
            continue;
        }
        let name = dir.file_name().to_string_lossy().into_owned();
        let mut row = Row::new("candle-cpu", &name, "fp32", "cpu", "measured");
        let result = (|| -> Result<()> {
            let bundle = model_manifest::ModelBundle::load(&path)?;
            let model = cpu.prepare(&bundle.artifact, &PrepareOptions::default())?;
            let stem = name.replace('-', "_");
            let fixture = noise_file(&o.fixtures.join(&stem).join("reference"));
            let want = fixture.as_deref().map(measure::read_safetensors).transpose()?;
            let label = "PyTorch fp32 logits (fixture)";
            measure_row(
                &mut row,
                model.as_ref(),
                fixture.as_deref(),
                want.as_ref().map(|w| (w, label)),
                o,
            )?;
            Ok(())
        })();
        matrix.push(match result {
            Ok(()) => row,
            Err(e) if format!("{e:#}").contains("weights") => {
                Row { status: format!("skipped: {e:#}"), ..row }
            }
            Err(e) => error_row(row, &e),
        });
    }

    for pkg in packages(o) {
        for (precision, path) in &pkg.variants {
            let Some(path) = path else {
                let why = if precision == "fp32" {
                    format!(
                        "skipped: no {}_fp32.mlpackage beside the package (coremltools \
                             compute_precision=FLOAT32 makes one)",
                        pkg.name
                    )
                } else {
                    "skipped: package not found".to_string()
                };
                matrix.push(Row::new("candle-cpu", &pkg.name, precision, "cpu", why.clone()));
                matrix.push(Row::new("coreml", &pkg.name, precision, "*", why));
                continue;
            };
            let artifact = ModelArtifact::from_path(path)?;
            // The ML Program executor: the CPU reference for Core ML's parity.
            let mut row = Row::new("candle-cpu", &pkg.name, precision, "cpu", "measured");
            let want = pkg.fixture.as_deref().map(measure::read_safetensors).transpose()?;
            let label = "PyTorch fp32 logits (fixture)";
            let cpu_out = cpu
                .prepare(&artifact, &PrepareOptions::default())
                .map_err(anyhow::Error::from)
                .and_then(|m| {
                    measure_row(
                        &mut row,
                        m.as_ref(),
                        pkg.fixture.as_deref(),
                        want.as_ref().map(|w| (w, label)),
                        o,
                    )
                });
            match cpu_out {
                Ok(out) => {
                    cpu_outputs.push((pkg.name.clone(), precision.clone(), out));
                    matrix.push(row);
                }
                Err(e) => matrix.push(error_row(row, &e)),
            }
            let reference = cpu_outputs
                .iter()
                .find(|(n, p, _)| *n == pkg.name && p == precision)
                .map(|(_, _, out)| out);
            for units in UNITS {
                let mut row = Row::new("coreml", &pkg.name, precision, units.as_str(), "measured");
                let Some(engine) = real else {
                    row.status = core_ml.clone();
                    matrix.push(row);
                    continue;
                };
                let options = PrepareOptions::new().with_compute_units(units);
                let result = engine
                    .prepare(&artifact, &options)
                    .map_err(anyhow::Error::from)
                    .and_then(|m| {
                        let r = reference.map(|r| (r, "CPU engine (ML Program executor)"));
                        measure_row(&mut row, m.as_ref(), pkg.fixture.as_deref(), r, o)
                    });
                matrix.push(match result {
                    Ok(_) => row,
                    Err(e) => error_row(row, &e),
                });
            }
        }
    }
    let first = packages(o).into_iter().next().map(|p| p.name).unwrap_or_default();
    let figures = report::figures(&matrix, "coreml", &first, "fp16", real.is_some(), &core_ml);

    // Compile+load cycles: Core ML (fresh cache each cycle, so each one compiles) and the CPU
    // engine's ML Program executor (prepare + drop).
    let mut cycles = Vec::new();
    let first_pkg = packages(o).into_iter().next();
    if let Some((pkg, Some(path))) = first_pkg.as_ref().map(|p| (p, p.variants[0].1.clone())) {
        let artifact = ModelArtifact::from_path(&path)?;
        cycles.push(run_cycles("candle-cpu", &pkg.name, o.cycles, || {
            drop(cpu.prepare(&artifact, &PrepareOptions::default())?);
            Ok(())
        }));
        match real {
            Some(engine) => cycles.push(run_cycles("coreml", &pkg.name, o.cycles, || {
                let _ = std::fs::remove_dir_all(&cache);
                let fresh =
                    coreml_engine(bridge.as_deref().unwrap_or(Path::new("")), cache.clone());
                drop(fresh.prepare(&artifact, &PrepareOptions::default())?);
                let _ = engine;
                Ok(())
            })),
            None => cycles.push(Cycles {
                engine: "coreml".into(),
                model: pkg.name.clone(),
                status: core_ml.clone(),
                cycles: 0,
                seconds: 0.0,
                rss_before_kib: None,
                rss_after_kib: None,
            }),
        }
    }

    // The harness itself, on the fake bridge (Linux test support): the same rows and figures.
    let mut fake_bridge_figures = Vec::new();
    if !mac
        && o.fake_rows
        && let Some(lib) = bridge.clone().or_else(backend_coreml::test_support::fake_bridge_library)
    {
        let fake = coreml_engine(&lib, o.out.join("fake-cache"));
        let dir = o.out.join("fake-models");
        let model = dir.join("gates_plan.mlpackage");
        std::fs::create_dir_all(&model)?;
        std::fs::write(model.join("Manifest.json"), b"{}")?;
        let artifact = ModelArtifact::from_path(&model)?;
        const FAKE: &str = "measured on the fake bridge (harness check, not Core ML)";
        for units in UNITS {
            let mut row =
                Row::new("coreml-fake-bridge", "gates_plan", "fp16", units.as_str(), FAKE);
            let options = PrepareOptions::new().with_compute_units(units);
            let result =
                fake.prepare(&artifact, &options).map_err(anyhow::Error::from).and_then(|m| {
                    let inputs = inputs_for(m.as_ref(), None)?;
                    let want = m.run(&inputs, &inference_api::RunContext::new())?;
                    measure_row(
                        &mut row,
                        m.as_ref(),
                        None,
                        Some((&want, "itself (harness check)")),
                        o,
                    )
                });
            matrix.push(match result {
                Ok(_) => row,
                Err(e) => error_row(row, &e),
            });
        }
        fake_bridge_figures =
            report::figures(&matrix, "coreml-fake-bridge", "gates_plan", "fp16", true, FAKE);
        cycles.push(run_cycles("coreml-fake-bridge", "gates_plan", o.cycles, || {
            let _ = std::fs::remove_dir_all(o.out.join("fake-cache"));
            let fresh = coreml_engine(&lib, o.out.join("fake-cache"));
            drop(fresh.prepare(&artifact, &PrepareOptions::default())?);
            Ok(())
        }));
    }

    let soak = match o.soak {
        None => None,
        Some(d) => Some(soak(o, d, real, &cpu)?),
    };
    Ok(Gates {
        platform: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        core_ml,
        iters: o.iters,
        warmup: o.warmup,
        figures,
        fake_bridge_figures,
        matrix,
        cycles,
        soak,
    })
}

fn run_cycles(engine: &str, model: &str, n: usize, mut once: impl FnMut() -> Result<()>) -> Cycles {
    let mut c = Cycles {
        engine: engine.into(),
        model: model.into(),
        status: "measured".into(),
        cycles: 0,
        seconds: 0.0,
        rss_before_kib: None,
        rss_after_kib: None,
    };
    // One cycle first, so one-time allocations do not count as growth.
    if let Err(e) = once() {
        c.status = format!("error: {e:#}");
        return c;
    }
    c.rss_before_kib = rss_kib();
    let t = Instant::now();
    for _ in 0..n {
        if let Err(e) = once() {
            c.status = format!("error after {} cycles: {e:#}", c.cycles);
            break;
        }
        c.cycles += 1;
    }
    c.seconds = t.elapsed().as_secs_f64();
    c.rss_after_kib = rss_kib();
    c
}

/// Predictions for `d` on Core ML (All) when it is available, else the CPU engine.
fn soak(o: &Options, d: Duration, real: Option<&CoreMlEngine>, cpu: &dyn Engine) -> Result<Soak> {
    let pkg = packages(o).into_iter().next().context("no model to soak")?;
    let path = pkg.variants[0].1.clone().context("the first package is missing")?;
    let artifact = ModelArtifact::from_path(&path)?;
    let (engine, model): (&str, Arc<dyn PreparedModel>) = match real {
        Some(e) => ("coreml", e.prepare(&artifact, &PrepareOptions::default())?),
        None => ("candle-cpu", cpu.prepare(&artifact, &PrepareOptions::default())?),
    };
    let inputs = inputs_for(model.as_ref(), pkg.fixture.as_deref())?;
    // Calibrate the number of runs to the duration from the first few.
    let t = Instant::now();
    let probe = 2;
    time_runs(model.as_ref(), &inputs, 0, probe)?;
    let per = t.elapsed().as_secs_f64() / (probe + 1) as f64;
    let iters = ((d.as_secs_f64() / per.max(1e-6)) as usize).max(1);
    let t = Instant::now();
    let (timing, _) = time_runs(model.as_ref(), &inputs, 0, iters)?;
    Ok(Soak { engine: engine.into(), model: pkg.name, seconds: t.elapsed().as_secs_f64(), timing })
}

/// `cargo xtask gates ARGS`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let gates = gather(&o)?;
    let json = o.out.join("gates.json");
    let md = o.out.join("gates.md");
    std::fs::write(&json, serde_json::to_string_pretty(&gates)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let table = report::markdown(&gates);
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    print!("{table}");
    println!("\nwrote {} and {}", json.display(), md.display());
    let errors: Vec<&Row> = gates.matrix.iter().filter(|r| r.status.starts_with("error")).collect();
    if !errors.is_empty() || gates.cycles.iter().any(|c| c.status.starts_with("error")) {
        bail!("{} matrix rows failed (see the table)", errors.len());
    }
    Ok(())
}
