//! The [`Backbone`] trait: a network stopped at its features, `[N, ...] → [N, D]`.
//!
//! A backbone is what every transfer method shares: fine-tuning trains it (from its source
//! weights) under a new head, domain-adversarial training feeds its features to both the label
//! predictor and the domain discriminator, zero-shot learning uses it as `f(x)`, layer transfer
//! copies and freezes its blocks by name. [`crate::Classifier`] puts a head on any backbone.
//!
//! Implemented by [`Mlp`], [`DigitsCnn`], [`DannLeNet`], [`ResNet`] (here),
//! [`crate::MobileNetV2`] and [`crate::EfficientNetLite`] (in their networks' files), and
//! [`BertBackbone`] (a BERT encoder, e.g. all-MiniLM-L6-v2, mean-pooled over the tokens). Text enters a backbone
//! as one float tensor `[N, 2, L]`: row 0 the token ids, row 1 the attention mask (see
//! [`encode_tokens`]); ids below 2²⁴ are exact in f32, so nothing is lost, and every data
//! loader, transform-free, carries text like any other feature.

use candle_core::{DType, Device, Tensor};

use crate::bert::{BertModel, mean_pool};
use crate::digits_cnn::DigitsCnn;
use crate::lenet::DannLeNet;
use crate::mlp::Mlp;
use crate::params::{ParamStore, Selection};
use crate::resnet::ResNet;
use crate::tokenizer::TokenBatch;
use crate::{ModelError, Result};

/// A network stopped at its features: what a head is put on.
pub trait Backbone: Send + Sync {
    /// The features `[N, D]` of a batch `[N, ...]`; `train` selects training behaviour
    /// (batch statistics, dropout).
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// `D`, the width of one feature vector.
    fn feature_dim(&self) -> usize;
    /// The backbone's blocks, input side first, each a [`Selection`] pattern of parameter
    /// names (`features.0`, `conv1,bn1`, `layer1`): what layer transfer copies or freezes.
    fn blocks(&self) -> Vec<String>;
    /// The store the parameters live in.
    fn store(&self) -> &ParamStore;
    /// The names of the backbone's parameters and buffers (not of any head the model
    /// carries): to freeze, group and regularise it by name.
    fn param_names(&self) -> Vec<String> {
        names_in_blocks(self.store(), &self.blocks())
    }
}

/// The names in `store` that belong to any of `blocks` (each a [`Selection`] pattern).
pub fn names_in_blocks(store: &ParamStore, blocks: &[String]) -> Vec<String> {
    let sels: Vec<Selection> = blocks.iter().map(|b| Selection::from(b.as_str())).collect();
    store
        .names()
        .into_iter()
        .filter(|n| sels.iter().any(|s| s.matches(n)))
        .collect()
}

fn check_rank(name: &str, x: &Tensor, rank: usize) -> Result<()> {
    if x.rank() != rank {
        return Err(ModelError::ShapeMismatch {
            name: format!("input of {name}"),
            expected: vec![0; rank],
            got: x.dims().to_vec(),
        });
    }
    Ok(())
}

impl Backbone for Mlp {
    /// Flattens `[N, ...]` to `[N, input_dim]`, then the hidden layers.
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = if x.rank() > 2 {
            x.flatten_from(1)?
        } else {
            x.clone()
        };
        check_rank("mlp", &x, 2)?;
        self.hidden_forward(&x, train)
    }
    fn feature_dim(&self) -> usize {
        self.hidden_dim()
    }
    fn blocks(&self) -> Vec<String> {
        self.hidden_blocks()
    }
    fn store(&self) -> &ParamStore {
        self.scope().store()
    }
}

impl Backbone for DigitsCnn {
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.conv_features(x, train)
    }
    fn feature_dim(&self) -> usize {
        self.conv_feature_dim()
    }
    fn blocks(&self) -> Vec<String> {
        vec![
            self.scope().path("features.0"),
            self.scope().path("features.3"),
        ]
    }
    fn store(&self) -> &ParamStore {
        self.scope().store()
    }
}

impl Backbone for DannLeNet {
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.conv_features(x, train)
    }
    fn feature_dim(&self) -> usize {
        self.conv_feature_dim()
    }
    fn blocks(&self) -> Vec<String> {
        vec![
            self.scope().path("features.0"),
            self.scope().path("features.3"),
        ]
    }
    fn store(&self) -> &ParamStore {
        self.scope().store()
    }
}

impl Backbone for ResNet {
    /// The globally pooled features `[N, 512]` (ResNet-18/34) or `[N, 2048]` (ResNet-50).
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features(x, train)
    }
    fn feature_dim(&self) -> usize {
        ResNet::feature_dim(self)
    }
    fn blocks(&self) -> Vec<String> {
        let p = |n: &str| self.scope().path(n);
        let mut v = vec![format!("{},{}", p("conv1"), p("bn1"))];
        v.extend((1..=4).map(|i| p(&format!("layer{i}"))));
        v
    }
    fn store(&self) -> &ParamStore {
        self.scope().store()
    }
}

/// A BERT encoder as a backbone: mean-pooled last hidden state over the tokens (the sentence
/// embedding of sentence-transformers before its optional normalisation), `[N, H]`.
///
/// Input: `[N, 2, L]` floats from [`encode_tokens`] (ids, attention mask). Each batch is cut to
/// its longest sequence before the encoder runs, so padding costs nothing beyond the batch.
#[derive(Debug)]
pub struct BertBackbone {
    bert: BertModel,
    store: ParamStore,
}

impl BertBackbone {
    /// Wraps an encoder whose parameters live in `store`.
    pub fn new(bert: BertModel, store: ParamStore) -> Self {
        Self { bert, store }
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }
}

impl Backbone for BertBackbone {
    fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, two, l) = x.dims3().map_err(|_| ModelError::ShapeMismatch {
            name: "input of the text backbone (token ids and mask)".into(),
            expected: vec![0, 2, 0],
            got: x.dims().to_vec(),
        })?;
        if two != 2 {
            return Err(ModelError::ShapeMismatch {
                name: "input of the text backbone (token ids and mask)".into(),
                expected: vec![n, 2, l],
                got: x.dims().to_vec(),
            });
        }
        let mask = x.narrow(1, 1, 1)?.squeeze(1)?;
        // The longest sequence of the batch: drop columns that are padding everywhere.
        let longest = mask
            .sum(0)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .iter()
            .rposition(|&c| c > 0.0)
            .map_or(1, |i| i + 1);
        let ids = x
            .narrow(1, 0, 1)?
            .squeeze(1)?
            .narrow(1, 0, longest)?
            .to_dtype(DType::U32)?;
        let mask = mask.narrow(1, 0, longest)?.to_dtype(DType::U32)?;
        let h = self.bert.forward_t(&ids, None, Some(&mask), train)?;
        mean_pool(&h, &mask)
    }
    fn feature_dim(&self) -> usize {
        self.bert.config().hidden_size
    }
    fn blocks(&self) -> Vec<String> {
        let p = self.bert.prefix();
        let path = |n: &str| {
            if p.is_empty() {
                n.to_string()
            } else {
                format!("{p}.{n}")
            }
        };
        let mut v = vec![path("embeddings")];
        v.extend((0..self.bert.layers.len()).map(|i| path(&format!("encoder.layer.{i}"))));
        v
    }
    fn store(&self) -> &ParamStore {
        &self.store
    }
}

/// Packs a tokenised batch as the `[N, 2, L]` float input of a text backbone (row 0 the
/// ids, row 1 the attention mask), on `device`.
pub fn encode_tokens(batch: &TokenBatch, device: &Device) -> Result<Tensor> {
    let ids = batch.input_ids.to_dtype(DType::F32)?;
    let mask = batch.attention_mask.to_dtype(DType::F32)?;
    Ok(Tensor::stack(&[ids, mask], 1)?.to_device(device)?)
}
