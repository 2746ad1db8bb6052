//! AdaBN (Li et al., ICLR-W 2017): source-only training; before every target evaluation the
//! batch-norm statistics are replaced by the target's (exact full-pass statistics,
//! [`xfer_models::Classifier::adapt_batch_norm`]). No loss of its own.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use xfer_models::Classifier;

use super::{Term, TermEnv};
use crate::{Result, TrainError};

/// AdaBN's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaBnConfig {
    /// Rows per forward pass of the statistics.
    pub chunk: usize,
}

impl Default for AdaBnConfig {
    /// 512 rows per pass.
    fn default() -> Self {
        Self { chunk: 512 }
    }
}

impl AdaBnConfig {
    /// Checks the chunk size.
    pub fn validate(&self) -> Result<()> {
        if self.chunk == 0 {
            return Err(TrainError::invalid("adabn.chunk", 0, "> 0 rows"));
        }
        Ok(())
    }
}

/// The AdaBN hook.
#[derive(Debug, Clone)]
pub struct AdaBn {
    cfg: AdaBnConfig,
}

impl AdaBn {
    /// The hook with `cfg`.
    pub fn new(cfg: &AdaBnConfig) -> Self {
        Self { cfg: cfg.clone() }
    }
}

impl Term for AdaBn {
    fn name(&self) -> &'static str {
        "adabn"
    }

    fn ramped(&self) -> bool {
        false
    }

    fn trains_on_target(&self) -> bool {
        false
    }

    fn prepare(&mut self, env: &TermEnv<'_>) -> Result<()> {
        if env.net.has_batch_norm() {
            Ok(())
        } else {
            Err(TrainError::Incompatible(
                "adabn re-estimates batch-norm statistics, but the network has none: give it \
                 a bottleneck (Config::bottleneck, --bottleneck N)"
                    .into(),
            ))
        }
    }

    fn before_target_eval(&self, net: &Classifier, target: &Tensor) -> Result<()> {
        Ok(net.adapt_batch_norm(target, self.cfg.chunk)?)
    }
}
