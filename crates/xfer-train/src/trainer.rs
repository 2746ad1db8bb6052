//! The one training loop. A method contributes only its objective (an [`Objective`]: the loss
//! of one step, plus metrics to log); the [`Trainer`] does everything else, the same way for
//! every method:
//!
//! ```text
//! for step t = 0 .. T−1:               (epoch = t / steps_per_epoch, p = t / T)
//!     η_t   = schedule(t, T)
//!     L     = objective.loss(ctx{t, epoch, p, η_t, seed})
//!     L non-finite?            → Err(NonFiniteLoss{step}), nothing updated
//!     g     = ∇L ; ‖g‖ (clip to max_norm if asked)
//!     ‖g‖ non-finite?          → Err(NonFiniteGradient{step, param}), nothing updated
//!     optimiser.step(g, η_t) ; history ← (t, L, η_t, ‖g‖, metrics)
//!     end of epoch?            → evaluate, early stopping, tracing event
//!     t+1 multiple of N?       → checkpoint (atomic)
//! ```
//!
//! **Resume.** A checkpoint holds the weights and buffers, the optimiser state, the step, the
//! seed and plan, the early-stopping state and the history. Nothing else carries state from
//! one step to the next: the schedule is a pure function of `(t, T)`, and randomness comes
//! from [`StepCtx::rng`] / [`StepCtx::epoch_seed`], pure functions of `(seed, t)` and
//! `(seed, epoch)`. Random *layers* follow the same rule without being told: the loop runs
//! each step's objective inside an [`xfer_ops::StepRngScope`] seeded from `(seed, step)`, and
//! [`xfer_models::Dropout`] draws the `k`-th mask of the step from
//! `derive_seed(scope seed, [k])` instead of a generator of its own, so nothing
//! random needs saving. So a run interrupted after a checkpoint and resumed from it with
//! [`Trainer::resume`] ends, on the CPU, with bit-identical weights — dropout included —
//! provided the objective follows the same rule: its data order for epoch `e` is a function
//! of `(ctx.epoch_seed(), e)` (a loader re-seeded per epoch, indexed by
//! `ctx.step_in_epoch`), any other random choice draws from `ctx.rng(..)`, and the forward
//! pass runs on the loop's thread. A refused checkpoint (another plan, a shape or name that
//! differs, a missing field, a torn file) changes nothing: see [`crate::checkpoint`].
//!
//! **Early stopping** watches one metric of the evaluation. In methods without target labels
//! (domain adaptation, zero-shot on unseen classes) that metric must come from *source*
//! validation data or be label-free (e.g. the mean prediction entropy on target
//! inputs, mode `Min`) — never from target labels.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use xfer_models::ParamStore;
use xfer_ops::{SeededRng, StepRngScope};

pub use crate::checkpoint::CheckpointConfig;
use crate::checkpoint::{self, LoopState};
use crate::grad_norm;
use crate::history::{self, EvalRecord, History, Metrics, StepRecord};
use crate::optim::Optimizer;
use crate::run::Length;
use crate::schedule::{Schedule, progress};
use crate::{Result, TrainError};

pub use xfer_ops::derive_seed;

const TAG_STEP: u64 = 0x5354_4550; // "STEP"
const TAG_EPOCH: u64 = 0x4550_4F43; // "EPOC"
/// The stream of [`StepCtx::rng`] that seeds the step's [`StepRngScope`] (random layers).
const STREAM_LAYERS: u64 = 0x4C41_5945_5253; // "LAYERS"

/// What the loop tells the objective about the step it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCtx {
    /// 0-based index of this step (= optimiser steps already taken).
    pub step: usize,
    /// Planned number of steps `T`.
    pub total_steps: usize,
    /// 0-based epoch (`step / steps_per_epoch`).
    pub epoch: usize,
    /// Index of the step inside its epoch (the batch index).
    pub step_in_epoch: usize,
    /// Steps (batches) per epoch.
    pub steps_per_epoch: usize,
    /// Training progress `p = step / T ∈ [0, 1)` (DANN's `λ_p`, `μ_p`).
    pub progress: f64,
    /// The scheduled base learning rate of this step.
    pub lr: f64,
    /// The run's seed.
    pub seed: u64,
}

impl StepCtx {
    /// A generator for this step and `stream` (dropout masks, augmentations, sampling): a pure
    /// function of `(seed, step, stream)`, so a resumed run draws the same numbers.
    pub fn rng(&self, stream: u64) -> SeededRng {
        SeededRng::new(derive_seed(
            self.seed,
            &[TAG_STEP, self.step as u64, stream],
        ))
    }

    /// The seed of this epoch's data order: shuffle with `SeededRng::new(ctx.epoch_seed())`
    /// and take batch `ctx.step_in_epoch`.
    pub fn epoch_seed(&self) -> u64 {
        epoch_seed(self.seed, self.epoch)
    }

    /// Whether this is the first step of its epoch.
    pub fn is_epoch_start(&self) -> bool {
        self.step_in_epoch == 0
    }
}

/// The seed of epoch `epoch`'s data order in a run seeded with `seed` (what
/// [`StepCtx::epoch_seed`] returns).
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    derive_seed(seed, &[TAG_EPOCH, epoch as u64])
}

/// What an objective returns for one step.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The scalar loss to minimise (any float dtype, one element).
    pub loss: Tensor,
    /// Extra numbers to log for this step (`("domain_acc", 0.55)`, loss components, ...).
    pub metrics: Metrics,
}

impl StepOutput {
    /// A loss with no extra metrics.
    pub fn new(loss: Tensor) -> Self {
        Self {
            loss,
            metrics: Vec::new(),
        }
    }

    /// Adds a metric.
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push((name.into(), value));
        self
    }
}

/// A method's contribution to training: the loss of one step.
pub trait Objective {
    /// Builds the loss of step `ctx.step` (forward pass in training mode).
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput>;
}

impl<F> Objective for F
where
    F: FnMut(&StepCtx) -> Result<StepOutput>,
{
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        self(ctx)
    }
}

/// What the loop tells an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCtx {
    /// The 0-based epoch that just finished.
    pub epoch: usize,
    /// Steps taken so far.
    pub step: usize,
    /// Progress `step / T`.
    pub progress: f64,
    /// The run's seed.
    pub seed: u64,
}

/// Evaluation run at the end of every epoch (forward passes in evaluation mode).
pub trait Evaluator {
    /// Named metrics of the model as it is now.
    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Metrics>;
}

impl<F> Evaluator for F
where
    F: FnMut(&EvalCtx) -> Result<Metrics>,
{
    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Metrics> {
        self(ctx)
    }
}

/// Whether larger or smaller is better for the watched metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Larger is better (accuracy).
    Max,
    /// Smaller is better (loss, entropy).
    Min,
}

/// Stop when the watched evaluation metric has not improved for `patience` evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    /// The evaluation metric to watch. Without target labels: a source-validation metric or
    /// a label-free score (prediction entropy), never target labels.
    pub metric: String,
    /// Max or min.
    pub mode: Mode,
    /// Evaluations without improvement tolerated before stopping.
    pub patience: usize,
    /// An improvement must beat the best by more than this.
    pub min_delta: f64,
    /// At the end of training, put back the weights (and buffers) of the best evaluation.
    pub restore_best: bool,
}

impl EarlyStopping {
    /// Watch `metric`, larger is better; restores the best weights at the end.
    pub fn max(metric: impl Into<String>, patience: usize) -> Self {
        Self {
            metric: metric.into(),
            mode: Mode::Max,
            patience,
            min_delta: 0.0,
            restore_best: true,
        }
    }

    /// Watch `metric`, smaller is better; restores the best weights at the end.
    pub fn min(metric: impl Into<String>, patience: usize) -> Self {
        Self {
            mode: Mode::Min,
            ..Self::max(metric, patience)
        }
    }

    fn improves(&self, value: f64, best: Option<f64>) -> bool {
        if value.is_nan() {
            return false;
        }
        match (best, self.mode) {
            (None, _) => true,
            (Some(b), Mode::Max) => value > b + self.min_delta,
            (Some(b), Mode::Min) => value < b - self.min_delta,
        }
    }
}

/// The loop's configuration.
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    /// A name for logs and the progress bar.
    pub name: String,
    /// Epochs (of `steps_per_epoch` steps) or steps in all (the last epoch may be partial).
    pub length: Length,
    /// Batches per epoch (the evaluation runs after each epoch).
    pub steps_per_epoch: usize,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Early stopping on an evaluation metric.
    pub early_stopping: Option<EarlyStopping>,
    /// Periodic checkpoints.
    pub checkpoint: Option<CheckpointConfig>,
    /// The run's seed (see [`StepCtx::rng`]).
    pub seed: u64,
    /// Check that every gradient is finite before stepping (costs one pass over the
    /// gradients; on by default). The loss is always checked.
    pub check_finite: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
}

impl TrainerConfig {
    /// `epochs` epochs of `steps_per_epoch` steps with `schedule`.
    pub fn epochs(epochs: usize, steps_per_epoch: usize, schedule: Schedule) -> Self {
        Self {
            name: "train".into(),
            length: Length::Epochs(epochs),
            steps_per_epoch,
            schedule,
            clip_grad_norm: None,
            early_stopping: None,
            checkpoint: None,
            seed: 0,
            check_finite: true,
            quiet: false,
        }
    }

    /// `steps` steps in all, evaluating every `steps_per_epoch` steps.
    pub fn steps(steps: usize, steps_per_epoch: usize, schedule: Schedule) -> Self {
        Self {
            length: Length::Steps(steps),
            ..Self::epochs(0, steps_per_epoch, schedule)
        }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Clips the global gradient norm to `max_norm`.
    pub fn with_clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// Stops early on an evaluation metric.
    pub fn with_early_stopping(mut self, es: EarlyStopping) -> Self {
        self.early_stopping = Some(es);
        self
    }

    /// Checkpoints periodically.
    pub fn with_checkpoint(mut self, ck: CheckpointConfig) -> Self {
        self.checkpoint = Some(ck);
        self
    }

    /// Hides the progress bar.
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The planned number of steps `T`.
    pub fn total_steps(&self) -> usize {
        match self.length {
            Length::Epochs(e) => e.saturating_mul(self.steps_per_epoch),
            Length::Steps(s) => s,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.steps_per_epoch == 0 {
            return Err(TrainError::invalid("steps_per_epoch", 0, "> 0"));
        }
        self.schedule.validate()?;
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(TrainError::invalid("clip_grad_norm", c, "finite and > 0"));
        }
        if let Some(es) = &self.early_stopping
            && !(es.min_delta.is_finite() && es.min_delta >= 0.0)
        {
            return Err(TrainError::invalid(
                "min_delta",
                es.min_delta,
                "finite and >= 0 (early stopping)",
            ));
        }
        if let Some(ck) = &self.checkpoint
            && ck.every == 0
        {
            return Err(TrainError::invalid("every", 0, "> 0 (checkpoint)"));
        }
        Ok(())
    }
}

/// The best evaluation seen by early stopping.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BestMetric {
    /// The watched metric.
    pub metric: String,
    /// Its best value.
    pub value: f64,
    /// The epoch it was reached at.
    pub epoch: usize,
    /// The step count it was reached at.
    pub step: usize,
}

/// What [`Trainer::fit`] returns (serialisable for reports).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Steps taken in all (including those before a resume).
    pub steps: usize,
    /// The planned number of steps.
    pub total_steps: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The best watched metric, with early stopping.
    pub best: Option<BestMetric>,
    /// The last evaluation.
    pub last_eval: Option<EvalRecord>,
    /// Mean loss of the last epoch that ran.
    pub final_loss: Option<f64>,
    /// Every step and evaluation.
    pub history: History,
}

/// The training loop (see the module documentation).
pub struct Trainer {
    cfg: TrainerConfig,
    store: ParamStore,
    opt: Box<dyn Optimizer>,
    st: LoopState,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", &self.cfg)
            .field("optimizer", &self.opt.kind())
            .field("step", &self.st.step)
            .finish()
    }
}

fn scalar_of(t: &Tensor) -> Result<f64> {
    if t.elem_count() != 1 {
        return Err(TrainError::Incompatible(format!(
            "the objective's loss must be a scalar, got shape {:?}",
            t.dims()
        )));
    }
    Ok(t.flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .first()
        .copied()
        .unwrap_or(f64::NAN))
}

fn fmt_metrics(m: &[(String, f64)]) -> String {
    m.iter()
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn snapshot_store(store: &ParamStore) -> Result<Vec<(String, Tensor)>> {
    store
        .all()
        .iter()
        .map(|p| Ok((p.name().to_string(), p.var().as_tensor().copy()?)))
        .collect()
}

impl Trainer {
    /// A trainer for the model whose parameters and buffers live in `store`, stepping `opt`.
    /// Every parameter of the optimiser must be an entry of `store` (checkpoints save the
    /// store).
    pub fn new(
        cfg: TrainerConfig,
        store: &ParamStore,
        opt: impl Optimizer + 'static,
    ) -> Result<Self> {
        cfg.validate()?;
        for p in opt.params() {
            let same = store
                .get(p.name())
                .map(|q| q.var().as_tensor().id() == p.var().as_tensor().id())
                .unwrap_or(false);
            if !same {
                return Err(TrainError::Incompatible(format!(
                    "the optimiser's parameter {:?} is not in the trainer's parameter store",
                    p.name()
                )));
            }
        }
        Ok(Self {
            cfg,
            store: store.clone(),
            opt: Box::new(opt),
            st: LoopState::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.cfg
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.opt.as_ref()
    }

    /// Steps taken so far.
    pub fn step(&self) -> usize {
        self.st.step
    }

    /// The history so far.
    pub fn history(&self) -> &History {
        &self.st.history
    }

    /// Trains without evaluation (early stopping, if configured, needs [`Trainer::fit_with_eval`]).
    pub fn fit(&mut self, objective: &mut dyn Objective) -> Result<TrainReport> {
        if self.cfg.early_stopping.is_some() {
            return Err(TrainError::Incompatible(
                "early stopping needs an evaluation: use fit_with_eval".into(),
            ));
        }
        self.run(objective, None)
    }

    /// Trains, evaluating at the end of every epoch (and at the end of a partial last epoch).
    pub fn fit_with_eval(
        &mut self,
        objective: &mut dyn Objective,
        eval: &mut dyn Evaluator,
    ) -> Result<TrainReport> {
        self.run(objective, Some(eval))
    }

    fn progress_bar(&self, total: usize) -> ProgressBar {
        if self.cfg.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            pb.set_style(style);
        }
        pb.set_prefix(self.cfg.name.clone());
        pb.set_position(self.st.step as u64);
        pb
    }

    fn run(
        &mut self,
        objective: &mut dyn Objective,
        mut eval: Option<&mut dyn Evaluator>,
    ) -> Result<TrainReport> {
        if self.st.finished {
            return Ok(self.report());
        }
        let total = self.cfg.total_steps();
        let spe = self.cfg.steps_per_epoch;
        let pb = self.progress_bar(total);
        let vars: Vec<(String, candle_core::Var)> = self
            .opt
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.var().clone()))
            .collect();
        tracing::info!(
            target: "xfer_train",
            run = %self.cfg.name,
            total_steps = total,
            steps_per_epoch = spe,
            start_step = self.st.step,
            optimizer = self.opt.kind(),
            params = vars.len(),
            "training"
        );
        let mut last_eval_msg = String::new();
        while self.st.step < total {
            let step = self.st.step;
            let epoch = step / spe;
            let lr = self.cfg.schedule.lr(step, total);
            let ctx = StepCtx {
                step,
                total_steps: total,
                epoch,
                step_in_epoch: step % spe,
                steps_per_epoch: spe,
                progress: progress(step, total),
                lr,
                seed: self.cfg.seed,
            };
            let out = {
                let _layers = StepRngScope::enter(derive_seed(
                    self.cfg.seed,
                    &[TAG_STEP, step as u64, STREAM_LAYERS],
                ));
                objective.loss(&ctx)?
            };
            let loss = scalar_of(&out.loss)?;
            if !loss.is_finite() {
                pb.abandon();
                return Err(TrainError::NonFiniteLoss { step, value: loss });
            }
            let mut grads = out.loss.backward()?;
            let var_refs = vars.iter().map(|(_, v)| v);
            let grad_norm = if self.cfg.clip_grad_norm.is_some() || self.cfg.check_finite {
                Some(grad_norm::global_norm(&grads, var_refs.clone())?)
            } else {
                None
            };
            if let (Some(max), Some(norm)) = (self.cfg.clip_grad_norm, grad_norm) {
                grad_norm::clip_to(&mut grads, var_refs, norm, max)?;
            }
            if self.cfg.check_finite && grad_norm.is_some_and(|n| !n.is_finite()) {
                let param =
                    xfer_ops::first_non_finite(&grads, vars.iter().map(|(n, v)| (n.as_str(), v)))?
                        .unwrap_or_else(|| "<global norm overflows f64>".to_string());
                pb.abandon();
                return Err(TrainError::NonFiniteGradient { step, param });
            }
            self.opt.step(&grads, lr)?;
            drop(grads);
            self.st.step += 1;
            tracing::debug!(target: "xfer_train", step, loss, lr, grad_norm, "step");
            pb.inc(1);
            pb.set_message(format!(
                "loss {loss:.4} {}{last_eval_msg}",
                fmt_metrics(out.metrics.get(..1).unwrap_or(&[]))
            ));
            self.st.history.steps.push(StepRecord {
                step,
                epoch,
                loss,
                lr,
                grad_norm,
                metrics: out.metrics,
            });

            let done = self.st.step;
            let epoch_end = done.is_multiple_of(spe) || done == total;
            let mut stop = false;
            if epoch_end {
                let mut eval_metrics = None;
                if let Some(ev) = eval.as_deref_mut() {
                    let ectx = EvalCtx {
                        epoch,
                        step: done,
                        progress: progress(done, total),
                        seed: self.cfg.seed,
                    };
                    let m = ev.evaluate(&ectx)?;
                    stop = self.early_stopping_update(epoch, done, &m)?;
                    last_eval_msg = format!(" | {}", fmt_metrics(&m));
                    self.st.history.evals.push(EvalRecord {
                        step: done,
                        epoch,
                        metrics: m.clone(),
                    });
                    eval_metrics = Some(m);
                }
                tracing::info!(
                    target: "xfer_train",
                    run = %self.cfg.name,
                    epoch,
                    step = done,
                    loss = self.st.history.epoch_loss(epoch).unwrap_or(f64::NAN),
                    lr,
                    eval = %eval_metrics.as_deref().map(fmt_metrics).unwrap_or_default(),
                    "epoch"
                );
                if stop {
                    self.st.stopped_early = true;
                    tracing::info!(
                        target: "xfer_train",
                        run = %self.cfg.name,
                        epoch,
                        step = done,
                        best = self.st.early.best,
                        best_epoch = self.st.early.best_epoch,
                        "early stop"
                    );
                }
            }
            let last = stop || done == total;
            if let Some(ck) = &self.cfg.checkpoint
                && done.is_multiple_of(ck.every)
                && !last
            {
                self.save_checkpoint_in(&ck.dir.clone(), ck.keep_last)?;
            }
            if stop {
                break;
            }
        }
        self.st.finished = true;
        if let Some(es) = &self.cfg.early_stopping
            && es.restore_best
            && let Some(snap) = &self.st.early.snapshot
        {
            for (name, t) in snap {
                self.store.get(name)?.set(t)?;
            }
        }
        if let Some(ck) = &self.cfg.checkpoint {
            self.save_checkpoint_in(&ck.dir.clone(), ck.keep_last)?;
        }
        pb.finish_and_clear();
        Ok(self.report())
    }

    /// Updates the early-stopping state with an evaluation; returns whether to stop.
    fn early_stopping_update(&mut self, epoch: usize, step: usize, m: &Metrics) -> Result<bool> {
        let Some(es) = &self.cfg.early_stopping else {
            return Ok(false);
        };
        let value = history::metric(m, &es.metric).ok_or_else(|| TrainError::MissingMetric {
            metric: es.metric.clone(),
            got: m.iter().map(|(n, _)| n.clone()).collect(),
        })?;
        let e = &mut self.st.early;
        if es.improves(value, e.best) {
            e.best = Some(value);
            e.best_epoch = epoch;
            e.best_step = step;
            e.bad_evals = 0;
            if es.restore_best {
                e.snapshot = Some(snapshot_store(&self.store)?);
            }
            Ok(false)
        } else {
            e.bad_evals += 1;
            Ok(e.bad_evals > es.patience)
        }
    }

    fn report(&self) -> TrainReport {
        let h = &self.st.history;
        TrainReport {
            steps: self.st.step,
            total_steps: self.cfg.total_steps(),
            stopped_early: self.st.stopped_early,
            best: match (&self.cfg.early_stopping, self.st.early.best) {
                (Some(es), Some(value)) => Some(BestMetric {
                    metric: es.metric.clone(),
                    value,
                    epoch: self.st.early.best_epoch,
                    step: self.st.early.best_step,
                }),
                _ => None,
            },
            last_eval: h.evals.last().cloned(),
            final_loss: h.steps.last().and_then(|r| h.epoch_loss(r.epoch)),
            history: h.clone(),
        }
    }

    fn save_checkpoint_in(&self, dir: &Path, keep_last: usize) -> Result<PathBuf> {
        let path = dir.join(checkpoint::checkpoint_file_name(self.st.step));
        self.save_checkpoint(&path)?;
        checkpoint::prune(dir, keep_last)?;
        Ok(path)
    }

    /// Writes a checkpoint of the current state to `path` (atomically; see
    /// [`crate::checkpoint`]).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.plan(), &self.store, self.opt.as_ref(), &self.st)
    }

    fn plan(&self) -> checkpoint::Plan<'_> {
        checkpoint::Plan {
            name: &self.cfg.name,
            seed: self.cfg.seed,
            total_steps: self.cfg.total_steps(),
            steps_per_epoch: self.cfg.steps_per_epoch,
            early_metric: self
                .cfg
                .early_stopping
                .as_ref()
                .map(|es| es.metric.as_str()),
        }
    }

    /// Continues from the newest checkpoint of the configured directory, if there is one;
    /// returns its path.
    pub fn resume_latest(&mut self) -> Result<Option<PathBuf>> {
        let Some(ck) = &self.cfg.checkpoint else {
            return Err(TrainError::Incompatible(
                "resume_latest needs a checkpoint directory in the configuration".into(),
            ));
        };
        match checkpoint::latest_checkpoint(&ck.dir)? {
            Some(p) => {
                self.resume(&p)?;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// Restores weights, buffers, optimiser state, step, early-stopping state and history from
    /// a checkpoint written by a trainer with the same plan (seed, total steps, steps per
    /// epoch, optimiser kind), so that [`Trainer::fit`] continues exactly where it stopped.
    /// All or nothing: everything is validated before anything changes, so a refused
    /// checkpoint leaves the weights, the optimiser state and the loop state as they were.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let restore = checkpoint::prepare(path, &self.plan(), &self.store, self.opt.as_ref())?;
        self.st = restore.commit(self.opt.as_mut())?;
        tracing::info!(target: "xfer_train", path = %path.display(), step = self.st.step, "resumed");
        Ok(())
    }
}
