//! The terms a domain-adaptation method adds to the source classification loss `L_y`, one
//! file per family, each with its own configuration:
//!
//! | file | terms | configuration |
//! |---|---|---|
//! | [`adversarial`] | DANN, CDAN, CDAN+E (and the domain classifier `G_d` they train) | [`AdversarialConfig`] |
//! | [`mcc`] | minimum class confusion | [`MccConfig`] |
//! | [`pseudo_label`] | self-training, FixMatch | [`PseudoLabelConfig`] |
//! | [`discrepancy`] | DAN (MK-MMD), Deep CORAL | [`MmdConfig`], [`CoralConfig`] |
//! | [`adabn`] | AdaBN (an evaluation hook, no loss) | [`AdaBnConfig`] |
//!
//! A method is a list of terms ([`super::Method::terms`], the one registration). Adding a
//! method is a new [`Term`] in its family's file (or a new file) and one line in
//! `registry.rs`.

pub mod adabn;
pub mod adversarial;
mod augment;
pub mod discrepancy;
pub mod mcc;
pub mod pseudo_label;

use candle_core::Tensor;
use xfer_losses::ConditioningMap;
use xfer_models::{Classifier, ParamGroup};
use xfer_ops::SeededRng;

pub use adabn::{AdaBn, AdaBnConfig};
pub use adversarial::{Adversarial, AdversarialConfig, AdversaryKind, DomainClassifier};
pub use discrepancy::{Coral, CoralConfig, Mmd, MmdConfig};
pub use mcc::{Mcc, MccConfig};
pub use pseudo_label::{PseudoLabel, PseudoLabelConfig, PseudoLabelView};

use crate::Result;
use crate::history::Metrics;

/// What a term may read when the run is set up (before the first step).
#[derive(Debug, Clone, Copy)]
pub struct TermEnv<'a> {
    /// The network (`G_f`, the bottleneck and `G_y`).
    pub net: &'a Classifier,
    /// The run's seed (terms derive their own sub-seeds from it).
    pub seed: u64,
    /// Every target input `(N_t, sample_shape...)` (no labels).
    pub target: &'a Tensor,
}

/// What a term sees at one step: the training-mode forward pass of the source batch and the
/// target batch through the network, and the ramp `λ_p`.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    /// The network.
    pub net: &'a Classifier,
    /// `G_f(x_s)`, `(N_s, D)`.
    pub source_features: &'a Tensor,
    /// `G_f(x_t)`, `(N_t, D)` (of the view a term asked for, see [`Term::target_view`]).
    pub target_features: &'a Tensor,
    /// `G_y(G_f(x_s))`, `(N_s, C)`.
    pub source_logits: &'a Tensor,
    /// `G_y(G_f(x_t))`, `(N_t, C)`.
    pub target_logits: &'a Tensor,
    /// The target batch as drawn, before any view.
    pub target_batch: &'a Tensor,
    /// `λ_p = λ_max (2/(1 + e^{−γp}) − 1)`; 0 in methods without a ramped term.
    pub lambda: f64,
    /// The domain classifier `G_d` (adversarial terms train against it).
    pub domain: &'a DomainClassifier,
}

/// A term's contribution to one step: its weighted loss (added to `L_y`) and the metrics it
/// logs.
#[derive(Debug, Clone)]
pub struct TermOutput {
    /// The weighted term, a scalar.
    pub loss: Tensor,
    /// `(name, value)` pairs for the step's log.
    pub metrics: Metrics,
}

/// One term of a domain-adaptation objective (see the module documentation).
///
/// Every hook but [`Term::name`] has a default: a term that reads the target batch, is
/// ramped by `λ_p`, adds no loss, has no parameters and no evaluation hook.
pub trait Term {
    /// A short name for logs (`dann`, `cdan_e`, `mcc`, ...).
    fn name(&self) -> &'static str;

    /// Whether the term is weighted by the ramp `λ_p` (every term of the paper's family but
    /// MCC). A method without a ramped term logs `λ = 0`.
    fn ramped(&self) -> bool {
        true
    }

    /// Whether the term needs the target batch in the training forward pass. When no term of
    /// a method does (source-only, AdaBN), the step sends only the source batch through the
    /// network in training mode, so no batch norm sees the target, and no term's
    /// [`Term::loss`] is asked for.
    fn trains_on_target(&self) -> bool {
        true
    }

    /// Set-up once the network exists (checks, conditioning maps, augmenters).
    fn prepare(&mut self, _env: &TermEnv<'_>) -> Result<()> {
        Ok(())
    }

    /// Whether the term trains the domain classifier `G_d` itself (then the run has no
    /// probe). A method has at most one such term.
    fn is_adversary(&self) -> bool {
        false
    }

    /// The map `G_d` reads instead of the features (CDAN's multilinear map), once prepared.
    fn conditioning(&self) -> Option<&ConditioningMap> {
        None
    }

    /// The view of the target batch the step sends through the network instead of the batch
    /// itself (FixMatch's weak view), drawn from the step's augmentation generator.
    fn target_view(&self, _batch: &Tensor, _rng: &mut SeededRng) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The weighted term at one step (`None`: the term adds no loss, as AdaBN); `rng` is the
    /// step's augmentation generator (after [`Term::target_view`]).
    fn loss(&self, _view: &StepView<'_>, _rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        Ok(None)
    }

    /// Parameter groups of parameters the term adds to the network's store (none so far: the
    /// domain classifier is the run's, see [`DomainClassifier`]).
    fn param_groups(&self) -> Vec<ParamGroup> {
        Vec::new()
    }

    /// Runs before the target's features are computed at every evaluation, after the source
    /// validation data's (AdaBN re-estimates the batch-norm statistics on the target here).
    fn before_target_eval(&self, _net: &Classifier, _target: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// `t` as an `f64`.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// A weight that must be finite and `>= 0`.
pub(crate) fn check_weight(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(crate::TrainError::invalid(name, v, "finite, >= 0"))
    }
}
