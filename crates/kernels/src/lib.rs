//! CPU kernels shared by the native models and the ML Program executor: convolution
//! (depthwise direct, pointwise and general as GEMM) with bias and activation fused into the
//! epilogue, the activations themselves, 2-D max pooling, and the transformer ops (strided batched matmul on a
//! packed GEMM, softmax, layer norm).
//!
//! This crate holds all of the CPU side's `unsafe` and SIMD code; the engine crate on top of it
//! (`backend-candle`) forbids `unsafe`. Kernels work on contiguous NCHW f32 slices. Parallel work
//! runs on the kernels' own pool, over the thread count [`with_threads`] set for the calling
//! thread or else the current rayon pool's, so the engine decides it. Scratch buffers are kept
//! per thread: with outputs the caller keeps ([`Conv2d::forward_into`]), a steady-state run
//! allocates nothing ([`CountingAllocator`] is how the tests check). Loops are
//! compiled a second time for AVX2+FMA and AVX-512 and chosen at run time (x86-64); on aarch64
//! the baseline build already targets NEON. Each kernel is property-tested against a naive f64
//! reference (`tests/kernels.rs`).
//!
//! ```
//! use kernels::{Activation, Conv2d, Padding};
//! // A 3x3 depthwise convolution over 2 channels with ReLU fused into the epilogue.
//! let conv = Conv2d::new(vec![1.0; 2 * 9], [2, 1, 3, 3], None, (1, 1), (1, 1), 2,
//!                        Padding::Same, Activation::Relu).unwrap();
//! let out = conv.forward(&vec![1.0; 2 * 4 * 4], 1, 4, 4).unwrap();
//! assert_eq!(out.len(), 2 * 4 * 4);
//! assert_eq!(out[5], 9.0); // an interior pixel sees all nine taps
//! ```

mod activation;
#[cfg(target_arch = "x86_64")]
mod activation_simd;
mod alloc_count;
mod conv;
mod depthwise;
mod dw_direct;
mod dw_lanes;
mod elementwise;
mod fp16;
mod gemm;
mod gemv;
mod implicit;
mod matmul;
mod maxpool;
mod packed;
mod packed_portable;
pub mod peak;
mod pointwise;
mod pool;
pub mod profile;
mod rows;
mod simd;
mod transpose;

pub use activation::{Activation, apply_activation, erf, exp, hard_sigmoid};
pub use alloc_count::CountingAllocator;
pub use conv::{Conv2d, InvertedResidual, Padding, fold_batch_norm};
pub use dw_direct::DwIsa;
pub use elementwise::{
    BinaryOp, activation_into, activation_to_vec, binary, binary_into, binary_with, mean_rows,
    mean_rows_into,
};
pub use fp16::{round_f16, round_f16_scalar, round_f16_with};
pub use gemm::matmul;
pub use matmul::{GemmIsa, PackedB, Strided, matmul_packed, matmul_strided, matmul_strided_with};
pub use maxpool::{PoolGeometry, max_pool2d};
pub use pool::with_threads;
pub use rows::{
    Isa, layer_norm, layer_norm_with, softmax, softmax_rows_to_vec, softmax_rows_to_vec_with,
    softmax_with,
};
pub use transpose::{permute_into, transpose_batched};
