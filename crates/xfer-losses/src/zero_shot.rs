//! Zero-shot learning objectives: compatibility scores between inputs and class embeddings,
//! the lecture's hinge (and its DeViSE and ALE relatives), and attribute prediction for DAP.
//!
//! The lecture's attribute-embedding objective (section 4 of LECTURE.md):
//!
//! `f*, g* = argmin Σₙ max(0, k − f(xⁿ)·g(yⁿ) + max_{m≠n} f(xⁿ)·g(yᵐ))`
//!
//! where `m` ranges over the candidate classes other than `xⁿ`'s own class: zero exactly when
//! every example's own class beats every other class by the margin `k`.

use candle_core::{DType, Device, Tensor};

use crate::classification::{bce_elementwise, target_range};
use crate::{LossError, Reduction, Result, check};

const ZS: &str = "zero_shot_hinge";

/// How `f(x)` and `g(y)` are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compatibility {
    /// `f(x)·g(y)` (the lecture's).
    #[default]
    Dot,
    /// `f(x)·g(y) / (‖f(x)‖ ‖g(y)‖)`, with each norm floored at 1e-8 so a zero vector scores 0.
    Cosine,
}

/// Scores `(N, C)` of `inputs` `(N, D)` (the embeddings `f(x)`) against every class embedding
/// of `classes` `(C, D)` (the `g(y)`): `S_nc = f(xⁿ)·g(y_c)`, or the cosine. Inference is
/// `argmax_c S_nc` over the classes allowed at test time.
pub fn compatibility(inputs: &Tensor, classes: &Tensor, kind: Compatibility) -> Result<Tensor> {
    const L: &str = "compatibility";
    let (_, d) = check::nonempty_matrix(L, "inputs", inputs)?;
    let (_, dc) = check::nonempty_matrix(L, "classes", classes)?;
    if dc != d {
        return Err(LossError::shape(
            L,
            "classes",
            classes.dims(),
            format!(
                "(C, {d}): the embedding size of `inputs` {:?}",
                inputs.dims()
            ),
        ));
    }
    check::same_dtype(L, ("inputs", inputs), ("classes", classes))?;
    Ok(match kind {
        Compatibility::Dot => inputs.matmul(&classes.t()?)?,
        Compatibility::Cosine => normalise_rows(inputs)?.matmul(&normalise_rows(classes)?.t()?)?,
    })
}

fn normalise_rows(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-8, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Which negatives a [`ZeroShotHinge`] charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HingeVariant {
    /// The lecture's: only the hardest negative,
    /// `ℓₙ = max(0, k − S_{n,yₙ} + max_{c≠yₙ} S_{n,c})`.
    #[default]
    HardestNegative,
    /// DeViSE (Frome et al., NIPS 2013): every violating class,
    /// `ℓₙ = Σ_{c≠yₙ} max(0, k − S_{n,yₙ} + S_{n,c})`.
    AllViolators,
    /// ALE (Akata et al., "Label-Embedding for Attribute-Based Classification", CVPR 2013):
    /// the DeViSE sum weighted by the rank of the true class,
    /// `ℓₙ = (γ(rₙ)/rₙ) Σ_{c≠yₙ} max(0, k − S_{n,yₙ} + S_{n,c})`, with `rₙ` the number of
    /// violating classes and `γ(r) = Σ_{i=1}^{r} 1/i` (WSABIE's weights); the weight is held
    /// constant for the gradient, as in the paper.
    RankWeighted,
}

/// The zero-shot ranking hinge over compatibility scores `S` `(N, C)` and true classes `y`
/// `(N)`; see [`HingeVariant`] for the three forms. `Mean` (default) averages `ℓₙ` over the
/// batch, `Sum` adds them (the lecture's `Σₙ`), `None` returns each `ℓₙ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroShotHinge {
    margin: f64,
    variant: HingeVariant,
    reduction: Reduction,
}

impl ZeroShotHinge {
    /// The lecture's hinge (hardest negative) with margin `k ≥ 0`, mean over the batch.
    pub fn new(margin: f64) -> Result<Self> {
        Ok(Self {
            margin: check::non_negative(ZS, "margin", margin)?,
            variant: HingeVariant::HardestNegative,
            reduction: Reduction::Mean,
        })
    }

    /// Chooses the variant.
    pub fn with_variant(mut self, variant: HingeVariant) -> Self {
        self.variant = variant;
        self
    }

    /// Chooses the reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The margin `k`.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The hinge for `scores` `(N, C)` (at least two classes) and integer `labels` `(N)` in
    /// `0..C` (checked before use).
    pub fn forward(&self, scores: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let (n, c) = check::nonempty_matrix(ZS, "scores", scores)?;
        if c < 2 {
            return Err(LossError::shape(
                ZS,
                "scores",
                scores.dims(),
                "at least two classes (a hinge needs a negative)",
            ));
        }
        let y = check::labels(ZS, "labels", labels, n, c, None)?;
        let dtype = scores.dtype();
        let dev = scores.device();
        let is_pos = check::label_matrix(&y, c, 1.0, 0.0, DType::U8, dev)?;
        let pos = (scores * is_pos.to_dtype(dtype)?)?.sum_keepdim(1)?; // (N, 1)
        let per = match self.variant {
            HingeVariant::HardestNegative => {
                let neg_inf = Tensor::full(f64::NEG_INFINITY, (n, c), dev)?.to_dtype(dtype)?;
                let hardest = is_pos.where_cond(&neg_inf, scores)?.max_keepdim(1)?;
                check::positive_part(&((hardest - pos)? + self.margin)?)?.squeeze(1)?
            }
            HingeVariant::AllViolators | HingeVariant::RankWeighted => {
                let neg = check::label_matrix(&y, c, 0.0, 1.0, dtype, dev)?;
                let margins = (scores.broadcast_sub(&pos)? + self.margin)?;
                let viol = (check::positive_part(&margins)? * neg)?;
                let sum = viol.sum(1)?;
                if self.variant == HingeVariant::RankWeighted {
                    let counts = viol
                        .detach()
                        .gt(0.0)?
                        .to_dtype(DType::F64)?
                        .sum(1)?
                        .to_vec1::<f64>()?;
                    let w: Vec<f64> = counts.iter().map(|&r| rank_weight(r as usize)).collect();
                    let w = Tensor::from_vec(w, n, &Device::Cpu)?
                        .to_dtype(dtype)?
                        .to_device(dev)?;
                    (sum * w)?
                } else {
                    sum
                }
            }
        };
        self.reduction.apply(&per)
    }
}

/// `γ(r)/r` with `γ(r) = Σ_{i=1}^{r} 1/i`; 0 for `r = 0`.
fn rank_weight(r: usize) -> f64 {
    if r == 0 {
        return 0.0;
    }
    (1..=r).map(|i| 1.0 / i as f64).sum::<f64>() / r as f64
}

/// Attribute-prediction loss for DAP (Lampert, Nickisch & Harmeling, "Learning To Detect
/// Unseen Object Classes by Between-Class Attribute Transfer", CVPR 2009): each of the `A`
/// attributes is a binary classifier, trained with the mean binary cross-entropy
/// `(1/(N·A)) Σₙ Σₐ BCE(zₙₐ, a_{yₙ,a})` against the attribute vector of the example's class.
///
/// `attribute_logits` `(N, A)`, `class_attributes` `(C, A)` with values in `[0, 1]`, `labels`
/// `(N)` in `0..C` (checked). For per-example attribute targets use
/// [`crate::bce_with_logits`] directly.
pub fn attribute_bce(
    attribute_logits: &Tensor,
    class_attributes: &Tensor,
    labels: &Tensor,
) -> Result<Tensor> {
    const L: &str = "attribute_bce";
    let (n, a) = check::nonempty_matrix(L, "attribute_logits", attribute_logits)?;
    let (c, ac) = check::nonempty_matrix(L, "class_attributes", class_attributes)?;
    if ac != a {
        return Err(LossError::shape(
            L,
            "class_attributes",
            class_attributes.dims(),
            format!(
                "(C, {a}): the attribute count of `attribute_logits` {:?}",
                attribute_logits.dims()
            ),
        ));
    }
    check::same_dtype(
        L,
        ("attribute_logits", attribute_logits),
        ("class_attributes", class_attributes),
    )?;
    target_range(L, "class_attributes", class_attributes)?;
    let y = check::labels(L, "labels", labels, n, c, None)?;
    let idx = Tensor::from_vec(y, n, class_attributes.device())?;
    let targets = class_attributes.index_select(&idx, 0)?.detach();
    Ok(bce_elementwise(attribute_logits, &targets)?.mean_all()?)
}

/// DAP's class scores `(N, C)`: the log-likelihood of each class's attribute vector under the
/// independent attribute predictions, `Σₐ [a_ca log σ(zₙₐ) + (1 − a_ca) log σ(−zₙₐ)]`
/// (Lampert et al., CVPR 2009, with a uniform class prior); `argmax_c` picks the class whose
/// attributes the predictions fit best. Computed stably from logits.
pub fn dap_class_scores(attribute_logits: &Tensor, class_attributes: &Tensor) -> Result<Tensor> {
    const L: &str = "dap_class_scores";
    let (_, a) = check::nonempty_matrix(L, "attribute_logits", attribute_logits)?;
    let (_, ac) = check::nonempty_matrix(L, "class_attributes", class_attributes)?;
    if ac != a {
        return Err(LossError::shape(
            L,
            "class_attributes",
            class_attributes.dims(),
            format!(
                "(C, {a}): the attribute count of `attribute_logits` {:?}",
                attribute_logits.dims()
            ),
        ));
    }
    check::same_dtype(
        L,
        ("attribute_logits", attribute_logits),
        ("class_attributes", class_attributes),
    )?;
    target_range(L, "class_attributes", class_attributes)?;
    let z = attribute_logits;
    // log σ(z) = −(max(−z, 0) + log(1 + exp(−|z|))), log σ(−z) = −(max(z, 0) + log(1 + exp(−|z|))).
    let soft = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let log_sig = (z.neg()?.relu()? + &soft)?.neg()?;
    let log_sig_neg = (z.relu()? + &soft)?.neg()?;
    let present = class_attributes.t()?;
    let absent = (1.0 - class_attributes)?.t()?;
    Ok((log_sig.matmul(&present)? + log_sig_neg.matmul(&absent)?)?)
}
