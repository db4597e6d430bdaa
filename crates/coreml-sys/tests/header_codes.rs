//! The ABI codes of `DType` and `ComputeUnits` (coreml-sys `codes.rs`) and every integer
//! constant this crate mirrors agree with `coreml-bridge/include/coreml_bridge.h`, read and
//! parsed here; the checker proves itself on a deliberately broken copy of the header.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use coreml_sys::*;
use inference_api::{ComputeUnits, DType};

fn header_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../coreml-bridge/include/coreml_bridge.h");
    std::fs::read_to_string(path).unwrap()
}

/// Every `#define CMB_NAME <integer>` of the header (comments after the value ignored).
fn defines(header: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in header.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else { continue };
        if let (true, Ok(v)) = (name.starts_with("CMB_"), value.parse::<i64>()) {
            out.insert(name.to_string(), v);
        }
    }
    out
}

/// Everything in `header` that disagrees with this crate; empty when all agree.
fn problems(header: &str) -> Vec<String> {
    let defs = defines(header);
    let mut bad = Vec::new();
    let mut expect = |name: String, ours: i64| match defs.get(&name) {
        Some(&v) if v == ours => {}
        Some(&v) => bad.push(format!("{name}: header {v}, coreml-sys {ours}")),
        None => bad.push(format!("{name}: not in the header")),
    };
    for d in DType::ALL {
        expect(format!("CMB_DTYPE_{}", d.as_str().to_uppercase()), dtype_code(d).into());
    }
    for u in ComputeUnits::ALL {
        expect(format!("CMB_COMPUTE_{}", u.as_str().to_uppercase()), compute_units_code(u).into());
    }
    let constants: [(&str, i64); 32] = [
        ("CMB_ABI_VERSION", CMB_ABI_VERSION.into()),
        ("CMB_MAX_RANK", CMB_MAX_RANK as i64),
        ("CMB_NAME_CAPACITY", CMB_NAME_CAPACITY as i64),
        ("CMB_OP_NAME_CAPACITY", CMB_OP_NAME_CAPACITY as i64),
        ("CMB_OK", CMB_OK.into()),
        ("CMB_ERR_INVALID_ARGUMENT", CMB_ERR_INVALID_ARGUMENT.into()),
        ("CMB_ERR_COMPILE", CMB_ERR_COMPILE.into()),
        ("CMB_ERR_LOAD", CMB_ERR_LOAD.into()),
        ("CMB_ERR_PREDICT", CMB_ERR_PREDICT.into()),
        ("CMB_ERR_OUTPUT", CMB_ERR_OUTPUT.into()),
        ("CMB_ERR_UNSUPPORTED", CMB_ERR_UNSUPPORTED.into()),
        ("CMB_ERR_IO", CMB_ERR_IO.into()),
        ("CMB_ERR_INTERNAL", CMB_ERR_INTERNAL.into()),
        ("CMB_ERR_CANCELLED", CMB_ERR_CANCELLED.into()),
        ("CMB_ERR_TIMEOUT", CMB_ERR_TIMEOUT.into()),
        ("CMB_COMPUTE_ALL", CMB_COMPUTE_ALL.into()),
        ("CMB_COMPUTE_CPU_ONLY", CMB_COMPUTE_CPU_ONLY.into()),
        ("CMB_COMPUTE_CPU_AND_GPU", CMB_COMPUTE_CPU_AND_GPU.into()),
        ("CMB_COMPUTE_CPU_AND_NEURAL_ENGINE", CMB_COMPUTE_CPU_AND_NEURAL_ENGINE.into()),
        ("CMB_DTYPE_F32", CMB_DTYPE_F32.into()),
        ("CMB_DTYPE_F16", CMB_DTYPE_F16.into()),
        ("CMB_DTYPE_I32", CMB_DTYPE_I32.into()),
        ("CMB_DTYPE_I64", CMB_DTYPE_I64.into()),
        ("CMB_DTYPE_I8", CMB_DTYPE_I8.into()),
        ("CMB_DTYPE_U8", CMB_DTYPE_U8.into()),
        ("CMB_FEATURE_MULTIARRAY", CMB_FEATURE_MULTIARRAY.into()),
        ("CMB_FEATURE_IMAGE", CMB_FEATURE_IMAGE.into()),
        ("CMB_FEATURE_OTHER", CMB_FEATURE_OTHER.into()),
        ("CMB_IMAGE_RGB", CMB_IMAGE_RGB.into()),
        ("CMB_IMAGE_BGR", CMB_IMAGE_BGR.into()),
        ("CMB_IMAGE_GRAY", CMB_IMAGE_GRAY.into()),
        ("CMB_IO_INPUT", CMB_IO_INPUT.into()),
    ];
    let more: [(&str, i64); 4] = [
        ("CMB_IO_OUTPUT", CMB_IO_OUTPUT.into()),
        ("CMB_DEVICE_CPU", CMB_DEVICE_CPU.into()),
        ("CMB_DEVICE_GPU", CMB_DEVICE_GPU.into()),
        ("CMB_DEVICE_NEURAL_ENGINE", CMB_DEVICE_NEURAL_ENGINE.into()),
    ];
    for (name, ours) in constants.into_iter().chain(more) {
        expect(name.to_string(), ours);
    }
    // No code in the header that the API's enums do not have (a header-only dtype or unit).
    for (name, &v) in &defs {
        if let Some(rest) = name.strip_prefix("CMB_DTYPE_")
            && dtype_from_code(v as i32).is_none_or(|d| d.as_str().to_uppercase() != rest)
        {
            bad.push(format!("{name} = {v}: no DType has this code and name"));
        }
        if let Some(rest) = name.strip_prefix("CMB_COMPUTE_")
            && compute_units_from_code(v as i32).is_none_or(|u| u.as_str().to_uppercase() != rest)
        {
            bad.push(format!("{name} = {v}: no ComputeUnits has this code and name"));
        }
    }
    bad
}

#[test]
fn every_code_matches_the_header() {
    let header = header_text();
    assert!(defines(&header).len() >= 36, "the parser found the header's constants");
    assert_eq!(problems(&header), Vec::<String>::new());
}

#[test]
fn a_drifted_header_is_caught() {
    let header = header_text();
    let swapped = header
        .replace("#define CMB_DTYPE_F16 1", "#define CMB_DTYPE_F16 2")
        .replace("#define CMB_COMPUTE_CPU_ONLY 1", "#define CMB_COMPUTE_CPU_ONLY 7");
    assert_ne!(swapped, header, "the broken copy differs");
    let found = problems(&swapped).join("\n");
    assert!(found.contains("CMB_DTYPE_F16: header 2, coreml-sys 1"), "{found}");
    assert!(found.contains("CMB_COMPUTE_CPU_ONLY: header 7, coreml-sys 1"), "{found}");
    let extra = format!("{header}\n#define CMB_DTYPE_BF16 6\n");
    assert!(problems(&extra).join("\n").contains("CMB_DTYPE_BF16 = 6: no DType"), "extra code");
    let missing = header.replace("#define CMB_DTYPE_U8 5", "");
    assert!(problems(&missing).join("\n").contains("CMB_DTYPE_U8: not in the header"));
}
