//! Reader for PyTorch's legacy (pre-1.6, non-zip) `.pth` format, on top of candle's pickle VM.
//!
//! candle's `pickle::read_all` handles the zip container only; the EfficientNet-Lite0 wheel
//! (2020) holds the older layout: five pickles in a row (magic number, protocol version, system
//! info, the state dict whose tensors reference storages by persistent id, the list of storage
//! keys), followed by each storage's raw bytes, each prefixed by its element count (u64 LE).

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

struct TensorRef {
    name: String,
    storage_key: String,
    dtype: DType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn read_pickle<R: std::io::BufRead>(r: &mut R) -> Result<Object> {
    let mut stack = Stack::empty();
    stack.read_loop(r)?;
    Ok(stack.finalize()?)
}

fn usizes(o: Object) -> Result<Vec<usize>> {
    Vec::<usize>::try_from(o).map_err(|o| anyhow::anyhow!("expected a tuple of ints, got {o:?}"))
}

fn tensor_ref(name: String, value: Object) -> Result<Option<TensorRef>> {
    let Object::Reduce { callable, args } = value else { return Ok(None) };
    match *callable {
        Object::Class { module_name, class_name }
            if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let mut args = args.tuple().map_err(|o| anyhow::anyhow!("bad tensor args {o:?}"))?;
    if args.len() < 4 {
        bail!("tensor {name}: expected at least 4 rebuild arguments");
    }
    let stride = usizes(args.remove(3))?;
    let shape = usizes(args.remove(2))?;
    let offset = args.remove(1).int_or_long().map_err(|o| anyhow::anyhow!("offset {o:?}"))?;
    let storage = args.remove(0).persistent_load().map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let mut storage = storage.tuple().map_err(|o| anyhow::anyhow!("{o:?}"))?;
    if storage.len() < 3 {
        bail!("tensor {name}: malformed storage id");
    }
    let storage_key = storage.remove(2).unicode().map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let (_, class_name) = storage.remove(1).class().map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let dtype = match class_name.as_str() {
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "LongStorage" => DType::I64,
        "DoubleStorage" => DType::F64,
        other => bail!("tensor {name}: unsupported storage type {other}"),
    };
    Ok(Some(TensorRef { name, storage_key, dtype, offset: offset as usize, shape, stride }))
}

/// Reads every tensor of a legacy `.pth` state dict, in the file's order.
pub(crate) fn read_legacy_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::new(file);
    let _magic = read_pickle(&mut r).context("magic number")?;
    let _protocol = read_pickle(&mut r).context("protocol version")?;
    let _sys_info = read_pickle(&mut r).context("system info")?;
    let state = read_pickle(&mut r).context("state dict")?;
    let keys = read_pickle(&mut r).context("storage keys")?;

    let entries = match state {
        Object::Dict(entries) => entries,
        Object::Build { callable, .. } => match *callable {
            Object::Dict(entries) => entries,
            other => bail!("state dict is not a dict: {other:?}"),
        },
        other => bail!("state dict is not a dict: {other:?}"),
    };
    let mut refs = Vec::new();
    for (k, v) in entries {
        let name = k.unicode().map_err(|o| anyhow::anyhow!("non-string key {o:?}"))?;
        if let Some(t) = tensor_ref(name, v)? {
            refs.push(t);
        }
    }
    let keys: Vec<String> = match keys {
        Object::List(items) => items
            .into_iter()
            .map(|o| o.unicode().map_err(|o| anyhow::anyhow!("storage key {o:?}")))
            .collect::<Result<_>>()?,
        other => bail!("storage key list is not a list: {other:?}"),
    };
    let dtype_of: HashMap<&str, DType> =
        refs.iter().map(|t| (t.storage_key.as_str(), t.dtype)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in &keys {
        let mut n = [0u8; 8];
        r.read_exact(&mut n).with_context(|| format!("size of storage {key}"))?;
        let numel = u64::from_le_bytes(n) as usize;
        let elem = dtype_of.get(key.as_str()).map_or(4, |d| d.size_in_bytes());
        let mut bytes = vec![0u8; numel * elem];
        r.read_exact(&mut bytes)
            .with_context(|| format!("data of storage {key} (truncated file?)"))?;
        storages.insert(key.clone(), bytes);
    }
    let mut out = Vec::with_capacity(refs.len());
    for t in refs {
        let bytes = storages
            .get(&t.storage_key)
            .with_context(|| format!("tensor {}: storage {} missing", t.name, t.storage_key))?;
        let elem = t.dtype.size_in_bytes();
        let numel = bytes.len() / elem;
        let storage = Tensor::from_raw_buffer(bytes, t.dtype, &[numel], &Device::Cpu)?;
        let tensor = strided_view(&storage, t.offset, &t.shape, &t.stride)
            .with_context(|| format!("tensor {}", t.name))?;
        out.push((t.name, tensor));
    }
    Ok(out)
}

/// Materializes `shape`/`stride` starting at `offset` elements into a contiguous tensor.
fn strided_view(
    storage: &Tensor,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Tensor> {
    let numel: usize = shape.iter().product();
    let total = storage.dim(0)?;
    let mut idx = Vec::with_capacity(numel);
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at = offset + pos.iter().zip(stride).map(|(p, s)| p * s).sum::<usize>();
        if at >= total {
            bail!("element {at} outside storage of {total}");
        }
        idx.push(at as u32);
        for d in (0..shape.len()).rev() {
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    let idx = Tensor::from_vec(idx, numel, &Device::Cpu)?;
    Ok(storage.index_select(&idx, 0)?.reshape(shape)?)
}
