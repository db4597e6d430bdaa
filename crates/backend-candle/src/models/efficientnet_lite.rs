//! EfficientNet-Lite0 (TF "SAME" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excite) on the
//! fused kernels: every BatchNorm is folded into its convolution at load time.

use std::sync::Arc;

use inference_api::{Error, Result};

use super::{Classifier, Network, Weights, Workspace, global_mean, sized};
use crate::conv_op::ConvOp;
use kernels::{Activation, Conv2d, InvertedResidual, Padding, fold_batch_norm};

const BN_EPS: f32 = 1e-3;
/// Stride of each of the 16 MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks).
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];

struct Block {
    expand: Option<ConvOp>,
    depthwise: ConvOp,
    project: ConvOp,
    residual: bool,
    /// The three convolutions as one banded kernel (blocks with an expansion).
    fused: Option<InvertedResidual>,
}

pub(crate) struct EfficientNetLite {
    stem: ConvOp,
    blocks: Vec<Block>,
    head: ConvOp,
    fc: Classifier,
}

fn conv_bn(
    w: &Weights,
    conv: &str,
    bn: &str,
    stride: usize,
    depthwise: bool,
    act: Activation,
) -> Result<ConvOp> {
    let (mut weight, dims) = w.get(&format!("{conv}.weight"), None)?;
    let &[out, cig, kh, kw] = dims.as_slice() else {
        return Err(Error::Load(format!("weight `{conv}.weight` is not 4-d: {dims:?}")));
    };
    let mut bias = vec![0.0; out];
    let p = |n: &str| w.get(&format!("{bn}.{n}"), Some(&[out])).map(|(v, _)| v);
    fold_batch_norm(
        &mut weight,
        &mut bias,
        &p("weight")?,
        &p("bias")?,
        &p("running_mean")?,
        &p("running_var")?,
        BN_EPS,
    );
    let groups = if depthwise { out } else { 1 };
    let conv = Conv2d::new(
        weight,
        [out, cig, kh, kw],
        Some(bias),
        (stride, stride),
        (1, 1),
        groups,
        Padding::Same,
        act,
    )
    .map_err(|e| Error::Load(format!("{conv}: {e}")))?;
    Ok(ConvOp(Arc::new(conv)))
}

impl EfficientNetLite {
    pub(crate) fn load(w: &Weights) -> Result<EfficientNetLite> {
        let stem = conv_bn(w, "_conv_stem", "_bn0", 2, false, Activation::Relu6)?;
        let mut blocks = Vec::with_capacity(STRIDES.len());
        let mut in_ch = stem.0.out_channels();
        for (i, &stride) in STRIDES.iter().enumerate() {
            let b = format!("_blocks.{i}");
            let has_expand = w.get(&format!("{b}._expand_conv.weight"), None).is_ok();
            let expand = if has_expand {
                Some(conv_bn(
                    w,
                    &format!("{b}._expand_conv"),
                    &format!("{b}._bn0"),
                    1,
                    false,
                    Activation::Relu6,
                )?)
            } else {
                None
            };
            let depthwise = conv_bn(
                w,
                &format!("{b}._depthwise_conv"),
                &format!("{b}._bn1"),
                stride,
                true,
                Activation::Relu6,
            )?;
            let project = conv_bn(
                w,
                &format!("{b}._project_conv"),
                &format!("{b}._bn2"),
                1,
                false,
                Activation::None,
            )?;
            let out_ch = project.0.out_channels();
            let residual = stride == 1 && in_ch == out_ch;
            let fused = expand.as_ref().and_then(|e| {
                let (e, d, p) = (e.0.clone(), depthwise.0.clone(), project.0.clone());
                InvertedResidual::new(e, d, Some(p), residual)
            });
            blocks.push(Block { expand, depthwise, project, residual, fused });
            in_ch = out_ch;
        }
        let head = conv_bn(w, "_conv_head", "_bn1", 1, false, Activation::Relu6)?;
        let features = head.0.out_channels();
        let (fc, dims) = w.get("_fc.weight", None)?;
        let &[classes, f] = dims.as_slice() else {
            return Err(Error::Load(format!("_fc.weight is not 2-d: {dims:?}")));
        };
        if f != features {
            return Err(Error::Load(format!(
                "_fc.weight takes {f} features, head gives {features}"
            )));
        }
        let (fc_bias, _) = w.get("_fc.bias", Some(&[classes]))?;
        let fc = Classifier::new(&fc, fc_bias, features)?;
        Ok(EfficientNetLite { stem, blocks, head, fc })
    }
}

impl Network for EfficientNetLite {
    fn classes(&self) -> usize {
        self.fc.classes()
    }

    fn forward_into(
        &self,
        x: &[f32],
        [n, _, h0, w0]: [usize; 4],
        out: &mut [f32],
        ws: &mut Workspace,
        stop: &dyn Fn() -> bool,
    ) -> std::result::Result<(), String> {
        // Plain NCHW buffers between kernels: `cur` holds the block's input (and its residual,
        // which the project GEMM accumulates onto), `e` the expansion, `d` the depthwise
        // output; a block without a residual swaps its output into `cur`.
        let [cur, e, d, spare] = &mut ws.bufs;
        let size = |c: &ConvOp, h: usize, w: usize| {
            let (oh, ow) = c.0.output_hw(h, w)?;
            Ok::<_, String>((n * c.0.out_channels() * oh * ow, oh, ow))
        };
        let (len, mut h, mut w) = size(&self.stem, h0, w0)?;
        self.stem.0.forward_into(x, n, h0, w0, sized(cur, len))?;
        let mut cur_len = len;
        for b in &self.blocks {
            if stop() {
                return Err(super::stopped().to_string());
            }
            if let Some(f) = b.fused.as_ref().filter(|f| super::fusion_enabled() && f.pays(h, w)) {
                let (c, oh, ow) = f.output_shape(h, w)?;
                f.forward_into(&cur[..cur_len], n, h, w, sized(spare, n * c * oh * ow))?;
                std::mem::swap(cur, spare);
                (cur_len, h, w) = (n * c * oh * ow, oh, ow);
                continue;
            }
            let input: &[f32] = match &b.expand {
                Some(ex) => {
                    let (len, _, _) = size(ex, h, w)?;
                    ex.0.forward_into(&cur[..cur_len], n, h, w, sized(e, len))?;
                    &e[..len]
                }
                None => &cur[..cur_len],
            };
            let (dlen, dh, dw) = size(&b.depthwise, h, w)?;
            b.depthwise.0.forward_into(input, n, h, w, sized(d, dlen))?;
            let (plen, _, _) = size(&b.project, dh, dw)?;
            if b.residual {
                b.project.0.forward_add(&d[..dlen], n, dh, dw, &mut cur[..cur_len])?;
            } else {
                b.project.0.forward_into(&d[..dlen], n, dh, dw, sized(spare, plen))?;
                std::mem::swap(cur, spare);
                cur_len = plen;
            }
            (h, w) = (dh, dw);
        }
        let (hlen, hh, hw) = size(&self.head, h, w)?;
        self.head.0.forward_into(&cur[..cur_len], n, h, w, sized(e, hlen))?;
        let pooled = sized(d, n * self.fc.features());
        global_mean(&e[..hlen], hh * hw, pooled)?;
        self.fc.forward(n, pooled, out)
    }
}
