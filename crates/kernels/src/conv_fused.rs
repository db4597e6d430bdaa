//! The inverted-residual block (MobileNetV2 / EfficientNet MBConv: expand 1x1, depthwise,
//! project 1x1, optional residual) run band by band: for a band of output rows, the expansion
//! of just the input rows the depthwise filter reads, the depthwise output of the band, and the
//! projection into the output, so the expanded and depthwise tensors (the block's largest, 6x
//! its input) stay in cache instead of making a round trip through memory. Without the
//! projection (a squeeze-excite block, whose gate needs the whole depthwise output first) the
//! band's depthwise output is the output. Bands run in parallel on the pool, each on one thread.

use std::cell::RefCell;
use std::sync::Arc;

use super::Conv2d;
use crate::depthwise::{DwGeometry, depthwise_serial};
use crate::packed_portable::best_tile;
use crate::pool::SharedMut;
use crate::{Activation, apply_activation, profile};

thread_local! {
    /// Each thread's expanded band.
    static EXPANDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's depthwise band.
    static FILTERED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Values of the expanded and depthwise bands together a band aims at (1 MB: in the L2 of
/// recent x86-64 and Apple cores, else in L3). Measured on Lite0's blocks (`cargo run
/// --release -p kernels --example ir_shapes`): 64 K values made bands of 2-4 rows whose
/// per-band costs outweighed the saved traffic; 256 K and 512 K were alike.
const BAND_VALUES: usize = 256 * 1024;

/// An inverted-residual block prepared for the banded kernel.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    expand: Arc<Conv2d>,
    depthwise: Arc<Conv2d>,
    project: Option<Arc<Conv2d>>,
    residual: bool,
}

impl InvertedResidual {
    /// The block `project(depthwise(expand(x)))` (`+ x` with `residual`; `depthwise(expand(x))`
    /// without `project`), or `None` when the convolutions are not ones this kernel runs:
    /// `expand` and `project` 1x1, stride 1, one group, with packed weights on this machine;
    /// `depthwise` one filter per channel, square 3/5/7, stride 1 or 2, no dilation; channels
    /// chaining; a residual only with a projection, where the output has the input's shape.
    /// The caller then runs the convolutions one by one.
    pub fn new(
        expand: Arc<Conv2d>,
        depthwise: Arc<Conv2d>,
        project: Option<Arc<Conv2d>>,
        residual: bool,
    ) -> Option<InvertedResidual> {
        let one_by_one = |c: &Conv2d| {
            c.kh == 1
                && c.kw == 1
                && c.stride == (1, 1)
                && c.groups == 1
                && c.pads(1, 1) == [0; 4]
                && c.packed_group(0).is_some()
        };
        let d = &depthwise;
        let dw_ok = d.is_depthwise()
            && d.out_channels == d.in_channels
            && d.kh == d.kw
            && matches!(d.kh, 3 | 5 | 7)
            && d.stride.0 == d.stride.1
            && matches!(d.stride.0, 1 | 2)
            && d.dilation == (1, 1);
        let chain = expand.out_channels == d.in_channels
            && project.as_ref().is_none_or(|p| d.out_channels == p.in_channels && one_by_one(p));
        let res_ok = !residual
            || project
                .as_ref()
                .is_some_and(|p| p.out_channels == expand.in_channels && d.stride.0 == 1);
        (one_by_one(&expand) && dw_ok && chain && res_ok).then_some(InvertedResidual {
            expand,
            depthwise,
            project,
            residual,
        })
    }

    /// This block with `project` after it (`None` when it already has a projection, or the
    /// result is not a block this kernel runs).
    pub fn with_project(&self, project: Arc<Conv2d>) -> Option<InvertedResidual> {
        if self.project.is_some() {
            return None;
        }
        let (e, d) = (self.expand.clone(), self.depthwise.clone());
        InvertedResidual::new(e, d, Some(project), self.residual)
    }

    /// This block adding its input to its output (`None` where [`InvertedResidual::new`] would
    /// refuse that residual).
    pub fn with_residual(&self) -> Option<InvertedResidual> {
        let (e, d) = (self.expand.clone(), self.depthwise.clone());
        InvertedResidual::new(e, d, self.project.clone(), true)
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.expand.in_channels
    }

    /// Whether banding pays for an input of `h x w`: when the expanded tensor would not fit
    /// in a band's cache budget. Below that the three convolutions one by one are as fast
    /// (measured: bands over planes that fit cost 0-15 % more), so the caller runs those.
    pub fn pays(&self, h: usize, w: usize) -> bool {
        self.expand.out_channels * h * w > BAND_VALUES
    }

    /// Output channels, height and width for an input of `h x w`.
    pub fn output_shape(&self, h: usize, w: usize) -> Result<(usize, usize, usize), String> {
        let (oh, ow) = self.depthwise.output_hw(h, w)?;
        let c = self.project.as_ref().map_or(self.depthwise.out_channels, |p| p.out_channels);
        Ok((c, oh, ow))
    }

    /// Runs on `n` images `x` (`in x h x w`, NCHW) into `out` (`n x out x oh x ow`, every value
    /// overwritten; it must not overlap `x`).
    pub fn forward_into(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        out: &mut [f32],
    ) -> Result<(), String> {
        let ce = self.expand.out_channels;
        let (_, oh, ow) = self.output_shape(h, w)?;
        let s = self.depthwise.stride.0;
        let rows = (BAND_VALUES / (ce * (s * w + ow)).max(1)).clamp(1, oh.max(1));
        self.forward_banded(x, n, h, w, out, rows)
    }

    /// [`InvertedResidual::forward_into`] in bands of `rows` output rows (for tests and tuning;
    /// the answer does not depend on it).
    pub fn forward_banded(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        out: &mut [f32],
        rows: usize,
    ) -> Result<(), String> {
        let (ci, ce) = (self.expand.in_channels, self.expand.out_channels);
        let (co, oh, ow) = self.output_shape(h, w)?;
        if x.len() != n * ci * h * w || out.len() != n * co * oh * ow {
            return Err(format!(
                "inverted residual: {} input values for {n}x{ci}x{h}x{w}, {} output values for \
                 {n}x{co}x{oh}x{ow}",
                x.len(),
                out.len()
            ));
        }
        if out.is_empty() {
            return Ok(());
        }
        let rows = rows.clamp(1, oh);
        let t = profile::start();
        let k = self.depthwise.kh;
        // Each image's rows split into one chunk per thread; a chunk's bands run in order,
        // each expanding only the input rows the previous one did not.
        let chunks = crate::pool::threads().min(oh).max(1);
        let project = if self.project.is_some() { 2 * ce * co } else { 0 };
        let flops = n * oh * ow * (2 * ce * k * k + project) + n * h * w * 2 * ci * ce;
        profile::add_flops(flops as u64);
        let dst = SharedMut::new(out);
        let mut failed = std::sync::Mutex::new(None);
        crate::pool::for_each_task(n * chunks, &|task| {
            let (b, chunk) = (task / chunks, task % chunks);
            let span = (chunk * oh / chunks, (chunk + 1) * oh / chunks);
            let xb = &x[b * ci * h * w..(b + 1) * ci * h * w];
            let image = Image { x: xb, h, w, oh, ow, dst: &dst, base: b * co * oh * ow };
            if let Err(e) = self.chunk(&image, span, rows) {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        profile::record("inverted-residual", t);
        match failed.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Output rows `r0..r1` of one image, in bands of `rows`.
    fn chunk(&self, im: &Image<'_>, (r0, r1): (usize, usize), rows: usize) -> Result<(), String> {
        let (ex, dw) = (&*self.expand, &*self.depthwise);
        let (ci, ce) = (ex.in_channels, ex.out_channels);
        let co = self.project.as_ref().map_or(ce, |p| p.out_channels);
        let (x, h, w, oh, ow) = (im.x, im.h, im.w, im.oh, im.ow);
        let (k, s) = (dw.kh, dw.stride.0);
        let [pt, _, pl, _] = dw.pads(h, w);
        let pr = self.project.as_deref().map(|p| (p, p.packed_group(0)));
        let (Some(pe), true) = (ex.packed_group(0), pr.is_none_or(|p| p.1.is_some())) else {
            return Err("inverted residual: packed weights vanished".into());
        };
        // Expanded rows a band reads at most; the expanded band's planes are `cap` rows apart.
        let cap = (rows - 1) * s + k;
        let eclamp = crate::dw_direct::clamp_of(ex.act);
        let plane = oh * ow;
        crate::pool::with_scratch(&EXPANDED, ce * cap * w, |e| {
            crate::pool::with_scratch(&FILTERED, ce * rows * ow, |d| {
                let wt = dw.weight.read().unwrap_or_else(|p| p.into_inner());
                // Expanded rows a..b of the image are held in rows 0..b-a of `e`.
                let (mut a, mut b) = (0usize, 0usize);
                let mut band0 = r0;
                while band0 < r1 {
                    let band1 = (band0 + rows).min(r1);
                    let lo = (band0 * s) as isize - pt as isize;
                    let hi = ((band1 - 1) * s + k) as isize - pt as isize;
                    let (e0, e1) = (lo.max(0) as usize, (hi.max(0) as usize).min(h));
                    if e0 >= a && e0 < b {
                        if e0 > a {
                            for c in 0..ce {
                                let at = c * cap * w;
                                e.copy_within(at + (e0 - a) * w..at + (b - a) * w, at);
                            }
                        }
                        a = e0;
                    } else {
                        (a, b) = (e0, e0);
                    }
                    if e1 > b {
                        // SAFETY: x holds ci rows of h*w (checked by the caller), so columns
                        // b*w..e1*w of each are in bounds at stride h*w; rows b-a..e1-a of `e`'s
                        // ce planes (stride cap*w, e1-a <= cap) are in bounds and this thread's;
                        // `pe` holds the packed panels of all ce rows for ci columns.
                        unsafe {
                            let (src, out) =
                                (x.as_ptr().add(b * w), e.as_mut_ptr().add((b - a) * w));
                            best_tile(
                                ce,
                                (e1 - b) * w,
                                ci,
                                pe,
                                0,
                                ci * crate::packed::MR,
                                src,
                                h * w,
                                out,
                                cap * w,
                                &ex.bias,
                                false,
                                eclamp,
                            )
                        };
                        if eclamp.is_none() {
                            for c in 0..ce {
                                let at = c * cap * w;
                                apply_activation(
                                    &mut e[at + (b - a) * w..at + (e1 - a) * w],
                                    ex.act,
                                );
                            }
                        }
                        b = e1;
                    }
                    let rout = band1 - band0;
                    let g = DwGeometry {
                        h: e1 - e0,
                        w,
                        oh: rout,
                        ow,
                        kh: k,
                        kw: k,
                        stride: (s, s),
                        dilation: (1, 1),
                        pad_top: (e0 as isize - lo) as usize,
                        pad_left: pl,
                    };
                    let d = &mut d[..ce * rout * ow];
                    depthwise_serial(e, cap * w, d, &wt, &dw.bias, ce, g, dw.act)?;
                    // SAFETY: rows band0..band1 of the image's co planes lie inside the output
                    // (base + co * plane <= its length, checked by the caller) and belong to
                    // this band alone; the span covers them.
                    let o =
                        unsafe { im.dst.slice(im.base + band0 * ow, (co - 1) * plane + rout * ow) };
                    let Some((pr, Some(pp))) = pr else {
                        // No projection: the band's depthwise rows are the output's.
                        for (c, src) in d.chunks_exact(rout * ow).enumerate() {
                            o[c * plane..][..rout * ow].copy_from_slice(src);
                        }
                        band0 = band1;
                        continue;
                    };
                    if self.residual {
                        for c in 0..co {
                            let src = &x[c * h * w + band0 * w..][..rout * w];
                            o[c * plane..][..rout * ow].copy_from_slice(src);
                        }
                    }
                    let pclamp =
                        if self.residual { None } else { crate::dw_direct::clamp_of(pr.act) };
                    // SAFETY: `d` holds ce rows of rout*ow values; `o` holds co rows of
                    // rout*ow values at stride `plane`; `pp` holds the packed panels of all co
                    // rows for ce columns.
                    unsafe {
                        best_tile(
                            co,
                            rout * ow,
                            ce,
                            pp,
                            0,
                            ce * crate::packed::MR,
                            d.as_ptr(),
                            rout * ow,
                            o.as_mut_ptr(),
                            plane,
                            &pr.bias,
                            self.residual,
                            pclamp,
                        )
                    };
                    if pr.act != Activation::None && pclamp.is_none() {
                        for c in 0..co {
                            apply_activation(&mut o[c * plane..][..rout * ow], pr.act);
                        }
                    }
                    band0 = band1;
                }
                Ok(())
            })
        })
    }
}

/// One image of a run: its input, sizes, and where its output starts in `dst`.
struct Image<'a> {
    x: &'a [f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    dst: &'a SharedMut,
    base: usize,
}
