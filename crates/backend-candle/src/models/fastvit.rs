//! FastViT-T8 through `candle_transformers::models::fastvit` (training-form weights, as timm
//! stores them).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Func, Module, VarBuilder};
use inference_api::{Error, Result};

use super::{Network, Weights};

pub(crate) struct FastVit {
    net: Func<'static>,
}

impl FastVit {
    pub(crate) fn load_t8(w: Weights, classes: usize) -> Result<FastVit> {
        let vb = VarBuilder::from_tensors(w.into_map(), DType::F32, &Device::Cpu);
        let cfg = candle_transformers::models::fastvit::Config::t8();
        let net =
            candle_transformers::models::fastvit::fastvit(&cfg, classes, vb).map_err(|e| {
                Error::Load(format!("fastvit-t8 weights do not fit the architecture: {e}"))
            })?;
        Ok(FastVit { net })
    }
}

impl Network for FastVit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.net.forward(x)
    }
}
