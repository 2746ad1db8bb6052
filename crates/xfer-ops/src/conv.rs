//! 2-D convolution (NCHW).
//!
//! `y[n, o, i, j] = b[o] + Σ_{c, p, q} w[o, c, p, q] · x[n, g·C/G + c, s·i + d·p − pad, s·j + d·q − pad]`
//! where `g = ⌊o / (O/G)⌋` is the group of output channel `o`, and `x` is zero outside the image.
//!
//! On the CPU (f32, f64; f16/bf16 through f32) the forward is im2col + GEMM and the backward is
//! our own: `dX = col2im(Wᵀ · dY)`, `dW = Σ_n dY_n · im2col(X_n)ᵀ`, `db = Σ_{n,i,j} dY`
//! (see the `conv_cpu` module). candle's own conv2d backward is slow on the CPU and fails
//! for inputs whose height and width leave different remainders under the stride
//! (e.g. 11×10 with stride 2). Other devices take [`conv2d_portable`].

use candle_core::{DType, Tensor};

use crate::conv_cpu::Conv2dOp;

/// Stride, padding, dilation and groups of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Stride in both spatial dimensions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation of the kernel.
    pub dilation: usize,
    /// Number of groups (input and output channels must both divide by it).
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Checks the shapes, dtypes and configuration; returns the number of output channels.
fn check(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv2dConfig) -> crate::Result<usize> {
    let (_, c, h, wd) = x.dims4().map_err(|_| {
        crate::OpsError::shape(
            "conv2d",
            format!("input must be (N, C, H, W), got {:?}", x.dims()),
        )
    })?;
    let (o, cg, kh, kw) = w.dims4().map_err(|_| {
        crate::OpsError::shape(
            "conv2d",
            format!("weight must be (O, C/groups, KH, KW), got {:?}", w.dims()),
        )
    })?;
    if cfg.groups == 0 || cfg.stride == 0 || cfg.dilation == 0 {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!("stride, dilation and groups must be positive: {cfg:?}"),
        ));
    }
    if kh == 0 || kw == 0 {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!("weight {:?} has an empty kernel", w.dims()),
        ));
    }
    if c != cg * cfg.groups || !o.is_multiple_of(cfg.groups) {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!(
                "input {:?} and weight {:?} disagree in channels for groups = {}",
                x.dims(),
                w.dims(),
                cfg.groups
            ),
        ));
    }
    let eh = cfg.dilation * (kh - 1) + 1;
    let ew = cfg.dilation * (kw - 1) + 1;
    if h + 2 * cfg.padding < eh || wd + 2 * cfg.padding < ew {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!(
                "kernel {:?} (dilation {}) larger than padded input {:?}",
                w.dims(),
                cfg.dilation,
                x.dims()
            ),
        ));
    }
    if let Some(b) = bias
        && b.dims() != [o]
    {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!("bias must be ({o}), got {:?}", b.dims()),
        ));
    }
    for (what, t) in [("weight", Some(w)), ("bias", bias)] {
        if let Some(t) = t
            && t.dtype() != x.dtype()
        {
            return Err(crate::OpsError::DTypeMismatch {
                op: "conv2d",
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
    Ok(o)
}

fn add_bias(y: Tensor, bias: Option<&Tensor>, o: usize) -> crate::Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => Ok(y.broadcast_add(&b.reshape((1, o, 1, 1))?)?),
    }
}

/// Convolution of `x` (N, C, H, W) with `w` (O, C/groups, KH, KW) plus an optional bias (O).
///
/// CPU tensors take the im2col + GEMM kernels with their own backward (f16 and bf16 are
/// computed in f32 and converted back); other devices take [`conv2d_portable`]. Not twice
/// differentiable on the CPU (the backward kernels record no graph).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> crate::Result<Tensor> {
    let o = check(x, w, bias, cfg)?;
    if !x.device().is_cpu() {
        return add_bias(portable(x, w, cfg)?, bias, o);
    }
    let run = |x: &Tensor, w: &Tensor, b: Option<Tensor>| -> candle_core::Result<Tensor> {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, Conv2dOp { cfg }),
            None => x.apply_op2(&w, Conv2dOp { cfg }),
        }
    };
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(run(x, w, bias.cloned())?),
        DType::F16 | DType::BF16 => {
            let b = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
            let y = run(&x.to_dtype(DType::F32)?, &w.to_dtype(DType::F32)?, b)?;
            Ok(y.to_dtype(x.dtype())?)
        }
        dtype => Err(crate::OpsError::DType {
            op: "conv2d",
            dtype,
        }),
    }
}

/// The device-generic path of [`conv2d`], built from candle ops only (same formula, same
/// errors): zero-pad explicitly, crop to the rows and columns the windows reach, then candle's
/// `conv2d` with no padding. The crop makes candle's backward correct for every size (its
/// input gradient assumes the height's remainder under the stride for the width too).
/// Used on CUDA and Metal; on the CPU it is the slow reference.
pub fn conv2d_portable(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> crate::Result<Tensor> {
    let o = check(x, w, bias, cfg)?;
    add_bias(portable(x, w, cfg)?, bias, o)
}

fn portable(x: &Tensor, w: &Tensor, cfg: Conv2dConfig) -> crate::Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (s, p, d) = (cfg.stride, cfg.padding, cfg.dilation);
    let used = |size: usize, k: usize| {
        let e = d * (k - 1) + 1;
        ((size + 2 * p - e) / s) * s + e
    };
    let mut xp = x.clone();
    if p > 0 {
        xp = xp.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    }
    let (uh, uw) = (used(h, kh), used(wd, kw));
    if uh < h + 2 * p {
        xp = xp.narrow(2, 0, uh)?;
    }
    if uw < wd + 2 * p {
        xp = xp.narrow(3, 0, uw)?;
    }
    Ok(xp.conv2d(w, 0, s, d, cfg.groups)?)
}
