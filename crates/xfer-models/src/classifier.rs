//! [`Classifier`]: any [`Backbone`] with an optional bottleneck and a linear head, described by
//! a parseable, serialisable [`BackboneSpec`] (what checkpoints store and what every example
//! takes as `--backbone`).
//!
//! | spec | backbone | head | input |
//! |---|---|---|---|
//! | `mlp[:W1,W2,...][:dropout=P]` | [`Mlp`] hidden layers (default 256,128) | `classifier` | any shape, flattened |
//! | `cnn[:dropout=P]` | [`DigitsCnn`] convolutions | `classifier.0` → ReLU → `classifier.2` | `[C, S, S]`, `S % 4 = 0` |
//! | `lenet` | [`DannLeNet`] convolutions | `classifier.{0,2,4}` | `[C, S, S]` |
//! | `resnet18\|34\|50[:weights=PATH]` | [`ResNet`] (torchvision names) | `fc` | `[3, H, W]` |
//! | `mobilenet_v2[:weights=PATH]` | [`MobileNetV2`] (torchvision names) | `classifier.1` | `[3, H, W]` |
//! | `efficientnet_lite0[:weights=PATH]` | [`EfficientNetLite`] Lite0 (lukemelas names) | `_fc` | `[3, H, W]` |
//! | `minilm:DIR` (any BERT folder) | [`BertBackbone`], mean-pooled | `classifier` | text as `[2, L]` ids + mask |
//!
//! `weights=PATH` loads a torchvision / Hugging Face file through the strict transfer report;
//! a head whose class count differs from the file's keeps its fresh initialisation (the new
//! task's head). A backbone with `weights=` (and `minilm:DIR`, which always loads its folder)
//! is *pretrained*: [`Classifier::param_groups`] then gives the backbone a tenth of the head's
//! learning rate by default (TLlib's `get_parameters` habit).

use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::backbone::{Backbone, BertBackbone};
use crate::bert::{BertConfig, BertModel};
use crate::digits_cnn::{DigitsCnn, DigitsCnnConfig};
use crate::efficientnet::{EfficientNetLite, EfficientNetLiteConfig};
use crate::groups::ParamGroup;
use crate::layers::{BatchNorm, Linear, Module, ModuleT};
use crate::lenet::{DannLeNet, LeNetConfig};
use crate::mlp::{Mlp, MlpConfig};
use crate::mobilenet::{MobileNetV2, MobileNetV2Config};
use crate::params::{ParamStore, Selection, no_grad};
use crate::pretrained::LoadOptions;
use crate::resnet::{ResNet, ResNetConfig};
pub use crate::spec::{BackboneSpec, BottleneckSpec, TEXT_MAX_LEN};
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

/// Tag of the bottleneck's random stream (`seed ^ BOTTLENECK_STREAM`).
const BOTTLENECK_STREAM: u64 = 0xB07_7E11;

/// How a [`Classifier`] is built: backbone, classes, input shape and an optional bottleneck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The backbone.
    pub backbone: BackboneSpec,
    /// The shape of one input example (`[2, L]` for text; `[S, S]` images are read as one
    /// channel by the convolutional backbones).
    pub input_shape: Vec<usize>,
    /// Number of outputs of the head: classes, or the width of an embedding or attribute
    /// predictor.
    pub num_classes: usize,
    /// What sits between backbone and head.
    #[serde(default)]
    pub bottleneck: BottleneckSpec,
}

impl ClassifierConfig {
    /// `backbone` for inputs of `input_shape` and `num_classes` classes, no bottleneck.
    pub fn new(backbone: BackboneSpec, input_shape: &[usize], num_classes: usize) -> Self {
        Self {
            backbone,
            input_shape: input_shape.to_vec(),
            num_classes,
            bottleneck: BottleneckSpec::None,
        }
    }

    /// The same configuration with `bottleneck`.
    pub fn with_bottleneck(mut self, bottleneck: BottleneckSpec) -> Self {
        self.bottleneck = bottleneck;
        self
    }
}

/// The layers of a [`BottleneckSpec`].
struct Bottleneck {
    linear: Linear,
    bn: Option<BatchNorm>,
}

/// Backbone + optional bottleneck + head, with its parameters in one [`ParamStore`].
///
/// Built-in networks keep their historical names (`features.*`, `classifier.*`), torchvision
/// and Hugging Face backbones theirs (`conv1.weight`, `encoder.layer.0.*`), so source weights,
/// layer transfer and L2-SP anchors all work by name.
pub struct Classifier {
    config: ClassifierConfig,
    store: ParamStore,
    backbone: Box<dyn Backbone>,
    /// The shape the backbone reads (`input_shape` with a channel axis for `[S, S]` images).
    net_shape: Vec<usize>,
    bottleneck: Option<Bottleneck>,
    head: Box<dyn ModuleT + Send + Sync>,
    head_blocks: Vec<String>,
    load_report: Option<TransferReport>,
    /// The names of the parameters and buffers the network itself owns (its store may hold
    /// more: a method's discriminator, a zero-shot `g`).
    own: Vec<String>,
    device: Device,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("config", &self.config)
            .field("blocks", &self.blocks())
            .finish()
    }
}

fn square_image(spec: &BackboneSpec, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [c, h, w] if h == w => Ok((*c, *h)),
        [h, w] if h == w => Ok((1, *h)),
        _ => Err(ModelError::Config(format!(
            "backbone {spec} needs square images [C, S, S], got examples of shape {shape:?}; \
             use an MLP (`--backbone mlp`)"
        ))),
    }
}

impl Classifier {
    /// A classifier initialised from `seed` (every value drawn from it; pretrained weights
    /// loaded where the spec names them), in f32 on `device`. The bottleneck and its new head
    /// draw from a stream of their own (derived from `seed`), so adding a bottleneck leaves
    /// the backbone's initial weights as they were.
    pub fn new(config: &ClassifierConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = SeededRng::new(seed);
        let mut head_rng = SeededRng::new(seed ^ BOTTLENECK_STREAM);
        Self::build(config, &mut rng, Some(&mut head_rng), device, true)
    }

    /// The network of `config` with seeded initial values and no weights file read (a
    /// pretrained spec's `weights=` and a text folder's `model.safetensors` are ignored): the
    /// skeleton a model package's weights are loaded into.
    pub(crate) fn skeleton(config: &ClassifierConfig, device: &Device) -> Result<Self> {
        let mut rng = SeededRng::new(0);
        let mut head_rng = SeededRng::new(BOTTLENECK_STREAM);
        Self::build(config, &mut rng, Some(&mut head_rng), device, false)
    }

    /// A classifier drawing every initial value from `rng` (backbone first, then the
    /// bottleneck and its head), for callers that build more parameters from the same stream.
    pub fn with_rng(
        config: &ClassifierConfig,
        rng: &mut SeededRng,
        device: &Device,
    ) -> Result<Self> {
        Self::build(config, rng, None, device, true)
    }

    fn build(
        config: &ClassifierConfig,
        rng: &mut SeededRng,
        head_rng: Option<&mut SeededRng>,
        device: &Device,
        load_weights: bool,
    ) -> Result<Self> {
        let spec = &config.backbone;
        let n = config.num_classes;
        if n == 0 {
            return Err(ModelError::Config(
                "a classifier needs at least one class".into(),
            ));
        }
        let shape = config.input_shape.as_slice();
        let store = ParamStore::new();
        let root = store.scope("");
        let dt = DType::F32;
        let mut load_report = None;
        let (backbone, head, head_blocks): (
            Box<dyn Backbone>,
            Box<dyn ModuleT + Send + Sync>,
            Vec<String>,
        ) = match spec {
            BackboneSpec::Mlp { hidden, dropout } => {
                let cfg = MlpConfig {
                    dropout: *dropout,
                    ..MlpConfig::new(shape.iter().product(), hidden, n)
                };
                let mut m = Mlp::new(&root, &cfg, rng, dt, device)?;
                let head = m
                    .take_head()
                    .ok_or_else(|| ModelError::Config("mlp built without a head".into()))?;
                (Box::new(m), Box::new(head), vec!["classifier".into()])
            }
            BackboneSpec::Cnn { dropout } => {
                let (c, s) = square_image(spec, shape)?;
                let cfg = DigitsCnnConfig {
                    in_channels: c,
                    input_size: s,
                    num_classes: n,
                    dropout: *dropout,
                    ..DigitsCnnConfig::default()
                };
                let mut m = DigitsCnn::new(&root, &cfg, rng, dt, device)?;
                let head = m.take_classifier();
                // [Linear, ReLU(, Dropout), Linear].
                let last = if *dropout > 0.0 { 3 } else { 2 };
                let blocks = vec!["classifier.0".into(), format!("classifier.{last}")];
                (Box::new(m), Box::new(head), blocks)
            }
            BackboneSpec::Lenet => {
                let (c, s) = square_image(spec, shape)?;
                let cfg = LeNetConfig {
                    in_channels: c,
                    input_size: s,
                    num_classes: n,
                    ..LeNetConfig::default()
                };
                let mut m = DannLeNet::new(&root, &cfg, rng, dt, device)?;
                let head = m.take_classifier();
                let blocks = (0..3).map(|i| format!("classifier.{}", 2 * i)).collect();
                (Box::new(m), Box::new(head), blocks)
            }
            BackboneSpec::Resnet { depth, weights } => {
                if !matches!(shape, [3, _, _]) {
                    return Err(ModelError::Config(format!(
                        "backbone {spec} needs RGB images [3, H, W], got examples of shape \
                         {shape:?}"
                    )));
                }
                let cfg = ResNetConfig {
                    depth: *depth,
                    num_classes: n,
                };
                let m = ResNet::new(&root, &cfg, rng, dt, device)?;
                if let Some(w) = weights.as_ref().filter(|_| load_weights) {
                    load_report = Some(load_with_head(w, n, "fc", |opts| {
                        m.load_torchvision_with(w, opts)
                    })?);
                }
                let head = m.fc.clone();
                (Box::new(m), Box::new(head), vec!["fc".into()])
            }
            BackboneSpec::MobilenetV2 { weights } => {
                rgb_image(spec, shape)?;
                let cfg = MobileNetV2Config::new(n);
                let m = MobileNetV2::new(&root, &cfg, rng, dt, device)?;
                if let Some(w) = weights.as_ref().filter(|_| load_weights) {
                    load_report = Some(load_with_head(w, n, "classifier.1", |opts| {
                        m.load_torchvision_with(w, opts)
                    })?);
                }
                let head = m.classifier.clone();
                (Box::new(m), Box::new(head), vec!["classifier".into()])
            }
            BackboneSpec::EfficientnetLite0 { weights } => {
                rgb_image(spec, shape)?;
                let cfg = EfficientNetLiteConfig::lite(0, n)?;
                let m = EfficientNetLite::new(&root, &cfg, rng, dt, device)?;
                if let Some(w) = weights.as_ref().filter(|_| load_weights) {
                    load_report = Some(load_with_head(w, n, "_fc", |opts| {
                        m.load_pretrained_with(w, opts)
                    })?);
                }
                let head = m.fc.clone();
                (Box::new(m), Box::new(head), vec!["_fc".into()])
            }
            BackboneSpec::Minilm { dir } => {
                if !matches!(shape, [2, _]) {
                    return Err(ModelError::Config(format!(
                        "backbone {spec} reads text: examples of shape [2, L] (token ids and \
                         mask), got {shape:?}"
                    )));
                }
                spec.tokenizer()?;
                let bcfg = BertConfig::from_file(dir.join("config.json"))?;
                let bert = BertModel::new(&root, &bcfg, rng, dt, device)?;
                if load_weights {
                    load_report = Some(bert.load_hf(dir.join("model.safetensors"))?);
                }
                let head = Linear::new(
                    &root.sub("classifier"),
                    bcfg.hidden_size,
                    n,
                    true,
                    rng,
                    dt,
                    device,
                )?;
                let bb = BertBackbone::new(bert, store.clone());
                (Box::new(bb), Box::new(head), vec!["classifier".into()])
            }
            BackboneSpec::Custom { name } => {
                return Err(ModelError::Config(format!(
                    "backbone custom:{name} is built by the program (Classifier::from_parts), \
                     not from a spec"
                )));
            }
        };
        let (bottleneck, head, head_blocks) = match config.bottleneck {
            BottleneckSpec::None => (None, head, head_blocks),
            BottleneckSpec::Linear(0) | BottleneckSpec::LinearBnRelu(0) => {
                return Err(ModelError::InvalidValue {
                    name: "bottleneck".into(),
                    value: "0".into(),
                    expected: "a width > 0 (or none)".into(),
                });
            }
            BottleneckSpec::Linear(b) | BottleneckSpec::LinearBnRelu(b) => {
                // The backbone's own head is replaced: drop its parameters from the store.
                let own = Selection::parse(&head_blocks.join(","))?;
                for name in store.names() {
                    if own.matches(&name) {
                        store.remove(&name);
                    }
                }
                let head_rng = match head_rng {
                    Some(r) => r,
                    None => &mut *rng,
                };
                let d = backbone.feature_dim();
                let linear =
                    Linear::new(&root.sub("bottleneck.0"), d, b, true, head_rng, dt, device)?;
                let bn = match config.bottleneck {
                    BottleneckSpec::LinearBnRelu(_) => {
                        Some(BatchNorm::new(&root.sub("bottleneck.1"), b, dt, device)?)
                    }
                    _ => None,
                };
                let mut blocks = vec!["bottleneck.0".to_string()];
                if bn.is_some() {
                    blocks.push("bottleneck.1".into());
                }
                blocks.push("head".into());
                let head = Linear::new(&root.sub("head"), b, n, true, head_rng, dt, device)?;
                let head: Box<dyn ModuleT + Send + Sync> = Box::new(head);
                (Some(Bottleneck { linear, bn }), head, blocks)
            }
        };
        let net_shape = match (spec, shape) {
            (BackboneSpec::Cnn { .. } | BackboneSpec::Lenet, [h, w]) => vec![1, *h, *w],
            _ => shape.to_vec(),
        };
        Ok(Self {
            config: config.clone(),
            own: store.names(),
            store,
            backbone,
            net_shape,
            bottleneck,
            head,
            head_blocks,
            load_report,
            device: device.clone(),
        })
    }

    /// A classifier from parts the caller built: a backbone and a head (`head_blocks` its
    /// layer prefixes, last = the head) whose parameters live in `store`. Its spec is
    /// [`BackboneSpec::Custom`] named `name`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: &str,
        input_shape: &[usize],
        num_classes: usize,
        store: ParamStore,
        backbone: Box<dyn Backbone>,
        head: Box<dyn ModuleT + Send + Sync>,
        head_blocks: Vec<String>,
        device: &Device,
    ) -> Self {
        Self {
            config: ClassifierConfig::new(
                BackboneSpec::Custom { name: name.into() },
                input_shape,
                num_classes,
            ),
            own: store.names(),
            store,
            backbone,
            net_shape: input_shape.to_vec(),
            bottleneck: None,
            head,
            head_blocks,
            load_report: None,
            device: device.clone(),
        }
    }

    /// The names of the parameters and buffers the network owns (what a model package
    /// saves), in the store's order; parameters added to its store later by a method are not
    /// among them.
    pub fn own_param_names(&self) -> &[String] {
        &self.own
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The backbone spec.
    pub fn spec(&self) -> &BackboneSpec {
        &self.config.backbone
    }

    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Every parameter of the network (and nothing else).
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    /// The shape of one input example.
    pub fn input_shape(&self) -> &[usize] {
        &self.config.input_shape
    }

    /// What loading the pretrained weights copied (and skipped), when the spec named some.
    pub fn load_report(&self) -> Option<&TransferReport> {
        self.load_report.as_ref()
    }

    /// `x` as the backbone reads it: a batch `[N, input_shape...]` (an error naming both
    /// shapes otherwise), with a channel axis added for `[S, S]` images.
    fn input(&self, x: &Tensor) -> Result<Tensor> {
        let shape = self.input_shape();
        // Text batches are `[N, 2, L]` with any `L` (cut to the longest sentence).
        let text_ok = self.spec().is_text() && x.rank() == 3 && x.dims().get(1) == Some(&2);
        if text_ok {
            return Ok(x.clone());
        }
        if x.dims().get(1..) != Some(shape) {
            return Err(ModelError::Shape(format!(
                "the network ({}) takes batches of shape [N, {}], got {:?}",
                self.spec(),
                shape
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                x.dims()
            )));
        }
        if self.net_shape.as_slice() == shape {
            return Ok(x.clone());
        }
        let mut to = vec![x.dim(0)?];
        to.extend(&self.net_shape);
        Ok(x.reshape(to)?)
    }

    /// The backbone's features `[N, D]` of a batch (before any bottleneck).
    pub fn backbone_features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.backbone.features_t(&self.input(x)?, train)
    }

    /// The features `[N, D]` (after the bottleneck when there is one) of a batch.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.backbone_features(x, train)?;
        match &self.bottleneck {
            None => Ok(f),
            Some(Bottleneck { linear, bn: None }) => Ok(linear.forward(&f)?),
            Some(Bottleneck {
                linear,
                bn: Some(bn),
            }) => Ok(xfer_ops::relu(&bn.forward_t(&linear.forward(&f)?, train)?)?),
        }
    }

    /// Width of [`Classifier::features`].
    pub fn feature_dim(&self) -> usize {
        self.config
            .bottleneck
            .width()
            .unwrap_or_else(|| self.backbone.feature_dim())
    }

    /// Whether the bottleneck holds a batch norm for [`Classifier::adapt_batch_norm`].
    pub fn has_batch_norm(&self) -> bool {
        matches!(&self.bottleneck, Some(Bottleneck { bn: Some(_), .. }))
    }

    /// AdaBN (Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization for Practical Domain
    /// Adaptation", ICLR-W 2017): replaces the bottleneck batch norm's running statistics
    /// with the mean and (unbiased) variance of its input over all of `x` — the target
    /// inputs, `chunk` rows at a time — leaving every weight as trained. An error when the
    /// network has no batch-norm bottleneck or `x` has fewer than two rows.
    pub fn adapt_batch_norm(&self, x: &Tensor, chunk: usize) -> Result<()> {
        let Some(Bottleneck {
            linear,
            bn: Some(bn),
        }) = &self.bottleneck
        else {
            return Err(ModelError::Incompatible(
                "AdaBN re-estimates batch-norm statistics, but this network has none: give it \
                 a batch-norm bottleneck (BottleneckSpec::LinearBnRelu, --bottleneck N)"
                    .into(),
            ));
        };
        let n = x.dims().first().copied().unwrap_or(0);
        if n < 2 {
            return Err(ModelError::Shape(format!(
                "AdaBN needs at least two target examples, got {n}"
            )));
        }
        let pre = self
            .map_chunks(x, chunk, |c| {
                linear.forward(&self.backbone_features(c, false)?)
            })?
            .to_dtype(DType::F64)?;
        let mean = pre.mean(0)?;
        let var = (pre.broadcast_sub(&mean)?.sqr()?.sum(0)? / (n - 1) as f64)?;
        let dtype = bn.running_mean.var().dtype();
        bn.running_mean.set(&mean.to_dtype(dtype)?)?;
        bn.running_var.set(&var.to_dtype(dtype)?)?;
        Ok(())
    }

    /// The head applied to features from [`Classifier::features`].
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.head.forward_t(features, train)
    }

    /// The logits `[N, classes]` of a batch.
    pub fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head_forward(&self.features(x, train)?, train)
    }

    /// The logits in evaluation mode, `chunk` examples at a time, detached.
    pub fn logits_eval(&self, x: &Tensor, chunk: usize) -> Result<Tensor> {
        self.map_chunks(x, chunk, |c| self.logits(c, false))
    }

    /// The features in evaluation mode, `chunk` examples at a time, detached.
    pub fn features_eval(&self, x: &Tensor, chunk: usize) -> Result<Tensor> {
        self.map_chunks(x, chunk, |c| self.features(c, false))
    }

    fn map_chunks(
        &self,
        x: &Tensor,
        chunk: usize,
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let n = x.dims().first().copied().unwrap_or(0);
        if n == 0 {
            return no_grad(|| Ok(f(x)?.detach()));
        }
        map_rows(x, chunk, f)
    }

    /// The ordered blocks, input side first: the backbone's, then the bottleneck and head
    /// layers. The last is the head.
    pub fn blocks(&self) -> Vec<String> {
        let mut v = self.backbone.blocks();
        v.extend(self.head_blocks.iter().cloned());
        v
    }

    /// The head's block (the last layer).
    pub fn head_block(&self) -> &str {
        self.head_blocks
            .last()
            .map(String::as_str)
            .unwrap_or("classifier")
    }

    /// The layers after the backbone (bottleneck and head), as one selection.
    pub fn head_selection(&self) -> Result<Selection> {
        Selection::parse(&self.head_blocks.join(","))
    }

    /// The names of the backbone's parameters and buffers.
    pub fn backbone_param_names(&self) -> Vec<String> {
        self.backbone.param_names()
    }

    /// Parameter groups for an optimiser: the backbone at `backbone_lr_mult` × the base rate,
    /// the bottleneck and head at 1× (TLlib uses 0.1 for pretrained backbones).
    pub fn param_groups(&self, backbone_lr_mult: f64) -> Result<Vec<ParamGroup>> {
        let names = self.backbone_param_names();
        let sel = Selection::AnyOf(names.into_iter().map(Selection::Exact).collect());
        Ok(vec![
            ParamGroup::new("backbone", sel).with_lr_mult(backbone_lr_mult),
            ParamGroup::new("head", self.head_selection()?),
        ])
    }

    /// The default backbone multiplier: 0.1 for pretrained backbones, 1 for the others.
    pub fn default_backbone_lr_mult(&self) -> f64 {
        if self.spec().is_pretrained() {
            0.1
        } else {
            1.0
        }
    }

    /// A deep copy of every parameter and buffer, by name.
    pub fn weights(&self) -> Result<std::collections::BTreeMap<String, Tensor>> {
        self.store
            .all()
            .iter()
            .map(|p| Ok((p.name().to_string(), p.var().as_tensor().copy()?)))
            .collect()
    }
}

/// Refuses examples that are not RGB images `[3, H, W]`.
fn rgb_image(spec: &BackboneSpec, shape: &[usize]) -> Result<()> {
    if matches!(shape, [3, _, _]) {
        Ok(())
    } else {
        Err(ModelError::Config(format!(
            "backbone {spec} needs RGB images [3, H, W], got examples of shape {shape:?}"
        )))
    }
}

fn load_with_head(
    path: &Path,
    n: usize,
    head: &str,
    load: impl Fn(&LoadOptions) -> Result<TransferReport>,
) -> Result<TransferReport> {
    let file = crate::safetensors_file::SafetensorsFile::open(path)?;
    let file_classes = file
        .shape(&format!("{head}.weight"))
        .and_then(|s| s.first().copied());
    let opts = if file_classes == Some(n) {
        LoadOptions::default()
    } else {
        LoadOptions {
            skip: Some(Selection::Prefix(head.to_string())),
            ..LoadOptions::default()
        }
    };
    load(&opts)
}

/// Bytes of input per evaluation batch that [`eval_rows`] aims at: the activations of a
/// forward pass are a small multiple of its input, so this keeps a batch's working set in
/// the tens of megabytes (buffers that the caches and the allocator reuse) rather than
/// gigabytes of fresh memory per batch.
pub const EVAL_INPUT_BYTES: usize = 2 << 20;

/// Rows per evaluation batch for inputs of `row_elems` elements of `dtype` each: as many as
/// fit in [`EVAL_INPUT_BYTES`], at least 16 (smaller batches waste the matrix kernels) and
/// at most 512. A 3×96×96 f32 image gives 18 rows, a 64-feature row 512. Integer inputs are
/// token ids, each of which becomes an embedding: a token counts as 256 f32 values (a
/// 128-token sentence gives 16 rows).
pub fn eval_rows(row_elems: usize, dtype: DType) -> usize {
    let per_elem = if dtype.is_int() {
        256 * 4
    } else {
        dtype.size_in_bytes()
    };
    (EVAL_INPUT_BYTES / (row_elems.max(1) * per_elem)).clamp(16, 512)
}

/// Runs `f` over row chunks of `x` — at most `max_rows` rows and at most [`eval_rows`] —
/// inside [`no_grad`], and concatenates the detached results: evaluation of a whole data set
/// in bounded memory, with no autograd graph. An error for an empty `x`. `f` may return any
/// error that a [`ModelError`] and a candle error convert into (so callers keep their own).
pub fn map_rows<E>(
    x: &Tensor,
    max_rows: usize,
    mut f: impl FnMut(&Tensor) -> std::result::Result<Tensor, E>,
) -> std::result::Result<Tensor, E>
where
    E: From<ModelError> + From<candle_core::Error>,
{
    let dims = x.dims();
    let n = dims.first().copied().unwrap_or(0);
    if n == 0 {
        return Err(ModelError::Shape(format!("cannot evaluate an empty batch {dims:?}")).into());
    }
    let row: usize = dims[1..].iter().product();
    let chunk = max_rows.clamp(1, eval_rows(row, x.dtype()));
    no_grad(|| {
        let mut parts = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            parts.push(f(&x.narrow(0, start, len)?)?.detach());
            start += len;
        }
        Ok(Tensor::cat(&parts, 0)?)
    })
}
