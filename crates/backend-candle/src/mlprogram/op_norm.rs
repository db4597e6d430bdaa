//! Normalisation ops beyond batch/layer norm: instance norm, L2 norm (batch-wise over the last
//! three axes) and local response norm across channels.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};

/// `instance_norm`: per (batch, channel) over the spatial axes, then per-channel gamma/beta.
pub(super) fn instance_norm(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let gamma = b.floats(i, op, "gamma")?;
    let beta = b.floats(i, op, "beta")?;
    let eps = b.scalar(i, op, "epsilon")?.unwrap_or(1e-5);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims();
        if dims.len() < 3 {
            candle_core::bail!("instance_norm: rank {} < 3", dims.len())
        }
        let c = dims[1];
        let plane: usize = dims[2..].iter().product();
        for p in [&gamma, &beta].into_iter().flatten() {
            if p.len() != c {
                candle_core::bail!("instance_norm: {} parameters for {c} channels", p.len())
            }
        }
        let mut v = values(x)?;
        for (k, chunk) in v.chunks_mut(plane.max(1)).enumerate() {
            let ch = k % c;
            let n = chunk.len() as f32;
            let mean = chunk.iter().sum::<f32>() / n;
            let var = chunk.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            let (g, bb) =
                (gamma.as_ref().map_or(1.0, |g| g[ch]), beta.as_ref().map_or(0.0, |b| b[ch]));
            for x in chunk.iter_mut() {
                *x = (*x - mean) * inv * g + bb;
            }
        }
        Ok(vec![tensor(v, dims)?])
    });
    Ok(())
}

/// `l2_norm`: divides by `sqrt(sum(x^2) + epsilon)` over the last three axes, batch-wise.
pub(super) fn l2_norm(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let eps = b.scalar(i, op, "epsilon")?.unwrap_or(1e-6);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims();
        if dims.len() < 3 {
            candle_core::bail!("l2_norm: rank {} < 3", dims.len())
        }
        let run: usize = dims[dims.len() - 3..].iter().product();
        let mut v = values(x)?;
        for chunk in v.chunks_mut(run.max(1)) {
            let s = (chunk.iter().map(|x| x * x).sum::<f32>() + eps).sqrt();
            chunk.iter_mut().for_each(|x| *x /= s);
        }
        Ok(vec![tensor(v, dims)?])
    });
    Ok(())
}

/// `local_response_norm`: `x / (k + alpha / size * sum of x^2 over nearby channels)^beta`, the
/// window `[c - size/2, c + (size-1)/2]` as PyTorch's LocalResponseNorm.
pub(super) fn local_response_norm(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let size = b.int_or(i, op, "size", 0)?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| b.bad(i, op, "size must be positive"))?;
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(1e-4);
    let beta = b.scalar(i, op, "beta")?.unwrap_or(0.75);
    let k = b.scalar(i, op, "k")?.unwrap_or(1.0);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims();
        if dims.len() < 3 {
            candle_core::bail!("local_response_norm: rank {} < 3", dims.len())
        }
        let (c, plane) = (dims[1], dims[2..].iter().product::<usize>());
        let v = values(x)?;
        let mut out = vec![0f32; v.len()];
        for n in 0..dims[0] {
            for ch in 0..c {
                let lo = ch.saturating_sub(size / 2);
                let hi = (ch + (size - 1) / 2).min(c - 1);
                for p in 0..plane {
                    let s: f32 = (lo..=hi).map(|j| v[(n * c + j) * plane + p].powi(2)).sum::<f32>();
                    let at = (n * c + ch) * plane + p;
                    out[at] = v[at] / (k + alpha / size as f32 * s).powf(beta);
                }
            }
        }
        Ok(vec![tensor(out, dims)?])
    });
    Ok(())
}
