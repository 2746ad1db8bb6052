//! The one registration of the domain-adaptation methods: each method's name and its list of
//! terms ([`Method::terms`]), and the configuration of every term family ([`TermConfigs`]).
//! Adding a method is its term (in `terms/`) and one variant here.

use serde::{Deserialize, Serialize};

use super::terms::{
    AdaBn, AdaBnConfig, Adversarial, AdversarialConfig, Coral, CoralConfig, Mcc, MccConfig, Mmd,
    MmdConfig, PseudoLabel, PseudoLabelConfig, Term,
};
use crate::{Result, TrainError};

/// The configuration of every term family (each method reads the ones of its terms).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TermConfigs {
    /// DANN, CDAN, CDAN+E.
    #[serde(default)]
    pub adversarial: AdversarialConfig,
    /// MCC.
    #[serde(default)]
    pub mcc: MccConfig,
    /// Self-training and FixMatch.
    #[serde(default)]
    pub pseudo_label: PseudoLabelConfig,
    /// DAN.
    #[serde(default)]
    pub mmd: MmdConfig,
    /// Deep CORAL.
    #[serde(default)]
    pub coral: CoralConfig,
    /// AdaBN.
    #[serde(default)]
    pub adabn: AdaBnConfig,
}

impl TermConfigs {
    /// Checks every family's settings.
    pub fn validate(&self) -> Result<()> {
        self.adversarial.validate()?;
        self.mcc.validate()?;
        self.pseudo_label.validate()?;
        self.mmd.validate()?;
        self.coral.validate()?;
        self.adabn.validate()
    }
}

/// The domain-adaptation methods (see the module documentation for each one's loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The baseline: `L_y` alone (the probe `G_d` still measures the domains).
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

impl Method {
    /// Every method.
    pub const ALL: [Method; 12] = [
        Method::SourceOnly,
        Method::Dann,
        Method::Cdan,
        Method::CdanE,
        Method::Mcc,
        Method::DannMcc,
        Method::CdanEMcc,
        Method::SelfTrain,
        Method::Fixmatch,
        Method::Adabn,
        Method::Dan,
        Method::Coral,
    ];

    /// The run name used on the command line and in reports (`source_only`, `dann`,
    /// `cdan_e`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Method::SourceOnly => "source_only",
            Method::Dann => "dann",
            Method::Cdan => "cdan",
            Method::CdanE => "cdan_e",
            Method::Mcc => "mcc",
            Method::DannMcc => "dann_mcc",
            Method::CdanEMcc => "cdan_e_mcc",
            Method::SelfTrain => "self_train",
            Method::Fixmatch => "fixmatch",
            Method::Adabn => "adabn",
            Method::Dan => "dan",
            Method::Coral => "coral",
        }
    }

    /// The method's terms with the settings of `cfg`, in the order their losses are added
    /// (an adversary first).
    pub fn terms(&self, cfg: &TermConfigs) -> Vec<Box<dyn Term>> {
        let adv = &cfg.adversarial;
        match self {
            Method::SourceOnly => vec![],
            Method::Dann => vec![Box::new(Adversarial::dann(adv))],
            Method::Cdan => vec![Box::new(Adversarial::cdan(adv, false))],
            Method::CdanE => vec![Box::new(Adversarial::cdan(adv, true))],
            Method::Mcc => vec![Box::new(Mcc::new(&cfg.mcc))],
            Method::DannMcc => vec![
                Box::new(Adversarial::dann(adv)),
                Box::new(Mcc::new(&cfg.mcc)),
            ],
            Method::CdanEMcc => vec![
                Box::new(Adversarial::cdan(adv, true)),
                Box::new(Mcc::new(&cfg.mcc)),
            ],
            Method::SelfTrain => vec![Box::new(PseudoLabel::self_training(&cfg.pseudo_label))],
            Method::Fixmatch => vec![Box::new(PseudoLabel::fixmatch(&cfg.pseudo_label))],
            Method::Adabn => vec![Box::new(AdaBn::new(&cfg.adabn))],
            Method::Dan => vec![Box::new(Mmd::new(&cfg.mmd))],
            Method::Coral => vec![Box::new(Coral::new(&cfg.coral))],
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = TrainError;
    /// A method's name; `-` may stand for `_` (`cdan-e`).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                TrainError::invalid("method", s, format!("one of {}", names.join(", ")))
            })
    }
}
