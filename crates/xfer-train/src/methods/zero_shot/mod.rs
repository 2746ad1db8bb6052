//! Zero-shot learning (LECTURE.md §4): classes never seen in training are recognised from
//! their descriptions — attribute vectors (or word / sentence vectors) `a_y`, one per class,
//! distinct for every class. Three methods, each trained on the seen classes only with the
//! one training loop ([`Trainer`](crate::Trainer)):
//!
//! - **Attribute embedding** ([`ZslMethod::Hinge`], the lecture's main method): learn `f(x)`
//!   (a network on the input) and `g(y)` (a projection of `a_y`) into one space with the
//!   lecture's hinge ([`ZeroShotHinge`](xfer_losses::ZeroShotHinge)):
//!   `f*, g* = argmin Σₙ max(0, k − f(xⁿ)·g(yⁿ) + max_{m≠n} f(xⁿ)·g(yᵐ))` over the seen
//!   classes; inference `argmax_y f(x)·g(y)` over the classes allowed at test time.
//! - **Attribute prediction** (DAP; Lampert, Nickisch & Harmeling, CVPR 2009;
//!   [`ZslMethod::Dap`]): one binary classifier per attribute, trained with
//!   [`attribute_bce`](xfer_losses::attribute_bce); a test input gets the class whose attribute vector best fits the
//!   predicted attribute probabilities ([`dap_class_scores`](xfer_losses::dap_class_scores)).
//! - **ConSE** (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic
//!   Embeddings", ICLR 2014; [`ZslMethod::Conse`]): an ordinary classifier over the seen
//!   classes; `x` is embedded as `s(x) = Σ_{t ∈ top-T} p(t|x) a_t / Σ_{t ∈ top-T} p(t|x)` and
//!   assigned to the candidate class with the most similar (cosine) description.
//!
//! On the run contract ([`crate::run`]): the network `f` is an [`xfer_models::Classifier`]
//! (any [`BackboneSpec`]) whose head is the embedding, the attribute predictor or the
//! seen-class classifier; the stage is a [`Stage`] (AdamW by default); [`run`]`(&ZeroShotConfig,
//! &ZeroShotData, &RunCtx)`, the method inside the config, returns a [`ZslOutcome`] holding
//! the trained model and its numbers (calibrated when [`ZeroShotConfig::calibration_folds`]
//! asks).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use xfer_data::embedded;
//! use xfer_models::BackboneSpec;
//! use xfer_train::RunCtx;
//! use xfer_train::methods::zero_shot::{self, ZeroShotConfig, ZeroShotData, ZslMethod};
//!
//! let shapes = embedded::shapes(80, 0)?;
//! let attributes = shapes.attributes().ok_or("no attributes")?.clone();
//! let data = ZeroShotData::split(&shapes, &attributes, &[1, 6, 10, 13, 20, 23], 0.2, 0)?;
//! let cfg = ZeroShotConfig::new(BackboneSpec::cnn()).with_steps(500);
//! let cfg = cfg.with_method(ZslMethod::Hinge);
//! let out = zero_shot::run(&cfg, &data, &RunCtx::cpu().with_seed(0))?;
//! println!("unseen {:.3}, H {:.3}", out.result.unseen_acc, out.result.h);
//! let f = &out.model.net; // the trained Classifier
//! # let _ = f;
//! # Ok(())
//! # }
//! ```
//!
//! Evaluation ([`ZeroShotModel::evaluate`]) follows the standard protocol (Xian et al.,
//! "Zero-Shot Learning — A Comprehensive Evaluation of the Good, the Bad and the Ugly",
//! TPAMI 2018): mean per-class top-1 accuracy on unseen classes with only unseen candidates
//! (ZSL), and in generalised ZSL (all classes are candidates) the per-class accuracies `u` on
//! unseen and `s` on held-out seen samples with their harmonic mean `H = 2us/(u + s)`.

pub mod calibration;
mod data;
pub mod inputs;
mod model;
pub mod package;
mod train;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use xfer_models::BackboneSpec;

pub use data::ZeroShotData;
pub use model::{ZeroShotModel, ZslResult};
pub use train::{ZslOutcome, run, train};

use crate::run::Stage;
use crate::{Result, TrainError};

pub(crate) const TAG_INIT: u64 = 0x5A53_494E; // "ZSIN"
pub(crate) const TAG_DATA: u64 = 0x5A53_4441; // "ZSDA"
pub(crate) const TAG_SPLIT: u64 = 0x5A53_5350; // "ZSSP"

/// The three zero-shot methods (`--method hinge,dap,conse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZslMethod {
    /// Attribute embedding `f(x)·g(y)` trained with the lecture's hinge.
    #[default]
    Hinge,
    /// Direct attribute prediction.
    Dap,
    /// Convex combination of semantic embeddings.
    Conse,
}

impl ZslMethod {
    /// The run name: `hinge`, `dap`, `conse`.
    pub fn name(&self) -> &'static str {
        match self {
            ZslMethod::Hinge => "hinge",
            ZslMethod::Dap => "dap",
            ZslMethod::Conse => "conse",
        }
    }

    /// All three, in the order the examples run them.
    pub fn all() -> [ZslMethod; 3] {
        [ZslMethod::Hinge, ZslMethod::Dap, ZslMethod::Conse]
    }
}

impl std::fmt::Display for ZslMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ZslMethod {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        Self::all()
            .into_iter()
            .find(|m| m.name() == t)
            .ok_or_else(|| TrainError::invalid("method", t, "hinge, dap or conse"))
    }
}

/// How class descriptions are prepared before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeScaling {
    /// Each column scaled to `[0, 1]` over the classes (`(a − min)/(max − min)`, constant
    /// columns become 0): binary attributes stay as they are, counts become fractions. DAP
    /// needs values in `[0, 1]`.
    #[default]
    MinMax,
    /// Used as given (sentence or word vectors).
    None,
}

/// Hyper-parameters of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotConfig {
    /// The method [`run`] trains (the hinge by default).
    #[serde(default)]
    pub method: ZslMethod,
    /// Seeded pseudo-splits of the seen classes on which [`run`] chooses the calibrated
    /// stacking `γ` ([`calibration::calibrate`]); 0: no calibration.
    #[serde(default)]
    pub calibration_folds: usize,
    /// The backbone of the input network, a [`Classifier`](xfer_models::Classifier) whose head is `f`'s embedding
    /// (hinge), the attribute predictor (DAP) or the seen-class classifier (ConSE).
    pub backbone: BackboneSpec,
    /// Width of the shared embedding space of `f` and `g` (hinge).
    pub embed_dim: usize,
    /// Hidden widths of `g` (empty: a linear projection of the description).
    pub g_hidden: Vec<usize>,
    /// Margin `k` of the hinge.
    pub margin: f64,
    /// L2-normalise `f(x)` and `g(y)` (the score becomes a cosine; use a margin below 2).
    pub normalize: bool,
    /// `T` of ConSE: how many of the most probable seen classes are combined.
    pub top_t: usize,
    /// Preparation of the class descriptions.
    pub scaling: AttributeScaling,
    /// The training stage: AdamW at a constant rate by default, a number of steps, an
    /// evaluation (logged, never used for a choice) every `eval_every` steps.
    pub stage: Stage,
}

impl ZeroShotConfig {
    /// Defaults around `backbone`: a 64-wide linear `g`, margin 1, unnormalised scores, `T = 3`,
    /// 1,500 steps of 64 examples, AdamW with rate 1e-3 and decay 1e-4.
    pub fn new(backbone: BackboneSpec) -> Self {
        Self {
            method: ZslMethod::Hinge,
            calibration_folds: 0,
            backbone,
            embed_dim: 64,
            g_hidden: Vec::new(),
            margin: 1.0,
            normalize: false,
            top_t: 3,
            scaling: AttributeScaling::MinMax,
            stage: Stage::adamw(1e-3)
                .with_steps(1500)
                .with_batch_size(64)
                .with_weight_decay(1e-4)
                .with_eval_every(100),
        }
    }

    /// The same configuration for `method`.
    pub fn with_method(mut self, method: ZslMethod) -> Self {
        self.method = method;
        self
    }

    /// The same configuration for `steps` optimiser steps, evaluating at most every
    /// `eval_every` of them.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.stage.length = crate::run::Length::Steps(steps);
        self.stage.eval_every = Some(self.stage.eval_every.unwrap_or(100).min(steps.max(1)));
        self
    }

    fn validate(&self) -> Result<()> {
        self.stage.validate()?;
        if self.embed_dim == 0 {
            return Err(TrainError::invalid("embed_dim", 0, "> 0"));
        }
        if self.top_t == 0 {
            return Err(TrainError::invalid("top_t", 0, "> 0"));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(TrainError::invalid(
                "margin",
                self.margin,
                "finite and >= 0",
            ));
        }
        Ok(())
    }
}
