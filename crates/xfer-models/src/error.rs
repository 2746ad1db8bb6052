//! Errors of xfer-models.

use std::path::PathBuf;

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

/// Everything loading, building or running a model can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A parameter name was registered twice.
    #[error("parameter {0:?} is already registered")]
    Duplicate(String),
    /// A parameter was asked for that does not exist.
    #[error("no parameter named {0:?}")]
    Missing(String),
    /// A tensor had the wrong shape.
    #[error("tensor {name:?}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// A selection pattern could not be parsed.
    #[error("bad selection pattern {0:?}")]
    BadPattern(String),
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A configuration value is unknown or out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// An op error.
    #[error(transparent)]
    Ops(#[from] xfer_ops::OpsError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
