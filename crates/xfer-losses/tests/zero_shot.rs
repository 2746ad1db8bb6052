#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use xfer_losses::{
    Compatibility, HingeVariant, LossError, Reduction, ZeroShotHinge, attribute_bce, compatibility,
    dap_class_scores,
};
use xfer_ops::SeededRng;

/// k = 1. Row 0: one violator (class 1, the hardest). Row 1: two violators, classes 1
/// (hardest) and 2. Row 2: every margin met.
fn case() -> (Tensor, Tensor) {
    let scores = t(
        &[
            2.0, 1.5, 0.2, -1.0, //
            0.0, 3.0, 2.5, 2.9, //
            5.0, 0.0, 1.0, 2.0,
        ],
        &[3, 4],
    );
    (scores, labels(&[0, 3, 0]))
}

#[test]
fn compatibility_scores_dot_and_cosine() {
    let x = t(&[3.0, 4.0, 0.0, 0.0], &[2, 2]);
    let g = t(&[1.0, 0.0, 0.0, 2.0, 1.0, 1.0], &[3, 2]);
    let dot = values(&compatibility(&x, &g, Compatibility::Dot).unwrap());
    assert_all_close(&dot, &[3.0, 8.0, 7.0, 0.0, 0.0, 0.0], 1e-12, "dot");
    let cos = values(&compatibility(&x, &g, Compatibility::Cosine).unwrap());
    let r2 = 2f64.sqrt();
    // A zero input scores 0 against every class (no NaN).
    assert_all_close(
        &cos,
        &[0.6, 0.8, 7.0 / (5.0 * r2), 0.0, 0.0, 0.0],
        1e-12,
        "cosine",
    );
    let err = compatibility(&x, &t(&[0.0; 3], &[1, 3]), Compatibility::Dot).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "classes"),
        "{err}"
    );
}

#[test]
fn hinge_values_match_hand_computation_for_every_variant() {
    let (s, y) = case();
    let lecture = ZeroShotHinge::new(1.0).unwrap();
    // Row 0: 1 − 2 + 1.5 = 0.5; row 1: 1 − 2.9 + 3 = 1.1; row 2: 0.
    assert_close(
        scalar(&lecture.forward(&s, &y).unwrap()),
        1.6 / 3.0,
        1e-12,
        "lecture mean",
    );
    let sum = lecture.with_reduction(Reduction::Sum);
    assert_close(
        scalar(&sum.forward(&s, &y).unwrap()),
        1.6,
        1e-12,
        "lecture sum",
    );
    let per = lecture.with_reduction(Reduction::None);
    assert_all_close(
        &values(&per.forward(&s, &y).unwrap()),
        &[0.5, 1.1, 0.0],
        1e-12,
        "per row",
    );
    // DeViSE: row 1 also pays 1 − 2.9 + 2.5 = 0.6 for class 2.
    let devise = lecture.with_variant(HingeVariant::AllViolators);
    assert_close(
        scalar(&devise.forward(&s, &y).unwrap()),
        (0.5 + 1.7) / 3.0,
        1e-12,
        "DeViSE",
    );
    // ALE: row 0 has r = 1 (weight 1); row 1 has r = 2 (weight (1 + 1/2)/2 = 0.75).
    let ale = lecture.with_variant(HingeVariant::RankWeighted);
    assert_close(
        scalar(&ale.forward(&s, &y).unwrap()),
        (0.5 + 0.75 * 1.7) / 3.0,
        1e-12,
        "ALE",
    );
}

#[test]
fn hinge_is_zero_once_every_margin_is_met() {
    // Each row's own class beats every other class by at least k = 1 (row 1 exactly by k).
    let s = t(&[3.0, 1.0, 0.5, 0.0, 2.0, 1.0, -1.0, -2.0, 4.0], &[3, 3]);
    let y = labels(&[0, 1, 2]);
    for variant in [
        HingeVariant::HardestNegative,
        HingeVariant::AllViolators,
        HingeVariant::RankWeighted,
    ] {
        let h = ZeroShotHinge::new(1.0).unwrap().with_variant(variant);
        let g = analytic_grads(&|x| h.forward(&x[0], &y).unwrap(), std::slice::from_ref(&s));
        assert_eq!(scalar(&h.forward(&s, &y).unwrap()), 0.0, "{variant:?}");
        assert!(
            g[0].iter().all(|v| *v == 0.0),
            "{variant:?} gradient {:?}",
            g[0]
        );
        // One step inside the margin and the loss is back.
        let h2 = ZeroShotHinge::new(1.5).unwrap().with_variant(variant);
        assert!(scalar(&h2.forward(&s, &y).unwrap()) > 0.0, "{variant:?}");
    }
}

#[test]
fn hinge_gradient_touches_only_positive_and_hardest_negative() {
    let (s, y) = case();
    let h = ZeroShotHinge::new(1.0).unwrap();
    let g = analytic_grads(&|x| h.forward(&x[0], &y).unwrap(), std::slice::from_ref(&s));
    let third = 1.0 / 3.0;
    #[rustfmt::skip]
    let want = [
        -third, third, 0.0, 0.0,   // row 0: positive 0, hardest negative 1
        0.0, third, 0.0, -third,   // row 1: positive 3, hardest negative 1 (class 2 violates too, but is not the hardest)
        0.0, 0.0, 0.0, 0.0,        // row 2: margins met
    ];
    assert_all_close(&g[0], &want, 1e-12, "∂ℓ/∂S");
    // DeViSE, by contrast, charges class 2 of row 1 as well.
    let d = h.with_variant(HingeVariant::AllViolators);
    let g = analytic_grads(&|x| d.forward(&x[0], &y).unwrap(), std::slice::from_ref(&s));
    assert_close(g[0][6], third, 1e-12, "DeViSE touches every violator");
    assert_close(g[0][7], -2.0 * third, 1e-12, "DeViSE positive, twice");
}

#[test]
fn hinge_gradient_through_compatibility_matches_finite_differences() {
    let mut rng = SeededRng::new(5);
    let x = rng
        .normal(&[4, 3], 0.0, 1.0, DType::F64, &Device::Cpu)
        .unwrap();
    let g = rng
        .normal(&[5, 3], 0.0, 1.0, DType::F64, &Device::Cpu)
        .unwrap();
    let y = labels(&[0, 4, 2, 2]);
    for variant in [
        HingeVariant::HardestNegative,
        HingeVariant::AllViolators,
        HingeVariant::RankWeighted,
    ] {
        for kind in [Compatibility::Dot, Compatibility::Cosine] {
            let h = ZeroShotHinge::new(2.0).unwrap().with_variant(variant);
            check_grad(
                &|v| {
                    let s = compatibility(&v[0], &v[1], kind).unwrap();
                    h.forward(&s, &y).unwrap()
                },
                &[x.clone(), g.clone()],
                1e-5,
            );
        }
    }
}

#[test]
fn hinge_refuses_bad_labels_and_single_class() {
    let (s, _) = case();
    let h = ZeroShotHinge::new(1.0).unwrap();
    match h.forward(&s, &labels(&[0, 4, 1])) {
        Err(LossError::LabelOutOfRange {
            tensor,
            index,
            label,
            num_classes,
            ..
        }) => assert_eq!(
            (tensor.as_str(), index, label, num_classes),
            ("labels", 1, 4, 4)
        ),
        other => panic!("expected a label-range error, got {other:?}"),
    }
    let err = h
        .forward(&t(&[1.0, 2.0], &[2, 1]), &labels(&[0, 0]))
        .unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "scores"),
        "{err}"
    );
    assert!(ZeroShotHinge::new(-1.0).is_err());
}

#[test]
fn attribute_bce_value_and_gradient() {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let bce = |x: f64, a: f64| -(a * sig(x).ln() + (1.0 - a) * (1.0 - sig(x)).ln());
    let attrs = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]];
    let z = [[0.5, -1.0, 2.0], [-0.3, 0.8, 0.0]];
    let y = [1usize, 2];
    let mut want = 0.0;
    for (n, row) in z.iter().enumerate() {
        for (a, &x) in row.iter().enumerate() {
            want += bce(x, attrs[y[n]][a]);
        }
    }
    want /= 6.0;
    let class_attrs = t(&attrs.concat(), &[3, 3]);
    let logits = t(&z.concat(), &[2, 3]);
    let yl = labels(&[1, 2]);
    assert_close(
        scalar(&attribute_bce(&logits, &class_attrs, &yl).unwrap()),
        want,
        1e-12,
        "attribute BCE",
    );
    check_grad(
        &|v| attribute_bce(&v[0], &class_attrs, &yl).unwrap(),
        &[logits],
        1e-6,
    );
    let err = attribute_bce(&t(&[0.0; 6], &[2, 3]), &class_attrs, &labels(&[0, 3])).unwrap_err();
    assert!(
        matches!(err, LossError::LabelOutOfRange { index: 1, .. }),
        "{err}"
    );
    let bad = t(&[2.0; 9], &[3, 3]);
    assert!(attribute_bce(&t(&[0.0; 6], &[2, 3]), &bad, &yl).is_err());
}

#[test]
fn dap_class_scores_pick_the_class_whose_attributes_fit() {
    let attrs = t(&[1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0], &[3, 3]);
    // Confident predictions of (0, 1, 1) → class 1; of (0, 0, 0) → class 2.
    let z = t(&[-4.0, 5.0, 3.0, -2.0, -3.0, -6.0], &[2, 3]);
    let s = dap_class_scores(&z, &attrs).unwrap();
    let v = values(&s);
    // log σ(x) = −(max(−x, 0) + log(1 + e^(−|x|))).
    let log_sig = |x: f64| -((-x).max(0.0) + (-(x.abs())).exp().ln_1p());
    let zz = [[-4.0, 5.0, 3.0], [-2.0, -3.0, -6.0]];
    let aa = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]];
    for n in 0..2 {
        for c in 0..3 {
            let want: f64 = (0..3)
                .map(|a| aa[c][a] * log_sig(zz[n][a]) + (1.0 - aa[c][a]) * log_sig(-zz[n][a]))
                .sum();
            assert_close(v[n * 3 + c], want, 1e-12, "DAP score");
        }
    }
    let best: Vec<usize> = (0..2)
        .map(|n| {
            (0..3)
                .max_by(|&a, &b| v[n * 3 + a].total_cmp(&v[n * 3 + b]))
                .unwrap()
        })
        .collect();
    assert_eq!(best, vec![1, 2]);
}
