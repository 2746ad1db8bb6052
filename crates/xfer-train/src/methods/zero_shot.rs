//! Zero-shot learning (LECTURE.md §4): classes never seen in training are recognised from
//! their descriptions — attribute vectors (or word / sentence vectors) `a_y`, one per class,
//! distinct for every class. Three methods, each trained on the seen classes only with the
//! one training loop ([`Trainer`]):
//!
//! - **Attribute embedding** ([`ZslMethod::Hinge`], the lecture's main method): learn `f(x)`
//!   (a network on the input) and `g(y)` (a projection of `a_y`) into one space with the
//!   lecture's hinge ([`ZeroShotHinge`]):
//!   `f*, g* = argmin Σₙ max(0, k − f(xⁿ)·g(yⁿ) + max_{m≠n} f(xⁿ)·g(yᵐ))` over the seen
//!   classes; inference `argmax_y f(x)·g(y)` over the classes allowed at test time.
//! - **Attribute prediction** (DAP; Lampert, Nickisch & Harmeling, CVPR 2009;
//!   [`ZslMethod::Dap`]): one binary classifier per attribute, trained with
//!   [`attribute_bce`]; a test input gets the class whose attribute vector best fits the
//!   predicted attribute probabilities ([`dap_class_scores`]).
//! - **ConSE** (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic
//!   Embeddings", ICLR 2014; [`ZslMethod::Conse`]): an ordinary classifier over the seen
//!   classes; `x` is embedded as `s(x) = Σ_{t ∈ top-T} p(t|x) a_t / Σ_{t ∈ top-T} p(t|x)` and
//!   assigned to the candidate class with the most similar (cosine) description.
//!
//! Evaluation ([`ZeroShotModel::evaluate`]) follows the standard protocol (Xian et al.,
//! "Zero-Shot Learning — A Comprehensive Evaluation of the Good, the Bad and the Ugly",
//! TPAMI 2018): mean per-class top-1 accuracy on unseen classes with only unseen candidates
//! (ZSL), and in generalised ZSL (all classes are candidates) the per-class accuracies `u` on
//! unseen and `s` on held-out seen samples with their harmonic mean `H = 2us/(u + s)`.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::{ClassAttributes, DataLoader, TensorDataset};
use xfer_losses::{ZeroShotHinge, attribute_bce, cross_entropy, dap_class_scores};
use xfer_models::heads::l2_normalize;
use xfer_models::{
    BackboneSpec, Classifier, ClassifierConfig, EmbeddingHead, EmbeddingHeadConfig, ModuleT,
    ParamStore,
};
use xfer_ops::SeededRng;

use crate::batches::{StepBatches, chunked};
use crate::history::Metrics;
use crate::metrics;
use crate::optim::{Adam, AdamConfig};
use crate::schedule::Schedule;
use crate::trainer::{
    EvalCtx, StepCtx, StepOutput, TrainReport, Trainer, TrainerConfig, derive_seed,
};
use crate::{Result, TrainError};

const TAG_INIT: u64 = 0x5A53_494E; // "ZSIN"
const TAG_DATA: u64 = 0x5A53_4441; // "ZSDA"
const TAG_SPLIT: u64 = 0x5A53_5350; // "ZSSP"

/// The three zero-shot methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZslMethod {
    /// Attribute embedding `f(x)·g(y)` trained with the lecture's hinge.
    Hinge,
    /// Direct attribute prediction.
    Dap,
    /// Convex combination of semantic embeddings.
    Conse,
}

impl ZslMethod {
    /// The run name: `hinge`, `dap`, `conse`.
    pub fn name(&self) -> &'static str {
        match self {
            ZslMethod::Hinge => "hinge",
            ZslMethod::Dap => "dap",
            ZslMethod::Conse => "conse",
        }
    }

    /// All three, in the order the examples run them.
    pub fn all() -> [ZslMethod; 3] {
        [ZslMethod::Hinge, ZslMethod::Dap, ZslMethod::Conse]
    }
}

/// How class descriptions are prepared before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeScaling {
    /// Each column scaled to `[0, 1]` over the classes (`(a − min)/(max − min)`, constant
    /// columns become 0): binary attributes stay as they are, counts become fractions. DAP
    /// needs values in `[0, 1]`.
    #[default]
    MinMax,
    /// Used as given (sentence or word vectors).
    None,
}

/// Hyper-parameters of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotConfig {
    /// The backbone of the input network, a [`Classifier`] whose head is `f`'s embedding
    /// (hinge), the attribute predictor (DAP) or the seen-class classifier (ConSE).
    pub backbone: BackboneSpec,
    /// Width of the shared embedding space of `f` and `g` (hinge).
    pub embed_dim: usize,
    /// Hidden widths of `g` (empty: a linear projection of the description).
    pub g_hidden: Vec<usize>,
    /// Margin `k` of the hinge.
    pub margin: f64,
    /// L2-normalise `f(x)` and `g(y)` (the score becomes a cosine; use a margin below 2).
    pub normalize: bool,
    /// `T` of ConSE: how many of the most probable seen classes are combined.
    pub top_t: usize,
    /// Preparation of the class descriptions.
    pub scaling: AttributeScaling,
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam's learning rate (constant).
    pub lr: f64,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Steps between evaluations.
    pub eval_every: usize,
    /// No progress bar.
    pub quiet: bool,
}

impl ZeroShotConfig {
    /// Defaults around `backbone`: a 64-wide linear `g`, margin 1, unnormalised scores, `T = 3`,
    /// 1,500 steps of 64 examples, AdamW with rate 1e-3 and decay 1e-4.
    pub fn new(backbone: BackboneSpec) -> Self {
        Self {
            backbone,
            embed_dim: 64,
            g_hidden: Vec::new(),
            margin: 1.0,
            normalize: false,
            top_t: 3,
            scaling: AttributeScaling::MinMax,
            steps: 1500,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-4,
            eval_every: 100,
            quiet: true,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 || self.eval_every == 0 {
            return Err(TrainError::Config(format!(
                "zero-shot: steps ({}), batch_size ({}) and eval_every ({}) must be > 0",
                self.steps, self.batch_size, self.eval_every
            )));
        }
        if self.embed_dim == 0 || self.top_t == 0 {
            return Err(TrainError::Config(format!(
                "zero-shot: embed_dim ({}) and top_t ({}) must be > 0",
                self.embed_dim, self.top_t
            )));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(TrainError::Config(format!(
                "zero-shot: margin {} must be finite and >= 0",
                self.margin
            )));
        }
        Ok(())
    }
}

/// A zero-shot problem: training samples of the seen classes, held-out samples of the seen
/// classes, samples of the unseen classes, and a description of every class. Labels are the
/// original class ids (rows of `attributes`).
#[derive(Debug, Clone)]
pub struct ZeroShotData {
    /// Samples of seen classes for training.
    pub train: TensorDataset,
    /// Held-out samples of seen classes (the `s` of generalised ZSL).
    pub seen_test: TensorDataset,
    /// Samples of the unseen classes (never trained on).
    pub unseen_test: TensorDataset,
    /// One description per class (rows indexed by class id).
    pub attributes: ClassAttributes,
    /// The seen class ids, sorted.
    pub seen: Vec<u32>,
    /// The unseen class ids, sorted.
    pub unseen: Vec<u32>,
}

impl ZeroShotData {
    /// Splits `ds` by class: every sample of an `unseen` class goes to `unseen_test`; of each
    /// seen class, a seeded stratified `seen_test_fraction` is held out for `seen_test`.
    /// Checks that `attributes` describes every class and that the descriptions of the
    /// classes in play are distinct (a class described like another cannot be recognised).
    pub fn split(
        ds: &TensorDataset,
        attributes: &ClassAttributes,
        unseen: &[u32],
        seen_test_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        let k = ds.num_classes();
        if attributes.num_classes() < k {
            return Err(TrainError::Config(format!(
                "`{}` has {k} classes but the attribute table describes {}",
                ds.name(),
                attributes.num_classes()
            )));
        }
        let mut unseen = unseen.to_vec();
        unseen.sort_unstable();
        unseen.dedup();
        if unseen.is_empty() || unseen.len() >= k {
            return Err(TrainError::Config(format!(
                "{} unseen classes of {k}: need at least one unseen and two seen classes",
                unseen.len()
            )));
        }
        let (seen_ds, unseen_ds) = xfer_data::class_split(ds, &unseen)?;
        let seen: Vec<u32> = (0..k as u32).filter(|c| !unseen.contains(c)).collect();
        if seen.len() < 2 {
            return Err(TrainError::Config(
                "zero-shot training needs at least two seen classes".into(),
            ));
        }
        for &c in &unseen {
            if !unseen_ds.labels().contains(&c) {
                return Err(TrainError::Config(format!(
                    "unseen class {c} has no samples in `{}`",
                    ds.name()
                )));
            }
        }
        let (train, seen_test) = xfer_data::stratified_split(
            &seen_ds,
            seen_test_fraction,
            derive_seed(seed, &[TAG_SPLIT]),
        )?;
        let data = Self {
            train,
            seen_test,
            unseen_test: unseen_ds,
            attributes: attributes.clone(),
            seen,
            unseen,
        };
        data.check()?;
        Ok(data)
    }

    /// Checks the invariants: the training samples are all of seen classes, every class in
    /// play has a description, and no two classes in play share one.
    pub fn check(&self) -> Result<()> {
        let a = self.attributes.num_attributes();
        let classes: Vec<u32> = self.seen.iter().chain(&self.unseen).copied().collect();
        for &c in &classes {
            if self.attributes.row(c as usize).is_none() {
                return Err(TrainError::Config(format!(
                    "class {c} has no row in the attribute table ({} classes)",
                    self.attributes.num_classes()
                )));
            }
        }
        if let Some(&c) = self.unseen.iter().find(|c| self.seen.contains(c)) {
            return Err(TrainError::Config(format!(
                "class {c} is both seen and unseen"
            )));
        }
        if let Some(&y) = self.train.labels().iter().find(|y| !self.seen.contains(y)) {
            return Err(TrainError::Config(format!(
                "the training data holds class {y}, which is not a seen class"
            )));
        }
        for (i, &c) in classes.iter().enumerate() {
            for &d in &classes[i + 1..] {
                if self.attributes.row(c as usize) == self.attributes.row(d as usize) {
                    return Err(TrainError::Config(format!(
                        "classes {c} and {d} have the same description; zero-shot learning \
                         needs a distinct attribute vector for every class"
                    )));
                }
            }
        }
        let _ = a;
        Ok(())
    }

    /// The class name of `c`, or its id.
    pub fn class_name(&self, c: u32) -> String {
        self.train
            .class_names()
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    }
}

/// The description matrix `(C, A)` after `scaling`, as f32 on `dev`.
fn description_matrix(
    attributes: &ClassAttributes,
    scaling: AttributeScaling,
    dev: &Device,
) -> Result<Tensor> {
    let (c, a) = (attributes.num_classes(), attributes.num_attributes());
    let mut v = attributes.values().to_vec();
    if scaling == AttributeScaling::MinMax {
        for j in 0..a {
            let col = (0..c).filter_map(|i| v.get(i * a + j).copied());
            let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
            for i in 0..c {
                if let Some(x) = v.get_mut(i * a + j) {
                    *x = if hi > lo { (*x - lo) / (hi - lo) } else { 0.0 };
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, (c, a), dev)?)
}

fn ids_tensor(ids: &[u32], dev: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(ids, ids.len(), dev)?)
}

/// A trained zero-shot model.
pub struct ZeroShotModel {
    /// Which method.
    pub method: ZslMethod,
    /// Every parameter (the network's names and, for the hinge, `g.`).
    pub store: ParamStore,
    /// `f` (hinge), the attribute predictor (DAP) or the seen-class classifier (ConSE): a
    /// [`Classifier`] whose head has that many outputs.
    pub net: Classifier,
    /// `g` (hinge only).
    pub g: Option<EmbeddingHead>,
    /// The prepared descriptions `(C, A)` of every class.
    pub descriptions: Tensor,
    /// The seen class ids (ConSE's classifier outputs, in order).
    pub seen: Vec<u32>,
    /// `f(x)` and `g(y)` are L2-normalised.
    pub normalize: bool,
    /// ConSE's `T`.
    pub top_t: usize,
    /// The training record.
    pub report: TrainReport,
}

impl std::fmt::Debug for ZeroShotModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroShotModel")
            .field("method", &self.method)
            .field("net", &self.net)
            .field("seen", &self.seen)
            .finish()
    }
}

/// What [`ZeroShotModel::evaluate`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZslResult {
    /// Which method.
    pub method: ZslMethod,
    /// ZSL: mean per-class accuracy on the unseen samples, candidates the unseen classes.
    pub unseen_acc: f64,
    /// GZSL `u`: mean per-class accuracy on the unseen samples, candidates all classes.
    pub gzsl_unseen_acc: f64,
    /// GZSL `s`: mean per-class accuracy on held-out seen samples, candidates all classes.
    pub seen_acc: f64,
    /// `H = 2us/(u + s)`.
    pub h: f64,
    /// Chance level of the ZSL accuracy (1 / number of unseen classes).
    pub chance: f64,
    /// Optimiser steps taken.
    pub steps: usize,
}

impl ZslResult {
    /// The numbers as `(name, value)` pairs, for reports.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("unseen_acc", self.unseen_acc),
            ("seen_acc", self.seen_acc),
            ("h", self.h),
            ("gzsl_unseen_acc", self.gzsl_unseen_acc),
            ("chance", self.chance),
            ("steps", self.steps as f64),
        ]
    }
}

/// Row-wise cosine similarities `(N, K)` of `a` `(N, A)` and `b` `(K, A)`.
fn cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(l2_normalize(a, 1e-12)?.matmul(&l2_normalize(b, 1e-12)?.t()?)?)
}

impl ZeroShotModel {
    /// Scores `(N, K)` of inputs `x` against the `candidates` (class ids; larger = more
    /// likely), in evaluation mode.
    pub fn scores(&self, x: &Tensor, candidates: &[u32]) -> Result<Tensor> {
        if candidates.is_empty() {
            return Err(TrainError::Config("no candidate classes".into()));
        }
        let dev = x.device();
        let desc = self
            .descriptions
            .index_select(&ids_tensor(candidates, dev)?, 0)?;
        match self.method {
            ZslMethod::Hinge => {
                let g = self
                    .g
                    .as_ref()
                    .ok_or_else(|| TrainError::Config("hinge model without g".into()))?;
                let gy = g.forward_t(&desc, false)?;
                let gy = if self.normalize {
                    l2_normalize(&gy, 1e-12)?
                } else {
                    gy
                };
                chunked(x, |b| {
                    let fx = self.embed(b, false)?;
                    Ok(fx.matmul(&gy.t()?)?)
                })
            }
            ZslMethod::Dap => chunked(x, |b| {
                let z = self.net.logits(b, false)?;
                Ok(dap_class_scores(&z, &desc)?)
            }),
            ZslMethod::Conse => {
                let seen_desc = self
                    .descriptions
                    .index_select(&ids_tensor(&self.seen, dev)?, 0)?;
                chunked(x, |b| {
                    let p = xfer_ops::softmax(&self.net.logits(b, false)?)?;
                    let s = conse_embedding(&p, &seen_desc, self.top_t)?;
                    cosine(&s, &desc)
                })
            }
        }
    }

    /// Where each input lands in the method's semantic space, in evaluation mode: `f(x)` for
    /// the hinge, the predicted attribute probabilities `σ(z)` for DAP, the ConSE mixture
    /// `s(x)` for ConSE (for pictures of the space).
    pub fn semantic(&self, x: &Tensor) -> Result<Tensor> {
        match self.method {
            ZslMethod::Hinge => chunked(x, |b| self.embed(b, false)),
            ZslMethod::Dap => chunked(x, |b| {
                Ok(candle_nn::ops::sigmoid(&self.net.logits(b, false)?)?)
            }),
            ZslMethod::Conse => {
                let seen_desc = self
                    .descriptions
                    .index_select(&ids_tensor(&self.seen, x.device())?, 0)?;
                chunked(x, |b| {
                    let p = xfer_ops::softmax(&self.net.logits(b, false)?)?;
                    conse_embedding(&p, &seen_desc, self.top_t)
                })
            }
        }
    }

    /// `f(x)` of the hinge model (normalised if configured).
    fn embed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let fx = self.net.logits(x, train)?;
        if self.normalize {
            Ok(l2_normalize(&fx, 1e-12)?)
        } else {
            Ok(fx)
        }
    }

    /// The predicted class id of every input among `candidates`.
    pub fn predict(&self, x: &Tensor, candidates: &[u32]) -> Result<Vec<u32>> {
        let idx = metrics::argmax_rows(&self.scores(x, candidates)?)?;
        idx.into_iter()
            .map(|i| {
                candidates.get(i).copied().ok_or_else(|| {
                    TrainError::Config(format!("prediction {i} outside the candidates"))
                })
            })
            .collect()
    }

    /// Mean per-class accuracy of the predictions on `ds` among `candidates`.
    pub fn mean_per_class_accuracy(&self, ds: &TensorDataset, candidates: &[u32]) -> Result<f64> {
        let (x, _) = ds.to_tensors(&self.descriptions.device().clone())?;
        let pred: Vec<usize> = self
            .predict(&x, candidates)?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let target: Vec<usize> = ds.labels().iter().map(|&c| c as usize).collect();
        metrics::mean_per_class_accuracy(&pred, &target)
    }

    /// ZSL and generalised-ZSL numbers on `data`'s test parts.
    pub fn evaluate(&self, data: &ZeroShotData) -> Result<ZslResult> {
        let mut all: Vec<u32> = data.seen.iter().chain(&data.unseen).copied().collect();
        all.sort_unstable();
        let unseen_acc = self.mean_per_class_accuracy(&data.unseen_test, &data.unseen)?;
        let u = self.mean_per_class_accuracy(&data.unseen_test, &all)?;
        let s = self.mean_per_class_accuracy(&data.seen_test, &all)?;
        Ok(ZslResult {
            method: self.method,
            unseen_acc,
            gzsl_unseen_acc: u,
            seen_acc: s,
            h: metrics::harmonic_mean(u, s),
            chance: 1.0 / data.unseen.len() as f64,
            steps: self.report.steps,
        })
    }
}

/// ConSE's `s(x) = Σ_{t∈top-T} p_t a_t / Σ_{t∈top-T} p_t` for probabilities `p` `(N, S)` over
/// the seen classes with descriptions `seen_desc` `(S, A)`.
fn conse_embedding(p: &Tensor, seen_desc: &Tensor, top_t: usize) -> Result<Tensor> {
    let (n, s) = p.dims2()?;
    let t = top_t.min(s);
    let rows = p.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut w = vec![0f32; n * s];
    for (i, row) in rows.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top = &order[..t.min(order.len())];
        let z: f32 = top.iter().map(|&j| row[j]).sum::<f32>().max(1e-12);
        for &j in top {
            if let Some(slot) = w.get_mut(i * s + j) {
                *slot = row[j] / z;
            }
        }
    }
    let w = Tensor::from_vec(w, (n, s), p.device())?.to_dtype(seen_desc.dtype())?;
    Ok(w.matmul(seen_desc)?)
}

/// Trains `method` on `data.train` (seen classes only) with the one training loop.
pub fn train(
    method: ZslMethod,
    cfg: &ZeroShotConfig,
    data: &ZeroShotData,
    seed: u64,
    dev: &Device,
) -> Result<ZeroShotModel> {
    cfg.validate()?;
    data.check()?;
    let descriptions = description_matrix(&data.attributes, cfg.scaling, dev)?;
    let a = data.attributes.num_attributes();
    let seen_desc = descriptions.index_select(&ids_tensor(&data.seen, dev)?, 0)?;
    if method == ZslMethod::Dap {
        let v = seen_desc.flatten_all()?.to_vec1::<f32>()?;
        if v.iter().any(|x| !(0.0..=1.0).contains(x)) {
            return Err(TrainError::Config(
                "DAP needs attribute values in [0, 1]: use AttributeScaling::MinMax".into(),
            ));
        }
    }
    // Class id → index among the seen classes (the targets of every loss).
    let mut to_seen = vec![0u32; data.attributes.num_classes().max(data.train.num_classes())];
    for (i, &c) in data.seen.iter().enumerate() {
        if let Some(slot) = to_seen.get_mut(c as usize) {
            *slot = i as u32;
        }
    }
    let to_seen = Tensor::from_vec(to_seen.clone(), to_seen.len(), dev)?;

    let mut rng = SeededRng::new(derive_seed(seed, &[TAG_INIT]));
    let out_dim = match method {
        ZslMethod::Hinge => cfg.embed_dim,
        ZslMethod::Dap => a,
        ZslMethod::Conse => data.seen.len(),
    };
    let net = Classifier::with_rng(
        &ClassifierConfig::new(cfg.backbone.clone(), data.train.sample_shape(), out_dim),
        &mut rng,
        dev,
    )?;
    let store = net.store().clone();
    let g = match method {
        ZslMethod::Hinge => Some(EmbeddingHead::new(
            &store.scope("g"),
            &EmbeddingHeadConfig {
                in_dim: a,
                hidden: cfg.g_hidden.clone(),
                out_dim: cfg.embed_dim,
                activation: xfer_models::Activation::Relu,
                normalize: cfg.normalize,
            },
            &mut rng,
            DType::F32,
            dev,
        )?),
        _ => None,
    };
    let mut model = ZeroShotModel {
        method,
        store: store.clone(),
        net,
        g,
        descriptions,
        seen: data.seen.clone(),
        normalize: cfg.normalize,
        top_t: cfg.top_t,
        report: TrainReport {
            steps: 0,
            total_steps: cfg.steps,
            stopped_early: false,
            best: None,
            last_eval: None,
            final_loss: None,
            history: Default::default(),
        },
    };

    let bs = cfg.batch_size.min(data.train.len()).max(1);
    let loader = DataLoader::builder(data.train.clone(), bs)
        .drop_last(true)
        .seed(derive_seed(seed, &[TAG_DATA]))
        .device(dev.clone())
        .build()?;
    let hinge = ZeroShotHinge::new(cfg.margin)?;
    let opt = Adam::new(
        store.trainable(),
        AdamConfig::adamw().with_weight_decay(cfg.weight_decay),
    )?;
    let tcfg = TrainerConfig::steps(cfg.steps, cfg.eval_every, Schedule::constant(cfg.lr))
        .with_name(method.name())
        .with_seed(seed)
        .with_quiet(cfg.quiet);
    let mut trainer = Trainer::new(tcfg, &store, opt)?;

    let report = {
        let m = &model;
        let mut batches = StepBatches::new(&loader);
        let mut objective = |ctx: &StepCtx| -> Result<StepOutput> {
            let b = batches.next(ctx)?;
            let y = to_seen.index_select(b.labels()?, 0)?;
            let loss = match method {
                ZslMethod::Hinge => {
                    let fx = m.embed(&b.x, true)?;
                    let gy =
                        m.g.as_ref()
                            .ok_or_else(|| TrainError::Config("hinge model without g".into()))?
                            .forward_t(&seen_desc, true)?;
                    let scores = fx.matmul(&gy.t()?)?;
                    hinge.forward(&scores, &y)?
                }
                ZslMethod::Dap => {
                    let z = m.net.logits(&b.x, true)?;
                    attribute_bce(&z, &seen_desc, &y)?
                }
                ZslMethod::Conse => {
                    let z = m.net.logits(&b.x, true)?;
                    cross_entropy(&z, &y)?
                }
            };
            Ok(StepOutput::new(loss))
        };
        // Logged only (no choice is made on it): accuracy among the seen classes on the
        // held-out seen samples.
        let (xv, _) = data.seen_test.to_tensors(dev)?;
        let yv: Vec<usize> = data
            .seen_test
            .labels()
            .iter()
            .map(|&c| c as usize)
            .collect();
        let mut evaluator = |_: &EvalCtx| -> Result<Metrics> {
            let pred: Vec<usize> = m
                .predict(&xv, &data.seen)?
                .into_iter()
                .map(|c| c as usize)
                .collect();
            Ok(vec![(
                "seen_val_acc".to_string(),
                metrics::mean_per_class_accuracy(&pred, &yv)?,
            )])
        };
        trainer.fit_with_eval(&mut objective, &mut evaluator)?
    };
    model.report = report;
    Ok(model)
}

/// Trains `method` on `data` and evaluates it.
pub fn run(
    method: ZslMethod,
    cfg: &ZeroShotConfig,
    data: &ZeroShotData,
    seed: u64,
    dev: &Device,
) -> Result<(ZeroShotModel, ZslResult)> {
    let model = train(method, cfg, data, seed, dev)?;
    let result = model.evaluate(data)?;
    Ok((model, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny separable problem with compositional attributes: 6 classes = 3 "shapes" × 2
    /// "colours", one-hot per factor; inputs are the attribute vector plus noise, embedded in
    /// 8 dimensions. Class 5 (shape 2, colour 1) is unseen but each of its attributes is seen.
    fn toy(seed: u64) -> ZeroShotData {
        let mut rng = SeededRng::new(seed);
        let classes = 6u32;
        let attr = |c: u32| -> Vec<f32> {
            let mut a = vec![0f32; 5];
            a[(c / 2) as usize] = 1.0;
            a[3 + (c % 2) as usize] = 1.0;
            a
        };
        let mut x = Vec::new();
        let mut y = Vec::new();
        for c in 0..classes {
            for _ in 0..40 {
                let a = attr(c);
                for v in &a {
                    x.push(v + 0.15 * rng.normal01() as f32);
                }
                for _ in 0..3 {
                    x.push(0.3 * rng.normal01() as f32);
                }
                y.push(c);
            }
        }
        let ds = TensorDataset::new("toy", x, vec![8], y).unwrap();
        let values: Vec<f32> = (0..classes).flat_map(attr).collect();
        let names = ["s0", "s1", "s2", "c0", "c1"].map(String::from).to_vec();
        let attributes = ClassAttributes::new(names, values, classes as usize).unwrap();
        ZeroShotData::split(&ds, &attributes, &[1, 5], 0.25, seed).unwrap()
    }

    fn quick(steps: usize) -> ZeroShotConfig {
        ZeroShotConfig {
            steps,
            batch_size: 32,
            lr: 1e-2,
            embed_dim: 16,
            eval_every: 50,
            top_t: 2,
            ..ZeroShotConfig::new(BackboneSpec::Mlp {
                hidden: vec![32],
                dropout: 0.0,
            })
        }
    }

    #[test]
    fn split_holds_out_every_unseen_sample_and_refuses_duplicate_descriptions() {
        let data = toy(0);
        assert_eq!(data.unseen, vec![1, 5]);
        assert!(data.train.labels().iter().all(|c| *c != 1 && *c != 5));
        assert!(data.unseen_test.labels().iter().all(|c| *c == 1 || *c == 5));
        assert_eq!(data.unseen_test.len(), 80);
        let dup =
            ClassAttributes::new(vec!["a".into()], vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0], 6).unwrap();
        let e = ZeroShotData::split(&data.train, &dup, &[0], 0.25, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("same description"), "{e}");
    }

    #[test]
    fn every_method_beats_chance_on_unseen_classes_of_a_separable_toy() {
        let data = toy(1);
        for method in ZslMethod::all() {
            let (model, r) = run(method, &quick(200), &data, 1, &Device::Cpu).unwrap();
            assert_eq!(model.report.steps, 200);
            assert!(
                r.unseen_acc > r.chance + 0.25,
                "{}: unseen {} (chance {})",
                method.name(),
                r.unseen_acc,
                r.chance
            );
            for v in [r.seen_acc, r.gzsl_unseen_acc, r.h] {
                assert!((0.0..=1.0).contains(&v));
            }
        }
    }

    #[test]
    fn conse_embedding_is_the_normalised_top_t_mixture() {
        let p = Tensor::new(&[[0.5f32, 0.3, 0.2]], &Device::Cpu).unwrap();
        let desc = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let s = conse_embedding(&p, &desc, 2)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((s[0][0] - 0.625).abs() < 1e-6 && (s[0][1] - 0.375).abs() < 1e-6);
    }

    #[test]
    fn min_max_scaling_maps_counts_into_unit_interval_and_keeps_binary_columns() {
        let a = ClassAttributes::new(
            vec!["bit".into(), "loops".into()],
            vec![0.0, 0.0, 1.0, 1.0, 1.0, 2.0],
            3,
        )
        .unwrap();
        let m = description_matrix(&a, AttributeScaling::MinMax, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m, vec![vec![0.0, 0.0], vec![1.0, 0.5], vec![1.0, 1.0]]);
    }
}
