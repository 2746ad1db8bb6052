//! A small hyper-parameter sweep scored without target labels: every point of a grid over
//! `λ` / learning rate / pseudo-label threshold / MCC weight is trained with checkpoint
//! choice by the scorer, the run with the best label-free score is the choice, and the
//! oracle choice (the best target accuracy of any evaluation of any run) is reported beside
//! it so the gap is visible.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use xfer_data::{TensorDataset, UnlabeledDataset};

use super::{DannConfig, DannMethod, DannResult, train};
use crate::model_selection::Scorer;
use crate::{Result, TrainError};

/// A swept setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepParam {
    /// [`DannConfig::lambda_max`].
    Lambda,
    /// [`DannConfig::lr`].
    Lr,
    /// [`DannConfig::threshold`].
    Threshold,
    /// [`DannConfig::mcc_weight`].
    MccWeight,
}

impl SweepParam {
    /// Every swept setting.
    pub const ALL: [SweepParam; 4] = [
        SweepParam::Lambda,
        SweepParam::Lr,
        SweepParam::Threshold,
        SweepParam::MccWeight,
    ];

    /// `lambda`, `lr`, `threshold`, `mcc_weight`.
    pub fn name(&self) -> &'static str {
        match self {
            SweepParam::Lambda => "lambda",
            SweepParam::Lr => "lr",
            SweepParam::Threshold => "threshold",
            SweepParam::MccWeight => "mcc_weight",
        }
    }

    /// Sets the value in `cfg`.
    pub fn apply(&self, cfg: &mut DannConfig, v: f64) {
        match self {
            SweepParam::Lambda => cfg.lambda_max = v,
            SweepParam::Lr => cfg.lr = v,
            SweepParam::Threshold => cfg.threshold = v,
            SweepParam::MccWeight => cfg.mcc_weight = v,
        }
    }
}

impl std::str::FromStr for SweepParam {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        SweepParam::ALL
            .into_iter()
            .find(|p| p.name() == norm)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown sweep setting `{s}`: expected lambda, lr, threshold or mcc_weight"
                ))
            })
    }
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    /// The settings of this run.
    pub settings: Vec<(SweepParam, f64)>,
    /// Its result with the checkpoint chosen by the scorer.
    pub result: DannResult,
    /// The scorer's value at the chosen checkpoint.
    pub score: f64,
}

/// A choice among the runs of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepChoice {
    /// Index into [`SweepResult::runs`].
    pub run: usize,
    /// Target test accuracy of the choice.
    pub target_acc: f64,
}

/// What [`sweep`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// The scorer that chose checkpoints and runs.
    pub scorer: Scorer,
    /// Every run, in grid order (the first setting varies slowest).
    pub runs: Vec<SweepRun>,
    /// The run with the best label-free score (what a user gets).
    pub label_free: SweepChoice,
    /// The best target accuracy of any evaluation of any run (reference only).
    pub oracle: SweepChoice,
}

/// The grid's points: every combination of the values, the first setting varying slowest.
/// An error when a setting has no values or appears twice.
pub fn grid_points(grid: &[(SweepParam, Vec<f64>)]) -> Result<Vec<Vec<(SweepParam, f64)>>> {
    let mut points: Vec<Vec<(SweepParam, f64)>> = vec![Vec::new()];
    for (i, (p, values)) in grid.iter().enumerate() {
        if values.is_empty() {
            return Err(TrainError::Config(format!(
                "sweep over {} has no values",
                p.name()
            )));
        }
        if grid.iter().take(i).any(|(q, _)| q == p) {
            return Err(TrainError::Config(format!(
                "sweep over {} is given twice",
                p.name()
            )));
        }
        points = points
            .into_iter()
            .flat_map(|pt| {
                values.iter().map(move |&v| {
                    let mut next = pt.clone();
                    next.push((*p, v));
                    next
                })
            })
            .collect();
    }
    Ok(points)
}

/// Trains `method` at every point of `grid` around `base` (each with checkpoint choice by
/// `scorer`), and chooses the run with the best score (see the module documentation).
/// An empty grid is one run of `base`.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    method: DannMethod,
    base: &DannConfig,
    grid: &[(SweepParam, Vec<f64>)],
    scorer: Scorer,
    source: &TensorDataset,
    target: &UnlabeledDataset,
    source_test: &TensorDataset,
    target_test: &TensorDataset,
    seed: u64,
    dev: &Device,
) -> Result<SweepResult> {
    let points = grid_points(grid)?;
    // Check every point's configuration before training anything.
    let cfgs: Vec<DannConfig> = points
        .iter()
        .map(|pt| {
            let mut cfg = base.clone();
            for (p, v) in pt {
                p.apply(&mut cfg, *v);
            }
            cfg.selection = Some(scorer);
            cfg.validate().map(|_| cfg)
        })
        .collect::<Result<_>>()?;
    let mut runs = Vec::with_capacity(points.len());
    for (pt, cfg) in points.into_iter().zip(&cfgs) {
        let model = train(
            method,
            cfg,
            source,
            target,
            Some(source_test),
            Some(target_test),
            seed,
            dev,
        )?;
        let result = model.evaluate(source_test, target_test)?;
        let score = model.report.best.as_ref().map_or(f64::NAN, |b| b.value);
        tracing::info!(
            target: "xfer_train",
            method = method.name(),
            settings = ?pt,
            score,
            "sweep run"
        );
        runs.push(SweepRun {
            settings: pt,
            result,
            score,
        });
    }
    let mut lf = 0;
    for (i, r) in runs.iter().enumerate() {
        if runs
            .get(lf)
            .is_some_and(|b| scorer.better(r.score, b.score))
        {
            lf = i;
        }
    }
    let mut oracle = 0;
    let oracle_of = |r: &SweepRun| r.result.oracle_target_acc.unwrap_or(r.result.target_acc);
    for (i, r) in runs.iter().enumerate() {
        if runs
            .get(oracle)
            .is_some_and(|b| oracle_of(r) > oracle_of(b))
        {
            oracle = i;
        }
    }
    let label_free = SweepChoice {
        run: lf,
        target_acc: runs.get(lf).map_or(f64::NAN, |r| r.result.target_acc),
    };
    let oracle = SweepChoice {
        run: oracle,
        target_acc: runs.get(oracle).map_or(f64::NAN, oracle_of),
    };
    Ok(SweepResult {
        scorer,
        runs,
        label_free,
        oracle,
    })
}
