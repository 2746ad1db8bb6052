//! Conservative training in output and feature space: keep the new model's outputs (or
//! intermediate features) close to the source model's on the same inputs.
//!
//! - Output closeness, KL form (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
//!   Network", 2015; used as "Learning without Forgetting", Li & Hoiem, ECCV 2016):
//!   `λ · T² · (1/N) Σᵢ KL(softmax(z_srcᵢ/T) ‖ softmax(zᵢ/T))`.
//! - Output closeness, MSE on logits (Ba & Caruana, "Do Deep Nets Really Need to be Deep?",
//!   NIPS 2014): `λ · mean((z − z_src)²)`.
//! - Feature closeness (DELTA without attention: Li et al., "DELTA: Deep Learning Transfer
//!   using Feature Map with Attention", ICLR 2019): `(1/N) Σ_j ‖F_j − F_j^src‖²`.
//!
//! The source model's tensors are the targets: they are detached, so no gradient reaches the
//! source (teacher) model even if the caller forgot to detach them.

use candle_core::Tensor;

use crate::{LossError, Result, check};

const KL: &str = "kl_distillation";

/// `T² · (1/N) Σᵢ Σ_c p^src_ic (log p^src_ic − log p_ic)` with `p^src = softmax(z_src/T)` and
/// `p = softmax(z/T)` over the classes of `student_logits` and `teacher_logits` `(N, C)`.
/// The `T²` keeps the gradient's scale independent of `T` (Hinton et al. 2015). The teacher's
/// logits are detached.
pub fn kl_distillation(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let t = check::positive(KL, "temperature", temperature)?;
    check::nonempty_matrix(KL, "student_logits", student_logits)?;
    check::same_shape(
        KL,
        ("student_logits", student_logits),
        ("teacher_logits", teacher_logits),
    )?;
    let n = student_logits.dim(0)? as f64;
    let log_q = xfer_ops::log_softmax(&(student_logits / t)?)?;
    let log_p = xfer_ops::log_softmax(&(teacher_logits.detach() / t)?)?;
    let p = log_p.exp()?;
    let kl = (p * (log_p - log_q)?)?.sum_all()?;
    Ok((kl * (t * t / n))?)
}

/// `mean((z − z_src)²)` over every element of `student_logits` and `teacher_logits` (same
/// shape); the teacher's logits are detached.
pub fn logit_mse(student_logits: &Tensor, teacher_logits: &Tensor) -> Result<Tensor> {
    const L: &str = "logit_mse";
    check::float(L, "student_logits", student_logits)?;
    check::same_shape(
        L,
        ("student_logits", student_logits),
        ("teacher_logits", teacher_logits),
    )?;
    if student_logits.elem_count() == 0 {
        return Err(LossError::shape(
            L,
            "student_logits",
            student_logits.dims(),
            "at least one element",
        ));
    }
    Ok((student_logits - teacher_logits.detach())?
        .sqr()?
        .mean_all()?)
}

/// Feature closeness: `(1/N) Σ_j ‖F_j − F_j^src‖²_F` over pairs `(F_j, F_j^src)` of feature
/// maps of the new and the source model on the same batch (every tensor's first dimension is
/// the batch size `N`, the same for all pairs). The source maps are detached. This is DELTA's
/// behavioural regulariser with all attention weights equal to one (Li et al., ICLR 2019).
pub fn feature_closeness(pairs: &[(&Tensor, &Tensor)]) -> Result<Tensor> {
    const L: &str = "feature_closeness";
    let Some((first, _)) = pairs.first() else {
        return Err(LossError::argument(
            L,
            "pairs",
            "must hold at least one pair of feature maps",
        ));
    };
    let n = match first.dims().first() {
        Some(&n) if n > 0 => n,
        _ => {
            return Err(LossError::shape(
                L,
                "pairs[0].0",
                first.dims(),
                "a batch dimension first, with at least one example",
            ));
        }
    };
    let mut total: Option<Tensor> = None;
    for (j, (new, src)) in pairs.iter().enumerate() {
        let (a, b) = (format!("pairs[{j}].0"), format!("pairs[{j}].1"));
        check::float(L, &a, new)?;
        check::same_shape(L, (&a, new), (&b, src))?;
        if new.dims().first() != Some(&n) {
            return Err(LossError::shape(
                L,
                a,
                new.dims(),
                format!("batch size {n} first (that of `pairs[0].0`)"),
            ));
        }
        let d = (*new - src.detach())?.sqr()?.sum_all()?;
        total = Some(match total {
            None => d,
            Some(t) => (t + d.to_dtype(first.dtype())?)?,
        });
    }
    match total {
        Some(t) => Ok((t / n as f64)?),
        None => Err(LossError::argument(L, "pairs", "must not be empty")),
    }
}

/// Which output-closeness term a [`DistillationLoss`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputCloseness {
    /// `T² · KL(softmax(z_src/T) ‖ softmax(z/T))`, batch mean ([`kl_distillation`]).
    Kl {
        /// The temperature `T > 0`.
        temperature: f64,
    },
    /// `mean((z − z_src)²)` ([`logit_mse`]).
    LogitMse,
}

/// Output closeness as a value: `λ ·` [`kl_distillation`] or `λ ·` [`logit_mse`] between the
/// new model's and the source model's logits on the same inputs (LwF / distillation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillationLoss {
    weight: f64,
    kind: OutputCloseness,
}

impl DistillationLoss {
    /// `λ T² KL(softmax(z_src/T) ‖ softmax(z/T))`.
    pub fn kl(weight: f64, temperature: f64) -> Result<Self> {
        Ok(Self {
            weight: check::non_negative("distillation", "weight", weight)?,
            kind: OutputCloseness::Kl {
                temperature: check::positive("distillation", "temperature", temperature)?,
            },
        })
    }

    /// `λ mean((z − z_src)²)`.
    pub fn logit_mse(weight: f64) -> Result<Self> {
        Ok(Self {
            weight: check::non_negative("distillation", "weight", weight)?,
            kind: OutputCloseness::LogitMse,
        })
    }

    /// The term computed.
    pub fn kind(&self) -> OutputCloseness {
        self.kind
    }

    /// The loss of the new model's `student_logits` against the source model's
    /// `teacher_logits` (detached).
    pub fn forward(&self, student_logits: &Tensor, teacher_logits: &Tensor) -> Result<Tensor> {
        let l = match self.kind {
            OutputCloseness::Kl { temperature } => {
                kl_distillation(student_logits, teacher_logits, temperature)?
            }
            OutputCloseness::LogitMse => logit_mse(student_logits, teacher_logits)?,
        };
        Ok((l * self.weight)?)
    }
}
