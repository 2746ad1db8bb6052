//! The source model: trained once on the source, or a pretrained backbone.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::transform::Compose;
use xfer_data::{Dataset, Mapped, Transform};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig, Transfer};

use super::loader;
use super::method::{FullFinetune, Method};
use super::objective::{AccuracyEval, FinetuneObjective, Regulariser, accuracy};
use crate::run::{RunCtx, Stage};
use crate::trainer::{EarlyStopping, TrainReport, derive_seed};
use crate::{Result, TrainError};

/// The settings of a fine-tuning run: the method and the network, the transforms, and the
/// stages of pretraining, fine-tuning and the scratch baseline.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// The method [`super::run`] runs (its spec, e.g. `l2sp:0.1,0.01`, in reports).
    pub method: Method,
    /// The network (the same for the source model and every target model).
    pub backbone: BackboneSpec,
    /// A per-sample transform of the target training examples (augmentation).
    pub train_transform: Option<Arc<dyn Transform>>,
    /// A fixed per-sample transform of every evaluated example (e.g. resize, centre crop,
    /// normalise); the training transform should end in the same shape.
    pub eval_transform: Option<Arc<dyn Transform>>,
    /// Pretraining on the source (every parameter at the stage's rate: its
    /// `backbone_lr_mult` is 1 by default).
    pub pretrain: Stage,
    /// Early-stopping patience (epochs) on the source validation accuracy during pretraining.
    pub pretrain_patience: usize,
    /// Training on the target, for the methods that start from the source; its
    /// `backbone_lr_mult` is the backbone's rate multiplier relative to the head (`None`:
    /// 0.1 for pretrained backbones, 1 for the built-in networks).
    pub finetune: Stage,
    /// Training on the target from scratch (the baseline may need more steps; every
    /// parameter at the stage's rate: its `backbone_lr_mult` is 1 by default).
    pub scratch: Stage,
    /// A per-sample transform of the source examples during pretraining (augmentation).
    pub pretrain_transform: Option<Arc<dyn Transform>>,
}

impl FinetuneConfig {
    /// The defaults for small images or feature vectors (digits): Adam for pretraining
    /// (lr 1e-3, batch 64, up to 30 epochs, patience 3); full-batch SGD with momentum 0.9 for
    /// the target (lr 0.01, 100 epochs of few-shot data, no weight decay); scratch trains
    /// with Adam (lr 1e-3) for 300 epochs; the method is full fine-tuning.
    pub fn new(backbone: BackboneSpec) -> Self {
        Self {
            method: Method::new(FullFinetune),
            backbone,
            train_transform: None,
            eval_transform: None,
            pretrain: Stage::adam(1e-3)
                .with_epochs(30)
                .with_batch_size(64)
                .with_backbone_lr_mult(1.0),
            pretrain_patience: 3,
            finetune: Stage::sgd(0.01, 0.9).with_epochs(100).with_batch_size(64),
            scratch: Stage::adam(1e-3)
                .with_epochs(300)
                .with_batch_size(64)
                .with_backbone_lr_mult(1.0),
            pretrain_transform: None,
        }
    }

    /// The same settings for `method`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// `data` as evaluation sees it: through [`FinetuneConfig::eval_transform`] when there is one.
pub fn eval_view<D: Dataset + Clone>(data: &D, cfg: &FinetuneConfig) -> Result<Mapped<D>> {
    let t: Arc<dyn Transform> = match &cfg.eval_transform {
        Some(t) => t.clone(),
        None => Arc::new(Compose::new()),
    };
    Ok(Mapped::new(data.clone(), t)?)
}

/// What a source-model file records besides the weights.
#[derive(Debug, Serialize, Deserialize)]
struct SourceModelInfo {
    backbone: BackboneSpec,
    input_shape: Vec<usize>,
    num_classes: usize,
    has_head: bool,
    source_val_acc: Option<f64>,
}

/// A source model trained once, kept in memory: every method of a run starts from a copy.
#[derive(Debug, Clone)]
pub struct Pretrained {
    /// The backbone.
    pub backbone: BackboneSpec,
    /// One input example's shape.
    pub input_shape: Vec<usize>,
    /// The source's number of classes.
    pub num_classes: usize,
    /// Whether the weights include a head trained for the source's classes (false for a
    /// pretrained backbone given with `weights=`: every target gets a new head).
    pub has_head: bool,
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
    /// The source model of a pretrained backbone (`weights=` or a model folder): its
    /// backbone weights, no source head. Fails for a spec without pretrained weights.
    pub fn from_backbone(
        spec: &BackboneSpec,
        input_shape: &[usize],
        device: &Device,
    ) -> Result<Self> {
        if !spec.is_pretrained() {
            return Err(TrainError::Incompatible(format!(
                "backbone {spec} has no pretrained weights: give weights=PATH or pretrain it on \
                 a source"
            )));
        }
        let net = Classifier::new(
            &ClassifierConfig::new(spec.clone(), input_shape, 1),
            0,
            device,
        )?;
        let keep: std::collections::BTreeSet<String> =
            net.backbone_param_names().into_iter().collect();
        let weights = net
            .weights()?
            .into_iter()
            .filter(|(n, _)| keep.contains(n))
            .collect();
        Ok(Self {
            backbone: spec.clone(),
            input_shape: input_shape.to_vec(),
            num_classes: 0,
            has_head: false,
            weights,
            blocks: net.blocks(),
            source_val_acc: None,
            report: None,
        })
    }

    /// Whether a target with `num_classes` classes needs a new head (the source has none,
    /// or one for other classes).
    pub fn needs_new_head(&self, num_classes: usize) -> bool {
        !self.has_head || self.num_classes != num_classes
    }

    /// A network initialised from `seed` with every weight then copied from the source model
    /// (strict: every parameter must be present with its shape).
    pub fn instantiate(&self, seed: u64, device: &Device) -> Result<Classifier> {
        let cfg = ClassifierConfig::new(
            self.backbone.clone(),
            &self.input_shape,
            self.num_classes.max(1),
        );
        let net = Classifier::new(&cfg, seed, device)?;
        Transfer::new()
            .strict(self.has_head)
            .run(&self.weights, net.store())?;
        Ok(net)
    }

    /// Saves the source model (atomic safetensors checkpoint; the backbone, input shape,
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
        let info = SourceModelInfo {
            backbone: self.backbone.clone(),
            input_shape: self.input_shape.clone(),
            num_classes: self.num_classes,
            has_head: self.has_head,
            source_val_acc: self.source_val_acc,
        };
        let config = serde_json::to_string(&info)
            .map_err(|e| TrainError::checkpoint(path, format!("source model info: {e}")))?;
        xfer_models::checkpoint::save(net.store(), path, Some(&config))?;
        Ok(())
    }

    /// Loads a source model written by [`Pretrained::save`] for `backbone`, inputs of
    /// `input_shape` and `num_classes` classes; a file written for another network is refused
    /// (naming both).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        backbone: &BackboneSpec,
        input_shape: &[usize],
        num_classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        let info: SourceModelInfo = xfer_models::checkpoint::read_config(path).map_err(|e| {
            TrainError::checkpoint(
                path,
                format!("not a source model file of this version: {e}"),
            )
        })?;
        if &info.backbone != backbone
            || info.input_shape != input_shape
            || info.num_classes != num_classes
        {
            return Err(TrainError::checkpoint(
                path,
                format!(
                    "a source model for {} on inputs {:?} with {} classes, not {backbone} on \
                     {input_shape:?} with {num_classes}",
                    info.backbone, info.input_shape, info.num_classes
                ),
            ));
        }
        let cfg = ClassifierConfig::new(backbone.clone(), input_shape, num_classes.max(1));
        let net = Classifier::new(&cfg, 0, device)?;
        xfer_models::checkpoint::load(net.store(), path)?;
        Ok(Self {
            backbone: backbone.clone(),
            input_shape: input_shape.to_vec(),
            num_classes,
            has_head: info.has_head,
            weights: net.weights()?,
            blocks: net.blocks(),
            source_val_acc: info.source_val_acc,
            report: None,
        })
    }
}

/// Trains the source model on `train` (early stopping on `val` accuracy when given), with
/// `cfg.pretrain` and `cfg.pretrain_transform`, on `ctx`'s device with its seed (and its
/// checkpoints, in the stage folder `pretrain`).
pub fn pretrain<D: Dataset + Clone + 'static>(
    train: &D,
    val: Option<&D>,
    num_classes: usize,
    cfg: &FinetuneConfig,
    ctx: &RunCtx,
) -> Result<Pretrained> {
    let seed = ctx.seed;
    let net = Classifier::new(
        &ClassifierConfig::new(cfg.backbone.clone(), train.sample_shape(), num_classes),
        derive_seed(seed, &[0x5052_4554]),
        &ctx.device,
    )?;
    let data = loader(
        train.clone(),
        cfg.pretrain.batch_size,
        seed,
        &ctx.device,
        cfg.pretrain_transform.clone(),
    )?;
    let mut obj = FinetuneObjective::new(&net, &data, Regulariser::None)?;
    let spe = data.batches_per_epoch();
    let report = match val {
        Some(v) => {
            let mut eval = AccuracyEval::new(&net, &eval_view(v, cfg)?, "val_acc")?;
            let es = EarlyStopping::max("val_acc", cfg.pretrain_patience);
            cfg.pretrain.fit(
                "pretrain",
                &net,
                &[],
                &mut obj,
                spe,
                Some((&mut eval, Some(es))),
                ctx,
            )?
        }
        None => cfg
            .pretrain
            .fit("pretrain", &net, &[], &mut obj, spe, None, ctx)?,
    };
    let source_val_acc = match val {
        Some(v) => Some(accuracy(&net, &eval_view(v, cfg)?)?),
        None => None,
    };
    tracing::info!(
        target: "xfer_train::methods",
        steps = report.steps,
        source_val_acc,
        "pretrained the source model"
    );
    Ok(Pretrained {
        backbone: cfg.backbone.clone(),
        input_shape: train.sample_shape().to_vec(),
        num_classes,
        has_head: true,
        weights: net.weights()?,
        blocks: net.blocks(),
        source_val_acc,
        report: Some(report),
    })
}
