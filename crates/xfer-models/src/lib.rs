//! Layers, a named parameter store, layer transfer, checkpoints and models for xfer.
//!
//! Every parameter has a dotted name (`layer1.0.conv1.weight`, torchvision and Hugging Face
//! names where such models exist) and a trainable/frozen state. Frozen parameters enter the
//! graph detached, so `backward()` computes no gradient for them.
//!
//! - [`params`]: [`ParamStore`], [`Selection`] (exact, prefix, glob), freeze/unfreeze.
//! - [`groups`]: [`ParamGroup`] and [`partition_params`] for optimisers.
//! - [`transfer`]: layer transfer with renaming, dtype conversion and a [`TransferReport`].
//! - [`pretrained`]: strict loading of a torchvision / Hugging Face checkpoint into a model.
//! - [`backbone`]: the [`Backbone`] trait (a network stopped at its features) and its
//!   implementations; [`classifier`]: [`Classifier`] = backbone + bottleneck + head, built from
//!   a [`BackboneSpec`] (`mlp`, `cnn`, `lenet`, `resnet18:weights=PATH`, `minilm:DIR`).
//! - [`resnet`]: ResNet-18/34/50 with torchvision's layout and names.
//! - [`mobilenet`]: MobileNetV2 with torchvision's names; [`efficientnet`]: EfficientNet-Lite0
//!   (Lite1–4 as configurations) with lukemelas' names and TF "SAME" padding; [`mbconv`]: the
//!   inverted-residual block and depthwise layer they share; [`preprocess`]: each pretrained image model's input preset ([`Preprocess`]).
//! - [`checkpoint`]: atomic safetensors checkpoints with the configuration in the metadata.
//! - [`safetensors_file`]: reading safetensors with typed errors, atomic writes.
//! - [`layers`], [`sequential`]: layers and PyTorch-style numbered stacks.
//! - Models: [`mlp`], [`lenet`] (DANN's LeNet), [`digits_cnn`], [`heads`] (classifier,
//!   domain discriminator, zero-shot embeddings), [`multitask`], [`progressive`].
//! - [`bert`]: a BERT encoder with Hugging Face's names and the sentence-transformers
//!   [`SentenceEncoder`]; [`tokenizer`]: the model's own `tokenizer.json`.

pub mod backbone;
pub mod bert;
pub mod checkpoint;
pub mod classifier;
pub mod digits_cnn;
pub mod efficientnet;
pub mod error;
pub mod groups;
pub mod heads;
pub mod layers;
pub mod lenet;
pub mod mbconv;
pub mod mlp;
pub mod mobilenet;
pub mod multitask;
pub mod package;
pub mod params;
pub mod preprocess;
pub mod pretrained;
pub mod progressive;
pub mod resnet;
pub mod safetensors_file;
pub mod sequential;
pub mod spec;
pub mod tokenizer;
pub mod transfer;

pub use backbone::{Backbone, BertBackbone, encode_tokens, names_in_blocks};
pub use bert::{BertConfig, BertModel, HiddenAct, SentenceEncoder, l2_normalize, mean_pool};
pub use classifier::{
    BackboneSpec, BottleneckSpec, Classifier, ClassifierConfig, EVAL_INPUT_BYTES, TEXT_MAX_LEN,
    eval_rows, map_rows,
};
pub use digits_cnn::{DigitsCnn, DigitsCnnConfig};
pub use efficientnet::{
    EFFICIENTNET_B0_STAGES, EfficientNetLite, EfficientNetLiteConfig, StageArgs,
};
pub use error::{ModelError, Result};
pub use groups::{DEFAULT_GROUP, GroupedParams, ParamGroup, partition_params};
pub use heads::{
    ClassifierHead, ClassifierHeadConfig, DomainDiscriminator, DomainDiscriminatorConfig,
    EmbeddingHead, EmbeddingHeadConfig, ZeroShotConfig, ZeroShotHeads,
};
pub use layers::{
    Activation, BatchNorm, Conv2d, Dropout, Embedding, LayerNorm, Linear, Module, ModuleT,
};
pub use lenet::{DannLeNet, LeNetConfig};
pub use mlp::{Mlp, MlpConfig};
pub use mobilenet::{
    DepthwiseConv2d, InvertedResidual, MOBILENET_V2_SETTINGS, MobileNetV2, MobileNetV2Config,
    PaddingMode, make_divisible,
};
pub use multitask::{MultiHeadNet, MultiHeadNetConfig, TaskConfig};
pub use package::{InputSpec, ModelInfo, Package, Provenance};
pub use params::{Param, ParamStore, Scope, Selection, grad_enabled, no_grad};
pub use preprocess::{Interpolation, Preprocess, ResizeCrop};
pub use pretrained::{LoadOptions, load_pretrained};
pub use progressive::{ColumnConfig, ProgressiveNet};
pub use resnet::{ResNet, ResNetConfig, ResNetDepth};
pub use safetensors_file::SafetensorsFile;
pub use sequential::{Layer, Sequential, SequentialBuilder};
pub use tokenizer::{TokenBatch, Tokenizer};
pub use transfer::{
    ShapeMismatch, TensorSource, Transfer, TransferReport, first_blocks, last_blocks,
};
