//! [`BackboneSpec`] and [`BottleneckSpec`]: the parseable, serialisable descriptions of a
//! [`crate::Classifier`]'s backbone and bottleneck (what checkpoints and model files store and
//! what every example takes as `--backbone` / `--bottleneck`). The syntax is tabled in
//! [`crate::classifier`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::resnet::ResNetDepth;
use crate::tokenizer::Tokenizer;
#[allow(unused_imports)] // for the documentation links
use crate::{Classifier, DannLeNet, DigitsCnn};
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

    /// An MLP with the given hidden widths (none: a linear map of the input), no dropout.
    pub fn mlp_hidden(hidden: &[usize]) -> Self {
        Self::Mlp {
            hidden: hidden.to_vec(),
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

    /// What fits samples of `sample_shape` among the built-in networks: an MLP with hidden
    /// widths `mlp_hidden` for vectors `[D]`, the digits CNN for images `[C, S, S]` / `[S, S]`
    /// with `S` a multiple of 4, LeNet for other square images of side ≥ 16; an error naming
    /// the shape otherwise.
    pub fn auto(sample_shape: &[usize], mlp_hidden: &[usize]) -> Result<Self> {
        let image = match *sample_shape {
            [_, h, w] | [h, w] => Some((h, w)),
            _ => None,
        };
        match image {
            None if sample_shape.len() == 1 => Ok(Self::mlp_hidden(mlp_hidden)),
            Some((h, w)) if h == w && h >= 4 && h.is_multiple_of(4) => Ok(Self::cnn()),
            Some((h, w)) if h == w && h >= 16 => Ok(Self::Lenet),
            _ => Err(ModelError::Shape(format!(
                "no built-in network fits samples of shape {sample_shape:?}: use vectors [D] \
                 (an MLP) or square images [C, S, S] (a CNN); add `flatten` to the data spec to \
                 treat images as vectors, or resize them (folder:DIR:size=SxS)"
            ))),
        }
    }

    /// A short name of the architecture (`mlp`, `cnn`, `lenet`, `resnet18`, ...,
    /// `custom`), without its options.
    pub fn name(&self) -> String {
        let full = self.to_string();
        full.split(':').next().unwrap_or_default().to_string()
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

/// What sits between a [`Classifier`]'s backbone and its head (TLlib's `bottleneck`).
///
/// With a bottleneck the backbone's own head is removed and a new linear `head` of
/// `width → classes` reads the bottleneck's output; the bottleneck's layers are
/// `bottleneck.0` (linear) and, for [`BottleneckSpec::LinearBnRelu`], `bottleneck.1` (batch
/// norm, the statistics [`Classifier::adapt_batch_norm`] re-estimates). Parses from `none`,
/// `linear:W`, `bn:W` (or `linear_bn_relu:W`) and a bare width `W` (= `bn:W`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckSpec {
    /// The backbone's own head layout.
    #[default]
    None,
    /// A linear projection `W_b f` of width `w` (no activation).
    Linear(usize),
    /// `ReLU(BN(W_b f))` of width `w`, as TLlib's domain-adaptation classifiers.
    LinearBnRelu(usize),
}

impl BottleneckSpec {
    /// The bottleneck's width, `None` without one.
    pub fn width(&self) -> Option<usize> {
        match self {
            Self::None => None,
            Self::Linear(w) | Self::LinearBnRelu(w) => Some(*w),
        }
    }

    /// Whether it holds a batch norm.
    pub fn has_batch_norm(&self) -> bool {
        matches!(self, Self::LinearBnRelu(_))
    }
}

impl FromStr for BottleneckSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || ModelError::InvalidValue {
            name: "bottleneck".into(),
            value: s.into(),
            expected: "none, linear:W, bn:W (linear → batch norm → ReLU) or a width W > 0".into(),
        };
        let t = s.trim();
        if t.is_empty() || t == "none" || t == "0" {
            return Ok(Self::None);
        }
        let (kind, w) = t.split_once(':').unwrap_or(("bn", t));
        let w = w
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(bad)?;
        match kind.trim() {
            "linear" => Ok(Self::Linear(w)),
            "bn" | "linear_bn_relu" => Ok(Self::LinearBnRelu(w)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for BottleneckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Linear(w) => write!(f, "linear:{w}"),
            Self::LinearBnRelu(w) => write!(f, "bn:{w}"),
        }
    }
}
