//! Minimum class confusion (Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile
//! Domain Adaptation", ECCV 2020).
//!
//! On a target batch of logits `Z` `(N, C)`:
//!
//! ```text
//! Ŷ   = softmax(Z / T)                                   temperature rescaling (T = 2.5)
//! wᵢ  = N (1 + e^{−H(Ŷᵢ)}) / Σⱼ (1 + e^{−H(Ŷⱼ)})         uncertainty reweighting (detached)
//! C   = Ŷᵀ diag(w) Ŷ                                     class correlation (C × C)
//! C̃ⱼₖ = Cⱼₖ / Σₖ' Cⱼₖ'                                   category normalisation (rows sum to 1)
//! L   = (1/C) Σⱼ Σ_{k≠j} C̃ⱼₖ                             cross-class confusion
//! ```
//!
//! `L ∈ [0, 1)`: 0 when no example spreads probability over two classes. Minimised on target
//! data alone (no labels, no discriminator), it can be used alone or added to DANN/CDAN.
//! The rows are normalised as in the paper (TLlib divides by the row sums broadcast along
//! the columns; with the symmetric `C` the two agree only on the diagonal scale).

use candle_core::Tensor;

use crate::{LossError, Result, check};

const MCC: &str = "mcc";

/// The paper's temperature.
pub const MCC_TEMPERATURE: f64 = 2.5;

/// MCC with example weights given: `L = (1/C) Σⱼ Σ_{k≠j} C̃ⱼₖ` with `C = Ŷᵀ diag(w) Ŷ`,
/// `Ŷ = softmax(logits / temperature)`. `weights` `(N)` are used as given (no gradient flows
/// into them if they are detached); [`minimum_class_confusion`] computes the paper's.
pub fn minimum_class_confusion_weighted(
    logits: &Tensor,
    temperature: f64,
    weights: &Tensor,
) -> Result<Tensor> {
    let (n, c) = check::nonempty_matrix(MCC, "logits", logits)?;
    check::positive(MCC, "temperature", temperature)?;
    if weights.dims() != [n] {
        return Err(LossError::shape(
            MCC,
            "weights",
            weights.dims(),
            format!("({n}): one weight per row of `logits`"),
        ));
    }
    check::same_dtype(MCC, ("logits", logits), ("weights", weights))?;
    let p = xfer_ops::softmax(&(logits / temperature)?)?;
    let pw = p.broadcast_mul(&weights.unsqueeze(1)?)?;
    let conf = pw.t()?.matmul(&p)?; // (C, C)
    let row = conf.sum_keepdim(1)?;
    let norm = conf.broadcast_div(&row)?;
    let eye = Tensor::eye(c, norm.dtype(), norm.device())?;
    let trace = (&norm * eye)?.sum_all()?;
    let total = norm.sum_all()?;
    Ok(((total - trace)? / c as f64)?)
}

/// MCC with the paper's uncertainty weights `wᵢ = N (1 + e^{−Hᵢ}) / Σⱼ (1 + e^{−Hⱼ})` of the
/// rescaled predictions, detached (see the module documentation).
pub fn minimum_class_confusion(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    check::nonempty_matrix(MCC, "logits", logits)?;
    check::positive(MCC, "temperature", temperature)?;
    let p = xfer_ops::softmax(&(logits.detach() / temperature)?)?;
    let w = crate::cdan::entropy_weights(&p)?;
    minimum_class_confusion_weighted(logits, temperature, &w)
}
