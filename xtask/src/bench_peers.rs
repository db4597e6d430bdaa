//! `cargo xtask bench-peers`: our CPU engine (`infer bench --json`) and ONNX Runtime
//! (`benches/peers/ort_bench.py`) timed alternately on the same models, inputs and thread
//! counts, with the ratio table printed as Markdown: p50/p99 of both, ours/ORT, our achieved
//! GFLOP/s and its share of this CPU's FMA peak (measured first by the kernels' register-only
//! FMA loop, `cargo run -p kernels --example fma_peak`), peak RSS, and the load average at each
//! row. The shared fixtures' `.mlpackage` files run on our ML Program executor beside the native
//! models, against the same ONNX export. `--zoo DIR` adds every model of a zoo made by
//! `scripts/make_zoo.py` (timm architectures as `.mlpackage` + `.onnx` of the same weights).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workspace_root;

struct Case {
    label: String,
    /// `infer bench` model arguments.
    ours: Vec<String>,
    onnx: PathBuf,
    input: PathBuf,
}

fn cases(root: &Path) -> Vec<Case> {
    let fx = root.join("../shared/fixtures");
    let package = |label: &str, dir: &str, input: &str| Case {
        label: label.into(),
        ours: vec![
            "--model".into(),
            fx.join(format!("{dir}/{dir}.mlpackage")).display().to_string(),
        ],
        onnx: fx.join(format!("{dir}/{dir}.onnx")),
        input: fx.join(format!("{dir}/reference/{input}")),
    };
    vec![
        Case {
            label: "EfficientNet-Lite0 224".into(),
            ours: vec![
                "--model".into(),
                root.join("models/efficientnet-lite0").display().to_string(),
            ],
            onnx: fx.join("efficientnet_lite0/efficientnet_lite0.onnx"),
            input: fx.join("efficientnet_lite0/reference/noise.safetensors"),
        },
        Case {
            label: "FastViT-T8 256".into(),
            ours: vec![
                "--model".into(),
                fx.join("fastvit_t8/fastvit_t8.train_form.safetensors").display().to_string(),
                "--arch".into(),
                "fastvit-t8".into(),
            ],
            onnx: fx.join("fastvit_t8/fastvit_t8.onnx"),
            input: fx.join("fastvit_t8/reference/noise1.safetensors"),
        },
        package("EfficientNet-Lite0 224 (.mlpackage)", "efficientnet_lite0", "noise.safetensors"),
        package("FastViT-T8 256 (.mlpackage)", "fastvit_t8", "noise1.safetensors"),
    ]
}

/// The models listed in a zoo's `zoo.json` (written by `scripts/make_zoo.py`), each run from its
/// `.mlpackage` on our executor and from its `.onnx` on ONNX Runtime, with the PyTorch reference
/// input (so `infer bench` also reports parity against PyTorch's logits).
fn zoo_cases(dir: &Path) -> Result<Vec<Case>> {
    let index = dir.join("zoo.json");
    let text = std::fs::read_to_string(&index).with_context(|| {
        format!("reading {} (make the zoo with scripts/make_zoo.py --out DIR)", index.display())
    })?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
    let models =
        v.get("models").and_then(Value::as_array).context("zoo.json has no `models` list")?;
    let field = |m: &Value, key: &str| -> Result<PathBuf> {
        let rel = m
            .get(key)
            .and_then(Value::as_str)
            .with_context(|| format!("zoo entry lacks `{key}`: {m}"))?;
        Ok(dir.join(rel))
    };
    models
        .iter()
        .map(|m| {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("?");
            Ok(Case {
                label: format!("{name} (zoo .mlpackage)"),
                ours: vec!["--model".into(), field(m, "mlpackage")?.display().to_string()],
                onnx: field(m, "onnx")?,
                input: field(m, "reference")?,
            })
        })
        .collect()
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("`{key}` missing in {v}"))
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("parsing JSON from {cmd:?}: {text}"))
}

/// The 1-minute load average (`/proc/loadavg`), NaN where unavailable.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// This CPU's FMA peak in GFLOP/s on 1 and 2 threads, from the kernels' `fma_peak` example.
fn fma_peak(root: &Path) -> Result<(String, f64, f64)> {
    let mut c = Command::new("cargo");
    c.args(["run", "--release", "-q", "-p", "kernels", "--example", "fma_peak"]).current_dir(root);
    let v = run_json(&mut c)?;
    let isa = v.get("isa").and_then(Value::as_str).unwrap_or("?").to_string();
    Ok((isa, num(&v, "gflops_1t")?, num(&v, "gflops_2t")?))
}

/// The CPU's model name (`/proc/cpuinfo`).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// `cargo xtask bench-peers [--iters N] [--rounds N] [--threads 1,2] [--zoo DIR [--zoo-only]]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut zoo: Option<PathBuf> = None;
    let mut zoo_only = false;
    let mut iters = 100usize;
    let mut rounds = 3usize;
    let mut threads = vec![1usize, 2];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--iters" => iters = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--threads" => {
                threads = val()?.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--zoo" => zoo = Some(PathBuf::from(val()?)),
            "--zoo-only" => zoo_only = true,
            other => bail!(
                "unknown argument `{other}` (--iters N, --rounds N, --threads 1,2, --zoo DIR, --zoo-only)"
            ),
        }
    }
    let root = workspace_root();
    let status = Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "cli", "--bin", "infer"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building infer failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let infer = target.join("release/infer");
    let (isa, peak1, peak2) = fma_peak(&root)?;
    eprintln!("FMA peak ({isa}): {peak1:.1} GFLOP/s on 1 thread, {peak2:.1} on 2");
    let ort = root.join("benches/peers/ort_bench.py");
    let tmp = target.join("bench-peers.json");
    let mut rows = Vec::new();
    let mut all = if zoo_only { Vec::new() } else { cases(&root) };
    match (&zoo, zoo_only) {
        (Some(dir), _) => all.extend(zoo_cases(dir)?),
        (None, true) => bail!("--zoo-only needs --zoo DIR"),
        (None, false) => {}
    }
    for case in all {
        for &t in &threads {
            let (mut o50, mut o99, mut r50, mut r99, mut orss, mut rrss) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            let (mut gflop, mut loads) = (vec![], vec![]);
            for round in 0..rounds {
                eprintln!("{} {t}t round {}/{rounds}", case.label, round + 1);
                // Alternate which goes first so neither always gets the cooler machine.
                let mut ours = || -> Result<()> {
                    let mut c = Command::new(&infer);
                    c.arg("bench").args(&case.ours).args(["--threads", &t.to_string()]);
                    c.args(["--iters", &iters.to_string(), "--quiet", "--json"]).arg(&tmp);
                    c.arg("--reference").arg(&case.input);
                    let out = c.output()?;
                    if !out.status.success() {
                        bail!("infer bench failed: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    let v: Value = serde_json::from_str(&std::fs::read_to_string(&tmp)?)?;
                    o50.push(num(&v, "p50_ms")?);
                    o99.push(num(&v, "p99_ms")?);
                    orss.push(num(&v, "peak_rss_mb").unwrap_or(f64::NAN));
                    gflop.push(num(&v, "gflop_per_run").unwrap_or(f64::NAN));
                    loads.push(load_average());
                    Ok(())
                };
                let mut theirs = || -> Result<()> {
                    let mut c = Command::new("python3");
                    c.arg(&ort).arg(&case.onnx).args(["--threads", &t.to_string()]);
                    c.args(["--iters", &iters.to_string()]).arg("--input").arg(&case.input);
                    let v = run_json(&mut c)?;
                    r50.push(num(&v, "p50_ms")?);
                    r99.push(num(&v, "p99_ms")?);
                    rrss.push(num(&v, "peak_rss_mb").unwrap_or(f64::NAN));
                    Ok(())
                };
                if round % 2 == 0 {
                    ours()?;
                    theirs()?;
                } else {
                    theirs()?;
                    ours()?;
                }
            }
            let (a50, a99, b50, b99) =
                (median(&mut o50), median(&mut o99), median(&mut r50), median(&mut r99));
            let gf = median(&mut gflop);
            let rate = gf / (a50 / 1e3);
            let peak = if t >= 2 { peak2 } else { peak1 };
            let (lo, hi) = loads
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &l| (a.min(l), b.max(l)));
            rows.push(format!(
                "| {} | {t} | {a50:.2} | {a99:.2} | {b50:.2} | {b99:.2} | {:.2} | {gf:.3} | {rate:.0} | {:.0} % | {:.0} / {:.0} | {lo:.1}-{hi:.1} |",
                case.label,
                a50 / b50,
                100.0 * rate / peak,
                median(&mut orss),
                median(&mut rrss)
            ));
        }
    }
    println!(
        "CPU: {} ({isa}); FMA peak {peak1:.1} GFLOP/s (1 thread), {peak2:.1} (2 threads)\n",
        cpu_model()
    );
    println!(
        "| model | threads | ours p50 ms | ours p99 ms | ORT p50 ms | ORT p99 ms | ours/ORT p50 | GFLOP/run | ours GFLOP/s | of FMA peak | peak RSS MB ours / ORT | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\n(medians of {rounds} alternating rounds of {iters} timed runs each after 10 warm-up; \
         GFLOP/run = 2 x multiply-adds of convolutions and matmuls as counted by our kernels; \
         load avg = 1-minute load average after each of our runs, min-max)"
    );
    Ok(())
}
