//! Loading a pretrained checkpoint (a torchvision or Hugging Face state dict saved as
//! safetensors) into one model's parameters, with `load_state_dict(strict=True)` semantics.
//!
//! Built on [`SafetensorsFile`] (refuses pickles, truncated and malformed files with errors
//! naming the file) and [`Transfer`] (dtype conversion to each parameter's dtype, everything
//! checked before anything is written). On top of them this adds the strictness a pretrained
//! load wants, with one precise error per problem, checked before any parameter changes:
//! a parameter of the model absent from the file is [`ModelError::MissingTensor`], a shape
//! that differs is [`ModelError::TensorShape`], a file tensor the model does not have is
//! [`ModelError::UnexpectedTensor`] (unless allowed). `num_batches_tracked` is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::params::{Param, ParamStore, Selection};
use crate::safetensors_file::SafetensorsFile;
use crate::transfer::{Transfer, TransferReport, is_ignored_name};
use crate::{ModelError, Result};

/// What [`load_pretrained`] may tolerate.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Parameters not to load (they keep their current values and are reported as not
    /// selected), e.g. a new classifier head. Matched against the model-relative name
    /// (`fc.weight`); the file may still hold them.
    pub skip: Option<Selection>,
    /// Accept tensors in the file that the model does not have (reported as not selected);
    /// otherwise they are an error, as in PyTorch's strict `load_state_dict`.
    pub allow_unexpected: bool,
    /// A prefix to strip (with its dot) from the file's names before matching, e.g. `"bert"`
    /// for Hugging Face task checkpoints; names without it are matched as they are.
    pub strip_prefix: Option<String>,
}

/// The model-relative name of a parameter registered under `prefix`.
fn relative<'a>(name: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() {
        return name;
    }
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(name)
}

/// Loads the safetensors file at `path` into `params` (a model's parameters and buffers,
/// registered in `store` under `model_prefix`, `""` for the root), matching file names to
/// model-relative names.
///
/// Strict: every parameter not skipped must be in the file with its shape, and (unless
/// [`LoadOptions::allow_unexpected`]) every tensor of the file must belong to the model.
/// f16 / bf16 / f64 tensors are converted to the parameters' dtype. Errors name the file and the
/// tensor; on error no parameter has been changed. Returns the [`TransferReport`]
/// (`copied` holds store names).
pub fn load_pretrained(
    store: &ParamStore,
    params: &[Param],
    model_prefix: &str,
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<TransferReport> {
    let path = path.as_ref();
    let file = SafetensorsFile::open(path)?;
    let prefix = model_prefix.trim_end_matches('.');
    let strip = opts
        .strip_prefix
        .as_deref()
        .map(|p| p.trim_end_matches('.'))
        .filter(|p| !p.is_empty());

    // Model-relative name → file name.
    let mut in_file: BTreeMap<String, String> = BTreeMap::new();
    for name in file.names() {
        if is_ignored_name(&name) {
            continue;
        }
        let rel = match strip {
            Some(p) => name
                .strip_prefix(p)
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or(&name)
                .to_string(),
            None => name.clone(),
        };
        if let Some(prev) = in_file.insert(rel.clone(), name.clone()) {
            return Err(ModelError::Config(format!(
                "{}: tensors {prev:?} and {name:?} both stand for {rel:?}",
                path.display()
            )));
        }
    }

    let mut model: BTreeSet<&str> = BTreeSet::new();
    let mut wanted: Vec<Selection> = Vec::with_capacity(params.len());
    for p in params {
        let rel = relative(p.name(), prefix);
        model.insert(rel);
        if opts.skip.as_ref().is_some_and(|s| s.matches(rel)) {
            continue;
        }
        let Some(fname) = in_file.get(rel) else {
            return Err(ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: rel.to_string(),
            });
        };
        let shape = file.shape(fname).unwrap_or(&[]);
        if shape != p.var().dims() {
            return Err(ModelError::TensorShape {
                path: path.to_path_buf(),
                name: fname.clone(),
                expected: p.var().dims().to_vec(),
                got: shape.to_vec(),
            });
        }
        wanted.push(Selection::Exact(p.name().to_string()));
    }
    if !opts.allow_unexpected
        && let Some(fname) = in_file
            .iter()
            .find(|(rel, _)| !model.contains(rel.as_str()))
            .map(|(_, f)| f)
    {
        return Err(ModelError::UnexpectedTensor {
            path: path.to_path_buf(),
            name: fname.clone(),
        });
    }

    let mut transfer = Transfer::new()
        .select(Selection::AnyOf(wanted))
        .strict(true);
    if let Some(p) = strip {
        transfer = transfer.strip_prefix(p);
    }
    if !prefix.is_empty() {
        transfer = transfer.add_prefix(prefix);
    }
    transfer.run(&file, store)
}
