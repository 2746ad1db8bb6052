//! Errors of xfer-ops.

/// Result with [`OpsError`].
pub type Result<T> = std::result::Result<T, OpsError>;

/// Everything an op can refuse.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// An input had a shape the op cannot take; the message names the op and the shapes.
    #[error("{op}: {msg}")]
    Shape {
        /// The op that refused its input.
        op: &'static str,
        /// What was wrong, with the shapes involved.
        msg: String,
    },
    /// An input had a dtype the op cannot take.
    #[error("{op}: unsupported dtype {dtype:?}")]
    DType {
        /// The op that refused its input.
        op: &'static str,
        /// The dtype it got.
        dtype: candle_core::DType,
    },
    /// Inputs that must share a dtype do not; the message names the tensors.
    #[error("{op}: dtype mismatch: {msg}")]
    DTypeMismatch {
        /// The op that refused its inputs.
        op: &'static str,
        /// Which tensors have which dtypes.
        msg: String,
    },
    /// A requested device is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl OpsError {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        OpsError::Shape {
            op,
            msg: msg.into(),
        }
    }
}
