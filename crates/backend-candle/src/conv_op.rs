//! The candle glue for the kernels crate's prepared convolution: a custom op on `[n, c, h, w]`
//! f32 tensors, so models keep candle tensors as their values.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use kernels::Conv2d;

/// A prepared convolution as a candle custom op on `[n, c, h, w]` f32 tensors.
#[derive(Debug, Clone)]
pub(crate) struct ConvOp(pub(crate) Arc<Conv2d>);

impl CustomOp1 for ConvOp {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused-conv2d: expected an f32 input")
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused-conv2d: input not contiguous".into()))?;
        let dims = layout.shape().dims();
        let &[n, c, h, w] = dims else {
            candle_core::bail!("fused-conv2d: expected a 4-d NCHW input, got {dims:?}")
        };
        if c != self.0.in_channels() {
            candle_core::bail!(
                "fused-conv2d: input has {c} channels, conv expects {}",
                self.0.in_channels()
            )
        }
        let out = self.0.forward(&data[start..end], n, h, w).map_err(candle_core::Error::Msg)?;
        let (oh, ow) = self.0.output_hw(h, w).map_err(candle_core::Error::Msg)?;
        Ok((CpuStorage::F32(out), Shape::from((n, self.0.out_channels(), oh, ow))))
    }
}
