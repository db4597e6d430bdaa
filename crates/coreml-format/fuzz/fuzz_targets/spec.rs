//! Fuzzes the spec reader: arbitrary bytes as `model.mlmodel` (no weights).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    coreml_format::fuzz::spec_and_weights(data, None);
});
