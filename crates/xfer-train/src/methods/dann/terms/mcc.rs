//! Minimum class confusion (Jin et al., ECCV 2020): `w_mcc · MCC(z_t)` on the target
//! logits ([`xfer_losses::minimum_class_confusion`]), at full weight from the first step (not
//! ramped by `λ_p`, as in the paper and TLlib).

use serde::{Deserialize, Serialize};
use xfer_losses::minimum_class_confusion;
use xfer_ops::SeededRng;

use super::{StepView, Term, TermOutput, check_weight, scalar};
use crate::{Result, TrainError};

/// The MCC term's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MccConfig {
    /// Weight of the term (1 in TLlib).
    pub weight: f64,
    /// The softmax temperature (2.5 in the paper).
    pub temperature: f64,
}

impl Default for MccConfig {
    /// Weight 1 at `T = 2.5`.
    fn default() -> Self {
        Self {
            weight: 1.0,
            temperature: xfer_losses::MCC_TEMPERATURE,
        }
    }
}

impl MccConfig {
    /// Checks the weight and the temperature.
    pub fn validate(&self) -> Result<()> {
        check_weight("mcc.weight", self.weight)?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::invalid(
                "mcc.temperature",
                self.temperature,
                "finite, > 0",
            ));
        }
        Ok(())
    }
}

/// The MCC term.
#[derive(Debug, Clone)]
pub struct Mcc {
    cfg: MccConfig,
}

impl Mcc {
    /// The term with `cfg`.
    pub fn new(cfg: &MccConfig) -> Self {
        Self { cfg: cfg.clone() }
    }
}

impl Term for Mcc {
    fn name(&self) -> &'static str {
        "mcc"
    }

    fn ramped(&self) -> bool {
        false
    }

    fn loss(&self, v: &StepView<'_>, _rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        let mcc = minimum_class_confusion(v.target_logits, self.cfg.temperature)?;
        let metrics = vec![("mcc".to_string(), scalar(&mcc)?)];
        Ok(Some(TermOutput {
            loss: (mcc * self.cfg.weight)?,
            metrics,
        }))
    }
}
