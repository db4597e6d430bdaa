//! The executor's transformer ops on the shared kernels, as candle custom ops over the tensors'
//! storage (one pass, no copy out and back): `linear` on a weight packed once at prepare time,
//! `matmul` reading transposed or broadcast operands through their strides, softmax and layer
//! norm over contiguous rows, broadcast binary ops over strides, trailing-axis means, and the
//! fp16 rounding of `cast`.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use kernels::{PackedB, Strided};

use super::plan::BinOp;

fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: expected f32 values") };
    v.get(l.start_offset()..).ok_or_else(|| candle_core::Error::Msg(format!("{what}: bad layout")))
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: expected f32 values") };
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: input not contiguous")))?;
    Ok(&v[a..b])
}

/// `linear`: `x @ weight^T + bias` with the weight packed once.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    packed: Arc<PackedB>,
    bias: Option<Arc<[f32]>>,
}

impl Linear {
    /// Packs `weight` (`[out, in]`, row-major) and keeps `bias` (`out` values).
    pub(crate) fn new(
        weight: &[f32],
        out: usize,
        inp: usize,
        bias: Option<Vec<f32>>,
    ) -> Option<Self> {
        if weight.len() != out * inp || bias.as_ref().is_some_and(|b| b.len() != out) {
            return None;
        }
        // B = weight^T (in x out): B[p][j] = weight[j * in + p].
        let b = Strided { data: weight, batch: 0, row: 1, col: inp };
        let packed = Arc::new(PackedB::new(b, inp, out)?);
        Some(Linear { packed, bias: bias.map(Arc::from) })
    }

    /// Runs on `x` (`[..., in]`).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// Input features.
    pub(crate) fn inputs(&self) -> usize {
        self.packed.k()
    }

    /// `m` rows of `x` (`m x in`, row-major) into `out` (`m x out`); false when the lengths do
    /// not match.
    pub(crate) fn forward_into(&self, x: &[f32], m: usize, out: &mut [f32]) -> bool {
        let k = self.packed.k();
        if x.len() != m * k {
            return false;
        }
        let a = Strided { data: x, batch: 0, row: k, col: 1 };
        kernels::matmul_packed(m, a, &self.packed, self.bias.as_deref(), out)
    }
}

impl CustomOp1 for Linear {
    fn name(&self) -> &'static str {
        "mil-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "linear")?;
        let (k, n) = (self.packed.k(), self.packed.n());
        let dims = l.dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("linear: input {dims:?} does not end in {k} features")
        }
        let m = x.len() / k.max(1);
        let mut out = vec![0f32; m * n];
        let a = Strided { data: x, batch: 0, row: k, col: 1 };
        if !kernels::matmul_packed(m, a, &self.packed, self.bias.as_deref(), &mut out) {
            candle_core::bail!("linear: shapes do not match ({dims:?} x [{k}, {n}])")
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// Every value rounded to the nearest fp16 (ties to even), kept as f32.
struct RoundF16;

impl CustomOp1 for RoundF16 {
    fn name(&self) -> &'static str {
        "mil-round-f16"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "cast")?;
        let mut y = vec![0f32; x.len()];
        if !kernels::round_f16(x, &mut y) {
            candle_core::bail!("cast: {} values in, {} out", x.len(), y.len())
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// `cast` to fp16 inside the executor (whose values stay f32): each value rounded to the
/// nearest fp16, ties to even, as `half::f16::from_f32(x).to_f32()`. An f16 tensor is already
/// representable and is only widened.
pub(crate) fn round_f16(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F16 => x.to_dtype(DType::F32),
        DType::F32 => x.contiguous()?.apply_op1_no_bwd(&RoundF16),
        _ => x.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(&RoundF16),
    }
}

/// One operand's batch / row / column strides, or `None` when its batch dimensions cannot be
/// walked with a single stride.
pub(crate) fn operand(l: &Layout, batch: &[usize], t: bool) -> Option<(usize, usize, usize)> {
    let (d, s) = (l.dims(), l.stride());
    let r = d.len();
    let off = batch.len().checked_sub(r - 2)?;
    // Batch dimensions with more than one index, outermost first, with this operand's stride
    // (0 where the operand is broadcast).
    let live: Vec<(usize, usize)> = batch
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 1)
        .map(|(i, &n)| {
            let st = i.checked_sub(off).filter(|&j| d[j] > 1).map_or(0, |j| s[j]);
            (n, st)
        })
        .collect();
    let bstride = match live.last() {
        None => 0,
        Some(_) if live.iter().all(|&(_, st)| st == 0) => 0,
        Some(&(_, inner)) => {
            let ok = inner != 0 && live.windows(2).all(|w| w[0].1 == w[1].1 * w[1].0);
            if !ok {
                return None;
            }
            inner
        }
    };
    let (row, col) = if t { (s[r - 1], s[r - 2]) } else { (s[r - 2], s[r - 1]) };
    Some((bstride, row, col))
}

/// `x @ y` with optional transposes of the last two dimensions, both of rank >= 2.
#[derive(Debug, Clone, Copy)]
struct MatMul {
    tx: bool,
    ty: bool,
}

/// The product's shape: `(batch dims, m, k, n)`.
pub(crate) fn geometry(
    a: &[usize],
    b: &[usize],
    tx: bool,
    ty: bool,
) -> Result<(Vec<usize>, usize, usize, usize)> {
    let (ra, rb) = (a.len(), b.len());
    let batch = Shape::from(&a[..ra - 2])
        .broadcast_shape_binary_op(&Shape::from(&b[..rb - 2]), "matmul")?;
    let (m, k) = if tx { (a[ra - 1], a[ra - 2]) } else { (a[ra - 2], a[ra - 1]) };
    let (k2, n) = if ty { (b[rb - 1], b[rb - 2]) } else { (b[rb - 2], b[rb - 1]) };
    if k != k2 {
        candle_core::bail!("matmul: inner dimensions differ ({a:?} x {b:?})")
    }
    Ok((batch.dims().to_vec(), m, k, n))
}

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "mil-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, m, k, n) = geometry(l1.dims(), l2.dims(), self.tx, self.ty)?;
        let (Some((ab, ar, ac)), Some((bb, br, bc))) =
            (operand(l1, &batch, self.tx), operand(l2, &batch, self.ty))
        else {
            candle_core::bail!("matmul: operand strides not supported")
        };
        let a = Strided { data: f32s(s1, l1, "matmul")?, batch: ab, row: ar, col: ac };
        let b = Strided { data: f32s(s2, l2, "matmul")?, batch: bb, row: br, col: bc };
        let nb: usize = batch.iter().product();
        let mut out = vec![0f32; nb * m * n];
        if !kernels::matmul_strided(nb, m, n, k, a, b, None, &mut out) {
            candle_core::bail!("matmul: operands do not cover their shapes")
        }
        Ok((CpuStorage::F32(out), Shape::from([batch.as_slice(), &[m, n]].concat())))
    }
}

/// `x @ y` on the kernels' GEMM, reading transposes and broadcasts through strides; `None`
/// when the operands need the general path (rank 1, or batch strides that do not collapse).
pub(crate) fn matmul(x: &Tensor, y: &Tensor, tx: bool, ty: bool) -> Result<Option<Tensor>> {
    if x.rank() < 2 || y.rank() < 2 || x.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let (batch, ..) = geometry(x.dims(), y.dims(), tx, ty)?;
    if operand(x.layout(), &batch, tx).is_none() || operand(y.layout(), &batch, ty).is_none() {
        return Ok(None);
    }
    x.apply_op2_no_bwd(y, &MatMul { tx, ty }).map(Some)
}

/// Softmax along `axis` of a contiguous tensor.
struct Softmax(usize);

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "mil-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "softmax")?;
        let d = l.dims();
        let (outer, len, inner) =
            (d[..self.0].iter().product(), d[self.0], d[self.0 + 1..].iter().product());
        if inner == 1 && len > 0 {
            // Rows along the last axis: written once, straight into the output.
            let y = kernels::softmax_rows_to_vec(x, len)
                .ok_or_else(|| candle_core::Error::Msg(format!("softmax: bad shape {d:?}")))?;
            return Ok((CpuStorage::F32(y), l.shape().clone()));
        }
        let mut y = vec![0f32; x.len()];
        if !kernels::softmax(x, &mut y, outer, len, inner) {
            candle_core::bail!("softmax: bad shape {d:?}")
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// Softmax along `axis` (already resolved to an index) on the kernels.
pub(crate) fn softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Softmax(axis))
}

/// Layer norm over the trailing `len` values of each row.
struct LayerNorm {
    len: usize,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    eps: f32,
}

impl CustomOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "mil-layer-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "layer_norm")?;
        let mut y = vec![0f32; x.len()];
        let (g, b) = (self.gamma.as_deref(), self.beta.as_deref());
        if !kernels::layer_norm(x, &mut y, self.len, g, b, self.eps) {
            candle_core::bail!(
                "layer_norm: {:?} does not split into rows of {}",
                l.dims(),
                self.len
            )
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// Layer norm over the trailing dimensions `first..rank` on the kernels; `gamma` / `beta` have
/// those dimensions' sizes.
pub(crate) fn layer_norm_trailing(
    x: &Tensor,
    first: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let len: usize = x.dims()[first..].iter().product();
    let flat = |t: Option<&Tensor>| t.map(|t| t.flatten_all()?.to_vec1::<f32>()).transpose();
    let op = LayerNorm { len, gamma: flat(gamma)?, beta: flat(beta)?, eps };
    x.contiguous()?.apply_op1_no_bwd(&op)
}

/// An element-wise binary op on two views of one (broadcast) shape, walking both operands'
/// strides directly on the kernels (`kernels::binary`, in parallel over the pool).
struct Binary(BinOp);

/// Dimensions of the output with each operand's stride, size-1 dimensions dropped and adjacent
/// dimensions merged where both operands step through them as one.
pub(crate) fn collapse(dims: &[usize], sa: &[usize], sb: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for ((&n, &a), &b) in dims.iter().zip(sa).zip(sb) {
        if n == 1 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == a * n && last.2 == b * n => *last = (last.0 * n, a, b),
            _ => out.push((n, a, b)),
        }
    }
    out
}

impl CustomOp2 for Binary {
    fn name(&self) -> &'static str {
        "mil-binary"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!("binary: shapes {:?} and {:?} differ", l1.dims(), l2.dims())
        }
        let shape = collapse(l1.dims(), l1.stride(), l2.stride());
        let (a, b) = (f32s(s1, l1, "binary")?, f32s(s2, l2, "binary")?);
        let out = if l1.shape().elem_count() == 0 {
            Vec::new()
        } else {
            kernels::binary(kernel_binop(self.0), &shape, a, b).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "binary: operands do not cover {:?} at their strides",
                    l1.dims()
                ))
            })?
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The kernels' form of a binary op.
pub(crate) fn kernel_binop(op: BinOp) -> kernels::BinaryOp {
    match op {
        BinOp::Add => kernels::BinaryOp::Add,
        BinOp::Sub => kernels::BinaryOp::Sub,
        BinOp::Mul => kernels::BinaryOp::Mul,
        BinOp::Div => kernels::BinaryOp::Div,
        BinOp::Maximum => kernels::BinaryOp::Max,
        BinOp::Minimum => kernels::BinaryOp::Min,
    }
}

/// `x op y` with numpy broadcasting over the operands' strides; `None` unless both are f32.
pub(crate) fn binary(x: &Tensor, y: &Tensor, op: BinOp) -> Result<Option<Tensor>> {
    if x.dtype() != DType::F32 || y.dtype() != DType::F32 {
        return Ok(None);
    }
    let shape = x.shape().broadcast_shape_binary_op(y.shape(), "binary")?;
    let (a, b) = (x.broadcast_as(&shape)?, y.broadcast_as(&shape)?);
    a.apply_op2_no_bwd(&b, &Binary(op)).map(Some)
}

/// Mean over the trailing `len` values of each row of a contiguous tensor.
struct MeanRows {
    len: usize,
    shape: Vec<usize>,
}

impl CustomOp1 for MeanRows {
    fn name(&self) -> &'static str {
        "mil-mean"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "reduce_mean")?;
        let out = kernels::mean_rows(x, self.len).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "reduce_mean: {} values in rows of {}",
                x.len(),
                self.len
            ))
        })?;
        Ok((CpuStorage::F32(out), Shape::from(self.shape.clone())))
    }
}

/// Mean over the trailing dimensions `first..rank` (the global pooling of squeeze-excite
/// blocks); `None` unless f32 with something to reduce.
pub(crate) fn mean_trailing(x: &Tensor, first: usize, keep: bool) -> Result<Option<Tensor>> {
    let len: usize = x.dims()[first..].iter().product();
    if x.dtype() != DType::F32 || len == 0 {
        return Ok(None);
    }
    let mut shape = x.dims()[..first].to_vec();
    if keep {
        shape.extend(std::iter::repeat_n(1, x.rank() - first));
    }
    x.contiguous()?.apply_op1_no_bwd(&MeanRows { len, shape }).map(Some)
}

/// A permute that is a batched 2-D transpose once size-1 axes are dropped and axes that stay
/// neighbours are merged: `[b, r, c, inner] -> [b, c, r, inner]`.
struct Transpose {
    brci: [usize; 4],
    shape: Vec<usize>,
}

impl CustomOp1 for Transpose {
    fn name(&self) -> &'static str {
        "mil-transpose"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "transpose")?;
        let mut out = vec![0f32; x.len()];
        kernels::transpose_batched(x, self.brci, &mut out).map_err(candle_core::Error::Msg)?;
        Ok((CpuStorage::F32(out), Shape::from(self.shape.clone())))
    }
}

/// The `[b, r, c, inner]` of a permute that is a batched 2-D transpose (see [`Transpose`]), or
/// `None`.
pub(crate) fn as_batched_transpose(dims: &[usize], perm: &[usize]) -> Option<[usize; 4]> {
    // Output axes in order, size-1 axes dropped, each as the input axis it reads.
    let kept: Vec<usize> = perm.iter().copied().filter(|&a| dims[a] != 1).collect();
    // Runs of output axes that read consecutive input axes move as one block.
    let mut blocks: Vec<(usize, usize)> = Vec::new(); // (first input axis, size)
    let mut last: Option<usize> = None;
    for &a in &kept {
        match (last, blocks.last_mut()) {
            (Some(p), Some(bl)) if a == p + 1 => bl.1 *= dims[a],
            _ => blocks.push((a, dims[a])),
        }
        last = Some(a);
    }
    // Output block order as ranks of the blocks' input positions.
    let mut by_input: Vec<usize> = (0..blocks.len()).collect();
    by_input.sort_by_key(|&i| blocks[i].0);
    let size = |rank: usize| blocks[by_input[rank]].1;
    let order: Vec<usize> = blocks
        .iter()
        .map(|bl| by_input.iter().position(|&i| blocks[i].0 == bl.0))
        .collect::<Option<_>>()?;
    match order.as_slice() {
        [1, 0] => Some([1, size(0), size(1), 1]),
        [0, 2, 1] => Some([size(0), size(1), size(2), 1]),
        [1, 0, 2] => Some([1, size(0), size(1), size(2)]),
        [0, 2, 1, 3] => Some([size(0), size(1), size(2), size(3)]),
        _ => None,
    }
}

/// `transpose` on the batched-transpose kernel when the permute is one (f32 only); `None`
/// leaves it to candle.
pub(crate) fn permute(x: &Tensor, perm: &[usize]) -> Result<Option<Tensor>> {
    if x.dtype() != DType::F32 || perm.len() != x.rank() {
        return Ok(None);
    }
    let Some(brci) = as_batched_transpose(x.dims(), perm) else { return Ok(None) };
    let shape: Vec<usize> = perm.iter().map(|&a| x.dims()[a]).collect();
    x.contiguous()?.apply_op1_no_bwd(&Transpose { brci, shape }).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The kernels' fp16 rounding, on every path this machine has, gives exactly
    /// `half::f16::from_f32(x).to_f32()` (bit for bit, NaNs included) on every fp16 value, the
    /// midpoints between neighbours and one f32 ulp either side of them, the overflow edge,
    /// special values and a sweep of f32 bit patterns; the `cast` op uses it.
    #[test]
    fn round_f16_matches_half() {
        let mut xs: Vec<f32> = Vec::new();
        for h in 0..=u16::MAX {
            let v = half::f16::from_bits(h).to_f32();
            let next = half::f16::from_bits(h.wrapping_add(1)).to_f32();
            xs.push(v);
            if v.is_finite() && next.is_finite() && h != 0x7FFF && h != 0xFFFF {
                let mid = ((v as f64 + next as f64) / 2.0) as f32;
                let b = mid.to_bits();
                xs.extend([mid, f32::from_bits(b + 1), f32::from_bits(b.saturating_sub(1))]);
            }
        }
        xs.extend((0..=u32::MAX).step_by(4099).map(f32::from_bits));
        xs.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::from_bits(0xFFBF_FFFF),
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            65504.0,
            65519.996,
            65520.0,
            -65520.0,
        ]);
        let want: Vec<u32> =
            xs.iter().map(|&x| half::f16::from_f32(x).to_f32().to_bits()).collect();
        for isa in
            [kernels::Isa::Auto, kernels::Isa::Avx512, kernels::Isa::Avx2, kernels::Isa::Portable]
        {
            let mut ys = vec![0f32; xs.len()];
            assert!(kernels::round_f16_with(isa, &xs, &mut ys));
            for ((x, y), w) in xs.iter().zip(&ys).zip(&want) {
                assert_eq!(y.to_bits(), *w, "{isa:?}: {x:e} ({:#010x})", x.to_bits());
            }
        }
        for (x, w) in xs.iter().zip(&want) {
            assert_eq!(
                kernels::round_f16_scalar(*x).to_bits(),
                *w,
                "scalar: {:#010x}",
                x.to_bits()
            );
        }
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        let got = round_f16(&t).unwrap().to_vec1::<f32>().unwrap();
        assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == *w), "the cast op");
        assert!(!kernels::round_f16(&xs, &mut [0f32; 3]), "mismatched lengths are refused");
    }

    /// Every permutation of a few shapes (with size-1 axes and mergeable neighbours): the
    /// kernel path, where it applies, gives exactly candle's permute, and it applies to the
    /// NCHW <-> NHWC and attention-head cases it exists for.
    #[test]
    fn permute_matches_candle_and_takes_the_common_cases() {
        fn perms(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut all = Vec::new();
            for p in perms(n - 1) {
                for i in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(i, n - 1);
                    all.push(q);
                }
            }
            all
        }
        let mut taken = 0;
        for dims in [vec![2, 3, 4, 5], vec![1, 6, 1, 7], vec![3, 1, 4], vec![2, 3, 5, 4, 2]] {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let x = Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap();
            for p in perms(dims.len()) {
                let want = x.permute(p.as_slice()).unwrap().contiguous().unwrap();
                if let Some(got) = permute(&x, &p).unwrap() {
                    taken += 1;
                    assert_eq!(got.dims(), want.dims(), "{dims:?} {p:?}");
                    let (g, w) = (got.flatten_all().unwrap(), want.flatten_all().unwrap());
                    assert_eq!(
                        g.to_vec1::<f32>().unwrap(),
                        w.to_vec1::<f32>().unwrap(),
                        "{dims:?} {p:?}"
                    );
                }
            }
        }
        assert!(taken > 20, "the kernel took only {taken} permutes");
        for (dims, p) in [
            (vec![1, 8, 4, 4], vec![0, 2, 3, 1]),
            (vec![1, 4, 4, 8], vec![0, 3, 1, 2]),
            (vec![1, 5, 3, 4], vec![0, 2, 1, 3]),
        ] {
            assert!(as_batched_transpose(&dims, &p).is_some(), "{dims:?} {p:?}");
        }
    }
}
