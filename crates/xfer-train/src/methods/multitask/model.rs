//! The multitask network: a shared trunk, task input layers and heads, and the task weights.

use std::fmt;

use candle_core::{DType, Device, Tensor};
use xfer_losses::UncertaintyWeighting;
use xfer_models::{
    Activation, BackboneSpec, Classifier, ClassifierConfig, MultiHeadNet, MultiHeadNetConfig,
    ParamStore, Selection, TaskConfig, Transfer,
};
use xfer_ops::SeededRng;

use super::data::TaskSet;
use super::progressive::known_accuracy;
use crate::run::Stage;
use crate::{Result, TrainError};

/// How the task losses are combined.
#[derive(Debug, Clone, PartialEq)]
pub enum Weighting {
    /// `Σ_t w_t L_t` with these weights (in task order).
    Fixed(Vec<f64>),
    /// `Σ_t exp(−s_t) L_t + s_t`, the `s_t` learned (registered as
    /// `task_weighting.log_vars` in the model's store).
    Uncertainty,
}

/// The multitask network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct MultitaskModelConfig {
    /// Widths of the shared trunk (an MLP on flattened inputs).
    pub trunk: Vec<usize>,
    /// Hidden widths of each task head (empty: a linear head).
    pub head_hidden: Vec<usize>,
    /// Give every task its own input layer (a linear layer + activation to the trunk's input
    /// width). Tasks whose data are narrower or wider than the first set's always get one.
    pub input_layers: bool,
    /// How task losses are combined.
    pub weighting: Weighting,
    /// Training.
    pub stage: Stage,
}

/// A shared trunk with one head per task (and the learned task weights, if any), with its
/// parameters in its own store: `trunk.*`, `inputs.<task>.*`, `heads.<task>.*`,
/// `task_weighting.log_vars`.
pub struct MultitaskModel {
    store: ParamStore,
    model: MultiHeadNet,
    pub(super) tasks: Vec<String>,
    pub(super) uncertainty: Option<UncertaintyWeighting>,
    weights: Vec<f64>,
    /// The network's shape (for [`MultitaskModel::task_classifier`]).
    shape: MultiHeadNetConfig,
}

impl fmt::Debug for MultitaskModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultitaskModel")
            .field("tasks", &self.tasks)
            .field("uncertainty", &self.uncertainty.is_some())
            .field("weights", &self.weights)
            .finish()
    }
}

impl MultitaskModel {
    /// Builds the model for the tasks of `sets` (task names must be distinct), every value
    /// drawn from `seed`. The trunk's input width is the first set's feature width.
    pub fn new(
        sets: &[TaskSet],
        cfg: &MultitaskModelConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let first = sets
            .first()
            .ok_or_else(|| TrainError::invalid("sets", "none", "at least one task set"))?;
        let input_dim = first.feature_dim();
        let mut tasks = Vec::new();
        let mut task_cfgs = Vec::new();
        for set in sets {
            let d = set.feature_dim();
            for t in &set.tasks {
                if tasks.contains(&t.name) {
                    return Err(TrainError::invalid(
                        "task name",
                        &t.name,
                        "distinct names (given twice)",
                    ));
                }
                tasks.push(t.name.clone());
                task_cfgs.push(TaskConfig {
                    name: t.name.clone(),
                    output_dim: t.num_classes,
                    input_dim: (cfg.input_layers || d != input_dim).then_some(d),
                    head_hidden: cfg.head_hidden.clone(),
                });
            }
        }
        let weights = match &cfg.weighting {
            Weighting::Fixed(w) if w.len() != tasks.len() => {
                return Err(TrainError::Incompatible(format!(
                    "multitask: {} fixed weights for {} tasks ({})",
                    w.len(),
                    tasks.len(),
                    tasks.join(", ")
                )));
            }
            Weighting::Fixed(w) => w.clone(),
            Weighting::Uncertainty => vec![1.0; tasks.len()],
        };
        let store = ParamStore::new();
        let mut rng = SeededRng::new(seed);
        let mt_cfg = MultiHeadNetConfig {
            input_dim,
            shared: cfg.trunk.clone(),
            tasks: task_cfgs,
            activation: Activation::Relu,
            dropout: 0.0,
        };
        let model =
            MultiHeadNet::from_config(&store.scope(""), &mt_cfg, &mut rng, DType::F32, device)?;
        let shape = mt_cfg;
        let uncertainty = match cfg.weighting {
            Weighting::Uncertainty => {
                let p = store.add(
                    "task_weighting.log_vars",
                    Tensor::zeros(tasks.len(), DType::F32, device)?,
                )?;
                Some(UncertaintyWeighting::from_log_vars(p.var().clone())?)
            }
            Weighting::Fixed(_) => None,
        };
        Ok(Self {
            store,
            model,
            tasks,
            uncertainty,
            weights,
            shape,
        })
    }

    /// The network of one task — the shared trunk and the task's head — as a stand-alone
    /// `mlp:` [`Classifier`] (`trunk.*` → `features.*`, `heads.<task>.0.*` → `classifier.*`,
    /// values copied), so it can be saved as a model package and used by `predict`. Errors: an
    /// unknown task, or a task with its own input layer or a hidden head layer (not an MLP
    /// classifier).
    pub fn task_classifier(&self, task: &str) -> Result<Classifier> {
        let t = self
            .shape
            .tasks
            .iter()
            .find(|t| t.name == task)
            .ok_or_else(|| {
                TrainError::invalid("task", task, format!("one of {}", self.tasks.join(", ")))
            })?;
        if t.input_dim.is_some() || !t.head_hidden.is_empty() || self.shape.dropout > 0.0 {
            return Err(TrainError::Incompatible(format!(
                "task {task}: a task with its own input layer or a hidden head layer is not an \
                 MLP classifier"
            )));
        }
        let device = self
            .store
            .all()
            .first()
            .map_or(Device::Cpu, |p| p.var().device().clone());
        let cfg = ClassifierConfig::new(
            BackboneSpec::mlp_hidden(&self.shape.shared),
            &[self.shape.input_dim],
            t.output_dim,
        );
        let net = Classifier::new(&cfg, 0, &device)?;
        let head = format!("heads.{task}.0.");
        Transfer::new()
            .select(Selection::All)
            .rename(move |n| {
                if let Some(rest) = n.strip_prefix("trunk.") {
                    Some(format!("features.{rest}"))
                } else {
                    n.strip_prefix(head.as_str())
                        .map(|rest| format!("classifier.{rest}"))
                }
            })
            .strict(true)
            .run(&self.store, net.store())?;
        Ok(net)
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The task names, in loss order.
    pub fn tasks(&self) -> &[String] {
        &self.tasks
    }

    /// The current task weights: fixed, or `exp(−s_t)` for uncertainty weighting.
    pub fn task_weights(&self) -> Result<Vec<f64>> {
        match &self.uncertainty {
            Some(u) => Ok(u.weights()?),
            None => Ok(self.weights.clone()),
        }
    }

    /// The learned uncertainty weighting, if used.
    pub fn uncertainty(&self) -> Option<&UncertaintyWeighting> {
        self.uncertainty.as_ref()
    }

    /// The logits of every task of `set` on `x` (the trunk runs once for the tasks without
    /// their own input layer).
    pub fn forward_set(&self, set: &TaskSet, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let x = x.flatten_from(1)?;
        let shared = if set
            .tasks
            .iter()
            .any(|t| !self.model.has_input_layer(&t.name))
        {
            self.model.forward_shared(&x, train)?
        } else {
            Default::default()
        };
        set.tasks
            .iter()
            .map(|t| match shared.get(&t.name) {
                Some(z) => Ok(z.clone()),
                None => Ok(self.model.forward_task(&t.name, &x, train)?),
            })
            .collect()
    }

    /// The accuracy of every task of `set` over the examples whose label is known (`None`
    /// for a task without any), in evaluation mode.
    pub fn accuracy(&self, set: &TaskSet) -> Result<Vec<(String, Option<f64>)>> {
        let logits = self.forward_set(set, &set.x, false)?;
        set.tasks
            .iter()
            .zip(logits)
            .map(|(t, z)| Ok((t.name.clone(), known_accuracy(&z, t)?)))
            .collect()
    }
}
