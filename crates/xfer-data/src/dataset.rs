//! The [`Dataset`] trait and the in-memory data sets: [`TensorDataset`] (features, labels,
//! optional domain ids, class names and a class-attribute matrix) and [`UnlabeledDataset`]
//! (the same features with the labels gone, for methods that must not see them).

use crate::error::{DataError, Result};
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// One sample: its features (row-major, in the data set's sample shape), and its label and
/// domain id where the data set has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Features, `sample_shape().iter().product()` values.
    pub x: Vec<f32>,
    /// Class id; `None` for unlabelled data.
    pub y: Option<u32>,
    /// Domain id, where the data set records one.
    pub domain: Option<u32>,
}

/// A data set: a length and a sample by index. Implemented by [`TensorDataset`] and
/// [`UnlabeledDataset`]; implement it for data that is decoded lazily.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape of one sample's features, e.g. `[2]`, `[1, 8, 8]`, `[3, 16, 16]`.
    fn sample_shape(&self) -> &[usize];
    /// Sample `i`; an error (not a panic) when `i >= len()`.
    fn get(&self, i: usize) -> Result<Sample>;
    /// A short name for messages (the file or embedded set it came from).
    fn name(&self) -> &str;
    /// Whether [`Dataset::get`] returns labels.
    fn has_labels(&self) -> bool;
    /// Sample `i` at its own shape, with that shape — what the [`crate::DataLoader`] hands to
    /// its transform. A lazily decoded image keeps its size here (a transform such as
    /// [`crate::transform::RandomResizedCrop`] brings every image to one size), and a data set
    /// that skips unreadable files returns `Ok(None)` for one (the loader leaves it out of its
    /// batch). Default: `Some((get(i), sample_shape()))`.
    fn get_natural(&self, i: usize) -> Result<Option<(Sample, Vec<usize>)>> {
        Ok(Some((self.get(i)?, self.sample_shape().to_vec())))
    }
    /// Whether samples are decoded on demand (files), so that a loader should decode them in
    /// worker threads and prefetch by default. Default: `false` (in memory).
    fn is_lazy(&self) -> bool {
        false
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn sample_shape(&self) -> &[usize] {
        (**self).sample_shape()
    }
    fn get(&self, i: usize) -> Result<Sample> {
        (**self).get(i)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn has_labels(&self) -> bool {
        (**self).has_labels()
    }
    fn get_natural(&self, i: usize) -> Result<Option<(Sample, Vec<usize>)>> {
        (**self).get_natural(i)
    }
    fn is_lazy(&self) -> bool {
        (**self).is_lazy()
    }
}

/// A class-attribute matrix: one row of `names.len()` values per class (zero-shot learning).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassAttributes {
    names: Vec<String>,
    values: Vec<f32>,
    num_classes: usize,
}

impl ClassAttributes {
    /// A matrix of `num_classes` rows, each `names.len()` values, row-major.
    pub fn new(names: Vec<String>, values: Vec<f32>, num_classes: usize) -> Result<Self> {
        if names.is_empty() || num_classes == 0 {
            return Err(DataError::shape(
                "class attributes",
                format!(
                    "{} attribute names for {num_classes} classes: both must be positive",
                    names.len()
                ),
            ));
        }
        if values.len() != names.len() * num_classes {
            return Err(DataError::shape(
                "class attributes",
                format!(
                    "{} values for {num_classes} classes × {} attributes (= {})",
                    values.len(),
                    names.len(),
                    names.len() * num_classes
                ),
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(DataError::shape(
                "class attributes",
                format!(
                    "value of class {}, attribute `{}` is not finite",
                    i / names.len(),
                    names[i % names.len()]
                ),
            ));
        }
        Ok(Self {
            names,
            values,
            num_classes,
        })
    }

    /// For constant tables inside the crate, valid by construction.
    pub(crate) fn from_trusted(names: Vec<String>, values: Vec<f32>, num_classes: usize) -> Self {
        debug_assert_eq!(values.len(), names.len() * num_classes);
        Self {
            names,
            values,
            num_classes,
        }
    }

    /// Attribute names (columns).
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// Number of attributes (columns).
    pub fn num_attributes(&self) -> usize {
        self.names.len()
    }
    /// Number of classes (rows).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// All values, row-major `(num_classes, num_attributes)`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// The attribute row of class `c`, `None` if out of range.
    pub fn row(&self, c: usize) -> Option<&[f32]> {
        self.values.get(row_range(c, self.names.len())?)
    }
    /// The matrix as a `(num_classes, num_attributes)` f32 tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.values,
            (self.num_classes, self.names.len()),
            device,
        )?)
    }
    /// The rows of the given classes, in that order, as a new matrix.
    pub fn select(&self, classes: &[u32]) -> Result<Self> {
        let mut values = Vec::with_capacity(classes.len() * self.names.len());
        for &c in classes {
            let row = self.row(c as usize).ok_or_else(|| {
                DataError::invalid(
                    "ClassAttributes::select",
                    format!("class {c} out of range 0..{}", self.num_classes),
                )
            })?;
            values.extend_from_slice(row);
        }
        Self::new(self.names.clone(), values, classes.len())
    }
    /// Each row scaled to unit L2 norm (rows of zeros stay zero).
    pub fn l2_normalized(&self) -> Self {
        let a = self.names.len();
        let mut values = self.values.clone();
        for row in values.chunks_mut(a) {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|v| *v /= n);
            }
        }
        Self {
            names: self.names.clone(),
            values,
            num_classes: self.num_classes,
        }
    }
}

/// An in-memory labelled data set: features `(N, ...)` as f32, labels `u32`, and optionally
/// domain ids, class names and a class-attribute matrix.
#[derive(Debug, Clone)]
pub struct TensorDataset {
    name: String,
    features: Vec<f32>,
    shape: Vec<usize>,
    labels: Vec<u32>,
    num_classes: usize,
    class_names: Vec<String>,
    domains: Option<Vec<u32>>,
    attributes: Option<ClassAttributes>,
}

fn check_shape(name: &str, n_values: usize, shape: &[usize], n: usize) -> Result<()> {
    let per: usize = shape.iter().product();
    if shape.is_empty() || per == 0 {
        return Err(DataError::shape(
            name,
            format!("sample shape {shape:?} must be non-empty with no zero dimension"),
        ));
    }
    match per.checked_mul(n) {
        Some(total) if total == n_values => Ok(()),
        _ => Err(DataError::shape(
            name,
            format!(
                "{n_values} feature values do not make {n} samples of shape {shape:?} ({per} values each)"
            ),
        )),
    }
}

/// The largest number of classes a data set may have (a guard against absurd labels in
/// untrusted files: a label of 4·10⁹ would otherwise allocate 4·10⁹ class names).
pub const MAX_CLASSES: usize = 1 << 20;

fn default_class_names(k: usize) -> Vec<String> {
    (0..k).map(|c| c.to_string()).collect()
}

impl TensorDataset {
    /// A data set from row-major features (`labels.len()` samples of `sample_shape`) and labels;
    /// the number of classes is `max(label) + 1` and the class names `"0"`, `"1"`, ....
    /// May be empty (file readers refuse empty files themselves; loaders refuse empty sets).
    pub fn new(
        name: impl Into<String>,
        features: Vec<f32>,
        sample_shape: Vec<usize>,
        labels: Vec<u32>,
    ) -> Result<Self> {
        let name = name.into();
        check_shape(&name, features.len(), &sample_shape, labels.len())?;
        if let Some(i) = labels.iter().position(|&l| l as usize >= MAX_CLASSES) {
            return Err(DataError::LabelOutOfRange {
                source_name: name,
                index: i,
                label: i64::from(labels[i]),
                num_classes: MAX_CLASSES,
            });
        }
        let num_classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
        Ok(Self {
            name,
            features,
            shape: sample_shape,
            labels,
            num_classes,
            class_names: default_class_names(num_classes),
            domains: None,
            attributes: None,
        })
    }

    /// Declares the number of classes (classes absent from this sample of data still count);
    /// an error naming the first sample whose label is `>= num_classes`.
    pub fn with_num_classes(mut self, num_classes: usize) -> Result<Self> {
        if num_classes > MAX_CLASSES {
            return Err(DataError::invalid(
                "TensorDataset::with_num_classes",
                format!("{num_classes} classes: at most {MAX_CLASSES} are supported"),
            ));
        }
        if let Some(i) = self.labels.iter().position(|&l| l as usize >= num_classes) {
            return Err(DataError::LabelOutOfRange {
                source_name: self.name.clone(),
                index: i,
                label: i64::from(self.labels[i]),
                num_classes,
            });
        }
        self.num_classes = num_classes;
        if self.class_names.len() != num_classes {
            self.class_names = default_class_names(num_classes);
        }
        if let Some(a) = &self.attributes
            && a.num_classes() != num_classes
        {
            self.attributes = None;
        }
        Ok(self)
    }

    /// Names the classes; their number becomes the number of classes.
    pub fn with_class_names(self, names: Vec<String>) -> Result<Self> {
        let mut s = self.with_num_classes(names.len())?;
        s.class_names = names;
        Ok(s)
    }

    /// Attaches a domain id to every sample.
    pub fn with_domains(mut self, domains: Vec<u32>) -> Result<Self> {
        if domains.len() != self.labels.len() {
            return Err(DataError::shape(
                &self.name,
                format!(
                    "{} domain ids for {} samples",
                    domains.len(),
                    self.labels.len()
                ),
            ));
        }
        self.domains = Some(domains);
        Ok(self)
    }

    /// Attaches the same domain id to every sample.
    pub fn with_domain(self, domain: u32) -> Self {
        let n = self.labels.len();
        Self {
            domains: Some(vec![domain; n]),
            ..self
        }
    }

    /// Attaches a class-attribute matrix (one row per class).
    pub fn with_attributes(mut self, attributes: ClassAttributes) -> Result<Self> {
        if attributes.num_classes() != self.num_classes {
            return Err(DataError::shape(
                &self.name,
                format!(
                    "attribute matrix has {} rows for {} classes",
                    attributes.num_classes(),
                    self.num_classes
                ),
            ));
        }
        self.attributes = Some(attributes);
        Ok(self)
    }

    /// Renames the data set (used in messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// All features, row-major `(N, sample_shape...)`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }
    /// The features of sample `i`.
    pub fn features_of(&self, i: usize) -> Option<&[f32]> {
        self.features.get(row_range(i, self.feature_dim())?)
    }
    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// Domain ids, if attached.
    pub fn domains(&self) -> Option<&[u32]> {
        self.domains.as_deref()
    }
    /// The shape of one sample, e.g. `[1, 8, 8]`.
    pub fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of values per sample.
    pub fn feature_dim(&self) -> usize {
        self.shape.iter().product()
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The data set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// Class names, one per class.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// The class-attribute matrix, if any.
    pub fn attributes(&self) -> Option<&ClassAttributes> {
        self.attributes.as_ref()
    }
    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes];
        for &l in &self.labels {
            if let Some(slot) = c.get_mut(l as usize) {
                *slot += 1;
            }
        }
        c
    }
    /// `(min, max)` over all features; `None` when empty.
    pub fn feature_range(&self) -> Option<(f32, f32)> {
        feature_range(&self.features)
    }

    /// The samples at `indices` (in that order; repeats allowed), keeping classes, names and
    /// attributes.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let d = self.feature_dim();
        let n = self.labels.len();
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        let mut domains = self
            .domains
            .as_ref()
            .map(|_| Vec::with_capacity(indices.len()));
        for &i in indices {
            let (Some(x), Some(&y)) = (self.features_of(i), self.labels.get(i)) else {
                return Err(DataError::IndexOutOfRange {
                    what: self.name.clone(),
                    index: i,
                    len: n,
                });
            };
            features.extend_from_slice(x);
            labels.push(y);
            if let (Some(out), Some(src)) = (domains.as_mut(), self.domains.as_ref())
                && let Some(&dm) = src.get(i)
            {
                out.push(dm);
            }
        }
        Ok(Self {
            name: self.name.clone(),
            features,
            shape: self.shape.clone(),
            labels,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            domains,
            attributes: self.attributes.clone(),
        })
    }

    /// The same data with a new per-sample shape of the same size (e.g. `[64]` ↔ `[1, 8, 8]`).
    pub fn reshape(mut self, sample_shape: Vec<usize>) -> Result<Self> {
        let per: usize = sample_shape.iter().product();
        if per != self.feature_dim() || sample_shape.is_empty() {
            return Err(DataError::shape(
                &self.name,
                format!(
                    "cannot reshape samples of shape {:?} to {sample_shape:?}",
                    self.shape
                ),
            ));
        }
        self.shape = sample_shape;
        Ok(self)
    }

    /// Samples as flat feature vectors (`[C, H, W]` → `[C·H·W]`).
    pub fn flatten(mut self) -> Self {
        self.shape = vec![self.feature_dim()];
        self
    }

    /// Every feature multiplied by `factor` (a missing scale is the most common mistake when
    /// two domains come from different files).
    pub fn scale(mut self, factor: f32) -> Self {
        self.features.iter_mut().for_each(|v| *v *= factor);
        self
    }

    /// Applies `f` to every sample's features in place (`f(sample_index, features)`).
    pub fn map_features(mut self, mut f: impl FnMut(usize, &mut [f32])) -> Self {
        let d = self.feature_dim();
        for (i, x) in self.features.chunks_mut(d).enumerate() {
            f(i, x);
        }
        self
    }

    /// Replaces the features with new ones of a new per-sample shape (same sample count),
    /// keeping labels, domains, names and attributes.
    pub fn with_features(mut self, features: Vec<f32>, sample_shape: Vec<usize>) -> Result<Self> {
        check_shape(&self.name, features.len(), &sample_shape, self.labels.len())?;
        self.features = features;
        self.shape = sample_shape;
        Ok(self)
    }

    /// The data sets one after another (same sample shape required); domain ids become
    /// `0, 1, ...` by position unless every part already carries its own; the number of
    /// classes is the largest of the parts'.
    pub fn concat(parts: &[&TensorDataset]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(DataError::Empty("TensorDataset::concat".into()));
        };
        let keep_domains = parts.iter().all(|p| p.domains.is_some());
        let mut features = Vec::new();
        let mut labels = Vec::new();
        let mut domains = Vec::new();
        let mut num_classes = 0;
        for (k, p) in parts.iter().enumerate() {
            if p.shape != first.shape {
                return Err(DataError::shape(
                    "TensorDataset::concat",
                    format!(
                        "`{}` has samples of shape {:?}, `{}` of shape {:?}",
                        first.name, first.shape, p.name, p.shape
                    ),
                ));
            }
            features.extend_from_slice(&p.features);
            labels.extend_from_slice(&p.labels);
            match (&p.domains, keep_domains) {
                (Some(d), true) => domains.extend_from_slice(d),
                _ => domains.extend(std::iter::repeat_n(k as u32, p.labels.len())),
            }
            num_classes = num_classes.max(p.num_classes);
        }
        let name = parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let mut out = Self::new(name, features, first.shape.clone(), labels)?
            .with_num_classes(num_classes)?
            .with_domains(domains)?;
        if first.num_classes == num_classes {
            out.class_names = first.class_names.clone();
            out.attributes = first.attributes.clone();
        }
        Ok(out)
    }

    /// All features as one `(N, sample_shape...)` f32 tensor and the labels as `(N,)` u32.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut dims = vec![self.labels.len()];
        dims.extend_from_slice(&self.shape);
        let x = Tensor::from_slice(&self.features, dims, device)?;
        let y = Tensor::from_slice(&self.labels, self.labels.len(), device)?;
        Ok((x, y))
    }

    /// The features without the labels: what an unsupervised method may see of a target
    /// domain. The labels are dropped, not hidden; keep this data set to report accuracy.
    pub fn unlabeled(&self) -> UnlabeledDataset {
        UnlabeledDataset {
            name: format!("{} (unlabelled)", self.name),
            features: self.features.clone(),
            shape: self.shape.clone(),
            domains: self.domains.clone(),
        }
    }

    /// Consumes the data set into `(features, sample_shape, labels)`.
    pub fn into_parts(self) -> (Vec<f32>, Vec<usize>, Vec<u32>) {
        (self.features, self.shape, self.labels)
    }
}

/// The range of row `i` of width `d`, `None` on overflow.
pub(crate) fn row_range(i: usize, d: usize) -> Option<std::ops::Range<usize>> {
    let start = i.checked_mul(d)?;
    Some(start..start.checked_add(d)?)
}

pub(crate) fn feature_range(v: &[f32]) -> Option<(f32, f32)> {
    let mut it = v.iter().copied().filter(|x| x.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn get(&self, i: usize) -> Result<Sample> {
        match (self.features_of(i), self.labels.get(i)) {
            (Some(x), Some(&y)) => Ok(Sample {
                x: x.to_vec(),
                y: Some(y),
                domain: self.domains.as_ref().and_then(|d| d.get(i).copied()),
            }),
            _ => Err(DataError::IndexOutOfRange {
                what: self.name.clone(),
                index: i,
                len: self.labels.len(),
            }),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn has_labels(&self) -> bool {
        true
    }
}

/// Features without labels. There is no way to get labels out of it: give this (not the
/// [`TensorDataset`]) to a method that must not peek at the target labels.
#[derive(Debug, Clone)]
pub struct UnlabeledDataset {
    name: String,
    features: Vec<f32>,
    shape: Vec<usize>,
    domains: Option<Vec<u32>>,
}

impl UnlabeledDataset {
    /// Unlabelled samples of `sample_shape` from row-major features.
    pub fn new(
        name: impl Into<String>,
        features: Vec<f32>,
        sample_shape: Vec<usize>,
    ) -> Result<Self> {
        let name = name.into();
        let per: usize = sample_shape.iter().product();
        if sample_shape.is_empty() || per == 0 || !features.len().is_multiple_of(per) {
            return Err(DataError::shape(
                &name,
                format!(
                    "{} feature values are not a whole number of samples of shape {sample_shape:?}",
                    features.len()
                ),
            ));
        }
        Ok(Self {
            name,
            features,
            shape: sample_shape,
            domains: None,
        })
    }
    /// All features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }
    /// Number of values per sample.
    pub fn feature_dim(&self) -> usize {
        self.shape.iter().product()
    }
    /// `(min, max)` over all features; `None` when empty.
    pub fn feature_range(&self) -> Option<(f32, f32)> {
        feature_range(&self.features)
    }
    /// Renames the data set (used in messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Every feature multiplied by `factor`.
    pub fn scale(mut self, factor: f32) -> Self {
        self.features.iter_mut().for_each(|v| *v *= factor);
        self
    }
    /// Samples become flat feature vectors.
    pub fn flatten(mut self) -> Self {
        self.shape = vec![self.feature_dim()];
        self
    }
    /// The samples at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let d = self.feature_dim();
        let mut features = Vec::with_capacity(indices.len().saturating_mul(d));
        let mut domains = self
            .domains
            .as_ref()
            .map(|_| Vec::with_capacity(indices.len()));
        for &i in indices {
            let row = row_range(i, d).and_then(|r| self.features.get(r));
            let Some(row) = row else {
                return Err(DataError::IndexOutOfRange {
                    what: self.name.clone(),
                    index: i,
                    len: self.len(),
                });
            };
            features.extend_from_slice(row);
            if let (Some(out), Some(src)) = (domains.as_mut(), self.domains.as_ref()) {
                out.push(src.get(i).copied().unwrap_or(0));
            }
        }
        Ok(Self {
            name: self.name.clone(),
            features,
            shape: self.shape.clone(),
            domains,
        })
    }
    /// All features as one `(N, sample_shape...)` f32 tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let mut dims = vec![self.len()];
        dims.extend_from_slice(&self.shape);
        Ok(Tensor::from_slice(&self.features, dims, device)?)
    }
}

impl Dataset for UnlabeledDataset {
    fn len(&self) -> usize {
        self.features
            .len()
            .checked_div(self.feature_dim())
            .unwrap_or(0)
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn get(&self, i: usize) -> Result<Sample> {
        match row_range(i, self.feature_dim()).and_then(|r| self.features.get(r)) {
            Some(x) => Ok(Sample {
                x: x.to_vec(),
                y: None,
                domain: self.domains.as_ref().and_then(|v| v.get(i).copied()),
            }),
            None => Err(DataError::IndexOutOfRange {
                what: self.name.clone(),
                index: i,
                len: self.len(),
            }),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn has_labels(&self) -> bool {
        false
    }
}
