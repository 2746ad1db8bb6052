//! A trained domain-adaptation model and its final evaluation.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::TensorDataset;
use xfer_models::{Classifier, DomainDiscriminator, ModuleT, ParamStore};

use super::DannMethod;
use crate::batches::chunked;
use crate::metrics;
use crate::model_selection::{self, Scorer};
use crate::trainer::{TrainReport, derive_seed};
use crate::{Result, TrainError};

const TAG_PAD: u64 = 0x5041_4400; // "PAD"

/// A trained network with its domain classifier.
pub struct DannModel {
    /// Which run produced it.
    pub method: DannMethod,
    /// Every parameter and buffer of the network (the classifier's names) and `G_d` (under
    /// `discriminator.`).
    pub store: ParamStore,
    /// `G_f` (the classifier's backbone), the optional bottleneck and `G_y`.
    pub net: Classifier,
    /// `G_d` (on the features for DANN and the probe, on the multilinear map for CDAN).
    pub discriminator: Arc<DomainDiscriminator>,
    /// The training record (losses, `λ`, domain accuracy per step; every label-free score and
    /// the recorded oracle target accuracy per evaluation).
    pub report: TrainReport,
    /// The seed of the run.
    pub seed: u64,
    /// The scorer that chose the kept weights (`None`: the last weights).
    pub selection: Option<Scorer>,
    /// CDAN's multilinear map (what the discriminator reads), `None` for other methods.
    pub conditioning: Option<xfer_losses::ConditioningMap>,
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
    /// Accuracy on the labelled target test data of the kept weights — the label-free
    /// choice, what a user gets (measured only here, after training).
    pub target_acc: f64,
    /// The best target accuracy over the run's evaluations: the choice an oracle with target
    /// labels would have made, for reference only (`None` without an oracle set).
    pub oracle_target_acc: Option<f64>,
    /// Accuracy on held-out source data.
    pub source_acc: f64,
    /// Balanced accuracy of the trained domain classifier telling held-out source features
    /// from target test features (0.5: indistinguishable); for CDAN it reads the
    /// multilinear map.
    pub domain_acc: f64,
    /// Proxy A-distance `2(1 − 2ε)` of the same features, from a fresh linear domain
    /// classifier ([`metrics::proxy_a_distance`]).
    pub proxy_a_distance: f64,
    /// Mean prediction entropy on the target test inputs (nats; label-free).
    pub target_entropy: f64,
    /// Optimiser steps taken.
    pub steps: usize,
    /// The step whose weights were kept.
    pub selected_step: usize,
}

impl DannResult {
    /// The numbers as `(name, value)` pairs, for reports.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = vec![("target_acc", self.target_acc)];
        if let Some(o) = self.oracle_target_acc {
            m.push(("oracle_target_acc", o));
        }
        m.extend([
            ("source_acc", self.source_acc),
            ("domain_acc", self.domain_acc),
            ("proxy_a_distance", self.proxy_a_distance),
            ("target_entropy", self.target_entropy),
            ("steps", self.steps as f64),
            ("selected_step", self.selected_step as f64),
        ]);
        m
    }
}

/// Balanced accuracy `½(acc_S + acc_T)` of domain logits `(N_s + N_t)` or `(…, 1)`, source
/// first, positive meaning source.
pub(crate) fn balanced_domain_accuracy(logits: &Tensor, ns: usize) -> Result<f64> {
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

/// What the discriminator reads for `method`: the features, or CDAN's multilinear map.
pub(crate) fn discriminator_input(
    map: Option<&xfer_losses::ConditioningMap>,
    features: &Tensor,
    logits: &Tensor,
) -> Result<Tensor> {
    match map {
        None => Ok(features.clone()),
        Some(m) => {
            let g = xfer_ops::softmax(&logits.detach())?;
            Ok(m.forward(features, &g)?)
        }
    }
}

impl DannModel {
    /// The features in evaluation mode, `(N, feature_dim)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        chunked(x, |b| Ok(self.net.features(b, false)?))
    }

    /// Class logits in evaluation mode, `(N, classes)`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        chunked(x, |b| Ok(self.net.logits(b, false)?))
    }

    /// Accuracy on a labelled data set.
    pub fn accuracy(&self, ds: &TensorDataset) -> Result<f64> {
        let (x, y) = ds.to_tensors(&self.device())?;
        metrics::accuracy_from_logits(&self.logits(&x)?, &y)
    }

    /// Balanced accuracy of the domain classifier on source features `fs` vs target features
    /// `ft` (the probe `G_d` for methods without an adversary).
    pub fn domain_accuracy(&self, fs: &Tensor, ft: &Tensor) -> Result<f64> {
        let ls = chunked(fs, |b| Ok(self.net.head_forward(b, false)?))?;
        let lt = chunked(ft, |b| Ok(self.net.head_forward(b, false)?))?;
        let f = Tensor::cat(&[fs, ft], 0)?;
        let l = Tensor::cat(&[&ls, &lt], 0)?;
        let h = discriminator_input(self.conditioning.as_ref(), &f, &l)?;
        let logits = chunked(&h, |b| Ok(self.discriminator.forward_t(b, false)?))?;
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

    /// Measures the kept weights on held-out source data and the labelled target test data
    /// (the only place target labels are read besides the recorded oracle curve).
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
        let logits_s = chunked(&fs, |b| Ok(self.net.head_forward(b, false)?))?;
        let logits_t = chunked(&ft, |b| Ok(self.net.head_forward(b, false)?))?;
        let pad = metrics::proxy_a_distance(&fs, &ft, derive_seed(self.seed, &[TAG_PAD]))?;
        let oracle = self
            .report
            .history
            .eval_curve(super::ORACLE_METRIC)
            .iter()
            .map(|p| p.1)
            .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
        let selected_step = match (&self.selection, &self.report.best) {
            (Some(_), Some(b)) => b.step,
            _ => self.report.steps,
        };
        Ok(DannResult {
            method: self.method,
            target_acc: metrics::accuracy_from_logits(&logits_t, &yt)?,
            oracle_target_acc: oracle,
            source_acc: metrics::accuracy_from_logits(&logits_s, &ys)?,
            domain_acc: self.domain_accuracy(&fs, &ft)?,
            proxy_a_distance: pad.pad,
            target_entropy: metrics::prediction_entropy(&logits_t)?,
            steps: self.report.steps,
            selected_step,
        })
    }

    /// The target accuracy (recorded oracle curve) at the evaluation `scorer` would choose in
    /// this run, with the score: what selecting by `scorer` would have given.
    pub fn choice_by(&self, scorer: Scorer) -> Option<(f64, f64)> {
        let e = model_selection::best_eval(&self.report.history.evals, scorer)?;
        let acc = crate::history::metric(&e.metrics, super::ORACLE_METRIC)?;
        let score = crate::history::metric(&e.metrics, scorer.metric())?;
        Some((acc, score))
    }
}
