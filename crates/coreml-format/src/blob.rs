//! The blob storage v2 reader (`weight.bin`): header, per-blob metadata records, bounds checks.
//!
//! Layout (little-endian, 64-byte aligned): a 64-byte header `{u32 count, u32 version = 2,
//! reserved}`, then per blob a 64-byte metadata record `{u32 sentinel 0xDEADBEEF, u32 dtype,
//! u64 size in bytes, u64 absolute data offset, u64 padding bits, reserved}` and its data.
//! A const's `BlobFileValue.offset` points at the metadata record. Every offset and length
//! read from the file is checked against the file size before it is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{FormatError, Result};

/// Size of the file header and of each metadata record.
pub const RECORD_SIZE: usize = 64;
/// Magic number that starts every metadata record.
pub const BLOB_SENTINEL: u32 = 0xDEAD_BEEF;
/// The only storage version this reader understands.
pub const STORAGE_VERSION: u32 = 2;

/// Element type of a blob, from its metadata record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BlobDType {
    /// IEEE half (code 1).
    F16,
    /// IEEE single (code 2).
    F32,
    /// Unsigned 8-bit (code 3).
    U8,
    /// Signed 8-bit (code 4).
    I8,
    /// bfloat16 (code 5).
    Bf16,
    /// Signed 16-bit (code 6).
    I16,
    /// Unsigned 16-bit (code 7).
    U16,
    /// Signed 4-bit, packed two per byte (code 8).
    I4,
    /// Unsigned sub-byte integer of the given bit width, packed (codes 9, 10, 12, 11, 13: 1, 2, 3,
    /// 4, 6 bits).
    USub(u8),
    /// Signed 32-bit (code 14).
    I32,
    /// Unsigned 32-bit (code 15).
    U32,
    /// 8-bit float e4m3fn (code 16).
    F8E4M3,
    /// 8-bit float e5m2 (code 17).
    F8E5M2,
}

impl BlobDType {
    /// Decodes a metadata record's dtype code.
    pub fn from_code(code: u32) -> Option<BlobDType> {
        Some(match code {
            1 => BlobDType::F16,
            2 => BlobDType::F32,
            3 => BlobDType::U8,
            4 => BlobDType::I8,
            5 => BlobDType::Bf16,
            6 => BlobDType::I16,
            7 => BlobDType::U16,
            8 => BlobDType::I4,
            9 => BlobDType::USub(1),
            10 => BlobDType::USub(2),
            // coremltools' blob writer (libmilstoragepython) writes uint4 as code 11 and uint3
            // as code 12, out of the bit-width order of the other sub-byte codes.
            11 => BlobDType::USub(4),
            12 => BlobDType::USub(3),
            13 => BlobDType::USub(6),
            14 => BlobDType::I32,
            15 => BlobDType::U32,
            16 => BlobDType::F8E4M3,
            17 => BlobDType::F8E5M2,
            _ => return None,
        })
    }

    /// Bits per element.
    pub fn bits(self) -> u32 {
        match self {
            BlobDType::F16 | BlobDType::Bf16 | BlobDType::I16 | BlobDType::U16 => 16,
            BlobDType::F32 | BlobDType::I32 | BlobDType::U32 => 32,
            BlobDType::U8 | BlobDType::I8 | BlobDType::F8E4M3 | BlobDType::F8E5M2 => 8,
            BlobDType::I4 => 4,
            BlobDType::USub(b) => u32::from(b),
        }
    }

    /// Short lower-case name (`f16`, `i8`, `u4`, ...).
    pub fn name(self) -> String {
        match self {
            BlobDType::USub(b) => format!("u{b}"),
            other => format!("{other:?}").to_ascii_lowercase(),
        }
    }
}

/// One blob's metadata and bytes, borrowed from a [`BlobFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<'a> {
    /// Offset of the metadata record (the `BlobFileValue.offset` that names this blob).
    pub metadata_offset: u64,
    /// Element type.
    pub dtype: BlobDType,
    /// Absolute offset of the data in the file.
    pub data_offset: u64,
    /// Number of padding bits at the end of the data (sub-byte types).
    pub padding_bits: u64,
    /// The data bytes, exactly `size` of them.
    pub data: &'a [u8],
}

/// A whole weight file held in memory, its header checked.
///
/// The file is read once into memory (the crate forbids `unsafe`, which memory-mapping needs);
/// [`crate::WeightStore`] does that lazily, on the first const that refers to the file.
#[derive(Debug, Clone)]
pub struct BlobFile {
    path: PathBuf,
    bytes: Arc<[u8]>,
    count: u32,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

impl BlobFile {
    /// Reads and checks the weight file at `path`.
    pub fn open(path: &Path) -> Result<BlobFile> {
        let bytes = crate::error::read_file(path, crate::error::MAX_WEIGHT_FILE_BYTES)?;
        BlobFile::parse(path, bytes.into())
    }

    /// Checks the header of an in-memory weight file; `path` is used in error messages.
    pub fn parse(path: impl Into<PathBuf>, bytes: Arc<[u8]>) -> Result<BlobFile> {
        let path = path.into();
        if bytes.len() < RECORD_SIZE {
            return Err(FormatError::malformed(
                &path,
                format!(
                    "weight file is {} bytes, shorter than its {RECORD_SIZE}-byte header \
                     (truncated?)",
                    bytes.len()
                ),
            ));
        }
        let count = read_u32(&bytes, 0).unwrap_or(0);
        let version = read_u32(&bytes, 4).unwrap_or(0);
        if version != STORAGE_VERSION {
            return Err(FormatError::unsupported(
                &path,
                format!("blob storage version {version}; only version {STORAGE_VERSION} is read"),
            ));
        }
        Ok(BlobFile { path, bytes, count })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of blobs the header declares.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the file is empty (never, for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The blob whose metadata record starts at `offset`, every field checked.
    pub fn blob(&self, offset: u64) -> Result<Blob<'_>> {
        let bad = |problem: String| FormatError::malformed(&self.path, problem);
        let len = self.bytes.len() as u64;
        let end = offset.checked_add(RECORD_SIZE as u64);
        if offset < RECORD_SIZE as u64 || end.is_none_or(|e| e > len) {
            return Err(bad(format!(
                "blob metadata offset {offset} is outside the file ({len} bytes; records start \
                 at {RECORD_SIZE})"
            )));
        }
        // In range of a `usize` because it is below the length of an in-memory slice.
        let at = offset as usize;
        let sentinel = read_u32(&self.bytes, at).unwrap_or(0);
        if sentinel != BLOB_SENTINEL {
            return Err(bad(format!(
                "no blob metadata at offset {offset}: sentinel is {sentinel:#010x}, expected \
                 {BLOB_SENTINEL:#010x}"
            )));
        }
        let code = read_u32(&self.bytes, at + 4).unwrap_or(0);
        let dtype = BlobDType::from_code(code)
            .ok_or_else(|| bad(format!("blob at offset {offset} has unknown dtype code {code}")))?;
        let size = read_u64(&self.bytes, at + 8).unwrap_or(0);
        let data_offset = read_u64(&self.bytes, at + 16).unwrap_or(0);
        let padding_bits = read_u64(&self.bytes, at + 24).unwrap_or(0);
        let data_end = data_offset.checked_add(size).filter(|&e| e <= len).ok_or_else(|| {
            bad(format!(
                "blob at offset {offset}: data [{data_offset}, +{size}) runs past the end of the \
                 file ({len} bytes; truncated?)"
            ))
        })?;
        if data_offset < end.unwrap_or(u64::MAX) {
            return Err(bad(format!(
                "blob at offset {offset}: data offset {data_offset} overlaps its own metadata"
            )));
        }
        if padding_bits >= 8 || (padding_bits > 0 && size == 0) {
            return Err(bad(format!("blob at offset {offset}: {padding_bits} padding bits")));
        }
        let data = &self.bytes[data_offset as usize..data_end as usize];
        Ok(Blob { metadata_offset: offset, dtype, data_offset, padding_bits, data })
    }

    /// Walks the blobs in file order, from the first record after the header, for as many as
    /// the header declares. Stops at the first malformed record with its error.
    pub fn blobs(&self) -> Result<Vec<Blob<'_>>> {
        let mut out = Vec::new();
        let mut offset = RECORD_SIZE as u64;
        for _ in 0..self.count {
            let blob = self.blob(offset)?;
            let end = blob.data_offset + blob.data.len() as u64;
            offset = end.div_ceil(RECORD_SIZE as u64) * RECORD_SIZE as u64;
            out.push(blob);
        }
        Ok(out)
    }
}

/// Builds a valid blob storage v2 file from `(dtype code, data)` pairs, with padding to 64-byte
/// alignment; returns the bytes and the metadata offset of each blob. For tests and fuzzing.
pub fn build_blob_file(blobs: &[(u32, &[u8])]) -> (Vec<u8>, Vec<u64>) {
    let align = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(RECORD_SIZE) * RECORD_SIZE, 0);
    let mut out = vec![0u8; RECORD_SIZE];
    out[0..4].copy_from_slice(&(blobs.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&STORAGE_VERSION.to_le_bytes());
    let mut offsets = Vec::new();
    for (code, data) in blobs {
        let meta = out.len();
        offsets.push(meta as u64);
        let mut rec = [0u8; RECORD_SIZE];
        rec[0..4].copy_from_slice(&BLOB_SENTINEL.to_le_bytes());
        rec[4..8].copy_from_slice(&code.to_le_bytes());
        rec[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        rec[16..24].copy_from_slice(&((meta + RECORD_SIZE) as u64).to_le_bytes());
        out.extend_from_slice(&rec);
        out.extend_from_slice(data);
        align(&mut out);
    }
    (out, offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let (bytes, offs) = build_blob_file(&[(1, &[1, 2, 3, 4]), (4, &[9])]);
        let f = BlobFile::parse("w.bin", bytes.clone().into()).expect("valid");
        let b = f.blob(offs[1]).expect("blob");
        assert_eq!((b.dtype, b.data), (BlobDType::I8, &[9u8][..]));
        assert_eq!(f.blobs().expect("walk").len(), 2);
        let e = f.blob(offs[1] + 8).expect_err("not a record");
        assert!(e.to_string().contains("w.bin") && e.to_string().contains("sentinel"), "{e}");
        assert!(f.blob(u64::MAX - 3).is_err());
        assert!(f.blob(0).is_err());
        let e = BlobFile::parse("w.bin", bytes[..10].to_vec().into()).expect_err("short");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
