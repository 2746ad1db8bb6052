//! GELU in its exact (erf) form, `gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2))`, as one op with an
//! explicit backward `∂L/∂x = g·(Φ(x) + x·φ(x))`, `φ(x) = e^{−x²/2}/√(2π)`: the activation of
//! BERT-family encoders (MiniLM).
//!
//! candle's `gelu_erf` calls libm's scalar `erf` per element, and its backward is a
//! composition of five more element-wise ops. Here, on the CPU in f32, the forward and the
//! backward are one pass each over vectorisable loops, compiled for AVX-512, AVX2 + FMA and
//! SSE2 and picked at run time (`multiversion!` in `cpu.rs`), and split over rayon's
//! threads:
//! - `erf(z) ≈ 1 − t·(a₁ + t·(a₂ + t·(a₃ + t·(a₄ + t·a₅))))·e^{−z²}`, `t = 1/(1 + p·z)`
//!   for `z ≥ 0` (odd extension below): Abramowitz & Stegun 7.1.26, absolute error
//!   ≤ 1.5·10⁻⁷ — the formula PyTorch's vectorised CPU `erf` uses;
//! - `e^x = 2ⁿ·e^r`, `n = round(x·log₂e)`, `r = x − n·ln 2 ∈ [−½ln 2, ½ln 2]`, `e^r` by the
//!   degree-7 polynomial of Cephes' `expf` (relative error ≈ 1 ulp), `2ⁿ` built in the
//!   exponent bits.
//!
//! f64 uses candle's scalar `erf` (double precision, for gradient checks); other devices
//! and dtypes use candle's `gelu_erf`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu::{Elem, by_dtype, multiversion, slice};

/// Elements per rayon task; below twice this the kernels run on the calling thread.
const CHUNK: usize = 16 * 1024;

/// `gelu(x) = ½·x·(1 + erf(x/√2))` element-wise (PyTorch's `gelu(approximate="none")`).
///
/// Backward: `∂L/∂x = g·(Φ(x) + x·φ(x))`. On the CPU (f32, f64) one op with that explicit
/// backward; other devices and dtypes use candle's `gelu_erf`. Not twice differentiable on
/// the CPU.
pub fn gelu_erf(x: &Tensor) -> crate::Result<Tensor> {
    if !(x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)) {
        return Ok(x.gelu_erf()?);
    }
    Ok(x.contiguous()?.apply_op1(GeluOp)?)
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n·LN2_HI` is exact for |n| < 2⁹ (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it rounds an f32 of magnitude < 2²² to an integer, held in the low
/// mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `e^x` in f32 from plain arithmetic (vectorisable); 0 below −87, 2¹²⁷·e^r above 88.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n ∈ [−126, 127]: the biased exponent n + 127 fits in 8 bits.
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    er * f32::from_bits(((ni + 127) as u32) << 23)
}

/// `(erf(z), e^{−z²})` for f32 by Abramowitz & Stegun 7.1.26.
#[inline(always)]
fn erf_and_gauss(z: f32) -> (f32, f32) {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let gauss = exp_f32(-a * a);
    let e = 1.0 - poly * gauss;
    (if z < 0.0 { -e } else { e }, gauss)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

multiversion! {
    /// `y = gelu(x)` over one chunk (f32).
    fn gelu_chunk_f32(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            let (e, _) = erf_and_gauss(x * FRAC_1_SQRT_2);
            *y = 0.5 * x * (1.0 + e);
        }
    }
}

multiversion! {
    /// `dx = g·(Φ(x) + x·φ(x))` over one chunk (f32).
    fn gelu_grad_chunk_f32(x: &[f32], g: &[f32], dx: &mut [f32]) {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            let (e, gauss) = erf_and_gauss(x * FRAC_1_SQRT_2);
            *d = g * (0.5 * (1.0 + e) + x * INV_SQRT_2PI * gauss);
        }
    }
}

/// The element types of the CPU kernel: f32 vectorised, f64 through candle's scalar erf.
trait GeluElem: Elem {
    fn gelu_chunk(x: &[Self], y: &mut [Self]);
    fn gelu_grad_chunk(x: &[Self], g: &[Self], dx: &mut [Self]);
}

impl GeluElem for f32 {
    fn gelu_chunk(x: &[f32], y: &mut [f32]) {
        gelu_chunk_f32(x, y)
    }
    fn gelu_grad_chunk(x: &[f32], g: &[f32], dx: &mut [f32]) {
        gelu_grad_chunk_f32(x, g, dx)
    }
}

impl GeluElem for f64 {
    fn gelu_chunk(x: &[f64], y: &mut [f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5
                * x
                * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2));
        }
    }
    fn gelu_grad_chunk(x: &[f64], g: &[f64], dx: &mut [f64]) {
        let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            let phi =
                0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2));
            *d = g * (phi + x * inv_sqrt_2pi * (-0.5 * x * x).exp());
        }
    }
}

struct GeluOp;

fn gelu_fwd<T: GeluElem>(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<T>> {
    let x = slice::<T>(s, l, "gelu: input")?;
    let mut y = vec![T::default(); x.len()];
    if x.len() < 2 * CHUNK {
        T::gelu_chunk(x, &mut y);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| T::gelu_chunk(x, y));
    }
    Ok(y)
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "xfer-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("gelu", s, gelu_fwd(s, l))?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluBackward)?))
    }
}

/// `(x, g) ↦ g·(Φ(x) + x·φ(x))`.
struct GeluBackward;

fn gelu_bwd<T: GeluElem>(
    (x, xl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    if xl.dims() != gl.dims() {
        bail!(
            "gelu backward: input {:?}, gradient {:?}",
            xl.dims(),
            gl.dims()
        );
    }
    let x = slice::<T>(x, xl, "gelu backward: input")?;
    let g = slice::<T>(g, gl, "gelu backward: gradient")?;
    let mut dx = vec![T::default(); x.len()];
    if x.len() < 2 * CHUNK {
        T::gelu_grad_chunk(x, g, &mut dx);
    } else {
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(d, (x, g))| T::gelu_grad_chunk(x, g, d));
    }
    Ok(dx)
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "xfer-gelu-erf-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("gelu", x, gelu_bwd((x, xl), (g, gl)))?;
        Ok((out, xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_within_two_ulps_of_std_over_its_range() {
        let mut worst = 0.0f64;
        let mut v = -87.0f32;
        while v < 88.0 {
            let (a, b) = (exp_f32(v) as f64, (v as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            v += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_f32(-200.0), exp_f32(-87.0));
        assert!(exp_f32(200.0).is_finite());
    }

    #[test]
    fn f32_gelu_is_within_3e_7_of_the_exact_one() {
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.0025).collect();
        let mut y = vec![0.0; xs.len()];
        gelu_chunk_f32(&xs, &mut y);
        let mut yd = vec![0.0f64; xs.len()];
        let xd: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
        f64::gelu_chunk(&xd, &mut yd);
        for ((&a, &b), &x) in y.iter().zip(&yd).zip(&xd) {
            assert!(
                ((a as f64) - b).abs() < 3e-7 * x.abs().max(1.0),
                "x {x}: {a} vs {b}"
            );
        }
    }
}
