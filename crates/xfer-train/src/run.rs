//! The run contract every method family shares: a [`RunCtx`] says *where and how* a run
//! runs (device, seed, progress, checkpoints, output folder) and a [`Stage`] says *how one
//! training stage optimises* (optimiser, rate and schedule, length, batch size, weight
//! decay, the backbone's rate multiplier).
//!
//! [`Stage::fit`] always optimises the network's [`Classifier::param_groups`] (the backbone at
//! [`Stage::backbone_lr_mult`] × the rate, the bottleneck and head at 1×) plus any extra
//! groups a method adds first (a domain discriminator, copied layers at their own rate); the
//! parameters no group selects (a zero-shot `g`) train at the base rate. So a pretrained
//! backbone gets its smaller rate in every family, not only in fine-tuning.
//!
//! ```
//! use candle_core::Device;
//! use xfer_train::run::{RunCtx, Stage};
//!
//! let ctx = RunCtx::new(Device::Cpu).with_seed(3).with_quiet(true);
//! let stage = Stage::sgd(0.01, 0.9).with_steps(200).with_batch_size(32);
//! assert_eq!(stage.total_steps(10), 200);
//! assert_eq!(ctx.seed, 3);
//! ```

use std::path::PathBuf;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use xfer_models::{Classifier, ParamGroup, ParamStore};

use crate::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use crate::schedule::Schedule;
use crate::trainer::{
    CheckpointConfig, EarlyStopping, Evaluator, Objective, TrainReport, Trainer, TrainerConfig,
};
use crate::{Result, TrainError};

/// Where and how often the stages write checkpoints, and whether they resume.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointOptions {
    /// The folder; each stage writes into `DIR/<stage name>/`.
    pub dir: PathBuf,
    /// A checkpoint every this many steps (and one at the end).
    pub every: usize,
    /// Continue each stage from the latest checkpoint in its folder, when there is one.
    pub resume: bool,
}

/// Where and how a run runs: what every method family's `run` takes besides its own
/// configuration and data.
#[derive(Debug, Clone)]
pub struct RunCtx {
    /// The device of the networks.
    pub device: Device,
    /// The seed of every random choice of the run.
    pub seed: u64,
    /// No progress bars.
    pub quiet: bool,
    /// Checkpoints of every stage (and resuming from them), when set.
    pub checkpoints: Option<CheckpointOptions>,
    /// A folder for the run's files (reports, plots), when the caller wants them.
    pub out_dir: Option<PathBuf>,
}

impl RunCtx {
    /// A quiet-less run on `device` with seed 0, no checkpoints and no output folder.
    pub fn new(device: Device) -> Self {
        // Before any data is read: xfer's process settings (`xfer_ops::runtime`).
        xfer_ops::runtime::configure();
        Self {
            device,
            seed: 0,
            quiet: false,
            checkpoints: None,
            out_dir: None,
        }
    }

    /// The CPU, seed 0, quiet: what tests and small programs want.
    pub fn cpu() -> Self {
        Self::new(Device::Cpu).with_quiet(true)
    }

    /// With seed `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With or without progress bars.
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// With checkpoints (and resuming) of every stage.
    pub fn with_checkpoints(mut self, checkpoints: Option<CheckpointOptions>) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// With an output folder.
    pub fn with_out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// The context of one named run among several of a program (the methods of a
    /// comparison): its checkpoints go under `DIR/<run>/`, so runs whose stages share a name
    /// never resume from each other's files.
    pub fn for_run(&self, run: &str) -> Self {
        let mut ctx = self.clone();
        if let Some(ck) = &mut ctx.checkpoints {
            ck.dir = ck.dir.join(run);
        }
        ctx
    }

    /// The same context with another seed (one run of a sweep or a repeat).
    pub fn reseeded(&self, seed: u64) -> Self {
        Self {
            seed,
            ..self.clone()
        }
    }
}

/// The optimiser of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with this momentum.
    Sgd {
        /// Momentum (0.9 usually).
        momentum: f64,
    },
    /// Adam (PyTorch's defaults), weight decay coupled (added to the gradient).
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    AdamW,
}

/// How the rate moves over a stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay to 0 over the stage.
    Cosine,
    /// DANN's annealing `lr/(1 + α p)^β` (the paper: α = 10, β = 0.75).
    Dann {
        /// `α`.
        alpha: f64,
        /// `β`.
        beta: f64,
    },
}

/// How long a stage (and the [`crate::Trainer`] running it) trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// Passes over the training data (an epoch is `⌈N / batch_size⌉` steps).
    Epochs(usize),
    /// Optimiser steps.
    Steps(usize),
}

/// How one training stage runs: the one description every family uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
    /// How the rate moves.
    pub schedule: LrSchedule,
    /// Epochs or steps.
    pub length: Length,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Weight decay.
    pub weight_decay: f64,
    /// The backbone's rate multiplier; `None`: the classifier's default (0.1 for a
    /// pretrained backbone, 1 otherwise; [`Classifier::default_backbone_lr_mult`]).
    pub backbone_lr_mult: Option<f64>,
    /// Steps between evaluations; `None`: whole epochs, at least 10 steps.
    pub eval_every: Option<usize>,
}

impl Stage {
    /// SGD with `momentum` at a constant rate `lr`: 10 epochs of 64, no weight decay.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        Self {
            optimizer: OptimizerKind::Sgd { momentum },
            lr,
            schedule: LrSchedule::Constant,
            length: Length::Epochs(10),
            batch_size: 64,
            weight_decay: 0.0,
            backbone_lr_mult: None,
            eval_every: None,
        }
    }

    /// Adam at a constant rate `lr`, otherwise as [`Stage::sgd`].
    pub fn adam(lr: f64) -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            ..Self::sgd(lr, 0.0)
        }
    }

    /// AdamW at a constant rate `lr`, otherwise as [`Stage::sgd`].
    pub fn adamw(lr: f64) -> Self {
        Self {
            optimizer: OptimizerKind::AdamW,
            ..Self::sgd(lr, 0.0)
        }
    }

    /// The same stage for `n` optimiser steps.
    pub fn with_steps(mut self, n: usize) -> Self {
        self.length = Length::Steps(n);
        self
    }

    /// The same stage for `n` epochs.
    pub fn with_epochs(mut self, n: usize) -> Self {
        self.length = Length::Epochs(n);
        self
    }

    /// The same stage with mini-batches of `n`.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// The same stage with weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }

    /// The same stage with schedule `s`.
    pub fn with_schedule(mut self, s: LrSchedule) -> Self {
        self.schedule = s;
        self
    }

    /// The same stage with an evaluation every `n` steps.
    pub fn with_eval_every(mut self, n: usize) -> Self {
        self.eval_every = Some(n);
        self
    }

    /// The same stage with the backbone at `m` × the rate.
    pub fn with_backbone_lr_mult(mut self, m: f64) -> Self {
        self.backbone_lr_mult = Some(m);
        self
    }

    /// Optimiser steps the stage takes with `steps_per_epoch` batches per epoch.
    pub fn total_steps(&self, steps_per_epoch: usize) -> usize {
        match self.length {
            Length::Epochs(e) => e * steps_per_epoch,
            Length::Steps(s) => s,
        }
    }

    /// The rate schedule.
    pub fn lr_schedule(&self) -> Schedule {
        match self.schedule {
            LrSchedule::Constant => Schedule::constant(self.lr),
            LrSchedule::Cosine => Schedule::cosine(self.lr, 0.0),
            LrSchedule::Dann { alpha, beta } => Schedule::Dann {
                mu0: self.lr,
                alpha,
                beta,
            },
        }
    }

    /// Checks every setting; an error naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, value: String, expected: &str| {
            Err(TrainError::InvalidValue {
                name: name.into(),
                value,
                expected: expected.into(),
            })
        };
        let len = match self.length {
            Length::Epochs(n) | Length::Steps(n) => n,
        };
        if len == 0 {
            return bad("stage length", "0".into(), "at least one epoch or step");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "> 0");
        }
        if self.eval_every == Some(0) {
            return bad("eval_every", "0".into(), "> 0 steps");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr.to_string(), "a finite rate >= 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                self.weight_decay.to_string(),
                "finite, >= 0",
            );
        }
        if let Some(m) = self.backbone_lr_mult
            && !(m.is_finite() && m >= 0.0)
        {
            return bad("backbone_lr_mult", m.to_string(), "finite, >= 0");
        }
        if let OptimizerKind::Sgd { momentum } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return bad("momentum", momentum.to_string(), "in [0, 1)");
        }
        Ok(())
    }

    /// The parameter groups of a stage on `net`: `extra` first (a parameter goes to the first
    /// group that selects it), then the classifier's backbone and head groups, those with a
    /// trainable parameter (a frozen backbone or head has nothing to optimise).
    pub fn groups(&self, net: &Classifier, extra: &[ParamGroup]) -> Result<Vec<ParamGroup>> {
        let mult = self
            .backbone_lr_mult
            .unwrap_or_else(|| net.default_backbone_lr_mult());
        let trainable = net.store().trainable();
        let mut groups = extra.to_vec();
        groups.extend(
            net.param_groups(mult)?
                .into_iter()
                .filter(|g| trainable.iter().any(|p| g.selection.matches(p.name()))),
        );
        Ok(groups)
    }

    /// Runs `objective` in the one [`Trainer`] over the trainable parameters of `net`'s
    /// store in [`Stage::groups`], evaluating with `eval` when given (and, with an
    /// early-stopping rule, keeping the best weights by it); with `ctx.checkpoints`, writing them under
    /// `DIR/<name>/` and (when asked) resuming from the latest one there.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        &self,
        name: &str,
        net: &Classifier,
        extra: &[ParamGroup],
        objective: &mut dyn Objective,
        steps_per_epoch: usize,
        eval: Option<(&mut dyn Evaluator, Option<EarlyStopping>)>,
        ctx: &RunCtx,
    ) -> Result<TrainReport> {
        let groups = self.groups(net, extra)?;
        self.fit_store(
            name,
            net.store(),
            &groups,
            objective,
            steps_per_epoch,
            eval,
            ctx,
        )
    }

    /// [`Stage::fit`] over `store` with the given groups (no classifier: an auto-encoder's
    /// pre-training, a source model's own stage).
    #[allow(clippy::too_many_arguments)]
    pub fn fit_store(
        &self,
        name: &str,
        store: &ParamStore,
        groups: &[ParamGroup],
        objective: &mut dyn Objective,
        steps_per_epoch: usize,
        eval: Option<(&mut dyn Evaluator, Option<EarlyStopping>)>,
        ctx: &RunCtx,
    ) -> Result<TrainReport> {
        self.validate()?;
        let spe = steps_per_epoch.max(1);
        // Evaluations (and logs) once per `period` steps: whole data epochs, at least 10
        // steps (few-shot sets are one batch per epoch), unless the stage says otherwise.
        let period = self
            .eval_every
            .unwrap_or_else(|| spe * 10usize.div_ceil(spe));
        let cfg = TrainerConfig::steps(self.total_steps(spe), period, self.lr_schedule())
            .with_name(name)
            .with_seed(ctx.seed)
            .with_quiet(ctx.quiet);
        let (cfg, resume) = match &ctx.checkpoints {
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
            OptimizerKind::AdamW => {
                let opt = Adam::with_param_groups(
                    store,
                    groups,
                    AdamConfig::adamw().with_weight_decay(self.weight_decay),
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
    eval: Option<(&mut dyn Evaluator, Option<EarlyStopping>)>,
    resume: bool,
) -> Result<TrainReport> {
    let cfg = match &eval {
        Some((_, Some(es))) => cfg.with_early_stopping(es.clone()),
        _ => cfg,
    };
    let mut trainer = Trainer::new(cfg, store, opt)?;
    if resume && let Some(path) = trainer.resume_latest()? {
        tracing::info!(target: "xfer_train::run", path = %path.display(), "resumed");
    }
    match eval {
        Some((eval, _)) => trainer.fit_with_eval(objective, eval),
        None => trainer.fit(objective),
    }
}
