//! General (batched, strided) matrix products for the transformer ops: `linear` with its weight
//! packed once into column strips, and `matmul` with any operand strides, so transposes are read
//! through strides while packing instead of being copied first. On AVX-512 an 8 x 48
//! register-blocked micro-kernel runs on packed panels (A: 8 rows interleaved along k, B:
//! 48-column strips), with an optional per-column bias in its epilogue, tasks split over
//! batches and row blocks on the kernels' pool; elsewhere the `gemm` crate runs the product with
//! the same strides. Products of at most four rows stream the packed strips instead
//! (`gemv.rs`).

#![allow(unsafe_code)]
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]

use crate::pool::{SharedMut, for_each_task};

use crate::packed::{MR, NR};
/// Rows of A one task packs and runs (a multiple of [`MR`]).
const MAX_TASK_ROWS: usize = 48;

/// Which GEMM runs (tests force each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmIsa {
    /// The packed AVX-512 kernel when the CPU has it (and `INFER_NO_AVX512` is unset), else the
    /// `gemm` crate.
    Auto,
    /// The packed AVX-512 kernel (falls back to `Crate` where AVX-512F is missing).
    Packed,
    /// The `gemm` crate (its own AVX2/AVX-512/NEON/scalar dispatch).
    Crate,
}

impl GemmIsa {
    fn packed(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            GemmIsa::Auto => super::simd::has_avx512(),
            #[cfg(target_arch = "x86_64")]
            GemmIsa::Packed => std::is_x86_feature_detected!("avx512f"),
            _ => false,
        }
    }
}

/// A strided matrix operand: element `(b, r, c)` is `data[b * batch + r * row + c * col]`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Distance between batches (0: the same matrix for every batch).
    pub batch: usize,
    /// Distance between rows.
    pub row: usize,
    /// Distance between columns.
    pub col: usize,
}

impl Strided<'_> {
    /// True when every element of `batches x rows x cols` lies inside `data`.
    fn covers(&self, batches: usize, rows: usize, cols: usize) -> bool {
        if batches == 0 || rows == 0 || cols == 0 {
            return true;
        }
        let last = (batches - 1)
            .checked_mul(self.batch)
            .and_then(|v| v.checked_add((rows - 1).checked_mul(self.row)?))
            .and_then(|v| v.checked_add((cols - 1).checked_mul(self.col)?));
        last.is_some_and(|l| l < self.data.len())
    }
}

/// A constant right-hand side (`k x n`), laid out once for the kernel that will read it: 48-column
/// strips for the packed kernel, row-major for the `gemm` crate.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    packed: bool,
    /// The values, from `lead` on (so packed strips start on a 64-byte line).
    data: Vec<f32>,
    lead: usize,
}

impl PackedB {
    /// Packs `b` for [`GemmIsa::Auto`]; `None` when `b` does not cover `k x n`.
    pub fn new(b: Strided<'_>, k: usize, n: usize) -> Option<PackedB> {
        PackedB::new_with(GemmIsa::Auto, b, k, n)
    }

    /// Packs `b` for a chosen GEMM.
    pub fn new_with(isa: GemmIsa, b: Strided<'_>, k: usize, n: usize) -> Option<PackedB> {
        if !b.covers(1, k, n) {
            return None;
        }
        let packed = isa.packed();
        let (data, lead) = if packed {
            let mut d = vec![0f32; n.div_ceil(NR) * k * NR + 16];
            let lead = d.as_ptr().align_offset(64).min(16);
            pack_b(b, k, n, &mut d[lead..]);
            (d, lead)
        } else {
            ((0..k * n).map(|i| b.data[(i / n) * b.row + (i % n) * b.col]).collect(), 0)
        };
        Some(PackedB { k, n, packed, data, lead })
    }

    /// The laid-out values.
    fn values(&self) -> &[f32] {
        &self.data[self.lead..]
    }

    /// Rows (the shared dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Packs all of `b`'s 48-column strips (`k x NR` each, columns past `n` zero) into `out`.
fn pack_b(b: Strided<'_>, k: usize, n: usize, out: &mut [f32]) {
    for (s, strip) in out.chunks_exact_mut((k * NR).max(1)).enumerate().take(n.div_ceil(NR)) {
        let c0 = s * NR;
        let nc = (n - c0).min(NR);
        if b.col == 1 {
            for p in 0..k {
                let src = &b.data[p * b.row + c0..p * b.row + c0 + nc];
                strip[p * NR..p * NR + nc].copy_from_slice(src);
            }
        } else {
            for j in 0..nc {
                for p in 0..k {
                    strip[p * NR + j] = b.data[p * b.row + (c0 + j) * b.col];
                }
            }
        }
    }
}

/// Packs rows `r0..r0 + rows` of `a` (one batch, `k` columns) into `rows.div_ceil(MR)` panels
/// of `k x MR` (rows past the end zero).
fn pack_a(a: Strided<'_>, base: usize, r0: usize, rows: usize, k: usize, out: &mut [f32]) {
    for (pi, panel) in out.chunks_exact_mut((k * MR).max(1)).enumerate().take(rows.div_ceil(MR)) {
        let mr = (rows - pi * MR).min(MR);
        if mr < MR {
            panel.fill(0.0);
        }
        for i in 0..mr {
            let row = base + (r0 + pi * MR + i) * a.row;
            if a.col == 1 {
                for (p, &v) in a.data[row..row + k].iter().enumerate() {
                    panel[p * MR + i] = v;
                }
            } else {
                for p in 0..k {
                    panel[p * MR + i] = a.data[row + p * a.col];
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's packed A rows, kept between calls.
    static A_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The calling thread's packed B strips for a non-constant B, kept between calls.
    static B_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `c[b] = a[b] (m x k) * b[b] (k x n) (+ bias per column)` for `batches` products; `c` is
/// contiguous (`batches x m x n`). Returns false (nothing written) when an operand does not
/// cover its shape or `bias` is not `n` long.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> bool {
    matmul_strided_with(GemmIsa::Auto, batches, m, n, k, a, b, bias, c)
}

/// [`matmul_strided`] on a chosen GEMM.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided_with(
    isa: GemmIsa,
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> bool {
    if !a.covers(batches, m, k) || !b.covers(batches, k, n) || c.len() != batches * m * n {
        return false;
    }
    if bias.is_some_and(|v| v.len() != n) {
        return false;
    }
    crate::profile::add_flops(2 * (batches * m * n * k) as u64);
    if c.is_empty() {
        return true;
    }
    if !isa.packed() {
        for bi in 0..batches {
            let cb = &mut c[bi * m * n..(bi + 1) * m * n];
            crate_gemm(m, n, k, a, bi * a.batch, b.data, bi * b.batch, b.row, b.col, cb);
            add_bias(cb, n, bias);
        }
        return true;
    }
    let strips = n.div_ceil(NR) * k * NR;
    let b_batches = if b.batch == 0 { 1 } else { batches };
    crate::pool::with_aligned_scratch(&B_BUF, b_batches * strips, |bp| {
        for bi in 0..b_batches {
            let view = Strided { data: &b.data[bi * b.batch..], ..b };
            pack_b(view, k, n, &mut bp[bi * strips..(bi + 1) * strips]);
        }
        let b_of = |bi: usize| if b_batches == 1 { &bp[..strips] } else { &bp[bi * strips..] };
        if m <= crate::gemv::SMALL_M {
            crate::gemv::run(batches, m, n, k, a, &b_of, bias, c);
        } else {
            run_packed(batches, m, n, k, a, &b_of, bias, c);
        }
    });
    true
}

/// `c = a (m x k) * b (+ bias per column)` with `b` packed once ([`PackedB`]); `c` contiguous
/// `m x n`. Returns false when `a` does not cover `m x k`, `c` is not `m x n` or `bias` not `n`.
pub fn matmul_packed(
    m: usize,
    a: Strided<'_>,
    b: &PackedB,
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> bool {
    let (k, n) = (b.k, b.n);
    if !a.covers(1, m, k) || c.len() != m * n || bias.is_some_and(|v| v.len() != n) {
        return false;
    }
    crate::profile::add_flops(2 * (m * n * k) as u64);
    if c.is_empty() {
        return true;
    }
    if !b.packed {
        crate_gemm(m, n, k, a, 0, b.values(), 0, n, 1, c);
        add_bias(c, n, bias);
        return true;
    }
    if m <= crate::gemv::SMALL_M {
        // A few rows (a batch-1 classifier): stream the strips once instead of padding A to
        // an 8-row panel.
        crate::gemv::run(1, m, n, k, a, &|_| b.values(), bias, c);
    } else {
        run_packed(1, m, n, k, a, &|_| b.values(), bias, c);
    }
    true
}

/// The packed kernel over tasks of (batch, block of rows).
#[allow(clippy::too_many_arguments)]
fn run_packed<'b>(
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b_of: &(dyn Fn(usize) -> &'b [f32] + Sync),
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let threads = crate::pool::threads();
    // Enough row blocks for about four tasks per thread, each at most MAX_TASK_ROWS rows.
    let want = (4 * threads).div_ceil(batches).max(1);
    let rows = m.div_ceil(want).div_ceil(MR).clamp(1, MAX_TASK_ROWS / MR) * MR;
    let blocks = m.div_ceil(rows);
    let out = SharedMut::new(c);
    for_each_task(batches * blocks, &|t| {
        let (bi, blk) = (t / blocks, t % blocks);
        let r0 = blk * rows;
        let mr = (m - r0).min(rows);
        // SAFETY: task (bi, blk) writes rows r0..r0+mr of batch bi only: disjoint ranges of
        // `c`, which stays borrowed through `out` until `for_each_task` returns.
        let ct = unsafe { out.slice((bi * m + r0) * n, mr * n) };
        #[cfg(target_arch = "x86_64")]
        if n <= 16 && a.col == 1 {
            // One 16-lane column block (attention's `scores x V` over 16-wide heads): packing
            // A would cost about as much as the product itself, so the rows are read in place.
            let base = bi * a.batch + r0 * a.row;
            // SAFETY: `packed()` checked AVX-512F; `a` covers rows r0..r0+mr of batch bi, k
            // contiguous values each (`covers` checked); `b_of(bi)` holds the one strip of
            // k * NR values; `ct` is mr x n.
            unsafe { rows_in_place_avx512(k, n, mr, &a.data[base..], a.row, b_of(bi), bias, ct) };
            return;
        }
        crate::pool::with_aligned_scratch(&A_BUF, mr.div_ceil(MR) * MR * k, |ap| {
            pack_a(a, bi * a.batch, r0, mr, k, ap);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `packed()` checked AVX-512F; `ap` holds mr.div_ceil(MR) panels of k * MR,
            // `b_of(bi)` all n.div_ceil(NR) strips of k * NR, `ct` is mr x n.
            unsafe {
                block_avx512(k, n, mr, ap, b_of(bi), bias, ct)
            };
        });
    });
}

/// `ct (mr x n) = panels x strips (+ bias)`.
///
/// # Safety
/// AVX-512F; `ap` holds `mr.div_ceil(MR)` panels of `k * MR` values, `bp` `n.div_ceil(NR)`
/// strips of `k * NR`, `ct` is `mr * n` long, `bias` (when given) `n` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(
    k: usize,
    n: usize,
    mr: usize,
    ap: &[f32],
    bp: &[f32],
    bias: Option<&[f32]>,
    ct: &mut [f32],
) {
    let mut c0 = 0;
    while c0 < n {
        let nc = (n - c0).min(NR);
        let strip = &bp[(c0 / NR) * k * NR..];
        let bias = bias.map(|v| &v[c0..c0 + nc]);
        let mut r = 0;
        while r < mr {
            let rows = (mr - r).min(MR);
            let panel = &ap[(r / MR) * k * MR..];
            // SAFETY: rows r..r+rows < mr and columns c0..c0+nc <= n of ct; the panel and strip
            // hold k * MR and k * NR values (caller's contract).
            unsafe {
                let d = ct.as_mut_ptr().add(r * n + c0);
                if nc > 32 {
                    micro::<3>(k, panel, strip, d, n, rows, nc, bias)
                } else if nc > 16 {
                    micro::<2>(k, panel, strip, d, n, rows, nc, bias)
                } else {
                    micro::<1>(k, panel, strip, d, n, rows, nc, bias)
                }
            }
            r += rows;
        }
        c0 += nc;
    }
}

/// `ct (mr x n) = a (mr x k, rows `lda` apart, read in place) x strip (+ bias)` for `n <= 16`:
/// per 8 rows and `k` step one strip load and eight broadcasts straight from A's rows.
///
/// # Safety
/// AVX-512F; `a` holds rows `0..mr` of `k` values at stride `lda`; `strip` holds `k * NR`
/// values; `ct` is `mr * n` long, `n <= 16`; `bias` (when given) `n` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_in_place_avx512(
    k: usize,
    n: usize,
    mr: usize,
    a: &[f32],
    lda: usize,
    strip: &[f32],
    bias: Option<&[f32]>,
    ct: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mask = super::dw_direct::lane_mask(0, n, 16) as u16;
    let bv = match bias {
        // SAFETY: masked lanes are columns < n of `bias`.
        Some(b) => unsafe { _mm512_maskz_loadu_ps(mask, b.as_ptr()) },
        None => _mm512_setzero_ps(),
    };
    let (s, ap) = (strip.as_ptr(), a.as_ptr());
    let mut r = 0;
    while r < mr {
        let rows = (mr - r).min(MR);
        // Rows past the block's end read row r again (computed, never stored).
        let row: [*const f32; MR] =
            std::array::from_fn(|i| ap.wrapping_add((r + if i < rows { i } else { 0 }) * lda));
        let mut acc = [_mm512_setzero_ps(); MR];
        for p in 0..k {
            // SAFETY: p < k values of each row (caller's contract) and of the strip.
            unsafe {
                let x = _mm512_loadu_ps(s.add(p * NR));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    *acc_i = _mm512_fmadd_ps(_mm512_set1_ps(*row[i].add(p)), x, *acc_i);
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate().take(rows) {
            // SAFETY: row r + i < mr of `ct`, columns under the mask < n.
            unsafe {
                _mm512_mask_storeu_ps(
                    ct.as_mut_ptr().add((r + i) * n),
                    mask,
                    _mm512_add_ps(*acc_i, bv),
                )
            };
        }
        r += rows;
    }
}

/// One `rows x nc` block (`rows <= MR`, `nc <= 16 * V`) from a packed panel and strip.
///
/// # Safety
/// AVX-512F; `panel` holds `k * MR`, `strip` `k * NR` values; `dst` valid for rows `0..rows`,
/// columns `0..nc` at stride `ld`; `bias` (when given) `nc` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const V: usize>(
    k: usize,
    panel: &[f32],
    strip: &[f32],
    dst: *mut f32,
    ld: usize,
    rows: usize,
    nc: usize,
    bias: Option<&[f32]>,
) {
    use std::arch::x86_64::*;
    // SAFETY: AVX-512F (this function's contract); `panel` holds k * MR and `strip` k * NR values.
    let acc = unsafe { crate::packed::accumulate::<V>(k, panel, strip) };
    let masks: [u16; V] =
        std::array::from_fn(|v| super::dw_direct::lane_mask(16 * v as isize, nc, 16) as u16);
    let bv: [__m512; V] = std::array::from_fn(|v| match bias {
        // SAFETY: masked lanes are columns < nc of `bias`.
        Some(b) => unsafe { _mm512_maskz_loadu_ps(masks[v], b.as_ptr().wrapping_add(16 * v)) },
        None => _mm512_setzero_ps(),
    });
    for (i, acc_i) in acc.iter().enumerate().take(rows) {
        for v in 0..V {
            // SAFETY: row i < rows, columns under the mask < nc.
            unsafe {
                let dp = dst.add(i * ld + 16 * v);
                _mm512_mask_storeu_ps(dp, masks[v], _mm512_add_ps(acc_i[v], bv[v]));
            }
        }
    }
}

/// Adds `bias` (one value per column) to every `n`-long row of `c`.
fn add_bias(c: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in c.chunks_exact_mut(n.max(1)) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
}

/// One product through the `gemm` crate on the current rayon pool.
#[allow(clippy::too_many_arguments)]
fn crate_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    a_off: usize,
    b: &[f32],
    b_off: usize,
    b_row: usize,
    b_col: usize,
    c: &mut [f32],
) {
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let threads = crate::pool::gemm_crate_threads();
    let par = if threads > 1 && m * n * k >= 64 * 64 * 64 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the callers checked that `a` (from a_off) covers m x k at strides (row, col),
    // `b` (from b_off) k x n at (b_row, b_col), and `c` is m * n contiguous values, so every
    // index the kernel forms is in bounds; `c` is exclusively borrowed and does not alias.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr().add(a_off),
            a.col as isize,
            a.row as isize,
            b.as_ptr().add(b_off),
            b_col as isize,
            b_row as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
