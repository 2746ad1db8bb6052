//! The multitask objective and its training.

use std::fmt;

use candle_core::{DType, Tensor};
use xfer_losses::{CrossEntropyLoss, weighted_sum};

use xfer_data::{DataLoader, UnlabeledDataset};

use super::super::finetune::loader;
use super::data::TaskSet;
use super::model::{MultitaskModel, MultitaskModelConfig};
use crate::batches::StepBatches;
use crate::run::RunCtx;
use crate::trainer::{Objective, StepCtx, StepOutput, TrainReport, derive_seed};
use crate::{Result, TrainError};

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
            return Err(TrainError::Incompatible(format!(
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
    cfg: &MultitaskModelConfig,
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
