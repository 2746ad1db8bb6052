//! Prediction with a saved model package ([`xfer_models::package`]): inputs of any kind the
//! package can read, streamed in batches, top-k labels with probabilities, and an evaluation
//! report when the inputs carry labels.
//!
//! ```no_run
//! # fn main() -> xfer_train::Result<()> {
//! use candle_core::Device;
//! use xfer_models::Classifier;
//! use xfer_train::predict::{Inputs, PredictOptions, predict};
//! let pkg = Classifier::load("runs/my-model", &Device::Cpu)?;
//! let inputs = Inputs::open(&["photos/".to_string()], &pkg, None)?;
//! let summary = predict(&pkg, &inputs, &PredictOptions::default(), |p| {
//!     println!("{} → {} ({:.3})", p.id, pkg.info.class_names[p.top[0].0], p.top[0].1);
//!     Ok(())
//! })?;
//! if let Some(report) = summary.report(&pkg.info.class_names) {
//!     print!("{}", report.to_text());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What an input string can be ([`Inputs::open`]):
//! - a folder: every image under it, recursively. When every image sits in a sub-folder
//!   named after one of the model's classes (the layout training folders have), those are
//!   the labels and an evaluation report follows; otherwise the images are unlabelled.
//! - image files (several may be given);
//! - a `.txt` / `.lst` file listing image paths, one per line (relative to the list's folder;
//!   blank lines and `#` comments skipped);
//! - a `.csv` / `.tsv` file for a text model: the text column (`text`, or the one named), and
//!   the labels from a `label` column when it has one; row numbers are the ids;
//! - any data spec (`optdigits`, `csv:PATH`, `folder:DIR:size=32x32`, ...; see docs/data.md),
//!   labels mapped to the model's classes by name.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use xfer_data::formats::folder::{images_under, is_image_file, read_image};
use xfer_data::image_ops::resize_bilinear;
use xfer_data::{Data, Dataset, Preprocess, Transform};
use xfer_models::Tokenizer;
use xfer_models::encode_tokens;
use xfer_models::package::{InputSpec, Package};
use xfer_ops::SeededRng;

use crate::metrics::{ClassificationReport, ConfusionMatrix};
use crate::{Result, TrainError};

/// What [`predict`] needs of a model: its classes, how its inputs are made, and its scores.
/// Implemented by classifier packages ([`Package`]) and zero-shot packages
/// ([`crate::methods::zero_shot::package::ZslPackage`]).
pub trait Predictor {
    /// The name of every output, in order.
    fn class_names(&self) -> &[String];
    /// How inputs are prepared.
    fn input(&self) -> &InputSpec;
    /// The shape of one network input (for numbers and images read at that size).
    fn input_shape(&self) -> &[usize];
    /// The tokenizer of a text model.
    fn tokenizer(&self) -> Result<Option<Tokenizer>>;
    /// Where the network runs.
    fn device(&self) -> &Device;
    /// The package folder, for messages.
    fn location(&self) -> &Path;
    /// Scores `(N, classes)` of a batch (larger = more likely), in evaluation mode.
    fn scores(&self, x: &Tensor) -> Result<Tensor>;
}

impl Predictor for Package {
    fn class_names(&self) -> &[String] {
        &self.info.class_names
    }
    fn input(&self) -> &InputSpec {
        &self.info.input
    }
    fn input_shape(&self) -> &[usize] {
        self.net.input_shape()
    }
    fn tokenizer(&self) -> Result<Option<Tokenizer>> {
        Ok(Package::tokenizer(self)?)
    }
    fn device(&self) -> &Device {
        self.net.device()
    }
    fn location(&self) -> &Path {
        &self.dir
    }
    fn scores(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.net.logits(x, false)?)
    }
}

/// How [`predict`] runs.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Inputs per forward pass.
    pub batch_size: usize,
    /// Labels reported per input, most probable first.
    pub topk: usize,
    /// Skip image files that cannot be read or decoded (counted in the summary) instead of
    /// stopping with an error naming the first one.
    pub skip_bad: bool,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            topk: 1,
            skip_bad: false,
            progress: false,
        }
    }
}

/// The prediction for one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The file path, or the 1-based row number for rows of a table or data set.
    pub id: String,
    /// `(class, probability)`, most probable first (`topk` of them).
    pub top: Vec<(usize, f32)>,
    /// The true class, when the input has one the model knows.
    pub label: Option<usize>,
}

impl Prediction {
    /// The CSV header of `topk` labels: `path,label,probability[,label_2,probability_2,...]`.
    pub fn csv_header(topk: usize) -> String {
        let mut cols = vec!["path".to_string(), "label".into(), "probability".into()];
        for k in 2..=topk {
            cols.push(format!("label_{k}"));
            cols.push(format!("probability_{k}"));
        }
        cols.join(",")
    }

    /// This prediction as a CSV row under [`Prediction::csv_header`] (fields quoted where
    /// needed).
    pub fn csv_row(&self, class_names: &[String]) -> String {
        let mut cells = vec![csv_field(&self.id)];
        for &(c, p) in &self.top {
            cells.push(csv_field(&class_name(class_names, c)));
            cells.push(format!("{p:.6}"));
        }
        cells.join(",")
    }

    /// This prediction as one JSON object: `{"path", "label", "probability", "top": [{"label",
    /// "probability"}, ...], "true_label"?}`.
    pub fn json(&self, class_names: &[String]) -> serde_json::Value {
        let top: Vec<serde_json::Value> = self
            .top
            .iter()
            .map(|&(c, p)| serde_json::json!({"label": class_name(class_names, c), "probability": p}))
            .collect();
        let mut v = serde_json::json!({
            "path": self.id,
            "label": self.top.first().map(|&(c, _)| class_name(class_names, c)),
            "probability": self.top.first().map(|&(_, p)| p),
            "top": top,
        });
        if let (Some(l), Some(m)) = (self.label, v.as_object_mut()) {
            m.insert("true_label".into(), class_name(class_names, l).into());
        }
        v
    }
}

fn class_name(names: &[String], c: usize) -> String {
    names.get(c).cloned().unwrap_or_else(|| c.to_string())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What a [`predict`] run did.
#[derive(Debug, Clone, Default)]
pub struct PredictSummary {
    /// Inputs predicted.
    pub predicted: usize,
    /// Inputs skipped (`skip_bad`): the file and why.
    pub skipped: Vec<(String, String)>,
    /// True class × predicted class over the labelled inputs, when the inputs have labels.
    pub confusion: Option<ConfusionMatrix>,
}

impl PredictSummary {
    /// The evaluation report over the labelled inputs (`None` without labels).
    pub fn report(&self, class_names: &[String]) -> Option<ClassificationReport> {
        self.confusion.as_ref()?.report(class_names)
    }
}

/// The items of a prediction run.
#[derive(Debug, Clone)]
enum Items {
    Images(Vec<PathBuf>),
    Texts(Vec<String>),
    /// Row-major features and the shape of one row.
    Rows(Vec<f32>, Vec<usize>),
}

/// Inputs for [`predict`], opened from the strings a user gives (see the module
/// documentation); nothing is decoded until [`predict`] reaches it.
#[derive(Debug, Clone)]
pub struct Inputs {
    items: Items,
    ids: Vec<String>,
    /// True classes in the model's label order, when every input has one.
    labels: Option<Vec<usize>>,
    /// What was opened, for messages.
    pub description: String,
}

impl Inputs {
    /// The number of inputs.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no input.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the inputs carry labels (an evaluation report follows the predictions).
    pub fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    /// Opens `specs` for the model `pkg`; `text_column` names the text column of a CSV/TSV
    /// file (default: a column named `text`, else the first). Errors name the path or spec.
    pub fn open(specs: &[String], pkg: &dyn Predictor, text_column: Option<&str>) -> Result<Self> {
        if specs.is_empty() {
            return Err(TrainError::invalid("input", "(none)", "at least one input"));
        }
        let names = pkg.class_names();
        let mut files = Vec::new();
        let mut parts = Vec::new();
        for s in specs {
            let p = Path::new(s);
            if p.is_file() && is_image_file(p) {
                files.push(p.to_path_buf());
            } else {
                parts.push(open_one(s, pkg, text_column)?);
            }
        }
        if !files.is_empty() {
            let n = files.len();
            parts.push(Self {
                ids: files.iter().map(|f| f.display().to_string()).collect(),
                items: Items::Images(files),
                labels: None,
                description: format!("{n} image file(s)"),
            });
        }
        let mut it = parts.into_iter();
        let mut all = it
            .next()
            .ok_or_else(|| TrainError::BadData("no input".into()))?;
        for p in it {
            all = all.concat(p)?;
        }
        if all.is_empty() {
            return Err(TrainError::BadData(format!(
                "{}: no input found",
                all.description
            )));
        }
        if let Some(l) = &all.labels
            && let Some(&bad) = l.iter().find(|&&c| c >= names.len())
        {
            return Err(TrainError::BadData(format!(
                "{}: label {bad} outside the model's {} classes",
                all.description,
                names.len()
            )));
        }
        Ok(all)
    }

    fn concat(self, other: Self) -> Result<Self> {
        let description = format!("{} + {}", self.description, other.description);
        let items = match (self.items, other.items) {
            (Items::Images(mut a), Items::Images(b)) => {
                a.extend(b);
                Items::Images(a)
            }
            (Items::Texts(mut a), Items::Texts(b)) => {
                a.extend(b);
                Items::Texts(a)
            }
            (Items::Rows(mut a, sa), Items::Rows(b, sb)) if sa == sb => {
                a.extend(b);
                Items::Rows(a, sa)
            }
            _ => {
                return Err(TrainError::BadData(format!(
                    "{description}: the inputs are of different kinds (images, texts, rows); \
                     predict them in separate runs"
                )));
            }
        };
        let labels = match (self.labels, other.labels) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let mut ids = self.ids;
        ids.extend(other.ids);
        Ok(Self {
            items,
            ids,
            labels,
            description,
        })
    }
}

/// Labels of `n` items whose class names are `item_names` (in the data set's label order)
/// mapped to the model's `names`; `None` (with a warning) when some class is not the model's.
fn map_labels(
    what: &str,
    labels: &[u32],
    item_names: &[String],
    names: &[String],
) -> Option<Vec<usize>> {
    if labels.is_empty() {
        return None;
    }
    if item_names.is_empty() {
        let max = labels.iter().copied().max().unwrap_or(0) as usize;
        if max < names.len() {
            return Some(labels.iter().map(|&l| l as usize).collect());
        }
        tracing::warn!(
            "{what}: labels up to {max} but the model has {} classes: no evaluation",
            names.len()
        );
        return None;
    }
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let map: Vec<Option<usize>> = item_names
        .iter()
        .map(|n| index.get(n.as_str()).copied())
        .collect();
    if let Some(missing) = item_names.iter().zip(&map).find(|(_, m)| m.is_none()) {
        tracing::warn!(
            "{what}: class {:?} is not one of the model's classes: no evaluation",
            missing.0
        );
        return None;
    }
    labels
        .iter()
        .map(|&l| map.get(l as usize).copied().flatten())
        .collect()
}

fn open_one(s: &str, pkg: &dyn Predictor, text_column: Option<&str>) -> Result<Inputs> {
    let names = pkg.class_names();
    let p = Path::new(s);
    if p.is_dir() {
        let files = images_under(p)?;
        if files.is_empty() {
            return Err(TrainError::BadData(format!(
                "{}: no image files (.png, .jpg, .jpeg, .bmp, .webp) under it",
                p.display()
            )));
        }
        // Labels when every image sits directly in a sub-folder named after a class.
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let labels: Option<Vec<usize>> = files
            .iter()
            .map(|f| {
                let rel = f.strip_prefix(p).ok()?;
                let mut comps = rel.components();
                let class = comps.next()?.as_os_str().to_str()?;
                (comps.count() == 1)
                    .then(|| index.get(class).copied())
                    .flatten()
            })
            .collect();
        let n = files.len();
        return Ok(Inputs {
            ids: files.iter().map(|f| f.display().to_string()).collect(),
            items: Items::Images(files),
            description: format!(
                "{} ({n} images{})",
                p.display(),
                if labels.is_some() {
                    ", labelled by sub-folder"
                } else {
                    ""
                }
            ),
            labels,
        });
    }
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if p.is_file() && matches!(ext.as_str(), "txt" | "lst") {
        let text = std::fs::read_to_string(p).map_err(|e| TrainError::file(p, e))?;
        let base = p.parent().unwrap_or(Path::new("."));
        let files: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| base.join(l))
            .collect();
        let n = files.len();
        return Ok(Inputs {
            ids: files.iter().map(|f| f.display().to_string()).collect(),
            items: Items::Images(files),
            labels: None,
            description: format!("{} ({n} listed files)", p.display()),
        });
    }
    let is_table =
        matches!(ext.as_str(), "csv" | "tsv") || s.ends_with(".csv.gz") || s.ends_with(".tsv.gz");
    if p.is_file() && is_table && matches!(pkg.input(), InputSpec::Text { .. }) {
        return open_text_table(p, names, text_column);
    }
    let spec = if p.is_file() && is_table {
        format!("csv:{s}")
    } else {
        s.to_string()
    };
    let data = xfer_data::load_data(&spec, 0).map_err(|e| match e {
        xfer_data::DataError::InvalidArgument { .. } if !s.contains(':') && !p.exists() => {
            TrainError::BadData(format!(
                "{s}: no such file or folder, and not a data spec (see docs/data.md)"
            ))
        }
        e => e.into(),
    })?;
    Ok(match data {
        Data::Tensors(ds) => {
            let labels = map_labels(s, ds.labels(), ds.class_names(), names);
            Inputs {
                ids: (1..=ds.len()).map(|i| i.to_string()).collect(),
                description: format!("{s} ({} rows)", ds.len()),
                labels,
                items: Items::Rows(ds.features().to_vec(), ds.sample_shape().to_vec()),
            }
        }
        Data::Images(f) => {
            let files: Vec<PathBuf> = (0..f.len())
                .filter_map(|i| f.path(i).map(Path::to_path_buf))
                .collect();
            let labels = map_labels(s, f.labels(), f.class_names(), names);
            Inputs {
                ids: files.iter().map(|f| f.display().to_string()).collect(),
                description: format!("{s} ({} images)", files.len()),
                items: Items::Images(files),
                labels,
            }
        }
        Data::Unlabeled(u) => {
            let n = u.len();
            Inputs {
                ids: (1..=n).map(|i| i.to_string()).collect(),
                description: format!("{s} ({n} unlabelled rows)"),
                labels: None,
                items: Items::Rows(u.features().to_vec(), u.sample_shape().to_vec()),
            }
        }
        Data::Text(t) => {
            let labels = map_labels(s, t.labels(), t.class_names(), names);
            Inputs {
                ids: (1..=t.len()).map(|i| i.to_string()).collect(),
                description: format!("{s} ({} texts)", t.len()),
                items: Items::Texts(t.texts().to_vec()),
                labels,
            }
        }
    })
}

/// A text table: the text column (`text_column`, else `text`, else the first), labels from a
/// `label` column; a header is read when the first row names the text or label column.
fn open_text_table(p: &Path, names: &[String], text_column: Option<&str>) -> Result<Inputs> {
    let bytes = xfer_data::formats::read_maybe_gzip(p)?;
    let tsv = p.to_string_lossy().contains(".tsv");
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(if tsv { b'\t' } else { b',' })
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(bytes.as_slice());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| TrainError::file(p, format!("record {}: {e}", i + 1)))?;
        if r.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push(r.iter().map(str::to_string).collect());
    }
    let Some(first) = rows.first().cloned() else {
        return Err(TrainError::BadData(format!("{}: no rows", p.display())));
    };
    let lower: Vec<String> = first
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    let want = text_column.unwrap_or("text").to_ascii_lowercase();
    let header = lower.iter().any(|f| *f == want || f == "label");
    let text_col = match (header, text_column) {
        (true, _) => lower.iter().position(|f| *f == want),
        (false, Some(c)) => c.parse::<usize>().ok(),
        (false, None) => Some(0),
    }
    .or_else(|| text_column.and_then(|c| c.parse::<usize>().ok()))
    .or((text_column.is_none()).then_some(0))
    .ok_or_else(|| {
        TrainError::BadData(format!(
            "{}: no column {:?} (columns: {})",
            p.display(),
            text_column.unwrap_or("text"),
            first.join(", ")
        ))
    })?;
    let label_col = header
        .then(|| lower.iter().position(|f| f == "label"))
        .flatten();
    let data = if header { &rows[1..] } else { &rows[..] };
    let mut texts = Vec::with_capacity(data.len());
    let mut raw_labels = Vec::new();
    for (i, r) in data.iter().enumerate() {
        let t = r.get(text_col).ok_or_else(|| {
            TrainError::BadData(format!(
                "{}: row {} has no column {text_col}",
                p.display(),
                i + 1
            ))
        })?;
        texts.push(t.clone());
        if let Some(c) = label_col {
            raw_labels.push(r.get(c).cloned().unwrap_or_default());
        }
    }
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let labels: Option<Vec<usize>> = label_col.and_then(|_| {
        raw_labels
            .iter()
            .map(|l| {
                let l = l.trim();
                index
                    .get(l)
                    .copied()
                    .or_else(|| l.parse::<usize>().ok().filter(|&i| i < names.len()))
            })
            .collect()
    });
    if label_col.is_some() && labels.is_none() {
        tracing::warn!(
            "{}: a label is not one of the model's classes: no evaluation",
            p.display()
        );
    }
    Ok(Inputs {
        ids: (1..=texts.len()).map(|i| i.to_string()).collect(),
        description: format!("{} ({} texts)", p.display(), texts.len()),
        items: Items::Texts(texts),
        labels,
    })
}

/// How image files become network input for this package.
enum ImagePrep {
    /// The eval transform, channels, output side.
    Transform(std::sync::Arc<dyn Transform>, usize, usize),
    Resize {
        channels: usize,
        h: usize,
        w: usize,
        scale: f32,
    },
}

fn image_prep(pkg: &dyn Predictor) -> Result<ImagePrep> {
    match pkg.input() {
        InputSpec::Image {
            channels,
            size,
            resize,
            mean,
            std,
        } => {
            let preset = Preprocess::new(*size, *resize, mean.clone(), std.clone())?;
            Ok(ImagePrep::Transform(
                preset.eval_transform()?,
                *channels,
                *size,
            ))
        }
        InputSpec::Tensor { scale } => match *pkg.input_shape() {
            [c, h, w] if c == 1 || c == 3 => Ok(ImagePrep::Resize {
                channels: c,
                h,
                w,
                scale: *scale,
            }),
            [h, w] => Ok(ImagePrep::Resize {
                channels: 1,
                h,
                w,
                scale: *scale,
            }),
            ref other => Err(TrainError::Incompatible(format!(
                "{}: the model reads inputs of shape {other:?}, not images",
                pkg.location().display()
            ))),
        },
        InputSpec::Text { .. } => Err(TrainError::Incompatible(format!(
            "{}: the model reads text, not images",
            pkg.location().display()
        ))),
    }
}

/// One image file as network input.
fn load_image(path: &Path, prep: &ImagePrep) -> Result<Vec<f32>> {
    match prep {
        ImagePrep::Transform(t, c, _) => {
            let (x, shape) = read_image(path, *c)?;
            Ok(t.apply(&x, &shape, &mut SeededRng::new(0))?)
        }
        ImagePrep::Resize {
            channels,
            h,
            w,
            scale,
        } => {
            let (x, shape) = read_image(path, *channels)?;
            let x = if (shape[1], shape[2]) == (*h, *w) {
                x
            } else {
                resize_bilinear(&x, (shape[0], shape[1], shape[2]), *h, *w)?
            };
            Ok(x.into_iter().map(|v| v * scale).collect())
        }
    }
}

/// Runs the package's network on every input, `opts.batch_size` at a time, calling `sink`
/// with each prediction in input order; returns the counts and, for labelled inputs, the
/// confusion matrix. The top class is the arg-max of the logits (ties: the lower class id),
/// as in the training reports.
pub fn predict(
    pkg: &dyn Predictor,
    inputs: &Inputs,
    opts: &PredictOptions,
    mut sink: impl FnMut(&Prediction) -> Result<()>,
) -> Result<PredictSummary> {
    if opts.batch_size == 0 {
        return Err(TrainError::invalid("batch_size", "0", "at least 1"));
    }
    let n_classes = pkg.class_names().len();
    let topk = opts.topk.clamp(1, n_classes);
    let device = pkg.device().clone();
    let mut summary = PredictSummary {
        confusion: inputs
            .labels
            .as_ref()
            .map(|_| ConfusionMatrix::new(n_classes)),
        ..Default::default()
    };
    let pb = if opts.progress && std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(inputs.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "predict {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
        ) {
            pb.set_style(style);
        }
        pb
    } else {
        ProgressBar::hidden()
    };
    let tokenizer = match (&inputs.items, pkg.input()) {
        (Items::Texts(_), InputSpec::Text { .. }) => Some(pkg.tokenizer()?.ok_or_else(|| {
            TrainError::Incompatible(format!(
                "{}: the model has no tokenizer",
                pkg.location().display()
            ))
        })?),
        (Items::Texts(_), _) => {
            return Err(TrainError::Incompatible(format!(
                "{}: the model does not read text ({})",
                pkg.location().display(),
                inputs.description
            )));
        }
        _ => None,
    };
    let prep = match &inputs.items {
        Items::Images(_) => Some(image_prep(pkg)?),
        _ => None,
    };
    let scale = match *pkg.input() {
        InputSpec::Tensor { scale } => scale,
        _ => 1.0,
    };
    let mut start = 0;
    while start < inputs.len() {
        let end = (start + opts.batch_size).min(inputs.len());
        // (position in the inputs, network input) for this batch.
        let (kept, x): (Vec<usize>, Option<Tensor>) = match &inputs.items {
            Items::Images(files) => {
                let Some(prep) = prep.as_ref() else {
                    return Err(TrainError::Config("image preprocessing missing".into()));
                };
                let decoded: Vec<(usize, Result<Vec<f32>>)> = (start..end)
                    .into_par_iter()
                    .map(|i| (i, load_image(&files[i], prep)))
                    .collect();
                let mut kept = Vec::new();
                let mut values = Vec::new();
                for (i, r) in decoded {
                    match r {
                        Ok(v) => {
                            kept.push(i);
                            values.extend(v);
                        }
                        Err(e) if opts.skip_bad => {
                            tracing::warn!("skipping {}: {e}", files[i].display());
                            summary
                                .skipped
                                .push((files[i].display().to_string(), e.to_string()));
                        }
                        Err(e) => return Err(e),
                    }
                }
                let x = if kept.is_empty() {
                    None
                } else {
                    let shape: Vec<usize> = match (&prep, pkg.input_shape()) {
                        (ImagePrep::Transform(_, c, side), _) => vec![kept.len(), *c, *side, *side],
                        (ImagePrep::Resize { .. }, s) => std::iter::once(kept.len())
                            .chain(s.iter().copied())
                            .collect(),
                    };
                    Some(Tensor::from_vec(values, shape, &device)?)
                };
                (kept, x)
            }
            Items::Texts(texts) => {
                let Some(tok) = tokenizer.as_ref() else {
                    return Err(TrainError::Config("tokenizer missing".into()));
                };
                let batch: Vec<&str> = texts[start..end].iter().map(String::as_str).collect();
                let tb = tok.encode_batch(&batch, &Device::Cpu)?;
                ((start..end).collect(), Some(encode_tokens(&tb, &device)?))
            }
            Items::Rows(features, row_shape) => {
                let d: usize = row_shape.iter().product();
                let values: Vec<f32> = features
                    .get(start * d..end * d)
                    .ok_or_else(|| {
                        TrainError::BadData(format!("{}: rows missing", inputs.description))
                    })?
                    .iter()
                    .map(|v| v * scale)
                    .collect();
                let shape: Vec<usize> = std::iter::once(end - start)
                    .chain(row_shape.iter().copied())
                    .collect();
                (
                    (start..end).collect(),
                    Some(Tensor::from_vec(values, shape, &device)?),
                )
            }
        };
        if let Some(x) = x {
            let logits = pkg.scores(&x)?.to_device(&Device::Cpu)?;
            let rows = logits.to_vec2::<f32>()?;
            let mut preds = Vec::with_capacity(rows.len());
            let mut trues = Vec::with_capacity(rows.len());
            for (&i, row) in kept.iter().zip(&rows) {
                let top = top_k(row, topk);
                let label = inputs.labels.as_ref().and_then(|l| l.get(i).copied());
                if let Some(t) = label {
                    preds.push(top[0].0);
                    trues.push(t);
                }
                sink(&Prediction {
                    id: inputs.ids[i].clone(),
                    top,
                    label,
                })?;
                summary.predicted += 1;
            }
            if let Some(cm) = summary.confusion.as_mut() {
                cm.add(&preds, &trues)?;
            }
        }
        pb.inc((end - start) as u64);
        start = end;
    }
    pb.finish_and_clear();
    if !summary.skipped.is_empty() {
        tracing::warn!("skipped {} unreadable file(s)", summary.skipped.len());
    }
    Ok(summary)
}

/// The `k` largest entries of the softmax of `logits` as `(class, probability)`, ordered by
/// logit (ties: the lower class id first).
fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|c| (c, (exps[c] / sum) as f32))
        .collect()
}
