//! Gradient utilities over named variables: global norm, clip-by-norm and the first
//! non-finite gradient.

use candle_core::{Tensor, Var, backprop::GradStore};

/// `‖g‖ = sqrt(Σ_v Σ_i g_{v,i}²)` over the gradients of `vars` present in `grads`.
pub fn global_grad_norm<'a>(
    grads: &GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
) -> crate::Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            // Accumulate in f64 so large f32/f16 gradients do not overflow when squared.
            total += g
                .to_dtype(candle_core::DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(total.sqrt())
}

/// Scales every gradient by `min(1, max_norm / ‖g‖)` so the global norm is at most `max_norm`.
/// Returns the norm before clipping. A non-finite norm leaves the gradients untouched (check
/// with [`first_non_finite`] which parameter is to blame).
pub fn clip_grad_norm<'a>(
    grads: &mut GradStore,
    vars: impl IntoIterator<Item = &'a Var> + Clone,
    max_norm: f64,
) -> crate::Result<f64> {
    let norm = global_grad_norm(grads, vars.clone())?;
    if norm.is_finite() && norm > max_norm && norm > 0.0 {
        let scale = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

/// The name of the first variable whose gradient holds a NaN or an infinity, if any.
pub fn first_non_finite<'a>(
    grads: &GradStore,
    named: impl IntoIterator<Item = (&'a str, &'a Var)>,
) -> crate::Result<Option<String>> {
    for (name, v) in named {
        if let Some(g) = grads.get(v.as_tensor())
            && !is_finite(g)?
        {
            return Ok(Some(name.to_string()));
        }
    }
    Ok(None)
}

/// Whether every element of `t` is finite.
///
/// A NaN anywhere makes the sum of `|t|` NaN; an infinity makes the maximum of `|t|` infinite.
/// (The sum alone would call a tensor of large finite values infinite when it overflows.)
pub fn is_finite(t: &Tensor) -> crate::Result<bool> {
    if t.elem_count() == 0 {
        return Ok(true);
    }
    let a = t.abs()?.flatten_all()?;
    let sum = a
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    let max = a
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok(!sum.is_nan() && max.is_finite())
}
