//! A BERT encoder (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding", NAACL 2019) with Hugging Face's parameter names, and a
//! sentence-transformers style [`SentenceEncoder`] (Reimers & Gurevych, "Sentence-BERT",
//! EMNLP 2019): mean pooling over the attention mask, then L2 normalisation.
//!
//! Per layer, with `LN` layer norm (through [`xfer_ops::layer_norm`]) and the attention
//! softmax through [`xfer_ops::softmax`] (both with full backward passes, unlike candle-nn's
//! fused kernels):
//!
//! ```text
//! embeddings: h₀ = LN(E_word[ids] + E_pos[0..T] + E_type[types])
//! attention:  A = softmax(Q Kᵀ / √d_head + m) V  per head, m = 0 for tokens, −∞-like for padding
//!             h' = LN(h + W_o A + b_o)
//! feed-fwd:   h'' = LN(h' + W₂ act(W₁ h' + b₁) + b₂)
//! sentence:   e = Σ_t mask_t h_t / max(Σ_t mask_t, 1e-9),  e ← e / max(‖e‖₂, 1e-12)
//! ```
//!
//! Names: `embeddings.{word,position,token_type}_embeddings.weight`, `embeddings.LayerNorm.*`,
//! `encoder.layer.N.attention.self.{query,key,value}.*`, `encoder.layer.N.attention.output.
//! {dense,LayerNorm}.*`, `encoder.layer.N.intermediate.dense.*`,
//! `encoder.layer.N.output.{dense,LayerNorm}.*`.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::layers::{Dropout, Embedding, LayerNorm, Linear, Module, ModuleT};
use crate::params::{Param, ParamStore, Scope};
use crate::pretrained::{LoadOptions, load_pretrained};
use crate::tokenizer::{DEFAULT_MAX_LEN, TokenBatch, Tokenizer};
use crate::transfer::TransferReport;
use crate::{ModelError, Result};

/// The feed-forward activation (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// `"gelu"`: the exact erf form `x·Φ(x)`.
    #[serde(rename = "gelu")]
    Gelu,
    /// `"gelu_new"` / `"gelu_pytorch_tanh"`: the tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// `"relu"`.
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            HiddenAct::Gelu => xfer_ops::gelu_erf(x)?,
            HiddenAct::GeluTanh => x.gelu()?,
            HiddenAct::Relu => x.relu()?,
        })
    }
}

fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".to_string()
}
fn default_init_range() -> f64 {
    0.02
}

/// A BERT configuration as in Hugging Face's `config.json` (unknown keys are ignored; unknown
/// values of the keys below are a [`ModelError::Config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
    /// Dropout on embeddings and sub-layer outputs (training only).
    #[serde(default)]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default)]
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Number of segment types.
    pub type_vocab_size: usize,
    /// Layer-norm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Standard deviation of the initial weights of a model built from scratch.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` is implemented.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

impl BertConfig {
    /// Parses and validates `config.json` text; `source` names it in errors.
    pub fn from_json_str(json: &str, source: &Path) -> Result<Self> {
        let c: BertConfig = serde_json::from_str(json).map_err(|e| {
            ModelError::Config(format!("{}: invalid BERT config: {e}", source.display()))
        })?;
        c.validate()
            .map_err(|m| ModelError::Config(format!("{}: {m}", source.display())))?;
        Ok(c)
    }

    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_json_str(&text, path)
    }

    /// Checks the values a model can be built from.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((k, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{k} must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (k, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{k} must be in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(format!(
                "layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not implemented (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(format!(
                "pad_token_id {} outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A linear layer initialised as Hugging Face's BERT: `W ~ N(0, σ²)`, `b = 0`.
fn linear(
    scope: &Scope,
    in_dim: usize,
    out_dim: usize,
    std: f64,
    rng: &mut SeededRng,
    dtype: DType,
    dev: &Device,
) -> Result<Linear> {
    Ok(Linear {
        weight: scope.add(
            "weight",
            rng.normal(&[out_dim, in_dim], 0.0, std, dtype, dev)?,
        )?,
        bias: Some(scope.add("bias", Tensor::zeros(out_dim, dtype, dev)?)?),
    })
}

fn linear_params(l: &Linear) -> Vec<Param> {
    let mut v = vec![l.weight.clone()];
    v.extend(l.bias.clone());
    v
}

fn ln_params(l: &LayerNorm) -> [Param; 2] {
    [l.weight.clone(), l.bias.clone()]
}

/// `embeddings.*`: word + position + token type, layer norm, dropout.
#[derive(Debug)]
pub struct BertEmbeddings {
    /// `word_embeddings`.
    pub word: Embedding,
    /// `position_embeddings`.
    pub position: Embedding,
    /// `token_type_embeddings`.
    pub token_type: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    dropout: Dropout,
}

/// One `encoder.layer.N`.
#[derive(Debug)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: Linear,
    /// `attention.self.key`.
    pub key: Linear,
    /// `attention.self.value`.
    pub value: Linear,
    /// `attention.output.dense`.
    pub attention_output: Linear,
    /// `attention.output.LayerNorm`.
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: Linear,
    /// `output.dense`.
    pub output: Linear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    heads: usize,
    act: HiddenAct,
    attention_dropout: Dropout,
    attention_output_dropout: Dropout,
    output_dropout: Dropout,
}

impl BertLayer {
    fn params(&self) -> Vec<Param> {
        let mut v = Vec::new();
        for l in [&self.query, &self.key, &self.value, &self.attention_output] {
            v.extend(linear_params(l));
        }
        v.extend(ln_params(&self.attention_norm));
        v.extend(linear_params(&self.intermediate));
        v.extend(linear_params(&self.output));
        v.extend(ln_params(&self.output_norm));
        v
    }

    /// `h` (B, T, H), `bias` the additive attention mask (B, 1, 1, T).
    fn forward_t(&self, h: &Tensor, bias: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, hidden) = h.dims3()?;
        let dh = hidden / self.heads;
        let split = |x: Tensor| -> Result<Tensor> {
            Ok(x.reshape((b, t, self.heads, dh))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.query.forward(h)?)?;
        let k = split(self.key.forward(h)?)?;
        let v = split(self.value.forward(h)?)?;
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?
            .broadcast_add(bias)?;
        let probs = xfer_ops::softmax(&scores)?;
        let probs = self.attention_dropout.forward_t(&probs, train)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, hidden))?;
        let a = self
            .attention_output_dropout
            .forward_t(&self.attention_output.forward(&ctx)?, train)?;
        let h = self.attention_norm.forward(&(a + h)?)?;
        let f = self.act.apply(&self.intermediate.forward(&h)?)?;
        let f = self
            .output_dropout
            .forward_t(&self.output.forward(&f)?, train)?;
        self.output_norm.forward(&(f + h)?)
    }
}

/// The BERT encoder (no pooler: sentence embeddings use mean pooling).
#[derive(Debug)]
pub struct BertModel {
    config: BertConfig,
    scope: Scope,
    /// `embeddings`.
    pub embeddings: BertEmbeddings,
    /// `encoder.layer.*`.
    pub layers: Vec<BertLayer>,
}

impl BertModel {
    /// A new encoder registered under `scope` (`store.scope("")` for Hugging Face's bare
    /// names), initialised as Hugging Face does (weights `N(0, initializer_range²)`, biases 0,
    /// layer norms 1/0, the padding row of the word table 0), weights and dropout seeds drawn
    /// from `rng`.
    pub fn new(
        scope: &Scope,
        config: &BertConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        config.validate().map_err(ModelError::Config)?;
        let c = config;
        let std = c.initializer_range;
        let dropout = |p: f64, rng: &mut SeededRng| {
            let seed: u64 = rng.rng().random();
            Dropout::new(p, seed)
        };
        let es = scope.sub("embeddings");
        let table = |name: &str, n: usize, rng: &mut SeededRng| -> Result<Embedding> {
            Ok(Embedding {
                weight: es.sub(name).add(
                    "weight",
                    rng.normal(&[n, c.hidden_size], 0.0, std, dtype, dev)?,
                )?,
            })
        };
        let word = table("word_embeddings", c.vocab_size, rng)?;
        let pad = word.weight.var().as_tensor().narrow(0, c.pad_token_id, 1)?;
        word.weight
            .var()
            .set(&word.weight.var().as_tensor().slice_assign(
                &[c.pad_token_id..c.pad_token_id + 1, 0..c.hidden_size],
                &pad.zeros_like()?,
            )?)?;
        let embeddings = BertEmbeddings {
            word,
            position: table("position_embeddings", c.max_position_embeddings, rng)?,
            token_type: table("token_type_embeddings", c.type_vocab_size, rng)?,
            layer_norm: LayerNorm::new(
                &es.sub("LayerNorm"),
                c.hidden_size,
                c.layer_norm_eps,
                dtype,
                dev,
            )?,
            dropout: dropout(c.hidden_dropout_prob, rng)?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let ls = scope.sub("encoder.layer").sub(&i.to_string());
            let att = ls.sub("attention");
            let h = c.hidden_size;
            layers.push(BertLayer {
                query: linear(&att.sub("self.query"), h, h, std, rng, dtype, dev)?,
                key: linear(&att.sub("self.key"), h, h, std, rng, dtype, dev)?,
                value: linear(&att.sub("self.value"), h, h, std, rng, dtype, dev)?,
                attention_output: linear(&att.sub("output.dense"), h, h, std, rng, dtype, dev)?,
                attention_norm: LayerNorm::new(
                    &att.sub("output.LayerNorm"),
                    h,
                    c.layer_norm_eps,
                    dtype,
                    dev,
                )?,
                intermediate: linear(
                    &ls.sub("intermediate.dense"),
                    h,
                    c.intermediate_size,
                    std,
                    rng,
                    dtype,
                    dev,
                )?,
                output: linear(
                    &ls.sub("output.dense"),
                    c.intermediate_size,
                    h,
                    std,
                    rng,
                    dtype,
                    dev,
                )?,
                output_norm: LayerNorm::new(
                    &ls.sub("output.LayerNorm"),
                    h,
                    c.layer_norm_eps,
                    dtype,
                    dev,
                )?,
                heads: c.num_attention_heads,
                act: c.hidden_act,
                attention_dropout: dropout(c.attention_probs_dropout_prob, rng)?,
                attention_output_dropout: dropout(c.hidden_dropout_prob, rng)?,
                output_dropout: dropout(c.hidden_dropout_prob, rng)?,
            });
        }
        Ok(Self {
            config: c.clone(),
            scope: scope.clone(),
            embeddings,
            layers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The scope prefix the model's names live under (`""` at the root).
    pub fn prefix(&self) -> String {
        self.scope.path("").trim_end_matches('.').to_string()
    }

    /// Every parameter of the model, in Hugging Face's order.
    pub fn params(&self) -> Vec<Param> {
        let e = &self.embeddings;
        let mut v = vec![
            e.word.weight.clone(),
            e.position.weight.clone(),
            e.token_type.weight.clone(),
        ];
        v.extend(ln_params(&e.layer_norm));
        for l in &self.layers {
            v.extend(l.params());
        }
        v
    }

    /// Loads a Hugging Face BERT checkpoint (`model.safetensors`): every encoder tensor must be
    /// present with its shape; extra tensors (`pooler.*`, `embeddings.position_ids`, a task
    /// head) are accepted and reported as not selected; a `bert.` prefix (task models) is
    /// stripped; f16/bf16/f64 converted. All-or-nothing.
    pub fn load_hf(&self, path: impl AsRef<Path>) -> Result<TransferReport> {
        let opts = LoadOptions {
            skip: None,
            allow_unexpected: true,
            strip_prefix: Some("bert".to_string()),
        };
        load_pretrained(
            self.scope.store(),
            &self.params(),
            &self.prefix(),
            path,
            &opts,
        )
    }

    /// The last hidden state (B, T, H) for `input_ids` (B, T) (integer ids), optional
    /// `token_type_ids` (B, T) (zeros when `None`) and `attention_mask` (B, T) (1 = token,
    /// 0 = padding; all ones when `None`). `train` turns dropout on.
    pub fn forward_t(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().map_err(|_| ModelError::ShapeMismatch {
            name: "input_ids".to_string(),
            expected: vec![0, 0],
            got: input_ids.dims().to_vec(),
        })?;
        for (name, x) in [
            ("token_type_ids", token_type_ids),
            ("attention_mask", attention_mask),
        ] {
            if let Some(x) = x
                && x.dims() != [b, t]
            {
                return Err(ModelError::ShapeMismatch {
                    name: name.to_string(),
                    expected: vec![b, t],
                    got: x.dims().to_vec(),
                });
            }
        }
        let c = &self.config;
        if t > c.max_position_embeddings {
            return Err(ModelError::Config(format!(
                "sequence of {t} tokens is longer than max_position_embeddings {}",
                c.max_position_embeddings
            )));
        }
        let dev = input_ids.device();
        let dtype = self.embeddings.word.weight.var().dtype();
        let e = &self.embeddings;
        let words = e.word.forward(input_ids)?;
        let positions = Tensor::arange(0u32, t as u32, dev)?;
        let pos = e.position.forward(&positions)?.unsqueeze(0)?;
        let types = match token_type_ids {
            Some(tt) => e.token_type.forward(tt)?,
            None => e
                .token_type
                .forward(&Tensor::zeros((b, t), DType::U32, dev)?)?,
        };
        let h = words.broadcast_add(&pos)?.add(&types)?;
        let h = e.dropout.forward_t(&e.layer_norm.forward(&h)?, train)?;
        // Additive mask: 0 for tokens, a large negative number for padding (finite, so a row
        // with no token at all stays a number; −1e4 in f16, whose range ends at 65504).
        let neg = if dtype == DType::F16 { -1e4 } else { -1e30 };
        let bias = match attention_mask {
            Some(m) => ((m.to_dtype(dtype)? - 1.0)? * (-neg))?.reshape((b, 1, 1, t))?,
            None => Tensor::zeros((b, 1, 1, t), dtype, dev)?,
        };
        let mut h = h;
        for l in &self.layers {
            h = l.forward_t(&h, &bias, train)?;
        }
        Ok(h)
    }
}

/// Mean of `hidden` (B, T, H) over the tokens whose `mask` (B, T) is 1:
/// `Σ_t m_t h_t / max(Σ_t m_t, 1e-9)` (sentence-transformers' mean pooling).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(sum.broadcast_div(&count)?)
}

/// Rows divided by their L2 norm: `x / max(‖x‖₂, 1e-12)` (PyTorch's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&n)?)
}

/// A sentence-transformers model directory (`config.json`, `model.safetensors`,
/// `tokenizer.json`, optional `sentence_bert_config.json`, `modules.json`,
/// `1_Pooling/config.json`) as one encoder: texts → (N, H) embeddings, mean-pooled and
/// (when the model has a `Normalize` module, or has no `modules.json`) L2-normalised.
#[derive(Debug)]
pub struct SentenceEncoder {
    store: ParamStore,
    bert: BertModel,
    tokenizer: Tokenizer,
    normalize: bool,
    device: Device,
}

#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        msg: format!("cannot read: {e}"),
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
}

impl SentenceEncoder {
    /// Loads a model directory on the CPU in f32.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(dir, DType::F32, &Device::Cpu)
    }

    /// Loads a model directory with parameters of `dtype` on `device`.
    pub fn load_on(dir: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let max_len = read_json::<StConfig>(&dir.join("sentence_bert_config.json"))?
            .and_then(|c| c.max_seq_length)
            .unwrap_or(DEFAULT_MAX_LEN);
        if max_len > config.max_position_embeddings {
            return Err(ModelError::Config(format!(
                "{}: max_seq_length {max_len} exceeds max_position_embeddings {}",
                dir.display(),
                config.max_position_embeddings
            )));
        }
        let pooling_path = dir.join("1_Pooling/config.json");
        if let Some(p) = read_json::<PoolingConfig>(&pooling_path)?
            && (!p.pooling_mode_mean_tokens
                || p.pooling_mode_cls_token
                || p.pooling_mode_max_tokens
                || p.pooling_mode_mean_sqrt_len_tokens)
        {
            return Err(ModelError::Config(format!(
                "{}: only mean pooling (pooling_mode_mean_tokens alone) is implemented",
                pooling_path.display()
            )));
        }
        let normalize = match read_json::<Vec<StModule>>(&dir.join("modules.json"))? {
            Some(mods) => mods.iter().any(|m| m.kind.ends_with(".Normalize")),
            None => true,
        };
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"), max_len)?;
        let store = ParamStore::new();
        let bert = BertModel::new(
            &store.scope(""),
            &config,
            &mut SeededRng::new(0),
            dtype,
            device,
        )?;
        let weights: PathBuf = dir.join("model.safetensors");
        let report = bert.load_hf(&weights)?;
        tracing::info!(
            dir = %dir.display(),
            copied = report.copied.len(),
            max_len,
            normalize,
            "loaded sentence encoder"
        );
        Ok(Self {
            store,
            bert,
            tokenizer,
            normalize,
            device: device.clone(),
        })
    }

    /// The parameter store (to freeze, unfreeze, optimise or save the encoder).
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.bert.config.hidden_size
    }

    /// Whether embeddings are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Tokenises `texts` for [`SentenceEncoder::embed`].
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch> {
        self.tokenizer.encode_batch(texts, &self.device)
    }

    /// Sentence embeddings (N, H) of a tokenised batch, differentiable with respect to the
    /// trainable parameters (`train` turns dropout on, for fine-tuning).
    pub fn embed(&self, batch: &TokenBatch, train: bool) -> Result<Tensor> {
        let dtype = self.bert.embeddings.word.weight.var().dtype();
        if batch.is_empty() {
            return Ok(Tensor::zeros((0, self.dim()), dtype, &self.device)?);
        }
        let h = self.bert.forward_t(
            &batch.input_ids,
            Some(&batch.token_type_ids),
            Some(&batch.attention_mask),
            train,
        )?;
        let e = mean_pool(&h, &batch.attention_mask)?;
        if self.normalize {
            l2_normalize(&e)
        } else {
            Ok(e)
        }
    }

    /// Embeddings (N, H) of `texts` in evaluation mode, detached.
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor> {
        let tokens = self.tokenize(texts)?;
        // Inference: no autograd graph (each layer's activations are freed once read).
        Ok(crate::params::no_grad(|| self.embed(&tokens, false))?.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(act: &str) -> BertConfig {
        BertConfig::from_json_str(
            &format!(
                r#"{{"vocab_size": 11, "hidden_size": 8, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 12, "hidden_act": "{act}",
                "max_position_embeddings": 6, "type_vocab_size": 2,
                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}}"#
            ),
            Path::new("tiny.json"),
        )
        .unwrap()
    }

    fn ids(v: &[u32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn unknown_config_values_are_typed_errors_naming_the_file() {
        let base = |extra: &str| {
            let heads = if extra.contains("num_attention_heads") {
                ""
            } else {
                r#""num_attention_heads": 2,"#
            };
            format!(
                r#"{{"vocab_size": 11, "hidden_size": 8, "num_hidden_layers": 1, {heads}
                "intermediate_size": 12, "max_position_embeddings": 6, "type_vocab_size": 2,
                {extra}}}"#
            )
        };
        let p = Path::new("/models/x/config.json");
        for (extra, needle) in [
            (r#""hidden_act": "swish""#, "swish"),
            (
                r#""hidden_act": "gelu", "num_attention_heads": 3"#,
                "divisible",
            ),
            (
                r#""hidden_act": "gelu", "position_embedding_type": "relative_key""#,
                "relative_key",
            ),
            (
                r#""hidden_act": "gelu", "hidden_dropout_prob": 1.5"#,
                "dropout",
            ),
        ] {
            match BertConfig::from_json_str(&base(extra), p) {
                Err(ModelError::Config(m)) => {
                    assert!(m.contains("/models/x/config.json"), "{m}");
                    assert!(m.contains(needle), "{m}");
                }
                other => panic!("{extra}: expected a config error, got {other:?}"),
            }
        }
        assert_eq!(
            BertConfig::from_json_str(&base(r#""hidden_act": "gelu_pytorch_tanh""#), p)
                .unwrap()
                .hidden_act,
            HiddenAct::GeluTanh
        );
    }

    #[test]
    fn bert_names_match_hugging_face() {
        let store = ParamStore::new();
        let m = BertModel::new(
            &store.scope(""),
            &tiny("gelu"),
            &mut SeededRng::new(0),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        // 5 embedding tensors + 16 per layer.
        assert_eq!(m.params().len(), 5 + 2 * 16);
        assert_eq!(store.len(), 5 + 2 * 16);
        for n in [
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.1.attention.self.value.bias",
            "encoder.layer.0.attention.output.dense.weight",
            "encoder.layer.0.attention.output.LayerNorm.bias",
            "encoder.layer.1.intermediate.dense.weight",
            "encoder.layer.1.output.dense.bias",
            "encoder.layer.1.output.LayerNorm.weight",
        ] {
            assert!(store.contains(n), "{n}");
        }
        let pad = store
            .get("embeddings.word_embeddings.weight")
            .unwrap()
            .var()
            .as_tensor()
            .get(0)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(pad, 0.0, "the padding row starts at zero");
    }

    #[test]
    fn padding_does_not_change_the_embedding_of_a_sentence() {
        let store = ParamStore::new();
        let m = BertModel::new(
            &store.scope(""),
            &tiny("gelu"),
            &mut SeededRng::new(1),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        let alone = m
            .forward_t(&ids(&[2, 5, 7, 3], (1, 4)), None, None, false)
            .unwrap();
        let alone = l2_normalize(&mean_pool(&alone, &ids(&[1, 1, 1, 1], (1, 4))).unwrap()).unwrap();
        let batch_ids = ids(&[2, 5, 7, 3, 0, 0, 2, 9, 4, 8, 3, 6], (2, 6));
        let mask = ids(&[1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], (2, 6));
        let h = m.forward_t(&batch_ids, None, Some(&mask), false).unwrap();
        let e = l2_normalize(&mean_pool(&h, &mask).unwrap()).unwrap();
        let d = (e.get(0).unwrap() - alone.get(0).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(d < 1e-12, "padded vs alone: {d}");
        let norm = e.sqr().unwrap().sum(1).unwrap().to_vec1::<f64>().unwrap();
        assert!(norm.iter().all(|n| (n - 1.0).abs() < 1e-12), "{norm:?}");
    }

    #[test]
    fn bert_gradients_match_finite_differences() {
        let store = ParamStore::new();
        let m = BertModel::new(
            &store.scope(""),
            &tiny("gelu"),
            &mut SeededRng::new(2),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        let input = ids(&[2, 5, 7, 3, 1, 2, 9, 4, 8, 3], (2, 5));
        let mask = ids(&[1, 1, 1, 1, 0, 1, 1, 1, 1, 1], (2, 5));
        let mut rng = SeededRng::new(4);
        let w = rng
            .normal(&[2, 8], 0.0, 1.0, DType::F64, &Device::Cpu)
            .unwrap();
        let loss = || -> Tensor {
            let h = m.forward_t(&input, None, Some(&mask), false).unwrap();
            let e = l2_normalize(&mean_pool(&h, &mask).unwrap()).unwrap();
            (e * &w).unwrap().sum_all().unwrap()
        };
        let grads = loss().backward().unwrap();
        for (name, idx) in [
            ("encoder.layer.0.attention.self.query.weight", 5usize),
            ("encoder.layer.0.attention.self.key.weight", 17),
            ("encoder.layer.1.attention.output.LayerNorm.weight", 3),
            ("encoder.layer.0.intermediate.dense.weight", 40),
            ("embeddings.LayerNorm.bias", 6),
            ("embeddings.word_embeddings.weight", 7 * 8 + 2),
            ("embeddings.position_embeddings.weight", 8 + 1),
        ] {
            let p = store.get(name).unwrap();
            let g: Vec<f64> = grads
                .get(p.var().as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let orig = p.var().as_tensor().copy().unwrap();
            let dims = orig.dims().to_vec();
            let mut v: Vec<f64> = orig.flatten_all().unwrap().to_vec1().unwrap();
            let eps = 1e-5;
            let mut at = |delta: f64| -> f64 {
                v[idx] += delta;
                p.set(&Tensor::from_slice(&v, dims.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                v[idx] -= delta;
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            p.set(&orig).unwrap();
            let err = (fd - g[idx]).abs();
            assert!(
                err < 1e-6 * (1.0 + fd.abs()),
                "{name}[{idx}]: finite difference {fd}, backward {}",
                g[idx]
            );
        }
    }

    #[test]
    fn dropout_acts_only_in_training() {
        let store = ParamStore::new();
        let m = BertModel::new(
            &store.scope(""),
            &tiny("relu"),
            &mut SeededRng::new(3),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let input = ids(&[2, 5, 7, 3], (1, 4));
        let a = m.forward_t(&input, None, None, false).unwrap();
        let b = m.forward_t(&input, None, None, false).unwrap();
        let c = m.forward_t(&input, None, None, true).unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 1e-3);
        let too_long = ids(&[1; 7], (1, 7));
        assert!(matches!(
            m.forward_t(&too_long, None, None, false),
            Err(ModelError::Config(_))
        ));
    }
}
