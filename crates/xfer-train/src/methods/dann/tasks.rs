//! The built-in comparisons of `examples/dann.rs` with their tuned settings (tuned on
//! label-free scores only; see docs/methods-dann.md): `moons[:DEG]` (the paper's two moons,
//! the target rotated by DEG degrees, 35 by default), `synth-to-digits` (synthetic digits →
//! optdigits) and `digits-rot:DEG` (optdigits → optdigits rotated by DEG degrees); and the
//! settings for data of one's own ([`Task::custom`]).

use xfer_data::{LabeledSet, TensorDataset, UnlabeledDataset, embedded, stratified_split};
use xfer_models::{BackboneSpec, BottleneckSpec};

use super::{Config, Data, DiscriminatorConfig};
use crate::model_selection::Scorer;
use crate::{Result, TrainError};

/// The sub-seed of a task's `k`-th data set (distinct from every training seed).
pub fn data_seed(seed: u64, k: u64) -> u64 {
    crate::trainer::derive_seed(seed, &[0x5441_534B, k])
}

/// The data and settings of one comparison. Training sees [`Task::data`]: the target's
/// inputs, never labels; the labelled target test set, when there is one, only feeds the
/// report.
#[derive(Debug, Clone)]
pub struct Task {
    /// `moons:35`, `synth-to-digits`, `SOURCE->TARGET`, ...
    pub name: String,
    /// Labelled source training data.
    pub source: TensorDataset,
    /// Held-out source data (source validation in the evaluations).
    pub source_test: TensorDataset,
    /// The target training inputs (all of them are trained on).
    pub target: UnlabeledDataset,
    /// Labelled target test data (the final report and the recorded oracle curve); `None`:
    /// target accuracy is not measured (an unlabelled target without a test set).
    pub target_test: Option<TensorDataset>,
    /// The tuned settings (the method is set per run).
    pub cfg: Config,
}

fn mlp(hidden: &[usize]) -> BackboneSpec {
    BackboneSpec::Mlp {
        hidden: hidden.to_vec(),
        dropout: 0.0,
    }
}

/// Digits with values 0..16 scaled to [0, 1].
fn unit(ds: TensorDataset) -> TensorDataset {
    ds.scale(1.0 / 16.0)
}

impl Task {
    /// The data the runs train on: the source, the target without labels, the held-out
    /// source and the labelled target test set.
    pub fn data(&self) -> Data {
        let d = Data::new(self.source.clone(), self.target.clone())
            .with_source_val(self.source_test.clone());
        match &self.target_test {
            Some(t) => d.with_target_test(t.clone()),
            None => d,
        }
    }

    /// One line: the sizes of the data sets, the network, the steps and the selection.
    pub fn summary(&self) -> String {
        let cfg = &self.cfg;
        format!(
            "{}: source {} train / {} test, target {} unlabelled / {}, backbone {}, \
             bottleneck {}, {} steps, selection {}",
            self.name,
            self.source.len(),
            self.source_test.len(),
            xfer_data::Dataset::len(&self.target),
            self.target_test.as_ref().map_or_else(
                || "no test set (target accuracy not measured)".to_string(),
                |t| format!("{} test", t.len())
            ),
            cfg.backbone,
            cfg.bottleneck,
            cfg.stage.total_steps(1),
            cfg.selection.map_or("last".to_string(), |s| s.to_string())
        )
    }

    /// A built-in task by name (`moons[:DEG]`, `synth-to-digits`, `digits-rot:DEG`) from
    /// `seed`; `quick`: fewer steps and examples. The moons have the paper's 150 points per
    /// domain.
    ///
    /// ```
    /// use xfer_train::RunCtx;
    /// use xfer_train::methods::dann::{self, Method, Task};
    ///
    /// let task = Task::builtin("moons:35", 0, true)?;
    /// let mut cfg = task.cfg.clone().with_method(Method::Mcc);
    /// cfg.stage = cfg.stage.with_steps(20).with_eval_every(10);
    /// let out = dann::run(&cfg, &task.data(), &RunCtx::cpu())?;
    /// assert_eq!(out.report.history.evals.len(), 2);
    /// assert!(out.evaluation.is_some());
    /// # Ok::<(), xfer_train::TrainError>(())
    /// ```
    pub fn builtin(name: &str, seed: u64, quick: bool) -> Result<Self> {
        Self::builtin_with_points(name, embedded::moons::MOONS_PER_DOMAIN, seed, quick)
    }

    /// [`Task::builtin`] with `points` per domain for the moons.
    pub fn builtin_with_points(name: &str, points: usize, seed: u64, quick: bool) -> Result<Self> {
        let (kind, arg) = match name.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (name, None),
        };
        let degrees = |default: Option<f64>| -> Result<f64> {
            match (arg, default) {
                (Some(a), _) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        TrainError::invalid(
                            format!("task {name}: rotation"),
                            a,
                            "degrees (a number)",
                        )
                    }),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(TrainError::invalid(
                    "task",
                    name,
                    format!("a rotation in degrees, e.g. {kind}:30"),
                )),
            }
        };
        match kind {
            "moons" => Self::moons(degrees(Some(35.0))?, points, seed, quick),
            "synth-to-digits" => Self::synth_to_digits(seed, quick),
            "digits-rot" => Self::digits_rot(degrees(None)? as f32, seed, quick),
            _ => Err(TrainError::invalid(
                "task",
                name,
                "moons[:DEG] | synth-to-digits | digits-rot:DEG",
            )),
        }
    }

    /// The moons task's settings: MLP 32-32, 3,000 steps (300 `quick`) of 64 + 64 at
    /// `μ0 = 0.05`, weight decay 10⁻³, a 64-wide discriminator, an evaluation every 100
    /// steps, entropy selection.
    pub fn moons_config(quick: bool) -> Config {
        let paper = Config::paper(mlp(&[32, 32]));
        let mut stage = paper
            .stage
            .clone()
            .with_steps(if quick { 300 } else { 3000 })
            .with_batch_size(64)
            .with_weight_decay(1e-3)
            .with_eval_every(100);
        stage.lr = 0.05;
        Config {
            stage,
            discriminator: DiscriminatorConfig::new(64, 2),
            selection: Some(Scorer::Entropy),
            ..paper
        }
    }

    /// The digits tasks' settings: the digits CNN with a 128-wide batch-norm bottleneck,
    /// 3,000 steps (150 `quick`) of 64 + 64 at `μ0 = 0.02`, an evaluation every 250 steps
    /// (50), the default discriminator, DEV selection.
    pub fn digits_config(quick: bool) -> Config {
        let paper = Config::paper(BackboneSpec::cnn());
        let mut stage = paper
            .stage
            .clone()
            .with_steps(if quick { 150 } else { 3000 })
            .with_batch_size(64)
            .with_eval_every(if quick { 50 } else { 250 });
        stage.lr = 0.02;
        Config {
            stage,
            bottleneck: BottleneckSpec::LinearBnRelu(128),
            selection: Some(Scorer::Dev),
            ..paper
        }
    }

    /// Two moons, the target rotated by `deg` degrees; test sets of 1,000 points (300
    /// `quick`).
    pub fn moons(deg: f64, points: usize, seed: u64, quick: bool) -> Result<Self> {
        let noise = embedded::moons::MOONS_NOISE;
        let source = embedded::moons(points, noise, 0.0, data_seed(seed, 0))?;
        let target = embedded::moons(points, noise, deg, data_seed(seed, 0))?;
        let n_test = if quick { 300 } else { 1000 };
        let source_test = embedded::moons(n_test, noise, 0.0, data_seed(seed, 1))?;
        let target_test = embedded::moons(n_test, noise, deg, data_seed(seed, 1))?;
        Ok(Self {
            name: format!("moons:{deg}"),
            source,
            source_test,
            target: target.unlabeled(),
            target_test: Some(target_test),
            cfg: Self::moons_config(quick),
        })
    }

    /// Synthetic digits (300 per class, 60 `quick`; a fifth held out) → optdigits (half
    /// held out for the test).
    pub fn synth_to_digits(seed: u64, quick: bool) -> Result<Self> {
        let per_class = if quick { 60 } else { 300 };
        let synth = unit(embedded::synth_digits(per_class, data_seed(seed, 0))?);
        let (source, source_test) = stratified_split(&synth, 0.2, data_seed(seed, 1))?;
        let real = unit(embedded::optdigits()?);
        let (target, target_test) = stratified_split(&real, 0.5, data_seed(seed, 2))?;
        Ok(Self {
            name: "synth-to-digits".into(),
            source,
            source_test,
            target: target.unlabeled(),
            target_test: Some(target_test),
            cfg: Self::digits_config(quick),
        })
    }

    /// Optdigits split in two halves, the second rotated by `deg` degrees.
    pub fn digits_rot(deg: f32, seed: u64, quick: bool) -> Result<Self> {
        let real = unit(embedded::optdigits()?);
        let (a, b) = stratified_split(&real, 0.5, data_seed(seed, 0))?;
        let (source, source_test) = stratified_split(&a, 0.2, data_seed(seed, 1))?;
        let rotated = embedded::shifted::rotate(&b, deg)?;
        let (target, target_test) = stratified_split(&rotated, 0.5, data_seed(seed, 2))?;
        Ok(Self {
            name: format!("digits-rot:{deg}"),
            source,
            source_test,
            target: target.unlabeled(),
            target_test: Some(target_test),
            cfg: Self::digits_config(quick),
        })
    }

    /// The training target and the test set of a task on data of one's own: with a
    /// `target_test`, every target input trains; without one, a labelled `target` has half of
    /// it held out for the test ([`Task::hold_out_target`]) and an unlabelled one (`images:`,
    /// `label=none`) trains on all of it, with no test set (target accuracy not measured).
    /// Images are decoded into memory; text is an error.
    pub fn target_sets(
        target: xfer_data::Data,
        target_test: Option<TensorDataset>,
        seed: u64,
    ) -> Result<(UnlabeledDataset, Option<TensorDataset>)> {
        if let xfer_data::Data::Text(t) = &target {
            return Err(TrainError::Incompatible(format!(
                "target `{}` is text: domain adaptation here needs feature vectors or images",
                t.name()
            )));
        }
        match (target_test, target.is_labeled()) {
            (Some(test), _) => Ok((target.into_unlabeled()?, Some(test))),
            (None, true) => {
                let labelled = target.into_tensors()?;
                let name = labelled.name().to_string();
                let (train, test) = Self::hold_out_target(&labelled, seed)?;
                Ok((train.unlabeled().with_name(name), Some(test)))
            }
            (None, false) => Ok((target.into_unlabeled()?, None)),
        }
    }

    /// Half of a labelled target set held out for the test (seeded, stratified): the
    /// `(target, target_test)` of [`Task::custom`] when no test set is given.
    pub fn hold_out_target(
        target: &TensorDataset,
        seed: u64,
    ) -> Result<(TensorDataset, TensorDataset)> {
        Ok(stratified_split(target, 0.5, data_seed(seed, 3))?)
    }

    /// A task on data of one's own (already on one scale; [`Task::target_sets`] makes the
    /// target and test sets): a fifth of `source` held out;
    /// feature vectors get an MLP 64-64 (batch 32 + 32 at `μ0 = 0.02`, a 64-wide
    /// discriminator), images the digits settings with their automatic backbone; DEV
    /// selection; `quick`: 200 steps, an evaluation every 50.
    pub fn custom(
        name: &str,
        source: &TensorDataset,
        target: UnlabeledDataset,
        target_test: Option<TensorDataset>,
        seed: u64,
        quick: bool,
    ) -> Result<Self> {
        let (source_ds, source_test) = stratified_split(source, 0.2, data_seed(seed, 4))?;
        let backbone = match BackboneSpec::for_input(source_ds.sample_shape()) {
            BackboneSpec::Mlp { .. } => mlp(&[64, 64]),
            other => other,
        };
        let mut cfg = match backbone {
            BackboneSpec::Mlp { .. } => {
                let paper = Config::paper(backbone);
                let mut stage = paper.stage.clone().with_batch_size(32);
                stage.lr = 0.02;
                Config {
                    stage,
                    discriminator: DiscriminatorConfig::new(64, 2),
                    selection: Some(Scorer::Dev),
                    ..paper
                }
            }
            _ => Config {
                backbone,
                ..Self::digits_config(quick)
            },
        };
        if quick {
            cfg.stage = cfg.stage.with_steps(200).with_eval_every(50);
        }
        Ok(Self {
            name: name.to_string(),
            source: source_ds,
            source_test,
            target,
            target_test,
            cfg,
        })
    }
}
