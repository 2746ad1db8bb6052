#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use common::*;
use xfer_losses::{LossError, coral};
use xfer_ops::SeededRng;

#[test]
fn coral_value_matches_hand_computation() {
    // d = 1: source {0, 2} has variance 2, target {0, 1} variance 0.5: (2 − 0.5)² / 4.
    let got = scalar(&coral(&t(&[0.0, 2.0], &[2, 1]), &t(&[0.0, 1.0], &[2, 1])).unwrap());
    assert_close(got, 1.5f64.powi(2) / 4.0, 1e-12, "d = 1");
    // d = 2: source rows (0,0), (2,2) → C_S = [[2,2],[2,2]]; target rows (0,0), (1,−1)
    // → C_T = [[.5,−.5],[−.5,.5]]. ‖C_S − C_T‖² = 2·1.5² + 2·2.5² = 17; / (4·4).
    let s = t(&[0.0, 0.0, 2.0, 2.0], &[2, 2]);
    let tt = t(&[0.0, 0.0, 1.0, -1.0], &[2, 2]);
    assert_close(
        scalar(&coral(&s, &tt).unwrap()),
        17.0 / 16.0,
        1e-12,
        "d = 2",
    );
}

#[test]
fn coral_is_zero_for_same_covariance() {
    let mut rng = SeededRng::new(3);
    let s = rng
        .normal(
            &[10, 3],
            0.0,
            1.0,
            candle_core::DType::F64,
            &candle_core::Device::Cpu,
        )
        .unwrap();
    // A shifted copy with its rows reversed: a different mean, the same covariance.
    let shifted = (s.flip(&[0]).unwrap() + 5.0).unwrap();
    let v = scalar(&coral(&s, &shifted).unwrap());
    assert!(v.abs() < 1e-12, "{v}");
    // A scaled copy does not share the covariance.
    let scaled = (&s * 2.0).unwrap();
    assert!(scalar(&coral(&s, &scaled).unwrap()) > 1e-3);
}

#[test]
fn coral_gradient_matches_finite_differences() {
    let s = t(&[0.1, 0.5, -0.2, 1.0, 0.0, 0.3, 0.7, -0.4, 0.2], &[3, 3]);
    let tt = t(
        &[1.0, 0.2, 0.4, 0.9, 1.5, 0.6, -0.3, 0.0, 0.8, 0.1, 0.1, -1.0],
        &[4, 3],
    );
    check_grad(&|x| coral(&x[0], &x[1]).unwrap(), &[s, tt], 1e-6);
}

#[test]
fn coral_refuses_single_rows_and_mismatched_features() {
    let one = t(&[1.0, 2.0], &[1, 2]);
    let two = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let err = coral(&one, &two).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "source"),
        "{err}"
    );
    let err = coral(&two, &t(&[0.0; 6], &[2, 3])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "target"),
        "{err}"
    );
}
