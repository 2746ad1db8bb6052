//! Task labels (masked where unknown) and task sets: the data of multitask learning.

use candle_core::{Device, Tensor};
use xfer_ops::SeededRng;

use xfer_data::UnlabeledDataset;

use crate::trainer::derive_seed;
use crate::{Result, TrainError};

/// One task's labels over a set of examples; a missing label is masked out.
#[derive(Debug, Clone)]
pub struct TaskLabels {
    /// The task's name (a head `heads.<name>`): no dots or spaces.
    pub name: String,
    /// Number of classes of the task.
    pub num_classes: usize,
    /// Labels `(N)` u32 (0 where the label is missing).
    pub y: Tensor,
    /// `(N)` f32: 1 where the label is known, 0 where it is missing.
    pub mask: Tensor,
    pub(super) known: Vec<bool>,
}

impl TaskLabels {
    /// Labels of `name` for each example, `None` where missing; every known label must be
    /// `< num_classes`.
    pub fn new(
        name: &str,
        num_classes: usize,
        labels: &[Option<u32>],
        device: &Device,
    ) -> Result<Self> {
        if let Some(bad) = labels
            .iter()
            .flatten()
            .find(|&&l| l as usize >= num_classes)
        {
            return Err(TrainError::BadData(format!(
                "task {name}: label {bad} out of range for {num_classes} classes"
            )));
        }
        let n = labels.len();
        let y: Vec<u32> = labels.iter().map(|l| l.unwrap_or(0)).collect();
        let known: Vec<bool> = labels.iter().map(Option::is_some).collect();
        let mask: Vec<f32> = known.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        Ok(Self {
            name: name.to_string(),
            num_classes,
            y: Tensor::from_vec(y, n, device)?,
            mask: Tensor::from_vec(mask, n, device)?,
            known,
        })
    }

    /// Labels derived from class ids through `map` (class `c` → task label `map[c]`), every
    /// label known: e.g. parity from digits. A class without an entry is an error.
    pub fn from_classes(name: &str, classes: &[u32], map: &[u32], device: &Device) -> Result<Self> {
        let labels: Vec<Option<u32>> = classes
            .iter()
            .map(|&c| {
                map.get(c as usize).copied().map(Some).ok_or_else(|| {
                    TrainError::BadData(format!(
                        "task {name}: class {c} has no entry in the task's map of {} classes",
                        map.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let num_classes = map.iter().max().map_or(0, |&m| m as usize + 1);
        Self::new(name, num_classes, &labels, device)
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether example `i`'s label is known.
    pub fn is_known(&self, i: usize) -> bool {
        self.known.get(i).copied().unwrap_or(false)
    }

    /// Number of known labels.
    pub fn num_known(&self) -> usize {
        self.known.iter().filter(|&&k| k).count()
    }

    /// Keeps only `k` known labels of every class (chosen with `seed`), masking the others:
    /// a task with few labels among examples that other tasks label fully.
    pub fn keep_per_class(mut self, k: usize, seed: u64) -> Result<Self> {
        let y = self.y.to_vec1::<u32>()?;
        let mut keep = vec![false; y.len()];
        for c in 0..self.num_classes {
            let mut idx: Vec<usize> = (0..y.len())
                .filter(|&i| y.get(i) == Some(&(c as u32)) && self.known.get(i) == Some(&true))
                .collect();
            SeededRng::new(derive_seed(seed, &[c as u64])).shuffle(&mut idx);
            for &i in idx.iter().take(k) {
                if let Some(slot) = keep.get_mut(i) {
                    *slot = true;
                }
            }
        }
        let labels: Vec<Option<u32>> = y.iter().zip(&keep).map(|(&l, &k)| k.then_some(l)).collect();
        let mut out = Self::new(&self.name, self.num_classes, &labels, self.y.device())?;
        std::mem::swap(&mut self, &mut out);
        Ok(self)
    }

    /// The labels and mask of the examples at `indices`.
    pub(super) fn select(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(idx, indices.len(), self.y.device())?;
        Ok((
            self.y.index_select(&ids, 0)?,
            self.mask.index_select(&ids, 0)?,
        ))
    }
}

/// Examples shared by one or more tasks: inputs `(N, ...)` and each task's (masked) labels.
/// Tasks on different data sets live in different sets.
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// The inputs, for the loaders.
    pub features: UnlabeledDataset,
    /// The same inputs as one tensor, batch first (for evaluation).
    pub x: Tensor,
    /// The tasks labelled (partly) on these examples.
    pub tasks: Vec<TaskLabels>,
}

impl TaskSet {
    /// The examples of `features` with every task's labels (each must label exactly these
    /// examples), on the tasks' device.
    pub fn new(features: UnlabeledDataset, tasks: Vec<TaskLabels>) -> Result<Self> {
        let device = tasks.first().map_or(Device::Cpu, |t| t.y.device().clone());
        let x = features.to_tensor(&device)?;
        let n = x.dims().first().copied().unwrap_or(0);
        if n == 0 || tasks.is_empty() {
            return Err(TrainError::BadData(
                "task set: needs at least one example and one task".into(),
            ));
        }
        if let Some(t) = tasks.iter().find(|t| t.len() != n) {
            return Err(TrainError::BadData(format!(
                "task {}: {} labels for {n} examples",
                t.name,
                t.len()
            )));
        }
        Ok(Self { features, x, tasks })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of one flattened example.
    pub fn feature_dim(&self) -> usize {
        self.x.dims().iter().skip(1).product()
    }
}
