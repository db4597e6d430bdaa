//! 3-D `conv` (`[N, C, D, H, W]` input, `[O, C/groups, kD, kH, kW]` weight): each output depth
//! slice is the sum over the kernel's depth taps of a 2-D convolution (candle's, with groups,
//! stride and dilation) of one padded input slice with one weight slice. 1-D and 2-D convs stay
//! on the fused kernels (`compile_conv.rs`).

use candle_core::{Result as CResult, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::arg;

/// A 3-D convolution with its weights.
#[derive(Debug, Clone)]
pub(crate) struct Conv3d {
    /// `[O, C/groups, kD, kH, kW]`.
    pub(crate) weight: Tensor,
    /// `[O]`.
    pub(crate) bias: Option<Tensor>,
    pub(crate) strides: [usize; 3],
    pub(crate) dilations: [usize; 3],
    pub(crate) groups: usize,
    /// `valid`, `same`, `same_lower` or explicit `[d0, d1, h0, h1, w0, w1]`.
    pub(crate) pad: ConvPad,
}

/// Conv padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConvPad {
    Valid,
    /// Output `ceil(in / stride)`; the odd pixel at the end (`same`) or start (`same_lower`).
    Same {
        lower: bool,
    },
    Custom([usize; 6]),
}

impl Conv3d {
    /// `(before, after)` padding of each spatial dimension for input sizes `sizes`.
    fn pads(&self, sizes: &[usize], kernel: &[usize]) -> [(usize, usize); 3] {
        let mut out = [(0, 0); 3];
        for d in 0..3 {
            out[d] = match &self.pad {
                ConvPad::Valid => (0, 0),
                ConvPad::Custom(p) => (p[2 * d], p[2 * d + 1]),
                ConvPad::Same { lower } => {
                    let (i, s) = (sizes[d], self.strides[d]);
                    let eff = (kernel[d] - 1) * self.dilations[d] + 1;
                    let total = (i.div_ceil(s).saturating_sub(1) * s + eff).saturating_sub(i);
                    let small = total / 2;
                    if *lower { (total - small, small) } else { (small, total - small) }
                }
            };
        }
        out
    }

    /// Runs on `[N, C, D, H, W]`.
    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let &[_, _, d, h, w] = x.dims() else {
            candle_core::bail!("conv3d: expected [N, C, D, H, W], got {:?}", x.dims())
        };
        let &[o, _, kd, kh, kw] = self.weight.dims() else {
            candle_core::bail!("conv3d: weight of shape {:?}", self.weight.dims())
        };
        let pads = self.pads(&[d, h, w], &[kd, kh, kw]);
        let x = x
            .pad_with_zeros(2, pads[0].0, pads[0].1)?
            .pad_with_zeros(3, pads[1].0, pads[1].1)?
            .pad_with_zeros(4, pads[2].0, pads[2].1)?;
        let pd = d + pads[0].0 + pads[0].1;
        let eff = (kd - 1) * self.dilations[0] + 1;
        if pd < eff {
            candle_core::bail!("conv3d: kernel depth {eff} larger than padded depth {pd}")
        }
        let od = (pd - eff) / self.strides[0] + 1;
        let taps: Vec<Tensor> = (0..kd)
            .map(|t| self.weight.narrow(2, t, 1)?.squeeze(2)?.contiguous())
            .collect::<CResult<_>>()?;
        let mut slices = Vec::with_capacity(od);
        for z in 0..od {
            let mut acc: Option<Tensor> = None;
            for (t, wt) in taps.iter().enumerate() {
                let at = z * self.strides[0] + t * self.dilations[0];
                let plane = x.narrow(2, at, 1)?.squeeze(2)?.contiguous()?;
                let y = plane.conv2d(wt, 0, self.strides[1], self.dilations[1], self.groups)?;
                acc = Some(match acc {
                    None => y,
                    Some(a) => (a + y)?,
                });
            }
            let y = acc.ok_or_else(|| candle_core::Error::Msg("conv3d: empty kernel".into()))?;
            slices.push(y.unsqueeze(2)?);
        }
        let mut y = Tensor::cat(&slices, 2)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.reshape((1, o, 1, 1, 1))?)?;
        }
        Ok(y)
    }
}

/// `conv`: a rank-5 weight runs here, everything else on the fused 1-D/2-D path.
pub(super) fn conv(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let w = b.param(i, op, "weight")?.ok_or_else(|| b.bad(i, op, "no weight"))?;
    if w.shape.len() != 5 {
        return super::core_op(b, i, op);
    }
    let weight = b.const_tensor(i, op, "weight")?.ok_or_else(|| b.bad(i, op, "no weight"))?;
    let bias = b.const_tensor(i, op, "bias")?;
    let three = |v: Option<Vec<usize>>, what: &str| -> std::result::Result<[usize; 3], String> {
        match v.as_deref() {
            None => Ok([1; 3]),
            Some(&[a, b, c]) => Ok([a, b, c]),
            Some(other) => Err(format!("`{what}` {other:?} is not three values")),
        }
    };
    let strides = b.usizes(i, op, "strides")?;
    let strides = three(strides, "strides").map_err(|e| b.bad(i, op, e))?;
    let dilations = b.usizes(i, op, "dilations")?;
    let dilations = three(dilations, "dilations").map_err(|e| b.bad(i, op, e))?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(b.bad(i, op, "strides and dilations must be positive"));
    }
    let groups = b.int_or(i, op, "groups", 1)?;
    let groups =
        usize::try_from(groups).ok().filter(|&g| g > 0).ok_or_else(|| b.bad(i, op, "groups"))?;
    let pad = match b.string(i, op, "pad_type")?.as_deref() {
        None | Some("valid") => ConvPad::Valid,
        Some("same") => ConvPad::Same { lower: false },
        Some("same_lower") => ConvPad::Same { lower: true },
        Some("custom") => match b.usizes(i, op, "pad")?.as_deref() {
            Some(&[a, b_, c, d, e, f]) => ConvPad::Custom([a, b_, c, d, e, f]),
            other => return Err(b.bad(i, op, format!("custom pad {other:?} is not 6 values"))),
        },
        Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let conv = Conv3d { weight, bias, strides, dilations, groups, pad };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![conv.forward(arg(a, 0)?)?]));
    Ok(())
}
