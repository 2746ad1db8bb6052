//! Softmax, log-softmax, layer norm and batch norm with backward passes that reach every input.

use candle_core::{D, DType, Tensor};

use crate::activation::Activation;
use crate::norm_cpu::{BatchNormOp, BatchStatsOp, BnDims, LayerNormOp, SoftmaxOp};

fn check_rank(op: &'static str, x: &Tensor) -> crate::Result<()> {
    if x.rank() == 0 {
        return Err(crate::OpsError::shape(
            op,
            "input must have at least one dimension",
        ));
    }
    Ok(())
}

/// Which path a last-dimension op takes: the fused CPU kernel (in `compute` dtype, converted
/// back to the input's dtype), or the composed candle ops (other devices, other dtypes).
fn fused_dtype(x: &Tensor) -> Option<DType> {
    if !x.device().is_cpu() || x.elem_count() == 0 {
        return None;
    }
    match x.dtype() {
        DType::F32 | DType::F64 => Some(x.dtype()),
        DType::F16 | DType::BF16 => Some(DType::F32),
        _ => None,
    }
}

fn softmax_fused(x: &Tensor, log: bool) -> crate::Result<Option<Tensor>> {
    let Some(dt) = fused_dtype(x) else {
        return Ok(None);
    };
    let y = x
        .to_dtype(dt)?
        .contiguous()?
        .apply_op1(SoftmaxOp { log })?
        .to_dtype(x.dtype())?;
    Ok(Some(y))
}

/// `softmax(x)_i = exp(x_i − max x) / Σ_j exp(x_j − max x)` over the last dimension.
///
/// Backward: `∂L/∂x = y ⊙ (g − Σ_j g_j y_j)` with `g = ∂L/∂y`. On the CPU (f32, f64; f16/bf16
/// through f32) a fused kernel with that explicit backward; elsewhere [`softmax_portable`].
/// Not twice differentiable on the CPU.
pub fn softmax(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("softmax", x)?;
    match softmax_fused(x, false)? {
        Some(y) => Ok(y),
        None => softmax_portable(x),
    }
}

/// [`softmax`] composed from candle ops (any device, twice differentiable).
pub fn softmax_portable(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("softmax", x)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// `log_softmax(x)_i = x_i − max x − log Σ_j exp(x_j − max x)` over the last dimension.
///
/// Backward: `∂L/∂x = g − exp(y) · Σ_j g_j`. On the CPU a fused kernel with that explicit
/// backward; elsewhere [`log_softmax_portable`].
pub fn log_softmax(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("log_softmax", x)?;
    match softmax_fused(x, true)? {
        Some(y) => Ok(y),
        None => log_softmax_portable(x),
    }
}

/// [`log_softmax`] composed from candle ops (any device, twice differentiable).
pub fn log_softmax_portable(x: &Tensor) -> crate::Result<Tensor> {
    check_rank("log_softmax", x)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

fn check_layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> crate::Result<()> {
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
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dtype() != x.dtype() {
            return Err(crate::OpsError::DTypeMismatch {
                op: "layer_norm",
                msg: format!(
                    "input {:?} is {:?} but {what} is {:?}",
                    x.dims(),
                    x.dtype(),
                    t.dtype()
                ),
            });
        }
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(crate::OpsError::shape(
            "layer_norm",
            format!("eps must be finite and non-negative, got {eps}"),
        ));
    }
    Ok(())
}

/// Layer norm over the last dimension (Ba, Kiros & Hinton, 2016):
/// `y = (x − μ) / sqrt(σ² + ε) · γ + β`, with `μ`, `σ²` the mean and biased variance of the row.
///
/// Backward, with `x̂ = (x − μ)/sqrt(σ² + ε)` and `ĝ = g ⊙ γ`:
/// `∂L/∂x = (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)) / sqrt(σ² + ε)`, `∂L/∂γ = Σ_rows g ⊙ x̂`,
/// `∂L/∂β = Σ_rows g`. On the CPU a fused kernel with that explicit backward (statistics in
/// f64); elsewhere [`layer_norm_portable`].
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> crate::Result<Tensor> {
    check_layer_norm(x, gamma, beta, eps)?;
    let Some(dt) = fused_dtype(x) else {
        return layer_norm_portable(x, gamma, beta, eps);
    };
    let c = |t: &Tensor| -> candle_core::Result<Tensor> { t.to_dtype(dt)?.contiguous() };
    let y = c(x)?
        .apply_op3(&c(gamma)?, &c(beta)?, LayerNormOp { eps })?
        .to_dtype(x.dtype())?;
    Ok(y)
}

/// [`layer_norm`] composed from candle ops (any device, twice differentiable).
pub fn layer_norm_portable(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> crate::Result<Tensor> {
    check_layer_norm(x, gamma, beta, eps)?;
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(xn.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Batch norm in training mode over (N, C) or (N, C, H, W) input (Ioffe & Szegedy, 2015), per
/// channel `c`: `y = (x − μ_c) / sqrt(σ²_c + ε) · γ_c + β_c` with the batch mean `μ_c` and biased
/// batch variance `σ²_c` over the `M = N·H·W` values of the channel. Returns
/// `(y, μ, σ²_unbiased)`; the last two (detached, shape (C)) are what a layer folds into its
/// running statistics, as PyTorch does (`σ²_unbiased = σ² · M/(M − 1)`).
///
/// Backward, with `x̂ = (x − μ)/sqrt(σ² + ε)`, sums over the channel's `M` values:
/// `∂L/∂x = γ/sqrt(σ² + ε) · (g − Σg/M − x̂ · Σ(g x̂)/M)`, `∂L/∂γ = Σ g x̂`, `∂L/∂β = Σ g`
/// (the statistics' dependence on `x` included). On the CPU (f32, f64; f16/bf16 through f32)
/// fused kernels with that explicit backward (statistics in f64); elsewhere
/// [`batch_norm_train_portable`].
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> crate::Result<(Tensor, Tensor, Tensor)> {
    batch_norm_act_train(x, gamma, beta, eps, Activation::Identity)
}

/// [`batch_norm_train`] followed by an activation, `act(BN(x))`, as one op: the activation is
/// applied in the normalisation's pass, and its backward masks the incoming gradient
/// (`g·[y > 0]` for ReLU, `g·[0 < y < 6]` for ReLU6) before the batch-norm backward. The
/// same values and gradients as `relu(batch_norm_train(..).0)` (or `relu6`), with one pass
/// and one autograd node fewer — each node costs candle's autograd a zero-filled tensor and an
/// `add` the size of the activation. Elsewhere than the CPU in f32/f64: the two ops composed.
pub fn batch_norm_act_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> crate::Result<(Tensor, Tensor, Tensor)> {
    let (dims, count) = check_batch_norm(x, gamma, beta, eps)?;
    let Some(dt) = fused_dtype(x) else {
        let (y, mu, var) = batch_norm_train_portable(x, gamma, beta, eps)?;
        return Ok((act.apply_tensor(&y)?, mu, var));
    };
    let xc = x.to_dtype(dt)?.contiguous()?;
    let stats = xc.apply_op1_no_bwd(&BatchStatsOp { dims })?;
    let gb = Tensor::cat(&[gamma.to_dtype(dt)?, beta.to_dtype(dt)?], 0)?;
    let y = xc
        .apply_op3(&gb, &stats, BatchNormOp { dims, eps, act })?
        .to_dtype(x.dtype())?;
    let stats = stats.to_dtype(x.dtype())?;
    let mu = stats.get(0)?;
    let unbiased = (stats.get(1)? * (count as f64 / (count - 1) as f64))?;
    Ok((y, mu, unbiased))
}

/// Checks shapes, dtypes and `eps`; returns the geometry and the count `M` per channel.
fn check_batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> crate::Result<(BnDims, usize)> {
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
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dtype() != x.dtype() {
            return Err(crate::OpsError::DTypeMismatch {
                op: "batch_norm",
                msg: format!(
                    "input {dims:?} is {:?} but {what} is {:?}",
                    x.dtype(),
                    t.dtype()
                ),
            });
        }
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(crate::OpsError::shape(
            "batch_norm",
            format!("eps must be finite and non-negative, got {eps}"),
        ));
    }
    let s: usize = dims[2..].iter().product();
    let count = dims[0] * s;
    if count < 2 {
        return Err(crate::OpsError::shape(
            "batch_norm",
            format!("training needs more than one value per channel, got {dims:?}"),
        ));
    }
    Ok((BnDims { n: dims[0], c, s }, count))
}

/// [`batch_norm_train`] composed from candle ops (any device, twice differentiable).
pub fn batch_norm_train_portable(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> crate::Result<(Tensor, Tensor, Tensor)> {
    let (_, count) = check_batch_norm(x, gamma, beta, eps)?;
    let dims = x.dims().to_vec();
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
