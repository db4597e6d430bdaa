//! Tensors with shared storage, borrowed views and named tensor maps, the values that cross
//! every engine.
//!
//! A [`Tensor`] keeps its shape and elements behind one `Arc`: cloning it is a reference-count
//! bump, so inputs cross to a worker thread or the Core ML bridge without a copy. Writing goes
//! through [`Tensor::data_mut`], which copies only when the storage is shared (copy on write).

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A dense, row-major tensor over shared storage; `clone` is cheap (no element copy).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    shape: Vec<usize>,
    data: TensorData,
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    match element_count(shape) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(Error::invalid_input(
            "tensor",
            format!("{n} elements for shape {shape:?}"),
            format!("{len} elements"),
        )),
        None => Err(overflow(shape)),
    }
}

fn overflow(shape: &[usize]) -> Error {
    Error::invalid_input(
        "tensor",
        "a shape whose element count fits in usize",
        format!("{shape:?}"),
    )
}

impl Tensor {
    /// Builds a tensor; fails with [`Error::InvalidInput`] when the element count does not
    /// match the shape.
    pub fn new(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Tensor> {
        let shape = shape.into();
        check_len(&shape, data.len())?;
        Ok(Tensor { inner: Arc::new(Inner { shape, data }) })
    }

    /// Builds an f32 tensor; fails when the element count does not match the shape.
    pub fn from_f32(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(data))
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: impl Into<Vec<usize>>, dtype: DType) -> Result<Tensor> {
        let shape = shape.into();
        let n = element_count(&shape).ok_or_else(|| overflow(&shape))?;
        Ok(Tensor { inner: Arc::new(Inner { shape, data: TensorData::zeros(dtype, n) }) })
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.inner.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.inner.data.is_empty()
    }

    /// The typed storage.
    pub fn data(&self) -> &TensorData {
        &self.inner.data
    }

    /// Mutable storage: writes in place when this tensor is the only owner, otherwise copies
    /// the elements first (copy on write) so other clones never see the change.
    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut Arc::make_mut(&mut self.inner).data
    }

    /// True when no other clone shares this tensor's storage (writes will not copy).
    pub fn is_unique(&mut self) -> bool {
        Arc::get_mut(&mut self.inner).is_some()
    }

    /// True when `self` and `other` are clones over the same storage.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Consumes the tensor, returning shape and storage (copies only when shared).
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| (*shared).clone());
        (inner.shape, inner.data)
    }

    /// Overwrites this tensor's elements with `src`'s when both have the same shape and dtype
    /// (no allocation when this tensor is the only owner of its storage) and returns true;
    /// returns false and leaves `self` untouched otherwise.
    pub fn copy_from(&mut self, src: &Tensor) -> bool {
        if self.shape() != src.shape() || self.dtype() != src.dtype() {
            return false;
        }
        if self.shares_storage(src) {
            return true;
        }
        match (self.data_mut(), src.data()) {
            (TensorData::F32(d), TensorData::F32(s)) => d.copy_from_slice(s),
            (TensorData::F16(d), TensorData::F16(s)) => d.copy_from_slice(s),
            (TensorData::I32(d), TensorData::I32(s)) => d.copy_from_slice(s),
            (TensorData::I64(d), TensorData::I64(s)) => d.copy_from_slice(s),
            (TensorData::I8(d), TensorData::I8(s)) => d.copy_from_slice(s),
            (TensorData::U8(d), TensorData::U8(s)) => d.copy_from_slice(s),
            _ => return false,
        }
        true
    }

    /// The elements as f32, or [`Error::InvalidInput`] naming the actual dtype.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.inner.data {
            TensorData::F32(v) => Ok(v),
            other => Err(Error::invalid_input(
                "tensor",
                "f32 elements",
                format!("{} elements", other.dtype()),
            )),
        }
    }

    /// Number of NaN or infinite elements (0 for integer tensors).
    pub fn count_non_finite(&self) -> usize {
        match &self.inner.data {
            TensorData::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
            TensorData::F16(v) => v.iter().filter(|x| !x.is_finite()).count(),
            _ => 0,
        }
    }

    /// The elements converted to f32 (f16 widened, integers cast); copies.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.inner.data {
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
        let data = match &self.inner.data {
            TensorData::F32(v) => TensorViewData::F32(v),
            TensorData::F16(v) => TensorViewData::F16(v),
            TensorData::I32(v) => TensorViewData::I32(v),
            TensorData::I64(v) => TensorViewData::I64(v),
            TensorData::I8(v) => TensorViewData::I8(v),
            TensorData::U8(v) => TensorViewData::U8(v),
        };
        TensorView { shape: &self.inner.shape, data }
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
        Tensor { inner: Arc::new(Inner { shape: self.shape.to_vec(), data }) }
    }
}

/// A model's inputs or outputs: tensors indexed by name (a map; iteration is in name order).
///
/// Cloning copies the names and bumps each tensor's reference count; no elements are copied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedTensors {
    entries: BTreeMap<String, Tensor>,
}

impl NamedTensors {
    /// An empty map.
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
        self.entries.insert(name.into(), tensor);
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.get(name)
    }

    /// The tensor called `name`, mutably (to write into it; see [`Tensor::data_mut`]).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.entries.get_mut(name)
    }

    /// A borrowed view of the tensor called `name`, if present.
    pub fn view(&self, name: &str) -> Option<TensorView<'_>> {
        self.entries.get(name).map(Tensor::view)
    }

    /// Removes and returns the tensor called `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.entries.remove(name)
    }

    /// Names and tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Tensor names in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `src` into `self`: each tensor of `src` is copied into the same-named tensor of
    /// `self` when shape and dtype match (reusing its buffer), otherwise it replaces it (a
    /// cheap clone); tensors of `self` that `src` lacks are removed.
    pub fn write_from(&mut self, src: &NamedTensors) {
        self.entries.retain(|name, _| src.entries.contains_key(name));
        for (name, t) in &src.entries {
            match self.entries.get_mut(name) {
                Some(dst) => {
                    if !dst.copy_from(t) {
                        *dst = t.clone();
                    }
                }
                None => {
                    self.entries.insert(name.clone(), t.clone());
                }
            }
        }
    }
}

impl FromIterator<(String, Tensor)> for NamedTensors {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        NamedTensors { entries: iter.into_iter().collect() }
    }
}

impl IntoIterator for NamedTensors {
    type Item = (String, Tensor);
    type IntoIter = std::collections::btree_map::IntoIter<String, Tensor>;
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

    #[test]
    fn clones_share_storage_and_writes_copy_on_write() {
        let a = Tensor::from_f32([2], vec![1.0, 2.0]).unwrap();
        let mut b = a.clone();
        assert!(a.shares_storage(&b));
        match b.data_mut() {
            TensorData::F32(v) => v[0] = 9.0,
            _ => unreachable!(),
        }
        assert_eq!(a.as_f32().unwrap(), &[1.0, 2.0]);
        assert_eq!(b.as_f32().unwrap(), &[9.0, 2.0]);
        assert!(!a.shares_storage(&b));
    }

    #[test]
    fn write_from_reuses_matching_buffers() {
        let mut dst = NamedTensors::new()
            .with("y", Tensor::zeros([2], DType::F32).unwrap())
            .with("stale", Tensor::zeros([1], DType::U8).unwrap());
        let before = dst.get("y").unwrap().as_f32().unwrap().as_ptr();
        let src = NamedTensors::new()
            .with("y", Tensor::from_f32([2], vec![3.0, 4.0]).unwrap())
            .with("z", Tensor::from_f32([1], vec![5.0]).unwrap());
        dst.write_from(&src);
        assert_eq!(dst.get("y").unwrap().as_f32().unwrap(), &[3.0, 4.0]);
        assert_eq!(dst.get("y").unwrap().as_f32().unwrap().as_ptr(), before);
        assert_eq!(dst.names().collect::<Vec<_>>(), ["y", "z"]);
        assert_eq!(
            Tensor::from_f32([2], vec![f32::NAN, f32::INFINITY]).unwrap().count_non_finite(),
            2
        );
    }
}
