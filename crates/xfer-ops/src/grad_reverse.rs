//! Gradient reversal layer (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
//! Backpropagation", ICML 2015).
//!
//! Forward: `R_λ(x) = x`. Backward: `∂R_λ/∂x = −λ I`, so the gradient flowing back into the
//! feature extractor is `−λ · g`. With λ = 0 no gradient passes at all.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

struct GradReverse {
    lambda: f64,
}

impl CustomOp1 for GradReverse {
    fn name(&self) -> &'static str {
        "grad-reverse"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        use candle_core::backend::BackendStorage;
        // The storage's affine with (1, 0) copies `x` in its layout: one code path per backend.
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::MetalStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        if self.lambda == 0.0 {
            return Ok(None);
        }
        Ok(Some(grad.affine(-self.lambda, 0.0)?))
    }
}

/// Identity in the forward pass; multiplies the incoming gradient by `−lambda` in the
/// backward pass. `lambda = 0` stops the gradient entirely.
pub fn grad_reverse(x: &Tensor, lambda: f64) -> crate::Result<Tensor> {
    if !lambda.is_finite() {
        return Err(crate::OpsError::shape(
            "grad_reverse",
            format!("lambda must be finite, got {lambda}"),
        ));
    }
    if lambda == 0.0 {
        // No gradient passes: cut the graph here. (A backward answering "no gradient" for an
        // intermediate node makes candle 0.11's backward fail with "grad not populated".)
        return Ok(x.detach());
    }
    Ok(x.apply_op1(GradReverse { lambda })?)
}
