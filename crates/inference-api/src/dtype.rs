//! Element types and Core ML compute-unit choices. Their C ABI codes live with the ABI, in
//! `coreml-sys` (`dtype_code`, `compute_units_code`).

use crate::Error;

/// Element type of a tensor. Never silently reinterpreted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
}

impl DType {
    /// Every dtype (in the order of their C ABI codes, see `coreml_sys::dtype_code`).
    pub const ALL: [DType; 6] =
        [DType::F32, DType::F16, DType::I32, DType::I64, DType::I8, DType::U8];

    /// Size of one element in bytes.
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I64 => 8,
            DType::I8 | DType::U8 => 1,
        }
    }

    /// Lower-case name (`f32`, `f16`, ...), as used in manifests and output.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::I8 => "i8",
            DType::U8 => "u8",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        DType::ALL.iter().copied().find(|d| d.as_str() == s).ok_or_else(|| {
            Error::Load(format!("unknown dtype `{s}`; expected one of f32, f16, i32, i64, i8, u8"))
        })
    }
}

/// Which compute devices Core ML may use. Other engines accept only [`ComputeUnits::CpuOnly`]
/// or [`ComputeUnits::All`] and report what actually served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ComputeUnits {
    /// Any device (Core ML's default).
    #[default]
    All,
    /// CPU only.
    CpuOnly,
    /// CPU and GPU.
    CpuAndGpu,
    /// CPU and Neural Engine (keeps work off the GPU).
    CpuAndNeuralEngine,
}

impl ComputeUnits {
    /// Every value (in the order of their C ABI codes, see `coreml_sys::compute_units_code`).
    pub const ALL: [ComputeUnits; 4] = [
        ComputeUnits::All,
        ComputeUnits::CpuOnly,
        ComputeUnits::CpuAndGpu,
        ComputeUnits::CpuAndNeuralEngine,
    ];

    /// Snake-case name (`all`, `cpu_only`, ...), as used in manifests, CLI flags and telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeUnits::All => "all",
            ComputeUnits::CpuOnly => "cpu_only",
            ComputeUnits::CpuAndGpu => "cpu_and_gpu",
            ComputeUnits::CpuAndNeuralEngine => "cpu_and_neural_engine",
        }
    }
}

impl std::fmt::Display for ComputeUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ComputeUnits {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ComputeUnits::ALL.iter().copied().find(|c| c.as_str() == s).ok_or_else(|| {
            Error::Load(format!(
                "unknown compute units `{s}`; expected all, cpu_only, cpu_and_gpu or cpu_and_neural_engine"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        // The ABI-code checks moved to coreml-sys (codes.rs) with the codes.
        for c in ComputeUnits::ALL {
            assert_eq!(c.as_str().parse::<ComputeUnits>().ok(), Some(c));
        }
        for d in DType::ALL {
            assert_eq!(d.as_str().parse::<DType>().ok(), Some(d));
        }
        assert!("f64".parse::<DType>().is_err());
    }
}
