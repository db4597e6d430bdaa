//! `conv_transpose` (1-D and 2-D here, 3-D in `op_conv_transpose3d.rs`; grouped, strided, dilated, with every pad type and an explicit
//! `output_shape`): the scatter form of a transposed convolution.
//!
//! Output position `o` along an axis receives input `i` through kernel tap `k` when
//! `o = i * stride + k * dilation - crop`, where `crop` is the padding taken off the front of the
//! full result (`pad[2r]` for `custom`, half of `k_eff - stride` for `same`, 0 for `valid`). The
//! output length is `output_shape` when given, else coremltools' rule for the pad type.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};

/// Geometry of one transposed convolution, fixed at prepare except the input's spatial size.
#[derive(Debug, Clone)]
pub(crate) struct ConvTranspose {
    /// `[c_in, c_out / groups, kh, kw]` (1-D kernels have `kh = 1`).
    pub(crate) weight: Vec<f32>,
    pub(crate) c_in: usize,
    pub(crate) c_out_g: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) dilation: [usize; 2],
    pub(crate) groups: usize,
    pub(crate) bias: Option<Vec<f32>>,
    /// `valid`, `same` or `custom`.
    pub(crate) pad_type: PadType,
    /// Custom padding `[top, bottom, left, right]`.
    pub(crate) pad: [usize; 4],
    /// Output spatial size when the op names it (`output_shape`).
    pub(crate) out_size: Option<[usize; 2]>,
}

/// How the full transposed result is cropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PadType {
    Valid,
    Same,
    Custom,
}

/// `(output length, crop before)` of one spatial axis of a transposed convolution: input
/// length `d_in`, kernel `k`, stride `s`, dilation `d`, custom pads `(begin, end)`, and the
/// length `output_shape` asks for, if any.
pub(crate) fn axis_len(
    d_in: usize,
    [k, s, d]: [usize; 3],
    pad_type: PadType,
    (pb, pe): (usize, usize),
    asked: Option<usize>,
) -> std::result::Result<(usize, i64), String> {
    let k_eff = (k - 1) * d + 1;
    let full = s * (d_in.max(1) - 1) + k_eff;
    let (crop, natural) = match pad_type {
        PadType::Valid => (0i64, full as i64),
        PadType::Same => (((k_eff as i64 - s as i64).max(0)) / 2, (s * d_in) as i64),
        PadType::Custom => (pb as i64, full as i64 - pb as i64 - pe as i64),
    };
    let len = asked.map_or(natural, |o| o as i64);
    if len <= 0 {
        return Err(format!(
            "conv_transpose: output length {len} (input {d_in}, kernel {k}, stride {s}, \
             dilation {d}, {pad_type:?} padding)"
        ));
    }
    Ok((len as usize, crop))
}

impl ConvTranspose {
    /// `(output length, crop before)` of axis `r` for an input of length `d_in`.
    fn axis(&self, r: usize, d_in: usize) -> std::result::Result<(usize, i64), String> {
        axis_len(
            d_in,
            [self.kernel[r], self.stride[r], self.dilation[r]],
            self.pad_type,
            (self.pad[2 * r], self.pad[2 * r + 1]),
            self.out_size.map(|o| o[r]),
        )
        .map_err(|e| format!("{e} along spatial axis {r}"))
    }

    /// Runs on `x` = `[n, c_in, h, w]` values; returns `(values, [oh, ow])`.
    pub(crate) fn run(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> std::result::Result<(Vec<f32>, [usize; 2]), String> {
        let (oh, crop_h) = self.axis(0, h)?;
        let (ow, crop_w) = self.axis(1, w)?;
        let (cig, g) = (self.c_in / self.groups, self.groups);
        let c_out = self.c_out_g * g;
        let [kh, kw] = self.kernel;
        let mut out = vec![0f32; n * c_out * oh * ow];
        for b in 0..n {
            for ci in 0..self.c_in {
                let grp = ci / cig;
                let plane = &x[(b * self.c_in + ci) * h * w..][..h * w];
                for co in 0..self.c_out_g {
                    let oc = grp * self.c_out_g + co;
                    let dst = &mut out[(b * c_out + oc) * oh * ow..][..oh * ow];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let wv = self.weight[((ci * self.c_out_g + co) * kh + ky) * kw + kx];
                            if wv == 0.0 {
                                continue;
                            }
                            scatter_tap(
                                plane,
                                dst,
                                [h, w],
                                [oh, ow],
                                [
                                    (ky * self.dilation[0]) as i64 - crop_h,
                                    (kx * self.dilation[1]) as i64 - crop_w,
                                ],
                                self.stride,
                                wv,
                            );
                        }
                    }
                }
            }
        }
        if let Some(bias) = &self.bias {
            for (k, chunk) in out.chunks_mut(oh * ow).enumerate() {
                let bv = bias[k % c_out];
                chunk.iter_mut().for_each(|v| *v += bv);
            }
        }
        Ok((out, [oh, ow]))
    }
}

/// Adds `wv * plane[iy][ix]` into `dst[iy * s0 + off0][ix * s1 + off1]` wherever that lands
/// inside the output.
fn scatter_tap(
    plane: &[f32],
    dst: &mut [f32],
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    [off_y, off_x]: [i64; 2],
    [sy, sx]: [usize; 2],
    wv: f32,
) {
    // Input range whose output index o = i * s + off falls in [0, len).
    let range = |len: usize, n_in: usize, s: usize, off: i64| {
        let s = s as i64;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi = ((len as i64 - 1 - off).div_euclid(s) + 1).clamp(0, n_in as i64);
        (lo.min(hi) as usize, hi as usize)
    };
    let (y0, y1) = range(oh, h, sy, off_y);
    let (x0, x1) = range(ow, w, sx, off_x);
    for iy in y0..y1 {
        let oy = (iy as i64 * sy as i64 + off_y) as usize;
        let src = &plane[iy * w..][..w];
        let row = &mut dst[oy * ow..][..ow];
        for (ix, &v) in src.iter().enumerate().take(x1).skip(x0) {
            let ox = (ix as i64 * sx as i64 + off_x) as usize;
            row[ox] += wv * v;
        }
    }
}

/// Compiles a MIL `conv_transpose`.
pub(super) fn conv_transpose(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let w = b.param(i, op, "weight")?.ok_or_else(|| b.bad(i, op, "no const weight"))?;
    let (c_in, c_out_g, kernel) = match *w.shape.as_slice() {
        [ci, co, k] => (ci, co, [1, k]),
        [ci, co, kh, kw] => (ci, co, [kh, kw]),
        [_, _, _, _, _] => return super::conv_transpose3d::conv_transpose3d(b, i, op, &w),
        ref other => {
            return Err(b.unsupported(
                i,
                op,
                format!("conv_transpose with a weight of shape {other:?}"),
            ));
        }
    };
    let one_d = w.shape.len() == 3;
    let weight = w.to_f32_vec().ok_or_else(|| b.bad(i, op, "weight is not numeric"))?;
    let bias = b.param(i, op, "bias")?.and_then(|v| v.to_f32_vec());
    let groups = b.ints(i, op, "groups")?.and_then(|g| g.first().copied()).unwrap_or(1);
    let groups =
        usize::try_from(groups).ok().filter(|&g| g > 0 && c_in % g == 0).ok_or_else(|| {
            b.bad(i, op, format!("groups {groups} does not divide {c_in} input channels"))
        })?;
    if let Some(bias) = &bias
        && bias.len() != c_out_g * groups
    {
        return Err(b.bad(
            i,
            op,
            format!("{} bias values for {} outputs", bias.len(), c_out_g * groups),
        ));
    }
    // 1-D ops carry one value per list; the kernel runs them as 2-D with a unit height.
    let pair = |v: Option<Vec<usize>>,
                default: usize,
                what: &str|
     -> std::result::Result<[usize; 2], String> {
        match (v.as_deref(), one_d) {
            (None, _) => Ok([default, default]),
            (Some(&[a]), true) => Ok([default, a]),
            (Some(&[a, c]), false) => Ok([a, c]),
            (Some(other), _) => Err(format!("`{what}` {other:?} does not match the kernel rank")),
        }
    };
    let strides = b.usizes(i, op, "strides")?;
    let stride = pair(strides, 1, "strides").map_err(|e| b.bad(i, op, e))?;
    let dilations = b.usizes(i, op, "dilations")?;
    let dilation = pair(dilations, 1, "dilations").map_err(|e| b.bad(i, op, e))?;
    if stride.contains(&0) || dilation.contains(&0) {
        return Err(b.bad(i, op, "zero stride or dilation"));
    }
    let pad_type = match b.string(i, op, "pad_type")?.as_deref() {
        None | Some("valid") => PadType::Valid,
        Some("same") => PadType::Same,
        Some("custom") => PadType::Custom,
        Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let pad = match (b.usizes(i, op, "pad")?.as_deref(), one_d) {
        (None, _) => [0; 4],
        (Some(&[l, r]), true) => [0, 0, l, r],
        (Some(&[t, bo, l, r]), false) => [t, bo, l, r],
        (Some(other), _) => {
            return Err(b.bad(i, op, format!("pad {other:?} does not match the kernel rank")));
        }
    };
    let out_size = match b.usizes(i, op, "output_shape")?.as_deref() {
        None => None,
        Some(&[_, _, len]) if one_d => Some([1, len]),
        Some(&[_, _, oh, ow]) if !one_d => Some([oh, ow]),
        Some(other) => return Err(b.bad(i, op, format!("output_shape {other:?}"))),
    };
    let ct = ConvTranspose {
        weight,
        c_in,
        c_out_g,
        kernel,
        stride,
        dilation,
        groups,
        bias,
        pad_type,
        pad,
        out_size,
    };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims().to_vec();
        let (n, c, h, w) = match (dims.as_slice(), one_d) {
            (&[n, c, l], true) => (n, c, 1, l),
            (&[n, c, h, w], false) => (n, c, h, w),
            _ => candle_core::bail!(
                "conv_transpose: input shape {dims:?} for a {}-D kernel",
                if one_d { 1 } else { 2 }
            ),
        };
        if c != ct.c_in {
            candle_core::bail!("conv_transpose: {c} input channels, the weight takes {}", ct.c_in)
        }
        let (y, [oh, ow]) = ct.run(&values(x)?, n, h, w).map_err(candle_core::Error::Msg)?;
        let c_out = ct.c_out_g * ct.groups;
        let shape = if one_d { vec![n, c_out, ow] } else { vec![n, c_out, oh, ow] };
        Ok(vec![tensor(y, &shape)?])
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, in f64: for every output position, sum over every input and tap that
    /// lands there (a gather, where the kernel scatters).
    fn naive(
        ct: &ConvTranspose,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> (Vec<f64>, [usize; 2]) {
        let (oh, ch) = ct.axis(0, h).unwrap();
        let (ow, cw) = ct.axis(1, w).unwrap();
        let cig = ct.c_in / ct.groups;
        let c_out = ct.c_out_g * ct.groups;
        let [kh, kw] = ct.kernel;
        let mut out = vec![0f64; n * c_out * oh * ow];
        for b in 0..n {
            for oc in 0..c_out {
                let (grp, co) = (oc / ct.c_out_g, oc % ct.c_out_g);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = ct.bias.as_ref().map_or(0.0, |bb| f64::from(bb[oc]));
                        for ci in grp * cig..(grp + 1) * cig {
                            for iy in 0..h {
                                for ix in 0..w {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let py = (iy * ct.stride[0] + ky * ct.dilation[0])
                                                as i64
                                                - ch;
                                            let px = (ix * ct.stride[1] + kx * ct.dilation[1])
                                                as i64
                                                - cw;
                                            if py == oy as i64 && px == ox as i64 {
                                                let wv = ct.weight
                                                    [((ci * ct.c_out_g + co) * kh + ky) * kw + kx];
                                                acc += f64::from(wv)
                                                    * f64::from(
                                                        x[((b * ct.c_in + ci) * h + iy) * w + ix],
                                                    );
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        out[((b * c_out + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        (out, [oh, ow])
    }

    fn seq(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_the_definition(
            groups in 1usize..3, cig in 1usize..3, cog in 1usize..3,
            h in 1usize..5, w in 1usize..6, kh in 1usize..4, kw in 1usize..4,
            sy in 1usize..4, sx in 1usize..4, dy in 1usize..3, dx in 1usize..3,
            pt in 0usize..3, pb in 0usize..3, pl in 0usize..3, pr in 0usize..3,
            mode in 0usize..3, extra in 0usize..2, with_bias: bool, seed in 0u32..1000,
        ) {
            let pad_type = [PadType::Valid, PadType::Same, PadType::Custom][mode];
            let c_in = cig * groups;
            let mut ct = ConvTranspose {
                weight: seq(c_in * cog * kh * kw, seed),
                c_in, c_out_g: cog, kernel: [kh, kw], stride: [sy, sx], dilation: [dy, dx],
                groups, bias: with_bias.then(|| seq(cog * groups, seed + 1)),
                pad_type, pad: [pt, pb, pl, pr], out_size: None,
            };
            // Skip geometries that crop everything away (an error, tested below).
            let (Ok((oh, _)), Ok((ow, _))) = (ct.axis(0, h), ct.axis(1, w)) else { return Ok(()); };
            // output_shape may ask for one more row/column (PyTorch's output_padding).
            if extra == 1 {
                ct.out_size = Some([oh + 1, ow + 1]);
            }
            let x = seq(2 * c_in * h * w, seed + 2);
            let (got, size) = ct.run(&x, 2, h, w).unwrap();
            let (want, want_size) = naive(&ct, &x, 2, h, w);
            prop_assert_eq!(size, want_size);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
            }
        }
    }

    #[test]
    fn stride_two_same_doubles_and_cropping_everything_is_an_error() {
        let ct = ConvTranspose {
            weight: vec![1.0; 9],
            c_in: 1,
            c_out_g: 1,
            kernel: [3, 3],
            stride: [2, 2],
            dilation: [1, 1],
            groups: 1,
            bias: None,
            pad_type: PadType::Same,
            pad: [0; 4],
            out_size: None,
        };
        let (_, size) = ct.run(&[1.0; 12], 1, 3, 4).unwrap();
        assert_eq!(size, [6, 8]);
        let crop_all = ConvTranspose { pad_type: PadType::Custom, pad: [4, 4, 0, 0], ..ct };
        let err = crop_all.run(&[1.0; 12], 1, 3, 4).unwrap_err();
        assert!(err.contains("output length"), "{err}");
    }
}
