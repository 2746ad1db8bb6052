//! Softmax, log-softmax, layer norm and batch norm with backward passes that reach every input.

use candle_core::{D, Tensor};

fn check_rank(op: &'static str, x: &Tensor) -> crate::Result<()> {
    if x.rank() == 0 {
        return Err(crate::OpsError::shape(
            op,
            "input must have at least one dimension",
        ));
    }
    Ok(())
}

/// `softmax(x)_i = exp(x_i − max x) / Σ_j exp(x_j − max x)` over the last dimension.
pub fn softmax(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("softmax", x)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// `log_softmax(x)_i = x_i − max x − log Σ_j exp(x_j − max x)` over the last dimension.
pub fn log_softmax(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("log_softmax", x)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

/// Layer norm over the last dimension:
/// `y = (x − μ) / sqrt(σ² + ε) · γ + β`, with `μ`, `σ²` the mean and biased variance of the row.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> crate::Result<Tensor> {
    check_rank("layer_norm", x)?;
    let d = x.dim(D::Minus1)?;
    if gamma.dims() != [d] || beta.dims() != [d] {
        return Err(crate::OpsError::shape(
            "layer_norm",
            format!(
                "gamma {:?} and beta {:?} must both be ({d}) for input {:?}",
                gamma.dims(),
                beta.dims(),
                x.dims()
            ),
        ));
    }
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(xn.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Batch norm in training mode over (N, C) or (N, C, H, W) input, per channel `c`:
/// `y = (x − μ_c) / sqrt(σ²_c + ε) · γ_c + β_c` with the batch mean `μ_c` and biased batch
/// variance `σ²_c`. Returns `(y, μ, σ²_unbiased)`; the last two (detached, shape (C)) are what a
/// layer folds into its running statistics, as PyTorch does.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> crate::Result<(Tensor, Tensor, Tensor)> {
    let dims = x.dims().to_vec();
    if dims.len() != 2 && dims.len() != 4 {
        return Err(crate::OpsError::shape(
            "batch_norm",
            format!("input must be (N, C) or (N, C, H, W), got {dims:?}"),
        ));
    }
    let c = dims[1];
    if gamma.dims() != [c] || beta.dims() != [c] {
        return Err(crate::OpsError::shape(
            "batch_norm",
            format!(
                "gamma {:?} and beta {:?} must both be ({c}) for input {dims:?}",
                gamma.dims(),
                beta.dims()
            ),
        ));
    }
    let count: usize = dims
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, d)| d)
        .product();
    if count < 2 {
        return Err(crate::OpsError::shape(
            "batch_norm",
            format!("training needs more than one value per channel, got {dims:?}"),
        ));
    }
    let bshape: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| if i == 1 { *d } else { 1 })
        .collect();
    let reduce = |t: &Tensor| -> candle_core::Result<Tensor> {
        if dims.len() == 4 {
            t.sum_keepdim(3)?.sum_keepdim(2)?.sum_keepdim(0)
        } else {
            t.sum_keepdim(0)
        }
    };
    let mu = (reduce(x)? / count as f64)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = (reduce(&xc.sqr()?)? / count as f64)?;
    let xn = xc.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let y = xn
        .broadcast_mul(&gamma.reshape(bshape.as_slice())?)?
        .broadcast_add(&beta.reshape(bshape.as_slice())?)?;
    let unbiased = (var.detach() * (count as f64 / (count - 1) as f64))?.flatten_all()?;
    Ok((y, mu.detach().flatten_all()?, unbiased))
}
