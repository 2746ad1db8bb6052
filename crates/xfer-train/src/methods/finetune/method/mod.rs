//! The fine-tuning methods: the [`FinetuneMethod`] trait every method implements, one file
//! per method, and the one registration ([`REGISTRY`]) that names them for parsing.
//!
//! | file | method | spec |
//! |---|---|---|
//! | [`scratch`] | [`Scratch`], the baseline | `scratch` |
//! | [`full`] | [`FullFinetune`] | `finetune` |
//! | [`l2sp`] | [`L2SpFinetune`] | `l2sp[:ALPHA[,BETA]]` |
//! | [`distill`] | [`Distill`] | `distill[:LAMBDA[,T]]` |
//! | [`layer_transfer`] | [`LayerTransfer`] | `layer-transfer:[first:\|last:]K[:lr=X]` |
//! | [`linear_probe`] | [`LinearProbe`] | `linear` |
//!
//! **Adding a method** is one file here — a type implementing [`FinetuneMethod`] (what it
//! copies from the source, what it freezes, its [`Regulariser`], its parameter groups) and an
//! [`Entry`] (its names, its spec syntax, its parser) — plus its `mod` line and one line in
//! [`REGISTRY`]. [`super::MethodSetup`] builds the target network and hands it to the method
//! through a [`SetupCtx`], which also offers the steps methods share (copy every source weight
//! that fits, the source model itself, logits on the target training inputs).

pub mod distill;
pub mod full;
pub mod l2sp;
pub mod layer_transfer;
pub mod linear_probe;
pub mod scratch;

use std::fmt;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xfer_data::Dataset;
use xfer_models::{Classifier, ParamGroup, Selection, Transfer, TransferReport};

pub use distill::Distill;
pub use full::FullFinetune;
pub use l2sp::L2SpFinetune;
pub use layer_transfer::{BlockEnd, CopiedBlocks, LayerTransfer};
pub use linear_probe::LinearProbe;
pub use scratch::Scratch;

use super::objective::{Regulariser, logits_of};
use super::pretrain::{FinetuneConfig, Pretrained, eval_view};
use crate::run::Stage;
use crate::{Result, TrainError};

/// Every fine-tuning method, in the order `all` lists them (and error messages name them).
pub const REGISTRY: &[Entry] = &[
    scratch::ENTRY,
    full::ENTRY,
    l2sp::ENTRY,
    distill::ENTRY,
    layer_transfer::ENTRY,
    linear_probe::ENTRY,
];

/// One registered method: how a spec names it and how the rest of the spec is read.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The names a spec may start with (compared after `_` → `-`), the first the usual one.
    pub names: &'static [&'static str],
    /// The spec's syntax for messages (`l2sp[:ALPHA[,BETA]]`).
    pub syntax: &'static str,
    /// Reads the part after the name's `:` (`None`: the bare name).
    pub parse: fn(Option<&str>) -> Result<Method>,
    /// The methods `all` runs on a network of that many blocks (empty: not part of `all`).
    pub all: fn(usize) -> Vec<Method>,
}

/// What a method makes of the target network it was handed: the regulariser its objective
/// adds to cross-entropy, and what it copied from the source.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What the objective adds to cross-entropy.
    pub regulariser: Regulariser,
    /// Parameter groups added before the classifier's backbone and head groups (e.g. copied
    /// blocks at a smaller rate).
    pub groups: Vec<ParamGroup>,
    /// What was copied from the source (`None`: nothing, as scratch).
    pub transfer: Option<TransferReport>,
    /// The block prefixes copied, when the method copies whole blocks (layer transfer).
    pub copied_blocks: Vec<String>,
}

impl Prepared {
    /// Plain cross-entropy, nothing copied, no extra group.
    pub fn plain() -> Self {
        Self {
            regulariser: Regulariser::None,
            groups: Vec::new(),
            transfer: None,
            copied_blocks: Vec::new(),
        }
    }

    /// Plain cross-entropy after the copy `transfer`.
    pub fn copied(transfer: TransferReport) -> Self {
        Self {
            transfer: Some(transfer),
            ..Self::plain()
        }
    }
}

/// What a method sees while it prepares the target network ([`FinetuneMethod::prepare`]).
pub struct SetupCtx<'a> {
    /// The target network, freshly initialised from [`SetupCtx::init_seed`] for the target's
    /// classes.
    pub net: &'a Classifier,
    /// The source model (`None` when the run has none: only scratch runs then).
    pub pretrained: Option<&'a Pretrained>,
    /// Whether the target needs a new head (the source has none, or one for other classes).
    pub new_head: bool,
    /// The experiment's settings.
    pub cfg: &'a FinetuneConfig,
    /// The seed the target network was initialised from (a teacher copy uses it too).
    pub init_seed: u64,
    /// The labelled target training examples.
    pub target_train: Arc<dyn Dataset>,
    /// The method's run name (for messages).
    pub name: String,
}

impl fmt::Debug for SetupCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupCtx")
            .field("method", &self.name)
            .field("net", &self.net)
            .field("new_head", &self.new_head)
            .finish()
    }
}

impl SetupCtx<'_> {
    /// The source model, or an error saying the method needs one.
    pub fn source(&self) -> Result<&Pretrained> {
        self.pretrained.ok_or_else(|| {
            TrainError::Incompatible(format!(
                "method {} needs a pretrained source model",
                self.name
            ))
        })
    }

    /// The device of the target network.
    pub fn device(&self) -> &Device {
        self.net.device()
    }

    /// The parameters of the target's head.
    pub fn head_selection(&self) -> Result<Selection> {
        Ok(Selection::parse(self.net.head_block())?)
    }

    /// Copies every source weight that fits into the target network: all of them but a head
    /// for other classes. Fails when a copied weight is missing or has another shape.
    pub fn copy_all(&self) -> Result<TransferReport> {
        let p = self.source()?;
        let mut t = Transfer::new();
        if self.new_head {
            t = t.select(Selection::parse(&format!("!{}", self.net.head_block()))?);
        }
        let report = t.run(&p.weights, self.net.store())?;
        if !report.shape_mismatches.is_empty() || !report.missing_in_source.is_empty() {
            return Err(TrainError::Incompatible(format!(
                "the source model does not fit the target model: {report}"
            )));
        }
        Ok(report)
    }

    /// The logits `(N, C)` of `net` on the target training inputs as evaluation sees them
    /// (through the configuration's evaluation transform), in order, detached.
    pub fn target_train_logits(&self, net: &Classifier) -> Result<Tensor> {
        let (logits, _) = logits_of(net, &eval_view(&self.target_train, self.cfg)?)?;
        Ok(logits)
    }
}

/// One fine-tuning method: how it turns a freshly initialised target network into the one
/// it trains (copies from the source, freezes, parameter groups), and what its objective adds
/// to cross-entropy. [`super::MethodSetup`] and [`super::run`] do the rest, the same for
/// every method: the network, the one [`crate::Trainer`], the tests.
pub trait FinetuneMethod: fmt::Debug + Send + Sync {
    /// The run name used in reports and `--json` output (`l2sp`, `layer_transfer_first_2`).
    fn name(&self) -> String;

    /// The spec that parses back to this method, with every setting (`l2sp:0.1,0.01`).
    fn spec(&self) -> String;

    /// Whether the method starts from a pretrained source model (all but scratch).
    fn needs_source(&self) -> bool {
        true
    }

    /// The training stage of the target: the fine-tuning settings, or the scratch ones.
    fn stage<'a>(&self, cfg: &'a FinetuneConfig) -> &'a Stage {
        &cfg.finetune
    }

    /// Whether the network starts as the whole source model (its head included, when the
    /// target has the source's classes), so that its accuracy before training is worth
    /// reporting (`source_only_acc`).
    fn starts_as_source_model(&self) -> bool {
        false
    }

    /// Why the method cannot run from `pretrained` on a target of `num_classes` classes
    /// (`None`: it can). Checked before the network is built; a caller may skip the method
    /// with this reason.
    fn unsupported(&self, _pretrained: Option<&Pretrained>, _num_classes: usize) -> Option<String> {
        None
    }

    /// Prepares the target network `cx.net` and says what the objective adds.
    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared>;
}

/// A fine-tuning method (any [`FinetuneMethod`]), as parsed from a spec or built with
/// [`Method::new`]; two methods are equal when their specs are. It serialises as its spec.
#[derive(Clone)]
pub struct Method(Arc<dyn FinetuneMethod>);

impl Method {
    /// `method` as a [`Method`].
    pub fn new(method: impl FinetuneMethod + 'static) -> Self {
        Self(Arc::new(method))
    }

    /// The method itself.
    pub fn get(&self) -> &dyn FinetuneMethod {
        self.0.as_ref()
    }

    /// [`FinetuneMethod::name`].
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// [`FinetuneMethod::spec`].
    pub fn spec(&self) -> String {
        self.0.spec()
    }

    /// [`FinetuneMethod::needs_source`].
    pub fn needs_source(&self) -> bool {
        self.0.needs_source()
    }

    /// [`FinetuneMethod::stage`].
    pub fn stage<'a>(&self, cfg: &'a FinetuneConfig) -> &'a Stage {
        self.0.stage(cfg)
    }

    /// [`FinetuneMethod::unsupported`].
    pub fn unsupported(
        &self,
        pretrained: Option<&Pretrained>,
        num_classes: usize,
    ) -> Option<String> {
        self.0.unsupported(pretrained, num_classes)
    }

    /// Parses one method spec: a registered name ([`REGISTRY`]), then `:` and its settings
    /// (`scratch`, `finetune`, `l2sp[:ALPHA[,BETA]]`, `distill[:LAMBDA[,T]]`,
    /// `layer-transfer:[first:|last:]K[:lr=X]`, `linear`).
    pub fn parse(s: &str) -> Result<Self> {
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        let head = head.trim().replace('_', "-");
        let entry = REGISTRY
            .iter()
            .find(|e| e.names.contains(&head.as_str()))
            .ok_or_else(|| bad_spec(s, "unknown method"))?;
        (entry.parse)(rest).map_err(|e| match e {
            TrainError::InvalidValue { name, expected, .. } if name == "method" => {
                bad_spec(s, &expected)
            }
            e => e,
        })
    }

    /// Parses a comma-separated list (or `all`: every registered method's [`Entry::all`] for
    /// a network of `num_blocks` blocks — scratch, finetune, l2sp, distill, and layer
    /// transfer of the first and of the last `K` blocks, frozen, for `K = 1 .. num_blocks−1`).
    /// Commas inside `l2sp:A,B` / `distill:L,T` belong to the method.
    pub fn parse_list(s: &str, num_blocks: usize) -> Result<Vec<Method>> {
        if s.trim() == "all" {
            return Ok(REGISTRY.iter().flat_map(|e| (e.all)(num_blocks)).collect());
        }
        // Split on commas that start a new method (the next token begins with a letter).
        let mut items: Vec<String> = Vec::new();
        for tok in s.split(',') {
            let t = tok.trim();
            let starts_method = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            match items.last_mut() {
                Some(last) if !starts_method => {
                    last.push(',');
                    last.push_str(t);
                }
                _ => items.push(t.to_string()),
            }
        }
        let methods: Vec<Method> = items
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| Method::parse(t))
            .collect::<Result<_>>()?;
        if methods.is_empty() {
            return Err(TrainError::invalid(
                "methods",
                format!("{s:?}"),
                "at least one method (no method given)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &methods {
            if !seen.insert(m.name()) {
                return Err(TrainError::invalid(
                    "methods",
                    format!("{s:?}"),
                    format!("each method at most once (method {} given twice)", m.name()),
                ));
            }
        }
        Ok(methods)
    }
}

/// The error of a spec `s` that does not parse, listing every method's syntax.
fn bad_spec(s: &str, why: &str) -> TrainError {
    let syntax: Vec<&str> = REGISTRY.iter().map(|e| e.syntax).collect();
    TrainError::invalid(
        "method",
        format!("{s:?}"),
        format!("one of {} (here: {why})", syntax.join(", ")),
    )
}

/// A parser's complaint about the settings after a method's name (reported with the whole
/// spec and every method's syntax by [`Method::parse`]).
pub fn bad_settings(why: impl Into<String>) -> TrainError {
    TrainError::invalid("method", "", why.into())
}

/// Refuses settings after a method name that takes none.
pub fn no_settings(rest: Option<&str>) -> Result<()> {
    match rest {
        None => Ok(()),
        Some(_) => Err(bad_settings("the method takes no settings")),
    }
}

/// Up to `n` comma-separated finite numbers `>= 0` (at least one).
pub fn numbers(rest: &str, n: usize) -> Result<Vec<f64>> {
    let v: Option<Vec<f64>> = rest
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        })
        .collect();
    match v {
        Some(v) if !v.is_empty() && v.len() <= n => Ok(v),
        _ => Err(bad_settings("bad numbers")),
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        self.spec() == other.spec()
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = TrainError;

    /// [`Method::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Method::parse(s)
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Method::parse(&s).map_err(serde::de::Error::custom)
    }
}
