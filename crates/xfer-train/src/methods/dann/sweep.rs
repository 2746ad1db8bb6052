//! A small hyper-parameter sweep scored without target labels: every point of a grid over
//! `λ` / learning rate / pseudo-label threshold / MCC weight is trained with checkpoint
//! choice by the scorer, the run with the best label-free score is the choice, and the
//! oracle choice (the best target accuracy of any evaluation of any run) is reported beside
//! it so the gap is visible.

use serde::{Deserialize, Serialize};

use super::{Config, Data, Evaluation, run};
use crate::model_selection::Scorer;
use crate::run::RunCtx;
use crate::{Result, TrainError};

/// A swept setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepParam {
    /// `λ_max`, [`super::Ramp::max`].
    Lambda,
    /// The base learning rate, [`crate::run::Stage::lr`].
    Lr,
    /// The pseudo-label confidence, [`super::PseudoLabelConfig::threshold`].
    Threshold,
    /// MCC's weight, [`super::MccConfig::weight`].
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
    pub fn apply(&self, cfg: &mut Config, v: f64) {
        match self {
            SweepParam::Lambda => cfg.ramp.max = v,
            SweepParam::Lr => cfg.stage.lr = v,
            SweepParam::Threshold => cfg.terms.pseudo_label.threshold = v,
            SweepParam::MccWeight => cfg.terms.mcc.weight = v,
        }
    }

    /// One `KEY=V1,V2,...` axis of a grid (the example's `--sweep`).
    pub fn parse_axis(s: &str) -> Result<(SweepParam, Vec<f64>)> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            TrainError::invalid(
                "sweep",
                s,
                "KEY=V1,V2,... (KEY: lambda, lr, threshold, mcc_weight)",
            )
        })?;
        let param: SweepParam = k.parse()?;
        let values = v
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| {
                x.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| TrainError::invalid(format!("sweep {k}"), x, "a number"))
            })
            .collect::<Result<Vec<_>>>()?;
        if values.is_empty() {
            return Err(no_values(param));
        }
        Ok((param, values))
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
                TrainError::invalid("sweep setting", s, "lambda, lr, threshold or mcc_weight")
            })
    }
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    /// The settings of this run.
    pub settings: Vec<(SweepParam, f64)>,
    /// Its evaluation with the checkpoint chosen by the scorer.
    pub result: Evaluation,
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

fn no_values(p: SweepParam) -> TrainError {
    TrainError::invalid(
        format!("sweep {}", p.name()),
        "no values",
        "at least one value",
    )
}

/// The grid's points: every combination of the values, the first setting varying slowest.
/// An error when a setting has no values or appears twice.
pub fn grid_points(grid: &[(SweepParam, Vec<f64>)]) -> Result<Vec<Vec<(SweepParam, f64)>>> {
    let mut points: Vec<Vec<(SweepParam, f64)>> = vec![Vec::new()];
    for (i, (p, values)) in grid.iter().enumerate() {
        if values.is_empty() {
            return Err(no_values(*p));
        }
        if grid.iter().take(i).any(|(q, _)| q == p) {
            return Err(TrainError::invalid(
                format!("sweep {}", p.name()),
                "given twice",
                "one axis per setting",
            ));
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

/// Trains `base` at every point of `grid` (each with checkpoint choice by `scorer`; run `i`
/// checkpoints under `DIR/point-i/<method>/`), and chooses the run with the best score (see
/// the module documentation). An empty grid is one run of `base`. The report needs
/// `data.target_test`.
pub fn sweep(
    base: &Config,
    grid: &[(SweepParam, Vec<f64>)],
    scorer: Scorer,
    data: &Data,
    ctx: &RunCtx,
) -> Result<SweepResult> {
    if data.target_test.is_none() {
        return Err(TrainError::BadData(
            "a sweep reports target accuracy: give the data a labelled target test set".into(),
        ));
    }
    let points = grid_points(grid)?;
    // Check every point's configuration before training anything.
    let cfgs: Vec<Config> = points
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
    for (i, (pt, cfg)) in points.into_iter().zip(&cfgs).enumerate() {
        let mut point_ctx = ctx.clone();
        if let Some(ck) = &mut point_ctx.checkpoints {
            ck.dir = ck.dir.join(format!("point-{i}"));
        }
        let outcome = run(cfg, data, &point_ctx)?;
        let result = outcome.evaluation.ok_or_else(|| {
            TrainError::BadData("a sweep run was not evaluated (no target test set)".into())
        })?;
        let score = outcome.report.best.as_ref().map_or(f64::NAN, |b| b.value);
        tracing::info!(
            target: "xfer_train",
            method = cfg.method.name(),
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

impl SweepResult {
    /// The numbers of a report: `target_acc` (the label-free choice), `oracle_target_acc`,
    /// `runs`, and the settings of both choices (`chosen_<key>`, `oracle_<key>`).
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = vec![
            ("target_acc".into(), self.label_free.target_acc),
            ("oracle_target_acc".into(), self.oracle.target_acc),
            ("runs".into(), self.runs.len() as f64),
        ];
        for (choice, run) in [("chosen", self.label_free.run), ("oracle", self.oracle.run)] {
            if let Some(r) = self.runs.get(run) {
                for (p, v) in &r.settings {
                    m.push((format!("{choice}_{}", p.name()), *v));
                }
            }
        }
        m
    }

    /// One line per run: its settings, score, target accuracy and oracle accuracy.
    pub fn lines(&self, method: &str) -> Vec<String> {
        self.runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let settings: Vec<String> = r
                    .settings
                    .iter()
                    .map(|(p, v)| format!("{}={v}", p.name()))
                    .collect();
                format!(
                    "  {method} run {i} [{}]: {} {:.4} → target acc {:.4} (oracle {:.4})",
                    settings.join(" "),
                    self.scorer,
                    r.score,
                    r.result.target_acc,
                    r.result.oracle_target_acc.unwrap_or(f64::NAN)
                )
            })
            .collect()
    }
}
