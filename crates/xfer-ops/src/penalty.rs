//! Squared norms and squared distances as single ops: the terms of weight penalties such as
//! L2-SP (`α/2 ‖w − w⁰‖²`) and L2 (`β/2 ‖w‖²`).
//!
//! Composed from candle ops, `(w − w⁰).sqr().sum_all()` makes three full-size temporaries
//! forward and, backward, a broadcast of the scalar gradient, a product, a scaling, and a
//! gradient for the frozen anchor `w⁰` (candle's `sub` backward fills one even for a tensor
//! nobody differentiates) — each behind a zero-filled buffer. Here the forward is one pass
//! (summed in f64, in fixed blocks so the result does not depend on the thread count) and
//! the backward one pass, `∂/∂w = 2g (w − w⁰)`, for the inputs that need a gradient.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, bail,
};
use rayon::prelude::*;

use crate::activation::{map, zip_map};
use crate::cpu::{Elem, Reduce, by_dtype, slice};

/// Elements per block of the forward sum.
const BLOCK: usize = 64 * 1024;

/// `Σ f(i)` over `0..n`, in f64, block by block in parallel, the block sums added in order.
fn block_sum(n: usize, f: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> f64 {
    if n <= BLOCK {
        return f(0..n);
    }
    let parts: Vec<f64> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| f(b * BLOCK..((b + 1) * BLOCK).min(n)))
        .collect();
    parts.iter().sum()
}

/// Which dtype the kernel computes in, or `None` for the composed path.
fn compute_dtype(x: &Tensor) -> Option<DType> {
    if !x.device().is_cpu() {
        return None;
    }
    match x.dtype() {
        DType::F32 | DType::F64 => Some(x.dtype()),
        DType::F16 | DType::BF16 => Some(DType::F32),
        _ => None,
    }
}

fn check_float(op: &'static str, x: &Tensor) -> crate::Result<()> {
    if x.dtype().is_float() {
        Ok(())
    } else {
        Err(crate::OpsError::DType {
            op,
            dtype: x.dtype(),
        })
    }
}

/// The dtype of the result: the input's, or f32 for f16 / bf16 (whose sums of squares
/// overflow: f16 stops at 65504).
fn out_dtype(x: &Tensor) -> DType {
    match x.dtype() {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// `‖x‖² = Σ x²` over every element, a scalar (f32 for f16 / bf16 input, else `x`'s dtype).
///
/// Backward: `∂L/∂x = 2g · x`. On the CPU one pass each way (sum in f64); elsewhere composed
/// from candle ops. Not twice differentiable on the CPU.
pub fn sq_norm(x: &Tensor) -> crate::Result<Tensor> {
    check_float("sq_norm", x)?;
    match compute_dtype(x) {
        Some(dt) => Ok(x.to_dtype(dt)?.contiguous()?.apply_op1(SqNormOp)?),
        None => Ok(x.to_dtype(out_dtype(x))?.sqr()?.sum_all()?),
    }
}

/// `‖x − a‖² = Σ (x − a)²`, a scalar (f32 for f16 / bf16 input, else `x`'s dtype); `x` and
/// the anchor `a` have one shape and dtype.
///
/// Backward: `∂L/∂x = 2g (x − a)`, `∂L/∂a = −2g (x − a)` — the anchor's only when it needs one
/// (a frozen copy gets none). On the CPU one pass each way (sum in f64); elsewhere composed
/// from candle ops. Not twice differentiable on the CPU.
pub fn sq_dist(x: &Tensor, a: &Tensor) -> crate::Result<Tensor> {
    check_float("sq_dist", x)?;
    if x.dims() != a.dims() {
        return Err(crate::OpsError::shape(
            "sq_dist",
            format!(
                "tensor {:?} and anchor {:?} differ in shape",
                x.dims(),
                a.dims()
            ),
        ));
    }
    if x.dtype() != a.dtype() {
        return Err(crate::OpsError::DTypeMismatch {
            op: "sq_dist",
            msg: format!("tensor is {:?}, anchor {:?}", x.dtype(), a.dtype()),
        });
    }
    match compute_dtype(x) {
        Some(dt) if a.device().same_device(x.device()) => {
            let c = |t: &Tensor| -> candle_core::Result<Tensor> { t.to_dtype(dt)?.contiguous() };
            Ok(c(x)?.apply_op2(&c(a)?, SqDistOp)?)
        }
        _ => {
            let dt = out_dtype(x);
            Ok((x.to_dtype(dt)? - a.to_dtype(dt)?)?.sqr()?.sum_all()?)
        }
    }
}

fn scalar_storage<T: Elem>(v: f64) -> CpuStorage {
    T::to_cpu_storage_owned(vec![T::from_f64(v)])
}

fn sq_norm_fwd<T: Reduce>(s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
    let x = slice::<T>(s, l, "sq_norm: input")?;
    let total = block_sum(x.len(), |r| T::sq_dev_runs(std::iter::once(&x[r]), 0.0));
    Ok(scalar_storage::<T>(total))
}

fn sq_dist_fwd<T: Reduce>(
    (xs, xl): (&CpuStorage, &Layout),
    (as_, al): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    let x = slice::<T>(xs, xl, "sq_dist: input")?;
    let a = slice::<T>(as_, al, "sq_dist: anchor")?;
    if x.len() != a.len() {
        bail!("sq_dist: {:?} and {:?} differ", xl.dims(), al.dims());
    }
    let total = block_sum(x.len(), |r| T::sq_diff(&x[r.clone()], &a[r]));
    Ok(scalar_storage::<T>(total))
}

/// Runs `f::<T>` for the dtype of `s`, where `f` returns the storage itself.
macro_rules! by_dtype_storage {
    ($op:literal, $s:expr, $f:ident ( $($arg:expr),* )) => {
        match candle_core::backend::BackendStorage::dtype($s) {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            dt => bail!("{}: the CPU kernel takes f32 or f64, got {dt:?}", $op),
        }
    };
}

struct SqNormOp;

impl CustomOp1 for SqNormOp {
    fn name(&self) -> &'static str {
        "xfer-sq-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        Ok((
            by_dtype_storage!("sq_norm", s, sq_norm_fwd(s, l))?,
            Shape::from(()),
        ))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(g, &ScaledCopy)?))
    }
}

struct SqDistOp;

impl CustomOp2 for SqDistOp {
    fn name(&self) -> &'static str {
        "xfer-sq-dist"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype_storage!("sq_dist", xs, sq_dist_fwd((xs, xl), (as_, al)))?;
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (tx, ta) = (x.track_op(), a.track_op());
        if !tx && !ta {
            return Ok((None, None));
        }
        let dx = x.apply_op3_no_bwd(a, g, &ScaledDiff)?;
        let da = if ta { Some(dx.neg()?) } else { None };
        Ok((tx.then_some(dx), da))
    }
}

/// The scalar gradient `g` (any 1-element tensor) as f64.
fn scalar<T: Elem>(s: &CpuStorage, l: &Layout) -> candle_core::Result<f64> {
    match slice::<T>(s, l, "penalty backward: gradient")? {
        [v] => Ok(v.to_f64()),
        v => bail!(
            "penalty backward: the gradient must be a scalar, got {} values",
            v.len()
        ),
    }
}

/// `(x, g) ↦ 2g · x`.
struct ScaledCopy;

fn scaled_copy<T: Elem>(
    (xs, xl): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let k = T::from_f64(2.0 * scalar::<T>(gs, gl)?);
    Ok(map(
        slice::<T>(xs, xl, "sq_norm backward: input")?,
        move |v| k * v,
    ))
}

impl CustomOp2 for ScaledCopy {
    fn name(&self) -> &'static str {
        "xfer-sq-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("sq_norm", xs, scaled_copy((xs, xl), (gs, gl)))?;
        Ok((out, xl.shape().clone()))
    }
}

/// `(x, a, g) ↦ 2g · (x − a)`.
struct ScaledDiff;

fn scaled_diff<T: Elem>(
    (xs, xl): (&CpuStorage, &Layout),
    (as_, al): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let k = T::from_f64(2.0 * scalar::<T>(gs, gl)?);
    let x = slice::<T>(xs, xl, "sq_dist backward: input")?;
    let a = slice::<T>(as_, al, "sq_dist backward: anchor")?;
    if x.len() != a.len() {
        bail!(
            "sq_dist backward: {:?} and {:?} differ",
            xl.dims(),
            al.dims()
        );
    }
    Ok(zip_map(x, a, move |v, w| k * (v - w)))
}

impl CustomOp3 for ScaledDiff {
    fn name(&self) -> &'static str {
        "xfer-sq-dist-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!("sq_dist", xs, scaled_diff((xs, xl), (as_, al), (gs, gl)))?;
        Ok((out, xl.shape().clone()))
    }
}
