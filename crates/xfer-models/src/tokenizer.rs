//! Text → token ids with a model's own `tokenizer.json` (Hugging Face `tokenizers`), configured
//! the way sentence-transformers calls it: truncation to `max_len` tokens (special tokens
//! included, longest-first), padding to the longest sequence of the batch with the model's pad
//! token, on the right. The file's own truncation/padding settings (all-MiniLM-L6-v2 ships
//! 128 and fixed-length padding) are replaced.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use crate::{ModelError, Result};

/// The sequence length sentence-transformers uses for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_LEN: usize = 256;

/// A batch of tokenised texts, padded to the longest: tensors are (N, T), `u32`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids, (N, T).
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding, (N, T).
    pub attention_mask: Tensor,
    /// Segment ids (0 for single sentences), (N, T).
    pub token_type_ids: Tensor,
    /// The ids as vectors (one per text, padded).
    pub ids: Vec<Vec<u32>>,
    /// The attention mask as vectors.
    pub mask: Vec<Vec<u32>>,
}

impl TokenBatch {
    /// Number of texts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Padded sequence length T.
    pub fn seq_len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }
}

/// A tokenizer loaded from a `tokenizer.json`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    max_len: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` and sets truncation at `max_len` tokens and batch-longest padding
    /// with the file's pad token (`[PAD]` if the file names none).
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |msg: String| ModelError::File {
            path: path.clone(),
            msg,
        };
        if max_len < 2 {
            return Err(err(format!(
                "maximum length {max_len} leaves no room for [CLS] and [SEP]"
            )));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| err(format!("cannot load tokenizer: {e}")))?;
        let (pad_token, pad_type_id) = match inner.get_padding() {
            Some(p) => (p.pad_token.clone(), p.pad_type_id),
            None => ("[PAD]".to_string(), 0),
        };
        let pad_id = inner
            .token_to_id(&pad_token)
            .ok_or_else(|| err(format!("pad token {pad_token:?} is not in the vocabulary")))?;
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| err(format!("cannot set truncation: {e}")))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }));
        Ok(Self {
            inner,
            path,
            max_len,
        })
    }

    /// The truncation length (special tokens included).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The tokens (word pieces) of `ids`, for inspection.
    pub fn ids_to_tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| {
                self.inner
                    .id_to_token(i)
                    .unwrap_or_else(|| format!("<{i}>"))
            })
            .collect()
    }

    /// Tokenises `texts` (special tokens added, truncated, padded to the longest) into tensors
    /// on `device`. An empty slice gives (0, 0) tensors.
    pub fn encode_batch(&self, texts: &[&str], device: &Device) -> Result<TokenBatch> {
        let encodings =
            self.inner
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| ModelError::File {
                    path: self.path.clone(),
                    msg: format!("tokenisation failed: {e}"),
                })?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = encodings
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        let types: Vec<Vec<u32>> = encodings
            .iter()
            .map(|e| e.get_type_ids().to_vec())
            .collect();
        let n = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        let tensor = |rows: &[Vec<u32>]| -> Result<Tensor> {
            let flat: Vec<u32> = rows.iter().flatten().copied().collect();
            Ok(Tensor::from_vec(flat, (n, t), device)?)
        };
        Ok(TokenBatch {
            input_ids: tensor(&ids)?,
            attention_mask: tensor(&mask)?,
            token_type_ids: tensor(&types)?,
            ids,
            mask,
        })
    }
}
