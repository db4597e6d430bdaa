//! `infer`: classify photos, run models on tensors, inspect and diagnose, from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod classify;
mod common;
mod doctor;
mod exit;
mod finite;
mod image_input;
mod input_file;
mod inspect;
mod inspect_nn;
mod json;
mod manifest_init;
mod output;
mod package;
mod parity;
mod run;
mod serve;
mod soak;
mod tensors_io;

/// On-device inference: Core ML on a Mac, a fast CPU engine everywhere.
#[derive(Debug, Parser)]
#[command(name = "infer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify photos (with no arguments: the bundled sample photos with the bundled model).
    Classify(classify::Args),
    /// Run a model on named tensors from a safetensors file and write the outputs.
    Run(run::Args),
    /// Time single-image runs: latency percentiles, throughput, memory, parity.
    Bench(bench::Args),
    /// What each engine can do here and why not: Core ML bridge, CPU features, compile cache.
    Doctor(doctor::Args),
    /// Inputs, outputs, ops and weights of a model folder, .safetensors, .mlpackage or .mlmodel.
    Inspect(inspect::Args),
    /// Run two models on the same seeded random inputs and print the drift table.
    Parity(parity::Args),
    /// Call a model through the runtime for a while (optionally with injected faults) and
    /// record answers, errors, latency, RSS, threads and file descriptors over time.
    Soak(soak::Args),
    /// Serve a model repository over HTTP: KServe v2 REST (JSON and binary tensors), /metrics.
    Serve(serve::Args),
    /// Write model manifests (`infer manifest init MODEL`).
    Manifest(manifest_init::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => classify::main(a),
        Command::Run(a) => run::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Doctor(a) => doctor::main(a),
        Command::Inspect(a) => inspect::main(a),
        Command::Parity(a) => parity::main(a),
        Command::Soak(a) => soak::main(a),
        Command::Serve(a) => serve::main(a),
        Command::Manifest(a) => manifest_init::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`infer ... | head`): nothing left to say.
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", common::one_line(&e));
            exit::classify(&e).code()
        }
    }
}

/// Where the bundled models live: `./models` when run from the repository, else the copy
/// beside the sources this binary was built from.
pub(crate) fn models_dir() -> PathBuf {
    let here = PathBuf::from("models");
    if here.join("efficientnet-lite0/manifest.toml").exists() {
        return here;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
}
