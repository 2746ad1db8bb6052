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
use xfer_ops::SeededRng;

use crate::layers::{BatchNorm, Conv2d, Linear, Module, ModuleT};
use crate::mbconv::{
    BlockScopes, BlockShape, bn, bn_params, check_prob, conv, conv_padded, dropout,
};
pub use crate::mbconv::{DepthwiseConv2d, InvertedResidual, PaddingMode, make_divisible};
use crate::params::{Param, Scope};
use crate::preprocess::Preprocess;
use crate::pretrained::{LoadOptions, load_pretrained};
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

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
        let cs = self.scope.sub("classifier").sub("1");
        self.classifier =
            Linear::replace(&cs, self.feature_dim(), n, rng, self.dtype, &self.device)?;
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
        let mut y = self.stem.1.forward_act(
            &conv_padded(&self.stem.0, &x, PaddingMode::Torch)?,
            train,
            xfer_ops::Activation::Relu6,
        )?;
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        self.head.1.forward_act(
            &conv_padded(&self.head.0, &y, PaddingMode::Torch)?,
            train,
            xfer_ops::Activation::Relu6,
        )
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
