//! Named tensors to and from safetensors files (writes through [`crate::output`]).

use std::path::Path;

use anyhow::{Context, Result, bail};
use inference_api::{DType, NamedTensors, Tensor, TensorData, f16};
use safetensors::{Dtype, SafeTensors};

fn chunks<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
}

/// Reads every tensor of a safetensors file.
pub(crate) fn read(path: &Path) -> Result<NamedTensors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut out = NamedTensors::new();
    for name in names {
        let view = st.tensor(&name)?;
        let t = decode(path, &name, view.dtype(), view.shape(), view.data())?;
        out.insert(name, t);
    }
    Ok(out)
}

/// One tensor from its safetensors dtype, shape and little-endian bytes.
pub(crate) fn decode(
    path: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    b: &[u8],
) -> Result<Tensor> {
    let data = match dtype {
        Dtype::F32 => TensorData::F32(chunks(b, f32::from_le_bytes)),
        Dtype::F16 => TensorData::F16(chunks(b, |c| f16::from_bits(u16::from_le_bytes(c)))),
        Dtype::I32 => TensorData::I32(chunks(b, i32::from_le_bytes)),
        Dtype::I64 => TensorData::I64(chunks(b, i64::from_le_bytes)),
        Dtype::I8 => TensorData::I8(chunks(b, |c: [u8; 1]| c[0] as i8)),
        Dtype::U8 => TensorData::U8(b.to_vec()),
        other => {
            bail!("{}: tensor `{name}` has dtype {other:?}, which no model takes", path.display())
        }
    };
    Ok(Tensor::new(shape.to_vec(), data)?)
}

fn to_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    match t.data() {
        TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F16(v) => {
            (Dtype::F16, v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect())
        }
        TensorData::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I8(v) => (Dtype::I8, v.iter().map(|&x| x as u8).collect()),
        TensorData::U8(v) => (Dtype::U8, v.clone()),
    }
}

/// Writes tensors as safetensors to `path` (see [`crate::output::write_bytes`]: `-` is stdout,
/// devices and pipes are written in place, a regular file is replaced atomically, so a failed
/// write leaves nothing half-written).
pub(crate) fn write(path: &Path, tensors: &NamedTensors) -> Result<()> {
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (d, b) = to_bytes(t);
            (n.to_string(), d, t.shape().to_vec(), b)
        })
        .collect();
    let views = owned
        .iter()
        .map(|(n, d, s, b)| {
            Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).context("encoding the outputs")?;
    crate::output::write_bytes(path, &bytes)
}

/// `[1, 1000] f32` style description.
pub(crate) fn describe(t: &Tensor) -> String {
    let dt: DType = t.dtype();
    format!("{:?} {dt}", t.shape())
}
