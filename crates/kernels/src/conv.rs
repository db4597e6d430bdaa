//! 2-D convolution prepared once (weights packed, BatchNorm folded, activation fused) and run
//! by the fastest applicable kernel: depthwise direct, 1x1 as one GEMM, otherwise an implicit
//! GEMM that gathers the input pixels itself (AVX-512), or im2col + GEMM.

#![allow(unsafe_code)]

use crate::depthwise::{DwGeometry, depthwise};
use crate::dw_direct::DwIsa;
use crate::pointwise::pointwise;
use crate::{Activation, apply_activation, profile};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

#[path = "conv_fused.rs"]
mod fused;
pub use fused::InvertedResidual;

thread_local! {
    /// Each thread's im2col buffer (kept between runs: allocating a group's columns per group
    /// and run would dominate, and a steady-state run allocates nothing).
    static GROUP_COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's subsampled input of a strided 1x1 convolution.
    static SUBSAMPLED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How the input is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding.
    Valid,
    /// TensorFlow / Core ML "same": output = ceil(input / stride); the odd pixel of padding
    /// goes to the bottom/right.
    Same,
    /// Explicit padding `[top, bottom, left, right]`.
    Explicit([usize; 4]),
}

/// A convolution ready to run: `[out, in/groups, kh, kw]` weights, per-channel bias, fused
/// activation.
#[derive(Debug)]
pub struct Conv2d {
    out_channels: usize,
    in_channels: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    padding: Padding,
    /// Row-major weights; emptied once `packed` holds them (so they are stored once).
    weight: RwLock<Vec<f32>>,
    bias: Vec<f32>,
    act: Activation,
    /// The weights packed for the AVX-512 GEMM (each group's panels in turn), built at the
    /// first GEMM run on a machine with AVX-512; unpacked again if the weights are changed.
    packed: OnceLock<Vec<f32>>,
    /// One tap per GEMM row (input channel, kernel offsets) for the implicit GEMM.
    taps: Vec<crate::implicit::Tap>,
    /// A depthwise convolution's weights with channels in vector lanes (`dw_lanes::pack`),
    /// built at its first run on that kernel.
    dw_lanes: OnceLock<Vec<f32>>,
}

impl Clone for Conv2d {
    fn clone(&self) -> Conv2d {
        Conv2d {
            out_channels: self.out_channels,
            in_channels: self.in_channels,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            dilation: self.dilation,
            groups: self.groups,
            padding: self.padding,
            weight: RwLock::new(self.weight.read().map(|w| w.clone()).unwrap_or_default()),
            bias: self.bias.clone(),
            act: self.act,
            packed: self.packed.clone(),
            taps: self.taps.clone(),
            dw_lanes: self.dw_lanes.clone(),
        }
    }
}

/// Folds inference BatchNorm into conv weights and bias:
/// `w' = w * g / sqrt(v + eps)`, `b' = (b - m) * g / sqrt(v + eps) + beta`.
/// `weight` holds `out` filters of equal length.
#[allow(clippy::too_many_arguments)]
pub fn fold_batch_norm(
    weight: &mut [f32],
    bias: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) {
    let out = bias.len();
    if out == 0 {
        return;
    }
    let per = weight.len() / out;
    for o in 0..out {
        let s = gamma[o] / (var[o] + eps).sqrt();
        weight[o * per..(o + 1) * per].iter_mut().for_each(|w| *w *= s);
        bias[o] = (bias[o] - mean[o]) * s + beta[o];
    }
}

impl Conv2d {
    /// Builds a convolution; `shape` is `[out, in/groups, kh, kw]`. Fails with a message when
    /// shapes, groups or strides are inconsistent.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: Vec<f32>,
        shape: [usize; 4],
        bias: Option<Vec<f32>>,
        stride: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        padding: Padding,
        act: Activation,
    ) -> Result<Conv2d, String> {
        let [out, cig, kh, kw] = shape;
        if groups == 0 || out % groups != 0 {
            return Err(format!("conv: {out} output channels not divisible by {groups} groups"));
        }
        if weight.len() != out * cig * kh * kw {
            return Err(format!("conv: weight has {} values, shape {shape:?}", weight.len()));
        }
        if stride.0 == 0 || stride.1 == 0 || dilation.0 == 0 || dilation.1 == 0 {
            return Err("conv: strides and dilations must be positive".into());
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; out]);
        if bias.len() != out {
            return Err(format!("conv: bias has {} values, expected {out}", bias.len()));
        }
        Ok(Conv2d {
            out_channels: out,
            in_channels: cig * groups,
            kh,
            kw,
            stride,
            dilation,
            groups,
            padding,
            weight: RwLock::new(weight),
            bias,
            act,
            packed: OnceLock::new(),
            taps: crate::implicit::taps(cig, kh, kw, dilation),
            dw_lanes: OnceLock::new(),
        })
    }

    /// Weights, mutable (for folding a following BatchNorm).
    pub fn weight_and_bias_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        let weight = self.weight.get_mut().unwrap_or_else(|e| e.into_inner());
        self.dw_lanes.take();
        if let Some(packed) = self.packed.take() {
            let cog = self.out_channels / self.groups;
            let kk = self.in_channels / self.groups * self.kh * self.kw;
            let per = cog.div_ceil(crate::packed::MR) * crate::packed::MR * kk;
            weight.clear();
            for g in 0..self.groups {
                weight.extend(crate::packed::unpack_weights(
                    &packed[g * per..(g + 1) * per],
                    cog,
                    kk,
                ));
            }
        }
        (weight, &mut self.bias)
    }

    /// Replaces the fused activation.
    pub fn set_activation(&mut self, act: Activation) {
        self.act = act;
    }

    /// The fused activation.
    pub fn activation(&self) -> Activation {
        self.act
    }

    /// Whether this is a depthwise convolution (one input channel per group), which
    /// [`Conv2d::forward_add`] runs through a separate output rather than in its epilogue.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.in_channels / self.groups == 1
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Number of input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn pads(&self, h: usize, w: usize) -> [usize; 4] {
        let same = |i: usize, k: usize, s: usize, d: usize| {
            let out = i.div_ceil(s);
            let eff = (k - 1) * d + 1;
            let total = ((out.saturating_sub(1)) * s + eff).saturating_sub(i);
            (total / 2, total - total / 2)
        };
        match self.padding {
            Padding::Valid => [0; 4],
            Padding::Explicit(p) => p,
            Padding::Same => {
                let (t, b) = same(h, self.kh, self.stride.0, self.dilation.0);
                let (l, r) = same(w, self.kw, self.stride.1, self.dilation.1);
                [t, b, l, r]
            }
        }
    }

    /// Output height and width for an input of `h` x `w`, or an error when the kernel does
    /// not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), String> {
        let [t, b, l, r] = self.pads(h, w);
        let eh = (self.kh - 1) * self.dilation.0 + 1;
        let ew = (self.kw - 1) * self.dilation.1 + 1;
        if h + t + b < eh || w + l + r < ew {
            return Err(format!(
                "conv: {}x{} kernel larger than padded {h}x{w} input",
                self.kh, self.kw
            ));
        }
        Ok(((h + t + b - eh) / self.stride.0 + 1, (w + l + r - ew) / self.stride.1 + 1))
    }

    /// Runs on a contiguous NCHW batch `x` of `n` images of `in_channels x h x w`.
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>, String> {
        let (oh, ow) = self.output_hw(h, w)?;
        let mut out = vec![0f32; n * self.out_channels * oh * ow];
        self.run(x, n, h, w, &mut out, false, self.act, None)?;
        Ok(out)
    }

    /// As [`Conv2d::forward`], into the caller's `out` (`n x out_channels x oh x ow` values,
    /// every one overwritten): with buffers kept between runs, a steady-state run of a
    /// convolution allocates nothing.
    pub fn forward_into(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        out: &mut [f32],
    ) -> Result<(), String> {
        self.check_output("output buffer", out.len(), n, h, w)?;
        self.run(x, n, h, w, out, false, self.act, None)
    }

    /// As [`Conv2d::forward`] for a depthwise convolution, with the depthwise kernel forced
    /// (for tests and same-binary A/B benchmarks). Fails when this is not a depthwise
    /// convolution, or the kernel cannot run here or does not handle the geometry.
    pub fn forward_depthwise_with(
        &self,
        path: DwIsa,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>, String> {
        if self.groups != self.in_channels {
            return Err("conv: not a depthwise convolution".into());
        }
        let (oh, ow) = self.output_hw(h, w)?;
        let mut out = vec![0f32; n * self.out_channels * oh * ow];
        self.run(x, n, h, w, &mut out, false, self.act, Some(path))?;
        Ok(out)
    }

    /// `residual + conv(x)`, the residual updated in place: every convolution but a depthwise
    /// one accumulates straight into it in the GEMM's epilogue. `residual` must have the
    /// output's shape. The fused activation (if any) applies to the sum.
    pub fn forward_add(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: &mut [f32],
    ) -> Result<(), String> {
        self.check_output("residual", residual.len(), n, h, w)?;
        if !self.is_depthwise() {
            return self.run(x, n, h, w, residual, true, self.act, None);
        }
        let y = self.forward(x, n, h, w)?;
        if self.act == Activation::None {
            residual.iter_mut().zip(&y).for_each(|(r, v)| *r += v);
        } else {
            // The activation applies to the sum: recompute without it.
            let mut plain = self.clone();
            plain.act = Activation::None;
            let y = plain.forward(x, n, h, w)?;
            residual.iter_mut().zip(&y).for_each(|(r, v)| *r += v);
            apply_activation(residual, self.act);
        }
        Ok(())
    }

    /// As [`Conv2d::forward_add`] for a convolution without a fused activation, with `act`
    /// applied to the sum (a residual add followed by an activation, as ResNet's blocks end),
    /// in the GEMM's epilogue where the kernel has one. Fails when the convolution has a fused
    /// activation of its own.
    pub fn forward_add_act(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: &mut [f32],
        act: Activation,
    ) -> Result<(), String> {
        if self.act != Activation::None {
            return Err("conv: forward_add_act on a convolution with a fused activation".into());
        }
        if self.is_depthwise() {
            self.forward_add(x, n, h, w, residual)?;
            apply_activation(residual, act);
            return Ok(());
        }
        self.check_output("residual", residual.len(), n, h, w)?;
        self.run(x, n, h, w, residual, true, act, None)
    }

    /// Checks that `what` (an output-shaped buffer of `len` values) fits the output of an
    /// `n x in_channels x h x w` input.
    fn check_output(
        &self,
        what: &str,
        len: usize,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<(), String> {
        let (oh, ow) = self.output_hw(h, w)?;
        if len != n * self.out_channels * oh * ow {
            return Err(format!(
                "conv: {what} has {len} values, expected {n}x{}x{oh}x{ow}",
                self.out_channels
            ));
        }
        Ok(())
    }

    /// Group `g`'s packed weights for the packed GEMM (AVX-512, or the portable kernel on
    /// AVX2+FMA and aarch64), packing all groups on first use; `None` elsewhere, or when
    /// `INFER_GEMM=unpacked` (read once; for same-binary A/B runs against the unpacked
    /// kernels: the AVX-512 6x32 one, or the `gemm` crate).
    fn packed_group(&self, g: usize) -> Option<&[f32]> {
        static UNPACKED: OnceLock<bool> = OnceLock::new();
        let unpacked =
            *UNPACKED.get_or_init(|| std::env::var("INFER_GEMM").is_ok_and(|v| v == "unpacked"));
        if crate::packed::available() && !unpacked {
            let cog = self.out_channels / self.groups;
            let kk = self.in_channels / self.groups * self.kh * self.kw;
            let per = cog.div_ceil(crate::packed::MR) * crate::packed::MR * kk;
            let all = self.packed.get_or_init(|| {
                // The packed copy is the only one the GEMM reads from now on (packed in place
                // where the layout allows, so the weights are not held twice).
                let mut wl = self.weight.write().unwrap_or_else(|e| e.into_inner());
                crate::packed::pack_groups(std::mem::take(&mut *wl), cog, kk, self.groups)
            });
            return all.get(g * per..(g + 1) * per);
        }
        None
    }

    /// The packed 1x1 GEMM over `n` images of `hw` pixels (`x` holds `n x in x hw`, `out`
    /// `n x out x hw`, holding a residual when `accumulate`).
    fn pointwise_images(
        &self,
        x: &[f32],
        n: usize,
        hw: usize,
        out: &mut [f32],
        accumulate: bool,
        act: Activation,
    ) -> Result<(), String> {
        let (co, ci) = (self.out_channels, self.in_channels);
        let pk = self.packed_group(0);
        let wt = self.weight.read().unwrap_or_else(|e| e.into_inner());
        for b in 0..n {
            let ok = pointwise(
                co,
                ci,
                hw,
                &wt,
                pk,
                &x[b * ci * hw..(b + 1) * ci * hw],
                &self.bias,
                if accumulate { Activation::None } else { act },
                accumulate,
                &mut out[b * co * hw..(b + 1) * co * hw],
            );
            if !ok {
                return Err("conv: internal pointwise size mismatch".into());
            }
        }
        if accumulate && act != Activation::None {
            apply_activation(out, act);
        }
        Ok(())
    }

    /// A 1x1 convolution with a stride above 1, no padding and one group.
    fn is_strided_pointwise(&self, h: usize, w: usize) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride != (1, 1)
            && self.groups == 1
            && self.pads(h, w) == [0; 4]
    }

    fn is_pointwise(&self, h: usize, w: usize) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.pads(h, w) == [0; 4]
    }

    /// The kernel dispatch; `out` is the output (holding a residual when `accumulate`, which
    /// every path but the depthwise one takes); `path` forces a depthwise kernel.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        out: &mut [f32],
        accumulate: bool,
        act: Activation,
        path: Option<DwIsa>,
    ) -> Result<(), String> {
        if x.len() != n * self.in_channels * h * w {
            return Err(format!(
                "conv: input has {} values, expected {n}x{}x{h}x{w}",
                x.len(),
                self.in_channels
            ));
        }
        let (oh, ow) = self.output_hw(h, w)?;
        let [pt, _, pl, _] = self.pads(h, w);
        let cig = self.in_channels / self.groups;
        profile::add_flops(2 * (n * self.out_channels * oh * ow * cig * self.kh * self.kw) as u64);
        if self.is_depthwise() && !accumulate {
            let t = profile::start();
            let g = DwGeometry {
                h,
                w,
                oh,
                ow,
                kh: self.kh,
                kw: self.kw,
                stride: self.stride,
                dilation: self.dilation,
                pad_top: pt,
                pad_left: pl,
            };
            let mult = self.out_channels / self.in_channels;
            let wt = self.weight.read().unwrap_or_else(|e| e.into_inner());
            let lanes = match path {
                Some(p) => p == DwIsa::Lanes,
                None => mult == 1 && crate::dw_lanes::available() && crate::dw_lanes::pays(&g),
            };
            if lanes {
                let (co, taps) = (self.out_channels, self.kh * self.kw);
                let pk = self.dw_lanes.get_or_init(|| crate::dw_lanes::pack(&wt, co, taps));
                if mult != 1 || !crate::dw_lanes::depthwise(x, out, pk, &self.bias, co, &g, act) {
                    return Err("depthwise: the Lanes kernel cannot run this convolution here \
                                (it needs AVX-512 and one channel per filter)"
                        .into());
                }
            } else {
                depthwise(x, out, &wt, &self.bias, self.out_channels, mult, g, act, path)?;
            }
            profile::record(if self.kh * self.kw > 9 { "depthwise-large" } else { "depthwise" }, t);
            return Ok(());
        }
        if self.is_pointwise(h, w) && self.groups == 1 {
            let t = profile::start();
            self.pointwise_images(x, n, h * w, out, accumulate, act)?;
            profile::record("pointwise-gemm", t);
            return Ok(());
        }
        if self.is_strided_pointwise(h, w) {
            // A strided 1x1 convolution (ResNet's and RegNet's downsampling shortcuts) reads
            // one input pixel in stride.0 x stride.1: those pixels, copied out compactly, are
            // a plain 1x1 convolution's input. Cheaper than the implicit GEMM's padded copy
            // of the whole input and its strided gathers (`conv3_shapes`).
            let t = profile::start();
            let (ci, (sy, sx)) = (self.in_channels, self.stride);
            let (oh, ow) = self.output_hw(h, w)?;
            crate::pool::with_scratch(&SUBSAMPLED, n * ci * oh * ow, |sub| {
                let all = crate::pool::SharedMut::new(sub);
                crate::pool::for_each_task(n * ci, &|p| {
                    // SAFETY: task p writes only plane p of the subsampled input; `sub`
                    // outlives the loop.
                    let dst = unsafe { all.slice(p * oh * ow, oh * ow) };
                    let src = &x[p * h * w..(p + 1) * h * w];
                    for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                        let from = &src[oy * sy * w..];
                        row.iter_mut().enumerate().for_each(|(ox, v)| *v = from[ox * sx]);
                    }
                });
                self.pointwise_images(sub, n, oh * ow, out, accumulate, act)
            })?;
            profile::record("pointwise-gemm", t);
            return Ok(());
        }
        let t = profile::start();
        let is_pw = self.is_pointwise(h, w);
        if !is_pw && self.implicit(x, n, h, w, (oh, ow), (pt, pl), out, accumulate, act)? {
            profile::record("implicit-gemm", t);
            return Ok(());
        }
        let cog = self.out_channels / self.groups;
        let kk = cig * self.kh * self.kw;
        let packed = self.packed_group(0).is_some();
        let wt = self.weight.read().unwrap_or_else(|e| e.into_inner());
        let wt: &[f32] = &wt;
        let (ci_all, co_all, plane) = (self.in_channels, self.out_channels, oh * ow);
        let failed = AtomicBool::new(false);
        let out_all = crate::pool::SharedMut::new(out);
        // Group `g` of image `b`: im2col (unless pointwise), then the tiled GEMM with bias and
        // activation in its epilogue.
        let group = |b: usize, g: usize, col: &mut [f32]| {
            let xg = &x[(b * ci_all + g * cig) * h * w..][..cig * h * w];
            // SAFETY: group `g` of image `b` writes only its own output channels
            // `g * cog..(g + 1) * cog` of image `b`, disjoint from every other group's and
            // image's; `out` outlives the loop below.
            let og = unsafe { out_all.slice((b * co_all + g * cog) * plane, cog * plane) };
            let wg = if packed { &[][..] } else { &wt[g * cog * kk..(g + 1) * cog * kk] };
            let rhs: &[f32] = if is_pw {
                xg
            } else {
                self.im2col(xg, h, w, oh, ow, pt, pl, col);
                col
            };
            let bg = &self.bias[g * cog..(g + 1) * cog];
            let act = if accumulate { Activation::None } else { act };
            if !pointwise(cog, kk, plane, wg, self.packed_group(g), rhs, bg, act, accumulate, og) {
                failed.store(true, Ordering::Relaxed);
            }
        };
        let need = if is_pw { 0 } else { kk * plane };
        if self.groups == 1 {
            // One group: its im2col and GEMM use the whole pool.
            crate::pool::with_scratch(&GROUP_COL, need, |col| {
                (0..n).for_each(|b| group(b, 0, col))
            });
        } else {
            // Grouped: one task per image and group, each on one thread (the loops inside run
            // inline), with that thread's column buffer: many small GEMMs split finely over
            // the pool cost more in hand-offs than they gain.
            crate::pool::for_each_task(n * self.groups, &|task| {
                crate::pool::with_scratch(&GROUP_COL, need, |col| {
                    group(task / self.groups, task % self.groups, col)
                });
            });
        }
        if failed.load(Ordering::Relaxed) {
            return Err("conv: internal GEMM size mismatch".into());
        }
        if accumulate && act != Activation::None {
            apply_activation(out, act);
        }
        profile::record("im2col-gemm", t);
        Ok(())
    }

    /// The implicit GEMM (no im2col matrix) for every image and group, when AVX-512 and the
    /// packed weights are here and `INFER_CONV=im2col` (read once; for same-binary A/B runs)
    /// is not set; `Ok(false)` when it did not run.
    #[allow(clippy::too_many_arguments)]
    fn implicit(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        (oh, ow): (usize, usize),
        (pt, pl): (usize, usize),
        out: &mut [f32],
        accumulate: bool,
        act: Activation,
    ) -> Result<bool, String> {
        static IM2COL: OnceLock<bool> = OnceLock::new();
        if *IM2COL.get_or_init(|| std::env::var("INFER_CONV").is_ok_and(|v| v == "im2col"))
            || !crate::implicit::available()
            || self.packed_group(0).is_none()
        {
            return Ok(false);
        }
        let cig = self.in_channels / self.groups;
        let cog = self.out_channels / self.groups;
        let plane = oh * ow;
        let failed = AtomicBool::new(false);
        let out_all = crate::pool::SharedMut::new(out);
        let group = |b: usize, g: usize| {
            let xg = &x[(b * self.in_channels + g * cig) * h * w..][..cig * h * w];
            // SAFETY: group `g` of image `b` writes only its own output channels, disjoint
            // from every other group's and image's; `out` outlives the loops below.
            let og =
                unsafe { out_all.slice((b * self.out_channels + g * cog) * plane, cog * plane) };
            let src = crate::implicit::Source {
                x: xg,
                h,
                w,
                ow,
                stride: self.stride,
                pad: (pt, pl),
                taps: &self.taps,
            };
            let bg = &self.bias[g * cog..(g + 1) * cog];
            let pk = self.packed_group(g).unwrap_or(&[]);
            if !crate::implicit::conv_gemm(cog, plane, pk, &src, bg, act, accumulate, og) {
                failed.store(true, Ordering::Relaxed);
            }
        };
        if self.groups == 1 {
            (0..n).for_each(|b| group(b, 0));
        } else {
            crate::pool::for_each_task(n * self.groups, &|t| {
                group(t / self.groups, t % self.groups)
            });
        }
        if failed.load(Ordering::Relaxed) {
            return Err("conv: internal implicit GEMM size mismatch".into());
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn im2col(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        pt: usize,
        pl: usize,
        col: &mut [f32],
    ) {
        let (sy, sx) = self.stride;
        let (dy, dx) = self.dilation;
        let plane = oh * ow;
        let rows = col.len() / plane.max(1);
        let dst_all = crate::pool::SharedMut::new(col);
        crate::pool::for_each_task(rows, &|row| {
            // SAFETY: each task writes only its own row `row < rows` of `col`, which outlives
            // the loop.
            let dst = unsafe { dst_all.slice(row * plane, plane) };
            let ci = row / (self.kh * self.kw);
            let ky = (row / self.kw) % self.kh;
            let kx = row % self.kw;
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            for oy in 0..oh {
                let iy = (oy * sy + ky * dy) as isize - pt as isize;
                let drow = &mut dst[oy * ow..(oy + 1) * ow];
                if iy < 0 || iy >= h as isize {
                    drow.fill(0.0);
                    continue;
                }
                let srow = &plane[iy as usize * w..(iy as usize + 1) * w];
                for (ox, d) in drow.iter_mut().enumerate() {
                    let ix = (ox * sx + kx * dx) as isize - pl as isize;
                    *d = if ix < 0 || ix >= w as isize { 0.0 } else { srow[ix as usize] };
                }
            }
        });
    }
}
