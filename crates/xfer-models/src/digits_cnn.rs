//! A small CNN for 8×8 digit images (scikit-learn's `load_digits`, one channel):
//! `conv 3×3 pad 1 (c1) → ReLU → max-pool 2 → conv 3×3 pad 1 (c2) → ReLU → max-pool 2`
//! (8×8 → 4×4 → 2×2, so `4·c2` features) and a classifier `4·c2 → hidden → classes`.
//!
//! Names: `features.0.weight`, `features.3.weight`, `classifier.0.weight`,
//! `classifier.2.weight`.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::{Conv2dConfig, SeededRng};

use crate::layers::{Activation, ModuleT};
use crate::params::Scope;
use crate::sequential::{Sequential, SequentialBuilder, check_dropout, check_widths, mlp_stack};
use crate::{ModelError, Result};

/// Shape of a [`DigitsCnn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigitsCnnConfig {
    /// Input channels (1).
    pub in_channels: usize,
    /// Input height and width (8; must be a multiple of 4).
    pub input_size: usize,
    /// Channels of the two convolutions (16, 32).
    pub channels: (usize, usize),
    /// Hidden width of the classifier (64).
    pub hidden: usize,
    /// Number of classes (10).
    pub num_classes: usize,
    /// Dropout before the last layer (0 for none).
    #[serde(default)]
    pub dropout: f64,
}

impl Default for DigitsCnnConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            input_size: 8,
            channels: (16, 32),
            hidden: 64,
            num_classes: 10,
            dropout: 0.0,
        }
    }
}

/// The small digits CNN.
#[derive(Debug)]
pub struct DigitsCnn {
    scope: Scope,
    cfg: DigitsCnnConfig,
    feature_dim: usize,
    features: Sequential,
    classifier: Sequential,
}

impl DigitsCnn {
    /// Builds the network under `scope`, initialised from `rng`.
    pub fn new(
        scope: &Scope,
        cfg: &DigitsCnnConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        check_widths(
            "digits cnn",
            &[
                cfg.in_channels,
                cfg.channels.0,
                cfg.channels.1,
                cfg.hidden,
                cfg.num_classes,
            ],
        )?;
        check_dropout("digits cnn", cfg.dropout)?;
        if cfg.input_size < 4 || !cfg.input_size.is_multiple_of(4) {
            return Err(ModelError::Config(format!(
                "digits cnn: input size must be a positive multiple of 4, got {}",
                cfg.input_size
            )));
        }
        let side = cfg.input_size / 4;
        let feature_dim = cfg.channels.1 * side * side;
        let pad1 = Conv2dConfig {
            padding: 1,
            ..Conv2dConfig::default()
        };
        let mut b = SequentialBuilder::new(&scope.sub("features"), rng, dtype, dev);
        b.conv2d(cfg.in_channels, cfg.channels.0, 3, pad1)?
            .activation(Activation::Relu)
            .max_pool(2, 2);
        b.conv2d(cfg.channels.0, cfg.channels.1, 3, pad1)?
            .activation(Activation::Relu)
            .max_pool(2, 2);
        let features = b.build();
        let classifier = mlp_stack(
            &scope.sub("classifier"),
            &[feature_dim, cfg.hidden, cfg.num_classes],
            Activation::Relu,
            cfg.dropout,
            false,
            rng,
            dtype,
            dev,
        )?;
        Ok(Self {
            scope: scope.clone(),
            cfg: cfg.clone(),
            feature_dim,
            features,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DigitsCnnConfig {
        &self.cfg
    }

    /// The classifier applied to features: logits (N, classes).
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_t(features, train)
    }
}

impl DigitsCnn {
    /// The scope the network was built under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Removes the classifier layers from the network and hands them over (the parameters
    /// stay in the store; the network's own head becomes the identity).
    pub fn take_classifier(&mut self) -> Sequential {
        std::mem::take(&mut self.classifier)
    }

    /// (N, 1, 8, 8) → (N, 4·c2).
    /// The flattened convolutional features (the input of the classifier).
    pub fn conv_features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let s = self.cfg.input_size;
        let ok =
            matches!(x.dims(), [_, c, h, w] if *c == self.cfg.in_channels && *h == s && *w == s);
        if !ok {
            return Err(ModelError::ShapeMismatch {
                name: "input of digits cnn".into(),
                expected: vec![0, self.cfg.in_channels, s, s],
                got: x.dims().to_vec(),
            });
        }
        Ok(self.features.forward_t(x, train)?.flatten_from(1)?)
    }
    /// Width of [`Self::conv_features`].
    pub fn conv_feature_dim(&self) -> usize {
        self.feature_dim
    }
}

impl ModuleT for DigitsCnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head_forward(&self.conv_features(x, train)?, train)
    }
}
