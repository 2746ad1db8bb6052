#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{DType, Device, Var};
use common::*;
use xfer_losses::{
    CrossEntropyLoss, LossError, Reduction, UncertaintyWeighting, masked_mean, weighted_sum,
};

#[test]
fn weighted_sum_value_and_gradient() {
    let l = [t(&[2.0], &[]), t(&[3.0], &[1])];
    assert_close(
        scalar(&weighted_sum(&l, &[0.5, 2.0]).unwrap()),
        7.0,
        1e-12,
        "Σ w L",
    );
    // Through two task losses of one parameter vector.
    check_grad(
        &|x| {
            let a = x[0].sqr().unwrap().sum_all().unwrap();
            let b = x[0].sin().unwrap().sum_all().unwrap();
            weighted_sum(&[a, b], &[0.3, 1.7]).unwrap()
        },
        &[t(&[0.5, -1.0, 2.0], &[3])],
        1e-6,
    );
    let err = weighted_sum(&l, &[1.0]).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "weights", .. }),
        "{err}"
    );
    let err = weighted_sum(&[t(&[1.0, 2.0], &[2])], &[1.0]).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "losses[0]"),
        "{err}"
    );
}

#[test]
fn uncertainty_weighting_value_matches_hand_computation() {
    // s = (0, ln 2), L = (2, 4): e⁰·2 + 0 + e^(−ln 2)·4 + ln 2 = 4 + ln 2.
    let s = Var::from_tensor(&t(&[0.0, 2f64.ln()], &[2])).unwrap();
    let uw = UncertaintyWeighting::from_log_vars(s).unwrap();
    let got = scalar(&uw.forward(&[t(&[2.0], &[]), t(&[4.0], &[])]).unwrap());
    assert_close(got, 4.0 + 2f64.ln(), 1e-12, "Σ e^(−s) L + s");
    assert_all_close(&uw.weights().unwrap(), &[1.0, 0.5], 1e-12, "weights e^(−s)");
}

#[test]
fn uncertainty_weighting_gradient_matches_finite_differences() {
    check_grad(
        &|x| {
            let uw = UncertaintyWeighting::from_log_vars(Var::from_tensor(&x[0]).unwrap()).unwrap();
            let l0 = x[1].sqr().unwrap().sum_all().unwrap();
            let l1 = x[1].exp().unwrap().sum_all().unwrap();
            uw.forward(&[l0, l1]).unwrap()
        },
        &[t(&[0.3, -0.7], &[2]), t(&[0.5, -1.0], &[2])],
        1e-6,
    );
    // Analytically ∂/∂s_t = 1 − e^(−s_t) L_t.
    let s = Var::from_tensor(&t(&[0.0, 1.0], &[2])).unwrap();
    let uw = UncertaintyWeighting::from_log_vars(s.clone()).unwrap();
    let loss = uw.forward(&[t(&[3.0], &[]), t(&[0.5], &[])]).unwrap();
    let g = values(loss.backward().unwrap().get(s.as_tensor()).unwrap());
    assert_all_close(
        &g,
        &[1.0 - 3.0, 1.0 - 0.5 * (-1f64).exp()],
        1e-12,
        "1 − e^(−s) L",
    );
}

#[test]
fn uncertainty_weights_move_toward_noisier_task() {
    // Two tasks with fixed-size losses; the second is four times larger (noisier).
    let uw = UncertaintyWeighting::new(2, DType::F64, &Device::Cpu).unwrap();
    let losses = [t(&[1.0], &[]), t(&[4.0], &[])];
    let lr = 0.1;
    for _ in 0..300 {
        let loss = uw.forward(&losses).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(uw.log_vars().as_tensor()).unwrap();
        uw.log_vars()
            .set(&(uw.log_vars().as_tensor() - (g * lr).unwrap()).unwrap())
            .unwrap();
    }
    let s = values(uw.log_vars().as_tensor());
    assert!(s[1] > s[0], "the noisier task's s must grow more: {s:?}");
    // The fixed point is s_t = ln L_t, i.e. weight 1/L_t.
    assert_all_close(&s, &[0.0, 4f64.ln()], 1e-3, "s → ln L");
    let w = uw.weights().unwrap();
    assert!(
        w[1] < w[0],
        "the noisier task must get the smaller weight: {w:?}"
    );
}

#[test]
fn uncertainty_weighting_refuses_wrong_task_count() {
    let uw = UncertaintyWeighting::new(3, DType::F32, &Device::Cpu).unwrap();
    let err = uw.forward(&[t(&[1.0], &[])]).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "losses", .. }),
        "{err}"
    );
    assert!(UncertaintyWeighting::new(0, DType::F32, &Device::Cpu).is_err());
    assert!(UncertaintyWeighting::new(2, DType::U32, &Device::Cpu).is_err());
    // f64 losses are accepted by f32 weights (converted).
    let v = scalar(
        &uw.forward(&[t(&[1.0], &[]), t(&[2.0], &[]), t(&[3.0], &[])])
            .unwrap(),
    );
    assert_close(v, 6.0, 1e-6, "s = 0: plain sum");
}

#[test]
fn masked_mean_averages_only_labelled_examples() {
    let per = t(&[1.0, 100.0, 3.0, f64::NAN], &[4]);
    let mask = t(&[1.0, 0.0, 1.0, 0.0], &[4]);
    assert_close(
        scalar(&masked_mean(&per, &mask).unwrap()),
        2.0,
        1e-12,
        "mean of kept",
    );
    let none = masked_mean(&per, &t(&[0.0; 4], &[4])).unwrap();
    assert_eq!(scalar(&none), 0.0);
    check_grad(
        &|x| masked_mean(&x[0], &t(&[1.0, 0.0, 0.5, 2.0], &[4])).unwrap(),
        &[t(&[0.3, 1.0, -2.0, 0.5], &[4])],
        1e-6,
    );
    let err = masked_mean(&per, &t(&[1.0; 3], &[3])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "mask"),
        "{err}"
    );
    let err = masked_mean(&t(&[1.0], &[1]), &t(&[-1.0], &[1])).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "mask", .. }),
        "{err}"
    );
}

#[test]
fn masked_task_losses_combine_into_one_objective() {
    // Task A labels every example; task B lacks a label for example 1 (placeholder −1).
    let logits_a = Var::from_tensor(&t(&[1.0, 0.0, 0.0, 1.0, 2.0, 0.5], &[3, 2])).unwrap();
    let logits_b =
        Var::from_tensor(&t(&[0.2, 0.1, 0.3, 0.0, 0.0, 0.9, 1.0, 0.0, 0.0], &[3, 3])).unwrap();
    let ya = labels(&[0, 1, 0]);
    let yb = labels(&[2, -1, 0]);
    let has_b = t(&[1.0, 0.0, 1.0], &[3]);
    let ce = CrossEntropyLoss::new();
    let la = ce.forward(logits_a.as_tensor(), &ya).unwrap();
    let lb = ce
        .forward_masked(logits_b.as_tensor(), &yb, &has_b)
        .unwrap();
    let per_b = CrossEntropyLoss::new()
        .with_reduction(Reduction::None)
        .forward_masked(logits_b.as_tensor(), &yb, &has_b)
        .unwrap();
    assert_close(
        scalar(&lb),
        scalar(&masked_mean(&per_b, &has_b).unwrap()),
        1e-12,
        "forward_masked = masked_mean of per-example losses",
    );
    let total = weighted_sum(&[la, lb], &[1.0, 0.5]).unwrap();
    let grads = total.backward().unwrap();
    let gb: Vec<f64> = values(grads.get(logits_b.as_tensor()).unwrap());
    assert!(
        gb[3..6].iter().all(|g| *g == 0.0),
        "the unlabelled row got {:?}",
        &gb[3..6]
    );
    assert!(gb[0..3].iter().any(|g| g.abs() > 1e-6));
}
