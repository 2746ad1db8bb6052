//! The networks: [`AdaptNet`], the domain-adaptation methods' network — an
//! [`xfer_models::Classifier`] (any [`xfer_models::BackboneSpec`]) with an optional batch-norm
//! bottleneck — and the older [`Architecture`] / [`Net`] pair the zero-shot methods build on.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_models::{
    Activation, Backbone, BackboneSpec, BatchNorm, Classifier, ClassifierConfig, DannLeNet,
    DigitsCnn, DigitsCnnConfig, LeNetConfig, Linear, Mlp, MlpConfig, Module, ModuleT, ParamStore,
    Scope,
};
use xfer_ops::SeededRng;

use crate::{Result, TrainError};

/// Rows per forward pass when a whole data set is evaluated.
const EVAL_CHUNK: usize = 512;

/// The network a method builds for a data set: an MLP for feature vectors, a small CNN for
/// images. Every architecture splits into a feature extractor `G_f` and a head `G_y` whose
/// width the method chooses (classes, attributes or an embedding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    /// [`Mlp`] on flattened inputs: `hidden` layers form `G_f`, a linear layer is `G_y`.
    Mlp {
        /// Hidden widths, input side first (the last one is the feature width).
        hidden: Vec<usize>,
        /// Activation after every hidden layer.
        activation: Activation,
    },
    /// [`DigitsCnn`] for square images whose side is a multiple of 4: two 3×3 convolutions
    /// with max-pooling form `G_f`, `features → hidden → outputs` is `G_y`.
    Cnn {
        /// Channels of the two convolutions.
        channels: (usize, usize),
        /// Hidden width of the head.
        hidden: usize,
        /// Dropout before the head's last layer.
        dropout: f64,
    },
    /// The DANN paper's LeNet ([`DannLeNet`], square images of side ≥ 16): two 5×5
    /// convolutions form `G_f`, `features → hidden → hidden → outputs` is `G_y`.
    LeNet {
        /// Width of the head's hidden layers (100 in the paper).
        hidden: usize,
    },
}

impl Architecture {
    /// An MLP with ReLU hidden layers of the given widths.
    pub fn mlp(hidden: &[usize]) -> Self {
        Architecture::Mlp {
            hidden: hidden.to_vec(),
            activation: Activation::Relu,
        }
    }

    /// The digits CNN with channels (16, 32) and a 64-unit head.
    pub fn cnn() -> Self {
        Architecture::Cnn {
            channels: (16, 32),
            hidden: 64,
            dropout: 0.0,
        }
    }

    /// The paper's LeNet (100-unit head).
    pub fn lenet() -> Self {
        Architecture::LeNet { hidden: 100 }
    }

    /// What fits samples of `sample_shape`: an MLP (`mlp_hidden`) for vectors `[D]`, the
    /// digits CNN for images `[C, S, S]` / `[S, S]` with `S` a multiple of 4, LeNet for other
    /// square images of side ≥ 16; an error naming the shape otherwise.
    pub fn auto(sample_shape: &[usize], mlp_hidden: &[usize]) -> Result<Self> {
        match image_shape(sample_shape) {
            None if sample_shape.len() == 1 => Ok(Self::mlp(mlp_hidden)),
            Some((_, h, w)) if h == w && h >= 4 && h.is_multiple_of(4) => Ok(Self::cnn()),
            Some((_, h, w)) if h == w && h >= 16 => Ok(Self::lenet()),
            _ => Err(TrainError::Config(format!(
                "no model fits samples of shape {sample_shape:?}: use vectors [D] (an MLP) or \
                 square images [C, S, S] (a CNN); add `flatten` to the data spec to treat \
                 images as vectors, or resize them (folder:DIR:size=SxS)"
            ))),
        }
    }

    /// A short name: `mlp`, `cnn` or `lenet`.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Mlp { .. } => "mlp",
            Architecture::Cnn { .. } => "cnn",
            Architecture::LeNet { .. } => "lenet",
        }
    }
}

/// `[C, H, W]` (or `[H, W]` as one channel) of an image sample shape.
fn image_shape(sample_shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *sample_shape {
        [c, h, w] => Some((c, h, w)),
        [h, w] => Some((1, h, w)),
        _ => None,
    }
}

enum Body {
    Mlp(Mlp),
    Cnn(DigitsCnn),
    LeNet(DannLeNet),
}

/// A network built from an [`Architecture`]: [`Net::features`] is `G_f`, [`Net::head`] is
/// `G_y` (or `f` of zero-shot learning, or an attribute predictor).
pub struct Net {
    body: Body,
    sample_shape: Vec<usize>,
    out_dim: usize,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.body {
            Body::Mlp(_) => "mlp",
            Body::Cnn(_) => "cnn",
            Body::LeNet(_) => "lenet",
        };
        f.debug_struct("Net")
            .field("kind", &kind)
            .field("sample_shape", &self.sample_shape)
            .field("feature_dim", &self.feature_dim())
            .field("out_dim", &self.out_dim)
            .finish()
    }
}

impl Net {
    /// Builds `arch` under `scope` for samples of `sample_shape` with `out_dim` outputs.
    /// An error names the shape when the architecture cannot take it (a CNN on vectors).
    pub fn new(
        arch: &Architecture,
        scope: &Scope,
        sample_shape: &[usize],
        out_dim: usize,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let body = match arch {
            Architecture::Mlp { hidden, activation } => {
                let input_dim = sample_shape.iter().product();
                let cfg = MlpConfig {
                    activation: *activation,
                    ..MlpConfig::new(input_dim, hidden, out_dim)
                };
                Body::Mlp(Mlp::new(scope, &cfg, rng, dtype, dev)?)
            }
            Architecture::Cnn {
                channels,
                hidden,
                dropout,
            } => {
                let (c, h, w) = square_image(sample_shape, "cnn")?;
                let _ = w;
                let cfg = DigitsCnnConfig {
                    in_channels: c,
                    input_size: h,
                    channels: *channels,
                    hidden: *hidden,
                    num_classes: out_dim,
                    dropout: *dropout,
                };
                Body::Cnn(DigitsCnn::new(scope, &cfg, rng, dtype, dev)?)
            }
            Architecture::LeNet { hidden } => {
                let (c, h, _) = square_image(sample_shape, "lenet")?;
                let cfg = LeNetConfig {
                    in_channels: c,
                    input_size: h,
                    hidden: *hidden,
                    num_classes: out_dim,
                };
                Body::LeNet(DannLeNet::new(scope, &cfg, rng, dtype, dev)?)
            }
        };
        Ok(Self {
            body,
            sample_shape: sample_shape.to_vec(),
            out_dim,
        })
    }

    /// The sample shape the network takes.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// Width of the head's output.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Width of `G_f`'s features.
    pub fn feature_dim(&self) -> usize {
        match &self.body {
            Body::Mlp(m) => m.feature_dim(),
            Body::Cnn(m) => m.feature_dim(),
            Body::LeNet(m) => m.feature_dim(),
        }
    }

    /// `G_f(x)` for a batch `x` of shape `(N, sample_shape...)`: `(N, feature_dim)`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = x.dim(0)?;
        let want: usize = self.sample_shape.iter().product();
        if x.elem_count() != n * want || x.dims().get(1..) != Some(&self.sample_shape[..]) {
            return Err(TrainError::Config(format!(
                "the network takes batches of shape (N, {}), got {:?}",
                dims_list(&self.sample_shape),
                x.dims()
            )));
        }
        Ok(match &self.body {
            Body::Mlp(m) => m.features_t(&x.flatten_from(1)?, train)?,
            Body::Cnn(m) => m.features_t(&as_image(x)?, train)?,
            Body::LeNet(m) => m.features_t(&as_image(x)?, train)?,
        })
    }

    /// `G_y(f)` for features `f` `(N, feature_dim)`: `(N, out_dim)`.
    pub fn head(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match &self.body {
            Body::Mlp(m) => m.head_forward(features)?,
            Body::Cnn(m) => m.head_forward(features, train)?,
            Body::LeNet(m) => m.head_forward(features, train)?,
        })
    }

    /// `G_y(G_f(x))`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head(&self.features(x, train)?, train)
    }
}

fn dims_list(d: &[usize]) -> String {
    d.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn square_image(sample_shape: &[usize], what: &str) -> Result<(usize, usize, usize)> {
    match image_shape(sample_shape) {
        Some((c, h, w)) if h == w => Ok((c, h, w)),
        _ => Err(TrainError::Config(format!(
            "a {what} takes square images [C, S, S], but the samples have shape \
             {sample_shape:?}; use --model mlp for feature vectors"
        ))),
    }
}

/// `(N, H, W)` → `(N, 1, H, W)`; `(N, C, H, W)` unchanged.
fn as_image(x: &Tensor) -> Result<Tensor> {
    Ok(if x.rank() == 3 {
        x.unsqueeze(1)?
    } else {
        x.clone()
    })
}

/// Runs `f` over row chunks of `x` and concatenates the results (evaluation of whole data
/// sets without one huge batch).
pub(crate) fn chunked(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let n = x.dim(0)?;
    let mut outs = Vec::with_capacity(n.div_ceil(EVAL_CHUNK));
    let mut i = 0;
    while i < n {
        let len = EVAL_CHUNK.min(n - i);
        outs.push(f(&x.narrow(0, i, len)?)?.detach());
        i += len;
    }
    if outs.is_empty() {
        return Err(TrainError::Config(
            "cannot evaluate an empty data set".into(),
        ));
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// The domain-adaptation network: an [`xfer_models::Classifier`] (`G_f` = its backbone, `G_y`
/// = its head), optionally with a bottleneck `ReLU(BN(W_b G_f(x)))` of width `B` and a new
/// linear head `B → classes` in place of the classifier's own head (TLlib's
/// `ImageClassifier` layout). The bottleneck's batch norm is what
/// [`AdaptNet::adapt_batch_norm`] (AdaBN) re-estimates.
pub struct AdaptNet {
    /// The backbone (and the head when there is no bottleneck).
    pub classifier: Classifier,
    bottleneck: Option<(Linear, BatchNorm, Linear)>,
    /// The shape of one example as the data has it (`[S, S]` images get a channel axis).
    sample_shape: Vec<usize>,
    input_shape: Vec<usize>,
}

impl std::fmt::Debug for AdaptNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptNet")
            .field("classifier", &self.classifier)
            .field("bottleneck", &self.bottleneck_dim())
            .finish()
    }
}

fn model_err(e: xfer_models::ModelError) -> TrainError {
    TrainError::from(e)
}

impl AdaptNet {
    /// Builds `backbone` for examples of `sample_shape` and `classes` classes, initialised
    /// from `seed`, with a batch-norm bottleneck of width `bottleneck` (`bottleneck.0`,
    /// `bottleneck.1`, head `head`; the classifier's own head is removed from its store).
    pub fn new(
        backbone: &BackboneSpec,
        bottleneck: Option<usize>,
        sample_shape: &[usize],
        classes: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<Self> {
        let input_shape = match (backbone, sample_shape) {
            (BackboneSpec::Cnn { .. } | BackboneSpec::Lenet, [h, w]) => vec![1, *h, *w],
            _ => sample_shape.to_vec(),
        };
        let classifier = Classifier::new(
            &ClassifierConfig::new(backbone.clone(), &input_shape, classes),
            seed,
            dev,
        )
        .map_err(model_err)?;
        let bottleneck = match bottleneck {
            None => None,
            Some(0) => {
                return Err(TrainError::Config(
                    "the bottleneck width must be > 0 (leave it out for none)".into(),
                ));
            }
            Some(b) => {
                let store = classifier.store().clone();
                let own = classifier.head_selection().map_err(model_err)?;
                for name in store.names() {
                    if own.matches(&name) {
                        store.remove(&name);
                    }
                }
                let root = store.scope("");
                let mut rng = SeededRng::new(seed ^ 0xB07_7E11);
                let d = classifier.backbone().feature_dim();
                let dt = DType::F32;
                let lin = Linear::new(&root.sub("bottleneck.0"), d, b, true, &mut rng, dt, dev)?;
                let bn = BatchNorm::new(&root.sub("bottleneck.1"), b, dt, dev)?;
                let head = Linear::new(&root.sub("head"), b, classes, true, &mut rng, dt, dev)?;
                Some((lin, bn, head))
            }
        };
        Ok(Self {
            classifier,
            bottleneck,
            sample_shape: sample_shape.to_vec(),
            input_shape,
        })
    }

    /// Every parameter and buffer (the classifier's store; the bottleneck lives there too).
    pub fn store(&self) -> &ParamStore {
        self.classifier.store()
    }

    /// The bottleneck width, if there is one.
    pub fn bottleneck_dim(&self) -> Option<usize> {
        self.bottleneck.as_ref().map(|(l, _, _)| l.out_dim())
    }

    /// Width of [`AdaptNet::features`].
    pub fn feature_dim(&self) -> usize {
        self.bottleneck_dim()
            .unwrap_or_else(|| self.classifier.feature_dim())
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classifier.num_classes()
    }

    fn input(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        if x.dims().get(1..) != Some(&self.sample_shape[..]) {
            return Err(TrainError::Config(format!(
                "the network takes batches of shape (N, {}), got {:?}",
                dims_list(&self.sample_shape),
                x.dims()
            )));
        }
        if self.input_shape == self.sample_shape {
            return Ok(x.clone());
        }
        let mut shape = vec![n];
        shape.extend(&self.input_shape);
        Ok(x.reshape(shape)?)
    }

    /// The features the head (and the discriminator) sees.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.input(x)?;
        match &self.bottleneck {
            None => Ok(self.classifier.features(&x, train).map_err(model_err)?),
            Some((lin, bn, _)) => {
                let f = self
                    .classifier
                    .backbone()
                    .features_t(&x, train)
                    .map_err(model_err)?;
                Ok(xfer_ops::relu(&bn.forward_t(&lin.forward(&f)?, train)?)?)
            }
        }
    }

    /// Class logits from [`AdaptNet::features`].
    pub fn head(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        match &self.bottleneck {
            None => Ok(self
                .classifier
                .head_forward(features, train)
                .map_err(model_err)?),
            Some((_, _, head)) => Ok(head.forward(features)?),
        }
    }

    /// Logits of `x`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head(&self.features(x, train)?, train)
    }

    /// Whether the network has a batch norm for AdaBN to re-estimate.
    pub fn has_batch_norm(&self) -> bool {
        self.bottleneck.is_some()
    }

    /// AdaBN (Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization for Practical Domain
    /// Adaptation", ICLR-W 2017): replaces the bottleneck batch norm's running statistics with
    /// the mean and (unbiased) variance of its input over all of `x` — the target inputs —
    /// leaving every weight as trained. An error when the network has no batch norm.
    pub fn adapt_batch_norm(&self, x: &Tensor) -> Result<()> {
        let Some((lin, bn, _)) = &self.bottleneck else {
            return Err(TrainError::Config(
                "AdaBN re-estimates batch-norm statistics, but this network has none: give it a \
                 bottleneck (--bottleneck N)"
                    .into(),
            ));
        };
        let pre = chunked(x, |b| {
            let f = self
                .classifier
                .backbone()
                .features_t(&self.input(b)?, false)
                .map_err(model_err)?;
            Ok(lin.forward(&f)?)
        })?
        .to_dtype(DType::F64)?;
        let n = pre.dim(0)?;
        if n < 2 {
            return Err(TrainError::Config(
                "AdaBN needs at least two target examples".into(),
            ));
        }
        let mean = pre.mean(0)?;
        let var = (pre.broadcast_sub(&mean)?.sqr()?.sum(0)? / (n - 1) as f64)?;
        let dtype = bn.running_mean.var().dtype();
        bn.running_mean.set(&mean.to_dtype(dtype)?)?;
        bn.running_var.set(&var.to_dtype(dtype)?)?;
        Ok(())
    }
}
