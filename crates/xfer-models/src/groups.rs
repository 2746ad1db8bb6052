//! Parameter groups: which trainable parameters get which learning-rate multiplier and weight
//! decay.
//!
//! Layer transfer (LECTURE.md §1b) often trains copied layers with a smaller learning rate
//! than new ones, and weight decay is usually not applied to biases. A [`ParamGroup`] names a
//! [`Selection`] and its settings; [`partition_params`] splits the *trainable* parameters of a
//! store among the groups — the first group whose selection matches a name wins, everything
//! left over falls into a final default group (`lr_mult = 1`, the optimiser's weight decay).
//! The result is plain data that an optimiser (xfer-train) consumes; frozen parameters and
//! buffers never appear in it.

use crate::params::{Param, ParamStore, Selection};
use crate::{ModelError, Result};

/// Name of the group that collects the parameters no other group selected.
pub const DEFAULT_GROUP: &str = "default";

/// A selection of parameters and the optimiser settings that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    /// A name for logs and reports (`"backbone"`, `"head"`, `"no_decay"`).
    pub name: String,
    /// Which parameters belong to the group (matched against dotted names).
    pub selection: Selection,
    /// Learning rate of the group = base learning rate × `lr_mult`.
    pub lr_mult: f64,
    /// Weight decay of the group; `None` leaves the optimiser's own value.
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with `lr_mult = 1` and the optimiser's weight decay.
    pub fn new(name: impl Into<String>, selection: impl Into<Selection>) -> Self {
        Self {
            name: name.into(),
            selection: selection.into(),
            lr_mult: 1.0,
            weight_decay: None,
        }
    }

    /// Sets the learning-rate multiplier.
    pub fn with_lr_mult(mut self, lr_mult: f64) -> Self {
        self.lr_mult = lr_mult;
        self
    }

    /// Sets the weight decay of the group (`0.0` turns it off).
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(ModelError::Config(
                "parameter group with an empty name".into(),
            ));
        }
        if !self.lr_mult.is_finite() || self.lr_mult < 0.0 {
            return Err(ModelError::Config(format!(
                "parameter group {:?}: lr_mult must be finite and ≥ 0, got {}",
                self.name, self.lr_mult
            )));
        }
        if let Some(wd) = self.weight_decay
            && (!wd.is_finite() || wd < 0.0)
        {
            return Err(ModelError::Config(format!(
                "parameter group {:?}: weight_decay must be finite and ≥ 0, got {wd}",
                self.name
            )));
        }
        Ok(())
    }
}

/// The trainable parameters that fell into one group, with the group's settings.
#[derive(Debug, Clone)]
pub struct GroupedParams {
    /// The group's name ([`DEFAULT_GROUP`] for the remainder).
    pub name: String,
    /// Learning-rate multiplier.
    pub lr_mult: f64,
    /// Weight decay (`None`: the optimiser's own).
    pub weight_decay: Option<f64>,
    /// The parameters, sorted by name.
    pub params: Vec<Param>,
}

impl GroupedParams {
    /// `(params, lr_mult, weight_decay)` with `default_weight_decay` where the group leaves
    /// it to the optimiser — the form xfer-train's optimisers take (`GroupSpec`).
    pub fn into_spec(self, default_weight_decay: f64) -> (Vec<Param>, f64, f64) {
        (
            self.params,
            self.lr_mult,
            self.weight_decay.unwrap_or(default_weight_decay),
        )
    }

    /// The names of the group's parameters.
    pub fn names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name().to_string()).collect()
    }
}

/// Splits the trainable parameters of `store` among `groups`.
///
/// Returns `groups.len() + 1` entries in the order given, the last being the default group
/// ([`DEFAULT_GROUP`], `lr_mult = 1`, weight decay `None`) with every trainable parameter no
/// group selected. A parameter goes to the **first** group whose selection matches it, so
/// specific groups go before general ones. Groups may come out empty (a warning is logged).
/// Every trainable parameter appears exactly once; frozen parameters and buffers never.
///
/// Errors: a group with an empty or duplicate name (`"default"` included), a negative or
/// non-finite `lr_mult` or `weight_decay`.
pub fn partition_params(store: &ParamStore, groups: &[ParamGroup]) -> Result<Vec<GroupedParams>> {
    for (i, g) in groups.iter().enumerate() {
        g.validate()?;
        if g.name == DEFAULT_GROUP || groups[..i].iter().any(|h| h.name == g.name) {
            return Err(ModelError::Config(format!(
                "parameter group name {:?} is used twice (\"{DEFAULT_GROUP}\" is reserved)",
                g.name
            )));
        }
    }
    let mut out: Vec<GroupedParams> = groups
        .iter()
        .map(|g| GroupedParams {
            name: g.name.clone(),
            lr_mult: g.lr_mult,
            weight_decay: g.weight_decay,
            params: Vec::new(),
        })
        .collect();
    out.push(GroupedParams {
        name: DEFAULT_GROUP.to_string(),
        lr_mult: 1.0,
        weight_decay: None,
        params: Vec::new(),
    });
    let default_index = groups.len();
    for p in store.trainable() {
        let i = groups
            .iter()
            .position(|g| g.selection.matches(p.name()))
            .unwrap_or(default_index);
        if let Some(slot) = out.get_mut(i) {
            slot.params.push(p);
        }
    }
    for g in out.iter().take(default_index) {
        if g.params.is_empty() {
            tracing::warn!(group = %g.name, "parameter group selects no trainable parameter");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    fn store(names: &[&str]) -> ParamStore {
        let s = ParamStore::new();
        for n in names {
            s.add(n, Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())
                .unwrap();
        }
        s
    }

    #[test]
    fn first_matching_group_wins_and_remainder_goes_to_default() {
        let s = store(&[
            "backbone.0.weight",
            "backbone.0.bias",
            "head.weight",
            "head.bias",
            "extra.weight",
        ]);
        let groups = [
            ParamGroup::new("no_decay", "*.bias").with_weight_decay(0.0),
            ParamGroup::new("backbone", "backbone").with_lr_mult(0.1),
            ParamGroup::new("head", "head").with_lr_mult(10.0),
        ];
        let parts = partition_params(&s, &groups).unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].names(), ["backbone.0.bias", "head.bias"]);
        assert_eq!(parts[0].weight_decay, Some(0.0));
        assert_eq!(parts[1].names(), ["backbone.0.weight"]);
        assert_eq!(parts[1].lr_mult, 0.1);
        assert_eq!(parts[2].names(), ["head.weight"]);
        assert_eq!(parts[3].name, DEFAULT_GROUP);
        assert_eq!(parts[3].names(), ["extra.weight"]);
        assert_eq!(parts[3].lr_mult, 1.0);
        let (ps, lr, wd) = parts[3].clone().into_spec(5e-4);
        assert_eq!((ps.len(), lr, wd), (1, 1.0, 5e-4));
        let (_, _, wd) = parts[0].clone().into_spec(5e-4);
        assert_eq!(wd, 0.0);
    }

    #[test]
    fn frozen_params_and_buffers_are_in_no_group() {
        let s = store(&["a.weight", "b.weight"]);
        s.add_buffer(
            "a.running_mean",
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        s.freeze(&Selection::parse("a").unwrap());
        let parts = partition_params(&s, &[ParamGroup::new("all", "*")]).unwrap();
        assert_eq!(parts[0].names(), ["b.weight"]);
        assert!(parts[1].params.is_empty());
    }

    #[test]
    fn bad_groups_are_refused() {
        let s = store(&["a.weight"]);
        assert!(partition_params(&s, &[ParamGroup::new("x", "a").with_lr_mult(-1.0)]).is_err());
        assert!(
            partition_params(&s, &[ParamGroup::new("x", "a").with_weight_decay(f64::NAN)]).is_err()
        );
        assert!(partition_params(&s, &[ParamGroup::new("default", "a")]).is_err());
        assert!(
            partition_params(&s, &[ParamGroup::new("x", "a"), ParamGroup::new("x", "b")]).is_err()
        );
    }
}
