//! MIL element types and value types (`tensor<fp16, [1, 3, 224, 224]>`, lists, tuples, ...).

use coreml_proto::proto::mil_spec;
use inference_api::DType;

/// Element type of a MIL tensor (`MILSpec.DataType`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits (fn: finite, NaN only).
    F8E4M3,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits.
    F8E5M2,
    /// IEEE half (`fp16`).
    F16,
    /// IEEE single (`fp32`).
    F32,
    /// IEEE double (`fp64`).
    F64,
    /// bfloat16.
    Bf16,
    /// Signed 4-bit integer, packed.
    I4,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 1-bit integer, packed.
    U1,
    /// Unsigned 2-bit integer, packed.
    U2,
    /// Unsigned 3-bit integer, packed.
    U3,
    /// Unsigned 4-bit integer, packed.
    U4,
    /// Unsigned 6-bit integer, packed.
    U6,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
}

impl ScalarType {
    /// From the protobuf enum value; `None` for unknown or unused codes.
    pub fn from_proto(code: i32) -> Option<ScalarType> {
        use mil_spec::DataType as D;
        Some(match D::try_from(code).ok()? {
            D::UnusedType => return None,
            D::Bool => ScalarType::Bool,
            D::String => ScalarType::String,
            D::Float8e4m3fn => ScalarType::F8E4M3,
            D::Float8e5m2 => ScalarType::F8E5M2,
            D::Float16 => ScalarType::F16,
            D::Float32 => ScalarType::F32,
            D::Float64 => ScalarType::F64,
            D::Bfloat16 => ScalarType::Bf16,
            D::Int4 => ScalarType::I4,
            D::Int8 => ScalarType::I8,
            D::Int16 => ScalarType::I16,
            D::Int32 => ScalarType::I32,
            D::Int64 => ScalarType::I64,
            D::Uint1 => ScalarType::U1,
            D::Uint2 => ScalarType::U2,
            D::Uint3 => ScalarType::U3,
            D::Uint4 => ScalarType::U4,
            D::Uint6 => ScalarType::U6,
            D::Uint8 => ScalarType::U8,
            D::Uint16 => ScalarType::U16,
            D::Uint32 => ScalarType::U32,
            D::Uint64 => ScalarType::U64,
        })
    }

    /// Bits per element (strings count as 0).
    pub fn bits(self) -> u32 {
        use ScalarType as S;
        match self {
            S::String => 0,
            S::U1 => 1,
            S::U2 => 2,
            S::U3 => 3,
            S::I4 | S::U4 => 4,
            S::U6 => 6,
            S::Bool | S::I8 | S::U8 | S::F8E4M3 | S::F8E5M2 => 8,
            S::F16 | S::Bf16 | S::I16 | S::U16 => 16,
            S::F32 | S::I32 | S::U32 => 32,
            S::F64 | S::I64 | S::U64 => 64,
        }
    }

    /// MIL spelling (`fp16`, `fp32`, `int32`, `uint8`, `bool`, ...).
    pub fn mil_name(self) -> &'static str {
        use ScalarType as S;
        match self {
            S::Bool => "bool",
            S::String => "string",
            S::F8E4M3 => "fp8e4m3fn",
            S::F8E5M2 => "fp8e5m2",
            S::F16 => "fp16",
            S::F32 => "fp32",
            S::F64 => "fp64",
            S::Bf16 => "bf16",
            S::I4 => "int4",
            S::I8 => "int8",
            S::I16 => "int16",
            S::I32 => "int32",
            S::I64 => "int64",
            S::U1 => "uint1",
            S::U2 => "uint2",
            S::U3 => "uint3",
            S::U4 => "uint4",
            S::U6 => "uint6",
            S::U8 => "uint8",
            S::U16 => "uint16",
            S::U32 => "uint32",
            S::U64 => "uint64",
        }
    }

    /// The project dtype with the same element representation, if there is one.
    pub fn to_dtype(self) -> Option<DType> {
        Some(match self {
            ScalarType::F32 => DType::F32,
            ScalarType::F16 => DType::F16,
            ScalarType::I32 => DType::I32,
            ScalarType::I64 => DType::I64,
            ScalarType::I8 => DType::I8,
            ScalarType::U8 => DType::U8,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ScalarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mil_name())
    }
}

/// One dimension of a MIL tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MilDim {
    /// A known size.
    Fixed(u64),
    /// A size known only at run time; `variadic` means any number of dimensions.
    Unknown {
        /// Stands for zero or more dimensions.
        variadic: bool,
    },
}

/// Type of a MIL value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A tensor; rank 0 is a scalar.
    Tensor {
        /// Element type.
        dtype: ScalarType,
        /// Dimensions, outermost first. Empty with `rank == 0` for scalars.
        shape: Vec<MilDim>,
    },
    /// A list of values of one type.
    List {
        /// Element type.
        element: Box<ValueType>,
        /// Length, when declared.
        length: Option<MilDim>,
    },
    /// A tuple.
    Tuple(Vec<ValueType>),
    /// A dictionary.
    Dictionary {
        /// Key type.
        key: Box<ValueType>,
        /// Value type.
        value: Box<ValueType>,
    },
    /// A state (stateful models) wrapping a tensor type.
    State(Box<ValueType>),
    /// No type was given.
    Unknown,
}

impl ValueType {
    /// Converts the protobuf type (`None` becomes [`ValueType::Unknown`]).
    pub fn from_proto(t: Option<&mil_spec::ValueType>) -> Result<ValueType, String> {
        use mil_spec::value_type::Type as T;
        let conv_box = |b: &Option<Box<mil_spec::ValueType>>| -> Result<Box<ValueType>, String> {
            Ok(Box::new(ValueType::from_proto(b.as_deref())?))
        };
        Ok(match t.and_then(|t| t.r#type.as_ref()) {
            None => ValueType::Unknown,
            Some(T::TensorType(tt)) => {
                let dtype = ScalarType::from_proto(tt.data_type)
                    .ok_or_else(|| format!("unknown tensor data type code {}", tt.data_type))?;
                let shape: Vec<MilDim> = tt.dimensions.iter().map(dim_from_proto).collect();
                if tt.rank >= 0 && tt.rank as u64 != shape.len() as u64 {
                    return Err(format!(
                        "tensor type declares rank {} but lists {} dimensions",
                        tt.rank,
                        shape.len()
                    ));
                }
                ValueType::Tensor { dtype, shape }
            }
            Some(T::ListType(l)) => ValueType::List {
                element: conv_box(&l.r#type)?,
                length: l.length.as_ref().map(dim_from_proto),
            },
            Some(T::TupleType(t)) => ValueType::Tuple(
                t.types.iter().map(|t| ValueType::from_proto(Some(t))).collect::<Result<_, _>>()?,
            ),
            Some(T::DictionaryType(d)) => ValueType::Dictionary {
                key: conv_box(&d.key_type)?,
                value: conv_box(&d.value_type)?,
            },
            Some(T::StateType(s)) => ValueType::State(conv_box(&s.wrapped_type)?),
        })
    }

    /// Element type and fixed shape of a tensor type whose dimensions are all known.
    pub fn fixed_tensor(&self) -> Option<(ScalarType, Vec<usize>)> {
        match self {
            ValueType::Tensor { dtype, shape } => {
                let dims = shape
                    .iter()
                    .map(|d| match d {
                        MilDim::Fixed(n) => usize::try_from(*n).ok(),
                        MilDim::Unknown { .. } => None,
                    })
                    .collect::<Option<Vec<usize>>>()?;
                Some((*dtype, dims))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueType::Tensor { dtype, shape } => {
                let dims: Vec<String> = shape
                    .iter()
                    .map(|d| match d {
                        MilDim::Fixed(n) => n.to_string(),
                        MilDim::Unknown { variadic: false } => "?".into(),
                        MilDim::Unknown { variadic: true } => "*".into(),
                    })
                    .collect();
                write!(f, "tensor<{dtype}, [{}]>", dims.join(", "))
            }
            ValueType::List { element, .. } => write!(f, "list<{element}>"),
            ValueType::Tuple(t) => {
                let parts: Vec<String> = t.iter().map(|t| t.to_string()).collect();
                write!(f, "tuple<{}>", parts.join(", "))
            }
            ValueType::Dictionary { key, value } => write!(f, "dict<{key}, {value}>"),
            ValueType::State(t) => write!(f, "state<{t}>"),
            ValueType::Unknown => f.write_str("?"),
        }
    }
}

fn dim_from_proto(d: &mil_spec::Dimension) -> MilDim {
    use mil_spec::dimension::Dimension as D;
    match &d.dimension {
        Some(D::Constant(c)) => MilDim::Fixed(c.size),
        Some(D::Unknown(u)) => MilDim::Unknown { variadic: u.variadic },
        None => MilDim::Unknown { variadic: false },
    }
}
