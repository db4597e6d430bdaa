//! CPU kernels shared by the native models and the ML Program executor: convolution
//! (depthwise direct, pointwise and general as GEMM) with bias and activation fused into the
//! epilogue, and the activations themselves.
//!
//! Kernels work on contiguous NCHW f32 slices; [`ConvOp`] wraps a prepared convolution as a
//! candle custom op so models keep candle tensors as their values. Parallel work runs on the
//! current rayon pool, so the engine's pool decides the thread count.

mod activation;
mod conv;
mod depthwise;
mod gemm;

pub use activation::{Activation, apply_activation, erf};
pub use conv::{Conv2d, ConvOp, Padding, fold_batch_norm};
pub use gemm::matmul;
