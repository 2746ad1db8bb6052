//! Errors of xfer-losses: every refusal names the loss and the tensor (or parameter) at fault.

use candle_core::DType;

/// Result with [`LossError`].
pub type Result<T> = std::result::Result<T, LossError>;

/// Everything a loss can refuse.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// A tensor had the wrong shape.
    #[error("{loss}: tensor `{tensor}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The loss that refused its input.
        loss: &'static str,
        /// The argument (or parameter) name of the tensor.
        tensor: String,
        /// The shape it had.
        got: Vec<usize>,
        /// What the loss needs, in words (may refer to other tensors' shapes).
        expected: String,
    },
    /// A tensor had a dtype the loss cannot take.
    #[error("{loss}: tensor `{tensor}` has dtype {got:?}, expected {expected}")]
    DType {
        /// The loss that refused its input.
        loss: &'static str,
        /// The argument (or parameter) name of the tensor.
        tensor: String,
        /// The dtype it had.
        got: DType,
        /// What the loss needs.
        expected: String,
    },
    /// A class label lies outside `0..num_classes` (checked before any gather or one-hot).
    #[error("{loss}: label {label} at position {index} of `{tensor}` is outside 0..{num_classes}")]
    LabelOutOfRange {
        /// The loss that refused its input.
        loss: &'static str,
        /// The label tensor's argument name.
        tensor: String,
        /// Position of the first bad label.
        index: usize,
        /// The bad label.
        label: i64,
        /// The number of classes the scores have.
        num_classes: usize,
    },
    /// A scalar setting (temperature, margin, λ, weight, ...) is not allowed.
    #[error("{loss}: argument `{arg}` {msg}")]
    Argument {
        /// The loss that refused its setting.
        loss: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// Why it was refused, with the value.
        msg: String,
    },
    /// A named parameter could not be regularised (missing anchor, shape or dtype mismatch).
    #[error("{loss}: parameter `{name}`: {msg}")]
    Param {
        /// The loss that refused the parameter.
        loss: &'static str,
        /// The parameter's dotted name.
        name: String,
        /// What was wrong.
        msg: String,
    },
    /// The user's discriminator (or other callback) failed.
    #[error("{loss}: the {what} failed: {source}")]
    Callback {
        /// The loss that called it.
        loss: &'static str,
        /// What was called (for example "discriminator").
        what: &'static str,
        /// The callback's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An error from an xfer-ops primitive.
    #[error(transparent)]
    Ops(#[from] xfer_ops::OpsError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl LossError {
    pub(crate) fn shape(
        loss: &'static str,
        tensor: impl Into<String>,
        got: &[usize],
        expected: impl Into<String>,
    ) -> Self {
        LossError::Shape {
            loss,
            tensor: tensor.into(),
            got: got.to_vec(),
            expected: expected.into(),
        }
    }

    pub(crate) fn argument(loss: &'static str, arg: &'static str, msg: impl Into<String>) -> Self {
        LossError::Argument {
            loss,
            arg,
            msg: msg.into(),
        }
    }

    pub(crate) fn param(
        loss: &'static str,
        name: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        LossError::Param {
            loss,
            name: name.into(),
            msg: msg.into(),
        }
    }
}
