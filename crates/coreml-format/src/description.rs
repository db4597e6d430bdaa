//! The model description: model type, metadata, and features mapped to `inference_api` specs.

use std::collections::BTreeMap;

use coreml_proto::proto as pb;
use inference_api::{DType, Dim, FeatureKind, ImageFormat, TensorSpec};

/// What kind of model the spec holds (`Model.type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    /// An ML Program (MIL); what current converters produce.
    MlProgram,
    /// A legacy neural network (plain, classifier or regressor).
    NeuralNetwork {
        /// `""`, `classifier` or `regressor`.
        flavor: String,
    },
    /// A pipeline of models (plain, classifier or regressor).
    Pipeline {
        /// `""`, `classifier` or `regressor`.
        flavor: String,
    },
    /// Any other model type, by its protobuf field name.
    Other(String),
    /// The spec declares no model type.
    Missing,
}

impl ModelType {
    /// Classifies a spec.
    pub fn of(model: &pb::Model) -> ModelType {
        use pb::model::Type as T;
        let flavor = |s: &str| s.to_string();
        match &model.r#type {
            None => ModelType::Missing,
            Some(T::MlProgram(_)) => ModelType::MlProgram,
            Some(T::NeuralNetwork(_)) => ModelType::NeuralNetwork { flavor: flavor("") },
            Some(T::NeuralNetworkClassifier(_)) => {
                ModelType::NeuralNetwork { flavor: flavor("classifier") }
            }
            Some(T::NeuralNetworkRegressor(_)) => {
                ModelType::NeuralNetwork { flavor: flavor("regressor") }
            }
            Some(T::Pipeline(_)) => ModelType::Pipeline { flavor: flavor("") },
            Some(T::PipelineClassifier(_)) => ModelType::Pipeline { flavor: flavor("classifier") },
            Some(T::PipelineRegressor(_)) => ModelType::Pipeline { flavor: flavor("regressor") },
            Some(other) => {
                let dbg = format!("{other:?}");
                let name = dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("unknown");
                ModelType::Other(name.to_string())
            }
        }
    }
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelType::MlProgram => f.write_str("mlProgram"),
            ModelType::NeuralNetwork { flavor } if flavor.is_empty() => {
                f.write_str("neuralNetwork")
            }
            ModelType::NeuralNetwork { flavor } => write!(f, "neuralNetwork ({flavor})"),
            ModelType::Pipeline { flavor } if flavor.is_empty() => f.write_str("pipeline"),
            ModelType::Pipeline { flavor } => write!(f, "pipeline ({flavor})"),
            ModelType::Other(name) => f.write_str(name),
            ModelType::Missing => f.write_str("(none)"),
        }
    }
}

/// Model metadata (author, license, ...); empty strings when absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Author.
    pub author: String,
    /// License.
    pub license: String,
    /// Version string.
    pub version: String,
    /// Short description.
    pub short_description: String,
    /// User-defined key/value pairs (e.g. `com.github.apple.coremltools.version`).
    pub user_defined: BTreeMap<String, String>,
}

impl Metadata {
    pub(crate) fn from_proto(m: Option<&pb::Metadata>) -> Metadata {
        let Some(m) = m else { return Metadata::default() };
        Metadata {
            author: m.author.clone(),
            license: m.license.clone(),
            version: m.version_string.clone(),
            short_description: m.short_description.clone(),
            user_defined: m.user_defined.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// One declared input or output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Feature {
    /// Feature name.
    pub name: String,
    /// Description text from the spec.
    pub description: String,
    /// Whether the feature may be omitted.
    pub optional: bool,
    /// Human-readable type, e.g. `multi_array<f32>`, `image<rgb>`, `double`, `string`.
    pub type_name: String,
    /// The feature as a tensor spec; `None` when it is not a tensor the project can carry
    /// (double arrays, strings, dictionaries, sequences...).
    pub spec: Option<TensorSpec>,
}

fn range_dim(lower: u64, upper: i64) -> Dim {
    let min = usize::try_from(lower).unwrap_or(usize::MAX);
    let max = usize::try_from(upper).ok();
    match max {
        Some(m) if m == min => Dim::Fixed(m),
        _ => Dim::Range { min, max },
    }
}

fn dim_of(size: i64) -> Result<Dim, String> {
    usize::try_from(size).map(Dim::Fixed).map_err(|_| format!("negative dimension {size}"))
}

/// Shape of a multi-array feature, flexible dimensions as [`Dim::Range`].
fn array_shape(a: &pb::ArrayFeatureType) -> Result<Vec<Dim>, String> {
    use pb::array_feature_type::ShapeFlexibility as F;
    match &a.shape_flexibility {
        Some(F::ShapeRange(r)) if !r.size_ranges.is_empty() => {
            Ok(r.size_ranges.iter().map(|s| range_dim(s.lower_bound, s.upper_bound)).collect())
        }
        Some(F::EnumeratedShapes(e)) if !e.shapes.is_empty() => {
            let rank = e.shapes[0].shape.len();
            if e.shapes.iter().any(|s| s.shape.len() != rank) {
                return Err("enumerated shapes of different ranks".into());
            }
            (0..rank)
                .map(|d| {
                    let sizes: Vec<i64> = e.shapes.iter().map(|s| s.shape[d]).collect();
                    let lo = sizes.iter().copied().min().unwrap_or(0);
                    let hi = sizes.iter().copied().max().unwrap_or(0);
                    if lo < 0 {
                        return Err(format!("negative dimension {lo}"));
                    }
                    Ok(if lo == hi { Dim::Fixed(lo as usize) } else { range_dim(lo as u64, hi) })
                })
                .collect()
        }
        _ => a.shape.iter().map(|&s| dim_of(s)).collect(),
    }
}

impl Feature {
    /// Converts a feature description; `Err` is plain text (the caller names the file).
    pub(crate) fn from_proto(f: &pb::FeatureDescription) -> Result<Feature, String> {
        use pb::feature_type::Type as T;
        let ctx = |e: String| format!("feature `{}`: {e}", f.name);
        let ty = f.r#type.as_ref();
        let (type_name, spec) = match ty.and_then(|t| t.r#type.as_ref()) {
            None => ("(no type)".to_string(), None),
            Some(T::MultiArrayType(a)) => {
                use pb::array_feature_type::ArrayDataType as A;
                let (name, dtype) = match A::try_from(a.data_type) {
                    Ok(A::Float32) => ("f32", Some(DType::F32)),
                    Ok(A::Float16) => ("f16", Some(DType::F16)),
                    Ok(A::Int32) => ("i32", Some(DType::I32)),
                    Ok(A::Int8) => ("i8", Some(DType::I8)),
                    Ok(A::Double) => ("f64", None),
                    _ => return Err(ctx(format!("unknown array data type {}", a.data_type))),
                };
                let shape = array_shape(a).map_err(ctx)?;
                let spec = dtype.map(|dtype| TensorSpec {
                    name: f.name.clone(),
                    dtype,
                    shape,
                    kind: FeatureKind::MultiArray,
                });
                (format!("multi_array<{name}>"), spec)
            }
            Some(T::ImageType(img)) => {
                use pb::image_feature_type::ColorSpace as C;
                let (format, channels, dtype, cname) = match C::try_from(img.color_space) {
                    Ok(C::Rgb) => (ImageFormat::Rgb, 3, DType::U8, "rgb"),
                    Ok(C::Bgr) => (ImageFormat::Bgr, 3, DType::U8, "bgr"),
                    Ok(C::Grayscale) => (ImageFormat::Gray, 1, DType::U8, "gray"),
                    Ok(C::GrayscaleFloat16) => (ImageFormat::Gray, 1, DType::F16, "gray_f16"),
                    _ => return Err(ctx(format!("unknown color space {}", img.color_space))),
                };
                let width = usize::try_from(img.width).map_err(|_| ctx("negative width".into()))?;
                let height =
                    usize::try_from(img.height).map_err(|_| ctx("negative height".into()))?;
                let (mut hdim, mut wdim) = (Dim::Fixed(height), Dim::Fixed(width));
                use pb::image_feature_type::SizeFlexibility as S;
                match &img.size_flexibility {
                    Some(S::ImageSizeRange(r)) => {
                        if let Some(h) = r.height_range {
                            hdim = range_dim(h.lower_bound, h.upper_bound);
                        }
                        if let Some(w) = r.width_range {
                            wdim = range_dim(w.lower_bound, w.upper_bound);
                        }
                    }
                    Some(S::EnumeratedSizes(e)) if !e.sizes.is_empty() => {
                        let span = |v: Vec<u64>| {
                            let lo = v.iter().copied().min().unwrap_or(0);
                            let hi = v.iter().copied().max().unwrap_or(0);
                            range_dim(lo, i64::try_from(hi).unwrap_or(-1))
                        };
                        hdim = span(e.sizes.iter().map(|s| s.height).collect());
                        wdim = span(e.sizes.iter().map(|s| s.width).collect());
                    }
                    _ => {}
                }
                // The one image convention of every engine: [height, width, channels], R, G, B
                // (or gray); the engine applies the model's colour layout (crate::image).
                let spec = TensorSpec {
                    name: f.name.clone(),
                    dtype,
                    shape: vec![hdim, wdim, Dim::Fixed(channels)],
                    kind: FeatureKind::Image { width, height, format },
                };
                (format!("image<{cname}>"), Some(spec))
            }
            Some(T::Int64Type(_)) => {
                ("int64".to_string(), Some(TensorSpec::fixed(&f.name, DType::I64, &[1])))
            }
            Some(T::DoubleType(_)) => ("double".to_string(), None),
            Some(T::StringType(_)) => ("string".to_string(), None),
            Some(T::DictionaryType(_)) => ("dictionary".to_string(), None),
            Some(T::SequenceType(_)) => ("sequence".to_string(), None),
            Some(T::StateType(_)) => ("state".to_string(), None),
        };
        Ok(Feature {
            name: f.name.clone(),
            description: f.short_description.clone(),
            optional: ty.is_some_and(|t| t.is_optional),
            type_name,
            spec,
        })
    }
}
