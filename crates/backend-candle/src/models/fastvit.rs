//! FastViT-T8 on the shared kernels, reparameterized at load (timm's inference form): every
//! MobileOne block (kxk + 1x1 scale + identity branches, each with BatchNorm) becomes one conv,
//! each RepMixer (`x + gamma * (mixer(x) - norm(x))`) one depthwise conv, the patch embedding's
//! 7x7 and 3x3 branches one 7x7 conv, and the ConvMlp's layer scale folds into its last 1x1
//! conv, whose GEMM accumulates straight onto the residual.

use candle_core::{Device, Tensor};
use inference_api::{Error, Result};

use super::{Network, Weights};
use kernels::{Activation, Conv2d, Padding, apply_activation};

const BN_EPS: f32 = 1e-5;

/// A feature map: `n` images of `c x h x w`, NCHW.
struct Map {
    data: Vec<f32>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

fn kerr(name: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Load(format!("fastvit-t8 {name}: {e}"))
}

fn rt(e: String) -> candle_core::Error {
    candle_core::Error::Msg(format!("fastvit-t8: {e}"))
}

fn has(w: &Weights, name: &str) -> bool {
    w.get(name, None).is_ok()
}

/// BatchNorm `prefix` as `(scale, shift)`: `y = x * scale + shift`.
fn bn(w: &Weights, prefix: &str, c: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let p = |n: &str| w.get(&format!("{prefix}.{n}"), Some(&[c])).map(|(v, _)| v);
    let (g, b, m, v) = (p("weight")?, p("bias")?, p("running_mean")?, p("running_var")?);
    let scale: Vec<f32> = g.iter().zip(&v).map(|(g, v)| g / (v + BN_EPS).sqrt()).collect();
    let shift = b.iter().zip(&m).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// Folded weights `[out, cig, k, k]` and bias of a conv + BatchNorm pair.
fn conv_bn(w: &Weights, conv: &str, bn_name: &str, out: usize) -> Result<(Vec<f32>, Vec<usize>)> {
    let (mut wt, dims) = w.get(&format!("{conv}.weight"), None)?;
    if dims.len() != 4 || dims[0] != out {
        return Err(Error::Load(format!("fastvit-t8 {conv}: unexpected shape {dims:?}")));
    }
    let (scale, _) = bn(w, bn_name, out)?;
    let per = wt.len() / out;
    for o in 0..out {
        wt[o * per..(o + 1) * per].iter_mut().for_each(|v| *v *= scale[o]);
    }
    Ok((wt, dims))
}

/// A MobileOne block's branches summed into one `k x k` conv: `(weight, bias)`.
fn mobileone(
    w: &Weights,
    prefix: &str,
    out: usize,
    cig: usize,
    k: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let kk = k * k;
    let mut wt = vec![0f32; out * cig * kk];
    let mut b = vec![0f32; out];
    let kxk = format!("{prefix}.conv_kxk.0");
    if has(w, &format!("{kxk}.conv.weight")) {
        let (wk, dims) = conv_bn(w, &format!("{kxk}.conv"), &format!("{kxk}.bn"), out)?;
        if dims != [out, cig, k, k] {
            return Err(Error::Load(format!("fastvit-t8 {kxk}: shape {dims:?}")));
        }
        wt.iter_mut().zip(&wk).for_each(|(a, v)| *a += v);
        let (_, shift) = bn(w, &format!("{kxk}.bn"), out)?;
        b.iter_mut().zip(&shift).for_each(|(a, v)| *a += v);
    }
    let center = (k / 2) * k + k / 2;
    let sc = format!("{prefix}.conv_scale");
    if has(w, &format!("{sc}.conv.weight")) {
        let (ws, dims) = conv_bn(w, &format!("{sc}.conv"), &format!("{sc}.bn"), out)?;
        if dims != [out, cig, 1, 1] {
            return Err(Error::Load(format!("fastvit-t8 {sc}: shape {dims:?}")));
        }
        for (i, v) in ws.iter().enumerate() {
            wt[i * kk + center] += v;
        }
        let (_, shift) = bn(w, &format!("{sc}.bn"), out)?;
        b.iter_mut().zip(&shift).for_each(|(a, v)| *a += v);
    }
    let id = format!("{prefix}.identity");
    if has(w, &format!("{id}.weight")) {
        let (scale, shift) = bn(w, &id, out)?;
        for o in 0..out {
            wt[(o * cig + o % cig) * kk + center] += scale[o];
            b[o] += shift[o];
        }
    }
    Ok((wt, b))
}

#[allow(clippy::too_many_arguments)]
fn conv(
    name: &str,
    wt: Vec<f32>,
    b: Vec<f32>,
    shape: [usize; 4],
    stride: usize,
    groups: usize,
    act: Activation,
) -> Result<Conv2d> {
    let p = shape[2] / 2;
    Conv2d::new(
        wt,
        shape,
        Some(b),
        (stride, stride),
        (1, 1),
        groups,
        Padding::Explicit([p; 4]),
        act,
    )
    .map_err(kerr(name))
}

fn mobileone_conv(
    w: &Weights,
    prefix: &str,
    (inp, out, k, stride, groups): (usize, usize, usize, usize, usize),
    act: Activation,
) -> Result<Conv2d> {
    let cig = inp / groups;
    let (wt, b) = mobileone(w, prefix, out, cig, k)?;
    conv(prefix, wt, b, [out, cig, k, k], stride, groups, act)
}

/// Squeeze-and-excitation: `x * sigmoid(fc2(relu(fc1(mean(x)))))`.
struct Se {
    fc1: Vec<f32>,
    b1: Vec<f32>,
    fc2: Vec<f32>,
    b2: Vec<f32>,
    rd: usize,
}

impl Se {
    fn load(w: &Weights, prefix: &str, c: usize) -> Result<Option<Se>> {
        if !has(w, &format!("{prefix}.fc1.weight")) {
            return Ok(None);
        }
        let (fc1, d1) = w.get(&format!("{prefix}.fc1.weight"), None)?;
        let rd = d1[0];
        let (b1, _) = w.get(&format!("{prefix}.fc1.bias"), Some(&[rd]))?;
        let (fc2, _) = w.get(&format!("{prefix}.fc2.weight"), Some(&[c, rd, 1, 1]))?;
        let (b2, _) = w.get(&format!("{prefix}.fc2.bias"), Some(&[c]))?;
        if d1 != [rd, c, 1, 1] {
            return Err(Error::Load(format!("fastvit-t8 {prefix}.fc1: shape {d1:?}")));
        }
        Ok(Some(Se { fc1, b1, fc2, b2, rd }))
    }

    fn apply(&self, m: &mut Map) {
        let (c, hw) = (m.c, m.h * m.w);
        for img in m.data.chunks_mut(c * hw) {
            let mean: Vec<f32> =
                img.chunks(hw).map(|p| p.iter().sum::<f32>() / hw as f32).collect();
            let hid: Vec<f32> = (0..self.rd)
                .map(|r| {
                    let s: f32 =
                        self.fc1[r * c..(r + 1) * c].iter().zip(&mean).map(|(a, b)| a * b).sum();
                    (s + self.b1[r]).max(0.0)
                })
                .collect();
            for (ch, plane) in img.chunks_mut(hw).enumerate() {
                let s: f32 = self.fc2[ch * self.rd..(ch + 1) * self.rd]
                    .iter()
                    .zip(&hid)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + self.b2[ch];
                let gate = 1.0 / (1.0 + kernels::exp(-s));
                plane.iter_mut().for_each(|v| *v *= gate);
            }
        }
    }
}

/// One RepMixer block: token mixer (one depthwise 3x3), then `x + ConvMlp(x)`.
struct Block {
    mixer: Conv2d,
    dw7: Conv2d,
    fc1: Conv2d,
    fc2: Conv2d,
}

struct Stage {
    downsample: Option<(Conv2d, Conv2d)>,
    pos: Option<Conv2d>,
    blocks: Vec<Block>,
}

pub(crate) struct FastVit {
    stem: [Conv2d; 3],
    stages: Vec<Stage>,
    final_conv: Conv2d,
    final_se: Option<Se>,
    head_w: Vec<f32>,
    head_b: Vec<f32>,
    classes: usize,
}

fn repmixer_block(w: &Weights, p: &str, dim: usize, exp: usize) -> Result<Block> {
    // Token mixer: x + gamma * (mixer(x) - norm(x)) as one depthwise conv.
    let (wm, bm) = mobileone(w, &format!("{p}.token_mixer.mixer"), dim, 1, 3)?;
    let (wn, bnn) = mobileone(w, &format!("{p}.token_mixer.norm"), dim, 1, 3)?;
    let (gamma, _) = w.get(&format!("{p}.token_mixer.layer_scale.gamma"), Some(&[dim, 1, 1]))?;
    let mut wt = vec![0f32; dim * 9];
    let mut b = vec![0f32; dim];
    for c in 0..dim {
        for t in 0..9 {
            wt[c * 9 + t] = gamma[c] * (wm[c * 9 + t] - wn[c * 9 + t]);
        }
        wt[c * 9 + 4] += 1.0;
        b[c] = gamma[c] * (bm[c] - bnn[c]);
    }
    let mixer = conv(p, wt, b, [dim, 1, 3, 3], 1, dim, Activation::None)?;
    // ConvMlp: depthwise 7x7 + BN, fc1 + GELU, fc2 (scaled by the block's layer scale).
    let m = format!("{p}.mlp");
    let (w7, _) = conv_bn(w, &format!("{m}.conv.conv"), &format!("{m}.conv.bn"), dim)?;
    let (_, b7) = bn(w, &format!("{m}.conv.bn"), dim)?;
    let dw7 = conv(&m, w7, b7, [dim, 1, 7, 7], 1, dim, Activation::None)?;
    let hid = dim * exp;
    let (w1, _) = w.get(&format!("{m}.fc1.weight"), Some(&[hid, dim, 1, 1]))?;
    let (b1, _) = w.get(&format!("{m}.fc1.bias"), Some(&[hid]))?;
    let fc1 = conv(&m, w1, b1, [hid, dim, 1, 1], 1, 1, Activation::Gelu)?;
    let (mut w2, _) = w.get(&format!("{m}.fc2.weight"), Some(&[dim, hid, 1, 1]))?;
    let (mut b2, _) = w.get(&format!("{m}.fc2.bias"), Some(&[dim]))?;
    let (g, _) = w.get(&format!("{p}.layer_scale.gamma"), Some(&[dim, 1, 1]))?;
    for o in 0..dim {
        w2[o * hid..(o + 1) * hid].iter_mut().for_each(|v| *v *= g[o]);
        b2[o] *= g[o];
    }
    let fc2 = conv(&m, w2, b2, [dim, hid, 1, 1], 1, 1, Activation::None)?;
    Ok(Block { mixer, dw7, fc1, fc2 })
}

impl FastVit {
    pub(crate) fn load_t8(w: Weights, classes: usize) -> Result<FastVit> {
        let (base, blocks, exp) = (48usize, [2usize, 2, 4, 2], 3usize);
        let g = Activation::Gelu;
        let stem = [
            mobileone_conv(&w, "stem.0", (3, base, 3, 2, 1), g)?,
            mobileone_conv(&w, "stem.1", (base, base, 3, 2, base), g)?,
            mobileone_conv(&w, "stem.2", (base, base, 1, 1, 1), g)?,
        ];
        let mut stages = Vec::new();
        for (i, &nb) in blocks.iter().enumerate() {
            let dim = base << i;
            let s = format!("stages.{i}");
            let downsample = if i > 0 {
                let (inp, d) = (dim / 2, format!("{s}.downsample.proj"));
                // 7x7 and 3x3 grouped stride-2 branches (each conv + BN) as one 7x7 conv.
                let lk = format!("{d}.0.large_conv");
                let sk = format!("{d}.0.small_conv");
                let (mut wl, dl) = conv_bn(&w, &format!("{lk}.conv"), &format!("{lk}.bn"), dim)?;
                let (ws, ds) = conv_bn(&w, &format!("{sk}.conv"), &format!("{sk}.bn"), dim)?;
                if dl != [dim, 1, 7, 7] || ds != [dim, 1, 3, 3] {
                    return Err(Error::Load(format!("fastvit-t8 {d}.0: shapes {dl:?} {ds:?}")));
                }
                for o in 0..dim {
                    for y in 0..3 {
                        for x in 0..3 {
                            wl[o * 49 + (y + 2) * 7 + x + 2] += ws[o * 9 + y * 3 + x];
                        }
                    }
                }
                let (_, bl) = bn(&w, &format!("{lk}.bn"), dim)?;
                let (_, bs) = bn(&w, &format!("{sk}.bn"), dim)?;
                let b: Vec<f32> = bl.iter().zip(&bs).map(|(a, b)| a + b).collect();
                if has(&w, &format!("{d}.0.se.fc1.weight")) {
                    return Err(Error::Load(format!("fastvit-t8 {d}.0: SE is not supported")));
                }
                let big = conv(&d, wl, b, [dim, 1, 7, 7], 2, inp, Activation::None)?;
                let pw = mobileone_conv(&w, &format!("{d}.1"), (dim, dim, 1, 1, 1), g)?;
                Some((big, pw))
            } else {
                None
            };
            let pos = if has(&w, &format!("{s}.pos_emb.pos_enc.weight")) {
                let pe = format!("{s}.pos_emb.pos_enc");
                let (mut wp, _) = w.get(&format!("{pe}.weight"), Some(&[dim, 1, 7, 7]))?;
                let (bp, _) = w.get(&format!("{pe}.bias"), Some(&[dim]))?;
                for c in 0..dim {
                    wp[c * 49 + 24] += 1.0;
                }
                Some(conv(&pe, wp, bp, [dim, 1, 7, 7], 1, dim, Activation::None)?)
            } else {
                None
            };
            let blocks = (0..nb)
                .map(|b| repmixer_block(&w, &format!("{s}.blocks.{b}"), dim, exp))
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage { downsample, pos, blocks });
        }
        let top = base << 3;
        let final_conv =
            mobileone_conv(&w, "final_conv", (top, 2 * top, 3, 1, top), Activation::None)?;
        let final_se = Se::load(&w, "final_conv.se", 2 * top)?;
        let (head_w, _) = w.get("head.fc.weight", Some(&[classes, 2 * top]))?;
        let (head_b, _) = w.get("head.fc.bias", Some(&[classes]))?;
        Ok(FastVit { stem, stages, final_conv, final_se, head_w, head_b, classes })
    }

    fn run(&self, x: Map, stop: &dyn Fn() -> bool) -> std::result::Result<Vec<f32>, String> {
        let mut m = x;
        for c in &self.stem {
            m = apply(c, &m)?;
        }
        for s in &self.stages {
            if let Some((big, pw)) = &s.downsample {
                m = apply(big, &m)?;
                m = apply(pw, &m)?;
            }
            if let Some(p) = &s.pos {
                m = apply(p, &m)?;
            }
            for b in &s.blocks {
                if stop() {
                    return Err(super::stopped().to_string());
                }
                m = apply(&b.mixer, &m)?;
                let y = apply(&b.dw7, &m)?;
                let y = apply(&b.fc1, &y)?;
                b.fc2.forward_add(&y.data, y.n, y.h, y.w, &mut m.data)?;
            }
        }
        m = apply(&self.final_conv, &m)?;
        if let Some(se) = &self.final_se {
            se.apply(&mut m);
        }
        apply_activation(&mut m.data, Activation::Gelu);
        let (c, hw) = (m.c, m.h * m.w);
        let mut logits = Vec::with_capacity(m.n * self.classes);
        for img in m.data.chunks(c * hw) {
            let pooled: Vec<f32> =
                img.chunks(hw).map(|p| p.iter().sum::<f32>() / hw as f32).collect();
            for k in 0..self.classes {
                let row = &self.head_w[k * c..(k + 1) * c];
                logits.push(
                    row.iter().zip(&pooled).map(|(a, b)| a * b).sum::<f32>() + self.head_b[k],
                );
            }
        }
        Ok(logits)
    }
}

fn apply(c: &Conv2d, m: &Map) -> std::result::Result<Map, String> {
    let (h, w) = c.output_hw(m.h, m.w)?;
    let data = c.forward(&m.data, m.n, m.h, m.w)?;
    Ok(Map { data, n: m.n, c: c.out_channels(), h, w })
}

impl Network for FastVit {
    fn forward(&self, x: &Tensor, stop: &dyn Fn() -> bool) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let logits = self.run(Map { data, n, c, h, w }, stop).map_err(rt)?;
        Tensor::from_vec(logits, (n, self.classes), &Device::Cpu)
    }
}
