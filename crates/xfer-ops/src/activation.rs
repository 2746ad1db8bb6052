//! ReLU, ReLU6, and ReLU of a sum (a residual connection), as single ops with an explicit
//! backward.
//!
//! candle's `relu` backward builds `zeros_like(x)`, compares, converts the mask to floats and
//! multiplies: four passes and three temporaries per activation. Here the backward is one
//! pass over the output and its gradient, `dx = g · [y > 0]` (PyTorch's rule: no gradient
//! where the input is exactly 0).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, bail};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::{Elem, by_dtype, slice};

/// Elements per rayon task of the element-wise kernels; below twice this they run on the
/// calling thread.
const CHUNK: usize = 32 * 1024;

/// `out[i] = f(a[i], b[i])`, in parallel for long inputs. The output is written once, never
/// zero-filled first, by plain loops over chunks (which the compiler vectorises; a per-element
/// parallel iterator does not).
pub(crate) fn zip_map<T: Elem>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut out: Vec<T> = Vec::with_capacity(n);
    let run = |o: &mut [MaybeUninit<T>], a: &[T], b: &[T]| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            o.write(f(a, b));
        }
    };
    let spare = &mut out.spare_capacity_mut()[..n];
    if n < 2 * CHUNK {
        run(spare, a, b);
    } else {
        spare
            .par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| run(o, a, b));
    }
    // SAFETY: the loops above wrote each of the first `n` elements (the chunks of `spare`
    // cover it exactly, each zipped with input chunks of the same length).
    unsafe { out.set_len(n) };
    out
}

/// `out[i] = f(a[i])`, in parallel for long inputs; written once, like [`zip_map`].
pub(crate) fn map<T: Elem>(a: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let n = a.len();
    let mut out: Vec<T> = Vec::with_capacity(n);
    let run = |o: &mut [MaybeUninit<T>], a: &[T]| {
        for (o, &a) in o.iter_mut().zip(a) {
            o.write(f(a));
        }
    };
    let spare = &mut out.spare_capacity_mut()[..n];
    if n < 2 * CHUNK {
        run(spare, a);
    } else {
        spare
            .par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(o, a)| run(o, a));
    }
    // SAFETY: the loops above wrote each of the first `n` elements.
    unsafe { out.set_len(n) };
    out
}

/// `max(v, 0)`, keeping NaN (as PyTorch does).
#[inline(always)]
pub(crate) fn relu1<T: Elem>(v: T) -> T {
    if v <= T::default() { T::default() } else { v }
}

/// An activation applied inside another op's kernel (batch norm:
/// [`crate::batch_norm_act_train`]), so that it costs no pass and no autograd node of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// None: the op's own output.
    #[default]
    Identity,
    /// [`relu`].
    Relu,
    /// [`relu6`].
    Relu6,
}

impl Activation {
    /// `g · act'(y)` from the activation's output `y` (None for the identity: `g` itself).
    pub(crate) fn backward(self, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(match self {
            Activation::Identity => None,
            Activation::Relu => Some(y.apply_op2_no_bwd(&g.contiguous()?, &ReluBackward)?),
            Activation::Relu6 => Some(y.apply_op2_no_bwd(&g.contiguous()?, &Relu6Backward)?),
        })
    }

    /// The activation as candle / xfer ops (for the devices without the fused kernel).
    pub(crate) fn apply_tensor(self, x: &Tensor) -> crate::Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => relu(x),
            Activation::Relu6 => relu6(x),
        }
    }
}

/// Whether the CPU kernel takes `x` (f32 or f64 on the CPU).
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `relu(x) = max(x, 0)` element-wise (NaN stays NaN).
///
/// Backward: `∂L/∂x = g · [y > 0]` (0 where `x ≤ 0`, as in PyTorch). On the CPU (f32, f64)
/// one fused op with that explicit backward; other devices and dtypes use candle's `relu`.
/// Not twice differentiable on the CPU.
pub fn relu(x: &Tensor) -> crate::Result<Tensor> {
    if !fused(x) {
        return Ok(x.relu()?);
    }
    Ok(x.contiguous()?.apply_op1(ReluOp)?)
}

/// `relu(a + b)` for two tensors of the same shape and dtype (the end of a residual block).
///
/// Backward: `∂L/∂a = ∂L/∂b = g · [y > 0]`. On the CPU (f32, f64) one fused op (one pass
/// forward, one backward, no intermediate sum kept); elsewhere `(a + b).relu()`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> crate::Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(crate::OpsError::shape(
            "add_relu",
            format!(
                "operands must have one shape, got {:?} and {:?}",
                a.dims(),
                b.dims()
            ),
        ));
    }
    if a.dtype() != b.dtype() {
        return Err(crate::OpsError::DTypeMismatch {
            op: "add_relu",
            msg: format!("{:?} and {:?}", a.dtype(), b.dtype()),
        });
    }
    if !fused(a) || !b.device().same_device(a.device()) {
        return Ok((a + b)?.relu()?);
    }
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)?)
}

/// `relu6(x) = min(max(x, 0), 6)` element-wise (MobileNet's activation; NaN stays NaN).
///
/// Backward: `∂L/∂x = g · [0 < y < 6]` (PyTorch's `hardtanh` rule: no gradient at exactly 0
/// or 6). On the CPU (f32, f64) one fused op with that explicit backward; other devices and
/// dtypes use the composition `relu(x) − relu(x − 6)`, whose gradient is the same except at
/// exactly `x = 6`. Not twice differentiable on the CPU.
pub fn relu6(x: &Tensor) -> crate::Result<Tensor> {
    if !fused(x) {
        return relu6_portable(x);
    }
    Ok(x.contiguous()?.apply_op1(Relu6Op)?)
}

/// The device-generic [`relu6`]: `relu(x) − relu(x − 6)` from candle ops.
pub fn relu6_portable(x: &Tensor) -> crate::Result<Tensor> {
    Ok((x.relu()? - x.affine(1.0, -6.0)?.relu()?)?)
}

/// `min(max(v, 0), 6)`, keeping NaN.
#[inline(always)]
pub(crate) fn relu6_1<T: Elem>(v: T) -> T {
    let six = T::from_f64(6.0);
    if v <= T::default() {
        T::default()
    } else if v >= six {
        six
    } else {
        v
    }
}

struct Relu6Op;

fn relu6_fwd<T: Elem>(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<T>> {
    Ok(map(slice::<T>(s, l, "relu6: input")?, relu6_1))
}

impl CustomOp1 for Relu6Op {
    fn name(&self) -> &'static str {
        "xfer-relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("relu6", s, relu6_fwd(s, l))?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&g.contiguous()?, &Relu6Backward)?))
    }
}

/// `(y, g) ↦ g · [0 < y < 6]`.
pub(crate) struct Relu6Backward;

fn relu6_bwd<T: Elem>(
    (y, yl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    if yl.dims() != gl.dims() {
        bail!(
            "relu6 backward: output {:?}, gradient {:?}",
            yl.dims(),
            gl.dims()
        );
    }
    let (zero, six) = (T::default(), T::from_f64(6.0));
    Ok(zip_map(
        slice::<T>(y, yl, "relu6 backward: output")?,
        slice::<T>(g, gl, "relu6 backward: gradient")?,
        // `move`: the constants live in the closure, so the loop keeps them in registers
        // and vectorises (captured by reference they are reloaded every element).
        move |y, g| if y > zero && y < six { g } else { zero },
    ))
}

impl CustomOp2 for Relu6Backward {
    fn name(&self) -> &'static str {
        "xfer-relu6-backward"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        yl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("relu6", y, relu6_bwd((y, yl), (g, gl)))?;
        Ok((out, yl.shape().clone()))
    }
}

struct ReluOp;

fn relu_fwd<T: Elem>(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<T>> {
    Ok(map(slice::<T>(s, l, "relu: input")?, relu1))
}

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "xfer-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("relu", s, relu_fwd(s, l))?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&g.contiguous()?, &ReluBackward)?))
    }
}

struct AddReluOp;

fn add_relu_fwd<T: Elem>(
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    if al.dims() != bl.dims() {
        bail!("add_relu: {:?} and {:?} differ", al.dims(), bl.dims());
    }
    Ok(zip_map(
        slice::<T>(a, al, "add_relu: lhs")?,
        slice::<T>(b, bl, "add_relu: rhs")?,
        |a, b| relu1(a + b),
    ))
}

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "xfer-add-relu"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("add_relu", a, add_relu_fwd((a, al), (b, bl)))?;
        Ok((out, al.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (ta, tb) = (a.track_op(), b.track_op());
        if !ta && !tb {
            return Ok((None, None));
        }
        let d = y.apply_op2_no_bwd(&g.contiguous()?, &ReluBackward)?;
        Ok((ta.then(|| d.clone()), tb.then_some(d)))
    }
}

/// `(y, g) ↦ g · [y > 0]`.
pub(crate) struct ReluBackward;

fn relu_bwd<T: Elem>(
    (y, yl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    if yl.dims() != gl.dims() {
        bail!(
            "relu backward: output {:?}, gradient {:?}",
            yl.dims(),
            gl.dims()
        );
    }
    let zero = T::default();
    Ok(zip_map(
        slice::<T>(y, yl, "relu backward: output")?,
        slice::<T>(g, gl, "relu backward: gradient")?,
        move |y, g| if y > zero { g } else { zero },
    ))
}

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "xfer-relu-backward"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        yl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("relu", y, relu_bwd((y, yl), (g, gl)))?;
        Ok((out, yl.shape().clone()))
    }
}
