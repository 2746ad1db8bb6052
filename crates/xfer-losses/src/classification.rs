//! Classification objectives: cross-entropy with label smoothing and class weights, the
//! entropy of predictions, and binary cross-entropy with logits that stays finite for any
//! logit.

use candle_core::{DType, Tensor};

use crate::{LossError, Reduction, Result, check};

/// Cross-entropy over class scores, with optional label smoothing (Szegedy et al., "Rethinking
/// the Inception Architecture", CVPR 2016) and per-class weights, following PyTorch's
/// `nn.CrossEntropyLoss` exactly.
///
/// With `p = softmax(z)`, the smoothed target `q_ic = (1 − ε)·[c = yᵢ] + ε/C` and class weights
/// `w_c` (all 1 by default):
///
/// `ℓᵢ = − Σ_c w_c · q_ic · log p_ic`
///
/// `Mean` divides `Σᵢ ℓᵢ` by `Σᵢ w_{yᵢ}` (the weighted count, as PyTorch does), `Sum` returns
/// `Σᵢ ℓᵢ`, `None` returns every `ℓᵢ`.
///
/// Logits are `(N, C)` floats; targets are `N` integer labels (u8, u32 or i64), every one of
/// which is checked against `0..C` before use.
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyLoss {
    label_smoothing: f64,
    class_weights: Option<Vec<f64>>,
    reduction: Reduction,
}

const CE: &str = "cross_entropy";

impl CrossEntropyLoss {
    /// Plain cross-entropy, mean over the batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Label smoothing `ε ∈ [0, 1]`.
    pub fn with_label_smoothing(mut self, epsilon: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(LossError::argument(
                CE,
                "label_smoothing",
                format!("must lie in [0, 1], got {epsilon}"),
            ));
        }
        self.label_smoothing = epsilon;
        Ok(self)
    }

    /// One weight `w_c ≥ 0` per class (length must equal the number of classes at use).
    pub fn with_class_weights(mut self, weights: impl Into<Vec<f64>>) -> Result<Self> {
        let weights = weights.into();
        if let Some((c, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(LossError::argument(
                CE,
                "class_weights",
                format!("must be finite and ≥ 0, got {w} for class {c}"),
            ));
        }
        self.class_weights = Some(weights);
        Ok(self)
    }

    /// How the per-example losses are combined.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss of `logits` `(N, C)` against integer `targets` `(N)`.
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.compute(logits, targets, None)
    }

    /// The loss over the examples where `mask` `(N)` is non-zero only; the labels of the other
    /// examples are ignored (they may hold placeholders such as −1). `Mean` divides by the
    /// weighted count of kept examples (a batch with none kept gives 0); `None` gives 0 at the
    /// dropped positions.
    pub fn forward_masked(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        self.compute(logits, targets, Some(mask))
    }

    fn compute(&self, logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (n, c) = check::nonempty_matrix(CE, "logits", logits)?;
        let keep = match mask {
            Some(m) => check::mask(CE, "mask", m, n)?,
            None => vec![true; n],
        };
        let labels = check::labels(CE, "targets", targets, n, c, Some(&keep))?;
        let weights = match &self.class_weights {
            Some(w) if w.len() != c => {
                return Err(LossError::argument(
                    CE,
                    "class_weights",
                    format!("has {} entries but `logits` has {c} classes", w.len()),
                ));
            }
            Some(w) => w.clone(),
            None => vec![1.0; c],
        };
        let eps = self.label_smoothing;
        // ℓᵢ = mᵢ [(1 − ε) w_{yᵢ} (−log p_{i,yᵢ}) + (ε/C) Σ_c w_c (−log p_ic)]: a gather and a
        // matrix–vector product, so only O(N + C) values travel to the device.
        let mut picked_weight = Vec::with_capacity(n);
        let mut kept = Vec::with_capacity(n);
        let mut denom = 0f64;
        for (&y, &k) in labels.iter().zip(&keep) {
            let w_y = if k {
                weights.get(y as usize).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            denom += w_y;
            picked_weight.push((1.0 - eps) * w_y);
            kept.push(if k { 1.0 } else { 0.0 });
        }
        let dev = logits.device();
        let dtype = logits.dtype();
        let upload = |v: Vec<f64>, shape: (usize, usize)| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, &candle_core::Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(dev)?)
        };
        let log_p = xfer_ops::log_softmax(logits)?;
        let idx = Tensor::from_vec(labels, (n, 1), dev)?;
        let picked = log_p.gather(&idx, 1)?.squeeze(1)?;
        let mut per_example = (picked * upload(picked_weight, (n, 1))?.squeeze(1)?)?.neg()?;
        if eps > 0.0 {
            let w_col = upload(weights, (c, 1))?;
            let smooth = log_p.matmul(&w_col)?.squeeze(1)?;
            let scale = (upload(kept, (n, 1))?.squeeze(1)? * (eps / c as f64))?;
            per_example = (per_example - (smooth * scale)?)?;
        }
        Ok(match self.reduction {
            Reduction::Mean => {
                let d = if denom > 0.0 { denom } else { 1.0 };
                (per_example.sum_all()? / d)?
            }
            r => r.apply(&per_example)?,
        })
    }
}

/// Plain cross-entropy `−(1/N) Σᵢ log softmax(zᵢ)_{yᵢ}` of `logits` `(N, C)` against integer
/// `targets` `(N)`; see [`CrossEntropyLoss`] for smoothing, class weights and reductions.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    CrossEntropyLoss::new().forward(logits, targets)
}

/// Entropy of the predicted class distribution, `Hᵢ = −Σ_c p_ic log p_ic` with
/// `p = softmax(z)` computed from `logits` `(N, C)` stably (log-softmax, never `log(0)`).
/// Minimised on unlabelled target data it pushes predictions to be confident (entropy
/// minimisation, Grandvalet & Bengio, NIPS 2004; used with DANN as in TLlib).
pub fn prediction_entropy(logits: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check::nonempty_matrix("prediction_entropy", "logits", logits)?;
    let log_p = xfer_ops::log_softmax(logits)?;
    let p = log_p.exp()?;
    let h = (p * log_p)?.sum(1)?.neg()?;
    reduction.apply(&h)
}

/// Binary cross-entropy with logits, `ℓ = −[y log σ(x) + (1 − y) log(1 − σ(x))]`, computed as
/// `max(x, 0) − x·y + log(1 + exp(−|x|))`, which is finite with a correct gradient
/// (`σ(x) − y`) for any finite logit, even ±1000 where `log σ(x)` underflows.
///
/// `logits` and `targets` have the same shape and float dtype; every target must lie in
/// `[0, 1]` (soft targets allowed). `Mean` and `Sum` reduce over all elements.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
    const L: &str = "bce_with_logits";
    check::float(L, "logits", logits)?;
    check::same_shape(L, ("logits", logits), ("targets", targets))?;
    if logits.elem_count() == 0 {
        return Err(LossError::shape(
            L,
            "logits",
            logits.dims(),
            "at least one element",
        ));
    }
    target_range(L, "targets", targets)?;
    reduction.apply(&bce_elementwise(logits, targets)?)
}

/// Element-wise stable BCE with logits (no checks).
pub(crate) fn bce_elementwise(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((logits.relu()? - (logits * targets)?)? + softplus_neg_abs)?)
}

/// Every element of a float target tensor must lie in `[0, 1]`.
pub(crate) fn target_range(loss: &'static str, name: &str, t: &Tensor) -> Result<()> {
    let flat = t.flatten_all()?;
    let lo = flat.min(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let hi = flat.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !(lo >= 0.0 && hi <= 1.0) {
        return Err(LossError::Argument {
            loss,
            arg: "targets",
            msg: format!("`{name}` must lie in [0, 1], found values in [{lo}, {hi}]"),
        });
    }
    Ok(())
}
