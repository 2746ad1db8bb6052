//! Heads that sit on a feature extractor: a classifier, a domain discriminator for
//! domain-adversarial training, and the embedding heads `f` and `g` of zero-shot learning.
//!
//! Each head is a [`Sequential`] registered directly under the scope it is given, so a head
//! built under `classifier` has parameters `classifier.0.weight`, `classifier.0.bias`, ...

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::layers::{Activation, ModuleT};
use crate::params::Scope;
use crate::sequential::{Sequential, SequentialBuilder, check_dropout, check_widths, mlp_stack};
use crate::{ModelError, Result};

/// Shape of a [`ClassifierHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierHeadConfig {
    /// Feature width.
    pub in_dim: usize,
    /// Hidden widths (empty: one linear layer).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Activation after hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after hidden activations.
    #[serde(default)]
    pub dropout: f64,
}

/// `features → logits`: linear layers with activations between them.
#[derive(Debug)]
pub struct ClassifierHead {
    net: Sequential,
}

impl ClassifierHead {
    /// Builds the head under `scope`.
    pub fn new(
        scope: &Scope,
        cfg: &ClassifierHeadConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let mut widths = vec![cfg.in_dim];
        widths.extend(&cfg.hidden);
        widths.push(cfg.num_classes);
        check_widths("classifier head", &widths)?;
        check_dropout("classifier head", cfg.dropout)?;
        let net = mlp_stack(
            scope,
            &widths,
            cfg.activation,
            cfg.dropout,
            false,
            rng,
            dtype,
            dev,
        )?;
        Ok(Self { net })
    }
}

impl ModuleT for ClassifierHead {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.net.forward_t(x, train)
    }
}

/// Shape of a [`DomainDiscriminator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainDiscriminatorConfig {
    /// Feature width.
    pub in_dim: usize,
    /// Width of every hidden layer.
    pub hidden: usize,
    /// Number of hidden layers (0: logistic regression on the features — too weak for DANN).
    pub depth: usize,
    /// Batch norm after every hidden linear layer (as TLlib's discriminator).
    #[serde(default)]
    pub batch_norm: bool,
    /// Activation of the hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after hidden activations.
    #[serde(default)]
    pub dropout: f64,
    /// Output width: 1 (a logit for binary cross-entropy) or 2 (two-class logits).
    pub outputs: usize,
}

impl DomainDiscriminatorConfig {
    /// `depth` hidden layers of `hidden` units, ReLU, batch norm, one output logit.
    pub fn new(in_dim: usize, hidden: usize, depth: usize) -> Self {
        Self {
            in_dim,
            hidden,
            depth,
            batch_norm: true,
            activation: Activation::Relu,
            dropout: 0.0,
            outputs: 1,
        }
    }
}

/// The domain classifier `G_d` of DANN (Ganin & Lempitsky 2015): features → domain logits.
///
/// The lecture warns that the discriminator must be strong, or the features only *look*
/// aligned; depth and width are configurable. Put a gradient reversal layer in front of it
/// ([`DomainDiscriminator::forward_reversed`]) so that `θ_f ← θ_f − μ(∂L_y/∂θ_f − λ ∂L_d/∂θ_f)`.
#[derive(Debug)]
pub struct DomainDiscriminator {
    net: Sequential,
}

impl DomainDiscriminator {
    /// Builds the discriminator under `scope`: `[Linear, (BatchNorm), act, (Dropout)] × depth`,
    /// then `Linear(hidden, outputs)`.
    pub fn new(
        scope: &Scope,
        cfg: &DomainDiscriminatorConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        check_widths("domain discriminator", &[cfg.in_dim, cfg.outputs])?;
        if cfg.depth > 0 {
            check_widths("domain discriminator hidden", &[cfg.hidden])?;
        }
        check_dropout("domain discriminator", cfg.dropout)?;
        let mut b = SequentialBuilder::new(scope, rng, dtype, dev);
        let mut width = cfg.in_dim;
        for _ in 0..cfg.depth {
            b.linear(width, cfg.hidden)?;
            if cfg.batch_norm {
                b.batch_norm(cfg.hidden)?;
            }
            b.activation(cfg.activation);
            b.dropout(cfg.dropout)?;
            width = cfg.hidden;
        }
        b.linear(width, cfg.outputs)?;
        Ok(Self { net: b.build() })
    }

    /// `G_d(R_λ(x))`: the discriminator behind a gradient reversal layer with weight `lambda`.
    pub fn forward_reversed(&self, x: &Tensor, lambda: f64, train: bool) -> Result<Tensor> {
        let r = xfer_ops::grad_reverse(x, lambda)?;
        self.net.forward_t(&r, train)
    }
}

impl ModuleT for DomainDiscriminator {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.net.forward_t(x, train)
    }
}

/// Shape of an [`EmbeddingHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingHeadConfig {
    /// Input width (features for `f`, attribute vectors for `g`).
    pub in_dim: usize,
    /// Hidden widths (empty: a linear projection).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Width of the shared embedding space.
    pub out_dim: usize,
    /// Activation of the hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Whether outputs are L2-normalised (`f(x)·g(y)` is then a cosine).
    #[serde(default)]
    pub normalize: bool,
}

/// A projection into an embedding space: the `f` (inputs) or `g` (class attributes) of
/// attribute-embedding zero-shot learning.
#[derive(Debug)]
pub struct EmbeddingHead {
    net: Sequential,
    normalize: bool,
}

/// `x / √(Σ x² + ε)` over the last dimension (gradients flow through every op).
pub fn l2_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x
        .rank()
        .checked_sub(1)
        .ok_or_else(|| ModelError::ShapeMismatch {
            name: "input of l2_normalize".into(),
            expected: vec![0],
            got: vec![],
        })?;
    let norm = (x.sqr()?.sum_keepdim(d)? + eps)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

impl EmbeddingHead {
    /// Builds the head under `scope`.
    pub fn new(
        scope: &Scope,
        cfg: &EmbeddingHeadConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let mut widths = vec![cfg.in_dim];
        widths.extend(&cfg.hidden);
        widths.push(cfg.out_dim);
        check_widths("embedding head", &widths)?;
        let net = mlp_stack(scope, &widths, cfg.activation, 0.0, false, rng, dtype, dev)?;
        Ok(Self {
            net,
            normalize: cfg.normalize,
        })
    }
}

impl ModuleT for EmbeddingHead {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.net.forward_t(x, train)?;
        if self.normalize {
            l2_normalize(&y, 1e-12)
        } else {
            Ok(y)
        }
    }
}

/// Shape of [`ZeroShotHeads`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotConfig {
    /// Width of the input features `x`.
    pub feature_dim: usize,
    /// Width of the class attribute vectors `y`.
    pub attribute_dim: usize,
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    /// Hidden widths of `f`.
    #[serde(default)]
    pub f_hidden: Vec<usize>,
    /// Hidden widths of `g`.
    #[serde(default)]
    pub g_hidden: Vec<usize>,
    /// Activation of the hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Whether both embeddings are L2-normalised.
    #[serde(default)]
    pub normalize: bool,
}

/// The attribute-embedding pair `f` (under `f.`) and `g` (under `g.`): the score of class
/// `c` for input `n` is `f(xₙ)·g(y_c)`, and inference is `argmax_c f(x)·g(y_c)` over the
/// classes allowed at test time (LECTURE.md §4).
#[derive(Debug)]
pub struct ZeroShotHeads {
    /// Embeds inputs.
    pub f: EmbeddingHead,
    /// Embeds class attribute vectors.
    pub g: EmbeddingHead,
}

impl ZeroShotHeads {
    /// Builds `f` and `g` under `scope.f` and `scope.g`.
    pub fn new(
        scope: &Scope,
        cfg: &ZeroShotConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let f = EmbeddingHead::new(
            &scope.sub("f"),
            &EmbeddingHeadConfig {
                in_dim: cfg.feature_dim,
                hidden: cfg.f_hidden.clone(),
                out_dim: cfg.embed_dim,
                activation: cfg.activation,
                normalize: cfg.normalize,
            },
            rng,
            dtype,
            dev,
        )?;
        let g = EmbeddingHead::new(
            &scope.sub("g"),
            &EmbeddingHeadConfig {
                in_dim: cfg.attribute_dim,
                hidden: cfg.g_hidden.clone(),
                out_dim: cfg.embed_dim,
                activation: cfg.activation,
                normalize: cfg.normalize,
            },
            rng,
            dtype,
            dev,
        )?;
        Ok(Self { f, g })
    }

    /// Compatibility scores `S[n, c] = f(xₙ)·g(y_c)`: `x` (N, feature_dim), `attributes`
    /// (C, attribute_dim) → (N, C).
    pub fn scores(&self, x: &Tensor, attributes: &Tensor, train: bool) -> Result<Tensor> {
        let fx = self.f.forward_t(x, train)?;
        let gy = self.g.forward_t(attributes, train)?;
        Ok(fx.matmul(&gy.t()?)?)
    }

    /// `argmax_c f(x)·g(y_c)` for each input (indices into the rows of `attributes`).
    pub fn predict(&self, x: &Tensor, attributes: &Tensor) -> Result<Vec<u32>> {
        Ok(self
            .scores(x, attributes, false)?
            .argmax(1)?
            .to_dtype(DType::U32)?
            .to_vec1()?)
    }
}
