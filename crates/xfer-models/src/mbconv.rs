//! The inverted-residual (MBConv) block shared by [`crate::MobileNetV2`] and
//! [`crate::EfficientNetLite`], with its layers: a depthwise convolution layer on
//! [`xfer_ops::depthwise_conv2d`], convolutions padded the PyTorch or the TensorFlow ("SAME")
//! way, batch norms with the model's constants, seeded dropout.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::{Conv2dConfig, DepthwiseConfig, Padding2d, SeededRng};

use crate::layers::{BatchNorm, Conv2d, Module, ModuleT};
use crate::params::{Param, Scope};
use crate::{ModelError, Result};

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// PyTorch's fixed symmetric `(k − 1)/2` on every side.
    Torch,
    /// TensorFlow's "SAME", computed from the input size ([`xfer_ops::same_padding`]):
    /// asymmetric (smaller half before) where the total is odd.
    TfSame,
}

impl PaddingMode {
    fn padding(self, h: usize, w: usize, k: usize, stride: usize) -> Padding2d {
        match self {
            PaddingMode::Torch => Padding2d::uniform((k - 1) / 2),
            PaddingMode::TfSame => Padding2d::same(h, w, k, k, stride),
        }
    }
}

/// A convolution without bias initialised as torchvision's MobileNetV2 does:
/// `kaiming_normal_(mode="fan_out")`, `N(0, 2 / (out·k·k))`; padded at forward time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    scope: &Scope,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    stride: usize,
    rng: &mut SeededRng,
    dtype: DType,
    dev: &Device,
) -> Result<Conv2d> {
    let weight = scope.add(
        "weight",
        rng.kaiming_normal(&[out_ch, in_ch, k, k], out_ch * k * k, dtype, dev)?,
    )?;
    Ok(Conv2d {
        weight,
        bias: None,
        cfg: Conv2dConfig {
            stride,
            padding: 0,
            dilation: 1,
            groups: 1,
        },
    })
}

/// `conv` of `x` with the padding `mode` gives for this input (an explicit zero pad when it is
/// asymmetric).
pub(crate) fn conv_padded(conv: &Conv2d, x: &Tensor, mode: PaddingMode) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().map_err(|_| ModelError::ShapeMismatch {
        name: format!("input of {}", conv.weight.name()),
        expected: vec![0, 0, 0, 0],
        got: x.dims().to_vec(),
    })?;
    let k = conv.weight.var().dims()[2];
    let p = mode.padding(h, w, k, conv.cfg.stride);
    let weight = conv.weight.tensor();
    let bias = conv.bias.as_ref().map(|b| b.tensor());
    let y = if p.is_uniform() {
        xfer_ops::conv2d(
            x,
            &weight,
            bias.as_ref(),
            Conv2dConfig {
                padding: p.top,
                ..conv.cfg
            },
        )
    } else {
        let xp = x
            .pad_with_zeros(2, p.top, p.bottom)?
            .pad_with_zeros(3, p.left, p.right)?;
        xfer_ops::conv2d(
            &xp,
            &weight,
            bias.as_ref(),
            Conv2dConfig {
                padding: 0,
                ..conv.cfg
            },
        )
    };
    y.map_err(|e| conv_error(conv, x, e))
}

fn conv_error(conv: &Conv2d, x: &Tensor, e: xfer_ops::OpsError) -> ModelError {
    match e {
        xfer_ops::OpsError::Shape { .. } => ModelError::ShapeMismatch {
            name: format!(
                "input of {} ({e})",
                conv.weight.name().trim_end_matches(".weight")
            ),
            expected: vec![0, conv.weight.var().dims()[1], 0, 0],
            got: x.dims().to_vec(),
        },
        e => e.into(),
    }
}

/// A depthwise convolution layer (`weight` (C, 1, k, k), no bias) through
/// [`xfer_ops::depthwise_conv2d`].
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `weight`, (C, 1, k, k).
    pub weight: Param,
    /// Stride.
    pub stride: usize,
    /// Padding convention.
    pub padding: PaddingMode,
}

impl DepthwiseConv2d {
    /// A new layer over `c` channels with a `k × k` kernel, Kaiming-normal (fan-out
    /// `c·k·k`, as PyTorch computes it for a grouped weight).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scope: &Scope,
        c: usize,
        k: usize,
        stride: usize,
        padding: PaddingMode,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let weight = scope.add(
            "weight",
            rng.kaiming_normal(&[c, 1, k, k], c * k * k, dtype, dev)?,
        )?;
        Ok(Self {
            weight,
            stride,
            padding,
        })
    }
}

impl Module for DepthwiseConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4().map_err(|_| ModelError::ShapeMismatch {
            name: format!("input of {}", self.weight.name()),
            expected: vec![0, self.weight.var().dims()[0], 0, 0],
            got: x.dims().to_vec(),
        })?;
        let k = self.weight.var().dims()[2];
        let cfg = DepthwiseConfig {
            stride: self.stride,
            padding: self.padding.padding(h, w, k, self.stride),
        };
        xfer_ops::depthwise_conv2d(x, &self.weight.tensor(), None, cfg).map_err(|e| match e {
            xfer_ops::OpsError::Shape { .. } => ModelError::ShapeMismatch {
                name: format!("input of {} ({e})", self.weight.name()),
                expected: vec![0, self.weight.var().dims()[0], 0, 0],
                got: x.dims().to_vec(),
            },
            e => e.into(),
        })
    }
}

/// A batch norm with the given constants (PyTorch convention: `momentum` weighs the batch).
pub(crate) fn bn(
    scope: &Scope,
    c: usize,
    eps: f64,
    momentum: f64,
    dtype: DType,
    dev: &Device,
) -> Result<BatchNorm> {
    let mut b = BatchNorm::new(scope, c, dtype, dev)?;
    b.eps = eps;
    b.momentum = momentum;
    Ok(b)
}

pub(crate) fn bn_params(bn: &BatchNorm) -> [Param; 4] {
    [
        bn.weight.clone(),
        bn.bias.clone(),
        bn.running_mean.clone(),
        bn.running_var.clone(),
    ]
}

/// Inverted dropout of `x` with drop probability `p`, the mask drawn from `rng`.
pub(crate) fn dropout(x: &Tensor, p: f64, rng: &mut SeededRng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let mask = rng.bernoulli_mask(x.dims(), keep, x.dtype(), x.device())?;
    Ok((x * mask)?.affine(1.0 / keep, 0.0)?)
}

/// Checks a dropout-like probability.
pub(crate) fn check_prob(what: &str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(ModelError::Config(format!(
            "{what} must be in [0, 1), got {p}"
        )));
    }
    Ok(())
}

/// The scopes (parameter names) of one inverted-residual block's six layers.
pub(crate) struct BlockScopes {
    pub expand: Scope,
    pub expand_bn: Scope,
    pub depthwise: Scope,
    pub depthwise_bn: Scope,
    pub project: Scope,
    pub project_bn: Scope,
}

/// The sizes of one inverted-residual block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    pub in_ch: usize,
    pub hidden: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
}

/// The inverted-residual (MBConv) block of MobileNetV2 and EfficientNet-Lite:
/// `[1×1 expand → BN → ReLU6] → k×k depthwise → BN → ReLU6 → 1×1 project → BN`, plus the input
/// (after drop-connect in training, when its rate is positive) when the stride is 1 and the
/// widths agree.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    /// The 1×1 expansion and its batch norm (absent when the expansion ratio is 1).
    pub expand: Option<(Conv2d, BatchNorm)>,
    /// The depthwise convolution.
    pub depthwise: DepthwiseConv2d,
    /// Its batch norm.
    pub depthwise_bn: BatchNorm,
    /// The 1×1 projection (linear bottleneck).
    pub project: Conv2d,
    /// Its batch norm.
    pub project_bn: BatchNorm,
    /// Whether the input is added back (stride 1, same width).
    pub residual: bool,
    /// Drop-connect rate of the residual branch in training (0 for MobileNetV2).
    pub drop_connect: f64,
    /// Padding convention of the depthwise convolution.
    pub padding: PaddingMode,
}

impl InvertedResidual {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        s: &BlockScopes,
        shape: BlockShape,
        padding: PaddingMode,
        (eps, momentum): (f64, f64),
        drop_connect: f64,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let BlockShape {
            in_ch,
            hidden,
            out_ch,
            kernel,
            stride,
        } = shape;
        let expand = if hidden != in_ch {
            Some((
                conv(&s.expand, in_ch, hidden, 1, 1, rng, dtype, dev)?,
                bn(&s.expand_bn, hidden, eps, momentum, dtype, dev)?,
            ))
        } else {
            None
        };
        Ok(Self {
            expand,
            depthwise: DepthwiseConv2d::new(
                &s.depthwise,
                hidden,
                kernel,
                stride,
                padding,
                rng,
                dtype,
                dev,
            )?,
            depthwise_bn: bn(&s.depthwise_bn, hidden, eps, momentum, dtype, dev)?,
            project: conv(&s.project, hidden, out_ch, 1, 1, rng, dtype, dev)?,
            project_bn: bn(&s.project_bn, out_ch, eps, momentum, dtype, dev)?,
            residual: stride == 1 && in_ch == out_ch,
            drop_connect,
            padding,
        })
    }

    /// Every parameter and buffer of the block.
    pub fn params(&self) -> Vec<Param> {
        let mut v = Vec::new();
        if let Some((c, b)) = &self.expand {
            v.push(c.weight.clone());
            v.extend(bn_params(b));
        }
        v.push(self.depthwise.weight.clone());
        v.extend(bn_params(&self.depthwise_bn));
        v.push(self.project.weight.clone());
        v.extend(bn_params(&self.project_bn));
        v
    }

    /// The block's output; drop-connect (training only, rate > 0) draws one keep/drop per
    /// sample from `rng`.
    pub fn forward_rng(
        &self,
        x: &Tensor,
        train: bool,
        rng: Option<&mut SeededRng>,
    ) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some((c, b)) = &self.expand {
            y = b.forward_act(
                &conv_padded(c, &y, self.padding)?,
                train,
                xfer_ops::Activation::Relu6,
            )?;
        }
        y = self.depthwise_bn.forward_act(
            &self.depthwise.forward(&y)?,
            train,
            xfer_ops::Activation::Relu6,
        )?;
        y = self
            .project_bn
            .forward_t(&conv_padded(&self.project, &y, self.padding)?, train)?;
        if !self.residual {
            return Ok(y);
        }
        if train
            && self.drop_connect > 0.0
            && let Some(rng) = rng
        {
            let keep = 1.0 - self.drop_connect;
            let n = y.dim(0)?;
            let mask = rng.bernoulli_mask(&[n, 1, 1, 1], keep, y.dtype(), y.device())?;
            y = y.broadcast_mul(&(mask / keep)?)?;
        }
        Ok((y + x)?)
    }
}

impl ModuleT for InvertedResidual {
    /// The block without drop-connect.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_rng(x, train, None)
    }
}

/// torchvision's `_make_divisible`: `v` rounded to the nearest multiple of `divisor` (at least
/// `divisor`), never more than 10 % below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) / d).floor() * d).max(d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}
