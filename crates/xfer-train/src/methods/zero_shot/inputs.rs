//! The two sides of a zero-shot problem from pretrained models
//! ([`zero_shot`](super) trains on them):
//!
//! - `f(x)`: frozen features of any [`BackboneSpec`], computed once in evaluation mode, batch
//!   by batch, through the backbone's evaluation preset at a chosen image size
//!   ([`extract_features`]), and cached in a safetensors file keyed by backbone, data and size
//!   ([`frozen_features`]); [`standardize`] z-scores them with statistics of the training part.
//! - `g(y)`: one embedding per class from a sentence encoder (`minilm:DIR`) of the class names
//!   or of one-line descriptions ([`read_descriptions`], [`class_text_embeddings`]) — the
//!   lecture's "word vectors as attributes".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use xfer_data::spec::Data;
use xfer_data::transform::Transform;
use xfer_data::{ClassAttributes, DataLoader, Dataset, LabeledSet, Preprocess, TensorDataset};
use xfer_models::safetensors_file::{self, SafetensorsFile};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig, SentenceEncoder};

use crate::{Result, TrainError};

/// The evaluation preset of `spec` at `image_size` for images of `channels` channels:
/// ImageNet statistics and a resize of the short side to `⌈size·256/224⌉` for the torchvision
/// backbones (ResNet, MobileNetV2); [`Preprocess::efficientnet_lite`] for EfficientNet-Lite;
/// mean and std 0.5 per channel and no margin for the networks trained
/// from scratch.
pub fn image_preset(spec: &BackboneSpec, image_size: usize, channels: usize) -> Result<Preprocess> {
    let p = match spec {
        BackboneSpec::Resnet { .. } | BackboneSpec::MobilenetV2 { .. } => {
            Preprocess::imagenet(image_size, (image_size * 256).div_ceil(224))
        }
        BackboneSpec::EfficientnetLite0 { .. } => Preprocess::efficientnet_lite(image_size),
        BackboneSpec::Minilm { .. } => {
            return Err(TrainError::Incompatible(format!(
                "backbone `{spec}` is a text encoder: image features need an image backbone"
            )));
        }
        _ => Preprocess::new(
            image_size,
            image_size,
            vec![0.5; channels],
            vec![0.5; channels],
        )?,
    };
    if spec.is_pretrained() && channels != 3 {
        return Err(TrainError::BadData(format!(
            "backbone `{spec}` takes RGB images but the data has {channels} channel(s): \
             open the folder with `:channels=3`"
        )));
    }
    Ok(p)
}

fn progress(total: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("features {bar:30} {pos}/{len} images {eta}") {
        pb.set_style(style);
    }
    pb
}

fn features_of<D: Dataset + 'static>(
    clf: &Classifier,
    ds: D,
    transform: Option<Arc<dyn Transform>>,
    batch_size: usize,
    quiet: bool,
    dev: &Device,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let total = ds.len();
    let mut b = DataLoader::builder(ds, batch_size.max(1))
        .shuffle(false)
        .drop_last(false)
        .device(dev.clone());
    if let Some(t) = transform {
        b = b.transform_arc(t);
    }
    let loader = b.build()?;
    let pb = progress(total, quiet);
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let f = clf.features(&batch.x, false)?.detach();
        feats.extend(f.flatten_all()?.to_vec1::<f32>()?);
        labels.extend(batch.labels()?.to_vec1::<u32>()?);
        pb.inc(batch.len() as u64);
    }
    pb.finish_and_clear();
    Ok((feats, labels))
}

/// Features `(N, D)` of every sample of `data` from `spec`'s backbone in evaluation mode
/// (pretrained weights where the spec names them, otherwise seeded from `seed`), image
/// folders read through [`image_preset`] at `image_size`, in batches of `batch_size`. The
/// result keeps the data's labels, class names and name.
pub fn extract_features(
    spec: &BackboneSpec,
    data: &Data,
    image_size: usize,
    batch_size: usize,
    seed: u64,
    quiet: bool,
    dev: &Device,
) -> Result<TensorDataset> {
    xfer_data::require_labels(data, "zero-shot learning")?;
    let classes = data.num_classes().max(1);
    let (clf, transform, ds_shape) = match data {
        Data::Images(folder) => {
            let preset = image_preset(spec, image_size, folder.channels())?;
            let shape = vec![preset.channels(), image_size, image_size];
            let clf = Classifier::new(
                &ClassifierConfig::new(spec.clone(), &shape, classes),
                seed,
                dev,
            )?;
            (clf, Some(preset.eval_transform()?), shape)
        }
        Data::Tensors(t) => {
            let shape = t.sample_shape().to_vec();
            let clf = Classifier::new(
                &ClassifierConfig::new(spec.clone(), &shape, classes),
                seed,
                dev,
            )?;
            (clf, None, shape)
        }
        Data::Text(t) => {
            return Err(TrainError::Incompatible(format!(
                "`{}` is text: zero-shot image features need image or tensor data",
                t.name()
            )));
        }
        Data::Unlabeled(u) => {
            return Err(TrainError::BadData(format!(
                "`{}` has no labels: zero-shot learning needs labelled data",
                xfer_data::Dataset::name(u)
            )));
        }
    };
    tracing::info!(backbone = %spec, input = ?ds_shape, samples = data.len(), "extracting frozen features");
    let (feats, labels) = match data {
        Data::Images(f) => features_of(&clf, f.clone(), transform, batch_size, quiet, dev)?,
        Data::Tensors(t) => features_of(&clf, t.clone(), None, batch_size, quiet, dev)?,
        Data::Text(_) | Data::Unlabeled(_) => (Vec::new(), Vec::new()),
    };
    let d = clf.feature_dim();
    let ds = TensorDataset::new(data.name(), feats, vec![d], labels)?
        .with_class_names(data.class_names().to_vec())?;
    Ok(ds)
}

/// The cache key of features of `spec` on `data_spec` at `image_size`.
pub fn cache_key(spec: &BackboneSpec, data_spec: &str, image_size: usize) -> String {
    format!("{spec}|{data_spec}|{image_size}")
}

/// The cache file for `key` under `dir`: `zsl-features-<FNV-1a of the key>.safetensors`.
pub fn cache_path(dir: &Path, key: &str) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("zsl-features-{h:016x}.safetensors"))
}

/// Writes `ds` (features `(N, D)`, labels, class names) with `key` in the metadata.
pub fn save_features(path: &Path, key: &str, ds: &TensorDataset) -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::from_slice(ds.features(), (ds.len(), ds.feature_dim()), &dev)?;
    let y = Tensor::from_slice(ds.labels(), ds.len(), &dev)?;
    let mut meta = BTreeMap::new();
    meta.insert("key".to_string(), key.to_string());
    meta.insert("name".to_string(), ds.name().to_string());
    let names = serde_json::to_string(ds.class_names())
        .map_err(|e| TrainError::file(path, format!("class names: {e}")))?;
    meta.insert("class_names".to_string(), names);
    let bytes = safetensors_file::serialize([("features", &x), ("labels", &y)], &meta)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::File {
            path: parent.to_path_buf(),
            msg: format!("cannot create the cache folder: {e}"),
        })?;
    }
    safetensors_file::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads features written by [`save_features`]; an error when the file was written for
/// another key or lacks a tensor.
pub fn load_features(path: &Path, key: &str) -> Result<TensorDataset> {
    let f = SafetensorsFile::open(path)?;
    let meta = f.metadata();
    let bad = |msg: String| TrainError::File {
        path: path.to_path_buf(),
        msg,
    };
    match meta.get("key") {
        Some(k) if k == key => {}
        other => {
            return Err(bad(format!(
                "cached features are for `{}`, not `{key}`",
                other.map(String::as_str).unwrap_or("?")
            )));
        }
    }
    let names: Vec<String> = serde_json::from_str(meta.get("class_names").map_or("", |s| s))
        .map_err(|e| bad(format!("metadata class_names: {e}")))?;
    let x = f.tensor("features", &Device::Cpu)?;
    let y = f.tensor("labels", &Device::Cpu)?;
    let (n, d) = x.dims2()?;
    let ds = TensorDataset::new(
        meta.get("name").map_or("features", |s| s.as_str()),
        x.flatten_all()?.to_vec1::<f32>()?,
        vec![d],
        y.to_vec1::<u32>()?,
    )?
    .with_class_names(names)?;
    if ds.len() != n {
        return Err(bad(format!("{n} feature rows but {} labels", ds.len())));
    }
    Ok(ds)
}

/// Frozen features of `spec` on the data `data_spec` at `image_size`, computed once: with
/// `cache_dir`, they are written to [`cache_path`] there, and with `reuse` read back from it
/// when that file exists (no image is decoded then).
#[allow(clippy::too_many_arguments)]
pub fn frozen_features(
    spec: &BackboneSpec,
    data_spec: &str,
    image_size: usize,
    cache_dir: Option<&Path>,
    reuse: bool,
    seed: u64,
    quiet: bool,
    dev: &Device,
) -> Result<TensorDataset> {
    let key = cache_key(spec, data_spec, image_size);
    let path = cache_dir.map(|d| cache_path(d, &key));
    if let Some(p) = &path
        && reuse
        && p.exists()
    {
        let ds = load_features(p, &key)?;
        tracing::info!(path = %p.display(), samples = ds.len(), "reusing cached features");
        return Ok(ds);
    }
    let data = xfer_data::spec::load_data(data_spec, seed)?;
    let ds = extract_features(spec, &data, image_size, 64, seed, quiet, dev)?;
    if let Some(p) = &path {
        save_features(p, &key, &ds)?;
        tracing::info!(path = %p.display(), "cached features");
    }
    Ok(ds)
}

/// Per-dimension mean and standard deviation of `fit`'s features (std floored at 1e-6): the
/// z-score statistics [`standardize`] applies (and a zero-shot package keeps).
pub fn feature_stats(fit: &TensorDataset) -> (Vec<f32>, Vec<f32>) {
    let d = fit.feature_dim().max(1);
    let n = fit.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in fit.features().chunks(d) {
        for ((m, s), &v) in mean.iter_mut().zip(sq.iter_mut()).zip(row) {
            *m += f64::from(v);
            *s += f64::from(v) * f64::from(v);
        }
    }
    mean.iter()
        .zip(&sq)
        .map(|(m, s)| {
            let mu = m / n;
            let var = (s / n - mu * mu).max(0.0);
            (mu as f32, (var.sqrt() as f32).max(1e-6))
        })
        .unzip()
}

/// [`feature_stats`] of `fit`, applied to every data set in `apply` (z-scores: the training
/// part's statistics only).
pub fn standardize(fit: &TensorDataset, apply: &[&TensorDataset]) -> Vec<TensorDataset> {
    let (mean, std) = feature_stats(fit);
    let stats: Vec<(f32, f32)> = mean.into_iter().zip(std).collect();
    apply
        .iter()
        .map(|ds| {
            (*ds).clone().map_features(|_, row| {
                for (v, (mu, sd)) in row.iter_mut().zip(&stats) {
                    *v = (*v - mu) / sd;
                }
            })
        })
        .collect()
}

/// Reads a descriptions file (`class<TAB>text` per line; empty lines and `#` comments
/// skipped) and returns one text per class of `class_names`, in order; an error naming the
/// file for a malformed line or a class without a description.
pub fn read_descriptions(path: &Path, class_names: &[String]) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::File {
        path: path.to_path_buf(),
        msg: format!("cannot read descriptions: {e}"),
    })?;
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((class, desc)) = line.split_once('\t') else {
            return Err(TrainError::File {
                path: path.to_path_buf(),
                msg: format!("line {}: expected `class<TAB>text`", i + 1),
            });
        };
        map.insert(class.trim().to_string(), desc.trim().to_string());
    }
    class_names
        .iter()
        .map(|c| {
            map.get(c).cloned().ok_or_else(|| TrainError::File {
                path: path.to_path_buf(),
                msg: format!("no description for class `{c}`"),
            })
        })
        .collect()
}

/// The text encoder folder of a `--class-text` value (`minilm:DIR`), checked to hold a
/// `tokenizer.json`.
pub fn text_model_dir(spec: &str) -> Result<PathBuf> {
    let dir = spec.strip_prefix("minilm:").ok_or_else(|| {
        TrainError::invalid(
            "class text model",
            format!("`{spec}`"),
            "minilm:DIR (a sentence-transformers folder)",
        )
    })?;
    let dir = PathBuf::from(dir);
    let tok = dir.join("tokenizer.json");
    if !tok.is_file() {
        return Err(TrainError::File {
            path: dir,
            msg: "no tokenizer.json in the text model folder".into(),
        });
    }
    Ok(dir)
}

/// `g(y)`: the sentence embedding of each class's text (one row per class, in order) from
/// the encoder named by `spec` (`minilm:DIR`), as a class-description table with attribute
/// names `e0, e1, ...`.
pub fn class_text_embeddings(spec: &str, texts: &[String]) -> Result<ClassAttributes> {
    let dir = text_model_dir(spec)?;
    let enc = SentenceEncoder::load(&dir)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e = enc.encode(&refs)?;
    let (c, d) = e.dims2()?;
    let names = (0..d).map(|j| format!("e{j}")).collect();
    Ok(ClassAttributes::new(
        names,
        e.flatten_all()?.to_vec1::<f32>()?,
        c,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xfer-zsl-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn descriptions_missing_a_class_is_an_error_naming_file_and_class() {
        let d = tmp("desc");
        let p = d.join("desc.tsv");
        std::fs::write(&p, "cat\ta small cat\n# comment\ndog\ta loyal dog\n").unwrap();
        let names = vec!["cat".to_string(), "dog".to_string()];
        assert_eq!(read_descriptions(&p, &names).unwrap()[1], "a loyal dog");
        let e = read_descriptions(&p, &["cat".into(), "zebra".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("zebra") && e.contains("desc.tsv") && !e.contains('\n'),
            "{e}"
        );
        std::fs::write(&p, "cat a cat without a tab\n").unwrap();
        let e = read_descriptions(&p, &names).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn text_model_folder_without_tokenizer_is_a_one_line_error() {
        let d = tmp("notok");
        let e = text_model_dir(&format!("minilm:{}", d.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.json") && !e.contains('\n'), "{e}");
        assert!(text_model_dir("bert:x").is_err());
    }

    #[test]
    fn cached_features_round_trip_and_refuse_another_key() {
        let ds = TensorDataset::new(
            "toy",
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec![2],
            vec![0, 1, 1],
        )
        .unwrap()
        .with_class_names(vec!["a".into(), "b".into()])
        .unwrap();
        let dir = tmp("cache");
        let spec = BackboneSpec::mlp();
        let key = cache_key(&spec, "folder:x", 32);
        let p = cache_path(&dir, &key);
        assert_ne!(p, cache_path(&dir, &cache_key(&spec, "folder:x", 64)));
        save_features(&p, &key, &ds).unwrap();
        let back = load_features(&p, &key).unwrap();
        assert_eq!(back.features(), ds.features());
        assert_eq!(back.labels(), ds.labels());
        assert_eq!(back.class_names(), ds.class_names());
        assert!(
            load_features(&p, "other")
                .unwrap_err()
                .to_string()
                .contains("other")
        );
    }

    #[test]
    fn standardize_uses_the_fit_statistics() {
        let fit = TensorDataset::new("f", vec![0.0, 10.0, 2.0, 10.0], vec![2], vec![0, 1]).unwrap();
        let other = TensorDataset::new("o", vec![1.0, 10.0], vec![2], vec![0]).unwrap();
        let out = standardize(&fit, &[&fit, &other]);
        assert_eq!(out[0].features(), &[-1.0, 0.0, 1.0, 0.0]);
        assert_eq!(out[1].features(), &[0.0, 0.0]);
    }
}
