//! # xfer-losses — the objectives of transfer learning, as values you drop into your own loop
//!
//! Every loss takes tensors (and, for regularisers, lists of named parameters) — never a
//! model type — so it works from any training loop, as TLlib's modules do from PyTorch loops.
//! Each doc comment gives the formula and the paper; each loss has a finite-difference
//! gradient test. Bad input is a typed [`LossError`] naming the tensor, never a panic.
//!
//! | concern | values |
//! |---|---|
//! | conservative training (parameters) | [`L2Sp`], [`L2Penalty`], [`WeightFilter`], [`NamePattern`] |
//! | conservative training (outputs, features) | [`DistillationLoss`], [`kl_distillation`], [`logit_mse`], [`feature_closeness`] |
//! | domain-adversarial | [`DomainAdversarialLoss`], [`dann_lambda`], [`ConditionalDomainAdversarialLoss`] (CDAN, CDAN+E), [`MultiKernelMmd`], [`coral()`] |
//! | target-only adaptation | [`minimum_class_confusion`] (MCC), [`pseudo_label_loss`] (self-training, FixMatch mask) |
//! | zero-shot | [`compatibility`], [`ZeroShotHinge`], [`attribute_bce`], [`dap_class_scores`] |
//! | multitask | [`weighted_sum`], [`UncertaintyWeighting`], [`masked_mean`] |
//! | classification | [`CrossEntropyLoss`], [`cross_entropy`], [`prediction_entropy`], [`bce_with_logits`] |
//!
//! Softmaxes go through [`xfer_ops::log_softmax`] / [`xfer_ops::softmax`], whose gradients
//! reach every input (candle's fused `softmax_last_dim` has no backward).

pub mod cdan;
mod check;
pub mod classification;
pub mod coral;
pub mod distill;
pub mod domain_adversarial;
pub mod error;
pub mod l2_sp;
pub mod mcc;
pub mod mmd;
pub mod multitask;
pub mod name_pattern;
pub mod pseudo_label;
pub mod reduction;
pub mod zero_shot;

pub use cdan::{
    ConditionalDomainAdversarialLoss, ConditioningMap, RandomizedMultilinearMap, entropy_weights,
    multilinear_map,
};
pub use classification::{CrossEntropyLoss, bce_with_logits, cross_entropy, prediction_entropy};
pub use coral::coral;
pub use distill::{
    DistillationLoss, OutputCloseness, feature_closeness, kl_distillation, logit_mse,
};
pub use domain_adversarial::{
    Discriminator, DomainAdversarialLoss, DomainAdversarialOutput, dann_lambda,
};
pub use error::{LossError, Result};
pub use l2_sp::{AsTensor, Excluded, L2Penalty, L2Sp, Role, WeightFilter};
pub use mcc::{MCC_TEMPERATURE, minimum_class_confusion, minimum_class_confusion_weighted};
pub use mmd::{GaussianKernel, MultiKernelMmd};
pub use multitask::{UncertaintyWeighting, masked_mean, weighted_sum};
pub use name_pattern::NamePattern;
pub use pseudo_label::{PseudoLabelOutput, pseudo_label_loss};
pub use reduction::Reduction;
pub use zero_shot::{
    Compatibility, HingeVariant, ZeroShotHinge, attribute_bce, compatibility, dap_class_scores,
};
