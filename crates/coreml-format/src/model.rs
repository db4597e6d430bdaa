//! Opening `.mlpackage` directories and `.mlmodel` files, and the lazy weight store.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use coreml_proto::proto as pb;
use inference_api::{ArtifactFormat, IoSchema};
use prost::Message;

use crate::blob::BlobFile;
use crate::classifier::Classifier;
use crate::description::{Feature, Metadata, ModelType};
use crate::error::{FormatError, MAX_PACKAGE_MANIFEST_BYTES, MAX_SPEC_BYTES, Result, read_file};
use crate::program::{Function, Program};
use crate::value::{BlobRef, ConstData, ConstValue};

/// The weight files of a model, each read into memory once, on first use, and shared.
///
/// Files are read whole rather than memory-mapped: the crate forbids `unsafe`, and mapping a
/// file is unsafe (another process may change it). Weight files of the models we run are
/// tens of megabytes, read once per opened model.
#[derive(Debug)]
pub struct WeightStore {
    base: PathBuf,
    files: Mutex<BTreeMap<String, Arc<BlobFile>>>,
}

impl WeightStore {
    /// A store resolving `@model_path/...` names against `base` (the folder holding the spec).
    pub fn new(base: impl Into<PathBuf>) -> WeightStore {
        WeightStore { base: base.into(), files: Mutex::new(BTreeMap::new()) }
    }

    /// Folder `@model_path` stands for.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Path on disk of a weight file named in the spec. Names must stay inside the package:
    /// absolute paths and `..` are refused.
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        let rel = name.strip_prefix("@model_path/").unwrap_or(name);
        let rel_path = Path::new(rel);
        let inside = rel_path.components().all(|c| matches!(c, Component::Normal(_)));
        if rel.is_empty() || !inside {
            return Err(FormatError::malformed(
                &self.base,
                format!("weight file name `{name}` does not name a file inside the model"),
            ));
        }
        Ok(self.base.join(rel_path))
    }

    /// Puts an in-memory weight file under the name the spec uses (tests, fuzzing, embedding).
    pub fn insert(&self, name: impl Into<String>, file: BlobFile) {
        self.lock().insert(name.into(), Arc::new(file));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<BlobFile>>> {
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The weight file named `name` in the spec, read and checked on first use.
    pub fn file(&self, name: &str) -> Result<Arc<BlobFile>> {
        let mut files = self.lock();
        if let Some(f) = files.get(name) {
            return Ok(f.clone());
        }
        let path = self.path_of(name)?;
        let file = Arc::new(BlobFile::open(&path)?);
        files.insert(name.to_string(), file.clone());
        Ok(file)
    }

    /// Loads the data of a blob-backed value, checking it against the declared type.
    pub fn resolve(&self, value: &ConstValue) -> Result<ConstValue> {
        let ConstData::Blob(BlobRef { file, offset }) = &value.data else {
            return Ok(value.clone());
        };
        let bf = self.file(file)?;
        let blob = bf.blob(*offset)?;
        value.with_blob_data(&blob).map_err(|e| FormatError::malformed(bf.path(), e))
    }
}

/// An opened Core ML model: the decoded spec, its description, the typed ML Program (if it is
/// one), and lazy access to its weights.
#[derive(Debug)]
pub struct MlModel {
    path: PathBuf,
    format: ArtifactFormat,
    spec_path: PathBuf,
    spec: pb::Model,
    inputs: Vec<Feature>,
    outputs: Vec<Feature>,
    metadata: Metadata,
    program: Option<Program>,
    classifier: Option<Classifier>,
    weights: WeightStore,
}

/// Finds the root model spec of a package through its `Manifest.json`.
fn package_spec_path(pkg: &Path) -> Result<PathBuf> {
    let manifest = pkg.join("Manifest.json");
    let bytes = read_file(&manifest, MAX_PACKAGE_MANIFEST_BYTES)?;
    let bad = |p: String| FormatError::malformed(&manifest, p);
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let root = json
        .get("rootModelIdentifier")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("no `rootModelIdentifier` string".into()))?;
    let rel = json
        .get("itemInfoEntries")
        .and_then(|e| e.get(root))
        .and_then(|e| e.get("path"))
        .and_then(|p| p.as_str())
        .ok_or_else(|| bad(format!("`itemInfoEntries` has no path for root model `{root}`")))?;
    let rel_path = Path::new(rel);
    if rel.is_empty() || !rel_path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad(format!("root model path `{rel}` is not a path inside the package")));
    }
    Ok(pkg.join("Data").join(rel_path))
}

impl MlModel {
    /// Opens a `.mlpackage` directory or a `.mlmodel` file.
    pub fn open(path: impl AsRef<Path>) -> Result<MlModel> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mlmodelc")) {
            return Err(FormatError::unsupported(
                path,
                "a compiled model (.mlmodelc) has no readable spec; open the .mlpackage or \
                 .mlmodel it was compiled from",
            ));
        }
        let is_package =
            path.is_dir() || path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mlpackage"));
        let (format, spec_path) = if is_package {
            (ArtifactFormat::MlPackage, package_spec_path(path)?)
        } else {
            (ArtifactFormat::MlModel, path.to_path_buf())
        };
        let bytes = read_file(&spec_path, MAX_SPEC_BYTES)?;
        let base = spec_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut model = MlModel::from_spec_bytes(&bytes, &spec_path, WeightStore::new(base))?;
        model.path = path.to_path_buf();
        model.format = format;
        Ok(model)
    }

    /// Decodes a spec from memory; `spec_path` names it in errors, `weights` resolves blobs.
    pub fn from_spec_bytes(bytes: &[u8], spec_path: &Path, weights: WeightStore) -> Result<Self> {
        let bad = |p: String| FormatError::malformed(spec_path, p);
        let spec = pb::Model::decode(bytes)
            .map_err(|e| bad(format!("not a Core ML model protobuf: {e}")))?;
        if spec.specification_version <= 0 {
            return Err(bad(format!(
                "specification version {} (expected 1 or more): not a Core ML model",
                spec.specification_version
            )));
        }
        let desc = spec.description.as_ref();
        let (ins, outs) = match desc {
            Some(d) if d.input.is_empty() && d.output.is_empty() && !d.functions.is_empty() => {
                let f = d
                    .functions
                    .iter()
                    .find(|f| f.name == d.default_function_name)
                    .unwrap_or(&d.functions[0]);
                (f.input.as_slice(), f.output.as_slice())
            }
            Some(d) => (d.input.as_slice(), d.output.as_slice()),
            None => (&[][..], &[][..]),
        };
        let features = |fs: &[pb::FeatureDescription]| -> Result<Vec<Feature>> {
            fs.iter().map(|f| Feature::from_proto(f).map_err(bad)).collect()
        };
        let program = match &spec.r#type {
            Some(pb::model::Type::MlProgram(p)) => {
                Some(Program::from_proto(p).map_err(|e| bad(format!("ML Program: {e}")))?)
            }
            _ => None,
        };
        let classifier = match (program.as_ref().and_then(Program::main), desc) {
            (Some(main), Some(d)) => crate::classifier::read(
                main,
                &d.predicted_feature_name,
                &d.predicted_probabilities_name,
            )
            .map_err(|e| bad(format!("classifier: {e}")))?,
            _ => None,
        };
        let mut outputs = features(outs)?;
        if let Some(c) = &classifier {
            // The dictionary of probabilities is carried as the scores tensor.
            for f in outputs.iter_mut().filter(|f| f.name == c.probabilities_output) {
                f.spec = Some(c.probabilities_spec());
            }
        }
        Ok(MlModel {
            path: spec_path.to_path_buf(),
            format: ArtifactFormat::MlModel,
            spec_path: spec_path.to_path_buf(),
            inputs: features(ins)?,
            outputs,
            metadata: Metadata::from_proto(desc.and_then(|d| d.metadata.as_ref())),
            program,
            classifier,
            spec,
            weights,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `MlPackage` or `MlModel`.
    pub fn format(&self) -> ArtifactFormat {
        self.format
    }

    /// The spec file (`.../Data/com.apple.CoreML/model.mlmodel` in a package).
    pub fn spec_path(&self) -> &Path {
        &self.spec_path
    }

    /// The raw decoded protobuf, for anything this API does not expose.
    pub fn spec(&self) -> &pb::Model {
        &self.spec
    }

    /// `Model.specificationVersion` (e.g. 7 for macOS 13 / iOS 16).
    pub fn spec_version(&self) -> i32 {
        self.spec.specification_version
    }

    /// The model type.
    pub fn model_type(&self) -> ModelType {
        ModelType::of(&self.spec)
    }

    /// Metadata (author, license, version, description, user-defined).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Declared inputs, in order.
    pub fn inputs(&self) -> &[Feature] {
        &self.inputs
    }

    /// Declared outputs, in order.
    pub fn outputs(&self) -> &[Feature] {
        &self.outputs
    }

    /// The classifier of an ML Program converted with a `ClassifierConfig` (labels and the
    /// names of its outputs); `None` for other models.
    pub fn classifier(&self) -> Option<&Classifier> {
        self.classifier.as_ref()
    }

    /// Inputs and outputs as an [`IoSchema`]; fails naming the feature when one is not a tensor
    /// the project can carry (e.g. a double array or a string). For a classifier the labels
    /// are [`IoSchema::classifier`], its probabilities an f32 scores tensor, and a string
    /// predicted-label output is left out (it is the arg-max of the scores, see
    /// [`crate::classifier`]).
    pub fn io_schema(&self) -> Result<IoSchema> {
        if let Some(schema) = crate::neural_network::schema(self)? {
            return Ok(schema);
        }
        let string_label =
            self.classifier.as_ref().filter(|c| !c.int_labels).map(|c| c.label_output.as_str());
        let specs = |fs: &[Feature]| -> Result<Vec<_>> {
            fs.iter()
                .filter(|f| Some(f.name.as_str()) != string_label)
                .map(|f| {
                    f.spec.clone().ok_or_else(|| {
                        FormatError::unsupported(
                            &self.spec_path,
                            format!("feature `{}` of type {} is not a tensor", f.name, f.type_name),
                        )
                    })
                })
                .collect()
        };
        let mut outputs = specs(&self.outputs)?;
        if let Some(main) = self.program.as_ref().and_then(Program::main) {
            for spec in outputs.iter_mut().filter(|s| s.shape.is_empty()) {
                if let Some(shape) = returned_shape(main, &spec.name) {
                    spec.shape = shape;
                }
            }
        }
        Ok(IoSchema {
            inputs: specs(&self.inputs)?,
            outputs,
            classifier: self.classifier.as_ref().map(Classifier::class_labels),
        })
    }

    /// The typed ML Program, when the model is one.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_ref()
    }

    /// The program's `main` function; an error when the model is not an ML Program.
    pub fn main_function(&self) -> Result<&Function> {
        let program = self.program.as_ref().ok_or_else(|| {
            FormatError::unsupported(
                &self.spec_path,
                format!("model type is {}, not an ML Program", self.model_type()),
            )
        })?;
        program.main().ok_or_else(|| {
            FormatError::malformed(&self.spec_path, "ML Program has no `main` function")
        })
    }

    /// The weight store (lazy, shared by every resolve).
    pub fn weights(&self) -> &WeightStore {
        &self.weights
    }

    /// A value with its blob data loaded and checked; non-blob values are returned as they are.
    pub fn resolve(&self, value: &ConstValue) -> Result<ConstValue> {
        self.weights.resolve(value)
    }

    /// The resolved value of the `const` op that defines `name` in `main`; `Ok(None)` when
    /// `name` is not defined by a const.
    pub fn const_value(&self, name: &str) -> Result<Option<ConstValue>> {
        match self.main_function()?.const_value(name) {
            Some(v) => self.resolve(v).map(Some),
            None => Ok(None),
        }
    }
}

/// The shape of the value `main` returns as `name`, from its MIL type: coremltools leaves the
/// output description of a flexible-shape model without a shape, while the program's type
/// still knows the rank and the fixed sizes. Unknown sizes become open ranges; `None` for a
/// scalar, a non-tensor or a variadic rank.
pub(crate) fn returned_shape(main: &Function, name: &str) -> Option<Vec<inference_api::Dim>> {
    use crate::{MilDim, ValueType};
    use inference_api::Dim;
    let ty = main
        .block
        .producer(name)
        .and_then(|op| op.outputs.iter().find(|o| o.name == name))
        .or_else(|| main.inputs.iter().find(|i| i.name == name))
        .map(|o| &o.ty)?;
    let ValueType::Tensor { shape, .. } = ty else { return None };
    if shape.is_empty() {
        return None;
    }
    shape
        .iter()
        .map(|d| match *d {
            MilDim::Fixed(n) => usize::try_from(n).ok().map(Dim::Fixed),
            MilDim::Unknown { variadic: false } => Some(Dim::Range { min: 1, max: None }),
            MilDim::Unknown { variadic: true } => None,
        })
        .collect()
}
