//! The family's one entry: [`run`]`(&Config, &Data, &RunCtx)`, the [`Method`] inside the
//! [`Config`] — the single-task baseline, fixed or uncertainty task weights, or a progressive
//! column — and the [`Outcome`] holding what was trained, its reports and its metrics.

use std::fmt;

use serde::{Deserialize, Serialize};
use xfer_models::{ParamStore, ProgressiveNet};

use super::data::{TaskLabels, TaskSet};
use super::model::{MultitaskModel, MultitaskModelConfig, Weighting};
use super::objective::train_multitask;
use super::progressive::{ProgressiveConfig, ProgressiveOutcome, train_progressive};
use crate::run::{Length, RunCtx, Stage};
use crate::trainer::TrainReport;
use crate::{Result, TrainError};

/// The runs of multitask learning (the main task is the first task of the first set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The baseline: the main task alone, on its labelled examples, with the same network and
    /// as many steps as a multitask run takes.
    SingleTask,
    /// Every task, `Σ_t w_t L_t` with [`Config::weights`].
    Fixed,
    /// Every task, uncertainty weighting `Σ_t exp(−s_t) L_t + s_t`.
    Uncertainty,
    /// A progressive network: column 0 learns [`Config::old_task`], then column 1 the main
    /// task through laterals from the frozen column 0.
    Progressive,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 4] = [
        Method::SingleTask,
        Method::Fixed,
        Method::Uncertainty,
        Method::Progressive,
    ];

    /// The run name (`single_task`, `fixed`, `uncertainty`, `progressive`).
    pub fn name(&self) -> &'static str {
        match self {
            Method::SingleTask => "single_task",
            Method::Fixed => "fixed",
            Method::Uncertainty => "uncertainty",
            Method::Progressive => "progressive",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = TrainError;

    /// A method's name; `-` may stand for `_` (`single-task`).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                TrainError::invalid("method", s, format!("one of {}", names.join(", ")))
            })
    }
}

/// Everything a multitask run needs besides its data and [`RunCtx`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The run.
    pub method: Method,
    /// Widths of the shared trunk (an MLP on flattened inputs).
    pub trunk: Vec<usize>,
    /// Hidden widths of each task head (empty: a linear head).
    pub head_hidden: Vec<usize>,
    /// Give every task its own input layer (the single-task baseline never has one).
    pub input_layers: bool,
    /// The fixed task weights of [`Method::Fixed`], in task order (empty: all 1).
    pub weights: Vec<f64>,
    /// Training of the shared-trunk runs (an epoch: one pass over the largest set).
    pub stage: Stage,
    /// The columns of [`Method::Progressive`].
    pub progressive: ProgressiveConfig,
    /// The task column 0 of a progressive run learns (`None`: the task after the main one,
    /// in set order).
    pub old_task: Option<String>,
}

impl Config {
    /// The tuned settings (examples/multitask.rs, the quickstart): a `128, 64` trunk, linear
    /// heads, Adam at 1e-3 for `epochs` epochs of 64 examples; progressive columns of
    /// `128, 64` with 32-wide lateral adapters, each column trained like the trunk.
    pub fn new(method: Method, epochs: usize) -> Self {
        let stage = Stage::adam(1e-3).with_epochs(epochs).with_batch_size(64);
        Self {
            method,
            trunk: vec![128, 64],
            head_hidden: Vec::new(),
            input_layers: false,
            weights: Vec::new(),
            progressive: ProgressiveConfig {
                hidden: vec![128, 64],
                adapter_dim: Some(32),
                first: stage.clone(),
                second: stage.clone(),
            },
            stage,
            old_task: None,
        }
    }

    /// The same settings for `method`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The shared-trunk network and training of a run over `tasks` tasks.
    fn model_config(&self, tasks: usize) -> MultitaskModelConfig {
        let weighting = match self.method {
            Method::Uncertainty => Weighting::Uncertainty,
            Method::Fixed if !self.weights.is_empty() => Weighting::Fixed(self.weights.clone()),
            _ => Weighting::Fixed(vec![1.0; tasks]),
        };
        MultitaskModelConfig {
            trunk: self.trunk.clone(),
            head_hidden: self.head_hidden.clone(),
            input_layers: self.input_layers && self.method != Method::SingleTask,
            weighting,
            stage: self.stage.clone(),
        }
    }

    /// Why `self.method` cannot run on `data` although the data are sound (`None`: it can):
    /// progressive columns share their input, so the old task needs the main task's
    /// features. A caller may skip the run with this reason.
    pub fn unsupported(&self, data: &Data) -> Option<String> {
        if self.method != Method::Progressive {
            return None;
        }
        let ((old, _), (new, _)) = data.columns(self).ok()?;
        (old.feature_dim() != new.feature_dim()).then(|| {
            format!(
                "columns share the input, and {} has {} features per example, {} has {}",
                old.tasks.first().map_or("", |t| t.name.as_str()),
                old.feature_dim(),
                data.main_task().name,
                new.feature_dim()
            )
        })
    }
}

/// The data of a multitask run: task sets for training and, set for set with the same
/// tasks, for testing. The first task of the first set is the main task (its labels may be
/// masked: only a few are known).
#[derive(Debug, Clone)]
pub struct Data {
    train: Vec<TaskSet>,
    test: Vec<TaskSet>,
}

impl Data {
    /// `train` and `test`, checked: at least one set, one test set per training set with the
    /// same task names.
    pub fn new(train: Vec<TaskSet>, test: Vec<TaskSet>) -> Result<Self> {
        let names = |s: &TaskSet| s.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        if train.is_empty() || train.len() != test.len() {
            return Err(TrainError::BadData(format!(
                "multitask: {} training and {} test sets (one test set per training set, at \
                 least one)",
                train.len(),
                test.len()
            )));
        }
        if let Some((a, b)) = train.iter().zip(&test).find(|(a, b)| names(a) != names(b)) {
            return Err(TrainError::BadData(format!(
                "multitask: a training set has tasks {:?}, its test set {:?}",
                names(a),
                names(b)
            )));
        }
        Ok(Self { train, test })
    }

    /// The training sets.
    pub fn train(&self) -> &[TaskSet] {
        &self.train
    }

    /// The test sets, one per training set, with its tasks.
    pub fn test(&self) -> &[TaskSet] {
        &self.test
    }

    /// The main task's training labels (the first task of the first set).
    pub fn main_task(&self) -> &TaskLabels {
        // `Data::new` guarantees a first set and `TaskSet::new` its first task.
        &self.train[0].tasks[0]
    }

    /// Every task name, in set order.
    pub fn task_names(&self) -> Vec<&str> {
        self.train
            .iter()
            .flat_map(|s| s.tasks.iter().map(|t| t.name.as_str()))
            .collect()
    }

    /// The training and test sets of task `name` alone (the features of its set).
    pub fn task(&self, name: &str) -> Result<(TaskSet, TaskSet)> {
        for (train, test) in self.train.iter().zip(&self.test) {
            if let Some(i) = train.tasks.iter().position(|t| t.name == name) {
                let one = |s: &TaskSet| TaskSet::new(s.features.clone(), vec![s.tasks[i].clone()]);
                return Ok((one(train)?, one(test)?));
            }
        }
        Err(TrainError::invalid(
            "task",
            name,
            format!("one of the data's tasks ({})", self.task_names().join(", ")),
        ))
    }

    /// The main task's training examples whose label is known, as a one-task set.
    fn main_task_alone(&self) -> Result<TaskSet> {
        let set = &self.train[0];
        let main = &set.tasks[0];
        let known: Vec<usize> = (0..set.len()).filter(|&i| main.is_known(i)).collect();
        let y = main.y.to_vec1::<u32>()?;
        let labels: Vec<Option<u32>> = known.iter().map(|&i| y.get(i).copied()).collect();
        let labels = TaskLabels::new(&main.name, main.num_classes, &labels, main.y.device())?;
        TaskSet::new(set.features.subset(&known)?, vec![labels])
    }

    /// The sets of the two progressive columns: `(old train, old test)`, `(main train, main
    /// test)`.
    fn columns(&self, cfg: &Config) -> Result<((TaskSet, TaskSet), (TaskSet, TaskSet))> {
        let names = self.task_names();
        let old = match &cfg.old_task {
            Some(t) => t.as_str(),
            None => names.get(1).copied().ok_or_else(|| {
                TrainError::Incompatible(
                    "the progressive run needs a second task (column 0 learns it)".into(),
                )
            })?,
        };
        Ok((self.task(old)?, self.task(&self.main_task().name)?))
    }
}

/// What a run trained.
pub enum Trained {
    /// The shared trunk with every task's head (the single-task baseline: the main task's).
    Shared(MultitaskModel),
    /// The progressive network (column 0: the old task, frozen; column 1: the main task).
    Progressive {
        /// The network.
        net: ProgressiveNet,
        /// Its parameters.
        store: ParamStore,
        /// The task of column 0.
        old_task: String,
    },
}

impl fmt::Debug for Trained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trained::Shared(m) => f.debug_tuple("Shared").field(m).finish(),
            Trained::Progressive { old_task, .. } => f
                .debug_struct("Progressive")
                .field("old_task", old_task)
                .finish(),
        }
    }
}

/// What a multitask run made.
#[derive(Debug)]
pub struct Outcome {
    /// Which method trained it.
    pub method: Method,
    /// The trained network.
    pub trained: Trained,
    /// The training runs, named (`single_task`, `fixed`, `uncertainty`, or
    /// `progressive_column0` and `progressive_column1`).
    pub reports: Vec<(String, TrainReport)>,
    /// The main task's test accuracy (over its known labels).
    pub target_acc: f64,
    /// Every metric, `target_acc` first; then `acc_<task>` and `w_<task>` (the weights in
    /// force at the end) for every task of a shared run, or `old_task_acc_before` /
    /// `old_task_acc_after` (column 0 on its test set before and after column 1 trained)
    /// for a progressive one.
    pub metrics: Vec<(String, f64)>,
}

impl Outcome {
    /// [`Outcome::metrics`] as `(&str, f64)` pairs, for reports.
    pub fn metric_pairs(&self) -> Vec<(&str, f64)> {
        self.metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

/// Runs `cfg.method` on `data` with `ctx`'s device, seed, progress and checkpoints (under the
/// run's name):
///
/// - **single task**: the main task's labelled training examples alone, for as many steps as
///   a shared run over every set takes (epochs × batches of the largest set);
/// - **fixed** / **uncertainty**: every task of every set, one shared trunk
///   ([`train_multitask`]);
/// - **progressive**: column 0 on [`Config::old_task`], column 1 on the main task
///   ([`train_progressive`]).
///
/// Each is tested on the test sets; an accuracy without a known test label is NaN.
pub fn run(cfg: &Config, data: &Data, ctx: &RunCtx) -> Result<Outcome> {
    let method = cfg.method;
    let ctx = ctx.for_run(method.name());
    let (seed, dev) = (ctx.seed, &ctx.device);
    let nan = |a: Option<f64>| a.unwrap_or(f64::NAN);
    match method {
        Method::SingleTask => {
            let sets = [data.main_task_alone()?];
            let mut mc = cfg.model_config(1);
            let batch = mc.stage.batch_size.max(1);
            let multi_steps = match mc.stage.length {
                Length::Epochs(e) => {
                    let n = data.train.iter().map(TaskSet::len).max().unwrap_or(1);
                    e * n.div_ceil(batch)
                }
                Length::Steps(s) => s,
            };
            mc.stage.length =
                Length::Epochs(multi_steps.div_ceil(sets[0].len().div_ceil(batch)).max(1));
            let model = MultitaskModel::new(&sets, &mc, seed, dev)?;
            let report = train_multitask(&model, &sets, &mc, &ctx)?;
            let (_, main_test) = data.task(&data.main_task().name)?;
            let acc = nan(model.accuracy(&main_test)?.first().and_then(|a| a.1));
            Ok(Outcome {
                method,
                trained: Trained::Shared(model),
                reports: vec![(method.name().into(), report)],
                target_acc: acc,
                metrics: vec![("target_acc".into(), acc)],
            })
        }
        Method::Fixed | Method::Uncertainty => {
            let mc = cfg.model_config(data.task_names().len());
            let model = MultitaskModel::new(&data.train, &mc, seed, dev)?;
            let report = train_multitask(&model, &data.train, &mc, &ctx)?;
            let mut accs = Vec::new();
            for set in &data.test {
                for (task, acc) in model.accuracy(set)? {
                    accs.push((format!("acc_{task}"), nan(acc)));
                }
            }
            let target_acc = accs.first().map_or(f64::NAN, |m| m.1);
            let mut metrics = vec![("target_acc".to_string(), target_acc)];
            metrics.extend(accs);
            for (task, w) in model.tasks().iter().zip(model.task_weights()?) {
                metrics.push((format!("w_{task}"), w));
            }
            Ok(Outcome {
                method,
                trained: Trained::Shared(model),
                reports: vec![(method.name().into(), report)],
                target_acc,
                metrics,
            })
        }
        Method::Progressive => {
            if let Some(why) = cfg.unsupported(data) {
                return Err(TrainError::Incompatible(format!("progressive: {why}")));
            }
            let ((old_train, old_test), (new_train, new_test)) = data.columns(cfg)?;
            let ProgressiveOutcome {
                net,
                store,
                old_task_acc_before,
                old_task_acc_after,
                new_task_acc,
                reports: (r0, r1),
            } = train_progressive(
                (&old_train, &old_test),
                (&new_train, &new_test),
                &cfg.progressive,
                &ctx,
            )?;
            let target_acc = nan(new_task_acc);
            Ok(Outcome {
                method,
                trained: Trained::Progressive {
                    net,
                    store,
                    old_task: old_train
                        .tasks
                        .first()
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                },
                reports: vec![
                    ("progressive_column0".into(), r0),
                    ("progressive_column1".into(), r1),
                ],
                target_acc,
                metrics: vec![
                    ("target_acc".into(), target_acc),
                    ("old_task_acc_before".into(), nan(old_task_acc_before)),
                    ("old_task_acc_after".into(), nan(old_task_acc_after)),
                ],
            })
        }
    }
}
