//! Entry points shared by the cargo-fuzz targets and the property tests: feed arbitrary bytes
//! through every reader path; any panic is a bug.

use std::path::Path;
use std::sync::Arc;

use crate::blob::BlobFile;
use crate::model::{MlModel, WeightStore};

/// Reads `data` as a weight file: the header, a walk over the declared blobs, and the records
/// at offsets taken from the data itself. Returns how many blobs were read without error.
pub fn blob_file(data: &[u8]) -> usize {
    let Ok(file) = BlobFile::parse("fuzz/weight.bin", Arc::from(data)) else { return 0 };
    let mut ok = file.blobs().map(|b| b.len()).unwrap_or(0);
    for chunk in data.chunks_exact(8).take(64) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        for offset in [u64::from_le_bytes(a), u64::from_le_bytes(a) % (data.len() as u64 + 1)] {
            if let Ok(b) = file.blob(offset) {
                ok += 1;
                std::hint::black_box(b.data.iter().map(|&x| u64::from(x)).sum::<u64>());
            }
        }
    }
    ok
}

/// Reads `spec` as a `model.mlmodel` with `weights` (if any) as its `weight.bin`: description,
/// schema, program, summary, and every const resolved. Returns how many consts resolved.
pub fn spec_and_weights(spec: &[u8], weights: Option<&[u8]>) -> usize {
    let store = WeightStore::new("fuzz");
    if let Some(w) = weights
        && let Ok(f) = BlobFile::parse("fuzz/weights/weight.bin", Arc::from(w))
    {
        store.insert("@model_path/weights/weight.bin", f);
    }
    let Ok(model) = MlModel::from_spec_bytes(spec, Path::new("fuzz/model.mlmodel"), store) else {
        return 0;
    };
    let _ = model.io_schema();
    let summary = model.summary();
    std::hint::black_box(serde_json::to_string(&summary).map(|s| s.len()).unwrap_or(0));
    let mut resolved = 0;
    if let Some(program) = model.program() {
        for f in program.functions.values() {
            f.block.visit_ops(&mut |op| {
                if let Some(v) = op.const_value()
                    && let Ok(v) = model.resolve(v)
                {
                    resolved += 1;
                    std::hint::black_box(v.to_f32_vec().map(|x| x.len()));
                }
            });
        }
    }
    resolved
}
