//! Data specifications: one string names a data set, embedded or from files, the same in
//! every example (`--source SPEC --target SPEC`) and in the library ([`load`]).
//!
//! ```text
//! SPEC    := SCHEME [":" ARG] [":" OPTIONS]      OPTIONS := KEY=VALUE[,KEY=VALUE...]
//! moons  moons:DEG                 two moons (150 points, noise 0.05), rotated by DEG degrees
//! optdigits                        1,797 real 8×8 digits, values 0..16
//! synth-digits                     generated stroke digits, 8×8, 0..16      (n=PER_CLASS)
//! digits-rot:DEG  digits-inv  digits-noise  mnistm-digits
//!                                  shifted digits (base=optdigits|synth-digits, noise=FRACTION)
//! shapes                           24 classes of 3×16×16 coloured shapes    (n=PER_CLASS)
//! csv:PATH                         features then label; .csv.gz; label=COL|NAME, header=yes|no,
//!                                  sep=,|;|tab|space, classes=N (a .tsv file: tab by default)
//! csv:PATH:label=none              features without labels (load_data → Data::Unlabeled)
//! csv:PATH:text=COL,label=COL      a text data set (load_data → Data::Text; label=none: no labels)
//! tsv:PATH                         as csv, tab-separated
//! idx:IMAGES[,LABELS]              MNIST/USPS IDX, raw or gzip (labels found by name if omitted)
//! folder:DIR                       DIR/<class>/*.png|jpg|bmp|webp, pixels in [0, 1]
//!                                  (size=HxW, channels=1|3, skip_bad, lazy|eager)
//! images:DIR                       every image under DIR, recursively, without labels
//!                                  (the options of folder:)
//! safetensors:PATH                 tensors x and y                           (x=NAME,y=NAME)
//! every scheme:                    scale=X (multiply features), flatten (samples as vectors)
//! ```
//! Example: `csv:data/train.csv.gz:scale=0.0625,label=64`.
//!
//! [`load`] gives an in-memory [`TensorDataset`] for every spec (an image folder is decoded
//! whole). [`DataSpec::load_data`] gives a [`Data`]: there an image folder is a lazily
//! decoded [`ImageFolder`] unless `eager` is given, so memory does not grow with the number
//! of images.
//!
//! Unlabelled specs (`images:DIR`, `label=none`) have no labels to give: [`load`] refuses
//! them with [`DataError::Unlabeled`]; [`DataSpec::load_data`] gives them as
//! [`Data::Images`] (an [`ImageFolder`] without classes), [`Data::Unlabeled`] or an
//! unlabelled [`Data::Text`], and [`DataSpec::load_unlabeled`] reads any spec's inputs.

use crate::dataset::{TensorDataset, UnlabeledDataset};
use crate::embedded::{self, shifted};
use crate::error::{DataError, Result};
use crate::formats::csv::{
    CsvOptions, Header, LabelColumn, TextCsvOptions, is_tsv, read_csv, read_csv_unlabeled,
    read_text_csv,
};
use crate::formats::folder::{FolderOptions, ImageFolder};
use crate::formats::idx::{read_idx_dataset, sibling_labels};
use crate::formats::safetensors_file::{SafetensorsOptions, read_safetensors};
use std::path::{Path, PathBuf};

mod data;
pub use data::Data;

/// The accepted forms, for error messages.
pub const SPEC_FORMS: &str = "moons[:DEG], optdigits, synth-digits, digits-rot:DEG, digits-inv, \
digits-noise, mnistm-digits, shapes, csv:PATH[:label=COL|none,header=yes|no,scale=X], \
csv|tsv:PATH:text=COL,label=COL|none, \
idx:IMAGES[,LABELS], folder:DIR[:size=HxW,channels=1|3,skip_bad,lazy|eager], \
images:DIR[:size=HxW,channels=1|3,skip_bad,lazy|eager] (unlabelled), safetensors:PATH[:x=NAME,y=NAME]";

const KNOWN_KEYS: [&str; 13] = [
    "scale", "label", "header", "sep", "classes", "size", "x", "y", "n", "noise", "base",
    "channels", "text",
];
const KNOWN_FLAGS: [&str; 4] = ["flatten", "lazy", "eager", "skip_bad"];

/// Which digits a shifted-digits spec starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitBase {
    /// The embedded optdigits.
    Optdigits,
    /// Generated synthetic digits (`n` per class).
    Synth(usize),
}

/// What a specification names.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Two moons: `n` points, noise, rotation in degrees.
    Moons {
        /// Rotation in degrees.
        degrees: f64,
        /// Number of points.
        n: usize,
        /// Noise standard deviation.
        noise: f64,
    },
    /// The embedded optdigits.
    Optdigits,
    /// Synthetic digits, `n` per class.
    SynthDigits {
        /// Samples per class.
        n: usize,
    },
    /// Rotated digits.
    DigitsRot {
        /// Rotation in degrees.
        degrees: f32,
        /// The digits rotated.
        base: DigitBase,
    },
    /// Inverted digits.
    DigitsInv {
        /// The digits inverted.
        base: DigitBase,
    },
    /// Digits with Gaussian noise (std as a fraction of the value range).
    DigitsNoise {
        /// Noise std / value range.
        noise: f32,
        /// The digits.
        base: DigitBase,
    },
    /// MNIST-M-style digits on a coloured textured background (3 channels).
    MnistmDigits {
        /// The digits.
        base: DigitBase,
    },
    /// Coloured shapes with attributes, `n` per class.
    Shapes {
        /// Samples per class.
        n: usize,
    },
    /// A CSV file.
    Csv {
        /// The file.
        path: PathBuf,
        /// How to read it.
        options: CsvOptions,
    },
    /// A text CSV/TSV file: a text column and a label column.
    Text {
        /// The file.
        path: PathBuf,
        /// Which columns, header, separator.
        options: TextCsvOptions,
    },
    /// An IDX image file and its labels.
    Idx {
        /// Images.
        images: PathBuf,
        /// Labels; found by MNIST naming when absent.
        labels: Option<PathBuf>,
    },
    /// An image folder.
    Folder {
        /// The root folder.
        dir: PathBuf,
        /// Resize target, channels, skipping of unreadable files (`scale` comes from the spec).
        options: FolderOptions,
        /// `eager`: [`DataSpec::load_data`] decodes every image into memory too.
        eager: bool,
    },
    /// Every image under a folder, recursively, without labels (`images:DIR`).
    Images {
        /// The root folder.
        dir: PathBuf,
        /// Resize target, channels, skipping of unreadable files (`scale` comes from the spec).
        options: FolderOptions,
        /// `eager`: [`DataSpec::load_data`] decodes every image into memory too.
        eager: bool,
    },
    /// A safetensors feature file.
    Safetensors {
        /// The file.
        path: PathBuf,
        /// Tensor names.
        options: SafetensorsOptions,
    },
}

/// A parsed data specification.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// The text as given.
    pub raw: String,
    /// What it names.
    pub source: Source,
    /// `scale=X`: features are multiplied by X after loading.
    pub scale: Option<f32>,
    /// `flatten`: samples become flat feature vectors.
    pub flatten: bool,
}

fn looks_like_options(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|item| match item.split_once('=') {
            Some((k, _)) => KNOWN_KEYS.contains(&k.trim()),
            None => KNOWN_FLAGS.contains(&item.trim()),
        })
}

struct Opts<'a> {
    spec: &'a str,
    items: Vec<(String, Option<String>)>,
}

impl Opts<'_> {
    fn err(&self, msg: impl Into<String>) -> DataError {
        DataError::Spec {
            spec: self.spec.to_string(),
            msg: msg.into(),
        }
    }
    fn take(&mut self, key: &str) -> Option<String> {
        let i = self
            .items
            .iter()
            .position(|(k, v)| k == key && v.is_some())?;
        self.items.remove(i).1
    }
    fn flag(&mut self, key: &str) -> bool {
        match self.items.iter().position(|(k, v)| k == key && v.is_none()) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }
    fn num<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.err(format!("option {key}={v}: not a valid number"))),
        }
    }
    fn finish(&self, scheme: &str, accepted: &str) -> Result<()> {
        match self.items.first() {
            None => Ok(()),
            Some((k, _)) => Err(self.err(format!(
                "option `{k}` does not apply to {scheme} (accepted: {accepted})"
            ))),
        }
    }
}

fn parse_size(o: &Opts<'_>, v: &str) -> Result<(usize, usize)> {
    let bad = || o.err(format!("size={v}: expected HxW, e.g. size=32x32"));
    let (h, w) = v.split_once(['x', 'X']).ok_or_else(bad)?;
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

impl DataSpec {
    /// Parses a specification (see the module docs); an error is one line naming the spec.
    pub fn parse(spec: &str) -> Result<Self> {
        let raw = spec.trim();
        let err = |msg: String| DataError::Spec {
            spec: raw.to_string(),
            msg,
        };
        if raw.is_empty() {
            return Err(err(format!("empty; expected one of: {SPEC_FORMS}")));
        }
        let (scheme, rest) = match raw.split_once(':') {
            Some((s, r)) => (s.trim().to_ascii_lowercase(), Some(r)),
            None => (raw.to_ascii_lowercase(), None),
        };
        let (arg, opt_text) = match rest {
            None => (None, None),
            Some(r) => match r.rsplit_once(':') {
                Some((a, o)) if looks_like_options(o) => (Some(a), Some(o)),
                _ if looks_like_options(r) => (None, Some(r)),
                _ => (Some(r), None),
            },
        };
        let items = opt_text
            .map(|t| {
                t.split(',')
                    .map(|it| match it.split_once('=') {
                        Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                        None => (it.trim().to_string(), None),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut o = Opts { spec: raw, items };
        let scale = o.num::<f32>("scale")?;
        if let Some(s) = scale
            && !s.is_finite()
        {
            return Err(o.err(format!("scale={s} must be finite")));
        }
        let flatten = o.flag("flatten");
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let need_path = |what: &str| -> Result<PathBuf> {
            arg.map(PathBuf::from)
                .ok_or_else(|| err(format!("{scheme} needs a path: {scheme}:{what}")))
        };
        let no_arg = |o: &Opts<'_>| -> Result<()> {
            match arg {
                Some(a) => Err(o.err(format!("{scheme} takes no argument, got `{a}`"))),
                None => Ok(()),
            }
        };
        let degrees = |o: &Opts<'_>, default: Option<f64>| -> Result<f64> {
            match (arg, default) {
                (Some(a), _) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite())
                    .ok_or_else(|| o.err(format!("`{a}` is not an angle in degrees"))),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(o.err(format!("{scheme} needs an angle: {scheme}:DEG"))),
            }
        };
        let base = |o: &mut Opts<'_>| -> Result<DigitBase> {
            let n = o.num::<usize>("n")?.unwrap_or(200);
            match o.take("base").as_deref() {
                None | Some("optdigits") => Ok(DigitBase::Optdigits),
                Some("synth-digits") => Ok(DigitBase::Synth(n)),
                Some(b) => Err(o.err(format!(
                    "base={b}: expected base=optdigits or base=synth-digits"
                ))),
            }
        };
        let source = match scheme.as_str() {
            "moons" => {
                let d = degrees(&o, Some(0.0))?;
                let n = o
                    .num::<usize>("n")?
                    .unwrap_or(embedded::moons::MOONS_PER_DOMAIN);
                let noise = o
                    .num::<f64>("noise")?
                    .unwrap_or(embedded::moons::MOONS_NOISE);
                o.finish("moons", "n, noise, scale, flatten")?;
                Source::Moons {
                    degrees: d,
                    n,
                    noise,
                }
            }
            "optdigits" => {
                no_arg(&o)?;
                o.finish("optdigits", "scale, flatten")?;
                Source::Optdigits
            }
            "synth-digits" => {
                no_arg(&o)?;
                let n = o.num::<usize>("n")?.unwrap_or(200);
                o.finish("synth-digits", "n, scale, flatten")?;
                Source::SynthDigits { n }
            }
            "digits-rot" => {
                let d = degrees(&o, None)? as f32;
                let b = base(&mut o)?;
                o.finish("digits-rot", "base, n, scale, flatten")?;
                Source::DigitsRot {
                    degrees: d,
                    base: b,
                }
            }
            "digits-inv" => {
                no_arg(&o)?;
                let b = base(&mut o)?;
                o.finish("digits-inv", "base, n, scale, flatten")?;
                Source::DigitsInv { base: b }
            }
            "digits-noise" => {
                no_arg(&o)?;
                let noise = o.num::<f32>("noise")?.unwrap_or(0.25);
                let b = base(&mut o)?;
                o.finish("digits-noise", "noise, base, n, scale, flatten")?;
                Source::DigitsNoise { noise, base: b }
            }
            "mnistm-digits" => {
                no_arg(&o)?;
                let b = base(&mut o)?;
                o.finish("mnistm-digits", "base, n, scale, flatten")?;
                Source::MnistmDigits { base: b }
            }
            "shapes" => {
                no_arg(&o)?;
                let n = o.num::<usize>("n")?.unwrap_or(40);
                o.finish("shapes", "n, scale, flatten")?;
                Source::Shapes { n }
            }
            "csv" | "tsv" => {
                let path = need_path("PATH")?;
                let column = |l: String| match l.parse::<usize>() {
                    Ok(i) => LabelColumn::Index(i),
                    Err(_) if l == "last" => LabelColumn::Last,
                    Err(_) if l == "none" => LabelColumn::None,
                    Err(_) => LabelColumn::Name(l),
                };
                let mut options = CsvOptions::default();
                if scheme == "tsv" || is_tsv(&path) {
                    options.delimiter = '\t';
                }
                if let Some(l) = o.take("label") {
                    options.label = column(l);
                }
                if let Some(h) = o.take("header") {
                    options.header = match h.as_str() {
                        "yes" | "true" | "1" => Header::Yes,
                        "no" | "false" | "0" => Header::No,
                        "auto" | "detect" => Header::Detect,
                        _ => return Err(o.err(format!("header={h}: expected yes, no or auto"))),
                    };
                }
                if let Some(s) = o.take("sep") {
                    options.delimiter = match s.as_str() {
                        "tab" | "\\t" => '\t',
                        "space" => ' ',
                        "semicolon" | ";" => ';',
                        "comma" | "," => ',',
                        _ => {
                            return Err(
                                o.err(format!("sep={s}: expected comma, semicolon, tab or space"))
                            );
                        }
                    };
                }
                options.num_classes = o.num::<usize>("classes")?;
                match o.take("text") {
                    Some(t) => {
                        o.finish(&scheme, "text, label, header, sep, classes")?;
                        if scale.is_some() || flatten {
                            return Err(o.err("scale and flatten do not apply to text"));
                        }
                        Source::Text {
                            path,
                            options: TextCsvOptions {
                                text: column(t),
                                label: options.label,
                                header: options.header,
                                delimiter: options.delimiter,
                                num_classes: options.num_classes,
                            },
                        }
                    }
                    None => {
                        o.finish(&scheme, "text, label, header, sep, classes, scale, flatten")?;
                        Source::Csv { path, options }
                    }
                }
            }
            "idx" => {
                let a = arg.ok_or_else(|| err("idx needs files: idx:IMAGES[,LABELS]".into()))?;
                let (images, labels) = match a.split_once(',') {
                    Some((i, l)) => (PathBuf::from(i.trim()), Some(PathBuf::from(l.trim()))),
                    None => (PathBuf::from(a), None),
                };
                o.finish("idx", "scale, flatten")?;
                Source::Idx { images, labels }
            }
            "folder" | "images" => {
                let dir = need_path("DIR")?;
                let size = match o.take("size") {
                    Some(v) => Some(parse_size(&o, &v)?),
                    None => None,
                };
                let channels = o.num::<usize>("channels")?;
                if let Some(c) = channels
                    && c != 1
                    && c != 3
                {
                    return Err(o.err(format!("channels={c}: expected channels=1 or channels=3")));
                }
                let skip_bad = o.flag("skip_bad");
                let lazy = o.flag("lazy");
                let eager = o.flag("eager");
                if lazy && eager {
                    return Err(o.err("`lazy` and `eager` exclude each other"));
                }
                o.finish(
                    &scheme,
                    "size, channels, skip_bad, lazy, eager, scale, flatten",
                )?;
                let options = FolderOptions {
                    size,
                    scale: None,
                    channels,
                    skip_bad,
                };
                if scheme == "images" {
                    Source::Images {
                        dir,
                        options,
                        eager,
                    }
                } else {
                    Source::Folder {
                        dir,
                        options,
                        eager,
                    }
                }
            }
            "safetensors" => {
                let path = need_path("PATH")?;
                let mut options = SafetensorsOptions::default();
                if let Some(x) = o.take("x") {
                    options.x = x;
                }
                if let Some(y) = o.take("y") {
                    options.y = y;
                }
                o.finish("safetensors", "x, y, scale, flatten")?;
                Source::Safetensors { path, options }
            }
            other => {
                return Err(err(format!(
                    "unknown scheme `{other}`; expected one of: {SPEC_FORMS}"
                )));
            }
        };
        Ok(Self {
            raw: raw.to_string(),
            source,
            scale,
            flatten,
        })
    }

    fn missing(&self, p: &Path) -> Option<DataError> {
        (!p.exists()).then(|| DataError::Spec {
            spec: self.raw.clone(),
            msg: format!("{} not found", p.display()),
        })
    }

    /// Whether the spec names labelled data (`false` for `images:DIR` and `label=none`).
    pub fn is_labeled(&self) -> bool {
        match &self.source {
            Source::Images { .. } => false,
            Source::Csv { options, .. } => options.label != LabelColumn::None,
            Source::Text { options, .. } => options.label != LabelColumn::None,
            _ => true,
        }
    }

    fn unlabeled_error(&self, what: &'static str) -> DataError {
        DataError::Unlabeled {
            name: self.raw.clone(),
            what,
        }
    }

    /// The inputs of any spec without labels, in memory (`images:DIR` decoded whole; a
    /// labelled spec's labels dropped); `scale` and `flatten` applied. An error for text.
    pub fn load_unlabeled(&self, seed: u64) -> Result<UnlabeledDataset> {
        let ds = match &self.source {
            Source::Images { dir, options, .. } => {
                if let Some(e) = self.missing(dir) {
                    return Err(e);
                }
                ImageFolder::open_unlabeled(dir, options)?.materialize_unlabeled()?
            }
            Source::Csv { path, options } if options.label == LabelColumn::None => {
                if let Some(e) = self.missing(path) {
                    return Err(e);
                }
                read_csv_unlabeled(path, options)?
            }
            Source::Text { .. } => return Err(self.text_error()),
            _ => return Ok(self.load(seed)?.unlabeled().with_name(self.raw.clone())),
        };
        use crate::dataset::Dataset;
        if ds.is_empty() {
            return Err(DataError::Empty(self.raw.clone()));
        }
        let ds = match self.scale {
            Some(s) => ds.scale(s),
            None => ds,
        };
        let ds = if self.flatten { ds.flatten() } else { ds };
        Ok(ds.with_name(self.raw.clone()))
    }

    /// The refusal of an in-memory load of a text spec.
    fn text_error(&self) -> DataError {
        DataError::Spec {
            spec: self.raw.clone(),
            msg: "a text data set (text=): load it with spec::load_data (Data::Text)".into(),
        }
    }

    /// Loads the data set; `seed` drives every generated data set. An error
    /// ([`DataError::Unlabeled`]) for an unlabelled spec: see [`DataSpec::load_unlabeled`].
    pub fn load(&self, seed: u64) -> Result<TensorDataset> {
        if !self.is_labeled() {
            return Err(self.unlabeled_error("a labelled data set"));
        }
        let digits = |b: DigitBase| -> Result<TensorDataset> {
            match b {
                DigitBase::Optdigits => embedded::optdigits(),
                DigitBase::Synth(n) => embedded::synth_digits(n, seed),
            }
        };
        let ds = match &self.source {
            Source::Moons { degrees, n, noise } => embedded::moons(*n, *noise, *degrees, seed)?,
            Source::Optdigits => embedded::optdigits()?,
            Source::SynthDigits { n } => embedded::synth_digits(*n, seed)?,
            Source::DigitsRot { degrees, base } => shifted::rotate(&digits(*base)?, *degrees)?,
            Source::DigitsInv { base } => shifted::invert(&digits(*base)?)?,
            Source::DigitsNoise { noise, base } => {
                shifted::add_noise(&digits(*base)?, *noise, seed)?
            }
            Source::MnistmDigits { base } => shifted::color_background(&digits(*base)?, seed)?,
            Source::Shapes { n } => embedded::shapes(*n, seed)?,
            Source::Csv { path, options } => {
                if let Some(e) = self.missing(path) {
                    return Err(e);
                }
                read_csv(path, options)?
            }
            Source::Text { .. } => return Err(self.text_error()),
            Source::Idx { images, labels } => {
                if let Some(e) = self.missing(images) {
                    return Err(e);
                }
                let labels = match labels {
                    Some(l) => l.clone(),
                    None => sibling_labels(images).ok_or_else(|| DataError::Spec {
                        spec: self.raw.clone(),
                        msg: format!(
                            "no label file found next to {}; give it: idx:IMAGES,LABELS",
                            images.display()
                        ),
                    })?,
                };
                if let Some(e) = self.missing(&labels) {
                    return Err(e);
                }
                read_idx_dataset(images, &labels, 1.0)?
            }
            Source::Folder { dir, options, .. } => {
                if let Some(e) = self.missing(dir) {
                    return Err(e);
                }
                ImageFolder::open(dir, options)?.materialize()?
            }
            Source::Images { .. } => return Err(self.unlabeled_error("a labelled data set")),
            Source::Safetensors { path, options } => {
                if let Some(e) = self.missing(path) {
                    return Err(e);
                }
                read_safetensors(path, options, 1.0)?
            }
        };
        if ds.is_empty() {
            return Err(DataError::Empty(self.raw.clone()));
        }
        let ds = match self.scale {
            Some(s) => ds.scale(s),
            None => ds,
        };
        let ds = if self.flatten { ds.flatten() } else { ds };
        Ok(ds.with_name(self.raw.clone()))
    }
}

impl DataSpec {
    /// Loads the data set as [`Data`]: an image folder lazily ([`ImageFolder`], unless the
    /// spec says `eager`; `flatten` does not apply to it), everything else in memory as by
    /// [`DataSpec::load`].
    pub fn load_data(&self, seed: u64) -> Result<Data> {
        match &self.source {
            Source::Folder {
                dir,
                options,
                eager: false,
            }
            | Source::Images {
                dir,
                options,
                eager: false,
            } => {
                let labelled = matches!(self.source, Source::Folder { .. });
                if let Some(e) = self.missing(dir) {
                    return Err(e);
                }
                if self.flatten {
                    return Err(DataError::Spec {
                        spec: self.raw.clone(),
                        msg: "`flatten` does not apply to lazily decoded images (add `eager`)"
                            .into(),
                    });
                }
                let options = FolderOptions {
                    scale: self.scale,
                    ..options.clone()
                };
                let f = if labelled {
                    let f = ImageFolder::open(dir, &options)?;
                    if f.is_empty() {
                        return Err(DataError::Empty(self.raw.clone()));
                    }
                    f
                } else {
                    ImageFolder::open_unlabeled(dir, &options)?
                };
                Ok(Data::Images(f.with_name(self.raw.clone())))
            }
            Source::Images { .. } => Ok(Data::Unlabeled(self.load_unlabeled(seed)?)),
            Source::Csv { options, .. } if options.label == LabelColumn::None => {
                Ok(Data::Unlabeled(self.load_unlabeled(seed)?))
            }
            Source::Text { path, options } => {
                if let Some(e) = self.missing(path) {
                    return Err(e);
                }
                let t = read_text_csv(path, options)?;
                if t.is_empty() {
                    return Err(DataError::Empty(self.raw.clone()));
                }
                Ok(Data::Text(t.with_name(self.raw.clone())))
            }
            _ => Ok(Data::Tensors(self.load(seed)?)),
        }
    }
}

/// Parses and loads a data specification as [`Data`] (image folders lazily):
/// `load_data("folder:photos:channels=3", 0)`.
pub fn load_data(spec: &str, seed: u64) -> Result<Data> {
    DataSpec::parse(spec)?.load_data(seed)
}

/// Parses and loads a data specification: `load("csv:my.csv:label=0", 42)`.
pub fn load(spec: &str, seed: u64) -> Result<TensorDataset> {
    DataSpec::parse(spec)?.load(seed)
}

/// Checks that two data sets can be used together (source and target of one model): the same
/// sample shape, or an error naming both shapes and the transform that would fix it.
pub fn check_compatible(source: &TensorDataset, target: &TensorDataset) -> Result<()> {
    let (a, b) = (source.sample_shape(), target.sample_shape());
    if a == b {
        return Ok(());
    }
    let (na, nb): (usize, usize) = (a.iter().product(), b.iter().product());
    let hint = if na == nb {
        "the same number of values: add `flatten` to both specs".to_string()
    } else if a.len() == 3 && b.len() == 3 && a[0] == b[0] {
        format!("resize one side, e.g. folder:DIR:size={}x{}", a[1], a[2])
    } else if a.len() == 3 && b.len() == 3 {
        format!(
            "the channel counts differ ({} vs {}): use a 1-channel or a 3-channel variant on both sides",
            a[0], b[0]
        )
    } else {
        "bring both to the same features (same columns, or the same image size)".to_string()
    };
    Err(DataError::shape(
        format!("source `{}` vs target `{}`", source.name(), target.name()),
        format!("samples of shape {a:?} vs {b:?}; {hint}"),
    ))
}
