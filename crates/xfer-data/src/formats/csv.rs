//! CSV and TSV files, read with the `csv` crate (RFC 4180: a quoted field may hold the
//! delimiter, doubled quotes and newlines). Plain or gzip (detected by its magic bytes); blank
//! lines and lines starting with `#` are skipped; fields are trimmed.
//!
//! - Feature files ([`read_csv`]): one sample per record, numeric features and one label
//!   column (the last by default); a header row is detected (a non-numeric field in a
//!   feature column) or declared.
//! - Text files ([`read_text_csv`]): a text column and a label column, giving a
//!   [`TextDataset`].
//!
//! Labels are non-negative integers, or class names (then the classes are the sorted
//! distinct names).

use crate::dataset::{TensorDataset, UnlabeledDataset};
use crate::error::{DataError, Result};
use crate::formats::read_maybe_gzip;
use crate::text::TextDataset;
use std::collections::BTreeMap;
use std::path::Path;

/// One record: the 1-based line it starts on and its fields.
type Record = (usize, Vec<String>);

/// Every non-blank record of CSV text (the `csv` crate: RFC 4180 quoting, `#` comment
/// lines), each with the line it starts on; an error names the file and the line.
fn records(path: &Path, bytes: &[u8], delimiter: char) -> Result<Vec<Record>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DataError::parse(
            path,
            format!("byte {}", e.valid_up_to()),
            "not valid UTF-8 text",
        )
    })?;
    let d = u8::try_from(delimiter)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| {
            DataError::invalid(
                "csv",
                format!("delimiter {delimiter:?} must be one ASCII character"),
            )
        })?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(d)
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // Line numbers from byte offsets (the csv crate's own line count skips blank lines).
    let mut seen = (0usize, 1usize);
    let bytes = text.as_bytes();
    let mut line_at = |byte: u64| -> usize {
        // A record's position is where the reader started looking: skip the blank and
        // comment lines it passed over.
        let mut b = (byte as usize).min(text.len());
        loop {
            match bytes.get(b) {
                Some(b'\n' | b'\r') => b += 1,
                Some(b'#') => {
                    b = bytes
                        .get(b..)
                        .and_then(|r| r.iter().position(|&c| c == b'\n'))
                        .map_or(text.len(), |k| b + k + 1)
                }
                _ => break,
            }
        }
        if b >= seen.0 {
            let extra = bytes
                .get(seen.0..b)
                .map_or(0, |s| s.iter().filter(|&&c| c == b'\n').count());
            seen = (b, seen.1 + extra);
        }
        seen.1
    };
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(p.byte()));
                return Err(DataError::parse(
                    path,
                    format!("line {line}"),
                    e.to_string(),
                ));
            }
        };
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let line = rec.position().map_or(0, |p| line_at(p.byte()));
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(out)
}

/// Whether `path` names a TSV file (`.tsv` or `.tsv.gz`), read with tabs by default.
pub fn is_tsv(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".tsv") || name.ends_with(".tsv.gz")
}

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
    /// No label column (`label=none`): unlabelled data.
    None,
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

/// Reads a CSV file (plain or gzip) of feature vectors without labels: every column is a
/// feature with `label: LabelColumn::None`, else the label column is dropped.
pub fn read_csv_unlabeled(path: &Path, opts: &CsvOptions) -> Result<UnlabeledDataset> {
    let bytes = read_maybe_gzip(path)?;
    parse_csv_unlabeled(path, &bytes, opts)
}

/// Parses CSV bytes into unlabelled feature vectors (see [`read_csv_unlabeled`]).
pub fn parse_csv_unlabeled(
    path: &Path,
    bytes: &[u8],
    opts: &CsvOptions,
) -> Result<UnlabeledDataset> {
    let p = parse_csv_parts(path, bytes, opts)?;
    UnlabeledDataset::new(path.display().to_string(), p.features, vec![p.dim])
}

/// What [`parse_csv_parts`] reads: features, their number per row, the labels when there is
/// a label column.
struct CsvParts {
    features: Vec<f32>,
    dim: usize,
    labels: Option<(usize, Vec<(usize, Label)>)>,
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

/// The 0-based index of `col` (`what`: "label", "text") in rows of `ncols` fields.
fn column_index(
    path: &Path,
    col: &LabelColumn,
    what: &str,
    header: Option<&[String]>,
    ncols: usize,
    first_line: usize,
    data_line: usize,
) -> Result<usize> {
    match col {
        LabelColumn::Last => Ok(ncols - 1),
        LabelColumn::Index(i) if *i < ncols => Ok(*i),
        LabelColumn::Index(i) => Err(DataError::parse(
            path,
            format!("line {data_line}"),
            format!("{what} column {i} out of range: rows have {ncols} columns (0..{ncols})"),
        )),
        LabelColumn::None => Err(DataError::parse(
            path,
            format!("line {data_line}"),
            format!("the {what} column cannot be `none` here"),
        )),
        LabelColumn::Name(n) => header
            .and_then(|h| h.iter().position(|c| c == n))
            .ok_or_else(|| {
                DataError::parse(
                    path,
                    format!("line {first_line}"),
                    match header {
                        Some(h) => format!(
                            "no column `{n}` in the header ({}) for the {what}",
                            h.join(", ")
                        ),
                        None => format!("{what} column `{n}` named but the file has no header"),
                    },
                )
            }),
    }
}

/// Class ids of the labels: the integers themselves when every label is one (below
/// `num_classes` when declared), else ids into the sorted distinct names (returned too).
fn class_ids(
    path: &Path,
    labels: &[(usize, Label)],
    label_col: usize,
    num_classes: Option<usize>,
) -> Result<(Vec<u32>, Option<Vec<String>>)> {
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
        if let Some(k) = num_classes
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
        for (_, l) in labels {
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
    Ok((ids, names))
}

/// Parses CSV bytes; `path` names the source in errors. An error for `label=none`
/// ([`parse_csv_unlabeled`] reads it).
pub fn parse_csv(path: &Path, bytes: &[u8], opts: &CsvOptions) -> Result<TensorDataset> {
    let parts = parse_csv_parts(path, bytes, opts)?;
    let Some((label_col, labels)) = parts.labels else {
        return Err(DataError::Unlabeled {
            name: path.display().to_string(),
            what: "a labelled data set",
        });
    };
    let (ids, names) = class_ids(path, &labels, label_col, opts.num_classes)?;
    let name = path.display().to_string();
    let ds = TensorDataset::new(name, parts.features, vec![parts.dim], ids)?;
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

fn parse_csv_parts(path: &Path, bytes: &[u8], opts: &CsvOptions) -> Result<CsvParts> {
    if !(opts.scale.is_finite()) {
        return Err(DataError::invalid(
            "csv",
            format!("scale {} must be finite", opts.scale),
        ));
    }
    let mut lines = records(path, bytes, opts.delimiter)?.into_iter().peekable();
    let Some((first_line, first_fields)) = lines.peek().cloned() else {
        return Err(DataError::Empty(path.display().to_string()));
    };
    // Detection looks at the feature columns only: text labels are not a header.
    let n_first = first_fields.len();
    let label_guess = match &opts.label {
        LabelColumn::Last => n_first.checked_sub(1),
        LabelColumn::Index(i) => Some(*i),
        LabelColumn::Name(_) | LabelColumn::None => None,
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
    let Some((data_line, ncols)) = lines.peek().map(|(l, f)| (*l, f.len())) else {
        return Err(DataError::Empty(path.display().to_string()));
    };
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
    let unlabeled = matches!(opts.label, LabelColumn::None);
    if ncols < 2 && !unlabeled {
        return Err(DataError::parse(
            path,
            format!("line {data_line}"),
            format!("{ncols} column: need at least one feature and a label"),
        ));
    }
    let label_col = if unlabeled {
        None
    } else {
        Some(column_index(
            path,
            &opts.label,
            "label",
            header.as_deref(),
            ncols,
            first_line,
            data_line,
        )?)
    };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (line, fields) in lines {
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
            if Some(c) == label_col {
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
    Ok(CsvParts {
        features,
        dim: if unlabeled { ncols } else { ncols - 1 },
        labels: label_col.map(|c| (c, labels)),
    })
}

/// How to read a text CSV/TSV file: which columns hold the text and the label.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCsvOptions {
    /// The text column (0-based index or header name).
    pub text: LabelColumn,
    /// The label column (0-based index or header name).
    pub label: LabelColumn,
    /// Header row handling; [`Header::Detect`]: a header when a column is given by name, or
    /// when the first row's label is the odd one out (not an integer where all others are,
    /// or a value seen once where every other is seen more often).
    pub header: Header,
    /// Field separator (a tab for `.tsv` files by default in the data spec).
    pub delimiter: char,
    /// Declared number of classes for integer labels.
    pub num_classes: Option<usize>,
}

impl Default for TextCsvOptions {
    fn default() -> Self {
        Self {
            text: LabelColumn::Index(0),
            label: LabelColumn::Last,
            header: Header::Detect,
            delimiter: ',',
            num_classes: None,
        }
    }
}

/// Reads a text CSV/TSV file (plain or gzip) into a [`TextDataset`].
pub fn read_text_csv(path: &Path, opts: &TextCsvOptions) -> Result<TextDataset> {
    let bytes = read_maybe_gzip(path)?;
    parse_text_csv(path, &bytes, opts)
}

/// Whether the first record of a text file looks like a header (see [`TextCsvOptions`]).
fn detect_text_header(recs: &[Record], label_col: Option<usize>) -> bool {
    let Some(col) = label_col else {
        return false;
    };
    let label = |r: &Record| r.1.get(col).cloned().unwrap_or_default();
    let Some((first, rest)) = recs.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let is_int = |s: &str| matches!(parse_label(s), Label::Int(_));
    let l0 = label(first);
    if !is_int(&l0) && rest.iter().all(|r| is_int(&label(r))) {
        return true;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in rest {
        *counts.entry(label(r)).or_default() += 1;
    }
    rest.len() >= 2 && !counts.contains_key(&l0) && counts.values().all(|&c| c >= 2)
}

/// Parses text CSV bytes; `path` names the source in errors.
pub fn parse_text_csv(path: &Path, bytes: &[u8], opts: &TextCsvOptions) -> Result<TextDataset> {
    let recs = records(path, bytes, opts.delimiter)?;
    let Some((first_line, first_fields)) = recs.first().cloned() else {
        return Err(DataError::Empty(path.display().to_string()));
    };
    let named =
        matches!(opts.label, LabelColumn::Name(_)) || matches!(opts.text, LabelColumn::Name(_));
    let is_header = match opts.header {
        Header::Yes => true,
        Header::No => false,
        Header::Detect => {
            let label_col = match &opts.label {
                LabelColumn::Last => first_fields.len().checked_sub(1),
                LabelColumn::Index(i) => Some(*i),
                LabelColumn::Name(_) | LabelColumn::None => None,
            };
            let h = named || detect_text_header(&recs, label_col);
            if h && !named {
                tracing::info!(
                    "{}: line {first_line} read as a header (give header=yes|no to decide)",
                    path.display()
                );
            }
            h
        }
    };
    let (header, data) = if is_header {
        (Some(first_fields), recs.get(1..).unwrap_or(&[]))
    } else {
        (None, recs.as_slice())
    };
    let Some((data_line, ncols)) = data.first().map(|(l, f)| (*l, f.len())) else {
        return Err(DataError::Empty(path.display().to_string()));
    };
    let text_col = column_index(
        path,
        &opts.text,
        "text",
        header.as_deref(),
        ncols,
        first_line,
        data_line,
    )?;
    if matches!(opts.label, LabelColumn::None) {
        let mut texts = Vec::with_capacity(data.len());
        for (line, fields) in data {
            let Some(t) = fields.get(text_col) else {
                return Err(DataError::RaggedRow {
                    path: path.to_path_buf(),
                    line: *line,
                    got: fields.len(),
                    expected: ncols,
                    first_line: data_line,
                });
            };
            texts.push(t.clone());
        }
        return Ok(TextDataset::unlabeled(path.display().to_string(), texts));
    }
    let label_col = column_index(
        path,
        &opts.label,
        "label",
        header.as_deref(),
        ncols,
        first_line,
        data_line,
    )?;
    if text_col == label_col {
        return Err(DataError::invalid(
            "csv",
            format!("text and label are the same column ({text_col})"),
        ));
    }
    let mut texts = Vec::with_capacity(data.len());
    let mut labels = Vec::with_capacity(data.len());
    for (line, fields) in data {
        let (Some(t), Some(l)) = (fields.get(text_col), fields.get(label_col)) else {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                line: *line,
                got: fields.len(),
                expected: ncols,
                first_line: data_line,
            });
        };
        if l.is_empty() {
            return Err(DataError::parse(
                path,
                format!("line {line}, column {}", label_col + 1),
                "missing label (empty field)",
            ));
        }
        texts.push(t.clone());
        labels.push((*line, parse_label(l)));
    }
    let (ids, names) = class_ids(path, &labels, label_col, opts.num_classes)?;
    let ds = TextDataset::new(path.display().to_string(), texts, ids)?;
    match (names, opts.num_classes) {
        (Some(n), Some(k)) if n.len() != k => Err(DataError::parse(
            path,
            "label column",
            format!("{} distinct class names but classes={k} declared", n.len()),
        )),
        (Some(n), _) => ds.with_class_names(n),
        (None, Some(k)) => ds.with_num_classes(k),
        (None, None) => Ok(ds),
    }
}
