//! FastViT-T8 on the shared kernels, reparameterized at load (timm's inference form): every
//! MobileOne block (kxk + 1x1 scale + identity branches, each with BatchNorm) becomes one conv,
//! each RepMixer (`x + gamma * (mixer(x) - norm(x))`) one depthwise conv, the patch embedding's
//! 7x7 and 3x3 branches one 7x7 conv, and the ConvMlp's layer scale folds into its last 1x1
//! conv, whose GEMM accumulates straight onto the residual.

use inference_api::{Error, Result};

use super::{Classifier, Network, Weights, Workspace, global_mean, sized};
use kernels::{Activation, Conv2d, Padding, apply_activation};

const BN_EPS: f32 = 1e-5;

fn kerr(name: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Load(format!("fastvit-t8 {name}: {e}"))
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

    /// Gates each of the `c` planes (`hw` values) of every image in `x` by its squeeze-excite
    /// weight; `scratch` holds the pooled means and the hidden layer.
    fn apply(
        &self,
        x: &mut [f32],
        c: usize,
        hw: usize,
        scratch: &mut Vec<f32>,
    ) -> std::result::Result<(), String> {
        let buf = sized(scratch, c + self.rd);
        let (mean, hid) = buf.split_at_mut(c);
        for img in x.chunks_mut(c * hw) {
            global_mean(img, hw, mean)?;
            for (r, hv) in hid.iter_mut().enumerate() {
                let s = dot(&self.fc1[r * c..(r + 1) * c], mean);
                *hv = (s + self.b1[r]).max(0.0);
            }
            for (ch, plane) in img.chunks_mut(hw).enumerate() {
                let s = dot(&self.fc2[ch * self.rd..(ch + 1) * self.rd], hid) + self.b2[ch];
                let gate = 1.0 / (1.0 + kernels::exp(-s));
                plane.iter_mut().for_each(|v| *v *= gate);
            }
        }
        Ok(())
    }
}

/// `a . b` with lane-wise partial sums.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
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
    head: Classifier,
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
        let head = Classifier::new(&head_w, head_b, 2 * top)?;
        Ok(FastVit { stem, stages, final_conv, final_se, head })
    }
}

/// Runs `c` from `x` (`n x c.in x h x w`) into `out`, grown as needed; returns the output's
/// length, height and width.
fn step(
    c: &Conv2d,
    x: &[f32],
    [n, h, w]: [usize; 3],
    out: &mut Vec<f32>,
) -> std::result::Result<(usize, usize, usize), String> {
    let (oh, ow) = c.output_hw(h, w)?;
    let len = n * c.out_channels() * oh * ow;
    c.forward_into(x, n, h, w, sized(out, len))?;
    Ok((len, oh, ow))
}

/// [`step`] from `a` (holding `len` values of `h x w`) into `b`, then swapped so the output is
/// in `a`.
fn swap_step(
    c: &Conv2d,
    n: usize,
    (len, h, w): (usize, usize, usize),
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) -> std::result::Result<(usize, usize, usize), String> {
    let out = step(c, &a[..len], [n, h, w], b)?;
    std::mem::swap(a, b);
    Ok(out)
}

impl Network for FastVit {
    fn classes(&self) -> usize {
        self.head.classes()
    }

    fn forward_into(
        &self,
        x: &[f32],
        [n, _, h0, w0]: [usize; 4],
        out: &mut [f32],
        ws: &mut Workspace,
        stop: &dyn Fn() -> bool,
    ) -> std::result::Result<(), String> {
        // `a` holds the running feature map (`len` values, `h x w`); every other conv writes
        // `b` and is swapped in; a block's MLP runs `a -> b -> c` and accumulates onto `a`.
        let [a, b, c, scratch] = &mut ws.bufs;
        let mut at = step(&self.stem[0], x, [n, h0, w0], a)?;
        for conv in &self.stem[1..] {
            at = swap_step(conv, n, at, a, b)?;
        }
        for s in &self.stages {
            if let Some((big, pw)) = &s.downsample {
                at = swap_step(big, n, at, a, b)?;
                at = swap_step(pw, n, at, a, b)?;
            }
            if let Some(p) = &s.pos {
                at = swap_step(p, n, at, a, b)?;
            }
            for blk in &s.blocks {
                if stop() {
                    return Err(super::stopped().to_string());
                }
                at = swap_step(&blk.mixer, n, at, a, b)?;
                let (len, h, w) = at;
                let (l7, _, _) = step(&blk.dw7, &a[..len], [n, h, w], b)?;
                let (l1, _, _) = step(&blk.fc1, &b[..l7], [n, h, w], c)?;
                blk.fc2.forward_add(&c[..l1], n, h, w, &mut a[..len])?;
            }
        }
        let (len, h, w) = swap_step(&self.final_conv, n, at, a, b)?;
        let ch = self.final_conv.out_channels();
        let feat = &mut a[..len];
        if let Some(se) = &self.final_se {
            se.apply(feat, ch, h * w, scratch)?;
        }
        apply_activation(feat, Activation::Gelu);
        let pooled = sized(b, n * ch);
        global_mean(feat, h * w, pooled)?;
        self.head.forward(n, pooled, out)
    }
}
