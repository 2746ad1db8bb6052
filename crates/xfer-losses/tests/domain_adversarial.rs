#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{Tensor, Var};
use common::*;
use xfer_losses::{DomainAdversarialLoss, LossError, dann_lambda};

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A linear discriminator `f ↦ f·w + b` reading the given tensors.
fn linear(w: Tensor, b: f64) -> DomainAdversarialLoss {
    DomainAdversarialLoss::new(move |f: &Tensor| (f.matmul(&w)? + b)?.squeeze(1))
}

#[test]
fn dann_lambda_follows_the_paper_schedule() {
    assert_eq!(dann_lambda(0.0, 10.0), 0.0);
    assert_close(
        dann_lambda(1.0, 10.0),
        2.0 / (1.0 + (-10f64).exp()) - 1.0,
        1e-15,
        "p = 1",
    );
    // 2/(1 + e^(−x)) − 1 = tanh(x/2).
    assert_close(dann_lambda(0.5, 10.0), 2.5f64.tanh(), 1e-14, "p = 0.5");
    let mut last = -1.0;
    for i in 0..=20 {
        let l = dann_lambda(i as f64 / 20.0, 10.0);
        assert!(
            l > last && (0.0..1.0).contains(&l),
            "λ must rise within [0, 1)"
        );
        last = l;
    }
}

#[test]
fn domain_loss_value_and_accuracy_match_hand_computation() {
    // w = (0.5, −1): source logits 0.5, 0.0; target logits −1, 2, −0.5.
    let w = t(&[0.5, -1.0], &[2, 1]);
    let fs = t(&[1.0, 0.0, 2.0, 1.0], &[2, 2]); // logits 0.5, 0.0
    let ft = t(&[0.0, 1.0, 4.0, 0.0, 1.0, 1.0], &[3, 2]); // logits −1, 2, −0.5
    let out = linear(w, 0.0).forward(&fs, &ft, 1.0).unwrap();
    // BCE(x, 1) = softplus(−x); BCE(x, 0) = softplus(x).
    let ls = (softplus(-0.5) + softplus(0.0)) / 2.0;
    let lt = (softplus(-1.0) + softplus(2.0) + softplus(-0.5)) / 3.0;
    assert_close(scalar(&out.loss), 0.5 * (ls + lt), 1e-12, "L_d");
    // Source: 0.5 ≥ 0 and 0.0 ≥ 0 → both called source; target: −1, −0.5 right, 2 wrong.
    assert_eq!(out.source_accuracy, 1.0);
    assert_close(out.target_accuracy, 2.0 / 3.0, 1e-15, "target accuracy");
    assert_close(
        out.domain_accuracy,
        0.5 * (1.0 + 2.0 / 3.0),
        1e-15,
        "domain accuracy",
    );
}

#[test]
fn grl_lambda_zero_sends_no_gradient_to_features() {
    // The features come out of a trunk (intermediate nodes, as in training); at λ = 0 neither
    // the features nor the trunk may receive any gradient from L_d, while the discriminator
    // still learns.
    let trunk = Var::from_tensor(&t(&[1.0, 0.5, -0.5, 1.0], &[2, 2])).unwrap();
    let w = Var::from_tensor(&t(&[0.5, -1.0], &[2, 1])).unwrap();
    let xs = Var::from_tensor(&t(&[1.0, 0.0, 2.0, 1.0], &[2, 2])).unwrap();
    let xt = Var::from_tensor(&t(&[0.0, 1.0, 4.0, 0.0], &[2, 2])).unwrap();
    let fs = xs
        .as_tensor()
        .matmul(trunk.as_tensor())
        .unwrap()
        .tanh()
        .unwrap();
    let ft = xt
        .as_tensor()
        .matmul(trunk.as_tensor())
        .unwrap()
        .tanh()
        .unwrap();
    let dann = linear(w.as_tensor().clone(), 0.1);
    for lambda in [0.0, dann_lambda(0.0, 10.0)] {
        let out = dann.forward(&fs, &ft, lambda).unwrap();
        let grads = out.loss.backward().unwrap();
        for v in [&trunk, &xs, &xt] {
            if let Some(g) = grads.get(v.as_tensor()) {
                assert!(values(g).iter().all(|x| *x == 0.0), "got {:?}", values(g));
            }
        }
        let gw = values(
            grads
                .get(w.as_tensor())
                .expect("the discriminator must still learn"),
        );
        assert!(gw.iter().any(|x| x.abs() > 1e-6), "{gw:?}");
    }
    // With λ > 0 the trunk does receive a gradient (the check above can fail).
    let out = dann.forward(&fs, &ft, 0.5).unwrap();
    let g = values(out.loss.backward().unwrap().get(trunk.as_tensor()).unwrap());
    assert!(g.iter().any(|x| x.abs() > 1e-6));
}

#[test]
fn grl_reverses_feature_gradient_times_lambda() {
    // Through the reversal, ∂L/∂features = −λ × the true derivative (finite differences).
    let w = t(&[0.7, -0.3, 0.2], &[3, 1]);
    let fs = t(&[0.1, 0.5, -0.2, 1.0, 0.0, 0.3], &[2, 3]);
    let ft = t(&[-0.4, 0.2, 0.9], &[1, 3]);
    for lambda in [1.0, 0.25] {
        let dann = linear(w.clone(), -0.1);
        let f = |x: &[Tensor]| dann.forward(&x[0], &x[1], lambda).unwrap().loss;
        let a = analytic_grads(&f, &[fs.clone(), ft.clone()]);
        let n = numeric_grads(&f, &[fs.clone(), ft.clone()], 1e-6);
        for (ak, nk) in a.iter().zip(&n) {
            for (x, y) in ak.iter().zip(nk) {
                assert_close(*x, -lambda * y, 1e-6, "−λ ∂L/∂f");
            }
        }
        assert!(n.iter().flatten().any(|g| g.abs() > 1e-3));
    }
}

#[test]
fn discriminator_gradient_matches_finite_differences() {
    let fs = t(&[0.1, 0.5, -0.2, 1.0, 0.0, 0.3], &[2, 3]);
    let ft = t(&[-0.4, 0.2, 0.9, 0.3, 0.3, -1.0, 0.0, 0.1, 0.2], &[3, 3]);
    // A small two-layer discriminator (tanh hidden layer), weights as inputs to the check.
    let w1 = t(&[0.3, -0.2, 0.5, 0.1, 0.0, 0.4], &[3, 2]);
    let w2 = t(&[0.8, -0.6], &[2, 1]);
    check_grad(
        &|x| {
            let (a, b) = (x[0].clone(), x[1].clone());
            let dann =
                DomainAdversarialLoss::new(move |f: &Tensor| f.matmul(&a)?.tanh()?.matmul(&b));
            dann.forward(&fs, &ft, 0.6).unwrap().loss
        },
        &[w1, w2],
        1e-6,
    );
}

#[test]
fn indistinguishable_features_give_chance_accuracy_and_ln2_loss() {
    let zero = DomainAdversarialLoss::new(|f: &Tensor| f.sum_keepdim(1)?.affine(0.0, 0.0));
    let fs = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let ft = t(&[5.0, 6.0], &[1, 2]);
    let out = zero.forward(&fs, &ft, 1.0).unwrap();
    assert_close(scalar(&out.loss), 2f64.ln(), 1e-12, "ln 2");
    assert_eq!(out.domain_accuracy, 0.5);
}

#[test]
fn domain_adversarial_refuses_bad_input_with_named_errors() {
    let dann = linear(t(&[1.0, 1.0], &[2, 1]), 0.0);
    let fs = t(&[1.0, 2.0], &[1, 2]);
    let err = dann
        .forward(&fs, &t(&[1.0, 2.0, 3.0], &[1, 3]), 1.0)
        .unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "target_features"),
        "{err}"
    );
    let err = dann.forward(&fs, &fs, -1.0).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "lambda", .. }),
        "{err}"
    );
    let err = dann.forward(&fs, &fs, f64::NAN).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "lambda", .. }),
        "{err}"
    );
    let empty = t(&[], &[0, 2]);
    let err = dann.forward(&empty, &fs, 1.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "source_features"),
        "{err}"
    );

    let two_logits = DomainAdversarialLoss::new(|f: &Tensor| f.clone().matmul(&f.t()?));
    let err = two_logits.forward(&fs, &fs, 1.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "discriminator output"),
        "{err}"
    );
    let w = t(&[1.0, 2.0, 3.0], &[3, 1]);
    let failing = DomainAdversarialLoss::new(move |f: &Tensor| f.matmul(&w));
    let err = failing.forward(&fs, &fs, 1.0).unwrap_err();
    assert!(
        matches!(
            err,
            LossError::Callback {
                what: "discriminator",
                ..
            }
        ),
        "{err}"
    );
}
