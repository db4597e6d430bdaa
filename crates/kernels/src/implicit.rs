//! Convolution as an implicit GEMM on the packed AVX-512 micro-kernel: the activation strips
//! the 8 x 48 kernel reads are gathered straight from the input planes (one precomputed tap
//! per GEMM row: input channel and kernel offsets, padding by masked loads), so no im2col
//! matrix is ever written. Each tile packs its strips once into a buffer that stays in L2 and
//! runs every 8-row weight panel over them; bias, residual and clamp are in the micro-kernel's
//! epilogue, other activations run on the tile's rows while they are still in cache.

#![allow(unsafe_code)]
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::Activation;
use crate::packed::MR;
#[cfg(target_arch = "x86_64")]
use crate::packed::{NR, micro_cols};
use std::cell::RefCell;

thread_local! {
    /// Each thread's packed strips for one tile, kept between calls.
    static STRIPS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's zero-padded copy of a convolution's input, kept between calls.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Values read past a padded copy's last plane by the gathers' whole-vector loads.
const SLACK: usize = 64;

/// A zero-padded copy of an image-group's input: `planes` of `hp x wp`, input pixel `(y, x)`
/// at `(y + pad.0, x + pad.1)`, big enough that every tap of every output pixel reads inside
/// it, so a strip row is gathered by plain loads (no bounds, no masks).
#[derive(Debug, Clone, Copy)]
struct Padded<'a> {
    x: &'a [f32],
    hp: usize,
    wp: usize,
}

/// The padded plane size `(hp, wp)` for `src` and `oh` output rows.
fn padded_dims(src: &Source<'_>, oh: usize) -> (usize, usize) {
    let dy = src.taps.iter().map(|t| t.dy as usize).max().unwrap_or(0);
    let dx = src.taps.iter().map(|t| t.dx as usize).max().unwrap_or(0);
    ((oh - 1) * src.stride.0 + dy + 1, (src.ow - 1) * src.stride.1 + dx + 1)
}

/// Fills `buf` (`chans * hp * wp + SLACK` values) with the zero-padded copy of `src`'s first
/// `chans` planes, one task per plane on the kernels' pool.
fn fill_padded(src: &Source<'_>, chans: usize, (hp, wp): (usize, usize), buf: &mut [f32]) {
    let (h, w, (pt, pl)) = (src.h, src.w, src.pad);
    // Input columns inside the padded row: padded column pl + x for x in 0..cols.
    let cols = w.min(wp.saturating_sub(pl));
    let all = crate::pool::SharedMut::new(buf);
    crate::pool::for_each_task(chans, &|c| {
        // SAFETY: each task writes only plane c, disjoint from the others'; `buf` outlives
        // the loop.
        let dst = unsafe { all.slice(c * hp * wp, hp * wp) };
        let plane = &src.x[c * h * w..(c + 1) * h * w];
        for (py, row) in dst.chunks_exact_mut(wp).enumerate() {
            let y = py as isize - pt as isize;
            if y < 0 || y >= h as isize || cols == 0 {
                row.fill(0.0);
                continue;
            }
            let from = &plane[y as usize * w..y as usize * w + cols];
            row[..pl.min(wp)].fill(0.0);
            row[pl..pl + cols].copy_from_slice(from);
            row[pl + cols..].fill(0.0);
        }
    });
}

/// One GEMM row of a convolution: its input channel (within the group) and the kernel tap's
/// vertical and horizontal offset (`ky * dilation`, `kx * dilation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tap {
    pub(crate) channel: u32,
    pub(crate) dy: u32,
    pub(crate) dx: u32,
}

/// The taps of a `cig x kh x kw` filter in the weights' row order (channel, then ky, then kx).
pub(crate) fn taps(cig: usize, kh: usize, kw: usize, dil: (usize, usize)) -> Vec<Tap> {
    let mut v = Vec::with_capacity(cig * kh * kw);
    for c in 0..cig {
        for ky in 0..kh {
            for kx in 0..kw {
                v.push(Tap { channel: c as u32, dy: (ky * dil.0) as u32, dx: (kx * dil.1) as u32 });
            }
        }
    }
    v
}

/// Where the input pixels of one image-group come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The group's input channels, each an `h x w` plane.
    pub(crate) x: &'a [f32],
    pub(crate) h: usize,
    pub(crate) w: usize,
    /// Output width (output pixel `j` is row `j / ow`, column `j % ow`).
    pub(crate) ow: usize,
    pub(crate) stride: (usize, usize),
    /// Padding above and left of the input.
    pub(crate) pad: (usize, usize),
    pub(crate) taps: &'a [Tap],
}

/// `out[m x plane] = act(packed_w * gather(src) + bias (+ out if accumulate))` for one
/// image-group: `packed` holds `m.div_ceil(MR)` panels of `k x MR` (`k = src.taps.len()`),
/// `out` the `m` output planes of `plane` pixels. Tiles run on the kernels' pool. `false` when
/// the sizes disagree or AVX-512 is not available (the caller then takes im2col).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_gemm(
    m: usize,
    plane: usize,
    packed: &[f32],
    src: &Source<'_>,
    bias: &[f32],
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) -> bool {
    let k = src.taps.len();
    let chans = src.taps.iter().map(|t| t.channel as usize + 1).max().unwrap_or(0);
    let geometry_ok = src.ow > 0 && plane.is_multiple_of(src.ow);
    if packed.len() < m.div_ceil(MR) * k * MR
        || src.x.len() < chans * src.h * src.w
        || out.len() < m * plane
        || bias.len() < m
        || !geometry_ok
        || src.stride.0 == 0
        || src.stride.1 == 0
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        if matches!(src.stride, (1, 1) | (2, 2)) && !masked_only() {
            let dims = padded_dims(src, plane / src.ow);
            let len = chans * dims.0 * dims.1 + SLACK;
            crate::pool::with_scratch(&PADDED, len, |buf| {
                fill_padded(src, chans, dims, buf);
                let pd = Padded { x: buf, hp: dims.0, wp: dims.1 };
                run_tiles(m, plane, packed, src, Some(pd), bias, act, accumulate, out);
            });
        } else {
            run_tiles(m, plane, packed, src, None, bias, act, accumulate, out);
        }
        return true;
    }
    let _ = (act, accumulate);
    false
}

/// `INFER_IMPLICIT=masked` (read once): gather every strip with bounds masks from the input
/// itself, never from a padded copy (for same-binary A/B runs and the tests).
fn masked_only() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("INFER_IMPLICIT").is_ok_and(|v| v == "masked"))
}

/// True when [`conv_gemm`] runs here (AVX-512).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::simd::has_avx512();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The tiling and the pool loop of [`conv_gemm`] (sizes checked).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn run_tiles(
    m: usize,
    plane: usize,
    packed: &[f32],
    src: &Source<'_>,
    padded: Option<Padded<'_>>,
    bias: &[f32],
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) {
    let k = src.taps.len();
    let threads = crate::pool::threads();
    // One contiguous tile per thread (one tile on one thread) of whole strips, the last
    // taking a plane's few leftover columns (alone they would stream every weight again for a
    // column or four), split by columns or rows, whichever reads less (a column tile streams
    // all of its rows' weights once more, from L3 for deep layers; a row tile gathers its
    // columns once more). At 2 threads (`conv3_shapes 3 2`, alternating): ResNet-18's
    // 256->256 3x3 at 14x14 1103 -> 846 us, 512->512 at 7x7 1499 -> 1243 us, the 7x7 stem
    // 979 -> 780 us. Inside a tile, see `chunk` below.
    let best = crate::packed::Split::least_reading(m, plane, threads);
    let (nt, col_tiles, row_tiles) = (best.nt, best.col_tiles, best.row_tiles);
    let mt = m.div_ceil(row_tiles).div_ceil(MR) * MR;
    let row_tiles = m.div_ceil(mt);
    let clamp = crate::dw_direct::clamp_of(act);
    let dst = crate::pool::SharedMut::new(out);
    crate::pool::for_each_task(row_tiles * col_tiles, &|t| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let r0 = rt * mt;
        let (c0, nn) = crate::packed::Split::columns(nt, col_tiles, ct, plane);
        let mm = (m - r0).min(mt);
        // A tile whose weights fit in L2 runs in cache-sized column chunks (weights read
        // once per chunk, from L2): each chunk's output block stays in L1 across the depth's
        // blocks instead of the whole tile's outputs cycling through L2 once per block. At 2
        // threads (`conv3_shapes 10 2`, 6 alternating rounds) ResNet-18's convolutions 13.3
        // -> 12.7 ms (stem, 64@56, 128@28 5-8 %). Deeper tiles run whole, their weights
        // streamed from L3 once: on one thread that took 512->512 at 7x7 1518 -> 1355 us and
        // 256->512 at 14x14 746 -> 682 us against 48-column tiles (which read them once per
        // tile, and a 1-column tile for 7x7's 49th column).
        let chunk = if mm * k * 4 <= L2_WEIGHTS { cache_cols(k) } else { nn };
        // One strip block, plus 16 values for the padded gather's whole-vector stores past
        // its last row.
        crate::pool::with_aligned_scratch(&STRIPS, k.min(KC) * NR + 16, |buf| {
            let mut j = 0;
            while j < nn {
                // The last chunk takes a remainder narrower than a strip.
                let w = if nn - j - chunk.min(nn - j) < NR { nn - j } else { chunk };
                // SAFETY: AVX-512F was detected by the caller; rows r0..r0+mm < m and
                // columns c0+j..c0+j+w <= c0+nn <= plane of `out` (m * plane values,
                // checked) belong to this tile alone; `packed` holds the panels from r0 / MR
                // (r0 is a multiple of MR) for k rows; `src` was checked to cover every tap's
                // channel; the buffer holds one strip block.
                unsafe {
                    let o = dst.ptr();
                    tile(
                        mm,
                        c0 + j,
                        w,
                        packed,
                        r0 / MR,
                        src,
                        padded,
                        buf,
                        o.add(r0 * plane),
                        plane,
                        &bias[r0..],
                        accumulate,
                        clamp,
                    );
                    finish(o.add(r0 * plane + c0 + j), mm, w, plane, clamp, act);
                }
                j += w;
            }
        });
    });
}

/// Weights (bytes) of a thread's rows up to which its tile runs in [`cache_cols`] chunks:
/// they are read once per chunk, from L2.
#[cfg(target_arch = "x86_64")]
const L2_WEIGHTS: usize = 1 << 20;

/// Columns of a cache-sized tile for depth `k`: whole strips, fewer for deeper GEMMs.
#[cfg(target_arch = "x86_64")]
fn cache_cols(k: usize) -> usize {
    ((96 * 1024) / k.max(1) / NR).clamp(1, 20) * NR
}

/// Applies a non-clamp activation to a finished `mm x nn` block (stride `ld`).
///
/// # Safety
/// `o` valid for rows `0..mm`, columns `0..nn` at stride `ld`, owned by the caller.
#[cfg(target_arch = "x86_64")]
unsafe fn finish(
    o: *mut f32,
    mm: usize,
    nn: usize,
    ld: usize,
    clamp: Option<(f32, f32)>,
    act: Activation,
) {
    if act == Activation::None || clamp.is_some() {
        return;
    }
    for i in 0..mm {
        // SAFETY: row i of the block (caller's contract).
        let row = unsafe { std::slice::from_raw_parts_mut(o.add(i * ld), nn) };
        crate::apply_activation(row, act);
    }
}

/// Taps per block of the GEMM's depth in [`tile`]: one packed strip block (`KC x NR`, 24 KB)
/// stays in L1 while every weight panel of the tile runs over it.
const KC: usize = 128;

/// Runs every panel of rows `0..mm` over columns `c0..c0 + nn` of the implicit matrix, writing
/// `dst` (row stride `ld`, column `c0` onwards): the depth in blocks of [`KC`] taps, and per
/// block each 48-column strip gathered once into `buf` (L1) and reused by all the panels, so
/// the micro-kernel's wide operand comes from L1 and only the narrow weight panels stream
/// from L2. Blocks after the first accumulate into `dst`; the bias goes in with the first
/// block, the clamp with the last.
///
/// # Safety
/// AVX-512F; as argued at the call in [`run_tiles`]; `bias` holds `mm` values; `buf` holds at
/// least `KC.min(k) * NR + 16` values from a cache line on (so the micro-kernel's 16-lane
/// loads never split); `padded`, when given, is `src`'s padded copy (stride 1 or 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    mm: usize,
    c0: usize,
    nn: usize,
    packed: &[f32],
    panel0: usize,
    src: &Source<'_>,
    padded: Option<Padded<'_>>,
    buf: &mut [f32],
    dst: *mut f32,
    ld: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    const ZERO: [f32; MR] = [0.0; MR];
    let k = src.taps.len();
    let strips = nn.div_ceil(NR);
    let mut p0 = 0;
    while p0 < k {
        let kc = (k - p0).min(KC);
        let last = p0 + kc == k;
        let block = Source { taps: &src.taps[p0..p0 + kc], ..*src };
        for s in 0..strips {
            let nc = (nn - s * NR).min(NR);
            // SAFETY: the buffer holds kc * NR + 16 values (the caller sized it); the padded
            // copy covers every tap of every output pixel, plus SLACK.
            unsafe {
                let strip = buf.as_mut_ptr();
                match padded {
                    Some(pd) if src.stride.1 == 1 => {
                        pack_padded::<1>(&block, &pd, c0 + s * NR, nc, strip)
                    }
                    Some(pd) => pack_padded::<2>(&block, &pd, c0 + s * NR, nc, strip),
                    None => pack(&block, c0 + s * NR, nc, strip),
                }
            }
            let strip = &buf[..kc * NR];
            let mut r = 0;
            while r < mm {
                let mr = (mm - r).min(MR);
                let pi = panel0 + r / MR;
                let wp = &packed[pi * k * MR + p0 * MR..pi * k * MR + (p0 + kc) * MR];
                let b = if p0 == 0 { &bias[r..r + mr] } else { &ZERO[..mr] };
                // SAFETY: rows r..r+mr < mm and columns c0 + s * NR + (0..nc) of `dst` are
                // this tile's (caller's contract); the panel block and strip hold kc * MR and
                // kc * NR values.
                unsafe {
                    let d = dst.add(r * ld + c0 + s * NR);
                    let acc = accumulate || p0 > 0;
                    micro_cols(kc, wp, strip, d, ld, b, nc, acc, if last { clamp } else { None })
                }
                r += mr;
            }
        }
        p0 += kc;
    }
}

/// As [`pack`] from the padded copy `pd` of `src`'s input, at horizontal stride `S` (1 or 2,
/// the vertical stride `src.stride.0`): per tap, each run of columns on one output row is
/// whole 16-lane loads (and, at stride 2, an even-lane permute of two), stored whole. A run's
/// last store may spill past its end: into the next run or the next tap's row, both written
/// later, or past the strip row's `nc` columns, which the micro-kernel computes but never
/// stores, or (the last row) into the 16 values after the strip.
///
/// # Safety
/// AVX-512F; `strip` valid for `k * NR + 16` writes; `pd` is the padded copy of `src`'s
/// input ([`fill_padded`] with [`padded_dims`], so every read, whole vectors included, lies
/// inside `pd.x`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_padded<const S: usize>(
    src: &Source<'_>,
    pd: &Padded<'_>,
    c0: usize,
    nc: usize,
    strip: *mut f32,
) {
    use std::arch::x86_64::*;
    let (ow, sy, wp) = (src.ow, src.stride.0, pd.wp);
    let plane = pd.hp * wp;
    // Runs of columns on one output row: (strip offset, length, padded offset of the run's
    // first pixel before the tap's offsets).
    let mut segs = [(0usize, 0usize, 0usize); NR];
    let (mut ns, mut j, end) = (0, c0, c0 + nc);
    while j < end {
        let (oy, ox) = (j / ow, j % ow);
        let len = (ow - ox).min(end - j);
        segs[ns] = (j - c0, len, oy * sy * wp + ox * S);
        ns += 1;
        j += len;
    }
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let x = pd.x.as_ptr();
    for (p, tap) in src.taps.iter().enumerate() {
        let off = tap.channel as usize * plane + tap.dy as usize * wp + tap.dx as usize;
        // SAFETY: row p < k of the strip.
        let out = unsafe { strip.add(p * NR) };
        for &(s0, len, base) in &segs[..ns] {
            // SAFETY: the run's pixels lie inside the padded plane (caller), its whole-vector
            // tail within SLACK past the last plane; the stores stay within the strip's
            // k * NR + 16 values.
            unsafe {
                let from = x.add(base + off);
                let mut t = 0;
                while t < len {
                    let v = if S == 1 {
                        _mm512_loadu_ps(from.add(t))
                    } else {
                        let a = _mm512_loadu_ps(from.add(2 * t));
                        let b = _mm512_loadu_ps(from.add(2 * t + 16));
                        _mm512_permutex2var_ps(a, evens, b)
                    };
                    _mm512_storeu_ps(out.add(s0 + t), v);
                    t += 16;
                }
            }
        }
    }
}

/// Gathers columns `c0..c0 + nc` (`nc <= NR`) of the implicit im2col matrix into `strip` (`k`
/// rows of `NR`, lanes past `nc` zero): per tap, each run of columns on one output row is a
/// masked load of the input row (stride 1), two loads and an even-lane permute (stride 2), or
/// a masked gather; out-of-image pixels are zero.
///
/// # Safety
/// AVX-512F; `strip` valid for `k * NR` writes; `src.x` covers every tap's channel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack(src: &Source<'_>, c0: usize, nc: usize, strip: *mut f32) {
    use crate::dw_direct::lane_mask;
    use std::arch::x86_64::*;
    let Source { x, h, w, ow, stride: (sy, sx), pad: (pt, pl), taps } = *src;
    // Runs of columns on one output row: (strip offset, length, first input row, first
    // input column) before the tap's offsets.
    let mut segs = [(0usize, 0usize, 0isize, 0isize); NR];
    let (mut ns, mut j, end) = (0, c0, c0 + nc);
    while j < end {
        let (oy, ox) = (j / ow, j % ow);
        let len = (ow - ox).min(end - j);
        segs[ns] =
            (j - c0, len, (oy * sy) as isize - pt as isize, (ox * sx) as isize - pl as isize);
        ns += 1;
        j += len;
    }
    let zero = _mm512_setzero_ps();
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let steps = _mm512_mullo_epi32(iota, _mm512_set1_epi32(sx as i32));
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let wv = _mm512_set1_epi32(w as i32);
    let tail: [u16; 3] = std::array::from_fn(|v| !(lane_mask(16 * v as isize, nc, 16) as u16));
    for (p, tap) in taps.iter().enumerate() {
        // SAFETY: row p < k of the strip; the tap's channel plane lies inside `x` (caller).
        let (out, chan) =
            unsafe { (strip.add(p * NR), x.as_ptr().add(tap.channel as usize * h * w)) };
        for &(s0, len, iy0, ix0) in &segs[..ns] {
            let iy = iy0 + tap.dy as isize;
            let ix = ix0 + tap.dx as isize;
            let inside = iy >= 0 && iy < h as isize;
            let row = chan.wrapping_add(if inside { iy as usize * w } else { 0 });
            let mut t = 0;
            while t < len {
                let sm = lane_mask(t as isize, len, 16) as u16;
                let v = if !inside {
                    zero
                } else if sx == 1 {
                    let at = ix + t as isize;
                    // SAFETY: only lanes inside the input row (0 <= column < w) are read.
                    unsafe {
                        _mm512_maskz_loadu_ps(
                            lane_mask(at, w, 16) as u16 & sm,
                            row.wrapping_offset(at),
                        )
                    }
                } else if sx == 2 {
                    let at = ix + 2 * t as isize;
                    // SAFETY: as above, for the two 16-lane halves of the 32 input columns.
                    let (a, b) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(
                                lane_mask(at, w, 16) as u16,
                                row.wrapping_offset(at),
                            ),
                            _mm512_maskz_loadu_ps(
                                lane_mask(at + 16, w, 16) as u16,
                                row.wrapping_offset(at + 16),
                            ),
                        )
                    };
                    _mm512_permutex2var_ps(a, evens, b)
                } else {
                    let at = ix + (t * sx) as isize;
                    let idx = _mm512_add_epi32(_mm512_set1_epi32(at as i32), steps);
                    let ok = _mm512_cmpge_epi32_mask(idx, _mm512_setzero_si512())
                        & _mm512_cmplt_epi32_mask(idx, wv)
                        & sm;
                    // SAFETY: only lanes with 0 <= column < w of the input row are gathered.
                    unsafe { _mm512_mask_i32gather_ps::<4>(zero, ok, idx, row) }
                };
                // SAFETY: lanes t..t+16 under the mask are columns s0 + t.. < s0 + len <= nc
                // of strip row p.
                unsafe { _mm512_mask_storeu_ps(out.add(s0 + t), sm, v) };
                t += 16;
            }
        }
        for (v, &mk) in tail.iter().enumerate() {
            // SAFETY: lanes nc.. of the strip row (NR values).
            unsafe { _mm512_mask_storeu_ps(out.add(16 * v), mk, zero) };
        }
    }
}
