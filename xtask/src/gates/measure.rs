//! What `cargo xtask gates` measures in-process, through the engines' own API: latency
//! percentiles and memory growth of repeated predictions, the L-inf distance between outputs,
//! process RSS, and inputs built from a model's schema or a fixture file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use inference_api::{DType, Dim, NamedTensors, PreparedModel, Tensor};
use serde::Serialize;

/// Latency and memory of `iters` predictions after `warmup` untimed ones.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Timing {
    /// Timed predictions.
    pub(crate) runs: usize,
    /// Median latency, ms.
    pub(crate) p50_ms: f64,
    /// 99th-percentile latency (nearest rank), ms.
    pub(crate) p99_ms: f64,
    /// RSS growth over the timed runs, scaled to 1,000 predictions, KiB; None when RSS cannot
    /// be read here.
    pub(crate) mem_growth_kib_per_1000: Option<f64>,
}

/// Nearest-rank percentile of sorted durations, in ms.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Resident set size of this process in KiB: `/proc/self/status` on Linux, `ps` elsewhere.
pub(crate) fn rss_kib() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        return s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok());
    }
    let out = std::process::Command::new("ps")
        .args(["-o", "rss=", "-p", &std::process::id().to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Runs `model` `warmup` + `iters` times on `inputs`; returns the timing and the last outputs.
pub(crate) fn time_runs(
    model: &dyn PreparedModel,
    inputs: &NamedTensors,
    warmup: usize,
    iters: usize,
) -> Result<(Timing, NamedTensors)> {
    let mut last = model.run(inputs, &inference_api::RunContext::new())?;
    for _ in 0..warmup {
        last = model.run(inputs, &inference_api::RunContext::new())?;
    }
    let before = rss_kib();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        last = model.run(inputs, &inference_api::RunContext::new())?;
        times.push(t.elapsed());
    }
    let after = rss_kib();
    times.sort();
    let growth = before
        .zip(after)
        .filter(|_| iters > 0)
        .map(|(b, a)| (a as f64 - b as f64) * 1000.0 / iters as f64);
    let timing = Timing {
        runs: iters,
        p50_ms: percentile_ms(&times, 0.50),
        p99_ms: percentile_ms(&times, 0.99),
        mem_growth_kib_per_1000: growth,
    };
    Ok((timing, last))
}

/// Largest absolute difference between two outputs of the same name, as f32; None when they
/// differ in length (different models).
pub(crate) fn linf(a: &Tensor, b: &Tensor) -> Option<f64> {
    let (a, b) = (a.to_f32_vec(), b.to_f32_vec());
    (a.len() == b.len() && !a.is_empty())
        .then(|| a.iter().zip(&b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max))
}

/// Deterministic values in [-1, 1) (xorshift), so every engine gets the same input.
fn seeded(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Inputs for `model`: a fixture tensor of the same name, dtype and shape when `fixture`
/// holds one, else seeded values (f32) or zeros of the schema's shape (default size for
/// flexible dimensions).
pub(crate) fn inputs_for(
    model: &dyn PreparedModel,
    fixture: Option<&Path>,
) -> Result<NamedTensors> {
    let mut from_file = match fixture {
        Some(p) => read_safetensors(p)?,
        None => NamedTensors::new(),
    };
    let mut out = NamedTensors::new();
    for (k, spec) in model.io_schema().inputs.iter().enumerate() {
        if let Some(t) = from_file.remove(&spec.name)
            && spec.check(&t).is_ok()
        {
            out.insert(spec.name.clone(), t);
            continue;
        }
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|d| match *d {
                Dim::Fixed(n) => n,
                Dim::Range { min, .. } => min.max(1),
            })
            .collect();
        let n = shape.iter().product();
        let t = match spec.dtype {
            DType::F32 => Tensor::from_f32(shape, seeded(k as u64, n))?,
            other => Tensor::zeros(shape, other)?,
        };
        out.insert(spec.name.clone(), t);
    }
    Ok(out)
}

/// Every f32 tensor of a safetensors file.
pub(crate) fn read_safetensors(path: &Path) -> Result<NamedTensors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = NamedTensors::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, Tensor::from_f32(view.shape().to_vec(), values)?);
    }
    Ok(out)
}
