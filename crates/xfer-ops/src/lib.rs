//! Tensor primitives that candle 0.11 lacks or gets wrong, each with a backward pass that
//! is checked against finite differences.
//!
//! - [`grad_reverse()`]: the gradient reversal layer of DANN (Ganin & Lempitsky, 2015).
//! - [`conv2d`], [`depthwise_conv2d`] (its own kernel, asymmetric and TF "SAME" padding:
//!   [`Padding2d::same`]), [`max_pool2d`], [`max_pool2d_padded`], [`avg_pool2d`],
//!   [`adaptive_avg_pool2d`]: convolution and pooling.
//! - [`linear()`], [`relu()`], [`relu6()`], [`gelu_erf`], [`add_relu`], [`sq_norm`], [`sq_dist`]: a fully connected layer,
//!   activations and penalty terms as single ops whose backward makes only the gradients
//!   autograd uses (the composed candle versions cost several passes and temporaries each).
//! - [`softmax`], [`log_softmax`], [`layer_norm`], [`batch_norm_train`]: normalisations whose
//!   gradients reach every input (candle's fused kernels drop them); [`batch_norm_eval`]: batch
//!   norm with running statistics as one op, its `γ` gradient free of cancellation.
//!
//! On the CPU (f32, f64; f16 and bf16 computed in f32) conv2d, the pools and the
//! normalisations run our own kernels with explicit backward passes (rayon, and the `gemm`
//! crate for the convolution); on other devices they fall back to the `*_portable` versions
//! ([`conv2d_portable`], [`pool::max_pool2d_portable`], [`norm::softmax_portable`], ...),
//! composed from candle ops whose backward is right. The CPU backward kernels record no graph,
//! so those ops are not twice differentiable on the CPU. `docs/ops.md` has every formula and
//! what each test checks.
//! - [`ParamSnapshot`]: frozen deep copies of named tensors (L2-SP anchors, teachers).
//! - [`SeededRng`]: our own seeded generator (candle's CPU RNG cannot be seeded).
//! - [`grad`]: global norm, clip-by-norm and non-finite checks over named gradients.
//! - [`device`]: device selection.
//! - [`profile`]: time per op of xfer's CPU kernels.
//! - [`runtime`]: the process settings a fast CPU step needs (the C allocator's thresholds,
//!   candle's element-wise pool), applied when the first model is built.

pub mod activation;
pub mod bn_eval;
pub mod conv;
mod conv_cpu;
mod cpu;
pub mod depthwise;
mod depthwise_cpu;
pub mod device;
pub mod error;
pub mod gelu;
pub mod grad;
pub mod grad_reverse;
pub mod linear;
pub mod norm;
mod norm_cpu;
pub mod penalty;
pub mod pool;
mod pool_cpu;
pub mod profile;
pub mod rng;
pub mod runtime;
pub mod snapshot;

pub use activation::{Activation, add_relu, relu, relu6, relu6_portable};
pub use bn_eval::{batch_norm_eval, batch_norm_eval_portable};
pub use conv::{Conv2dConfig, conv2d, conv2d_portable};
pub use cpu::Elem;
pub use depthwise::{
    DepthwiseConfig, Padding2d, depthwise_conv2d, depthwise_conv2d_portable, same_padding,
};
pub use device::{DevicePreference, select_device};
pub use error::{OpsError, Result};
pub use gelu::gelu_erf;
pub use grad::{clip_grad_norm, first_non_finite, global_grad_norm};
pub use grad_reverse::grad_reverse;
pub use linear::{linear, linear_portable};
pub use norm::{batch_norm_act_train, batch_norm_train, layer_norm, log_softmax, softmax};
pub use penalty::{sq_dist, sq_norm};
pub use pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_pool2d_padded};
pub use rng::{SeededRng, StepRngScope, derive_seed, scoped_rng};
pub use runtime::{ProcessSettings, keep_process_settings};
pub use snapshot::ParamSnapshot;
