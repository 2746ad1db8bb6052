//! Evaluation metrics: accuracy, per-class accuracy, confusion matrix, the harmonic mean of
//! generalised zero-shot learning, prediction entropy and the proxy A-distance.

use candle_core::{DType, Tensor};
use xfer_ops::SeededRng;

use crate::{Result, TrainError};

/// The index of the largest entry of each row of `logits` (n, c).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>> {
    if logits.rank() != 2 || logits.dim(1)? == 0 {
        return Err(TrainError::metric(
            "argmax_rows",
            format!(
                "expected logits of shape (n, c) with c > 0, got {:?}",
                logits.dims()
            ),
        ));
    }
    let idx = logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    Ok(idx.into_iter().map(|i| i as usize).collect())
}

/// Class ids from an integer (or integral float) tensor of shape (n).
pub fn labels_to_vec(labels: &Tensor) -> Result<Vec<usize>> {
    if labels.rank() != 1 {
        return Err(TrainError::metric(
            "labels",
            format!("expected a label vector (n), got shape {:?}", labels.dims()),
        ));
    }
    let v = labels.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    v.into_iter()
        .map(|x| {
            if x >= 0.0 && x.fract() == 0.0 && x < u32::MAX as f64 {
                Ok(x as usize)
            } else {
                Err(TrainError::metric(
                    "labels",
                    format!("{x} is not a class id"),
                ))
            }
        })
        .collect()
}

fn check_pair(metric: &'static str, pred: &[usize], target: &[usize]) -> Result<()> {
    if pred.len() != target.len() {
        return Err(TrainError::metric(
            metric,
            format!("{} predictions but {} targets", pred.len(), target.len()),
        ));
    }
    if pred.is_empty() {
        return Err(TrainError::metric(metric, "no samples"));
    }
    Ok(())
}

/// Fraction of `pred[i] == target[i]`.
pub fn accuracy(pred: &[usize], target: &[usize]) -> Result<f64> {
    check_pair("accuracy", pred, target)?;
    let ok = pred.iter().zip(target).filter(|(p, t)| p == t).count();
    Ok(ok as f64 / pred.len() as f64)
}

/// Accuracy of the arg-max of `logits` (n, c) against `labels` (n).
pub fn accuracy_from_logits(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    accuracy(&argmax_rows(logits)?, &labels_to_vec(labels)?)
}

/// Mean over the classes present in `target` of the per-class accuracy (recall) — the
/// zero-shot metric: `(1/|C|) Σ_c #{i : t_i = c, p_i = c} / #{i : t_i = c}`.
pub fn mean_per_class_accuracy(pred: &[usize], target: &[usize]) -> Result<f64> {
    check_pair("mean_per_class_accuracy", pred, target)?;
    let n = pred.iter().chain(target).copied().max().unwrap_or(0) + 1;
    let cm = ConfusionMatrix::from_predictions(pred, target, n)?;
    cm.mean_per_class_accuracy()
        .ok_or_else(|| TrainError::metric("mean_per_class_accuracy", "no samples"))
}

/// The harmonic mean of generalised zero-shot learning, `H = 2·u·s / (u + s)` for unseen and
/// seen accuracies `u`, `s` (0 when both are 0).
pub fn harmonic_mean(unseen: f64, seen: f64) -> f64 {
    if unseen + seen <= 0.0 {
        0.0
    } else {
        2.0 * unseen * seen / (unseen + seen)
    }
}

/// Counts of (true class, predicted class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    n: usize,
    /// Row-major `n × n`: `counts[t·n + p]`.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix over `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            n: num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// The matrix of `pred` against `target`.
    pub fn from_predictions(pred: &[usize], target: &[usize], num_classes: usize) -> Result<Self> {
        let mut m = Self::new(num_classes);
        m.add(pred, target)?;
        Ok(m)
    }

    /// Adds more predictions.
    pub fn add(&mut self, pred: &[usize], target: &[usize]) -> Result<()> {
        if pred.len() != target.len() {
            return Err(TrainError::metric(
                "confusion_matrix",
                format!("{} predictions but {} targets", pred.len(), target.len()),
            ));
        }
        for (&p, &t) in pred.iter().zip(target) {
            if p >= self.n || t >= self.n {
                return Err(TrainError::metric(
                    "confusion_matrix",
                    format!("class id {} outside 0..{}", p.max(t), self.n),
                ));
            }
            self.counts[t * self.n + p] += 1;
        }
        Ok(())
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.n
    }

    /// Samples with true class `t` predicted as `p` (0 outside the matrix).
    pub fn get(&self, t: usize, p: usize) -> u64 {
        if t < self.n && p < self.n {
            self.counts[t * self.n + p]
        } else {
            0
        }
    }

    /// Rows (true class) of counts per predicted class.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.n.max(1))
            .map(|r| r.to_vec())
            .collect()
    }

    /// All samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Overall accuracy (`None` when empty).
    pub fn accuracy(&self) -> Option<f64> {
        let total = self.total();
        let diag: u64 = (0..self.n).map(|c| self.get(c, c)).sum();
        (total > 0).then(|| diag as f64 / total as f64)
    }

    /// Accuracy (recall) of each class; `None` for a class without samples.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        (0..self.n)
            .map(|c| {
                let row: u64 = (0..self.n).map(|p| self.get(c, p)).sum();
                (row > 0).then(|| self.get(c, c) as f64 / row as f64)
            })
            .collect()
    }

    /// Mean of the per-class accuracies over the classes with samples.
    pub fn mean_per_class_accuracy(&self) -> Option<f64> {
        let v: Vec<f64> = self.per_class_accuracy().into_iter().flatten().collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// Precision, recall and F1 of one class, with its number of true samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassScores {
    /// The class name.
    pub class: String,
    /// Correct predictions of the class / all predictions of it (`None`: never predicted).
    pub precision: Option<f64>,
    /// Correct predictions of the class / its true samples (`None`: no sample).
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall (0 when either is 0; `None` when either is).
    pub f1: Option<f64>,
    /// True samples of the class.
    pub support: u64,
}

/// The evaluation of a classifier on labelled data: accuracy, per-class scores and the
/// confusion matrix (rows = true class, columns = predicted class), as text or JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassificationReport {
    /// Samples evaluated.
    pub samples: u64,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Mean of the per-class recalls over classes with samples.
    pub mean_per_class_accuracy: f64,
    /// Unweighted mean F1 over the classes with samples.
    pub macro_f1: f64,
    /// Per-class scores, in label order.
    pub classes: Vec<ClassScores>,
    /// `confusion[t][p]`: samples of true class `t` predicted as `p`.
    pub confusion: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// The report of this matrix with `class_names` (one per class; missing names are the
    /// class ids). `None` when the matrix is empty.
    pub fn report(&self, class_names: &[String]) -> Option<ClassificationReport> {
        let n = self.n;
        let accuracy = self.accuracy()?;
        let classes: Vec<ClassScores> = (0..n)
            .map(|c| {
                let tp = self.get(c, c) as f64;
                let support: u64 = (0..n).map(|p| self.get(c, p)).sum();
                let predicted: u64 = (0..n).map(|t| self.get(t, c)).sum();
                let precision = (predicted > 0).then(|| tp / predicted as f64);
                let recall = (support > 0).then(|| tp / support as f64);
                let f1 = match (precision, recall) {
                    (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                    (Some(_), Some(_)) => Some(0.0),
                    (None, Some(_)) => Some(0.0),
                    _ => None,
                };
                ClassScores {
                    class: class_names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let f1s: Vec<f64> = classes
            .iter()
            .filter(|c| c.support > 0)
            .filter_map(|c| c.f1)
            .collect();
        Some(ClassificationReport {
            samples: self.total(),
            accuracy,
            mean_per_class_accuracy: self.mean_per_class_accuracy().unwrap_or(f64::NAN),
            macro_f1: if f1s.is_empty() {
                f64::NAN
            } else {
                f1s.iter().sum::<f64>() / f1s.len() as f64
            },
            classes,
            confusion: self.rows(),
        })
    }
}

impl ClassificationReport {
    /// A plain-text table: accuracy, then precision / recall / F1 / support per class, then
    /// the confusion matrix.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let w = self
            .classes
            .iter()
            .map(|c| c.class.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "accuracy {:.4} on {} samples (mean per-class accuracy {:.4}, macro F1 {:.4})",
            self.accuracy, self.samples, self.mean_per_class_accuracy, self.macro_f1
        );
        let _ = writeln!(s, "{:>w$}  precision  recall      f1  support", "class");
        for c in &self.classes {
            let _ = writeln!(
                s,
                "{:>w$}  {:>9}  {:>6}  {:>6}  {:>7}",
                c.class,
                f(c.precision),
                f(c.recall),
                f(c.f1),
                c.support
            );
        }
        let _ = writeln!(
            s,
            "confusion matrix (rows: true class, columns: predicted):"
        );
        let cw = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(3);
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>cw$}")).collect();
            let _ = writeln!(s, "{:>w$}  {}", c.class, cells.join(" "));
        }
        s
    }
}

/// Mean entropy of the softmax of each row of `logits`, in nats:
/// `(1/n) Σ_i −Σ_c p_ic log p_ic`. A label-free score (low = confident), usable for early
/// stopping on unlabelled target data.
pub fn prediction_entropy(logits: &Tensor) -> Result<f64> {
    if logits.rank() != 2 || logits.dim(0)? == 0 || logits.dim(1)? == 0 {
        return Err(TrainError::metric(
            "prediction_entropy",
            format!(
                "expected logits of shape (n, c), n, c > 0, got {:?}",
                logits.dims()
            ),
        ));
    }
    let rows = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut total = 0.0;
    for r in &rows {
        let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = r.iter().map(|x| (x - m).exp()).sum();
        let lz = z.ln();
        // H = −Σ p (x − m − log z)
        let h: f64 = r
            .iter()
            .map(|x| {
                let lp = x - m - lz;
                let p = lp.exp();
                if p > 0.0 { -p * lp } else { 0.0 }
            })
            .sum();
        total += h;
    }
    Ok(total / rows.len() as f64)
}

/// The proxy A-distance and how it was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyADistance {
    /// `PAD = 2 (1 − 2ε)`: 2 when the domains are perfectly separable, about 0 when a linear
    /// classifier cannot tell them apart (negative values mean chance-level noise).
    pub pad: f64,
    /// The domain classifier's test error `ε`.
    pub error: f64,
    /// Samples used to train the domain classifier.
    pub train_size: usize,
    /// Samples used to measure `ε`.
    pub test_size: usize,
}

/// The proxy A-distance between two feature sets (Ben-David et al. 2007; Ganin et al. 2016
/// §5.1.4): a linear domain classifier (L2-regularised logistic regression on standardised
/// features) is trained on half of each domain and tested on the other half;
/// `PAD = 2 (1 − 2ε)` with `ε` its test error. The split is drawn from `seed`.
pub fn proxy_a_distance(source: &Tensor, target: &Tensor, seed: u64) -> Result<ProxyADistance> {
    let rows = |t: &Tensor, what: &str| -> Result<Vec<Vec<f64>>> {
        if t.rank() != 2 || t.dim(0)? < 2 {
            return Err(TrainError::metric(
                "proxy_a_distance",
                format!("{what} features must be (n ≥ 2, d), got {:?}", t.dims()),
            ));
        }
        Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    };
    let s = rows(source, "source")?;
    let t = rows(target, "target")?;
    let d = s[0].len();
    if t[0].len() != d || d == 0 {
        return Err(TrainError::metric(
            "proxy_a_distance",
            format!(
                "feature widths differ or are 0: source {d}, target {}",
                t[0].len()
            ),
        ));
    }
    let mut rng = SeededRng::new(seed);
    let mut train: Vec<(&[f64], f64)> = Vec::new();
    let mut test: Vec<(&[f64], f64)> = Vec::new();
    for (set, label) in [(&s, 0.0), (&t, 1.0)] {
        let perm = rng.permutation(set.len());
        let half = set.len() / 2;
        for (k, &i) in perm.iter().enumerate() {
            let row = set[i].as_slice();
            if k < half {
                train.push((row, label));
            } else {
                test.push((row, label));
            }
        }
    }
    let clf = LogisticRegression::fit(&train, d, 1e-3)?;
    let wrong = test
        .iter()
        .filter(|(x, y)| (clf.predict(x) >= 0.5) != (*y >= 0.5))
        .count();
    let error = wrong as f64 / test.len() as f64;
    Ok(ProxyADistance {
        pad: 2.0 * (1.0 - 2.0 * error),
        error,
        train_size: train.len(),
        test_size: test.len(),
    })
}

/// Binary logistic regression on standardised features, fitted by accelerated gradient
/// descent (Nesterov) with step `1/L`, `L = λ_max(X̃ᵀX̃)/(4n) + λ` (X̃ with a bias column).
#[derive(Debug, Clone)]
pub(crate) struct LogisticRegression {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Weights, then the bias.
    w: Vec<f64>,
}

impl LogisticRegression {
    pub(crate) fn fit(data: &[(&[f64], f64)], d: usize, l2: f64) -> Result<Self> {
        let n = data.len();
        if n == 0 {
            return Err(TrainError::metric(
                "logistic_regression",
                "no training samples",
            ));
        }
        let mut mean = vec![0.0; d];
        for (x, _) in data {
            for (m, v) in mean.iter_mut().zip(x.iter()) {
                *m += v / n as f64;
            }
        }
        let mut scale = vec![0.0; d];
        for (x, _) in data {
            for ((s, v), m) in scale.iter_mut().zip(x.iter()).zip(&mean) {
                *s += (v - m) * (v - m) / n as f64;
            }
        }
        for s in &mut scale {
            *s = if *s > 1e-12 { 1.0 / s.sqrt() } else { 0.0 };
        }
        // Standardised design matrix with a bias column, row-major n × (d+1).
        let dd = d + 1;
        let mut xs = vec![0.0; n * dd];
        for (i, (x, _)) in data.iter().enumerate() {
            for j in 0..d {
                xs[i * dd + j] = (x[j] - mean[j]) * scale[j];
            }
            xs[i * dd + d] = 1.0;
        }
        let ys: Vec<f64> = data.iter().map(|(_, y)| *y).collect();
        // λ_max(XᵀX/n) by power iteration.
        let mut v = vec![1.0 / (dd as f64).sqrt(); dd];
        let mut lmax = 0.0;
        for _ in 0..100 {
            let xv: Vec<f64> = (0..n).map(|i| dot(&xs[i * dd..(i + 1) * dd], &v)).collect();
            let mut u = vec![0.0; dd];
            for (i, a) in xv.iter().enumerate() {
                axpy(&mut u, *a / n as f64, &xs[i * dd..(i + 1) * dd]);
            }
            let norm = dot(&u, &u).sqrt();
            if norm == 0.0 {
                break;
            }
            let prev = lmax;
            lmax = norm;
            v = u.into_iter().map(|x| x / norm).collect();
            if (lmax - prev).abs() <= 1e-9 * lmax {
                break;
            }
        }
        let step = 1.0 / (0.25 * lmax + l2).max(1e-12);
        let grad = |w: &[f64]| {
            let mut g = vec![0.0; dd];
            for i in 0..n {
                let row = &xs[i * dd..(i + 1) * dd];
                let r = sigmoid(dot(row, w)) - ys[i];
                axpy(&mut g, r / n as f64, row);
            }
            for (gj, wj) in g.iter_mut().zip(w).take(d) {
                *gj += l2 * wj;
            }
            g
        };
        let mut w = vec![0.0; dd];
        let mut y = w.clone();
        let mut t = 1.0f64;
        for _ in 0..400 {
            let g = grad(&y);
            let w_next: Vec<f64> = y.iter().zip(&g).map(|(a, b)| a - step * b).collect();
            let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
            let mom = (t - 1.0) / t_next;
            y = w_next
                .iter()
                .zip(&w)
                .map(|(a, b)| a + mom * (a - b))
                .collect();
            let delta: f64 = w_next.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum();
            w = w_next;
            t = t_next;
            if delta < 1e-10 {
                break;
            }
        }
        Ok(Self { mean, scale, w })
    }

    pub(crate) fn predict(&self, x: &[f64]) -> f64 {
        let d = self.mean.len();
        let mut z = self.w.get(d).copied().unwrap_or(0.0);
        for (((w, xj), m), sc) in self.w.iter().zip(x).zip(&self.mean).zip(&self.scale) {
            z += w * (xj - m) * sc;
        }
        sigmoid(z)
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accuracy_and_confusion_matrix_of_a_known_prediction() {
        let target = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2];
        let pred = [0, 0, 0, 1, 1, 0, 2, 2, 1, 1];
        assert_eq!(accuracy(&pred, &target).unwrap(), 0.6);
        let cm = ConfusionMatrix::from_predictions(&pred, &target, 3).unwrap();
        assert_eq!(cm.rows(), vec![vec![3, 1, 0], vec![1, 1, 0], vec![0, 2, 2]]);
        assert_eq!(cm.get(2, 1), 2);
        assert_eq!(cm.total(), 10);
        assert_eq!(cm.accuracy(), Some(0.6));
        assert_eq!(
            cm.per_class_accuracy(),
            vec![Some(0.75), Some(0.5), Some(0.5)]
        );
        // (0.75 + 0.5 + 0.5) / 3 — differs from the overall 0.6 because classes are unbalanced
        let m = mean_per_class_accuracy(&pred, &target).unwrap();
        assert!((m - 1.75 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn per_class_accuracy_ignores_classes_without_samples() {
        // zero-shot: only unseen classes 7 and 9 appear among the targets
        let target = [7, 7, 9, 9];
        let pred = [7, 3, 9, 9];
        assert_eq!(mean_per_class_accuracy(&pred, &target).unwrap(), 0.75);
        let cm = ConfusionMatrix::from_predictions(&pred, &target, 10).unwrap();
        assert_eq!(cm.per_class_accuracy()[3], None);
    }

    #[test]
    fn metrics_refuse_mismatched_or_bad_input() {
        assert!(accuracy(&[0, 1], &[0]).is_err());
        assert!(accuracy(&[], &[]).is_err());
        assert!(ConfusionMatrix::from_predictions(&[5], &[0], 3).is_err());
        let bad = Tensor::new(&[0.5f32, 1.0], &Device::Cpu).unwrap();
        assert!(labels_to_vec(&bad).is_err());
        let v = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        assert!(argmax_rows(&v).is_err());
        assert!(prediction_entropy(&v).is_err());
    }

    #[test]
    fn accuracy_from_logits_takes_the_argmax() {
        let logits = Tensor::new(&[[0.1f32, 2.0], [3.0, -1.0], [0.0, 0.5]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[1u32, 0, 0], &Device::Cpu).unwrap();
        assert!((accuracy_from_logits(&logits, &labels).unwrap() - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn harmonic_mean_of_known_values() {
        assert!((harmonic_mean(0.5, 0.8) - 0.8 / 1.3).abs() < 1e-15);
        assert_eq!(harmonic_mean(0.0, 0.9), 0.0);
        assert_eq!(harmonic_mean(0.0, 0.0), 0.0);
        assert!((harmonic_mean(0.6, 0.6) - 0.6).abs() < 1e-15);
    }

    #[test]
    fn prediction_entropy_is_log_c_for_uniform_and_zero_for_certain() {
        let uniform = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        assert!((prediction_entropy(&uniform).unwrap() - 4f64.ln()).abs() < 1e-12);
        let certain = Tensor::new(&[[1000.0f32, 0.0], [0.0, 1000.0]], &Device::Cpu).unwrap();
        assert!(prediction_entropy(&certain).unwrap() < 1e-12);
        // two classes with p = (0.25, 0.75): H = −0.25 ln 0.25 − 0.75 ln 0.75
        let l = Tensor::new(&[[0.0f64, 3f64.ln()]], &Device::Cpu).unwrap();
        let h = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
        assert!((prediction_entropy(&l).unwrap() - h).abs() < 1e-12);
    }

    fn gaussian(n: usize, d: usize, shift: f64, seed: u64) -> Tensor {
        let mut rng = SeededRng::new(seed);
        let mut t = rng
            .normal(&[n, d], 0.0, 1.0, DType::F64, &Device::Cpu)
            .unwrap();
        t = (t + shift).unwrap();
        t
    }

    #[test]
    fn proxy_a_distance_is_two_for_separable_domains_and_near_zero_for_identical_ones() {
        let s = gaussian(400, 8, 0.0, 1);
        let far = gaussian(400, 8, 10.0, 2);
        let p = proxy_a_distance(&s, &far, 0).unwrap();
        assert_eq!(p.error, 0.0);
        assert_eq!(p.pad, 2.0);
        assert_eq!((p.train_size, p.test_size), (400, 400));
        // the same distribution: the classifier is at chance, PAD ≈ 0
        let same = gaussian(400, 8, 0.0, 3);
        let q = proxy_a_distance(&s, &same, 0).unwrap();
        assert!(q.pad.abs() < 0.3, "{q:?}");
        // a partial shift lies in between
        let near = gaussian(400, 8, 0.3, 4);
        let r = proxy_a_distance(&s, &near, 0).unwrap();
        assert!(r.pad > q.pad + 0.3 && r.pad < 2.0, "{r:?} vs {q:?}");
        // deterministic given the seed
        assert_eq!(proxy_a_distance(&s, &near, 0).unwrap(), r);
    }
}
