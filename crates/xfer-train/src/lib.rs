//! xfer-train: optimisers, schedules, the one training loop, metrics and plots.
//!
//! - [`optim`]: [`Sgd`] (momentum, Nesterov, weight decay) and [`Adam`] (Adam / AdamW) with
//!   parameter groups, matching `torch.optim`, with saveable state.
//! - [`schedule`]: learning-rate schedules as pure functions of `(step, total_steps)`,
//!   including DANN's `μ_p = μ0 / (1 + α p)^β`.
//! - [`trainer`]: the one training loop; each method contributes an [`Objective`].
//! - [`batches`]: the batch of each step from xfer-data's loaders, exact across resume.
//! - [`checkpoint`]: atomic safetensors checkpoints for exact resume.
//! - [`metrics`]: accuracy, per-class accuracy, confusion matrix, H, prediction entropy,
//!   proxy A-distance.
//! - [`model_selection`]: label-free scorers (source accuracy, entropy, SND, IWV, DEV) for
//!   choosing checkpoints and hyper-parameters without target labels.
//! - [`pca`]: principal component analysis for 2-D pictures of features.
//! - [`plot`]: PNG training curves and PCA scatter plots (by domain and class).
//! - [`history`]: the per-step and per-evaluation record of a run.
//! - [`predict`]: predictions and evaluation reports from a saved model package.
//! - [`methods`]: the lecture's methods as objectives for the one loop.
//! - [`overlay`]: `KEY=VALUE` overrides (`--set`) of any serialisable configuration.

pub mod batches;
pub mod checkpoint;
pub mod error;
mod grad_norm;
pub mod history;
pub mod methods;
pub mod metrics;
pub mod model_selection;
pub mod optim;
pub mod overlay;
pub mod pca;
pub mod plot;
pub mod predict;
pub mod run;
pub mod schedule;
pub mod text;
pub mod trainer;

pub use batches::{StepBatches, StepSource};
pub use checkpoint::{CheckpointFile, latest_checkpoint};
pub use error::{Result, TrainError};
pub use history::{EvalRecord, History, Metrics, StepRecord};
pub use model_selection::Scorer;
pub use optim::{Adam, AdamConfig, GroupSpec, Optimizer, OptimizerState, Sgd, SgdConfig};
pub use run::{CheckpointOptions, Length, LrSchedule, OptimizerKind, RunCtx, Stage};
pub use schedule::{Schedule, progress};
pub use trainer::{
    BestMetric, CheckpointConfig, EarlyStopping, EvalCtx, Evaluator, Mode, Objective, StepCtx,
    StepOutput, TrainReport, Trainer, TrainerConfig, derive_seed, epoch_seed,
};
