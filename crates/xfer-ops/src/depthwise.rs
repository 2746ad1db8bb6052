//! Depthwise 2-D convolution (NCHW, one filter per channel), with asymmetric zero padding and
//! TensorFlow's "SAME" padding rule.
//!
//! `y[n, c, i, j] = b[c] + Σ_{p, q} w[c, 0, p, q] · x[n, c, s·i + p − top, s·j + q − left]`,
//! `x` zero outside the image, output size `OH = ⌊(H + top + bottom − KH)/s⌋ + 1` (likewise `OW`).
//!
//! This is `conv2d` with `groups = C` and one output channel per group, but as its own kernel:
//! im2col + GEMM spends its time copying (every GEMM has one row), while the direct loops here
//! read each input row once per kernel tap. Backward:
//! `∂L/∂x[n,c,r,t] = Σ_{(i,p): s·i+p−top=r} Σ_{(j,q): s·j+q−left=t} w[c,p,q] · g[n,c,i,j]`,
//! `∂L/∂w[c,p,q] = Σ_{n,i,j} g[n,c,i,j] · x[n,c,s·i+p−top,s·j+q−left]`,
//! `∂L/∂b[c] = Σ_{n,i,j} g[n,c,i,j]`.
//!
//! CPU tensors (f32, f64; f16/bf16 through f32) take the kernels of `depthwise_cpu`; other
//! devices take [`depthwise_conv2d_portable`] (explicit zero padding, then candle's grouped conv).

use candle_core::{DType, Tensor};

use crate::conv::Conv2dConfig;
use crate::depthwise_cpu::DepthwiseOp;

/// Zero padding of the four sides of an image, possibly different before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding2d {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Padding2d {
    /// The same padding `p` on every side (PyTorch's `padding = p`).
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// TensorFlow's "SAME" padding of an `h × w` input for a `kh × kw` kernel with `stride`
    /// (dilation 1): per axis see [`same_padding`]. The output is `⌈h/s⌉ × ⌈w/s⌉`.
    pub fn same(h: usize, w: usize, kh: usize, kw: usize, stride: usize) -> Self {
        let (top, bottom) = same_padding(h, kh, stride);
        let (left, right) = same_padding(w, kw, stride);
        Self {
            top,
            bottom,
            left,
            right,
        }
    }

    /// Whether top = bottom = left = right (then a plain [`Conv2dConfig`] padding can express it).
    pub fn is_uniform(&self) -> bool {
        self.top == self.bottom && self.top == self.left && self.left == self.right
    }
}

/// TensorFlow's "SAME" padding along one axis of `size` inputs for a kernel of `k` taps with
/// `stride` (dilation 1): the total `max((⌈size/s⌉ − 1)·s + k − size, 0)` split as
/// `(total / 2, total − total / 2)`, the smaller half before. For `size = 224, k = 3, s = 2`
/// that is `(0, 1)`; for `k = 5, s = 2`, `(1, 2)`; stride 1 gives `((k−1)/2, k/2)`.
/// A zero stride is treated as 1.
pub fn same_padding(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let s = stride.max(1);
    let out = size.div_ceil(s);
    let total = ((out.max(1) - 1) * s + k).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Stride and (possibly asymmetric) padding of a [`depthwise_conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseConfig {
    /// Stride in both spatial dimensions.
    pub stride: usize,
    /// Zero padding of each side.
    pub padding: Padding2d,
}

impl Default for DepthwiseConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: Padding2d::default(),
        }
    }
}

/// Checks shapes and dtypes; returns the channel count.
fn check(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: DepthwiseConfig,
) -> crate::Result<usize> {
    let op = "depthwise_conv2d";
    let (_, c, h, wd) = x.dims4().map_err(|_| {
        crate::OpsError::shape(
            op,
            format!("input must be (N, C, H, W), got {:?}", x.dims()),
        )
    })?;
    let (o, one, kh, kw) = w.dims4().map_err(|_| {
        crate::OpsError::shape(
            op,
            format!("weight must be (C, 1, KH, KW), got {:?}", w.dims()),
        )
    })?;
    if o != c || one != 1 {
        return Err(crate::OpsError::shape(
            op,
            format!(
                "weight {:?} must be ({c}, 1, KH, KW) for input {:?}",
                w.dims(),
                x.dims()
            ),
        ));
    }
    if cfg.stride == 0 || kh == 0 || kw == 0 {
        return Err(crate::OpsError::shape(
            op,
            format!(
                "stride and kernel must be positive: {cfg:?}, weight {:?}",
                w.dims()
            ),
        ));
    }
    let p = cfg.padding;
    if h + p.top + p.bottom < kh || wd + p.left + p.right < kw {
        return Err(crate::OpsError::shape(
            op,
            format!(
                "kernel {:?} larger than the padded input {:?} ({p:?})",
                w.dims(),
                x.dims()
            ),
        ));
    }
    if let Some(b) = bias
        && b.dims() != [c]
    {
        return Err(crate::OpsError::shape(
            op,
            format!("bias must be ({c}), got {:?}", b.dims()),
        ));
    }
    for (what, t) in [("weight", Some(w)), ("bias", bias)] {
        if let Some(t) = t
            && t.dtype() != x.dtype()
        {
            return Err(crate::OpsError::DTypeMismatch {
                op,
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
    Ok(c)
}

/// Depthwise convolution of `x` (N, C, H, W) with `w` (C, 1, KH, KW) plus an optional bias (C),
/// stride `cfg.stride`, zero padding `cfg.padding` (each side on its own), dilation 1.
///
/// CPU tensors take the direct kernels with their own backward (f16 and bf16 are computed in
/// f32 and converted back); other devices take [`depthwise_conv2d_portable`]. Not twice
/// differentiable on the CPU. Errors name the shapes that do not fit.
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: DepthwiseConfig,
) -> crate::Result<Tensor> {
    check(x, w, bias, cfg)?;
    if !x.device().is_cpu() {
        return portable(x, w, bias, cfg);
    }
    let run = |x: &Tensor, w: &Tensor, b: Option<Tensor>| -> candle_core::Result<Tensor> {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, DepthwiseOp { cfg }),
            None => x.apply_op2(&w, DepthwiseOp { cfg }),
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
            op: "depthwise_conv2d",
            dtype,
        }),
    }
}

/// The device-generic path of [`depthwise_conv2d`] (same formula, same errors): zero-pad each
/// side explicitly, then [`crate::conv2d_portable`] with `groups = C` and no padding. Used on
/// CUDA and Metal; on the CPU it is the slow reference. Twice differentiable.
pub fn depthwise_conv2d_portable(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: DepthwiseConfig,
) -> crate::Result<Tensor> {
    check(x, w, bias, cfg)?;
    portable(x, w, bias, cfg)
}

fn portable(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: DepthwiseConfig,
) -> crate::Result<Tensor> {
    let c = x.dim(1)?;
    let p = cfg.padding;
    let mut xp = x.clone();
    if p.top > 0 || p.bottom > 0 {
        xp = xp.pad_with_zeros(2, p.top, p.bottom)?;
    }
    if p.left > 0 || p.right > 0 {
        xp = xp.pad_with_zeros(3, p.left, p.right)?;
    }
    crate::conv2d_portable(
        &xp,
        w,
        bias,
        Conv2dConfig {
            stride: cfg.stride,
            padding: 0,
            dilation: 1,
            groups: c,
        },
    )
}
