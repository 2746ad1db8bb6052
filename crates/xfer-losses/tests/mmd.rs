#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use common::*;
use xfer_losses::{GaussianKernel, LossError, MultiKernelMmd};
use xfer_ops::SeededRng;

fn fixed(s: &[f64]) -> MultiKernelMmd {
    MultiKernelMmd::new(
        s.iter()
            .map(|&sigma_sq| GaussianKernel::Fixed { sigma_sq })
            .collect(),
    )
    .unwrap()
}

fn normal(rng: &mut SeededRng, n: usize, d: usize, mean: f64) -> candle_core::Tensor {
    rng.normal(
        &[n, d],
        mean,
        1.0,
        candle_core::DType::F64,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

#[test]
fn mmd_value_matches_hand_computation() {
    // One point per domain, s = 0, t = 1: MMD² = k(s,s) + k(t,t) − 2k(s,t) = 2 − 2k(0,1).
    let s = t(&[0.0], &[1, 1]);
    let tt = t(&[1.0], &[1, 1]);
    // σ² = 0.5: k = exp(−1/1); σ² = 2: k = exp(−1/4); two kernels are averaged.
    let got = scalar(&fixed(&[0.5]).forward(&s, &tt).unwrap());
    assert_close(got, 2.0 - 2.0 * (-1f64).exp(), 1e-12, "one kernel");
    let got = scalar(&fixed(&[0.5, 2.0]).forward(&s, &tt).unwrap());
    let k = ((-1f64).exp() + (-0.25f64).exp()) / 2.0;
    assert_close(got, 2.0 - 2.0 * k, 1e-12, "two kernels");
    // Relative bandwidth: s = 0, t = 2, distances [[0, 4], [4, 0]] → mean 2; α = 1 → σ² = 2,
    // k(s, t) = exp(−4/4).
    let rel = MultiKernelMmd::new(vec![GaussianKernel::Relative { alpha: 1.0 }]).unwrap();
    let got = scalar(&rel.forward(&s, &t(&[2.0], &[1, 1])).unwrap());
    assert_close(got, 2.0 - 2.0 * (-1f64).exp(), 1e-12, "relative bandwidth");
    // Two source points, one target point (m ≠ n), fixed σ² = 0.5 (k = exp(−d²)):
    // s = {0, 1}, t = {0}: (1/4)(2 + 2e⁻¹) + 1 − (2/2)(1 + e⁻¹).
    let s2 = t(&[0.0, 1.0], &[2, 1]);
    let got = scalar(&fixed(&[0.5]).forward(&s2, &t(&[0.0], &[1, 1])).unwrap());
    let e = (-1f64).exp();
    assert_close(got, (2.0 + 2.0 * e) / 4.0 + 1.0 - (1.0 + e), 1e-12, "m ≠ n");
}

#[test]
fn mmd_is_zero_for_identical_samples() {
    let mut rng = SeededRng::new(7);
    let x = normal(&mut rng, 16, 5, 0.0);
    for mmd in [MultiKernelMmd::default(), fixed(&[0.3, 1.0, 4.0])] {
        let v = scalar(&mmd.forward(&x, &x).unwrap());
        assert!(v.abs() < 1e-12, "MMD²(X, X) = {v}");
    }
    // All points equal: every distance is 0 and the relative bandwidth degenerates safely.
    let same = t(&[1.0; 6], &[3, 2]);
    let v = scalar(&MultiKernelMmd::default().forward(&same, &same).unwrap());
    assert!(v.is_finite() && v.abs() < 1e-12, "{v}");
}

#[test]
fn mmd_is_positive_for_shifted_samples_and_grows_with_the_shift() {
    let mut rng = SeededRng::new(11);
    let s = normal(&mut rng, 32, 4, 0.0);
    let base = normal(&mut rng, 32, 4, 0.0);
    // Two samples of one distribution: small but (biased estimate) non-negative.
    let same_dist = scalar(&MultiKernelMmd::default().forward(&s, &base).unwrap());
    assert!(same_dist >= 0.0);
    // Fixed bandwidths: strictly growing with the shift.
    let mmd = fixed(&[1.0, 4.0, 16.0]);
    let mut last = scalar(&mmd.forward(&s, &base).unwrap());
    for shift in [1.0, 2.0, 4.0] {
        let v = scalar(&mmd.forward(&s, &(&base + shift).unwrap()).unwrap());
        assert!(v > last, "shift {shift}: {v} should exceed {last}");
        last = v;
    }
    // DAN's relative bandwidths: a clear shift stands far above sampling noise.
    let shifted = scalar(
        &MultiKernelMmd::default()
            .forward(&s, &(&base + 2.0).unwrap())
            .unwrap(),
    );
    assert!(
        shifted > 5.0 * same_dist && shifted > 0.1,
        "{shifted} vs {same_dist}"
    );
}

#[test]
fn mmd_gradient_matches_finite_differences() {
    let s = t(&[0.1, 0.5, -0.2, 1.0, 0.0, 0.3, 0.7, -0.4], &[4, 2]);
    let tt = t(&[1.0, 0.2, 0.4, 0.9, 1.5, 0.6], &[3, 2]);
    let mmd = fixed(&[0.25, 1.0, 4.0]);
    check_grad(&|x| mmd.forward(&x[0], &x[1]).unwrap(), &[s, tt], 1e-6);
}

#[test]
fn mmd_refuses_mismatched_features_with_named_errors() {
    let a = t(&[0.0; 6], &[3, 2]);
    let b = t(&[0.0; 6], &[2, 3]);
    let err = MultiKernelMmd::default().forward(&a, &b).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "target"),
        "{err}"
    );
    let err = MultiKernelMmd::default()
        .forward(&t(&[0.0; 3], &[3]), &a)
        .unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "source"),
        "{err}"
    );
    assert!(MultiKernelMmd::new(vec![]).is_err());
    assert!(MultiKernelMmd::new(vec![GaussianKernel::Fixed { sigma_sq: 0.0 }]).is_err());
}
