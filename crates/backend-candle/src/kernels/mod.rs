//! CPU kernels shared by the native models and the ML Program executor: convolution
//! (depthwise direct, pointwise and general as GEMM) with bias and activation fused into the
//! epilogue, and the activations themselves.
//!
//! Kernels work on contiguous NCHW f32 slices; [`ConvOp`] wraps a prepared convolution as a
//! candle custom op so models keep candle tensors as their values. Parallel work runs on the
//! current rayon pool, so the engine's pool decides the thread count. Loops are compiled a
//! second time for AVX2+FMA and chosen at run time (x86-64); on aarch64 the baseline build
//! already targets NEON.

mod activation;
mod conv;
mod depthwise;
mod gemm;
mod pointwise;
pub mod profile;
mod simd;

pub use activation::{Activation, apply_activation, erf};
pub use conv::{Conv2d, ConvOp, Padding, fold_batch_norm};
pub use gemm::matmul;
