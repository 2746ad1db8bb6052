//! The LeNet-style network of the DANN paper's MNIST experiments (Ganin & Lempitsky, ICML
//! 2015; Ganin et al., JMLR 2016): feature extractor `conv 5×5 (32) → ReLU → max-pool 2 →
//! conv 5×5 (48) → ReLU → max-pool 2`, which turns a 28×28 image into 48·4·4 = 768 features,
//! and the label predictor `768 → 100 → 100 → 10` with ReLUs.
//!
//! Names as PyTorch's `nn.Sequential`s would give them: `features.0.weight` (first conv),
//! `features.3.weight` (second conv), `classifier.0.weight`, `classifier.2.weight`,
//! `classifier.4.weight` (the three linear layers). The domain classifier is a separate
//! [`DomainDiscriminator`](crate::heads::DomainDiscriminator) on the same features.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::{Conv2dConfig, SeededRng};

use crate::layers::{Activation, ModuleT};
use crate::params::Scope;
use crate::sequential::{Sequential, SequentialBuilder, check_widths, mlp_stack};
use crate::{ModelError, Result};

/// Shape of a [`DannLeNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeNetConfig {
    /// Input channels (3 for MNIST-M and SVHN, 1 for plain MNIST).
    pub in_channels: usize,
    /// Input height and width (square), 28 in the paper.
    pub input_size: usize,
    /// Width of the two hidden layers of the label predictor (100).
    pub hidden: usize,
    /// Number of classes (10).
    pub num_classes: usize,
}

impl Default for LeNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            input_size: 28,
            hidden: 100,
            num_classes: 10,
        }
    }
}

impl LeNetConfig {
    /// Spatial side of the feature map after both conv/pool stages.
    pub fn feature_side(&self) -> Result<usize> {
        let after1 = self.input_size.checked_sub(4).map(|s| s / 2);
        let after2 = after1.and_then(|s| s.checked_sub(4)).map(|s| s / 2);
        match after2 {
            Some(s) if s > 0 => Ok(s),
            _ => Err(ModelError::Config(format!(
                "lenet: input size {} is too small (at least 16)",
                self.input_size
            ))),
        }
    }

    /// Width of the flattened features (768 for 28×28 input).
    pub fn feature_dim(&self) -> Result<usize> {
        let s = self.feature_side()?;
        Ok(48 * s * s)
    }
}

/// The DANN paper's LeNet: features and label predictor.
#[derive(Debug)]
pub struct DannLeNet {
    scope: Scope,
    cfg: LeNetConfig,
    feature_dim: usize,
    features: Sequential,
    classifier: Sequential,
}

impl DannLeNet {
    /// Builds the network under `scope`, initialised from `rng`.
    pub fn new(
        scope: &Scope,
        cfg: &LeNetConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        check_widths("lenet", &[cfg.in_channels, cfg.hidden, cfg.num_classes])?;
        let feature_dim = cfg.feature_dim()?;
        let mut b = SequentialBuilder::new(&scope.sub("features"), rng, dtype, dev);
        b.conv2d(cfg.in_channels, 32, 5, Conv2dConfig::default())?
            .activation(Activation::Relu)
            .max_pool(2, 2);
        b.conv2d(32, 48, 5, Conv2dConfig::default())?
            .activation(Activation::Relu)
            .max_pool(2, 2);
        let features = b.build();
        let classifier = mlp_stack(
            &scope.sub("classifier"),
            &[feature_dim, cfg.hidden, cfg.hidden, cfg.num_classes],
            Activation::Relu,
            0.0,
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
    pub fn config(&self) -> &LeNetConfig {
        &self.cfg
    }

    /// The label predictor applied to features: logits (N, classes).
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_t(features, train)
    }
}

impl DannLeNet {
    /// The scope the network was built under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Removes the classifier layers from the network and hands them over (the parameters
    /// stay in the store; the network's own head becomes the identity).
    pub fn take_classifier(&mut self) -> Sequential {
        std::mem::take(&mut self.classifier)
    }

    /// (N, C, H, W) → (N, 768) for 28×28 input.
    /// The flattened convolutional features (the input of the classifier).
    pub fn conv_features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4().map_err(|_| ModelError::ShapeMismatch {
            name: "input of lenet".into(),
            expected: vec![
                0,
                self.cfg.in_channels,
                self.cfg.input_size,
                self.cfg.input_size,
            ],
            got: x.dims().to_vec(),
        })?;
        if c != self.cfg.in_channels || h != self.cfg.input_size || w != self.cfg.input_size {
            return Err(ModelError::ShapeMismatch {
                name: "input of lenet".into(),
                expected: vec![
                    0,
                    self.cfg.in_channels,
                    self.cfg.input_size,
                    self.cfg.input_size,
                ],
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

impl ModuleT for DannLeNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head_forward(&self.conv_features(x, train)?, train)
    }
}
