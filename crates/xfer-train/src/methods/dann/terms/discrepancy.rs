//! Discrepancy terms between the source and target features of a step: DAN's multi-kernel
//! MMD² (Long et al., ICML 2015; [`xfer_losses::MultiKernelMmd`]) and Deep CORAL (Sun &
//! Saenko 2016; [`xfer_losses::coral()`]), each ramped by `λ_p`.

use serde::{Deserialize, Serialize};
use xfer_losses::{MultiKernelMmd, coral};
use xfer_ops::SeededRng;

use super::{StepView, Term, TermOutput, check_weight, scalar};
use crate::Result;

/// DAN's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmdConfig {
    /// Weight of `MK-MMD²` (times `λ_p`).
    pub weight: f64,
}

impl Default for MmdConfig {
    /// Weight 1.
    fn default() -> Self {
        Self { weight: 1.0 }
    }
}

impl MmdConfig {
    /// Checks the weight.
    pub fn validate(&self) -> Result<()> {
        check_weight("mmd.weight", self.weight)
    }
}

/// DAN's term `λ_p · w · MK-MMD²(f_s, f_t)` (5 Gaussian kernels, bandwidths `2^k ×` the mean
/// distance).
#[derive(Debug, Clone)]
pub struct Mmd {
    cfg: MmdConfig,
    mmd: MultiKernelMmd,
}

impl Mmd {
    /// The term with `cfg`.
    pub fn new(cfg: &MmdConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            mmd: MultiKernelMmd::default(),
        }
    }
}

impl Term for Mmd {
    fn name(&self) -> &'static str {
        "dan"
    }

    fn loss(&self, v: &StepView<'_>, _rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        let m = self.mmd.forward(v.source_features, v.target_features)?;
        let metrics = vec![("mmd".to_string(), scalar(&m)?)];
        Ok(Some(TermOutput {
            loss: (m * (v.lambda * self.cfg.weight))?,
            metrics,
        }))
    }
}

/// Deep CORAL's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoralConfig {
    /// Weight of `‖C_S − C_T‖²_F / 4d²` (times `λ_p`).
    pub weight: f64,
}

impl Default for CoralConfig {
    /// Weight 1.
    fn default() -> Self {
        Self { weight: 1.0 }
    }
}

impl CoralConfig {
    /// Checks the weight.
    pub fn validate(&self) -> Result<()> {
        check_weight("coral.weight", self.weight)
    }
}

/// Deep CORAL's term `λ_p · w · CORAL(f_s, f_t)`.
#[derive(Debug, Clone)]
pub struct Coral {
    cfg: CoralConfig,
}

impl Coral {
    /// The term with `cfg`.
    pub fn new(cfg: &CoralConfig) -> Self {
        Self { cfg: cfg.clone() }
    }
}

impl Term for Coral {
    fn name(&self) -> &'static str {
        "coral"
    }

    fn loss(&self, v: &StepView<'_>, _rng: &mut SeededRng) -> Result<Option<TermOutput>> {
        let c = coral(v.source_features, v.target_features)?;
        let metrics = vec![("coral".to_string(), scalar(&c)?)];
        Ok(Some(TermOutput {
            loss: (c * (v.lambda * self.cfg.weight))?,
            metrics,
        }))
    }
}
