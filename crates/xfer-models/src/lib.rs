//! Layers, a named parameter store, layer transfer, checkpoints and models for xfer.
//!
//! Every parameter has a dotted name (`layer1.0.conv1.weight`, torchvision and Hugging Face
//! names where such models exist) and a trainable/frozen state. Frozen parameters enter the
//! graph detached, so `backward()` computes no gradient for them.
//!
//! - [`params`]: [`ParamStore`], [`Selection`] (exact, prefix, glob), freeze/unfreeze.
//! - [`groups`]: [`ParamGroup`] and [`partition_params`] for optimisers.
//! - [`transfer`]: layer transfer with renaming, dtype conversion and a [`TransferReport`].
//! - [`safetensors_file`]: reading and atomically writing safetensors files.
//! - [`pretrained`]: strict loading of a torchvision / Hugging Face checkpoint into a model.
//! - [`resnet`]: ResNet-18/34/50 with torchvision's layout and names.

pub mod error;
pub mod groups;
pub mod layers;
pub mod params;
pub mod pretrained;
pub mod resnet;
pub mod safetensors_file;
pub mod transfer;

pub use error::{ModelError, Result};
pub use groups::{DEFAULT_GROUP, GroupedParams, ParamGroup, partition_params};
pub use layers::{
    Activation, BatchNorm, Conv2d, Dropout, Embedding, LayerNorm, Linear, Module, ModuleT,
};
pub use params::{Param, ParamStore, Scope, Selection};
pub use pretrained::{LoadOptions, load_pretrained};
pub use resnet::{ResNet, ResNetConfig, ResNetDepth};
pub use safetensors_file::SafetensorsFile;
pub use transfer::{
    ShapeMismatch, TensorSource, Transfer, TransferReport, first_blocks, last_blocks,
};
