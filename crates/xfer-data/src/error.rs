//! Errors of xfer-data: every refusal names the file (or data set) and the position.

use std::path::PathBuf;

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Everything reading, generating, splitting or batching data can refuse.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the magic bytes of its format.
    #[error("{}: not a {format} file: bad magic {found} at byte 0", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The format that was expected (`IDX`, `gzip`, ...).
        format: &'static str,
        /// The bytes found, in hex.
        found: String,
    },
    /// The header claims a size that the file does not hold (checked before allocating).
    #[error("{}: {what}: header claims {expected} bytes, the file holds {actual}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Which part of the file.
        what: String,
        /// The size the header claims.
        expected: u64,
        /// The size present.
        actual: u64,
    },
    /// A syntax or content error at a position in a file (line, byte offset, array name).
    #[error("{}: {position}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where: `line 12`, `byte 16`, `array trainval_loc`, ...
        position: String,
        /// What is wrong.
        msg: String,
    },
    /// A CSV row with a different number of fields than the first data row.
    #[error("{}: line {line}: {got} fields, expected {expected} (as on line {first_line})", path.display())]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the offending row.
        line: usize,
        /// Number of fields on that row.
        got: usize,
        /// Number of fields on the first data row.
        expected: usize,
        /// 1-based line of the first data row.
        first_line: usize,
    },
    /// A label outside `0..num_classes`.
    #[error("{source_name}: sample {index}: label {label} out of range 0..{num_classes}")]
    LabelOutOfRange {
        /// The file or data set.
        source_name: String,
        /// Index of the sample.
        index: usize,
        /// The label found.
        label: i64,
        /// The number of classes.
        num_classes: usize,
    },
    /// A data set (or file) with no samples where samples are needed.
    #[error("{0}: empty data set")]
    Empty(String),
    /// An image folder holds images of different sizes and no `size=HxW` was given.
    #[error(
        "{}: image is {}x{} (HxW) but {} is {}x{}; give a size (folder:DIR:size=HxW) to resize",
        path.display(), size.0, size.1, first_path.display(), first_size.0, first_size.1
    )]
    MixedImageSizes {
        /// The image that differs.
        path: PathBuf,
        /// Its (height, width).
        size: (usize, usize),
        /// The first image read.
        first_path: PathBuf,
        /// Its (height, width).
        first_size: (usize, usize),
    },
    /// A data specification string that cannot be parsed or loaded.
    #[error("data spec `{spec}`: {msg}")]
    Spec {
        /// The specification as given.
        spec: String,
        /// What is wrong, with the accepted forms.
        msg: String,
    },
    /// Shapes or lengths that do not agree (features vs labels, sample shape vs transform).
    #[error("{what}: {msg}")]
    Shape {
        /// The data set, file or operation.
        what: String,
        /// The shapes or lengths involved.
        msg: String,
    },
    /// An argument outside its valid range (batch size 0, fraction outside (0, 1), ...).
    #[error("{what}: {msg}")]
    InvalidArgument {
        /// The function or option.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A class has fewer examples than a sampler needs.
    #[error("{what}: class {class} has {have} examples, fewer than the {need} required")]
    NotEnoughExamples {
        /// The sampler (`few_shot`, `stratified_split`).
        what: &'static str,
        /// The class id.
        class: u32,
        /// Examples available.
        have: usize,
        /// Examples required.
        need: usize,
    },
    /// A labelled-only operation (a few-shot draw, a stratified split, accuracy) asked of a
    /// data set without labels (`images:DIR`, `csv:PATH:label=none`).
    #[error(
        "`{name}` has no labels: {what} needs labelled data (give a labelled spec: folder:DIR \
         instead of images:DIR, a label column instead of label=none)"
    )]
    Unlabeled {
        /// The data set.
        name: String,
        /// The operation.
        what: &'static str,
    },
    /// A sample index outside the data set.
    #[error("{what}: index {index} out of range 0..{len}")]
    IndexOutOfRange {
        /// The data set.
        what: String,
        /// The index asked for.
        index: usize,
        /// The data set's length.
        len: usize,
    },
    /// The background prefetch thread stopped unexpectedly.
    #[error("data loader: prefetch thread stopped: {0}")]
    Prefetch(String),
    /// An error from candle while building tensors.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        position: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        DataError::Parse {
            path: path.into(),
            position: position.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn shape(what: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError::Shape {
            what: what.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, msg: impl Into<String>) -> Self {
        DataError::InvalidArgument {
            what,
            msg: msg.into(),
        }
    }
}
