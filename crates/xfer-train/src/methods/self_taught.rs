//! Self-taught learning (LECTURE.md §5; Raina, Battle, Lee, Packer & Ng, "Self-taught
//! Learning: Transfer Learning from Unlabeled Data", ICML 2007): learn a feature extractor on
//! plentiful *unlabelled* source data, then use it for the labelled target task.
//!
//! The feature extractor is the encoder `f` of a (denoising) auto-encoder trained to
//! minimise the reconstruction error
//!
//! `L(x) = (1/D) ‖g(f(x̃)) − x‖²`,  `x̃ = m ⊙ x`, `m_i ~ Bernoulli(1 − p)`
//!
//! (masking noise `p`, Vincent et al. 2008; `p = 0` is the plain auto-encoder). The target
//! classifier is `softmax(W f(x) + b)`: the encoder copied from the auto-encoder (frozen, as
//! Raina et al. fed the features to a separate classifier, or fine-tuned), the head `W, b`
//! trained on the labelled target examples. The baseline trains the same network from a
//! random start.
//!
//! The auto-encoder's reconstruction is an objective ([`AutoencoderObjective`]) and the
//! classifier is trained by [`FinetuneObjective`], both in
//! the one [`Trainer`](crate::Trainer).
//!
//! A run is the family's one entry, [`run`]`(&Config, &Data, &RunCtx)`, the [`Method`]
//! (scratch, self-taught, self-taught with a frozen encoder) inside its [`Config`]; the
//! auto-encoder is trained once by [`pretrain`] and handed to every run in its [`Data`].

use std::fmt;

use candle_core::{DType, Device, Tensor};
use xfer_data::{DataLoader, TensorDataset, UnlabeledDataset};
use xfer_models::{
    Activation, Backbone, Mlp, MlpConfig, ModuleT, ParamStore, Selection, Transfer, TransferReport,
};
use xfer_ops::SeededRng;

use serde::{Deserialize, Serialize};

use super::finetune::{FinetuneObjective, Regulariser, accuracy, loader};
use crate::batches::StepBatches;
use crate::run::{RunCtx, Stage};
use crate::trainer::{Objective, StepCtx, StepOutput, TrainReport, derive_seed};
use crate::{Result, TrainError};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};

/// The prefix of the encoder's parameters, in the auto-encoder and in the classifier.
pub const ENCODER: &str = "encoder";

fn encoder_config(input_dim: usize, widths: &[usize]) -> Result<MlpConfig> {
    if widths.is_empty() {
        return Err(TrainError::invalid(
            "widths",
            "[]",
            "at least one layer width (self-taught: the encoder needs the code)",
        ));
    }
    Ok(MlpConfig {
        input_dim,
        hidden: widths.to_vec(),
        output_dim: None,
        activation: Activation::Relu,
        dropout: 0.0,
    })
}

/// An auto-encoder on flattened inputs: encoder `f` (ReLU layers of the given widths, the
/// last being the code) and a mirrored decoder `g` with a linear output. Names:
/// `encoder.features.{0,2,..}.*`, `decoder.features.*`, `decoder.classifier.*`.
pub struct Autoencoder {
    store: ParamStore,
    encoder: Mlp,
    decoder: Mlp,
    input_shape: Vec<usize>,
    widths: Vec<usize>,
}

impl fmt::Debug for Autoencoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autoencoder")
            .field("input_shape", &self.input_shape)
            .field("widths", &self.widths)
            .finish()
    }
}

impl Autoencoder {
    /// A seeded auto-encoder for inputs of `input_shape` with encoder widths `widths`.
    pub fn new(
        input_shape: &[usize],
        widths: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let input_dim: usize = input_shape.iter().product();
        let enc_cfg = encoder_config(input_dim, widths)?;
        let code = widths.last().copied().unwrap_or(input_dim);
        // The decoder mirrors the encoder's hidden widths: code → ... → input.
        let back: Vec<usize> = widths.iter().rev().skip(1).copied().collect();
        let dec_cfg = MlpConfig {
            input_dim: code,
            hidden: back,
            output_dim: Some(input_dim),
            activation: Activation::Relu,
            dropout: 0.0,
        };
        let store = ParamStore::new();
        let mut rng = SeededRng::new(seed);
        let encoder = Mlp::new(
            &store.scope(ENCODER),
            &enc_cfg,
            &mut rng,
            DType::F32,
            device,
        )?;
        let decoder = Mlp::new(
            &store.scope("decoder"),
            &dec_cfg,
            &mut rng,
            DType::F32,
            device,
        )?;
        Ok(Self {
            store,
            encoder,
            decoder,
            input_shape: input_shape.to_vec(),
            widths: widths.to_vec(),
        })
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The encoder widths (the last is the code size).
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// The shape of one input.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The code `f(x)` `(N, code)` of `x` `(N, ...)`.
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.encoder.features_t(&x.flatten_from(1)?, train)?)
    }

    /// The reconstruction `g(f(x))` `(N, D)` of `x` `(N, ...)`, flattened.
    pub fn reconstruct(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.decoder.forward_t(&self.encode(x, train)?, train)?)
    }

    /// The mean squared reconstruction error per value on `data` (no noise).
    pub fn reconstruction_error(&self, data: &UnlabeledDataset, device: &Device) -> Result<f64> {
        let x = data.to_tensor(device)?.flatten_from(1)?;
        let r = self.reconstruct(&x, false)?;
        Ok((r - &x)?
            .sqr()?
            .mean_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    }
}

/// The reconstruction objective of a denoising auto-encoder on the step's mini-batch:
/// `mean((g(f(m ⊙ x)) − x)²)` with a fresh masking-noise draw `m` per step (from
/// [`StepCtx::rng`], so a resumed run draws the same masks).
pub struct AutoencoderObjective<'a> {
    ae: &'a Autoencoder,
    batches: StepBatches<'a, DataLoader<UnlabeledDataset>>,
    noise: f64,
}

impl fmt::Debug for AutoencoderObjective<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoencoderObjective")
            .field("ae", self.ae)
            .field("noise", &self.noise)
            .finish()
    }
}

impl<'a> AutoencoderObjective<'a> {
    /// Reconstruction of the batches of `loader`, inputs masked with probability `noise`.
    pub fn new(
        ae: &'a Autoencoder,
        loader: &'a DataLoader<UnlabeledDataset>,
        noise: f64,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&noise) {
            return Err(TrainError::invalid(
                "noise",
                noise,
                "a masking noise in [0, 1) (auto-encoder)",
            ));
        }
        Ok(Self {
            ae,
            batches: StepBatches::new(loader),
            noise,
        })
    }

    /// The loss on inputs `x` with keep-mask `mask` (same shape as `x` flattened, or `None`).
    pub fn loss_on(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = x.flatten_from(1)?;
        let input = match mask {
            Some(m) => (&x * m)?,
            None => x.clone(),
        };
        let r = self.ae.reconstruct(&input, true)?;
        Ok((r - &x)?.sqr()?.mean_all()?)
    }
}

impl Objective for AutoencoderObjective<'_> {
    fn loss(&mut self, ctx: &StepCtx) -> Result<StepOutput> {
        let batch = self.batches.next(ctx)?;
        let x = batch.x.flatten_from(1)?;
        let mask = if self.noise > 0.0 {
            Some(ctx.rng(0x4d41_534b).bernoulli_mask(
                x.dims(),
                1.0 - self.noise,
                x.dtype(),
                x.device(),
            )?)
        } else {
            None
        };
        Ok(StepOutput::new(self.loss_on(&x, mask.as_ref())?))
    }
}

/// How the auto-encoder is built and trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Encoder widths; the last is the code size.
    pub widths: Vec<usize>,
    /// Masking noise probability (0: plain auto-encoder).
    pub noise: f64,
    /// Training.
    pub stage: Stage,
}

/// Trains an auto-encoder on `unlabelled` (labels never seen) on `ctx.device`, every
/// random choice from `ctx.seed` (checkpoints, when `ctx` asks, in the stage folder
/// `autoencoder`).
pub fn train_autoencoder(
    unlabelled: &UnlabeledDataset,
    cfg: &AutoencoderConfig,
    ctx: &RunCtx,
) -> Result<(Autoencoder, TrainReport)> {
    use xfer_data::Dataset;
    let (seed, device) = (ctx.seed, &ctx.device);
    let ae = Autoencoder::new(
        unlabelled.sample_shape(),
        &cfg.widths,
        derive_seed(seed, &[0x4145]),
        device,
    )?;
    let data = loader(unlabelled.clone(), cfg.stage.batch_size, seed, device, None)?;
    let mut obj = AutoencoderObjective::new(&ae, &data, cfg.noise)?;
    let report = cfg.stage.fit_store(
        "autoencoder",
        ae.store(),
        &[],
        &mut obj,
        data.batches_per_epoch(),
        None,
        ctx,
    )?;
    Ok((ae, report))
}

/// A seeded classifier `softmax(W f(x) + b)` on an encoder `f` (ReLU layers of widths
/// `widths`) for inputs of `input_shape`: the MLP [`Classifier`] `mlp:W1,W2,...` (encoder
/// `features.*`, head `classifier.*`), so it saves as a model package like any other.
pub fn encoder_classifier(
    input_shape: &[usize],
    widths: &[usize],
    num_classes: usize,
    seed: u64,
    device: &Device,
) -> Result<Classifier> {
    // The same check (and message) as the auto-encoder's.
    encoder_config(input_shape.iter().product(), widths)?;
    let cfg = ClassifierConfig::new(BackboneSpec::mlp_hidden(widths), input_shape, num_classes);
    Ok(Classifier::new(&cfg, seed, device)?)
}

/// An [`encoder_classifier`] whose encoder is a copy of `ae`'s (the head seeded from `seed`),
/// frozen when `freeze` (then only the head trains); returns the transfer report too.
pub fn classifier_from_autoencoder(
    ae: &Autoencoder,
    num_classes: usize,
    seed: u64,
    freeze: bool,
) -> Result<(Classifier, TransferReport)> {
    let device = ae
        .store()
        .all()
        .first()
        .map_or(Device::Cpu, |p| p.var().device().clone());
    let net = encoder_classifier(ae.input_shape(), ae.widths(), num_classes, seed, &device)?;
    // `encoder.features.*` of the auto-encoder → `features.*` of the classifier.
    let sel = Selection::parse("features")?;
    let report = Transfer::new()
        .select(sel.clone())
        .strip_prefix(ENCODER)
        .strict(true)
        .run(ae.store(), net.store())?;
    if freeze {
        net.store().freeze(&sel);
    }
    Ok((net, report))
}

/// Trains `net` on the labelled `train` examples (cross-entropy) with `stage` ([`Stage::fit`]:
/// the encoder at the stage's `backbone_lr_mult`, 1 by default) and `ctx`'s seed, progress
/// and checkpoints (stage folder `classifier`).
pub fn train_classifier(
    net: &Classifier,
    train: &TensorDataset,
    stage: &Stage,
    ctx: &RunCtx,
) -> Result<TrainReport> {
    let data = loader(
        train.clone(),
        stage.batch_size,
        ctx.seed,
        net.device(),
        None,
    )?;
    let mut obj = FinetuneObjective::new(net, &data, Regulariser::None)?;
    stage.fit(
        "classifier",
        net,
        &[],
        &mut obj,
        data.batches_per_epoch(),
        None,
        ctx,
    )
}

/// The runs of self-taught learning: the baseline and the classifier on the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The baseline: the same network trained on the labelled target only, from a random
    /// start ([`encoder_classifier`]).
    Scratch,
    /// The encoder copied from the auto-encoder, fine-tuned with the new head.
    SelfTaught,
    /// The encoder copied from the auto-encoder and frozen: only the head trains (Raina et
    /// al.'s features fed to a separate classifier).
    SelfTaughtFrozen,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 3] = [
        Method::Scratch,
        Method::SelfTaught,
        Method::SelfTaughtFrozen,
    ];

    /// The run name (`scratch`, `self_taught`, `self_taught_frozen`).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Scratch => "scratch",
            Method::SelfTaught => "self_taught",
            Method::SelfTaughtFrozen => "self_taught_frozen",
        }
    }

    /// Whether the method starts from an auto-encoder's encoder.
    pub fn needs_autoencoder(&self) -> bool {
        !matches!(self, Method::Scratch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = TrainError;

    /// A method's name; `-` may stand for `_` (`self-taught-frozen`).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                TrainError::invalid("method", s, format!("one of {}", names.join(", ")))
            })
    }
}

/// Everything a self-taught run needs besides its data and [`RunCtx`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The run.
    pub method: Method,
    /// The auto-encoder (its widths are the classifier's encoder too).
    pub autoencoder: AutoencoderConfig,
    /// Training of the classifier on the labelled target examples.
    pub classifier: Stage,
}

impl Config {
    /// The tuned settings (examples/self_taught.rs, docs): encoder `widths`, masking noise
    /// `noise`; the auto-encoder trains with Adam at 1e-3 for 30 epochs of 64 examples, the
    /// classifier with Adam at 1e-3 for 300 epochs; `quick`: 3 and 100 epochs.
    pub fn new(method: Method, widths: &[usize], noise: f64, quick: bool) -> Self {
        let stage = Stage::adam(1e-3).with_batch_size(64);
        Self {
            method,
            autoencoder: AutoencoderConfig {
                widths: widths.to_vec(),
                noise,
                stage: stage.clone().with_epochs(if quick { 3 } else { 30 }),
            },
            classifier: stage.with_epochs(if quick { 100 } else { 300 }),
        }
    }

    /// The same settings for `method`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// The data of a self-taught run: the labelled target examples, the target test data, and
/// the auto-encoder trained on the unlabelled source ([`pretrain`]) for the methods that
/// start from its encoder.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// The labelled target examples the classifier trains on.
    pub train: &'a TensorDataset,
    /// The labelled target test data.
    pub test: &'a TensorDataset,
    /// The auto-encoder (needed by [`Method::SelfTaught`] and [`Method::SelfTaughtFrozen`]).
    pub autoencoder: Option<&'a Autoencoder>,
}

/// What a self-taught run made: the trained classifier, its training record and its test.
#[derive(Debug)]
pub struct Outcome {
    /// Which method trained it.
    pub method: Method,
    /// The trained classifier (`mlp:W1,W2,...`, saved as any model package).
    pub net: Classifier,
    /// The classifier's training run (stage folder `classifier` of the run `method`).
    pub report: TrainReport,
    /// Accuracy on [`Data::test`].
    pub target_acc: f64,
    /// What was copied from the auto-encoder (`None` for scratch).
    pub transfer: Option<TransferReport>,
}

impl Outcome {
    /// The run's metrics for reports (`target_acc`).
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![("target_acc", self.target_acc)]
    }
}

/// Trains the auto-encoder of `cfg` on the unlabelled source ([`train_autoencoder`]), once
/// for every method of a comparison.
pub fn pretrain(
    cfg: &Config,
    unlabelled: &UnlabeledDataset,
    ctx: &RunCtx,
) -> Result<(Autoencoder, TrainReport)> {
    train_autoencoder(unlabelled, &cfg.autoencoder, ctx)
}

/// Runs `cfg.method`: builds its classifier (from a random start, or on the auto-encoder's
/// encoder, frozen or not; the head seeded from `ctx.seed`), trains it on `data.train`
/// ([`train_classifier`], checkpoints under the run `cfg.method`) and tests it on
/// `data.test`.
pub fn run(cfg: &Config, data: &Data<'_>, ctx: &RunCtx) -> Result<Outcome> {
    let method = cfg.method;
    let num_classes = data.train.num_classes();
    let (net, transfer) = match (method, data.autoencoder) {
        (Method::Scratch, _) => (
            encoder_classifier(
                data.train.sample_shape(),
                &cfg.autoencoder.widths,
                num_classes,
                ctx.seed,
                &ctx.device,
            )?,
            None,
        ),
        (_, None) => {
            return Err(TrainError::Incompatible(format!(
                "method {method} starts from an auto-encoder: train one first (pretrain)"
            )));
        }
        (_, Some(ae)) => {
            let frozen = method == Method::SelfTaughtFrozen;
            let (net, report) = classifier_from_autoencoder(ae, num_classes, ctx.seed, frozen)?;
            (net, Some(report))
        }
    };
    let report = train_classifier(
        &net,
        data.train,
        &cfg.classifier,
        &ctx.for_run(method.name()),
    )?;
    let target_acc = accuracy(&net, data.test)?;
    Ok(Outcome {
        method,
        net,
        report,
        target_acc,
        transfer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(epochs: usize) -> Stage {
        Stage::adam(0.01).with_epochs(epochs).with_batch_size(16)
    }

    /// `n` examples of width 8 from 4 prototypes plus noise; labels = prototype.
    fn data(n: usize, seed: u64) -> TensorDataset {
        let mut rng = SeededRng::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let k = i % 4;
            for j in 0..8 {
                let on = if j / 2 == k { 1.0 } else { 0.0 };
                x.push((on + 0.1 * rng.normal01()) as f32);
            }
            y.push(k as u32);
        }
        TensorDataset::new("protos", x, vec![8], y)
            .unwrap()
            .with_num_classes(4)
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn autoencoder_training_lowers_the_reconstruction_error_without_labels() {
        let ds = data(64, 1).unlabeled();
        let dev = Device::Cpu;
        let cfg = AutoencoderConfig {
            widths: vec![16, 4],
            noise: 0.1,
            stage: stage(50),
        };
        let seed = derive_seed(2, &[0x4145]);
        let untrained = Autoencoder::new(&[8], &[16, 4], seed, &dev).unwrap();
        let before = untrained.reconstruction_error(&ds, &dev).unwrap();
        let (ae, report) = train_autoencoder(&ds, &cfg, &RunCtx::cpu().with_seed(2)).unwrap();
        let after = ae.reconstruction_error(&ds, &dev).unwrap();
        assert_eq!(report.steps, 200);
        // Predicting the mean image gives about 0.19; the prototypes are learned.
        assert!(after < 0.25 * before && after < 0.05, "{before} -> {after}");
        assert!(ae.store().contains("decoder.classifier.weight"));
        let code = ae.encode(&ds.to_tensor(&dev).unwrap(), false).unwrap();
        assert_eq!(code.dims(), [64, 4]);
    }

    #[test]
    fn masking_noise_is_drawn_from_the_step_so_the_loss_repeats() {
        let ds = data(16, 3).unlabeled();
        let dev = Device::Cpu;
        let ae = Autoencoder::new(&[8], &[4], 4, &dev).unwrap();
        let l = loader(ds, 16, 5, &dev, None).unwrap();
        let ctx = |step| StepCtx {
            step,
            total_steps: 10,
            epoch: 0,
            step_in_epoch: step,
            steps_per_epoch: 10,
            progress: 0.0,
            lr: 0.0,
            seed: 6,
        };
        let mut a = AutoencoderObjective::new(&ae, &l, 0.5).unwrap();
        let mut b = AutoencoderObjective::new(&ae, &l, 0.5).unwrap();
        let la = a.loss(&ctx(3)).unwrap().loss.to_scalar::<f32>().unwrap();
        let lb = b.loss(&ctx(3)).unwrap().loss.to_scalar::<f32>().unwrap();
        assert_eq!(la, lb);
        let clean = AutoencoderObjective::new(&ae, &l, 0.0).unwrap();
        let x = l.dataset().to_tensor(&dev).unwrap();
        assert_ne!(
            la,
            clean.loss_on(&x, None).unwrap().to_scalar::<f32>().unwrap()
        );
        assert!(AutoencoderObjective::new(&ae, &l, 1.0).is_err());
    }

    #[test]
    fn classifier_reuses_the_autoencoder_encoder_and_a_frozen_encoder_stays_put() {
        let train = data(24, 7);
        let cfg = AutoencoderConfig {
            widths: vec![6, 3],
            noise: 0.0,
            stage: stage(3),
        };
        let (ae, _) =
            train_autoencoder(&data(40, 8).unlabeled(), &cfg, &RunCtx::cpu().with_seed(9)).unwrap();
        let (net, report) = classifier_from_autoencoder(&ae, 4, 10, true).unwrap();
        assert_eq!(
            report.copied,
            [
                "features.0.bias",
                "features.0.weight",
                "features.2.bias",
                "features.2.weight"
            ]
        );
        let head0 = values(
            net.store()
                .get("classifier.weight")
                .unwrap()
                .var()
                .as_tensor(),
        );
        train_classifier(&net, &train, &stage(5), &RunCtx::cpu().with_seed(11)).unwrap();
        for name in &report.copied {
            assert_eq!(
                values(net.store().get(name).unwrap().var().as_tensor()),
                values(
                    ae.store()
                        .get(&format!("{ENCODER}.{name}"))
                        .unwrap()
                        .var()
                        .as_tensor()
                ),
                "{name} moved although frozen"
            );
        }
        assert_ne!(
            head0,
            values(
                net.store()
                    .get("classifier.weight")
                    .unwrap()
                    .var()
                    .as_tensor()
            )
        );
        // Not frozen: the encoder is fine-tuned.
        let (tuned, _) = classifier_from_autoencoder(&ae, 4, 10, false).unwrap();
        train_classifier(&tuned, &train, &stage(30), &RunCtx::cpu().with_seed(11)).unwrap();
        assert_ne!(
            values(
                tuned
                    .store()
                    .get("features.0.weight")
                    .unwrap()
                    .var()
                    .as_tensor()
            ),
            values(
                ae.store()
                    .get("encoder.features.0.weight")
                    .unwrap()
                    .var()
                    .as_tensor()
            )
        );
        assert!(crate::methods::finetune::accuracy(&tuned, &train).unwrap() > 0.5);
    }

    #[test]
    fn run_trains_every_method_and_an_encoder_method_needs_the_autoencoder() {
        let train = data(24, 12);
        let test = data(16, 13);
        let mut cfg = Config::new(Method::Scratch, &[6, 3], 0.0, true);
        cfg.autoencoder.stage = stage(3);
        cfg.classifier = stage(5);
        let ctx = RunCtx::cpu().with_seed(14);
        let (ae, _) = pretrain(&cfg, &data(40, 15).unlabeled(), &ctx).unwrap();
        let without = Data {
            train: &train,
            test: &test,
            autoencoder: None,
        };
        let scratch = run(&cfg, &without, &ctx).unwrap();
        assert!(scratch.transfer.is_none() && scratch.report.steps == 10);
        let frozen_cfg = cfg.clone().with_method(Method::SelfTaughtFrozen);
        let err = run(&frozen_cfg, &without, &ctx).unwrap_err();
        assert!(err.to_string().contains("auto-encoder"), "{err}");
        let with = Data {
            autoencoder: Some(&ae),
            ..without
        };
        let frozen = run(&frozen_cfg, &with, &ctx).unwrap();
        let w = |net: &Classifier| {
            values(
                net.store()
                    .get("features.0.weight")
                    .unwrap()
                    .var()
                    .as_tensor(),
            )
        };
        let ae_w = values(
            ae.store()
                .get("encoder.features.0.weight")
                .unwrap()
                .var()
                .as_tensor(),
        );
        assert_eq!(w(&frozen.net), ae_w);
        assert_ne!(w(&scratch.net), ae_w);
        assert!((0.0..=1.0).contains(&frozen.target_acc));
        for m in Method::ALL {
            assert_eq!(m.name().replace('_', "-").parse::<Method>().unwrap(), m);
        }
        assert!("self".parse::<Method>().is_err());
    }
}
