//! Domain-adversarial training (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
//! Backpropagation", ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural
//! Networks", JMLR 2016) and its source-only baseline, on the one training loop
//! ([`Trainer`]).
//!
//! Three parts (LECTURE.md §3): the feature extractor `G_f(x; θ_f)`, the label predictor
//! `G_y(·; θ_y)` and the domain classifier `G_d(·; θ_d)` behind a gradient reversal layer
//! `R_λ`. One step on a source batch `(x_s, y_s)` and a target batch `x_t` (no labels)
//! minimises
//!
//! ```text
//! L = L_y(G_y(G_f(x_s)), y_s) + L_d          L_d = ½[BCE(G_d(R_λ(G_f(x_s))), 1) + BCE(G_d(R_λ(G_f(x_t))), 0)]
//! ```
//!
//! so `θ_d` descends `L_d` (the discriminator learns) while the reversal makes
//! `θ_f ← θ_f − μ(∂L_y/∂θ_f − λ ∂L_d/∂θ_f)` (the features become indistinguishable). The
//! paper's schedules: `μ_p = μ0/(1 + α p)^β` ([`Schedule::Dann`], `μ0 = 0.01, α = 10,
//! β = 0.75`), momentum 0.9, and `λ_p = 2/(1 + exp(−γ p)) − 1` (γ = 10, [`dann_lambda`]),
//! `p` the training progress.
//!
//! The **source-only** baseline is the same step with `λ ≡ 0`: the discriminator still trains
//! (on detached features), so the domain accuracy of both runs is measured by an equally
//! strong `G_d`, while `G_f` and `G_y` receive exactly the source-only gradient `∂L_y`.
//! Both runs start from the same initial weights and see the same batches for the same seed.
//!
//! **Target labels are never used** during training or for any choice made during training:
//! [`train`] takes the target as an [`UnlabeledDataset`], and its evaluations report only
//! source validation accuracy and label-free scores (target prediction entropy, domain
//! accuracy). Target accuracy is measured once, at the end, by [`DannModel::evaluate`].

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::{PairedLoader, TensorDataset, UnlabeledDataset};
use xfer_losses::{DomainAdversarialLoss, cross_entropy, dann_lambda};
use xfer_models::{
    Activation, Backbone, DannLeNet, DigitsCnn, DigitsCnnConfig, DomainDiscriminator,
    DomainDiscriminatorConfig, LeNetConfig, Mlp, MlpConfig, ModuleT, ParamStore, Scope,
};
use xfer_ops::SeededRng;

use crate::batches::StepBatches;
use crate::history::Metrics;
use crate::metrics;
use crate::optim::{Sgd, SgdConfig};
use crate::schedule::Schedule;
use crate::trainer::{
    EarlyStopping, EvalCtx, StepCtx, StepOutput, TrainReport, Trainer, TrainerConfig, derive_seed,
};
use crate::{Result, TrainError};

/// Rows per forward pass when a whole data set is evaluated.
const EVAL_CHUNK: usize = 512;

/// Sub-seed tags (see [`derive_seed`]).
const TAG_INIT: u64 = 0x494E_4954; // "INIT"
const TAG_DATA: u64 = 0x4441_5441; // "DATA"
const TAG_PAD: u64 = 0x5041_4400; // "PAD"

/// The network a method builds for a data set: an MLP for feature vectors, a small CNN for
/// images. Every architecture splits into a feature extractor `G_f` and a head `G_y` whose
/// width the method chooses (classes, attributes or an embedding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    /// [`Mlp`] on flattened inputs: `hidden` layers form `G_f`, a linear layer is `G_y`.
    Mlp {
        /// Hidden widths, input side first (the last one is the feature width).
        hidden: Vec<usize>,
        /// Activation after every hidden layer.
        activation: Activation,
    },
    /// [`DigitsCnn`] for square images whose side is a multiple of 4: two 3×3 convolutions
    /// with max-pooling form `G_f`, `features → hidden → outputs` is `G_y`.
    Cnn {
        /// Channels of the two convolutions.
        channels: (usize, usize),
        /// Hidden width of the head.
        hidden: usize,
        /// Dropout before the head's last layer.
        dropout: f64,
    },
    /// The DANN paper's LeNet ([`DannLeNet`], square images of side ≥ 16): two 5×5
    /// convolutions form `G_f`, `features → hidden → hidden → outputs` is `G_y`.
    LeNet {
        /// Width of the head's hidden layers (100 in the paper).
        hidden: usize,
    },
}

impl Architecture {
    /// An MLP with ReLU hidden layers of the given widths.
    pub fn mlp(hidden: &[usize]) -> Self {
        Architecture::Mlp {
            hidden: hidden.to_vec(),
            activation: Activation::Relu,
        }
    }

    /// The digits CNN with channels (16, 32) and a 64-unit head.
    pub fn cnn() -> Self {
        Architecture::Cnn {
            channels: (16, 32),
            hidden: 64,
            dropout: 0.0,
        }
    }

    /// The paper's LeNet (100-unit head).
    pub fn lenet() -> Self {
        Architecture::LeNet { hidden: 100 }
    }

    /// What fits samples of `sample_shape`: an MLP (`mlp_hidden`) for vectors `[D]`, the
    /// digits CNN for images `[C, S, S]` / `[S, S]` with `S` a multiple of 4, LeNet for other
    /// square images of side ≥ 16; an error naming the shape otherwise.
    pub fn auto(sample_shape: &[usize], mlp_hidden: &[usize]) -> Result<Self> {
        match image_shape(sample_shape) {
            None if sample_shape.len() == 1 => Ok(Self::mlp(mlp_hidden)),
            Some((_, h, w)) if h == w && h >= 4 && h.is_multiple_of(4) => Ok(Self::cnn()),
            Some((_, h, w)) if h == w && h >= 16 => Ok(Self::lenet()),
            _ => Err(TrainError::Config(format!(
                "no model fits samples of shape {sample_shape:?}: use vectors [D] (an MLP) or \
                 square images [C, S, S] (a CNN); add `flatten` to the data spec to treat \
                 images as vectors, or resize them (folder:DIR:size=SxS)"
            ))),
        }
    }

    /// A short name: `mlp`, `cnn` or `lenet`.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Mlp { .. } => "mlp",
            Architecture::Cnn { .. } => "cnn",
            Architecture::LeNet { .. } => "lenet",
        }
    }
}

/// `[C, H, W]` (or `[H, W]` as one channel) of an image sample shape.
fn image_shape(sample_shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *sample_shape {
        [c, h, w] => Some((c, h, w)),
        [h, w] => Some((1, h, w)),
        _ => None,
    }
}

enum Body {
    Mlp(Mlp),
    Cnn(DigitsCnn),
    LeNet(DannLeNet),
}

/// A network built from an [`Architecture`]: [`Net::features`] is `G_f`, [`Net::head`] is
/// `G_y` (or `f` of zero-shot learning, or an attribute predictor).
pub struct Net {
    body: Body,
    sample_shape: Vec<usize>,
    out_dim: usize,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.body {
            Body::Mlp(_) => "mlp",
            Body::Cnn(_) => "cnn",
            Body::LeNet(_) => "lenet",
        };
        f.debug_struct("Net")
            .field("kind", &kind)
            .field("sample_shape", &self.sample_shape)
            .field("feature_dim", &self.feature_dim())
            .field("out_dim", &self.out_dim)
            .finish()
    }
}

impl Net {
    /// Builds `arch` under `scope` for samples of `sample_shape` with `out_dim` outputs.
    /// An error names the shape when the architecture cannot take it (a CNN on vectors).
    pub fn new(
        arch: &Architecture,
        scope: &Scope,
        sample_shape: &[usize],
        out_dim: usize,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let body = match arch {
            Architecture::Mlp { hidden, activation } => {
                let input_dim = sample_shape.iter().product();
                let cfg = MlpConfig {
                    activation: *activation,
                    ..MlpConfig::new(input_dim, hidden, out_dim)
                };
                Body::Mlp(Mlp::new(scope, &cfg, rng, dtype, dev)?)
            }
            Architecture::Cnn {
                channels,
                hidden,
                dropout,
            } => {
                let (c, h, w) = square_image(sample_shape, "cnn")?;
                let _ = w;
                let cfg = DigitsCnnConfig {
                    in_channels: c,
                    input_size: h,
                    channels: *channels,
                    hidden: *hidden,
                    num_classes: out_dim,
                    dropout: *dropout,
                };
                Body::Cnn(DigitsCnn::new(scope, &cfg, rng, dtype, dev)?)
            }
            Architecture::LeNet { hidden } => {
                let (c, h, _) = square_image(sample_shape, "lenet")?;
                let cfg = LeNetConfig {
                    in_channels: c,
                    input_size: h,
                    hidden: *hidden,
                    num_classes: out_dim,
                };
                Body::LeNet(DannLeNet::new(scope, &cfg, rng, dtype, dev)?)
            }
        };
        Ok(Self {
            body,
            sample_shape: sample_shape.to_vec(),
            out_dim,
        })
    }

    /// The sample shape the network takes.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// Width of the head's output.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Width of `G_f`'s features.
    pub fn feature_dim(&self) -> usize {
        match &self.body {
            Body::Mlp(m) => m.feature_dim(),
            Body::Cnn(m) => m.feature_dim(),
            Body::LeNet(m) => m.feature_dim(),
        }
    }

    /// `G_f(x)` for a batch `x` of shape `(N, sample_shape...)`: `(N, feature_dim)`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = x.dim(0)?;
        let want: usize = self.sample_shape.iter().product();
        if x.elem_count() != n * want || x.dims().get(1..) != Some(&self.sample_shape[..]) {
            return Err(TrainError::Config(format!(
                "the network takes batches of shape (N, {}), got {:?}",
                dims_list(&self.sample_shape),
                x.dims()
            )));
        }
        Ok(match &self.body {
            Body::Mlp(m) => m.features_t(&x.flatten_from(1)?, train)?,
            Body::Cnn(m) => m.features_t(&as_image(x)?, train)?,
            Body::LeNet(m) => m.features_t(&as_image(x)?, train)?,
        })
    }

    /// `G_y(f)` for features `f` `(N, feature_dim)`: `(N, out_dim)`.
    pub fn head(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match &self.body {
            Body::Mlp(m) => m.head_forward(features)?,
            Body::Cnn(m) => m.head_forward(features, train)?,
            Body::LeNet(m) => m.head_forward(features, train)?,
        })
    }

    /// `G_y(G_f(x))`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head(&self.features(x, train)?, train)
    }
}

fn dims_list(d: &[usize]) -> String {
    d.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn square_image(sample_shape: &[usize], what: &str) -> Result<(usize, usize, usize)> {
    match image_shape(sample_shape) {
        Some((c, h, w)) if h == w => Ok((c, h, w)),
        _ => Err(TrainError::Config(format!(
            "a {what} takes square images [C, S, S], but the samples have shape \
             {sample_shape:?}; use --model mlp for feature vectors"
        ))),
    }
}

/// `(N, H, W)` → `(N, 1, H, W)`; `(N, C, H, W)` unchanged.
fn as_image(x: &Tensor) -> Result<Tensor> {
    Ok(if x.rank() == 3 {
        x.unsqueeze(1)?
    } else {
        x.clone()
    })
}

/// Runs `f` over row chunks of `x` and concatenates the results (evaluation of whole data
/// sets without one huge batch).
pub(crate) fn chunked(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let n = x.dim(0)?;
    let mut outs = Vec::with_capacity(n.div_ceil(EVAL_CHUNK));
    let mut i = 0;
    while i < n {
        let len = EVAL_CHUNK.min(n - i);
        outs.push(f(&x.narrow(0, i, len)?)?.detach());
        i += len;
    }
    if outs.is_empty() {
        return Err(TrainError::Config(
            "cannot evaluate an empty data set".into(),
        ));
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// Shape of the domain classifier `G_d` (the lecture: it must be strong, or the features only
/// look aligned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of hidden layers (0 = logistic regression on the features: weak).
    pub depth: usize,
    /// Batch norm after every hidden linear layer (as TLlib's discriminator).
    pub batch_norm: bool,
    /// Dropout after the hidden activations.
    pub dropout: f64,
}

impl Default for DiscriminatorConfig {
    /// Two hidden layers of 256 units with batch norm.
    fn default() -> Self {
        Self {
            hidden: 256,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
        }
    }
}

/// Hyper-parameters of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DannConfig {
    /// The network (`G_f` and `G_y`).
    pub arch: Architecture,
    /// The domain classifier `G_d`.
    pub discriminator: DiscriminatorConfig,
    /// Optimiser steps.
    pub steps: usize,
    /// Source and target examples per step (each).
    pub batch_size: usize,
    /// `μ0`, the initial learning rate of `μ_p = μ0/(1 + α p)^β` (paper: 0.01).
    pub lr: f64,
    /// `α` of the learning-rate schedule (paper: 10).
    pub lr_alpha: f64,
    /// `β` of the learning-rate schedule (paper: 0.75).
    pub lr_beta: f64,
    /// SGD momentum (paper: 0.9).
    pub momentum: f64,
    /// Weight decay (coupled, as `torch.optim.SGD`).
    pub weight_decay: f64,
    /// Learning-rate multiplier of the domain classifier's parameter group (1 in the paper;
    /// TLlib's discriminator runs at 10× its pretrained backbone's rate).
    pub disc_lr_mult: f64,
    /// `γ` of `λ_p = 2/(1 + exp(−γ p)) − 1` (paper: 10).
    pub gamma: f64,
    /// Multiplies `λ_p` (1 in the paper).
    pub lambda_max: f64,
    /// Steps between evaluations (the trainer's "epoch").
    pub eval_every: usize,
    /// Which weights the run keeps (never chosen with target labels).
    pub selection: Selection,
    /// No progress bar.
    pub quiet: bool,
}

/// Which weights a run keeps at the end. Without target labels the choice can only use
/// source validation data or label-free scores on the target inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The weights after the last step.
    #[default]
    Last,
    /// The evaluation with the lowest mean prediction entropy on the (unlabelled) target
    /// inputs: confident target predictions, the cluster assumption's label-free proxy.
    MinTargetEntropy,
    /// The evaluation with the best source validation accuracy (needs `source_val`).
    MaxSourceValAcc,
}

impl DannConfig {
    /// The paper's settings around `arch`: 3,000 steps of 64 + 64 examples, `μ0 = 0.01`,
    /// `α = 10`, `β = 0.75`, momentum 0.9, `γ = 10`, the default discriminator.
    pub fn paper(arch: Architecture) -> Self {
        Self {
            arch,
            discriminator: DiscriminatorConfig::default(),
            steps: 3000,
            batch_size: 64,
            lr: 0.01,
            lr_alpha: 10.0,
            lr_beta: 0.75,
            momentum: 0.9,
            weight_decay: 0.0,
            disc_lr_mult: 1.0,
            gamma: 10.0,
            lambda_max: 1.0,
            eval_every: 100,
            selection: Selection::Last,
            quiet: true,
        }
    }

    /// The learning-rate schedule `μ_p = lr/(1 + α p)^β`.
    pub fn schedule(&self) -> Schedule {
        Schedule::Dann {
            mu0: self.lr,
            alpha: self.lr_alpha,
            beta: self.lr_beta,
        }
    }

    /// The reversal weight of `method` at progress `p`: 0 for source-only,
    /// `lambda_max · (2/(1 + exp(−γ p)) − 1)` for DANN.
    pub fn lambda(&self, method: DannMethod, progress: f64) -> f64 {
        match method {
            DannMethod::SourceOnly => 0.0,
            DannMethod::Dann => self.lambda_max * dann_lambda(progress, self.gamma),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(format!("dann: {m}")));
        if self.steps == 0 || self.batch_size == 0 || self.eval_every == 0 {
            return bad(format!(
                "steps ({}), batch_size ({}) and eval_every ({}) must be > 0",
                self.steps, self.batch_size, self.eval_every
            ));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("lr_alpha", self.lr_alpha),
            ("lr_beta", self.lr_beta),
            ("gamma", self.gamma),
            ("lambda_max", self.lambda_max),
            ("disc_lr_mult", self.disc_lr_mult),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} = {v} must be finite and >= 0"));
            }
        }
        Ok(())
    }
}

/// Which of the two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DannMethod {
    /// The baseline: `λ ≡ 0`, the features see only the source labels.
    SourceOnly,
    /// Domain-adversarial training with the reversal weight `λ_p`.
    Dann,
}

impl DannMethod {
    /// The run name used on the command line and in reports: `source_only`, `dann`.
    pub fn name(&self) -> &'static str {
        match self {
            DannMethod::SourceOnly => "source_only",
            DannMethod::Dann => "dann",
        }
    }
}

/// A trained network with its domain classifier.
pub struct DannModel {
    /// Which run produced it.
    pub method: DannMethod,
    /// Every parameter and buffer of `G_f`, `G_y` (under `net.`) and `G_d` (under
    /// `discriminator.`).
    pub store: ParamStore,
    /// `G_f` and `G_y`.
    pub net: Net,
    /// `G_d`.
    pub discriminator: Arc<DomainDiscriminator>,
    /// The training record (losses, `λ`, domain accuracy per step; source validation accuracy,
    /// target entropy and domain accuracy per evaluation).
    pub report: TrainReport,
    /// The seed of the run.
    pub seed: u64,
}

impl std::fmt::Debug for DannModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DannModel")
            .field("method", &self.method)
            .field("net", &self.net)
            .field("steps", &self.report.steps)
            .finish()
    }
}

/// What [`DannModel::evaluate`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DannResult {
    /// Which run.
    pub method: DannMethod,
    /// Accuracy on the labelled target test data (the number that matters; measured only
    /// here, after training).
    pub target_acc: f64,
    /// Accuracy on held-out source data.
    pub source_acc: f64,
    /// Balanced accuracy of the trained domain classifier `G_d` telling held-out source
    /// features from target test features (0.5: indistinguishable).
    pub domain_acc: f64,
    /// Proxy A-distance `2(1 − 2ε)` of the same features, from a fresh linear domain
    /// classifier ([`metrics::proxy_a_distance`]).
    pub proxy_a_distance: f64,
    /// Mean prediction entropy on the target test inputs (nats; label-free).
    pub target_entropy: f64,
    /// Optimiser steps taken.
    pub steps: usize,
}

impl DannResult {
    /// The numbers as `(name, value)` pairs, for reports.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("target_acc", self.target_acc),
            ("source_acc", self.source_acc),
            ("domain_acc", self.domain_acc),
            ("proxy_a_distance", self.proxy_a_distance),
            ("target_entropy", self.target_entropy),
            ("steps", self.steps as f64),
        ]
    }
}

/// Balanced accuracy `½(acc_S + acc_T)` of domain logits `(N_s + N_t)` or `(…, 1)`, source
/// first, positive meaning source.
fn balanced_domain_accuracy(logits: &Tensor, ns: usize) -> Result<f64> {
    let said_source = logits
        .flatten_all()?
        .ge(0.0)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let (s, t) = said_source.split_at(ns.min(said_source.len()));
    if s.is_empty() || t.is_empty() {
        return Err(TrainError::Config(
            "domain accuracy needs source and target examples".into(),
        ));
    }
    let acc_s = s.iter().sum::<f64>() / s.len() as f64;
    let acc_t = 1.0 - t.iter().sum::<f64>() / t.len() as f64;
    Ok(0.5 * (acc_s + acc_t))
}

impl DannModel {
    /// `G_f(x)` in evaluation mode, `(N, feature_dim)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        chunked(x, |b| self.net.features(b, false))
    }

    /// `G_y(G_f(x))` in evaluation mode, `(N, classes)`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        chunked(x, |b| self.net.forward(b, false))
    }

    /// Accuracy on a labelled data set.
    pub fn accuracy(&self, ds: &TensorDataset) -> Result<f64> {
        let (x, y) = ds.to_tensors(&self.device())?;
        metrics::accuracy_from_logits(&self.logits(&x)?, &y)
    }

    /// Balanced accuracy of `G_d` on source features `fs` vs target features `ft`.
    pub fn domain_accuracy(&self, fs: &Tensor, ft: &Tensor) -> Result<f64> {
        let f = Tensor::cat(&[fs, ft], 0)?;
        let logits = chunked(&f, |b| Ok(self.discriminator.forward_t(b, false)?))?;
        balanced_domain_accuracy(&logits, fs.dim(0)?)
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.store
            .all()
            .first()
            .map(|p| p.var().device().clone())
            .unwrap_or(Device::Cpu)
    }

    /// Measures the trained model on held-out source data and the labelled target test data
    /// (the only place target labels are read).
    pub fn evaluate(
        &self,
        source_test: &TensorDataset,
        target_test: &TensorDataset,
    ) -> Result<DannResult> {
        let dev = self.device();
        let (xs, ys) = source_test.to_tensors(&dev)?;
        let (xt, yt) = target_test.to_tensors(&dev)?;
        let fs = self.features(&xs)?;
        let ft = self.features(&xt)?;
        let logits_s = self.net.head(&fs, false)?;
        let logits_t = chunked(&ft, |b| self.net.head(b, false))?;
        let pad = metrics::proxy_a_distance(&fs, &ft, derive_seed(self.seed, &[TAG_PAD]))?;
        Ok(DannResult {
            method: self.method,
            target_acc: metrics::accuracy_from_logits(&logits_t, &yt)?,
            source_acc: metrics::accuracy_from_logits(&logits_s, &ys)?,
            domain_acc: self.domain_accuracy(&fs, &ft)?,
            proxy_a_distance: pad.pad,
            target_entropy: metrics::prediction_entropy(&logits_t)?,
            steps: self.report.steps,
        })
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Trains `method` on labelled `source` and unlabelled `target` data (the same sample shape)
/// with the one training loop, starting from weights drawn from `seed`. `source_val`, if
/// given, is evaluated every `cfg.eval_every` steps (its accuracy is the only labelled
/// number the run sees besides the source batches); the target contributes only its
/// inputs: the target prediction entropy and the domain accuracy are logged.
pub fn train(
    method: DannMethod,
    cfg: &DannConfig,
    source: &TensorDataset,
    target: &UnlabeledDataset,
    source_val: Option<&TensorDataset>,
    seed: u64,
    dev: &Device,
) -> Result<DannModel> {
    use xfer_data::Dataset;
    cfg.validate()?;
    if source.sample_shape() != target.sample_shape() {
        return Err(TrainError::Config(format!(
            "source `{}` has samples of shape {:?} but target `{}` has {:?}; bring both to \
             one shape (add `flatten` to both specs, resize images, or select the same columns)",
            source.name(),
            source.sample_shape(),
            target.name(),
            target.sample_shape()
        )));
    }
    let classes = source.num_classes();
    if classes < 2 {
        return Err(TrainError::Config(format!(
            "source `{}` has {classes} class(es); classification needs at least 2",
            source.name()
        )));
    }
    let store = ParamStore::new();
    let mut rng = SeededRng::new(derive_seed(seed, &[TAG_INIT]));
    let net = Net::new(
        &cfg.arch,
        &store.scope("net"),
        source.sample_shape(),
        classes,
        &mut rng,
        DType::F32,
        dev,
    )?;
    let d = &cfg.discriminator;
    let disc_cfg = DomainDiscriminatorConfig {
        dropout: d.dropout,
        batch_norm: d.batch_norm,
        ..DomainDiscriminatorConfig::new(net.feature_dim(), d.hidden, d.depth)
    };
    let discriminator = Arc::new(DomainDiscriminator::new(
        &store.scope("discriminator"),
        &disc_cfg,
        &mut rng,
        DType::F32,
        dev,
    )?);
    let g_d = Arc::clone(&discriminator);
    let domain_loss = DomainAdversarialLoss::new(move |f: &Tensor| g_d.forward_t(f, true));

    let pairs = PairedLoader::from_datasets(
        source.clone(),
        target.clone(),
        cfg.batch_size,
        derive_seed(seed, &[TAG_DATA]),
        dev,
    )?;
    let (disc_params, net_params): (Vec<_>, Vec<_>) = store
        .trainable()
        .into_iter()
        .partition(|p| p.name().starts_with("discriminator."));
    let opt = Sgd::with_groups(
        vec![
            (net_params, 1.0, cfg.weight_decay),
            (disc_params, cfg.disc_lr_mult, cfg.weight_decay),
        ],
        SgdConfig::momentum(cfg.momentum),
    )?;
    let mut tcfg = TrainerConfig::steps(cfg.steps, cfg.eval_every, cfg.schedule())
        .with_name(method.name())
        .with_seed(seed)
        .with_quiet(cfg.quiet);
    // Selection, never stopping: patience covers the whole run.
    match cfg.selection {
        Selection::Last => {}
        Selection::MinTargetEntropy => {
            tcfg = tcfg.with_early_stopping(EarlyStopping::min("target_entropy", usize::MAX));
        }
        Selection::MaxSourceValAcc => {
            if source_val.is_none() {
                return Err(TrainError::Config(
                    "selection by source validation accuracy needs source_val".into(),
                ));
            }
            tcfg = tcfg.with_early_stopping(EarlyStopping::max("source_val_acc", usize::MAX));
        }
    }
    let mut trainer = Trainer::new(tcfg, &store, opt)?;

    let mut batches = StepBatches::new(&pairs);
    let mut objective = |ctx: &StepCtx| -> Result<StepOutput> {
        let (s, t) = batches.next(ctx)?;
        let ns = s.len();
        let x = Tensor::cat(&[&s.x, &t.x], 0)?;
        let f = net.features(&x, true)?;
        let fs = f.narrow(0, 0, ns)?;
        let ft = f.narrow(0, ns, f.dim(0)? - ns)?;
        let logits = net.head(&fs, true)?;
        let class_loss = cross_entropy(&logits, s.labels()?)?;
        let lambda = cfg.lambda(method, ctx.progress);
        let adv = domain_loss.forward(&fs, &ft, lambda)?;
        let loss = (&class_loss + &adv.loss)?;
        Ok(StepOutput::new(loss)
            .with_metric("class_loss", scalar(&class_loss)?)
            .with_metric("domain_loss", scalar(&adv.loss)?)
            .with_metric("domain_acc", adv.domain_accuracy)
            .with_metric("lambda", lambda))
    };

    // Evaluations see source validation labels and target inputs only.
    let src_eval = match source_val {
        Some(v) => Some(v.to_tensors(dev)?),
        None => None,
    };
    let src_inputs = match &src_eval {
        Some((x, _)) => x.clone(),
        None => source.to_tensors(dev)?.0,
    };
    let tgt_inputs = target.to_tensor(dev)?;
    let mut evaluator = |_: &EvalCtx| -> Result<Metrics> {
        let mut m = Metrics::new();
        let fs = chunked(&src_inputs, |b| net.features(b, false))?;
        let ft = chunked(&tgt_inputs, |b| net.features(b, false))?;
        if let Some((_, y)) = &src_eval {
            let logits = chunked(&fs, |b| net.head(b, false))?;
            m.push((
                "source_val_acc".into(),
                metrics::accuracy_from_logits(&logits, y)?,
            ));
        }
        let lt = chunked(&ft, |b| net.head(b, false))?;
        m.push(("target_entropy".into(), metrics::prediction_entropy(&lt)?));
        let f = Tensor::cat(&[&fs, &ft], 0)?;
        let dl = chunked(&f, |b| Ok(discriminator.forward_t(b, false)?))?;
        m.push((
            "domain_acc".into(),
            balanced_domain_accuracy(&dl, fs.dim(0)?)?,
        ));
        Ok(m)
    };
    let report = trainer.fit_with_eval(&mut objective, &mut evaluator)?;
    tracing::info!(
        target: "xfer_train",
        method = method.name(),
        steps = report.steps,
        final_loss = report.final_loss,
        "dann run finished"
    );
    Ok(DannModel {
        method,
        store,
        net,
        discriminator,
        report,
        seed,
    })
}

/// Trains `method` and evaluates it: [`train`] then [`DannModel::evaluate`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    method: DannMethod,
    cfg: &DannConfig,
    source: &TensorDataset,
    target: &UnlabeledDataset,
    source_test: &TensorDataset,
    target_test: &TensorDataset,
    seed: u64,
    dev: &Device,
) -> Result<(DannModel, DannResult)> {
    let model = train(method, cfg, source, target, Some(source_test), seed, dev)?;
    let result = model.evaluate(source_test, target_test)?;
    Ok((model, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_data::embedded::moons;

    /// The moons settings of the example, shortened.
    fn quick_cfg(steps: usize) -> DannConfig {
        DannConfig {
            steps,
            batch_size: 64,
            lr: 0.05,
            weight_decay: 1e-3,
            eval_every: 50,
            discriminator: DiscriminatorConfig {
                hidden: 64,
                depth: 2,
                batch_norm: true,
                dropout: 0.0,
            },
            ..DannConfig::paper(Architecture::mlp(&[32, 32]))
        }
    }

    #[test]
    fn auto_architecture_is_mlp_for_vectors_and_cnn_for_images() {
        assert_eq!(Architecture::auto(&[2], &[15]).unwrap().name(), "mlp");
        assert_eq!(Architecture::auto(&[1, 8, 8], &[15]).unwrap().name(), "cnn");
        assert_eq!(Architecture::auto(&[8, 8], &[15]).unwrap().name(), "cnn");
        assert_eq!(
            Architecture::auto(&[3, 30, 30], &[15]).unwrap().name(),
            "lenet"
        );
        let e = Architecture::auto(&[3, 8, 6], &[15])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 8, 6]"), "{e}");
    }

    #[test]
    fn cnn_on_feature_vectors_is_an_error_naming_the_shape() {
        let store = ParamStore::new();
        let mut rng = SeededRng::new(0);
        let e = Net::new(
            &Architecture::cnn(),
            &store.scope("net"),
            &[64],
            10,
            &mut rng,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[64]") && e.contains("mlp"), "{e}");
    }

    #[test]
    fn mismatched_source_and_target_shapes_are_refused_with_both_shapes() {
        let (s, _) = moons::moons_pair(35.0, 0).unwrap();
        let t = UnlabeledDataset::new("t", vec![0.0; 30], vec![3]).unwrap();
        let e = train(
            DannMethod::Dann,
            &quick_cfg(10),
            &s,
            &t,
            None,
            0,
            &Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    }

    #[test]
    fn lambda_is_zero_for_source_only_and_rises_from_zero_to_one_for_dann() {
        let cfg = quick_cfg(10);
        assert_eq!(cfg.lambda(DannMethod::SourceOnly, 0.7), 0.0);
        assert_eq!(cfg.lambda(DannMethod::Dann, 0.0), 0.0);
        assert!((cfg.lambda(DannMethod::Dann, 1.0) - 0.999_909).abs() < 1e-5);
        assert!(cfg.lambda(DannMethod::Dann, 0.1) < cfg.lambda(DannMethod::Dann, 0.5));
    }

    /// DANN and source-only on the paper's rotated moons, a few hundred steps: both learn the
    /// source, report sane numbers, log λ as scheduled, and DANN's features are harder to
    /// tell apart by domain.
    #[test]
    fn dann_on_rotated_moons_runs_and_aligns_the_domains() {
        let seed = 3;
        let (src, tgt) = moons::moons_pair(35.0, seed).unwrap();
        let src_test = moons::moons(300, 0.05, 0.0, seed + 100).unwrap();
        let tgt_test = moons::moons(300, 0.05, 35.0, seed + 100).unwrap();
        let cfg = quick_cfg(400);
        let dev = Device::Cpu;
        let mut results = Vec::new();
        for method in [DannMethod::SourceOnly, DannMethod::Dann] {
            let (model, r) = run(
                method,
                &cfg,
                &src,
                &tgt.unlabeled(),
                &src_test,
                &tgt_test,
                seed,
                &dev,
            )
            .unwrap();
            assert_eq!(r.steps, 400);
            assert!(r.source_acc > 0.9, "{method:?} source acc {}", r.source_acc);
            for v in [r.target_acc, r.domain_acc] {
                assert!((0.0..=1.0).contains(&v));
            }
            assert!(r.proxy_a_distance <= 2.0 && r.target_entropy >= 0.0);
            let lambdas = model.report.history.step_curve("lambda");
            assert_eq!(lambdas.len(), 400);
            let last = lambdas.last().unwrap().1;
            match method {
                DannMethod::SourceOnly => assert_eq!(last, 0.0),
                DannMethod::Dann => assert!(last > 0.99, "λ at the end {last}"),
            }
            let evals = &model.report.history.evals;
            assert_eq!(evals.len(), 400 / 50);
            results.push(r);
        }
        let (so, da) = (&results[0], &results[1]);
        assert!(
            da.target_acc >= so.target_acc - 0.05,
            "source-only {} vs dann {}",
            so.target_acc,
            da.target_acc
        );
        assert!(
            da.domain_acc < so.domain_acc,
            "domain accuracy: source-only {} vs dann {}",
            so.domain_acc,
            da.domain_acc
        );
    }

    #[test]
    fn entropy_selection_keeps_the_evaluation_with_the_lowest_target_entropy() {
        let (src, tgt) = moons::moons_pair(35.0, 2).unwrap();
        let cfg = DannConfig {
            selection: Selection::MinTargetEntropy,
            eval_every: 20,
            ..quick_cfg(100)
        };
        let model = train(
            DannMethod::Dann,
            &cfg,
            &src,
            &tgt.unlabeled(),
            None,
            2,
            &Device::Cpu,
        )
        .unwrap();
        let curve = model.report.history.eval_curve("target_entropy");
        assert_eq!(curve.len(), 5);
        let lowest = curve.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let best = model.report.best.as_ref().unwrap();
        assert_eq!(
            (best.metric.as_str(), best.value),
            ("target_entropy", lowest)
        );
        // The kept weights are those of that evaluation.
        let x = tgt.unlabeled().to_tensor(&Device::Cpu).unwrap();
        let h = metrics::prediction_entropy(&model.logits(&x).unwrap()).unwrap();
        assert!((h - lowest).abs() < 1e-5, "{h} vs {lowest}");
    }

    #[test]
    fn same_seed_gives_the_same_run() {
        let (src, tgt) = moons::moons_pair(35.0, 1).unwrap();
        let cfg = quick_cfg(40);
        let once = || {
            let (_, r) = run(
                DannMethod::Dann,
                &cfg,
                &src,
                &tgt.unlabeled(),
                &src,
                &tgt,
                7,
                &Device::Cpu,
            )
            .unwrap();
            r
        };
        assert_eq!(once(), once());
    }
}
