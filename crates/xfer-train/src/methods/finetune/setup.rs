//! A method's target network, its training and its test.

use std::fmt;

use xfer_data::Dataset;
use xfer_losses::{DistillationLoss, L2Sp};
use xfer_models::{
    Classifier, ClassifierConfig, ParamGroup, Selection, Transfer, TransferReport, first_blocks,
    last_blocks,
};
use xfer_ops::ParamSnapshot;

use super::loader;
use super::method::{BlockEnd, CopiedBlocks, LayerTransfer, Method};
use super::objective::{FinetuneObjective, Regulariser, accuracy, logits_of};
use super::pretrain::{FinetuneConfig, Pretrained, eval_view};
use crate::run::{RunCtx, Stage};
use crate::trainer::{TrainReport, derive_seed};
use crate::{Result, TrainError};

/// What one method achieved.
#[derive(Debug)]
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
    /// The trained target network.
    pub net: Classifier,
}

/// The target of a fine-tuning run: its labelled training examples, its test data and its
/// number of classes.
#[derive(Debug, Clone)]
pub struct TargetData<D> {
    /// The labelled target examples the methods train on.
    pub train: D,
    /// The target test data.
    pub test: D,
    /// The target's number of classes.
    pub num_classes: usize,
}

impl<D> TargetData<D> {
    /// `train` and `test` with `num_classes` classes.
    pub fn new(train: D, test: D, num_classes: usize) -> Self {
        Self {
            train,
            test,
            num_classes,
        }
    }
}

/// A method's target network, initialised (and partly copied from the source, and partly
/// frozen) as the method prescribes, with its regulariser and parameter groups: ready for
/// [`MethodSetup::train`].
pub struct MethodSetup {
    /// The method's run name.
    pub name: String,
    /// The target network.
    pub net: Classifier,
    /// What the objective adds to cross-entropy.
    pub regulariser: Regulariser,
    /// Parameter groups added before the classifier's backbone and head groups (layer
    /// transfer with a smaller rate for the copied blocks).
    pub groups: Vec<ParamGroup>,
    /// What was copied from the source (every method but scratch).
    pub transfer: Option<TransferReport>,
    /// Layer transfer: the block prefixes copied.
    pub copied_blocks: Vec<String>,
    /// The training stage (scratch or fine-tuning settings).
    pub stage: Stage,
    /// Augmentation of the training examples.
    pub transform: Option<std::sync::Arc<dyn xfer_data::Transform>>,
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
    /// initialised (L2-SP's `β` term applies to it). The network lives on `ctx.device`;
    /// every random value comes from `ctx.seed`.
    pub fn new<D: Dataset + Clone + 'static>(
        method: &Method,
        pretrained: Option<&Pretrained>,
        target_train: &D,
        num_classes: usize,
        cfg: &FinetuneConfig,
        ctx: &RunCtx,
    ) -> Result<Self> {
        let dev = &ctx.device;
        let seed = ctx.seed;
        let name = method.name();
        let init_seed = derive_seed(seed, &[0x5441_5247]);
        let source = || {
            pretrained.ok_or_else(|| {
                TrainError::Incompatible(format!("method {name} needs a pretrained source model"))
            })
        };
        let spec = pretrained.map_or(&cfg.backbone, |p| &p.backbone);
        // What the network sees: the training transform's output (e.g. a pretrained
        // backbone's crop of a folder of any image size), else the samples themselves.
        let input_shape = match &cfg.train_transform {
            Some(t) => t.output_shape(target_train.sample_shape())?,
            None => target_train.sample_shape().to_vec(),
        };
        let net = Classifier::new(
            &ClassifierConfig::new(spec.clone(), &input_shape, num_classes),
            init_seed,
            dev,
        )?;
        let new_head = pretrained.is_some_and(|p| p.needs_new_head(num_classes));
        let head_sel = Selection::parse(net.head_block())?;
        // Copies every source weight that fits (all but a head for other classes).
        let copy_all = |p: &Pretrained| -> Result<TransferReport> {
            let mut t = Transfer::new();
            if new_head {
                t = t.select(Selection::parse(&format!("!{}", net.head_block()))?);
            }
            let report = t.run(&p.weights, net.store())?;
            if !report.shape_mismatches.is_empty() || !report.missing_in_source.is_empty() {
                return Err(TrainError::Incompatible(format!(
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
                    let why = if p.has_head {
                        format!("the source has {} classes", p.num_classes)
                    } else {
                        format!("the pretrained backbone {} has no source head", p.backbone)
                    };
                    return Err(TrainError::Incompatible(format!(
                        "distillation compares class distributions: {why}, the target \
                         {num_classes}"
                    )));
                }
                // The frozen source model's logits on the target training inputs.
                let teacher = p.instantiate(init_seed, dev)?;
                teacher.store().freeze(&Selection::All);
                let (teacher_logits, _) = logits_of(&teacher, &eval_view(target_train, cfg)?)?;
                transfer = Some(copy_all(p)?);
                Regulariser::Distill {
                    teacher_logits,
                    loss: DistillationLoss::kl(*weight, *temperature)?,
                }
            }
            Method::LayerTransfer(_) | Method::LinearProbe => {
                let p = source()?;
                let blocks = net.blocks();
                let lt = match method {
                    Method::LayerTransfer(lt) => *lt,
                    _ => LayerTransfer {
                        end: BlockEnd::First,
                        k: blocks.len().saturating_sub(1),
                        copied: CopiedBlocks::Freeze,
                    },
                };
                if lt.k == 0 || lt.k >= blocks.len() {
                    return Err(TrainError::invalid(
                        "layer-transfer K",
                        lt.k,
                        format!(
                            "a value in 1..={} (layer transfer: the network has {} blocks: {})",
                            blocks.len().saturating_sub(1),
                            blocks.len(),
                            blocks.join(", "),
                        ),
                    ));
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
                    return Err(TrainError::Incompatible(format!(
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
        // A pretrained backbone trains more slowly than the new head (TLlib's habit): the
        // stage's `backbone_lr_mult` (scratch: 1 by default), in `Stage::fit`'s groups.
        Ok(Self {
            name,
            net,
            regulariser,
            groups,
            transfer,
            copied_blocks,
            stage,
            transform: cfg.train_transform.clone(),
        })
    }

    /// Trains the network on `target_train` in the one [`crate::Trainer`] ([`Stage::fit`]:
    /// [`MethodSetup::groups`], then the classifier's backbone and head groups), with
    /// `ctx`'s seed, progress and checkpoints (in the stage folder [`MethodSetup::name`]).
    pub fn train<D: Dataset + Clone + 'static>(
        &self,
        target_train: &D,
        ctx: &RunCtx,
    ) -> Result<TrainReport> {
        let data = loader(
            target_train.clone(),
            self.stage.batch_size,
            ctx.seed,
            self.net.device(),
            self.transform.clone(),
        )?;
        let mut obj = FinetuneObjective::new(&self.net, &data, self.regulariser.clone())?;
        let spe = data.batches_per_epoch();
        self.stage.fit(
            &self.name,
            &self.net,
            &self.groups,
            &mut obj,
            spe,
            None,
            ctx,
        )
    }
}

/// Builds the target network of `method` ([`MethodSetup::new`]), trains it on
/// `target.train` and tests it on `target.test`; the outcome keeps the trained network.
pub fn run_method<D: Dataset + Clone + 'static>(
    method: &Method,
    pretrained: Option<&Pretrained>,
    target: &TargetData<D>,
    cfg: &FinetuneConfig,
    ctx: &RunCtx,
) -> Result<MethodOutcome> {
    let num_classes = target.num_classes;
    let setup = MethodSetup::new(method, pretrained, &target.train, num_classes, cfg, ctx)?;
    let same_head = pretrained.is_some_and(|p| !p.needs_new_head(num_classes));
    let test_view = eval_view(&target.test, cfg)?;
    let source_only_acc = match method {
        Method::Finetune | Method::L2Sp { .. } | Method::Distill { .. } if same_head => {
            Some(accuracy(&setup.net, &test_view)?)
        }
        _ => None,
    };
    let report = setup.train(&target.train, ctx)?;
    let target_acc = accuracy(&setup.net, &test_view)?;
    let train_acc = accuracy(&setup.net, &eval_view(&target.train, cfg)?)?;
    tracing::info!(target: "xfer_train::methods", method = %setup.name, target_acc, train_acc, "trained on the target");
    Ok(MethodOutcome {
        name: setup.name,
        target_acc,
        train_acc,
        source_only_acc,
        transfer: setup.transfer,
        copied_blocks: setup.copied_blocks,
        report,
        net: setup.net,
    })
}
