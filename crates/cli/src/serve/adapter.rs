//! The serve command's one contact with the runtime API: loading a model repository into a
//! runtime, running a call with a deadline, readiness, queue depth and the telemetry text.
//! Everything else in `serve` speaks in plain tensors and [`inference_api::Error`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use inference_api::{Engine, Error, IoSchema, NamedTensors, Tensor};
use model_manifest::ModelBundle;
use runtime::{LoadedModel, Routing, RunOptions, Runtime};

/// How the runtime under the server is set up.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Calls in flight per model (running or queued) before `Overloaded`.
    pub(crate) queue_capacity: usize,
    /// Worker threads per (model, engine).
    pub(crate) workers: usize,
    /// Serve only from this engine.
    pub(crate) engine: Option<String>,
}

/// One served model.
#[derive(Debug)]
pub(crate) struct ModelEntry {
    /// The name clients use: the repository sub-folder's name.
    pub(crate) name: String,
    /// The manifest's version.
    pub(crate) version: String,
    /// The artifact format (`safetensors`, `mlpackage`, `mlmodel`), as KServe's `platform`.
    pub(crate) platform: String,
    /// Declared inputs and outputs.
    pub(crate) schema: IoSchema,
    model: LoadedModel,
}

/// What one call returned: outputs by name in schema order, and the engine that served.
#[derive(Debug)]
pub(crate) struct Served {
    /// Outputs by name.
    pub(crate) outputs: Vec<(String, Tensor)>,
    /// Engine that answered.
    pub(crate) engine: String,
}

impl ModelEntry {
    /// Runs one call within `timeout` (default: the manifest's). Blocks: call it from a
    /// blocking thread.
    pub(crate) fn infer(
        &self,
        inputs: Vec<(String, Tensor)>,
        timeout: Option<Duration>,
    ) -> Result<Served, Error> {
        let inputs: NamedTensors = inputs.into_iter().collect();
        let opts = match timeout {
            Some(d) => RunOptions::deadline(d),
            None => RunOptions::default(),
        };
        let (mut out, report) = self.model.run_with(inputs, &opts)?;
        let outputs = self
            .schema
            .outputs
            .iter()
            .filter_map(|s| out.remove(&s.name).map(|t| (s.name.clone(), t)))
            .collect();
        Ok(Served { outputs, engine: report.engine })
    }

    /// True when at least one engine has a healthy instance.
    pub(crate) fn ready(&self) -> bool {
        self.model.engines().iter().any(|e| self.model.engine_ready(e))
    }

    /// Calls admitted and not finished.
    pub(crate) fn in_flight(&self) -> usize {
        self.model.in_flight()
    }

    /// The load line for the start-up log.
    pub(crate) fn load_line(&self) -> String {
        crate::common::load_line(&self.model)
    }
}

/// Every model of a repository folder, loaded into one runtime.
#[derive(Debug)]
pub(crate) struct Repository {
    rt: Runtime,
    models: BTreeMap<String, ModelEntry>,
    settings: Settings,
}

impl Repository {
    /// Loads every model in `dir`: each sub-folder is a model folder (`manifest.toml`), a
    /// `.mlpackage`, or a folder holding exactly one `.mlpackage` / `.mlmodel`; a `.mlmodel`
    /// file works too. The model's name is the entry's name.
    pub(crate) fn load(
        dir: &Path,
        settings: &Settings,
        engines: Vec<Arc<dyn Engine>>,
    ) -> Result<Repository> {
        let mut bundles = Vec::new();
        for (name, path) in entries(dir)? {
            let bundle = if crate::package::is_package(&path) {
                crate::package::bundle(&path, None)?
            } else if path.join("manifest.toml").is_file() {
                ModelBundle::load(&path)
                    .with_context(|| format!("loading model folder {}", path.display()))?
            } else {
                match packages_in(&path)?.as_slice() {
                    [one] => crate::package::bundle(one, None)?,
                    [] => bail!(
                        "{} is neither a model folder (no manifest.toml) nor a Core ML package; \
                         put one model per sub-folder of the repository",
                        path.display()
                    ),
                    many => bail!(
                        "{} holds {} Core ML packages; keep one model per sub-folder",
                        path.display(),
                        many.len()
                    ),
                }
            };
            bundles.push((name, bundle));
        }
        Repository::from_bundles(bundles, settings, engines)
    }

    /// Loads already built bundles under the given names.
    pub(crate) fn from_bundles(
        bundles: Vec<(String, ModelBundle)>,
        settings: &Settings,
        engines: Vec<Arc<dyn Engine>>,
    ) -> Result<Repository> {
        let mut builder = Runtime::builder()
            .queue_capacity(settings.queue_capacity)
            .workers_per_engine(settings.workers);
        for e in engines {
            builder = builder.engine(e);
        }
        let rt = builder.build();
        let mut models = BTreeMap::new();
        for (name, mut bundle) in bundles {
            bundle.manifest.name = name.clone();
            bundle.artifact.name = name.clone();
            let model =
                rt.load_bundle(&bundle).with_context(|| format!("loading model `{name}`"))?;
            if let Some(engine) = &settings.engine {
                if !model.engines().iter().any(|e| e == engine) {
                    bail!(
                        "engine `{engine}` cannot serve model `{name}` (it loaded on: {})",
                        model.engines().join(", ")
                    );
                }
                model.set_routing(Routing::Require(engine.clone().into()));
            }
            let entry = ModelEntry {
                version: bundle.manifest.version.clone(),
                platform: bundle.artifact.format.as_str().to_string(),
                schema: bundle.io_schema.clone(),
                name: name.clone(),
                model,
            };
            models.insert(name, entry);
        }
        Ok(Repository { rt, models, settings: settings.clone() })
    }

    /// The model called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.get(name)
    }

    /// Every model, by name.
    pub(crate) fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    /// Queue capacity per model.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.settings.queue_capacity
    }

    /// Prometheus text of everything the runtime recorded.
    pub(crate) fn prometheus_text(&self) -> String {
        self.rt.telemetry().sample_rss();
        self.rt.telemetry().prometheus_text()
    }
}

/// The repository's entries by name, sorted; hidden entries skipped.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("reading model repository {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if file.starts_with('.') || !(path.is_dir() || crate::package::is_package(&path)) {
            continue;
        }
        let name = if crate::package::is_package(&path) {
            path.file_stem().and_then(|s| s.to_str()).unwrap_or(file).to_string()
        } else {
            file.to_string()
        };
        out.push((name, path));
    }
    out.sort();
    if out.is_empty() {
        bail!(
            "model repository {} has no models; put one model folder (with manifest.toml) or \
             Core ML package per sub-folder",
            dir.display()
        );
    }
    Ok(out)
}

fn packages_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| crate::package::is_package(p))
        .collect();
    out.sort();
    Ok(out)
}
