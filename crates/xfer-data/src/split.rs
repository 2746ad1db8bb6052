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
    /// Whether the samples have labels (`false` for `images:DIR`, `csv:PATH:label=none`:
    /// then [`LabeledSet::labels`] is empty and the labelled-only splits refuse it).
    fn is_labeled(&self) -> bool {
        true
    }
}

/// [`DataError::Unlabeled`] when `ds` has no labels: `what` needs them.
pub fn require_labels<D: LabeledSet>(ds: &D, what: &'static str) -> Result<()> {
    if ds.is_labeled() {
        Ok(())
    } else {
        Err(DataError::Unlabeled {
            name: ds.name().to_string(),
            what,
        })
    }
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

impl LabeledSet for crate::dataset::UnlabeledDataset {
    fn labels(&self) -> &[u32] {
        &[]
    }
    fn num_classes(&self) -> usize {
        0
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn name(&self) -> &str {
        crate::dataset::Dataset::name(self)
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        crate::dataset::UnlabeledDataset::subset(self, indices)
    }
    fn is_labeled(&self) -> bool {
        false
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
    require_labels(ds, "a stratified split")?;
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

/// How many labelled examples of every class train (`--shots`): `K` per class, a fraction
/// of every class, or all of them. Text form (`FromStr`/`Display`): `5`, `0.2`, `all`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shots {
    /// `K` examples of every class (all of a class's examples when it has fewer, with a
    /// warning naming the class).
    PerClass(usize),
    /// Every labelled example.
    All,
    /// This fraction of every class, in `(0, 1]` (rounded, at least one per class).
    Fraction(f64),
}

impl std::str::FromStr for Shots {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad = || {
            DataError::invalid(
                "shots",
                format!(
                    "`{s}`: expected K (examples per class, at least 1), a fraction in (0, 1] \
                     such as 0.2, or `all`"
                ),
            )
        };
        if t.eq_ignore_ascii_case("all") {
            return Ok(Shots::All);
        }
        if let Ok(k) = t.parse::<usize>() {
            return if k == 0 {
                Err(bad())
            } else {
                Ok(Shots::PerClass(k))
            };
        }
        match t.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(Shots::Fraction(f)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Shots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shots::PerClass(k) => write!(f, "{k}"),
            Shots::All => write!(f, "all"),
            Shots::Fraction(x) => write!(f, "{x}"),
        }
    }
}

impl Shots {
    /// How many of a class's `n` examples train (before the warning of a short class).
    fn take(&self, n: usize) -> usize {
        match *self {
            Shots::PerClass(k) => k.min(n),
            Shots::All => n,
            Shots::Fraction(f) => ((n as f64 * f).round() as usize).clamp(1, n.max(1)).min(n),
        }
    }
}

/// The training examples `shots` names (the support set) and everything else (the query
/// set), seeded: per class, a seeded shuffle and its first examples. A class with fewer than
/// `K` examples (`Shots::PerClass(K)`) gives all it has, with one `tracing` warning naming
/// it. Both parts keep the data set's order. An error for data without labels.
pub fn split_shots<D: LabeledSet>(ds: &D, shots: Shots, seed: u64) -> Result<(D, D)> {
    require_labels(ds, "a few-shot draw (--shots)")?;
    match shots {
        Shots::PerClass(0) => return Err(DataError::invalid("few_shot", "k must be positive")),
        Shots::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
            return Err(DataError::invalid(
                "shots",
                format!("fraction {f} must be in (0, 1]"),
            ));
        }
        _ => {}
    }
    let mut support = Vec::new();
    let mut query = Vec::new();
    for (c, mut idx) in by_class(ds).into_iter().enumerate() {
        let k = shots.take(idx.len());
        if let Shots::PerClass(want) = shots
            && idx.len() < want
        {
            let name = ds.class_names().get(c).map_or("?", String::as_str);
            tracing::warn!(
                "{}: class {c} (`{name}`) has {} example(s), fewer than --shots {want}: all of \
                 them train, none is left for its test",
                ds.name(),
                idx.len()
            );
        }
        rng_for(seed, &[tag::FEW_SHOT, c as u64]).shuffle(&mut idx);
        support.extend_from_slice(&idx[..k]);
        query.extend_from_slice(&idx[k..]);
    }
    support.sort_unstable();
    query.sort_unstable();
    Ok((ds.subset(&support)?, ds.subset(&query)?))
}

/// `k` labelled examples of every class (the support set) and everything else (the query
/// set), seeded: [`split_shots`] with [`Shots::PerClass`] (a class with fewer than `k`
/// examples gives all it has, with a warning).
pub fn few_shot<D: LabeledSet>(ds: &D, k: usize, seed: u64) -> Result<(D, D)> {
    split_shots(ds, Shots::PerClass(k), seed)
}

/// Splits by class for zero-shot learning: `(seen, unseen)`, where `unseen` holds every
/// sample whose class is in `unseen_classes`. Labels keep their original class ids, so rows
/// of the class-attribute matrix still line up.
pub fn class_split<D: LabeledSet>(ds: &D, unseen_classes: &[u32]) -> Result<(D, D)> {
    require_labels(ds, "a split by class")?;
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
