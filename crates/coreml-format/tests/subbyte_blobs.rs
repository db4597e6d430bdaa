//! Sub-byte blobs written by coremltools' own blob writer: the dtype codes of `uint4` (11) and
//! `uint3` (12) and the LSB-first packing of their values.
//!
//! `tests/data/subbyte_weight.bin` was written with coremltools 9.0's
//! `libmilstoragepython._BlobStorageWriter`: `write_uint4_data` of `U4` (metadata at offset
//! 64), then `write_uint3_data` of `U3` (metadata at offset 192).

use std::sync::Arc;

use coreml_format::{BlobDType, BlobFile};

/// The values handed to the writer.
const U4: [u8; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 3];
const U3: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 5, 2, 1];

/// `n` fields of `bits` bits, least significant bit first.
fn unpack(bytes: &[u8], bits: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|k| {
            (0..bits).fold(0u8, |v, b| {
                let bit = k * bits + b;
                v | ((bytes[bit / 8] >> (bit % 8)) & 1) << b
            })
        })
        .collect()
}

#[test]
fn coremltools_uint4_and_uint3_blobs_decode() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/subbyte_weight.bin");
    let bytes = std::fs::read(path).expect("read the blob file");
    let file = BlobFile::parse(path, Arc::from(bytes)).expect("parse");
    for (offset, bits, want) in [(64, 4, &U4[..]), (192, 3, &U3[..])] {
        let blob = file.blob(offset).expect("blob");
        assert_eq!(blob.dtype, BlobDType::USub(bits as u8), "blob at {offset}");
        assert_eq!(blob.dtype.bits(), bits as u32);
        assert_eq!(unpack(blob.data, bits, want.len()), want, "values of the blob at {offset}");
    }
}
