//! Batches addressed by the trainer's step, so a resumed run sees exactly the batches an
//! uninterrupted one would.
//!
//! xfer-data's loaders make batch `b` of epoch `e` a pure function of `(seed, e, b)` and can
//! start at any global step ([`DataLoader::steps`]). [`StepBatches`] keeps one such stream
//! and hands out the batch of `ctx.step`: it (re)starts the stream at `ctx.step` on the first
//! call after construction or a resume, and whenever the steps asked for are not
//! consecutive. An objective therefore just calls `batches.next(ctx)?` each step.
//!
//! The loader's own epochs need not coincide with the trainer's `steps_per_epoch` (an
//! evaluation every 100 steps over a loader of 37 batches is fine); set them equal when an
//! "epoch" in the logs should mean one pass over the data.

use xfer_data::{
    Batch, Batches, DataLoader, Dataset, PairedBatches, PairedLoader, Result as DataResult,
};

use crate::trainer::StepCtx;
use crate::{Result, TrainError};

/// A source of batches addressed by global step.
pub trait StepSource {
    /// One step's data.
    type Item;
    /// The stream from a given step on.
    type Iter: Iterator<Item = DataResult<Self::Item>>;
    /// The endless stream starting at global step `start`.
    fn stream_from(&self, start: u64) -> Self::Iter;
    /// Batches per epoch of the source (use it for `TrainerConfig::steps_per_epoch`).
    fn steps_per_epoch(&self) -> usize;
}

impl<D: Dataset + 'static> StepSource for DataLoader<D> {
    type Item = Batch;
    type Iter = Batches;
    fn stream_from(&self, start: u64) -> Batches {
        self.steps(start, None)
    }
    fn steps_per_epoch(&self) -> usize {
        self.batches_per_epoch()
    }
}

impl<S: Dataset + 'static, T: Dataset + 'static> StepSource for PairedLoader<S, T> {
    type Item = (Batch, Batch);
    type Iter = PairedBatches;
    fn stream_from(&self, start: u64) -> PairedBatches {
        self.steps(start, None)
    }
    fn steps_per_epoch(&self) -> usize {
        PairedLoader::steps_per_epoch(self)
    }
}

/// The batch of each trainer step from a [`StepSource`] (see the module documentation).
pub struct StepBatches<'a, L: StepSource> {
    source: &'a L,
    /// The step the stream yields next, and the stream.
    cursor: Option<(usize, L::Iter)>,
}

impl<L: StepSource> std::fmt::Debug for StepBatches<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepBatches")
            .field("next_step", &self.cursor.as_ref().map(|c| c.0))
            .finish()
    }
}

impl<'a, L: StepSource> StepBatches<'a, L> {
    /// Batches of `source`, not started yet.
    pub fn new(source: &'a L) -> Self {
        Self {
            source,
            cursor: None,
        }
    }

    /// The batch of step `ctx.step`.
    pub fn next(&mut self, ctx: &StepCtx) -> Result<L::Item> {
        let step = ctx.step;
        let fresh = !matches!(&self.cursor, Some((s, _)) if *s == step);
        if fresh {
            self.cursor = None;
        }
        let source = &self.source;
        let (next, it) = self
            .cursor
            .get_or_insert_with(|| (step, source.stream_from(step as u64)));
        match it.next() {
            Some(Ok(b)) => {
                *next += 1;
                Ok(b)
            }
            Some(Err(e)) => {
                self.cursor = None;
                Err(TrainError::Data(e))
            }
            None => {
                self.cursor = None;
                Err(TrainError::BadData(format!(
                    "the batch stream ended at step {step}"
                )))
            }
        }
    }
}

/// Rows per forward pass when a whole data set is evaluated, at most (fewer for large rows:
/// [`xfer_models::eval_rows`]).
const EVAL_CHUNK: usize = 512;

/// Runs `f` over row chunks of `x` with gradients off and concatenates the detached results
/// (evaluation of whole data sets in bounded memory: [`xfer_models::map_rows`]); an error for
/// an empty `x`.
pub(crate) fn chunked(
    x: &candle_core::Tensor,
    f: impl Fn(&candle_core::Tensor) -> Result<candle_core::Tensor>,
) -> Result<candle_core::Tensor> {
    if x.dims().first().copied().unwrap_or(0) == 0 {
        return Err(TrainError::BadData(
            "cannot evaluate an empty data set".into(),
        ));
    }
    xfer_models::map_rows(x, EVAL_CHUNK, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_data::TensorDataset;

    fn loader(seed: u64) -> DataLoader<TensorDataset> {
        let n = 10;
        let ds = TensorDataset::new(
            "toy",
            (0..n * 2).map(|v| v as f32).collect(),
            vec![2],
            (0..n as u32).map(|i| i % 3).collect(),
        )
        .unwrap();
        DataLoader::builder(ds, 3).seed(seed).build().unwrap()
    }

    fn ctx(step: usize) -> StepCtx {
        StepCtx {
            step,
            total_steps: 100,
            epoch: step / 4,
            step_in_epoch: step % 4,
            steps_per_epoch: 4,
            progress: step as f64 / 100.0,
            lr: 0.1,
            seed: 0,
        }
    }

    #[test]
    fn batches_of_a_restarted_stream_equal_the_uninterrupted_ones() {
        let l = loader(5);
        assert_eq!(StepSource::steps_per_epoch(&l), 4);
        let mut a = StepBatches::new(&l);
        let straight: Vec<Vec<usize>> = (0..11).map(|s| a.next(&ctx(s)).unwrap().indices).collect();
        // a "resumed" stream starting at step 6
        let mut b = StepBatches::new(&l);
        for (s, expected) in straight.iter().enumerate().skip(6) {
            let batch = b.next(&ctx(s)).unwrap();
            assert_eq!(&batch.indices, expected);
            assert_eq!(batch.step, s as u64);
        }
        // a jump restarts the stream at the asked step
        assert_eq!(b.next(&ctx(2)).unwrap().indices, straight[2]);
        // epochs are reshuffled: epoch 1 is not epoch 0 again
        let e0: Vec<usize> = straight[0..4].concat();
        let e1: Vec<usize> = straight[4..8].concat();
        assert_ne!(e0, e1);
    }

    #[test]
    fn paired_loader_steps_are_addressable_too() {
        let p = PairedLoader::new(
            DataLoader::builder(loader(1).dataset().clone(), 3)
                .drop_last(true)
                .seed(1)
                .build()
                .unwrap(),
            DataLoader::builder(loader(2).dataset().clone(), 3)
                .drop_last(true)
                .seed(2)
                .build()
                .unwrap(),
        )
        .unwrap();
        let mut a = StepBatches::new(&p);
        let straight: Vec<(Vec<usize>, Vec<usize>)> = (0..7)
            .map(|s| {
                let (x, y) = a.next(&ctx(s)).unwrap();
                (x.indices, y.indices)
            })
            .collect();
        let mut b = StepBatches::new(&p);
        let (x, y) = b.next(&ctx(5)).unwrap();
        assert_eq!((x.indices, y.indices), straight[5].clone());
    }
}
