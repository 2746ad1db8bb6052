//! Label-free model selection for domain adaptation: scores that rank checkpoints and
//! hyper-parameters without target labels (what SKADA calls scorers), for an
//! [`crate::Evaluator`] to log and [`crate::EarlyStopping`] or a sweep to choose by.
//!
//! | scorer | better | needs | score |
//! |---|---|---|---|
//! | [`Scorer::SourceAcc`] | max | source val labels | accuracy on held-out source data |
//! | [`Scorer::Entropy`] | min | target inputs | mean prediction entropy on the target |
//! | [`Scorer::Snd`] | max | target inputs | soft neighbourhood density (Saito et al., ICCV 2021) |
//! | [`Scorer::Iwv`] | max | both | importance-weighted source val accuracy (Sugiyama et al., JMLR 2007), density ratio in input space |
//! | [`Scorer::Dev`] | min | both | deep embedded validation risk (You et al., ICML 2019), density ratio on the model's features, with the control variate |
//!
//! The density ratio `w(x) = p_T(x)/p_S(x)` comes from a domain classifier (L2-regularised
//! logistic regression on standardised inputs/features, labels source 0 / target 1):
//! `w(x) = (n_S/n_T) · P(T|x)/P(S|x)`, with `P` clipped to `[10⁻³, 1 − 10⁻³]`.
//! No scorer reads a target label.

use std::str::FromStr;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::history::{EvalRecord, Metrics};
use crate::metrics::{self, LogisticRegression};
use crate::trainer::Mode;
use crate::{Result, TrainError};

/// SND's temperature (the paper's τ = 0.05).
pub const SND_TEMPERATURE: f64 = 0.05;

/// L2 strength of the density-ratio domain classifier.
const RATIO_L2: f64 = 1e-2;

/// Clip of the domain classifier's probabilities (bounds the importance weights).
const RATIO_CLIP: f64 = 1e-3;

/// A label-free (or source-only) score of a model (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// Accuracy on held-out labelled source data.
    SourceAcc,
    /// Mean prediction entropy on the target inputs (lower is better).
    Entropy,
    /// Soft neighbourhood density of the target predictions (higher is better).
    Snd,
    /// Importance-weighted source validation accuracy (higher is better).
    Iwv,
    /// Deep embedded validation risk (lower is better).
    Dev,
}

impl Scorer {
    /// Every scorer.
    pub const ALL: [Scorer; 5] = [
        Scorer::SourceAcc,
        Scorer::Entropy,
        Scorer::Snd,
        Scorer::Iwv,
        Scorer::Dev,
    ];

    /// The name on the command line and in reports: `source_acc`, `entropy`, `snd`, `iwv`,
    /// `dev`.
    pub fn name(&self) -> &'static str {
        match self {
            Scorer::SourceAcc => "source_acc",
            Scorer::Entropy => "entropy",
            Scorer::Snd => "snd",
            Scorer::Iwv => "iwv",
            Scorer::Dev => "dev",
        }
    }

    /// The evaluation metric the score is logged as (see [`score_all`]).
    pub fn metric(&self) -> &'static str {
        match self {
            Scorer::SourceAcc => "source_val_acc",
            Scorer::Entropy => "target_entropy",
            Scorer::Snd => "snd",
            Scorer::Iwv => "iwv",
            Scorer::Dev => "dev_risk",
        }
    }

    /// Whether larger or smaller is better.
    pub fn mode(&self) -> Mode {
        match self {
            Scorer::SourceAcc | Scorer::Snd | Scorer::Iwv => Mode::Max,
            Scorer::Entropy | Scorer::Dev => Mode::Min,
        }
    }

    /// Whether score `a` beats score `b` (NaN never wins).
    pub fn better(&self, a: f64, b: f64) -> bool {
        if a.is_nan() {
            return false;
        }
        if b.is_nan() {
            return true;
        }
        match self.mode() {
            Mode::Max => a > b,
            Mode::Min => a < b,
        }
    }
}

impl std::fmt::Display for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scorer {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        Scorer::ALL
            .into_iter()
            .find(|sc| sc.name() == norm)
            .ok_or_else(|| {
                TrainError::invalid(
                    "scorer",
                    format!("`{s}`"),
                    "one of source_acc, entropy, snd, iwv, dev (unknown scorer)",
                )
            })
    }
}

fn rows_f64(t: &Tensor, what: &'static str) -> Result<Vec<Vec<f64>>> {
    if t.rank() != 2 || t.dim(0)? == 0 || t.dim(1)? == 0 {
        return Err(TrainError::metric(
            what,
            format!("expected a non-empty (n, d) matrix, got {:?}", t.dims()),
        ));
    }
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// The density ratio `p_T(x)/p_S(x)` estimated by a domain classifier (see the module
/// documentation).
#[derive(Debug)]
pub struct DensityRatio {
    clf: LogisticRegression,
    /// `n_S / n_T` of the fit (undoes the classifier's prior odds).
    prior: f64,
    dim: usize,
}

impl DensityRatio {
    /// Fits the domain classifier on `source` `(n_S, d)` (label 0) and `target` `(n_T, d)`
    /// (label 1) rows; inputs of higher rank are flattened per row.
    pub fn fit(source: &Tensor, target: &Tensor) -> Result<Self> {
        let s = rows_f64(&source.flatten_from(1)?, "density_ratio")?;
        let t = rows_f64(&target.flatten_from(1)?, "density_ratio")?;
        let d = s.first().map(Vec::len).unwrap_or(0);
        if t.first().map(Vec::len) != Some(d) {
            return Err(TrainError::metric(
                "density_ratio",
                format!(
                    "source rows have {d} values but target rows {:?}",
                    t.first().map(Vec::len)
                ),
            ));
        }
        let data: Vec<(&[f64], f64)> = s
            .iter()
            .map(|r| (r.as_slice(), 0.0))
            .chain(t.iter().map(|r| (r.as_slice(), 1.0)))
            .collect();
        let clf = LogisticRegression::fit(&data, d, RATIO_L2)?;
        Ok(Self {
            clf,
            prior: s.len() as f64 / t.len() as f64,
            dim: d,
        })
    }

    /// `w(x)` for every row of `x`.
    pub fn weights(&self, x: &Tensor) -> Result<Vec<f64>> {
        let rows = rows_f64(&x.flatten_from(1)?, "density_ratio")?;
        if rows.first().map(Vec::len) != Some(self.dim) {
            return Err(TrainError::metric(
                "density_ratio",
                format!("fitted on rows of {} values, got {:?}", self.dim, x.dims()),
            ));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let p = self.clf.predict(r).clamp(RATIO_CLIP, 1.0 - RATIO_CLIP);
                self.prior * p / (1.0 - p)
            })
            .collect())
    }
}

/// Soft neighbourhood density (Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, ICCV 2021):
/// the softmax predictions `p` of the target are L2-normalised, their similarities
/// `s_ij = ⟨p_i, p_j⟩/τ` (the diagonal set to `−1/τ`, as the authors' code) turned into a
/// neighbour distribution per row by a softmax, and SND is the mean entropy of those rows.
/// High: every target point has many soft neighbours (dense, well-clustered predictions).
pub fn snd(target_logits: &Tensor, temperature: f64) -> Result<f64> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(TrainError::metric(
            "snd",
            format!("temperature {temperature} must be finite and > 0"),
        ));
    }
    rows_f64(target_logits, "snd")?;
    let p = xfer_ops::softmax(&target_logits.to_dtype(DType::F64)?)?;
    let norm = p.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    let p = p.broadcast_div(&norm)?;
    let sim = (p.matmul(&p.t()?)? / temperature)?.to_vec2::<f64>()?;
    let n = sim.len();
    let mut total = 0.0;
    for (i, row) in sim.iter().enumerate() {
        let row: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(j, &v)| if i == j { -1.0 / temperature } else { v })
            .collect();
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let lz = z.ln();
        let h: f64 = row
            .iter()
            .map(|v| {
                let lp = v - m - lz;
                let q = lp.exp();
                if q > 0.0 { -q * lp } else { 0.0 }
            })
            .sum();
        total += h;
    }
    Ok(total / n as f64)
}

/// Per-example cross-entropy `−log softmax(z_i)_{y_i}` of `logits` `(n, C)` and integer
/// `labels` `(n)`.
pub fn per_example_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Vec<f64>> {
    let rows = rows_f64(logits, "cross_entropy")?;
    let y = metrics::labels_to_vec(labels)?;
    if y.len() != rows.len() {
        return Err(TrainError::metric(
            "cross_entropy",
            format!("{} labels for {} rows of logits", y.len(), rows.len()),
        ));
    }
    rows.iter()
        .zip(&y)
        .map(|(r, &c)| {
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lz = r.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
            r.get(c).map(|v| lz - v).ok_or_else(|| {
                TrainError::metric(
                    "cross_entropy",
                    format!("label {c} outside 0..{} classes", r.len()),
                )
            })
        })
        .collect()
}

/// Importance-weighted accuracy `Σ wᵢ [ŷᵢ = yᵢ] / Σ wᵢ` (self-normalised IWV).
pub fn importance_weighted_accuracy(
    weights: &[f64],
    logits: &Tensor,
    labels: &Tensor,
) -> Result<f64> {
    let pred = metrics::argmax_rows(logits)?;
    let y = metrics::labels_to_vec(labels)?;
    if weights.len() != y.len() || pred.len() != y.len() {
        return Err(TrainError::metric(
            "iwv",
            format!(
                "{} weights, {} predictions and {} labels must agree",
                weights.len(),
                pred.len(),
                y.len()
            ),
        ));
    }
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(TrainError::metric(
            "iwv",
            format!("the weights sum to {total}"),
        ));
    }
    let right: f64 = weights
        .iter()
        .zip(pred.iter().zip(&y))
        .filter(|(_, (p, t))| p == t)
        .map(|(w, _)| w)
        .sum();
    Ok(right / total)
}

/// Deep embedded validation's risk with its control variate (You, Wang, Long & Wang, ICML
/// 2019, Algorithm 1): `Lᵢ = wᵢ ℓᵢ`, `η = −Cov(L, w)/Var(w)`,
/// `R = mean(L) + η mean(w) − η` (`E[w] = 1` under the source, so the correction has mean
/// zero and cuts the variance). With constant weights `η = 0` and `R = mean(L)`.
pub fn deep_embedded_validation(weights: &[f64], losses: &[f64]) -> Result<f64> {
    let n = weights.len();
    if n < 2 || losses.len() != n {
        return Err(TrainError::metric(
            "dev",
            format!(
                "needs at least two examples with one weight each, got {n} weights and {} losses",
                losses.len()
            ),
        ));
    }
    let wl: Vec<f64> = weights.iter().zip(losses).map(|(w, l)| w * l).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ml, mw) = (mean(&wl), mean(weights));
    let cov = wl
        .iter()
        .zip(weights)
        .map(|(l, w)| (l - ml) * (w - mw))
        .sum::<f64>()
        / (n - 1) as f64;
    let var = weights.iter().map(|w| (w - mw).powi(2)).sum::<f64>() / (n - 1) as f64;
    let eta = if var > 1e-12 { -cov / var } else { 0.0 };
    Ok(ml + eta * mw - eta)
}

/// What [`score_all`] reads: the model's outputs on held-out source data (with labels) and
/// on the target inputs (no labels).
#[derive(Debug, Clone, Copy)]
pub struct ScoreInputs<'a> {
    /// Logits on the source validation inputs `(n_S, C)`.
    pub source_logits: &'a Tensor,
    /// Source validation labels `(n_S)`.
    pub source_labels: &'a Tensor,
    /// Features on the source validation inputs `(n_S, D)`.
    pub source_features: &'a Tensor,
    /// Logits on the target inputs `(n_T, C)`.
    pub target_logits: &'a Tensor,
    /// Features on the target inputs `(n_T, D)`.
    pub target_features: &'a Tensor,
    /// Input-space importance weights of the source validation rows (IWV), fitted once per
    /// task with [`DensityRatio`]; without them IWV is not reported.
    pub input_weights: Option<&'a [f64]>,
}

/// Every scorer's value, named by [`Scorer::metric`].
pub fn score_all(inp: &ScoreInputs) -> Result<Metrics> {
    let mut m = Metrics::new();
    m.push((
        Scorer::SourceAcc.metric().into(),
        metrics::accuracy_from_logits(inp.source_logits, inp.source_labels)?,
    ));
    m.push((
        Scorer::Entropy.metric().into(),
        metrics::prediction_entropy(inp.target_logits)?,
    ));
    m.push((
        Scorer::Snd.metric().into(),
        snd(inp.target_logits, SND_TEMPERATURE)?,
    ));
    if let Some(w) = inp.input_weights {
        m.push((
            Scorer::Iwv.metric().into(),
            importance_weighted_accuracy(w, inp.source_logits, inp.source_labels)?,
        ));
    }
    let ratio = DensityRatio::fit(inp.source_features, inp.target_features)?;
    let w = ratio.weights(inp.source_features)?;
    let losses = per_example_cross_entropy(inp.source_logits, inp.source_labels)?;
    m.push((
        Scorer::Dev.metric().into(),
        deep_embedded_validation(&w, &losses)?,
    ));
    Ok(m)
}

/// The index of the candidate with the best `scorer` value among `candidates` (metrics of
/// evaluations, of one run or of many); `None` when no candidate has the metric. Ties keep
/// the earliest.
pub fn best_index<'a>(
    candidates: impl IntoIterator<Item = &'a Metrics>,
    scorer: Scorer,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, m) in candidates.into_iter().enumerate() {
        let Some(v) = crate::history::metric(m, scorer.metric()) else {
            continue;
        };
        match best {
            Some((_, b)) if !scorer.better(v, b) => {}
            _ if v.is_nan() => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// The evaluation of `evals` with the best `scorer` value.
pub fn best_eval(evals: &[EvalRecord], scorer: Scorer) -> Option<&EvalRecord> {
    best_index(evals.iter().map(|e| &e.metrics), scorer).and_then(|i| evals.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t2(data: &[f64], r: usize, c: usize) -> Tensor {
        Tensor::from_vec(data.to_vec(), (r, c), &Device::Cpu).unwrap()
    }

    #[test]
    fn scorer_names_parse_and_unknown_is_a_one_line_error() {
        for s in Scorer::ALL {
            assert_eq!(s.name().parse::<Scorer>().unwrap(), s);
        }
        assert_eq!("source-acc".parse::<Scorer>().unwrap(), Scorer::SourceAcc);
        let e = "oracle".parse::<Scorer>().unwrap_err().to_string();
        assert!(
            e.contains("oracle") && e.contains("dev") && !e.contains('\n'),
            "{e}"
        );
        assert_eq!(Scorer::Dev.mode(), Mode::Min);
        assert!(Scorer::Snd.better(2.0, 1.0) && Scorer::Entropy.better(1.0, 2.0));
        assert!(!Scorer::Snd.better(f64::NAN, 1.0));
    }

    #[test]
    fn snd_matches_hand_computation() {
        // Two classes, three target rows. p normalised: rows a = (1, 0), b = (0, 1),
        // c = (1, 1)/√2 (logits equal). Similarities /τ with τ = 1.
        let logits = t2(&[50.0, -50.0, -50.0, 50.0, 0.0, 0.0], 3, 2);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        let sims = [[-1.0, 0.0, r], [0.0, -1.0, r], [r, r, -1.0]];
        let mut want = 0.0;
        for row in sims {
            let z: f64 = row.iter().map(|v: &f64| v.exp()).sum();
            want += -row
                .iter()
                .map(|v| {
                    let q = v.exp() / z;
                    q * q.ln()
                })
                .sum::<f64>();
        }
        want /= 3.0;
        let got = snd(&logits, 1.0).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!(snd(&logits, 0.0).is_err());
    }

    #[test]
    fn snd_prefers_clustered_predictions() {
        // Many rows sharing two confident predictions vs rows spread over ten classes.
        let mut clustered = Vec::new();
        let mut spread = Vec::new();
        for i in 0..20 {
            let mut a = vec![0.0; 10];
            a[i % 2] = 8.0;
            clustered.extend(a);
            let mut b = vec![0.0; 10];
            b[i % 10] = 8.0;
            spread.extend(b);
        }
        let a = snd(&t2(&clustered, 20, 10), SND_TEMPERATURE).unwrap();
        let b = snd(&t2(&spread, 20, 10), SND_TEMPERATURE).unwrap();
        assert!(a > b, "clustered {a} vs spread {b}");
    }

    #[test]
    fn dev_control_variate_matches_hand_computation() {
        let w = [0.5, 1.0, 1.5, 1.0];
        let l = [1.0, 2.0, 0.5, 1.0];
        let wl = [0.5, 2.0, 0.75, 1.0];
        let ml = wl.iter().sum::<f64>() / 4.0;
        let mw = 1.0;
        let cov = wl
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - ml) * (b - mw))
            .sum::<f64>()
            / 3.0;
        let var = w.iter().map(|b| (b - mw) * (b - mw)).sum::<f64>() / 3.0;
        let eta = -cov / var;
        let want = ml + eta * mw - eta;
        let got = deep_embedded_validation(&w, &l).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Constant weights: the plain mean of the losses.
        let got = deep_embedded_validation(&[1.0; 4], &l).unwrap();
        assert!((got - 1.125).abs() < 1e-12);
        assert!(deep_embedded_validation(&[1.0], &[1.0]).is_err());
    }

    #[test]
    fn importance_weighted_accuracy_weighs_each_example() {
        let logits = t2(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], 3, 2);
        let labels = Tensor::new(&[0u32, 0, 0], &Device::Cpu).unwrap();
        let acc = importance_weighted_accuracy(&[1.0, 3.0, 1.0], &logits, &labels).unwrap();
        assert!((acc - 2.0 / 5.0).abs() < 1e-12);
        assert!(importance_weighted_accuracy(&[1.0], &logits, &labels).is_err());
    }

    #[test]
    fn density_ratio_up_weights_source_rows_that_look_like_the_target() {
        // Source on both sides of 0, target only on the right: right-hand source rows weigh more.
        let src: Vec<f64> = (0..40).map(|i| -2.0 + i as f64 * 0.1).collect();
        let tgt: Vec<f64> = (0..40).map(|i| 0.5 + i as f64 * 0.05).collect();
        let r = DensityRatio::fit(&t2(&src, 40, 1), &t2(&tgt, 40, 1)).unwrap();
        let w = r.weights(&t2(&[-1.5, 0.0, 1.5], 3, 1)).unwrap();
        assert!(w[0] < w[1] && w[1] < w[2], "{w:?}");
        assert!(r.weights(&t2(&[0.0, 0.0], 1, 2)).is_err());
    }

    #[test]
    fn best_index_follows_the_scorer_mode_and_skips_missing_metrics() {
        let e = |v: f64| vec![("dev_risk".to_string(), v), ("snd".to_string(), -v)];
        let cands = [e(0.5), vec![], e(0.2), e(0.9)];
        assert_eq!(best_index(cands.iter(), Scorer::Dev), Some(2));
        assert_eq!(best_index(cands.iter(), Scorer::Snd), Some(2));
        assert_eq!(best_index(cands.iter(), Scorer::Iwv), None);
    }
}
