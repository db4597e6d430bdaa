//! 3-D `conv_transpose`: depth slices of the 2-D transposed convolution. Input depth `i`
//! through kernel depth tap `k` lands on output depth `i * stride + k * dilation - crop`, so the
//! result is the sum, over those pairs, of the 2-D transposed convolution of input slice `i`
//! with the kernel's slice `k` (the 2-D op owns the height and width geometry).

use std::sync::Arc;

use coreml_format::{ConstValue, Operation};
use inference_api::Result;

use super::Builder;
use super::conv_transpose::{ConvTranspose, PadType, axis_len};
use super::func::{arg, tensor, values};

/// A 3-D transposed convolution: one 2-D op per kernel depth tap plus the depth geometry.
struct ConvTranspose3d {
    /// The 2-D op of each kernel depth tap (no bias).
    taps: Vec<ConvTranspose>,
    /// Depth `[kernel, stride, dilation]`.
    depth: [usize; 3],
    pad_type: PadType,
    /// Custom depth padding `(front, back)`.
    pad: (usize, usize),
    /// Output depth `output_shape` asks for.
    out_depth: Option<usize>,
    c_out: usize,
    bias: Option<Vec<f32>>,
}

impl ConvTranspose3d {
    /// Runs on `x` = `[n, c_in, d, h, w]`; returns the output values and shape.
    fn run(
        &self,
        x: &[f32],
        dims: [usize; 5],
    ) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
        let [n, c_in, d, h, w] = dims;
        let (od, crop) = axis_len(d, self.depth, self.pad_type, self.pad, self.out_depth)
            .map_err(|e| format!("{e} along depth"))?;
        let [_, s, dil] = self.depth;
        let mut out: Vec<f32> = Vec::new();
        let mut plane = [0usize; 2];
        let mut slice = vec![0f32; n * c_in * h * w];
        for iz in 0..d {
            for b in 0..n {
                for c in 0..c_in {
                    let src = &x[((b * c_in + c) * d + iz) * h * w..][..h * w];
                    slice[(b * c_in + c) * h * w..][..h * w].copy_from_slice(src);
                }
            }
            for (kz, tap) in self.taps.iter().enumerate() {
                let oz = (iz * s + kz * dil) as i64 - crop;
                if oz < 0 || oz >= od as i64 {
                    continue;
                }
                let (y, [oh, ow]) = tap.run(&slice, n, h, w)?;
                if out.is_empty() {
                    plane = [oh, ow];
                    out = vec![0f32; n * self.c_out * od * oh * ow];
                }
                let hw = oh * ow;
                for (k, chunk) in y.chunks(hw).enumerate() {
                    let dst = &mut out[(k * od + oz as usize) * hw..][..hw];
                    dst.iter_mut().zip(chunk).for_each(|(o, v)| *o += v);
                }
            }
        }
        if out.is_empty() {
            // No input slice reaches the output (all cropped): still the right shape.
            let (_, [oh, ow]) = self.taps[0].run(&slice, n, h, w)?;
            plane = [oh, ow];
            out = vec![0f32; n * self.c_out * od * oh * ow];
        }
        let vol = od * plane[0] * plane[1];
        if let Some(bias) = &self.bias {
            for (k, chunk) in out.chunks_mut(vol).enumerate() {
                let bv = bias[k % self.c_out];
                chunk.iter_mut().for_each(|v| *v += bv);
            }
        }
        Ok((out, vec![n, self.c_out, od, plane[0], plane[1]]))
    }
}

/// Compiles a `conv_transpose` whose weight `w` is `[c_in, c_out / groups, kd, kh, kw]`.
pub(super) fn conv_transpose3d(
    b: &mut Builder<'_>,
    i: usize,
    op: &Operation,
    w: &Arc<ConstValue>,
) -> Result<()> {
    let &[c_in, c_out_g, kd, kh, kw] = w.shape.as_slice() else {
        return Err(b.bad(i, op, format!("weight shape {:?} is not 5-D", w.shape)));
    };
    let weight = w.to_f32_vec().ok_or_else(|| b.bad(i, op, "weight is not numeric"))?;
    let bias = b.param(i, op, "bias")?.and_then(|v| v.to_f32_vec());
    let groups = b.int_or(i, op, "groups", 1)?;
    let groups =
        usize::try_from(groups).ok().filter(|&g| g > 0 && c_in % g == 0).ok_or_else(|| {
            b.bad(i, op, format!("groups {groups} does not divide {c_in} input channels"))
        })?;
    let c_out = c_out_g * groups;
    if bias.as_ref().is_some_and(|v| v.len() != c_out) {
        return Err(b.bad(i, op, format!("bias does not have {c_out} values")));
    }
    let three = |b: &mut Builder<'_>, name: &str| -> Result<[usize; 3]> {
        match b.usizes(i, op, name)?.as_deref() {
            None => Ok([1; 3]),
            Some(&[x, y, z]) if x > 0 && y > 0 && z > 0 => Ok([x, y, z]),
            Some(other) => Err(b.bad(i, op, format!("`{name}` {other:?} for a 3-D kernel"))),
        }
    };
    let stride = three(b, "strides")?;
    let dilation = three(b, "dilations")?;
    let pad_type = match b.string(i, op, "pad_type")?.as_deref() {
        None | Some("valid") => PadType::Valid,
        Some("same") => PadType::Same,
        Some("custom") => PadType::Custom,
        Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let pad = match b.usizes(i, op, "pad")?.as_deref() {
        None => [0; 6],
        Some(&[a, c, d, e, f, g]) => [a, c, d, e, f, g],
        Some(other) => return Err(b.bad(i, op, format!("pad {other:?} for a 3-D kernel"))),
    };
    let out_size = match b.usizes(i, op, "output_shape")?.as_deref() {
        None => None,
        Some(&[_, _, d, h, w]) => Some([d, h, w]),
        Some(other) => return Err(b.bad(i, op, format!("output_shape {other:?}"))),
    };
    let taps = (0..kd)
        .map(|z| ConvTranspose {
            weight: (0..c_in * c_out_g)
                .flat_map(|p| weight[(p * kd + z) * kh * kw..][..kh * kw].iter().copied())
                .collect(),
            c_in,
            c_out_g,
            kernel: [kh, kw],
            stride: [stride[1], stride[2]],
            dilation: [dilation[1], dilation[2]],
            groups,
            bias: None,
            pad_type,
            pad: [pad[2], pad[3], pad[4], pad[5]],
            out_size: out_size.map(|o| [o[1], o[2]]),
        })
        .collect();
    let ct = ConvTranspose3d {
        taps,
        depth: [kd, stride[0], dilation[0]],
        pad_type,
        pad: (pad[0], pad[1]),
        out_depth: out_size.map(|o| o[0]),
        c_out,
        bias,
    };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let &[n, c, d, h, w] = x.dims() else {
            candle_core::bail!("conv_transpose: input shape {:?} for a 3-D kernel", x.dims())
        };
        if c != c_in {
            candle_core::bail!("conv_transpose: {c} input channels, the weight takes {c_in}")
        }
        let (y, shape) = ct.run(&values(x)?, [n, c, d, h, w]).map_err(candle_core::Error::Msg)?;
        Ok(vec![tensor(y, &shape)?])
    });
    Ok(())
}
