//! Unsupervised domain adaptation on the one training loop ([`Trainer`](crate::Trainer)):
//! DANN and its source-only baseline, CDAN / CDAN+E, MCC (alone or on top of DANN / CDAN+E),
//! self-training with confident pseudo-labels (optionally FixMatch-style), AdaBN, DAN (MMD)
//! and Deep CORAL — each one objective, all sharing the network, the data order, the
//! schedules and the label-free model selection of [`crate::model_selection`].
//!
//! **DANN** (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016). Three parts (LECTURE.md
//! §3): the feature extractor `G_f(x; θ_f)`, the label predictor `G_y(·; θ_y)` and the domain
//! classifier `G_d(·; θ_d)` behind a gradient reversal layer `R_λ`. One step on a source
//! batch `(x_s, y_s)` and a target batch `x_t` (no labels) minimises
//!
//! ```text
//! L = L_y(G_y(G_f(x_s)), y_s) + L_d          L_d = ½[BCE(G_d(R_λ(G_f(x_s))), 1) + BCE(G_d(R_λ(G_f(x_t))), 0)]
//! ```
//!
//! so `θ_d` descends `L_d` while the reversal makes `θ_f ← θ_f − μ(∂L_y/∂θ_f − λ ∂L_d/∂θ_f)`.
//! The paper's schedules: `μ_p = μ0/(1 + α p)^β` ([`Schedule::Dann`], `μ0 = 0.01, α = 10,
//! β = 0.75`), momentum 0.9, and `λ_p = 2/(1 + exp(−γ p)) − 1` (γ = 10, [`dann_lambda`]).
//!
//! **Every method's loss** is `L_y` plus its terms, each ramped by the same `λ_p` except MCC
//! (the paper uses it at full weight from the start):
//!
//! | method | added terms |
//! |---|---|
//! | `source_only` | none (`G_d` still trains on detached features, so every run's domain accuracy is measured by an equally strong `G_d`) |
//! | `dann` | `λ_p · L_d` |
//! | `cdan`, `cdan_e` | `λ_p · L_CDAN` ([`xfer_losses::ConditionalDomainAdversarialLoss`], `G_d` on `f ⊗ g`; `_e`: entropy conditioning) |
//! | `mcc` | `w_mcc · MCC(z_t)` ([`xfer_losses::minimum_class_confusion`], T = 2.5) |
//! | `dann_mcc`, `cdan_e_mcc` | both |
//! | `self_train` | `λ_p · w_st · PL(z_t, z_t)`: confident pseudo-labels of the target batch ([`xfer_losses::pseudo_label_loss`], class-balanced) |
//! | `fixmatch` | `λ_p · w_st · PL(z_t^weak, z_t^strong)`: labels from a weakly augmented view train a strongly augmented one |
//! | `adabn` | source-only training, then the batch-norm statistics are re-estimated on the target before every target evaluation |
//! | `dan` | `λ_p · w_mmd · MK-MMD²(f_s, f_t)` ([`xfer_losses::MultiKernelMmd`]) |
//! | `coral` | `λ_p · w_coral · CORAL(f_s, f_t)` ([`xfer_losses::coral()`]) |
//!
//! **Target labels are never used** during training or for any choice made during training:
//! [`train`] takes the target as an [`xfer_data::UnlabeledDataset`]; its evaluations log source
//! validation accuracy and every label-free score ([`crate::model_selection::score_all`]),
//! and the kept weights are chosen by [`DannConfig::selection`]. The optional `oracle`
//! target test set of [`train`] is only *recorded* at each evaluation
//! (`oracle_target_acc`), so that reports can show the label-free choice beside the choice a
//! target-labelled oracle would have made; nothing reads it to decide anything.

mod augment;
mod model;
mod sweep;
mod train;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use xfer_losses::dann_lambda;
use xfer_models::{BackboneSpec, BottleneckSpec};

pub use model::{DannModel, DannResult};
pub use sweep::{SweepChoice, SweepParam, SweepResult, SweepRun, grid_points, sweep};
pub use train::{run, train};

use crate::model_selection::Scorer;

/// The evaluation metric under which the oracle's target accuracy is recorded.
pub const ORACLE_METRIC: &str = "oracle_target_acc";
use crate::schedule::Schedule;
use crate::{Result, TrainError};

/// Shape of the domain classifier `G_d` (the lecture: it must be strong, or the features only
/// look aligned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of hidden layers (0 = logistic regression on the features: weak).
    pub depth: usize,
    /// Batch norm after every hidden linear layer (as TLlib's discriminator).
    pub batch_norm: bool,
    /// Dropout after the hidden activations.
    pub dropout: f64,
}

impl Default for DiscriminatorConfig {
    /// Two hidden layers of 256 units with batch norm.
    fn default() -> Self {
        Self {
            hidden: 256,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
        }
    }
}

/// Hyper-parameters of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DannConfig {
    /// The network's backbone (`G_f`; `G_y` is the head of the
    /// [`xfer_models::Classifier`] built on it).
    pub backbone: BackboneSpec,
    /// What sits between `G_f` and a new linear head (TLlib's classifiers use
    /// [`BottleneckSpec::LinearBnRelu`]); AdaBN needs a batch-norm bottleneck.
    pub bottleneck: BottleneckSpec,
    /// Learning-rate multiplier of the backbone's parameter group
    /// ([`xfer_models::Classifier::param_groups`]); `None`: the classifier's default (0.1 for
    /// a pretrained backbone, as fine-tuning and TLlib, 1 otherwise).
    #[serde(default)]
    pub backbone_lr_mult: Option<f64>,
    /// The domain classifier `G_d`.
    pub discriminator: DiscriminatorConfig,
    /// Optimiser steps.
    pub steps: usize,
    /// Source and target examples per step (each).
    pub batch_size: usize,
    /// `μ0`, the initial learning rate of `μ_p = μ0/(1 + α p)^β` (paper: 0.01).
    pub lr: f64,
    /// `α` of the learning-rate schedule (paper: 10).
    pub lr_alpha: f64,
    /// `β` of the learning-rate schedule (paper: 0.75).
    pub lr_beta: f64,
    /// SGD momentum (paper: 0.9).
    pub momentum: f64,
    /// Weight decay (coupled, as `torch.optim.SGD`).
    pub weight_decay: f64,
    /// Learning-rate multiplier of the domain classifier's parameter group (1 in the paper;
    /// TLlib's discriminator runs at 10× its pretrained backbone's rate).
    pub disc_lr_mult: f64,
    /// `γ` of `λ_p = 2/(1 + exp(−γ p)) − 1` (paper: 10).
    pub gamma: f64,
    /// Multiplies `λ_p` (1 in the paper): the weight of the adversarial, MMD, CORAL and
    /// pseudo-label terms at the end of training.
    pub lambda_max: f64,
    /// Weight of the MCC term (1 in TLlib).
    pub mcc_weight: f64,
    /// MCC's temperature (2.5 in the paper).
    pub mcc_temperature: f64,
    /// Weight of the pseudo-label term (self-training, FixMatch).
    pub self_train_weight: f64,
    /// Confidence a pseudo-label needs (in `[0, 1]`; FixMatch: 0.95).
    pub threshold: f64,
    /// Class-balanced pseudo-label weights.
    pub class_balance: bool,
    /// Weight of the MMD term (DAN).
    pub mmd_weight: f64,
    /// Weight of the CORAL term.
    pub coral_weight: f64,
    /// `C·D` above which CDAN uses the randomised multilinear map (4096 in the paper).
    pub cdan_max_full_dim: usize,
    /// Width of CDAN's randomised map (1024 in the paper).
    pub cdan_random_dim: usize,
    /// Steps between evaluations (the trainer's "epoch").
    pub eval_every: usize,
    /// Which evaluation's weights the run keeps: the best by this label-free scorer, or the
    /// last weights when `None`.
    pub selection: Option<Scorer>,
    /// Train the domain classifier on detached features in the runs without an adversary
    /// (source-only, AdaBN, MCC, self-training, DAN, CORAL), so every run's domain accuracy
    /// is measured by an equally strong `G_d`; off, a source-only step is the plain source
    /// step (what the step-cost measurement compares against).
    pub probe_discriminator: bool,
    /// No progress bar.
    pub quiet: bool,
}

impl DannConfig {
    /// The paper's settings around `backbone`: 3,000 steps of 64 + 64 examples, `μ0 = 0.01`,
    /// `α = 10`, `β = 0.75`, momentum 0.9, `γ = 10`, the default discriminator; TLlib's
    /// weights for the other methods (MCC 1 at T = 2.5, pseudo-labels 1 at confidence 0.9,
    /// class-balanced, MMD 1, CORAL 1); no bottleneck; the last weights are kept.
    pub fn paper(backbone: BackboneSpec) -> Self {
        Self {
            backbone,
            bottleneck: BottleneckSpec::None,
            backbone_lr_mult: None,
            discriminator: DiscriminatorConfig::default(),
            steps: 3000,
            batch_size: 64,
            lr: 0.01,
            lr_alpha: 10.0,
            lr_beta: 0.75,
            momentum: 0.9,
            weight_decay: 0.0,
            disc_lr_mult: 1.0,
            gamma: 10.0,
            lambda_max: 1.0,
            mcc_weight: 1.0,
            mcc_temperature: xfer_losses::MCC_TEMPERATURE,
            self_train_weight: 1.0,
            threshold: 0.9,
            class_balance: true,
            mmd_weight: 1.0,
            coral_weight: 1.0,
            cdan_max_full_dim: 4096,
            cdan_random_dim: 1024,
            eval_every: 100,
            selection: None,
            probe_discriminator: true,
            quiet: true,
        }
    }

    /// The learning-rate schedule `μ_p = lr/(1 + α p)^β`.
    pub fn schedule(&self) -> Schedule {
        Schedule::Dann {
            mu0: self.lr,
            alpha: self.lr_alpha,
            beta: self.lr_beta,
        }
    }

    /// The ramped weight `lambda_max · (2/(1 + exp(−γ p)) − 1)` at progress `p`, or 0 for
    /// `method`s without a ramped term (source-only, AdaBN, MCC alone).
    pub fn lambda(&self, method: DannMethod, progress: f64) -> f64 {
        if method.has_ramped_term() {
            self.lambda_max * dann_lambda(progress, self.gamma)
        } else {
            0.0
        }
    }

    /// Checks every setting; a one-line error naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(format!("dann: {m}")));
        if self.steps == 0 || self.batch_size == 0 || self.eval_every == 0 {
            return bad(format!(
                "steps ({}), batch_size ({}) and eval_every ({}) must be > 0",
                self.steps, self.batch_size, self.eval_every
            ));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("lr_alpha", self.lr_alpha),
            ("lr_beta", self.lr_beta),
            ("gamma", self.gamma),
            ("lambda_max", self.lambda_max),
            ("disc_lr_mult", self.disc_lr_mult),
            ("mcc_weight", self.mcc_weight),
            ("self_train_weight", self.self_train_weight),
            ("mmd_weight", self.mmd_weight),
            ("coral_weight", self.coral_weight),
            ("weight_decay", self.weight_decay),
            ("momentum", self.momentum),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} = {v} must be finite and >= 0"));
            }
        }
        if let Some(m) = self.backbone_lr_mult
            && !(m.is_finite() && m >= 0.0)
        {
            return bad(format!("backbone_lr_mult = {m} must be finite and >= 0"));
        }
        if !(self.mcc_temperature.is_finite() && self.mcc_temperature > 0.0) {
            return bad(format!(
                "mcc_temperature = {} must be finite and > 0",
                self.mcc_temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!(
                "threshold = {} must lie in [0, 1] (a softmax confidence)",
                self.threshold
            ));
        }
        if self.cdan_random_dim == 0 {
            return bad("cdan_random_dim must be > 0".into());
        }
        Ok(())
    }
}

/// The domain-adaptation methods (see the module documentation for each one's loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DannMethod {
    /// The baseline: `λ ≡ 0`, the features see only the source labels.
    SourceOnly,
    /// Domain-adversarial training with the reversal weight `λ_p`.
    Dann,
    /// Conditional adversarial training on `f ⊗ g`.
    Cdan,
    /// CDAN with entropy conditioning.
    CdanE,
    /// Minimum class confusion on the target batch.
    Mcc,
    /// DANN + MCC.
    DannMcc,
    /// CDAN+E + MCC.
    CdanEMcc,
    /// Confident, class-balanced pseudo-labels of the target batch.
    SelfTrain,
    /// Pseudo-labels of a weakly augmented view train a strongly augmented one.
    Fixmatch,
    /// Source-only training with target batch-norm statistics.
    Adabn,
    /// Multi-kernel MMD between source and target features (DAN).
    Dan,
    /// Deep CORAL.
    Coral,
}

impl DannMethod {
    /// Every method.
    pub const ALL: [DannMethod; 12] = [
        DannMethod::SourceOnly,
        DannMethod::Dann,
        DannMethod::Cdan,
        DannMethod::CdanE,
        DannMethod::Mcc,
        DannMethod::DannMcc,
        DannMethod::CdanEMcc,
        DannMethod::SelfTrain,
        DannMethod::Fixmatch,
        DannMethod::Adabn,
        DannMethod::Dan,
        DannMethod::Coral,
    ];

    /// The run name used on the command line and in reports (`source_only`, `dann`,
    /// `cdan_e`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            DannMethod::SourceOnly => "source_only",
            DannMethod::Dann => "dann",
            DannMethod::Cdan => "cdan",
            DannMethod::CdanE => "cdan_e",
            DannMethod::Mcc => "mcc",
            DannMethod::DannMcc => "dann_mcc",
            DannMethod::CdanEMcc => "cdan_e_mcc",
            DannMethod::SelfTrain => "self_train",
            DannMethod::Fixmatch => "fixmatch",
            DannMethod::Adabn => "adabn",
            DannMethod::Dan => "dan",
            DannMethod::Coral => "coral",
        }
    }

    /// The adversary the method trains its features against.
    pub fn adversary(&self) -> Adversary {
        match self {
            DannMethod::Dann | DannMethod::DannMcc => Adversary::Dann,
            DannMethod::Cdan => Adversary::Cdan { entropy: false },
            DannMethod::CdanE | DannMethod::CdanEMcc => Adversary::Cdan { entropy: true },
            _ => Adversary::None,
        }
    }

    /// Whether the MCC term is added.
    pub fn uses_mcc(&self) -> bool {
        matches!(
            self,
            DannMethod::Mcc | DannMethod::DannMcc | DannMethod::CdanEMcc
        )
    }

    /// Whether a term is ramped by `λ_p`.
    fn has_ramped_term(&self) -> bool {
        !matches!(
            self,
            DannMethod::SourceOnly | DannMethod::Adabn | DannMethod::Mcc
        )
    }
}

impl std::fmt::Display for DannMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DannMethod {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        DannMethod::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = DannMethod::ALL.iter().map(|m| m.name()).collect();
                TrainError::Config(format!(
                    "unknown method `{s}`: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// What the features are trained against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversary {
    /// No adversary (the discriminator still trains on detached features, as a probe).
    None,
    /// DANN's `G_d` on the features.
    Dann,
    /// CDAN's `G_d` on the multilinear map of features and predictions.
    Cdan {
        /// Entropy conditioning (CDAN+E).
        entropy: bool,
    },
}
