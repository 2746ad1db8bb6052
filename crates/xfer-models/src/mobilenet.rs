//! MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
//! CVPR 2018) with torchvision's module layout and state-dict names, and the inverted-residual
//! block it shares with [`crate::EfficientNetLite`].
//!
//! ```text
//! features.0      3×3/2 conv → BN → ReLU6                       (stem, 32 channels)
//! features.1..17  inverted residual blocks (t, c, n, s):
//!                 (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)
//! features.18     1×1 conv → BN → ReLU6                          (head, 1280 channels)
//! global average pool → classifier.0 dropout 0.2 → classifier.1 Linear(1280, classes)
//! ```
//!
//! A block is `[1×1 expand → BN → ReLU6]` (not when t = 1) `→ 3×3 depthwise (stride s) → BN →
//! ReLU6 → 1×1 project → BN`, plus its input when the stride is 1 and the widths agree.
//! Padding is PyTorch's symmetric `(k − 1)/2`; batch norm eps 1e-5, momentum 0.1. The
//! depthwise convolutions run [`xfer_ops::depthwise_conv2d`], the activations
//! [`xfer_ops::relu6`].
//!
//! Dropout draws come from a [`SeededRng`]: the one passed to [`MobileNetV2::forward_with_rng`],
//! or, through [`ModuleT::forward_t`], the model's own generator, forked from the `rng` the
//! model was built with and replaceable with [`MobileNetV2::set_rng`].

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::{Conv2dConfig, DepthwiseConfig, Padding2d, SeededRng};

use crate::layers::{BatchNorm, Conv2d, Linear, Module, ModuleT};
use crate::params::{Param, Scope};
use crate::preprocess::Preprocess;
use crate::pretrained::{LoadOptions, load_pretrained};
use crate::transfer::TransferReport;
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
            y = xfer_ops::relu6(&b.forward_t(&conv_padded(c, &y, self.padding)?, train)?)?;
        }
        y = xfer_ops::relu6(
            &self
                .depthwise_bn
                .forward_t(&self.depthwise.forward(&y)?, train)?,
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

/// The configuration of a [`MobileNetV2`] (what a checkpoint's metadata records).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MobileNetV2Config {
    /// Output width of `classifier.1`.
    pub num_classes: usize,
    /// Width multiplier (1.0 for the published weights); every width is rounded with
    /// [`make_divisible`] to a multiple of 8.
    pub width_mult: f64,
    /// Dropout before the classifier in training (0.2).
    pub dropout: f64,
    /// Batch-norm ε (1e-5).
    pub bn_eps: f64,
    /// Batch-norm momentum, PyTorch convention (0.1).
    pub bn_momentum: f64,
}

impl MobileNetV2Config {
    /// torchvision's `mobilenet_v2(num_classes)`: width 1.0, dropout 0.2, BN eps 1e-5,
    /// momentum 0.1.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            width_mult: 1.0,
            dropout: 0.2,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }
    }
}

/// The inverted-residual settings (t expand, c out, n repeats, s stride) of torchvision.
pub const MOBILENET_V2_SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// MobileNetV2 with torchvision's names (`features.0.0.weight`, `features.3.conv.1.0.weight`,
/// `classifier.1.weight`, ...). See the module documentation.
#[derive(Debug)]
pub struct MobileNetV2 {
    config: MobileNetV2Config,
    scope: Scope,
    /// `features.0.0` (3×3/2) and `features.0.1`.
    pub stem: (Conv2d, BatchNorm),
    /// `features.1` … `features.17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18.0` (1×1) and `features.18.1`.
    pub head: (Conv2d, BatchNorm),
    /// `classifier.1`.
    pub classifier: Linear,
    rng: Mutex<SeededRng>,
    dtype: DType,
    device: Device,
}

impl MobileNetV2 {
    /// A new MobileNetV2 registered under `scope` (`store.scope("")` for torchvision's bare
    /// names), initialised as torchvision does (Kaiming-normal fan-out convolutions, γ = 1,
    /// β = 0, classifier `N(0, 0.01)` with zero bias) from `rng`; the dropout generator is
    /// forked from `rng` too.
    pub fn new(
        scope: &Scope,
        config: &MobileNetV2Config,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = *config;
        if config.num_classes == 0 {
            return Err(ModelError::Config(
                "MobileNetV2 needs at least one output class".to_string(),
            ));
        }
        if !(config.width_mult > 0.0 && config.width_mult.is_finite()) {
            return Err(ModelError::Config(format!(
                "MobileNetV2 width multiplier must be positive, got {}",
                config.width_mult
            )));
        }
        check_prob("MobileNetV2 dropout", config.dropout)?;
        let bnc = (config.bn_eps, config.bn_momentum);
        let wm = config.width_mult;
        let stem_ch = make_divisible(32.0 * wm, 8);
        let last_ch = make_divisible(1280.0 * wm.max(1.0), 8);
        let f = scope.sub("features");
        let s0 = f.sub("0");
        let stem = (
            conv(&s0.sub("0"), 3, stem_ch, 3, 2, rng, dtype, dev)?,
            bn(&s0.sub("1"), stem_ch, bnc.0, bnc.1, dtype, dev)?,
        );
        let mut blocks = Vec::new();
        let mut in_ch = stem_ch;
        for &(t, c, n, s) in &MOBILENET_V2_SETTINGS {
            let out_ch = make_divisible(c as f64 * wm, 8);
            for i in 0..n {
                let idx = blocks.len() + 1;
                let b = f.sub(&idx.to_string()).sub("conv");
                let scopes = if t == 1 {
                    BlockScopes {
                        expand: b.sub("unused"),
                        expand_bn: b.sub("unused"),
                        depthwise: b.sub("0").sub("0"),
                        depthwise_bn: b.sub("0").sub("1"),
                        project: b.sub("1"),
                        project_bn: b.sub("2"),
                    }
                } else {
                    BlockScopes {
                        expand: b.sub("0").sub("0"),
                        expand_bn: b.sub("0").sub("1"),
                        depthwise: b.sub("1").sub("0"),
                        depthwise_bn: b.sub("1").sub("1"),
                        project: b.sub("2"),
                        project_bn: b.sub("3"),
                    }
                };
                let shape = BlockShape {
                    in_ch,
                    hidden: (in_ch as f64 * t as f64).round() as usize,
                    out_ch,
                    kernel: 3,
                    stride: if i == 0 { s } else { 1 },
                };
                blocks.push(InvertedResidual::new(
                    &scopes,
                    shape,
                    PaddingMode::Torch,
                    bnc,
                    0.0,
                    rng,
                    dtype,
                    dev,
                )?);
                in_ch = out_ch;
            }
        }
        let h = f.sub(&(blocks.len() + 1).to_string());
        let head = (
            conv(&h.sub("0"), in_ch, last_ch, 1, 1, rng, dtype, dev)?,
            bn(&h.sub("1"), last_ch, bnc.0, bnc.1, dtype, dev)?,
        );
        let cs = scope.sub("classifier").sub("1");
        let classifier = Linear {
            weight: cs.add(
                "weight",
                rng.normal(&[config.num_classes, last_ch], 0.0, 0.01, dtype, dev)?,
            )?,
            bias: Some(cs.add("bias", Tensor::zeros(config.num_classes, dtype, dev)?)?),
        };
        let own = rng.fork();
        Ok(Self {
            config,
            scope: scope.clone(),
            stem,
            blocks,
            head,
            classifier,
            rng: Mutex::new(own),
            dtype,
            device: dev.clone(),
        })
    }

    /// torchvision's `mobilenet_v2(num_classes=n)` at the root of `store`, initialised from
    /// `seed`.
    #[allow(clippy::self_named_constructors)] // torchvision's name for it
    pub fn mobilenet_v2(
        store: &crate::ParamStore,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Self::new(
            &store.scope(""),
            &MobileNetV2Config::new(num_classes),
            &mut SeededRng::new(seed),
            dtype,
            dev,
        )
    }

    /// The configuration.
    pub fn config(&self) -> MobileNetV2Config {
        self.config
    }

    /// The preprocessing the published ImageNet weights expect: torchvision's
    /// (resize 256 bilinear antialiased, centre crop 224, ImageNet mean/std).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::torchvision_imagenet(224)
    }

    /// Width of the pooled features (1280 at width 1.0).
    pub fn feature_dim(&self) -> usize {
        self.classifier.in_dim()
    }

    /// The scope the model's names live under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The scope prefix the model's names live under (`""` at the root).
    pub fn prefix(&self) -> String {
        self.scope.path("").trim_end_matches('.').to_string()
    }

    /// Replaces the generator dropout draws from in [`ModuleT::forward_t`].
    pub fn set_rng(&self, rng: SeededRng) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = rng;
    }

    /// Sets the dropout probability before the classifier (0 turns it off).
    pub fn set_dropout(&mut self, p: f64) -> Result<()> {
        check_prob("MobileNetV2 dropout", p)?;
        self.config.dropout = p;
        Ok(())
    }

    /// The feature blocks as name prefixes, input side first: `features.0` … `features.18`.
    pub fn block_names(&self) -> Vec<String> {
        (0..self.blocks.len() + 2)
            .map(|i| self.scope.path(&format!("features.{i}")))
            .collect()
    }

    /// Every parameter and buffer of the feature part (`features.*`).
    pub fn feature_params(&self) -> Vec<Param> {
        let mut v = vec![self.stem.0.weight.clone()];
        v.extend(bn_params(&self.stem.1));
        for b in &self.blocks {
            v.extend(b.params());
        }
        v.push(self.head.0.weight.clone());
        v.extend(bn_params(&self.head.1));
        v
    }

    /// Every parameter and buffer of the model, classifier included.
    pub fn params(&self) -> Vec<Param> {
        let mut v = self.feature_params();
        v.push(self.classifier.weight.clone());
        v.extend(self.classifier.bias.clone());
        v
    }

    /// Replaces the head: removes `classifier.1.{weight,bias}` and registers a new
    /// `Linear(1280, n)` initialised as PyTorch's `nn.Linear` from `rng` (what
    /// `model.classifier[1] = nn.Linear(1280, n)` does). The features are untouched.
    pub fn with_num_classes(mut self, n: usize, rng: &mut SeededRng) -> Result<Self> {
        if n == 0 {
            return Err(ModelError::Config(
                "MobileNetV2 needs at least one output class".to_string(),
            ));
        }
        let store = self.scope.store().clone();
        let cs = self.scope.sub("classifier").sub("1");
        store.remove(&cs.path("weight"));
        store.remove(&cs.path("bias"));
        self.classifier = Linear::new(
            &cs,
            self.feature_dim(),
            n,
            true,
            rng,
            self.dtype,
            &self.device,
        )?;
        self.config.num_classes = n;
        Ok(self)
    }

    /// The last feature map (N, 1280, ⌈H/32⌉, ⌈W/32⌉): after `features.18`'s ReLU6.
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims() {
            [_, 3, h, w] if *h > 0 && *w > 0 => {}
            d => {
                return Err(ModelError::ShapeMismatch {
                    name: format!("input of {}", self.stem.0.weight.name()),
                    expected: vec![0, 3, 0, 0],
                    got: d.to_vec(),
                });
            }
        }
        let x = x.to_dtype(self.dtype)?;
        let mut y = xfer_ops::relu6(
            &self
                .stem
                .1
                .forward_t(&conv_padded(&self.stem.0, &x, PaddingMode::Torch)?, train)?,
        )?;
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        Ok(xfer_ops::relu6(&self.head.1.forward_t(
            &conv_padded(&self.head.0, &y, PaddingMode::Torch)?,
            train,
        )?)?)
    }

    /// Pooled features (N, 1280): the global average of [`MobileNetV2::feature_map`], the input
    /// of the classifier's dropout.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.feature_map(x, train)?;
        Ok(xfer_ops::adaptive_avg_pool2d(&y, 1, 1)?.flatten_from(1)?)
    }

    /// Logits (N, classes) of pooled features: dropout (training, drawn from `rng`) then
    /// `classifier.1`.
    pub fn classify(&self, features: &Tensor, train: bool, rng: &mut SeededRng) -> Result<Tensor> {
        let f = if train {
            dropout(features, self.config.dropout, rng)?
        } else {
            features.clone()
        };
        self.classifier.forward(&f)
    }

    /// Logits (N, classes), dropout drawn from the caller's `rng`.
    pub fn forward_with_rng(&self, x: &Tensor, train: bool, rng: &mut SeededRng) -> Result<Tensor> {
        self.classify(&self.features(x, train)?, train, rng)
    }

    /// Loads torchvision's state dict saved as safetensors (f32/f16/bf16/f64 converted,
    /// `num_batches_tracked` ignored), strictly: every tensor must be there with the right
    /// shape and nothing else may be in the file. All-or-nothing; see [`load_pretrained`].
    pub fn load_torchvision(&self, path: impl AsRef<Path>) -> Result<TransferReport> {
        self.load_torchvision_with(path, &LoadOptions::default())
    }

    /// Like [`MobileNetV2::load_torchvision`] with options (e.g. skip `classifier` to keep a
    /// new head).
    pub fn load_torchvision_with(
        &self,
        path: impl AsRef<Path>,
        opts: &LoadOptions,
    ) -> Result<TransferReport> {
        load_pretrained(
            self.scope.store(),
            &self.params(),
            &self.prefix(),
            path,
            opts,
        )
    }
}

impl ModuleT for MobileNetV2 {
    /// Logits (N, classes); dropout in training draws from the model's own generator.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.features(x, train)?;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.classify(&f, train, &mut rng)
    }
}

impl crate::Backbone for MobileNetV2 {
    /// The pooled features (N, 1280).
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features(x, train)
    }
    fn feature_dim(&self) -> usize {
        MobileNetV2::feature_dim(self)
    }
    fn blocks(&self) -> Vec<String> {
        self.block_names()
    }
    fn store(&self) -> &crate::ParamStore {
        self.scope.store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backbone, ParamStore};

    #[test]
    fn names_and_shapes_match_torchvision() {
        let store = ParamStore::new();
        let m = MobileNetV2::mobilenet_v2(&store, 1000, 0, DType::F32, &Device::Cpu).unwrap();
        // 52 convs/BNs: 52 conv weights, 52 × 4 BN tensors, 2 classifier tensors = 262.
        assert_eq!(store.len(), 262);
        assert_eq!(m.params().len(), 262);
        for (n, shape) in [
            ("features.0.0.weight", vec![32, 3, 3, 3]),
            ("features.1.conv.0.0.weight", vec![32, 1, 3, 3]),
            ("features.1.conv.1.weight", vec![16, 32, 1, 1]),
            ("features.1.conv.2.running_var", vec![16]),
            ("features.2.conv.0.0.weight", vec![96, 16, 1, 1]),
            ("features.2.conv.1.0.weight", vec![96, 1, 3, 3]),
            ("features.17.conv.2.weight", vec![320, 960, 1, 1]),
            ("features.17.conv.3.bias", vec![320]),
            ("features.18.0.weight", vec![1280, 320, 1, 1]),
            ("classifier.1.weight", vec![1000, 1280]),
        ] {
            assert_eq!(store.get(n).unwrap().var().dims(), shape.as_slice(), "{n}");
        }
        assert_eq!(m.blocks.iter().filter(|b| b.residual).count(), 10);
        assert_eq!(Backbone::feature_dim(&m), 1280);
        let names = m.param_names();
        assert_eq!(names.len(), 260);
        assert!(names.iter().all(|n| n.starts_with("features.")));
    }

    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(32.0 * 0.5, 8), 16);
        assert_eq!(make_divisible(24.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
        assert_eq!(make_divisible(11.0, 8), 16);
    }

    #[test]
    fn with_num_classes_and_small_input_and_seeded_dropout() {
        let store = ParamStore::new();
        let m = MobileNetV2::mobilenet_v2(&store, 1000, 1, DType::F32, &Device::Cpu)
            .unwrap()
            .with_num_classes(3, &mut SeededRng::new(2))
            .unwrap();
        assert_eq!(
            store.get("classifier.1.weight").unwrap().var().dims(),
            &[3, 1280]
        );
        let x = SeededRng::new(3)
            .normal(&[2, 3, 33, 31], 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[2, 3]);
        // Same generator seed, same dropout mask; a different seed, a different one.
        let a = m
            .forward_with_rng(&x, true, &mut SeededRng::new(7))
            .unwrap();
        let b = m
            .forward_with_rng(&x, true, &mut SeededRng::new(7))
            .unwrap();
        let c = m
            .forward_with_rng(&x, true, &mut SeededRng::new(8))
            .unwrap();
        let diff = |p: &Tensor, q: &Tensor| {
            (p - q)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 0.0);
        assert!(matches!(
            m.forward_t(
                &Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu).unwrap(),
                false
            ),
            Err(ModelError::ShapeMismatch { .. })
        ));
        assert!(
            MobileNetV2::mobilenet_v2(&ParamStore::new(), 0, 0, DType::F32, &Device::Cpu).is_err()
        );
    }
}
