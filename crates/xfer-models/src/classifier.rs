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
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::backbone::{Backbone, BertBackbone};
use crate::bert::{BertConfig, BertModel};
use crate::digits_cnn::{DigitsCnn, DigitsCnnConfig};
use crate::efficientnet::{EfficientNetLite, EfficientNetLiteConfig};
use crate::groups::ParamGroup;
use crate::layers::{Linear, ModuleT};
use crate::lenet::{DannLeNet, LeNetConfig};
use crate::mlp::{Mlp, MlpConfig};
use crate::mobilenet::{MobileNetV2, MobileNetV2Config};
use crate::params::{ParamStore, Selection};
use crate::pretrained::LoadOptions;
use crate::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::tokenizer::Tokenizer;
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

/// Longest token sequence a text backbone reads (sentence-transformers' default).
pub const TEXT_MAX_LEN: usize = 256;

/// Which backbone a [`Classifier`] is built on; see the module documentation for the syntax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackboneSpec {
    /// An MLP on the flattened input.
    Mlp {
        /// Hidden widths.
        hidden: Vec<usize>,
        /// Dropout after every hidden layer (0 for none).
        dropout: f64,
    },
    /// The small digits CNN ([`DigitsCnn`], default widths).
    Cnn {
        /// Dropout before the last layer (0 for none).
        dropout: f64,
    },
    /// The DANN paper's LeNet ([`DannLeNet`], hidden width 100).
    Lenet,
    /// A torchvision ResNet.
    Resnet {
        /// 18, 34 or 50.
        depth: ResNetDepth,
        /// torchvision weights (safetensors) to start from.
        weights: Option<PathBuf>,
    },
    /// torchvision's MobileNetV2 (width 1.0).
    MobilenetV2 {
        /// torchvision weights (safetensors) to start from.
        weights: Option<PathBuf>,
    },
    /// EfficientNet-Lite0 with lukemelas' names.
    EfficientnetLite0 {
        /// Weights (safetensors) to start from.
        weights: Option<PathBuf>,
    },
    /// A BERT-layout text encoder folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), e.g. all-MiniLM-L6-v2.
    Minilm {
        /// The model folder.
        dir: PathBuf,
    },
    /// A backbone the program built itself ([`Classifier::from_parts`]); not buildable from
    /// a spec.
    Custom {
        /// A name for reports.
        name: String,
    },
}

const SPEC_HELP: &str = "expected mlp[:W1,W2,...][:dropout=P], cnn[:dropout=P], lenet, \
                         resnet18|resnet34|resnet50[:weights=PATH], \
                         mobilenet_v2[:weights=PATH], efficientnet_lite0[:weights=PATH] or minilm:DIR";

impl BackboneSpec {
    /// An MLP with hidden widths 256, 128, no dropout.
    pub fn mlp() -> Self {
        Self::Mlp {
            hidden: vec![256, 128],
            dropout: 0.0,
        }
    }

    /// The digits CNN without dropout.
    pub fn cnn() -> Self {
        Self::Cnn { dropout: 0.0 }
    }

    /// The default network for inputs of `sample_shape`: the CNN for `[C, S, S]` images with
    /// `S` a multiple of 4, else an MLP with hidden widths 256, 128.
    pub fn for_input(sample_shape: &[usize]) -> Self {
        match sample_shape {
            [_, h, w] if h == w && *h >= 4 && h.is_multiple_of(4) => Self::cnn(),
            _ => Self::mlp(),
        }
    }

    /// The same spec with dropout `p` (MLP and CNN; the others are unchanged).
    pub fn with_dropout(mut self, p: f64) -> Self {
        if let Self::Mlp { dropout, .. } | Self::Cnn { dropout } = &mut self {
            *dropout = p;
        }
        self
    }

    /// Whether the backbone starts from pretrained weights (`weights=` or a model folder).
    pub fn is_pretrained(&self) -> bool {
        match self {
            Self::Resnet { weights, .. }
            | Self::MobilenetV2 { weights }
            | Self::EfficientnetLite0 { weights } => weights.is_some(),
            Self::Minilm { .. } => true,
            _ => false,
        }
    }

    /// The image preprocessing its pretrained weights expect (input size, resize and crop,
    /// normalisation), for the image backbones; `None` for the others.
    pub fn preprocess(&self) -> Option<crate::preprocess::Preprocess> {
        use crate::preprocess::Preprocess;
        match self {
            Self::Resnet { .. } | Self::MobilenetV2 { .. } => {
                Some(Preprocess::torchvision_imagenet(224))
            }
            Self::EfficientnetLite0 { .. } => Some(Preprocess::efficientnet_lite(224)),
            _ => None,
        }
    }

    /// Whether the backbone reads text (token ids + mask) rather than numbers.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Minilm { .. })
    }

    /// The pretrained weights file, when there is one.
    pub fn weights_file(&self) -> Option<PathBuf> {
        match self {
            Self::Resnet { weights, .. }
            | Self::MobilenetV2 { weights }
            | Self::EfficientnetLite0 { weights } => weights.clone(),
            Self::Minilm { dir } => Some(dir.join("model.safetensors")),
            _ => None,
        }
    }

    /// The tokenizer of a text backbone (`DIR/tokenizer.json`), `None` for the others.
    pub fn tokenizer(&self) -> Result<Option<Tokenizer>> {
        match self {
            Self::Minilm { dir } => {
                let path = dir.join("tokenizer.json");
                if !path.is_file() {
                    return Err(ModelError::File {
                        path,
                        msg: "the text model folder has no tokenizer.json".into(),
                    });
                }
                Ok(Some(Tokenizer::from_file(path, TEXT_MAX_LEN)?))
            }
            _ => Ok(None),
        }
    }
}

impl FromStr for BackboneSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| ModelError::Config(format!("backbone {s:?}: {why}; {SPEC_HELP}"));
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h.trim(), Some(r)),
            None => (s.trim(), None),
        };
        let mut spec = match head {
            "mlp" => Self::mlp(),
            "cnn" => Self::cnn(),
            "lenet" => Self::Lenet,
            "resnet18" | "resnet34" | "resnet50" => Self::Resnet {
                depth: match head {
                    "resnet18" => ResNetDepth::ResNet18,
                    "resnet34" => ResNetDepth::ResNet34,
                    _ => ResNetDepth::ResNet50,
                },
                weights: None,
            },
            "mobilenet_v2" | "mobilenetv2" => Self::MobilenetV2 { weights: None },
            "efficientnet_lite0" | "efficientnet-lite0" => {
                Self::EfficientnetLite0 { weights: None }
            }
            "minilm" | "bert" => {
                let dir = rest.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                    bad("a text backbone needs its model folder, e.g. minilm:models/all-MiniLM-L6-v2")
                })?;
                return Ok(Self::Minilm {
                    dir: PathBuf::from(dir),
                });
            }
            _ => return Err(bad("unknown backbone")),
        };
        for part in rest.into_iter().flat_map(|r| r.split(':')) {
            let part = part.trim();
            if let Some(p) = part.strip_prefix("dropout=") {
                let p = p
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..1.0).contains(p))
                    .ok_or_else(|| bad("dropout must be a number in [0, 1)"))?;
                match &spec {
                    Self::Mlp { .. } | Self::Cnn { .. } => spec = spec.with_dropout(p),
                    _ => return Err(bad("this backbone takes no dropout")),
                }
            } else if let Some(w) = part.strip_prefix("weights=") {
                match &mut spec {
                    Self::Resnet { weights, .. }
                    | Self::MobilenetV2 { weights }
                    | Self::EfficientnetLite0 { weights }
                        if !w.is_empty() =>
                    {
                        *weights = Some(PathBuf::from(w))
                    }
                    _ => return Err(bad("weights= needs a path, on a pretrained architecture")),
                }
            } else if let Self::Mlp { hidden, .. } = &mut spec {
                *hidden = part
                    .split(',')
                    .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("hidden widths must be positive integers"))?;
            } else {
                return Err(bad(&format!("unexpected option {part:?}")));
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for BackboneSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dropout = |f: &mut fmt::Formatter<'_>, p: f64| {
            if p > 0.0 {
                write!(f, ":dropout={p}")
            } else {
                Ok(())
            }
        };
        match self {
            Self::Mlp { hidden, dropout: p } => {
                let w: Vec<String> = hidden.iter().map(ToString::to_string).collect();
                write!(f, "mlp:{}", w.join(","))?;
                dropout(f, *p)
            }
            Self::Cnn { dropout: p } => {
                f.write_str("cnn")?;
                dropout(f, *p)
            }
            Self::Lenet => f.write_str("lenet"),
            Self::Resnet { depth, weights } => {
                let d = match depth {
                    ResNetDepth::ResNet18 => 18,
                    ResNetDepth::ResNet34 => 34,
                    ResNetDepth::ResNet50 => 50,
                };
                write!(f, "resnet{d}")?;
                match weights {
                    Some(w) => write!(f, ":weights={}", w.display()),
                    None => Ok(()),
                }
            }
            Self::MobilenetV2 { weights } | Self::EfficientnetLite0 { weights } => {
                f.write_str(if matches!(self, Self::MobilenetV2 { .. }) {
                    "mobilenet_v2"
                } else {
                    "efficientnet_lite0"
                })?;
                match weights {
                    Some(w) => write!(f, ":weights={}", w.display()),
                    None => Ok(()),
                }
            }
            Self::Minilm { dir } => write!(f, "minilm:{}", dir.display()),
            Self::Custom { name } => write!(f, "custom:{name}"),
        }
    }
}

/// How a [`Classifier`] is built: backbone, classes, input shape and an optional bottleneck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The backbone.
    pub backbone: BackboneSpec,
    /// The shape of one input example (`[2, L]` for text).
    pub input_shape: Vec<usize>,
    /// Number of classes of the head.
    pub num_classes: usize,
    /// Width of a `Linear → ReLU` bottleneck between backbone and head (`bottleneck.0`; the
    /// head is then a new `head` layer), as TLlib puts on pretrained backbones for domain
    /// adaptation; `None` for the backbone's own head layout.
    #[serde(default)]
    pub bottleneck: Option<usize>,
}

impl ClassifierConfig {
    /// `backbone` for inputs of `input_shape` and `num_classes` classes, no bottleneck.
    pub fn new(backbone: BackboneSpec, input_shape: &[usize], num_classes: usize) -> Self {
        Self {
            backbone,
            input_shape: input_shape.to_vec(),
            num_classes,
            bottleneck: None,
        }
    }
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
    bottleneck: Option<Linear>,
    head: Box<dyn ModuleT + Send + Sync>,
    head_blocks: Vec<String>,
    load_report: Option<TransferReport>,
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

/// Applies a linear layer and ReLU.
fn linear_relu(l: &Linear, x: &Tensor) -> Result<Tensor> {
    Ok(xfer_ops::relu(&crate::layers::Module::forward(l, x)?)?)
}

fn square_image(spec: &BackboneSpec, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [c, h, w] if h == w => Ok((*c, *h)),
        _ => Err(ModelError::Config(format!(
            "backbone {spec} needs square images [C, S, S], got examples of shape {shape:?}; \
             use an MLP (`--backbone mlp`)"
        ))),
    }
}

impl Classifier {
    /// A classifier initialised from `seed` (every value drawn from it; pretrained weights
    /// loaded where the spec names them), in f32 on `device`.
    pub fn new(config: &ClassifierConfig, seed: u64, device: &Device) -> Result<Self> {
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
        let mut rng = SeededRng::new(seed);
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
                let mut m = Mlp::new(&root, &cfg, &mut rng, dt, device)?;
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
                let mut m = DigitsCnn::new(&root, &cfg, &mut rng, dt, device)?;
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
                let mut m = DannLeNet::new(&root, &cfg, &mut rng, dt, device)?;
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
                let m = ResNet::new(&root, &cfg, &mut rng, dt, device)?;
                if let Some(w) = weights {
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
                let m = MobileNetV2::new(&root, &cfg, &mut rng, dt, device)?;
                if let Some(w) = weights {
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
                let m = EfficientNetLite::new(&root, &cfg, &mut rng, dt, device)?;
                if let Some(w) = weights {
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
                let bert = BertModel::new(&root, &bcfg, &mut rng, dt, device)?;
                load_report = Some(bert.load_hf(dir.join("model.safetensors"))?);
                let head = Linear::new(
                    &root.sub("classifier"),
                    bcfg.hidden_size,
                    n,
                    true,
                    &mut rng,
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
            None => (None, head, head_blocks),
            Some(b) => {
                // The backbone's own head is replaced: drop its parameters from the store.
                let own = Selection::parse(&head_blocks.join(","))?;
                for name in store.names() {
                    if own.matches(&name) {
                        store.remove(&name);
                    }
                }
                let d = backbone.feature_dim();
                let bn = Linear::new(&root.sub("bottleneck.0"), d, b, true, &mut rng, dt, device)?;
                let head = Linear::new(&root.sub("head"), b, n, true, &mut rng, dt, device)?;
                let head: Box<dyn ModuleT + Send + Sync> = Box::new(head);
                (Some(bn), head, vec!["bottleneck.0".into(), "head".into()])
            }
        };
        Ok(Self {
            config: config.clone(),
            store,
            backbone,
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
            store,
            backbone,
            bottleneck: None,
            head,
            head_blocks,
            load_report: None,
            device: device.clone(),
        }
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

    /// The features `[N, D]` (after the bottleneck when there is one) of a batch.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.backbone.features_t(x, train)?;
        match &self.bottleneck {
            Some(b) => linear_relu(b, &f),
            None => Ok(f),
        }
    }

    /// Width of [`Classifier::features`].
    pub fn feature_dim(&self) -> usize {
        self.config
            .bottleneck
            .unwrap_or_else(|| self.backbone.feature_dim())
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
        let chunk = chunk.max(1);
        let mut parts = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            parts.push(f(&x.narrow(0, start, len)?)?.detach());
            start += len;
        }
        if parts.is_empty() {
            return Ok(f(x)?.detach());
        }
        Ok(Tensor::cat(&parts, 0)?)
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

/// Loads weights with `load`, skipping the head `head` when its shape does not fit `n`
/// classes: tries strictly first, then without the head.
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
