//! `infer run`: any model on named tensors from a safetensors file, outputs to another.

use std::path::PathBuf;

use anyhow::Result;

use crate::exit::{Exit, TagExit, fail};
use crate::json::human;
use crate::{common, finite, input_file, tensors_io};

/// Arguments of `infer run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model folder with a manifest.toml, or a .mlpackage / .mlmodel.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// The model as a positional argument (older form of --model).
    #[arg(hide = true, conflicts_with = "model")]
    model_positional: Option<PathBuf>,
    /// safetensors file holding the model's inputs by name (other tensors are ignored).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (safetensors; `-` for stdout, the summary then goes to
    /// stderr); without it only the summary is printed. A device or pipe is written in place, a
    /// regular file replaced atomically.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Serve only from this engine (`candle-cpu`, `coreml`).
    #[arg(long)]
    engine: Option<String>,
    /// CPU engine worker threads (at least 1; default: all cores).
    #[arg(long, value_parser = common::at_least_one)]
    threads: Option<usize>,
}

pub(crate) fn main(args: Args) -> Result<()> {
    let model_path =
        common::model_arg(args.model.as_deref(), args.model_positional.as_deref(), None)?;
    // A missing input file is reported before the model loads.
    if let Err(e) = std::fs::metadata(&args.input) {
        return Err(fail(
            Exit::BadInput,
            format!("input file {} cannot be read: {e}; check the path", args.input.display()),
        ));
    }
    let (_rt, model, bundle) =
        common::load(&model_path, args.threads, args.engine.as_deref()).exit(Exit::LoadFailed)?;
    // The header is checked against the schema before any tensor data is read.
    let (inputs, ignored) =
        input_file::read_inputs(&args.input, model.io_schema(), &bundle.manifest.name)
            .exit(Exit::BadInput)?;
    finite::check_inputs(&inputs, &args.input.display().to_string()).exit(Exit::BadInput)?;
    let (outputs, report) = model.run(inputs).exit(Exit::RunFailed)?;
    finite::check_outputs(&outputs, &bundle.manifest.name, &report.engine).exit(Exit::RunFailed)?;
    let described: Vec<String> =
        outputs.iter().map(|(n, t)| format!("{n} {}", tensors_io::describe(t))).collect();
    let dest = match &args.output {
        Some(p) => {
            tensors_io::write(p, &outputs)?;
            format!(" -> {}", p.display())
        }
        None => String::new(),
    };
    let note = match ignored.len() {
        0 => String::new(),
        1..=10 => format!(" (ignored {})", ignored.join(", ")),
        n => format!(" (ignored {n} other tensors: {}, ...)", ignored[..10].join(", ")),
    };
    let summary = format!(
        "{} on {} in {:.1} ms: {}{dest}{note}",
        bundle.manifest.name,
        report.engine,
        report.total.as_secs_f64() * 1e3,
        described.join(", ")
    );
    if args.output.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        eprintln!("{summary}");
    } else {
        human!("{summary}");
    }
    Ok(())
}
