//! Fuzzes the blob storage v2 reader: arbitrary bytes as `weight.bin`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    coreml_format::fuzz::blob_file(data);
});
