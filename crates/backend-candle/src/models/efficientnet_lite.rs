//! EfficientNet-Lite0 (TF "SAME" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excite) on the
//! fused kernels: every BatchNorm is folded into its convolution at load time.

use std::sync::Arc;

use candle_core::Tensor;
use inference_api::{Error, Result};

use super::{Network, Weights};
use crate::conv_op::ConvOp;
use kernels::{Activation, Conv2d, Padding, fold_batch_norm, matmul};

const BN_EPS: f32 = 1e-3;
/// Stride of each of the 16 MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks).
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];

struct Block {
    expand: Option<ConvOp>,
    depthwise: ConvOp,
    project: ConvOp,
    residual: bool,
}

pub(crate) struct EfficientNetLite {
    stem: ConvOp,
    blocks: Vec<Block>,
    head: ConvOp,
    fc_t: Vec<f32>,
    fc_bias: Vec<f32>,
    classes: usize,
    features: usize,
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
            blocks.push(Block {
                expand,
                depthwise,
                project,
                residual: stride == 1 && in_ch == out_ch,
            });
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
        let mut fc_t = vec![0f32; features * classes];
        for c in 0..classes {
            for k in 0..features {
                fc_t[k * classes + c] = fc[c * features + k];
            }
        }
        Ok(EfficientNetLite { stem, blocks, head, fc_t, fc_bias, classes, features })
    }
}

impl EfficientNetLite {
    fn blocks_out(&self) -> usize {
        self.blocks.last().map_or(self.stem.0.out_channels(), |b| b.project.0.out_channels())
    }
}

impl Network for EfficientNetLite {
    fn forward(&self, x: &Tensor, stop: &dyn Fn() -> bool) -> candle_core::Result<Tensor> {
        // Plain NCHW buffers between kernels; the residual is accumulated by the project GEMM.
        let (n, _, h0, w0) = x.dims4()?;
        let msg = candle_core::Error::Msg;
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let step = |c: &ConvOp, d: &[f32], h: usize, w: usize| {
            let (oh, ow) = c.0.output_hw(h, w).map_err(msg)?;
            Ok::<_, candle_core::Error>((c.0.forward(d, n, h, w).map_err(msg)?, oh, ow))
        };
        let (mut cur, mut h, mut w) = step(&self.stem, &input, h0, w0)?;
        for b in &self.blocks {
            if stop() {
                return Err(super::stopped());
            }
            let (mut y, mut yh, mut yw) = (std::borrow::Cow::Borrowed(&cur[..]), h, w);
            if let Some(e) = &b.expand {
                let (v, a, c) = step(e, &y, yh, yw)?;
                (y, yh, yw) = (std::borrow::Cow::Owned(v), a, c);
            }
            let (d, dh, dw) = step(&b.depthwise, &y, yh, yw)?;
            drop(y);
            if b.residual {
                b.project.0.forward_add(&d, n, dh, dw, &mut cur).map_err(msg)?;
            } else {
                let (v, _, _) = step(&b.project, &d, dh, dw)?;
                cur = v;
            }
            (h, w) = (dh, dw);
        }
        let x = Tensor::from_vec(cur, (n, self.blocks_out(), h, w), &candle_core::Device::Cpu)?;
        let x = x.apply_op1_no_bwd(&self.head)?;
        let n = x.dim(0)?;
        let pooled = x.mean((2, 3))?.to_vec2::<f32>()?.concat();
        let mut logits = vec![0f32; n * self.classes];
        if !matmul(n, self.classes, self.features, &pooled, &self.fc_t, &mut logits) {
            candle_core::bail!("efficientnet-lite0: classifier size mismatch");
        }
        for row in logits.chunks_mut(self.classes) {
            row.iter_mut().zip(&self.fc_bias).for_each(|(v, b)| *v += b);
        }
        Tensor::from_vec(logits, (n, self.classes), x.device())
    }
}
