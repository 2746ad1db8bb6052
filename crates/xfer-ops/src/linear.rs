//! Fully connected layer `y = x Wᵀ + b` as one op.
//!
//! Composed from candle ops (`x.matmul(&w.t())` then `broadcast_add`), one training step of a
//! layer costs: a transposed view of `W` whose gradient is materialised and copied back, a
//! bias gradient through a strided reduction, an input gradient `dY·W` even when `x` is a
//! data batch nobody differentiates, and a zero-filled buffer plus an extra pass per
//! gradient. The CPU kernel here does one GEMM forward (bias written first, accumulated by
//! the GEMM) and, backward, only the GEMMs autograd will use:
//! `dX = dY · W`, `dW = dYᵀ · X`, `db = Σ_rows dY`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, bail};

use crate::cpu::{Elem, Mat, by_dtype, gemm_into, slice};

/// Checks shapes and dtypes; returns `(rows, in, out)` for `x` flattened to `(rows, in)`.
fn check(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> crate::Result<(usize, usize, usize)> {
    let (out, inp) = w.dims2().map_err(|_| {
        crate::OpsError::shape(
            "linear",
            format!("weight must be (out, in), got {:?}", w.dims()),
        )
    })?;
    if x.rank() == 0 || x.dims()[x.rank() - 1] != inp {
        return Err(crate::OpsError::shape(
            "linear",
            format!(
                "input {:?} must end in the weight's input width {inp} (weight {:?})",
                x.dims(),
                w.dims()
            ),
        ));
    }
    if let Some(b) = b
        && b.dims() != [out]
    {
        return Err(crate::OpsError::shape(
            "linear",
            format!(
                "bias must be ({out}) for weight {:?}, got {:?}",
                w.dims(),
                b.dims()
            ),
        ));
    }
    for (what, t) in [("weight", Some(w)), ("bias", b)] {
        if let Some(t) = t
            && t.dtype() != x.dtype()
        {
            return Err(crate::OpsError::DTypeMismatch {
                op: "linear",
                msg: format!(
                    "input {:?} is {:?} but {what} {:?} is {:?}",
                    x.dims(),
                    x.dtype(),
                    t.dims(),
                    t.dtype()
                ),
            });
        }
    }
    Ok((x.elem_count() / inp.max(1), inp, out))
}

/// `y = x Wᵀ + b` for `x` `(..., in)`, `W` `(out, in)` (PyTorch's layout) and an optional bias
/// `(out)`; `y` is `(..., out)`.
///
/// Backward: `∂L/∂x = g·W`, `∂L/∂W = gᵀ·x` (summed over all leading dimensions),
/// `∂L/∂b = Σ g` over the rows. On the CPU (f32, f64; f16 and bf16 computed in f32) one fused
/// op whose backward computes only the gradients of inputs that need one (a data batch gets
/// none); other devices take [`linear_portable`]. Not twice differentiable on the CPU.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> crate::Result<Tensor> {
    let (rows, inp, out) = check(x, w, b)?;
    if !x.device().is_cpu() || rows == 0 || inp == 0 || out == 0 {
        return portable(x, w, b, rows, inp);
    }
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    let run = |dt: DType| -> candle_core::Result<Tensor> {
        let c = |t: &Tensor| -> candle_core::Result<Tensor> { t.to_dtype(dt)?.contiguous() };
        let x2 = c(&x.reshape((rows, inp))?)?;
        let y = match b {
            Some(b) => x2.apply_op3(&c(w)?, &c(b)?, LinearOp)?,
            None => x2.apply_op2(&c(w)?, LinearOp)?,
        };
        y.reshape(shape.as_slice())?.to_dtype(x.dtype())
    };
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(run(x.dtype())?),
        DType::F16 | DType::BF16 => Ok(run(DType::F32)?),
        dtype => Err(crate::OpsError::DType {
            op: "linear",
            dtype,
        }),
    }
}

/// [`linear`] composed from candle ops (any device, twice differentiable):
/// `x.matmul(&w.t()) + b`.
pub fn linear_portable(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> crate::Result<Tensor> {
    let (rows, inp, _) = check(x, w, b)?;
    portable(x, w, b, rows, inp)
}

fn portable(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    rows: usize,
    inp: usize,
) -> crate::Result<Tensor> {
    let y = if x.rank() == 2 {
        x.matmul(&w.t()?)?
    } else {
        let mut shape = x.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = w.dim(0)?;
        }
        x.reshape((rows, inp))?.matmul(&w.t()?)?.reshape(shape)?
    };
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// GEMMs on the whole rayon pool (the `gemm` crate runs small ones on one thread itself).
fn par() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    }
}

fn dims2(l: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    match l.dims() {
        &[r, c] => Ok((r, c)),
        d => bail!("linear: {what} must be a matrix, got {d:?}"),
    }
}

fn forward<T: Elem>(
    (x, rows, inp): (&[T], usize, usize),
    (w, out): (&[T], usize),
    b: Option<&[T]>,
) -> candle_core::Result<Vec<T>> {
    let mut y = vec![T::default(); rows * out];
    if let Some(b) = b {
        for row in y.chunks_exact_mut(out) {
            row.copy_from_slice(b);
        }
    }
    gemm_into(
        (&mut y, Mat::row_major(rows, out)),
        (x, Mat::row_major(rows, inp)),
        (w, Mat::row_major(out, inp).t()),
        b.is_some(),
        par(),
    )?;
    Ok(y)
}

fn run_forward<T: Elem>(
    (xs, xl): (&CpuStorage, &Layout),
    (ws, wl): (&CpuStorage, &Layout),
    b: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<Vec<T>> {
    let (rows, inp) = dims2(xl, "input")?;
    let (out, win) = dims2(wl, "weight")?;
    if win != inp {
        bail!(
            "linear: input {:?} and weight {:?} differ",
            xl.dims(),
            wl.dims()
        );
    }
    let b = match b {
        Some((bs, bl)) => {
            if bl.dims() != [out] {
                bail!("linear: bias {:?} must be ({out})", bl.dims());
            }
            Some(slice::<T>(bs, bl, "linear: bias")?)
        }
        None => None,
    };
    forward(
        (slice(xs, xl, "linear: input")?, rows, inp),
        (slice(ws, wl, "linear: weight")?, out),
        b,
    )
}

/// The forward op: `(x, w) ↦ x Wᵀ` ([`CustomOp2`]) and `(x, w, b) ↦ x Wᵀ + b` ([`CustomOp3`]),
/// `x` a contiguous `(rows, in)` matrix.
struct LinearOp;

impl LinearOp {
    /// The input and weight gradients autograd will use.
    fn grads(
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &LinearBackward::Input)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(dy.apply_op2_no_bwd(x, &LinearBackward::Weight)?)
        } else {
            None
        };
        Ok((dy, dx, dw))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "xfer-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("linear", xs, run_forward((xs, xl), (ws, wl), None))?;
        Ok((out, (xl.dims()[0], wl.dims()[0]).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, dx, dw) = Self::grads(x, w, dy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "xfer-linear-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!(
            "linear",
            xs,
            run_forward((xs, xl), (ws, wl), Some((bs, bl)))
        )?;
        Ok((out, (xl.dims()[0], wl.dims()[0]).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dy, dx, dw) = Self::grads(x, w, dy)?;
        let db = if b.track_op() {
            Some(dy.apply_op1_no_bwd(&BiasGrad)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// The GEMMs of the backward: `(dY, W) ↦ dY·W` and `(dY, X) ↦ dYᵀ·X`.
enum LinearBackward {
    Input,
    Weight,
}

fn backward<T: Elem>(
    which: &LinearBackward,
    (dy, rows, out): (&[T], usize, usize),
    (m, mr, mc): (&[T], usize, usize),
) -> candle_core::Result<Vec<T>> {
    match which {
        // dX (rows, in) = dY (rows, out) · W (out, in).
        LinearBackward::Input => {
            if mr != out {
                bail!("linear backward: weight has {mr} rows, gradient {out} columns");
            }
            let mut dx = vec![T::default(); rows * mc];
            gemm_into(
                (&mut dx, Mat::row_major(rows, mc)),
                (dy, Mat::row_major(rows, out)),
                (m, Mat::row_major(out, mc)),
                false,
                par(),
            )?;
            Ok(dx)
        }
        // dW (out, in) = dYᵀ (out, rows) · X (rows, in).
        LinearBackward::Weight => {
            if mr != rows {
                bail!("linear backward: input has {mr} rows, gradient {rows}");
            }
            let mut dw = vec![T::default(); out * mc];
            gemm_into(
                (&mut dw, Mat::row_major(out, mc)),
                (dy, Mat::row_major(rows, out).t()),
                (m, Mat::row_major(rows, mc)),
                false,
                par(),
            )?;
            Ok(dw)
        }
    }
}

fn run_backward<T: Elem>(
    which: &LinearBackward,
    (dys, dyl): (&CpuStorage, &Layout),
    (ms, ml): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let (rows, out) = dims2(dyl, "output gradient")?;
    let (mr, mc) = dims2(ml, "operand")?;
    backward(
        which,
        (slice(dys, dyl, "linear: output gradient")?, rows, out),
        (slice(ms, ml, "linear: operand")?, mr, mc),
    )
}

impl CustomOp2 for LinearBackward {
    fn name(&self) -> &'static str {
        match self {
            LinearBackward::Input => "xfer-linear-backward-input",
            LinearBackward::Weight => "xfer-linear-backward-weight",
        }
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("linear", dys, run_backward(self, (dys, dyl), (ms, ml)))?;
        let (r, c) = (dyl.dims()[0], ml.dims()[1]);
        let shape: Shape = match self {
            LinearBackward::Input => (r, c).into(),
            LinearBackward::Weight => (dyl.dims()[1], c).into(),
        };
        Ok((out, shape))
    }
}

/// `dY ↦ Σ_rows dY`.
struct BiasGrad;

fn bias_grad<T: Elem>(dys: &CpuStorage, dyl: &Layout) -> candle_core::Result<Vec<T>> {
    let (_, out) = dims2(dyl, "output gradient")?;
    let dy = slice::<T>(dys, dyl, "linear: output gradient")?;
    let mut db = vec![T::default(); out];
    for row in dy.chunks_exact(out.max(1)) {
        for (a, &v) in db.iter_mut().zip(row) {
            *a += v;
        }
    }
    Ok(db)
}

impl candle_core::CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "xfer-linear-backward-bias"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("linear", dys, bias_grad(dys, dyl))?;
        Ok((out, dyl.dims()[1].into()))
    }
}
