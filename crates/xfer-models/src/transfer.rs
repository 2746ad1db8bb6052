//! Layer transfer: copy selected parameters from a source model or file into a target model.
//!
//! LECTURE.md §1b: copy some layers of the source model into the new model and train the rest
//! (images: usually the first layers; speech: usually the last). A [`Transfer`] says which
//! target parameters to fill ([`Selection`] on the *target* names), how source names become
//! target names (strip or add a prefix, any mapping function, applied in order), and whether
//! a missing or mismatched entry is an error ([`Transfer::strict`]). Tensors stored as f16,
//! bf16 or f64 (or any other supported dtype) are converted to each target parameter's dtype
//! and device.
//!
//! Every run returns a [`TransferReport`] saying exactly what was copied, not selected,
//! missing in the source, unexpected in the source, and mismatched in shape. Everything is
//! checked before anything is written: a strict transfer that fails, or any error, leaves the
//! target untouched. PyTorch's `num_batches_tracked` counters are ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::params::{Param, ParamStore, Selection};
use crate::safetensors_file::SafetensorsFile;
use crate::{ModelError, Result};

/// Whether a name is a PyTorch batch-norm step counter (never transferred).
pub fn is_ignored_name(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

/// Anything named tensors can be copied from.
pub trait TensorSource {
    /// A short description for reports and errors (a file path, "parameter store").
    fn describe(&self) -> String;
    /// The name and shape of every tensor, sorted by name.
    fn entries(&self) -> Vec<(String, Vec<usize>)>;
    /// Checks that `name` can be loaded (its dtype is supported); called before any copy.
    fn check(&self, _name: &str) -> Result<()> {
        Ok(())
    }
    /// The tensor `name` on `device`, in its stored dtype.
    fn load(&self, name: &str, device: &Device) -> Result<Tensor>;
}

impl TensorSource for ParamStore {
    fn describe(&self) -> String {
        "parameter store".to_string()
    }
    fn entries(&self) -> Vec<(String, Vec<usize>)> {
        self.all()
            .iter()
            .map(|p| (p.name().to_string(), p.var().dims().to_vec()))
            .collect()
    }
    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        Ok(self
            .get(name)?
            .var()
            .as_tensor()
            .detach()
            .to_device(device)?)
    }
}

impl TensorSource for SafetensorsFile {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
    fn entries(&self) -> Vec<(String, Vec<usize>)> {
        self.names()
            .into_iter()
            .map(|n| {
                let s = self.shape(&n).map(<[usize]>::to_vec).unwrap_or_default();
                (n, s)
            })
            .collect()
    }
    fn check(&self, name: &str) -> Result<()> {
        self.check_dtype(name)
    }
    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        self.tensor(name, device)
    }
}

fn map_load<'a>(
    it: impl Iterator<Item = (&'a String, &'a Tensor)>,
    name: &str,
    device: &Device,
) -> Result<Tensor> {
    for (n, t) in it {
        if n == name {
            return Ok(t.detach().to_device(device)?);
        }
    }
    Err(ModelError::Missing(name.to_string()))
}

impl TensorSource for BTreeMap<String, Tensor> {
    fn describe(&self) -> String {
        "tensor map".to_string()
    }
    fn entries(&self) -> Vec<(String, Vec<usize>)> {
        self.iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect()
    }
    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        match self.get(name) {
            Some(t) => Ok(t.detach().to_device(device)?),
            None => Err(ModelError::Missing(name.to_string())),
        }
    }
}

impl TensorSource for HashMap<String, Tensor> {
    fn describe(&self) -> String {
        "tensor map".to_string()
    }
    fn entries(&self) -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<_> = self
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        v.sort();
        v
    }
    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        map_load(self.iter(), name, device)
    }
}

/// A shape mismatch found by a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The target parameter's name.
    pub name: String,
    /// The source tensor's name (differs from `name` when renamed).
    pub source_name: String,
    /// The source tensor's shape.
    pub source_shape: Vec<usize>,
    /// The target parameter's shape.
    pub target_shape: Vec<usize>,
}

/// A dtype conversion made while copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtypeConversion {
    /// The target parameter's name.
    pub name: String,
    /// The dtype in the source.
    pub from: DType,
    /// The target parameter's dtype.
    pub to: DType,
}

/// What a [`Transfer`] did. Names are target names except where it says source names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferReport {
    /// What the tensors came from.
    pub source: String,
    /// Target parameters that received a value.
    pub copied: Vec<String>,
    /// `(source name, target name)` of copied entries whose name was changed by renaming.
    pub renamed: Vec<(String, String)>,
    /// Copied entries whose dtype was converted.
    pub converted: Vec<DtypeConversion>,
    /// Names (target parameters, and renamed source entries) outside the selection; target
    /// parameters among them keep their values.
    pub not_selected: Vec<String>,
    /// Selected target parameters the source has no entry for (they keep their values).
    pub missing_in_source: Vec<String>,
    /// Source names whose (renamed) name is selected but is no parameter of the target.
    pub unexpected_in_source: Vec<String>,
    /// Selected entries present on both sides with different shapes (not copied).
    pub shape_mismatches: Vec<ShapeMismatch>,
    /// Source names the mapping function dropped.
    pub dropped_by_rename: Vec<String>,
    /// Source names ignored by design (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

impl TransferReport {
    /// True when nothing selected was missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing_in_source.is_empty()
            && self.unexpected_in_source.is_empty()
            && self.shape_mismatches.is_empty()
    }
}

fn list(f: &mut fmt::Formatter<'_>, what: &str, names: &[String]) -> fmt::Result {
    if !names.is_empty() {
        writeln!(f)?;
        write!(f, "  {what} ({}): {}", names.len(), names.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for TransferReport {
    /// One summary line, then one line per kind of problem with every name. The alternate
    /// form (`{:#}`) also lists what was copied, renamed, converted, not selected and dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transfer from {}: {} copied, {} not selected, {} missing in source, \
             {} unexpected in source, {} shape mismatches, {} converted dtype",
            self.source,
            self.copied.len(),
            self.not_selected.len(),
            self.missing_in_source.len(),
            self.unexpected_in_source.len(),
            self.shape_mismatches.len(),
            self.converted.len(),
        )?;
        list(f, "missing in source", &self.missing_in_source)?;
        list(f, "unexpected in source", &self.unexpected_in_source)?;
        for m in &self.shape_mismatches {
            writeln!(f)?;
            write!(
                f,
                "  shape mismatch: {} source {:?} target {:?}",
                m.name, m.source_shape, m.target_shape
            )?;
            if m.source_name != m.name {
                write!(f, " (source name {})", m.source_name)?;
            }
        }
        if f.alternate() {
            list(f, "copied", &self.copied)?;
            let renamed: Vec<String> = self
                .renamed
                .iter()
                .map(|(s, t)| format!("{s} → {t}"))
                .collect();
            list(f, "renamed", &renamed)?;
            let conv: Vec<String> = self
                .converted
                .iter()
                .map(|c| format!("{} {:?}→{:?}", c.name, c.from, c.to))
                .collect();
            list(f, "converted", &conv)?;
            list(f, "not selected", &self.not_selected)?;
            list(f, "dropped by rename", &self.dropped_by_rename)?;
            list(f, "ignored", &self.ignored)?;
        }
        Ok(())
    }
}

type MapFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
enum Rename {
    StripPrefix(String),
    AddPrefix(String),
    Map(MapFn),
}

impl fmt::Debug for Rename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rename::StripPrefix(p) => write!(f, "StripPrefix({p:?})"),
            Rename::AddPrefix(p) => write!(f, "AddPrefix({p:?})"),
            Rename::Map(_) => write!(f, "Map(<fn>)"),
        }
    }
}

/// A layer-transfer recipe: selection, renaming, strictness. Build it, then [`Transfer::run`]
/// it against a source and a target store.
///
/// ```
/// # use xfer_models::{ParamStore, transfer::Transfer};
/// # fn demo(source: &ParamStore, target: &ParamStore) -> xfer_models::Result<()> {
/// let report = Transfer::new()
///     .strip_prefix("module")      // source `module.layer1.0.conv1.weight` → `layer1.0.conv1.weight`
///     .add_prefix("backbone")      // → `backbone.layer1.0.conv1.weight`
///     .select("backbone.layer1,backbone.layer2")
///     .run(source, target)?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Transfer {
    selection: Selection,
    renames: Vec<Rename>,
    strict: bool,
    buffers: bool,
}

impl Default for Transfer {
    fn default() -> Self {
        Self::new()
    }
}

fn strip_dot(p: &str) -> &str {
    p.trim_end_matches('.')
}

impl Transfer {
    /// Copy everything that matches by name, non-strict, buffers included.
    pub fn new() -> Self {
        Self {
            selection: Selection::All,
            renames: Vec::new(),
            strict: false,
            buffers: true,
        }
    }

    /// Which **target** parameters to fill (default: all).
    pub fn select(mut self, selection: impl Into<Selection>) -> Self {
        self.selection = selection.into();
        self
    }

    /// Removes `prefix.` from source names that start with it (others are unchanged).
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        self.renames
            .push(Rename::StripPrefix(strip_dot(prefix).to_string()));
        self
    }

    /// Puts `prefix.` in front of every source name.
    pub fn add_prefix(mut self, prefix: &str) -> Self {
        self.renames
            .push(Rename::AddPrefix(strip_dot(prefix).to_string()));
        self
    }

    /// Maps source names with `f`; `None` drops the entry (reported as dropped by rename).
    pub fn rename(mut self, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.renames.push(Rename::Map(Arc::new(f)));
        self
    }

    /// In strict mode a selected target parameter missing from the source, or a shape
    /// mismatch, is an error ([`ModelError::StrictTransfer`]) and nothing is copied.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Whether buffers (batch-norm running statistics) are copied too (default true).
    pub fn buffers(mut self, buffers: bool) -> Self {
        self.buffers = buffers;
        self
    }

    /// The target name for a source name after the renaming rules, in order.
    pub fn map_name(&self, source_name: &str) -> Option<String> {
        let mut name = source_name.to_string();
        for r in &self.renames {
            name = match r {
                Rename::StripPrefix(p) if p.is_empty() => name,
                Rename::StripPrefix(p) => match name.strip_prefix(p.as_str()) {
                    Some(rest) if rest.starts_with('.') => rest[1..].to_string(),
                    _ => name,
                },
                Rename::AddPrefix(p) if p.is_empty() => name,
                Rename::AddPrefix(p) => format!("{p}.{name}"),
                Rename::Map(f) => f(&name)?,
            };
        }
        Some(name)
    }

    /// Opens a safetensors file and runs the transfer from it.
    pub fn run_file(&self, path: impl AsRef<Path>, target: &ParamStore) -> Result<TransferReport> {
        let file = SafetensorsFile::open(path)?;
        self.run(&file, target)
    }

    /// Copies from `source` into `target` and reports what happened. Checks everything
    /// (selection, names, shapes, strictness, dtypes, loading) before writing anything.
    pub fn run(&self, source: &dyn TensorSource, target: &ParamStore) -> Result<TransferReport> {
        let mut report = TransferReport {
            source: source.describe(),
            ..TransferReport::default()
        };
        let targets: BTreeMap<String, Param> = target
            .all()
            .into_iter()
            .map(|p| (p.name().to_string(), p))
            .collect();
        let selected = |name: &str, p: Option<&Param>| {
            self.selection.matches(name) && (self.buffers || !p.is_some_and(Param::is_buffer))
        };
        let mut mapped: BTreeMap<String, String> = BTreeMap::new();
        let mut not_selected: BTreeSet<String> = BTreeSet::new();
        let mut plan: Vec<(String, Param)> = Vec::new();
        for (sname, sshape) in source.entries() {
            if is_ignored_name(&sname) {
                report.ignored.push(sname);
                continue;
            }
            let Some(tname) = self.map_name(&sname) else {
                report.dropped_by_rename.push(sname);
                continue;
            };
            if let Some(prev) = mapped.insert(tname.clone(), sname.clone()) {
                return Err(ModelError::Config(format!(
                    "{}: source tensors {prev:?} and {sname:?} are both renamed to {tname:?}",
                    report.source
                )));
            }
            let p = targets.get(&tname);
            if !selected(&tname, p) {
                not_selected.insert(tname);
                continue;
            }
            match p {
                None => report.unexpected_in_source.push(sname),
                Some(p) if p.var().dims() != sshape.as_slice() => {
                    report.shape_mismatches.push(ShapeMismatch {
                        name: tname,
                        source_name: sname,
                        source_shape: sshape,
                        target_shape: p.var().dims().to_vec(),
                    })
                }
                Some(p) => plan.push((sname, p.clone())),
            }
        }
        for (tname, p) in &targets {
            if !selected(tname, Some(p)) {
                not_selected.insert(tname.clone());
            } else if !mapped.contains_key(tname) {
                report.missing_in_source.push(tname.clone());
            }
        }
        report.not_selected = not_selected.into_iter().collect();
        if self.strict
            && (!report.missing_in_source.is_empty() || !report.shape_mismatches.is_empty())
        {
            return Err(ModelError::StrictTransfer(Box::new(report)));
        }
        for (sname, _) in &plan {
            source.check(sname)?;
        }
        let mut loaded = Vec::with_capacity(plan.len());
        for (sname, p) in plan {
            let t = source.load(&sname, p.var().device())?;
            if t.dims() != p.var().dims() {
                return Err(ModelError::ShapeMismatch {
                    name: sname,
                    expected: p.var().dims().to_vec(),
                    got: t.dims().to_vec(),
                });
            }
            if t.dtype() != p.var().dtype() {
                report.converted.push(DtypeConversion {
                    name: p.name().to_string(),
                    from: t.dtype(),
                    to: p.var().dtype(),
                });
            }
            let t = t.to_dtype(p.var().dtype())?;
            loaded.push((sname, p, t));
        }
        for (sname, p, t) in loaded {
            p.set(&t)?;
            if sname != p.name() {
                report.renamed.push((sname, p.name().to_string()));
            }
            report.copied.push(p.name().to_string());
        }
        tracing::info!(
            source = %report.source,
            copied = report.copied.len(),
            missing = report.missing_in_source.len(),
            unexpected = report.unexpected_in_source.len(),
            mismatched = report.shape_mismatches.len(),
            "layer transfer"
        );
        Ok(report)
    }
}

fn blocks_selection<S: AsRef<str>>(blocks: &[S], range: std::ops::Range<usize>) -> Selection {
    Selection::AnyOf(
        blocks
            .get(range)
            .unwrap_or(&[])
            .iter()
            .map(|b| Selection::Prefix(b.as_ref().to_string()))
            .collect(),
    )
}

fn check_k<S: AsRef<str>>(blocks: &[S], k: usize) -> Result<()> {
    if k > blocks.len() {
        return Err(ModelError::Config(format!(
            "asked for {k} blocks of {}: {:?}",
            blocks.len(),
            blocks.iter().map(AsRef::as_ref).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The first `k` blocks of an ordered list of block prefixes, input side first (for images,
/// the layers usually copied): `first_blocks(&["conv1", "layer1", "layer2", "fc"], 2)`
/// selects `conv1.*` and `layer1.*`. `k = 0` selects nothing.
pub fn first_blocks<S: AsRef<str>>(blocks: &[S], k: usize) -> Result<Selection> {
    check_k(blocks, k)?;
    Ok(blocks_selection(blocks, 0..k))
}

/// The last `k` blocks of an ordered list of block prefixes (for speech, the layers usually
/// copied).
pub fn last_blocks<S: AsRef<str>>(blocks: &[S], k: usize) -> Result<Selection> {
    check_k(blocks, k)?;
    Ok(blocks_selection(blocks, blocks.len() - k..blocks.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_rules_apply_in_order_and_respect_dots() {
        let t = Transfer::new()
            .strip_prefix("module.")
            .add_prefix("backbone")
            .rename(|n| (!n.ends_with("aux.weight")).then(|| n.replace("fc", "head")));
        assert_eq!(
            t.map_name("module.layer1.0.conv1.weight").as_deref(),
            Some("backbone.layer1.0.conv1.weight")
        );
        assert_eq!(
            t.map_name("modules.x").as_deref(),
            Some("backbone.modules.x")
        );
        assert_eq!(
            t.map_name("module.fc.bias").as_deref(),
            Some("backbone.head.bias")
        );
        assert_eq!(t.map_name("aux.weight"), None);
    }

    #[test]
    fn first_and_last_blocks_select_by_position() {
        let b = ["conv1", "layer1", "layer2", "fc"];
        let s = first_blocks(&b, 2).unwrap();
        assert!(s.matches("layer1.0.conv1.weight") && !s.matches("layer2.0.conv1.weight"));
        let s = last_blocks(&b, 1).unwrap();
        assert!(s.matches("fc.weight") && !s.matches("layer2.weight"));
        assert!(!first_blocks(&b, 0).unwrap().matches("conv1.weight"));
        assert!(first_blocks(&b, 5).is_err());
    }
}
