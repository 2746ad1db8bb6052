//! What a run returns: the trained network and its final evaluation.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::TensorDataset;
use xfer_models::Classifier;

use super::Method;
use super::terms::DomainClassifier;
use crate::Result;
use crate::batches::chunked;
use crate::metrics;
use crate::model_selection::{self, Scorer};
use crate::trainer::{TrainReport, derive_seed};

const TAG_PAD: u64 = 0x5041_4400; // "PAD"

/// What [`super::run`] returns: the trained network (the kept, label-free-selected
/// weights), its domain classifier, the training record and, when the data had a labelled
/// target test set, the evaluation of the kept weights.
pub struct Outcome {
    /// Which method trained it.
    pub method: Method,
    /// `G_f` (the classifier's backbone), the optional bottleneck and `G_y`, with the kept
    /// weights; its store also holds `G_d` (under `discriminator.`).
    pub net: Classifier,
    /// `G_d` (on the features for DANN and the probe, on the multilinear map for CDAN).
    pub discriminator: DomainClassifier,
    /// The training record (losses, `λ`, domain accuracy per step; every label-free score and
    /// the recorded oracle target accuracy per evaluation).
    pub report: TrainReport,
    /// The seed of the run.
    pub seed: u64,
    /// The scorer that chose the kept weights (`None`: the last weights).
    pub selection: Option<Scorer>,
    /// The kept weights measured on the labelled target test data, when there was some
    /// (`None`: target accuracy was not measured).
    pub evaluation: Option<Evaluation>,
    /// The number of target inputs the run trained on ([`super::Data::target`], all of it).
    pub target_examples: usize,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("method", &self.method)
            .field("net", &self.net)
            .field("steps", &self.report.steps)
            .field("evaluation", &self.evaluation)
            .finish()
    }
}

/// What [`Outcome::evaluate`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Which method.
    pub method: Method,
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

impl Evaluation {
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

impl Outcome {
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
        self.discriminator.accuracy(fs, ft, &ls, &lt)
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.net.device().clone()
    }

    /// Measures the kept weights on held-out source data and the labelled target test data
    /// (the only place target labels are read besides the recorded oracle curve).
    pub fn evaluate(
        &self,
        source_test: &TensorDataset,
        target_test: &TensorDataset,
    ) -> Result<Evaluation> {
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
        Ok(Evaluation {
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

    /// The numbers of a report: the evaluation's ([`Evaluation::metrics`]) and, for every
    /// scorer, `<scorer>_target_acc`, the target accuracy its choice would have had.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = self
            .evaluation
            .iter()
            .flat_map(Evaluation::metrics)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for s in Scorer::ALL {
            if let Some((acc, _)) = self.choice_by(s) {
                m.push((format!("{}_target_acc", s.name()), acc));
            }
        }
        m
    }
}
