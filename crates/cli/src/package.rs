//! A bare `.mlpackage` / `.mlmodel` as a model bundle, so every subcommand that takes a model
//! folder also takes a Core ML package.
//!
//! A package carries its I/O schema but no preprocessing or labels. They come from a donor
//! model folder: `--preprocess-from DIR` where a subcommand offers it, else the bundled
//! EfficientNet-Lite0 folder. Preprocessing is borrowed only when the package's input is an
//! image-shaped `[1, 3, H, W]` tensor or a Core ML image feature (the crop becomes `H x W`, the
//! resize scales with it; an image feature gets the cropped u8 photo, not normalised planes);
//! labels only when the output's last dimension equals the donor's label count (a classifier
//! package uses its own labels).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use inference_api::{ArtifactFormat, FeatureKind, ModelArtifact, TensorSpec};
use model_manifest::ModelBundle;

/// True for a path the CPU engine runs as an ML Program.
pub(crate) fn is_package(path: &Path) -> bool {
    matches!(
        ArtifactFormat::from_path(path),
        Some(ArtifactFormat::MlPackage | ArtifactFormat::MlModel)
    )
}

/// The donor's preprocessing for an `h x w` input: the crop becomes `h x w` and the resize
/// keeps the donor's resize-to-crop ratio.
pub(crate) fn adapt_preprocessing(
    donor: Option<model_manifest::Preprocessing>,
    (h, w): (usize, usize),
) -> Option<model_manifest::Preprocessing> {
    let mut p = donor?;
    let ratio = p.resize_shorter as f64 / f64::from(p.crop[0].max(1));
    p.resize_shorter = (h.min(w) as f64 * ratio).round() as u32;
    p.crop = [h as u32, w as u32];
    Some(p)
}

/// The `(height, width)` a photo is cropped to for this input: a Core ML image feature
/// (`[height, width, channels]`) or an image-shaped `[1, 3, H, W]` tensor (the batch may be
/// open: `infer classify` stacks photos along it); `None` otherwise.
pub(crate) fn image_hw(spec: &TensorSpec) -> Option<(usize, usize)> {
    use inference_api::Dim;
    if let [batch @ Dim::Range { .. }, Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)] =
        spec.shape.as_slice()
        && batch.accepts(1)
        && !matches!(spec.kind, FeatureKind::Image { .. })
    {
        return Some((*h, *w));
    }
    match (spec.kind, spec.fixed_shape().as_deref()) {
        (FeatureKind::Image { width, height, .. }, _) => Some((height, width)),
        (_, Some(&[1, 3, h, w])) => Some((h, w)),
        (_, Some(&[h, w, _])) if crate::image_input::image_kind(spec).is_some() => Some((h, w)),
        _ => None,
    }
}

pub(crate) fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A bundle for the package at `path`, preprocessing and labels from `donor` (default: the
/// bundled EfficientNet-Lite0 folder).
pub(crate) fn bundle(path: &Path, donor: Option<&Path>) -> Result<ModelBundle> {
    let model = coreml_format::MlModel::open(path)
        .with_context(|| format!("opening Core ML model {}", path.display()))?;
    let mut schema = model.io_schema()?;
    crate::inspect_nn::settle_output_shapes(&model, path, &mut schema)?;
    let donor_dir: PathBuf = donor
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::models_dir().join("efficientnet-lite0"));
    let donor = ModelBundle::load(&donor_dir)
        .with_context(|| format!("loading {} for preprocessing and labels", donor_dir.display()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
    let mut manifest = donor.manifest.clone();
    manifest.name = name.clone();
    // Labelled as what it is: the package's own version and licence, never the donor's.
    let meta = model.metadata();
    manifest.version = non_empty(&meta.version).unwrap_or_else(|| "unversioned".into());
    manifest.license =
        non_empty(&meta.license).unwrap_or_else(|| "licence not stated in the package".into());
    manifest.origin.attribution = Default::default();
    manifest.origin.how = None;
    manifest.architecture = None;
    manifest.files = Vec::new();
    // The schema lives in the bundle (from the package); the donor's manifest specs do not apply.
    manifest.inputs = Vec::new();
    manifest.outputs = Vec::new();
    manifest.origin.source = format!(
        "Core ML package {}; preprocessing{} from {}",
        path.display(),
        if schema.classifier.is_some() { "" } else { " and labels" },
        donor_dir.display()
    );
    let image_hw = schema.inputs.first().and_then(image_hw);
    manifest.preprocessing =
        image_hw.and_then(|hw| adapt_preprocessing(manifest.preprocessing.take(), hw));
    // A classifier package carries its own labels; otherwise the donor's fit when the class
    // counts agree.
    let labels = match &schema.classifier {
        Some(c) => Some(c.labels.clone()),
        None => {
            let classes = schema
                .outputs
                .first()
                .and_then(|o| o.fixed_shape())
                .and_then(|s| s.last().copied());
            donor.labels.filter(|l| Some(l.len()) == classes)
        }
    };
    let mut artifact = ModelArtifact::from_path(path)?;
    artifact.name = name;
    artifact.io_schema = Some(schema.clone());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(ModelBundle { dir, manifest, io_schema: schema, artifact, labels })
}
