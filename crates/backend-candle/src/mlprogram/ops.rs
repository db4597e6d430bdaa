//! Tensor functions behind the MIL ops that candle has no direct equivalent for: fused
//! activations through the shared kernels, pooling (max pooling on the kernels' loop), slicing, layer norm (trailing axes and
//! softmax on the kernels, see `kernel_ops`), padding, matmul transposes and axis handling.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};

use kernels::Activation;

/// An element-wise activation from [`crate::kernels`] as a candle op on f32 tensors (the same
/// code the conv epilogues use, e.g. the erf-based exact GELU).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActOp(pub(crate) Activation);

impl CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "mil-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("activation: expected f32") };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("activation: input not contiguous".into()))?;
        let out = kernels::activation_to_vec(&data[start..end], self.0);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Applies a kernel activation to any f32 tensor.
pub(crate) fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&ActOp(act))
}

/// A (possibly negative) axis as an index into `rank` dimensions.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if n < 0 || n >= r.max(1) {
        candle_core::bail!("axis {a} out of range for rank {rank}")
    }
    Ok(n as usize)
}

/// The first of `rank` dimensions when `axes` (resolved, in any order, repeats allowed) are
/// exactly the trailing ones: whole contiguous rows for the row kernels.
pub(crate) fn trailing(axes: &[usize], rank: usize) -> Option<usize> {
    let mut ax = axes.to_vec();
    ax.sort_unstable();
    ax.dedup();
    let first = rank.checked_sub(ax.len())?;
    (!ax.is_empty() && ax.iter().enumerate().all(|(i, &a)| a == first + i)).then_some(first)
}

/// Mean over `axes` (all when `None`), keeping or dropping the reduced dimensions.
pub(crate) fn reduce_mean(x: &Tensor, axes: Option<&[i64]>, keep: bool) -> Result<Tensor> {
    let rank = x.rank();
    let mut ax: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    ax.sort_unstable();
    ax.dedup();
    if let Some(first) = trailing(&ax, rank)
        && let Some(y) = super::kernel_ops::mean_trailing(x, first, keep)?
    {
        return Ok(y);
    }
    let mut y = x.clone();
    for &a in &ax {
        y = y.mean_keepdim(a)?;
    }
    if !keep {
        for &a in ax.iter().rev() {
            y = y.squeeze(a)?;
        }
    }
    Ok(y)
}

/// `x @ y` with optional transposes of the last two dimensions; rank-1 operands follow numpy.
pub(crate) fn matmul(x: &Tensor, y: &Tensor, tx: bool, ty: bool) -> Result<Tensor> {
    let (x1, y1) = (x.rank() == 1, y.rank() == 1);
    let mut a = if x1 { x.unsqueeze(0)? } else { x.clone() };
    let mut b = if y1 { y.unsqueeze(1)? } else { y.clone() };
    if tx && !x1 {
        a = a.transpose(a.rank() - 2, a.rank() - 1)?;
    }
    if ty && !y1 {
        b = b.transpose(b.rank() - 2, b.rank() - 1)?;
    }
    // Broadcast the batch dimensions explicitly and make both operands contiguous: candle's
    // broadcast_matmul rejects the strided views it makes for rank > 4.
    let (ra, rb) = (a.rank(), b.rank());
    let batch = Shape::from(&a.dims()[..ra - 2])
        .broadcast_shape_binary_op(&Shape::from(&b.dims()[..rb - 2]), "matmul")?;
    let sa = [batch.dims(), &a.dims()[ra - 2..]].concat();
    let sb = [batch.dims(), &b.dims()[rb - 2..]].concat();
    let nb: usize = batch.dims().iter().product();
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let a3 = a.broadcast_as(sa.as_slice())?.contiguous()?.reshape((nb, m, k))?;
    let b3 = b.broadcast_as(sb.as_slice())?.contiguous()?.reshape((nb, k, n))?;
    let mut out = a3.matmul(&b3)?.reshape([batch.dims(), &[m, n]].concat())?;
    if y1 {
        out = out.squeeze(out.rank() - 1)?;
    }
    if x1 {
        out = out.squeeze(out.rank().saturating_sub(if y1 { 1 } else { 2 }))?;
    }
    Ok(out)
}

/// Layer norm over `axes`, scaled by `gamma` and shifted by `beta` (shaped like the
/// normalized dimensions).
pub(crate) fn layer_norm(
    x: &Tensor,
    axes: &[i64],
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let rank = x.rank();
    let ax: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
    // Trailing axes are whole contiguous rows: one pass per row on the kernels.
    if x.dtype() == DType::F32
        && let Some(first) = trailing(&ax, rank)
    {
        return super::kernel_ops::layer_norm_trailing(x, first, gamma, beta, eps);
    }
    let mut mean = x.clone();
    for &a in &ax {
        mean = mean.mean_keepdim(a)?;
    }
    let centered = x.broadcast_sub(&mean)?;
    let mut var = centered.sqr()?;
    for &a in &ax {
        var = var.mean_keepdim(a)?;
    }
    let mut y = centered.broadcast_div(&(var + f64::from(eps))?.sqrt()?)?;
    // gamma/beta have the normalized dims' sizes; give them x's rank with 1 elsewhere.
    let param_shape: Vec<usize> =
        (0..rank).map(|d| if ax.contains(&d) { x.dims()[d] } else { 1 }).collect();
    if let Some(g) = gamma {
        y = y.broadcast_mul(&g.reshape(param_shape.as_slice())?)?;
    }
    if let Some(b) = beta {
        y = y.broadcast_add(&b.reshape(param_shape.as_slice())?)?;
    }
    Ok(y)
}

/// Softmax along `axis` (max-subtracted).
pub(crate) fn softmax(x: &Tensor, ax: i64) -> Result<Tensor> {
    let a = axis(ax, x.rank())?;
    if x.dtype() == DType::F32 {
        return super::kernel_ops::softmax(x, a);
    }
    let max = x.max_keepdim(a)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(a)?)
}

/// The `slice_by_index` arguments for one tensor (numpy slicing per axis).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SliceSpec {
    pub(crate) begin: Vec<i64>,
    pub(crate) end: Vec<i64>,
    pub(crate) stride: Vec<i64>,
    pub(crate) begin_mask: Vec<bool>,
    pub(crate) end_mask: Vec<bool>,
    pub(crate) squeeze_mask: Vec<bool>,
}

/// The indices numpy's `a[begin:end:stride]` selects on an axis of length `len`; masks say to
/// ignore `begin` / `end`. A squeezed axis selects the single index `begin`.
pub(crate) fn slice_indices(
    len: usize,
    begin: i64,
    end: i64,
    stride: i64,
    begin_mask: bool,
    end_mask: bool,
) -> Result<Vec<usize>> {
    if stride == 0 {
        candle_core::bail!("slice_by_index: stride 0")
    }
    let n = len as i64;
    let norm = |i: i64| if i < 0 { i + n } else { i };
    let (lo, hi) = if stride > 0 { (0, n) } else { (-1, n - 1) };
    let b = if begin_mask { if stride > 0 { 0 } else { n - 1 } } else { norm(begin).clamp(lo, hi) };
    let e = if end_mask { if stride > 0 { n } else { -1 } } else { norm(end).clamp(lo, hi) };
    let mut out = Vec::new();
    let mut i = b;
    while (stride > 0 && i < e) || (stride < 0 && i > e) {
        out.push(i as usize);
        i += stride;
    }
    Ok(out)
}

/// `slice_by_index`: per-axis numpy slicing, then squeezing the axes `squeeze_mask` marks.
pub(crate) fn slice_by_index(x: &Tensor, s: &SliceSpec) -> Result<Tensor> {
    let rank = x.rank();
    if s.begin.len() != rank || s.end.len() != rank {
        candle_core::bail!(
            "slice_by_index: begin/end have {} values for rank {rank}",
            s.begin.len()
        )
    }
    let flag = |v: &[bool], d: usize| v.get(d).copied().unwrap_or(false);
    let mut y = x.clone();
    for d in 0..rank {
        let len = x.dims()[d];
        let stride = s.stride.get(d).copied().unwrap_or(1);
        let idx = if flag(&s.squeeze_mask, d) {
            let i = axis(s.begin[d], len)?;
            vec![i]
        } else {
            slice_indices(
                len,
                s.begin[d],
                s.end[d],
                stride,
                flag(&s.begin_mask, d),
                flag(&s.end_mask, d),
            )?
        };
        let contiguous_run = idx.windows(2).all(|w| w[1] == w[0] + 1);
        if idx.len() == len && contiguous_run {
            continue;
        }
        y = if contiguous_run && !idx.is_empty() {
            y.narrow(d, idx[0], idx.len())?
        } else {
            let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
            let n = ids.len();
            y.index_select(&Tensor::from_vec(ids, n, &Device::Cpu)?, d)?
        };
    }
    for d in (0..rank).rev() {
        if flag(&s.squeeze_mask, d) {
            y = y.squeeze(d)?;
        }
    }
    Ok(y)
}

/// Sizes of the parts `split` cuts an axis of length `len` into.
pub(crate) fn split_sizes(len: usize, sizes: Option<&[usize]>, parts: usize) -> Result<Vec<usize>> {
    match sizes {
        Some(s) if s.iter().sum::<usize>() == len => Ok(s.to_vec()),
        Some(s) => candle_core::bail!("split: sizes {s:?} do not add up to {len}"),
        None if parts > 0 => {
            let each = len.div_ceil(parts);
            let mut out = Vec::with_capacity(parts);
            let mut left = len;
            for _ in 0..parts {
                let n = each.min(left);
                out.push(n);
                left -= n;
            }
            Ok(out)
        }
        None => candle_core::bail!("split: zero parts"),
    }
}

/// Splits along `ax` into parts of the given sizes.
pub(crate) fn split(
    x: &Tensor,
    ax: i64,
    sizes: Option<&[usize]>,
    parts: usize,
) -> Result<Vec<Tensor>> {
    let a = axis(ax, x.rank())?;
    let mut start = 0;
    let mut out = Vec::new();
    for n in split_sizes(x.dims()[a], sizes, parts)? {
        out.push(x.narrow(a, start, n)?);
        start += n;
    }
    Ok(out)
}

/// How `pad` fills the border.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PadMode {
    /// A constant value.
    Constant(f32),
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Replicate,
}

/// `pad`: `pads` holds (before, after) pairs for the last `pads.len() / 2` dimensions.
pub(crate) fn pad(x: &Tensor, pads: &[usize], mode: PadMode) -> Result<Tensor> {
    let rank = x.rank();
    let k = pads.len() / 2;
    if !pads.len().is_multiple_of(2) || k > rank {
        candle_core::bail!("pad: {} pad values for rank {rank}", pads.len())
    }
    let mut y = x.clone();
    for i in 0..k {
        let d = rank - k + i;
        let (l, r) = (pads[2 * i], pads[2 * i + 1]);
        if l == 0 && r == 0 {
            continue;
        }
        y = match mode {
            PadMode::Constant(0.0) => y.pad_with_zeros(d, l, r)?,
            PadMode::Constant(v) => {
                let v = f64::from(v);
                ((y - v)?.pad_with_zeros(d, l, r)? + v)?
            }
            PadMode::Replicate => y.pad_with_same(d, l, r)?,
            PadMode::Reflect => {
                let len = y.dims()[d];
                if l >= len || r >= len {
                    candle_core::bail!("pad: reflect by {l}/{r} on an axis of {len}")
                }
                let mut ids: Vec<u32> = (1..=l).rev().map(|i| i as u32).collect();
                ids.extend((0..len).map(|i| i as u32));
                ids.extend((0..r).map(|i| (len - 2 - i) as u32));
                let n = ids.len();
                y.index_select(&Tensor::from_vec(ids, n, &Device::Cpu)?, d)?
            }
        };
    }
    Ok(y)
}

/// Max or average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// Largest value in the window.
    Max,
    /// Mean of the window; `exclude_pad` leaves padding out of the count.
    Avg {
        /// Count only real input pixels.
        exclude_pad: bool,
    },
}

/// Padding of a pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolPad {
    /// None.
    Valid,
    /// Output ceil(input / stride), extra pixel bottom/right.
    Same,
    /// `[top, bottom, left, right]`.
    Explicit([usize; 4]),
}

/// A 2-D pooling over NCHW tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pool2d {
    pub(crate) kind: PoolKind,
    pub(crate) kernel: (usize, usize),
    pub(crate) stride: (usize, usize),
    pub(crate) pad: PoolPad,
    pub(crate) ceil_mode: bool,
}

impl Pool2d {
    fn geometry(&self, h: usize, w: usize) -> Result<([usize; 4], usize, usize)> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            candle_core::bail!("pool: kernel and strides must be positive")
        }
        let same = |i: usize, k: usize, s: usize| {
            let total = ((i.div_ceil(s)).saturating_sub(1) * s + k).saturating_sub(i);
            (total / 2, total - total / 2)
        };
        let pads = match self.pad {
            PoolPad::Valid => [0; 4],
            PoolPad::Explicit(p) => p,
            PoolPad::Same => {
                let (t, b) = same(h, kh, sh);
                let (l, r) = same(w, kw, sw);
                [t, b, l, r]
            }
        };
        let (ph, pw) = (h + pads[0] + pads[1], w + pads[2] + pads[3]);
        if ph < kh || pw < kw {
            candle_core::bail!("pool: {kh}x{kw} window larger than padded {h}x{w} input")
        }
        // Ceil mode never starts a window in the end padding (PyTorch's rule, which Core ML
        // follows): such a window would see no input at all.
        let out = |i: usize, begin: usize, p: usize, k: usize, s: usize| {
            if !self.ceil_mode {
                return (p - k) / s + 1;
            }
            let o = (p - k).div_ceil(s) + 1;
            if o > 1 && (o - 1) * s >= i + begin { o - 1 } else { o }
        };
        Ok((pads, out(h, pads[0], ph, kh, sh), out(w, pads[2], pw, kw, sw)))
    }

    /// The max-pool kernel's geometry for an `h x w` input (`pads`, `oh`, `ow` from
    /// [`Pool2d::geometry`]).
    fn max_geometry(
        &self,
        h: usize,
        w: usize,
        pads: [usize; 4],
        oh: usize,
        ow: usize,
    ) -> kernels::PoolGeometry {
        kernels::PoolGeometry {
            h,
            w,
            oh,
            ow,
            kh: self.kernel.0,
            kw: self.kernel.1,
            stride: self.stride,
            pad_top: pads[0],
            pad_left: pads[2],
        }
    }

    /// A max pool of the `[n, c, h, w]` values `x` (`dims`) straight into `out` (exactly the
    /// output's values), for the lowered plan: no tensors, no copies. `None` (nothing written)
    /// for an average pool, other ranks, or an output length that does not match.
    pub(crate) fn max_pool_into(
        &self,
        x: &[f32],
        dims: &[usize],
        out: &mut [f32],
    ) -> Option<std::result::Result<(), String>> {
        let &[n, c, h, w] = dims else { return None };
        if self.kind != PoolKind::Max {
            return None;
        }
        let (pads, oh, ow) = self.geometry(h, w).ok()?;
        if out.len() != n * c * oh * ow || x.len() != n * c * h * w {
            return None;
        }
        Some(kernels::max_pool2d(x, n * c, self.max_geometry(h, w, pads, oh, ow), out))
    }

    /// Runs on an `[n, c, h, w]` tensor.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let &[n, c, h, w] = x.dims() else {
            candle_core::bail!("pool: expected a 4-d NCHW input, got {:?}", x.dims())
        };
        let (pads, oh, ow) = self.geometry(h, w)?;
        if self.kind == PoolKind::Max {
            let g = self.max_geometry(h, w, pads, oh, ow);
            let op = MaxPoolOp { planes: n * c, g, dims: [n, c, oh, ow] };
            return x.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(&op);
        }
        let data = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (pt, pl) = (pads[0] as isize, pads[2] as isize);
        let (hi_h, hi_w) = ((h + pads[1]) as isize, (w + pads[3]) as isize);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in data.chunks_exact(h * w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * sh) as isize - pt;
                    let x0 = (ox * sw) as isize - pl;
                    let (mut acc, mut max, mut count, mut padded) = (0f32, f32::NEG_INFINITY, 0, 0);
                    for ky in 0..kh as isize {
                        for kx in 0..kw as isize {
                            let (iy, ix) = (y0 + ky, x0 + kx);
                            if iy >= hi_h || ix >= hi_w {
                                continue;
                            }
                            padded += 1;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = plane[iy as usize * w + ix as usize];
                            acc += v;
                            max = max.max(v);
                            count += 1;
                        }
                    }
                    out.push(match self.kind {
                        PoolKind::Max => max,
                        PoolKind::Avg { exclude_pad: true } => acc / count.max(1) as f32,
                        PoolKind::Avg { exclude_pad: false } => acc / padded.max(1) as f32,
                    });
                }
            }
        }
        Tensor::from_vec(out, (n, c, oh, ow), &Device::Cpu)
    }
}

/// A 2-D max pool on the kernels' vectorised loop, over the input's storage (no copy out).
#[derive(Debug, Clone, Copy)]
struct MaxPoolOp {
    planes: usize,
    g: kernels::PoolGeometry,
    dims: [usize; 4],
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "mil-max-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("max_pool: expected f32") };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("max_pool: input not contiguous".into()))?;
        let mut out = vec![0f32; self.dims.iter().product()];
        kernels::max_pool2d(&data[start..end], self.planes, self.g, &mut out)
            .map_err(candle_core::Error::Msg)?;
        Ok((CpuStorage::F32(out), Shape::from(self.dims.to_vec())))
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
