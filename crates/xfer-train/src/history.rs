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

/// The fixed columns of [`History::to_csv`], before the metric columns.
pub const CSV_COLUMNS: [&str; 7] = ["run", "kind", "step", "epoch", "loss", "lr", "grad_norm"];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line written by [`History::to_csv`] (quoted fields may hold commas and
/// doubled quotes; no field holds a newline).
fn csv_split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A number as written to the CSV: Rust's shortest round-trip decimal (`NaN`, `inf`, `-inf`
/// for the non-finite values).
fn csv_num(x: f64) -> String {
    format!("{x:?}")
}

impl History {
    /// The histories of several runs as one CSV table: a header
    /// `run,kind,step,epoch,loss,lr,grad_norm,<metric>...` (the metric columns: every metric
    /// name of any step or evaluation, in order of first appearance), then per run one row per
    /// step (`kind` = `step`) and one per evaluation (`kind` = `eval`, whose `loss`, `lr` and
    /// `grad_norm` are empty), in step order (an evaluation after the step it followed). A
    /// cell is empty where a row has no such value; numbers are exact (shortest round-trip
    /// form).
    pub fn to_csv(runs: &[(&str, &History)]) -> String {
        let mut names: Vec<&str> = Vec::new();
        for (_, h) in runs {
            let all = h
                .steps
                .iter()
                .flat_map(|r| &r.metrics)
                .chain(h.evals.iter().flat_map(|r| &r.metrics));
            for (n, _) in all {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        let mut out = String::new();
        let header: Vec<String> = CSV_COLUMNS
            .iter()
            .copied()
            .chain(names.iter().copied())
            .map(csv_field)
            .collect();
        out.push_str(&header.join(","));
        out.push('\n');
        let row = |out: &mut String, fixed: [String; 7], m: &Metrics| {
            let mut cells: Vec<String> = fixed.into_iter().collect();
            cells.extend(
                names
                    .iter()
                    .map(|n| metric(m, n).map(csv_num).unwrap_or_default()),
            );
            out.push_str(&cells.join(","));
            out.push('\n');
        };
        for (run, h) in runs {
            let run = csv_field(run);
            let mut evals = h.evals.iter().peekable();
            for s in &h.steps {
                // Evaluations that ran before this step (after `s.step` steps had been taken).
                while let Some(e) = evals.next_if(|e| e.step <= s.step) {
                    row(&mut out, eval_cells(&run, e), &e.metrics);
                }
                row(
                    &mut out,
                    [
                        run.clone(),
                        "step".into(),
                        s.step.to_string(),
                        s.epoch.to_string(),
                        csv_num(s.loss),
                        csv_num(s.lr),
                        s.grad_norm.map(csv_num).unwrap_or_default(),
                    ],
                    &s.metrics,
                );
            }
            for e in evals {
                row(&mut out, eval_cells(&run, e), &e.metrics);
            }
        }
        out
    }

    /// Writes [`History::to_csv`] of `runs` to `path` (e.g. a run folder's `metrics.csv`).
    pub fn write_csv(path: &std::path::Path, runs: &[(&str, &History)]) -> crate::Result<()> {
        std::fs::write(path, History::to_csv(runs)).map_err(|e| crate::TrainError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Reads back a table written by [`History::to_csv`]: the runs in order of first
    /// appearance with their histories (a metric cell left empty is a metric the row did not
    /// have; a row's metrics come back in column order). An error names the line at fault.
    pub fn from_csv(text: &str) -> crate::Result<Vec<(String, History)>> {
        let bad = |line: usize, msg: String| {
            crate::TrainError::BadData(format!("metrics CSV line {line}: {msg}"))
        };
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.is_empty());
        let (_, head) = lines.next().ok_or_else(|| bad(1, "no header".into()))?;
        let header = csv_split(head);
        if header
            .get(..CSV_COLUMNS.len())
            .is_none_or(|h| h != CSV_COLUMNS)
        {
            return Err(bad(
                1,
                format!("the header must start with {}", CSV_COLUMNS.join(",")),
            ));
        }
        let names = &header[CSV_COLUMNS.len()..];
        let mut runs: Vec<(String, History)> = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let cells = csv_split(line);
            if cells.len() != header.len() {
                return Err(bad(
                    n,
                    format!("{} fields, expected {}", cells.len(), header.len()),
                ));
            }
            let num = |k: usize| -> crate::Result<Option<f64>> {
                let c = cells[k].as_str();
                if c.is_empty() {
                    return Ok(None);
                }
                c.parse::<f64>()
                    .map(Some)
                    .map_err(|_| bad(n, format!("`{c}` in column {} is not a number", header[k])))
            };
            let int = |k: usize| -> crate::Result<usize> {
                cells[k].parse::<usize>().map_err(|_| {
                    bad(
                        n,
                        format!("`{}` in column {} is not a count", cells[k], header[k]),
                    )
                })
            };
            let mut metrics = Vec::new();
            for (j, name) in names.iter().enumerate() {
                if let Some(v) = num(CSV_COLUMNS.len() + j)? {
                    metrics.push((name.clone(), v));
                }
            }
            let run = cells[0].clone();
            let h = match runs.iter().position(|(r, _)| *r == run) {
                Some(p) => &mut runs[p].1,
                None => {
                    runs.push((run, History::default()));
                    let last = runs.len() - 1;
                    &mut runs[last].1
                }
            };
            let (step, epoch) = (int(2)?, int(3)?);
            match cells[1].as_str() {
                "step" => h.steps.push(StepRecord {
                    step,
                    epoch,
                    loss: num(4)?.ok_or_else(|| bad(n, "a step row without a loss".into()))?,
                    lr: num(5)?.ok_or_else(|| bad(n, "a step row without a lr".into()))?,
                    grad_norm: num(6)?,
                    metrics,
                }),
                "eval" => h.evals.push(EvalRecord {
                    step,
                    epoch,
                    metrics,
                }),
                k => return Err(bad(n, format!("kind `{k}`: expected step or eval"))),
            }
        }
        Ok(runs)
    }
}

fn eval_cells(run: &str, e: &EvalRecord) -> [String; 7] {
    [
        run.to_string(),
        "eval".into(),
        e.step.to_string(),
        e.epoch.to_string(),
        String::new(),
        String::new(),
        String::new(),
    ]
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
    fn csv_table_has_a_header_and_a_row_per_step_and_eval_and_round_trips() {
        let step = |step, epoch, loss: f64, m: Metrics| StepRecord {
            step,
            epoch,
            loss,
            lr: 0.01,
            grad_norm: (step == 1).then_some(2.5),
            metrics: m,
        };
        let a = History {
            steps: vec![
                step(0, 0, 1.0 / 3.0, vec![("class_loss".into(), 0.5)]),
                step(1, 0, 0.25, vec![("class_loss".into(), f64::NAN)]),
            ],
            evals: vec![EvalRecord {
                step: 1,
                epoch: 0,
                metrics: vec![("class_loss".into(), 9.0), ("source_val_acc".into(), 0.75)],
            }],
        };
        let b = History {
            steps: vec![step(0, 0, 2.0, vec![("lambda".into(), 0.1)])],
            evals: vec![EvalRecord {
                step: 1,
                epoch: 0,
                metrics: vec![("source_val_acc".into(), 0.5)],
            }],
        };
        let csv = History::to_csv(&[("dann", &a), ("with,comma", &b)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "run,kind,step,epoch,loss,lr,grad_norm,class_loss,source_val_acc,lambda"
        );
        assert_eq!(lines.len(), 1 + 3 + 2);
        assert_eq!(lines[1], "dann,step,0,0,0.3333333333333333,0.01,,0.5,,");
        assert_eq!(lines[2], "dann,eval,1,0,,,,9.0,0.75,");
        assert_eq!(lines[3], "dann,step,1,0,0.25,0.01,2.5,NaN,,");
        assert_eq!(lines[4], "\"with,comma\",step,0,0,2.0,0.01,,,,0.1");
        assert_eq!(lines[5], "\"with,comma\",eval,1,0,,,,,0.5,");
        let back = History::from_csv(&csv).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].0.as_str(), back[1].0.as_str()),
            ("dann", "with,comma")
        );
        assert_eq!(back[1].1, b);
        let (ra, rb) = (&back[0].1, &a);
        assert_eq!(ra.evals, rb.evals);
        assert_eq!(ra.steps.len(), 2);
        assert_eq!(ra.steps[0], rb.steps[0]);
        assert_eq!(ra.steps[1].grad_norm, Some(2.5));
        assert!(ra.steps[1].metrics[0].1.is_nan());
        assert!(History::from_csv("step,loss\n").is_err());
        let broken = csv.replace("dann,eval,1,0", "dann,eval,x,0");
        let e = History::from_csv(&broken).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
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
