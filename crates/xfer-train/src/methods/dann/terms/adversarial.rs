//! Adversarial terms: DANN (Ganin & Lempitsky 2015) and CDAN / CDAN+E (Long et al. 2018),
//! and the domain classifier `G_d` they train against (which, in the methods without an
//! adversary, trains on detached features as a *probe* of how separable the domains are).
//!
//! DANN adds `λ_p · L_d`, `G_d` reading the features behind a gradient reversal layer; CDAN
//! adds `λ_p · L_CDAN`, `G_d` reading the multilinear map of features and (detached)
//! predictions ([`xfer_losses::ConditionalDomainAdversarialLoss`]; CDAN+E weights examples by
//! their prediction entropy).

use std::sync::Arc;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use xfer_losses::{
    ConditionalDomainAdversarialLoss, ConditioningMap, DomainAdversarialLoss,
    DomainAdversarialOutput,
};
use xfer_models::{
    DomainDiscriminator, DomainDiscriminatorConfig, ModuleT, ParamGroup, ParamStore, Selection,
};
use xfer_ops::SeededRng;

use super::{StepView, Term, TermEnv, TermOutput, check_weight, scalar};
use crate::batches::chunked;
use crate::trainer::derive_seed;
use crate::{Result, TrainError};

/// Sub-seed tag of CDAN's randomised map (see [`derive_seed`]).
const TAG_MAP: u64 = 0x4D41_5000; // "MAP"
/// The store scope (and parameter-group name) of `G_d`.
pub const DISCRIMINATOR_SCOPE: &str = "discriminator";

/// Shape and rate of the domain classifier `G_d` (the lecture: it must be strong, or the
/// features only look aligned).
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
    /// Learning-rate multiplier of its parameter group (1 in the paper; TLlib's
    /// discriminator runs at 10× its pretrained backbone's rate).
    #[serde(default = "one")]
    pub lr_mult: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for DiscriminatorConfig {
    /// Two hidden layers of 256 units with batch norm, at the base rate.
    fn default() -> Self {
        Self {
            hidden: 256,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
            lr_mult: 1.0,
        }
    }
}

impl DiscriminatorConfig {
    /// `depth` hidden layers of `hidden` units with batch norm, at the base rate.
    pub fn new(hidden: usize, depth: usize) -> Self {
        Self {
            hidden,
            depth,
            ..Self::default()
        }
    }

    /// Checks the rate multiplier and the dropout.
    pub fn validate(&self) -> Result<()> {
        check_weight("discriminator.lr_mult", self.lr_mult)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainError::invalid(
                "discriminator.dropout",
                self.dropout,
                "in [0, 1)",
            ));
        }
        Ok(())
    }
}

/// The domain classifier `G_d` of a run and what it reads: the features, or CDAN's
/// multilinear map of features and predictions.
#[derive(Clone)]
pub struct DomainClassifier {
    /// `G_d` (its parameters live in the network's store under `discriminator.`).
    pub net: Arc<DomainDiscriminator>,
    /// CDAN's map, `None` when `G_d` reads the features.
    pub conditioning: Option<ConditioningMap>,
}

impl std::fmt::Debug for DomainClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainClassifier")
            .field("conditioning", &self.conditioning)
            .finish_non_exhaustive()
    }
}

impl DomainClassifier {
    /// `G_d` in `store`'s `discriminator` scope, reading `input_dim` values, drawn from `rng`.
    pub fn new(
        store: &ParamStore,
        cfg: &DiscriminatorConfig,
        input_dim: usize,
        conditioning: Option<ConditioningMap>,
        rng: &mut SeededRng,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let disc_cfg = DomainDiscriminatorConfig {
            dropout: cfg.dropout,
            batch_norm: cfg.batch_norm,
            ..DomainDiscriminatorConfig::new(input_dim, cfg.hidden, cfg.depth)
        };
        let net = DomainDiscriminator::new(
            &store.scope(DISCRIMINATOR_SCOPE),
            &disc_cfg,
            rng,
            DType::F32,
            device,
        )?;
        Ok(Self {
            net: Arc::new(net),
            conditioning,
        })
    }

    /// The parameter group of `G_d` at `lr_mult` × the base rate.
    pub fn param_group(lr_mult: f64) -> ParamGroup {
        ParamGroup::new(
            DISCRIMINATOR_SCOPE,
            Selection::Prefix(DISCRIMINATOR_SCOPE.into()),
        )
        .with_lr_mult(lr_mult)
    }

    /// DANN's loss around `G_d` in training mode (`G_d` reads the features).
    pub fn dann_loss(&self) -> DomainAdversarialLoss {
        let g_d = Arc::clone(&self.net);
        DomainAdversarialLoss::new(move |f: &Tensor| g_d.forward_t(f, true))
    }

    /// The probe: `G_d` learns to tell detached source features from detached target
    /// features, no gradient reaches the network.
    pub fn probe(&self, fs: &Tensor, ft: &Tensor) -> Result<DomainAdversarialOutput> {
        Ok(self.dann_loss().forward(&fs.detach(), &ft.detach(), 0.0)?)
    }

    /// What `G_d` reads for `features` and `logits`: the features, or the map of the
    /// features and the (detached) softmax.
    pub fn input(&self, features: &Tensor, logits: &Tensor) -> Result<Tensor> {
        match &self.conditioning {
            None => Ok(features.clone()),
            Some(m) => {
                let g = xfer_ops::softmax(&logits.detach())?;
                Ok(m.forward(features, &g)?)
            }
        }
    }

    /// Balanced accuracy of `G_d` (evaluation mode) telling source features/logits from
    /// target ones: 0.5 when the domains are indistinguishable.
    pub fn accuracy(&self, fs: &Tensor, ft: &Tensor, ls: &Tensor, lt: &Tensor) -> Result<f64> {
        let h = self.input(&Tensor::cat(&[fs, ft], 0)?, &Tensor::cat(&[ls, lt], 0)?)?;
        let logits = chunked(&h, |b| Ok(self.net.forward_t(b, false)?))?;
        balanced_domain_accuracy(&logits, fs.dim(0)?)
    }
}

/// Balanced accuracy `½(acc_S + acc_T)` of domain logits `(N_s + N_t)` or `(…, 1)`, source
/// first, positive meaning source.
pub(crate) fn balanced_domain_accuracy(logits: &Tensor, ns: usize) -> Result<f64> {
    let said_source = logits
        .flatten_all()?
        .ge(0.0)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let (s, t) = said_source.split_at(ns.min(said_source.len()));
    if s.is_empty() || t.is_empty() {
        return Err(TrainError::BadData(
            "domain accuracy needs source and target examples".into(),
        ));
    }
    let acc_s = s.iter().sum::<f64>() / s.len() as f64;
    let acc_t = 1.0 - t.iter().sum::<f64>() / t.len() as f64;
    Ok(0.5 * (acc_s + acc_t))
}

/// The settings of the adversarial terms (DANN has none of its own: its weight is the ramp
/// `λ_p`, its discriminator the run's [`DiscriminatorConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversarialConfig {
    /// `C·D` above which CDAN uses the randomised multilinear map (4096 in the paper).
    pub cdan_max_full_dim: usize,
    /// Width of CDAN's randomised map (1024 in the paper).
    pub cdan_random_dim: usize,
}

impl Default for AdversarialConfig {
    /// The paper's: the full map up to 4096 values, else a randomised map of 1024.
    fn default() -> Self {
        Self {
            cdan_max_full_dim: 4096,
            cdan_random_dim: 1024,
        }
    }
}

impl AdversarialConfig {
    /// Checks the randomised map's width.
    pub fn validate(&self) -> Result<()> {
        if self.cdan_random_dim == 0 {
            return Err(TrainError::invalid("adversarial.cdan_random_dim", 0, "> 0"));
        }
        Ok(())
    }
}

/// Which adversary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdversaryKind {
    /// DANN's `G_d` on the features.
    Dann,
    /// CDAN's `G_d` on the multilinear map of features and predictions.
    Cdan {
        /// Entropy conditioning (CDAN+E).
        entropy: bool,
    },
}

/// The adversarial term `λ_p · L_d` (DANN) or `λ_p · L_CDAN` (CDAN, CDAN+E).
#[derive(Debug, Clone)]
pub struct Adversarial {
    kind: AdversaryKind,
    cfg: AdversarialConfig,
    map: Option<ConditioningMap>,
}

impl Adversarial {
    /// The term of `kind`.
    pub fn new(kind: AdversaryKind, cfg: &AdversarialConfig) -> Self {
        Self {
            kind,
            cfg: cfg.clone(),
            map: None,
        }
    }

    /// DANN's term.
    pub fn dann(cfg: &AdversarialConfig) -> Self {
        Self::new(AdversaryKind::Dann, cfg)
    }

    /// CDAN's term (`entropy`: CDAN+E).
    pub fn cdan(cfg: &AdversarialConfig, entropy: bool) -> Self {
        Self::new(AdversaryKind::Cdan { entropy }, cfg)
    }

    /// Which adversary.
    pub fn kind(&self) -> AdversaryKind {
        self.kind
    }
}

impl Term for Adversarial {
    fn name(&self) -> &'static str {
        match self.kind {
            AdversaryKind::Dann => "dann",
            AdversaryKind::Cdan { entropy: false } => "cdan",
            AdversaryKind::Cdan { entropy: true } => "cdan_e",
        }
    }

    fn prepare(&mut self, env: &TermEnv<'_>) -> Result<()> {
        if let AdversaryKind::Cdan { .. } = self.kind {
            self.map = Some(ConditioningMap::auto(
                env.net.feature_dim(),
                env.net.num_classes(),
                self.cfg.cdan_max_full_dim,
                self.cfg.cdan_random_dim,
                &mut SeededRng::new(derive_seed(env.seed, &[TAG_MAP])),
                DType::F32,
                env.net.device(),
            )?);
        }
        Ok(())
    }

    fn is_adversary(&self) -> bool {
        true
    }

    fn conditioning(&self) -> Option<&ConditioningMap> {
        self.map.as_ref()
    }

    fn loss(&self, v: &StepView<'_>, _rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        let adv = match (self.kind, &self.map) {
            (AdversaryKind::Dann, _) => {
                v.domain
                    .dann_loss()
                    .forward(v.source_features, v.target_features, v.lambda)?
            }
            (AdversaryKind::Cdan { entropy }, Some(map)) => {
                let g_d = Arc::clone(&v.domain.net);
                ConditionalDomainAdversarialLoss::new(
                    move |h: &Tensor| g_d.forward_t(h, true),
                    map.clone(),
                    entropy,
                )
                .forward(
                    v.source_features,
                    v.source_logits,
                    v.target_features,
                    v.target_logits,
                    v.lambda,
                )?
            }
            (AdversaryKind::Cdan { .. }, None) => {
                return Err(TrainError::Incompatible(format!(
                    "{}: the term was not prepared (no conditioning map)",
                    self.name()
                )));
            }
        };
        let mut metrics = Vec::new();
        if adv.domain_accuracy.is_finite() {
            metrics.push(("domain_loss".to_string(), scalar(&adv.loss)?));
            metrics.push(("domain_acc".to_string(), adv.domain_accuracy));
        }
        Ok(Some(TermOutput {
            loss: adv.loss,
            metrics,
        }))
    }
}
