//! Activation ops beyond the ones the conv epilogue fuses: the alpha/beta family (ELU, leaky,
//! clamped and thresholded ReLU, hard sigmoid, scaled tanh, linear), GELU's approximations,
//! softplus/softsign and the per-channel PReLU / parametric softplus.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};
use crate::mlprogram::plan::Kind;
use kernels::Activation;

/// `clamped_relu`: `min(max(x, 0), beta) + min(min(x, 0) * alpha, beta)`.
pub(super) fn clamped_relu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.req_scalar(i, op, "alpha")?;
    let beta = b.req_scalar(i, op, "beta")?;
    b.push_map(i, op, move |x| x.max(0.0).min(beta) + (x.min(0.0) * alpha).min(beta))
}

/// `elu`: `x` above zero, `alpha * (e^x - 1)` below.
pub(super) fn elu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(1.0);
    b.push_map(i, op, move |x| if x < 0.0 { alpha * x.exp_m1() } else { x })
}

/// `leaky_relu`: `x` above zero, `alpha * x` below.
pub(super) fn leaky_relu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(0.01);
    b.push_map(i, op, move |x| if x < 0.0 { alpha * x } else { x })
}

/// `linear_activation`: `alpha * x + beta`.
pub(super) fn linear_activation(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.req_scalar(i, op, "alpha")?;
    let beta = b.scalar(i, op, "beta")?.unwrap_or(0.0);
    b.push_map(i, op, move |x| alpha * x + beta)
}

/// `scaled_tanh`: `alpha * tanh(beta * x)`.
pub(super) fn scaled_tanh(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(1.0);
    let beta = b.scalar(i, op, "beta")?.unwrap_or(1.0);
    b.push_map(i, op, move |x| alpha * (beta * x).tanh())
}

/// `sigmoid_hard`: `min(max(alpha * x + beta, 0), 1)` (with `mul` it is hard-swish); with
/// PyTorch's constants on the kernels' vectorised activation.
pub(super) fn sigmoid_hard(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    if super::conv::is_torch_hard_sigmoid(b, i, op)? {
        let x = b.var(i, op, "x")?;
        b.push(i, op, Kind::Act(Activation::HardSigmoid), vec![x]);
        return Ok(());
    }
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(0.2);
    let beta = b.scalar(i, op, "beta")?.unwrap_or(0.5);
    b.push_map(i, op, move |x| (alpha * x + beta).clamp(0.0, 1.0))
}

/// `thresholded_relu`: `x` where `x >= alpha`, else 0. When it starts coremltools' hard-swish
/// chain (see `compile_conv`), the chain becomes one step on the kernels' hard-swish.
pub(super) fn thresholded_relu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    if let Some((hs, m)) = super::conv::hard_swish_chain(b, i, op)? {
        let x = b.var(i, op, "x")?;
        let ops = &b.func.block.operations;
        b.push(i, &ops[m], Kind::Act(Activation::HardSwish), vec![x]);
        b.skip[hs] = true;
        b.skip[m] = true;
        return Ok(());
    }
    let alpha = b.scalar(i, op, "alpha")?.unwrap_or(1.0);
    b.push_map(i, op, move |x| if x < alpha { 0.0 } else { x })
}

/// `softplus`: `log(1 + e^x)`, computed stably.
pub(super) fn softplus(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    b.push_map(i, op, softplus_f)
}

fn softplus_f(x: f32) -> f32 {
    (-x.abs()).exp().ln_1p() + x.max(0.0)
}

/// `softsign`: `x / (1 + |x|)`.
pub(super) fn softsign(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    b.push_map(i, op, |x| x / (1.0 + x.abs()))
}

/// `gelu` in its tanh and sigmoid approximations (EXACT runs on the shared kernel).
pub(super) fn gelu_approx(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    match b.string(i, op, "mode")?.as_deref() {
        Some("TANH_APPROXIMATION") => b.push_map(i, op, |x| {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }),
        Some("SIGMOID_APPROXIMATION") => {
            b.push_map(i, op, |x| x / (1.0 + kernels::exp(-1.702 * x)))
        }
        other => Err(b.unsupported(i, op, format!("gelu mode {other:?}"))),
    }
}

/// Applies `f(x, p[c])` with `p` indexed by the channel (axis 1) of `x`.
fn per_channel(
    x: &candle_core::Tensor,
    params: &[Vec<f32>],
    f: impl Fn(f32, &[f32]) -> f32,
) -> candle_core::Result<candle_core::Tensor> {
    let dims = x.dims();
    if dims.len() < 2 {
        candle_core::bail!("needs an input of rank 2 or more with channels on axis 1, got {dims:?}")
    }
    let c = dims[1];
    let inner: usize = dims[2..].iter().product();
    for p in params {
        if p.len() != c && p.len() != 1 {
            candle_core::bail!("{} parameters for {c} channels", p.len())
        }
    }
    let v = values(x)?;
    let mut buf = vec![0f32; params.len()];
    let out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(e, &x)| {
            let ch = (e / inner.max(1)) % c;
            for (k, p) in params.iter().enumerate() {
                buf[k] = if p.len() == 1 { p[0] } else { p[ch] };
            }
            f(x, &buf)
        })
        .collect();
    tensor(out, dims)
}

/// `prelu`: per-channel leaky ReLU, `alpha` of length C (axis 1).
pub(super) fn prelu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.floats(i, op, "alpha")?.ok_or_else(|| b.bad(i, op, "no alpha"))?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let params = [alpha.clone()];
        Ok(vec![per_channel(arg(a, 0)?, &params, |x, p| if x < 0.0 { p[0] * x } else { x })?])
    });
    Ok(())
}

/// `softplus_parametric`: `alpha_c * log(1 + e^(beta_c * x))` per channel.
pub(super) fn softplus_parametric(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.floats(i, op, "alpha")?.ok_or_else(|| b.bad(i, op, "no alpha"))?;
    let beta = b.floats(i, op, "beta")?.ok_or_else(|| b.bad(i, op, "no beta"))?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let params = [alpha.clone(), beta.clone()];
        Ok(vec![per_channel(arg(a, 0)?, &params, |x, p| p[0] * softplus_f(p[1] * x))?])
    });
    Ok(())
}
