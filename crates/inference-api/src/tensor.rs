//! Owned tensors, borrowed views and named tensor lists, the values that cross every engine.

use crate::{DType, Error, Result};
use half::f16;

/// Typed storage of an owned tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 16-bit floats.
    F16(Vec<f16>),
    /// 32-bit signed integers.
    I32(Vec<i32>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
    /// 8-bit signed integers.
    I8(Vec<i8>),
    /// 8-bit unsigned integers.
    U8(Vec<u8>),
}

impl TensorData {
    /// Element type of the storage.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zero-filled storage of `len` elements of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; len]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; len]),
            DType::I32 => TensorData::I32(vec![0; len]),
            DType::I64 => TensorData::I64(vec![0; len]),
            DType::I8 => TensorData::I8(vec![0; len]),
            DType::U8 => TensorData::U8(vec![0; len]),
        }
    }
}

/// An owned, dense, row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    match element_count(shape) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(Error::Runtime(format!(
            "tensor data has {len} elements but shape {shape:?} needs {n}"
        ))),
        None => Err(Error::Runtime(format!("tensor shape {shape:?} overflows usize"))),
    }
}

impl Tensor {
    /// Builds a tensor; fails when the element count does not match the shape.
    pub fn new(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Tensor> {
        let shape = shape.into();
        check_len(&shape, data.len())?;
        Ok(Tensor { shape, data })
    }

    /// Builds an f32 tensor; fails when the element count does not match the shape.
    pub fn from_f32(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(data))
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: impl Into<Vec<usize>>, dtype: DType) -> Result<Tensor> {
        let shape = shape.into();
        let n = element_count(&shape)
            .ok_or_else(|| Error::Runtime(format!("tensor shape {shape:?} overflows usize")))?;
        Ok(Tensor { shape, data: TensorData::zeros(dtype, n) })
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The typed storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Consumes the tensor, returning shape and storage.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// The elements as f32, or an error naming the actual dtype.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            other => {
                Err(Error::Runtime(format!("tensor holds {} elements, not f32", other.dtype())))
            }
        }
    }

    /// The elements converted to f32 (f16 widened, integers cast); copies.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
        }
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        let data = match &self.data {
            TensorData::F32(v) => TensorViewData::F32(v),
            TensorData::F16(v) => TensorViewData::F16(v),
            TensorData::I32(v) => TensorViewData::I32(v),
            TensorData::I64(v) => TensorViewData::I64(v),
            TensorData::I8(v) => TensorViewData::I8(v),
            TensorData::U8(v) => TensorViewData::U8(v),
        };
        TensorView { shape: &self.shape, data }
    }
}

/// Typed borrowed storage of a [`TensorView`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TensorViewData<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// 16-bit floats.
    F16(&'a [f16]),
    /// 32-bit signed integers.
    I32(&'a [i32]),
    /// 64-bit signed integers.
    I64(&'a [i64]),
    /// 8-bit signed integers.
    I8(&'a [i8]),
    /// 8-bit unsigned integers.
    U8(&'a [u8]),
}

/// A borrowed, dense, row-major tensor: caller memory passed without a copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorView<'a> {
    shape: &'a [usize],
    data: TensorViewData<'a>,
}

impl<'a> TensorView<'a> {
    /// Builds a view; fails when the element count does not match the shape.
    pub fn new(shape: &'a [usize], data: TensorViewData<'a>) -> Result<TensorView<'a>> {
        let view = TensorView { shape, data };
        check_len(shape, view.len())?;
        Ok(view)
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Typed storage.
    pub fn data(&self) -> TensorViewData<'a> {
        self.data
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            TensorViewData::F32(_) => DType::F32,
            TensorViewData::F16(_) => DType::F16,
            TensorViewData::I32(_) => DType::I32,
            TensorViewData::I64(_) => DType::I64,
            TensorViewData::I8(_) => DType::I8,
            TensorViewData::U8(_) => DType::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self.data {
            TensorViewData::F32(v) => v.len(),
            TensorViewData::F16(v) => v.len(),
            TensorViewData::I32(v) => v.len(),
            TensorViewData::I64(v) => v.len(),
            TensorViewData::I8(v) => v.len(),
            TensorViewData::U8(v) => v.len(),
        }
    }

    /// True when the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the view into an owned tensor.
    pub fn to_owned(&self) -> Tensor {
        let data = match self.data {
            TensorViewData::F32(v) => TensorData::F32(v.to_vec()),
            TensorViewData::F16(v) => TensorData::F16(v.to_vec()),
            TensorViewData::I32(v) => TensorData::I32(v.to_vec()),
            TensorViewData::I64(v) => TensorData::I64(v.to_vec()),
            TensorViewData::I8(v) => TensorData::I8(v.to_vec()),
            TensorViewData::U8(v) => TensorData::U8(v.to_vec()),
        };
        Tensor { shape: self.shape.to_vec(), data }
    }
}

/// An ordered list of named tensors: a model's inputs or outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedTensors {
    entries: Vec<(String, Tensor)>,
}

impl NamedTensors {
    /// An empty list.
    pub fn new() -> NamedTensors {
        NamedTensors::default()
    }

    /// Adds (or replaces) a tensor by name; returns `self` for chaining.
    pub fn with(mut self, name: impl Into<String>, tensor: Tensor) -> NamedTensors {
        self.insert(name, tensor);
        self
    }

    /// Adds a tensor, replacing any tensor of the same name.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = tensor,
            None => self.entries.push((name, tensor)),
        }
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Removes and returns the tensor called `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let pos = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(pos).1)
    }

    /// Names and tensors in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Tensor names in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(String, Tensor)> for NamedTensors {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        let mut out = NamedTensors::new();
        for (n, t) in iter {
            out.insert(n, t);
        }
        out
    }
}

impl IntoIterator for NamedTensors {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_length_must_agree() {
        assert!(Tensor::from_f32([2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::from_f32([2, 3], vec![0.0; 5]).unwrap_err();
        assert!(err.to_string().contains("5 elements"), "{err}");
        assert!(Tensor::zeros([usize::MAX, 2], DType::U8).is_err());
    }

    #[test]
    fn views_round_trip_and_named_lists_replace() {
        let t = Tensor::new([2], TensorData::I64(vec![1, 2])).unwrap();
        assert_eq!(t.view().to_owned(), t);
        assert_eq!(t.view().dtype(), DType::I64);
        let mut n = NamedTensors::new().with("a", t.clone());
        n.insert("a", Tensor::zeros([1], DType::F16).unwrap());
        assert_eq!(n.len(), 1);
        assert_eq!(n.get("a").unwrap().dtype(), DType::F16);
        assert!(n.remove("a").is_some() && n.is_empty());
    }
}
