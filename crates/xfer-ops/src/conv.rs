//! 2-D convolution (NCHW).
//!
//! `y[n, o, i, j] = b[o] + Σ_{c, p, q} w[o, c, p, q] · x[n, c, s·i + d·p − pad, s·j + d·q − pad]`.

use candle_core::Tensor;

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

/// Convolution of `x` (N, C, H, W) with `w` (O, C/groups, KH, KW) plus an optional bias (O).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> crate::Result<Tensor> {
    let (n, c, h, wd) = x.dims4().map_err(|_| {
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
    let _ = n;
    if cfg.groups == 0 || cfg.stride == 0 || cfg.dilation == 0 {
        return Err(crate::OpsError::shape(
            "conv2d",
            format!("stride, dilation and groups must be positive: {cfg:?}"),
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
    let y = x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, cfg.groups)?;
    match bias {
        None => Ok(y),
        Some(b) => {
            if b.dims() != [o] {
                return Err(crate::OpsError::shape(
                    "conv2d",
                    format!("bias must be ({o}), got {:?}", b.dims()),
                ));
            }
            Ok(y.broadcast_add(&b.reshape((1, o, 1, 1))?)?)
        }
    }
}
