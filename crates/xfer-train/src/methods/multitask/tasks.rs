//! Tasks named by a list (a command line's `--tasks`) and the [`Data`] they make: the tasks
//! that label the shared data (its classes, their parity, a class attribute) and the tasks
//! with a data set of their own.

use candle_core::Device;
use xfer_data::{TensorDataset, UnlabeledDataset};

use super::data::{TaskLabels, TaskSet};
use super::run::Data;
use crate::{Result, TrainError};

/// One task before it is split: its data and how its labels come from the data's classes.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The task's name.
    pub name: String,
    /// `None`: the task labels the shared data; `Some`: its own data set (its classes).
    pub own: Option<TensorDataset>,
    /// Class id → task label.
    pub map: Vec<u32>,
}

impl TaskSpec {
    /// Parses a comma-separated list against the shared data `base`: `digit` or `class` (the
    /// data's classes), `parity` (class mod 2), a class attribute of `base` (`loops`,
    /// `seg_a`, ...; rounded to a label), or `NAME=SPEC`, a task with its own data set (a
    /// data spec, loaded with `seed`). The first task is the main task; names are distinct.
    pub fn parse_list(list: &str, base: &TensorDataset, seed: u64) -> Result<Vec<TaskSpec>> {
        let classes = base.num_classes() as u32;
        let mut out: Vec<TaskSpec> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let shared = |map: Vec<u32>| TaskSpec {
                name: item.to_string(),
                own: None,
                map,
            };
            let spec = if let Some((name, spec)) = item.split_once('=') {
                let ds = xfer_data::load(spec, seed)?;
                let map = (0..ds.num_classes() as u32).collect();
                TaskSpec {
                    name: name.to_string(),
                    own: Some(ds),
                    map,
                }
            } else if item == "digit" || item == "class" {
                shared((0..classes).collect())
            } else if item == "parity" {
                shared((0..classes).map(|c| c % 2).collect())
            } else {
                shared(attribute_map(base, item)?)
            };
            if out.iter().any(|t| t.name == spec.name) {
                return Err(TrainError::invalid(
                    "tasks",
                    list,
                    format!("distinct task names ({} given twice)", spec.name),
                ));
            }
            out.push(spec);
        }
        if out.is_empty() {
            return Err(TrainError::invalid("tasks", list, "at least one task"));
        }
        Ok(out)
    }
}

/// Class id → the rounded value of `base`'s class attribute `name`.
fn attribute_map(base: &TensorDataset, name: &str) -> Result<Vec<u32>> {
    let attrs = base.attributes().ok_or_else(|| {
        TrainError::invalid(
            "task",
            name,
            format!(
                "digit, parity or NAME=SPEC ({} has no class attributes)",
                base.name()
            ),
        )
    })?;
    let j = attrs
        .names()
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| {
            TrainError::invalid(
                "task",
                name,
                format!(
                    "a built-in task (digit, parity) or an attribute of {} ({})",
                    base.name(),
                    attrs.names().join(", ")
                ),
            )
        })?;
    (0..base.num_classes())
        .map(|c| {
            attrs
                .row(c)
                .and_then(|r| r.get(j))
                .map(|v| v.round().max(0.0) as u32)
                .ok_or_else(|| {
                    TrainError::BadData(format!("attribute {name} missing for class {c}"))
                })
        })
        .collect()
}

/// How [`Data::from_tasks`] splits and labels the data sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSplit {
    /// Labelled examples per class kept for the main task (0: all); its other training
    /// labels are masked.
    pub labels_per_class: usize,
    /// Fraction of every data set held out for testing (stratified).
    pub test_fraction: f64,
    /// Factor applied to every feature first (the examples' common scale).
    pub scale: f32,
    /// Seed of the splits and of the kept labels.
    pub seed: u64,
}

impl Data {
    /// The sets of `specs` (the first the main task): every data set is scaled and split into
    /// a training and a test part; the first training set is the shared data labelled by
    /// every task without data of its own (the main task keeping
    /// [`TaskSplit::labels_per_class`] labels per class), then one set per task with its own
    /// data. Test sets alike, fully labelled.
    pub fn from_tasks(
        base: &TensorDataset,
        specs: &[TaskSpec],
        split: &TaskSplit,
        device: &Device,
    ) -> Result<Self> {
        let seed = split.seed;
        let main = specs
            .first()
            .ok_or_else(|| TrainError::invalid("tasks", "none", "at least one task"))?;
        let labels = |ds: &TensorDataset, s: &TaskSpec| {
            TaskLabels::from_classes(&s.name, ds.labels(), &s.map, device)
        };
        let features = |ds: &TensorDataset| {
            UnlabeledDataset::new(
                ds.name(),
                ds.features().to_vec(),
                ds.sample_shape().to_vec(),
            )
        };
        let cut = |ds: &TensorDataset| {
            xfer_data::stratified_split(&ds.clone().scale(split.scale), split.test_fraction, seed)
        };
        let (base_train, base_test) = cut(base)?;
        let mut main_train = labels(&base_train, main)?;
        if split.labels_per_class > 0 {
            main_train = main_train.keep_per_class(split.labels_per_class, seed)?;
        }
        let mut shared_train = vec![main_train];
        let mut shared_test = vec![labels(&base_test, main)?];
        for s in specs.iter().skip(1).filter(|s| s.own.is_none()) {
            shared_train.push(labels(&base_train, s)?);
            shared_test.push(labels(&base_test, s)?);
        }
        let mut train = vec![TaskSet::new(features(&base_train)?, shared_train)?];
        let mut test = vec![TaskSet::new(features(&base_test)?, shared_test)?];
        for s in specs.iter().skip(1) {
            if let Some(ds) = &s.own {
                let (tr, te) = cut(ds)?;
                train.push(TaskSet::new(features(&tr)?, vec![labels(&tr, s)?])?);
                test.push(TaskSet::new(features(&te)?, vec![labels(&te, s)?])?);
            }
        }
        Data::new(train, test)
    }
}
