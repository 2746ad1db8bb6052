//! A trained zero-shot model: scores, predictions and the seen/unseen evaluation.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use xfer_data::TensorDataset;
use xfer_losses::dap_class_scores;
use xfer_models::heads::l2_normalize;
use xfer_models::{Classifier, EmbeddingHead, ModuleT, ParamStore};

use super::data::ids_tensor;
use super::{ZeroShotData, ZslMethod};
use crate::batches::chunked;
use crate::metrics;
use crate::trainer::TrainReport;
use crate::{Result, TrainError};

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
pub(super) fn cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(l2_normalize(a, 1e-12)?.matmul(&l2_normalize(b, 1e-12)?.t()?)?)
}

impl ZeroShotModel {
    /// Scores `(N, K)` of inputs `x` against the `candidates` (class ids; larger = more
    /// likely), in evaluation mode.
    pub fn scores(&self, x: &Tensor, candidates: &[u32]) -> Result<Tensor> {
        if candidates.is_empty() {
            return Err(TrainError::BadData("no candidate classes".into()));
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
    pub(super) fn embed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
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
                    TrainError::BadData(format!("prediction {i} outside the candidates"))
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
pub(super) fn conse_embedding(p: &Tensor, seen_desc: &Tensor, top_t: usize) -> Result<Tensor> {
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
