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

use std::io::IsTerminal;
use std::path::Path;

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use xfer_data::formats::folder::read_image;
use xfer_data::image_ops::resize_bilinear;
use xfer_data::{Preprocess, Transform};
use xfer_models::Tokenizer;
use xfer_models::encode_tokens;
use xfer_models::package::{InputSpec, Package};
use xfer_ops::SeededRng;

use crate::metrics::{ClassificationReport, ConfusionMatrix};

mod inputs;
use crate::{Result, TrainError};
pub use inputs::Inputs;
use inputs::Items;

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
            // Inference: no autograd graph, so each layer's output is freed once read.
            let logits = xfer_models::no_grad(|| pkg.scores(&x))?.to_device(&Device::Cpu)?;
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
