//! One training stage (optimiser, rate, epochs) run in the one [`Trainer`].

use xfer_models::{ParamGroup, ParamStore};

use crate::Result;
use crate::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
pub use crate::run::CheckpointOptions;
use crate::schedule::Schedule;
use crate::trainer::{
    CheckpointConfig, EarlyStopping, Evaluator, Objective, TrainReport, Trainer, TrainerConfig,
};

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
    /// `groups` (the rest in a default group), evaluating with `eval` when given; with
    /// `checkpoints`, writing them under `DIR/<name>/` and (when asked) resuming from the
    /// latest one there.
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
        checkpoints: Option<&CheckpointOptions>,
    ) -> Result<TrainReport> {
        // The loop evaluates (and logs) once per `period` steps: whole data epochs, at least
        // 10 steps (few-shot sets are one batch per epoch).
        let period = steps_per_epoch * 10usize.div_ceil(steps_per_epoch.max(1));
        let cfg = TrainerConfig::steps(self.epochs * steps_per_epoch, period, self.schedule())
            .with_name(name)
            .with_seed(seed)
            .with_quiet(quiet);
        let (cfg, resume) = match checkpoints {
            Some(ck) => {
                let dir = ck.dir.join(name);
                let cfg = cfg.with_checkpoint(CheckpointConfig::new(dir, ck.every.max(1)));
                (cfg, ck.resume)
            }
            None => (cfg, false),
        };
        match self.optimizer {
            OptimizerKind::Sgd { momentum } => {
                let opt = Sgd::with_param_groups(
                    store,
                    groups,
                    SgdConfig::momentum(momentum).with_weight_decay(self.weight_decay),
                )?;
                run_trainer(cfg, store, opt, objective, eval, resume)
            }
            OptimizerKind::Adam => {
                let opt = Adam::with_param_groups(
                    store,
                    groups,
                    AdamConfig::adam().with_weight_decay(self.weight_decay),
                )?;
                run_trainer(cfg, store, opt, objective, eval, resume)
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
    resume: bool,
) -> Result<TrainReport> {
    let cfg = match &eval {
        Some((_, es)) => cfg.with_early_stopping(es.clone()),
        None => cfg,
    };
    let mut trainer = Trainer::new(cfg, store, opt)?;
    if resume && let Some(path) = trainer.resume_latest()? {
        tracing::info!(target: "xfer_train::methods", path = %path.display(), "resumed");
    }
    match eval {
        Some((eval, _)) => trainer.fit_with_eval(objective, eval),
        None => trainer.fit(objective),
    }
}
