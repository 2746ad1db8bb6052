//! Model packages: a trained [`Classifier`] kept on disk with everything needed to use it
//! again — the weights, the network's description, the class names in label order, the input
//! preprocessing and where it came from.
//!
//! A package is a folder:
//!
//! | file | content |
//! |---|---|
//! | `model.safetensors` | every parameter and buffer, with the classifier's dotted names |
//! | `model.json` | [`PackageMeta`]: format version, [`ClassifierConfig`] (pretrained-weights paths removed), class names, [`InputSpec`], [`Provenance`] |
//! | `encoder/config.json`, `encoder/tokenizer.json` | text backbones only: the encoder's configuration and tokenizer, copied in |
//!
//! [`Classifier::save`] writes the package into a fresh sibling folder and swaps it into
//! place in one step (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames, the previous
//! package kept as `.NAME.old` until the new one is in place, and found by [`Classifier::load`]
//! if a crash fell between them). A crash therefore leaves the previous package whole, and a
//! folder that holds anything but a package is never overwritten. [`Classifier::load`] is
//! strict: an unknown format version, a missing, extra or mis-shaped tensor, or a PyTorch
//! pickle is refused with one line naming the file and tensor, and nothing is half-loaded.
//!
//! ```no_run
//! # fn main() -> xfer_models::Result<()> {
//! use candle_core::Device;
//! use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};
//! use xfer_models::package::{InputSpec, ModelInfo};
//! let cfg = ClassifierConfig::new(BackboneSpec::mlp(), &[4], 3);
//! let net = Classifier::new(&cfg, 0, &Device::Cpu)?;
//! let info = ModelInfo::new(vec!["a".into(), "b".into(), "c".into()], InputSpec::tensor(1.0));
//! net.save("my-model", &info)?;
//! let loaded = Classifier::load("my-model", &Device::Cpu)?;
//! assert_eq!(loaded.info.class_names, ["a", "b", "c"]);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::classifier::{BackboneSpec, Classifier, ClassifierConfig};
use crate::safetensors_file::{serialize, write_atomic};
use crate::{ModelError, Result};

/// The `format` value of every `model.json`.
pub const FORMAT: &str = "xfer-model";
/// The package format version this xfer writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The weights file of a package.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The description file of a package.
pub const META_FILE: &str = "model.json";
/// The sub-folder holding a text backbone's configuration and tokenizer.
pub const ENCODER_DIR: &str = "encoder";
/// The files of a text backbone's folder that a package copies (its weights are in
/// [`WEIGHTS_FILE`]).
const ENCODER_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// What a network's input is made from, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// Numbers as a data spec loads them (features, or images decoded to `0..1` at the
    /// network's input shape), multiplied by `scale`.
    Tensor {
        /// The factor applied to every loaded value before the network.
        scale: f32,
    },
    /// Image files of any size: decoded to `channels` (grey → RGB, RGBA → RGB) on `0..1`,
    /// the short side resized to `resize` (bilinear, antialiased), the centre `size × size`
    /// cropped, each channel normalised `(x − mean) / std`.
    Image {
        /// 1 or 3.
        channels: usize,
        /// The side of the square network input.
        size: usize,
        /// The short side before the centre crop.
        resize: usize,
        /// Per-channel mean.
        mean: Vec<f32>,
        /// Per-channel standard deviation.
        std: Vec<f32>,
    },
    /// Text, tokenised by the package's `encoder/tokenizer.json` to at most `max_len` tokens.
    Text {
        /// Longest token sequence.
        max_len: usize,
    },
}

impl InputSpec {
    /// Numbers multiplied by `scale`.
    pub fn tensor(scale: f32) -> Self {
        Self::Tensor { scale }
    }

    /// Images at `size`, short side resized to 8/7 of it first, normalised with `mean`/`std`
    /// (what `finetune` does with a pretrained image backbone).
    pub fn image(channels: usize, size: usize, mean: &[f32], std: &[f32]) -> Self {
        Self::Image {
            channels,
            size,
            resize: size * 8 / 7,
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |value: String, expected: &str| {
            Err(ModelError::InvalidValue {
                name: "input preprocessing".into(),
                value,
                expected: expected.into(),
            })
        };
        match self {
            Self::Tensor { scale } if !scale.is_finite() || *scale == 0.0 => {
                bad(format!("scale {scale}"), "a finite, non-zero scale")
            }
            Self::Image {
                channels,
                size,
                resize,
                mean,
                std,
            } => {
                if !matches!(channels, 1 | 3) || mean.len() != *channels || std.len() != *channels {
                    return bad(
                        format!("{channels} channels, mean {mean:?}, std {std:?}"),
                        "1 or 3 channels with a mean and std per channel",
                    );
                }
                if *size == 0 || resize < size {
                    return bad(
                        format!("size {size}, resize {resize}"),
                        "a size > 0 and a resize side ≥ size",
                    );
                }
                if std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
                    return bad(format!("std {std:?}"), "positive standard deviations");
                }
                Ok(())
            }
            Self::Text { max_len: 0 } => bad("max_len 0".into(), "max_len ≥ 1"),
            _ => Ok(()),
        }
    }
}

/// Where a model came from: enough to tell two packages apart and to rerun the training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The method that trained it (`finetune`, `l2sp`, `dann`, ...).
    #[serde(default)]
    pub method: Option<String>,
    /// The data specs by role (`target`, `source`, `test`, ...).
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// The run's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The run's metrics (`target_acc`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Every other setting of the run (learning rate, epochs, optimiser, ...), as JSON.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// The source weights the backbone started from (a path on the training machine; the
    /// package does not need it).
    #[serde(default)]
    pub source_weights: Option<String>,
}

/// Everything a package stores besides the network: class names, preprocessing, provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name of every output, in label order.
    pub class_names: Vec<String>,
    /// How inputs are prepared.
    pub input: InputSpec,
    /// Where the model came from.
    #[serde(default)]
    pub provenance: Provenance,
}

impl ModelInfo {
    /// Class names and preprocessing, no provenance.
    pub fn new(class_names: Vec<String>, input: InputSpec) -> Self {
        Self {
            class_names,
            input,
            provenance: Provenance::default(),
        }
    }

    /// The same with `provenance`.
    pub fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }
}

/// The content of `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The xfer version that wrote it.
    pub xfer_version: String,
    /// The network (pretrained-weights paths removed; a text backbone's folder is
    /// [`ENCODER_DIR`]).
    pub config: ClassifierConfig,
    /// Class names, preprocessing, provenance.
    #[serde(flatten)]
    pub info: ModelInfo,
}

/// A loaded package: the network and what it was saved with.
#[derive(Debug)]
pub struct Package {
    /// The network, in f32 on the device it was loaded to.
    pub net: Classifier,
    /// Class names, preprocessing, provenance.
    pub info: ModelInfo,
    /// The package folder.
    pub dir: PathBuf,
}

impl Package {
    /// The text backbone's tokenizer (from the package's [`ENCODER_DIR`]); `None` for other
    /// networks.
    pub fn tokenizer(&self) -> Result<Option<crate::Tokenizer>> {
        self.net.spec().tokenizer()
    }
}

/// The spec as a package stores it: no source-weights path; a text backbone's folder is the
/// package's [`ENCODER_DIR`].
fn portable_spec(spec: &BackboneSpec) -> BackboneSpec {
    match spec {
        BackboneSpec::Resnet { depth, .. } => BackboneSpec::Resnet {
            depth: *depth,
            weights: None,
        },
        BackboneSpec::MobilenetV2 { .. } => BackboneSpec::MobilenetV2 { weights: None },
        BackboneSpec::EfficientnetLite0 { .. } => BackboneSpec::EfficientnetLite0 { weights: None },
        BackboneSpec::Minilm { .. } => BackboneSpec::Minilm {
            dir: PathBuf::from(ENCODER_DIR),
        },
        other => other.clone(),
    }
}

fn file_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> ModelError {
    file_err(path, e.to_string())
}

/// `.NAME.SUFFIX` next to `dir`.
fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| file_err(dir, "not a folder path (it has no last component)"))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy())))
}

/// Whether `dir` may be replaced by a package: it is one, or an empty folder.
fn replaceable(dir: &Path) -> Result<bool> {
    if dir.join(META_FILE).is_file() {
        return Ok(true);
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    Ok(entries.next().is_none())
}

fn sync_dir(dir: &Path) {
    // Best effort: a directory cannot be opened for syncing everywhere.
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Exchanges two paths atomically (Linux); `false` where the system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<bool> {
    Ok(false)
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// Writes a package folder atomically: `write` fills a fresh sibling folder (`.NAME.partial`),
/// which is then synced and swapped into place in one step (see the [module
/// documentation](self)); on an error nothing at `dir` has changed. `dir` must be new, empty,
/// or a package (a folder with a `model.json`): other files are never overwritten.
pub fn write_dir_atomically(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if dir.exists() && !replaceable(dir)? {
        return Err(file_err(
            dir,
            "the folder holds files that are not an xfer model package; give a new or empty \
             folder",
        ));
    }
    // Leftovers of an interrupted save.
    let partial = sibling(dir, "partial")?;
    let old = sibling(dir, "old")?;
    remove_dir_if_present(&partial)?;
    if old.exists() && dir.exists() {
        remove_dir_if_present(&old)?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io_err(&partial, e))?;
    let written = write(&partial).map(|()| sync_dir(&partial));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }

    let parent = partial.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.exists() {
        if exchange(&partial, dir).map_err(|e| io_err(dir, e))? {
            // `partial` now holds the previous package.
            sync_dir(&parent);
            remove_dir_if_present(&partial)?;
        } else {
            std::fs::rename(dir, &old).map_err(|e| io_err(dir, e))?;
            std::fs::rename(&partial, dir).map_err(|e| io_err(dir, e))?;
            sync_dir(&parent);
            remove_dir_if_present(&old)?;
        }
    } else {
        std::fs::rename(&partial, dir).map_err(|e| io_err(dir, e))?;
    }
    sync_dir(&parent);
    Ok(())
}

/// The weights of `store` (every parameter and buffer) as a safetensors file at `path`,
/// written atomically.
pub fn write_weights(store: &crate::ParamStore, path: &Path) -> Result<()> {
    write_selected_weights(store, None, path)
}

/// [`write_weights`] of the parameters named in `only` (all of them with `None`).
pub fn write_selected_weights(
    store: &crate::ParamStore,
    only: Option<&[String]>,
    path: &Path,
) -> Result<()> {
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        checkpoint::VERSION_KEY.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    let params = store.all();
    let tensors: Vec<(String, candle_core::Tensor)> = params
        .iter()
        .filter(|p| only.is_none_or(|names| names.iter().any(|n| n == p.name())))
        .map(|p| (p.name().to_string(), p.var().as_tensor().detach()))
        .collect();
    let bytes = serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), &metadata)?;
    write_atomic(path, &bytes)
}

/// The package folder actually to read (`dir`, or the previous package an interrupted save
/// left beside it) and its `model.json`, checked to be of `format` and [`FORMAT_VERSION`].
pub fn read_meta(dir: &Path, format: &str) -> Result<(PathBuf, serde_json::Value)> {
    let mut dir = dir.to_path_buf();
    if !dir.join(META_FILE).is_file() {
        let old = sibling(&dir, "old")?;
        if !dir.exists() && old.join(META_FILE).is_file() {
            tracing::warn!(dir = %dir.display(), "an interrupted save left the previous package in {}; loading it", old.display());
            dir = old;
        } else if !dir.is_dir() {
            return Err(file_err(&dir, "no such model package folder"));
        } else {
            let hint = ["pytorch_model.bin", "model.pt", "model.pth"]
                .iter()
                .find(|f| dir.join(f).exists())
                .map(|f| {
                    format!(
                        " ({f} is a PyTorch pickle: pickles are never loaded; build the \
                         network from a spec with weights=FILE.safetensors instead)"
                    )
                })
                .unwrap_or_default();
            return Err(file_err(
                &dir.join(META_FILE),
                format!("not an xfer model package: no {META_FILE}{hint}"),
            ));
        }
    }
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|e| io_err(&meta_path, e))?;
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| file_err(&meta_path, format!("not valid JSON: {e}")))?;
    let got = raw.get("format").and_then(|v| v.as_str());
    if got != Some(format) {
        return Err(file_err(
            &meta_path,
            format!("not this kind of package (format {got:?}, expected {format:?})"),
        ));
    }
    let version = raw.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(file_err(
            &meta_path,
            format!(
                "unknown package format version {}: this xfer ({}) reads version \
                 {FORMAT_VERSION}",
                version.map_or("(none)".to_string(), |v| v.to_string()),
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok((dir, raw))
}

impl Classifier {
    /// Saves the network as a model package in the folder `dir` (created; a previous package
    /// there is replaced in one step, see the [module documentation](self)). `info` gives
    /// the class names (one per output, in label order), the preprocessing and the
    /// provenance.
    ///
    /// Errors: a network built from parts ([`BackboneSpec::Custom`]), a class-name count
    /// other than the number of outputs, `dir` holding files that are not a package, and
    /// I/O errors (naming the file).
    pub fn save(&self, dir: impl AsRef<Path>, info: &ModelInfo) -> Result<()> {
        let dir = dir.as_ref();
        let spec = self.spec();
        if let BackboneSpec::Custom { name } = spec {
            return Err(ModelError::Incompatible(format!(
                "{}: the network custom:{name} was built by the program, not from a spec, so a \
                 package could not rebuild it",
                dir.display()
            )));
        }
        if info.class_names.len() != self.num_classes() {
            return Err(ModelError::InvalidValue {
                name: "class_names".into(),
                value: format!("{} names", info.class_names.len()),
                expected: format!("one per output of the network ({})", self.num_classes()),
            });
        }
        info.input.check()?;
        let mut config = self.config().clone();
        config.backbone = portable_spec(spec);
        let meta = PackageMeta {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            xfer_version: env!("CARGO_PKG_VERSION").into(),
            config,
            info: info.clone(),
        };
        let json = serde_json::to_string_pretty(&meta)
            .map_err(|e| file_err(dir, format!("cannot describe the model: {e}")))?;

        write_dir_atomically(dir, |partial| {
            write_selected_weights(
                self.store(),
                Some(self.own_param_names()),
                &partial.join(WEIGHTS_FILE),
            )?;
            if let BackboneSpec::Minilm { dir: src } = spec {
                let enc = partial.join(ENCODER_DIR);
                std::fs::create_dir_all(&enc).map_err(|e| io_err(&enc, e))?;
                for f in ENCODER_FILES {
                    let bytes = std::fs::read(src.join(f)).map_err(|e| io_err(&src.join(f), e))?;
                    write_atomic(&enc.join(f), &bytes)?;
                }
                sync_dir(&enc);
            }
            write_atomic(&partial.join(META_FILE), json.as_bytes())
        })?;
        tracing::info!(dir = %dir.display(), classes = info.class_names.len(), "model package saved");
        Ok(())
    }

    /// Loads the model package in `dir` onto `device` (see the [module documentation](self)).
    ///
    /// Errors name the file and tensor: no `model.json` (not a package), an unknown format or
    /// version, a configuration that does not parse, a pickle or truncated weights file, a
    /// missing, unexpected or mis-shaped tensor, class names that do not match the outputs.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Package> {
        let (dir, raw) = read_meta(dir.as_ref(), FORMAT)?;
        let meta_path = dir.join(META_FILE);
        let mut meta: PackageMeta = serde_json::from_value(raw)
            .map_err(|e| file_err(&meta_path, format!("invalid model description: {e}")))?;
        if meta.info.class_names.len() != meta.config.num_classes {
            return Err(file_err(
                &meta_path,
                format!(
                    "{} class names for a network with {} outputs",
                    meta.info.class_names.len(),
                    meta.config.num_classes
                ),
            ));
        }
        meta.info
            .input
            .check()
            .map_err(|e| file_err(&meta_path, e.to_string()))?;
        match &mut meta.config.backbone {
            BackboneSpec::Minilm { dir: enc } => *enc = dir.join(ENCODER_DIR),
            BackboneSpec::Custom { name } => {
                return Err(file_err(
                    &meta_path,
                    format!("backbone custom:{name} cannot be rebuilt from a package"),
                ));
            }
            _ => {}
        }
        let net = Classifier::skeleton(&meta.config, device)
            .map_err(|e| file_err(&meta_path, e.to_string()))?;
        checkpoint::load(net.store(), dir.join(WEIGHTS_FILE))?;
        tracing::info!(dir = %dir.display(), backbone = %net.spec(), "model package loaded");
        Ok(Package {
            net,
            info: meta.info,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BottleneckSpec;
    use candle_core::Tensor;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xfer-pkg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn net(seed: u64) -> Classifier {
        let cfg = ClassifierConfig::new(BackboneSpec::cnn(), &[1, 8, 8], 3)
            .with_bottleneck(BottleneckSpec::LinearBnRelu(5));
        Classifier::new(&cfg, seed, &Device::Cpu).unwrap()
    }

    fn info() -> ModelInfo {
        ModelInfo::new(
            vec!["cat".into(), "dog".into(), "snow leopard".into()],
            InputSpec::tensor(0.0625),
        )
        .with_provenance(Provenance {
            method: Some("l2sp".into()),
            seed: Some(7),
            ..Default::default()
        })
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let d = tmp("rt").join("m");
        let a = net(1);
        let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &Device::Cpu).unwrap();
        // Running statistics differ from their initial values after a training pass.
        a.logits(&x, true).unwrap();
        // A method's own parameters in the network's store (a discriminator) are not saved.
        a.store()
            .add(
                "discriminator.weight",
                Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        a.save(&d, &info()).unwrap();
        let b = Classifier::load(&d, &Device::Cpu).unwrap();
        assert_eq!(b.info, info());
        assert_eq!(b.net.config(), a.config());
        let (ya, yb) = (
            a.logits(&x, false).unwrap(),
            b.net.logits(&x, false).unwrap(),
        );
        let (ya, yb) = (
            ya.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            yb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(ya, yb);
        // Saving again replaces the package in place; nothing is left beside it.
        net(2).save(&d, &info()).unwrap();
        let c = Classifier::load(&d, &Device::Cpu).unwrap();
        let yc = c
            .net
            .logits(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_ne!(yc, ya);
        let names: Vec<_> = std::fs::read_dir(d.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["m"]);
    }

    #[test]
    fn refuses_bad_packages_with_one_line() {
        let root = tmp("bad");
        let d = root.join("m");
        net(1).save(&d, &info()).unwrap();
        let one_line = |e: ModelError| {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
            s
        };
        // Wrong format version.
        let meta = std::fs::read_to_string(d.join(META_FILE)).unwrap();
        std::fs::write(
            d.join(META_FILE),
            meta.replace("\"format_version\": 1", "\"format_version\": 9"),
        )
        .unwrap();
        let e = one_line(Classifier::load(&d, &Device::Cpu).unwrap_err());
        assert!(
            e.contains("format version 9") && e.contains("model.json"),
            "{e}"
        );
        std::fs::write(d.join(META_FILE), &meta).unwrap();
        assert!(Classifier::load(&d, &Device::Cpu).is_ok());

        // A tensor removed, renamed or reshaped.
        let file = crate::SafetensorsFile::open(d.join(WEIGHTS_FILE)).unwrap();
        let all: Vec<(String, Tensor)> = file
            .names()
            .into_iter()
            .map(|n| {
                let t = file.tensor(&n, &Device::Cpu).unwrap();
                (n, t)
            })
            .collect();
        let victim = "head.weight";
        let write = |tensors: Vec<(String, Tensor)>| {
            let bytes = crate::safetensors_file::serialize(
                tensors.iter().map(|(n, t)| (n.as_str(), t)),
                &BTreeMap::new(),
            )
            .unwrap();
            std::fs::write(d.join(WEIGHTS_FILE), bytes).unwrap();
        };
        let cases: Vec<(Vec<(String, Tensor)>, &str)> = vec![
            (
                all.iter().filter(|(n, _)| n != victim).cloned().collect(),
                "head.weight",
            ),
            (
                all.iter()
                    .map(|(n, t)| {
                        let n = if n == victim {
                            "head.weights".to_string()
                        } else {
                            n.clone()
                        };
                        (n, t.clone())
                    })
                    .collect(),
                "head.weight",
            ),
            (
                all.iter()
                    .map(|(n, t)| {
                        let t = if n == victim {
                            t.flatten_all().unwrap()
                        } else {
                            t.clone()
                        };
                        (n.clone(), t)
                    })
                    .collect(),
                "head.weight",
            ),
        ];
        for (tensors, name) in cases {
            write(tensors);
            let e = one_line(Classifier::load(&d, &Device::Cpu).unwrap_err());
            assert!(e.contains(name) && e.contains("model.safetensors"), "{e}");
        }
        // A pickle where the weights should be.
        std::fs::write(d.join(WEIGHTS_FILE), b"\x80\x02}q\x00.").unwrap();
        let e = one_line(Classifier::load(&d, &Device::Cpu).unwrap_err());
        assert!(e.contains("model.safetensors"), "{e}");
        // Not a package at all.
        let e = one_line(Classifier::load(&root, &Device::Cpu).unwrap_err());
        assert!(e.contains("not an xfer model package"), "{e}");
    }

    #[test]
    fn never_overwrites_other_files_and_checks_class_names() {
        let root = tmp("other");
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let e = net(1).save(&root, &info()).unwrap_err().to_string();
        assert!(e.contains("not an xfer model package"), "{e}");
        assert_eq!(
            std::fs::read_to_string(root.join("notes.txt")).unwrap(),
            "mine"
        );
        let mut two = info();
        two.class_names.pop();
        let e = net(1).save(root.join("m"), &two).unwrap_err().to_string();
        assert!(e.contains("class_names"), "{e}");
        assert!(!root.join("m").exists());
    }
}
