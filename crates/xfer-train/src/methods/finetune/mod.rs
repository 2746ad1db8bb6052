//! Model fine-tuning (LECTURE.md §1): train on plentiful labelled *source* data, then continue
//! on a little labelled *target* data, without forgetting what the source taught.
//!
//! | method (spec) | what training on the target minimises | parameters trained |
//! |---|---|---|
//! | [`Scratch`] (`scratch`, the baseline) | `CE` | all, from a random start |
//! | [`FullFinetune`] (`finetune`) | `CE` | all, from the source weights |
//! | [`L2SpFinetune`] (`l2sp`; Li, Grandvalet & Davoine, ICML 2018) | `CE + α/2 Σ_pre ‖w − w⁰‖² + β/2 Σ_new ‖w‖²` | all, from `w⁰` |
//! | [`Distill`] (`distill`; output closeness; Hinton et al. 2015, LwF: Li & Hoiem 2016) | `CE + λ T² KL(softmax(z_src/T) ‖ softmax(z/T))` on the target inputs | all, from the source weights |
//! | [`LayerTransfer`] (`layer-transfer:K`; LECTURE.md §1b) | `CE` | the first (or last) `K` blocks copied from the source and frozen (or trained at a smaller rate); the others re-initialised |
//! | [`LinearProbe`] (`linear`) | `CE` | a new head on the frozen source network |
//!
//! Each method is one file of [`method`] implementing [`FinetuneMethod`], named for parsing
//! by one line of [`method::REGISTRY`]; [`Method`] holds any of them.
//!
//! `w⁰` is a frozen deep copy of the pretrained weights ([`xfer_ops::ParamSnapshot`]); L2-SP
//! regularises weights only (no biases), as in the paper. The source (teacher) model of
//! distillation is frozen; its logits on the target training inputs are computed once, in
//! evaluation mode. When the target has as many classes as the source (digits to digits) the
//! source head is kept and anchored like every other layer; otherwise a new head is
//! initialised and gets L2-SP's `β` term.
//!
//! Every method is an [`crate::trainer::Objective`] ([`FinetuneObjective`]) run by the one
//! [`crate::Trainer`]: [`pretrain()`] trains the source model once and keeps its weights in memory
//! ([`Pretrained`]) so that every method of a run starts from the same source model. A run is
//! the family's one entry, [`run`]`(&FinetuneConfig, &Data, &RunCtx)`, the [`Method`] inside
//! the [`FinetuneConfig`], the source model and the target in the [`Data`]; the [`Outcome`]
//! holds the trained network, its report and its metrics.
//!
//! The network is an [`xfer_models::Classifier`] on any backbone ([`BackboneSpec`]): the
//! built-in MLP and digits CNN (pretrained on the source here), or a pretrained ResNet /
//! MiniLM given with `weights=` (then the loaded backbone *is* the source model:
//! [`Pretrained::from_backbone`]).
//!
//! L2-SP fine-tuning of a pretrained backbone on a folder of images, ten labels per class
//! (the shortest complete program; `docs/backbones.md` walks through it):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use xfer_data::{FolderOptions, ImageFolder, Preprocess, few_shot};
//! use xfer_models::BackboneSpec;
//! use xfer_train::methods::finetune::{
//!     self, Data, FinetuneConfig, Method, Pretrained, RunCtx, TargetData,
//! };
//!
//! let spec: BackboneSpec = "resnet18:weights=resnet18.safetensors".parse()?;
//! let opts = FolderOptions { channels: Some(3), ..FolderOptions::default() };
//! let photos = ImageFolder::open("photos".as_ref(), &opts)?; // decoded lazily
//! let (train, test) = few_shot(&photos, 10, 0)?; // 10 labels per class, the rest to test
//! let preset = Preprocess::imagenet(224, 256);
//! let mut cfg = FinetuneConfig::new(spec.clone()).with_method("l2sp".parse::<Method>()?);
//! cfg.train_transform = Some(preset.train_transform()?);
//! cfg.eval_transform = Some(preset.eval_transform()?);
//! let ctx = RunCtx::cpu(); // seed 0, no progress bars
//! let source = Pretrained::from_backbone(&spec, &[3, 224, 224], &ctx.device)?;
//! let target = TargetData::new(train, test, photos.num_classes());
//! let out = finetune::run(&cfg, &Data::new(Some(&source), &target), &ctx)?;
//! println!("target accuracy {:.3}", out.target_acc);
//! # Ok(())
//! # }
//! ```
//!
//! Every training stage is a [`crate::run::Stage`] run with a [`crate::run::RunCtx`] (device,
//! seed, progress, checkpoints), as in every other method family.
//!
//! Files: [`objective`] (the loss of
//! every method, evaluation), [`method`] (the methods, one file each, and their registry),
//! [`mod@pretrain`] (the source model), [`setup`] (a method's target network and its run).

pub mod method;
pub mod objective;
pub mod pretrain;
pub mod setup;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use xfer_data::{DataLoader, Dataset, TensorDataset, Transform};

pub use crate::run::{CheckpointOptions, Length, LrSchedule, OptimizerKind, RunCtx, Stage};
pub use method::{
    BlockEnd, CopiedBlocks, Distill, FinetuneMethod, FullFinetune, L2SpFinetune, LayerTransfer,
    LinearProbe, Method, Prepared, Scratch, SetupCtx,
};
pub use objective::{AccuracyEval, FinetuneObjective, Regulariser, accuracy, logits_of};
pub use pretrain::{FinetuneConfig, Pretrained, eval_view, pretrain};
pub use setup::{Data, MethodSetup, Outcome, TargetData, run};
pub use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};

use crate::{Result, TrainError};

/// L2-SP's `α` (pull of pretrained weights toward their source values), the paper's value.
pub const L2SP_ALPHA: f64 = 0.1;
/// L2-SP's `β` (plain L2 on new layers), the paper's value.
pub const L2SP_BETA: f64 = 0.01;

/// A data set's features and labels as tensors on `device`.
pub fn dataset_tensors(ds: &TensorDataset, device: &Device) -> Result<(Tensor, Tensor)> {
    if ds.is_empty() {
        return Err(TrainError::BadData(format!(
            "data set {} is empty",
            ds.name()
        )));
    }
    Ok(ds.to_tensors(device)?)
}

/// A shuffled, seeded loader of `ds` in batches of `batch_size` on `device`, with an
/// optional per-sample transform (augmentation): batch `b` of epoch `e` is a pure function
/// of `(seed, e, b)`, so [`crate::batches::StepBatches`] resumes it exactly.
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
