//! Zero-shot model packages: a trained [`ZeroShotModel`] kept on disk, to rank the classes it
//! was trained with or — when `g` reads sentence embeddings — class names given at prediction
//! time (`predict --classes`), like Hugging Face's zero-shot pipeline.
//!
//! | file | content |
//! |---|---|
//! | `model.json` | `format` `"xfer-zero-shot"`, `format_version` 1; the method, `f`'s network, `g`'s shape, `normalize`, ConSE's `T`, the class names (by id) and the seen ids, the input preprocessing, the frozen feature extractor's spec (a reference: its weights stay where they are), the text encoder's reference (`minilm:DIR`), provenance |
//! | `model.safetensors` | `f` and `g` (strictly loaded) |
//! | `classes.safetensors` | `descriptions`: the prepared description of every class; with a feature extractor, `feature_mean` and `feature_std` (the training part's z-score statistics) |
//!
//! Written like every package ([`xfer_models::package::write_dir_atomically`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_models::package::{
    InputSpec, Provenance, WEIGHTS_FILE, read_meta, write_dir_atomically, write_weights,
};
use xfer_models::safetensors_file::{SafetensorsFile, serialize, write_atomic};
use xfer_models::{
    BackboneSpec, Classifier, ClassifierConfig, EmbeddingHead, EmbeddingHeadConfig, Tokenizer,
    checkpoint,
};
use xfer_ops::SeededRng;

use super::inputs::class_text_embeddings;
use super::{ZeroShotConfig, ZeroShotModel, ZslMethod};
use crate::predict::Predictor;
use crate::trainer::TrainReport;
use crate::{History, Result, TrainError};

/// The `format` of a zero-shot package's `model.json`.
pub const ZSL_FORMAT: &str = "xfer-zero-shot";
const CLASSES_FILE: &str = "classes.safetensors";

/// A frozen feature extractor in front of `f`: the backbone (by reference) and the z-score
/// statistics of the training features.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureExtractor {
    /// The backbone, with the path of its weights.
    pub spec: BackboneSpec,
    /// Per-feature mean of the training part.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation of the training part.
    pub std: Vec<f32>,
}

/// What a zero-shot package stores besides the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ZslInfo {
    /// Every class (seen and unseen), by id.
    pub class_names: Vec<String>,
    /// How inputs are prepared (for the feature extractor when there is one).
    pub input: InputSpec,
    /// The frozen feature extractor, if `f` reads its features.
    pub features: Option<FeatureExtractor>,
    /// The text encoder of the class descriptions (`minilm:DIR`), when they are sentence
    /// embeddings: new class names can then be ranked.
    pub text_encoder: Option<String>,
    /// Where the model came from.
    pub provenance: Provenance,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ZslMeta {
    format: String,
    format_version: u32,
    xfer_version: String,
    method: ZslMethod,
    f: ClassifierConfig,
    g: Option<EmbeddingHeadConfig>,
    normalize: bool,
    top_t: usize,
    class_names: Vec<String>,
    seen: Vec<u32>,
    input: InputSpec,
    features: Option<BackboneSpec>,
    text_encoder: Option<String>,
    #[serde(default)]
    provenance: Provenance,
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

impl ZeroShotModel {
    /// Saves the model as a zero-shot package in `dir` (`cfg`: the configuration it was
    /// trained with, for `g`'s shape).
    pub fn save(&self, dir: impl AsRef<Path>, cfg: &ZeroShotConfig, info: &ZslInfo) -> Result<()> {
        let dir = dir.as_ref();
        let (c, a) = self.descriptions.dims2()?;
        if info.class_names.len() != c {
            return Err(TrainError::invalid(
                "class_names",
                format!("{} names", info.class_names.len()),
                format!("one per described class ({c})"),
            ));
        }
        let g = self.g.as_ref().map(|_| EmbeddingHeadConfig {
            in_dim: a,
            hidden: cfg.g_hidden.clone(),
            out_dim: cfg.embed_dim,
            activation: xfer_models::Activation::Relu,
            normalize: cfg.normalize,
        });
        let meta = ZslMeta {
            format: ZSL_FORMAT.into(),
            format_version: xfer_models::package::FORMAT_VERSION,
            xfer_version: env!("CARGO_PKG_VERSION").into(),
            method: self.method,
            f: self.net.config().clone(),
            g,
            normalize: self.normalize,
            top_t: self.top_t,
            class_names: info.class_names.clone(),
            seen: self.seen.clone(),
            input: info.input.clone(),
            features: info.features.as_ref().map(|f| f.spec.clone()),
            text_encoder: info.text_encoder.clone(),
            provenance: info.provenance.clone(),
        };
        let json = serde_json::to_string_pretty(&meta)
            .map_err(|e| file_err(dir, format!("cannot describe the model: {e}")))?;
        let mut extra = vec![(
            "descriptions".to_string(),
            self.descriptions.to_device(&Device::Cpu)?,
        )];
        if let Some(fx) = &info.features {
            let d = fx.mean.len();
            extra.push((
                "feature_mean".into(),
                Tensor::from_slice(&fx.mean, d, &Device::Cpu)?,
            ));
            extra.push((
                "feature_std".into(),
                Tensor::from_slice(&fx.std, d, &Device::Cpu)?,
            ));
        }
        write_dir_atomically(dir, |partial| {
            write_weights(&self.store, &partial.join(WEIGHTS_FILE))?;
            let bytes = serialize(extra.iter().map(|(n, t)| (n.as_str(), t)), &BTreeMap::new())?;
            write_atomic(&partial.join(CLASSES_FILE), &bytes)?;
            write_atomic(
                &partial.join(xfer_models::package::META_FILE),
                json.as_bytes(),
            )
        })?;
        Ok(())
    }
}

/// A loaded zero-shot package, ranking its candidate classes ([`ZslPackage::with_classes`]
/// sets new ones).
pub struct ZslPackage {
    model: ZeroShotModel,
    /// Candidate class ids (rows of the model's descriptions) and their names.
    candidates: Vec<u32>,
    names: Vec<String>,
    features: Option<(Classifier, Tensor, Tensor)>,
    input: InputSpec,
    input_shape: Vec<usize>,
    text_encoder: Option<String>,
    dir: PathBuf,
    /// The provenance stored with it.
    pub provenance: Provenance,
}

impl std::fmt::Debug for ZslPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZslPackage")
            .field("dir", &self.dir)
            .field("method", &self.model.method)
            .field("classes", &self.names)
            .finish()
    }
}

impl ZslPackage {
    /// Whether `dir` holds a zero-shot package (rather than a classifier package).
    pub fn is_zero_shot(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join(xfer_models::package::META_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(ZSL_FORMAT))
    }

    /// Loads the package in `dir` onto `device`; the candidates are every class it was
    /// trained with (seen and unseen). Errors name the file (and tensor).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let (dir, raw) = read_meta(dir.as_ref(), ZSL_FORMAT)?;
        let meta_path = dir.join(xfer_models::package::META_FILE);
        let meta: ZslMeta = serde_json::from_value(raw)
            .map_err(|e| file_err(&meta_path, format!("invalid zero-shot description: {e}")))?;
        let net = Classifier::new(&meta.f, 0, device)?;
        let store = net.store().clone();
        let g = match &meta.g {
            Some(cfg) => Some(EmbeddingHead::new(
                &store.scope("g"),
                cfg,
                &mut SeededRng::new(0),
                DType::F32,
                device,
            )?),
            None => None,
        };
        checkpoint::load(&store, dir.join(WEIGHTS_FILE))?;
        let classes_path = dir.join(CLASSES_FILE);
        let classes = SafetensorsFile::open(&classes_path)?;
        let descriptions = classes.tensor("descriptions", device)?;
        let n = descriptions.dims2()?.0;
        if n != meta.class_names.len() {
            return Err(file_err(
                &classes_path,
                format!(
                    "{n} descriptions for {} class names",
                    meta.class_names.len()
                ),
            ));
        }
        let features = match &meta.features {
            Some(spec) => {
                let InputSpec::Image { channels, size, .. } = &meta.input else {
                    return Err(file_err(
                        &meta_path,
                        "a feature extractor needs image input",
                    ));
                };
                let shape = [*channels, *size, *size];
                let fx =
                    Classifier::new(&ClassifierConfig::new(spec.clone(), &shape, 1), 0, device)
                        .map_err(|e| {
                            file_err(&meta_path, format!("feature extractor {spec}: {e}"))
                        })?;
                let stat = |name: &str| {
                    classes
                        .tensor(name, device)
                        .map_err(|e| file_err(&classes_path, e))
                };
                Some((fx, stat("feature_mean")?, stat("feature_std")?))
            }
            None => None,
        };
        let input_shape = match (&features, &meta.input) {
            (Some(_), InputSpec::Image { channels, size, .. }) => vec![*channels, *size, *size],
            _ => meta.f.input_shape.clone(),
        };
        let model = ZeroShotModel {
            method: meta.method,
            store,
            net,
            g,
            descriptions,
            seen: meta.seen,
            normalize: meta.normalize,
            top_t: meta.top_t,
            report: TrainReport {
                steps: 0,
                total_steps: 0,
                stopped_early: false,
                best: None,
                last_eval: None,
                final_loss: None,
                history: History::default(),
            },
        };
        Ok(Self {
            model,
            candidates: (0..n as u32).collect(),
            names: meta.class_names,
            features,
            input: meta.input,
            input_shape,
            text_encoder: meta.text_encoder,
            dir,
            provenance: meta.provenance,
        })
    }

    /// The same model ranking the classes `names`, described by `texts` (one per name; the
    /// names themselves when `None`), embedded by the package's text encoder. Errors: a
    /// package whose descriptions are not sentence embeddings, an empty or duplicated list.
    pub fn with_classes(mut self, names: &[String], texts: Option<&[String]>) -> Result<Self> {
        let Some(enc) = self.text_encoder.clone() else {
            return Err(TrainError::Incompatible(format!(
                "{}: this zero-shot model describes classes by attribute tables, not text; it \
                 ranks only the classes it was trained with",
                self.dir.display()
            )));
        };
        if names.is_empty() {
            return Err(TrainError::invalid(
                "classes",
                "(none)",
                "at least one class name",
            ));
        }
        let mut sorted = names.to_vec();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(TrainError::invalid(
                "classes",
                &w[0],
                "distinct class names",
            ));
        }
        let texts = texts.unwrap_or(names);
        if texts.len() != names.len() {
            return Err(TrainError::invalid(
                "descriptions",
                format!("{} texts", texts.len()),
                format!("one per class ({})", names.len()),
            ));
        }
        let emb = class_text_embeddings(&enc, texts)?;
        let dev = self.model.descriptions.device().clone();
        let new = emb.to_tensor(&dev)?;
        let old = self.model.descriptions.dims2()?.0;
        self.model.descriptions = Tensor::cat(&[&self.model.descriptions, &new], 0)?;
        self.candidates = (old as u32..(old + names.len()) as u32).collect();
        self.names = names.to_vec();
        Ok(self)
    }
}

impl Predictor for ZslPackage {
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn input(&self) -> &InputSpec {
        &self.input
    }
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    fn tokenizer(&self) -> Result<Option<Tokenizer>> {
        Ok(None)
    }
    fn device(&self) -> &Device {
        self.model.net.device()
    }
    fn location(&self) -> &Path {
        &self.dir
    }
    fn scores(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.features {
            Some((fx, mean, std)) => fx
                .features(x, false)?
                .broadcast_sub(mean)?
                .broadcast_div(std)?,
            None => x.clone(),
        };
        self.model.scores(&x, &self.candidates)
    }
}
