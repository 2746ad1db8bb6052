//! Progressive networks: a new column per task, reading the frozen old columns.

use std::fmt;

use candle_core::{DType, Tensor};
use xfer_losses::CrossEntropyLoss;
use xfer_models::{Activation, ColumnConfig, ParamStore, ProgressiveNet};
use xfer_ops::SeededRng;

use xfer_data::{DataLoader, Dataset, UnlabeledDataset};

use super::super::finetune::loader;
use super::data::{TaskLabels, TaskSet};
use crate::batches::StepBatches;
use crate::metrics::{argmax_rows, labels_to_vec};
use crate::run::{RunCtx, Stage};
use crate::trainer::{Objective, StepCtx, StepOutput, TrainReport, derive_seed};
use crate::{Result, TrainError};

/// Trains column `column` of a progressive network on one task (masked cross-entropy on
/// the step's mini-batch); earlier columns are frozen and only read through the laterals.
pub struct ColumnObjective<'a> {
    net: &'a ProgressiveNet,
    column: usize,
    task: &'a TaskLabels,
    batches: StepBatches<'a, DataLoader<UnlabeledDataset>>,
}

impl fmt::Debug for ColumnObjective<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnObjective")
            .field("column", &self.column)
            .field("task", &self.task.name)
            .finish()
    }
}

impl<'a> ColumnObjective<'a> {
    /// Column `column` learns `task` on the batches of `loader` (over the task's examples).
    pub fn new(
        net: &'a ProgressiveNet,
        column: usize,
        loader: &'a DataLoader<UnlabeledDataset>,
        task: &'a TaskLabels,
    ) -> Result<Self> {
        if loader.dataset().len() != task.len() {
            return Err(TrainError::BadData(format!(
                "task {}: {} labels for {} examples",
                task.name,
                task.len(),
                loader.dataset().len()
            )));
        }
        Ok(Self {
            net,
            column,
            task,
            batches: StepBatches::new(loader),
        })
    }
}

impl Objective for ColumnObjective<'_> {
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        let batch = self.batches.next(ctx)?;
        let x = batch.x.flatten_from(1)?;
        let (y, mask) = self.task.select(&batch.indices)?;
        let z = self.net.forward_column(self.column, &x, true)?;
        let loss = CrossEntropyLoss::new().forward_masked(&z, &y, &mask)?;
        Ok(StepOutput::new(loss))
    }
}

/// Accuracy of column `column` on the first task of `set`, over the examples whose label is
/// known (`None` when none is).
pub fn column_accuracy(net: &ProgressiveNet, column: usize, set: &TaskSet) -> Result<Option<f64>> {
    let task = first_task(set)?;
    let z = net.forward_column(column, &set.x.flatten_from(1)?, false)?;
    known_accuracy(&z, task)
}

fn first_task(set: &TaskSet) -> Result<&TaskLabels> {
    set.tasks
        .first()
        .ok_or_else(|| TrainError::BadData("task set without a task".into()))
}

/// Accuracy of `logits` on `task` over its known labels.
pub(super) fn known_accuracy(logits: &Tensor, task: &TaskLabels) -> Result<Option<f64>> {
    let pred = argmax_rows(logits)?;
    let y = labels_to_vec(&task.y)?;
    let (mut hit, mut n) = (0usize, 0usize);
    for ((p, y), k) in pred.iter().zip(&y).zip(&task.known) {
        if *k {
            n += 1;
            hit += usize::from(p == y);
        }
    }
    Ok((n > 0).then(|| hit as f64 / n as f64))
}

/// The settings of a two-column progressive network.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProgressiveConfig {
    /// Hidden widths of each column.
    pub hidden: Vec<usize>,
    /// Width of the non-linear lateral adapters (`None`: linear laterals).
    pub adapter_dim: Option<usize>,
    /// Training of the first column.
    pub first: Stage,
    /// Training of the second column.
    pub second: Stage,
}

/// What a progressive run measured.
#[derive(Debug)]
pub struct ProgressiveOutcome {
    /// The network (column 0: the old task, frozen; column 1: the new task).
    pub net: ProgressiveNet,
    /// The parameter store.
    pub store: ParamStore,
    /// Old task accuracy (column 0, on its test examples) right after its own training.
    pub old_task_acc_before: Option<f64>,
    /// Old task accuracy after the new column was trained (the same, by construction).
    pub old_task_acc_after: Option<f64>,
    /// New task accuracy of column 1 on its test examples.
    pub new_task_acc: Option<f64>,
    /// Training of column 0 and of column 1.
    pub reports: (TrainReport, TrainReport),
}

/// Trains column 0 on the first task of `old` and then, in a new column with lateral
/// connections from the frozen column 0, the first task of `new`; tests each column on the
/// first task of its test set. Every random choice comes from `ctx.seed` (column 1 trains
/// with a seed derived from it); checkpoints, when `ctx` asks, go to the stage folders
/// `progressive column 0` and `progressive column 1`.
pub fn train_progressive(
    old: (&TaskSet, &TaskSet),
    new: (&TaskSet, &TaskSet),
    cfg: &ProgressiveConfig,
    ctx: &RunCtx,
) -> Result<ProgressiveOutcome> {
    let seed = ctx.seed;
    let (old_train, old_test) = old;
    let (new_train, new_test) = new;
    let device = old_train.x.device();
    let input_dim = old_train.features.feature_dim();
    let col = |classes: usize| ColumnConfig {
        input_dim,
        hidden: cfg.hidden.clone(),
        output_dim: classes,
        activation: Activation::Relu,
        adapter_dim: cfg.adapter_dim,
    };
    let (old_task, new_task) = (first_task(old_train)?, first_task(new_train)?);
    let store = ParamStore::new();
    let mut rng = SeededRng::new(seed);
    let mut net = ProgressiveNet::new(
        &store.scope(""),
        &col(old_task.num_classes),
        &mut rng,
        DType::F32,
        device,
    )?;
    let data0 = loader(
        old_train.features.clone(),
        cfg.first.batch_size,
        seed,
        device,
        None,
    )?;
    let mut obj0 = ColumnObjective::new(&net, 0, &data0, old_task)?;
    let r0 = cfg.first.fit_store(
        "progressive column 0",
        &store,
        &[],
        &mut obj0,
        data0.batches_per_epoch(),
        None,
        ctx,
    )?;
    let old_task_acc_before = column_accuracy(&net, 0, old_test)?;
    net.add_column(&col(new_task.num_classes), &mut rng)?;
    let seed1 = derive_seed(seed, &[1]);
    let data1 = loader(
        new_train.features.clone(),
        cfg.second.batch_size,
        seed1,
        device,
        None,
    )?;
    let mut obj1 = ColumnObjective::new(&net, 1, &data1, new_task)?;
    let r1 = cfg.second.fit_store(
        "progressive column 1",
        &store,
        &[],
        &mut obj1,
        data1.batches_per_epoch(),
        None,
        &ctx.reseeded(seed1),
    )?;
    let old_task_acc_after = column_accuracy(&net, 0, old_test)?;
    let new_task_acc = column_accuracy(&net, 1, new_test)?;
    Ok(ProgressiveOutcome {
        net,
        store,
        old_task_acc_before,
        old_task_acc_after,
        new_task_acc,
        reports: (r0, r1),
    })
}
