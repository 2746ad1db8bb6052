//! [`PairedLoader`]: source and target batches side by side for domain-adversarial training
//! (DANN, MMD, CORAL): equal batch sizes, an epoch as long as the longer side, the shorter
//! side cycling through its own epochs.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::loader::{Batch, Batches, DataLoader};
use crate::seed::data_seed;
use candle_core::Device;

/// Pairs of `(source, target)` batches of equal size.
///
/// Paired epoch `e` has `S = max(source batches, target batches)` steps; both sides take
/// global steps `e·S .. (e+1)·S` of their own endless sequence ([`DataLoader::steps`]), so the
/// longer side sees exactly its epoch `e` and the shorter side cycles, reshuffled every time it
/// wraps. Both loaders must drop partial batches, which makes every pair equal in size.
#[derive(Debug)]
pub struct PairedLoader<S: Dataset, T: Dataset> {
    source: DataLoader<S>,
    target: DataLoader<T>,
}

impl<S: Dataset + 'static, T: Dataset + 'static> PairedLoader<S, T> {
    /// Pairs two loaders; an error unless they have the same batch size and both drop the last
    /// partial batch.
    pub fn new(source: DataLoader<S>, target: DataLoader<T>) -> Result<Self> {
        if source.batch_size() != target.batch_size() {
            return Err(DataError::invalid(
                "PairedLoader",
                format!(
                    "source batch size {} differs from target batch size {}",
                    source.batch_size(),
                    target.batch_size()
                ),
            ));
        }
        if !(source.drop_last() && target.drop_last()) {
            return Err(DataError::invalid(
                "PairedLoader",
                "both loaders must use drop_last(true) so that every pair has equal batch sizes",
            ));
        }
        Ok(Self { source, target })
    }

    /// Shuffling loaders with `drop_last` for both data sets, seeded from `(seed, 0)` and
    /// `(seed, 1)`, on `device`.
    pub fn from_datasets(
        source: S,
        target: T,
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let s = DataLoader::builder(source, batch_size)
            .drop_last(true)
            .seed(data_seed(seed, &[0]))
            .device(device.clone())
            .build()?;
        let t = DataLoader::builder(target, batch_size)
            .drop_last(true)
            .seed(data_seed(seed, &[1]))
            .device(device.clone())
            .build()?;
        Self::new(s, t)
    }

    /// The source loader.
    pub fn source(&self) -> &DataLoader<S> {
        &self.source
    }
    /// The target loader.
    pub fn target(&self) -> &DataLoader<T> {
        &self.target
    }
    /// Steps in one paired epoch: the longer side's batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.source
            .batches_per_epoch()
            .max(self.target.batches_per_epoch())
    }

    /// The pairs of paired epoch `e`.
    pub fn epoch(&self, e: u64) -> PairedBatches {
        let n = self.steps_per_epoch() as u64;
        self.steps(e.saturating_mul(n), Some(n))
    }

    /// `count` pairs (or without end) from global step `start` (for resuming).
    pub fn steps(&self, start: u64, count: Option<u64>) -> PairedBatches {
        PairedBatches {
            source: self.source.steps(start, count),
            target: self.target.steps(start, count),
        }
    }
}

/// An iterator of `Result<(source batch, target batch)>`; it ends after the first error.
#[derive(Debug)]
pub struct PairedBatches {
    source: Batches,
    target: Batches,
}

impl Iterator for PairedBatches {
    type Item = Result<(Batch, Batch)>;
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.source.next()?;
        let t = self.target.next()?;
        Some(match (s, t) {
            (Ok(s), Ok(t)) => Ok((s, t)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }
}
