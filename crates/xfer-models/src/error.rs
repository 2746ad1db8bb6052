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
    /// A named setting has a value it cannot take.
    #[error("{name} = {value:?}: expected {expected}")]
    InvalidValue {
        /// The setting (a flag or field name).
        name: String,
        /// The value given.
        value: String,
        /// What it accepts.
        expected: String,
    },
    /// Input data of a shape the network cannot read.
    #[error("{0}")]
    Shape(String),
    /// The network cannot do what was asked of it (e.g. AdaBN without a batch norm).
    #[error("{0}")]
    Incompatible(String),
    /// The file is not a safetensors file (a PyTorch pickle or zip checkpoint, or something
    /// else entirely). Pickles are never loaded: unpickling can run arbitrary code.
    #[error("{path}: not a safetensors file: {reason}")]
    NotSafetensors {
        /// The file at fault.
        path: PathBuf,
        /// What it looks like instead.
        reason: String,
    },
    /// The file ends before the data its header promises.
    #[error(
        "{path}: truncated safetensors file: {actual} bytes on disk, the header promises {expected}"
    )]
    Truncated {
        /// The file at fault.
        path: PathBuf,
        /// The size the header describes.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// The safetensors header or layout is invalid.
    #[error("{path}: invalid safetensors file: {msg}")]
    CorruptFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The model has a tensor that the file lacks.
    #[error("{path}: tensor {name:?} is missing from the file")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor the model needs.
        name: String,
    },
    /// The file has a tensor that the model lacks.
    #[error("{path}: tensor {name:?} is in the file but not in the model")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor the model does not have.
        name: String,
    },
    /// A tensor in a file has another shape than the model's.
    #[error("{path}: tensor {name:?} has shape {got:?} in the file, the model needs {expected:?}")]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        got: Vec<usize>,
    },
    /// A tensor is stored in a dtype that cannot be converted to the model's.
    #[error("{source_name}: tensor {name:?} has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file or store the tensor comes from.
        source_name: String,
        /// The tensor.
        name: String,
        /// Its dtype as stored.
        dtype: String,
    },
    /// A strict layer transfer found missing or mismatched entries; nothing was copied.
    #[error("strict transfer refused, the target was not modified:\n{0}")]
    StrictTransfer(Box<crate::transfer::TransferReport>),
    /// A multitask model was asked for a task it does not have.
    #[error("unknown task {task:?} (tasks: {known:?})")]
    UnknownTask {
        /// The task asked for.
        task: String,
        /// The tasks the model has.
        known: Vec<String>,
    },
    /// An op error.
    #[error(transparent)]
    Ops(#[from] xfer_ops::OpsError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
