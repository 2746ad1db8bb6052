//! Checkpoints: a [`ParamStore`] (parameters and buffers) saved as safetensors, with the
//! model's configuration as a JSON string in the file's `__metadata__`.
//!
//! The file is an ordinary safetensors file with the model's dotted names, so PyTorch reads it
//! with `safetensors.torch.load_file(path)` and `model.load_state_dict(sd, strict=False)`
//! (strict=False only because xfer does not write `num_batches_tracked`). Metadata keys:
//! `format = "pt"` (what Hugging Face tools expect), [`CONFIG_KEY`] (the configuration JSON,
//! when given) and [`VERSION_KEY`].
//!
//! Writes are atomic ([`write_atomic`]): a temporary file in the same directory is written,
//! flushed, synced and renamed over the target, so a crash never leaves a half-written
//! checkpoint where a good one was. Loads validate everything (file format, every tensor
//! present, shapes, dtypes, nothing unexpected) before setting any value, so a failed load
//! never leaves a half-loaded model. PyTorch's `num_batches_tracked` is ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::params::ParamStore;
use crate::safetensors_file::{SafetensorsFile, serialize, write_atomic};
use crate::transfer::is_ignored_name;
use crate::{ModelError, Result};

/// Metadata key of the model configuration (a JSON string).
pub const CONFIG_KEY: &str = "xfer.config";
/// Metadata key of the xfer version that wrote the file.
pub const VERSION_KEY: &str = "xfer.version";

/// What a successful [`load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The configuration JSON stored with the weights, if any.
    pub config: Option<String>,
    /// The whole `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// How many tensors were loaded.
    pub loaded: usize,
    /// Tensors in the file that were ignored (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// Saves every parameter and buffer of `store` to `path`, atomically, with `config` (a JSON
/// text, validated) in the metadata.
pub fn save(store: &ParamStore, path: impl AsRef<Path>, config: Option<&str>) -> Result<()> {
    save_with_metadata(store, path, config, &BTreeMap::new())
}

/// [`save`] with a configuration value serialised to JSON.
pub fn save_with_config<C: Serialize>(
    store: &ParamStore,
    path: impl AsRef<Path>,
    config: &C,
) -> Result<()> {
    let json = serde_json::to_string(config)
        .map_err(|e| ModelError::Config(format!("cannot serialise the configuration: {e}")))?;
    save(store, path, Some(&json))
}

/// [`save`] with extra metadata strings (for example the epoch); keys `format`,
/// [`CONFIG_KEY`] and [`VERSION_KEY`] are set by xfer.
pub fn save_with_metadata(
    store: &ParamStore,
    path: impl AsRef<Path>,
    config: Option<&str>,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut metadata = extra.clone();
    metadata.insert("format".into(), "pt".into());
    metadata.insert(VERSION_KEY.into(), env!("CARGO_PKG_VERSION").into());
    if let Some(c) = config {
        serde_json::from_str::<serde_json::Value>(c).map_err(|e| {
            ModelError::Config(format!(
                "{}: the configuration is not valid JSON: {e}",
                path.display()
            ))
        })?;
        metadata.insert(CONFIG_KEY.into(), c.to_string());
    }
    let params = store.all();
    let tensors: Vec<(String, candle_core::Tensor)> = params
        .iter()
        .map(|p| (p.name().to_string(), p.var().as_tensor().detach()))
        .collect();
    let bytes = serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), &metadata)?;
    write_atomic(path, &bytes)?;
    tracing::info!(path = %path.display(), tensors = tensors.len(), bytes = bytes.len(), "checkpoint saved");
    Ok(())
}

/// Loads `path` into `store`: every parameter and buffer of the store must be in the file
/// with the same shape (dtypes are converted), and the file may hold nothing else (except
/// `num_batches_tracked`). On any error nothing in `store` has changed.
///
/// Errors name the file and the tensor: [`ModelError::NotSafetensors`] (pickles and zip
/// archives from `torch.save` included), [`ModelError::Truncated`],
/// [`ModelError::CorruptFile`], [`ModelError::MissingTensor`], [`ModelError::TensorShape`],
/// [`ModelError::UnexpectedTensor`], [`ModelError::UnsupportedDtype`].
pub fn load(store: &ParamStore, path: impl AsRef<Path>) -> Result<CheckpointInfo> {
    let path = path.as_ref();
    let file = SafetensorsFile::open(path)?;
    let params = store.all();
    for p in &params {
        let shape = file
            .shape(p.name())
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: p.name().to_string(),
            })?;
        if shape != p.var().dims() {
            return Err(ModelError::TensorShape {
                path: path.to_path_buf(),
                name: p.name().to_string(),
                expected: p.var().dims().to_vec(),
                got: shape.to_vec(),
            });
        }
        file.check_dtype(p.name())?;
    }
    let mut ignored = Vec::new();
    for name in file.names() {
        if is_ignored_name(&name) {
            ignored.push(name);
        } else if !store.contains(&name) {
            return Err(ModelError::UnexpectedTensor {
                path: path.to_path_buf(),
                name,
            });
        }
    }
    let mut values = Vec::with_capacity(params.len());
    for p in &params {
        let t = file
            .tensor(p.name(), p.var().device())?
            .to_dtype(p.var().dtype())?;
        values.push(t);
    }
    for (p, t) in params.iter().zip(&values) {
        p.set(t)?;
    }
    let metadata = file.metadata().clone();
    tracing::info!(path = %path.display(), tensors = params.len(), "checkpoint loaded");
    Ok(CheckpointInfo {
        config: metadata.get(CONFIG_KEY).cloned(),
        metadata,
        loaded: params.len(),
        ignored,
    })
}

/// The `__metadata__` of a checkpoint, reading only its header.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    SafetensorsFile::read_metadata(path)
}

/// The configuration stored in a checkpoint, deserialised (reads only the header), so a
/// model can be built with the right shapes before its weights are loaded.
pub fn read_config<C: DeserializeOwned>(path: impl AsRef<Path>) -> Result<C> {
    let path = path.as_ref();
    let meta = read_metadata(path)?;
    let json = meta.get(CONFIG_KEY).ok_or_else(|| ModelError::File {
        path: path.to_path_buf(),
        msg: format!("no {CONFIG_KEY:?} entry in the metadata"),
    })?;
    serde_json::from_str(json).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        msg: format!("stored configuration does not fit: {e}"),
    })
}
