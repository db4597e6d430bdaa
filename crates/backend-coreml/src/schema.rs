//! Translating the bridge's plain descriptions into the API's schema, placement and tensors,
//! and refusing outputs whose reported size does not add up.

use coreml_sys::{
    CMB_FEATURE_IMAGE, CMB_FEATURE_MULTIARRAY, CMB_IMAGE_BGR, CMB_IMAGE_GRAY, CMB_IMAGE_RGB,
    CMB_MAX_RANK, CmbFeatureDesc, CmbPlanOp,
};
use inference_api::{
    DType, Dim, Error, FeatureKind, ImageFormat, Result, Tensor, TensorData, TensorSpec,
};

use crate::ffi::{RawOutput, device_name};

fn c_text(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a feature description turned into.
pub(crate) enum Feature {
    /// A tensor the engine can pass.
    Tensor(TensorSpec),
    /// A feature the bridge cannot pass (string, dictionary...), by name.
    Unsupported(String),
}

/// Converts one bridge description. Image features become u8 tensors `[height, width, channels]`.
pub(crate) fn feature_spec(desc: &CmbFeatureDesc) -> Result<Feature> {
    let name = c_text(&desc.name);
    match desc.kind {
        CMB_FEATURE_MULTIARRAY => {
            let dtype =
                u32::try_from(desc.dtype).ok().and_then(DType::from_abi_code).ok_or_else(|| {
                    Error::Unavailable(format!(
                        "Core ML feature `{name}` has an element type the bridge cannot pass \
                         (code {})",
                        desc.dtype
                    ))
                })?;
            let rank = desc.rank as usize;
            if rank > CMB_MAX_RANK {
                return Err(Error::Load(format!(
                    "Core ML feature `{name}` has rank {rank}, above the bridge's {CMB_MAX_RANK}"
                )));
            }
            let shape = desc.shape[..rank]
                .iter()
                .map(|&d| {
                    if desc.flexible != 0 {
                        Dim::Range { min: 1, max: None }
                    } else {
                        Dim::Fixed(usize::try_from(d).unwrap_or(0))
                    }
                })
                .collect();
            Ok(Feature::Tensor(TensorSpec { name, dtype, shape, kind: FeatureKind::MultiArray }))
        }
        CMB_FEATURE_IMAGE => {
            let (format, channels) = match desc.image_format {
                CMB_IMAGE_RGB => (ImageFormat::Rgb, 3),
                CMB_IMAGE_BGR => (ImageFormat::Bgr, 3),
                CMB_IMAGE_GRAY => (ImageFormat::Gray, 1),
                other => {
                    return Err(Error::Unavailable(format!(
                        "Core ML image feature `{name}` has a pixel format the bridge cannot \
                         fill (layout code {other}, OSType {:#x})",
                        desc.image_pixel_format
                    )));
                }
            };
            let width = usize::try_from(desc.image_width).unwrap_or(0);
            let height = usize::try_from(desc.image_height).unwrap_or(0);
            Ok(Feature::Tensor(TensorSpec {
                name,
                dtype: DType::U8,
                shape: vec![Dim::Fixed(height), Dim::Fixed(width), Dim::Fixed(channels)],
                kind: FeatureKind::Image { width, height, format },
            }))
        }
        _ => Ok(Feature::Unsupported(name)),
    }
}

/// Cost-weighted share of planned work per preferred device, sorted by device name. Ops with
/// no cost or no preferred device are left out; an empty plan gives an empty list.
pub(crate) fn planned_share(ops: &[CmbPlanOp]) -> Vec<(String, f64)> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for op in ops {
        if op.preferred_device == 0 || op.estimated_cost.is_nan() || op.estimated_cost < 0.0 {
            continue;
        }
        let name = device_name(op.preferred_device).to_string();
        match totals.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 += op.estimated_cost,
            None => totals.push((name, op.estimated_cost)),
        }
    }
    let sum: f64 = totals.iter().map(|(_, c)| c).sum();
    if sum <= 0.0 || !sum.is_finite() {
        return Vec::new();
    }
    totals.sort_by(|a, b| a.0.cmp(&b.0));
    totals.into_iter().map(|(n, c)| (n, c / sum)).collect()
}

/// Elements a spec's buffer must hold: the declared shape, or the smallest accepted size of
/// each flexible dimension when the shape is open (larger results then fail clearly).
pub(crate) fn output_capacity(spec: &TensorSpec) -> usize {
    spec.shape
        .iter()
        .map(|d| match *d {
            Dim::Fixed(n) => n,
            Dim::Range { min, max } => max.unwrap_or(min.max(1)),
        })
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .unwrap_or(0)
}

/// Checks what the bridge reported for one output against its spec and the buffer, then
/// builds the tensor. Any inconsistency is a runtime error naming the output.
pub(crate) fn output_tensor(spec: &TensorSpec, raw: RawOutput) -> Result<Tensor> {
    let name = &spec.name;
    let bad = |why: String| {
        Error::Runtime(format!(
            "the Core ML bridge returned output `{name}` {why}; the model declares {} {}. \
             The bridge and the model disagree: rebuild the bridge or recompile the model",
            spec.dtype,
            spec.shape_string()
        ))
    };
    if raw.rank as usize > CMB_MAX_RANK {
        return Err(bad(format!("with rank {}", raw.rank)));
    }
    let shape: Vec<usize> = raw
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("with a negative dimension {:?}", raw.shape)))?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let capacity = raw.data.len();
    let expected_bytes = count.and_then(|c| c.checked_mul(spec.dtype.size_of()));
    if expected_bytes != Some(raw.bytes_written as usize) {
        return Err(bad(format!("with shape {shape:?} but {} bytes written", raw.bytes_written)));
    }
    let count = count.unwrap_or(0);
    if count > capacity {
        return Err(bad(format!(
            "with shape {shape:?}, larger than its {capacity}-element buffer"
        )));
    }
    let fits = shape.len() == spec.shape.len()
        && spec.shape.iter().zip(&shape).all(|(d, &s)| d.accepts(s));
    if !fits {
        return Err(bad(format!("with shape {shape:?}")));
    }
    let data = match raw.data {
        TensorData::F32(mut v) => TensorData::F32({
            v.truncate(count);
            v
        }),
        TensorData::F16(mut v) => TensorData::F16({
            v.truncate(count);
            v
        }),
        TensorData::I32(mut v) => TensorData::I32({
            v.truncate(count);
            v
        }),
        TensorData::I64(mut v) => TensorData::I64({
            v.truncate(count);
            v
        }),
        TensorData::I8(mut v) => TensorData::I8({
            v.truncate(count);
            v
        }),
        TensorData::U8(mut v) => TensorData::U8({
            v.truncate(count);
            v
        }),
    };
    Tensor::new(shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coreml_sys::{CMB_DEVICE_CPU, CMB_DEVICE_GPU, CMB_DEVICE_NEURAL_ENGINE};

    fn op(dev: u32, cost: f64) -> CmbPlanOp {
        CmbPlanOp { preferred_device: dev as i32, estimated_cost: cost, ..CmbPlanOp::default() }
    }

    #[test]
    fn share_is_cost_weighted_and_never_guessed() {
        let ops = [
            op(CMB_DEVICE_NEURAL_ENGINE, 0.6),
            op(CMB_DEVICE_CPU, 0.2),
            op(CMB_DEVICE_GPU, 0.2),
            op(CMB_DEVICE_CPU, -1.0),
            op(0, 5.0),
        ];
        let share = planned_share(&ops);
        let names: Vec<&str> = share.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cpu", "gpu", "neural_engine"]);
        assert!((share[2].1 - 0.6).abs() < 1e-12 && (share[0].1 - 0.2).abs() < 1e-12);
        assert!(planned_share(&[op(CMB_DEVICE_CPU, -1.0)]).is_empty());
        assert!(planned_share(&[]).is_empty());
    }

    #[test]
    fn lying_output_sizes_are_refused() {
        let spec = TensorSpec::fixed("out", DType::F32, &[1, 4]);
        let raw = |shape: Vec<i64>, bytes: u64| RawOutput {
            rank: shape.len() as u32,
            shape,
            bytes_written: bytes,
            data: TensorData::F32(vec![1.0; 4]),
        };
        assert!(output_tensor(&spec, raw(vec![1, 4], 16)).is_ok());
        let e = output_tensor(&spec, raw(vec![1, 5], 16)).unwrap_err().to_string();
        assert!(e.contains("`out`") && e.contains("[1, 5]"), "{e}");
        assert!(output_tensor(&spec, raw(vec![1, 4], 12)).is_err());
        assert!(output_tensor(&spec, raw(vec![2, 4], 32)).is_err());
        assert!(output_tensor(&spec, raw(vec![-1, 4], 16)).is_err());
    }
}
