//! The manifest schema (serde types mirroring `manifest.toml`) and its consistency checks.

use std::collections::BTreeMap;

use inference_api::{
    ArtifactFormat, ComputeUnits, DType, Dim, Error, IoSchema, Result, TensorSpec,
};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_PREPROCESS_SIDE, MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK, MAX_TIMEOUT_MS};

/// A parsed `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, e.g. `efficientnet-lite0`.
    pub name: String,
    /// Version of this packaging of the model.
    pub version: String,
    /// Task, e.g. `image-classification`.
    pub task: String,
    /// SPDX license of the weights.
    pub license: String,
    /// Architecture name a native engine builds (e.g. `efficientnet-lite0`, `fastvit-t8`).
    #[serde(default)]
    pub architecture: Option<String>,
    /// Where the weights came from.
    pub origin: Origin,
    /// Every file of the model, with its hash.
    pub files: Vec<FileEntry>,
    /// Declared inputs.
    pub inputs: Vec<TensorSpecToml>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpecToml>,
    /// Image preprocessing, for image models.
    #[serde(default)]
    pub preprocessing: Option<Preprocessing>,
    /// Numeric tolerances for parity checks.
    #[serde(default)]
    pub parity: ParityTolerances,
    /// Serving settings: SLA, timeout, preferred backends.
    #[serde(default)]
    pub serving: Serving,
}

/// Provenance of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// Where the weights were obtained (package, release, paper).
    pub source: String,
    /// How the files in this folder were produced or how to fetch them.
    #[serde(default)]
    pub how: Option<String>,
    /// Attribution for bundled data (labels, sample images).
    #[serde(default)]
    pub attribution: BTreeMap<String, String>,
}

/// What a listed file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    /// The model weights or package the engine prepares.
    Weights,
    /// Class labels, one per line.
    Labels,
    /// Anything else (license text, samples).
    Other,
}

/// One file of the model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the manifest's folder.
    pub path: String,
    /// What the file is for.
    pub role: FileRole,
    /// Artifact format, for weights.
    #[serde(default)]
    pub format: Option<String>,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A tensor declaration as written in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpecToml {
    /// Feature name.
    pub name: String,
    /// Element type (`f32`, `f16`, ...).
    pub dtype: String,
    /// Fixed shape.
    pub shape: Vec<usize>,
}

/// Resampling filter used when resizing images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Linear (triangle filter, antialiased when shrinking).
    Bilinear,
    /// Cubic convolution with a = -0.5 (antialiased when shrinking), as PIL does.
    Bicubic,
}

/// How an image becomes the model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Resize so the shorter side has this many pixels (aspect ratio kept).
    pub resize_shorter: u32,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Center crop `[height, width]` after resizing.
    pub crop: [u32; 2],
    /// Factor applied to 8-bit pixel values before normalizing (usually 1/255).
    pub scale: f32,
    /// Per-channel mean subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// `rgb` or `bgr`.
    #[serde(default = "default_channel_order")]
    pub channel_order: String,
    /// `nchw` or `nhwc`.
    #[serde(default = "default_layout")]
    pub layout: String,
}

fn default_channel_order() -> String {
    "rgb".into()
}
fn default_layout() -> String {
    "nchw".into()
}

/// Parity tolerances (max absolute difference of outputs) per compute precision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityTolerances {
    /// fp32 engines against the fp32 reference.
    pub fp32_max_abs: f32,
    /// fp16 engines against the fp32 reference.
    pub fp16_max_abs: f32,
    /// int8-weight engines against the fp32 reference.
    pub int8_max_abs: f32,
}

impl Default for ParityTolerances {
    fn default() -> Self {
        ParityTolerances { fp32_max_abs: 1e-3, fp16_max_abs: 1e-2, int8_max_abs: 5e-2 }
    }
}

/// Serving settings the runtime applies unless a call overrides them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serving {
    /// Latency SLA in milliseconds: a call slower than this counts as slow for the breaker.
    pub sla_ms: u64,
    /// Default deadline of a call in milliseconds.
    pub timeout_ms: u64,
    /// Engines to try, in order of preference.
    pub preferred_backends: Vec<String>,
    /// Compute units to ask Core ML for.
    pub compute_units: ComputeUnits,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            sla_ms: 200,
            timeout_ms: 2000,
            preferred_backends: vec!["coreml".into(), "candle-cpu".into()],
            compute_units: ComputeUnits::All,
        }
    }
}

fn spec(t: &TensorSpecToml, what: &str, origin: &str) -> Result<TensorSpec> {
    let dtype: DType = t.dtype.parse().map_err(|e: Error| {
        let msg = e.to_string().replace("load failed: ", "");
        Error::Load(format!("invalid manifest {origin}: {what} `{}`: {msg}", t.name))
    })?;
    Ok(TensorSpec {
        name: t.name.clone(),
        dtype,
        shape: t.shape.iter().map(|&d| Dim::Fixed(d)).collect(),
        kind: Default::default(),
    })
}

impl Manifest {
    /// Parses manifest text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text)
            .map_err(|e| Error::Load(format!("malformed manifest {origin}: {e}")))?;
        m.validate(origin)?;
        Ok(m)
    }

    /// The manifest as `manifest.toml` text (what `infer manifest init` writes); [`Self::parse`]
    /// reads it back to an equal manifest.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Load(format!("cannot write the manifest: {e}")))
    }

    /// Checks the manifest for internal consistency.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Load(format!("invalid manifest {origin}: {msg}")));
        if self.name.trim().is_empty() {
            return bad("`name` is empty".into());
        }
        if self.files.iter().filter(|f| f.role == FileRole::Weights).count() != 1 {
            return bad("exactly one file must have role = \"weights\"".into());
        }
        for f in &self.files {
            if f.path.contains("..") || f.path.starts_with('/') {
                return bad(format!("file path `{}` must stay inside the model folder", f.path));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!("file `{}`: sha256 must be 64 hex digits", f.path));
            }
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return bad("at least one input and one output must be declared".into());
        }
        if let Some(p) = &self.preprocessing {
            if p.crop[0] == 0 || p.crop[1] == 0 || p.resize_shorter == 0 {
                return bad("preprocessing sizes must be positive".into());
            }
            let sizes = [("resize_shorter", p.resize_shorter), ("crop", p.crop[0].max(p.crop[1]))];
            for (what, v) in sizes {
                if v > MAX_PREPROCESS_SIDE {
                    return bad(format!(
                        "preprocessing.{what} is {v}; at most {MAX_PREPROCESS_SIDE} pixels"
                    ));
                }
            }
            if !p.scale.is_finite() || p.scale == 0.0 {
                return bad(format!(
                    "preprocessing.scale is {}; it must be a finite, non-zero number (usually \
                     0.00392156 = 1/255)",
                    p.scale
                ));
            }
            if let Some(m) = p.mean.iter().find(|m| !m.is_finite()) {
                return bad(format!("preprocessing.mean has {m}; every mean must be finite"));
            }
            if let Some(s) = p.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad(format!(
                    "preprocessing.std has {s}; every std must be a finite number above 0"
                ));
            }
            if !matches!(p.channel_order.as_str(), "rgb" | "bgr") {
                return bad(format!("channel_order `{}` must be rgb or bgr", p.channel_order));
            }
            if !matches!(p.layout.as_str(), "nchw" | "nhwc") {
                return bad(format!("layout `{}` must be nchw or nhwc", p.layout));
            }
        }
        if self.serving.timeout_ms == 0 {
            return bad("serving.timeout_ms must be positive".into());
        }
        for (what, v) in [("timeout_ms", self.serving.timeout_ms), ("sla_ms", self.serving.sla_ms)]
        {
            if v > MAX_TIMEOUT_MS {
                return bad(format!("serving.{what} is {v}; at most {MAX_TIMEOUT_MS} (one hour)"));
            }
        }
        let tol = &self.parity;
        for (what, v) in [
            ("fp32_max_abs", tol.fp32_max_abs),
            ("fp16_max_abs", tol.fp16_max_abs),
            ("int8_max_abs", tol.int8_max_abs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("parity.{what} is {v}; it must be a finite number >= 0"));
            }
        }
        for t in self.inputs.iter().chain(&self.outputs) {
            let elements = t.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            if t.shape.len() > MAX_TENSOR_RANK || elements.is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                return bad(format!(
                    "tensor `{}` has shape {:?}; at most {MAX_TENSOR_RANK} dimensions and \
                     {MAX_TENSOR_ELEMENTS} elements",
                    t.name, t.shape
                ));
            }
        }
        self.io_schema(origin)?;
        Ok(())
    }

    /// The declared I/O schema.
    pub fn io_schema(&self, origin: &str) -> Result<IoSchema> {
        Ok(IoSchema {
            inputs: self.inputs.iter().map(|t| spec(t, "input", origin)).collect::<Result<_>>()?,
            outputs: self
                .outputs
                .iter()
                .map(|t| spec(t, "output", origin))
                .collect::<Result<_>>()?,
            classifier: None,
        })
    }

    /// The weights entry (validated to exist exactly once).
    pub fn weights(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == FileRole::Weights)
    }

    /// The labels entry, if any.
    pub fn labels(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == FileRole::Labels)
    }

    /// Artifact format of the weights entry (from `format`, else the extension).
    pub fn weights_format(&self) -> Option<ArtifactFormat> {
        let w = self.weights()?;
        match w.format.as_deref() {
            Some("safetensors") => Some(ArtifactFormat::Safetensors),
            Some("mlpackage") => Some(ArtifactFormat::MlPackage),
            Some("mlmodel") => Some(ArtifactFormat::MlModel),
            Some("mlmodelc") => Some(ArtifactFormat::MlModelc),
            _ => ArtifactFormat::from_path(std::path::Path::new(&w.path)),
        }
    }
}
