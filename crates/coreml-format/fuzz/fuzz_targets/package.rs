//! Fuzzes spec and weights together: the input is `u32 spec length` + spec + weight file, so a
//! corpus seeded from a real package explores consts that point into a real weight file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (spec, weights) = rest.split_at(n.min(rest.len()));
    coreml_format::fuzz::spec_and_weights(spec, Some(weights));
});
