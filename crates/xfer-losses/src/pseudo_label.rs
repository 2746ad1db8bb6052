//! Self-training with confident pseudo-labels (Lee, "Pseudo-Label", ICML-W 2013; the
//! confidence mask of FixMatch, Sohn et al., NeurIPS 2020; class balancing after Zou et al.,
//! "Class-Balanced Self-Training", ECCV 2018).
//!
//! A *teacher* view of an unlabelled batch gives `p = softmax(z_teacher)` (detached),
//! `ŷᵢ = argmax pᵢ` and the mask `mᵢ = [max pᵢ ≥ τ]`. The *student* view (the same samples,
//! or a strongly augmented copy in FixMatch) is trained on the kept pseudo-labels:
//!
//! `L = (1/N) Σᵢ mᵢ · bᵢ · CE(z_studentᵢ, ŷᵢ)`
//!
//! dividing by the batch size `N` (FixMatch), so the loss grows with the share of confident
//! examples. With class balancing `bᵢ = n_kept / (K · n_{ŷᵢ})` (`K` classes among the kept
//! pseudo-labels, `n_c` kept examples of class `c`): every pseudo-class carries the same
//! total weight, so the easy majority class cannot take over the target; without it `bᵢ = 1`.

use candle_core::{DType, Tensor};

use crate::{LossError, Result, check};

const PL: &str = "pseudo_label";

/// What [`pseudo_label_loss`] gives back.
#[derive(Debug, Clone)]
pub struct PseudoLabelOutput {
    /// `L`, a scalar (zero, still in the graph, when nothing passes the threshold).
    pub loss: Tensor,
    /// Fraction of the batch whose confidence reached the threshold.
    pub mask_rate: f64,
    /// The pseudo-label of every example (argmax of the teacher), kept or not.
    pub pseudo_labels: Vec<u32>,
}

/// The masked, optionally class-balanced pseudo-label loss (see the module documentation).
/// `teacher_logits` and `student_logits` are `(N, C)`; `threshold` must lie in `[0, 1]`.
pub fn pseudo_label_loss(
    teacher_logits: &Tensor,
    student_logits: &Tensor,
    threshold: f64,
    class_balance: bool,
) -> Result<PseudoLabelOutput> {
    let (n, c) = check::nonempty_matrix(PL, "teacher_logits", teacher_logits)?;
    check::nonempty_matrix(PL, "student_logits", student_logits)?;
    check::same_shape(
        PL,
        ("teacher_logits", teacher_logits),
        ("student_logits", student_logits),
    )?;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(LossError::argument(
            PL,
            "threshold",
            format!("must lie in [0, 1], got {threshold}"),
        ));
    }
    let p = xfer_ops::softmax(&teacher_logits.detach())?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    let mut labels = Vec::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for row in &p {
        let (arg, best) =
            row.iter()
                .enumerate()
                .fold((0usize, f64::NEG_INFINITY), |acc, (j, &v)| {
                    if v > acc.1 { (j, v) } else { acc }
                });
        labels.push(arg as u32);
        keep.push(best >= threshold);
    }
    let kept = keep.iter().filter(|k| **k).count();
    let mut counts = vec![0usize; c];
    for (l, k) in labels.iter().zip(&keep) {
        if *k && let Some(slot) = counts.get_mut(*l as usize) {
            *slot += 1;
        }
    }
    let classes = counts.iter().filter(|&&k| k > 0).count().max(1);
    let weights: Vec<f64> = labels
        .iter()
        .zip(&keep)
        .map(|(l, k)| match (*k, class_balance) {
            (false, _) => 0.0,
            (true, false) => 1.0,
            (true, true) => {
                let nc = counts.get(*l as usize).copied().unwrap_or(1).max(1);
                kept as f64 / (classes as f64 * nc as f64)
            }
        })
        .collect();
    let dev = student_logits.device();
    let dtype = student_logits.dtype();
    let w = Tensor::from_vec(weights, n, dev)?.to_dtype(dtype)?;
    let y = Tensor::from_vec(labels.clone(), n, dev)?;
    let log_p = xfer_ops::log_softmax(student_logits)?;
    let nll = log_p.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let loss = ((nll * w)?.sum_all()? / n as f64)?;
    Ok(PseudoLabelOutput {
        loss,
        mask_rate: kept as f64 / n as f64,
        pseudo_labels: labels,
    })
}
