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

/// The name in a fixed `char[CMB_NAME_CAPACITY]` buffer. A buffer with no NUL inside its
/// capacity is a bridge bug (the contract says longer names are an error, never truncated).
fn c_text(chars: &[std::ffi::c_char]) -> Result<String> {
    let Some(len) = chars.iter().position(|&c| c == 0) else {
        return Err(Error::Load(format!(
            "the Core ML bridge described a feature whose name fills all {} bytes of its buffer \
             without a terminating NUL; the bridge is faulty: rebuild it with `cargo xtask \
             build-bridge`",
            chars.len()
        )));
    };
    let bytes: Vec<u8> = chars[..len].iter().map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Which side of the model a description is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// An input: a feature the bridge cannot fill makes the model unusable on Core ML.
    Input,
    /// An output: a feature the bridge cannot deliver is left out of the schema.
    Output,
}

/// What a feature description turned into.
#[derive(Debug)]
pub(crate) enum Feature {
    /// A tensor the engine can pass, and the element count of its declared (default) shape,
    /// which sizes an output's first buffer.
    Tensor(TensorSpec, usize),
    /// A feature the bridge cannot pass: its name and why.
    Unsupported(String, String),
}

/// Element types the bridge passes for multi-arrays (float64 crosses as f32).
fn multiarray_dtype(code: i32) -> Option<DType> {
    match coreml_sys::dtype_from_code(code)? {
        d @ (DType::F32 | DType::F16 | DType::I32) => Some(d),
        _ => None,
    }
}

fn count(dims: &[usize]) -> usize {
    dims.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n)).unwrap_or(0)
}

/// Converts one bridge description. Multi-arrays keep their declared shape; a flexible one
/// accepts any size per dimension (the bridge does not pass the ranges), and an output with no
/// declared shape at all gets an empty shape, meaning "any rank" (Core ML multi-arrays have
/// rank >= 1). Images become u8 tensors `[height, width, channels]`; a flexible image output
/// accepts any height and width, while an image input must have the constraint's default
/// size, the only one the bridge fills.
pub(crate) fn feature_spec(desc: &CmbFeatureDesc, side: Side) -> Result<Feature> {
    let name = c_text(&desc.name)?;
    let unsupported = |why: String| Ok(Feature::Unsupported(name.clone(), why));
    let flexible = desc.flexible != 0;
    match desc.kind {
        CMB_FEATURE_MULTIARRAY => {
            let Some(dtype) = multiarray_dtype(desc.dtype) else {
                return unsupported(format!(
                    "element type code {} (the bridge passes f32, f16, i32 and float64)",
                    desc.dtype
                ));
            };
            let rank = desc.rank as usize;
            if rank > CMB_MAX_RANK {
                return unsupported(format!("rank {rank}, above the bridge's {CMB_MAX_RANK}"));
            }
            let declared = &desc.shape[..rank];
            if rank == 0 && !flexible {
                return Err(Error::Load(format!(
                    "the Core ML bridge described `{name}` with no shape and as not flexible; \
                     the bridge is faulty: rebuild it with `cargo xtask build-bridge`"
                )));
            }
            if rank == 0 && side == Side::Input {
                return unsupported("no declared shape, so inputs cannot be checked".into());
            }
            if !flexible && declared.iter().any(|&d| d <= 0) {
                return Err(Error::Load(format!(
                    "the Core ML bridge described `{name}` with shape {declared:?}; a fixed \
                     shape needs positive sizes. Rebuild the bridge or recompile the model"
                )));
            }
            // The default shape sizes an output's first buffer (at least one element per dim).
            let default: Vec<usize> =
                declared.iter().map(|&d| usize::try_from(d).unwrap_or(1).max(1)).collect();
            let shape = default
                .iter()
                .map(|&d| if flexible { Dim::Range { min: 1, max: None } } else { Dim::Fixed(d) })
                .collect();
            let spec =
                TensorSpec { name: name.clone(), dtype, shape, kind: FeatureKind::MultiArray };
            Ok(Feature::Tensor(spec, count(&default)))
        }
        CMB_FEATURE_IMAGE => {
            let (format, channels) = match desc.image_format {
                CMB_IMAGE_RGB => (ImageFormat::Rgb, 3),
                CMB_IMAGE_BGR => (ImageFormat::Bgr, 3),
                CMB_IMAGE_GRAY => (ImageFormat::Gray, 1),
                other => {
                    return unsupported(format!(
                        "an image pixel format the bridge cannot pass (layout code {other}, \
                         CoreVideo OSType {:#010x})",
                        desc.image_pixel_format
                    ));
                }
            };
            let (Ok(width), Ok(height)) =
                (usize::try_from(desc.image_width), usize::try_from(desc.image_height))
            else {
                return Err(Error::Load(format!(
                    "the Core ML bridge described image `{name}` as {}x{} pixels",
                    desc.image_width, desc.image_height
                )));
            };
            if width == 0 || height == 0 {
                return Err(Error::Load(format!(
                    "the Core ML bridge described image `{name}` as {width}x{height} pixels"
                )));
            }
            let open = flexible && side == Side::Output;
            let dim =
                |n: usize| if open { Dim::Range { min: 1, max: None } } else { Dim::Fixed(n) };
            let spec = TensorSpec {
                name: name.clone(),
                dtype: DType::U8,
                shape: vec![dim(height), dim(width), Dim::Fixed(channels)],
                kind: FeatureKind::Image { width, height, format },
            };
            Ok(Feature::Tensor(spec, count(&[height, width, channels])))
        }
        other => unsupported(format!(
            "a kind the bridge cannot pass (kind code {other}: not a multi-array or an image)"
        )),
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

/// Elements an output's buffer must hold at least: its shape when fixed, else 1. The model's
/// handles raise this to the declared default shape (their size hints) and, when a result is
/// larger still, to the shape the bridge reports (see `ffi::ModelHandle::predict`).
pub(crate) fn output_capacity(spec: &TensorSpec) -> usize {
    spec.fixed_shape().map(|s| count(&s)).filter(|&n| n > 0).unwrap_or(1)
}

/// Checks what the bridge reported for one output against its spec and the buffer, then
/// builds the tensor. Any inconsistency is a runtime error naming the output. An empty spec
/// shape (an output Core ML declares no shape for) accepts any rank up to `CMB_MAX_RANK`.
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
    if raw.rank as usize > CMB_MAX_RANK || raw.shape.len() != raw.rank as usize {
        return Err(bad(format!("with rank {}", raw.rank)));
    }
    if raw.data.dtype() != spec.dtype {
        return Err(bad(format!("as {}", raw.data.dtype())));
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
    let fits = if spec.shape.is_empty() {
        !shape.is_empty()
    } else {
        shape.len() == spec.shape.len() && spec.shape.iter().zip(&shape).all(|(d, &s)| d.accepts(s))
    };
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

    fn desc(kind: i32, dtype: i32, shape: &[i64], flexible: bool) -> CmbFeatureDesc {
        let mut d =
            CmbFeatureDesc { kind, dtype, flexible: i32::from(flexible), ..Default::default() };
        d.name[0] = b'f' as std::ffi::c_char;
        d.rank = shape.len() as u32;
        d.shape[..shape.len()].copy_from_slice(shape);
        d
    }

    #[test]
    fn flexible_features_keep_their_default_size_for_the_first_buffer() {
        let d = desc(CMB_FEATURE_MULTIARRAY, 0, &[2, 8], true);
        let Ok(Feature::Tensor(spec, default)) = feature_spec(&d, Side::Output) else { panic!() };
        assert_eq!((spec.shape.len(), default, output_capacity(&spec)), (2, 16, 1));
        // An image output with a flexible size accepts any height and width; an input only
        // the constraint's size (the one the bridge fills).
        let mut img = desc(CMB_FEATURE_IMAGE, 5, &[4, 6, 3], true);
        (img.image_width, img.image_height, img.image_format) = (6, 4, CMB_IMAGE_RGB);
        let Ok(Feature::Tensor(out, n)) = feature_spec(&img, Side::Output) else { panic!() };
        assert_eq!(
            (out.shape[0], out.shape[2], n),
            (Dim::Range { min: 1, max: None }, Dim::Fixed(3), 72)
        );
        let Ok(Feature::Tensor(inp, _)) = feature_spec(&img, Side::Input) else { panic!() };
        assert_eq!(inp.fixed_shape(), Some(vec![4, 6, 3]));
    }

    #[test]
    fn shapes_the_bridge_cannot_mean_are_refused() {
        // No declared shape: fine for an output (any rank), not for an input.
        let none = desc(CMB_FEATURE_MULTIARRAY, 0, &[], true);
        assert!(
            matches!(feature_spec(&none, Side::Output), Ok(Feature::Tensor(s, 1)) if s.shape.is_empty())
        );
        assert!(matches!(feature_spec(&none, Side::Input), Ok(Feature::Unsupported(..))));
        let fixed_zero = desc(CMB_FEATURE_MULTIARRAY, 0, &[1, 0], false);
        assert!(matches!(feature_spec(&fixed_zero, Side::Output), Err(Error::Load(_))));
        // i64 and u8 multi-arrays are not passed by the bridge.
        for code in [3, 5, -1, 42] {
            let d = desc(CMB_FEATURE_MULTIARRAY, code, &[1], false);
            assert!(
                matches!(feature_spec(&d, Side::Output), Ok(Feature::Unsupported(..))),
                "{code}"
            );
        }
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
