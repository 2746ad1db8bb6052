//! Domain-adversarial training (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
//! Backpropagation", ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural
//! Networks", JMLR 2016).
//!
//! The domain classifier `G_d` learns to tell source features (label 1) from target features
//! (label 0); between the feature extractor and `G_d` a gradient reversal layer multiplies the
//! gradient by `−λ`, so minimising the one loss
//!
//! `L_d = ½ · [ mean_{x∈S} BCE(G_d(R_λ(f(x))), 1) + mean_{x∈T} BCE(G_d(R_λ(f(x))), 0) ]`
//!
//! trains `G_d` to discriminate and, at the same time, the features to be indistinguishable:
//! `θ_f ← θ_f − μ(∂L_y/∂θ_f − λ ∂L_d/∂θ_f)`. As in TLlib's `DomainAdversarialLoss`, the
//! object owns the discriminator; unlike TLlib, λ is an explicit argument (use
//! [`dann_lambda`] with training progress), never a hidden step counter.

use candle_core::{DType, Tensor};

use crate::classification::bce_elementwise;
use crate::{LossError, Result, check};

const DA: &str = "domain_adversarial";

/// The boxed error a [`Discriminator`] may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A domain classifier: features `(N, …)` in, one logit per example out, shape `(N)` or
/// `(N, 1)` (positive = source). Any closure `Fn(&Tensor) -> Result<Tensor, E>` is one, whatever
/// its error type, so a model's `forward` can be wrapped directly.
pub trait Discriminator {
    /// Domain logits for `features`.
    fn logits(&self, features: &Tensor) -> std::result::Result<Tensor, BoxError>;
}

impl<F, E> Discriminator for F
where
    F: Fn(&Tensor) -> std::result::Result<Tensor, E>,
    E: Into<BoxError>,
{
    fn logits(&self, features: &Tensor) -> std::result::Result<Tensor, BoxError> {
        self(features).map_err(Into::into)
    }
}

/// What one [`DomainAdversarialLoss::forward`] gives back.
#[derive(Debug, Clone)]
pub struct DomainAdversarialOutput {
    /// `L_d`, a scalar with the gradient reversal in its graph.
    pub loss: Tensor,
    /// Balanced domain accuracy `½(acc_S + acc_T)` in `[0, 1]`: how well the discriminator
    /// tells the domains apart (0.5 = features indistinguishable).
    pub domain_accuracy: f64,
    /// Fraction of source examples classified as source (logit ≥ 0).
    pub source_accuracy: f64,
    /// Fraction of target examples classified as target (logit < 0).
    pub target_accuracy: f64,
}

/// The DANN domain loss owning its discriminator `G_d`:
/// `L_d = ½ [mean_S BCE(G_d(R_λ(f_s)), 1) + mean_T BCE(G_d(R_λ(f_t)), 0)]`, with `R_λ` the
/// gradient reversal of [`xfer_ops::grad_reverse()`] (Ganin & Lempitsky, ICML 2015).
///
/// Source and target features are concatenated and passed through the discriminator once (so
/// a batch norm inside it sees both domains, as in TLlib). The caller keeps the discriminator's
/// parameters in its own optimiser; the closure only needs to read them.
///
/// ```
/// # use candle_core::{Device, Tensor, Var};
/// # use xfer_losses::{DomainAdversarialLoss, dann_lambda};
/// let w = Var::from_tensor(&Tensor::new(&[[0.5f64], [-0.25]], &Device::Cpu)?)?;
/// let head = w.clone();
/// let dann = DomainAdversarialLoss::new(move |f: &Tensor| f.matmul(head.as_tensor()));
/// let fs = Tensor::new(&[[1.0f64, 0.0], [2.0, 1.0]], &Device::Cpu)?;
/// let ft = Tensor::new(&[[0.0f64, 1.0]], &Device::Cpu)?;
/// let out = dann.forward(&fs, &ft, dann_lambda(0.5, 10.0))?;
/// assert_eq!(out.domain_accuracy, 1.0);
/// let grads = out.loss.backward()?;
/// assert!(grads.get(w.as_tensor()).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DomainAdversarialLoss {
    discriminator: Box<dyn Discriminator>,
}

impl std::fmt::Debug for DomainAdversarialLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainAdversarialLoss")
            .finish_non_exhaustive()
    }
}

impl DomainAdversarialLoss {
    /// The loss around a discriminator (a closure or any [`Discriminator`]).
    pub fn new(discriminator: impl Discriminator + 'static) -> Self {
        Self {
            discriminator: Box::new(discriminator),
        }
    }

    /// The loss around an already boxed discriminator.
    pub fn from_boxed(discriminator: Box<dyn Discriminator>) -> Self {
        Self { discriminator }
    }

    /// `L_d` and the domain accuracy for `source_features` `(N_s, …)` and `target_features`
    /// `(N_t, …)` (same trailing shape and dtype), reversing the gradient into the features
    /// with weight `lambda ≥ 0` (0: the features get no gradient from `L_d` at all; the
    /// discriminator still learns).
    pub fn forward(
        &self,
        source_features: &Tensor,
        target_features: &Tensor,
        lambda: f64,
    ) -> Result<DomainAdversarialOutput> {
        let lambda = check::non_negative(DA, "lambda", lambda)?;
        check::float(DA, "source_features", source_features)?;
        let ns = batch(source_features, "source_features")?;
        let nt = batch(target_features, "target_features")?;
        if source_features.dims().get(1..) != target_features.dims().get(1..) {
            return Err(LossError::shape(
                DA,
                "target_features",
                target_features.dims(),
                format!(
                    "the trailing shape of `source_features` {:?}",
                    source_features.dims()
                ),
            ));
        }
        check::same_dtype(
            DA,
            ("source_features", source_features),
            ("target_features", target_features),
        )?;
        let features = Tensor::cat(&[source_features, target_features], 0)?;
        // λ = 0: cut the graph with `detach` (same forward, no gradient into the features).
        // `xfer_ops::grad_reverse` answers "no gradient" from its backward at λ = 0, which
        // makes candle 0.11's backward panic ("grad not populated") whenever the reversed
        // tensor is an intermediate node — as features always are in training.
        let reversed = if lambda == 0.0 {
            features.detach()
        } else {
            xfer_ops::grad_reverse(&features, lambda)?
        };
        let logits =
            self.discriminator
                .logits(&reversed)
                .map_err(|source| LossError::Callback {
                    loss: DA,
                    what: "discriminator",
                    source,
                })?;
        let n = ns + nt;
        let logits = match logits.dims() {
            [m] if *m == n => logits,
            [m, 1] if *m == n => logits.squeeze(1)?,
            d => {
                return Err(LossError::shape(
                    DA,
                    "discriminator output",
                    d,
                    format!("({n}) or ({n}, 1): one logit per source and target example"),
                ));
            }
        };
        check::float(DA, "discriminator output", &logits)?;
        let mut domain = vec![1f64; ns];
        domain.resize(n, 0.0);
        let domain = Tensor::from_vec(domain, n, &candle_core::Device::Cpu)?
            .to_dtype(logits.dtype())?
            .to_device(logits.device())?;
        let per = bce_elementwise(&logits, &domain)?;
        let loss_s = per.narrow(0, 0, ns)?.mean_all()?;
        let loss_t = per.narrow(0, ns, nt)?.mean_all()?;
        let loss = ((loss_s + loss_t)? * 0.5)?;

        let said_source = logits.detach().ge(0.0)?.to_dtype(DType::F64)?;
        let source_accuracy = said_source
            .narrow(0, 0, ns)?
            .mean_all()?
            .to_scalar::<f64>()?;
        let target_accuracy = 1.0
            - said_source
                .narrow(0, ns, nt)?
                .mean_all()?
                .to_scalar::<f64>()?;
        Ok(DomainAdversarialOutput {
            loss,
            domain_accuracy: 0.5 * (source_accuracy + target_accuracy),
            source_accuracy,
            target_accuracy,
        })
    }
}

fn batch(t: &Tensor, name: &str) -> Result<usize> {
    match t.dims().first() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(LossError::shape(
            DA,
            name,
            t.dims(),
            "a batch dimension first, with at least one example",
        )),
    }
}

/// The DANN schedule of the reversal weight: `λ_p = 2 / (1 + exp(−γ·p)) − 1` for training
/// progress `p ∈ [0, 1]` (the paper uses γ = 10). Rises from 0 at `p = 0` toward 1, so the
/// noisy early discriminator does not disturb the features. A pure function: no step counter.
pub fn dann_lambda(progress: f64, gamma: f64) -> f64 {
    2.0 / (1.0 + (-gamma * progress).exp()) - 1.0
}
