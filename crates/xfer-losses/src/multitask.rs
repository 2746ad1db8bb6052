//! Multitask objectives: a fixed weighted sum of task losses, uncertainty weighting with
//! learned weights (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
//! Losses for Scene Geometry and Semantics", CVPR 2018), and masked task losses for examples
//! that lack a task's label.

use candle_core::{DType, Device, Tensor, Var};

use crate::{LossError, Result, check};

/// `Σ_t w_t L_t` over scalar task losses (shape `()` or `(1)`) and one finite weight per task.
pub fn weighted_sum<T: AsRef<Tensor>>(losses: &[T], weights: &[f64]) -> Result<Tensor> {
    const L: &str = "weighted_sum";
    if losses.is_empty() {
        return Err(LossError::argument(
            L,
            "losses",
            "must hold at least one task loss",
        ));
    }
    if weights.len() != losses.len() {
        return Err(LossError::argument(
            L,
            "weights",
            format!(
                "has {} entries for {} task losses",
                weights.len(),
                losses.len()
            ),
        ));
    }
    let mut total: Option<Tensor> = None;
    for (t, (l, &w)) in losses.iter().zip(weights).enumerate() {
        let w = check::finite(L, "weights", w)?;
        let l = check::scalar(L, &format!("losses[{t}]"), l.as_ref())?;
        let term = (l * w)?;
        total = Some(match total {
            None => term,
            Some(acc) => {
                check::same_dtype(L, ("losses[0]", &acc), (&format!("losses[{t}]"), &term))?;
                (acc + term)?
            }
        });
    }
    total.ok_or_else(|| LossError::argument(L, "losses", "must hold at least one task loss"))
}

/// Uncertainty weighting `Σ_t exp(−s_t) L_t + s_t` (Kendall, Gal & Cipolla, CVPR 2018), with
/// `s_t = log σ_t²` learned jointly with the model. A task whose loss stays large (noisier)
/// gets a larger `s_t`, hence a smaller weight `exp(−s_t)`; the `+ s_t` term stops every
/// weight from collapsing to zero. At the optimum `exp(−s_t) = 1/L_t`.
///
/// The `s_t` live in one candle [`Var`] of shape `(T)`; hand [`UncertaintyWeighting::log_vars`]
/// to your optimiser beside the model's parameters.
#[derive(Debug, Clone)]
pub struct UncertaintyWeighting {
    log_vars: Var,
}

const UW: &str = "uncertainty_weighting";

impl UncertaintyWeighting {
    /// `num_tasks` log-variances, all starting at 0 (every weight 1).
    pub fn new(num_tasks: usize, dtype: DType, device: &Device) -> Result<Self> {
        if num_tasks == 0 {
            return Err(LossError::argument(
                UW,
                "num_tasks",
                "must be at least 1, got 0",
            ));
        }
        if !dtype.is_float() {
            return Err(LossError::argument(
                UW,
                "dtype",
                format!("must be a float dtype, got {dtype:?}"),
            ));
        }
        Ok(Self {
            log_vars: Var::zeros(num_tasks, dtype, device)?,
        })
    }

    /// Starts from given log-variances `s` (a `(T)` float `Var`, for example restored from a
    /// checkpoint).
    pub fn from_log_vars(log_vars: Var) -> Result<Self> {
        check::float(UW, "log_vars", log_vars.as_tensor())?;
        match log_vars.dims() {
            [t] if *t > 0 => Ok(Self { log_vars }),
            d => Err(LossError::shape(UW, "log_vars", d, "(T) with T ≥ 1 tasks")),
        }
    }

    /// The learned `s_t`, to give to an optimiser.
    pub fn log_vars(&self) -> &Var {
        &self.log_vars
    }

    /// Number of tasks `T`.
    pub fn num_tasks(&self) -> usize {
        self.log_vars.elem_count()
    }

    /// The current task weights `exp(−s_t)`.
    pub fn weights(&self) -> Result<Vec<f64>> {
        Ok(self
            .log_vars
            .as_tensor()
            .neg()?
            .exp()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?)
    }

    /// `Σ_t exp(−s_t) L_t + s_t` for one scalar loss per task (in task order).
    pub fn forward<T: AsRef<Tensor>>(&self, losses: &[T]) -> Result<Tensor> {
        let t = self.num_tasks();
        if losses.len() != t {
            return Err(LossError::argument(
                UW,
                "losses",
                format!("has {} task losses for {t} learned weights", losses.len()),
            ));
        }
        let mut scalars = Vec::with_capacity(t);
        for (i, l) in losses.iter().enumerate() {
            let l = check::scalar(UW, &format!("losses[{i}]"), l.as_ref())?;
            scalars.push(l.to_dtype(self.log_vars.dtype())?.unsqueeze(0)?);
        }
        let l = Tensor::cat(&scalars, 0)?;
        let s = self.log_vars.as_tensor();
        Ok(((s.neg()?.exp()? * l)? + s)?.sum_all()?)
    }
}

/// The mean of `per_example` losses `(N)` over the examples whose `mask` `(N)` entry is
/// non-zero, weighted by the mask: `Σᵢ mᵢ ℓᵢ / Σᵢ mᵢ` (0 when no example has the task's
/// label, with the graph kept so backward still runs). `mask` holds finite weights ≥ 0,
/// usually 0/1. Per-example losses come from, for example,
/// `CrossEntropyLoss::new().with_reduction(Reduction::None)` or
/// [`crate::CrossEntropyLoss::forward_masked`] (which also ignores the missing labels).
pub fn masked_mean(per_example: &Tensor, mask: &Tensor) -> Result<Tensor> {
    const L: &str = "masked_mean";
    check::float(L, "per_example", per_example)?;
    let n = match per_example.dims() {
        [n] => *n,
        d => {
            return Err(LossError::shape(
                L,
                "per_example",
                d,
                "(N): one loss per example",
            ));
        }
    };
    let m = check::mask(L, "mask", mask, n)?;
    let raw = mask.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if let Some((i, v)) = raw
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(LossError::argument(
            L,
            "mask",
            format!("must hold finite weights ≥ 0, found {v} at position {i}"),
        ));
    }
    let denom: f64 = raw
        .iter()
        .zip(&m)
        .filter(|(_, k)| **k)
        .map(|(v, _)| v)
        .sum();
    // Select, not multiply, so a NaN or ∞ at a dropped position (a loss computed from a
    // placeholder label) cannot leak into the result.
    let keep = mask.ne(0.0)?;
    let weighted = (per_example * mask.to_dtype(per_example.dtype())?)?;
    let total = keep
        .where_cond(&weighted, &per_example.zeros_like()?)?
        .sum_all()?;
    Ok((total / if denom > 0.0 { denom } else { 1.0 })?)
}
