//! Tensor specifications, model I/O schemas, and the one place inputs are validated.

use crate::{DType, Error, NamedTensors, Result, Tensor};

/// One dimension of a declared shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Dim {
    /// Exactly this size.
    Fixed(usize),
    /// Any size in `min..=max` (`max` None: unbounded), from flexible-shape models.
    Range {
        /// Smallest accepted size.
        min: usize,
        /// Largest accepted size, if bounded.
        max: Option<usize>,
    },
}

impl Dim {
    /// True when `size` fits this dimension.
    pub fn accepts(&self, size: usize) -> bool {
        match *self {
            Dim::Fixed(d) => d == size,
            Dim::Range { min, max } => size >= min && max.is_none_or(|m| size <= m),
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Range { min, max: Some(max) } => write!(f, "{min}..={max}"),
            Dim::Range { min, max: None } => write!(f, "{min}.."),
        }
    }
}

/// Pixel layout of an image feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ImageFormat {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red.
    Bgr,
    /// One grayscale channel.
    Gray,
}

/// How a feature is presented to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
pub enum FeatureKind {
    /// A dense multi-dimensional array.
    #[default]
    MultiArray,
    /// An image of a fixed size and pixel layout (Core ML image features).
    Image {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Pixel layout.
        format: ImageFormat,
    },
}

/// Declared name, element type, shape and kind of one input or output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TensorSpec {
    /// Feature name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Declared shape.
    pub shape: Vec<Dim>,
    /// Multi-array or image.
    #[cfg_attr(feature = "serde", serde(default))]
    pub kind: FeatureKind,
}

impl TensorSpec {
    /// A multi-array spec with a fixed shape.
    pub fn fixed(name: impl Into<String>, dtype: DType, shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.iter().map(|&d| Dim::Fixed(d)).collect(),
            kind: FeatureKind::MultiArray,
        }
    }

    /// The shape as plain sizes when every dimension is fixed.
    pub fn fixed_shape(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(|d| if let Dim::Fixed(n) = d { Some(*n) } else { None }).collect()
    }

    /// The declared shape as text, e.g. `[1, 3, 224, 224]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(", "))
    }

    /// Checks one tensor against this spec.
    pub fn check(&self, tensor: &Tensor) -> Result<()> {
        if tensor.dtype() != self.dtype {
            return Err(Error::invalid_input(
                &self.name,
                format!("dtype {}", self.dtype),
                format!("dtype {}", tensor.dtype()),
            ));
        }
        let shape = tensor.shape();
        let fits = shape.len() == self.shape.len()
            && self.shape.iter().zip(shape).all(|(d, &s)| d.accepts(s));
        if !fits {
            return Err(Error::invalid_input(
                &self.name,
                format!("shape {}", self.shape_string()),
                format!("shape {shape:?}"),
            ));
        }
        Ok(())
    }
}

/// A model's inputs and outputs, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IoSchema {
    /// Inputs the model takes.
    pub inputs: Vec<TensorSpec>,
    /// Outputs the model produces.
    pub outputs: Vec<TensorSpec>,
    /// For a classifier: which output holds the class scores and what each index means.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub classifier: Option<ClassLabels>,
}

/// A classifier's class labels (Core ML classifier specs carry them in the model): the output
/// whose last dimension indexes the classes, and one label per index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClassLabels {
    /// Name of the output holding one score (probability or logit) per class.
    pub output: String,
    /// Label of each class, in index order (integer labels as decimal text).
    pub labels: Vec<String>,
}

impl IoSchema {
    /// A schema of plain inputs and outputs (not a classifier).
    pub fn new(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> IoSchema {
        IoSchema { inputs, outputs, classifier: None }
    }

    /// The input spec called `name`.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The output spec called `name`.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// Checks caller inputs: every declared input present with the right dtype and shape, and
    /// nothing undeclared. The error names the tensor, what was expected and what came.
    pub fn validate_inputs(&self, inputs: &NamedTensors) -> Result<()> {
        for (name, _) in inputs.iter() {
            if self.input(name).is_none() {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::invalid_input(
                    name,
                    format!("one of the model's inputs {known:?}"),
                    "an input the model does not declare",
                ));
            }
        }
        for spec in &self.inputs {
            let tensor = inputs.get(&spec.name).ok_or_else(|| {
                Error::invalid_input(
                    &spec.name,
                    format!("a {} tensor of shape {}", spec.dtype, spec.shape_string()),
                    "nothing (input missing)",
                )
            })?;
            spec.check(tensor)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> IoSchema {
        IoSchema {
            inputs: vec![TensorSpec::fixed("input", DType::F32, &[1, 3, 4, 4])],
            outputs: vec![TensorSpec::fixed("logits", DType::F32, &[1, 10])],
            classifier: None,
        }
    }

    #[test]
    fn validation_names_tensor_expected_and_got() {
        let s = schema();
        let good =
            NamedTensors::new().with("input", Tensor::zeros([1, 3, 4, 4], DType::F32).unwrap());
        assert!(s.validate_inputs(&good).is_ok());

        let bad_shape =
            NamedTensors::new().with("input", Tensor::zeros([1, 3, 5, 4], DType::F32).unwrap());
        let e = s.validate_inputs(&bad_shape).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid input `input`: expected shape [1, 3, 4, 4], got shape [1, 3, 5, 4]"
        );

        let bad_dtype =
            NamedTensors::new().with("input", Tensor::zeros([1, 3, 4, 4], DType::F16).unwrap());
        let e = s.validate_inputs(&bad_dtype).unwrap_err();
        assert_eq!(e.to_string(), "invalid input `input`: expected dtype f32, got dtype f16");

        let wrong_name =
            NamedTensors::new().with("image", Tensor::zeros([1, 3, 4, 4], DType::F32).unwrap());
        let e = s.validate_inputs(&wrong_name).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput { tensor, .. } if tensor == "image"), "{e}");

        let e = s.validate_inputs(&NamedTensors::new()).unwrap_err();
        assert!(e.to_string().contains("input missing"), "{e}");
    }

    #[test]
    fn ranges_accept_their_span() {
        let d = Dim::Range { min: 2, max: Some(4) };
        assert!(!d.accepts(1) && d.accepts(2) && d.accepts(4) && !d.accepts(5));
        assert!(Dim::Range { min: 1, max: None }.accepts(10_000));
    }
}
