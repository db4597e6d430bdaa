//! `infer run`: any model on named tensors from a safetensors file, outputs to another.

use std::path::PathBuf;

use anyhow::{Result, bail};
use inference_api::NamedTensors;

use crate::{common, tensors_io};

/// Arguments of `infer run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model folder with a manifest.toml, or a .mlpackage / .mlmodel.
    model: PathBuf,
    /// safetensors file holding the model's inputs by name (other tensors are ignored).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (safetensors); without it only the summary is printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Serve only from this engine (`candle-cpu`, `coreml`).
    #[arg(long)]
    engine: Option<String>,
    /// CPU engine worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub(crate) fn main(args: Args) -> Result<()> {
    let (_rt, model, bundle) = common::load(&args.model, args.threads, args.engine.as_deref())?;
    let mut file = tensors_io::read(&args.input)?;
    let schema = model.io_schema().clone();
    let mut inputs = NamedTensors::new();
    for spec in &schema.inputs {
        match file.remove(&spec.name) {
            Some(t) => inputs.insert(spec.name.clone(), t),
            None => {
                let have: Vec<&str> = file.names().collect();
                bail!(
                    "{} has no tensor `{}` ({} {}), which {} needs; it has {have:?}",
                    args.input.display(),
                    spec.name,
                    spec.dtype,
                    spec.shape_string(),
                    bundle.manifest.name
                );
            }
        }
    }
    let ignored: Vec<&str> = file.names().collect();
    let (outputs, report) = model.run(inputs)?;
    let described: Vec<String> =
        outputs.iter().map(|(n, t)| format!("{n} {}", tensors_io::describe(t))).collect();
    let dest = match &args.output {
        Some(p) => {
            tensors_io::write(p, &outputs)?;
            format!(" -> {}", p.display())
        }
        None => String::new(),
    };
    let note = if ignored.is_empty() {
        String::new()
    } else {
        format!(" (ignored {})", ignored.join(", "))
    };
    println!(
        "{} on {} in {:.1} ms: {}{dest}{note}",
        bundle.manifest.name,
        report.engine,
        report.total.as_secs_f64() * 1e3,
        described.join(", ")
    );
    Ok(())
}
