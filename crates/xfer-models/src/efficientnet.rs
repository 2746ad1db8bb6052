//! EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
//! Neural Networks", ICML 2019; the "Lite" variants of tensorflow/tpu for mobile accelerators)
//! with the lukemelas/EfficientNet-PyTorch state-dict names of the converted TF checkpoints:
//!
//! ```text
//! _conv_stem 3×3/2 → _bn0 → ReLU6                                   (32 channels, not scaled)
//! _blocks.0 … _blocks.15  MBConv (the block table below, scaled for Lite1–4)
//! _conv_head 1×1 → _bn1 → ReLU6                                     (1280 channels, not scaled)
//! global average pool → dropout → _fc
//! ```
//!
//! Block (names `_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`):
//! `[1×1 expand → BN → ReLU6]` (not when the expansion is 1) `→ k×k depthwise (stride s) → BN →
//! ReLU6 → 1×1 project → BN`, plus the input (after drop-connect in training) when the stride is
//! 1 and the widths agree. Lite differs from B0 in: ReLU6 everywhere, no squeeze-excite, stem and
//! head not scaled, first and last stage not repeated more. Every convolution uses TensorFlow's
//! "SAME" padding (asymmetric at stride 2 on even sizes); batch norm eps 1e-3, momentum 0.01.
//!
//! Dropout and drop-connect draws come from a [`SeededRng`]: the one passed to
//! [`EfficientNetLite::forward_with_rng`] / [`EfficientNetLite::features_with_rng`], or, through
//! [`ModuleT::forward_t`] and [`crate::Backbone::features_t`], the model's own generator, forked
//! from the `rng` the model was built with and replaceable with [`EfficientNetLite::set_rng`].

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::layers::{BatchNorm, Conv2d, Linear, Module, ModuleT};
use crate::mbconv::{
    BlockScopes, BlockShape, InvertedResidual, PaddingMode, bn, bn_params, check_prob, conv,
    conv_padded, dropout,
};
use crate::params::{Param, Scope};
use crate::preprocess::Preprocess;
use crate::pretrained::{LoadOptions, load_pretrained};
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

/// One stage of the block table: `repeats` blocks, the first with `stride` and `in_ch → out_ch`,
/// the others stride 1 and `out_ch → out_ch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageArgs {
    /// Blocks in the stage (before depth scaling).
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio of the hidden width.
    pub expand: usize,
    /// Input width of the first block (before width scaling).
    pub in_ch: usize,
    /// Output width (before width scaling).
    pub out_ch: usize,
}

/// EfficientNet-B0's block table, which Lite0 uses unchanged:
/// (1,3,1,1,32→16) (2,3,2,6,16→24) (2,5,2,6,24→40) (3,3,2,6,40→80) (3,5,1,6,80→112)
/// (4,5,2,6,112→192) (1,3,1,6,192→320).
pub const EFFICIENTNET_B0_STAGES: [StageArgs; 7] = [
    stage(1, 3, 1, 1, 32, 16),
    stage(2, 3, 2, 6, 16, 24),
    stage(2, 5, 2, 6, 24, 40),
    stage(3, 3, 2, 6, 40, 80),
    stage(3, 5, 1, 6, 80, 112),
    stage(4, 5, 2, 6, 112, 192),
    stage(1, 3, 1, 6, 192, 320),
];

const fn stage(
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    in_ch: usize,
    out_ch: usize,
) -> StageArgs {
    StageArgs {
        repeats,
        kernel,
        stride,
        expand,
        in_ch,
        out_ch,
    }
}

/// The configuration of an [`EfficientNetLite`]: the block table and its scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficientNetLiteConfig {
    /// Output width of `_fc`.
    pub num_classes: usize,
    /// Width multiplier of the stages (stem and head stay 32 and 1280).
    pub width_mult: f64,
    /// Depth multiplier of the stages' repeats (first and last stage not scaled).
    pub depth_mult: f64,
    /// Input resolution the weights were trained at.
    pub resolution: usize,
    /// Dropout before `_fc` in training.
    pub dropout: f64,
    /// Drop-connect rate: block `i` of `B` drops its residual branch with probability
    /// `rate · i / B` in training.
    pub drop_connect: f64,
    /// Batch-norm ε (1e-3).
    pub bn_eps: f64,
    /// Batch-norm momentum, PyTorch convention (0.01, TF's decay 0.99).
    pub bn_momentum: f64,
    /// The unscaled block table.
    pub stages: Vec<StageArgs>,
}

impl EfficientNetLiteConfig {
    /// EfficientNet-Lite`n` (n = 0..4) with `num_classes` outputs, TF's parameters
    /// (width, depth, resolution, dropout): Lite0 (1.0, 1.0, 224, 0.2), Lite1 (1.0, 1.1, 240,
    /// 0.2), Lite2 (1.1, 1.2, 260, 0.3), Lite3 (1.2, 1.4, 280, 0.3), Lite4 (1.4, 1.8, 300, 0.3);
    /// drop-connect 0.2, BN eps 1e-3, momentum 0.01.
    pub fn lite(n: usize, num_classes: usize) -> Result<Self> {
        let (width_mult, depth_mult, resolution, dropout) = match n {
            0 => (1.0, 1.0, 224, 0.2),
            1 => (1.0, 1.1, 240, 0.2),
            2 => (1.1, 1.2, 260, 0.3),
            3 => (1.2, 1.4, 280, 0.3),
            4 => (1.4, 1.8, 300, 0.3),
            _ => {
                return Err(ModelError::Config(format!(
                    "EfficientNet-Lite{n} does not exist (Lite0 … Lite4)"
                )));
            }
        };
        Ok(Self {
            num_classes,
            width_mult,
            depth_mult,
            resolution,
            dropout,
            drop_connect: 0.2,
            bn_eps: 1e-3,
            bn_momentum: 0.01,
            stages: EFFICIENTNET_B0_STAGES.to_vec(),
        })
    }

    /// TF's `round_filters`: `ch · width` rounded to a multiple of 8 (at least 8), never more
    /// than 10 % below.
    pub fn round_filters(&self, ch: usize) -> usize {
        crate::mbconv::make_divisible(ch as f64 * self.width_mult, 8)
    }

    /// TF's `round_repeats` (`⌈depth · repeats⌉`), except for the first and last stage, which
    /// Lite keeps as they are.
    pub fn stage_repeats(&self, stage: usize) -> usize {
        let r = self.stages.get(stage).map_or(0, |s| s.repeats);
        if stage == 0 || stage + 1 == self.stages.len() {
            r
        } else {
            (self.depth_mult * r as f64).ceil() as usize
        }
    }
}

/// EfficientNet-Lite with lukemelas' names. See the module documentation.
#[derive(Debug)]
pub struct EfficientNetLite {
    config: EfficientNetLiteConfig,
    scope: Scope,
    /// `_conv_stem` (3×3/2) and `_bn0`.
    pub stem: (Conv2d, BatchNorm),
    /// `_blocks.0` … .
    pub blocks: Vec<InvertedResidual>,
    /// `_conv_head` (1×1) and `_bn1`.
    pub head: (Conv2d, BatchNorm),
    /// `_fc`.
    pub fc: Linear,
    rng: Mutex<SeededRng>,
    dtype: DType,
    device: Device,
}

impl EfficientNetLite {
    /// A new model registered under `scope` (`store.scope("")` for the file's bare names),
    /// initialised from `rng` (Kaiming-normal fan-out convolutions, γ = 1, β = 0, PyTorch's
    /// default `_fc`); the dropout / drop-connect generator is forked from `rng` too.
    pub fn new(
        scope: &Scope,
        config: &EfficientNetLiteConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let config = config.clone();
        if config.num_classes == 0 {
            return Err(ModelError::Config(
                "EfficientNet-Lite needs at least one output class".to_string(),
            ));
        }
        if config.stages.is_empty()
            || config
                .stages
                .iter()
                .any(|s| s.repeats == 0 || s.kernel == 0 || s.stride == 0 || s.expand == 0)
            || !(config.width_mult > 0.0 && config.depth_mult > 0.0)
        {
            return Err(ModelError::Config(format!(
                "EfficientNet-Lite: every stage needs positive repeats, kernel, stride and \
                 expansion and the multipliers must be positive: {config:?}"
            )));
        }
        check_prob("EfficientNet-Lite dropout", config.dropout)?;
        check_prob("EfficientNet-Lite drop-connect", config.drop_connect)?;
        let bnc = (config.bn_eps, config.bn_momentum);
        let stem_ch = 32;
        let head_ch = 1280;
        let stem = (
            conv(&scope.sub("_conv_stem"), 3, stem_ch, 3, 2, rng, dtype, dev)?,
            bn(&scope.sub("_bn0"), stem_ch, bnc.0, bnc.1, dtype, dev)?,
        );
        let total: usize = (0..config.stages.len())
            .map(|i| config.stage_repeats(i))
            .sum();
        let mut blocks = Vec::with_capacity(total);
        let mut in_ch = stem_ch;
        for (si, st) in config.stages.iter().enumerate() {
            let out_ch = config.round_filters(st.out_ch);
            for r in 0..config.stage_repeats(si) {
                let idx = blocks.len();
                let b = scope.sub("_blocks").sub(&idx.to_string());
                let scopes = BlockScopes {
                    expand: b.sub("_expand_conv"),
                    expand_bn: b.sub("_bn0"),
                    depthwise: b.sub("_depthwise_conv"),
                    depthwise_bn: b.sub("_bn1"),
                    project: b.sub("_project_conv"),
                    project_bn: b.sub("_bn2"),
                };
                let shape = BlockShape {
                    in_ch,
                    hidden: in_ch * st.expand,
                    out_ch,
                    kernel: st.kernel,
                    stride: if r == 0 { st.stride } else { 1 },
                };
                blocks.push(InvertedResidual::new(
                    &scopes,
                    shape,
                    PaddingMode::TfSame,
                    bnc,
                    config.drop_connect * idx as f64 / total as f64,
                    rng,
                    dtype,
                    dev,
                )?);
                in_ch = out_ch;
            }
        }
        let head = (
            conv(
                &scope.sub("_conv_head"),
                in_ch,
                head_ch,
                1,
                1,
                rng,
                dtype,
                dev,
            )?,
            bn(&scope.sub("_bn1"), head_ch, bnc.0, bnc.1, dtype, dev)?,
        );
        let fc = Linear::new(
            &scope.sub("_fc"),
            head_ch,
            config.num_classes,
            true,
            rng,
            dtype,
            dev,
        )?;
        let own = rng.fork();
        Ok(Self {
            config,
            scope: scope.clone(),
            stem,
            blocks,
            head,
            fc,
            rng: Mutex::new(own),
            dtype,
            device: dev.clone(),
        })
    }

    /// EfficientNet-Lite0 with `num_classes` outputs at the root of `store`, initialised from
    /// `seed`.
    pub fn lite0(
        store: &crate::ParamStore,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Self::new(
            &store.scope(""),
            &EfficientNetLiteConfig::lite(0, num_classes)?,
            &mut SeededRng::new(seed),
            dtype,
            dev,
        )
    }

    /// The configuration.
    pub fn config(&self) -> &EfficientNetLiteConfig {
        &self.config
    }

    /// The preprocessing the TF-trained weights expect: centre crop `r/(r+32)` of the short
    /// side, bicubic resize to `r × r` (r = the configuration's resolution, 224 for Lite0),
    /// `(p − 127)/128` on every channel.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::efficientnet_lite(self.config.resolution)
    }

    /// Width of the pooled features (1280).
    pub fn feature_dim(&self) -> usize {
        self.fc.in_dim()
    }

    /// The scope the model's names live under.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The scope prefix the model's names live under (`""` at the root).
    pub fn prefix(&self) -> String {
        self.scope.path("").trim_end_matches('.').to_string()
    }

    /// Replaces the generator dropout and drop-connect draw from in [`ModuleT::forward_t`] and
    /// [`crate::Backbone::features_t`].
    pub fn set_rng(&self, rng: SeededRng) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = rng;
    }

    /// Sets the dropout before `_fc` and the drop-connect rate (block `i` of `B` then drops with
    /// `rate · i / B`); 0 turns them off.
    pub fn set_dropout(&mut self, dropout: f64, drop_connect: f64) -> Result<()> {
        check_prob("EfficientNet-Lite dropout", dropout)?;
        check_prob("EfficientNet-Lite drop-connect", drop_connect)?;
        self.config.dropout = dropout;
        self.config.drop_connect = drop_connect;
        let total = self.blocks.len() as f64;
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.drop_connect = drop_connect * i as f64 / total;
        }
        Ok(())
    }

    /// The feature blocks as name patterns, input side first: `_conv_stem,_bn0`, `_blocks.0`,
    /// …, `_conv_head,_bn1`.
    pub fn block_names(&self) -> Vec<String> {
        let p = |n: &str| self.scope.path(n);
        let mut v = vec![format!("{},{}", p("_conv_stem"), p("_bn0"))];
        v.extend((0..self.blocks.len()).map(|i| p(&format!("_blocks.{i}"))));
        v.push(format!("{},{}", p("_conv_head"), p("_bn1")));
        v
    }

    /// Every parameter and buffer of the feature part (all but `_fc`).
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

    /// Every parameter and buffer of the model.
    pub fn params(&self) -> Vec<Param> {
        let mut v = self.feature_params();
        v.push(self.fc.weight.clone());
        v.extend(self.fc.bias.clone());
        v
    }

    /// Replaces the head: removes `_fc.{weight,bias}` and registers a new `Linear(1280, n)`
    /// initialised as PyTorch's `nn.Linear` from `rng`. The features are untouched.
    pub fn with_num_classes(mut self, n: usize, rng: &mut SeededRng) -> Result<Self> {
        if n == 0 {
            return Err(ModelError::Config(
                "EfficientNet-Lite needs at least one output class".to_string(),
            ));
        }
        let fs = self.scope.sub("_fc");
        self.fc = Linear::replace(&fs, self.feature_dim(), n, rng, self.dtype, &self.device)?;
        self.config.num_classes = n;
        Ok(self)
    }

    /// The last feature map (N, 1280, ⌈H/32⌉, ⌈W/32⌉), after `_bn1`'s ReLU6; drop-connect in
    /// training draws from `rng` (none without one).
    pub fn feature_map_with_rng(
        &self,
        x: &Tensor,
        train: bool,
        mut rng: Option<&mut SeededRng>,
    ) -> Result<Tensor> {
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
            &conv_padded(&self.stem.0, &x, PaddingMode::TfSame)?,
            train,
            xfer_ops::Activation::Relu6,
        )?;
        for b in &self.blocks {
            y = b.forward_rng(&y, train, rng.as_deref_mut())?;
        }
        self.head.1.forward_act(
            &conv_padded(&self.head.0, &y, PaddingMode::TfSame)?,
            train,
            xfer_ops::Activation::Relu6,
        )
    }

    /// Pooled features (N, 1280), drop-connect in training drawn from `rng`.
    pub fn features_with_rng(
        &self,
        x: &Tensor,
        train: bool,
        rng: Option<&mut SeededRng>,
    ) -> Result<Tensor> {
        let y = self.feature_map_with_rng(x, train, rng)?;
        Ok(xfer_ops::adaptive_avg_pool2d(&y, 1, 1)?.flatten_from(1)?)
    }

    /// Logits (N, classes) of pooled features: dropout (training, drawn from `rng`) then `_fc`.
    pub fn classify(&self, features: &Tensor, train: bool, rng: &mut SeededRng) -> Result<Tensor> {
        let f = if train {
            dropout(features, self.config.dropout, rng)?
        } else {
            features.clone()
        };
        self.fc.forward(&f)
    }

    /// Logits (N, classes), dropout and drop-connect drawn from the caller's `rng`.
    pub fn forward_with_rng(&self, x: &Tensor, train: bool, rng: &mut SeededRng) -> Result<Tensor> {
        let f = self.features_with_rng(x, train, Some(rng))?;
        self.classify(&f, train, rng)
    }

    /// Loads a state dict with lukemelas' names saved as safetensors (f32/f16/bf16/f64
    /// converted, `num_batches_tracked` ignored), strictly: every tensor must be there with the
    /// right shape and nothing else may be in the file. All-or-nothing; see
    /// [`load_pretrained`].
    pub fn load_pretrained(&self, path: impl AsRef<Path>) -> Result<TransferReport> {
        self.load_pretrained_with(path, &LoadOptions::default())
    }

    /// Like [`EfficientNetLite::load_pretrained`] with options (e.g. skip `_fc` to keep a new
    /// head).
    pub fn load_pretrained_with(
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

impl ModuleT for EfficientNetLite {
    /// Logits (N, classes); dropout and drop-connect in training draw from the model's own
    /// generator.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let f = self.features_with_rng(x, train, Some(&mut rng))?;
        self.classify(&f, train, &mut rng)
    }
}

impl crate::Backbone for EfficientNetLite {
    /// The pooled features (N, 1280); drop-connect in training draws from the model's own
    /// generator.
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.features_with_rng(x, train, Some(&mut rng))
    }
    fn feature_dim(&self) -> usize {
        EfficientNetLite::feature_dim(self)
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
    fn lite0_names_and_shapes_match_the_file_layout() {
        let store = ParamStore::new();
        let m = EfficientNetLite::lite0(&store, 1000, 0, DType::F32, &Device::Cpu).unwrap();
        // 247 tensors in the published file (the num_batches_tracked counters left out).
        assert_eq!(store.len(), 247);
        assert_eq!(m.blocks.len(), 16);
        for (n, shape) in [
            ("_conv_stem.weight", vec![32, 3, 3, 3]),
            ("_blocks.0._depthwise_conv.weight", vec![32, 1, 3, 3]),
            ("_blocks.0._project_conv.weight", vec![16, 32, 1, 1]),
            ("_blocks.1._expand_conv.weight", vec![96, 16, 1, 1]),
            ("_blocks.3._depthwise_conv.weight", vec![144, 1, 5, 5]),
            ("_blocks.15._bn2.running_var", vec![320]),
            ("_conv_head.weight", vec![1280, 320, 1, 1]),
            ("_fc.weight", vec![1000, 1280]),
        ] {
            assert_eq!(store.get(n).unwrap().var().dims(), shape.as_slice(), "{n}");
        }
        assert!(!store.contains("_blocks.0._expand_conv.weight"));
        assert!((m.blocks[8].drop_connect - 0.2 * 8.0 / 16.0).abs() < 1e-12);
        assert_eq!(m.param_names().len(), 245);
        assert_eq!(m.preprocess().input_size, 224);
    }

    #[test]
    fn lite_configurations_scale_the_table() {
        let c4 = EfficientNetLiteConfig::lite(4, 10).unwrap();
        assert_eq!(c4.round_filters(16), 24);
        assert_eq!(c4.round_filters(320), 448);
        assert_eq!(c4.stage_repeats(0), 1);
        assert_eq!(c4.stage_repeats(1), 4);
        assert_eq!(c4.stage_repeats(6), 1);
        let store = ParamStore::new();
        let m = EfficientNetLite::new(
            &store.scope("net"),
            &EfficientNetLiteConfig::lite(2, 5).unwrap(),
            &mut SeededRng::new(1),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(m.blocks.len(), 1 + 3 + 3 + 4 + 4 + 5 + 1);
        assert_eq!(
            store.get("net._conv_head.weight").unwrap().var().dims(),
            &[1280, 352, 1, 1]
        );
        let x = Tensor::zeros((1, 3, 37, 41), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[1, 5]);
        assert!(EfficientNetLiteConfig::lite(5, 10).is_err());
    }

    #[test]
    fn drop_connect_is_seeded() {
        let store = ParamStore::new();
        let m = EfficientNetLite::lite0(&store, 1000, 0, DType::F32, &Device::Cpu)
            .unwrap()
            .with_num_classes(4, &mut SeededRng::new(1))
            .unwrap();
        let x = SeededRng::new(2)
            .normal(&[4, 3, 32, 32], 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        let f = |seed: u64| {
            m.features_with_rng(&x, true, Some(&mut SeededRng::new(seed)))
                .unwrap()
        };
        let d = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(d(&f(5), &f(5)), 0.0);
        assert!(d(&f(5), &f(6)) > 0.0);
        let nodrop = m.features_with_rng(&x, true, None).unwrap();
        assert!(d(&f(5), &nodrop) > 0.0);
        assert_eq!(m.forward_t(&x, true).unwrap().dims(), &[4, 4]);
    }
}
