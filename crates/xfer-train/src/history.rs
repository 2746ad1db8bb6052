//! The record of a training run: one entry per optimiser step and one per evaluation, for
//! curves (plots) and reports.

use serde::Serialize;

/// Named scalar metrics, in the order they were produced.
pub type Metrics = Vec<(String, f64)>;

/// The value of `name` in `metrics`.
pub fn metric(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// What one optimiser step recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// 0-based step index.
    pub step: usize,
    /// 0-based epoch of the step.
    pub epoch: usize,
    /// The objective's loss.
    pub loss: f64,
    /// The scheduled base learning rate used.
    pub lr: f64,
    /// The global gradient norm before clipping (absent when neither clipping nor the
    /// finiteness check computed it).
    pub grad_norm: Option<f64>,
    /// The objective's own metrics for this step.
    pub metrics: Metrics,
}

/// What one evaluation recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRecord {
    /// The number of steps taken when the evaluation ran.
    pub step: usize,
    /// The 0-based epoch that had just finished.
    pub epoch: usize,
    /// The evaluation's metrics.
    pub metrics: Metrics,
}

/// Every step and evaluation of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// One record per optimiser step.
    pub steps: Vec<StepRecord>,
    /// One record per evaluation (once per epoch).
    pub evals: Vec<EvalRecord>,
}

impl History {
    /// `(step, loss)` for every step.
    pub fn loss_curve(&self) -> Vec<(f64, f64)> {
        self.steps.iter().map(|r| (r.step as f64, r.loss)).collect()
    }

    /// `(step, value)` of a per-step metric of the objective (`"lr"` and `"grad_norm"` work too).
    pub fn step_curve(&self, name: &str) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .filter_map(|r| {
                let v = match name {
                    "loss" => Some(r.loss),
                    "lr" => Some(r.lr),
                    "grad_norm" => r.grad_norm,
                    _ => metric(&r.metrics, name),
                };
                v.map(|v| (r.step as f64, v))
            })
            .collect()
    }

    /// `(step, value)` of an evaluation metric, one point per evaluation.
    pub fn eval_curve(&self, name: &str) -> Vec<(f64, f64)> {
        self.evals
            .iter()
            .filter_map(|r| metric(&r.metrics, name).map(|v| (r.step as f64, v)))
            .collect()
    }

    /// The mean loss of the steps of `epoch`.
    pub fn epoch_loss(&self, epoch: usize) -> Option<f64> {
        let (s, n) = self
            .steps
            .iter()
            .filter(|r| r.epoch == epoch)
            .fold((0.0, 0usize), |(s, n), r| (s + r.loss, n + 1));
        (n > 0).then(|| s / n as f64)
    }

    /// The mean of a per-step metric over the steps of `epoch`.
    pub fn epoch_metric(&self, epoch: usize, name: &str) -> Option<f64> {
        let (s, n) = self
            .steps
            .iter()
            .filter(|r| r.epoch == epoch)
            .filter_map(|r| metric(&r.metrics, name))
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| s / n as f64)
    }

    /// The last evaluation, if any.
    pub fn last_eval(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }
}

/// Exact text form of the history for checkpoints: every float as Rust's shortest
/// round-trip decimal (so a resumed run carries bit-identical records; NaN and ±inf survive).
pub(crate) mod wire {
    use super::{EvalRecord, History, Metrics, StepRecord};
    use serde::{Deserialize, Serialize};

    fn f(x: f64) -> String {
        format!("{x:?}")
    }

    fn p(s: &str) -> Result<f64, String> {
        s.parse::<f64>()
            .map_err(|_| format!("not a number in history: {s:?}"))
    }

    fn metrics_out(m: &Metrics) -> Vec<(String, String)> {
        m.iter().map(|(n, v)| (n.clone(), f(*v))).collect()
    }

    fn metrics_in(m: &[(String, String)]) -> Result<Metrics, String> {
        m.iter().map(|(n, v)| Ok((n.clone(), p(v)?))).collect()
    }

    #[derive(Serialize, Deserialize)]
    struct Step {
        s: usize,
        e: usize,
        loss: String,
        lr: String,
        gn: Option<String>,
        m: Vec<(String, String)>,
    }

    #[derive(Serialize, Deserialize)]
    struct Eval {
        s: usize,
        e: usize,
        m: Vec<(String, String)>,
    }

    #[derive(Serialize, Deserialize)]
    struct Wire {
        steps: Vec<Step>,
        evals: Vec<Eval>,
    }

    pub fn to_json(h: &History) -> Result<String, String> {
        let w = Wire {
            steps: h
                .steps
                .iter()
                .map(|r| Step {
                    s: r.step,
                    e: r.epoch,
                    loss: f(r.loss),
                    lr: f(r.lr),
                    gn: r.grad_norm.map(f),
                    m: metrics_out(&r.metrics),
                })
                .collect(),
            evals: h
                .evals
                .iter()
                .map(|r| Eval {
                    s: r.step,
                    e: r.epoch,
                    m: metrics_out(&r.metrics),
                })
                .collect(),
        };
        serde_json::to_string(&w).map_err(|e| e.to_string())
    }

    pub fn from_json(s: &str) -> Result<History, String> {
        let w: Wire = serde_json::from_str(s).map_err(|e| e.to_string())?;
        let steps = w
            .steps
            .iter()
            .map(|r| {
                Ok(StepRecord {
                    step: r.s,
                    epoch: r.e,
                    loss: p(&r.loss)?,
                    lr: p(&r.lr)?,
                    grad_norm: r.gn.as_deref().map(p).transpose()?,
                    metrics: metrics_in(&r.m)?,
                })
            })
            .collect::<Result<_, String>>()?;
        let evals = w
            .evals
            .iter()
            .map(|r| {
                Ok(EvalRecord {
                    step: r.s,
                    epoch: r.e,
                    metrics: metrics_in(&r.m)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(History { steps, evals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_wire_format_round_trips_bits_and_non_finite_values() {
        let h = History {
            steps: vec![StepRecord {
                step: 0,
                epoch: 0,
                loss: 0.1 + 0.2,
                lr: 1.0 / 3.0,
                grad_norm: Some(12345.678901234567),
                metrics: vec![("a".into(), f64::NAN), ("b".into(), f64::NEG_INFINITY)],
            }],
            evals: vec![EvalRecord {
                step: 1,
                epoch: 0,
                metrics: vec![("acc".into(), 0.8765432109876543)],
            }],
        };
        let back = wire::from_json(&wire::to_json(&h).unwrap()).unwrap();
        assert_eq!(back.steps[0].loss.to_bits(), h.steps[0].loss.to_bits());
        assert_eq!(back.steps[0].lr.to_bits(), h.steps[0].lr.to_bits());
        assert!(back.steps[0].metrics[0].1.is_nan());
        assert_eq!(back.steps[0].metrics[1].1, f64::NEG_INFINITY);
        assert_eq!(back.evals, h.evals);
    }

    #[test]
    fn curves_and_epoch_means_read_the_records() {
        let rec = |step, epoch, loss| StepRecord {
            step,
            epoch,
            loss,
            lr: 0.1,
            grad_norm: None,
            metrics: vec![("acc".into(), loss * 2.0)],
        };
        let h = History {
            steps: vec![rec(0, 0, 1.0), rec(1, 0, 3.0), rec(2, 1, 5.0)],
            evals: vec![EvalRecord {
                step: 2,
                epoch: 0,
                metrics: vec![("val".into(), 0.5)],
            }],
        };
        assert_eq!(h.epoch_loss(0), Some(2.0));
        assert_eq!(h.epoch_metric(0, "acc"), Some(4.0));
        assert_eq!(h.epoch_loss(7), None);
        assert_eq!(
            h.step_curve("acc"),
            vec![(0.0, 2.0), (1.0, 6.0), (2.0, 10.0)]
        );
        assert_eq!(h.eval_curve("val"), vec![(2.0, 0.5)]);
        assert!(h.step_curve("grad_norm").is_empty());
    }
}
