//! Pseudo-label terms, ramped by `λ_p`: self-training with the confident, class-balanced
//! pseudo-labels of the target batch (Lee 2013; Zou et al., CBST 2018) and FixMatch (Sohn et
//! al., NeurIPS 2020), whose labels from a weakly augmented view train a strongly augmented
//! one ([`xfer_losses::pseudo_label_loss`]; the views are in `augment.rs`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use xfer_losses::pseudo_label_loss;
use xfer_ops::SeededRng;

use super::augment::{Augmenter, Strength};
use super::{StepView, Term, TermEnv, TermOutput, check_weight, scalar};
use crate::{Result, TrainError};

/// The pseudo-label terms' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PseudoLabelConfig {
    /// Weight of the term (times `λ_p`).
    pub weight: f64,
    /// Confidence a pseudo-label needs (in `[0, 1]`; FixMatch: 0.95).
    pub threshold: f64,
    /// Class-balanced pseudo-label weights.
    pub class_balance: bool,
}

impl Default for PseudoLabelConfig {
    /// TLlib's: weight 1, confidence 0.9, class-balanced.
    fn default() -> Self {
        Self {
            weight: 1.0,
            threshold: 0.9,
            class_balance: true,
        }
    }
}

impl PseudoLabelConfig {
    /// Checks the weight and the threshold.
    pub fn validate(&self) -> Result<()> {
        check_weight("pseudo_label.weight", self.weight)?;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(TrainError::invalid(
                "pseudo_label.threshold",
                self.threshold,
                "a softmax confidence in [0, 1]",
            ));
        }
        Ok(())
    }
}

/// Where the pseudo-labels come from and what they train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PseudoLabelView {
    /// The target batch labels itself (self-training).
    Same,
    /// A weak view labels a strong view of the same samples (FixMatch).
    WeakToStrong,
}

/// `λ_p · w · PL(teacher, student)` on the target batch.
#[derive(Debug, Clone)]
pub struct PseudoLabel {
    cfg: PseudoLabelConfig,
    view: PseudoLabelView,
    augmenter: Option<Augmenter>,
}

impl PseudoLabel {
    /// Self-training.
    pub fn self_training(cfg: &PseudoLabelConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            view: PseudoLabelView::Same,
            augmenter: None,
        }
    }

    /// FixMatch.
    pub fn fixmatch(cfg: &PseudoLabelConfig) -> Self {
        Self {
            view: PseudoLabelView::WeakToStrong,
            ..Self::self_training(cfg)
        }
    }

    fn augmenter(&self) -> Result<&Augmenter> {
        self.augmenter.as_ref().ok_or_else(|| {
            TrainError::Incompatible("fixmatch: the term was not prepared (no augmenter)".into())
        })
    }
}

impl Term for PseudoLabel {
    fn name(&self) -> &'static str {
        match self.view {
            PseudoLabelView::Same => "self_train",
            PseudoLabelView::WeakToStrong => "fixmatch",
        }
    }

    fn prepare(&mut self, env: &TermEnv<'_>) -> Result<()> {
        if self.view == PseudoLabelView::WeakToStrong {
            let shape = env.target.dims().get(1..).unwrap_or(&[]).to_vec();
            self.augmenter = Some(Augmenter::new(&shape, env.target)?);
        }
        Ok(())
    }

    fn target_view(&self, batch: &Tensor, rng: &mut SeededRng) -> Result<Option<Tensor>> {
        match self.view {
            PseudoLabelView::Same => Ok(None),
            PseudoLabelView::WeakToStrong => {
                Ok(Some(self.augmenter()?.view(batch, Strength::Weak, rng)?))
            }
        }
    }

    fn loss(&self, v: &StepView<'_>, rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        let pl = match self.view {
            PseudoLabelView::Same => pseudo_label_loss(
                v.target_logits,
                v.target_logits,
                self.cfg.threshold,
                self.cfg.class_balance,
            )?,
            PseudoLabelView::WeakToStrong => {
                let strong = self
                    .augmenter()?
                    .view(v.target_batch, Strength::Strong, rng)?;
                let student = v.net.logits(&strong, true)?;
                pseudo_label_loss(
                    v.target_logits,
                    &student,
                    self.cfg.threshold,
                    self.cfg.class_balance,
                )?
            }
        };
        let metrics = vec![
            ("pseudo_label_loss".to_string(), scalar(&pl.loss)?),
            ("mask_rate".to_string(), pl.mask_rate),
        ];
        Ok(Some(TermOutput {
            loss: (pl.loss * (v.lambda * self.cfg.weight))?,
            metrics,
        }))
    }
}
