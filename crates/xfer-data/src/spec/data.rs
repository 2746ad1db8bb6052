//! [`Data`]: what [`super::DataSpec::load_data`] gives — in memory, a lazily decoded image
//! folder, text, or unlabelled inputs.

use crate::dataset::{TensorDataset, UnlabeledDataset};
use crate::error::{DataError, Result};
use crate::formats::folder::ImageFolder;
use crate::split::LabeledSet;
use crate::text::TextDataset;

/// A loaded data set, of the kind its specification names ([`super::DataSpec::load_data`]).
#[derive(Debug, Clone)]
pub enum Data {
    /// In memory: features and labels.
    Tensors(TensorDataset),
    /// An image folder decoded on demand.
    Images(ImageFolder),
    /// Texts, labelled or not (tokenised by the model's tokenizer, not here).
    Text(TextDataset),
    /// In memory, without labels (`csv:PATH:label=none`, `images:DIR:eager`).
    Unlabeled(UnlabeledDataset),
}

impl Data {
    /// The in-memory data set, decoding an image folder whole if need be; an error for
    /// text (its features come from a tokenizer).
    pub fn into_tensors(self) -> Result<TensorDataset> {
        match self {
            Data::Tensors(t) => Ok(t),
            Data::Images(f) => f.materialize(),
            Data::Text(t) => Err(DataError::invalid(
                "Data::into_tensors",
                format!("`{}` is text: tokenise it into features first", t.name()),
            )),
            Data::Unlabeled(u) => Err(DataError::Unlabeled {
                name: crate::dataset::Dataset::name(&u).to_string(),
                what: "a labelled in-memory data set",
            }),
        }
    }
    /// The inputs in memory without labels (an image folder decoded whole, labels dropped);
    /// an error for text.
    pub fn into_unlabeled(self) -> Result<UnlabeledDataset> {
        match self {
            Data::Tensors(t) => {
                let name = t.name().to_string();
                Ok(t.unlabeled().with_name(name))
            }
            Data::Images(f) => f.materialize_unlabeled(),
            Data::Unlabeled(u) => Ok(u),
            Data::Text(t) => Err(DataError::invalid(
                "Data::into_unlabeled",
                format!("`{}` is text: tokenise it into features first", t.name()),
            )),
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Data::Tensors(t) => t.len(),
            Data::Images(f) => f.len(),
            Data::Text(t) => t.len(),
            Data::Unlabeled(u) => crate::dataset::Dataset::len(u),
        }
    }
    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The nominal sample shape (an image folder's samples keep their own size until a
    /// transform brings them to one); `None` for text.
    pub fn sample_shape(&self) -> Option<&[usize]> {
        use crate::dataset::Dataset;
        match self {
            Data::Tensors(t) => Some(t.sample_shape()),
            Data::Images(f) => Some(f.sample_shape()),
            Data::Unlabeled(u) => Some(u.sample_shape()),
            Data::Text(_) => None,
        }
    }
}

impl LabeledSet for Data {
    fn labels(&self) -> &[u32] {
        match self {
            Data::Tensors(t) => t.labels(),
            Data::Images(f) => f.labels(),
            Data::Text(t) => t.labels(),
            Data::Unlabeled(_) => &[],
        }
    }
    fn num_classes(&self) -> usize {
        match self {
            Data::Tensors(t) => t.num_classes(),
            Data::Images(f) => f.num_classes(),
            Data::Text(t) => t.num_classes(),
            Data::Unlabeled(_) => 0,
        }
    }
    fn class_names(&self) -> &[String] {
        match self {
            Data::Tensors(t) => t.class_names(),
            Data::Images(f) => f.class_names(),
            Data::Text(t) => t.class_names(),
            Data::Unlabeled(_) => &[],
        }
    }
    fn name(&self) -> &str {
        match self {
            Data::Tensors(t) => t.name(),
            Data::Images(f) => f.name(),
            Data::Text(t) => t.name(),
            Data::Unlabeled(u) => crate::dataset::Dataset::name(u),
        }
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        Ok(match self {
            Data::Tensors(t) => Data::Tensors(t.subset(indices)?),
            Data::Images(f) => Data::Images(f.subset(indices)?),
            Data::Text(t) => Data::Text(t.subset(indices)?),
            Data::Unlabeled(u) => Data::Unlabeled(u.subset(indices)?),
        })
    }
    fn is_labeled(&self) -> bool {
        match self {
            Data::Tensors(_) => true,
            Data::Images(f) => f.is_labeled(),
            Data::Text(t) => t.is_labeled(),
            Data::Unlabeled(_) => false,
        }
    }
}

/// Features, their sample shape, and the labels when there are some.
type ReadThrough = (Vec<f32>, Vec<usize>, Option<Vec<u32>>);

/// Every sample of `ds` read through `transform` (a deterministic evaluation chain), in
/// memory: features of the transform's output shape, and the labels when `ds` has them.
fn read_through<D: crate::dataset::Dataset + Clone>(
    ds: &D,
    transform: std::sync::Arc<dyn crate::transform::Transform>,
) -> Result<ReadThrough> {
    use crate::dataset::Dataset;
    let mapped = crate::mapped::Mapped::new(ds.clone(), transform)?;
    let shape = mapped.sample_shape().to_vec();
    let per: usize = shape.iter().product();
    let mut features = Vec::with_capacity(per.saturating_mul(mapped.len()));
    let mut labels = ds.has_labels().then(|| Vec::with_capacity(mapped.len()));
    for i in 0..mapped.len() {
        let s = mapped.get(i)?;
        features.extend_from_slice(&s.x);
        if let (Some(l), Some(y)) = (labels.as_mut(), s.y) {
            l.push(y);
        }
    }
    Ok((features, shape, labels))
}

impl Data {
    /// Every sample read through `transform` (e.g. a backbone's evaluation preset: resize
    /// the short side, centre crop, normalise) into memory: [`Data::Tensors`] for labelled
    /// data (class names kept), [`Data::Unlabeled`] otherwise. Images of different sizes are
    /// fine when the transform brings them to one. An error for text.
    pub fn preprocessed(
        &self,
        transform: std::sync::Arc<dyn crate::transform::Transform>,
    ) -> Result<Data> {
        let name = self.name().to_string();
        let (features, shape, labels) = match self {
            Data::Tensors(t) => read_through(t, transform)?,
            Data::Images(f) => read_through(f, transform)?,
            Data::Unlabeled(u) => read_through(u, transform)?,
            Data::Text(t) => {
                return Err(DataError::invalid(
                    "Data::preprocessed",
                    format!("`{}` is text: an image transform does not apply", t.name()),
                ));
            }
        };
        Ok(match labels {
            Some(l) => Data::Tensors(
                TensorDataset::new(name, features, shape, l)?
                    .with_class_names(self.class_names().to_vec())?,
            ),
            None => Data::Unlabeled(UnlabeledDataset::new(name, features, shape)?),
        })
    }
}
