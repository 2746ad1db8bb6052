//! Deep CORAL (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
//! ECCV 2016 workshops): align the second-order statistics of source and target features.

use candle_core::Tensor;

use crate::{LossError, Result, check};

const CORAL: &str = "coral";

/// `L_CORAL = ‖C_S − C_T‖²_F / (4 d²)` with the unbiased feature covariances
/// `C = (1/(n − 1)) (XᵀX − (1/n)(1ᵀX)ᵀ(1ᵀX))` of `source` `(n_s, d)` and `target` `(n_t, d)`
/// (each needs at least two rows). Zero whenever the two covariances agree, whatever the
/// means.
pub fn coral(source: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (ns, d) = check::nonempty_matrix(CORAL, "source", source)?;
    let (nt, dt) = check::nonempty_matrix(CORAL, "target", target)?;
    if dt != d {
        return Err(LossError::shape(
            CORAL,
            "target",
            target.dims(),
            format!("(n, {d}): the feature size of `source` {:?}", source.dims()),
        ));
    }
    check::same_dtype(CORAL, ("source", source), ("target", target))?;
    for (name, t, n) in [("source", source, ns), ("target", target, nt)] {
        if n < 2 {
            return Err(LossError::shape(
                CORAL,
                name,
                t.dims(),
                "at least two rows (a covariance needs two samples)",
            ));
        }
    }
    let cs = covariance(source, ns)?;
    let ct = covariance(target, nt)?;
    Ok(((cs - ct)?.sqr()?.sum_all()? / (4.0 * (d * d) as f64))?)
}

fn covariance(x: &Tensor, n: usize) -> Result<Tensor> {
    let xc = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    Ok((xc.t()?.matmul(&xc)? / (n - 1) as f64)?)
}
