//! A configurable multi-layer perceptron: `features` (Linear → activation → dropout blocks)
//! and an optional linear head `classifier`.
//!
//! Names: `features.0.weight`, `features.0.bias`, `features.2.weight` (after the activation
//! at position 1, dropout taking a position when `dropout > 0`), ..., `classifier.weight`,
//! `classifier.bias` — as PyTorch names `nn.Sequential(Linear, ReLU, Linear, ReLU)` and
//! an `nn.Linear` head.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::Result;
use crate::backbone::Backbone;
use crate::layers::{Activation, Linear, Module, ModuleT};
use crate::params::Scope;
use crate::sequential::{Sequential, check_dropout, check_widths, mlp_stack};

/// Shape of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input width.
    pub input_dim: usize,
    /// Hidden widths, input side first (may be empty).
    pub hidden: Vec<usize>,
    /// Width of the linear head; `None` for a feature extractor without a head.
    pub output_dim: Option<usize>,
    /// Activation after every hidden layer.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after every hidden activation (0 for none).
    #[serde(default)]
    pub dropout: f64,
}

impl MlpConfig {
    /// `input_dim → hidden… → output_dim` with ReLU and no dropout.
    pub fn new(input_dim: usize, hidden: &[usize], output_dim: usize) -> Self {
        Self {
            input_dim,
            hidden: hidden.to_vec(),
            output_dim: Some(output_dim),
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

/// A multi-layer perceptron with a feature part and an optional linear head.
#[derive(Debug)]
pub struct Mlp {
    cfg: MlpConfig,
    scope: Scope,
    features: Sequential,
    classifier: Option<Linear>,
}

impl Mlp {
    /// Builds the network under `scope`, initialised from `rng` (PyTorch's default
    /// `U(−1/√fan_in, 1/√fan_in)`).
    pub fn new(
        scope: &Scope,
        cfg: &MlpConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let mut widths = vec![cfg.input_dim];
        widths.extend(&cfg.hidden);
        check_widths("mlp", &widths)?;
        check_widths("mlp output", cfg.output_dim.as_slice())?;
        check_dropout("mlp", cfg.dropout)?;
        let features = mlp_stack(
            &scope.sub("features"),
            &widths,
            cfg.activation,
            cfg.dropout,
            true,
            rng,
            dtype,
            dev,
        )?;
        let feature_dim = widths.last().copied().unwrap_or(cfg.input_dim);
        let classifier = match cfg.output_dim {
            Some(o) => Some(Linear::new(
                &scope.sub("classifier"),
                feature_dim,
                o,
                true,
                rng,
                dtype,
                dev,
            )?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            scope: scope.clone(),
            features,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    /// The head, when there is one.
    pub fn head(&self) -> Option<&Linear> {
        self.classifier.as_ref()
    }

    /// Applies the head to features (identity without a head).
    pub fn head_forward(&self, features: &Tensor) -> Result<Tensor> {
        match &self.classifier {
            Some(c) => c.forward(features),
            None => Ok(features.clone()),
        }
    }
}

impl Mlp {
    /// The scope the network was built under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Removes the head from the network and hands it over (the parameters stay in the
    /// store): what [`crate::Classifier`] does to put the head after its own bottleneck.
    pub fn take_head(&mut self) -> Option<Linear> {
        self.classifier.take()
    }

    /// The hidden layers applied to `x` `[N, input_dim]`: the features `[N, D]`.
    pub fn hidden_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features.forward_t(x, train)
    }

    /// Width of the features (the last hidden width, or the input width without hidden
    /// layers).
    pub fn hidden_dim(&self) -> usize {
        self.cfg
            .hidden
            .last()
            .copied()
            .unwrap_or(self.cfg.input_dim)
    }

    /// The hidden linear layers' prefixes (`features.0`, `features.2`, ...), input side first.
    pub fn hidden_blocks(&self) -> Vec<String> {
        let stride = if self.cfg.dropout > 0.0 { 3 } else { 2 };
        (0..self.cfg.hidden.len())
            .map(|i| self.scope.path(&format!("features.{}", stride * i)))
            .collect()
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head_forward(&self.features_t(x, train)?)
    }
}
