//! Conservative training in parameter space: L2-SP (Li, Grandvalet & Davoine, "Explicit
//! Inductive Bias for Transfer Learning with Convolutional Networks", ICML 2018), and plain
//! L2 (weight decay written as a loss) beside it.
//!
//! `Ω(w) = Σ_{i ∈ pretrained} αᵢ/2 · ‖wᵢ − wᵢ⁰‖² + β/2 · Σ_{j ∈ new layers} ‖wⱼ‖²`
//!
//! `w⁰` is a frozen deep copy ([`xfer_ops::ParamSnapshot`]) of the source weights taken before
//! fine-tuning starts; the paper used α = 0.1, β = 0.01. Parameters are passed as a list of
//! `(name, tensor-or-Var)` pairs and chosen by name, so this works with any model.

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::ParamSnapshot;

use crate::{LossError, NamePattern, Result, check};

const L2SP: &str = "l2_sp";
const L2: &str = "l2_penalty";

/// Anything that holds a tensor: `Tensor`, `Var`, or a reference to either. Lets the
/// parameter lists be `&[(&str, &Tensor)]`, `&[(String, Var)]`, `Vec<(String, Tensor)>`, ...
pub trait AsTensor {
    /// The tensor held.
    fn as_tensor_ref(&self) -> &Tensor;
}

impl AsTensor for Tensor {
    fn as_tensor_ref(&self) -> &Tensor {
        self
    }
}

impl AsTensor for Var {
    fn as_tensor_ref(&self) -> &Tensor {
        self.as_tensor()
    }
}

impl<T: AsTensor + ?Sized> AsTensor for &T {
    fn as_tensor_ref(&self) -> &Tensor {
        (**self).as_tensor_ref()
    }
}

/// Why a parameter is left out of a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Batch-norm statistics (`running_mean`, `running_var`, `num_batches_tracked`): never
    /// trained, never regularised.
    NormStatistic,
    /// A bias (name ends in `.bias`), excluded unless [`WeightFilter::include_biases`].
    Bias,
    /// Another parameter with at most one dimension (a norm layer's scale), excluded unless
    /// [`WeightFilter::include_1d`].
    OneDimensional,
    /// Not chosen by the penalty's name patterns.
    NotSelected,
}

/// The default "weights only" rule: batch-norm statistics are always out; biases and other
/// 1-D parameters are out unless asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeightFilter {
    biases: bool,
    one_d: bool,
}

impl WeightFilter {
    /// Weights only (the paper's choice): no biases, no norm scales, no statistics.
    pub fn weights_only() -> Self {
        Self::default()
    }

    /// Also regularise parameters whose name ends in `.bias`.
    pub fn include_biases(mut self, yes: bool) -> Self {
        self.biases = yes;
        self
    }

    /// Also regularise other parameters of rank ≤ 1 (norm-layer scales, scalars).
    pub fn include_1d(mut self, yes: bool) -> Self {
        self.one_d = yes;
        self
    }

    /// Why this rule leaves `name` (a parameter of rank `rank`) out, if it does.
    pub fn excludes(&self, name: &str, rank: usize) -> Option<Excluded> {
        let last = name.rsplit('.').next().unwrap_or(name);
        if matches!(last, "running_mean" | "running_var" | "num_batches_tracked") {
            return Some(Excluded::NormStatistic);
        }
        if last == "bias" {
            return (!self.biases).then_some(Excluded::Bias);
        }
        if rank <= 1 && !self.one_d {
            return Some(Excluded::OneDimensional);
        }
        None
    }
}

/// What [`L2Sp`] does with one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Pulled toward its anchor with this α: `α/2 ‖w − w⁰‖²`.
    Anchored {
        /// The α that applies to it (its group's, or the default).
        alpha: f64,
    },
    /// A new layer, pulled toward zero: `β/2 ‖w‖²`.
    New {
        /// The β that applies to it.
        beta: f64,
    },
    /// Left out.
    Excluded(Excluded),
}

/// How new-layer parameters are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NewLayers {
    /// A parameter with no entry in the anchor is new (the default).
    NotInAnchor,
    /// Exactly the parameters matching one of these patterns are new.
    Matching(Vec<NamePattern>),
}

/// The L2-SP regulariser `Σ_{i ∈ pretrained} αᵢ/2 ‖wᵢ − wᵢ⁰‖² + β/2 Σ_{j ∈ new} ‖wⱼ‖²`
/// (Li, Grandvalet & Davoine, ICML 2018), holding its frozen anchor.
///
/// Selection, for a parameter named `n` of rank `r`:
/// 1. the [`WeightFilter`] may exclude it (by default: biases, 1-D parameters and batch-norm
///    statistics are out — the paper regularised weights only);
/// 2. it is *new* if it matches a [`L2Sp::with_new_layers`] pattern, or, when none were given,
///    if the anchor has no entry for it;
/// 3. otherwise, if [`L2Sp::with_pretrained`] patterns were given and none matches, it is out;
/// 4. otherwise it is *anchored*, with the α of the first matching
///    [`L2Sp::with_alpha_group`] pattern (per-layer α, as ADAPT offers) or the default α. An
///    anchored parameter must have an anchor of the same shape and dtype, or the penalty
///    refuses with a [`LossError::Param`] naming it.
///
/// ```
/// # use candle_core::{Device, Tensor, Var};
/// # use xfer_ops::ParamSnapshot;
/// # use xfer_losses::L2Sp;
/// let w = Var::from_tensor(&Tensor::new(&[[1.0f64, 2.0]], &Device::Cpu)?)?;
/// let head = Var::from_tensor(&Tensor::new(&[[3.0f64]], &Device::Cpu)?)?;
/// let anchor = ParamSnapshot::capture([("trunk.weight", w.as_tensor())])?;
/// let reg = L2Sp::new(anchor, 0.1, 0.01)?;
/// let params = [("trunk.weight", &w), ("head.weight", &head)];
/// // At the anchor only the new layer counts: 0.01/2 · 3² = 0.045.
/// let omega = reg.penalty(&params)?.to_scalar::<f64>()?;
/// assert!((omega - 0.045).abs() < 1e-12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct L2Sp {
    anchor: ParamSnapshot,
    alpha: f64,
    beta: f64,
    alpha_groups: Vec<(NamePattern, f64)>,
    pretrained: Vec<NamePattern>,
    new_layers: NewLayers,
    filter: WeightFilter,
}

impl L2Sp {
    /// L2-SP against `anchor` with default `alpha` for anchored weights and `beta` for new
    /// layers (the paper: 0.1 and 0.01).
    pub fn new(anchor: ParamSnapshot, alpha: f64, beta: f64) -> Result<Self> {
        Ok(Self {
            anchor,
            alpha: check::non_negative(L2SP, "alpha", alpha)?,
            beta: check::non_negative(L2SP, "beta", beta)?,
            alpha_groups: Vec::new(),
            pretrained: Vec::new(),
            new_layers: NewLayers::NotInAnchor,
            filter: WeightFilter::default(),
        })
    }

    /// Gives the anchored parameters matching `pattern` (prefix or glob) their own α; the
    /// first matching group wins.
    pub fn with_alpha_group(mut self, pattern: impl Into<NamePattern>, alpha: f64) -> Result<Self> {
        let alpha = check::non_negative(L2SP, "alpha", alpha)?;
        self.alpha_groups.push((pattern.into(), alpha));
        Ok(self)
    }

    /// Names the new layers explicitly (prefixes or globs); without this, a parameter the
    /// anchor lacks is new.
    pub fn with_new_layers<I, P>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<NamePattern>,
    {
        self.new_layers = NewLayers::Matching(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Restricts the anchored term to parameters matching one of these patterns.
    pub fn with_pretrained<I, P>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<NamePattern>,
    {
        self.pretrained = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the weights-only rule.
    pub fn with_filter(mut self, filter: WeightFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The frozen anchor `w⁰`.
    pub fn anchor(&self) -> &ParamSnapshot {
        &self.anchor
    }

    /// What the penalty does with a parameter called `name` of rank `rank`.
    pub fn role(&self, name: &str, rank: usize) -> Role {
        if let Some(why) = self.filter.excludes(name, rank) {
            return Role::Excluded(why);
        }
        let is_new = match &self.new_layers {
            NewLayers::NotInAnchor => self.anchor.get(name).is_none(),
            NewLayers::Matching(p) => p.iter().any(|p| p.matches(name)),
        };
        if is_new {
            return Role::New { beta: self.beta };
        }
        if !self.pretrained.is_empty() && !self.pretrained.iter().any(|p| p.matches(name)) {
            return Role::Excluded(Excluded::NotSelected);
        }
        let alpha = self
            .alpha_groups
            .iter()
            .find(|(p, _)| p.matches(name))
            .map_or(self.alpha, |(_, a)| *a);
        Role::Anchored { alpha }
    }

    /// The role of every parameter in `params`, in order: what was anchored (with which α),
    /// what was treated as new, what was left out and why.
    pub fn plan<N: AsRef<str>, P: AsTensor>(&self, params: &[(N, P)]) -> Vec<(String, Role)> {
        params
            .iter()
            .map(|(n, p)| {
                let n = n.as_ref();
                (n.to_string(), self.role(n, p.as_tensor_ref().rank()))
            })
            .collect()
    }

    /// `Ω(w)` over `params`: a scalar in the dtype of the first penalised parameter (f32 for
    /// f16 / bf16 parameters, whose squares are summed in f32); 0 when nothing is penalised.
    pub fn penalty<N: AsRef<str>, P: AsTensor>(&self, params: &[(N, P)]) -> Result<Tensor> {
        let mut acc = Accumulator::default();
        let (mut anchored, mut new, mut excluded) = (0usize, 0usize, 0usize);
        for (name, p) in params {
            let name = name.as_ref();
            let w = p.as_tensor_ref();
            match self.role(name, w.rank()) {
                Role::Excluded(_) => excluded += 1,
                Role::New { beta } => {
                    new += 1;
                    check::float(L2SP, name, w)?;
                    acc.add_scaled(&xfer_ops::sq_norm(w)?, beta / 2.0)?;
                }
                Role::Anchored { alpha } => {
                    anchored += 1;
                    let w0 = self.anchor_for(name, w)?;
                    acc.add_scaled(&xfer_ops::sq_dist(w, w0)?, alpha / 2.0)?;
                }
            }
        }
        tracing::trace!(anchored, new, excluded, "l2_sp penalty");
        acc.finish(
            params
                .first()
                .map(|(_, p)| p.as_tensor_ref())
                .or_else(|| self.anchor.iter().next().map(|(_, t)| t)),
        )
    }

    fn anchor_for<'a>(&'a self, name: &str, w: &Tensor) -> Result<&'a Tensor> {
        check::float(L2SP, name, w)?;
        let w0 = self.anchor.get(name).ok_or_else(|| {
            LossError::param(
                L2SP,
                name,
                "is selected as pretrained but the anchor holds no copy of it \
                 (capture it in the ParamSnapshot, or name it a new layer)",
            )
        })?;
        if w0.dims() != w.dims() {
            return Err(LossError::param(
                L2SP,
                name,
                format!(
                    "has shape {:?} but its anchor has shape {:?}",
                    w.dims(),
                    w0.dims()
                ),
            ));
        }
        if w0.dtype() != w.dtype() {
            return Err(LossError::param(
                L2SP,
                name,
                format!(
                    "has dtype {:?} but its anchor has dtype {:?}",
                    w.dtype(),
                    w0.dtype()
                ),
            ));
        }
        if !w0.device().same_device(w.device()) {
            return Err(LossError::param(
                L2SP,
                name,
                format!(
                    "is on {:?} but its anchor is on {:?}",
                    w.device(),
                    w0.device()
                ),
            ));
        }
        Ok(w0)
    }
}

/// Plain L2 — weight decay written as a loss: `β/2 · Σⱼ ‖wⱼ‖²` over the selected parameters
/// (by default every weight, per [`WeightFilter::weights_only`]).
#[derive(Debug, Clone)]
pub struct L2Penalty {
    beta: f64,
    selection: Vec<NamePattern>,
    filter: WeightFilter,
}

impl L2Penalty {
    /// `β/2 Σ ‖w‖²` over every weight.
    pub fn new(beta: f64) -> Result<Self> {
        Ok(Self {
            beta: check::non_negative(L2, "beta", beta)?,
            selection: Vec::new(),
            filter: WeightFilter::default(),
        })
    }

    /// Only parameters matching one of these patterns (prefixes or globs).
    pub fn with_selection<I, P>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<NamePattern>,
    {
        self.selection = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the weights-only rule.
    pub fn with_filter(mut self, filter: WeightFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Whether `name` (rank `rank`) is penalised, or why not.
    pub fn excludes(&self, name: &str, rank: usize) -> Option<Excluded> {
        if let Some(why) = self.filter.excludes(name, rank) {
            return Some(why);
        }
        if !self.selection.is_empty() && !self.selection.iter().any(|p| p.matches(name)) {
            return Some(Excluded::NotSelected);
        }
        None
    }

    /// `β/2 Σ ‖w‖²` over the selected `params`.
    pub fn penalty<N: AsRef<str>, P: AsTensor>(&self, params: &[(N, P)]) -> Result<Tensor> {
        let mut acc = Accumulator::default();
        for (name, p) in params {
            let name = name.as_ref();
            let w = p.as_tensor_ref();
            if self.excludes(name, w.rank()).is_none() {
                check::float(L2, name, w)?;
                acc.add_scaled(&xfer_ops::sq_norm(w)?, self.beta / 2.0)?;
            }
        }
        acc.finish(params.first().map(|(_, p)| p.as_tensor_ref()))
    }
}

/// Sums scalar terms in the dtype of the first one (so mixed-precision lists still add up).
#[derive(Default)]
struct Accumulator {
    total: Option<Tensor>,
}

impl Accumulator {
    fn add_scaled(&mut self, term: &Tensor, scale: f64) -> Result<()> {
        let term = (term * scale)?;
        self.total = Some(match self.total.take() {
            None => term,
            Some(t) => (&t + term.to_dtype(t.dtype())?.to_device(t.device())?)?,
        });
        Ok(())
    }

    fn finish(self, like: Option<&Tensor>) -> Result<Tensor> {
        match (self.total, like) {
            (Some(t), _) => Ok(t),
            (None, Some(l)) if l.dtype().is_float() => {
                Ok(Tensor::zeros((), l.dtype(), l.device())?)
            }
            (None, Some(l)) => Ok(Tensor::zeros((), DType::F32, l.device())?),
            (None, None) => Ok(Tensor::zeros((), DType::F32, &Device::Cpu)?),
        }
    }
}
