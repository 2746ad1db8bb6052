//! Multitask learning (LECTURE.md §2): related tasks share a trunk and keep their own heads
//! (and, optionally, their own input layers); the loss is `Σ_t w_t L_t` with fixed weights, or
//! with uncertainty weighting `Σ_t exp(−s_t) L_t + s_t` (Kendall, Gal & Cipolla, CVPR 2018)
//! where the `s_t` are learned with the model. A task's label may be missing for an example
//! (masked labels): `L_t` averages over the examples that have one.
//!
//! Progressive networks (Rusu et al. 2016) learn a new task in a new column that reads the
//! frozen old columns through lateral connections, so the old task cannot be damaged
//! ([`train_progressive`]).
//!
//! Both are objectives run by the one [`Trainer`](crate::Trainer) ([`MultitaskObjective`],
//! [`ColumnObjective`]).

use std::fmt;

use candle_core::{DType, Device, Tensor};
use xfer_losses::{CrossEntropyLoss, UncertaintyWeighting, weighted_sum};
use xfer_models::{
    Activation, ColumnConfig, MultiTask, MultiTaskConfig, ParamStore, ProgressiveNet, TaskConfig,
};
use xfer_ops::SeededRng;

use xfer_data::{DataLoader, Dataset, UnlabeledDataset};

use super::finetune::loader;
use crate::batches::StepBatches;
use crate::metrics::{argmax_rows, labels_to_vec};
use crate::run::{RunCtx, Stage};
use crate::trainer::{Objective, StepCtx, StepOutput, TrainReport, derive_seed};
use crate::{Result, TrainError};

/// One task's labels over a set of examples; a missing label is masked out.
#[derive(Debug, Clone)]
pub struct TaskLabels {
    /// The task's name (a head `heads.<name>`): no dots or spaces.
    pub name: String,
    /// Number of classes of the task.
    pub num_classes: usize,
    /// Labels `(N)` u32 (0 where the label is missing).
    pub y: Tensor,
    /// `(N)` f32: 1 where the label is known, 0 where it is missing.
    pub mask: Tensor,
    known: Vec<bool>,
}

impl TaskLabels {
    /// Labels of `name` for each example, `None` where missing; every known label must be
    /// `< num_classes`.
    pub fn new(
        name: &str,
        num_classes: usize,
        labels: &[Option<u32>],
        device: &Device,
    ) -> Result<Self> {
        if let Some(bad) = labels
            .iter()
            .flatten()
            .find(|&&l| l as usize >= num_classes)
        {
            return Err(TrainError::Config(format!(
                "task {name}: label {bad} out of range for {num_classes} classes"
            )));
        }
        let n = labels.len();
        let y: Vec<u32> = labels.iter().map(|l| l.unwrap_or(0)).collect();
        let known: Vec<bool> = labels.iter().map(Option::is_some).collect();
        let mask: Vec<f32> = known.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        Ok(Self {
            name: name.to_string(),
            num_classes,
            y: Tensor::from_vec(y, n, device)?,
            mask: Tensor::from_vec(mask, n, device)?,
            known,
        })
    }

    /// Labels derived from class ids through `map` (class `c` → task label `map[c]`), every
    /// label known: e.g. parity from digits. A class without an entry is an error.
    pub fn from_classes(name: &str, classes: &[u32], map: &[u32], device: &Device) -> Result<Self> {
        let labels: Vec<Option<u32>> = classes
            .iter()
            .map(|&c| {
                map.get(c as usize).copied().map(Some).ok_or_else(|| {
                    TrainError::Config(format!(
                        "task {name}: class {c} has no entry in the task's map of {} classes",
                        map.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let num_classes = map.iter().max().map_or(0, |&m| m as usize + 1);
        Self::new(name, num_classes, &labels, device)
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether example `i`'s label is known.
    pub fn is_known(&self, i: usize) -> bool {
        self.known.get(i).copied().unwrap_or(false)
    }

    /// Number of known labels.
    pub fn num_known(&self) -> usize {
        self.known.iter().filter(|&&k| k).count()
    }

    /// Keeps only `k` known labels of every class (chosen with `seed`), masking the others:
    /// a task with few labels among examples that other tasks label fully.
    pub fn keep_per_class(mut self, k: usize, seed: u64) -> Result<Self> {
        let y = self.y.to_vec1::<u32>()?;
        let mut keep = vec![false; y.len()];
        for c in 0..self.num_classes {
            let mut idx: Vec<usize> = (0..y.len())
                .filter(|&i| y.get(i) == Some(&(c as u32)) && self.known.get(i) == Some(&true))
                .collect();
            SeededRng::new(derive_seed(seed, &[c as u64])).shuffle(&mut idx);
            for &i in idx.iter().take(k) {
                if let Some(slot) = keep.get_mut(i) {
                    *slot = true;
                }
            }
        }
        let labels: Vec<Option<u32>> = y.iter().zip(&keep).map(|(&l, &k)| k.then_some(l)).collect();
        let mut out = Self::new(&self.name, self.num_classes, &labels, self.y.device())?;
        std::mem::swap(&mut self, &mut out);
        Ok(self)
    }

    /// The labels and mask of the examples at `indices`.
    fn select(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(idx, indices.len(), self.y.device())?;
        Ok((
            self.y.index_select(&ids, 0)?,
            self.mask.index_select(&ids, 0)?,
        ))
    }
}

/// Examples shared by one or more tasks: inputs `(N, ...)` and each task's (masked) labels.
/// Tasks on different data sets live in different sets.
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// The inputs, for the loaders.
    pub features: UnlabeledDataset,
    /// The same inputs as one tensor, batch first (for evaluation).
    pub x: Tensor,
    /// The tasks labelled (partly) on these examples.
    pub tasks: Vec<TaskLabels>,
}

impl TaskSet {
    /// The examples of `features` with every task's labels (each must label exactly these
    /// examples), on the tasks' device.
    pub fn new(features: UnlabeledDataset, tasks: Vec<TaskLabels>) -> Result<Self> {
        let device = tasks.first().map_or(Device::Cpu, |t| t.y.device().clone());
        let x = features.to_tensor(&device)?;
        let n = x.dims().first().copied().unwrap_or(0);
        if n == 0 || tasks.is_empty() {
            return Err(TrainError::Config(
                "task set: needs at least one example and one task".into(),
            ));
        }
        if let Some(t) = tasks.iter().find(|t| t.len() != n) {
            return Err(TrainError::Config(format!(
                "task {}: {} labels for {n} examples",
                t.name,
                t.len()
            )));
        }
        Ok(Self { features, x, tasks })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of one flattened example.
    pub fn feature_dim(&self) -> usize {
        self.x.dims().iter().skip(1).product()
    }
}

/// How the task losses are combined.
#[derive(Debug, Clone, PartialEq)]
pub enum Weighting {
    /// `Σ_t w_t L_t` with these weights (in task order).
    Fixed(Vec<f64>),
    /// `Σ_t exp(−s_t) L_t + s_t`, the `s_t` learned (registered as
    /// `task_weighting.log_vars` in the model's store).
    Uncertainty,
}

/// The multitask network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct MultitaskConfig {
    /// Widths of the shared trunk (an MLP on flattened inputs).
    pub trunk: Vec<usize>,
    /// Hidden widths of each task head (empty: a linear head).
    pub head_hidden: Vec<usize>,
    /// Give every task its own input layer (a linear layer + activation to the trunk's input
    /// width). Tasks whose data are narrower or wider than the first set's always get one.
    pub input_layers: bool,
    /// How task losses are combined.
    pub weighting: Weighting,
    /// Training.
    pub stage: Stage,
}

/// A shared trunk with one head per task (and the learned task weights, if any), with its
/// parameters in its own store: `trunk.*`, `inputs.<task>.*`, `heads.<task>.*`,
/// `task_weighting.log_vars`.
pub struct MultitaskModel {
    store: ParamStore,
    model: MultiTask,
    tasks: Vec<String>,
    uncertainty: Option<UncertaintyWeighting>,
    weights: Vec<f64>,
}

impl fmt::Debug for MultitaskModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultitaskModel")
            .field("tasks", &self.tasks)
            .field("uncertainty", &self.uncertainty.is_some())
            .field("weights", &self.weights)
            .finish()
    }
}

impl MultitaskModel {
    /// Builds the model for the tasks of `sets` (task names must be distinct), every value
    /// drawn from `seed`. The trunk's input width is the first set's feature width.
    pub fn new(
        sets: &[TaskSet],
        cfg: &MultitaskConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let first = sets
            .first()
            .ok_or_else(|| TrainError::Config("multitask: no task set".into()))?;
        let input_dim = first.feature_dim();
        let mut tasks = Vec::new();
        let mut task_cfgs = Vec::new();
        for set in sets {
            let d = set.feature_dim();
            for t in &set.tasks {
                if tasks.contains(&t.name) {
                    return Err(TrainError::Config(format!("task {} given twice", t.name)));
                }
                tasks.push(t.name.clone());
                task_cfgs.push(TaskConfig {
                    name: t.name.clone(),
                    output_dim: t.num_classes,
                    input_dim: (cfg.input_layers || d != input_dim).then_some(d),
                    head_hidden: cfg.head_hidden.clone(),
                });
            }
        }
        let weights = match &cfg.weighting {
            Weighting::Fixed(w) if w.len() != tasks.len() => {
                return Err(TrainError::Config(format!(
                    "multitask: {} fixed weights for {} tasks ({})",
                    w.len(),
                    tasks.len(),
                    tasks.join(", ")
                )));
            }
            Weighting::Fixed(w) => w.clone(),
            Weighting::Uncertainty => vec![1.0; tasks.len()],
        };
        let store = ParamStore::new();
        let mut rng = SeededRng::new(seed);
        let mt_cfg = MultiTaskConfig {
            input_dim,
            shared: cfg.trunk.clone(),
            tasks: task_cfgs,
            activation: Activation::Relu,
            dropout: 0.0,
        };
        let model =
            MultiTask::from_config(&store.scope(""), &mt_cfg, &mut rng, DType::F32, device)?;
        let uncertainty = match cfg.weighting {
            Weighting::Uncertainty => {
                let p = store.add(
                    "task_weighting.log_vars",
                    Tensor::zeros(tasks.len(), DType::F32, device)?,
                )?;
                Some(UncertaintyWeighting::from_log_vars(p.var().clone())?)
            }
            Weighting::Fixed(_) => None,
        };
        Ok(Self {
            store,
            model,
            tasks,
            uncertainty,
            weights,
        })
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The task names, in loss order.
    pub fn tasks(&self) -> &[String] {
        &self.tasks
    }

    /// The current task weights: fixed, or `exp(−s_t)` for uncertainty weighting.
    pub fn task_weights(&self) -> Result<Vec<f64>> {
        match &self.uncertainty {
            Some(u) => Ok(u.weights()?),
            None => Ok(self.weights.clone()),
        }
    }

    /// The learned uncertainty weighting, if used.
    pub fn uncertainty(&self) -> Option<&UncertaintyWeighting> {
        self.uncertainty.as_ref()
    }

    /// The logits of every task of `set` on `x` (the trunk runs once for the tasks without
    /// their own input layer).
    pub fn forward_set(&self, set: &TaskSet, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let x = x.flatten_from(1)?;
        let shared = if set
            .tasks
            .iter()
            .any(|t| !self.model.has_input_layer(&t.name))
        {
            self.model.forward_shared(&x, train)?
        } else {
            Default::default()
        };
        set.tasks
            .iter()
            .map(|t| match shared.get(&t.name) {
                Some(z) => Ok(z.clone()),
                None => Ok(self.model.forward_task(&t.name, &x, train)?),
            })
            .collect()
    }

    /// The accuracy of every task of `set` over the examples whose label is known (`None`
    /// for a task without any), in evaluation mode.
    pub fn accuracy(&self, set: &TaskSet) -> Result<Vec<(String, Option<f64>)>> {
        let logits = self.forward_set(set, &set.x, false)?;
        set.tasks
            .iter()
            .zip(logits)
            .map(|(t, z)| Ok((t.name.clone(), known_accuracy(&z, t)?)))
            .collect()
    }
}

/// The multitask objective: for every task set the step's mini-batch (from its seeded loader,
/// through [`StepBatches`]), each task's masked cross-entropy on it, combined with fixed or
/// uncertainty weights.
///
/// Metrics per step: `loss_<task>` and `w_<task>` (the weight in force).
pub struct MultitaskObjective<'a> {
    model: &'a MultitaskModel,
    sets: &'a [TaskSet],
    batches: Vec<StepBatches<'a, DataLoader<UnlabeledDataset>>>,
}

impl fmt::Debug for MultitaskObjective<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultitaskObjective")
            .field("model", self.model)
            .field("batches", &self.batches)
            .finish()
    }
}

impl<'a> MultitaskObjective<'a> {
    /// The objective over `sets`, with `loaders[i]` the loader of `sets[i]`'s features (see
    /// [`MultitaskObjective::loaders`]).
    pub fn new(
        model: &'a MultitaskModel,
        sets: &'a [TaskSet],
        loaders: &'a [DataLoader<UnlabeledDataset>],
    ) -> Result<Self> {
        if loaders.len() != sets.len() {
            return Err(TrainError::Config(format!(
                "multitask: {} loaders for {} task sets",
                loaders.len(),
                sets.len()
            )));
        }
        Ok(Self {
            model,
            sets,
            batches: loaders.iter().map(StepBatches::new).collect(),
        })
    }

    /// A seeded loader of each set's features (set `i` seeded from `(seed, i)`).
    pub fn loaders(
        sets: &[TaskSet],
        batch_size: usize,
        seed: u64,
    ) -> Result<Vec<DataLoader<UnlabeledDataset>>> {
        sets.iter()
            .enumerate()
            .map(|(i, s)| {
                loader(
                    s.features.clone(),
                    batch_size,
                    derive_seed(seed, &[i as u64]),
                    s.x.device(),
                    None,
                )
            })
            .collect()
    }

    /// The per-task losses (in task order) of step `ctx`.
    pub fn task_losses(&mut self, ctx: &StepCtx) -> Result<Vec<Tensor>> {
        let ce = CrossEntropyLoss::new();
        let mut losses = Vec::new();
        for (set, batches) in self.sets.iter().zip(&mut self.batches) {
            let batch = batches.next(ctx)?;
            let logits = self.model.forward_set(set, &batch.x, true)?;
            for (t, z) in set.tasks.iter().zip(logits) {
                let (y, mask) = t.select(&batch.indices)?;
                losses.push(ce.forward_masked(&z, &y, &mask)?);
            }
        }
        Ok(losses)
    }
}

impl Objective for MultitaskObjective<'_> {
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        let losses = self.task_losses(ctx)?;
        let weights = self.model.task_weights()?;
        let total = match &self.model.uncertainty {
            Some(u) => u.forward(&losses)?,
            None => weighted_sum(&losses, &weights)?,
        };
        let mut out = StepOutput::new(total);
        for ((name, l), w) in self.model.tasks.iter().zip(&losses).zip(&weights) {
            let v = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            out = out
                .with_metric(format!("loss_{name}"), v)
                .with_metric(format!("w_{name}"), *w);
        }
        Ok(out)
    }
}

/// Trains `model` on `sets` with `cfg.stage` in the one trainer (an epoch: one pass over
/// the largest set), with `ctx`'s seed, progress and checkpoints (stage folder `multitask`).
pub fn train_multitask(
    model: &MultitaskModel,
    sets: &[TaskSet],
    cfg: &MultitaskConfig,
    ctx: &RunCtx,
) -> Result<TrainReport> {
    let loaders = MultitaskObjective::loaders(sets, cfg.stage.batch_size, ctx.seed)?;
    let mut obj = MultitaskObjective::new(model, sets, &loaders)?;
    let spe = loaders
        .iter()
        .map(DataLoader::batches_per_epoch)
        .max()
        .unwrap_or(1);
    cfg.stage
        .fit_store("multitask", model.store(), &[], &mut obj, spe, None, ctx)
}

// ---------------------------------------------------------------------------------------
// Progressive networks
// ---------------------------------------------------------------------------------------

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
            return Err(TrainError::Config(format!(
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
        .ok_or_else(|| TrainError::Config("task set without a task".into()))
}

/// Accuracy of `logits` on `task` over its known labels.
fn known_accuracy(logits: &Tensor, task: &TaskLabels) -> Result<Option<f64>> {
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
#[derive(Debug, Clone, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(epochs: usize) -> Stage {
        Stage::adam(0.01).with_epochs(epochs).with_batch_size(16)
    }

    fn ctx(step: usize, seed: u64) -> StepCtx {
        StepCtx {
            step,
            total_steps: step + 1,
            epoch: 0,
            step_in_epoch: step,
            steps_per_epoch: step + 1,
            progress: 0.0,
            lr: 0.0,
            seed,
        }
    }

    /// `n` examples of width `d`; class `i % c`; features = class one-hot (spread over the
    /// width) plus noise.
    fn data(n: usize, d: usize, c: usize, seed: u64) -> (UnlabeledDataset, Vec<u32>) {
        let mut rng = SeededRng::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let k = i % c;
            for j in 0..d {
                x.push((if j % c == k { 1.0 } else { 0.0 } + 0.3 * rng.normal01()) as f32);
            }
            y.push(k as u32);
        }
        (UnlabeledDataset::new("toy", x, vec![d]).unwrap(), y)
    }

    fn digitish_set(n: usize, seed: u64) -> TaskSet {
        let (x, y) = data(n, 8, 4, seed);
        let dev = Device::Cpu;
        let main = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &dev).unwrap();
        let parity = TaskLabels::from_classes("parity", &y, &[0, 1, 0, 1], &dev).unwrap();
        TaskSet::new(x, vec![main, parity]).unwrap()
    }

    fn cfg(weighting: Weighting) -> MultitaskConfig {
        MultitaskConfig {
            trunk: vec![12],
            head_hidden: vec![],
            input_layers: false,
            weighting,
            stage: stage(4),
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn scalars(ls: &[Tensor]) -> Vec<f64> {
        ls.iter()
            .map(|l| l.to_scalar::<f32>().unwrap() as f64)
            .collect()
    }

    #[test]
    fn uncertainty_weights_are_trainable_parameters_that_move() {
        let sets = [digitish_set(32, 1)];
        let c = cfg(Weighting::Uncertainty);
        let model = MultitaskModel::new(&sets, &c, 2, &Device::Cpu).unwrap();
        let p = model.store().get("task_weighting.log_vars").unwrap();
        assert!(p.is_trainable());
        assert_eq!(model.task_weights().unwrap(), [1.0, 1.0]);
        let report = train_multitask(&model, &sets, &c, &RunCtx::cpu().with_seed(3)).unwrap();
        assert_eq!(report.steps, 8);
        let s = values(p.var().as_tensor());
        assert!(
            s.iter().all(|v| *v != 0.0),
            "log variances did not move: {s:?}"
        );
        let w = model.task_weights().unwrap();
        assert!((w[0] - (-s[0] as f64).exp()).abs() < 1e-6);
        // The objective is Σ exp(−s_t) L_t + s_t with the learned s_t.
        let loaders = MultitaskObjective::loaders(&sets, 16, 3).unwrap();
        let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
        let ls = scalars(&obj.task_losses(&ctx(0, 3)).unwrap());
        let want: f64 = ls
            .iter()
            .zip(&s)
            .map(|(l, s)| (-*s as f64).exp() * l + *s as f64)
            .sum();
        let got = obj
            .loss(&ctx(0, 3))
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn fixed_weights_give_the_weighted_sum_of_task_losses() {
        let sets = [digitish_set(32, 4)];
        let c = cfg(Weighting::Fixed(vec![1.0, 0.25]));
        let model = MultitaskModel::new(&sets, &c, 5, &Device::Cpu).unwrap();
        assert!(!model.store().contains("task_weighting.log_vars"));
        let loaders = MultitaskObjective::loaders(&sets, 16, 6).unwrap();
        let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
        let ls = scalars(&obj.task_losses(&ctx(0, 6)).unwrap());
        let out = obj.loss(&ctx(0, 6)).unwrap();
        let got = out.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - (ls[0] + 0.25 * ls[1])).abs() < 1e-5);
        assert!(
            out.metrics
                .iter()
                .any(|(n, v)| n == "w_parity" && *v == 0.25)
        );
        let bad = MultitaskModel::new(&sets, &cfg(Weighting::Fixed(vec![1.0])), 5, &Device::Cpu);
        assert!(bad.is_err());
    }

    #[test]
    fn masked_labels_count_only_where_known() {
        let (x, y) = data(40, 8, 4, 7);
        let t = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &Device::Cpu)
            .unwrap()
            .keep_per_class(2, 8)
            .unwrap();
        assert_eq!(t.num_known(), 8);
        let mask = values(&t.mask);
        for c in 0..4 {
            let kept = mask
                .iter()
                .zip(&y)
                .filter(|(m, y)| **m == 1.0 && **y == c)
                .count();
            assert_eq!(kept, 2, "class {c}");
        }
        // The task loss on a full batch is plain cross-entropy over the known examples only.
        let sets = [TaskSet::new(x, vec![t.clone()]).unwrap()];
        let c = cfg(Weighting::Fixed(vec![1.0]));
        let model = MultitaskModel::new(&sets, &c, 9, &Device::Cpu).unwrap();
        let loaders = MultitaskObjective::loaders(&sets, 64, 0).unwrap();
        let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
        let l = scalars(&obj.task_losses(&ctx(0, 0)).unwrap())[0];
        let known: Vec<u32> = (0..40u32).filter(|&i| mask[i as usize] == 1.0).collect();
        let ids = Tensor::new(known.as_slice(), &Device::Cpu).unwrap();
        let z = model
            .forward_set(&sets[0], &sets[0].x.index_select(&ids, 0).unwrap(), true)
            .unwrap()
            .remove(0);
        let want = xfer_losses::cross_entropy(&z, &t.y.index_select(&ids, 0).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((l - want).abs() < 1e-5, "{l} vs {want}");
        assert!(TaskLabels::new("t", 2, &[Some(2)], &Device::Cpu).is_err());
    }

    #[test]
    fn tasks_on_data_of_another_width_get_their_own_input_layer() {
        let a = digitish_set(16, 10);
        let (xb, yb) = data(12, 5, 3, 11);
        let other = TaskLabels::from_classes("other", &yb, &[0, 1, 2], &Device::Cpu).unwrap();
        let sets = [a, TaskSet::new(xb, vec![other]).unwrap()];
        let c = cfg(Weighting::Uncertainty);
        let model = MultitaskModel::new(&sets, &c, 12, &Device::Cpu).unwrap();
        assert!(model.store().contains("inputs.other.0.weight"));
        assert!(!model.store().contains("inputs.main.0.weight"));
        assert_eq!(model.tasks(), ["main", "parity", "other"]);
        train_multitask(&model, &sets, &c, &RunCtx::cpu().with_seed(13)).unwrap();
        let acc = model.accuracy(&sets[1]).unwrap();
        assert_eq!(acc[0].0, "other");
        assert!(acc[0].1.is_some());
    }

    #[test]
    fn progressive_column_leaves_the_old_column_untouched() {
        let (x, y) = data(40, 8, 4, 14);
        let dev = Device::Cpu;
        let old = TaskLabels::from_classes("parity", &y, &[0, 1, 0, 1], &dev).unwrap();
        let new = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &dev).unwrap();
        let old_set = TaskSet::new(x.clone(), vec![old.clone()]).unwrap();
        let new_set = TaskSet::new(x.clone(), vec![new]).unwrap();
        let pc = ProgressiveConfig {
            hidden: vec![10, 6],
            adapter_dim: Some(4),
            first: stage(3),
            second: stage(3),
        };
        let out = train_progressive(
            (&old_set, &old_set),
            (&new_set, &new_set),
            &pc,
            &RunCtx::cpu().with_seed(15),
        )
        .unwrap();
        let col0: Vec<_> = out
            .store
            .all()
            .into_iter()
            .filter(|p| p.name().starts_with("columns.0."))
            .collect();
        assert!(!col0.is_empty());
        assert!(col0.iter().all(|p| !p.is_trainable()));
        assert_eq!(out.old_task_acc_before, out.old_task_acc_after);
        // Train only column 0 again with the same seed: its weights equal those found after
        // the new column was trained, bit for bit.
        let store = ParamStore::new();
        let mut rng = SeededRng::new(15);
        let col = ColumnConfig {
            input_dim: 8,
            hidden: vec![10, 6],
            output_dim: 2,
            activation: Activation::Relu,
            adapter_dim: Some(4),
        };
        let net = ProgressiveNet::new(&store.scope(""), &col, &mut rng, DType::F32, &dev).unwrap();
        let data0 = loader(x, 16, 15, &dev, None).unwrap();
        let mut obj = ColumnObjective::new(&net, 0, &data0, &old).unwrap();
        let spe = data0.batches_per_epoch();
        pc.first
            .fit_store(
                "c0",
                &store,
                &[],
                &mut obj,
                spe,
                None,
                &RunCtx::cpu().with_seed(15),
            )
            .unwrap();
        for p in &col0 {
            assert_eq!(
                values(p.var().as_tensor()),
                values(store.get(p.name()).unwrap().var().as_tensor()),
                "{} changed while the new column trained",
                p.name()
            );
        }
        assert!(out.store.contains("columns.1.laterals.1.0.alpha"));
        assert!(out.new_task_acc.is_some());
    }
}
