//! Depthwise convolution with 16 channels in the lanes of one AVX-512 vector. Each group of 16
//! NCHW planes is transposed (16 x 16 blocks in registers) into a zero-padded, pixel-major
//! buffer; every output pixel is then a sum over the taps of whole-vector products (no lane
//! idles on a 7x7 plane, a stride costs nothing); the result is transposed back into the
//! group's NCHW output planes. Any kernel size, stride, dilation and padding; one channel per
//! filter (channel multiplier 1).

#![allow(unsafe_code)]
// Only the x86-64 build runs the kernel; elsewhere its helpers are unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::Activation;
use super::depthwise::DwGeometry;

/// Channels per group: the lanes of an AVX-512 vector.
pub(crate) const LANES: usize = 16;

/// Output pixels of one row computed together (accumulators in registers).
const BLOCK: usize = 8;

/// True when the kernel can run here (AVX-512F, not switched off by `INFER_NO_AVX512`).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::simd::has_avx512();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// True when this kernel is expected to beat the per-plane ones on the geometry: outputs at
/// most 8 pixels wide, where a plane's rows fill few of a vector's lanes, and 5x5 or larger
/// kernels on outputs at most 16 wide, where the taps pay for the transposes (`dw_shapes`
/// with `INFER_DW_LANES=always` / `never`: 7x7 5x5 118 -> 76 us, 14x14 5x5 162 -> 150 us, 3x3
/// on 14x14 55 -> 78 us, so not there).
/// `INFER_DW_LANES=always` / `never` overrides the choice (read once; for same-binary A/B runs).
pub(crate) fn pays(g: &DwGeometry) -> bool {
    static FORCE: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    let force = FORCE.get_or_init(|| match std::env::var("INFER_DW_LANES").as_deref() {
        Ok("always") => Some(true),
        Ok("never") => Some(false),
        _ => None,
    });
    force.unwrap_or(g.ow <= 8 || (g.kh * g.kw >= 25 && g.ow <= LANES))
}

/// Depthwise weights `[channels][taps]` re-laid as `[group][tap][LANES]` (zero past the last
/// channel), the layout the kernel reads.
pub(crate) fn pack(weight: &[f32], channels: usize, taps: usize) -> Vec<f32> {
    let mut out = vec![0f32; channels.div_ceil(LANES) * taps * LANES];
    for (c, filter) in weight.chunks_exact(taps.max(1)).take(channels).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            out[((c / LANES) * taps + t) * LANES + c % LANES] = v;
        }
    }
    out
}

thread_local! {
    /// Each thread's padded input and output buffers, kept between calls.
    static BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows and row stride (pixels) of the zero-padded input buffer: every row and column the
/// geometry reads, and room for each input row's last 16-pixel chunk (whose lanes past the
/// row's end are zero and land in the right padding).
fn padded_dims(g: &DwGeometry) -> (usize, usize) {
    let reads = (g.ow - 1) * g.stride.1 + (g.kw - 1) * g.dilation.1 + 1;
    (
        (g.oh - 1) * g.stride.0 + (g.kh - 1) * g.dilation.0 + 1,
        reads.max(g.pad_left + g.w.next_multiple_of(LANES)),
    )
}

/// Runs the convolution: `x` holds `n * channels` planes of `g.h x g.w`, `out` `n * channels`
/// planes of `g.oh x g.ow`, `packed` the weights from [`pack`]. The activation is applied (in
/// registers when it is a clamp). Returns false, having written nothing, when the kernel cannot
/// run here or the slices do not match the geometry.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise(
    x: &[f32],
    out: &mut [f32],
    packed: &[f32],
    bias: &[f32],
    channels: usize,
    g: &DwGeometry,
    act: Activation,
) -> bool {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let groups = channels.div_ceil(LANES);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = act;
    if !available() || channels == 0 || out_plane == 0 || taps == 0 {
        return available() && out.is_empty();
    }
    let n = out.len() / (channels * out_plane);
    let fits = out.len() == n * channels * out_plane
        && x.len() >= n * channels * in_plane
        && packed.len() >= groups * taps * LANES
        && bias.len() >= channels;
    if !fits {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (hp, wp) = padded_dims(g);
        let clamp = super::dw_direct::clamp_of(act);
        let dst = crate::pool::SharedMut::new(out);
        // One task per thread, each a contiguous run of groups: a run of channels that the
        // GEMM before, split by rows, mostly wrote on the same thread (measured faster than a
        // task per group on Lite0 at 2 threads, 0.68 -> 0.57 ms of 5x5 depthwise per run).
        let items = n * groups;
        let per = items.div_ceil(crate::pool::threads().min(items));
        crate::pool::for_each_task(items.div_ceil(per), &|task| {
            for t in task * per..((task + 1) * per).min(items) {
                let (b, gi) = (t / groups, t % groups);
                let (c0, cn) = (gi * LANES, LANES.min(channels - gi * LANES));
                let first = b * channels + c0;
                // SAFETY: `out` stays exclusively borrowed for the loop, and each task (image b,
                // group gi) takes its own planes first..first+cn, disjoint from every other's.
                let planes = unsafe { dst.slice(first * out_plane, cn * out_plane) };
                let xin = &x[first * in_plane..(first + cn) * in_plane];
                let wg = &packed[gi * taps * LANES..(gi + 1) * taps * LANES];
                let len = (hp * wp + out_plane.next_multiple_of(LANES)) * LANES;
                crate::pool::with_aligned_scratch(&BUF, len, |buf| {
                    let (tin, tout) = buf.split_at_mut(hp * wp * LANES);
                    // SAFETY: AVX-512F is available (checked above); `xin` holds the group's `cn`
                    // input planes, `planes` its `cn` output planes, `wg` its taps x LANES
                    // weights, `bias[c0..]` at least `cn` values, and the buffers the padded
                    // input (hp x wp pixels) and the output pixels (rounded up to whole chunks of
                    // LANES pixels), each LANES values.
                    unsafe { group(xin, planes, wg, &bias[c0..], cn, g, clamp, tin, tout) };
                });
                if clamp.is_none() && act != Activation::None {
                    super::apply_activation(planes, act);
                }
            }
        });
    }
    true
}

/// One group of `cn <= LANES` channels: transpose in, convolve, transpose out.
///
/// # Safety
/// AVX-512F must be available; the slices must be as [`depthwise`] describes for one group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn group(
    xin: &[f32],
    out: &mut [f32],
    wg: &[f32],
    bias: &[f32],
    cn: usize,
    g: &DwGeometry,
    clamp: Option<(f32, f32)>,
    tin: &mut [f32],
    tout: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (hp, wp) = padded_dims(g);
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    zero_border(tin, g, hp, wp);
    // Input rows -> padded pixel-major rows, 16 pixels of 16 channels at a time (channels past
    // `cn` and pixels past the row's end read as zero: mask 0).
    for y in 0..g.h.min(hp.saturating_sub(g.pad_top)) {
        let dst = tin.as_mut_ptr().wrapping_add(((y + g.pad_top) * wp + g.pad_left) * LANES);
        let mut x0 = 0;
        while x0 < g.w {
            let mask = lane_mask(g.w - x0);
            let mut r = [_mm512_setzero_ps(); LANES];
            for (j, rj) in r.iter_mut().enumerate() {
                let m = if j < cn { mask } else { 0 };
                let src = xin.as_ptr().wrapping_add(j * in_plane + y * g.w + x0);
                // SAFETY: row y of plane j < cn, columns x0.. < w (masked; nothing is read
                // for j >= cn, whose address is only formed).
                *rj = unsafe { _mm512_maskz_loadu_ps(m, src) };
            }
            for (i, ti) in transpose(r).iter().enumerate() {
                // SAFETY: padded row y + pad_top < hp, column pad_left + x0 + i < pad_left +
                // w rounded up to 16 <= wp.
                unsafe { _mm512_storeu_ps(dst.add((x0 + i) * LANES), *ti) };
            }
            x0 += LANES;
        }
    }
    // The convolution, BLOCK output pixels of a row at a time.
    // SAFETY: `bias` holds at least cn values (masked load).
    let bv = unsafe { _mm512_maskz_loadu_ps(lane_mask(cn), bias.as_ptr()) };
    let args = Args { tin: tin.as_ptr(), wp, w: wg.as_ptr(), bv, g, clamp };
    // SAFETY: as this function's contract; `tout` holds oh*ow pixels.
    unsafe {
        match g.stride.1 {
            1 => rows::<1>(&args, tout.as_mut_ptr()),
            2 => rows::<2>(&args, tout.as_mut_ptr()),
            _ => rows::<0>(&args, tout.as_mut_ptr()),
        }
    }
    // Output pixels -> the group's NCHW planes (`tout` has room for whole 16-pixel chunks;
    // lanes past the plane's end are masked off, channels past `cn` not stored).
    let mut q0 = 0;
    while q0 < out_plane {
        let mask = lane_mask(out_plane - q0);
        let mut r = [_mm512_setzero_ps(); LANES];
        for (i, ri) in r.iter_mut().enumerate() {
            // SAFETY: `tout` holds out_plane.next_multiple_of(LANES) pixels.
            *ri = unsafe { _mm512_loadu_ps(tout.as_ptr().add((q0 + i) * LANES)) };
        }
        let t = transpose(r);
        let whole = mask == u16::MAX;
        for (j, tj) in t.iter().enumerate().take(cn) {
            // SAFETY: plane j < cn of `out`, pixels q0.. < out_plane (masked at the plane's
            // end: a masked store is far slower than a whole one here).
            unsafe {
                let o = out.as_mut_ptr().add(j * out_plane + q0);
                if whole { _mm512_storeu_ps(o, *tj) } else { _mm512_mask_storeu_ps(o, mask, *tj) }
            };
        }
        q0 += LANES;
    }
}

/// Zeroes the pixels of the padded buffer that no input chunk is stored on: the rows above
/// and below the input, and the columns left and right of its chunks.
fn zero_border(tin: &mut [f32], g: &DwGeometry, hp: usize, wp: usize) {
    let row = wp * LANES;
    let top = g.pad_top.min(hp);
    let bottom = (g.pad_top + g.h).min(hp);
    tin[..top * row].fill(0.0);
    tin[bottom * row..hp * row].fill(0.0);
    let left = g.pad_left.min(wp);
    let right = (g.pad_left + g.w.next_multiple_of(LANES)).min(wp);
    for r in tin[top * row..bottom * row].chunks_exact_mut(row) {
        r[..left * LANES].fill(0.0);
        r[right * LANES..].fill(0.0);
    }
}

/// What every output block of one group reads.
#[cfg(target_arch = "x86_64")]
struct Args<'a> {
    tin: *const f32,
    wp: usize,
    w: *const f32,
    bv: std::arch::x86_64::__m512,
    g: &'a DwGeometry,
    clamp: Option<(f32, f32)>,
}

/// Every output pixel into `tout` (pixel-major, LANES values each), BLOCK pixels of a row at a
/// time; `SX` is the column stride (0: read it from the geometry).
///
/// # Safety
/// AVX-512F; the padded buffer holds every pixel the geometry reads, `tout` `oh * ow` pixels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const SX: usize>(a: &Args<'_>, tout: *mut f32) {
    let g = a.g;
    for oy in 0..g.oh {
        let mut ox = 0;
        while ox < g.ow {
            let r = BLOCK.min(g.ow - ox);
            // SAFETY: output pixels (oy, ox..ox+r) read padded rows oy*sy + ky*dy < hp and
            // columns (ox+i)*sx + kx*dx < wp; they are pixels of `tout`.
            unsafe {
                let o = tout.add((oy * g.ow + ox) * LANES);
                match r {
                    8 => block::<8, SX>(a, oy, ox, o),
                    7 => block::<7, SX>(a, oy, ox, o),
                    6 => block::<6, SX>(a, oy, ox, o),
                    5 => block::<5, SX>(a, oy, ox, o),
                    4 => block::<4, SX>(a, oy, ox, o),
                    3 => block::<3, SX>(a, oy, ox, o),
                    2 => block::<2, SX>(a, oy, ox, o),
                    _ => block::<1, SX>(a, oy, ox, o),
                }
            }
            ox += r;
        }
    }
}

/// `R` output pixels `(oy, ox..ox+R)` into `o` (`R` pixels of LANES values).
///
/// # Safety
/// AVX-512F; every padded pixel the block reads lies inside the buffer, `o` holds `R * LANES`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const R: usize, const SX: usize>(a: &Args<'_>, oy: usize, ox: usize, o: *mut f32) {
    use std::arch::x86_64::*;
    let g = a.g;
    let sy = g.stride.0;
    let sx = if SX == 0 { g.stride.1 } else { SX };
    let (dy, dx) = g.dilation;
    let mut acc = [a.bv; R];
    for ky in 0..g.kh {
        let row = (oy * sy + ky * dy) * a.wp + ox * sx;
        for kx in 0..g.kw {
            // SAFETY: tap ky * kw + kx of the group's weights; pixels as the caller promises.
            unsafe {
                let wv = _mm512_loadu_ps(a.w.add((ky * g.kw + kx) * LANES));
                let base = a.tin.add((row + kx * dx) * LANES);
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    *acc_i = _mm512_fmadd_ps(_mm512_loadu_ps(base.add(i * sx * LANES)), wv, *acc_i);
                }
            }
        }
    }
    let (lo, hi) = a.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    for (i, acc_i) in acc.iter().enumerate() {
        let mut y = *acc_i;
        if a.clamp.is_some() {
            y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
        }
        // SAFETY: pixel i < R of `o`.
        unsafe { _mm512_storeu_ps(o.add(i * LANES), y) };
    }
}

/// The low `n` lanes of a 16-lane mask.
#[inline(always)]
fn lane_mask(n: usize) -> u16 {
    if n >= LANES { u16::MAX } else { ((1u32 << n) - 1) as u16 }
}

/// The 16 x 16 transpose of `r` (row `i` of the result holds lane `i` of every input row):
/// pairs of lanes, then of pairs, then 128-bit quarters, 64 shuffles in all.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose(r: [std::arch::x86_64::__m512; LANES]) -> [std::arch::x86_64::__m512; LANES] {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_ps();
    // Stage 1: within each 128-bit quarter, rows 2q and 2q+1 interleaved.
    let mut t = [z; LANES];
    for q in 0..8 {
        t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
    }
    // Stage 2: u[4b + c] holds rows 4b..4b+4 of column c + 4 * quarter.
    let mut u = [z; LANES];
    for b in 0..4 {
        let (lo0, hi0) = (_mm512_castps_pd(t[4 * b]), _mm512_castps_pd(t[4 * b + 2]));
        let (lo1, hi1) = (_mm512_castps_pd(t[4 * b + 1]), _mm512_castps_pd(t[4 * b + 3]));
        u[4 * b] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, hi0));
        u[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, hi0));
        u[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo1, hi1));
        u[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo1, hi1));
    }
    // Stages 3 and 4: gather each column's four quarters.
    let mut out = [z; LANES];
    for c in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        out[c + 8] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        out[c + 12] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
    out
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_a_transpose() {
        if !available() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut got = [0f32; 256];
        // SAFETY: AVX-512F was detected; `m` and `got` hold 16 rows of 16 values.
        unsafe {
            use std::arch::x86_64::*;
            let r: [__m512; LANES] =
                std::array::from_fn(|i| _mm512_loadu_ps(m.as_ptr().add(16 * i)));
            for (i, v) in transpose(r).iter().enumerate() {
                _mm512_storeu_ps(got.as_mut_ptr().add(16 * i), *v);
            }
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(got[i * 16 + j], m[j * 16 + i], "({i}, {j})");
            }
        }
    }
}
