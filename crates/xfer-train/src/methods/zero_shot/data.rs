//! A zero-shot problem: seen-class training data, held-out seen and unseen samples, and a
//! description of every class.

use candle_core::{Device, Tensor};
use xfer_data::{ClassAttributes, TensorDataset};

use super::{AttributeScaling, TAG_SPLIT};
use crate::trainer::derive_seed;
use crate::{Result, TrainError};

/// A zero-shot problem: training samples of the seen classes, held-out samples of the seen
/// classes, samples of the unseen classes, and a description of every class. Labels are the
/// original class ids (rows of `attributes`).
#[derive(Debug, Clone)]
pub struct ZeroShotData {
    /// Samples of seen classes for training.
    pub train: TensorDataset,
    /// Held-out samples of seen classes (the `s` of generalised ZSL).
    pub seen_test: TensorDataset,
    /// Samples of the unseen classes (never trained on).
    pub unseen_test: TensorDataset,
    /// One description per class (rows indexed by class id).
    pub attributes: ClassAttributes,
    /// The seen class ids, sorted.
    pub seen: Vec<u32>,
    /// The unseen class ids, sorted.
    pub unseen: Vec<u32>,
}

impl ZeroShotData {
    /// Splits `ds` by class: every sample of an `unseen` class goes to `unseen_test`; of each
    /// seen class, a seeded stratified `seen_test_fraction` is held out for `seen_test`.
    /// Checks that `attributes` describes every class and that the descriptions of the
    /// classes in play are distinct (a class described like another cannot be recognised).
    pub fn split(
        ds: &TensorDataset,
        attributes: &ClassAttributes,
        unseen: &[u32],
        seen_test_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        let k = ds.num_classes();
        if attributes.num_classes() < k {
            return Err(TrainError::BadData(format!(
                "`{}` has {k} classes but the attribute table describes {}",
                ds.name(),
                attributes.num_classes()
            )));
        }
        let mut unseen = unseen.to_vec();
        unseen.sort_unstable();
        unseen.dedup();
        if unseen.is_empty() || unseen.len() >= k {
            return Err(TrainError::invalid(
                "unseen",
                format!("{} classes of {k}", unseen.len()),
                "at least one unseen and two seen classes",
            ));
        }
        let (seen_ds, unseen_ds) = xfer_data::class_split(ds, &unseen)?;
        let seen: Vec<u32> = (0..k as u32).filter(|c| !unseen.contains(c)).collect();
        if seen.len() < 2 {
            return Err(TrainError::BadData(
                "zero-shot training needs at least two seen classes".into(),
            ));
        }
        for &c in &unseen {
            if !unseen_ds.labels().contains(&c) {
                return Err(TrainError::BadData(format!(
                    "unseen class {c} has no samples in `{}`",
                    ds.name()
                )));
            }
        }
        let (train, seen_test) = xfer_data::stratified_split(
            &seen_ds,
            seen_test_fraction,
            derive_seed(seed, &[TAG_SPLIT]),
        )?;
        let data = Self {
            train,
            seen_test,
            unseen_test: unseen_ds,
            attributes: attributes.clone(),
            seen,
            unseen,
        };
        data.check()?;
        Ok(data)
    }

    /// Checks the invariants: the training samples are all of seen classes, every class in
    /// play has a description, and no two classes in play share one.
    pub fn check(&self) -> Result<()> {
        let a = self.attributes.num_attributes();
        let classes: Vec<u32> = self.seen.iter().chain(&self.unseen).copied().collect();
        for &c in &classes {
            if self.attributes.row(c as usize).is_none() {
                return Err(TrainError::BadData(format!(
                    "class {c} has no row in the attribute table ({} classes)",
                    self.attributes.num_classes()
                )));
            }
        }
        if let Some(&c) = self.unseen.iter().find(|c| self.seen.contains(c)) {
            return Err(TrainError::BadData(format!(
                "class {c} is both seen and unseen"
            )));
        }
        if let Some(&y) = self.train.labels().iter().find(|y| !self.seen.contains(y)) {
            return Err(TrainError::BadData(format!(
                "the training data holds class {y}, which is not a seen class"
            )));
        }
        for (i, &c) in classes.iter().enumerate() {
            for &d in &classes[i + 1..] {
                if self.attributes.row(c as usize) == self.attributes.row(d as usize) {
                    return Err(TrainError::BadData(format!(
                        "classes {c} and {d} have the same description; zero-shot learning \
                         needs a distinct attribute vector for every class"
                    )));
                }
            }
        }
        let _ = a;
        Ok(())
    }

    /// The class name of `c`, or its id.
    pub fn class_name(&self, c: u32) -> String {
        self.train
            .class_names()
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    }
}

/// The description matrix `(C, A)` after `scaling`, as f32 on `dev`.
pub(super) fn description_matrix(
    attributes: &ClassAttributes,
    scaling: AttributeScaling,
    dev: &Device,
) -> Result<Tensor> {
    let (c, a) = (attributes.num_classes(), attributes.num_attributes());
    let mut v = attributes.values().to_vec();
    if scaling == AttributeScaling::MinMax {
        for j in 0..a {
            let col = (0..c).filter_map(|i| v.get(i * a + j).copied());
            let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
            for i in 0..c {
                if let Some(x) = v.get_mut(i * a + j) {
                    *x = if hi > lo { (*x - lo) / (hi - lo) } else { 0.0 };
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, (c, a), dev)?)
}

pub(super) fn ids_tensor(ids: &[u32], dev: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(ids, ids.len(), dev)?)
}
