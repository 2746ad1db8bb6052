//! [`TextDataset`]: labelled strings (a text column and a label column of a CSV/TSV file,
//! `csv:PATH:text=COL,label=COL`). Tokenising is the model's business (xfer-models'
//! tokenizer turns the strings of a batch into token ids); this crate keeps the strings, the
//! labels and the class names, and splits them like any other [`LabeledSet`].

use crate::dataset::MAX_CLASSES;
use crate::error::{DataError, Result};
use crate::split::LabeledSet;

/// Labelled texts: one string and one class id per sample, with class names.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    name: String,
    texts: Vec<String>,
    labels: Vec<u32>,
    class_names: Vec<String>,
    /// `false`: texts without labels (`labels` and `class_names` empty).
    labeled: bool,
}

impl TextDataset {
    /// Texts and their labels (same length); classes are `0..=max label`, named `"0"`, `"1"`, ....
    pub fn new(name: impl Into<String>, texts: Vec<String>, labels: Vec<u32>) -> Result<Self> {
        let name = name.into();
        if texts.len() != labels.len() {
            return Err(DataError::shape(
                &name,
                format!("{} texts for {} labels", texts.len(), labels.len()),
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= MAX_CLASSES) {
            return Err(DataError::LabelOutOfRange {
                source_name: name,
                index: i,
                label: i64::from(labels[i]),
                num_classes: MAX_CLASSES,
            });
        }
        let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
        Ok(Self {
            name,
            texts,
            labels,
            class_names: (0..k).map(|c| c.to_string()).collect(),
            labeled: true,
        })
    }

    /// Texts without labels (`csv:PATH:text=COL,label=none`): no classes; the labelled-only
    /// splits refuse it.
    pub fn unlabeled(name: impl Into<String>, texts: Vec<String>) -> Self {
        Self {
            name: name.into(),
            texts,
            labels: Vec::new(),
            class_names: Vec::new(),
            labeled: false,
        }
    }

    /// Whether the texts have labels.
    pub fn is_labeled(&self) -> bool {
        self.labeled
    }

    /// Declares the number of classes (classes absent from these samples still count); an
    /// error naming the first sample whose label is `>= num_classes`.
    pub fn with_num_classes(mut self, num_classes: usize) -> Result<Self> {
        if num_classes > MAX_CLASSES {
            return Err(DataError::invalid(
                "TextDataset::with_num_classes",
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
        if self.class_names.len() != num_classes {
            self.class_names = (0..num_classes).map(|c| c.to_string()).collect();
        }
        Ok(self)
    }

    /// Names the classes; their number becomes the number of classes.
    pub fn with_class_names(self, names: Vec<String>) -> Result<Self> {
        let mut s = self.with_num_classes(names.len())?;
        s.class_names = names;
        Ok(s)
    }

    /// Renames the data set (used in messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The data set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// All texts.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }
    /// Text `i`.
    pub fn text(&self, i: usize) -> Option<&str> {
        self.texts.get(i).map(String::as_str)
    }
    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Class names, one per class.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(slot) = c.get_mut(l as usize) {
                *slot += 1;
            }
        }
        c
    }

    /// The samples at `indices` (in that order; repeats allowed), keeping the classes.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let mut texts = Vec::with_capacity(indices.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let label = if self.labeled {
                self.labels.get(i).copied()
            } else {
                Some(0)
            };
            match (self.texts.get(i), label) {
                (Some(t), Some(l)) => {
                    texts.push(t.clone());
                    if self.labeled {
                        labels.push(l);
                    }
                }
                _ => {
                    return Err(DataError::IndexOutOfRange {
                        what: self.name.clone(),
                        index: i,
                        len: self.len(),
                    });
                }
            }
        }
        Ok(Self {
            name: self.name.clone(),
            texts,
            labels,
            class_names: self.class_names.clone(),
            labeled: self.labeled,
        })
    }

    /// Consumes the data set into `(texts, labels, class_names)`.
    pub fn into_parts(self) -> (Vec<String>, Vec<u32>, Vec<String>) {
        (self.texts, self.labels, self.class_names)
    }
}

impl LabeledSet for TextDataset {
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        TextDataset::subset(self, indices)
    }
    fn is_labeled(&self) -> bool {
        self.labeled
    }
}
