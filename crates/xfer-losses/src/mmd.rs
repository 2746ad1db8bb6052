//! Multi-kernel maximum mean discrepancy, the distribution distance of DAN (Long, Cao, Wang &
//! Jordan, "Learning Transferable Features with Deep Adaptation Networks", ICML 2015), after
//! Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
//!
//! For source features `{sᵢ}` (m of them), target features `{tⱼ}` (n of them) and the kernel
//! `k = (1/K) Σ_u k_u` (a convex combination of K Gaussian kernels with equal weights
//! `β_u = 1/K`, DAN's multi-kernel form), the biased (V-statistic) estimate
//!
//! `MMD²(S, T) = (1/m²) Σ_{i,i'} k(sᵢ, s_{i'}) + (1/n²) Σ_{j,j'} k(tⱼ, t_{j'}) − (2/mn) Σ_{i,j} k(sᵢ, tⱼ)`
//!
//! is the squared RKHS distance between the two empirical mean embeddings: never negative,
//! exactly zero for identical samples, and defined for `m ≠ n`.

use candle_core::Tensor;

use crate::{LossError, Result, check};

const MMD: &str = "mmd";

/// A Gaussian kernel `k(x, y) = exp(−‖x − y‖² / (2σ²))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaussianKernel {
    /// A fixed bandwidth `σ² > 0`.
    Fixed {
        /// The variance `σ²`.
        sigma_sq: f64,
    },
    /// `σ² = α · mean_{a,b} ‖z_a − z_b‖²` over all pairs of the pooled source and target
    /// features (the bandwidth heuristic of TLlib's DAN; the mean is treated as a constant for
    /// the gradient).
    Relative {
        /// The multiplier `α > 0`.
        alpha: f64,
    },
}

/// Multi-kernel MMD² between source and target features (DAN, Long et al., ICML 2015): see
/// the module documentation for the estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiKernelMmd {
    kernels: Vec<GaussianKernel>,
}

impl Default for MultiKernelMmd {
    /// DAN's family as TLlib sets it up: relative bandwidths `α = 2^k`, `k = −3, …, 1`.
    fn default() -> Self {
        Self {
            kernels: (-3..=1)
                .map(|k| GaussianKernel::Relative {
                    alpha: 2f64.powi(k),
                })
                .collect(),
        }
    }
}

impl MultiKernelMmd {
    /// MMD² with this family of kernels (at least one; every σ² or α finite and > 0).
    pub fn new(kernels: Vec<GaussianKernel>) -> Result<Self> {
        if kernels.is_empty() {
            return Err(LossError::argument(
                MMD,
                "kernels",
                "must hold at least one kernel",
            ));
        }
        for k in &kernels {
            match *k {
                GaussianKernel::Fixed { sigma_sq } => {
                    check::positive(MMD, "sigma_sq", sigma_sq)?;
                }
                GaussianKernel::Relative { alpha } => {
                    check::positive(MMD, "alpha", alpha)?;
                }
            }
        }
        Ok(Self { kernels })
    }

    /// The kernels used.
    pub fn kernels(&self) -> &[GaussianKernel] {
        &self.kernels
    }

    /// `MMD²` between `source` `(m, d)` and `target` `(n, d)` features.
    pub fn forward(&self, source: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (m, d) = check::nonempty_matrix(MMD, "source", source)?;
        let (n, dt) = check::nonempty_matrix(MMD, "target", target)?;
        if dt != d {
            return Err(LossError::shape(
                MMD,
                "target",
                target.dims(),
                format!("(n, {d}): the feature size of `source` {:?}", source.dims()),
            ));
        }
        check::same_dtype(MMD, ("source", source), ("target", target))?;
        let z = Tensor::cat(&[source, target], 0)?;
        // ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b, clamped at 0 against rounding.
        let sq = z.sqr()?.sum_keepdim(1)?;
        let dist = sq
            .broadcast_add(&sq.t()?)?
            .sub(&(z.matmul(&z.t()?)? * 2.0)?)?
            .relu()?;
        let mean_dist = dist
            .detach()
            .mean_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let mut kernel: Option<Tensor> = None;
        for k in &self.kernels {
            let sigma_sq = match *k {
                GaussianKernel::Fixed { sigma_sq } => sigma_sq,
                GaussianKernel::Relative { alpha } => alpha * mean_dist,
            };
            // All points equal (mean distance 0): every kernel value is 1 whatever σ.
            let km = if sigma_sq > 0.0 {
                (&dist * (-1.0 / (2.0 * sigma_sq)))?.exp()?
            } else {
                dist.ones_like()?
            };
            kernel = Some(match kernel {
                None => km,
                Some(acc) => (acc + km)?,
            });
        }
        let Some(kernel) = kernel else {
            return Err(LossError::argument(
                MMD,
                "kernels",
                "must hold at least one kernel",
            ));
        };
        let kernel = (kernel / self.kernels.len() as f64)?;
        let k_ss = kernel.narrow(0, 0, m)?.narrow(1, 0, m)?.mean_all()?;
        let k_tt = kernel.narrow(0, m, n)?.narrow(1, m, n)?.mean_all()?;
        let k_st = kernel.narrow(0, 0, m)?.narrow(1, m, n)?.mean_all()?;
        Ok(((k_ss + k_tt)? - (k_st * 2.0)?)?)
    }
}
