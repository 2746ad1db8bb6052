//! Batch norm in evaluation mode as one op: `y = γ[c] · (x − μ[c]) / sqrt(σ²[c] + ε) + β[c]`
//! with the running statistics `μ`, `σ²` (buffers: no gradient).
//!
//! Backward, with `x̂ = (x − μ)/sqrt(σ² + ε)` and sums over all but the channel dimension:
//! `∂L/∂x = γ/sqrt(σ² + ε) · g`, `∂L/∂γ = Σ g · x̂`, `∂L/∂β = Σ g`. On the CPU (f32, f64) one
//! pass forward and one backward, sums per plane then across planes in f64. Both passes centre
//! first: the forward computes `a·(x − μ) + β`, the γ gradient `Σ g·(x − μ)·inv`. The folded
//! composition `x · a + (β − μ·a)`, and its gradient `(Σ g·x − μ Σ g)·inv`, cancel
//! catastrophically where `|μ|` is large against the spread of `x` (TF-converted weights have
//! such channels): it kept EfficientNet-Lite0's eval-mode `_bn0.weight` and `_conv_stem.weight`
//! gradients 1e-3 away from PyTorch's float64 reference (now 3e-7).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu::{Elem, by_dtype, slice};

/// Batch norm of `x` ((N, C) or (N, C, …)) with fixed statistics `mean`, `var` (C) and
/// learnable `gamma`, `beta` (C): `γ (x − μ)/sqrt(σ² + ε) + β`. Gradients reach `x`, `γ` and
/// `β` (not the statistics). CPU (f32, f64): one fused op with the backward above; elsewhere
/// (and for other dtypes) [`batch_norm_eval_portable`].
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> crate::Result<Tensor> {
    check(x, &[gamma, beta, mean, var], eps)?;
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return batch_norm_eval_portable(x, gamma, beta, mean, var, eps);
    }
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let inv = (var.detach() + eps)?.sqrt()?.recip()?;
    let stats = Tensor::stack(&[&mean.detach(), &inv], 0)?.contiguous()?;
    Ok(x.contiguous()?.apply_op3(&gb, &stats, BatchNormEval)?)
}

fn check(x: &Tensor, params: &[&Tensor], eps: f64) -> crate::Result<()> {
    let op = "batch_norm_eval";
    if x.rank() < 2 {
        return Err(crate::OpsError::shape(
            op,
            format!("input must be (N, C, ...), got {:?}", x.dims()),
        ));
    }
    let c = x.dim(1)?;
    for (what, t) in ["gamma", "beta", "running mean", "running var"]
        .iter()
        .zip(params)
    {
        if t.dims() != [c] {
            return Err(crate::OpsError::shape(
                op,
                format!(
                    "{what} {:?} must be ({c}) for input {:?}",
                    t.dims(),
                    x.dims()
                ),
            ));
        }
        if t.dtype() != x.dtype() {
            return Err(crate::OpsError::DTypeMismatch {
                op,
                msg: format!("input is {:?} but {what} is {:?}", x.dtype(), t.dtype()),
            });
        }
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(crate::OpsError::shape(
            op,
            format!("eps must be finite and non-negative, got {eps}"),
        ));
    }
    Ok(())
}

/// [`batch_norm_eval`] composed from candle ops (any device, twice differentiable).
pub fn batch_norm_eval_portable(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> crate::Result<Tensor> {
    check(x, &[gamma, beta, mean, var], eps)?;
    let mut shape = vec![1usize; x.rank()];
    if let Some(s) = shape.get_mut(1) {
        *s = x.dim(1)?;
    }
    let r = |t: &Tensor| t.reshape(shape.as_slice());
    let inv = (var.detach() + eps)?.sqrt()?.recip()?;
    let xn = x
        .broadcast_sub(&r(&mean.detach())?)?
        .broadcast_mul(&r(&inv)?)?;
    Ok(xn.broadcast_mul(&r(gamma)?)?.broadcast_add(&r(beta)?)?)
}

/// (N, C, S): samples, channels, values per channel plane.
fn geom(dims: &[usize]) -> (usize, usize, usize) {
    let n = dims.first().copied().unwrap_or(0);
    let c = dims.get(1).copied().unwrap_or(0);
    let s = dims.iter().skip(2).product();
    (n, c, s)
}

/// `(x, [γ; β], [μ; 1/sqrt(σ² + ε)]) ↦ y`.
struct BatchNormEval;

fn fwd<T: Elem>(
    (x, xl): (&CpuStorage, &Layout),
    (gb, gbl): (&CpuStorage, &Layout),
    (st, stl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let (_, c, s) = geom(xl.dims());
    let x = slice::<T>(x, xl, "batch_norm_eval: input")?;
    let gb = slice::<T>(gb, gbl, "batch_norm_eval: gamma and beta")?;
    let st = slice::<T>(st, stl, "batch_norm_eval: statistics")?;
    if gb.len() != 2 * c || st.len() != 2 * c {
        bail!("batch_norm_eval: parameters do not match {:?}", xl.dims());
    }
    // y = a·(x − μ) + β with a = γ·inv per channel (rounded once from f64); centring first
    // keeps the result exact where |μ·a| is large against y (TF-converted weights have such
    // channels), which the folded `a·x + (β − μ·a)` is not.
    let ab: Vec<(T, T, T)> = (0..c)
        .map(|ch| {
            let a = gb[ch].to_f64() * st[c + ch].to_f64();
            (T::from_f64(a), st[ch], gb[c + ch])
        })
        .collect();
    let mut y = vec![T::default(); x.len()];
    if s == 0 || c == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(s)
        .zip(x.par_chunks(s))
        .enumerate()
        .with_min_len((16 * 1024 / s).max(1))
        .for_each(|(p, (yp, xp))| {
            let (av, mu, bv) = ab[p % c];
            for (o, &v) in yp.iter_mut().zip(xp) {
                *o = av * (v - mu) + bv;
            }
        });
    Ok(y)
}

impl CustomOp3 for BatchNormEval {
    fn name(&self) -> &'static str {
        "xfer-batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        gb: &CpuStorage,
        gbl: &Layout,
        st: &CpuStorage,
        stl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!("batch_norm_eval", x, fwd((x, xl), (gb, gbl), (st, stl)))?;
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        st: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = if x.track_op() {
            let c = st.dim(1)?;
            let scale = (gb.narrow(0, 0, c)? * st.get(1)?)?;
            Some(g.apply_op2_no_bwd(&scale, &ScaleBackward)?)
        } else {
            None
        };
        let dgb = if gb.track_op() {
            Some(x.apply_op3_no_bwd(&g, st, &SumsBackward)?)
        } else {
            None
        };
        Ok((dx, dgb, None))
    }
}

/// `(g, a) ↦ a[c]·g`.
struct ScaleBackward;

fn scale_bwd<T: Elem>(
    (g, gl): (&CpuStorage, &Layout),
    (a, al): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let (_, c, s) = geom(gl.dims());
    let g = slice::<T>(g, gl, "batch_norm_eval backward: gradient")?;
    let a = slice::<T>(a, al, "batch_norm_eval backward: scale")?;
    if a.len() != c {
        bail!(
            "batch_norm_eval backward: scale does not match {:?}",
            gl.dims()
        );
    }
    let mut dx = vec![T::default(); g.len()];
    if s == 0 || c == 0 {
        return Ok(dx);
    }
    dx.par_chunks_mut(s)
        .zip(g.par_chunks(s))
        .enumerate()
        .with_min_len((16 * 1024 / s).max(1))
        .for_each(|(p, (dp, gp))| {
            let av = a[p % c];
            for (o, &v) in dp.iter_mut().zip(gp) {
                *o = av * v;
            }
        });
    Ok(dx)
}

impl CustomOp2 for ScaleBackward {
    fn name(&self) -> &'static str {
        "xfer-batch-norm-eval-backward-input"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        gl: &Layout,
        a: &CpuStorage,
        al: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("batch_norm_eval", g, scale_bwd((g, gl), (a, al)))?;
        Ok((out, gl.shape().clone()))
    }
}

/// `(x, g, [μ; inv]) ↦ [Σ g·(x − μ)·inv ; Σ g]` per channel, shape (2C), accumulated in f64.
struct SumsBackward;

fn sums_bwd<T: Elem>(
    (x, xl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
    (st, stl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    if xl.dims() != gl.dims() {
        bail!(
            "batch_norm_eval backward: input {:?}, gradient {:?}",
            xl.dims(),
            gl.dims()
        );
    }
    let (n, c, s) = geom(xl.dims());
    let x = slice::<T>(x, xl, "batch_norm_eval backward: input")?;
    let g = slice::<T>(g, gl, "batch_norm_eval backward: gradient")?;
    let st = slice::<T>(st, stl, "batch_norm_eval backward: statistics")?;
    if st.len() != 2 * c || x.len() != n * c * s {
        bail!(
            "batch_norm_eval backward: statistics do not match {:?}",
            xl.dims()
        );
    }
    let per: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mu = st[ch];
            let (mut sa, mut sb) = (0f64, 0f64);
            for k in 0..n {
                let o = (k * c + ch) * s;
                let (xp, gp) = (&x[o..o + s], &g[o..o + s]);
                // Per plane in T (vectorisable), across planes in f64; centred first.
                let (mut pa, mut pb) = (T::default(), T::default());
                for (&xv, &gv) in xp.iter().zip(gp) {
                    pa += (xv - mu) * gv;
                    pb += gv;
                }
                sa += pa.to_f64();
                sb += pb.to_f64();
            }
            (sa * st[c + ch].to_f64(), sb)
        })
        .collect();
    let mut out = vec![T::default(); 2 * c];
    for (ch, (sa, sb)) in per.into_iter().enumerate() {
        out[ch] = T::from_f64(sa);
        out[c + ch] = T::from_f64(sb);
    }
    Ok(out)
}

impl CustomOp3 for SumsBackward {
    fn name(&self) -> &'static str {
        "xfer-batch-norm-eval-backward-params"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        st: &CpuStorage,
        stl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let c = geom(xl.dims()).1;
        let out = by_dtype!("batch_norm_eval", x, sums_bwd((x, xl), (g, gl), (st, stl)))?;
        Ok((out, (2 * c).into()))
    }
}
