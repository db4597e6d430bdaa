//! Constant values: immediate tensors from the spec and blob references into weight files,
//! decoded into typed storage with checked element counts.

use coreml_proto::proto::mil_spec;
use half::{bf16, f16};

use crate::blob::{Blob, BlobDType};
use crate::types::{ScalarType, ValueType};

/// Where a blob-backed constant lives: the weight file named in the spec and the offset of its
/// metadata record. Resolve it with [`crate::MlModel::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobRef {
    /// File name as written in the spec, usually `@model_path/weights/weight.bin`.
    pub file: String,
    /// Offset of the blob's metadata record in that file.
    pub offset: u64,
}

/// Typed storage of a constant. The variant is how the data is stored; the declared element
/// type is [`ConstValue::dtype`] (e.g. fp16 data arrives as `F16`, int8 as `I8`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// IEEE half floats.
    F16(Vec<f16>),
    /// bfloat16 values.
    Bf16(Vec<bf16>),
    /// Signed bytes.
    I8(Vec<i8>),
    /// Unsigned bytes.
    U8(Vec<u8>),
    /// Signed 16-bit integers.
    I16(Vec<i16>),
    /// Unsigned 16-bit integers.
    U16(Vec<u16>),
    /// Signed 32-bit integers (also how immediate int8/int16/uint values often arrive).
    I32(Vec<i32>),
    /// Unsigned 32-bit integers.
    U32(Vec<u32>),
    /// Signed 64-bit integers.
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Strings.
    String(Vec<String>),
    /// Packed sub-byte integers or 8-bit floats, as stored; [`ConstValue::dtype`] says how.
    Raw(Vec<u8>),
    /// Items of a list, tuple or dictionary value (dictionaries as key, value, key, value...).
    Items(Vec<ConstValue>),
    /// Not loaded yet: data in a weight file.
    Blob(BlobRef),
}

/// A constant: declared element type, shape and data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConstValue {
    /// Declared element type. For list/tuple/dictionary values, the element type of the
    /// declared list (or `string` when there is none): look at the items instead.
    pub dtype: ScalarType,
    /// Shape, outermost first; empty for a scalar. For composite values, `[item count]`.
    pub shape: Vec<usize>,
    /// The data.
    pub data: ConstData,
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Bytes needed for `n` elements of `bits` bits each, packed.
fn packed_len(n: usize, bits: u32) -> Option<usize> {
    n.checked_mul(bits as usize).map(|b| b.div_ceil(8))
}

fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    b.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// Decodes little-endian bytes as elements of `dtype`; `None` for strings and bools.
fn decode_bytes(dtype: ScalarType, b: &[u8]) -> Option<ConstData> {
    use ScalarType as S;
    Some(match dtype {
        S::F32 => ConstData::F32(chunks(b, f32::from_le_bytes)),
        S::F64 => ConstData::F64(chunks(b, f64::from_le_bytes)),
        S::F16 => ConstData::F16(chunks(b, f16::from_le_bytes)),
        S::Bf16 => ConstData::Bf16(chunks(b, bf16::from_le_bytes)),
        S::I8 => ConstData::I8(b.iter().map(|&x| x as i8).collect()),
        S::U8 => ConstData::U8(b.to_vec()),
        S::I16 => ConstData::I16(chunks(b, i16::from_le_bytes)),
        S::U16 => ConstData::U16(chunks(b, u16::from_le_bytes)),
        S::I32 => ConstData::I32(chunks(b, i32::from_le_bytes)),
        S::U32 => ConstData::U32(chunks(b, u32::from_le_bytes)),
        S::I64 => ConstData::I64(chunks(b, i64::from_le_bytes)),
        S::U64 => ConstData::Raw(b.to_vec()),
        S::I4 | S::U1 | S::U2 | S::U3 | S::U4 | S::U6 | S::F8E4M3 | S::F8E5M2 => {
            ConstData::Raw(b.to_vec())
        }
        S::Bool | S::String => return None,
    })
}

/// The MIL element type a blob dtype stores.
pub fn blob_scalar_type(d: BlobDType) -> ScalarType {
    match d {
        BlobDType::F16 => ScalarType::F16,
        BlobDType::F32 => ScalarType::F32,
        BlobDType::U8 => ScalarType::U8,
        BlobDType::I8 => ScalarType::I8,
        BlobDType::Bf16 => ScalarType::Bf16,
        BlobDType::I16 => ScalarType::I16,
        BlobDType::U16 => ScalarType::U16,
        BlobDType::I4 => ScalarType::I4,
        BlobDType::USub(1) => ScalarType::U1,
        BlobDType::USub(2) => ScalarType::U2,
        BlobDType::USub(3) => ScalarType::U3,
        BlobDType::USub(6) => ScalarType::U6,
        BlobDType::USub(_) => ScalarType::U4,
        BlobDType::I32 => ScalarType::I32,
        BlobDType::U32 => ScalarType::U32,
        BlobDType::F8E4M3 => ScalarType::F8E4M3,
        BlobDType::F8E5M2 => ScalarType::F8E5M2,
    }
}

impl ConstValue {
    /// Converts a spec value of declared type `ty`. Errors say what is wrong, without the file
    /// (the caller adds it).
    pub(crate) fn from_proto(v: &mil_spec::Value) -> Result<ConstValue, String> {
        use mil_spec::value::Value as V;
        let ty = ValueType::from_proto(v.r#type.as_ref())?;
        match &v.value {
            None => Err("value has neither immediate data nor a blob reference".into()),
            Some(V::BlobFileValue(b)) => {
                let (dtype, shape) = ty.fixed_tensor().ok_or_else(|| {
                    format!("blob value must have a tensor type with a fixed shape, has {ty}")
                })?;
                numel(&shape).ok_or("blob value shape overflows")?;
                let blob = BlobRef { file: b.file_name.clone(), offset: b.offset };
                Ok(ConstValue { dtype, shape, data: ConstData::Blob(blob) })
            }
            Some(V::ImmediateValue(iv)) => from_immediate(&ty, iv),
        }
    }

    /// Decodes a blob's bytes for this (blob-backed) value, checking dtype and size against the
    /// declared type. Errors are plain text; the caller names the file.
    pub fn with_blob_data(&self, blob: &Blob<'_>) -> Result<ConstValue, String> {
        let stored = blob_scalar_type(blob.dtype);
        if stored != self.dtype {
            return Err(format!(
                "blob at offset {} holds {} but the spec declares {}",
                blob.metadata_offset,
                stored.mil_name(),
                self.dtype.mil_name()
            ));
        }
        let n = numel(&self.shape).ok_or("shape overflows")?;
        let want = packed_len(n, self.dtype.bits()).ok_or("shape overflows")?;
        if blob.data.len() != want {
            return Err(format!(
                "blob at offset {} has {} bytes but shape {:?} of {} needs {want}",
                blob.metadata_offset,
                blob.data.len(),
                self.shape,
                self.dtype.mil_name()
            ));
        }
        let data = decode_bytes(self.dtype, blob.data).ok_or("blob of bool/string")?;
        Ok(ConstValue { dtype: self.dtype, shape: self.shape.clone(), data })
    }

    /// Number of elements the shape declares (1 for a scalar).
    pub fn element_count(&self) -> usize {
        numel(&self.shape).unwrap_or(usize::MAX)
    }

    /// Number of elements actually stored (packed types: the declared count when sizes agree).
    pub fn stored_len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::F64(v) => v.len(),
            ConstData::F16(v) => v.len(),
            ConstData::Bf16(v) => v.len(),
            ConstData::I8(v) => v.len(),
            ConstData::U8(v) => v.len(),
            ConstData::I16(v) => v.len(),
            ConstData::U16(v) => v.len(),
            ConstData::I32(v) => v.len(),
            ConstData::U32(v) => v.len(),
            ConstData::I64(v) => v.len(),
            ConstData::Bool(v) => v.len(),
            ConstData::String(v) => v.len(),
            ConstData::Items(v) => v.len(),
            ConstData::Raw(_) | ConstData::Blob(_) => self.element_count(),
        }
    }

    /// True when the data still lives in a weight file.
    pub fn is_blob(&self) -> bool {
        matches!(self.data, ConstData::Blob(_))
    }

    /// Size of the data in bytes as stored (packed size for sub-byte types).
    pub fn byte_len(&self) -> usize {
        packed_len(self.element_count(), self.dtype.bits()).unwrap_or(usize::MAX)
    }

    /// All elements widened or cast to f32; `None` for strings, packed, composite or unresolved
    /// blob data.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        Some(match &self.data {
            ConstData::F32(v) => v.clone(),
            ConstData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ConstData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            ConstData::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
            ConstData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ConstData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ConstData::I16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ConstData::U16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ConstData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ConstData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ConstData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
            _ => return None,
        })
    }

    /// All elements as i64; `None` for non-integral data (floats, strings, blobs...).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            ConstData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            ConstData::I64(v) => v.clone(),
            ConstData::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => return None,
        })
    }

    /// All elements as i32 (integers that do not fit give `None`).
    pub fn to_i32_vec(&self) -> Option<Vec<i32>> {
        self.to_i64_vec()?.into_iter().map(|x| i32::try_from(x).ok()).collect()
    }

    /// Elements as usize (negative or non-integral data gives `None`), e.g. a reshape shape.
    pub fn to_usize_vec(&self) -> Option<Vec<usize>> {
        self.to_i64_vec()?.into_iter().map(|x| usize::try_from(x).ok()).collect()
    }

    /// Booleans (integers: non-zero is true).
    pub fn to_bool_vec(&self) -> Option<Vec<bool>> {
        match &self.data {
            ConstData::Bool(v) => Some(v.clone()),
            _ => Some(self.to_i64_vec()?.into_iter().map(|x| x != 0).collect()),
        }
    }

    /// The strings of a string value.
    pub fn as_strings(&self) -> Option<&[String]> {
        match &self.data {
            ConstData::String(v) => Some(v),
            _ => None,
        }
    }

    /// The one string of a scalar string value (e.g. conv's `pad_type`).
    pub fn as_str(&self) -> Option<&str> {
        match self.as_strings()? {
            [s] => Some(s),
            _ => None,
        }
    }

    /// The one element of a single-element value as f32.
    pub fn scalar_f32(&self) -> Option<f32> {
        one(self.to_f32_vec()?)
    }

    /// The one element of a single-element integral value.
    pub fn scalar_i64(&self) -> Option<i64> {
        one(self.to_i64_vec()?)
    }

    /// The one element of a single-element boolean value.
    pub fn scalar_bool(&self) -> Option<bool> {
        one(self.to_bool_vec()?)
    }

    /// As an [`inference_api::Tensor`] when the storage has a project dtype (f32, f16, i32,
    /// i64, i8, u8) and the element count matches the shape.
    pub fn to_tensor(&self) -> Option<inference_api::Tensor> {
        use inference_api::TensorData as T;
        let data = match &self.data {
            ConstData::F32(v) => T::F32(v.clone()),
            ConstData::F16(v) => T::F16(v.clone()),
            ConstData::I32(v) => T::I32(v.clone()),
            ConstData::I64(v) => T::I64(v.clone()),
            ConstData::I8(v) => T::I8(v.clone()),
            ConstData::U8(v) => T::U8(v.clone()),
            _ => return None,
        };
        inference_api::Tensor::new(self.shape.clone(), data).ok()
    }
}

fn one<T>(v: Vec<T>) -> Option<T> {
    let mut it = v.into_iter();
    let x = it.next()?;
    it.next().is_none().then_some(x)
}

fn from_immediate(
    ty: &ValueType,
    iv: &mil_spec::value::ImmediateValue,
) -> Result<ConstValue, String> {
    use mil_spec::tensor_value::Value as TV;
    use mil_spec::value::immediate_value::Value as IV;
    let items = |values: &[mil_spec::Value]| -> Result<Vec<ConstValue>, String> {
        values.iter().map(ConstValue::from_proto).collect()
    };
    let composite = |items: Vec<ConstValue>| {
        let dtype = match ty {
            ValueType::List { element, .. } => match element.as_ref() {
                ValueType::Tensor { dtype, .. } => *dtype,
                _ => ScalarType::String,
            },
            _ => ScalarType::String,
        };
        ConstValue { dtype, shape: vec![items.len()], data: ConstData::Items(items) }
    };
    match &iv.value {
        None => Err("immediate value is empty".into()),
        Some(IV::Tuple(t)) => Ok(composite(items(&t.values)?)),
        Some(IV::List(l)) => Ok(composite(items(&l.values)?)),
        Some(IV::Dictionary(d)) => {
            let mut out = Vec::with_capacity(d.values.len().saturating_mul(2));
            for kv in &d.values {
                for part in [&kv.key, &kv.value] {
                    let part = part.as_ref().ok_or("dictionary entry without key or value")?;
                    out.push(ConstValue::from_proto(part)?);
                }
            }
            Ok(composite(out))
        }
        Some(IV::Tensor(t)) => {
            let (dtype, shape) = ty.fixed_tensor().ok_or_else(|| {
                format!("immediate tensor must have a fixed tensor type, has {ty}")
            })?;
            let n = numel(&shape).ok_or("immediate tensor shape overflows")?;
            let data = match &t.value {
                None => return Err("immediate tensor has no data".into()),
                Some(TV::Floats(v)) => ConstData::F32(v.values.clone()),
                Some(TV::Doubles(v)) => ConstData::F64(v.values.clone()),
                Some(TV::Ints(v)) => ConstData::I32(v.values.clone()),
                Some(TV::LongInts(v)) => ConstData::I64(v.values.clone()),
                Some(TV::Bools(v)) => ConstData::Bool(v.values.clone()),
                Some(TV::Strings(v)) => ConstData::String(v.values.clone()),
                Some(TV::Bytes(v)) => {
                    let want = packed_len(n, dtype.bits()).ok_or("shape overflows")?;
                    if dtype.bits() == 0 || v.values.len() != want {
                        return Err(format!(
                            "immediate {} tensor of shape {shape:?} needs {want} bytes, has {}",
                            dtype.mil_name(),
                            v.values.len()
                        ));
                    }
                    decode_bytes(dtype, &v.values)
                        .ok_or_else(|| format!("{} data cannot be given as bytes", dtype))?
                }
            };
            let value = ConstValue { dtype, shape, data };
            if value.stored_len() != n {
                return Err(format!(
                    "immediate {} tensor of shape {:?} needs {n} elements, has {}",
                    dtype.mil_name(),
                    value.shape,
                    value.stored_len()
                ));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mil_spec::tensor_value::{RepeatedBytes, RepeatedFloats, RepeatedInts, Value as TV};

    fn tensor_value(dtype: mil_spec::DataType, shape: &[u64], data: TV) -> mil_spec::Value {
        use mil_spec::dimension::{ConstantDimension, Dimension as D};
        let dims = shape
            .iter()
            .map(|&size| mil_spec::Dimension {
                dimension: Some(D::Constant(ConstantDimension { size })),
            })
            .collect();
        let tt = mil_spec::TensorType {
            data_type: dtype as i32,
            rank: shape.len() as i64,
            dimensions: dims,
            attributes: Default::default(),
        };
        mil_spec::Value {
            doc_string: String::new(),
            r#type: Some(mil_spec::ValueType {
                r#type: Some(mil_spec::value_type::Type::TensorType(tt)),
            }),
            value: Some(mil_spec::value::Value::ImmediateValue(mil_spec::value::ImmediateValue {
                value: Some(mil_spec::value::immediate_value::Value::Tensor(
                    mil_spec::TensorValue { value: Some(data) },
                )),
            })),
        }
    }

    #[test]
    fn immediate_values_decode_by_declared_type() {
        use mil_spec::DataType as D;
        let halves: Vec<u8> =
            [1.5f32, -2.0].iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let v = tensor_value(D::Float16, &[2], TV::Bytes(RepeatedBytes { values: halves }));
        let c = ConstValue::from_proto(&v).expect("fp16 bytes");
        assert_eq!(c.dtype, ScalarType::F16);
        assert_eq!(c.to_f32_vec(), Some(vec![1.5, -2.0]));
        assert!(c.to_tensor().is_some_and(|t| t.dtype() == inference_api::DType::F16));

        let v = tensor_value(D::Int8, &[3], TV::Bytes(RepeatedBytes { values: vec![255, 1, 128] }));
        let c = ConstValue::from_proto(&v).expect("int8 bytes");
        assert_eq!(c.to_i64_vec(), Some(vec![-1, 1, -128]));

        let v = tensor_value(D::Int32, &[], TV::Ints(RepeatedInts { values: vec![7] }));
        let c = ConstValue::from_proto(&v).expect("scalar");
        assert_eq!((c.scalar_i64(), c.shape.len()), (Some(7), 0));

        let v = tensor_value(D::Uint4, &[3], TV::Bytes(RepeatedBytes { values: vec![0x21, 0x03] }));
        let c = ConstValue::from_proto(&v).expect("packed uint4");
        assert_eq!((c.data.clone(), c.byte_len()), (ConstData::Raw(vec![0x21, 0x03]), 2));
    }

    #[test]
    fn element_counts_are_checked() {
        use mil_spec::DataType as D;
        let v = tensor_value(D::Float32, &[2, 2], TV::Floats(RepeatedFloats { values: vec![1.0] }));
        let e = ConstValue::from_proto(&v).expect_err("short");
        assert!(e.contains("needs 4 elements, has 1"), "{e}");
        let v = tensor_value(D::Float16, &[3], TV::Bytes(RepeatedBytes { values: vec![0; 5] }));
        let e = ConstValue::from_proto(&v).expect_err("odd bytes");
        assert!(e.contains("needs 6 bytes, has 5"), "{e}");
        let huge = tensor_value(
            D::Float32,
            &[u64::MAX / 2, 4],
            TV::Floats(RepeatedFloats { values: vec![] }),
        );
        assert!(ConstValue::from_proto(&huge).is_err());
    }

    #[test]
    fn blob_data_must_match_the_declared_type() {
        let (bytes, offs) = crate::blob::build_blob_file(&[(1, &[0, 60, 0, 188])]);
        let f = crate::BlobFile::parse("w.bin", bytes.into()).expect("file");
        let blob = f.blob(offs[0]).expect("blob");
        let mk = |dtype, shape: Vec<usize>| ConstValue {
            dtype,
            shape,
            data: ConstData::Blob(BlobRef { file: "w.bin".into(), offset: offs[0] }),
        };
        let ok = mk(ScalarType::F16, vec![2]).with_blob_data(&blob).expect("fp16");
        assert_eq!(ok.to_f32_vec(), Some(vec![1.0, -1.0]));
        let e = mk(ScalarType::F16, vec![3]).with_blob_data(&blob).expect_err("size");
        assert!(e.contains("has 4 bytes") && e.contains("needs 6"), "{e}");
        let e = mk(ScalarType::F32, vec![1]).with_blob_data(&blob).expect_err("dtype");
        assert!(e.contains("holds fp16 but the spec declares fp32"), "{e}");
    }
}
