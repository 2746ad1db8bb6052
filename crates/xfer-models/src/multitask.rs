//! Multitask learning (LECTURE.md §2): a shared trunk with one named head per task, and
//! optionally task-specific input layers feeding the shared trunk (the multilingual speech
//! recogniser: each language its own input layer, shared hidden layers, its own output).
//!
//! Names: `trunk.*`, `inputs.<task>.*`, `heads.<task>.*`. The loss `Σ_t w_t L_t` is the
//! training crate's business; this container only routes.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_ops::SeededRng;

use crate::layers::{Activation, ModuleT};
use crate::params::Scope;
use crate::sequential::{check_dropout, check_widths, mlp_stack};
use crate::{ModelError, Result};

type Boxed = Box<dyn ModuleT + Send + Sync>;

/// A shared trunk, task-specific input layers and task heads.
pub struct MultiHeadNet {
    trunk: Boxed,
    inputs: BTreeMap<String, Boxed>,
    heads: BTreeMap<String, Boxed>,
}

impl std::fmt::Debug for MultiHeadNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiHeadNet")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("heads", &self.heads.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn check_task(task: &str) -> Result<()> {
    if task.is_empty() || task.contains('.') || task.chars().any(char::is_whitespace) {
        return Err(ModelError::Config(format!(
            "task name {task:?} must be non-empty, without dots or spaces"
        )));
    }
    Ok(())
}

impl MultiHeadNet {
    /// A container around a shared trunk (build it under the scope `trunk`).
    pub fn new(trunk: impl ModuleT + Send + Sync + 'static) -> Self {
        Self {
            trunk: Box::new(trunk),
            inputs: BTreeMap::new(),
            heads: BTreeMap::new(),
        }
    }

    /// Adds the head of `task` (build it under `heads.<task>`).
    pub fn with_head(
        mut self,
        task: &str,
        head: impl ModuleT + Send + Sync + 'static,
    ) -> Result<Self> {
        check_task(task)?;
        if self
            .heads
            .insert(task.to_string(), Box::new(head))
            .is_some()
        {
            return Err(ModelError::Config(format!("task {task:?} has two heads")));
        }
        Ok(self)
    }

    /// Adds a task-specific input layer for `task` (build it under `inputs.<task>`); its
    /// output must have the trunk's input width.
    pub fn with_input(
        mut self,
        task: &str,
        layer: impl ModuleT + Send + Sync + 'static,
    ) -> Result<Self> {
        check_task(task)?;
        if self
            .inputs
            .insert(task.to_string(), Box::new(layer))
            .is_some()
        {
            return Err(ModelError::Config(format!(
                "task {task:?} has two input layers"
            )));
        }
        Ok(self)
    }

    /// The task names (those with a head), sorted.
    pub fn tasks(&self) -> Vec<String> {
        self.heads.keys().cloned().collect()
    }

    /// Whether `task` has its own input layer.
    pub fn has_input_layer(&self, task: &str) -> bool {
        self.inputs.contains_key(task)
    }

    fn unknown(&self, task: &str) -> ModelError {
        ModelError::UnknownTask {
            task: task.to_string(),
            known: self.tasks(),
        }
    }

    /// The shared representation of `x` for `task`: its input layer (if any), then the trunk.
    pub fn shared_features(&self, task: &str, x: &Tensor, train: bool) -> Result<Tensor> {
        if !self.heads.contains_key(task) {
            return Err(self.unknown(task));
        }
        match self.inputs.get(task) {
            Some(inp) => self.trunk.forward_t(&inp.forward_t(x, train)?, train),
            None => self.trunk.forward_t(x, train),
        }
    }

    /// The output of `task` for `x`: input layer (if any) → trunk → head of `task`.
    pub fn forward_task(&self, task: &str, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.shared_features(task, x, train)?;
        let head = self.heads.get(task).ok_or_else(|| self.unknown(task))?;
        head.forward_t(&h, train)
    }

    /// The outputs of every task that has no input layer of its own, for one shared input,
    /// running the trunk once.
    pub fn forward_shared(&self, x: &Tensor, train: bool) -> Result<BTreeMap<String, Tensor>> {
        let h = self.trunk.forward_t(x, train)?;
        let mut out = BTreeMap::new();
        for (task, head) in &self.heads {
            if !self.inputs.contains_key(task) {
                out.insert(task.clone(), head.forward_t(&h, train)?);
            }
        }
        Ok(out)
    }
}

/// One task of a [`MultiHeadNetConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// Task name (no dots).
    pub name: String,
    /// Output width of the task's head.
    pub output_dim: usize,
    /// Width of this task's own input, when it has a task-specific input layer mapping it to
    /// the trunk's input width.
    #[serde(default)]
    pub input_dim: Option<usize>,
    /// Hidden widths of the task's head (empty: one linear layer).
    #[serde(default)]
    pub head_hidden: Vec<usize>,
}

/// An MLP multitask network: optional per-task input layers, a shared MLP trunk, MLP heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiHeadNetConfig {
    /// Input width of the trunk (and of tasks without their own input layer).
    pub input_dim: usize,
    /// Widths of the shared layers.
    pub shared: Vec<usize>,
    /// The tasks.
    pub tasks: Vec<TaskConfig>,
    /// Activation everywhere but the heads' outputs.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after the trunk's activations.
    #[serde(default)]
    pub dropout: f64,
}

impl MultiHeadNet {
    /// Builds the MLP multitask network of `cfg` under `scope`.
    pub fn from_config(
        scope: &Scope,
        cfg: &MultiHeadNetConfig,
        rng: &mut SeededRng,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        if cfg.tasks.is_empty() {
            return Err(ModelError::Config("multitask: no task".into()));
        }
        let mut widths = vec![cfg.input_dim];
        widths.extend(&cfg.shared);
        check_widths("multitask trunk", &widths)?;
        check_dropout("multitask", cfg.dropout)?;
        let trunk = mlp_stack(
            &scope.sub("trunk"),
            &widths,
            cfg.activation,
            cfg.dropout,
            true,
            rng,
            dtype,
            dev,
        )?;
        let shared_out = widths.last().copied().unwrap_or(cfg.input_dim);
        let mut mt = MultiHeadNet::new(trunk);
        for t in &cfg.tasks {
            check_task(&t.name)?;
            if let Some(d) = t.input_dim {
                check_widths("multitask input", &[d])?;
                let inp = mlp_stack(
                    &scope.sub("inputs").sub(&t.name),
                    &[d, cfg.input_dim],
                    cfg.activation,
                    0.0,
                    true,
                    rng,
                    dtype,
                    dev,
                )?;
                mt = mt.with_input(&t.name, inp)?;
            }
            let mut hw = vec![shared_out];
            hw.extend(&t.head_hidden);
            hw.push(t.output_dim);
            check_widths("multitask head", &hw)?;
            let head = mlp_stack(
                &scope.sub("heads").sub(&t.name),
                &hw,
                cfg.activation,
                0.0,
                false,
                rng,
                dtype,
                dev,
            )?;
            mt = mt.with_head(&t.name, head)?;
        }
        Ok(mt)
    }
}
