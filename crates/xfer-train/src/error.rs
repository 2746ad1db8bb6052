//! Errors of xfer-train.

use std::path::PathBuf;

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

/// Everything optimising, training, measuring or plotting can refuse.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss of a step was NaN or infinite; nothing was updated at this step.
    #[error("step {step}: the loss is not finite ({value})")]
    NonFiniteLoss {
        /// The 0-based index of the step (= the number of optimiser steps already taken).
        step: usize,
        /// The value the objective returned.
        value: f64,
    },
    /// A gradient held a NaN or an infinity; nothing was updated at this step.
    #[error("step {step}: the gradient of parameter {param:?} is not finite")]
    NonFiniteGradient {
        /// The 0-based index of the step.
        step: usize,
        /// The name of the first parameter whose gradient is not finite.
        param: String,
    },
    /// A refusal none of the typed variants fits (a broken internal invariant, the
    /// environment). Settings out of range are [`TrainError::InvalidValue`], unusable data
    /// [`TrainError::BadData`], a method that cannot run on the network or data
    /// [`TrainError::Incompatible`].
    #[error("configuration: {0}")]
    Config(String),
    /// A named setting has a value it cannot take (fix the setting `name`).
    #[error("{name} = {value}: expected {expected}")]
    InvalidValue {
        /// The setting (a field or flag name).
        name: String,
        /// The value given.
        value: String,
        /// What it accepts.
        expected: String,
    },
    /// The data cannot serve the method as given (shapes that differ between domains, too
    /// few classes or examples): fix the data, not the settings.
    #[error("{0}")]
    BadData(String),
    /// The method cannot run on this network (AdaBN without a batch norm, distillation
    /// across different class sets): choose another method or backbone.
    #[error("{0}")]
    Incompatible(String),
    /// Optimiser state that does not fit the optimiser it is loaded into.
    #[error("optimiser state: {0}")]
    OptimizerState(String),
    /// A checkpoint could not be written, read, or does not fit the model.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A file could not be written (plots, reports).
    #[error("{path}: {msg}")]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A metric got inputs it cannot take (lengths, class ids, shapes).
    #[error("{metric}: {msg}")]
    Metric {
        /// The metric that refused its input.
        metric: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// The evaluation did not return the metric that early stopping watches.
    #[error("early stopping watches {metric:?} but the evaluation returned only {got:?}")]
    MissingMetric {
        /// The watched metric.
        metric: String,
        /// The names the evaluation returned.
        got: Vec<String>,
    },
    /// An error raised by a user objective or evaluation (wrap with [`TrainError::objective`]).
    #[error("objective: {0}")]
    Objective(Box<dyn std::error::Error + Send + Sync>),
    /// A data error (loading, batching).
    #[error(transparent)]
    Data(#[from] xfer_data::DataError),
    /// A loss error.
    #[error(transparent)]
    Loss(#[from] xfer_losses::LossError),
    /// A model error.
    #[error(transparent)]
    Model(#[from] xfer_models::ModelError),
    /// An op error.
    #[error(transparent)]
    Ops(#[from] xfer_ops::OpsError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// Wraps any error of a user objective or evaluation.
    pub fn objective(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        TrainError::Objective(e.into())
    }

    /// A [`TrainError::InvalidValue`].
    pub fn invalid(
        name: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        TrainError::InvalidValue {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    pub(crate) fn metric(metric: &'static str, msg: impl Into<String>) -> Self {
        TrainError::Metric {
            metric,
            msg: msg.into(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        TrainError::File {
            path: path.into(),
            msg: msg.to_string(),
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
}
