//! Optimisers with parameter groups, written to match `torch.optim` update for update.
//!
//! - [`Sgd`]: SGD with momentum, dampening, Nesterov momentum and coupled weight decay
//!   (`torch.optim.SGD`).
//! - [`Adam`]: Adam with coupled weight decay (`torch.optim.Adam`) or decoupled weight decay
//!   (`torch.optim.AdamW`, Loshchilov & Hutter 2019), with bias correction.
//!
//! Every optimiser takes **parameter groups**: `(params, lr_mult, weight_decay)`. A group's
//! learning rate is `lr · lr_mult` where `lr` is the scheduled rate passed to
//! [`Optimizer::step`] (TLlib's 0.1× backbone rate is `lr_mult = 0.1`). Frozen parameters
//! and buffers are never handed to an optimiser: the constructors keep only
//! [`Param::is_trainable`] ones, and a parameter without a gradient in a step is skipped
//! entirely (as PyTorch skips `p.grad is None`: no decay, no momentum update).
//!
//! Updates are in place, in the parameter's dtype: on the CPU (f32, f64) by fused kernels that
//! do the arithmetic of the candle-op path in one or two passes without allocating (bit-identical
//! to it), elsewhere by candle ops and [`candle_core::Var::set`]. The state
//! (momentum buffers, moments, step counts) is kept per parameter name and can be saved and
//! restored with [`Optimizer::state`] / [`Optimizer::load_state`] for an exact resume.

mod adamw;
mod fused;
mod sgd;

pub use adamw::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use std::collections::BTreeSet;

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use xfer_models::Param;

use crate::{Result, TrainError};

/// One parameter group as the optimisers take it: `(params, lr_mult, weight_decay)`.
pub type GroupSpec = (Vec<Param>, f64, f64);

/// A gradient-based optimiser over named parameters.
pub trait Optimizer: Send {
    /// A short name: `"sgd"`, `"adam"` or `"adamw"` (also stored in checkpoints).
    fn kind(&self) -> &'static str;

    /// One update of every parameter that has a gradient in `grads`, with base learning
    /// rate `lr` (each group multiplies it by its `lr_mult`).
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;

    /// The parameters this optimiser updates, in a fixed order.
    fn params(&self) -> &[Param];

    /// The learning-rate multiplier and weight decay applying to `params()[i]`.
    fn group_of(&self, i: usize) -> Option<(f64, f64)>;

    /// A copy of the optimiser's state (buffers, moments, step counts), keyed by parameter
    /// name, for checkpoints.
    fn state(&self) -> Result<OptimizerState>;

    /// Restores a state written by [`Optimizer::state`] of the same kind over parameters of
    /// the same names and shapes. Hyper-parameters are not part of the state: the
    /// optimiser's own configuration stays in force.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
}

/// A boxed optimiser is an optimiser (choose SGD or AdamW at run time).
impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        (**self).step(grads, lr)
    }
    fn params(&self) -> &[Param] {
        (**self).params()
    }
    fn group_of(&self, i: usize) -> Option<(f64, f64)> {
        (**self).group_of(i)
    }
    fn state(&self) -> Result<OptimizerState> {
        (**self).state()
    }
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        (**self).load_state(state)
    }
}

/// A saved optimiser state: tensors named `<param name>/<slot>` (slots: `momentum_buffer`,
/// `exp_avg`, `exp_avg_sq`) plus JSON metadata (per-parameter step counts).
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// The optimiser's [`Optimizer::kind`].
    pub kind: String,
    /// Scalars of the state, as JSON.
    pub meta: serde_json::Value,
    /// Named state tensors.
    pub tensors: Vec<(String, Tensor)>,
}

impl OptimizerState {
    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Hyper-parameters of one group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupSettings {
    pub lr_mult: f64,
    pub weight_decay: f64,
}

/// The flattened groups: each kept parameter with the index of its group.
pub(crate) struct Groups {
    pub params: Vec<Param>,
    pub group_of: Vec<usize>,
    pub settings: Vec<GroupSettings>,
}

impl Groups {
    /// Validates the groups, keeps trainable parameters only, and refuses a parameter that
    /// appears twice (as PyTorch does).
    pub fn build(groups: Vec<GroupSpec>, what: &str) -> Result<Self> {
        let mut params = Vec::new();
        let mut group_of = Vec::new();
        let mut settings = Vec::new();
        let mut seen = BTreeSet::new();
        let mut skipped = 0usize;
        for (gi, (ps, lr_mult, weight_decay)) in groups.into_iter().enumerate() {
            if !(lr_mult.is_finite() && lr_mult >= 0.0) {
                return Err(TrainError::invalid(
                    format!("group {gi} lr_mult"),
                    lr_mult,
                    format!("a learning-rate multiplier finite and >= 0 ({what})"),
                ));
            }
            if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                return Err(TrainError::invalid(
                    format!("group {gi} weight_decay"),
                    weight_decay,
                    format!("finite and >= 0 ({what})"),
                ));
            }
            settings.push(GroupSettings {
                lr_mult,
                weight_decay,
            });
            for p in ps {
                if !p.is_trainable() {
                    skipped += 1;
                    continue;
                }
                if !seen.insert(p.name().to_string()) {
                    return Err(TrainError::invalid(
                        format!("group {gi} params"),
                        format!("{:?}", p.name()),
                        format!(
                            "parameters in no other group ({what}: parameter {:?} appears in \
                             more than one group)",
                            p.name()
                        ),
                    ));
                }
                params.push(p);
                group_of.push(gi);
            }
        }
        if skipped > 0 {
            tracing::debug!(
                target: "xfer_train",
                optimizer = what,
                skipped,
                "frozen parameters and buffers are not optimised"
            );
        }
        Ok(Self {
            params,
            group_of,
            settings,
        })
    }

    pub fn settings_of(&self, i: usize) -> Option<GroupSettings> {
        self.group_of
            .get(i)
            .and_then(|&g| self.settings.get(g))
            .copied()
    }

    /// The index of the parameter called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name() == name)
    }
}

pub(crate) fn check_lr(lr: f64, what: &str) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(TrainError::invalid(
            "lr",
            lr,
            format!("a learning rate finite and >= 0 ({what})"),
        ))
    }
}

/// Moves a saved state tensor onto the parameter's device and dtype, checking its shape.
pub(crate) fn fit_state_tensor(t: &Tensor, p: &Param, key: &str) -> Result<Tensor> {
    if t.dims() != p.var().dims() {
        return Err(TrainError::OptimizerState(format!(
            "{key}: shape {:?} does not match parameter {:?} of shape {:?}",
            t.dims(),
            p.name(),
            p.var().dims()
        )));
    }
    // A real copy: the state must never share storage with anything the caller still holds.
    Ok(t.to_dtype(p.var().dtype())?
        .to_device(p.var().device())?
        .copy()?)
}

/// Refuses state tensors whose parameter is unknown or whose slot is not one of `slots`.
pub(crate) fn check_state_keys(
    state: &OptimizerState,
    groups: &Groups,
    slots: &[&str],
) -> Result<()> {
    for (key, _) in &state.tensors {
        let Some((name, slot)) = key.rsplit_once('/') else {
            return Err(TrainError::OptimizerState(format!(
                "{key}: expected `<parameter>/<slot>`"
            )));
        };
        if groups.index_of(name).is_none() {
            return Err(TrainError::OptimizerState(format!(
                "{key}: no parameter {name:?} in this optimiser"
            )));
        }
        if !slots.contains(&slot) {
            return Err(TrainError::OptimizerState(format!(
                "{key}: unknown slot {slot:?} (expected one of {slots:?})"
            )));
        }
    }
    Ok(())
}
