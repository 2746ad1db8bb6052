//! Frozen deep copies of named tensors: the L2-SP anchor `w⁰` and teacher weights.
//!
//! `Tensor::detach` shares storage with the live `Var`, so an optimiser's in-place update
//! moves a detached "copy" too; a snapshot copies the data.

use candle_core::Tensor;

/// Named tensors copied at one moment; never changes afterwards.
#[derive(Debug, Clone, Default)]
pub struct ParamSnapshot {
    entries: Vec<(String, Tensor)>,
}

impl ParamSnapshot {
    /// Deep-copies every `(name, tensor)` pair (new storage, no gradient tracking).
    pub fn capture<'a, I>(named: I) -> crate::Result<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a Tensor)>,
    {
        let mut entries = Vec::new();
        for (name, t) in named {
            entries.push((name.to_string(), t.detach().copy()?));
        }
        Ok(Self { entries })
    }

    /// The frozen copy of `name`, if captured.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// All `(name, tensor)` pairs in capture order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of tensors held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
