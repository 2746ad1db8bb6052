//! Model fine-tuning (LECTURE.md §1): train on plentiful labelled *source* data, then continue
//! on a little labelled *target* data, without forgetting what the source taught.
//!
//! | method | what training on the target minimises | parameters trained |
//! |---|---|---|
//! | [`Method::Scratch`] (baseline) | `CE` | all, from a random start |
//! | [`Method::Finetune`] | `CE` | all, from the source weights |
//! | [`Method::L2Sp`] (Li, Grandvalet & Davoine, ICML 2018) | `CE + α/2 Σ_pre ‖w − w⁰‖² + β/2 Σ_new ‖w‖²` | all, from `w⁰` |
//! | [`Method::Distill`] (output closeness; Hinton et al. 2015, LwF: Li & Hoiem 2016) | `CE + λ T² KL(softmax(z_src/T) ‖ softmax(z/T))` on the target inputs | all, from the source weights |
//! | [`Method::LayerTransfer`] (LECTURE.md §1b) | `CE` | the first (or last) `K` blocks copied from the source and frozen (or trained at a smaller rate); the others re-initialised |
//!
//! `w⁰` is a frozen deep copy of the pretrained weights ([`xfer_ops::ParamSnapshot`]); L2-SP
//! regularises weights only (no biases), as in the paper. The source (teacher) model of
//! distillation is frozen; its logits on the target training inputs are computed once, in
//! evaluation mode. When the target has as many classes as the source (digits to digits) the
//! source head is kept and anchored like every other layer; otherwise a new head is
//! initialised and gets L2-SP's `β` term.
//!
//! Every method is an [`Objective`] ([`FinetuneObjective`]) run by the one [`Trainer`]:
//! [`pretrain`] trains the source model once and keeps its weights in memory
//! ([`Pretrained`]) so that every method of a run starts from the same source model.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use xfer_data::{Batch, DataLoader, Dataset, TensorDataset, Transform};
use xfer_losses::{DistillationLoss, L2Sp, cross_entropy};
use xfer_models::{
    DigitsCnn, DigitsCnnConfig, Mlp, MlpConfig, ModuleT, ParamGroup, ParamStore, Selection,
    Transfer, TransferReport, first_blocks, last_blocks,
};
use xfer_ops::{ParamSnapshot, SeededRng};

use crate::batches::StepBatches;
use crate::history::Metrics;
use crate::metrics::accuracy_from_logits;
use crate::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use crate::schedule::Schedule;
use crate::trainer::{
    EarlyStopping, EvalCtx, Evaluator, Objective, StepCtx, StepOutput, TrainReport, Trainer,
    TrainerConfig, derive_seed,
};
use crate::{Result, TrainError};

/// L2-SP's `α` (pull of pretrained weights toward their source values), the paper's value.
pub const L2SP_ALPHA: f64 = 0.1;
/// L2-SP's `β` (plain L2 on new layers), the paper's value.
pub const L2SP_BETA: f64 = 0.01;

/// A data set's features and labels as tensors on `device`.
pub fn dataset_tensors(ds: &TensorDataset, device: &Device) -> Result<(Tensor, Tensor)> {
    if ds.is_empty() {
        return Err(TrainError::Config(format!(
            "data set {} is empty",
            ds.name()
        )));
    }
    Ok(ds.to_tensors(device)?)
}

/// A shuffled, seeded loader of `ds` in batches of `batch_size` on `device`, with an
/// optional per-sample transform (augmentation): batch `b` of epoch `e` is a pure function
/// of `(seed, e, b)`, so [`StepBatches`] resumes it exactly.
pub fn loader<D: Dataset + 'static>(
    ds: D,
    batch_size: usize,
    seed: u64,
    device: &Device,
    transform: Option<Arc<dyn Transform>>,
) -> Result<DataLoader<D>> {
    let mut b = DataLoader::builder(ds, batch_size)
        .shuffle(true)
        .seed(seed)
        .device(device.clone());
    if let Some(t) = transform {
        b = b.transform_arc(t);
    }
    Ok(b.build()?)
}

// ---------------------------------------------------------------------------------------
// The network: an MLP or the digits CNN, with an ordered list of blocks
// ---------------------------------------------------------------------------------------

/// Which network to train.
#[derive(Debug, Clone, PartialEq)]
pub enum Arch {
    /// An MLP on the flattened input, with these hidden widths.
    Mlp {
        /// Hidden widths.
        hidden: Vec<usize>,
        /// Dropout after every hidden layer (0 for none).
        dropout: f64,
    },
    /// [`DigitsCnn`]: two 3×3 convolutions with pooling, then two linear layers; for square
    /// images whose side is a multiple of 4.
    Cnn {
        /// Channels of the two convolutions.
        channels: (usize, usize),
        /// Width of the hidden linear layer.
        hidden: usize,
        /// Dropout after the hidden linear layer (0 for none).
        dropout: f64,
    },
}

impl Arch {
    /// The default network for inputs of `sample_shape`: the CNN for `[C, S, S]` images with
    /// `S` a multiple of 4, else an MLP with hidden widths 256, 128.
    pub fn for_input(sample_shape: &[usize]) -> Self {
        match sample_shape {
            [_, h, w] if h == w && *h >= 4 && h.is_multiple_of(4) => Self::cnn(),
            _ => Self::mlp(),
        }
    }

    /// The digits CNN with its default widths (16, 32 channels; 64 hidden), no dropout.
    pub fn cnn() -> Self {
        let d = DigitsCnnConfig::default();
        Self::Cnn {
            channels: d.channels,
            hidden: d.hidden,
            dropout: 0.0,
        }
    }

    /// An MLP with hidden widths 256, 128, no dropout.
    pub fn mlp() -> Self {
        Self::Mlp {
            hidden: vec![256, 128],
            dropout: 0.0,
        }
    }

    /// The same network with dropout `p`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        match &mut self {
            Arch::Mlp { dropout, .. } | Arch::Cnn { dropout, .. } => *dropout = p,
        }
        self
    }
}

impl FromStr for Arch {
    type Err = TrainError;

    /// `cnn`, `mlp`, or `mlp:W1,W2,...` (hidden widths), each optionally followed by
    /// `:dropout=P`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            TrainError::Config(format!(
                "model {s:?}: expected `cnn`, `mlp` or `mlp:W1,W2,...`, optionally `:dropout=P`"
            ))
        };
        let mut parts = s.split(':');
        let mut arch = match parts.next() {
            Some("cnn") => Self::cnn(),
            Some("mlp") => Self::mlp(),
            _ => return Err(bad()),
        };
        for part in parts {
            if let Some(p) = part.strip_prefix("dropout=") {
                let p = p
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..1.0).contains(p))
                    .ok_or_else(bad)?;
                arch = arch.with_dropout(p);
            } else if let Arch::Mlp { hidden, .. } = &mut arch {
                *hidden = part
                    .split(',')
                    .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
            } else {
                return Err(bad());
            }
        }
        Ok(arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dropout, text) = match self {
            Arch::Mlp { hidden, dropout } => {
                let w: Vec<String> = hidden.iter().map(ToString::to_string).collect();
                (*dropout, format!("mlp:{}", w.join(",")))
            }
            Arch::Cnn {
                channels,
                hidden,
                dropout,
            } => (
                *dropout,
                format!("cnn({}, {}; {hidden})", channels.0, channels.1),
            ),
        };
        if dropout > 0.0 {
            write!(f, "{text}:dropout={dropout}")
        } else {
            f.write_str(&text)
        }
    }
}

enum NetModule {
    Mlp(Mlp),
    Cnn(DigitsCnn),
}

/// A classifier whose parameters live in its own [`ParamStore`], with its layers listed as
/// ordered *blocks* (input side first; the last block is the head): what layer transfer
/// copies. Names: MLP `features.0`, `features.2`, ..., `classifier`; CNN `features.0`,
/// `features.3` (convolutions), `classifier.0`, `classifier.2` (linear layers).
pub struct Net {
    store: ParamStore,
    module: NetModule,
    arch: Arch,
    blocks: Vec<String>,
    input_shape: Vec<usize>,
    num_classes: usize,
    device: Device,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("arch", &self.arch)
            .field("blocks", &self.blocks)
            .field("input_shape", &self.input_shape)
            .field("num_classes", &self.num_classes)
            .finish()
    }
}

impl Net {
    /// A freshly initialised network (every value drawn from `seed`) for inputs of
    /// `input_shape` (one example) and `num_classes` classes, in f32 on `device`.
    pub fn new(
        arch: &Arch,
        input_shape: &[usize],
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let store = ParamStore::new();
        let root = store.scope("");
        let mut rng = SeededRng::new(seed);
        let (module, blocks) = match arch {
            Arch::Mlp { hidden, dropout } => {
                let input_dim = input_shape.iter().product();
                let cfg = MlpConfig {
                    dropout: *dropout,
                    ..MlpConfig::new(input_dim, hidden, num_classes)
                };
                let m = Mlp::new(&root, &cfg, &mut rng, DType::F32, device)?;
                // [Linear, act(, Dropout)] per hidden layer, numbered as nn.Sequential does.
                let stride = if *dropout > 0.0 { 3 } else { 2 };
                let mut blocks: Vec<String> = (0..hidden.len())
                    .map(|i| format!("features.{}", stride * i))
                    .collect();
                blocks.push("classifier".into());
                (NetModule::Mlp(m), blocks)
            }
            Arch::Cnn {
                channels,
                hidden,
                dropout,
            } => {
                let (c, s) = match input_shape {
                    [c, h, w] if h == w => (*c, *h),
                    _ => {
                        return Err(TrainError::Config(format!(
                            "the CNN needs square images [C, S, S], got examples of shape \
                             {input_shape:?}; use an MLP (`--model mlp`)"
                        )));
                    }
                };
                let cfg = DigitsCnnConfig {
                    in_channels: c,
                    input_size: s,
                    channels: *channels,
                    hidden: *hidden,
                    num_classes,
                    dropout: *dropout,
                };
                let m = DigitsCnn::new(&root, &cfg, &mut rng, DType::F32, device)?;
                // The classifier is [Linear, ReLU(, Dropout), Linear].
                let last = if *dropout > 0.0 { 3 } else { 2 };
                let blocks = vec![
                    "features.0".to_string(),
                    "features.3".to_string(),
                    "classifier.0".to_string(),
                    format!("classifier.{last}"),
                ];
                (NetModule::Cnn(m), blocks)
            }
        };
        Ok(Self {
            store,
            module,
            arch: arch.clone(),
            blocks,
            input_shape: input_shape.to_vec(),
            num_classes,
            device: device.clone(),
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The ordered blocks, input side first; the last is the head.
    pub fn blocks(&self) -> &[String] {
        &self.blocks
    }

    /// The head's block prefix.
    pub fn head(&self) -> &str {
        self.blocks
            .last()
            .map(String::as_str)
            .unwrap_or("classifier")
    }

    /// The shape of one input example.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// A deep copy of every parameter and buffer, by name.
    pub fn weights(&self) -> Result<BTreeMap<String, Tensor>> {
        self.store
            .all()
            .iter()
            .map(|p| Ok((p.name().to_string(), p.var().as_tensor().copy()?)))
            .collect()
    }
}

/// A classifier whose parameters live in its own [`ParamStore`]: what
/// [`FinetuneObjective`] trains and [`AccuracyEval`] measures.
pub trait Classifier {
    /// The logits `(N, classes)` of `x` `(N, input shape...)`.
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// The parameter store (every parameter of this network, and nothing else).
    fn store(&self) -> &ParamStore;
    /// The device of the parameters.
    fn device(&self) -> &Device;
    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// The logits of `x` in evaluation mode, `chunk` examples at a time, detached.
    fn logits_eval(&self, x: &Tensor, chunk: usize) -> Result<Tensor> {
        let n = x.dims().first().copied().unwrap_or(0);
        let chunk = chunk.max(1);
        let mut parts = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            parts.push(self.logits(&x.narrow(0, start, len)?, false)?.detach());
            start += len;
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Accuracy on `data` in evaluation mode.
    fn accuracy(&self, data: &TensorDataset) -> Result<f64> {
        let (x, y) = dataset_tensors(data, self.device())?;
        self.accuracy_on(&x, &y)
    }

    /// Accuracy on inputs `x` with labels `y`, in evaluation mode.
    fn accuracy_on(&self, x: &Tensor, y: &Tensor) -> Result<f64> {
        accuracy_from_logits(&self.logits_eval(x, 512)?, y)
    }
}

impl Classifier for Net {
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match &self.module {
            NetModule::Mlp(m) => m.forward_t(&x.flatten_from(1)?, train)?,
            NetModule::Cnn(m) => m.forward_t(x, train)?,
        })
    }
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
}

impl ModuleT for Net {
    fn forward_t(&self, x: &Tensor, train: bool) -> xfer_models::Result<Tensor> {
        self.logits(x, train)
            .map_err(|e| xfer_models::ModelError::Config(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------
// Training settings and the objective
// ---------------------------------------------------------------------------------------

/// The optimiser of a stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// SGD with this momentum.
    Sgd {
        /// Momentum (0.9 usually).
        momentum: f64,
    },
    /// Adam (PyTorch's defaults).
    Adam,
}

/// How one training stage runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    /// Epochs over the training data (an epoch is `⌈N / batch_size⌉` steps). The loop
    /// evaluates every `⌈10 / steps per epoch⌉` epochs (every epoch for large sets).
    pub epochs: usize,
    /// Mini-batch size (capped at the number of examples: few-shot sets train full-batch).
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Weight decay (coupled, toward zero).
    pub weight_decay: f64,
    /// Cosine decay of the rate to 0 over the stage instead of a constant rate.
    pub cosine: bool,
}

impl StageConfig {
    fn schedule(&self) -> Schedule {
        if self.cosine {
            Schedule::cosine(self.lr, 0.0)
        } else {
            Schedule::constant(self.lr)
        }
    }

    /// Runs `objective` in the one [`Trainer`] over the trainable parameters of `store`, in
    /// `groups` (the rest in a default group), evaluating with `eval` when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fit(
        &self,
        name: &str,
        store: &ParamStore,
        groups: &[ParamGroup],
        objective: &mut dyn Objective,
        steps_per_epoch: usize,
        eval: Option<(&mut dyn Evaluator, EarlyStopping)>,
        seed: u64,
        quiet: bool,
    ) -> Result<TrainReport> {
        // The loop evaluates (and logs) once per `period` steps: whole data epochs, at least
        // 10 steps (few-shot sets are one batch per epoch).
        let period = steps_per_epoch * 10usize.div_ceil(steps_per_epoch.max(1));
        let cfg = TrainerConfig::steps(self.epochs * steps_per_epoch, period, self.schedule())
            .with_name(name)
            .with_seed(seed)
            .with_quiet(quiet);
        match self.optimizer {
            OptimizerKind::Sgd { momentum } => {
                let opt = Sgd::with_param_groups(
                    store,
                    groups,
                    SgdConfig::momentum(momentum).with_weight_decay(self.weight_decay),
                )?;
                run_trainer(cfg, store, opt, objective, eval)
            }
            OptimizerKind::Adam => {
                let opt = Adam::with_param_groups(
                    store,
                    groups,
                    AdamConfig::adam().with_weight_decay(self.weight_decay),
                )?;
                run_trainer(cfg, store, opt, objective, eval)
            }
        }
    }
}

fn run_trainer(
    cfg: TrainerConfig,
    store: &ParamStore,
    opt: impl Optimizer + 'static,
    objective: &mut dyn Objective,
    eval: Option<(&mut dyn Evaluator, EarlyStopping)>,
) -> Result<TrainReport> {
    match eval {
        Some((eval, es)) => {
            let mut trainer = Trainer::new(cfg.with_early_stopping(es), store, opt)?;
            trainer.fit_with_eval(objective, eval)
        }
        None => Trainer::new(cfg, store, opt)?.fit(objective),
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
pub struct FinetuneObjective<'a> {
    net: &'a dyn Classifier,
    batches: StepBatches<'a, DataLoader<TensorDataset>>,
    reg: Regulariser,
}

impl fmt::Debug for FinetuneObjective<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinetuneObjective")
            .field("classes", &self.net.num_classes())
            .field("batches", &self.batches)
            .field("reg", &self.reg)
            .finish()
    }
}

impl<'a> FinetuneObjective<'a> {
    /// Cross-entropy of `net` on the batches of `loader`, plus `reg`.
    pub fn new(
        net: &'a dyn Classifier,
        loader: &'a DataLoader<TensorDataset>,
        reg: Regulariser,
    ) -> Result<Self> {
        if let Regulariser::Distill { teacher_logits, .. } = &reg {
            let want = [loader.dataset().len(), net.num_classes()];
            if teacher_logits.dims() != want {
                return Err(TrainError::Config(format!(
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

impl Objective for FinetuneObjective<'_> {
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        let batch = self.batches.next(ctx)?;
        self.loss_on(&batch)
    }
}

/// Accuracy of a network on a labelled set, as an [`Evaluator`] returning `name`.
pub struct AccuracyEval<'a> {
    net: &'a dyn Classifier,
    x: Tensor,
    y: Tensor,
    name: String,
}

impl<'a> AccuracyEval<'a> {
    /// Reports `net`'s accuracy on `data` under `name`.
    pub fn new(
        net: &'a dyn Classifier,
        data: &TensorDataset,
        name: impl Into<String>,
    ) -> Result<Self> {
        let (x, y) = dataset_tensors(data, net.device())?;
        Ok(Self {
            net,
            x,
            y,
            name: name.into(),
        })
    }
}

impl fmt::Debug for AccuracyEval<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccuracyEval")
            .field("name", &self.name)
            .field("examples", &self.y.elem_count())
            .finish()
    }
}

impl Evaluator for AccuracyEval<'_> {
    fn evaluate(&mut self, _ctx: &EvalCtx) -> Result<Metrics> {
        Ok(vec![(
            self.name.clone(),
            self.net.accuracy_on(&self.x, &self.y)?,
        )])
    }
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

/// Which end of the network layer transfer copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEnd {
    /// The first `K` blocks (input side): generic features — the usual choice for images.
    First,
    /// The last `K` blocks (output side) — the usual choice for speech.
    Last,
}

/// What happens to the copied blocks while the rest trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopiedBlocks {
    /// Frozen: not updated (and no gradient is computed for them).
    Freeze,
    /// Trained with the learning rate multiplied by this factor (e.g. 0.1).
    LrMult(f64),
}

/// Layer transfer: copy `k` blocks from the source model, re-initialise the others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTransfer {
    /// Which end.
    pub end: BlockEnd,
    /// How many blocks.
    pub k: usize,
    /// Frozen or trained slowly.
    pub copied: CopiedBlocks,
}

/// A fine-tuning method (see the module documentation for the objectives).
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Train on the target only, from a random start (the baseline).
    Scratch,
    /// Start from the source weights, train everything on the target.
    Finetune,
    /// Fine-tuning with the L2-SP penalty toward the source weights.
    L2Sp {
        /// `α`, pretrained weights.
        alpha: f64,
        /// `β`, new layers.
        beta: f64,
    },
    /// Fine-tuning with output closeness to the frozen source model.
    Distill {
        /// `λ`.
        weight: f64,
        /// `T`.
        temperature: f64,
    },
    /// Copy some blocks, freeze them or train them slowly, re-initialise the rest.
    LayerTransfer(LayerTransfer),
}

impl Method {
    /// Whether the method starts from a pretrained source model.
    pub fn needs_source(&self) -> bool {
        !matches!(self, Method::Scratch)
    }

    /// The run name used in reports and `--json` output: `scratch`, `finetune`, `l2sp`,
    /// `distill`, `layer_transfer` (first `K`, frozen, as `layer-transfer:K` asks), or
    /// `layer_transfer_first_K` / `layer_transfer_last_K` (with `_lrX` when the copied
    /// blocks train at a multiplied rate).
    pub fn name(&self) -> String {
        match self {
            Method::Scratch => "scratch".into(),
            Method::Finetune => "finetune".into(),
            Method::L2Sp { .. } => "l2sp".into(),
            Method::Distill { .. } => "distill".into(),
            Method::LayerTransfer(lt) => {
                let end = match lt.end {
                    BlockEnd::First => "first",
                    BlockEnd::Last => "last",
                };
                match lt.copied {
                    CopiedBlocks::Freeze => format!("layer_transfer_{end}_{}", lt.k),
                    CopiedBlocks::LrMult(m) => format!("layer_transfer_{end}_{}_lr{m}", lt.k),
                }
            }
        }
    }

    /// Parses one method: `scratch`, `finetune`, `l2sp[:ALPHA[,BETA]]`,
    /// `distill[:LAMBDA[,T]]`, `layer-transfer:[first:|last:]K[:lr=X]` (first `K` and frozen
    /// by default).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            TrainError::Config(format!(
                "method {s:?}: {why}; expected scratch, finetune, l2sp[:ALPHA[,BETA]], \
                 distill[:LAMBDA[,T]] or layer-transfer:[first:|last:]K[:lr=X]"
            ))
        };
        let nums = |rest: &str, n: usize| -> Result<Vec<f64>> {
            let v: Option<Vec<f64>> = rest
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                })
                .collect();
            match v {
                Some(v) if !v.is_empty() && v.len() <= n => Ok(v),
                _ => Err(bad("bad numbers")),
            }
        };
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        match (head.replace('_', "-").as_str(), rest) {
            ("scratch", None) => Ok(Method::Scratch),
            ("finetune" | "fine-tune", None) => Ok(Method::Finetune),
            ("l2sp" | "l2-sp", None) => Ok(Method::L2Sp {
                alpha: L2SP_ALPHA,
                beta: L2SP_BETA,
            }),
            ("l2sp" | "l2-sp", Some(r)) => {
                let v = nums(r, 2)?;
                Ok(Method::L2Sp {
                    alpha: v.first().copied().unwrap_or(L2SP_ALPHA),
                    beta: v.get(1).copied().unwrap_or(L2SP_BETA),
                })
            }
            ("distill", None) => Ok(Method::Distill {
                weight: 1.0,
                temperature: 2.0,
            }),
            ("distill", Some(r)) => {
                let v = nums(r, 2)?;
                let temperature = v.get(1).copied().unwrap_or(2.0);
                if temperature <= 0.0 {
                    return Err(bad("the temperature must be > 0"));
                }
                Ok(Method::Distill {
                    weight: v.first().copied().unwrap_or(1.0),
                    temperature,
                })
            }
            ("layer-transfer", Some(r)) => {
                let mut end = BlockEnd::First;
                let mut k = None;
                let mut copied = CopiedBlocks::Freeze;
                for part in r.split(':') {
                    match part {
                        "first" => end = BlockEnd::First,
                        "last" => end = BlockEnd::Last,
                        "freeze" => copied = CopiedBlocks::Freeze,
                        p if p.starts_with("lr=") => {
                            let m = p
                                .get(3..)
                                .and_then(|m| m.parse::<f64>().ok())
                                .filter(|m| m.is_finite() && *m >= 0.0)
                                .ok_or_else(|| bad("lr= needs a number ≥ 0"))?;
                            copied = CopiedBlocks::LrMult(m);
                        }
                        p => k = Some(p.parse::<usize>().map_err(|_| bad("K must be a number"))?),
                    }
                }
                let k = k.ok_or_else(|| bad("layer-transfer needs K"))?;
                Ok(Method::LayerTransfer(LayerTransfer { end, k, copied }))
            }
            _ => Err(bad("unknown method")),
        }
    }

    /// Parses a comma-separated list (or `all`: scratch, finetune, l2sp, distill, and layer
    /// transfer of the first and of the last `K` blocks, frozen, for `K = 1 .. num_blocks−1`).
    /// Commas inside `l2sp:A,B` / `distill:L,T` belong to the method.
    pub fn parse_list(s: &str, num_blocks: usize) -> Result<Vec<Method>> {
        if s.trim() == "all" {
            let mut v = vec![
                Method::Scratch,
                Method::Finetune,
                Method::L2Sp {
                    alpha: L2SP_ALPHA,
                    beta: L2SP_BETA,
                },
                Method::Distill {
                    weight: 1.0,
                    temperature: 2.0,
                },
            ];
            for end in [BlockEnd::First, BlockEnd::Last] {
                for k in 1..num_blocks {
                    v.push(Method::LayerTransfer(LayerTransfer {
                        end,
                        k,
                        copied: CopiedBlocks::Freeze,
                    }));
                }
            }
            return Ok(v);
        }
        // Split on commas that start a new method (the next token begins with a letter).
        let mut items: Vec<String> = Vec::new();
        for tok in s.split(',') {
            let t = tok.trim();
            let starts_method = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            match items.last_mut() {
                Some(last) if !starts_method => {
                    last.push(',');
                    last.push_str(t);
                }
                _ => items.push(t.to_string()),
            }
        }
        let methods: Vec<Method> = items
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| Method::parse(t))
            .collect::<Result<_>>()?;
        if methods.is_empty() {
            return Err(TrainError::Config("no method given".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &methods {
            if !seen.insert(m.name()) {
                return Err(TrainError::Config(format!(
                    "method {} given twice",
                    m.name()
                )));
            }
        }
        Ok(methods)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

// ---------------------------------------------------------------------------------------
// The procedure: pretrain once, then run each method
// ---------------------------------------------------------------------------------------

/// The settings of a fine-tuning experiment.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// The network (the same for the source model and every target model).
    pub arch: Arch,
    /// Pretraining on the source.
    pub pretrain: StageConfig,
    /// Early-stopping patience (epochs) on the source validation accuracy during pretraining.
    pub pretrain_patience: usize,
    /// Training on the target, for the methods that start from the source.
    pub finetune: StageConfig,
    /// Training on the target from scratch (the baseline may need more steps).
    pub scratch: StageConfig,
    /// A per-sample transform of the source examples during pretraining (augmentation).
    pub pretrain_transform: Option<Arc<dyn Transform>>,
    /// Where the networks live.
    pub device: Device,
    /// Hide progress bars.
    pub quiet: bool,
}

impl FinetuneConfig {
    /// The defaults for small images or feature vectors (digits): Adam for pretraining
    /// (lr 1e-3, batch 64, up to 30 epochs, patience 3); full-batch SGD with momentum 0.9 for
    /// the target (lr 0.01, 100 epochs of few-shot data, no weight decay); scratch trains
    /// with Adam (lr 1e-3) for 300 epochs.
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            pretrain: StageConfig {
                epochs: 30,
                batch_size: 64,
                lr: 1e-3,
                optimizer: OptimizerKind::Adam,
                weight_decay: 0.0,
                cosine: false,
            },
            pretrain_patience: 3,
            finetune: StageConfig {
                epochs: 100,
                batch_size: 64,
                lr: 0.01,
                optimizer: OptimizerKind::Sgd { momentum: 0.9 },
                weight_decay: 0.0,
                cosine: false,
            },
            scratch: StageConfig {
                epochs: 300,
                batch_size: 64,
                lr: 1e-3,
                optimizer: OptimizerKind::Adam,
                weight_decay: 0.0,
                cosine: false,
            },
            pretrain_transform: None,
            device: Device::Cpu,
            quiet: false,
        }
    }
}

/// A source model trained once, kept in memory: every method of a run starts from a copy.
#[derive(Debug, Clone)]
pub struct Pretrained {
    /// The architecture.
    pub arch: Arch,
    /// One input example's shape.
    pub input_shape: Vec<usize>,
    /// The source's number of classes.
    pub num_classes: usize,
    /// Every parameter and buffer, deep copies.
    pub weights: BTreeMap<String, Tensor>,
    /// The ordered blocks.
    pub blocks: Vec<String>,
    /// Accuracy on the source validation data (the early-stopping metric), if any.
    pub source_val_acc: Option<f64>,
    /// The pretraining run (`None` when the model was loaded from a file).
    pub report: Option<TrainReport>,
}

impl Pretrained {
    /// A network initialised from `seed` with every weight then copied from the source model
    /// (strict: every parameter must be present with its shape).
    pub fn instantiate(&self, seed: u64, device: &Device) -> Result<Net> {
        let net = Net::new(
            &self.arch,
            &self.input_shape,
            self.num_classes,
            seed,
            device,
        )?;
        Transfer::new()
            .strict(true)
            .run(&self.weights, net.store())?;
        Ok(net)
    }

    /// Saves the source model (atomic safetensors checkpoint; the architecture, input shape,
    /// classes and source validation accuracy in its metadata), to skip pretraining later.
    /// The folder is created if needed.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, e))?;
        }
        let net = self.instantiate(0, &Device::Cpu)?;
        let config = serde_json::json!({
            "arch": self.arch.to_string(),
            "input_shape": self.input_shape,
            "num_classes": self.num_classes,
            "source_val_acc": self.source_val_acc,
        });
        xfer_models::checkpoint::save(net.store(), path, Some(&config.to_string()))?;
        Ok(())
    }

    /// Loads a source model written by [`Pretrained::save`] for `arch`, inputs of
    /// `input_shape` and `num_classes` classes; a file written for another network is refused
    /// (naming both).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        arch: &Arch,
        input_shape: &[usize],
        num_classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        let net = Net::new(arch, input_shape, num_classes, 0, device)?;
        let info = xfer_models::checkpoint::load(net.store(), path)?;
        let config: serde_json::Value = info
            .config
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let theirs = config.get("arch").and_then(|a| a.as_str()).unwrap_or("?");
        if theirs != arch.to_string() {
            return Err(TrainError::checkpoint(
                path,
                format!("a source model for network {theirs}, not {arch}"),
            ));
        }
        Ok(Self {
            arch: arch.clone(),
            input_shape: input_shape.to_vec(),
            num_classes,
            weights: net.weights()?,
            blocks: net.blocks().to_vec(),
            source_val_acc: config.get("source_val_acc").and_then(|v| v.as_f64()),
            report: None,
        })
    }

    /// The anchor `w⁰` of L2-SP: a frozen copy of the source weights.
    pub fn snapshot(&self) -> Result<ParamSnapshot> {
        Ok(ParamSnapshot::capture(
            self.weights.iter().map(|(n, t)| (n.as_str(), t)),
        )?)
    }
}

/// Trains the source model on `train` (early stopping on `val` accuracy when given), with
/// `cfg.pretrain` and `cfg.pretrain_transform`.
pub fn pretrain(
    train: &TensorDataset,
    val: Option<&TensorDataset>,
    num_classes: usize,
    cfg: &FinetuneConfig,
    seed: u64,
) -> Result<Pretrained> {
    let net = Net::new(
        &cfg.arch,
        train.sample_shape(),
        num_classes,
        derive_seed(seed, &[0x5052_4554]),
        &cfg.device,
    )?;
    let data = loader(
        train.clone(),
        cfg.pretrain.batch_size,
        seed,
        &cfg.device,
        cfg.pretrain_transform.clone(),
    )?;
    let mut obj = FinetuneObjective::new(&net, &data, Regulariser::None)?;
    let spe = data.batches_per_epoch();
    let report = match val {
        Some(v) => {
            let mut eval = AccuracyEval::new(&net, v, "val_acc")?;
            let es = EarlyStopping::max("val_acc", cfg.pretrain_patience);
            cfg.pretrain.fit(
                "pretrain",
                net.store(),
                &[],
                &mut obj,
                spe,
                Some((&mut eval, es)),
                seed,
                cfg.quiet,
            )?
        }
        None => cfg.pretrain.fit(
            "pretrain",
            net.store(),
            &[],
            &mut obj,
            spe,
            None,
            seed,
            cfg.quiet,
        )?,
    };
    let source_val_acc = match val {
        Some(v) => Some(net.accuracy(v)?),
        None => None,
    };
    tracing::info!(
        target: "xfer_train::methods",
        steps = report.steps,
        source_val_acc,
        "pretrained the source model"
    );
    Ok(Pretrained {
        arch: cfg.arch.clone(),
        input_shape: train.sample_shape().to_vec(),
        num_classes,
        weights: net.weights()?,
        blocks: net.blocks().to_vec(),
        source_val_acc,
        report: Some(report),
    })
}

/// What one method achieved.
#[derive(Debug, Clone)]
pub struct MethodOutcome {
    /// The method's run name ([`Method::name`]).
    pub name: String,
    /// Accuracy on the target test data.
    pub target_acc: f64,
    /// Accuracy on the labelled target training examples.
    pub train_acc: f64,
    /// For methods starting from the source: the source model's accuracy on the target test
    /// data before any target training.
    pub source_only_acc: Option<f64>,
    /// Layer transfer: what was copied (and what was not).
    pub transfer: Option<TransferReport>,
    /// Layer transfer: the block prefixes copied.
    pub copied_blocks: Vec<String>,
    /// The target training run (per-step loss, `ce`, regulariser, batch accuracy).
    pub report: TrainReport,
}

/// A method's target network, initialised (and partly copied from the source, and partly
/// frozen) as the method prescribes, with its regulariser and parameter groups: ready for
/// [`MethodSetup::train`].
pub struct MethodSetup {
    /// The method's run name.
    pub name: String,
    /// The target network.
    pub net: Net,
    /// What the objective adds to cross-entropy.
    pub regulariser: Regulariser,
    /// Parameter groups (layer transfer with a smaller rate for the copied blocks).
    pub groups: Vec<ParamGroup>,
    /// What was copied from the source (every method but scratch).
    pub transfer: Option<TransferReport>,
    /// Layer transfer: the block prefixes copied.
    pub copied_blocks: Vec<String>,
    /// The training stage (scratch or fine-tuning settings).
    pub stage: StageConfig,
}

impl fmt::Debug for MethodSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodSetup")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("regulariser", &self.regulariser)
            .field("copied_blocks", &self.copied_blocks)
            .finish()
    }
}

impl MethodSetup {
    /// Builds the target network of `method` for `target_train` (`num_classes` classes).
    /// `pretrained` is required by every method but scratch. When the target's number of
    /// classes differs from the source's, the source head is not copied: a new head is
    /// initialised (L2-SP's `β` term applies to it). Every random value comes from `seed`.
    pub fn new(
        method: &Method,
        pretrained: Option<&Pretrained>,
        target_train: &TensorDataset,
        num_classes: usize,
        cfg: &FinetuneConfig,
        seed: u64,
    ) -> Result<Self> {
        let dev = &cfg.device;
        let name = method.name();
        let init_seed = derive_seed(seed, &[0x5441_5247]);
        let source = || {
            pretrained.ok_or_else(|| {
                TrainError::Config(format!("method {name} needs a pretrained source model"))
            })
        };
        let arch = pretrained.map_or(&cfg.arch, |p| &p.arch);
        let net = Net::new(
            arch,
            target_train.sample_shape(),
            num_classes,
            init_seed,
            dev,
        )?;
        let new_head = pretrained.is_some_and(|p| p.num_classes != num_classes);
        let head_sel = Selection::parse(net.head())?;
        // Copies every source weight that fits (all but a head for other classes).
        let copy_all = |p: &Pretrained| -> Result<TransferReport> {
            let mut t = Transfer::new();
            if new_head {
                t = t.select(Selection::parse(&format!("!{}", net.head()))?);
            }
            let report = t.run(&p.weights, net.store())?;
            if !report.shape_mismatches.is_empty() || !report.missing_in_source.is_empty() {
                return Err(TrainError::Config(format!(
                    "the source model does not fit the target model: {report}"
                )));
            }
            Ok(report)
        };
        let mut transfer = None;
        let mut copied_blocks = Vec::new();
        let mut groups = Vec::new();
        let regulariser = match method {
            Method::Scratch => Regulariser::None,
            Method::Finetune => {
                transfer = Some(copy_all(source()?)?);
                Regulariser::None
            }
            Method::L2Sp { alpha, beta } => {
                let p = source()?;
                transfer = Some(copy_all(p)?);
                // w⁰: the source weights of the layers the target kept (a new head is "new").
                let anchor = ParamSnapshot::capture(
                    p.weights
                        .iter()
                        .filter(|(n, _)| {
                            net.store().contains(n) && !(new_head && head_sel.matches(n))
                        })
                        .map(|(n, t)| (n.as_str(), t)),
                )?;
                Regulariser::L2Sp(L2Sp::new(anchor, *alpha, *beta)?)
            }
            Method::Distill {
                weight,
                temperature,
            } => {
                let p = source()?;
                if new_head {
                    return Err(TrainError::Config(format!(
                        "distillation compares class distributions: the source has {} classes, \
                         the target {num_classes}",
                        p.num_classes
                    )));
                }
                // The frozen source model's logits on the target training inputs.
                let teacher = p.instantiate(init_seed, dev)?;
                teacher.store().freeze(&Selection::All);
                let (x, _) = dataset_tensors(target_train, dev)?;
                let teacher_logits = teacher.logits_eval(&x, 512)?;
                transfer = Some(copy_all(p)?);
                Regulariser::Distill {
                    teacher_logits,
                    loss: DistillationLoss::kl(*weight, *temperature)?,
                }
            }
            Method::LayerTransfer(lt) => {
                let p = source()?;
                let blocks = net.blocks().to_vec();
                if lt.k == 0 || lt.k >= blocks.len() {
                    return Err(TrainError::Config(format!(
                        "layer transfer: K = {} but the network has {} blocks ({}): K must be \
                         in 1..={}",
                        lt.k,
                        blocks.len(),
                        blocks.join(", "),
                        blocks.len().saturating_sub(1)
                    )));
                }
                copied_blocks = match lt.end {
                    BlockEnd::First => blocks.get(..lt.k),
                    BlockEnd::Last => blocks.get(blocks.len() - lt.k..),
                }
                .unwrap_or(&[])
                .to_vec();
                let sel = match lt.end {
                    BlockEnd::First => first_blocks(&blocks, lt.k)?,
                    BlockEnd::Last => last_blocks(&blocks, lt.k)?,
                };
                let report = Transfer::new()
                    .select(sel.clone())
                    .run(&p.weights, net.store())?;
                if !report.is_clean() {
                    return Err(TrainError::Config(format!(
                        "layer transfer could not copy the selected blocks: {report}"
                    )));
                }
                match lt.copied {
                    CopiedBlocks::Freeze => {
                        net.store().freeze(&sel);
                    }
                    CopiedBlocks::LrMult(m) => {
                        groups.push(ParamGroup::new("copied", sel).with_lr_mult(m));
                    }
                }
                transfer = Some(report);
                Regulariser::None
            }
        };
        if let Some(r) = &transfer {
            tracing::info!(target: "xfer_train::methods", method = %name, "{r}");
        }
        let stage = match method {
            Method::Scratch => cfg.scratch.clone(),
            _ => cfg.finetune.clone(),
        };
        Ok(Self {
            name,
            net,
            regulariser,
            groups,
            transfer,
            copied_blocks,
            stage,
        })
    }

    /// Trains the network on `target_train` in the one [`Trainer`].
    pub fn train(
        &self,
        target_train: &TensorDataset,
        seed: u64,
        quiet: bool,
    ) -> Result<TrainReport> {
        let data = loader(
            target_train.clone(),
            self.stage.batch_size,
            seed,
            self.net.device(),
            None,
        )?;
        let mut obj = FinetuneObjective::new(&self.net, &data, self.regulariser.clone())?;
        let spe = data.batches_per_epoch();
        self.stage.fit(
            &self.name,
            self.net.store(),
            &self.groups,
            &mut obj,
            spe,
            None,
            seed,
            quiet,
        )
    }
}

/// Builds the target network of `method` ([`MethodSetup::new`]), trains it on
/// `target_train` and tests it on `target_test`.
pub fn run_method(
    method: &Method,
    pretrained: Option<&Pretrained>,
    target_train: &TensorDataset,
    target_test: &TensorDataset,
    num_classes: usize,
    cfg: &FinetuneConfig,
    seed: u64,
) -> Result<MethodOutcome> {
    let setup = MethodSetup::new(method, pretrained, target_train, num_classes, cfg, seed)?;
    let same_head = pretrained.is_some_and(|p| p.num_classes == num_classes);
    let source_only_acc = match method {
        Method::Finetune | Method::L2Sp { .. } | Method::Distill { .. } if same_head => {
            Some(setup.net.accuracy(target_test)?)
        }
        _ => None,
    };
    let report = setup.train(target_train, seed, cfg.quiet)?;
    let target_acc = setup.net.accuracy(target_test)?;
    let train_acc = setup.net.accuracy(target_train)?;
    tracing::info!(target: "xfer_train::methods", method = %setup.name, target_acc, train_acc, "trained on the target");
    Ok(MethodOutcome {
        name: setup.name,
        target_acc,
        train_acc,
        source_only_acc,
        transfer: setup.transfer,
        copied_blocks: setup.copied_blocks,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` examples of `d` features in `c` classes: class means 1.5 along every `c`-th axis,
    /// plus noise; seeded.
    fn blobs(n: usize, d: usize, c: usize, seed: u64) -> TensorDataset {
        let mut rng = SeededRng::new(seed);
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let k = i % c;
            for j in 0..d {
                let mean = if j % c == k { 1.5 } else { 0.0 };
                x.push((mean + 0.5 * rng.normal01()) as f32);
            }
            y.push(k as u32);
        }
        TensorDataset::new("blobs", x, vec![d], y)
            .unwrap()
            .with_num_classes(c)
            .unwrap()
    }

    /// The whole data set as one batch.
    fn full_batch(ds: &TensorDataset) -> Batch {
        let (x, y) = ds.to_tensors(&Device::Cpu).unwrap();
        Batch {
            x,
            y: Some(y),
            domain: None,
            indices: (0..ds.len()).collect(),
            epoch: 0,
            step: 0,
        }
    }

    fn small_cfg() -> FinetuneConfig {
        let mut cfg = FinetuneConfig::new(Arch::Mlp {
            hidden: vec![16, 12],
            dropout: 0.0,
        });
        cfg.pretrain.epochs = 3;
        cfg.pretrain.batch_size = 16;
        cfg.finetune.epochs = 8;
        cfg.scratch.epochs = 8;
        cfg.quiet = true;
        cfg
    }

    fn pretrained(seed: u64) -> Pretrained {
        let src = blobs(64, 8, 4, seed);
        pretrain(&src, None, 4, &small_cfg(), seed).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn param(net: &Net, name: &str) -> Vec<f32> {
        values(net.store().get(name).unwrap().var().as_tensor())
    }

    #[test]
    fn layer_transfer_with_freezing_leaves_copied_weights_bit_identical_after_training() {
        let p = pretrained(1);
        let target = blobs(20, 8, 4, 2);
        let m = Method::LayerTransfer(LayerTransfer {
            end: BlockEnd::First,
            k: 2,
            copied: CopiedBlocks::Freeze,
        });
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), 3).unwrap();
        assert_eq!(setup.copied_blocks, ["features.0", "features.2"]);
        let report = setup.transfer.as_ref().unwrap();
        assert_eq!(
            report.copied,
            [
                "features.0.bias",
                "features.0.weight",
                "features.2.bias",
                "features.2.weight"
            ]
        );
        assert_eq!(
            report.not_selected,
            ["classifier.bias", "classifier.weight"]
        );
        let head_before = param(&setup.net, "classifier.weight");
        let train = setup.train(&target, 3, true).unwrap();
        assert_eq!(train.steps, 8);
        for name in &report.copied {
            assert_eq!(
                param(&setup.net, name),
                values(&p.weights[name]),
                "{name} moved although frozen"
            );
        }
        assert_ne!(
            head_before,
            param(&setup.net, "classifier.weight"),
            "the re-initialised head did not train"
        );
    }

    #[test]
    fn layer_transfer_last_blocks_copies_the_head_and_reinitialises_the_first() {
        let p = pretrained(4);
        let target = blobs(20, 8, 4, 5);
        let m = Method::parse("layer-transfer:last:1:lr=0.1").unwrap();
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), 6).unwrap();
        assert_eq!(setup.copied_blocks, ["classifier"]);
        assert_eq!(setup.groups.len(), 1);
        assert_ne!(
            param(&setup.net, "features.0.weight"),
            values(&p.weights["features.0.weight"])
        );
        assert_eq!(
            param(&setup.net, "classifier.weight"),
            values(&p.weights["classifier.weight"])
        );
        // Copied with a 0.1 rate, not frozen: still trainable.
        assert!(
            setup
                .net
                .store()
                .get("classifier.weight")
                .unwrap()
                .is_trainable()
        );
        let bad = Method::parse("layer-transfer:3").unwrap();
        let err = MethodSetup::new(&bad, Some(&p), &target, 4, &small_cfg(), 6).unwrap_err();
        assert!(err.to_string().contains("K must be in 1..=2"), "{err}");
    }

    #[test]
    fn l2sp_objective_is_cross_entropy_plus_the_penalty_on_weights_only() {
        let p = pretrained(7);
        let target = blobs(12, 8, 4, 8);
        let m = Method::L2Sp {
            alpha: 0.1,
            beta: 0.01,
        };
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), 9).unwrap();
        // Move every parameter away from its anchor by a known amount.
        for param in setup.net.store().all() {
            let t = param.var().as_tensor();
            param.var().set(&(t + 0.25).unwrap()).unwrap();
        }
        let data = loader(target.clone(), 64, 0, &Device::Cpu, None).unwrap();
        let obj = FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
        let batch = full_batch(&target);
        let out = obj.loss_on(&batch).unwrap();
        let total = out.loss.to_scalar::<f32>().unwrap() as f64;
        let ce = cross_entropy(
            &setup.net.logits(&batch.x, true).unwrap(),
            batch.labels().unwrap(),
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
        // α/2 Σ_weights ‖w − w⁰‖² with every entry 0.25 away; biases are not penalised.
        let weights: usize = setup
            .net
            .store()
            .all()
            .iter()
            .filter(|p| p.name().ends_with(".weight"))
            .map(|p| p.var().elem_count())
            .sum();
        let penalty = 0.1 / 2.0 * weights as f64 * 0.0625;
        assert!(
            (total - (ce + penalty)).abs() < 1e-4,
            "{total} vs {ce} + {penalty}"
        );
        let logged = |k: &str| out.metrics.iter().find(|(n, _)| n == k).unwrap().1;
        assert!((logged("l2_sp") - penalty).abs() < 1e-4);
        assert!((logged("ce") - ce).abs() < 1e-5);
    }

    #[test]
    fn l2sp_anchor_stays_at_the_source_weights_while_training_moves_the_model() {
        let p = pretrained(10);
        let target = blobs(12, 8, 4, 11);
        let m = Method::parse("l2sp").unwrap();
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), 12).unwrap();
        setup.train(&target, 12, true).unwrap();
        let Regulariser::L2Sp(reg) = &setup.regulariser else {
            panic!("not L2-SP")
        };
        let w0 = values(reg.anchor().get("features.0.weight").unwrap());
        assert_eq!(w0, values(&p.weights["features.0.weight"]));
        assert_ne!(param(&setup.net, "features.0.weight"), w0);
    }

    #[test]
    fn distill_objective_is_cross_entropy_plus_t_squared_kl_to_the_frozen_source() {
        let p = pretrained(13);
        let target = blobs(12, 8, 4, 14);
        let m = Method::Distill {
            weight: 0.5,
            temperature: 2.0,
        };
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), 15).unwrap();
        let data = loader(target.clone(), 64, 0, &Device::Cpu, None).unwrap();
        let obj = FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
        let batch = full_batch(&target);
        let distill =
            |out: &StepOutput| out.metrics.iter().find(|(n, _)| n == "distill").unwrap().1;
        // At the start the student is the teacher: the KL term is 0.
        let d0 = distill(&obj.loss_on(&batch).unwrap());
        assert!(d0.abs() < 1e-6, "{d0}");
        // After training the student differs and the term is λ T² KL.
        setup.train(&target, 15, true).unwrap();
        let got = distill(&obj.loss_on(&batch).unwrap());
        let z = setup.net.logits(&batch.x, true).unwrap();
        let teacher = p.instantiate(0, &Device::Cpu).unwrap();
        let zt = teacher.logits(&batch.x, false).unwrap();
        let want = 0.5
            * xfer_losses::kl_distillation(&z, &zt, 2.0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
        assert!(want > 1e-6 && (got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn finetune_starts_from_the_source_weights_and_scratch_does_not() {
        let p = pretrained(16);
        let target = blobs(12, 8, 4, 17);
        let cfg = small_cfg();
        let ft = MethodSetup::new(&Method::Finetune, Some(&p), &target, 4, &cfg, 18).unwrap();
        let sc = MethodSetup::new(&Method::Scratch, Some(&p), &target, 4, &cfg, 18).unwrap();
        for (name, w) in &p.weights {
            assert_eq!(param(&ft.net, name), values(w), "{name}");
            assert_ne!(param(&sc.net, name), values(w), "{name}");
        }
        // A target with other classes gets a new head; L2-SP treats it as a new layer.
        let other = blobs(12, 8, 3, 19);
        let l2sp = Method::parse("l2sp").unwrap();
        let l2 = MethodSetup::new(&l2sp, Some(&p), &other, 3, &cfg, 18).unwrap();
        let Regulariser::L2Sp(reg) = &l2.regulariser else {
            panic!("not L2-SP")
        };
        assert!(reg.anchor().get("classifier.weight").is_none());
        assert_eq!(
            reg.role("classifier.weight", 2),
            xfer_losses::Role::New { beta: 0.01 }
        );
        let distill = Method::parse("distill").unwrap();
        let err = MethodSetup::new(&distill, Some(&p), &other, 3, &cfg, 18).unwrap_err();
        assert!(err.to_string().contains("4 classes"), "{err}");
        let err = MethodSetup::new(&Method::Finetune, None, &target, 4, &cfg, 18).unwrap_err();
        assert!(err.to_string().contains("needs a pretrained"), "{err}");
    }

    #[test]
    fn finetuning_is_reproducible_from_the_seed() {
        // Initialisation and batches come from the seed only: two runs agree exactly.
        let p = pretrained(21);
        let target = blobs(40, 8, 4, 22);
        let mut cfg = small_cfg();
        cfg.finetune.batch_size = 16;
        let m = Method::parse("l2sp").unwrap();
        let a = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, 23).unwrap();
        a.train(&target, 23, true).unwrap();
        let b = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, 23).unwrap();
        b.train(&target, 23, true).unwrap();
        for name in p.weights.keys() {
            assert_eq!(param(&a.net, name), param(&b.net, name), "{name}");
        }
    }

    #[test]
    fn an_interrupted_l2sp_run_resumed_from_its_checkpoint_ends_with_identical_weights() {
        use crate::checkpoint::checkpoint_file_name;
        use crate::trainer::CheckpointConfig;
        let p = pretrained(24);
        let target = blobs(40, 8, 4, 25);
        let m = Method::parse("l2sp").unwrap();
        let cfg = small_cfg();
        let dir = std::env::temp_dir().join(format!("xfer-ft-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = |resume: bool| -> Net {
            let setup = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, 26).unwrap();
            let data = loader(target.clone(), 16, 26, &Device::Cpu, None).unwrap();
            let mut obj =
                FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
            let ck = CheckpointConfig {
                keep_last: 0,
                ..CheckpointConfig::new(&dir, 3)
            };
            let tc = TrainerConfig::steps(9, 3, Schedule::constant(0.05))
                .with_seed(26)
                .with_quiet(true)
                .with_checkpoint(ck);
            let opt = Sgd::new(setup.net.store().trainable(), SgdConfig::momentum(0.9)).unwrap();
            let mut trainer = Trainer::new(tc, setup.net.store(), opt).unwrap();
            if resume {
                trainer.resume(&dir.join(checkpoint_file_name(3))).unwrap();
            }
            trainer.fit(&mut obj).unwrap();
            setup.net
        };
        // Uninterrupted, writing checkpoints at steps 3 and 6; then a fresh model that
        // resumes from the step-3 checkpoint (what an interrupted run leaves) and finishes.
        let whole = run(false);
        let resumed = run(true);
        for name in p.weights.keys() {
            assert_eq!(param(&whole, name), param(&resumed, name), "{name}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn methods_parse_with_names_and_all_expands_layer_transfer_both_ends() {
        let v =
            Method::parse_list("scratch, l2sp:0.2,0.05 ,distill:1,4,layer-transfer:2", 4).unwrap();
        let names: Vec<String> = v.iter().map(Method::name).collect();
        assert_eq!(
            names,
            ["scratch", "l2sp", "distill", "layer_transfer_first_2"]
        );
        assert_eq!(
            v[1],
            Method::L2Sp {
                alpha: 0.2,
                beta: 0.05
            }
        );
        assert_eq!(
            v[2],
            Method::Distill {
                weight: 1.0,
                temperature: 4.0
            }
        );
        let all = Method::parse_list("all", 4).unwrap();
        assert_eq!(all.len(), 4 + 3 + 3);
        assert!(all.iter().any(|m| m.name() == "layer_transfer_last_3"));
        for bad in [
            "",
            "fine",
            "layer-transfer",
            "l2sp:-1",
            "distill:1,0",
            "scratch,scratch",
        ] {
            assert!(Method::parse_list(bad, 4).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "mlp:32,16:dropout=0.5".parse::<Arch>().unwrap(),
            Arch::Mlp {
                hidden: vec![32, 16],
                dropout: 0.5
            }
        );
        assert!("cnn:3".parse::<Arch>().is_err());
        assert_eq!(Arch::for_input(&[1, 8, 8]), Arch::cnn());
        assert_eq!(Arch::for_input(&[64]), Arch::mlp());
    }

    #[test]
    fn pretrained_model_saves_and_loads_with_identical_weights() {
        let p = pretrained(20);
        let dir = std::env::temp_dir().join(format!("xfer-ft-{}", std::process::id()));
        let path = dir.join("src.safetensors");
        p.save(&path).unwrap();
        let q = Pretrained::load(&path, &p.arch, &p.input_shape, 4, &Device::Cpu).unwrap();
        for (n, w) in &p.weights {
            assert_eq!(values(w), values(&q.weights[n]), "{n}");
        }
        let other = Arch::Mlp {
            hidden: vec![16, 12],
            dropout: 0.5,
        };
        assert!(Pretrained::load(&path, &other, &p.input_shape, 4, &Device::Cpu).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
