//! Seeded splits: stratified train/validation, few-shot support/query, and seen/unseen
//! classes for zero-shot learning. (Dropping labels altogether is
//! [`TensorDataset::unlabeled`].)
//!
//! The splits work on every [`LabeledSet`]: the in-memory [`TensorDataset`], the lazily
//! decoded [`crate::formats::folder::ImageFolder`] (nothing is decoded to split it) and the
//! [`crate::text::TextDataset`].

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use crate::seed::{rng_for, tag};

/// A data set with a label per sample that can be cut into subsets — what the splits need.
pub trait LabeledSet: Sized {
    /// The label of every sample.
    fn labels(&self) -> &[u32];
    /// Number of classes (labels are below it).
    fn num_classes(&self) -> usize;
    /// Class names, one per class.
    fn class_names(&self) -> &[String];
    /// A short name for messages.
    fn name(&self) -> &str;
    /// The samples at `indices`, in that order, keeping the classes.
    fn subset(&self, indices: &[usize]) -> Result<Self>;
}

impl LabeledSet for TensorDataset {
    fn labels(&self) -> &[u32] {
        TensorDataset::labels(self)
    }
    fn num_classes(&self) -> usize {
        TensorDataset::num_classes(self)
    }
    fn class_names(&self) -> &[String] {
        TensorDataset::class_names(self)
    }
    fn name(&self) -> &str {
        TensorDataset::name(self)
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        TensorDataset::subset(self, indices)
    }
}

/// Indices of each class, in data set order (no image is decoded: labels only).
pub fn indices_by_class<D: LabeledSet>(ds: &D) -> Vec<Vec<usize>> {
    by_class(ds)
}

/// Indices of each class, in data set order.
fn by_class<D: LabeledSet>(ds: &D) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); ds.num_classes()];
    for (i, &l) in ds.labels().iter().enumerate() {
        if let Some(v) = out.get_mut(l as usize) {
            v.push(i);
        }
    }
    out
}

/// Splits `ds` into `(train, held_out)` with `fraction` of every class held out (rounded,
/// at least one sample of every class with two or more, and at least one kept for training).
/// Seeded: the same seed gives the same split. Both parts keep the data set's order.
pub fn stratified_split<D: LabeledSet>(ds: &D, fraction: f64, seed: u64) -> Result<(D, D)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::invalid(
            "stratified_split",
            format!("fraction {fraction} must be in (0, 1)"),
        ));
    }
    if ds.labels().is_empty() {
        return Err(DataError::Empty(ds.name().to_string()));
    }
    let mut train = Vec::new();
    let mut held = Vec::new();
    for (c, mut idx) in by_class(ds).into_iter().enumerate() {
        let n = idx.len();
        if n == 0 {
            continue;
        }
        rng_for(seed, &[tag::SPLIT, c as u64]).shuffle(&mut idx);
        let k = if n >= 2 {
            ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
        } else {
            0
        };
        held.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    Ok((ds.subset(&train)?, ds.subset(&held)?))
}

/// `k` labelled examples of every class (the support set) and everything else (the query
/// set), seeded. An error naming the class when a class present in the labels' range has
/// fewer than `k` examples.
pub fn few_shot<D: LabeledSet>(ds: &D, k: usize, seed: u64) -> Result<(D, D)> {
    if k == 0 {
        return Err(DataError::invalid("few_shot", "k must be positive"));
    }
    let mut support = Vec::new();
    let mut query = Vec::new();
    for (c, mut idx) in by_class(ds).into_iter().enumerate() {
        if idx.len() < k {
            return Err(DataError::NotEnoughExamples {
                what: "few_shot",
                class: c as u32,
                have: idx.len(),
                need: k,
            });
        }
        rng_for(seed, &[tag::FEW_SHOT, c as u64]).shuffle(&mut idx);
        support.extend_from_slice(&idx[..k]);
        query.extend_from_slice(&idx[k..]);
    }
    support.sort_unstable();
    query.sort_unstable();
    Ok((ds.subset(&support)?, ds.subset(&query)?))
}

/// Splits by class for zero-shot learning: `(seen, unseen)`, where `unseen` holds every
/// sample whose class is in `unseen_classes`. Labels keep their original class ids, so rows
/// of the class-attribute matrix still line up.
pub fn class_split<D: LabeledSet>(ds: &D, unseen_classes: &[u32]) -> Result<(D, D)> {
    let k = ds.num_classes();
    if let Some(c) = unseen_classes.iter().find(|&&c| c as usize >= k) {
        return Err(DataError::invalid(
            "class_split",
            format!("unseen class {c} out of range 0..{k}"),
        ));
    }
    let mut is_unseen = vec![false; k];
    for &c in unseen_classes {
        is_unseen[c as usize] = true;
    }
    let (mut seen, mut unseen) = (Vec::new(), Vec::new());
    for (i, &l) in ds.labels().iter().enumerate() {
        if is_unseen.get(l as usize).copied().unwrap_or(false) {
            unseen.push(i);
        } else {
            seen.push(i);
        }
    }
    Ok((ds.subset(&seen)?, ds.subset(&unseen)?))
}

/// `n_unseen` classes out of `0..num_classes` drawn without replacement (seeded), sorted.
pub fn random_unseen_classes(num_classes: usize, n_unseen: usize, seed: u64) -> Result<Vec<u32>> {
    if n_unseen == 0 || n_unseen >= num_classes {
        return Err(DataError::invalid(
            "random_unseen_classes",
            format!("{n_unseen} unseen classes of {num_classes}: need 0 < n < number of classes"),
        ));
    }
    let mut p = rng_for(seed, &[tag::UNSEEN]).permutation(num_classes);
    p.truncate(n_unseen);
    p.sort_unstable();
    Ok(p.into_iter().map(|c| c as u32).collect())
}

/// Class ids by name (for `--unseen c1,c2`); an error naming an unknown class.
pub fn classes_by_name<D: LabeledSet>(ds: &D, names: &[&str]) -> Result<Vec<u32>> {
    names
        .iter()
        .map(|n| {
            ds.class_names()
                .iter()
                .position(|c| c == n)
                .map(|p| p as u32)
                .ok_or_else(|| {
                    DataError::invalid(
                        "classes_by_name",
                        format!(
                            "no class `{n}` in `{}` (classes: {})",
                            ds.name(),
                            ds.class_names().join(", ")
                        ),
                    )
                })
        })
        .collect()
}
