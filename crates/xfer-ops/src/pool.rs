//! Pooling over the spatial dimensions of NCHW tensors.

use candle_core::Tensor;

fn check4(op: &'static str, x: &Tensor) -> crate::Result<(usize, usize, usize, usize)> {
    x.dims4().map_err(|_| {
        crate::OpsError::shape(
            op,
            format!("input must be (N, C, H, W), got {:?}", x.dims()),
        )
    })
}

/// Max pooling with a `k × k` window and stride `stride`: `y[i, j] = max_{p,q<k} x[s·i+p, s·j+q]`.
/// The gradient goes to the arg-max of each window.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let (_, _, h, w) = check4("max_pool2d", x)?;
    if k == 0 || stride == 0 || k > h || k > w {
        return Err(crate::OpsError::shape(
            "max_pool2d",
            format!("window {k} stride {stride} on input {:?}", x.dims()),
        ));
    }
    Ok(x.max_pool2d_with_stride(k, stride)?)
}

/// Average pooling with a `k × k` window and stride `stride`: `y[i, j] = (1/k²) Σ_{p,q<k} x[s·i+p, s·j+q]`.
pub fn avg_pool2d(x: &Tensor, k: usize, stride: usize) -> crate::Result<Tensor> {
    let (_, _, h, w) = check4("avg_pool2d", x)?;
    if k == 0 || stride == 0 || k > h || k > w {
        return Err(crate::OpsError::shape(
            "avg_pool2d",
            format!("window {k} stride {stride} on input {:?}", x.dims()),
        ));
    }
    Ok(x.avg_pool2d_with_stride(k, stride)?)
}

/// Adaptive average pooling to `(oh, ow)` as PyTorch defines it: output cell `(i, j)` averages
/// rows `⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉` and the matching columns.
pub fn adaptive_avg_pool2d(x: &Tensor, oh: usize, ow: usize) -> crate::Result<Tensor> {
    let (_, _, h, w) = check4("adaptive_avg_pool2d", x)?;
    if oh == 0 || ow == 0 {
        return Err(crate::OpsError::shape(
            "adaptive_avg_pool2d",
            "output size must be positive",
        ));
    }
    if oh == 1 && ow == 1 {
        return Ok(x.mean_keepdim(3)?.mean_keepdim(2)?);
    }
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
