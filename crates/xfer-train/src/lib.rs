//! xfer-train: optimisers, schedules, the one training loop, metrics and plots.
//!
//! - [`optim`]: [`Sgd`] (momentum, Nesterov, weight decay) and [`Adam`] (Adam / AdamW) with
//!   parameter groups, matching `torch.optim`, with saveable state.
//! - [`schedule`]: learning-rate schedules as pure functions of `(step, total_steps)`,
//!   including DANN's `μ_p = μ0 / (1 + α p)^β`.

pub mod error;
pub mod optim;
pub mod schedule;

pub use error::{Result, TrainError};
pub use optim::{Adam, AdamConfig, GroupSpec, Optimizer, OptimizerState, Sgd, SgdConfig};
pub use schedule::{Schedule, progress};
