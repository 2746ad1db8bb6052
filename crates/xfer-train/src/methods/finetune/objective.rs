//! The objective of every fine-tuning method, and evaluation of a [`Classifier`] on any
//! [`Dataset`] (batch by batch through a loader, so lazily decoded data sets work too).

use std::fmt;

use candle_core::{DType, Tensor};
use xfer_data::{Batch, DataLoader, Dataset};
use xfer_losses::{DistillationLoss, L2Sp, cross_entropy};
use xfer_models::Classifier;

use crate::batches::StepBatches;
use crate::history::Metrics;
use crate::metrics::accuracy_from_logits;
use crate::trainer::{EvalCtx, Evaluator, Objective, StepCtx, StepOutput};
use crate::{Result, TrainError};

/// Examples per evaluation batch, at most (fewer for large examples:
/// [`xfer_models::eval_rows`]).
const EVAL_BATCH: usize = 256;

/// The logits `[N, C]` of `net` on every example of `data`, in order, in evaluation mode
/// (detached), with the labels `[N]` when the data set has them.
pub fn logits_of<D: Dataset + Clone + 'static>(
    net: &Classifier,
    data: &D,
) -> Result<(Tensor, Option<Tensor>)> {
    if data.is_empty() {
        return Err(TrainError::BadData(format!(
            "data set {} is empty",
            data.name()
        )));
    }
    let row: usize = data.sample_shape().iter().product();
    let rows = EVAL_BATCH.min(xfer_models::eval_rows(row, DType::F32));
    let loader = DataLoader::builder(data.clone(), rows)
        .shuffle(false)
        .device(net.device().clone())
        .build()?;
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        logits.push(xfer_models::no_grad(|| net.logits(&batch.x, false))?.detach());
        if let Some(y) = batch.y {
            labels.push(y);
        }
    }
    let y = if labels.len() == logits.len() {
        Some(Tensor::cat(&labels, 0)?)
    } else {
        None
    };
    Ok((Tensor::cat(&logits, 0)?, y))
}

/// Accuracy of `net` on the labelled `data`, in evaluation mode.
pub fn accuracy<D: Dataset + Clone + 'static>(net: &Classifier, data: &D) -> Result<f64> {
    match logits_of(net, data)? {
        (logits, Some(y)) => accuracy_from_logits(&logits, &y),
        (_, None) => Err(TrainError::BadData(format!(
            "accuracy on {}: the data set has no labels",
            data.name()
        ))),
    }
}

/// What, besides cross-entropy on the labelled batch, an objective adds.
#[derive(Debug, Clone)]
pub enum Regulariser {
    /// Nothing: plain cross-entropy (scratch, full fine-tuning, layer transfer).
    None,
    /// L2-SP over the trainable parameters of the network.
    L2Sp(L2Sp),
    /// Output closeness to the frozen source model: its logits on every training example
    /// (row `i` for example `i`), and the loss comparing them.
    Distill {
        /// The source model's logits `(N, C)` on the training inputs (detached).
        teacher_logits: Tensor,
        /// `λ T² KL(...)` or `λ MSE`.
        loss: DistillationLoss,
    },
}

/// The objective of every fine-tuning method: cross-entropy of the network on the step's
/// mini-batch (from a seeded [`DataLoader`], through [`StepBatches`], so a resumed run sees
/// the same batches), plus the method's [`Regulariser`].
///
/// Metrics logged per step: `ce`, the regulariser's value (`l2_sp` or `distill`) and the
/// batch accuracy `batch_acc`.
pub struct FinetuneObjective<'a, D: Dataset + 'static> {
    net: &'a Classifier,
    batches: StepBatches<'a, DataLoader<D>>,
    reg: Regulariser,
}

impl<D: Dataset + 'static> fmt::Debug for FinetuneObjective<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinetuneObjective")
            .field("classes", &self.net.num_classes())
            .field("batches", &self.batches)
            .field("reg", &self.reg)
            .finish()
    }
}

impl<'a, D: Dataset + 'static> FinetuneObjective<'a, D> {
    /// Cross-entropy of `net` on the batches of `loader`, plus `reg`.
    pub fn new(net: &'a Classifier, loader: &'a DataLoader<D>, reg: Regulariser) -> Result<Self> {
        if let Regulariser::Distill { teacher_logits, .. } = &reg {
            let want = [loader.dataset().len(), net.num_classes()];
            if teacher_logits.dims() != want {
                return Err(TrainError::Incompatible(format!(
                    "distillation: teacher logits of shape {:?}, expected {want:?}",
                    teacher_logits.dims()
                )));
            }
        }
        Ok(Self {
            net,
            batches: StepBatches::new(loader),
            reg,
        })
    }

    /// The loss on one batch, with its parts, in training mode.
    pub fn loss_on(&self, batch: &Batch) -> Result<StepOutput> {
        let y = batch.labels()?;
        let logits = self.net.logits(&batch.x, true)?;
        let ce = cross_entropy(&logits, y)?;
        let batch_acc = accuracy_from_logits(&logits.detach(), y)?;
        let ce_value = ce.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let (loss, extra) = match &self.reg {
            Regulariser::None => (ce, None),
            Regulariser::L2Sp(reg) => {
                let params: Vec<(String, Tensor)> = self
                    .net
                    .store()
                    .trainable()
                    .into_iter()
                    .filter(|p| !p.is_buffer())
                    .map(|p| (p.name().to_string(), p.var().as_tensor().clone()))
                    .collect();
                let omega = reg.penalty(&params)?;
                let v = omega.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                ((ce + omega.to_dtype(logits.dtype())?)?, Some(("l2_sp", v)))
            }
            Regulariser::Distill {
                teacher_logits,
                loss,
            } => {
                let idx: Vec<u32> = batch.indices.iter().map(|&i| i as u32).collect();
                let ids = Tensor::from_vec(idx, batch.indices.len(), teacher_logits.device())?;
                let t = teacher_logits.index_select(&ids, 0)?;
                let d = loss.forward(&logits, &t)?;
                let v = d.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                ((ce + d)?, Some(("distill", v)))
            }
        };
        let mut out = StepOutput::new(loss).with_metric("ce", ce_value);
        if let Some((k, v)) = extra {
            out = out.with_metric(k, v);
        }
        Ok(out.with_metric("batch_acc", batch_acc))
    }
}

impl<D: Dataset + 'static> Objective for FinetuneObjective<'_, D> {
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        let batch = self.batches.next(ctx)?;
        self.loss_on(&batch)
    }
}

/// Accuracy of a network on a labelled set, as an [`Evaluator`] returning `name`.
pub struct AccuracyEval<'a, D> {
    net: &'a Classifier,
    data: D,
    name: String,
}

impl<'a, D: Dataset + Clone + 'static> AccuracyEval<'a, D> {
    /// Reports `net`'s accuracy on `data` under `name`.
    pub fn new(net: &'a Classifier, data: &D, name: impl Into<String>) -> Result<Self> {
        if !data.has_labels() || data.is_empty() {
            return Err(TrainError::BadData(format!(
                "evaluation set {} is empty or has no labels",
                data.name()
            )));
        }
        Ok(Self {
            net,
            data: data.clone(),
            name: name.into(),
        })
    }
}

impl<D: Dataset> fmt::Debug for AccuracyEval<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccuracyEval")
            .field("name", &self.name)
            .field("examples", &self.data.len())
            .finish()
    }
}

impl<D: Dataset + Clone + 'static> Evaluator for AccuracyEval<'_, D> {
    fn evaluate(&mut self, _ctx: &EvalCtx) -> Result<Metrics> {
        Ok(vec![(self.name.clone(), accuracy(self.net, &self.data)?)])
    }
}
