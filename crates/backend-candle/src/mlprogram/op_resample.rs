//! Sampling an image at computed places: `resample` (grid sampling at given coordinates, each
//! padding and coordinate mode), `crop_resize` (bilinear crops of boxes, ROI-align style; the
//! iOS15/16 `roi` form and the iOS17 `boxes`/`box_indices` form) and the iOS17 `resize` (to a
//! run-time shape).

use candle_core::{Result as CResult, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};
use super::resize::{Grid, bilinear, grid, grid_point};

/// How `resample` treats coordinates outside the image.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Padding {
    Constant(f32),
    Border,
    /// Mirror about the edge pixels' centres (the edge is not repeated).
    Reflection,
    /// Mirror about the image's outer edges (the edge is repeated).
    Symmetric,
}

/// Mirrors `p` into `[lo, hi]`.
fn reflect(p: f32, lo: f32, hi: f32) -> f32 {
    let span = hi - lo;
    if span <= 0.0 {
        return lo;
    }
    let d = (p - lo).abs();
    let flips = (d / span).floor();
    let extra = d - flips * span;
    if flips as i64 % 2 == 0 { lo + extra } else { hi - extra }
}

/// The value of `plane` (`h` x `w`) at pixel `(y, x)`, `pad` outside.
fn pixel(plane: &[f32], [h, w]: [usize; 2], y: i64, x: i64, pad: f32) -> f32 {
    if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
        pad
    } else {
        plane[y as usize * w + x as usize]
    }
}

/// Samples one plane at the (unnormalized) point `(py, px)`.
fn sample(plane: &[f32], hw: [usize; 2], [py, px]: [f32; 2], bilin: bool, pad: Padding) -> f32 {
    let [h, w] = hw;
    let fix = |p: f32, n: usize| {
        let top = (n - 1) as f32;
        match pad {
            Padding::Constant(_) => p,
            Padding::Border => p.clamp(0.0, top),
            Padding::Reflection => reflect(p, 0.0, top),
            Padding::Symmetric => reflect(p, -0.5, n as f32 - 0.5).clamp(0.0, top),
        }
    };
    let (py, px) = (fix(py, h), fix(px, w));
    let pv = if let Padding::Constant(v) = pad { v } else { 0.0 };
    if !bilin {
        let (y, x) = (py.round_ties_even() as i64, px.round_ties_even() as i64);
        return pixel(plane, hw, y, x, pv);
    }
    let (y0, x0) = (py.floor(), px.floor());
    let (fy, fx) = (py - y0, px - x0);
    let (y0, x0) = (y0 as i64, x0 as i64);
    let at = |y, x| pixel(plane, hw, y, x, pv);
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
    let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// `resample`: samples `x` `[B, C, H, W]` at `coordinates` `[B, H2, W2, 2]` (`(x, y)` pairs).
pub(super) fn resample(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let bilin = match b.string(i, op, "sampling_mode")?.as_deref() {
        Some("bilinear") => true,
        Some("nearest") => false,
        other => return Err(b.unsupported(i, op, format!("sampling_mode {other:?}"))),
    };
    let pad = match b.string(i, op, "padding_mode")?.as_deref() {
        Some("constant") => Padding::Constant(b.scalar(i, op, "padding_value")?.unwrap_or(0.0)),
        Some("border") => Padding::Border,
        Some("reflection") => Padding::Reflection,
        Some("symmetric") => Padding::Symmetric,
        other => return Err(b.unsupported(i, op, format!("padding_mode {other:?}"))),
    };
    let mode = b.string(i, op, "coordinates_mode")?;
    let norm = match mode.as_deref() {
        Some("unnormalized") => None,
        Some("normalized_minus_one_to_one") => Some(false),
        Some("normalized_zero_to_one") => Some(true),
        other => return Err(b.unsupported(i, op, format!("coordinates_mode {other:?}"))),
    };
    let align = b.flag(i, op, "align_corners")?;
    let x = b.var(i, op, "x")?;
    let c = b.var(i, op, "coordinates")?;
    b.push_fn(i, op, vec![x, c], move |a| {
        let (x, c) = (arg(a, 0)?, arg(a, 1)?);
        let (&[n, ch, h, w], &[cn, oh, ow, 2]) = (x.dims(), c.dims()) else {
            candle_core::bail!("resample: x {:?} and coordinates {:?}", x.dims(), c.dims())
        };
        if cn != n || h == 0 || w == 0 {
            candle_core::bail!("resample: x {:?} and coordinates {:?}", x.dims(), c.dims())
        }
        // A normalized coordinate in [-1, 1] to a pixel position.
        let unnorm = |v: f32, len: usize| -> f32 {
            let v = if norm == Some(true) { 2.0 * v - 1.0 } else { v };
            match (norm, align) {
                (None, _) => v,
                (Some(_), true) => (v + 1.0) / 2.0 * (len - 1) as f32,
                (Some(_), false) => ((v + 1.0) * len as f32 - 1.0) / 2.0,
            }
        };
        let (xv, cv) = (values(x)?, values(c)?);
        let mut out = Vec::with_capacity(n * ch * oh * ow);
        for bi in 0..n {
            for k in 0..ch {
                let plane = &xv[(bi * ch + k) * h * w..][..h * w];
                for p in cv[bi * oh * ow * 2..][..oh * ow * 2].chunks_exact(2) {
                    let at = [unnorm(p[1], h), unnorm(p[0], w)];
                    out.push(sample(plane, [h, w], at, bilin, pad));
                }
            }
        }
        Ok(vec![tensor(out, &[n, ch, oh, ow])?])
    });
    Ok(())
}

/// Reads a box as `[y1, x1, y2, x2]` in pixels.
fn corners(v: &[f32], mode: &str, scale: [f32; 2]) -> CResult<[f32; 4]> {
    let [a, b, c, d] = [v[0], v[1], v[2], v[3]];
    let [y1, x1, y2, x2] = match mode {
        "CORNERS_HEIGHT_FIRST" => [a, b, c, d],
        "CORNERS_WIDTH_FIRST" => [b, a, d, c],
        "CENTER_SIZE_HEIGHT_FIRST" => [a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0],
        "CENTER_SIZE_WIDTH_FIRST" => [b - d / 2.0, a - c / 2.0, b + d / 2.0, a + c / 2.0],
        other => candle_core::bail!("crop_resize: box_coordinate_mode `{other}`"),
    };
    Ok([y1 * scale[0], x1 * scale[1], y2 * scale[0], x2 * scale[1]])
}

/// Bilinear crop of one plane to `oh` x `ow` over the box `[y1, x1, y2, x2]`.
fn crop_plane(
    plane: &[f32],
    hw: [usize; 2],
    bx: [f32; 4],
    out: [usize; 2],
    strict: bool,
    pad: f32,
) -> Vec<f32> {
    let [h, w] = hw;
    let at = |a: f32, b: f32, i: usize, n: usize| match (n, strict) {
        (1, true) => a,
        (1, false) => (a + b) / 2.0,
        _ => a + i as f32 * (b - a) / (n - 1) as f32,
    };
    let mut v = Vec::with_capacity(out[0] * out[1]);
    for r in 0..out[0] {
        let y = at(bx[0], bx[2], r, out[0]);
        for c in 0..out[1] {
            let x = at(bx[1], bx[3], c, out[1]);
            if y < 0.0 || x < 0.0 || y > (h - 1) as f32 || x > (w - 1) as f32 {
                v.push(pad);
            } else {
                v.push(sample(plane, hw, [y, x], true, Padding::Border));
            }
        }
    }
    v
}

/// `crop_resize`: ALIGN_CORNERS / STRICT_ALIGN_CORNERS crops of boxes, resized bilinearly.
pub(super) fn crop_resize(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let strict = match grid(b, i, op)? {
        Grid::Align => false,
        Grid::StrictAlign => true,
        g => {
            return Err(b.unsupported(
                i,
                op,
                format!(
                    "crop_resize sampling_mode {g:?} (ALIGN_CORNERS and STRICT_ALIGN_CORNERS run)"
                ),
            ));
        }
    };
    let th = b.int_or(i, op, "target_height", 1)?;
    let tw = b.int_or(i, op, "target_width", 1)?;
    let (Ok(th), Ok(tw)) = (usize::try_from(th), usize::try_from(tw)) else {
        return Err(b.bad(i, op, format!("target size {th}x{tw}")));
    };
    let normalized = b.flag(i, op, "normalized_coordinates")?;
    let spatial = b.scalar(i, op, "spatial_scale")?.unwrap_or(1.0);
    let mode = b.string(i, op, "box_coordinate_mode")?.unwrap_or("CORNERS_HEIGHT_FIRST".into());
    let pad = b.scalar(i, op, "pad_value")?.unwrap_or(0.0);
    let ios17 = op.inputs.contains_key("boxes");
    let mut inputs = vec![b.var(i, op, "x")?, b.var(i, op, if ios17 { "boxes" } else { "roi" })?];
    if op.inputs.contains_key("box_indices") {
        inputs.push(b.var(i, op, "box_indices")?);
    }
    b.push_fn(i, op, inputs, move |a| {
        let x = arg(a, 0)?;
        let &[n, ch, h, w] = x.dims() else {
            candle_core::bail!("crop_resize: input of shape {:?} is not 4-D", x.dims())
        };
        let rv = values(arg(a, 1)?)?;
        let per = if ios17 { 4 } else { arg(a, 1)?.dims().get(2).copied().unwrap_or(4) };
        if (per != 4 && per != 5) || !rv.len().is_multiple_of(per) {
            candle_core::bail!("crop_resize: boxes of shape {:?}", arg(a, 1)?.dims())
        }
        let nb = rv.len() / per;
        let norm = if normalized { [(h - 1) as f32, (w - 1) as f32] } else { [1.0, 1.0] };
        let scale = [norm[0] * spatial, norm[1] * spatial];
        // The images each box is cut from.
        let images: Vec<Vec<usize>> = match (ios17, a.get(2)) {
            (true, Some(ix)) => values(ix)?.iter().map(|&v| vec![v as usize]).collect(),
            (true, None) => (0..nb).map(|k| vec![k]).collect(),
            (false, _) if per == 5 => rv.chunks(5).map(|r| vec![r[0] as usize]).collect(),
            (false, _) => (0..nb).map(|_| (0..n).collect()).collect(),
        };
        let xv = values(x)?;
        let mut out = Vec::new();
        for (k, r) in rv.chunks(per).enumerate() {
            let bx = corners(&r[per - 4..], &mode, scale)?;
            for &img in &images[k] {
                if img >= n {
                    candle_core::bail!("crop_resize: box {k} names image {img} of {n}")
                }
                for c in 0..ch {
                    let plane = &xv[(img * ch + c) * h * w..][..h * w];
                    out.extend(crop_plane(plane, [h, w], bx, [th, tw], strict, pad));
                }
            }
        }
        let shape = if ios17 {
            vec![nb, ch, th, tw]
        } else {
            vec![nb, if per == 5 { 1 } else { n }, ch, th, tw]
        };
        Ok(vec![tensor(out, &shape)?])
    });
    Ok(())
}

/// Nearest-neighbour resize of `x` `[outer, h, w]` to `oh` x `ow`: each output pixel takes the
/// input pixel nearest to where the sampling grid `g` places it.
fn nearest_on(x: &Tensor, g: Grid, oh: usize, ow: usize) -> CResult<Tensor> {
    let &[outer, h, w] = x.dims() else {
        candle_core::bail!("resize: expected [outer, h, w], got {:?}", x.dims())
    };
    if h == 0 || w == 0 {
        candle_core::bail!("resize: empty input {h}x{w}")
    }
    let src = |i: usize, n_in: usize, n_out: usize| {
        (grid_point(g, i, n_in, n_out).round() as usize).min(n_in - 1)
    };
    let (ys, xs): (Vec<usize>, Vec<usize>) =
        ((0..oh).map(|y| src(y, h, oh)).collect(), (0..ow).map(|x| src(x, w, ow)).collect());
    let v = values(x)?;
    let mut out = Vec::with_capacity(outer * oh * ow);
    for plane in v.chunks_exact(h * w) {
        for &y in &ys {
            out.extend(xs.iter().map(|&x| plane[y * w + x]));
        }
    }
    tensor(out, &[outer, oh, ow])
}

/// iOS17 `resize`: the last `resized_dims` (1 or 2) axes to the tail of the run-time `shape`
/// (0 keeps the input's size), LINEAR or NEAREST_NEIGHBOR.
pub(super) fn resize(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let dims = b.int_or(i, op, "resized_dims", 2)?;
    let Ok(dims @ 1..=2) = usize::try_from(dims) else {
        return Err(b.unsupported(i, op, format!("resize of {dims} axes (1 or 2 run)")));
    };
    let linear = match b.string(i, op, "interpolation_mode")?.as_deref() {
        None | Some("LINEAR") => true,
        Some("NEAREST_NEIGHBOR") => false,
        Some(other) => return Err(b.unsupported(i, op, format!("interpolation_mode `{other}`"))),
    };
    let g = grid(b, i, op)?;
    let x = b.var(i, op, "x")?;
    let s = b.var(i, op, "shape")?;
    b.push_fn(i, op, vec![x, s], move |a| {
        let x = arg(a, 0)?;
        let shape: Vec<f32> = values(arg(a, 1)?)?;
        let r = x.rank();
        if shape.len() < dims || r < dims {
            candle_core::bail!("resize: shape {shape:?} for {dims} axes of {:?}", x.dims())
        }
        let mut out_dims = x.dims().to_vec();
        for k in 0..dims {
            let t = shape[shape.len() - dims + k];
            if t < 0.0 {
                candle_core::bail!("resize: negative size {t}")
            }
            if t > 0.0 {
                out_dims[r - dims + k] = t as usize;
            }
        }
        // View as [outer, h, w] (h = 1 when one axis is resized).
        let (h, w) =
            if dims == 2 { (x.dims()[r - 2], x.dims()[r - 1]) } else { (1, x.dims()[r - 1]) };
        let (oh, ow) =
            if dims == 2 { (out_dims[r - 2], out_dims[r - 1]) } else { (1, out_dims[r - 1]) };
        let outer = x.elem_count() / (h * w).max(1);
        let x3: Tensor = x.reshape((outer, h, w))?;
        let y = if linear { bilinear(&x3, g, oh, ow)? } else { nearest_on(&x3, g, oh, ow)? };
        Ok(vec![y.reshape(out_dims)?])
    });
    Ok(())
}
