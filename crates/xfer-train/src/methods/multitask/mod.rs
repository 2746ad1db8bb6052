//! Multitask learning (LECTURE.md §2): related tasks share a trunk and keep their own heads
//! (and, optionally, their own input layers); the loss is `Σ_t w_t L_t` with fixed weights, or
//! with uncertainty weighting `Σ_t exp(−s_t) L_t + s_t` (Kendall, Gal & Cipolla, CVPR 2018)
//! where the `s_t` are learned with the model. A task's label may be missing for an example
//! (masked labels): `L_t` averages over the examples that have one.
//!
//! Progressive networks (Rusu et al. 2016) learn a new task in a new column that reads the
//! frozen old columns through lateral connections, so the old task cannot be damaged
//! ([`train_progressive`]).
//!
//! Both are objectives run by the one [`Trainer`](crate::Trainer) ([`MultitaskObjective`],
//! [`ColumnObjective`]).
//!
//! A run is the family's one entry, [`run`]`(&Config, &Data, &RunCtx)`, the [`Method`] inside
//! its [`Config`]: the single-task baseline, fixed or uncertainty weights, or a progressive
//! column; the [`Outcome`] holds the trained network, the reports and the metrics.

mod data;
mod model;
mod objective;
mod progressive;
mod run;
mod tasks;
#[cfg(test)]
mod tests;

pub use data::{TaskLabels, TaskSet};
pub use model::{MultitaskModel, MultitaskModelConfig, Weighting};
pub use objective::{MultitaskObjective, train_multitask};
pub use progressive::{
    ColumnObjective, ProgressiveConfig, ProgressiveOutcome, column_accuracy, train_progressive,
};
pub use run::{Config, Data, Method, Outcome, Trained, run};
pub use tasks::{TaskSpec, TaskSplit};
