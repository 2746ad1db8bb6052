//! [`Mapped`]: a data set seen through a fixed per-sample transform — an evaluation preset
//! (resize, centre crop, normalise) applied wherever the data set is read, so that a loader
//! without a transform, an evaluation pass or a feature cache all see the same inputs.

use std::sync::Arc;

use xfer_ops::SeededRng;

use crate::dataset::{Dataset, Sample};
use crate::error::Result;
use crate::split::LabeledSet;
use crate::transform::Transform;

/// `inner` with `transform` applied to every sample on read. The transform is meant to be
/// deterministic (an evaluation chain); a random one draws from a generator seeded by the
/// sample's index only, so a sample always reads the same.
#[derive(Debug, Clone)]
pub struct Mapped<D> {
    inner: D,
    transform: Arc<dyn Transform>,
    shape: Vec<usize>,
}

impl<D: Dataset> Mapped<D> {
    /// `inner` read through `transform`; an error when the transform cannot take the data
    /// set's sample shape.
    pub fn new(inner: D, transform: Arc<dyn Transform>) -> Result<Self> {
        let shape = transform.output_shape(inner.sample_shape())?;
        Ok(Self {
            inner,
            transform,
            shape,
        })
    }

    /// The data set underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn map(&self, i: usize, sample: Sample, shape: &[usize]) -> Result<Sample> {
        let mut rng = SeededRng::new(i as u64);
        Ok(Sample {
            x: self.transform.apply(&sample.x, shape, &mut rng)?,
            ..sample
        })
    }
}

impl<D: Dataset> Dataset for Mapped<D> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn get(&self, i: usize) -> Result<Sample> {
        match self.inner.get_natural(i)? {
            Some((s, shape)) => self.map(i, s, &shape),
            None => {
                let s = self.inner.get(i)?;
                self.map(i, s, self.inner.sample_shape())
            }
        }
    }
    fn get_natural(&self, i: usize) -> Result<Option<(Sample, Vec<usize>)>> {
        match self.inner.get_natural(i)? {
            Some((s, shape)) => Ok(Some((self.map(i, s, &shape)?, self.shape.clone()))),
            None => Ok(None),
        }
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn has_labels(&self) -> bool {
        self.inner.has_labels()
    }
    fn is_lazy(&self) -> bool {
        self.inner.is_lazy()
    }
}

impl<D: Dataset + LabeledSet> LabeledSet for Mapped<D> {
    fn labels(&self) -> &[u32] {
        self.inner.labels()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
    fn name(&self) -> &str {
        LabeledSet::name(&self.inner)
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        Ok(Self {
            inner: self.inner.subset(indices)?,
            transform: self.transform.clone(),
            shape: self.shape.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::TensorDataset;
    use crate::transform::Normalize;

    #[test]
    fn mapped_reads_every_sample_through_the_transform_and_keeps_labels() {
        let ds = TensorDataset::new("t", vec![1.0, 2.0, 3.0, 4.0], vec![2], vec![0, 1]).unwrap();
        let norm: Arc<dyn Transform> = Arc::new(Normalize::new(vec![1.0], vec![2.0]).unwrap());
        let m = Mapped::new(ds, norm).unwrap();
        assert_eq!(m.sample_shape(), [2]);
        assert_eq!(m.get(1).unwrap().x, [1.0, 1.5]);
        assert_eq!(m.get(1).unwrap().y, Some(1));
        let s = m.subset(&[1]).unwrap();
        assert_eq!(s.get(0).unwrap().x, [1.0, 1.5]);
        assert_eq!(LabeledSet::labels(&s), [1]);
        assert!(m.get(2).is_err());
    }
}
