#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::Var;
use common::*;
use xfer_losses::{DistillationLoss, LossError, feature_closeness, kl_distillation, logit_mse};

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a * (a / b).ln()).sum()
}

#[test]
fn kl_distillation_value_matches_hand_computation() {
    // Teacher [ln 3, 0] → p = (3/4, 1/4); student [0, 0] → q = (1/2, 1/2).
    let teacher = t(&[3f64.ln(), 0.0], &[1, 2]);
    let student = t(&[0.0, 0.0], &[1, 2]);
    let got = scalar(&kl_distillation(&student, &teacher, 1.0).unwrap());
    assert_close(got, kl(&[0.75, 0.25], &[0.5, 0.5]), 1e-12, "T = 1");
    // T = 2: p = softmax([ln 3 / 2, 0]) = (√3, 1)/(1 + √3), times T² = 4.
    let s3 = 3f64.sqrt();
    let p = [s3 / (1.0 + s3), 1.0 / (1.0 + s3)];
    let got = scalar(&kl_distillation(&student, &teacher, 2.0).unwrap());
    assert_close(got, 4.0 * kl(&p, &[0.5, 0.5]), 1e-12, "T = 2 with T²");
    // Batch mean: a second, identical row changes nothing; a matching row halves it.
    let teacher2 = t(&[3f64.ln(), 0.0, 1.0, 2.0], &[2, 2]);
    let student2 = t(&[0.0, 0.0, 1.0, 2.0], &[2, 2]);
    let got = scalar(&kl_distillation(&student2, &teacher2, 1.0).unwrap());
    assert_close(
        got,
        kl(&[0.75, 0.25], &[0.5, 0.5]) / 2.0,
        1e-12,
        "batch mean",
    );
    // Zero when the student matches the teacher.
    assert!(scalar(&kl_distillation(&teacher, &teacher, 3.0).unwrap()).abs() < 1e-15);
}

#[test]
fn kl_distillation_gradient_matches_finite_differences_and_spares_the_teacher() {
    let teacher = t(&[1.0, -0.5, 0.2, 0.0, 2.0, -1.0], &[2, 3]);
    let student = t(&[0.3, 0.1, -0.4, 1.0, 0.5, 0.0], &[2, 3]);
    for temp in [1.0, 4.0] {
        check_grad(
            &|x| kl_distillation(&x[0], &teacher, temp).unwrap(),
            std::slice::from_ref(&student),
            1e-6,
        );
    }
    let tv = Var::from_tensor(&teacher).unwrap();
    let sv = Var::from_tensor(&student).unwrap();
    let grads = kl_distillation(sv.as_tensor(), tv.as_tensor(), 2.0)
        .unwrap()
        .backward()
        .unwrap();
    assert!(
        grads.get(tv.as_tensor()).is_none(),
        "the teacher received a gradient"
    );
    assert!(grads.get(sv.as_tensor()).is_some());
}

#[test]
fn logit_mse_value_and_gradient() {
    let s = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let te = t(&[1.0, 0.0, 3.0, 5.0], &[2, 2]);
    assert_close(
        scalar(&logit_mse(&s, &te).unwrap()),
        (4.0 + 1.0) / 4.0,
        1e-12,
        "mse",
    );
    check_grad(&|x| logit_mse(&x[0], &te).unwrap(), &[s], 1e-6);
}

#[test]
fn feature_closeness_value_and_gradient() {
    // Two layers, batch 2: ‖ΔF₁‖² = 1 + 4 = 5, ‖ΔF₂‖² = 9; divided by N = 2.
    let f1 = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let f1s = t(&[0.0, 2.0, 3.0, 2.0], &[2, 2]);
    let f2 = t(&[0.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 1, 3]);
    let f2s = t(&[0.0; 6], &[2, 1, 3]);
    let got = scalar(&feature_closeness(&[(&f1, &f1s), (&f2, &f2s)]).unwrap());
    assert_close(got, 7.0, 1e-12, "(1/N) Σ ‖F − F⁰‖²");
    check_grad(
        &|x| feature_closeness(&[(&x[0], &f1s), (&x[1], &f2s)]).unwrap(),
        &[
            t(&[0.2, -0.1, 0.5, 1.0], &[2, 2]),
            t(&[0.3, 0.0, -0.2, 0.1, 0.4, 0.0], &[2, 1, 3]),
        ],
        1e-6,
    );
}

#[test]
fn distillation_loss_scales_by_its_weight() {
    let teacher = t(&[3f64.ln(), 0.0], &[1, 2]);
    let student = t(&[0.0, 0.0], &[1, 2]);
    let d = DistillationLoss::kl(0.5, 2.0).unwrap();
    let want = 0.5 * scalar(&kl_distillation(&student, &teacher, 2.0).unwrap());
    assert_close(
        scalar(&d.forward(&student, &teacher).unwrap()),
        want,
        1e-12,
        "λ·KL",
    );
    let m = DistillationLoss::logit_mse(3.0).unwrap();
    let want = 3.0 * scalar(&logit_mse(&student, &teacher).unwrap());
    assert_close(
        scalar(&m.forward(&student, &teacher).unwrap()),
        want,
        1e-12,
        "λ·MSE",
    );
}

#[test]
fn distillation_refuses_bad_shapes_and_temperatures() {
    let a = t(&[0.0; 6], &[2, 3]);
    let b = t(&[0.0; 4], &[2, 2]);
    let err = kl_distillation(&a, &b, 1.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "teacher_logits"),
        "{err}"
    );
    assert!(matches!(
        kl_distillation(&a, &a, 0.0),
        Err(LossError::Argument {
            arg: "temperature",
            ..
        })
    ));
    assert!(DistillationLoss::kl(1.0, -1.0).is_err());
    let err = logit_mse(&a, &b).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "teacher_logits"),
        "{err}"
    );
    let c = t(&[0.0; 3], &[3, 1]);
    let err = feature_closeness(&[(&a, &a), (&c, &c)]).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "pairs[1].0"),
        "{err}"
    );
    assert!(feature_closeness(&[]).is_err());
}
