//! Layers, a named parameter store, layer transfer, and backbones for xfer.
//!
//! Every parameter has a dotted name (`layer1.0.conv1.weight`, torchvision and Hugging Face
//! names where such models exist) and a trainable/frozen state. Frozen parameters enter the
//! graph detached, so `backward()` computes no gradient for them.

pub mod error;
pub mod layers;
pub mod params;

pub use error::{ModelError, Result};
pub use layers::{
    Activation, BatchNorm, Conv2d, Dropout, Embedding, LayerNorm, Linear, Module, ModuleT,
};
pub use params::{Param, ParamStore, Scope, Selection};
