//! Pooling over the spatial dimensions of NCHW tensors, with backward passes that are right
//! for every size.
//!
//! candle 0.11's own pooling backward is not: its max-pool gradient is the true one divided
//! by `k²` (it multiplies by the window's share of maxima where it should divide), both its
//! max and average backward assume the windows tile the input exactly (wrong for odd sizes,
//! which the forward floors), and they refuse `k ≠ stride`. On the CPU these ops use our own
//! kernels (`pool_cpu`); on other devices a portable path gathers the windows with
//! `index_select` and reduces them with candle ops, whose backward is right.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::pool_cpu::{Kind, PoolOp, Windows};

fn check4(op: &'static str, x: &Tensor) -> crate::Result<[usize; 4]> {
    let (n, c, h, w) = x.dims4().map_err(|_| {
        crate::OpsError::shape(
            op,
            format!("input must be (N, C, H, W), got {:?}", x.dims()),
        )
    })?;
    Ok([n, c, h, w])
}

fn check_window(
    op: &'static str,
    x: &Tensor,
    k: usize,
    stride: usize,
) -> crate::Result<[usize; 4]> {
    let d = check4(op, x)?;
    if k == 0 || stride == 0 || k > d[2] || k > d[3] {
        return Err(crate::OpsError::shape(
            op,
            format!("window {k} stride {stride} on input {:?}", x.dims()),
        ));
    }
    Ok(d)
}

/// Applies the CPU kernel (f32, f64; f16/bf16 through f32) or `portable` elsewhere.
fn run(
    op: &'static str,
    x: &Tensor,
    kind: Kind,
    win: Windows,
    portable: impl FnOnce() -> crate::Result<Tensor>,
) -> crate::Result<Tensor> {
    if !x.device().is_cpu() {
        return portable();
    }
    let win = Arc::new(win);
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(x.contiguous()?.apply_op1(PoolOp { kind, win })?),
        DType::F16 | DType::BF16 => Ok(x
            .to_dtype(DType::F32)?
            .contiguous()?
            .apply_op1(PoolOp { kind, win })?
            .to_dtype(x.dtype())?),
        dtype => Err(crate::OpsError::DType { op, dtype }),
    }
}

/// Max pooling with a `k × k` window and stride `stride`:
/// `y[i, j] = max_{p,q<k} x[s·i+p, s·j+q]`, `i < ⌊(H − k)/s⌋ + 1` (likewise `j`).
/// Backward: the whole `∂L/∂y[i, j]` goes to the first maximum of window `(i, j)`
/// (overlapping windows add up).
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let d = check_window("max_pool2d", x, k, stride)?;
    run(
        "max_pool2d",
        x,
        Kind::Max,
        Windows::fixed(d, k, stride),
        || portable(x, d, k, stride, Kind::Max),
    )
}

/// Max pooling with a `k × k` window, stride `stride` and implicit `−∞` padding `padding` on
/// every side, as `torch.nn.MaxPool2d(k, stride, padding)`: `y[i, j]` is the maximum of
/// `x[s·i − p + a, s·j − p + b]` over the `a, b < k` that fall inside the input, with
/// `i < ⌊(H + 2p − k)/s⌋ + 1` (likewise `j`). PyTorch's limits apply: `p ≤ k/2` (so every
/// window holds a real value) and the padded input at least one window.
///
/// Backward: the whole `∂L/∂y[i, j]` goes to the first maximum of window `(i, j)` in row-major
/// order (PyTorch's choice). On the CPU (f32, f64; f16/bf16 through f32) the pooling kernel
/// with clipped windows; elsewhere `−∞` padding and [`max_pool2d_portable`] (whose backward
/// splits ties).
pub fn max_pool2d_padded(
    x: &Tensor,
    k: usize,
    stride: usize,
    padding: usize,
) -> crate::Result<Tensor> {
    let d = check4("max_pool2d", x)?;
    if k == 0 || stride == 0 || 2 * padding > k || d[2] + 2 * padding < k || d[3] + 2 * padding < k
    {
        return Err(crate::OpsError::shape(
            "max_pool2d",
            format!(
                "window {k}, stride {stride}, padding {padding} do not fit input {:?} \
                 (padding must be at most half the window, the padded input at least one window)",
                x.dims()
            ),
        ));
    }
    if padding == 0 {
        return max_pool2d(x, k, stride);
    }
    run(
        "max_pool2d",
        x,
        Kind::Max,
        Windows::padded(d, k, stride, padding),
        || {
            let xp = pad_neg_inf(&pad_neg_inf(x, 3, padding)?, 2, padding)?;
            max_pool2d_portable(&xp, k, stride)
        },
    )
}

/// `x` with `p` slices of `−∞` added before and after along `dim`.
fn pad_neg_inf(x: &Tensor, dim: usize, p: usize) -> crate::Result<Tensor> {
    let mut shape = x.dims().to_vec();
    shape[dim] = p;
    let side =
        Tensor::full(f32::NEG_INFINITY, shape.as_slice(), x.device())?.to_dtype(x.dtype())?;
    Ok(Tensor::cat(&[&side, x, &side], dim)?)
}

/// Average pooling with a `k × k` window and stride `stride`:
/// `y[i, j] = (1/k²) Σ_{p,q<k} x[s·i+p, s·j+q]`. Backward: `∂L/∂y[i, j] / k²` to each
/// element of window `(i, j)`.
pub fn avg_pool2d(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let d = check_window("avg_pool2d", x, k, stride)?;
    run(
        "avg_pool2d",
        x,
        Kind::Avg,
        Windows::fixed(d, k, stride),
        || portable(x, d, k, stride, Kind::Avg),
    )
}

/// [`max_pool2d`] from candle ops only (any device): the windows gathered by `index_select`,
/// reduced by `max`. On ties every maximum gets the gradient (candle's `max` backward).
pub fn max_pool2d_portable(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let d = check_window("max_pool2d", x, k, stride)?;
    portable(x, d, k, stride, Kind::Max)
}

/// [`avg_pool2d`] from candle ops only (any device): the windows gathered by `index_select`,
/// reduced by `mean`.
pub fn avg_pool2d_portable(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let d = check_window("avg_pool2d", x, k, stride)?;
    portable(x, d, k, stride, Kind::Avg)
}

fn portable(
    x: &Tensor,
    [n, c, h, w]: [usize; 4],
    k: usize,
    s: usize,
    kind: Kind,
) -> crate::Result<Tensor> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut idx = Vec::with_capacity(k * k * oh * ow);
    for p in 0..k {
        for q in 0..k {
            for i in 0..oh {
                for j in 0..ow {
                    idx.push(((i * s + p) * w + j * s + q) as u32);
                }
            }
        }
    }
    let idx = Tensor::from_vec(idx, k * k * oh * ow, &Device::Cpu)?.to_device(x.device())?;
    let win = x
        .reshape((n, c, h * w))?
        .index_select(&idx, 2)?
        .reshape((n, c, k * k, oh * ow))?;
    let y = match kind {
        Kind::Max => win.max(2)?,
        Kind::Avg => win.mean(2)?,
    };
    Ok(y.reshape((n, c, oh, ow))?)
}

/// Adaptive average pooling to `(oh, ow)` as PyTorch defines it: output cell `(i, j)` averages
/// rows `⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉` and the matching columns. Backward: the cell's gradient
/// divided by its window size, to each element of the window.
pub fn adaptive_avg_pool2d(x: &Tensor, oh: usize, ow: usize) -> crate::Result<Tensor> {
    let d = check4("adaptive_avg_pool2d", x)?;
    if oh == 0 || ow == 0 {
        return Err(crate::OpsError::shape(
            "adaptive_avg_pool2d",
            format!(
                "output size must be positive, got ({oh}, {ow}) for input {:?}",
                x.dims()
            ),
        ));
    }
    if d[2] == 0 || d[3] == 0 {
        return Err(crate::OpsError::shape(
            "adaptive_avg_pool2d",
            format!("input {:?} has an empty plane", x.dims()),
        ));
    }
    if oh == 1 && ow == 1 {
        return Ok(x.mean_keepdim(3)?.mean_keepdim(2)?);
    }
    run(
        "adaptive_avg_pool2d",
        x,
        Kind::Avg,
        Windows::adaptive(d, oh, ow),
        || adaptive_portable(x, d, oh, ow),
    )
}

/// [`adaptive_avg_pool2d`] from candle ops only (any device): one `narrow` + `mean` per output
/// cell, concatenated.
pub fn adaptive_avg_pool2d_portable(x: &Tensor, oh: usize, ow: usize) -> crate::Result<Tensor> {
    let d = check4("adaptive_avg_pool2d", x)?;
    if oh == 0 || ow == 0 || d[2] == 0 || d[3] == 0 {
        return Err(crate::OpsError::shape(
            "adaptive_avg_pool2d",
            format!("output ({oh}, {ow}) from input {:?}", x.dims()),
        ));
    }
    adaptive_portable(x, d, oh, ow)
}

fn adaptive_portable(
    x: &Tensor,
    [_, _, h, w]: [usize; 4],
    oh: usize,
    ow: usize,
) -> crate::Result<Tensor> {
    let mut rows = Vec::with_capacity(oh);
    for i in 0..oh {
        let (h0, h1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
        let mut cols = Vec::with_capacity(ow);
        for j in 0..ow {
            let (w0, w1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
            cols.push(
                x.narrow(2, h0, h1 - h0)?
                    .narrow(3, w0, w1 - w0)?
                    .mean_keepdim(3)?
                    .mean_keepdim(2)?,
            );
        }
        rows.push(Tensor::cat(&cols, 3)?);
    }
    Ok(Tensor::cat(&rows, 2)?)
}
