//! An ordered stack of layers named like PyTorch's `nn.Sequential`: the layer at position `i`
//! registers its parameters under `i` (`features.0.weight`, `classifier.2.bias`), and
//! parameter-free layers (activations, pooling, dropout) take a position too, so the names
//! match a PyTorch module built the same way.

use std::fmt;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use xfer_ops::{Conv2dConfig, SeededRng};

use crate::Result;
use crate::layers::{Activation, BatchNorm, Conv2d, Dropout, LayerNorm, Linear, Module, ModuleT};
use crate::params::Scope;

/// One entry of a [`Sequential`].
pub enum Layer {
    /// Fully connected.
    Linear(Linear),
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// Batch norm (train/eval).
    BatchNorm(BatchNorm),
    /// Layer norm.
    LayerNorm(LayerNorm),
    /// Element-wise activation.
    Activation(Activation),
    /// Seeded dropout.
    Dropout(Dropout),
    /// Max pooling with a square window.
    MaxPool2d {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling with a square window.
    AvgPool2d {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// `(N, d1, d2, …) → (N, d1·d2·…)`.
    Flatten,
    /// Any other layer.
    Custom(Box<dyn ModuleT + Send + Sync>),
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Linear(l) => write!(f, "Linear({})", l.weight.name()),
            Layer::Conv2d(c) => write!(f, "Conv2d({})", c.weight.name()),
            Layer::BatchNorm(b) => write!(f, "BatchNorm({})", b.weight.name()),
            Layer::LayerNorm(l) => write!(f, "LayerNorm({})", l.weight.name()),
            Layer::Activation(a) => write!(f, "{a:?}"),
            Layer::Dropout(d) => write!(f, "{d:?}"),
            Layer::MaxPool2d { kernel, stride } => write!(f, "MaxPool2d({kernel}, {stride})"),
            Layer::AvgPool2d { kernel, stride } => write!(f, "AvgPool2d({kernel}, {stride})"),
            Layer::Flatten => write!(f, "Flatten"),
            Layer::Custom(_) => write!(f, "Custom"),
        }
    }
}

impl ModuleT for Layer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Layer::Linear(l) => l.forward(x),
            Layer::Conv2d(c) => c.forward(x),
            Layer::BatchNorm(b) => b.forward_t(x, train),
            Layer::LayerNorm(l) => l.forward(x),
            Layer::Activation(a) => a.forward(x),
            Layer::Dropout(d) => d.forward_t(x, train),
            Layer::MaxPool2d { kernel, stride } => Ok(xfer_ops::max_pool2d(x, *kernel, *stride)?),
            Layer::AvgPool2d { kernel, stride } => Ok(xfer_ops::avg_pool2d(x, *kernel, *stride)?),
            Layer::Flatten => Ok(x.flatten_from(1)?),
            Layer::Custom(m) => m.forward_t(x, train),
        }
    }
}

/// Layers applied in order.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    /// An empty stack (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: Layer) {
        self.layers.push(layer);
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Number of layers (parameter-free ones included).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there is no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl ModuleT for Sequential {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward_t(&h, train)?;
        }
        Ok(h)
    }
}

/// Builds a [`Sequential`] under a scope, numbering layers as PyTorch does and drawing every
/// initial value (and every dropout seed) from one [`SeededRng`].
pub struct SequentialBuilder<'a> {
    scope: Scope,
    rng: &'a mut SeededRng,
    dtype: DType,
    dev: Device,
    seq: Sequential,
}

impl<'a> SequentialBuilder<'a> {
    /// A builder whose layers register under `scope` (`scope.0.weight`, ...).
    pub fn new(scope: &Scope, rng: &'a mut SeededRng, dtype: DType, dev: &Device) -> Self {
        Self {
            scope: scope.clone(),
            rng,
            dtype,
            dev: dev.clone(),
            seq: Sequential::new(),
        }
    }

    fn next_scope(&self) -> Scope {
        self.scope.sub(&self.seq.len().to_string())
    }

    /// Appends `Linear(in_dim, out_dim)` with a bias.
    pub fn linear(&mut self, in_dim: usize, out_dim: usize) -> Result<&mut Self> {
        let s = self.next_scope();
        let l = Linear::new(&s, in_dim, out_dim, true, self.rng, self.dtype, &self.dev)?;
        self.seq.push(Layer::Linear(l));
        Ok(self)
    }

    /// Appends a square-kernel convolution with a bias.
    pub fn conv2d(
        &mut self,
        in_ch: usize,
        out_ch: usize,
        k: usize,
        cfg: Conv2dConfig,
    ) -> Result<&mut Self> {
        let s = self.next_scope();
        let c = Conv2d::new(
            &s, in_ch, out_ch, k, cfg, true, self.rng, self.dtype, &self.dev,
        )?;
        self.seq.push(Layer::Conv2d(c));
        Ok(self)
    }

    /// Appends a batch norm over `c` channels (or features).
    pub fn batch_norm(&mut self, c: usize) -> Result<&mut Self> {
        let s = self.next_scope();
        let b = BatchNorm::new(&s, c, self.dtype, &self.dev)?;
        self.seq.push(Layer::BatchNorm(b));
        Ok(self)
    }

    /// Appends a layer norm over `d` features.
    pub fn layer_norm(&mut self, d: usize, eps: f64) -> Result<&mut Self> {
        let s = self.next_scope();
        let l = LayerNorm::new(&s, d, eps, self.dtype, &self.dev)?;
        self.seq.push(Layer::LayerNorm(l));
        Ok(self)
    }

    /// Appends an activation (skipped when it is the identity, so no index is used).
    pub fn activation(&mut self, a: Activation) -> &mut Self {
        if a != Activation::Identity {
            self.seq.push(Layer::Activation(a));
        }
        self
    }

    /// Appends dropout with probability `p` and a seed drawn from the builder's generator
    /// (skipped when `p = 0`, so no index is used).
    pub fn dropout(&mut self, p: f64) -> Result<&mut Self> {
        if p != 0.0 {
            let seed: u64 = self.rng.rng().random();
            self.seq.push(Layer::Dropout(Dropout::new(p, seed)?));
        }
        Ok(self)
    }

    /// Appends max pooling.
    pub fn max_pool(&mut self, kernel: usize, stride: usize) -> &mut Self {
        self.seq.push(Layer::MaxPool2d { kernel, stride });
        self
    }

    /// Appends average pooling.
    pub fn avg_pool(&mut self, kernel: usize, stride: usize) -> &mut Self {
        self.seq.push(Layer::AvgPool2d { kernel, stride });
        self
    }

    /// Appends a flatten.
    pub fn flatten(&mut self) -> &mut Self {
        self.seq.push(Layer::Flatten);
        self
    }

    /// Appends any layer (its parameters should live under [`SequentialBuilder::next_path`]).
    pub fn custom(&mut self, m: impl ModuleT + Send + Sync + 'static) -> &mut Self {
        self.seq.push(Layer::Custom(Box::new(m)));
        self
    }

    /// The scope the next layer registers under.
    pub fn next_path(&self) -> Scope {
        self.next_scope()
    }

    /// The generator (for custom layers).
    pub fn rng(&mut self) -> &mut SeededRng {
        self.rng
    }

    /// The finished stack.
    pub fn build(self) -> Sequential {
        self.seq
    }
}

/// A stack of `Linear → activation → dropout` blocks through `widths[0] → … → widths[n]`,
/// with the activation and dropout after every layer when `last_activation`, otherwise after
/// every layer but the last (then the output is raw logits or scores).
#[allow(clippy::too_many_arguments)]
pub(crate) fn mlp_stack(
    scope: &Scope,
    widths: &[usize],
    activation: Activation,
    dropout: f64,
    last_activation: bool,
    rng: &mut SeededRng,
    dtype: DType,
    dev: &Device,
) -> Result<Sequential> {
    let mut b = SequentialBuilder::new(scope, rng, dtype, dev);
    let n = widths.len().saturating_sub(1);
    for (i, w) in widths.windows(2).enumerate() {
        if let [a, c] = w {
            b.linear(*a, *c)?;
            if i + 1 < n || last_activation {
                b.activation(activation);
                b.dropout(dropout)?;
            }
        }
    }
    Ok(b.build())
}

/// Refuses zero widths in a configuration.
pub(crate) fn check_widths(what: &str, widths: &[usize]) -> Result<()> {
    if widths.contains(&0) {
        return Err(crate::ModelError::Config(format!(
            "{what}: widths must be positive, got {widths:?}"
        )));
    }
    Ok(())
}

/// Refuses a dropout probability outside `[0, 1)`.
pub(crate) fn check_dropout(what: &str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(crate::ModelError::Config(format!(
            "{what}: dropout must be in [0, 1), got {p}"
        )));
    }
    Ok(())
}
