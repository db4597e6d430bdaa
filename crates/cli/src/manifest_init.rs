//! `infer manifest init MODEL`: writes `manifest.toml` beside a `.mlpackage`, `.mlmodel` or
//! `.safetensors` file, with every hash and size filled in and the I/O schema read from the
//! model, so the folder loads (and verifies) as a model folder in one command.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use inference_api::{ArtifactFormat, Engine, IoSchema, ModelArtifact, PrepareOptions, TensorSpec};
use model_manifest::{FileEntry, FileRole, Manifest, ModelBundle, Origin, TensorSpecToml};
use serde::Serialize;

use crate::exit::{Exit, TagExit, fail};
use crate::json::human;
use crate::{common, json, package};

/// Arguments of `infer manifest init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The model file: a .mlpackage, a .mlmodel or a .safetensors (with --arch). The manifest
    /// is written into the folder holding it.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// The model as a positional argument (`infer manifest init MODEL`).
    #[arg(conflicts_with = "model", value_name = "MODEL")]
    model_positional: Option<PathBuf>,
    /// Model name (default: the file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Architecture the CPU engine builds for a .safetensors file (`efficientnet-lite0`,
    /// `fastvit-t8`).
    #[arg(long)]
    arch: Option<String>,
    /// A model folder whose [preprocessing] to copy (adapted to this model's input size), so
    /// `infer classify` can feed the model photos.
    #[arg(long)]
    preprocess_from: Option<PathBuf>,
    /// Labels file (one class per line) inside the model's folder (default: for a classifier
    /// package, labels.txt written from the model's own labels; else labels.txt there, when
    /// present).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Replace an existing manifest.toml (and a labels.txt that differs from a classifier
    /// package's own labels).
    #[arg(long)]
    force: bool,
    /// Print one JSON document on stdout (docs/cli-json.md) instead of text.
    #[arg(long)]
    json: bool,
}

/// `infer manifest ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ManifestCommand {
    /// Write manifest.toml for a .mlpackage / .mlmodel / .safetensors (hashes, sizes, I/O).
    Init(InitArgs),
}

/// Arguments of `infer manifest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    role: String,
    sha256: String,
    size: u64,
}

#[derive(Debug, Serialize)]
struct InitReport {
    manifest: String,
    name: String,
    files: Vec<FileReport>,
    inputs: Vec<TensorSpecToml>,
    outputs: Vec<TensorSpecToml>,
    preprocessing: bool,
    labels: Option<usize>,
    notes: Vec<String>,
}

pub(crate) fn main(args: Args) -> Result<()> {
    match args.command {
        ManifestCommand::Init(a) => init(a),
    }
}

fn fixed(spec: &TensorSpec, what: &str) -> Result<TensorSpecToml> {
    let shape = spec.fixed_shape().ok_or_else(|| {
        fail(
            Exit::BadInput,
            format!(
                "{what} `{}` has a flexible shape {}; a manifest declares fixed shapes, so run \
                 this model as a bare package (infer run --model FILE) instead",
                spec.name,
                spec.shape_string()
            ),
        )
    })?;
    Ok(TensorSpecToml { name: spec.name.clone(), dtype: spec.dtype.to_string(), shape })
}

/// The schema and (version, license) the model file itself states.
fn read_model(
    path: &Path,
    arch: Option<&str>,
) -> Result<(IoSchema, Option<String>, Option<String>)> {
    if package::is_package(path) {
        let m = coreml_format::MlModel::open(path)
            .with_context(|| format!("opening Core ML model {}", path.display()))
            .exit(Exit::LoadFailed)?;
        let schema = m.io_schema().exit(Exit::LoadFailed)?;
        let meta = m.metadata();
        return Ok((schema, package::non_empty(&meta.version), package::non_empty(&meta.license)));
    }
    if ArtifactFormat::from_path(path) != Some(ArtifactFormat::Safetensors) {
        return Err(fail(
            Exit::BadInput,
            format!("{} is not a .mlpackage, .mlmodel or .safetensors file", path.display()),
        ));
    }
    let Some(arch) = arch else {
        return Err(fail(
            Exit::Usage,
            "a .safetensors file holds weights only: name the architecture with --arch \
             (efficientnet-lite0, fastvit-t8)",
        ));
    };
    let mut artifact = ModelArtifact::from_path(path).exit(Exit::BadInput)?;
    artifact.architecture = Some(arch.to_string());
    let cpu = backend_candle::CandleEngine::with_threads(1);
    let model = cpu
        .prepare(&artifact, &PrepareOptions::new())
        .with_context(|| format!("building {arch} from {}", path.display()))
        .exit(Exit::LoadFailed)?;
    Ok((model.io_schema().clone(), None, None))
}

fn entry(dir: &Path, file: &Path, role: FileRole, format: Option<String>) -> Result<FileEntry> {
    let rel = file
        .strip_prefix(dir)
        .ok()
        .and_then(|r| r.to_str())
        .filter(|r| !r.is_empty() && !r.contains(".."))
        .ok_or_else(|| {
            fail(
                Exit::BadInput,
                format!("{} must be inside the model folder {}", file.display(), dir.display()),
            )
        })?
        .to_string();
    let (sha256, size) = model_manifest::sha256_path(file)
        .with_context(|| format!("hashing {}", file.display()))
        .exit(Exit::BadInput)?;
    Ok(FileEntry { path: rel, role, format, sha256, size })
}

/// Writes a classifier's labels (from the model's spec) to `labels.txt` in `dir`, one a line.
/// An existing `labels.txt` with the same labels is kept; one with other labels is replaced
/// only with `--force`.
fn write_spec_labels(
    dir: &Path,
    c: &inference_api::ClassLabels,
    force: bool,
    notes: &mut Vec<String>,
) -> Result<PathBuf> {
    if let Some(bad) = c.labels.iter().find(|l| l.contains(['\n', '\r']) || l.trim() != *l) {
        return Err(fail(
            Exit::BadInput,
            format!(
                "the model's class label {bad:?} cannot be written one per line (line break or \
                 surrounding spaces): write a labels file yourself and pass --labels FILE"
            ),
        ));
    }
    let path = dir.join("labels.txt");
    let text: String = c.labels.iter().map(|l| format!("{l}\n")).collect();
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => {
            notes.push(format!("{} already holds the model's labels", path.display()));
            return Ok(path);
        }
        Ok(_) if !force => {
            return Err(fail(
                Exit::BadInput,
                format!(
                    "{} exists and differs from the {} class labels in the model: pass --force \
                     to replace it with the model's labels, or --labels FILE to use another file",
                    path.display(),
                    c.labels.len()
                ),
            ));
        }
        _ => {}
    }
    crate::output::write_bytes(&path, text.as_bytes())?;
    notes.push(format!(
        "wrote the model's {} class labels (from its classifier spec) to {}",
        c.labels.len(),
        path.display()
    ));
    Ok(path)
}

fn init(args: InitArgs) -> Result<()> {
    if args.json {
        json::reserve_stdout();
    }
    let path = common::model_arg(args.model.as_deref(), args.model_positional.as_deref(), None)?;
    if let Err(e) = std::fs::metadata(&path) {
        return Err(fail(Exit::BadInput, format!("{} cannot be read: {e}", path.display())));
    }
    let path =
        std::fs::canonicalize(&path).with_context(|| format!("resolving {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let manifest_path = dir.join("manifest.toml");
    if manifest_path.exists() && !args.force {
        return Err(fail(
            Exit::BadInput,
            format!(
                "{} already exists: pass --force to replace it (its edits are lost)",
                manifest_path.display()
            ),
        ));
    }
    let donor = match &args.preprocess_from {
        Some(d) => Some(
            ModelBundle::load(d)
                .with_context(|| format!("loading {} for its preprocessing", d.display()))
                .exit(Exit::BadInput)?,
        ),
        None => None,
    };
    let (schema, version, license) = read_model(&path, args.arch.as_deref())?;
    let inputs = schema.inputs.iter().map(|s| fixed(s, "input")).collect::<Result<Vec<_>>>()?;
    let outputs = schema.outputs.iter().map(|s| fixed(s, "output")).collect::<Result<Vec<_>>>()?;
    let mut notes = Vec::new();
    let format = ArtifactFormat::from_path(&path).map(|f| f.to_string());
    let mut files = vec![entry(&dir, &path, FileRole::Weights, format)?];
    let labels_file = match (&args.labels, &schema.classifier) {
        (Some(l), _) => Some(l.clone()),
        // A classifier carries its labels: write them out, so the folder's labels are the
        // model's own.
        (None, Some(c)) => Some(write_spec_labels(&dir, c, args.force, &mut notes)?),
        (None, None) => {
            let beside = dir.join("labels.txt");
            beside.is_file().then_some(beside)
        }
    };
    let scores = schema.classifier.as_ref().map(|c| c.output.as_str());
    let scores_output =
        outputs.iter().find(|o| Some(o.name.as_str()) == scores).or(outputs.first());
    let mut label_count = None;
    if let Some(l) = &labels_file {
        let l = std::fs::canonicalize(l).with_context(|| format!("resolving {}", l.display()))?;
        files.push(entry(&dir, &l, FileRole::Labels, None)?);
        let text =
            std::fs::read_to_string(&l).with_context(|| format!("reading {}", l.display()))?;
        let n = text.lines().filter(|s| !s.trim().is_empty()).count();
        let classes = scores_output.and_then(|o| o.shape.last().copied());
        if classes.is_some_and(|c| c != n) {
            notes.push(format!(
                "{} has {n} labels but output `{}` has {} classes",
                l.display(),
                scores_output.map_or("?", |o| o.name.as_str()),
                classes.unwrap_or(0)
            ));
        }
        label_count = Some(n);
    } else {
        notes.push("no labels: put labels.txt (one class per line) beside the model".into());
    }
    let image_hw = schema.inputs.first().and_then(package::image_hw);
    let preprocessing = match (&donor, image_hw) {
        (Some(d), Some(hw)) => package::adapt_preprocessing(d.manifest.preprocessing.clone(), hw),
        (Some(_), None) => {
            notes.push(
                "--preprocess-from ignored: the input is neither an image nor [1, 3, H, W]".into(),
            );
            None
        }
        (None, Some((h, w)))
            if schema
                .inputs
                .first()
                .is_some_and(|s| matches!(s.kind, inference_api::FeatureKind::Image { .. })) =>
        {
            // The package normalises its own image input (colour layout, scale, bias): the
            // photo only needs resizing and cropping to the declared size.
            notes.push(format!(
                "[preprocessing]: the input is a Core ML image ({h}x{w}) that carries its own \
                 normalisation; photos are resized (shorter side {}) and centre-cropped to it",
                h.min(w)
            ));
            Some(model_manifest::Preprocessing {
                resize_shorter: h.min(w) as u32,
                interpolation: model_manifest::Interpolation::Bicubic,
                crop: [h as u32, w as u32],
                scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                channel_order: "rgb".into(),
                layout: "nchw".into(),
            })
        }
        (None, Some(_)) => {
            notes.push(
                "no [preprocessing]: add one (or --preprocess-from DIR) to classify photos".into(),
            );
            None
        }
        (None, None) => None,
    };
    let name = args.name.clone().unwrap_or_else(|| {
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string()
    });
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let manifest = Manifest {
        name: name.clone(),
        version: version.unwrap_or_else(|| "unversioned".into()),
        task: if preprocessing.is_some() { "image-classification" } else { "tensor" }.into(),
        license: license.unwrap_or_else(|| {
            notes.push("licence not stated in the model: set `license` (SPDX)".into());
            "NOASSERTION".into()
        }),
        architecture: args.arch.clone().filter(|_| !package::is_package(&path)),
        origin: Origin {
            source: format!("{file_name}, manifest written by `infer manifest init`"),
            how: None,
            attribution: Default::default(),
        },
        files,
        inputs: inputs.clone(),
        outputs: outputs.clone(),
        preprocessing: preprocessing.clone(),
        parity: Default::default(),
        serving: Default::default(),
    };
    let text = format!(
        "# Written by `infer manifest init {file_name}`: check name, version, license and task.\n\
         # After changing a listed file, run it again with --force (this file is rewritten).\n{}",
        manifest.to_toml()?
    );
    Manifest::parse(&text, "the generated manifest")
        .context("the generated manifest is invalid")?;
    crate::output::write_bytes(&manifest_path, text.as_bytes())?;
    // Load it back as every subcommand will: hashes verified, schema consistent.
    ModelBundle::load(&dir)
        .with_context(|| {
            format!("the folder {} does not load with its new manifest", dir.display())
        })
        .exit(Exit::LoadFailed)?;
    let report = InitReport {
        manifest: manifest_path.display().to_string(),
        name,
        files: manifest
            .files
            .iter()
            .map(|f| FileReport {
                path: f.path.clone(),
                role: format!("{:?}", f.role).to_lowercase(),
                sha256: f.sha256.clone(),
                size: f.size,
            })
            .collect(),
        inputs,
        outputs,
        preprocessing: preprocessing.is_some(),
        labels: label_count,
        notes,
    };
    if args.json {
        return json::emit("manifest init", &report);
    }
    human!("wrote {}", report.manifest);
    for f in &report.files {
        human!("  {:<8} {}  sha256 {}  {} bytes", f.role, f.path, f.sha256, f.size);
    }
    for n in &report.notes {
        human!("  note: {n}");
    }
    human!("the folder now loads as a model: infer classify --model {}", dir.display());
    Ok(())
}
