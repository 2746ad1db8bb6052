//! A method's target network, its training and its test.

use std::fmt;
use std::sync::Arc;

use xfer_data::Dataset;
use xfer_models::{Classifier, ClassifierConfig, ParamGroup, TransferReport};

use super::loader;
use super::method::{Method, SetupCtx};
use super::objective::{FinetuneObjective, Regulariser, accuracy};
use super::pretrain::{FinetuneConfig, Pretrained, eval_view};
use crate::run::{RunCtx, Stage};
use crate::trainer::{TrainReport, derive_seed};
use crate::{Result, TrainError};

/// What one method achieved: the trained target network, its training run and its metrics.
#[derive(Debug)]
pub struct Outcome {
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
        let name = method.name();
        if let Some(why) = method.unsupported(pretrained, num_classes) {
            return Err(TrainError::Incompatible(why));
        }
        let init_seed = derive_seed(ctx.seed, &[0x5441_5247]);
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
            &ctx.device,
        )?;
        let cx = SetupCtx {
            net: &net,
            pretrained,
            new_head: pretrained.is_some_and(|p| p.needs_new_head(num_classes)),
            cfg,
            init_seed,
            target_train: Arc::new(target_train.clone()),
            name: name.clone(),
        };
        let prepared = method.get().prepare(&cx)?;
        if let Some(r) = &prepared.transfer {
            tracing::info!(target: "xfer_train::methods", method = %name, "{r}");
        }
        let stage = method.stage(cfg).clone();
        // A pretrained backbone trains more slowly than the new head (TLlib's habit): the
        // stage's `backbone_lr_mult` (scratch: 1 by default), in `Stage::fit`'s groups.
        Ok(Self {
            name,
            net,
            regulariser: prepared.regulariser,
            groups: prepared.groups,
            transfer: prepared.transfer,
            copied_blocks: prepared.copied_blocks,
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

/// The data of a fine-tuning run: the source model (`None`: only scratch can run) and the
/// target.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a, D> {
    /// The source model every method but scratch starts from ([`super::pretrain()`] or
    /// [`Pretrained::from_backbone`]), shared by the methods of a comparison.
    pub source: Option<&'a Pretrained>,
    /// The target's labelled training examples and test data.
    pub target: &'a TargetData<D>,
}

impl<'a, D> Data<'a, D> {
    /// `target`, fine-tuned from `source`.
    pub fn new(source: Option<&'a Pretrained>, target: &'a TargetData<D>) -> Self {
        Self { source, target }
    }
}

impl Outcome {
    /// `target_acc`, `train_acc` and, when measured, `source_only_acc`, for reports.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = vec![
            ("target_acc", self.target_acc),
            ("train_acc", self.train_acc),
        ];
        if let Some(a) = self.source_only_acc {
            m.push(("source_only_acc", a));
        }
        m
    }
}

/// The family's one entry: runs `cfg.method` on `data` — builds its target network from the
/// source ([`MethodSetup::new`]), trains it on `data.target.train` and tests it on
/// `data.target.test`; the outcome keeps the trained network.
pub fn run<D: Dataset + Clone + 'static>(
    cfg: &FinetuneConfig,
    data: &Data<'_, D>,
    ctx: &RunCtx,
) -> Result<Outcome> {
    let (method, pretrained, target) = (&cfg.method, data.source, data.target);
    let num_classes = target.num_classes;
    let setup = MethodSetup::new(method, pretrained, &target.train, num_classes, cfg, ctx)?;
    let same_head = pretrained.is_some_and(|p| !p.needs_new_head(num_classes));
    let test_view = eval_view(&target.test, cfg)?;
    let source_only_acc = if same_head && method.get().starts_as_source_model() {
        Some(accuracy(&setup.net, &test_view)?)
    } else {
        None
    };
    let report = setup.train(&target.train, ctx)?;
    let target_acc = accuracy(&setup.net, &test_view)?;
    let train_acc = accuracy(&setup.net, &eval_view(&target.train, cfg)?)?;
    tracing::info!(target: "xfer_train::methods", method = %setup.name, target_acc, train_acc, "trained on the target");
    Ok(Outcome {
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
