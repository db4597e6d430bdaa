//! The executor's element-wise passes over the kernels' pool: broadcast binary ops walked
//! through both operands' strides, activations copied out of their input, and row means. Each
//! splits its output into tasks of about 16 K values (one task below that, so small tensors
//! never wake the pool), writes every output value once into a fresh vector (no zero-fill
//! first), and is compiled for AVX-512 / AVX2+FMA at run time.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use crate::activation::{Activation, apply_activation_into};
use crate::pool::for_each_task;
use crate::rows::Isa;

/// Output values per task.
const PER_TASK: usize = 16 * 1024;

/// An element-wise binary op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a` when `a > b`, else `b` (so a NaN in `a` gives `b`).
    Max,
    /// `a` when `a < b`, else `b`.
    Min,
}

/// A fresh vector's spare capacity shared by the tasks of one loop, each writing its own range.
#[derive(Clone, Copy)]
struct Uninit {
    ptr: *mut MaybeUninit<f32>,
    len: usize,
}

// SAFETY: only hands disjoint ranges of one vector's spare capacity to the tasks of one loop.
unsafe impl Send for Uninit {}
// SAFETY: as above; sharing only copies the address.
unsafe impl Sync for Uninit {}

impl Uninit {
    /// Values `a..b`.
    ///
    /// # Safety
    /// `a <= b <= len`, the vector is live and not otherwise accessed, and no two live chunks
    /// overlap.
    unsafe fn chunk<'a>(&self, a: usize, b: usize) -> &'a mut [MaybeUninit<f32>] {
        debug_assert!(a <= b && b <= self.len);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(a), b - a) }
    }
}

/// A vector of `len` values made by `fill(start, chunk)` over consecutive chunks of
/// [`PER_TASK`] values, in parallel on the pool. Every `fill` here writes each value of its chunk.
fn build(len: usize, fill: &(dyn Fn(usize, &mut [MaybeUninit<f32>]) + Sync)) -> Vec<f32> {
    build_units(len, 1, fill)
}

/// [`build`] with chunks of whole `unit`s (about [`PER_TASK`] values each).
pub(crate) fn build_units(
    len: usize,
    unit: usize,
    fill: &(dyn Fn(usize, &mut [MaybeUninit<f32>]) + Sync),
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill_units(&mut v.spare_capacity_mut()[..len], unit, fill);
    // SAFETY: `fill_units` covered 0..len and every `fill` in this module writes its whole
    // chunk.
    unsafe { v.set_len(len) };
    v
}

/// `fill(start, chunk)` over consecutive chunks of `out` of whole `unit`s (about [`PER_TASK`]
/// values each), in parallel on the pool.
fn fill_units(
    out: &mut [MaybeUninit<f32>],
    unit: usize,
    fill: &(dyn Fn(usize, &mut [MaybeUninit<f32>]) + Sync),
) {
    let len = out.len();
    let per = (PER_TASK / unit.max(1)).max(1) * unit.max(1);
    let shared = Uninit { ptr: out.as_mut_ptr(), len };
    for_each_task(len.div_ceil(per), &|t| {
        let (a, b) = (t * per, ((t + 1) * per).min(len));
        // SAFETY: a..b lies inside `out`; tasks take disjoint ranges, and `out` stays
        // exclusively borrowed until `for_each_task` returns.
        let chunk = unsafe { shared.chunk(a, b) };
        fill(a, chunk);
    });
}

/// `out` seen as possibly-uninitialised values, for the fills that write every value.
fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has f32's layout, and every fill writes initialised f32s, so
    // `out` holds valid values whenever it is read again.
    unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) }
}

/// The largest offset a `(size, stride_a, stride_b)` walk reaches in operand `which` (0: a).
fn last_offset(dims: &[(usize, usize, usize)], which: usize) -> Option<usize> {
    dims.iter().try_fold(0usize, |acc, &(n, sa, sb)| {
        let s = if which == 0 { sa } else { sb };
        acc.checked_add(n.checked_sub(1)?.checked_mul(s)?)
    })
}

/// `a op b` over a broadcast shape given as `(size, stride in a, stride in b)` per dimension
/// (outermost first; a stride of 0 repeats a value), into a new row-major vector. `None` when
/// an operand is too short for its strides or a size is zero.
pub fn binary(
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
) -> Option<Vec<f32>> {
    binary_with(Isa::Auto, op, dims, a, b)
}

/// [`binary`] on a chosen instruction set.
pub fn binary_with(
    isa: Isa,
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
) -> Option<Vec<f32>> {
    let total = binary_len(dims, a, b)?;
    let isa = isa.resolve();
    Some(build(total, &|start, chunk| fill_isa(isa, op, dims, a, b, start, chunk)))
}

/// [`binary`] into the caller's `out` (every value overwritten); false (nothing written) where
/// [`binary`] gives `None` or `out` does not hold the broadcast shape's values.
pub fn binary_into(
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) -> bool {
    if binary_len(dims, a, b) != Some(out.len()) {
        return false;
    }
    let isa = Isa::Auto.resolve();
    fill_units(as_uninit(out), 1, &|start, chunk| fill_isa(isa, op, dims, a, b, start, chunk));
    true
}

/// The number of values `a op b` has over `dims`, or `None` when an operand is too short for
/// its strides or a size is zero.
fn binary_len(dims: &[(usize, usize, usize)], a: &[f32], b: &[f32]) -> Option<usize> {
    let total = dims.iter().try_fold(1usize, |t, d| t.checked_mul(d.0))?;
    if total == 0 || last_offset(dims, 0)? >= a.len() || last_offset(dims, 1)? >= b.len() {
        return None;
    }
    Some(total)
}

fn fill_isa(
    isa: Isa,
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    start: usize,
    out: &mut [MaybeUninit<f32>],
) {
    match isa {
        // SAFETY: `resolve` returns Avx512 only where AVX-512F was detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { fill_avx512(op, dims, a, b, start, out) },
        // SAFETY: `resolve` returns Avx2 only where AVX2 and FMA were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { fill_avx2(op, dims, a, b, start, out) },
        _ => fill_op(op, dims, a, b, start, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn fill_avx512(
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    start: usize,
    out: &mut [MaybeUninit<f32>],
) {
    fill_op(op, dims, a, b, start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    start: usize,
    out: &mut [MaybeUninit<f32>],
) {
    fill_op(op, dims, a, b, start, out)
}

#[inline(always)]
fn fill_op(
    op: BinaryOp,
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    start: usize,
    out: &mut [MaybeUninit<f32>],
) {
    match op {
        BinaryOp::Add => fill(dims, a, b, start, out, |x, y| x + y),
        BinaryOp::Sub => fill(dims, a, b, start, out, |x, y| x - y),
        BinaryOp::Mul => fill(dims, a, b, start, out, |x, y| x * y),
        BinaryOp::Div => fill(dims, a, b, start, out, |x, y| x / y),
        BinaryOp::Max => fill(dims, a, b, start, out, |x, y| if x > y { x } else { y }),
        BinaryOp::Min => fill(dims, a, b, start, out, |x, y| if x < y { x } else { y }),
    }
}

/// Output values `start..start + out.len()` of the broadcast walk (offsets in bounds: checked
/// by [`binary_with`]).
#[inline(always)]
fn fill(
    dims: &[(usize, usize, usize)],
    a: &[f32],
    b: &[f32],
    start: usize,
    out: &mut [MaybeUninit<f32>],
    f: impl Fn(f32, f32) -> f32 + Copy,
) {
    let Some((&(n, ia, ib), outer)) = dims.split_last() else {
        // A scalar: one value.
        if let Some(o) = out.first_mut() {
            o.write(f(a[0], b[0]));
        }
        return;
    };
    // Where `start` is: the column j of the innermost run and the outer indices.
    // On the stack for any rank a model has (no allocation per task).
    let mut stack = [0usize; 8];
    let mut heap;
    let idx: &mut [usize] = if outer.len() <= stack.len() {
        &mut stack[..outer.len()]
    } else {
        heap = vec![0usize; outer.len()];
        &mut heap
    };
    let mut rest = start / n;
    let mut j = start % n;
    let (mut oa, mut ob) = (j * ia, j * ib);
    for d in (0..outer.len()).rev() {
        idx[d] = rest % outer[d].0;
        rest /= outer[d].0;
        oa += idx[d] * outer[d].1;
        ob += idx[d] * outer[d].2;
    }
    let mut w = 0;
    while w < out.len() {
        let run = (n - j).min(out.len() - w);
        let o = &mut out[w..w + run];
        match (ia, ib) {
            (1, 1) => {
                for ((o, &x), &y) in o.iter_mut().zip(&a[oa..oa + run]).zip(&b[ob..ob + run]) {
                    o.write(f(x, y));
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (o, &x) in o.iter_mut().zip(&a[oa..oa + run]) {
                    o.write(f(x, y));
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (o, &y) in o.iter_mut().zip(&b[ob..ob + run]) {
                    o.write(f(x, y));
                }
            }
            _ => {
                for (t, o) in o.iter_mut().enumerate() {
                    o.write(f(a[oa + t * ia], b[ob + t * ib]));
                }
            }
        }
        w += run;
        j += run;
        oa += run * ia;
        ob += run * ib;
        if j == n && w < out.len() {
            j = 0;
            oa -= n * ia;
            ob -= n * ib;
            // Odometer over the outer dimensions.
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                oa += outer[d].1;
                ob += outer[d].2;
                if idx[d] < outer[d].0 {
                    break;
                }
                oa -= outer[d].1 * outer[d].0;
                ob -= outer[d].2 * outer[d].0;
                idx[d] = 0;
            }
        }
    }
}

/// `act(x)` for every value of `x`, into a new vector written once (in parallel on the pool);
/// the same values as [`crate::apply_activation`] in place.
pub fn activation_to_vec(x: &[f32], act: Activation) -> Vec<f32> {
    build(x.len(), &|start, chunk| {
        apply_activation_into(&x[start..start + chunk.len()], chunk, act)
    })
}

/// [`activation_to_vec`] into the caller's `out`; false (nothing written) when the lengths
/// differ.
pub fn activation_into(x: &[f32], act: Activation, out: &mut [f32]) -> bool {
    if x.len() != out.len() {
        return false;
    }
    fill_units(as_uninit(out), 1, &|start, chunk| {
        apply_activation_into(&x[start..start + chunk.len()], chunk, act)
    });
    true
}

/// The mean of each `len`-value row of `x` (rows in parallel on the pool). `None` when `len`
/// is zero or does not divide `x`'s length.
pub fn mean_rows(x: &[f32], len: usize) -> Option<Vec<f32>> {
    if len == 0 || !x.len().is_multiple_of(len) {
        return None;
    }
    let mut out = vec![0f32; x.len() / len];
    mean_rows_into(x, len, &mut out).then_some(out)
}

/// [`mean_rows`] into the caller's `out` (one value per row); false (nothing written) when
/// `len` is zero, does not divide `x`'s length or `out` does not hold one value per row.
pub fn mean_rows_into(x: &[f32], len: usize, out: &mut [f32]) -> bool {
    if len == 0 || !x.len().is_multiple_of(len) || out.len() != x.len() / len {
        return false;
    }
    let rows = out.len();
    let isa = Isa::Auto.resolve();
    let per_task = (PER_TASK / len).max(1);
    let tasks = rows.div_ceil(per_task);
    let shared = crate::pool::SharedMut::new(out);
    for_each_task(tasks, &|t| {
        let (r0, r1) = (t * per_task, ((t + 1) * per_task).min(rows));
        // SAFETY: tasks write disjoint row ranges r0..r1 of `out`, borrowed through `shared`
        // until `for_each_task` returns.
        let o = unsafe { shared.slice(r0, r1 - r0) };
        means_isa(isa, &x[r0 * len..r1 * len], len, o);
    });
    true
}

fn means_isa(isa: Isa, x: &[f32], len: usize, out: &mut [f32]) {
    match isa {
        // SAFETY: `resolve` returns Avx512 only where AVX-512F was detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { means_avx512(x, len, out) },
        // SAFETY: `resolve` returns Avx2 only where AVX2 and FMA were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { means_avx2(x, len, out) },
        _ => means(x, len, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn means_avx512(x: &[f32], len: usize, out: &mut [f32]) {
    means(x, len, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn means_avx2(x: &[f32], len: usize, out: &mut [f32]) {
    means(x, len, out)
}

#[inline(always)]
fn means(x: &[f32], len: usize, out: &mut [f32]) {
    let inv = 1.0 / len as f32;
    for (o, row) in out.iter_mut().zip(x.chunks_exact(len)) {
        let mut acc = [0f32; 16];
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
        }
        *o = (chunks.remainder().iter().sum::<f32>() + acc.iter().sum::<f32>()) * inv;
    }
}
