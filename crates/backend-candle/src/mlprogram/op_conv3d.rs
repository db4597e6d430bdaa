//! `conv` beyond the fused kernels: 3-D convolutions (`[N, C, D, H, W]` input,
//! `[O, C/groups, kD, kH, kW]` weight), and 1-D/2-D/3-D convolutions whose weight is computed at
//! run time. The input is zero-padded explicitly, then 1-D and 2-D run on candle's conv, and
//! each 3-D output depth slice is the sum over the kernel's depth taps of a 2-D convolution of
//! one input slice with one weight slice. Const-weight 1-D/2-D convs stay on the fused kernels
//! (`compile_conv.rs`).

use candle_core::{Result as CResult, Tensor};
use coreml_format::{Argument, Operation};
use inference_api::Result;

use super::Builder;
use super::func::arg;

/// Conv padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConvPad {
    Valid,
    /// Output `ceil(in / stride)`; the odd pixel at the end (`same`) or start (`same_lower`).
    Same {
        lower: bool,
    },
    /// `[begin, end]` per spatial dimension, flattened.
    Custom(Vec<usize>),
}

/// A 1-D, 2-D or 3-D convolution's geometry.
#[derive(Debug, Clone)]
pub(crate) struct ConvNd {
    pub(crate) strides: Vec<usize>,
    pub(crate) dilations: Vec<usize>,
    pub(crate) groups: usize,
    pub(crate) pad: ConvPad,
}

impl ConvNd {
    /// `(before, after)` padding of each spatial dimension.
    fn pads(&self, sizes: &[usize], kernel: &[usize]) -> CResult<Vec<(usize, usize)>> {
        (0..sizes.len())
            .map(|d| {
                Ok(match &self.pad {
                    ConvPad::Valid => (0, 0),
                    ConvPad::Custom(p) => match (p.get(2 * d), p.get(2 * d + 1)) {
                        (Some(&b), Some(&e)) => (b, e),
                        _ => candle_core::bail!("conv: custom pad {p:?} for {} dims", sizes.len()),
                    },
                    ConvPad::Same { lower } => {
                        let (i, s) = (sizes[d], self.strides[d]);
                        let eff = (kernel[d] - 1) * self.dilations[d] + 1;
                        let total = (i.div_ceil(s).saturating_sub(1) * s + eff).saturating_sub(i);
                        let small = total / 2;
                        if *lower { (total - small, small) } else { (small, total - small) }
                    }
                })
            })
            .collect()
    }

    /// Runs on `[N, C, spatial...]` with `weight` `[O, C/groups, kernel...]`.
    pub(crate) fn forward(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> CResult<Tensor> {
        let r = x.rank().saturating_sub(2);
        if !(1..=3).contains(&r) || w.rank() != r + 2 || self.strides.len() != r {
            candle_core::bail!(
                "conv: input {:?}, weight {:?}, {} strides",
                x.dims(),
                w.dims(),
                self.strides.len()
            )
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) || self.groups == 0 {
            candle_core::bail!("conv: strides, dilations and groups must be positive")
        }
        let pads = self.pads(&x.dims()[2..], &w.dims()[2..])?;
        let mut xp = x.clone();
        for (d, &(b, e)) in pads.iter().enumerate() {
            xp = xp.pad_with_zeros(d + 2, b, e)?;
        }
        let (s, dl, g) = (&self.strides, &self.dilations, self.groups);
        let y = match r {
            1 => xp.contiguous()?.conv1d(&w.contiguous()?, 0, s[0], dl[0], g)?,
            2 => conv2d_any(&xp.contiguous()?, &w.contiguous()?, [s[0], s[1]], [dl[0], dl[1]], g)?,
            _ => self.forward3d(&xp, w)?,
        };
        match bias {
            Some(b) => {
                let mut shape = vec![1; y.rank()];
                shape[1] = b.elem_count();
                y.broadcast_add(&b.reshape(shape)?)
            }
            None => Ok(y),
        }
    }

    /// A 3-D convolution of an already padded input: per output depth, the sum over depth taps
    /// of 2-D convolutions.
    fn forward3d(&self, x: &Tensor, w: &Tensor) -> CResult<Tensor> {
        let (s, dl) = (&self.strides, &self.dilations);
        let (pd, kd) = (x.dims()[2], w.dims()[2]);
        let eff = (kd - 1) * dl[0] + 1;
        if pd < eff {
            candle_core::bail!("conv3d: kernel depth {eff} larger than padded depth {pd}")
        }
        let od = (pd - eff) / s[0] + 1;
        let taps: Vec<Tensor> =
            (0..kd).map(|t| w.narrow(2, t, 1)?.squeeze(2)?.contiguous()).collect::<CResult<_>>()?;
        let mut slices = Vec::with_capacity(od);
        for z in 0..od {
            let mut acc: Option<Tensor> = None;
            for (t, wt) in taps.iter().enumerate() {
                let plane = x.narrow(2, z * s[0] + t * dl[0], 1)?.squeeze(2)?.contiguous()?;
                let y = conv2d_any(&plane, wt, [s[1], s[2]], [dl[1], dl[2]], self.groups)?;
                acc = Some(match acc {
                    None => y,
                    Some(a) => (a + y)?,
                });
            }
            let y = acc.ok_or_else(|| candle_core::Error::Msg("conv3d: empty kernel".into()))?;
            slices.push(y.unsqueeze(2)?);
        }
        Tensor::cat(&slices, 2)
    }
}

/// candle's 2-D convolution (one stride and one dilation for both axes) with per-axis strides
/// and dilations: unequal dilations become zeros inserted into the kernel, unequal strides a
/// stride-1 convolution subsampled.
fn conv2d_any(
    x: &Tensor,
    w: &Tensor,
    s: [usize; 2],
    d: [usize; 2],
    groups: usize,
) -> CResult<Tensor> {
    if s[0] == s[1] && d[0] == d[1] {
        return x.conv2d(w, 0, s[0], d[0], groups);
    }
    let (w, dil) = if d[0] == d[1] { (w.clone(), d[0]) } else { (dilate(w, d)?, 1) };
    let y = x.conv2d(&w, 0, 1, dil, groups)?;
    let pick = |t: Tensor, axis: usize, step: usize| -> CResult<Tensor> {
        if step == 1 {
            return Ok(t);
        }
        let n = t.dims()[axis];
        let ids: Vec<u32> = (0..n as u32).step_by(step).collect();
        t.index_select(&Tensor::new(ids, t.device())?, axis)
    };
    pick(pick(y, 2, s[0])?, 3, s[1])?.contiguous()
}

/// `[O, I, kh, kw]` with `d - 1` zeros between taps along each axis.
fn dilate(w: &Tensor, d: [usize; 2]) -> CResult<Tensor> {
    let &[o, i, kh, kw] = w.dims() else { candle_core::bail!("conv: weight {:?}", w.dims()) };
    let (eh, ew) = ((kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1);
    let v = w.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; o * i * eh * ew];
    for (p, plane) in v.chunks_exact(kh * kw).enumerate() {
        for y in 0..kh {
            for x in 0..kw {
                out[p * eh * ew + y * d[0] * ew + x * d[1]] = plane[y * kw + x];
            }
        }
    }
    Tensor::from_vec(out, (o, i, eh, ew), w.device())
}

/// `conv`: a const 1-D/2-D weight runs on the fused kernels; a 3-D or run-time weight here.
pub(super) fn conv(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let computed = match op.inputs.get("weight").map(Vec::as_slice) {
        Some([Argument::Name(n)]) => b.named_const(n)?.is_none(),
        _ => false,
    };
    let w = if computed { None } else { b.param(i, op, "weight")? };
    if let Some(w) = &w
        && w.shape.len() != 5
    {
        return super::core_op(b, i, op);
    }
    let r = match &w {
        Some(_) => 3,
        None => {
            let k = b.usizes(i, op, "strides")?.or(b.usizes(i, op, "dilations")?);
            let pad = b.usizes(i, op, "pad")?.map(|p| p.len() / 2);
            match k.map(|k| k.len()).or(pad) {
                Some(r) => r,
                None => {
                    return Err(b.unsupported(
                        i,
                        op,
                        "a run-time conv weight without strides, dilations or pad to give the rank",
                    ));
                }
            }
        }
    };
    let n = |v: Option<Vec<usize>>, what: &str| -> std::result::Result<Vec<usize>, String> {
        match v {
            None => Ok(vec![1; r]),
            Some(v) if v.len() == r => Ok(v),
            Some(v) => Err(format!("`{what}` {v:?} is not {r} values")),
        }
    };
    let strides = b.usizes(i, op, "strides")?;
    let strides = n(strides, "strides").map_err(|e| b.bad(i, op, e))?;
    let dilations = b.usizes(i, op, "dilations")?;
    let dilations = n(dilations, "dilations").map_err(|e| b.bad(i, op, e))?;
    let groups = b.int_or(i, op, "groups", 1)?;
    let groups =
        usize::try_from(groups).ok().filter(|&g| g > 0).ok_or_else(|| b.bad(i, op, "groups"))?;
    let pad = match b.string(i, op, "pad_type")?.as_deref() {
        None | Some("valid") => ConvPad::Valid,
        Some("same") => ConvPad::Same { lower: false },
        Some("same_lower") => ConvPad::Same { lower: true },
        Some("custom") => ConvPad::Custom(b.usizes(i, op, "pad")?.unwrap_or_default()),
        Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let conv = ConvNd { strides, dilations, groups, pad };
    let mut inputs = vec![b.var(i, op, "x")?, b.var(i, op, "weight")?];
    let has_bias = op.inputs.contains_key("bias");
    if has_bias {
        inputs.push(b.var(i, op, "bias")?);
    }
    b.push_fn(i, op, inputs, move |a| {
        let bias = if has_bias { Some(arg(a, 2)?) } else { None };
        Ok(vec![conv.forward(arg(a, 0)?, arg(a, 1)?, bias)?])
    });
    Ok(())
}
