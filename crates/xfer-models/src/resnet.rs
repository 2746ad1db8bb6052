//! ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) with
//! torchvision's module layout and state-dict names, so a torchvision checkpoint saved as
//! safetensors loads by name:
//!
//! ```text
//! conv1 (7×7, stride 2, pad 3) → bn1 → relu → maxpool (3×3, stride 2, pad 1)
//! layer1 … layer4 (BasicBlock for 18/34, Bottleneck for 50; stride 2 from layer2 on,
//!                  on the 3×3 convolution as in torchvision's "v1.5" Bottleneck)
//! avgpool (adaptive, 1×1) → flatten → fc
//! ```
//!
//! A block computes `relu(F(x) + shortcut(x))` where `shortcut` is the identity or
//! `downsample` = 1×1 convolution (with the block's stride) and batch norm when the shape changes.
//! Names: `conv1.weight`, `bn1.{weight,bias,running_mean,running_var}`,
//! `layer2.0.conv1.weight`, `layer2.0.downsample.0.weight`, `layer2.0.downsample.1.weight`,
//! `fc.weight`, `fc.bias`. Batch norm trains (batch statistics, running statistics updated) when
//! `train` is true and uses the running statistics otherwise.

use std::path::Path;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::{Conv2dConfig, SeededRng};

use crate::layers::{BatchNorm, Conv2d, Linear, Module, ModuleT};
use crate::params::{Param, ParamStore, Scope};
use crate::pretrained::{LoadOptions, load_pretrained};
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    /// ResNet-18: BasicBlocks `[2, 2, 2, 2]`, 512 features.
    ResNet18,
    /// ResNet-34: BasicBlocks `[3, 4, 6, 3]`, 512 features.
    ResNet34,
    /// ResNet-50: Bottlenecks `[3, 4, 6, 3]`, 2048 features.
    ResNet50,
}

impl ResNetDepth {
    /// Blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::ResNet18 => [2, 2, 2, 2],
            ResNetDepth::ResNet34 | ResNetDepth::ResNet50 => [3, 4, 6, 3],
        }
    }

    /// Whether the blocks are Bottlenecks (expansion 4) rather than BasicBlocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, ResNetDepth::ResNet50)
    }

    /// Width of the pooled features (the input width of `fc`).
    pub fn feature_dim(self) -> usize {
        if self.bottleneck() { 2048 } else { 512 }
    }
}

impl FromStr for ResNetDepth {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().trim_start_matches("resnet") {
            "18" | "-18" => Ok(ResNetDepth::ResNet18),
            "34" | "-34" => Ok(ResNetDepth::ResNet34),
            "50" | "-50" => Ok(ResNetDepth::ResNet50),
            _ => Err(ModelError::Config(format!(
                "unknown ResNet {s:?} (resnet18, resnet34, resnet50)"
            ))),
        }
    }
}

/// The configuration of a [`ResNet`] (what a checkpoint's metadata records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Depth.
    pub depth: ResNetDepth,
    /// Output width of `fc`.
    pub num_classes: usize,
}

/// Max pooling with a `k × k` window, stride `s` and implicit `−∞` padding `p` on every side,
/// as `torch.nn.MaxPool2d(k, s, p)`: `y[i, j] = max_{a,b<k} x̃[s·i + a, s·j + b]` with `x̃` the
/// padded input and output size `⌊(H + 2p − k)/s⌋ + 1`. The gradient of each output goes to the
/// first maximum of its window in row-major order, exactly as PyTorch routes it (ties are not
/// split). On the CPU (f32, f64) this is [`xfer_ops::max_pool2d_padded`], one pooling kernel
/// over clipped windows; elsewhere it is built from differentiable tensor ops (pad, strided
/// views, `where_cond`), which run and differentiate on every device.
pub fn max_pool2d_padded(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().map_err(|_| {
        ModelError::Config(format!(
            "max pool: input must be (N, C, H, W), got {:?}",
            x.dims()
        ))
    })?;
    if k == 0 || s == 0 || 2 * p > k || h + 2 * p < k || w + 2 * p < k {
        return Err(ModelError::Config(format!(
            "max pool: window {k}, stride {s}, padding {p} do not fit input {:?} \
             (PyTorch needs padding ≤ window/2 and the padded input at least one window)",
            x.dims()
        )));
    }
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(xfer_ops::max_pool2d_padded(x, k, s, p)?);
    }
    // Separable: max over the columns of each row, then over the rows. Taking the first
    // maximum in each pass gives the first maximum of the window in row-major order.
    let x = pool_dim(x, 3, k, s, p)?;
    pool_dim(&x, 2, k, s, p)
}

/// 1-D max pooling along `dim` (first-argmax gradient routing).
fn pool_dim(x: &Tensor, dim: usize, k: usize, s: usize, p: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    let out = (len + 2 * p - k) / s + 1;
    // Candidate `a` of output `i` sits at padded index `s·i + a`; view it as
    // `narrow(a, s·out)` split into (out, s) and take sub-index 0.
    let need = k - 1 + s * out;
    let right = need.saturating_sub(p + len).max(p);
    let padded = pad_neg_inf(x, dim, p, right)?;
    let mut shape = padded.dims().to_vec();
    shape[dim] = out;
    shape.insert(dim + 1, s);
    let cands = (0..k)
        .map(|a| -> Result<Tensor> {
            Ok(padded
                .narrow(dim, a, s * out)?
                .reshape(shape.as_slice())?
                .narrow(dim + 1, 0, 1)?
                .squeeze(dim + 1)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut m = cands[0].detach();
    for c in &cands[1..] {
        m = m.maximum(&c.detach())?;
    }
    // From the last candidate to the first, so the first maximum wins.
    let mut y = cands[k - 1].clone();
    for c in cands[..k - 1].iter().rev() {
        y = c.eq(&m)?.where_cond(c, &y)?;
    }
    Ok(y)
}

fn pad_neg_inf(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    let side = |n: usize| -> Result<Tensor> {
        let mut shape = x.dims().to_vec();
        shape[dim] = n;
        Ok(Tensor::full(f32::NEG_INFINITY, shape.as_slice(), x.device())?.to_dtype(x.dtype())?)
    };
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(side(left)?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(side(right)?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

/// A convolution without bias, initialised as torchvision does:
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, i.e. `N(0, 2 / (out·k·k))`.
#[allow(clippy::too_many_arguments)]
fn conv(
    scope: &Scope,
    in_ch: usize,
    out_ch: usize,
    k: usize,
    stride: usize,
    padding: usize,
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
            padding,
            dilation: 1,
            groups: 1,
        },
    })
}

fn bn_params(bn: &BatchNorm) -> [Param; 4] {
    [
        bn.weight.clone(),
        bn.bias.clone(),
        bn.running_mean.clone(),
        bn.running_var.clone(),
    ]
}

/// The projection shortcut `downsample.0` (1×1 conv) + `downsample.1` (batch norm).
#[derive(Debug, Clone)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

impl ModuleT for Downsample {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

/// torchvision's BasicBlock: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, both
/// convolutions 3×3, the first with the block's stride.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    /// `conv1` (3×3, stride).
    pub conv1: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm,
    /// `conv2` (3×3).
    pub conv2: Conv2d,
    /// `bn2`.
    pub bn2: BatchNorm,
    /// `downsample`, when the shape changes.
    pub downsample: Option<Downsample>,
}

/// torchvision's Bottleneck (expansion 4, stride on the 3×3):
/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    /// `conv1` (1×1).
    pub conv1: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm,
    /// `conv2` (3×3, stride).
    pub conv2: Conv2d,
    /// `bn2`.
    pub bn2: BatchNorm,
    /// `conv3` (1×1, ×4 channels).
    pub conv3: Conv2d,
    /// `bn3`.
    pub bn3: BatchNorm,
    /// `downsample`, when the shape changes.
    pub downsample: Option<Downsample>,
}

/// One residual block.
#[derive(Debug, Clone)]
pub enum Block {
    /// ResNet-18/34.
    Basic(Box<BasicBlock>),
    /// ResNet-50.
    Bottleneck(Box<Bottleneck>),
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        scope: &Scope,
        bottleneck: bool,
        in_ch: usize,
        planes: usize,
        stride: usize,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let out_ch = if bottleneck { planes * 4 } else { planes };
        let downsample = if stride != 1 || in_ch != out_ch {
            let ds = scope.sub("downsample");
            Some(Downsample {
                conv: conv(&ds.sub("0"), in_ch, out_ch, 1, stride, 0, rng, dtype, dev)?,
                bn: BatchNorm::new(&ds.sub("1"), out_ch, dtype, dev)?,
            })
        } else {
            None
        };
        if bottleneck {
            Ok(Block::Bottleneck(Box::new(Bottleneck {
                conv1: conv(&scope.sub("conv1"), in_ch, planes, 1, 1, 0, rng, dtype, dev)?,
                bn1: BatchNorm::new(&scope.sub("bn1"), planes, dtype, dev)?,
                conv2: conv(
                    &scope.sub("conv2"),
                    planes,
                    planes,
                    3,
                    stride,
                    1,
                    rng,
                    dtype,
                    dev,
                )?,
                bn2: BatchNorm::new(&scope.sub("bn2"), planes, dtype, dev)?,
                conv3: conv(
                    &scope.sub("conv3"),
                    planes,
                    out_ch,
                    1,
                    1,
                    0,
                    rng,
                    dtype,
                    dev,
                )?,
                bn3: BatchNorm::new(&scope.sub("bn3"), out_ch, dtype, dev)?,
                downsample,
            })))
        } else {
            Ok(Block::Basic(Box::new(BasicBlock {
                conv1: conv(
                    &scope.sub("conv1"),
                    in_ch,
                    planes,
                    3,
                    stride,
                    1,
                    rng,
                    dtype,
                    dev,
                )?,
                bn1: BatchNorm::new(&scope.sub("bn1"), planes, dtype, dev)?,
                conv2: conv(
                    &scope.sub("conv2"),
                    planes,
                    planes,
                    3,
                    1,
                    1,
                    rng,
                    dtype,
                    dev,
                )?,
                bn2: BatchNorm::new(&scope.sub("bn2"), planes, dtype, dev)?,
                downsample,
            })))
        }
    }

    fn params(&self) -> Vec<Param> {
        let mut v = Vec::new();
        let ds = match self {
            Block::Basic(b) => {
                v.push(b.conv1.weight.clone());
                v.extend(bn_params(&b.bn1));
                v.push(b.conv2.weight.clone());
                v.extend(bn_params(&b.bn2));
                &b.downsample
            }
            Block::Bottleneck(b) => {
                v.push(b.conv1.weight.clone());
                v.extend(bn_params(&b.bn1));
                v.push(b.conv2.weight.clone());
                v.extend(bn_params(&b.bn2));
                v.push(b.conv3.weight.clone());
                v.extend(bn_params(&b.bn3));
                &b.downsample
            }
        };
        if let Some(d) = ds {
            v.push(d.conv.weight.clone());
            v.extend(bn_params(&d.bn));
        }
        v
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (y, ds) = match self {
            Block::Basic(b) => {
                let y =
                    b.bn1
                        .forward_act(&b.conv1.forward(x)?, train, xfer_ops::Activation::Relu)?;
                (
                    b.bn2.forward_t(&b.conv2.forward(&y)?, train)?,
                    &b.downsample,
                )
            }
            Block::Bottleneck(b) => {
                let y =
                    b.bn1
                        .forward_act(&b.conv1.forward(x)?, train, xfer_ops::Activation::Relu)?;
                let y =
                    b.bn2
                        .forward_act(&b.conv2.forward(&y)?, train, xfer_ops::Activation::Relu)?;
                (
                    b.bn3.forward_t(&b.conv3.forward(&y)?, train)?,
                    &b.downsample,
                )
            }
        };
        let shortcut = match ds {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        Ok(xfer_ops::add_relu(&y, &shortcut)?)
    }
}

/// A ResNet with torchvision's layout and names; see the module documentation.
#[derive(Debug, Clone)]
pub struct ResNet {
    config: ResNetConfig,
    scope: Scope,
    /// `conv1` (7×7, stride 2, padding 3).
    pub conv1: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm,
    /// `layer1` … `layer4`.
    pub layers: Vec<Vec<Block>>,
    /// The classifier head `fc`.
    pub fc: Linear,
    dtype: DType,
    device: Device,
}

impl ResNet {
    /// A new ResNet registered under `scope` (use `store.scope("")` for torchvision's bare
    /// names), initialised as torchvision does (Kaiming-normal fan-out convolutions, γ = 1,
    /// β = 0, PyTorch's default `fc`) from `rng`.
    pub fn new(
        scope: &Scope,
        config: &ResNetConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = *config;
        if config.num_classes == 0 {
            return Err(ModelError::Config(
                "ResNet needs at least one output class".to_string(),
            ));
        }
        let conv1 = conv(&scope.sub("conv1"), 3, 64, 7, 2, 3, rng, dtype, dev)?;
        let bn1 = BatchNorm::new(&scope.sub("bn1"), 64, dtype, dev)?;
        let bottleneck = config.depth.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_ch = 64;
        let mut layers = Vec::with_capacity(4);
        for (i, (&n, planes)) in config
            .depth
            .blocks()
            .iter()
            .zip([64usize, 128, 256, 512])
            .enumerate()
        {
            let stage = scope.sub(&format!("layer{}", i + 1));
            let mut blocks = Vec::with_capacity(n);
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(Block::new(
                    &stage.sub(&j.to_string()),
                    bottleneck,
                    in_ch,
                    planes,
                    stride,
                    rng,
                    dtype,
                    dev,
                )?);
                in_ch = planes * expansion;
            }
            layers.push(blocks);
        }
        let fc = Linear::new(
            &scope.sub("fc"),
            in_ch,
            config.num_classes,
            true,
            rng,
            dtype,
            dev,
        )?;
        Ok(Self {
            config,
            scope: scope.clone(),
            conv1,
            bn1,
            layers,
            fc,
            dtype,
            device: dev.clone(),
        })
    }

    /// A ResNet-18 with `num_classes` outputs at the root of `store`.
    pub fn resnet18(
        store: &ParamStore,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = ResNetConfig {
            depth: ResNetDepth::ResNet18,
            num_classes,
        };
        Self::new(
            &store.scope(""),
            &config,
            &mut SeededRng::new(seed),
            dtype,
            dev,
        )
    }

    /// A ResNet-34 with `num_classes` outputs at the root of `store`.
    pub fn resnet34(
        store: &ParamStore,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = ResNetConfig {
            depth: ResNetDepth::ResNet34,
            num_classes,
        };
        Self::new(
            &store.scope(""),
            &config,
            &mut SeededRng::new(seed),
            dtype,
            dev,
        )
    }

    /// A ResNet-50 with `num_classes` outputs at the root of `store`.
    pub fn resnet50(
        store: &ParamStore,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = ResNetConfig {
            depth: ResNetDepth::ResNet50,
            num_classes,
        };
        Self::new(
            &store.scope(""),
            &config,
            &mut SeededRng::new(seed),
            dtype,
            dev,
        )
    }

    /// The configuration.
    pub fn config(&self) -> ResNetConfig {
        self.config
    }

    /// Width of [`ResNet::features`] (512 for ResNet-18/34, 2048 for ResNet-50).
    pub fn feature_dim(&self) -> usize {
        self.config.depth.feature_dim()
    }

    /// The scope prefix the model's names live under (`""` at the root).
    pub fn prefix(&self) -> String {
        self.scope.path("").trim_end_matches('.').to_string()
    }

    /// Every parameter and buffer of the model, in torchvision's order.
    pub fn params(&self) -> Vec<Param> {
        let mut v = vec![self.conv1.weight.clone()];
        v.extend(bn_params(&self.bn1));
        for b in self.layers.iter().flatten() {
            v.extend(b.params());
        }
        v.push(self.fc.weight.clone());
        v.extend(self.fc.bias.clone());
        v
    }

    /// Replaces the head: removes `fc.weight`/`fc.bias` from the store and registers a new
    /// `fc` with `n` outputs, initialised as PyTorch's `nn.Linear` from `rng`. The backbone is
    /// untouched (the usual first step of fine-tuning an ImageNet model on a new task).
    pub fn with_num_classes(mut self, n: usize, rng: &mut SeededRng) -> Result<Self> {
        if n == 0 {
            return Err(ModelError::Config(
                "ResNet needs at least one output class".to_string(),
            ));
        }
        let fc_scope = self.scope.sub("fc");
        self.fc = Linear::replace(
            &fc_scope,
            self.feature_dim(),
            n,
            rng,
            self.dtype,
            &self.device,
        )?;
        self.config.num_classes = n;
        Ok(self)
    }

    /// The last feature map, (N, 512 or 2048, ⌈H/32⌉-ish, ⌈W/32⌉-ish), before pooling.
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims() {
            [_, 3, _, _] => {}
            d => {
                return Err(ModelError::ShapeMismatch {
                    name: format!("input of {}", self.conv1.weight.name()),
                    expected: vec![0, 3, 0, 0],
                    got: d.to_vec(),
                });
            }
        }
        let x = x.to_dtype(self.dtype)?;
        let y =
            self.bn1
                .forward_act(&self.conv1.forward(&x)?, train, xfer_ops::Activation::Relu)?;
        let mut y = max_pool2d_padded(&y, 3, 2, 1)?;
        for b in self.layers.iter().flatten() {
            y = b.forward_t(&y, train)?;
        }
        Ok(y)
    }

    /// The scope the model's names live under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Pooled features, (N, [`ResNet::feature_dim`]): the input of `fc`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.feature_map(x, train)?;
        Ok(xfer_ops::adaptive_avg_pool2d(&y, 1, 1)?.flatten_from(1)?)
    }

    /// Loads a torchvision state dict saved as safetensors (`num_batches_tracked` ignored,
    /// f16/bf16/f64 converted), strictly: every tensor must be there with the right shape and
    /// nothing else may be in the file. All-or-nothing; see [`load_pretrained`].
    pub fn load_torchvision(&self, path: impl AsRef<Path>) -> Result<TransferReport> {
        self.load_torchvision_with(path, &LoadOptions::default())
    }

    /// Like [`ResNet::load_torchvision`] with options (e.g. skip `fc` to keep a new head).
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

impl ModuleT for ResNet {
    /// Logits, (N, num_classes).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.fc.forward(&self.features(x, train)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    /// Reference max pool with padding, written with loops (first max in row-major order).
    fn reference(x: &[f64], h: usize, w: usize, k: usize, s: usize, p: usize) -> Vec<f64> {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let mut out = Vec::new();
        for i in 0..oh {
            for j in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for a in 0..k {
                    for b in 0..k {
                        let (r, c) = (
                            (s * i + a) as isize - p as isize,
                            (s * j + b) as isize - p as isize,
                        );
                        if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                            m = m.max(x[r as usize * w + c as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
        out
    }

    #[test]
    fn padded_max_pool_matches_loop_reference_on_odd_sizes() {
        let mut rng = SeededRng::new(3);
        for (h, w) in [(5, 7), (1, 1), (2, 3), (8, 8), (9, 4)] {
            let x: Vec<f64> = (0..h * w).map(|_| rng.normal01()).collect();
            let y = max_pool2d_padded(&t(&x, (1, 1, h, w)), 3, 2, 1).unwrap();
            let want = reference(&x, h, w, 3, 2, 1);
            let got: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got, want, "size {h}×{w}");
            let oh = (h + 2 - 3) / 2 + 1;
            let ow = (w + 2 - 3) / 2 + 1;
            assert_eq!(y.dims(), &[1, 1, oh, ow]);
        }
    }

    #[test]
    fn padded_max_pool_gradient_matches_finite_differences() {
        let mut rng = SeededRng::new(5);
        let (h, w) = (5, 6);
        let x: Vec<f64> = (0..2 * h * w).map(|_| rng.normal01()).collect();
        let wts: Vec<f64> = (0..2 * 3 * 3).map(|_| rng.normal01()).collect();
        let wt = Tensor::from_slice(&wts, (1, 2, 3, 3), &Device::Cpu).unwrap();
        let f = |v: &[f64]| -> f64 {
            let y = max_pool2d_padded(&t(v, (1, 2, h, w)), 3, 2, 1).unwrap();
            (y * &wt)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let var = candle_core::Var::from_tensor(&t(&x, (1, 2, h, w))).unwrap();
        let y = max_pool2d_padded(var.as_tensor(), 3, 2, 1).unwrap();
        let g = (y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<f64> = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let eps = 1e-6;
        for i in 0..x.len() {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (f(&a) - f(&b)) / (2.0 * eps);
            assert!(
                (fd - g[i]).abs() < 1e-6,
                "input {i}: fd {fd} vs grad {}",
                g[i]
            );
        }
    }

    #[test]
    fn padded_max_pool_routes_tied_gradient_to_first_maximum_like_pytorch() {
        // All-equal input: PyTorch sends each window's gradient to its first (top-left) cell.
        let var = candle_core::Var::from_tensor(
            &Tensor::ones((1, 1, 3, 3), DType::F64, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = max_pool2d_padded(var.as_tensor(), 3, 2, 1).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f64> = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Windows start at padded (0,0), (0,2), (2,0), (2,2) → first real cells (0,0), (0,1), (1,0), (1,1).
        assert_eq!(g, vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn resnet_names_match_torchvision_layout() {
        let store = ParamStore::new();
        let m = ResNet::resnet18(&store, 10, 0, DType::F32, &Device::Cpu).unwrap();
        // 20 convs + fc (2) + 20 batch norms × 4 = 102 (torchvision's 122 minus 20 counters).
        assert_eq!(store.len(), 102);
        assert_eq!(m.params().len(), 102);
        for n in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_mean",
            "layer4.1.bn2.bias",
            "fc.weight",
        ] {
            assert!(store.contains(n), "{n}");
        }
        assert!(!store.contains("layer1.0.downsample.0.weight"));
        let store50 = ParamStore::new();
        let m50 = ResNet::resnet50(&store50, 7, 0, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m50.feature_dim(), 2048);
        assert!(store50.contains("layer1.0.downsample.0.weight"));
        assert!(store50.contains("layer3.5.conv3.weight"));
        assert_eq!(
            store50.get("layer4.0.conv2.weight").unwrap().var().dims(),
            &[512, 512, 3, 3]
        );
        assert_eq!(store50.get("fc.weight").unwrap().var().dims(), &[7, 2048]);
    }

    #[test]
    fn with_num_classes_replaces_fc_only() {
        let store = ParamStore::new();
        let m = ResNet::resnet18(&store, 10, 0, DType::F32, &Device::Cpu).unwrap();
        let before = store
            .get("layer1.0.conv1.weight")
            .unwrap()
            .var()
            .as_tensor()
            .copy()
            .unwrap();
        let m = m.with_num_classes(3, &mut SeededRng::new(9)).unwrap();
        assert_eq!(store.get("fc.weight").unwrap().var().dims(), &[3, 512]);
        assert_eq!(store.get("fc.bias").unwrap().var().dims(), &[3]);
        assert_eq!(m.params().len(), 102);
        let after = store
            .get("layer1.0.conv1.weight")
            .unwrap()
            .var()
            .as_tensor()
            .copy()
            .unwrap();
        let d = (before - after)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
        let y = m
            .forward_t(
                &Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap(),
                false,
            )
            .unwrap();
        assert_eq!(y.dims(), &[1, 3]);
        assert!(m.with_num_classes(0, &mut SeededRng::new(1)).is_err());
    }

    #[test]
    fn depth_parses_torchvision_names() {
        assert_eq!(
            "resnet50".parse::<ResNetDepth>().unwrap(),
            ResNetDepth::ResNet50
        );
        assert_eq!(
            "ResNet-18".parse::<ResNetDepth>().unwrap(),
            ResNetDepth::ResNet18
        );
        assert!(matches!(
            "resnet101".parse::<ResNetDepth>(),
            Err(ModelError::Config(_))
        ));
    }
}
