//! The named parameter store.
//!
//! A [`ParamStore`] is a cheap, clonable handle to an ordered map `name → Param`. Layers keep
//! their [`Param`]s and call [`Param::tensor`] in `forward`: a trainable parameter enters the
//! graph as its `Var` (gradients flow), a frozen one as a detached tensor (no gradient is
//! computed for it at all, and the optimiser never sees it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use candle_core::{Tensor, Var};

use crate::{ModelError, Result};

thread_local! {
    static NO_GRAD_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether forward passes on this thread record an autograd graph: false inside [`no_grad`].
pub fn grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// Runs `f` with gradients off on this thread, as PyTorch's `torch.no_grad()`: every
/// [`Param::tensor`] is a detached view, so the forward passes inside record no autograd
/// graph, and each intermediate tensor is freed as soon as the next layer has read it (with
/// the graph, a whole forward's activations stay alive until its output is dropped). Nests;
/// the previous state returns when `f` does, also on an early return or a panic. Inference
/// (evaluation, prediction, feature extraction) runs inside it; training must not.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
    let _restore = Restore;
    f()
}

/// One named parameter: its variable and whether it trains.
#[derive(Debug, Clone)]
pub struct Param {
    name: Arc<str>,
    var: Var,
    trainable: Arc<AtomicBool>,
    /// Buffers (batch-norm running statistics) are stored and saved but never trained.
    buffer: bool,
}

impl Param {
    /// The dotted name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The variable (for optimisers and in-place updates).
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// Whether the parameter is trained (false when frozen, and always false for buffers).
    pub fn is_trainable(&self) -> bool {
        !self.buffer && self.trainable.load(Ordering::Relaxed)
    }

    /// Whether this is a buffer (running statistics), not a learned weight.
    pub fn is_buffer(&self) -> bool {
        self.buffer
    }

    /// The value to use in a forward pass: the `Var` itself when trainable, a detached view
    /// when frozen or inside [`no_grad`] (so no gradient is computed for it and no graph is
    /// recorded).
    pub fn tensor(&self) -> Tensor {
        if self.is_trainable() && grad_enabled() {
            self.var.as_tensor().clone()
        } else {
            self.var.as_tensor().detach()
        }
    }

    /// Replaces the value in place (shape must match).
    pub fn set(&self, value: &Tensor) -> Result<()> {
        if value.dims() != self.var.dims() {
            return Err(ModelError::ShapeMismatch {
                name: self.name.to_string(),
                expected: self.var.dims().to_vec(),
                got: value.dims().to_vec(),
            });
        }
        let v = value
            .to_dtype(self.var.dtype())?
            .to_device(self.var.device())?;
        self.var.set(&v)?;
        Ok(())
    }
}

/// Which parameters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every parameter.
    All,
    /// Exactly this name.
    Exact(String),
    /// Names equal to the prefix or starting with `prefix.` (so `layer1` selects
    /// `layer1.0.conv1.weight` but not `layer10.weight`).
    Prefix(String),
    /// A glob: `*` matches any run of characters (dots included), `?` one character.
    Glob(String),
    /// Any of these.
    AnyOf(Vec<Selection>),
    /// All but these.
    Not(Box<Selection>),
}

impl Selection {
    /// Parses `"*"`, `"exact:NAME"`, `"prefix:P"`, a glob (contains `*` or `?`), or a plain
    /// prefix; a comma separates alternatives, a leading `!` negates.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ModelError::BadPattern(s.to_string()));
        }
        if s.contains(',') {
            return Ok(Selection::AnyOf(
                s.split(',').map(Selection::parse).collect::<Result<_>>()?,
            ));
        }
        if let Some(rest) = s.strip_prefix('!') {
            return Ok(Selection::Not(Box::new(Selection::parse(rest)?)));
        }
        if s == "*" {
            return Ok(Selection::All);
        }
        if let Some(n) = s.strip_prefix("exact:") {
            return Ok(Selection::Exact(n.to_string()));
        }
        if let Some(p) = s.strip_prefix("prefix:") {
            return Ok(Selection::Prefix(p.to_string()));
        }
        if s.contains('*') || s.contains('?') {
            return Ok(Selection::Glob(s.to_string()));
        }
        Ok(Selection::Prefix(s.to_string()))
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Exact(n) => n == name,
            Selection::Prefix(p) => {
                let p = p.trim_end_matches('.');
                name == p || (name.starts_with(p) && name.as_bytes().get(p.len()) == Some(&b'.'))
            }
            Selection::Glob(g) => glob_match(g.as_bytes(), name.as_bytes()),
            Selection::AnyOf(v) => v.iter().any(|s| s.matches(name)),
            Selection::Not(s) => !s.matches(name),
        }
    }
}

impl From<&str> for Selection {
    /// Like [`Selection::parse`], falling back to an exact name when the text cannot parse.
    fn from(s: &str) -> Self {
        Selection::parse(s).unwrap_or_else(|_| Selection::Exact(s.to_string()))
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking on the last `*`.
    let (mut pi, mut si, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A shared, ordered store of named parameters. Cloning shares the store.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    inner: Arc<RwLock<BTreeMap<String, Param>>>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Param>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Param>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, name: &str, value: Tensor, buffer: bool) -> Result<Param> {
        // Every model is built through here: the first parameter applies xfer's process
        // settings (once; `xfer_ops::runtime` explains them, and how to opt out).
        xfer_ops::runtime::configure();
        let mut map = self.write();
        if map.contains_key(name) {
            return Err(ModelError::Duplicate(name.to_string()));
        }
        let p = Param {
            name: Arc::from(name),
            var: Var::from_tensor(&value)?,
            trainable: Arc::new(AtomicBool::new(true)),
            buffer,
        };
        map.insert(name.to_string(), p.clone());
        Ok(p)
    }

    /// Registers a trainable parameter with an initial value.
    pub fn add(&self, name: &str, init: Tensor) -> Result<Param> {
        self.insert(name, init, false)
    }

    /// Registers a buffer: saved and loaded with the model, never trained (running statistics).
    pub fn add_buffer(&self, name: &str, init: Tensor) -> Result<Param> {
        self.insert(name, init, true)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Result<Param> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError::Missing(name.to_string()))
    }

    /// Removes the parameter called `name` (to replace a layer, e.g. a new classifier head);
    /// returns it if it was registered.
    pub fn remove(&self, name: &str) -> Option<Param> {
        self.write().remove(name)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Every name (parameters and buffers), sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every parameter and buffer, sorted by name.
    pub fn all(&self) -> Vec<Param> {
        self.read().values().cloned().collect()
    }

    /// Every parameter (not buffer) whose name matches `sel`.
    pub fn select(&self, sel: &Selection) -> Vec<Param> {
        self.read()
            .values()
            .filter(|p| !p.buffer && sel.matches(&p.name))
            .cloned()
            .collect()
    }

    /// The trainable parameters (what an optimiser receives).
    pub fn trainable(&self) -> Vec<Param> {
        self.read()
            .values()
            .filter(|p| p.is_trainable())
            .cloned()
            .collect()
    }

    /// Freezes the selected parameters; returns how many were selected.
    pub fn freeze(&self, sel: &Selection) -> usize {
        self.set_trainable(sel, false)
    }

    /// Unfreezes the selected parameters; returns how many were selected.
    pub fn unfreeze(&self, sel: &Selection) -> usize {
        self.set_trainable(sel, true)
    }

    fn set_trainable(&self, sel: &Selection, on: bool) -> usize {
        let ps = self.select(sel);
        for p in &ps {
            p.trainable.store(on, Ordering::Relaxed);
        }
        ps.len()
    }

    /// Number of parameters and buffers.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Total number of scalar values in trainable parameters.
    pub fn num_trainable_values(&self) -> usize {
        self.trainable().iter().map(|p| p.var.elem_count()).sum()
    }

    /// A sub-namespace: names registered through it get `prefix.` in front.
    pub fn scope(&self, prefix: &str) -> Scope {
        Scope {
            store: self.clone(),
            prefix: prefix.trim_end_matches('.').to_string(),
        }
    }
}

/// A view of a [`ParamStore`] that prefixes names (`layer1` → `layer1.0.conv1.weight`).
#[derive(Debug, Clone)]
pub struct Scope {
    store: ParamStore,
    prefix: String,
}

impl Scope {
    /// The full name of `name` in this scope.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// A nested scope.
    pub fn sub(&self, name: &str) -> Scope {
        Scope {
            store: self.store.clone(),
            prefix: self.path(name),
        }
    }

    /// Registers a trainable parameter under this scope.
    pub fn add(&self, name: &str, init: Tensor) -> Result<Param> {
        self.store.add(&self.path(name), init)
    }

    /// Registers a buffer under this scope.
    pub fn add_buffer(&self, name: &str, init: Tensor) -> Result<Param> {
        self.store.add_buffer(&self.path(name), init)
    }

    /// The store behind this scope.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn selection_prefix_respects_dot_boundaries() {
        let s = Selection::parse("layer1").unwrap();
        assert!(s.matches("layer1.0.conv1.weight"));
        assert!(!s.matches("layer10.weight"));
        assert!(
            Selection::parse("layer*.conv?.weight")
                .unwrap()
                .matches("layer3.1.conv2.weight")
        );
        assert!(!Selection::parse("!fc").unwrap().matches("fc.bias"));
    }

    #[test]
    fn frozen_params_get_no_gradient() {
        let store = ParamStore::new();
        let a = store
            .add(
                "a.weight",
                Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        let b = store
            .add(
                "b.weight",
                Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        assert_eq!(store.freeze(&Selection::parse("a").unwrap()), 1);
        let loss = (a.tensor() * b.tensor()).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        assert!(g.get(a.var().as_tensor()).is_none());
        assert!(g.get(b.var().as_tensor()).is_some());
        assert_eq!(store.trainable().len(), 1);
    }
}
