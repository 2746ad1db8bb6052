//! Text for text backbones: a [`TextDataset`] tokenised with the model's own tokenizer into
//! the `[2, L]` float samples (token ids, attention mask) that [`xfer_models::BertBackbone`]
//! reads ([`xfer_models::encode_tokens`]).

use candle_core::Device;
use xfer_data::TensorDataset;
use xfer_data::TextDataset;
use xfer_models::{Tokenizer, encode_tokens};

use crate::{Result, TrainError};

/// The texts of `data` tokenised by `tokenizer` (truncated to its maximum length, padded to
/// the longest text of the set; each batch is cut again to its own longest by the backbone),
/// with the labels and class names kept.
pub fn token_dataset(data: &TextDataset, tokenizer: &Tokenizer) -> Result<TensorDataset> {
    if data.is_empty() {
        return Err(TrainError::BadData(format!(
            "text data set {} is empty",
            data.name()
        )));
    }
    let texts: Vec<&str> = data.texts().iter().map(String::as_str).collect();
    let batch = tokenizer.encode_batch(&texts, &Device::Cpu)?;
    let x = encode_tokens(&batch, &Device::Cpu)?;
    let shape = x.dims().get(1..).map(<[usize]>::to_vec).unwrap_or_default();
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    Ok(
        TensorDataset::new(data.name(), values, shape, data.labels().to_vec())?
            .with_num_classes(data.num_classes())?
            .with_class_names(data.class_names().to_vec())?,
    )
}
