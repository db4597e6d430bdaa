//! `infer inspect MODEL`: what a model takes and returns and what it is made of, for a manifest
//! folder, a `.safetensors` file, a `.mlpackage` or a `.mlmodel`; text or `--json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use inference_api::{Dim, FeatureKind, TensorSpec};
use model_manifest::ModelBundle;
use serde::Serialize;

use crate::exit::{Exit, TagExit, fail};
use crate::{common, json};

/// Arguments of `infer inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model folder with a manifest.toml, a .safetensors file, a .mlpackage or a .mlmodel.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// The model as a positional argument (older form of --model).
    #[arg(hide = true, conflicts_with = "model")]
    model_positional: Option<PathBuf>,
    /// Print one JSON document on stdout (docs/cli-json.md) instead of text.
    #[arg(long)]
    json: bool,
}

/// One input or output.
#[derive(Debug, Serialize)]
struct Io {
    name: String,
    dtype: String,
    /// Dimensions, `-1` for a flexible one (see `ranges`); absent when the model does not
    /// declare the feature as a tensor.
    shape: Option<Vec<i64>>,
    /// Per dimension `[min, max]` (`max` null: unbounded), only when a dimension is flexible.
    #[serde(skip_serializing_if = "Option::is_none")]
    ranges: Option<Vec<[Option<usize>; 2]>>,
    /// The shape as text, for the human report.
    #[serde(skip)]
    shape_text: String,
    kind: String,
}

/// Constant weights of one element type.
#[derive(Debug, Default, Serialize)]
struct WeightStats {
    tensors: usize,
    elements: u64,
    bytes: u64,
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
struct Inspection {
    path: String,
    format: String,
    model_type: String,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    op_count: usize,
    op_histogram: BTreeMap<String, usize>,
    weights_by_dtype: BTreeMap<String, WeightStats>,
    metadata: BTreeMap<String, String>,
    /// For a classifier package: its labels and where the scores are (null otherwise).
    classifier: Option<ClassifierView>,
}

/// A classifier's labels as `inspect` shows them.
#[derive(Debug, Serialize)]
struct ClassifierView {
    /// The output holding one probability per class.
    scores: String,
    /// The labels, in class-index order.
    labels: Vec<String>,
    /// What the engines do with the predicted-label output.
    note: String,
}

fn classifier_view(c: &coreml_format::Classifier) -> ClassifierView {
    let note = if c.int_labels {
        format!(
            "`{}` (int64) is the label of the top class; `{}` is the probability dictionary \
             as an f32 tensor, one score per label",
            c.label_output, c.probabilities_output
        )
    } else {
        format!(
            "`{}` is a string: there are no string tensors, so it is not in the I/O schema (the \
             label of the arg-max of `{}`); `{}` is the probability dictionary as an f32 \
             tensor, one score per label",
            c.label_output, c.probabilities_output, c.probabilities_output
        )
    };
    ClassifierView { scores: c.probabilities_output.clone(), labels: c.labels.clone(), note }
}

fn io(spec: &TensorSpec) -> Io {
    let kind = match spec.kind {
        FeatureKind::MultiArray => "multi-array".to_string(),
        FeatureKind::Image { width, height, format } => {
            format!("image {width}x{height} {}", format!("{format:?}").to_lowercase())
        }
    };
    let shape = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n as i64,
            Dim::Range { .. } => -1,
        })
        .collect();
    let flexible = spec.shape.iter().any(|d| matches!(d, Dim::Range { .. }));
    let ranges = flexible.then(|| {
        spec.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => [Some(*n), Some(*n)],
                Dim::Range { min, max } => [Some(*min), *max],
            })
            .collect()
    });
    Io {
        name: spec.name.clone(),
        dtype: spec.dtype.to_string(),
        shape: Some(shape),
        ranges,
        shape_text: spec.shape_string(),
        kind,
    }
}

fn empty(path: &Path, format: &str, model_type: String) -> Inspection {
    Inspection {
        path: path.display().to_string(),
        format: format.into(),
        model_type,
        inputs: Vec::new(),
        outputs: Vec::new(),
        op_count: 0,
        op_histogram: BTreeMap::new(),
        weights_by_dtype: BTreeMap::new(),
        metadata: BTreeMap::new(),
        classifier: None,
    }
}

fn package(path: &Path) -> Result<Inspection> {
    let model = coreml_format::MlModel::open(path)
        .with_context(|| format!("opening Core ML model {}", path.display()))?;
    let s = model.summary();
    let mut out = empty(path, &s.format, s.model_type.clone());
    let feature = |f: &coreml_format::Feature| match &f.spec {
        Some(spec) => io(spec),
        None => Io {
            name: f.name.clone(),
            dtype: "-".into(),
            shape: None,
            ranges: None,
            shape_text: "-".into(),
            kind: f.type_name.clone(),
        },
    };
    out.inputs = s.inputs.iter().map(feature).collect();
    out.outputs = s.outputs.iter().map(feature).collect();
    // An output the description leaves without a shape (flexible models) is shown with the
    // shape the schema derives from the program's return type, as every engine sees it.
    if let Ok(schema) = model.io_schema() {
        for o in &mut out.outputs {
            if let Some(spec) = schema.output(&o.name).filter(|sp| !sp.shape.is_empty())
                && o.shape.as_ref().is_none_or(Vec::is_empty)
            {
                *o = io(spec);
            }
        }
    }
    out.classifier = model.classifier().map(classifier_view);
    // A legacy NeuralNetwork classifier carries its labels in the spec, not in a `classify` op.
    if out.classifier.is_none()
        && let Ok(schema) = model.io_schema()
        && let Some(c) = &schema.classifier
        && let Some(label) = crate::inspect_nn::omitted_label(&model, &schema)
    {
        let note = crate::inspect_nn::classifier_note(c, &label);
        out.classifier =
            Some(ClassifierView { scores: c.output.clone(), labels: c.labels.clone(), note });
    }
    out.op_count = s.op_count;
    out.op_histogram = s.op_histogram.clone();
    for (dtype, w) in &s.weights_by_dtype {
        let e = WeightStats { tensors: w.count, elements: w.elements, bytes: w.bytes };
        out.weights_by_dtype.insert(dtype.clone(), e);
    }
    let m = &mut out.metadata;
    m.insert("spec_version".into(), s.spec_version.to_string());
    if let Some(opset) = &s.opset {
        m.insert("opset".into(), opset.clone());
    }
    if !s.functions.is_empty() {
        m.insert("functions".into(), s.functions.join(", "));
    }
    for (k, v) in [
        ("author", &s.metadata.author),
        ("license", &s.metadata.license),
        ("version", &s.metadata.version),
        ("description", &s.metadata.short_description),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), v.clone());
        }
    }
    for (k, v) in &s.metadata.user_defined {
        m.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn safetensors_weights(path: &Path) -> Result<(usize, BTreeMap<String, WeightStats>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut by: BTreeMap<String, WeightStats> = BTreeMap::new();
    let tensors = st.tensors();
    for (_, t) in &tensors {
        let e = by.entry(format!("{:?}", t.dtype()).to_lowercase()).or_default();
        e.tensors += 1;
        e.elements += t.shape().iter().product::<usize>() as u64;
        e.bytes += t.data().len() as u64;
    }
    Ok((tensors.len(), by))
}

fn safetensors_file(path: &Path) -> Result<Inspection> {
    let (n, by) = safetensors_weights(path)?;
    let mut out = empty(
        path,
        "safetensors",
        "native weights (no graph; the architecture is named by a manifest)".into(),
    );
    out.weights_by_dtype = by;
    out.metadata.insert("tensors".into(), n.to_string());
    Ok(out)
}

fn folder(path: &Path) -> Result<Inspection> {
    let bundle = ModelBundle::load(path)
        .with_context(|| format!("loading model folder {}", path.display()))?;
    let weights = &bundle.artifact.path;
    let mut out = if crate::package::is_package(weights) {
        package(weights)?
    } else {
        let arch = bundle.manifest.architecture.clone().unwrap_or_else(|| "?".into());
        let mut o = empty(path, "", format!("native architecture `{arch}`"));
        o.weights_by_dtype = safetensors_weights(weights)?.1;
        o
    };
    out.path = path.display().to_string();
    out.format = format!("manifest folder ({} weights)", bundle.artifact.format);
    out.inputs = bundle.io_schema.inputs.iter().map(io).collect();
    out.outputs = bundle.io_schema.outputs.iter().map(io).collect();
    let m = &bundle.manifest;
    for (k, v) in [
        ("name", &m.name),
        ("version", &m.version),
        ("task", &m.task),
        ("license", &m.license),
        ("origin", &m.origin.source),
    ] {
        out.metadata.insert(k.into(), v.clone());
    }
    if let Some(l) = &bundle.labels {
        out.metadata.insert("labels".into(), l.len().to_string());
    }
    Ok(out)
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn render(i: &Inspection) -> String {
    let mut s = format!("model: {}\nformat: {}\ntype: {}\n", i.path, i.format, i.model_type);
    for (title, list) in [("inputs", &i.inputs), ("outputs", &i.outputs)] {
        s.push_str(&format!("{title}:\n"));
        if list.is_empty() {
            s.push_str("  (not declared)\n");
        }
        for f in list {
            s.push_str(&format!(
                "  {:<12} {:<4} {:<20} {}\n",
                f.name, f.dtype, f.shape_text, f.kind
            ));
        }
    }
    if let Some(c) = &i.classifier {
        let shown: Vec<&str> = c.labels.iter().take(10).map(String::as_str).collect();
        let more = if c.labels.len() > 10 { ", ..." } else { "" };
        s.push_str(&format!(
            "classifier: {} classes, scores in `{}`: {}{more}\n  note: {}\n",
            c.labels.len(),
            c.scores,
            shown.join(", "),
            c.note
        ));
    }
    if !i.op_histogram.is_empty() {
        s.push_str(&format!("ops: {} in all\n", i.op_count));
        let mut ops: Vec<(&String, &usize)> = i.op_histogram.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            s.push_str(&format!("  {op:<28} {n:>5}\n"));
        }
    }
    s.push_str("weights:\n");
    for (dtype, w) in &i.weights_by_dtype {
        s.push_str(&format!(
            "  {dtype:<6} {:>5} tensors {:>10} elements {:>12}\n",
            w.tensors,
            w.elements,
            human_bytes(w.bytes)
        ));
    }
    if !i.metadata.is_empty() {
        s.push_str("metadata:\n");
        for (k, v) in &i.metadata {
            s.push_str(&format!("  {k}: {v}\n"));
        }
    }
    s
}

pub(crate) fn main(args: Args) -> Result<()> {
    let model = common::model_arg(args.model.as_deref(), args.model_positional.as_deref(), None)?;
    let p = &model;
    let inspection = if crate::package::is_package(p) {
        package(p).exit(Exit::LoadFailed)?
    } else if p.is_dir() {
        folder(p).exit(Exit::LoadFailed)?
    } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
        safetensors_file(p).exit(Exit::LoadFailed)?
    } else {
        return Err(fail(
            Exit::BadInput,
            format!(
                "cannot inspect {}: expected a model folder with a manifest.toml, a \
                 .safetensors file, a .mlpackage or a .mlmodel",
                p.display()
            ),
        ));
    };
    if args.json {
        json::emit("inspect", &inspection)?;
    } else {
        json::write_human(&render(&inspection));
    }
    Ok(())
}
