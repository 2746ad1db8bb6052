//! Layers with named parameters. Each registers its parameters in a [`Scope`] under
//! PyTorch's names (`weight`, `bias`, `running_mean`, ...), so torchvision and Hugging Face
//! state dicts load by name.
//!
//! Layers that behave differently in training and evaluation take a `train: bool`
//! ([`ModuleT`]); the others implement [`Module`].

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use xfer_ops::{Conv2dConfig, SeededRng};

use crate::params::{Param, Scope};
use crate::{ModelError, Result};

/// A layer whose output depends only on its input.
pub trait Module {
    /// Applies the layer.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A layer that behaves differently when training (batch norm, dropout).
pub trait ModuleT {
    /// Applies the layer; `train` selects training behaviour.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
}

impl<M: Module> ModuleT for M {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.forward(x)
    }
}

/// Fully connected layer `y = x Wᵀ + b`, `W` of shape (out, in) as in PyTorch, through
/// [`xfer_ops::linear()`] (one fused op on the CPU).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `weight`, (out, in).
    pub weight: Param,
    /// `bias`, (out), when present.
    pub bias: Option<Param>,
}

impl Linear {
    /// A new layer with PyTorch's default initialisation `U(−1/√in, 1/√in)`.
    pub fn new(
        scope: &Scope,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let weight = scope.add(
            "weight",
            rng.torch_default(&[out_dim, in_dim], in_dim, dtype, dev)?,
        )?;
        let bias = if bias {
            Some(scope.add("bias", rng.torch_default(&[out_dim], in_dim, dtype, dev)?)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// A new head in place of an old one: removes whatever `weight`/`bias` `scope` holds,
    /// then registers a fresh layer there with a bias, initialised as PyTorch's `nn.Linear`
    /// from `rng` (`model.fc = nn.Linear(in_dim, out_dim)`).
    pub fn replace(
        scope: &Scope,
        in_dim: usize,
        out_dim: usize,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        scope.store().remove(&scope.path("weight"));
        scope.store().remove(&scope.path("bias"));
        Self::new(scope, in_dim, out_dim, true, rng, dtype, dev)
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.var().dims()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.var().dims()[0]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_dim = self.in_dim();
        if x.rank() == 0 || x.dim(x.rank() - 1)? != in_dim {
            return Err(ModelError::ShapeMismatch {
                name: format!("input of {}", self.weight.name()),
                expected: vec![in_dim],
                got: x.dims().to_vec(),
            });
        }
        let b = self.bias.as_ref().map(|b| b.tensor());
        Ok(xfer_ops::linear(x, &self.weight.tensor(), b.as_ref())?)
    }
}

/// 2-D convolution layer over NCHW input, through [`xfer_ops::conv2d`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `weight`, (out, in/groups, k, k).
    pub weight: Param,
    /// `bias`, (out), when present.
    pub bias: Option<Param>,
    /// Stride, padding, dilation, groups.
    pub cfg: Conv2dConfig,
}

impl Conv2d {
    /// A new square-kernel convolution with PyTorch's default initialisation.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scope: &Scope,
        in_ch: usize,
        out_ch: usize,
        k: usize,
        cfg: Conv2dConfig,
        bias: bool,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let groups = cfg.groups.max(1);
        if !in_ch.is_multiple_of(groups) || !out_ch.is_multiple_of(groups) {
            return Err(ModelError::Config(format!(
                "{}: channels {in_ch}→{out_ch} not divisible by groups {groups}",
                scope.path("weight")
            )));
        }
        let fan_in = in_ch / groups * k * k;
        let weight = scope.add(
            "weight",
            rng.torch_default(&[out_ch, in_ch / groups, k, k], fan_in, dtype, dev)?,
        )?;
        let bias = if bias {
            Some(scope.add("bias", rng.torch_default(&[out_ch], fan_in, dtype, dev)?)?)
        } else {
            None
        };
        Ok(Self { weight, bias, cfg })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.tensor());
        Ok(xfer_ops::conv2d(
            x,
            &self.weight.tensor(),
            b.as_ref(),
            self.cfg,
        )?)
    }
}

/// Batch norm over (N, C) or (N, C, H, W) with PyTorch's names (`weight`, `bias`,
/// `running_mean`, `running_var`) and semantics: in training, batch statistics normalise and
/// `running ← (1 − m)·running + m·batch` (unbiased variance); in evaluation, the running
/// statistics normalise.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// `weight` (γ), (C).
    pub weight: Param,
    /// `bias` (β), (C).
    pub bias: Param,
    /// `running_mean` buffer, (C).
    pub running_mean: Param,
    /// `running_var` buffer, (C).
    pub running_var: Param,
    /// ε added to the variance.
    pub eps: f64,
    /// Momentum of the running statistics (PyTorch's default 0.1).
    pub momentum: f64,
}

impl BatchNorm {
    /// A new batch norm over `c` channels (γ = 1, β = 0, running mean 0, running variance 1).
    pub fn new(scope: &Scope, c: usize, dtype: DType, dev: &Device) -> Result<Self> {
        Ok(Self {
            weight: scope.add("weight", Tensor::ones(c, dtype, dev)?)?,
            bias: scope.add("bias", Tensor::zeros(c, dtype, dev)?)?,
            running_mean: scope.add_buffer("running_mean", Tensor::zeros(c, dtype, dev)?)?,
            running_var: scope.add_buffer("running_var", Tensor::ones(c, dtype, dev)?)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, xfer_ops::Activation::Identity)
    }
}

impl BatchNorm {
    /// `act(BN(x))`: in training mode one op ([`xfer_ops::batch_norm_act_train`]: the
    /// activation in the normalisation's pass, one autograd node), in evaluation mode batch
    /// norm with the running statistics followed by the activation. Conv → BN → ReLU(6)
    /// blocks call this rather than the two ops.
    pub fn forward_act(
        &self,
        x: &Tensor,
        train: bool,
        act: xfer_ops::Activation,
    ) -> Result<Tensor> {
        let (g, b) = (self.weight.tensor(), self.bias.tensor());
        if train {
            let (y, mu, var) = xfer_ops::batch_norm_act_train(x, &g, &b, self.eps, act)?;
            let m = self.momentum;
            let rm = ((self.running_mean.var().as_tensor() * (1.0 - m))?
                + (mu.to_dtype(g.dtype())? * m)?)?;
            let rv = ((self.running_var.var().as_tensor() * (1.0 - m))?
                + (var.to_dtype(g.dtype())? * m)?)?;
            self.running_mean.var().set(&rm)?;
            self.running_var.var().set(&rv)?;
            Ok(y)
        } else {
            let c = g.dim(0)?;
            if x.rank() < 2 || x.dim(1)? != c {
                return Err(ModelError::ShapeMismatch {
                    name: format!("input of {}", self.weight.name()),
                    expected: vec![0, c],
                    got: x.dims().to_vec(),
                });
            }
            let y = xfer_ops::batch_norm_eval(
                x,
                &g,
                &b,
                &self.running_mean.tensor(),
                &self.running_var.tensor(),
                self.eps,
            )?;
            Ok(match act {
                xfer_ops::Activation::Identity => y,
                xfer_ops::Activation::Relu => xfer_ops::relu(&y)?,
                xfer_ops::Activation::Relu6 => xfer_ops::relu6(&y)?,
            })
        }
    }
}

/// Layer norm over the last dimension (`weight`, `bias`), through [`xfer_ops::layer_norm`].
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// `weight` (γ).
    pub weight: Param,
    /// `bias` (β).
    pub bias: Param,
    /// ε added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// A new layer norm over `d` features (γ = 1, β = 0).
    pub fn new(scope: &Scope, d: usize, eps: f64, dtype: DType, dev: &Device) -> Result<Self> {
        Ok(Self {
            weight: scope.add("weight", Tensor::ones(d, dtype, dev)?)?,
            bias: scope.add("bias", Tensor::zeros(d, dtype, dev)?)?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(xfer_ops::layer_norm(
            x,
            &self.weight.tensor(),
            &self.bias.tensor(),
            self.eps,
        )?)
    }
}

/// Embedding table (`weight`, (vocab, d)): row lookup by integer id.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `weight`, (vocab, d).
    pub weight: Param,
}

impl Embedding {
    /// A new table initialised `N(0, 1)` as in PyTorch.
    pub fn new(
        scope: &Scope,
        vocab: usize,
        d: usize,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: scope.add("weight", rng.normal(&[vocab, d], 0.0, 1.0, dtype, dev)?)?,
        })
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let vocab = self.weight.var().dims()[0];
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
        let max = if flat.elem_count() == 0 {
            0
        } else {
            flat.max(0)?.to_scalar::<u32>()? as usize
        };
        if flat.elem_count() > 0 && max >= vocab {
            return Err(ModelError::Config(format!(
                "{}: token id {max} out of range for a vocabulary of {vocab}",
                self.weight.name()
            )));
        }
        let rows = self.weight.tensor().index_select(&flat, 0)?;
        let mut shape = ids.dims().to_vec();
        shape.push(rows.dim(1)?);
        Ok(rows.reshape(shape)?)
    }
}

/// Inverted dropout with a seeded mask: in training each value is kept with probability
/// `1 − p` and scaled by `1/(1 − p)`; in evaluation it is the identity.
///
/// Where the masks come from: inside a training step (an [`xfer_ops::StepRngScope`], which
/// the trainer opens around every step's forward pass) the mask of the scope's `k`-th draw is
/// drawn from `derive_seed(step seed, [k])` — a pure function of the run's seed, the step and
/// the forward order, so a run resumed from a checkpoint draws the same masks as an
/// uninterrupted one. Outside a scope the layer draws from its own generator, seeded
/// with the layer's seed (reproducible from the start, but not saved by a checkpoint).
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    rng: Mutex<SeededRng>,
}

impl Dropout {
    /// A dropout layer with drop probability `p ∈ [0, 1)` and its own seeded generator.
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::Config(format!(
                "dropout probability must be in [0, 1), got {p}"
            )));
        }
        Ok(Self {
            p,
            rng: Mutex::new(SeededRng::new(seed)),
        })
    }
}

impl ModuleT for Dropout {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let mask = match xfer_ops::scoped_rng() {
            Some(mut rng) => rng.bernoulli_mask(x.dims(), keep, x.dtype(), x.device())?,
            None => {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                rng.bernoulli_mask(x.dims(), keep, x.dtype(), x.device())?
            }
        };
        Ok((x * mask)?.affine(1.0 / keep, 0.0)?)
    }
}

/// Element-wise activations (serialised in lower case: `"relu"`, `"gelu"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^{−x})`.
    Sigmoid,
    /// GELU with the exact erf form (as BERT uses).
    Gelu,
    /// Identity.
    Identity,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => xfer_ops::relu(x)?,
            Activation::Tanh => x.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Activation::Gelu => x.gelu_erf()?,
            Activation::Identity => x.clone(),
        })
    }
}

impl std::str::FromStr for Activation {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            "sigmoid" => Ok(Activation::Sigmoid),
            "gelu" => Ok(Activation::Gelu),
            "identity" | "none" | "linear" => Ok(Activation::Identity),
            _ => Err(ModelError::Config(format!(
                "unknown activation {s:?} (relu, tanh, sigmoid, gelu, identity)"
            ))),
        }
    }
}
