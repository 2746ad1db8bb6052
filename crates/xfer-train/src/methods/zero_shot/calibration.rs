//! Calibrated stacking for generalised zero-shot learning (Chao, Changpinyo, Gong & Sha, "An
//! Empirical Study and Analysis of Generalized Zero-Shot Learning for Object Recognition in the
//! Wild", ECCV 2016): a model trained on seen classes scores them higher than unseen ones, so
//! GZSL predictions collapse onto seen classes. The rule `ŷ = argmax_c s(x, c) − γ·[c ∈ S]`
//! subtracts a constant `γ` from every seen-class score.
//!
//! `γ` is chosen **without unseen labels** ([`calibrate`]): on the training data alone, some
//! seen classes are held out as pseudo-unseen (as many, in proportion, as the real split
//! holds out), a model of the same method is trained on the rest, and `γ` maximises the
//! harmonic mean `H` of the per-class accuracies on held-out pseudo-seen and pseudo-unseen
//! samples, averaged over several seeded pseudo-splits ([`select_gamma`] searches every value
//! at which a prediction changes). That `γ` is then applied to the real model.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use super::{self as zero_shot, ZeroShotConfig, ZeroShotData, ZeroShotModel, ZslResult};
use crate::metrics;
use crate::run::RunCtx;
use crate::trainer::derive_seed;
use crate::{Result, TrainError};

const TAG_PSEUDO: u64 = 0x5A53_4341; // "ZSCA"

/// Scores of labelled test samples against the candidate classes, for GZSL bookkeeping.
#[derive(Debug, Clone)]
pub struct ScoredSet {
    /// `(N, K)` scores, row-major, `K = candidates.len()`.
    pub scores: Vec<Vec<f32>>,
    /// The true class id of each row.
    pub labels: Vec<u32>,
}

impl ScoredSet {
    /// Scores of `model` on `ds` against `candidates`.
    pub fn of(
        model: &ZeroShotModel,
        ds: &xfer_data::TensorDataset,
        candidates: &[u32],
        dev: &Device,
    ) -> Result<Self> {
        let (x, _) = ds.to_tensors(dev)?;
        let s = model.scores(&x, candidates)?;
        Ok(Self {
            scores: s.to_vec2::<f32>()?,
            labels: ds.labels().to_vec(),
        })
    }
}

/// Mean per-class accuracy of `set` when `gamma` is subtracted from the scores of the
/// candidates flagged in `is_seen` (`candidates[k]` is a seen class iff `is_seen[k]`).
pub fn calibrated_accuracy(
    set: &ScoredSet,
    candidates: &[u32],
    is_seen: &[bool],
    gamma: f64,
) -> Result<f64> {
    if candidates.len() != is_seen.len() {
        return Err(TrainError::BadData(format!(
            "{} candidates but {} seen flags",
            candidates.len(),
            is_seen.len()
        )));
    }
    let g = gamma as f32;
    let mut pred = Vec::with_capacity(set.labels.len());
    for row in &set.scores {
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (k, (&s, &seen)) in row.iter().zip(is_seen).enumerate() {
            let v = if seen { s - g } else { s };
            if v > best.0 {
                best = (v, k);
            }
        }
        let c = candidates.get(best.1).copied().ok_or_else(|| {
            TrainError::BadData(format!(
                "a score row of {} values has no candidate",
                row.len()
            ))
        })?;
        pred.push(c as usize);
    }
    let target: Vec<usize> = set.labels.iter().map(|&c| c as usize).collect();
    metrics::mean_per_class_accuracy(&pred, &target)
}

/// GZSL `(s, u, H)` at `gamma`: per-class accuracy on the seen and the unseen test samples,
/// all classes candidates.
pub fn gzsl_at(
    seen: &ScoredSet,
    unseen: &ScoredSet,
    candidates: &[u32],
    is_seen: &[bool],
    gamma: f64,
) -> Result<(f64, f64, f64)> {
    let s = calibrated_accuracy(seen, candidates, is_seen, gamma)?;
    let u = calibrated_accuracy(unseen, candidates, is_seen, gamma)?;
    Ok((s, u, metrics::harmonic_mean(u, s)))
}

/// The values of `γ` at which some prediction can change: for every sample, the gap between
/// its best seen and best unseen score; the candidates are 0, the midpoints between
/// consecutive distinct gaps, and a value past each end (at most `max` of them, evenly
/// spaced in rank).
fn gamma_candidates(sets: &[(&ScoredSet, &[bool])], max: usize) -> Vec<f64> {
    let mut gaps = Vec::new();
    for (set, is_seen) in sets {
        for row in &set.scores {
            let (mut bs, mut bu) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (&s, &seen) in row.iter().zip(*is_seen) {
                if seen {
                    bs = bs.max(s);
                } else {
                    bu = bu.max(s);
                }
            }
            let g = f64::from(bs) - f64::from(bu);
            if g.is_finite() {
                gaps.push(g);
            }
        }
    }
    gaps.sort_by(f64::total_cmp);
    gaps.dedup();
    let mut cands = vec![0.0];
    if let (Some(&lo), Some(&hi)) = (gaps.first(), gaps.last()) {
        cands.push(lo - 1e-3);
        cands.push(hi + 1e-3);
    }
    let mids: Vec<f64> = gaps.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let step = mids.len().div_ceil(max.max(1)).max(1);
    cands.extend(mids.iter().step_by(step));
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    cands
}

/// One validation problem for [`select_gamma`]: seen and unseen test scores against
/// `candidates` with their seen flags.
#[derive(Debug, Clone)]
pub struct CalibrationSplit {
    /// Held-out samples of the (pseudo-)seen classes.
    pub seen: ScoredSet,
    /// Samples of the (pseudo-)unseen classes.
    pub unseen: ScoredSet,
    /// The candidate class ids (all classes of the split).
    pub candidates: Vec<u32>,
    /// Whether each candidate is (pseudo-)seen.
    pub is_seen: Vec<bool>,
}

/// The `γ` maximising the mean `H` over `splits` (ties: the smallest `|γ|`), and that mean.
pub fn select_gamma(splits: &[CalibrationSplit]) -> Result<(f64, f64)> {
    if splits.is_empty() {
        return Err(TrainError::BadData(
            "calibration needs at least one split".into(),
        ));
    }
    let sets: Vec<(&ScoredSet, &[bool])> = splits
        .iter()
        .flat_map(|s| {
            [
                (&s.seen, s.is_seen.as_slice()),
                (&s.unseen, s.is_seen.as_slice()),
            ]
        })
        .collect();
    let mut best: (f64, f64) = (0.0, f64::NEG_INFINITY);
    for g in gamma_candidates(&sets, 400) {
        let mut h = 0.0;
        for s in splits {
            h += gzsl_at(&s.seen, &s.unseen, &s.candidates, &s.is_seen, g)?.2;
        }
        h /= splits.len() as f64;
        if h > best.1 + 1e-12 || ((h - best.1).abs() <= 1e-12 && g.abs() < best.0.abs()) {
            best = (g, h);
        }
    }
    Ok(best)
}

/// How many seen classes a pseudo-split holds out: the real split's unseen fraction of the
/// seen classes, rounded, at least 1 and leaving at least 2 to train on.
pub fn pseudo_unseen_count(seen: usize, unseen: usize) -> Result<usize> {
    if seen < 3 {
        return Err(TrainError::BadData(format!(
            "calibration holds out seen classes as pseudo-unseen: needs at least 3 seen classes, got {seen}"
        )));
    }
    let k = (seen as f64 * unseen as f64 / (seen + unseen) as f64).round() as usize;
    Ok(k.clamp(1, seen - 2))
}

/// A pseudo zero-shot problem on `data`'s training part: `pseudo` of the seen classes become
/// unseen (all their training samples the unseen test set), the rest split into training and
/// held-out samples.
pub fn pseudo_split(data: &ZeroShotData, pseudo: &[u32], seed: u64) -> Result<ZeroShotData> {
    let (rest, unseen_test) = xfer_data::class_split(&data.train, pseudo)?;
    let (train, seen_test) = xfer_data::stratified_split(&rest, 0.2, seed)?;
    let mut unseen = pseudo.to_vec();
    unseen.sort_unstable();
    let seen: Vec<u32> = data
        .seen
        .iter()
        .copied()
        .filter(|c| !unseen.contains(c))
        .collect();
    let d = ZeroShotData {
        train,
        seen_test,
        unseen_test,
        attributes: data.attributes.clone(),
        seen,
        unseen,
    };
    d.check()?;
    Ok(d)
}

fn split_scores(
    model: &ZeroShotModel,
    data: &ZeroShotData,
    dev: &Device,
) -> Result<CalibrationSplit> {
    let mut candidates: Vec<u32> = data.seen.iter().chain(&data.unseen).copied().collect();
    candidates.sort_unstable();
    let is_seen = candidates.iter().map(|c| data.seen.contains(c)).collect();
    Ok(CalibrationSplit {
        seen: ScoredSet::of(model, &data.seen_test, &candidates, dev)?,
        unseen: ScoredSet::of(model, &data.unseen_test, &candidates, dev)?,
        candidates,
        is_seen,
    })
}

/// A method's ZSL and GZSL numbers with and without calibrated stacking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedResult {
    /// The uncalibrated numbers (`γ = 0`).
    pub base: ZslResult,
    /// The `γ` chosen on pseudo-splits of the training data.
    pub gamma: f64,
    /// Mean `H` of the pseudo-splits at `gamma`.
    pub validation_h: f64,
    /// GZSL `s` at `gamma`.
    pub seen_acc: f64,
    /// GZSL `u` at `gamma`.
    pub gzsl_unseen_acc: f64,
    /// GZSL `H` at `gamma`.
    pub h: f64,
}

impl CalibratedResult {
    /// The numbers as `(name, value)` pairs: `unseen_acc` (ZSL), calibrated `seen_acc`,
    /// `gzsl_unseen_acc` and `h`, `gamma`, and the uncalibrated `*_uncalibrated`.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("unseen_acc", self.base.unseen_acc),
            ("seen_acc", self.seen_acc),
            ("gzsl_unseen_acc", self.gzsl_unseen_acc),
            ("h", self.h),
            ("gamma", self.gamma),
            ("validation_h", self.validation_h),
            ("seen_acc_uncalibrated", self.base.seen_acc),
            ("gzsl_unseen_acc_uncalibrated", self.base.gzsl_unseen_acc),
            ("h_uncalibrated", self.base.h),
            ("chance", self.base.chance),
            ("steps", self.base.steps as f64),
        ]
    }
}

/// Chooses `γ` for `cfg.method` on `folds` seeded pseudo-splits of `data`'s training part (each
/// holding out [`pseudo_unseen_count`] random seen classes and training a model with `cfg`);
/// returns `(γ, mean validation H)`. No unseen sample is looked at.
pub fn calibrate(
    cfg: &ZeroShotConfig,
    data: &ZeroShotData,
    folds: usize,
    ctx: &RunCtx,
) -> Result<(f64, f64)> {
    let (seed, dev) = (ctx.seed, &ctx.device);
    let k = pseudo_unseen_count(data.seen.len(), data.unseen.len())?;
    let mut splits = Vec::with_capacity(folds);
    for fold in 0..folds.max(1) as u64 {
        let mut rng = SeededRng::new(derive_seed(seed, &[TAG_PSEUDO, fold]));
        let pseudo: Vec<u32> = rng
            .permutation(data.seen.len())
            .into_iter()
            .take(k)
            .filter_map(|i| data.seen.get(i).copied())
            .collect();
        let pd = pseudo_split(data, &pseudo, derive_seed(seed, &[TAG_PSEUDO, fold, 1]))?;
        let model = zero_shot::train(
            cfg,
            &pd,
            // The pseudo-split models are throw-away: no checkpoints (they would share the
            // real model's stage folder).
            &ctx.reseeded(derive_seed(seed, &[TAG_PSEUDO, fold, 2]))
                .with_checkpoints(None),
        )?;
        splits.push(split_scores(&model, &pd, dev)?);
    }
    select_gamma(&splits)
}

/// The calibrated numbers of the trained `model` (whose uncalibrated numbers are `base`):
/// `γ` chosen label-free with [`calibrate`] on `folds` pseudo-splits, then GZSL at `γ`.
pub(super) fn calibrated_result(
    model: &ZeroShotModel,
    base: ZslResult,
    cfg: &ZeroShotConfig,
    data: &ZeroShotData,
    folds: usize,
    ctx: &RunCtx,
) -> Result<CalibratedResult> {
    let (gamma, validation_h) = calibrate(cfg, data, folds, ctx)?;
    let real = split_scores(model, data, &ctx.device)?;
    let (s, u, h) = gzsl_at(
        &real.seen,
        &real.unseen,
        &real.candidates,
        &real.is_seen,
        gamma,
    )?;
    Ok(CalibratedResult {
        base,
        gamma,
        validation_h,
        seen_acc: s,
        gzsl_unseen_acc: u,
        h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two seen classes (0, 1), one unseen (2). Seen scores are inflated by 1.0.
    fn biased() -> CalibrationSplit {
        // Seen samples: correct seen class wins by 0.5 over the unseen class.
        let seen = ScoredSet {
            scores: vec![vec![2.0, 0.5, 1.5], vec![0.5, 2.0, 1.5]],
            labels: vec![0, 1],
        };
        // Unseen samples: unseen score is 1.2, best seen 1.8 (bias 0.6).
        let unseen = ScoredSet {
            scores: vec![vec![1.8, 0.0, 1.2], vec![0.0, 1.8, 1.2]],
            labels: vec![2, 2],
        };
        CalibrationSplit {
            seen,
            unseen,
            candidates: vec![0, 1, 2],
            is_seen: vec![true, true, false],
        }
    }

    #[test]
    fn gamma_zero_collapses_onto_seen_and_the_selected_gamma_separates() {
        let s = biased();
        let (ss, u, h) = gzsl_at(&s.seen, &s.unseen, &s.candidates, &s.is_seen, 0.0).unwrap();
        assert_eq!((ss, u, h), (1.0, 0.0, 0.0));
        // Seen samples stay right only for γ < 0.5, unseen ones turn right only for γ > 0.6:
        // no γ gives both, H is 0 everywhere and the tie goes to the smallest |γ|.
        let (g, best_h) = select_gamma(std::slice::from_ref(&s)).unwrap();
        assert_eq!((g, best_h), (0.0, 0.0));
    }

    #[test]
    fn select_gamma_finds_the_window_between_the_gaps() {
        // Seen gap 1.0 (seen correct by 1.0), unseen gap 0.4: γ in (0.4, 1.0) is perfect.
        let s = CalibrationSplit {
            seen: ScoredSet {
                scores: vec![vec![3.0, 0.0, 2.0], vec![0.0, 3.0, 2.0]],
                labels: vec![0, 1],
            },
            unseen: ScoredSet {
                scores: vec![vec![1.4, 0.0, 1.0], vec![0.0, 1.4, 1.0]],
                labels: vec![2, 2],
            },
            candidates: vec![0, 1, 2],
            is_seen: vec![true, true, false],
        };
        let (g, h) = select_gamma(std::slice::from_ref(&s)).unwrap();
        assert!(g > 0.4 && g < 1.0, "γ {g}");
        assert!((h - 1.0).abs() < 1e-12, "H {h}");
        let (ss, u, hh) = gzsl_at(&s.seen, &s.unseen, &s.candidates, &s.is_seen, g).unwrap();
        assert_eq!((ss, u, hh), (1.0, 1.0, 1.0));
        // A negative γ is found when unseen scores are inflated.
        let flipped = CalibrationSplit {
            is_seen: vec![false, false, true],
            candidates: vec![0, 1, 2],
            seen: ScoredSet {
                scores: vec![vec![0.0, 1.4, 1.0]],
                labels: vec![2],
            },
            unseen: ScoredSet {
                scores: vec![vec![3.0, 0.0, 2.0]],
                labels: vec![0],
            },
        };
        let (g, h) = select_gamma(&[flipped]).unwrap();
        assert!(
            g < -0.4 && g > -1.0 && (h - 1.0).abs() < 1e-12,
            "γ {g}, H {h}"
        );
    }

    #[test]
    fn mean_h_over_splits_picks_a_gamma_good_for_both() {
        let a = biased();
        let mut b = biased();
        // b's unseen samples need γ > 0.3 only.
        b.unseen.scores = vec![vec![1.5, 0.0, 1.2], vec![0.0, 1.5, 1.2]];
        let (g, h) = select_gamma(&[a, b]).unwrap();
        // γ in (0.3, 0.5): b perfect (H 1), a has s = 1, u = 0 → mean 0.5.
        assert!(g > 0.3 && g < 0.5, "γ {g}");
        assert!((h - 0.5).abs() < 1e-12);
        assert!(select_gamma(&[]).is_err());
    }

    #[test]
    fn pseudo_unseen_count_follows_the_real_proportion() {
        assert_eq!(pseudo_unseen_count(7, 3).unwrap(), 2);
        assert_eq!(pseudo_unseen_count(3, 10).unwrap(), 1);
        assert_eq!(pseudo_unseen_count(30, 1).unwrap(), 1);
        assert!(pseudo_unseen_count(2, 1).is_err());
    }
}
