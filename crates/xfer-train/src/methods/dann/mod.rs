//! Unsupervised domain adaptation on the one run contract ([`RunCtx`], [`Stage`]): DANN and
//! its source-only baseline, CDAN / CDAN+E, MCC (alone or on top of DANN / CDAN+E),
//! self-training with confident pseudo-labels (optionally FixMatch-style), AdaBN, DAN (MMD)
//! and Deep CORAL — each a list of [`terms`] added to the source loss, all sharing the
//! network, the data order, the schedules and the label-free model selection of
//! [`crate::model_selection`].
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
//! The paper's schedules ([`Config::paper`]): `μ_p = μ0/(1 + α p)^β`
//! ([`LrSchedule::Dann`], `μ0 = 0.01, α = 10, β = 0.75`), SGD momentum 0.9, and
//! `λ_p = 2/(1 + exp(−γ p)) − 1` (γ = 10, [`Ramp`]).
//!
//! **Every method's loss** is `L_y` plus its terms ([`Method::terms`], the one
//! registration), each ramped by the same `λ_p` except MCC (the paper uses it at full weight
//! from the start):
//!
//! | method | added terms |
//! |---|---|
//! | `source_only` | none (`G_d` still trains on detached features, so every run's domain accuracy is measured by an equally strong `G_d`) |
//! | `dann` | `λ_p · L_d` ([`terms::adversarial`]) |
//! | `cdan`, `cdan_e` | `λ_p · L_CDAN` ([`xfer_losses::ConditionalDomainAdversarialLoss`], `G_d` on `f ⊗ g`; `_e`: entropy conditioning) |
//! | `mcc` | `w_mcc · MCC(z_t)` ([`terms::mcc`], T = 2.5) |
//! | `dann_mcc`, `cdan_e_mcc` | both |
//! | `self_train` | `λ_p · w_pl · PL(z_t, z_t)`: confident pseudo-labels of the target batch ([`terms::pseudo_label`], class-balanced) |
//! | `fixmatch` | `λ_p · w_pl · PL(z_t^weak, z_t^strong)`: labels from a weakly augmented view train a strongly augmented one |
//! | `adabn` | source-only training, then the batch-norm statistics are re-estimated on the target before every target evaluation ([`terms::adabn`]) |
//! | `dan` | `λ_p · w_mmd · MK-MMD²(f_s, f_t)` ([`terms::discrepancy`]) |
//! | `coral` | `λ_p · w_coral · CORAL(f_s, f_t)` |
//!
//! **Target labels are never used** during training or for any choice made during training:
//! [`run`] takes the target as an [`xfer_data::UnlabeledDataset`] ([`Data::target`]); its
//! evaluations log source validation accuracy and every label-free score
//! ([`crate::model_selection::score_all`]), and the kept weights are chosen by
//! [`Config::selection`]. The optional labelled target test set ([`Data::target_test`]) is
//! only *recorded* at each evaluation (`oracle_target_acc`), so that reports can show the
//! label-free choice beside the choice a target-labelled oracle would have made, and measured
//! once after training ([`Outcome::evaluation`]); nothing reads it to decide anything.
//!
//! ```
//! use xfer_data::embedded::moons;
//! use xfer_models::BackboneSpec;
//! use xfer_train::RunCtx;
//! use xfer_train::methods::dann::{self, Config, Data, Method};
//!
//! // Labelled source moons, the same moons rotated by 35° as the unlabelled target.
//! let (source, target) = moons::moons_pair(35.0, 0)?;
//! let target_test = moons::moons(200, moons::MOONS_NOISE, 35.0, 1)?;
//! let data = Data::new(source, target.unlabeled()).with_target_test(target_test);
//! // The paper's settings (SGD 0.9, μ_p and λ_p schedules), shortened, with CDAN+E.
//! let mut cfg = Config::paper(BackboneSpec::Mlp { hidden: vec![16], dropout: 0.0 })
//!     .with_method(Method::CdanE);
//! cfg.stage = cfg.stage.with_steps(40).with_eval_every(20);
//! let out = dann::run(&cfg, &data, &RunCtx::cpu().with_seed(1))?;
//! assert_eq!(out.report.steps, 40);
//! let eval = out.evaluation.as_ref().map(|e| e.target_acc);
//! assert!(eval.is_some_and(|acc| (0.0..=1.0).contains(&acc)));
//! # Ok::<(), xfer_train::TrainError>(())
//! ```
//!
//! The tuned experiments of `examples/dann.rs` are [`Task::builtin`] (`moons:DEG`,
//! `synth-to-digits`, `digits-rot:DEG`).

mod model;
mod registry;
mod report;
mod sweep;
mod tasks;
pub mod terms;
mod train;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use xfer_losses::dann_lambda;
use xfer_models::{BackboneSpec, BottleneckSpec};

pub use model::{Evaluation, Outcome};
pub use registry::{Method, TermConfigs};
pub use report::{pictures, step_cost};
pub use sweep::{SweepChoice, SweepParam, SweepResult, SweepRun, grid_points, sweep};
pub use tasks::{Task, data_seed};
pub use terms::adversarial::DiscriminatorConfig;
pub use terms::{
    AdaBnConfig, AdversarialConfig, CoralConfig, DomainClassifier, MccConfig, MmdConfig,
    PseudoLabelConfig, Term,
};
pub use train::{Data, param_groups, run};

use crate::Result;
use crate::model_selection::Scorer;
#[cfg(doc)]
use crate::run::RunCtx;
use crate::run::{LrSchedule, Stage};

/// The evaluation metric under which the oracle's target accuracy is recorded.
pub const ORACLE_METRIC: &str = "oracle_target_acc";

/// The ramp `λ_p = max · (2/(1 + exp(−γ p)) − 1)` of every ramped term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    /// `γ` (paper: 10).
    pub gamma: f64,
    /// Multiplies `λ_p` (1 in the paper): the weight of the adversarial, MMD, CORAL and
    /// pseudo-label terms at the end of training.
    pub max: f64,
}

impl Default for Ramp {
    /// The paper's: `γ = 10`, up to 1.
    fn default() -> Self {
        Self {
            gamma: 10.0,
            max: 1.0,
        }
    }
}

impl Ramp {
    /// `λ_p` at progress `p ∈ [0, 1]`.
    pub fn lambda(&self, progress: f64) -> f64 {
        self.max * dann_lambda(progress, self.gamma)
    }
}

/// Which weights a run keeps (a command line's `--selection`): the last, or the best by a
/// label-free [`Scorer`] ([`Config::selection`] is [`ModelSelection::scorer`]). Not to be
/// confused with [`xfer_models::Selection`], a selection of parameters by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelSelection {
    /// The weights after the last step.
    Last,
    /// Held-out source accuracy (also `max-source-val-acc`).
    SourceAcc,
    /// Lowest mean target prediction entropy (also `min-target-entropy`).
    Entropy,
    /// Soft neighbourhood density.
    Snd,
    /// Importance-weighted validation.
    Iwv,
    /// Deep embedded validation.
    Dev,
}

impl ModelSelection {
    /// Every choice.
    pub const ALL: [ModelSelection; 6] = [
        ModelSelection::Last,
        ModelSelection::SourceAcc,
        ModelSelection::Entropy,
        ModelSelection::Snd,
        ModelSelection::Iwv,
        ModelSelection::Dev,
    ];

    /// The name on the command line (`last`, `source-acc`, `entropy`, `snd`, `iwv`, `dev`).
    pub fn name(self) -> &'static str {
        match self {
            ModelSelection::Last => "last",
            ModelSelection::SourceAcc => "source-acc",
            ModelSelection::Entropy => "entropy",
            ModelSelection::Snd => "snd",
            ModelSelection::Iwv => "iwv",
            ModelSelection::Dev => "dev",
        }
    }

    /// Other names accepted for it.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            ModelSelection::SourceAcc => &["max-source-val-acc"],
            ModelSelection::Entropy => &["min-target-entropy"],
            _ => &[],
        }
    }

    /// The scorer, `None` for the last weights.
    pub fn scorer(self) -> Option<Scorer> {
        match self {
            ModelSelection::Last => None,
            ModelSelection::SourceAcc => Some(Scorer::SourceAcc),
            ModelSelection::Entropy => Some(Scorer::Entropy),
            ModelSelection::Snd => Some(Scorer::Snd),
            ModelSelection::Iwv => Some(Scorer::Iwv),
            ModelSelection::Dev => Some(Scorer::Dev),
        }
    }
}

impl std::fmt::Display for ModelSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for ModelSelection {
    type Err = crate::TrainError;

    /// A name or an alias; `_` may stand for `-` (`source_acc`).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('_', "-");
        ModelSelection::ALL
            .into_iter()
            .find(|m| m.name() == norm || m.aliases().contains(&norm.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = ModelSelection::ALL.iter().map(|m| m.name()).collect();
                crate::TrainError::invalid("selection", s, format!("one of {}", names.join(", ")))
            })
    }
}

/// Everything a run of one method needs besides its data and [`RunCtx`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The method (its list of terms: [`Method::terms`]).
    pub method: Method,
    /// The network's backbone (`G_f`; `G_y` is the head of the
    /// [`xfer_models::Classifier`] built on it).
    pub backbone: BackboneSpec,
    /// What sits between `G_f` and a new linear head (TLlib's classifiers use
    /// [`BottleneckSpec::LinearBnRelu`]); AdaBN needs a batch-norm bottleneck.
    pub bottleneck: BottleneckSpec,
    /// How the run optimises: optimiser, rate and schedule, steps, batch size (source and
    /// target examples per step, each), weight decay, the backbone's rate multiplier (`None`:
    /// 0.1 for a pretrained backbone), steps between evaluations.
    pub stage: Stage,
    /// The ramp `λ_p` of the ramped terms.
    pub ramp: Ramp,
    /// The domain classifier `G_d` (the adversary's, or the probe's).
    pub discriminator: DiscriminatorConfig,
    /// The settings of every term family.
    pub terms: TermConfigs,
    /// Which evaluation's weights the run keeps: the best by this label-free scorer, or the
    /// last weights when `None`.
    pub selection: Option<Scorer>,
    /// Train the domain classifier on detached features in the runs without an adversary
    /// (source-only, AdaBN, MCC, self-training, DAN, CORAL), so every run's domain accuracy
    /// is measured by an equally strong `G_d`; off, a source-only step is the plain source
    /// step (what the step-cost measurement compares against).
    pub probe_discriminator: bool,
}

impl Config {
    /// DANN with the paper's settings around `backbone`: 3,000 steps of 64 + 64 examples,
    /// SGD momentum 0.9 at `μ0 = 0.01` with `α = 10`, `β = 0.75`, an evaluation every 100
    /// steps, `γ = 10`, the default discriminator; TLlib's weights for the other methods'
    /// terms ([`TermConfigs::default`]); no bottleneck; the last weights are kept.
    pub fn paper(backbone: BackboneSpec) -> Self {
        Self {
            method: Method::Dann,
            backbone,
            bottleneck: BottleneckSpec::None,
            stage: Self::paper_stage(),
            ramp: Ramp::default(),
            discriminator: DiscriminatorConfig::default(),
            terms: TermConfigs::default(),
            selection: None,
            probe_discriminator: true,
        }
    }

    /// The paper's stage: SGD momentum 0.9 at 0.01, `μ_p = μ0/(1 + 10p)^0.75`, 3,000 steps
    /// of 64 + 64 examples, an evaluation every 100 steps, no weight decay.
    pub fn paper_stage() -> Stage {
        Stage::sgd(0.01, 0.9)
            .with_schedule(LrSchedule::Dann {
                alpha: 10.0,
                beta: 0.75,
            })
            .with_steps(3000)
            .with_batch_size(64)
            .with_eval_every(100)
    }

    /// The same settings for `method`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// `λ_p` at `progress` for this method: the ramp, or 0 for methods without a ramped term
    /// (source-only, AdaBN, MCC alone).
    pub fn lambda(&self, progress: f64) -> f64 {
        if self.method.terms(&self.terms).iter().any(|t| t.ramped()) {
            self.ramp.lambda(progress)
        } else {
            0.0
        }
    }

    /// Checks every setting; a one-line error naming the bad one.
    pub fn validate(&self) -> Result<()> {
        self.stage.validate()?;
        for (name, v) in [("ramp.gamma", self.ramp.gamma), ("ramp.max", self.ramp.max)] {
            terms::check_weight(name, v)?;
        }
        self.discriminator.validate()?;
        self.terms.validate()
    }
}
