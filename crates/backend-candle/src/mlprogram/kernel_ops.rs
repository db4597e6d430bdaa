//! The executor's transformer ops on the shared kernels, as candle custom ops over the tensors'
//! storage (one pass, no copy out and back): `linear` on a weight packed once at prepare time,
//! `matmul` reading transposed or broadcast operands through their strides, softmax and layer
//! norm over contiguous rows.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use kernels::{PackedB, Strided};

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

/// One operand's batch / row / column strides, or `None` when its batch dimensions cannot be
/// walked with a single stride.
fn operand(l: &Layout, batch: &[usize], t: bool) -> Option<(usize, usize, usize)> {
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
fn geometry(
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
