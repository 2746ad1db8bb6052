//! CSV feature files: one sample per line, numeric features and one label column (the last
//! by default). Plain or gzip (detected by its magic bytes); a header row is detected (a
//! non-numeric field in a feature column) or declared. Labels are non-negative integers, or class names (then
//! the classes are the sorted distinct names).

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use crate::formats::read_maybe_gzip;
use std::collections::BTreeMap;
use std::path::Path;

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LabelColumn {
    /// The last column.
    #[default]
    Last,
    /// A 0-based column index.
    Index(usize),
    /// A column named in the header row.
    Name(String),
}

/// Whether the first row is a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// A header if any field of the first row is not a number.
    #[default]
    Detect,
    /// The first row is a header.
    Yes,
    /// There is no header.
    No,
}

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The label column.
    pub label: LabelColumn,
    /// Header row handling.
    pub header: Header,
    /// Field separator.
    pub delimiter: char,
    /// Every feature is multiplied by this.
    pub scale: f32,
    /// Declared number of classes (labels must be below it); otherwise `max label + 1`.
    pub num_classes: Option<usize>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label: LabelColumn::Last,
            header: Header::Detect,
            delimiter: ',',
            scale: 1.0,
            num_classes: None,
        }
    }
}

/// Reads a CSV file (plain or gzip) into a labelled data set of feature vectors.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<TensorDataset> {
    let bytes = read_maybe_gzip(path)?;
    parse_csv(path, &bytes, opts)
}

enum Label {
    Int(i64),
    Name(String),
}

fn parse_label(field: &str) -> Label {
    if let Ok(v) = field.parse::<i64>() {
        return Label::Int(v);
    }
    match field.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Label::Int(v as i64),
        _ => Label::Name(field.to_string()),
    }
}

/// Parses CSV bytes; `path` names the source in errors.
pub fn parse_csv(path: &Path, bytes: &[u8], opts: &CsvOptions) -> Result<TensorDataset> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DataError::parse(
            path,
            format!("byte {}", e.valid_up_to()),
            "not valid UTF-8 text",
        )
    })?;
    if !(opts.scale.is_finite()) {
        return Err(DataError::invalid(
            "csv",
            format!("scale {} must be finite", opts.scale),
        ));
    }
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let split = |l: &str| -> Vec<String> {
        l.split(opts.delimiter)
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let Some(&(first_line, first)) = lines.peek() else {
        return Err(DataError::Empty(path.display().to_string()));
    };
    let first_fields = split(first);
    // Detection looks at the feature columns only: text labels are not a header.
    let n_first = first_fields.len();
    let label_guess = match &opts.label {
        LabelColumn::Last => n_first.checked_sub(1),
        LabelColumn::Index(i) => Some(*i),
        LabelColumn::Name(_) => None,
    };
    let is_header = match opts.header {
        Header::Yes => true,
        Header::No => false,
        Header::Detect => {
            matches!(opts.label, LabelColumn::Name(_))
                || first_fields
                    .iter()
                    .enumerate()
                    .any(|(c, f)| Some(c) != label_guess && f.parse::<f64>().is_err())
        }
    };
    let header = if is_header {
        lines.next();
        Some(first_fields)
    } else {
        None
    };
    let Some(&(data_line, data_first)) = lines.peek() else {
        return Err(DataError::Empty(path.display().to_string()));
    };
    let ncols = split(data_first).len();
    if let Some(h) = &header
        && h.len() != ncols
    {
        return Err(DataError::RaggedRow {
            path: path.to_path_buf(),
            line: data_line,
            got: ncols,
            expected: h.len(),
            first_line,
        });
    }
    if ncols < 2 {
        return Err(DataError::parse(
            path,
            format!("line {data_line}"),
            format!("{ncols} column: need at least one feature and a label"),
        ));
    }
    let label_col = match &opts.label {
        LabelColumn::Last => ncols - 1,
        LabelColumn::Index(i) if *i < ncols => *i,
        LabelColumn::Index(i) => {
            return Err(DataError::parse(
                path,
                format!("line {data_line}"),
                format!("label column {i} out of range: rows have {ncols} columns (0..{ncols})"),
            ));
        }
        LabelColumn::Name(n) => match header.as_ref().and_then(|h| h.iter().position(|c| c == n)) {
            Some(i) => i,
            None => {
                return Err(DataError::parse(
                    path,
                    format!("line {first_line}"),
                    match &header {
                        Some(h) => format!("no column `{n}` in the header ({})", h.join(", ")),
                        None => format!("label column `{n}` named but the file has no header"),
                    },
                ));
            }
        },
    };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (line, l) in lines {
        let fields = split(l);
        if fields.len() != ncols {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                line,
                got: fields.len(),
                expected: ncols,
                first_line: data_line,
            });
        }
        for (c, f) in fields.iter().enumerate() {
            if c == label_col {
                labels.push((line, parse_label(f)));
                continue;
            }
            match f.parse::<f32>() {
                Ok(v) if v.is_finite() => features.push(v * opts.scale),
                _ => {
                    return Err(DataError::parse(
                        path,
                        format!("line {line}, column {}", c + 1),
                        format!("`{f}` is not a finite number"),
                    ));
                }
            }
        }
    }
    let numeric = labels.iter().all(|(_, l)| matches!(l, Label::Int(_)));
    let (ids, names) = if numeric {
        let mut ids = Vec::with_capacity(labels.len());
        for (i, (_, l)) in labels.iter().enumerate() {
            if let Label::Int(v) = l {
                match u32::try_from(*v) {
                    Ok(u) => ids.push(u),
                    Err(_) => {
                        return Err(DataError::parse(
                            path,
                            format!("line {}, column {}", labels[i].0, label_col + 1),
                            format!("label {v} is not a class id (a non-negative integer)"),
                        ));
                    }
                }
            }
        }
        if let Some(k) = opts.num_classes
            && let Some(i) = ids.iter().position(|&u| u as usize >= k)
        {
            return Err(DataError::parse(
                path,
                format!("line {}, column {}", labels[i].0, label_col + 1),
                format!("label {} out of range 0..{k} (classes={k})", ids[i]),
            ));
        }
        (ids, None)
    } else {
        let text_of = |l: &Label| match l {
            Label::Int(v) => v.to_string(),
            Label::Name(s) => s.clone(),
        };
        let mut map: BTreeMap<String, u32> = BTreeMap::new();
        for (_, l) in &labels {
            map.insert(text_of(l), 0);
        }
        for (k, v) in map.values_mut().enumerate() {
            *v = k as u32;
        }
        let ids = labels
            .iter()
            .map(|(_, l)| map.get(&text_of(l)).copied().unwrap_or(0))
            .collect();
        (ids, Some(map.into_keys().collect::<Vec<_>>()))
    };
    let name = path.display().to_string();
    let ds = TensorDataset::new(name, features, vec![ncols - 1], ids)?;
    let ds = match (names, opts.num_classes) {
        (Some(n), Some(k)) if n.len() != k => {
            return Err(DataError::parse(
                path,
                "label column",
                format!("{} distinct class names but classes={k} declared", n.len()),
            ));
        }
        (Some(n), _) => ds.with_class_names(n)?,
        (None, Some(k)) => ds.with_num_classes(k)?,
        (None, None) => ds,
    };
    Ok(ds)
}
