//! gelu_erf: values against candle's `gelu_erf` (f32 and f64), gradients against finite
//! differences, the multi-threaded path against the single-threaded one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Tensor, Var};
use common::{check_gradients, max_rel_diff, randn, randn_dtype, values};
use xfer_ops::{SeededRng, gelu_erf};

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn gelu_matches_candles_exact_gelu() {
    let mut rng = SeededRng::new(3);
    // f64: the same erf, so the same values.
    let x = randn(&mut rng, &[4, 50]).affine(3.0, 0.0).unwrap();
    assert!(max_rel_diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 1e-12);
    // f32, long enough to take the multi-threaded path: within the approximation's error.
    let xf = randn_dtype(&mut rng, &[70_000], DType::F32)
        .affine(4.0, 0.0)
        .unwrap();
    let (a, b) = (
        values(&gelu_erf(&xf).unwrap()),
        values(&xf.gelu_erf().unwrap()),
    );
    let worst = max_abs_diff(&a, &b);
    assert!(worst < 2e-6, "max abs difference {worst}");
}

#[test]
fn gelu_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(4);
    let x = randn(&mut rng, &[3, 30]).affine(2.5, 0.0).unwrap();
    check_gradients(
        |t| gelu_erf(&t[0]).map_err(candle_core::Error::wrap),
        &[x],
        1e-8,
        1e-6,
    );
}

#[test]
fn f32_gelu_gradient_matches_the_f64_one() {
    let mut rng = SeededRng::new(5);
    let x = randn(&mut rng, &[40_000]).affine(3.0, 0.0).unwrap();
    let grad = |x: &Tensor| {
        let v = Var::from_tensor(x).unwrap();
        let y = gelu_erf(v.as_tensor()).unwrap();
        let w = Tensor::arange(0u32, 40_000, x.device())
            .unwrap()
            .to_dtype(x.dtype())
            .unwrap()
            .affine(1e-4, -2.0)
            .unwrap();
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        values(g.get(v.as_tensor()).unwrap())
    };
    let a = grad(&x.to_dtype(DType::F32).unwrap());
    let b = grad(&x);
    let worst = max_abs_diff(&a, &b);
    assert!(worst < 2e-6, "max abs difference {worst}");
}
