//! Reading a model's inputs from a safetensors file: the header is checked against the model's
//! schema (names, dtypes, shapes) before any tensor data is read, and only the tensors the
//! model takes are read, each from its own offset.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};
use inference_api::{DType, IoSchema, NamedTensors};
use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

/// Largest safetensors header read (100 MB, the format's own limit).
pub(crate) const MAX_HEADER_BYTES: u64 = 100_000_000;

fn our_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        _ => return None,
    })
}

/// The model's inputs from `path` and the names of the other tensors in it (ignored). A missing
/// input, a wrong dtype or a wrong shape is an error naming the tensor, found from the header
/// alone.
pub(crate) fn read_inputs(
    path: &Path,
    schema: &IoSchema,
    model: &str,
) -> Result<(NamedTensors, Vec<String>)> {
    let shown = path.display();
    let mut file = File::open(path).with_context(|| format!("reading {shown}"))?;
    let meta = file.metadata().with_context(|| format!("reading {shown}"))?;
    if !meta.is_file() {
        bail!("{shown} is not a regular file: pass a .safetensors file");
    }
    let file_len = meta.len();
    let invalid = |why: String| anyhow::anyhow!("{shown} is not a valid safetensors file: {why}");
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| invalid("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n.saturating_add(8) > file_len {
        bail!(invalid(format!("header length {n} does not fit the {file_len}-byte file")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| invalid(e.to_string()))?;
    let mut entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("header: {e}")))?;
    entries.remove("__metadata__");
    let data_start = 8 + n;
    let mut inputs = NamedTensors::new();
    for spec in &schema.inputs {
        let Some(value) = entries.remove(&spec.name) else {
            let mut have: Vec<&str> = entries.keys().map(String::as_str).collect();
            have.sort_unstable();
            have.truncate(20);
            bail!(
                "{shown} has no tensor `{}` ({} {}), which {model} needs; it has {have:?}",
                spec.name,
                spec.dtype,
                spec.shape_string()
            );
        };
        let info: TensorInfo = serde_json::from_value(value)
            .map_err(|e| invalid(format!("tensor `{}`: {e}", spec.name)))?;
        let dtype = our_dtype(info.dtype);
        if dtype != Some(spec.dtype) {
            bail!(
                "{shown}: tensor `{}` is {:?}, but {model} takes {}: convert it first",
                spec.name,
                info.dtype,
                spec.dtype
            );
        }
        let fits = info.shape.len() == spec.shape.len()
            && spec.shape.iter().zip(&info.shape).all(|(d, &s)| d.accepts(s));
        if !fits {
            bail!(
                "{shown}: tensor `{}` has shape {:?}, but {model} takes {}",
                spec.name,
                info.shape,
                spec.shape_string()
            );
        }
        let (start, end) = info.data_offsets;
        let expected = info
            .shape
            .iter()
            .try_fold(spec.dtype.size_of(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| invalid(format!("tensor `{}`: shape overflows", spec.name)))?;
        let in_file = (end as u64).checked_add(data_start).is_some_and(|e| e <= file_len);
        if end < start || end - start != expected || !in_file {
            bail!(invalid(format!(
                "tensor `{}`: data offsets {start}..{end} do not hold {expected} bytes inside \
                 the file",
                spec.name
            )));
        }
        file.seek(SeekFrom::Start(data_start + start as u64))
            .and_then(|_| {
                let mut bytes = vec![0u8; expected];
                file.read_exact(&mut bytes).map(|()| bytes)
            })
            .map_err(|e| anyhow::anyhow!("reading tensor `{}` from {shown}: {e}", spec.name))
            .and_then(|bytes| {
                crate::tensors_io::decode(path, &spec.name, info.dtype, &info.shape, &bytes)
            })
            .map(|t| inputs.insert(spec.name.clone(), t))?;
    }
    let mut ignored: Vec<String> = entries.into_keys().collect();
    ignored.sort_unstable();
    Ok((inputs, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_api::TensorSpec;
    use safetensors::tensor::TensorView;

    fn write(dir: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> std::path::PathBuf {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let path = dir.join("in.safetensors");
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        path
    }

    fn schema() -> IoSchema {
        IoSchema {
            inputs: vec![TensorSpec::fixed("x", DType::F32, &[1, 2])],
            outputs: vec![TensorSpec::fixed("y", DType::F32, &[1])],
            classifier: None,
        }
    }

    #[test]
    fn reads_the_inputs_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = write(
            dir.path(),
            &[("x", Dtype::F32, vec![1, 2], x), ("other", Dtype::U8, vec![3], vec![1, 2, 3])],
        );
        let (inputs, ignored) = read_inputs(&p, &schema(), "m").unwrap();
        assert_eq!(inputs.get("x").unwrap().to_f32_vec(), vec![1.5, -2.0]);
        assert_eq!(ignored, vec!["other".to_string()]);
    }

    #[test]
    fn a_wrong_shape_is_refused_from_the_header_before_the_data_is_read() {
        // F5: a 2 GB tensor of the wrong shape was read and converted before being refused.
        // Here the header claims 256 MiB of data that the file does not even hold: only a
        // header-first check can refuse it with a shape error.
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"x":{"dtype":"F32","shape":[8192,8192],"data_offsets":[0,268435456]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        let p = dir.path().join("big.safetensors");
        std::fs::write(&p, bytes).unwrap();
        let e = read_inputs(&p, &schema(), "m").unwrap_err().to_string();
        assert!(e.contains("shape [8192, 8192], but m takes [1, 2]"), "{e}");
    }

    #[test]
    fn wrong_dtype_missing_tensor_and_bad_offsets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &[("x", Dtype::I32, vec![1, 2], vec![0; 8])]);
        let e = read_inputs(&p, &schema(), "m").unwrap_err().to_string();
        assert!(e.contains("`x` is I32, but m takes f32"), "{e}");
        let p = write(dir.path(), &[("z", Dtype::F32, vec![1, 2], vec![0; 8])]);
        let e = read_inputs(&p, &schema(), "m").unwrap_err().to_string();
        assert!(e.contains("no tensor `x`") && e.contains("\"z\""), "{e}");
        let header = br#"{"x":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        std::fs::write(&p, bytes).unwrap();
        let e = read_inputs(&p, &schema(), "m").unwrap_err().to_string();
        assert!(e.contains("data offsets 0..8"), "{e}");
    }
}
