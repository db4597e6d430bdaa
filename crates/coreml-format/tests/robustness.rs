//! Property tests: random mutations of weight files and specs never panic, and valid blob files
//! read back what was written. Stand-in for, and companion to, the cargo-fuzz targets.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use coreml_format::blob::build_blob_file;
use coreml_format::{BlobFile, fuzz};
use proptest::prelude::*;

fn fixture_bytes() -> &'static (Vec<u8>, Vec<u8>) {
    static BYTES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/efficientnet_lite0/efficientnet_lite0.mlpackage")
            .join("Data/com.apple.CoreML");
        let spec = std::fs::read(dir.join("model.mlmodel")).expect("spec");
        let weights = std::fs::read(dir.join("weights/weight.bin")).expect("weights");
        (spec, weights)
    })
}

fn blobs() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    prop::collection::vec((1u32..18, prop::collection::vec(any::<u8>(), 0..200)), 0..6)
}

fn mutations(max_len: usize) -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0..max_len, any::<u8>()), 1..12)
}

fn apply(bytes: &mut [u8], muts: &[(usize, u8)]) {
    let n = bytes.len();
    for &(i, v) in muts {
        if n > 0 {
            bytes[i % n] = v;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_blob_files_round_trip(blobs in blobs()) {
        let refs: Vec<(u32, &[u8])> = blobs.iter().map(|(c, d)| (*c, d.as_slice())).collect();
        let (bytes, offsets) = build_blob_file(&refs);
        let file = BlobFile::parse("w.bin", Arc::from(bytes)).expect("valid");
        prop_assert_eq!(file.blobs().expect("walk").len(), blobs.len());
        for ((code, data), off) in blobs.iter().zip(offsets) {
            let b = file.blob(off).expect("blob");
            prop_assert_eq!(b.data, data.as_slice());
            prop_assert_eq!(coreml_format::BlobDType::from_code(*code), Some(b.dtype));
        }
    }

    #[test]
    fn mutated_blob_files_never_panic(blobs in blobs(), muts in mutations(2048), cut in any::<usize>()) {
        let refs: Vec<(u32, &[u8])> = blobs.iter().map(|(c, d)| (*c, d.as_slice())).collect();
        let (mut bytes, _) = build_blob_file(&refs);
        apply(&mut bytes, &muts);
        fuzz::blob_file(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        fuzz::blob_file(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz::blob_file(&data);
        fuzz::spec_and_weights(&data, Some(&data));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mutated_specs_and_weights_never_panic(
        spec_muts in mutations(1 << 20),
        weight_muts in mutations(1 << 24),
        header_muts in mutations(4096),
    ) {
        let (spec, weights) = fixture_bytes();
        let mut spec = spec.clone();
        apply(&mut spec, &spec_muts);
        let mut w = weights.clone();
        apply(&mut w, &weight_muts);
        // Concentrate some mutations where the header and first records live.
        let head = w.len().min(4096);
        apply(&mut w[..head], &header_muts);
        fuzz::spec_and_weights(&spec, Some(&w));
    }
}

#[test]
fn the_fixture_resolves_through_the_fuzz_entry_point() {
    let (spec, weights) = fixture_bytes();
    assert_eq!(fuzz::spec_and_weights(spec, Some(weights)), 431);
}
