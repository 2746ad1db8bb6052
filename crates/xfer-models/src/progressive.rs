//! Progressive neural networks (Rusu et al., "Progressive Neural Networks", 2016).
//!
//! Each task gets a new *column*; earlier columns are frozen, so learning a new task cannot
//! damage the old ones, and the new column reuses their features through lateral
//! connections. Layer `i` of column `k` computes
//!
//! `h_i⁽ᵏ⁾ = f( W_i⁽ᵏ⁾ h_{i−1}⁽ᵏ⁾ + Σ_{j<k} U_i⁽ᵏ:ʲ⁾ σ( V_i⁽ᵏ:ʲ⁾ α_i⁽ᵏ:ʲ⁾ h_{i−1}⁽ʲ⁾ + c ) )`
//!
//! with the paper's non-linear adapter (learned scalar `α`, projection `V` to `adapter_dim`
//! units, non-linearity `σ`, then `U`); without an adapter the lateral is `U α h_{i−1}⁽ʲ⁾`.
//! `f` is the column's activation on hidden layers and the identity on the output layer;
//! the first layer has no lateral (every column sees the same input).
//!
//! Columns here are MLPs with the same number of layers (widths may differ). Names:
//! `columns.<k>.layers.<i>.weight`, `columns.<k>.laterals.<i>.<j>.alpha`,
//! `.../v.weight`, `.../v.bias`, `.../u.weight`.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::layers::{Activation, Linear, Module, ModuleT};
use crate::params::{Param, Scope, Selection};
use crate::sequential::check_widths;
use crate::{ModelError, Result};

/// Shape of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnConfig {
    /// Input width (the same for every column).
    pub input_dim: usize,
    /// Hidden widths (the same count for every column).
    pub hidden: Vec<usize>,
    /// Output width of the column's task.
    pub output_dim: usize,
    /// Activation of the hidden layers (also the adapters' `σ`).
    #[serde(default)]
    pub activation: Activation,
    /// Width of the non-linear lateral adapters; `None` for direct linear laterals.
    #[serde(default)]
    pub adapter_dim: Option<usize>,
}

impl ColumnConfig {
    fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input_dim];
        w.extend(&self.hidden);
        w.push(self.output_dim);
        w
    }
}

fn validate(cfg: &ColumnConfig) -> Result<()> {
    check_widths("progressive column", &cfg.widths())?;
    if let Some(a) = cfg.adapter_dim {
        check_widths("progressive adapter", &[a])?;
    }
    Ok(())
}

#[derive(Debug)]
struct Lateral {
    alpha: Param,
    v: Option<Linear>,
    u: Linear,
}

impl Lateral {
    fn forward(&self, h: &Tensor, act: Activation) -> Result<Tensor> {
        let scaled = h.broadcast_mul(&self.alpha.tensor())?;
        match &self.v {
            Some(v) => self.u.forward(&act.forward(&v.forward(&scaled)?)?),
            None => self.u.forward(&scaled),
        }
    }
}

#[derive(Debug)]
struct Column {
    cfg: ColumnConfig,
    layers: Vec<Linear>,
    /// `laterals[i - 1][j]`: into layer `i` from column `j`.
    laterals: Vec<Vec<Lateral>>,
}

/// A progressive network: a list of columns, all but the newest frozen.
#[derive(Debug)]
pub struct ProgressiveNet {
    scope: Scope,
    columns: Vec<Column>,
    dtype: DType,
    dev: Device,
}

impl ProgressiveNet {
    /// A network with its first column, under `scope`.
    pub fn new(
        scope: &Scope,
        first: &ColumnConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let mut net = Self {
            scope: scope.clone(),
            columns: Vec::new(),
            dtype,
            dev: dev.clone(),
        };
        net.push_column(first, rng)?;
        Ok(net)
    }

    /// The prefix of column `k`'s parameters (`columns.<k>` under the network's scope).
    pub fn column_prefix(&self, k: usize) -> String {
        self.scope.sub("columns").path(&k.to_string())
    }

    /// Freezes every existing column, then adds a new trainable column with lateral
    /// connections from all of them; returns its index.
    pub fn add_column(&mut self, cfg: &ColumnConfig, rng: &mut SeededRng) -> Result<usize> {
        if let Some(c0) = self.columns.first()
            && (cfg.input_dim != c0.cfg.input_dim || cfg.hidden.len() != c0.cfg.hidden.len())
        {
            return Err(ModelError::Config(format!(
                "progressive column: input width {} and {} hidden layers needed, got {} and {}",
                c0.cfg.input_dim,
                c0.cfg.hidden.len(),
                cfg.input_dim,
                cfg.hidden.len()
            )));
        }
        validate(cfg)?;
        for k in 0..self.columns.len() {
            let sel = Selection::Prefix(self.column_prefix(k));
            self.scope.store().freeze(&sel);
        }
        self.push_column(cfg, rng)
    }

    fn push_column(&mut self, cfg: &ColumnConfig, rng: &mut SeededRng) -> Result<usize> {
        validate(cfg)?;
        let widths = cfg.widths();
        let k = self.columns.len();
        let cs = self.scope.sub("columns").sub(&k.to_string());
        let (dtype, dev) = (self.dtype, &self.dev);
        let mut layers = Vec::new();
        for (i, w) in widths.windows(2).enumerate() {
            if let [a, b] = w {
                let s = cs.sub("layers").sub(&i.to_string());
                layers.push(Linear::new(&s, *a, *b, true, rng, dtype, dev)?);
            }
        }
        let mut laterals = Vec::new();
        for i in 1..layers.len() {
            let out = widths.get(i + 1).copied().unwrap_or(0);
            let mut from = Vec::new();
            for (j, col) in self.columns.iter().enumerate() {
                let h_in = col.cfg.widths().get(i).copied().unwrap_or(0);
                let s = cs.sub("laterals").sub(&i.to_string()).sub(&j.to_string());
                // The paper initialises α to a small random value.
                let alpha = s.add("alpha", rng.uniform(&[1], 0.0, 0.1, dtype, dev)?)?;
                let (v, u_in) = match cfg.adapter_dim {
                    Some(a) => (
                        Some(Linear::new(&s.sub("v"), h_in, a, true, rng, dtype, dev)?),
                        a,
                    ),
                    None => (None, h_in),
                };
                let u = Linear::new(&s.sub("u"), u_in, out, false, rng, dtype, dev)?;
                from.push(Lateral { alpha, v, u });
            }
            laterals.push(from);
        }
        self.columns.push(Column {
            cfg: cfg.clone(),
            layers,
            laterals,
        });
        Ok(k)
    }

    /// Number of columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// The output of column `k` (the task it was trained for), computing the columns it
    /// depends on. Earlier columns' activations enter as detached tensors.
    pub fn forward_column(&self, k: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        if k >= self.columns.len() {
            return Err(ModelError::Config(format!(
                "progressive network has {} columns, asked for column {k}",
                self.columns.len()
            )));
        }
        // acts[j][i] = output of layer i of column j.
        let mut acts: Vec<Vec<Tensor>> = Vec::with_capacity(k + 1);
        for col in self.columns.iter().take(k + 1) {
            let n = col.layers.len();
            let mut hs: Vec<Tensor> = Vec::with_capacity(n);
            let mut h = x.clone();
            for (i, layer) in col.layers.iter().enumerate() {
                let mut pre = layer.forward(&h)?;
                if i > 0
                    && let Some(lats) = col.laterals.get(i - 1)
                {
                    for (lat, prev) in lats.iter().zip(&acts) {
                        if let Some(hp) = prev.get(i - 1) {
                            pre = (pre + lat.forward(&hp.detach(), col.cfg.activation)?)?;
                        }
                    }
                }
                h = if i + 1 < n {
                    col.cfg.activation.forward_t(&pre, train)?
                } else {
                    pre
                };
                hs.push(h.clone());
            }
            acts.push(hs);
        }
        acts.pop()
            .and_then(|mut hs| hs.pop())
            .ok_or_else(|| ModelError::Config("progressive column without layers".into()))
    }
}

impl ModuleT for ProgressiveNet {
    /// The output of the newest column.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_column(self.columns.len().saturating_sub(1), x, train)
    }
}
