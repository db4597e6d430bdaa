//! `infer parity MODEL_A MODEL_B`: both models on the same seeded random inputs, a table of
//! drift per input (max abs, max rel, rmse, cosine, top-1 / top-5 agreement), and a non-zero
//! exit when the tolerance is exceeded.
//!
//! Tolerance: the precision is fp16 when either model is a Core ML package (its weights are
//! fp16) and fp32 otherwise; the bound is the named entry of `inference_api::tolerance`, with
//! the absolute bound taken from MODEL_A's manifest `[parity]` when it is a model folder.
//! `--tolerance NAME` picks a table entry instead.

use std::path::PathBuf;

use anyhow::{Result, bail};
use inference_api::{ArtifactFormat, DType, Drift, NamedTensors, Tensor, Tolerance, tolerance};
use model_manifest::ModelBundle;

use crate::common;
use crate::exit::{Exit, TagExit, fail};
use crate::json::human;

/// Arguments of `infer parity`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The reference model: a model folder, a .mlpackage or a .mlmodel.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// The model compared with it, taking the same inputs.
    #[arg(long, value_name = "MODEL")]
    against: Option<PathBuf>,
    /// The two models as positional arguments (older form of --model A --against B).
    #[arg(hide = true, num_args = 0..=2, conflicts_with_all = ["model", "against"])]
    positional: Vec<PathBuf>,
    /// Number of random inputs.
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Seed of the first input; input i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU engine worker threads (at least 1; default: all cores).
    #[arg(long, value_parser = common::at_least_one)]
    threads: Option<usize>,
    /// Use this entry of the tolerance table (`exact`, `fp32`, `fp16`, `int8`) instead of the
    /// one chosen from the models.
    #[arg(long)]
    tolerance: Option<String>,
}

/// Standard-normal-ish values (Irwin-Hall of 4 uniforms) from a xorshift seeded with `seed`.
pub(crate) fn seeded_values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| (0..4).map(|_| next()).sum::<f32>() * 1.732 - 3.464).collect()
}

fn is_package(b: &ModelBundle) -> bool {
    matches!(b.artifact.format, ArtifactFormat::MlPackage | ArtifactFormat::MlModel)
}

fn tolerance_for(a: &ModelBundle, b: &ModelBundle, a_is_folder: bool) -> Tolerance {
    let fp16 = is_package(a) || is_package(b);
    let mut tol = if fp16 { tolerance::FP16 } else { tolerance::FP32 };
    if a_is_folder {
        let p = a.manifest.parity;
        tol.max_abs = if fp16 { p.fp16_max_abs } else { p.fp32_max_abs };
    }
    tol
}

pub(crate) fn main(args: Args) -> Result<()> {
    let (model_a, model_b) = match (&args.model, &args.against, args.positional.as_slice()) {
        (Some(a), Some(b), _) => (a.clone(), b.clone()),
        (None, None, [a, b]) => (a.clone(), b.clone()),
        _ => return Err(fail(Exit::Usage, "name both models: --model A --against B")),
    };
    let (_rt_a, a, bundle_a) = common::load(&model_a, args.threads, None).exit(Exit::LoadFailed)?;
    let (_rt_b, b, bundle_b) = common::load(&model_b, args.threads, None).exit(Exit::LoadFailed)?;
    let (sa, sb) = (a.io_schema().clone(), b.io_schema().clone());
    for spec in &sa.inputs {
        match sb.input(&spec.name) {
            Some(other) if other.shape == spec.shape && other.dtype == spec.dtype => {}
            _ => bail!(
                "{} and {} take different inputs: `{}` {} {} is not an input of both",
                bundle_a.manifest.name,
                bundle_b.manifest.name,
                spec.name,
                spec.dtype,
                spec.shape_string()
            ),
        }
        if spec.dtype != DType::F32 || spec.fixed_shape().is_none() {
            bail!("input `{}` is not a fixed-shape f32 tensor; parity needs one", spec.name);
        }
    }
    let tol = match args.tolerance.as_deref() {
        None => tolerance_for(&bundle_a, &bundle_b, !common_is_package(&model_a)),
        Some("exact") => tolerance::EXACT,
        Some("fp32") => tolerance::FP32,
        Some("fp16") => tolerance::FP16,
        Some("int8") => tolerance::INT8,
        Some(other) => {
            return Err(fail(
                Exit::Usage,
                format!("unknown tolerance `{other}`: exact, fp32, fp16 or int8"),
            ));
        }
    };
    human!(
        "parity {} ({}) vs {} ({}), {} inputs from seed {}, tolerance {} (max abs {:.1e} or {:.1e} \
         of the peak)",
        bundle_a.manifest.name,
        common::load_line(&a),
        bundle_b.manifest.name,
        common::load_line(&b),
        args.n,
        args.seed,
        tol.name,
        tol.max_abs,
        tol.max_rel_to_peak
    );
    human!(
        "{:>4} {:>20} {:<10} {:>10} {:>10} {:>10} {:>10} {:>5} {:>5}",
        "#",
        "seed",
        "output",
        "max_abs",
        "max_rel",
        "rmse",
        "cosine",
        "top1",
        "top5"
    );
    let mut worst = Drift { cosine: 1.0, ..Drift::default() };
    let (mut failed, mut top1_agree, mut total) = (0usize, 0usize, 0usize);
    for i in 0..args.n {
        let seed = args.seed.wrapping_add(i as u64);
        let mut inputs = NamedTensors::new();
        for (k, spec) in sa.inputs.iter().enumerate() {
            let shape = spec.fixed_shape().unwrap_or_default();
            let n = shape.iter().product();
            let values = seeded_values(seed.wrapping_add((k as u64) << 32), n);
            inputs.insert(spec.name.clone(), Tensor::from_f32(shape, values)?);
        }
        let (out_a, _) = a.run(inputs.clone()).exit(Exit::RunFailed)?;
        let (out_b, _) = b.run(inputs).exit(Exit::RunFailed)?;
        for (name, ta) in out_a.iter() {
            let Some(tb) = out_b.get(name) else { continue };
            let d = Drift::between(&tb.to_f32_vec(), &ta.to_f32_vec());
            let ok = d.within(&tol);
            failed += usize::from(!ok);
            top1_agree += usize::from(d.top1_agree);
            total += 1;
            human!(
                "{i:>4} {seed:>20} {name:<10} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.7} {:>5} {:>5.2}{}",
                d.max_abs,
                d.max_rel,
                d.rmse,
                d.cosine,
                if d.top1_agree { "yes" } else { "no" },
                d.top5_overlap,
                if ok { "" } else { "  EXCEEDED" }
            );
            worst.max_abs = worst.max_abs.max(d.max_abs);
            worst.max_rel = worst.max_rel.max(d.max_rel);
            worst.max_rel_to_peak = worst.max_rel_to_peak.max(d.max_rel_to_peak);
            worst.rmse = worst.rmse.max(d.rmse);
            worst.cosine = worst.cosine.min(d.cosine);
            worst.top5_overlap =
                if total == 1 { d.top5_overlap } else { worst.top5_overlap.min(d.top5_overlap) };
        }
    }
    human!(
        "worst: max_abs {:.3e} max_rel_to_peak {:.3e} max_rel {:.3e} rmse {:.3e} cosine {:.7}; \
         top-1 agreed {top1_agree}/{total}, min top-5 overlap {:.2}",
        worst.max_abs,
        worst.max_rel_to_peak,
        worst.max_rel,
        worst.rmse,
        worst.cosine,
        worst.top5_overlap
    );
    if total == 0 {
        bail!("the models share no output name: nothing to compare");
    }
    if failed > 0 {
        return Err(fail(
            Exit::ParityExceeded,
            format!("{failed} of {total} comparisons exceeded the {} tolerance", tol.name),
        ));
    }
    human!("ok: every comparison within the {} tolerance", tol.name);
    Ok(())
}

fn common_is_package(p: &std::path::Path) -> bool {
    crate::package::is_package(p)
}
