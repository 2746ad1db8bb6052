//! How a per-example loss becomes one number.

use candle_core::Tensor;

use crate::Result;

/// How per-example losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over examples (the default).
    #[default]
    Mean,
    /// The sum over examples.
    Sum,
    /// No reduction: one value per example.
    None,
}

impl Reduction {
    /// Applies the reduction to a tensor of per-example losses (any shape; `Mean` and `Sum`
    /// reduce over all elements and return a scalar).
    pub fn apply(self, per_example: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Reduction::Mean => per_example.mean_all()?,
            Reduction::Sum => per_example.sum_all()?,
            Reduction::None => per_example.clone(),
        })
    }
}
