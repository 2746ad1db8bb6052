//! Opening what a user gives to [`super::predict`]: folders, files, lists, text tables, data
//! specs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use xfer_data::formats::folder::{images_under, is_image_file};
use xfer_data::{Data, Dataset};
use xfer_models::package::InputSpec;

use super::Predictor;
use crate::{Result, TrainError};

/// The items of a prediction run.
#[derive(Debug, Clone)]
pub(super) enum Items {
    Images(Vec<PathBuf>),
    Texts(Vec<String>),
    /// Row-major features and the shape of one row.
    Rows(Vec<f32>, Vec<usize>),
}

/// Inputs for [`super::predict`], opened from the strings a user gives (see the module
/// documentation); nothing is decoded until [`super::predict`] reaches it.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub(super) items: Items,
    pub(super) ids: Vec<String>,
    /// True classes in the model's label order, when every input has one.
    pub(super) labels: Option<Vec<usize>>,
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
    // A path-like input that does not exist is a missing file, not a malformed data spec.
    if !s.contains(':') && !p.exists() && s.contains(['/', '\\', '.']) {
        return Err(TrainError::BadData(format!(
            "{s}: no such file or folder (and not a data spec, see docs/data.md)"
        )));
    }
    let data = xfer_data::load_data(&spec, 0)?;
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
