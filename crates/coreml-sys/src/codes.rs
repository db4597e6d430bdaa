//! The ABI codes of [`DType`] and [`ComputeUnits`]: the one place the API's enums meet the
//! header's `CMB_DTYPE_*` and `CMB_COMPUTE_*` constants (`tests/header_codes.rs` parses the
//! header and checks every code).

use inference_api::{ComputeUnits, DType};

use crate::types::{
    CMB_COMPUTE_ALL, CMB_COMPUTE_CPU_AND_GPU, CMB_COMPUTE_CPU_AND_NEURAL_ENGINE,
    CMB_COMPUTE_CPU_ONLY, CMB_DTYPE_F16, CMB_DTYPE_F32, CMB_DTYPE_I8, CMB_DTYPE_I32, CMB_DTYPE_I64,
    CMB_DTYPE_U8,
};

/// The `CMB_DTYPE_*` code of an element type.
pub fn dtype_code(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => CMB_DTYPE_F32,
        DType::F16 => CMB_DTYPE_F16,
        DType::I32 => CMB_DTYPE_I32,
        DType::I64 => CMB_DTYPE_I64,
        DType::I8 => CMB_DTYPE_I8,
        DType::U8 => CMB_DTYPE_U8,
    }
}

/// The element type of a `CMB_DTYPE_*` code; `None` for any other value (e.g. -1, "no
/// element type").
pub fn dtype_from_code(code: i32) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| dtype_code(d) == code)
}

/// The `CMB_COMPUTE_*` code of a compute-units choice.
pub fn compute_units_code(units: ComputeUnits) -> i32 {
    match units {
        ComputeUnits::All => CMB_COMPUTE_ALL,
        ComputeUnits::CpuOnly => CMB_COMPUTE_CPU_ONLY,
        ComputeUnits::CpuAndGpu => CMB_COMPUTE_CPU_AND_GPU,
        ComputeUnits::CpuAndNeuralEngine => CMB_COMPUTE_CPU_AND_NEURAL_ENGINE,
    }
}

/// The compute units of a `CMB_COMPUTE_*` code; `None` for any other value.
pub fn compute_units_from_code(code: i32) -> Option<ComputeUnits> {
    ComputeUnits::ALL.into_iter().find(|&u| compute_units_code(u) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_codes_are_stable_and_round_trip() {
        // Moved from inference-api with the codes; the same checks.
        let codes: Vec<i32> = ComputeUnits::ALL.iter().map(|&c| compute_units_code(c)).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
        for c in ComputeUnits::ALL {
            assert_eq!(compute_units_from_code(compute_units_code(c)), Some(c));
            assert_eq!(c.as_str().parse::<ComputeUnits>().ok(), Some(c));
        }
        assert_eq!(compute_units_from_code(4), None);
        let codes: Vec<i32> = DType::ALL.iter().map(|&d| dtype_code(d)).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5], "DType::ALL is in ABI code order");
        for d in DType::ALL {
            assert_eq!(dtype_from_code(dtype_code(d)), Some(d));
            assert_eq!(d.as_str().parse::<DType>().ok(), Some(d));
        }
        assert_eq!(dtype_from_code(-1), None);
        assert_eq!(dtype_from_code(6), None);
        assert!("f64".parse::<DType>().is_err());
    }
}
