//! Conditional domain-adversarial training, CDAN and CDAN+E (Long, Cao, Wang & Jordan,
//! "Conditional Adversarial Domain Adaptation", NeurIPS 2018).
//!
//! DANN's discriminator sees the features `f` alone, so it aligns the marginal feature
//! distributions even where the classes disagree. CDAN conditions it on the classifier's
//! prediction `g = softmax(z)` through the multilinear map
//!
//! ```text
//! T⊗(f, g) = vec(g ⊗ f) ∈ R^{C·D}          (row n: [g_1 f, g_2 f, …, g_C f])
//! T⊙(f, g) = (f R_f) ⊙ (g R_g) / √d         (randomised, R_f ∈ R^{D×d}, R_g ∈ R^{C×d} fixed N(0, 1))
//! ```
//!
//! (the paper uses `T⊙` with `d = 1024` when `C·D > 4096`; `E[⟨T⊙(f,g), T⊙(f',g')⟩] =
//! ⟨T⊗(f,g), T⊗(f',g')⟩`). With **entropy conditioning** (CDAN+E) every example is weighted by
//! `w = 1 + e^{−H(g)}`, normalised so the weights of the batch sum to its size: confident
//! predictions count more, uncertain ones (hard to transfer) less. The loss is
//!
//! `L = (1/N) Σᵢ wᵢ · BCE(D(R_λ(T(fᵢ, gᵢ))), dᵢ)`    (`d = 1` source, `0` target, `N = N_s + N_t`)
//!
//! As in the authors' code and TLlib's `ConditionalDomainAdversarialLoss`, `g` is detached: the
//! classifier receives no gradient through the conditioning, the features receive the reversed
//! gradient `−λ ∂L/∂f`.

use candle_core::{DType, Device, Tensor};
use xfer_ops::SeededRng;

use crate::classification::bce_elementwise;
use crate::domain_adversarial::{Discriminator, DomainAdversarialOutput};
use crate::{LossError, Result, check};

const CDAN: &str = "cdan";

/// The full multilinear map `T⊗(f, g)`: `features` `(N, D)` and `predictions` `(N, C)` give
/// `(N, C·D)` whose row `n` is `[g_{n1} f_n, …, g_{nC} f_n]` (the flattened outer product
/// `g_n f_nᵀ`, as TLlib's `MultiLinearMap`).
pub fn multilinear_map(features: &Tensor, predictions: &Tensor) -> Result<Tensor> {
    let (n, d) = check::nonempty_matrix(CDAN, "features", features)?;
    let (ng, c) = check::nonempty_matrix(CDAN, "predictions", predictions)?;
    if ng != n {
        return Err(LossError::shape(
            CDAN,
            "predictions",
            predictions.dims(),
            format!(
                "({n}, C): one row per row of `features` {:?}",
                features.dims()
            ),
        ));
    }
    check::same_dtype(CDAN, ("features", features), ("predictions", predictions))?;
    let outer = predictions
        .unsqueeze(2)?
        .broadcast_mul(&features.unsqueeze(1)?)?;
    Ok(outer.reshape((n, c * d))?)
}

/// The randomised multilinear map `T⊙(f, g) = (f R_f) ⊙ (g R_g) / √d` with fixed Gaussian
/// `R_f` `(D, d)` and `R_g` `(C, d)` drawn from a seeded generator (TLlib's
/// `RandomizedMultiLinearMap`).
#[derive(Debug, Clone)]
pub struct RandomizedMultilinearMap {
    rf: Tensor,
    rg: Tensor,
    output_dim: usize,
}

impl RandomizedMultilinearMap {
    /// Draws `R_f` and `R_g` with entries `N(0, 1)` from `rng`.
    pub fn new(
        feature_dim: usize,
        num_classes: usize,
        output_dim: usize,
        rng: &mut SeededRng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if feature_dim == 0 || num_classes == 0 || output_dim == 0 {
            return Err(LossError::argument(
                CDAN,
                "output_dim",
                format!(
                    "feature_dim ({feature_dim}), num_classes ({num_classes}) and output_dim \
                     ({output_dim}) must all be > 0"
                ),
            ));
        }
        let rf = rng.normal(&[feature_dim, output_dim], 0.0, 1.0, dtype, device)?;
        let rg = rng.normal(&[num_classes, output_dim], 0.0, 1.0, dtype, device)?;
        Ok(Self { rf, rg, output_dim })
    }

    /// The width `d` of the map's output.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// `T⊙(f, g)` for `features` `(N, D)` and `predictions` `(N, C)`: `(N, d)`.
    pub fn forward(&self, features: &Tensor, predictions: &Tensor) -> Result<Tensor> {
        let (n, d) = check::nonempty_matrix(CDAN, "features", features)?;
        let (ng, c) = check::nonempty_matrix(CDAN, "predictions", predictions)?;
        let (rd, rc) = (self.rf.dim(0)?, self.rg.dim(0)?);
        if d != rd || ng != n || c != rc {
            return Err(LossError::shape(
                CDAN,
                "predictions",
                predictions.dims(),
                format!(
                    "({n}, {rc}) with features ({n}, {rd}): the map was drawn for {rd} features \
                     and {rc} classes, features are {:?}",
                    features.dims()
                ),
            ));
        }
        let rf = self.rf.to_dtype(features.dtype())?;
        let rg = self.rg.to_dtype(features.dtype())?;
        let a = features.matmul(&rf)?;
        let b = predictions.to_dtype(features.dtype())?.matmul(&rg)?;
        Ok(((a * b)? / (self.output_dim as f64).sqrt())?)
    }
}

/// Which multilinear map conditions the discriminator.
#[derive(Debug, Clone)]
pub enum ConditioningMap {
    /// `T⊗`, width `C·D`.
    Full,
    /// `T⊙`, width `d`.
    Randomized(RandomizedMultilinearMap),
}

impl ConditioningMap {
    /// The paper's rule: `T⊗` when `C·D ≤ max_full_dim` (4096 in the paper), else `T⊙` of
    /// width `randomized_dim` (1024 in the paper) drawn from `rng`.
    pub fn auto(
        feature_dim: usize,
        num_classes: usize,
        max_full_dim: usize,
        randomized_dim: usize,
        rng: &mut SeededRng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if feature_dim.saturating_mul(num_classes) <= max_full_dim {
            Ok(Self::Full)
        } else {
            Ok(Self::Randomized(RandomizedMultilinearMap::new(
                feature_dim,
                num_classes,
                randomized_dim,
                rng,
                dtype,
                device,
            )?))
        }
    }

    /// The width of the map's output for `feature_dim` features and `num_classes` classes
    /// (the discriminator's input width).
    pub fn output_dim(&self, feature_dim: usize, num_classes: usize) -> usize {
        match self {
            Self::Full => feature_dim * num_classes,
            Self::Randomized(m) => m.output_dim(),
        }
    }

    /// Applies the map.
    pub fn forward(&self, features: &Tensor, predictions: &Tensor) -> Result<Tensor> {
        match self {
            Self::Full => multilinear_map(features, predictions),
            Self::Randomized(m) => m.forward(features, predictions),
        }
    }
}

/// CDAN+E's example weights `wᵢ = 1 + e^{−H(pᵢ)}` for probabilities `probs` `(N, C)`,
/// normalised so that `Σ wᵢ = N`, detached (no gradient flows through them). `H` is the
/// entropy in nats; an example with a one-hot prediction gets twice the raw weight of a
/// uniform one over many classes.
pub fn entropy_weights(probs: &Tensor) -> Result<Tensor> {
    let (n, _) = check::nonempty_matrix(CDAN, "probs", probs)?;
    let p = probs.detach();
    // H = −Σ p log p with 0·log 0 = 0 (clamped log).
    let h = (p.clone() * p.clamp(1e-30, 1.0)?.log()?)?.sum(1)?.neg()?;
    let w = (h.neg()?.exp()? + 1.0)?;
    let total = w.sum_all()?;
    Ok(w.broadcast_div(&total)?.affine(n as f64, 0.0)?)
}

/// The CDAN / CDAN+E loss owning its discriminator (see the module documentation).
pub struct ConditionalDomainAdversarialLoss {
    discriminator: Box<dyn Discriminator>,
    map: ConditioningMap,
    entropy_conditioning: bool,
}

impl std::fmt::Debug for ConditionalDomainAdversarialLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionalDomainAdversarialLoss")
            .field("map", &self.map)
            .field("entropy_conditioning", &self.entropy_conditioning)
            .finish_non_exhaustive()
    }
}

impl ConditionalDomainAdversarialLoss {
    /// The loss around `discriminator` (it takes the map's output, width
    /// [`ConditioningMap::output_dim`]); `entropy_conditioning` makes it CDAN+E.
    pub fn new(
        discriminator: impl Discriminator + 'static,
        map: ConditioningMap,
        entropy_conditioning: bool,
    ) -> Self {
        Self {
            discriminator: Box::new(discriminator),
            map,
            entropy_conditioning,
        }
    }

    /// Whether this is CDAN+E.
    pub fn entropy_conditioning(&self) -> bool {
        self.entropy_conditioning
    }

    /// The loss for source features/logits `(N_s, D)`/`(N_s, C)` and target features/logits
    /// `(N_t, D)`/`(N_t, C)`, reversing the gradient into the features with weight
    /// `lambda ≥ 0` (0 cuts it: the discriminator still learns).
    pub fn forward(
        &self,
        source_features: &Tensor,
        source_logits: &Tensor,
        target_features: &Tensor,
        target_logits: &Tensor,
        lambda: f64,
    ) -> Result<DomainAdversarialOutput> {
        let lambda = check::non_negative(CDAN, "lambda", lambda)?;
        let (ns, d) = check::nonempty_matrix(CDAN, "source_features", source_features)?;
        let (nt, dt) = check::nonempty_matrix(CDAN, "target_features", target_features)?;
        if dt != d {
            return Err(LossError::shape(
                CDAN,
                "target_features",
                target_features.dims(),
                format!("({nt}, {d}): the width of `source_features`"),
            ));
        }
        let (ls, c) = check::nonempty_matrix(CDAN, "source_logits", source_logits)?;
        let (lt, ct) = check::nonempty_matrix(CDAN, "target_logits", target_logits)?;
        if ls != ns || lt != nt || ct != c {
            return Err(LossError::shape(
                CDAN,
                "target_logits",
                target_logits.dims(),
                format!(
                    "({nt}, {c}) with source_logits ({ns}, {c}): one row per feature row, \
                     the same classes; got source_logits {:?}",
                    source_logits.dims()
                ),
            ));
        }
        check::same_dtype(
            CDAN,
            ("source_features", source_features),
            ("target_features", target_features),
        )?;
        let f = Tensor::cat(&[source_features, target_features], 0)?;
        let z = Tensor::cat(&[source_logits, target_logits], 0)?
            .detach()
            .to_dtype(f.dtype())?;
        let g = xfer_ops::softmax(&z)?;
        let h = self.map.forward(&f, &g)?;
        let reversed = if lambda == 0.0 {
            h.detach()
        } else {
            xfer_ops::grad_reverse(&h, lambda)?
        };
        let logits =
            self.discriminator
                .logits(&reversed)
                .map_err(|source| LossError::Callback {
                    loss: CDAN,
                    what: "discriminator",
                    source,
                })?;
        let n = ns + nt;
        let logits = match logits.dims() {
            [m] if *m == n => logits,
            [m, 1] if *m == n => logits.squeeze(1)?,
            d => {
                return Err(LossError::shape(
                    CDAN,
                    "discriminator output",
                    d,
                    format!("({n}) or ({n}, 1): one logit per source and target example"),
                ));
            }
        };
        check::float(CDAN, "discriminator output", &logits)?;
        let mut domain = vec![1f64; ns];
        domain.resize(n, 0.0);
        let domain = Tensor::from_vec(domain, n, &Device::Cpu)?
            .to_dtype(logits.dtype())?
            .to_device(logits.device())?;
        let per = bce_elementwise(&logits, &domain)?;
        let loss = if self.entropy_conditioning {
            let w = entropy_weights(&g)?.to_dtype(per.dtype())?;
            (per * w)?.mean_all()?
        } else {
            per.mean_all()?
        };
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
