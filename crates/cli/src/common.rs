//! What the subcommands share: the engine list, loading a model through the runtime, and
//! error text for humans.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use inference_api::Engine;
use model_manifest::ModelBundle;
use runtime::{LoadedModel, Routing, Runtime};

/// Engines in preference order: Core ML (when its bridge is found), then the CPU engine.
pub(crate) fn engines(threads: Option<usize>) -> Vec<Arc<dyn Engine>> {
    let cpu = match threads {
        Some(n) => backend_candle::CandleEngine::with_threads(n),
        None => backend_candle::CandleEngine::new(),
    };
    vec![Arc::new(backend_coreml::CoreMlEngine::new()), Arc::new(cpu)]
}

/// A runtime over [`engines`], and the model loaded on every engine that can take it.
/// `model_dir` may also be a `.mlpackage` / `.mlmodel` (see [`crate::package`]).
pub(crate) fn load(
    model_dir: &Path,
    threads: Option<usize>,
    engine: Option<&str>,
) -> Result<(Runtime, LoadedModel, ModelBundle)> {
    load_with(model_dir, threads, engine, None)
}

/// [`load`], with preprocessing and labels for a bare Core ML package taken from
/// `preprocess_from` (a model folder) instead of the bundled model.
pub(crate) fn load_with(
    model_dir: &Path,
    threads: Option<usize>,
    engine: Option<&str>,
    preprocess_from: Option<&Path>,
) -> Result<(Runtime, LoadedModel, ModelBundle)> {
    let bundle = if crate::package::is_package(model_dir) {
        crate::package::bundle(model_dir, preprocess_from)?
    } else {
        ModelBundle::load(model_dir)
            .with_context(|| format!("loading model folder {}", model_dir.display()))?
    };
    let mut builder = Runtime::builder();
    for e in engines(threads) {
        builder = builder.engine(e);
    }
    let rt = builder.build();
    let model = rt.load_bundle(&bundle)?;
    if let Some(name) = engine {
        if !model.engines().iter().any(|e| e == name) {
            let why = model
                .load_report()
                .engines
                .iter()
                .find(|e| e.engine == name)
                .and_then(|e| e.reason.clone())
                .unwrap_or_else(|| {
                    format!("no engine called `{name}` (engines: coreml, candle-cpu)")
                });
            anyhow::bail!("engine `{name}` cannot serve {}: {why}", bundle.manifest.name);
        }
        model.set_routing(Routing::Require(name.into()));
    }
    Ok((rt, model, bundle))
}

/// One line describing where the model loaded and why other engines did not.
pub(crate) fn load_line(model: &LoadedModel) -> String {
    let mut served = Vec::new();
    let mut skipped = Vec::new();
    for e in &model.load_report().engines {
        if e.loaded {
            served.push(format!("{} ({:.0} ms)", e.engine, e.load_time.as_secs_f64() * 1e3));
        } else {
            let reason = e.reason.as_deref().unwrap_or("not loaded");
            let short = reason.split(';').next().unwrap_or(reason);
            skipped.push(format!("{}: {}", e.engine, short));
        }
    }
    let mut line = format!("loaded on {}", served.join(", "));
    if !skipped.is_empty() {
        line.push_str(&format!(" [skipped {}]", skipped.join("; ")));
    }
    line
}

/// Parses a count that must be at least 1 (`--top`, `--threads`, `--iters`): 0 is refused
/// with a usage error (exit status 2) instead of meaning "nothing" or "unbounded".
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// The model a subcommand was given: `--model PATH`, or the older positional form (still
/// accepted, not advertised), or `default`.
pub(crate) fn model_arg(
    flag: Option<&Path>,
    positional: Option<&Path>,
    default: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf> {
    flag.or(positional).map(Path::to_path_buf).or(default).ok_or_else(|| {
        crate::exit::fail(crate::exit::Exit::Usage, "name the model with --model PATH")
    })
}

/// An error chain as one line: `context: cause: cause`.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        // Skip causes already quoted by their parent.
        if out.last().is_some_and(|prev| prev.contains(&p)) {
            continue;
        }
        out.push(p);
    }
    out.join(": ").replace('\n', " ")
}
