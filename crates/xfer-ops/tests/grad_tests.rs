//! Gradient utilities on known cases: global norm, clip-by-norm, first non-finite gradient.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::grad::is_finite;
use xfer_ops::{clip_grad_norm, first_non_finite, global_grad_norm};

/// `L = 3 a₀ + 4 a₁ + 12 b₀` has gradients `[3, 4]` and `[12, 0]`: global norm 13.
fn known_case() -> (Var, Var, candle_core::backprop::GradStore) {
    let a = Var::from_tensor(&Tensor::new(&[1f64, 2.0], &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[5f64, 7.0], &Device::Cpu).unwrap()).unwrap();
    let ca = Tensor::new(&[3f64, 4.0], &Device::Cpu).unwrap();
    let cb = Tensor::new(&[12f64, 0.0], &Device::Cpu).unwrap();
    let loss = ((a.as_tensor() * &ca).unwrap().sum_all().unwrap()
        + (b.as_tensor() * &cb).unwrap().sum_all().unwrap())
    .unwrap();
    let g = loss.backward().unwrap();
    (a, b, g)
}

fn vec_of(t: &Tensor) -> Vec<f64> {
    t.to_vec1::<f64>().unwrap()
}

#[test]
fn global_grad_norm_of_known_gradients_is_13() {
    let (a, b, g) = known_case();
    let n = global_grad_norm(&g, [&a, &b]).unwrap();
    assert!((n - 13.0).abs() < 1e-12, "{n}");
    // Only the variables asked for count.
    let n = global_grad_norm(&g, [&a]).unwrap();
    assert!((n - 5.0).abs() < 1e-12, "{n}");
}

#[test]
fn clip_grad_norm_scales_every_gradient_to_max_norm() {
    let (a, b, mut g) = known_case();
    let before = clip_grad_norm(&mut g, [&a, &b], 6.5).unwrap();
    assert!((before - 13.0).abs() < 1e-12);
    assert_eq!(vec_of(g.get(a.as_tensor()).unwrap()), vec![1.5, 2.0]);
    assert_eq!(vec_of(g.get(b.as_tensor()).unwrap()), vec![6.0, 0.0]);
    let after = global_grad_norm(&g, [&a, &b]).unwrap();
    assert!((after - 6.5).abs() < 1e-12, "{after}");
}

#[test]
fn clip_grad_norm_leaves_gradients_below_max_norm_unchanged() {
    let (a, b, mut g) = known_case();
    let before = clip_grad_norm(&mut g, [&a, &b], 20.0).unwrap();
    assert!((before - 13.0).abs() < 1e-12);
    assert_eq!(vec_of(g.get(a.as_tensor()).unwrap()), vec![3.0, 4.0]);
    assert_eq!(vec_of(g.get(b.as_tensor()).unwrap()), vec![12.0, 0.0]);
}

#[test]
fn first_non_finite_names_the_first_bad_parameter() {
    let dev = Device::Cpu;
    let ok = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev).unwrap()).unwrap();
    let inf = Var::from_tensor(&Tensor::new(&[0f32, 1.0], &dev).unwrap()).unwrap();
    let nan = Var::from_tensor(&Tensor::new(&[-1f32, 1.0], &dev).unwrap()).unwrap();
    // d/dx log x at 0 = inf; d/dx sqrt x at −1 = NaN.
    let loss = (ok.as_tensor().sqr().unwrap().sum_all().unwrap()
        + inf.as_tensor().log().unwrap().sum_all().unwrap()
        + nan.as_tensor().sqrt().unwrap().sum_all().unwrap())
    .unwrap();
    let g = loss.backward().unwrap();
    let named = [("ok", &ok), ("layer.inf", &inf), ("layer.nan", &nan)];
    assert_eq!(
        first_non_finite(&g, named).unwrap().as_deref(),
        Some("layer.inf")
    );
    let named = [("ok", &ok), ("layer.nan", &nan), ("layer.inf", &inf)];
    assert_eq!(
        first_non_finite(&g, named).unwrap().as_deref(),
        Some("layer.nan")
    );
    assert_eq!(first_non_finite(&g, [("ok", &ok)]).unwrap(), None);
}

#[test]
fn is_finite_detects_nan_and_infinity() {
    let dev = Device::Cpu;
    assert!(is_finite(&Tensor::new(&[1f32, -3.0], &dev).unwrap()).unwrap());
    assert!(!is_finite(&Tensor::new(&[1f32, f32::NAN], &dev).unwrap()).unwrap());
    assert!(!is_finite(&Tensor::new(&[f64::NEG_INFINITY, 0.0], &dev).unwrap()).unwrap());
    assert!(is_finite(&Tensor::zeros(0, DType::F32, &dev).unwrap()).unwrap());
}

#[test]
fn is_finite_accepts_large_values_whose_sum_overflows() {
    let t = Tensor::new(&[3e38f32, 3e38, -3e38], &Device::Cpu).unwrap();
    assert!(is_finite(&t).unwrap());
}

#[test]
fn global_grad_norm_does_not_overflow_for_large_f32_gradients() {
    let a = Var::from_tensor(&Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap()).unwrap();
    let c = Tensor::new(&[1e30f32, 1e30], &Device::Cpu).unwrap();
    let g = (a.as_tensor() * &c)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let n = global_grad_norm(&g, [&a]).unwrap();
    assert!((n / (2f64.sqrt() * 1e30) - 1.0).abs() < 1e-6, "{n}");
}
