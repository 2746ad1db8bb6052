#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{DType, Tensor, Var};
use common::*;
use xfer_losses::{
    CrossEntropyLoss, LossError, Reduction, bce_with_logits, cross_entropy, prediction_entropy,
};

fn lse(row: &[f64]) -> f64 {
    row.iter().map(|x| x.exp()).sum::<f64>().ln()
}

#[test]
fn cross_entropy_value_matches_hand_computation() {
    // Row 0: −log softmax([1,2,3])₂ = log(1 + e⁻¹ + e⁻²); row 1: −log softmax([0,0])₀ = ln 2 …
    // padded to 3 classes as [0,0,−∞-ish]: use [0, 0, -30] so it is ln(2 + e⁻³⁰).
    let logits = t(&[1.0, 2.0, 3.0, 0.0, 0.0, -30.0], &[2, 3]);
    let y = labels(&[2, 0]);
    let got = scalar(&cross_entropy(&logits, &y).unwrap());
    let r0 = (1.0 + (-1f64).exp() + (-2f64).exp()).ln();
    let r1 = (2.0 + (-30f64).exp()).ln();
    assert_close(got, (r0 + r1) / 2.0, 1e-12, "mean cross-entropy");
}

#[test]
fn label_smoothing_value_matches_hand_computation() {
    // logits [2, 0, 0], label 0, ε = 0.3, C = 3:
    // q = (1 − ε + ε/3, ε/3, ε/3); ℓ = −Σ q_c log p_c.
    let eps = 0.3;
    let logits = t(&[2.0, 0.0, 0.0], &[1, 3]);
    let z = 2f64.exp() + 2.0;
    let (lp0, lp1) = (2.0 - z.ln(), -z.ln());
    let want = -((1.0 - eps + eps / 3.0) * lp0 + 2.0 * (eps / 3.0) * lp1);
    let ce = CrossEntropyLoss::new().with_label_smoothing(eps).unwrap();
    let got = scalar(&ce.forward(&logits, &labels(&[0])).unwrap());
    assert_close(got, want, 1e-12, "smoothed cross-entropy");
    // ε = 0 is plain cross-entropy.
    let plain = CrossEntropyLoss::new().with_label_smoothing(0.0).unwrap();
    assert_close(
        scalar(&plain.forward(&logits, &labels(&[0])).unwrap()),
        -lp0,
        1e-12,
        "ε = 0",
    );
}

#[test]
fn class_weight_value_is_the_weighted_mean_over_the_weighted_count() {
    let rows = [[0.5, -1.0], [2.0, 1.0], [0.0, 3.0]];
    let logits = t(&rows.concat(), &[3, 2]);
    let y = [0usize, 1, 1];
    let w = [2.0, 0.5];
    let nll: Vec<f64> = rows.iter().zip(&y).map(|(r, &c)| lse(r) - r[c]).collect();
    let want = (w[0] * nll[0] + w[1] * nll[1] + w[1] * nll[2]) / (w[0] + w[1] + w[1]);
    let ce = CrossEntropyLoss::new().with_class_weights(w).unwrap();
    let got = scalar(&ce.forward(&logits, &labels(&[0, 1, 1])).unwrap());
    assert_close(got, want, 1e-12, "class-weighted cross-entropy");

    let sum = CrossEntropyLoss::new()
        .with_class_weights(w)
        .unwrap()
        .with_reduction(Reduction::Sum);
    let got = scalar(&sum.forward(&logits, &labels(&[0, 1, 1])).unwrap());
    assert_close(got, w[0] * nll[0] + w[1] * (nll[1] + nll[2]), 1e-12, "sum");

    let none = CrossEntropyLoss::new().with_reduction(Reduction::None);
    let got = values(&none.forward(&logits, &labels(&[0, 1, 1])).unwrap());
    assert_all_close(&got, &nll, 1e-12, "per-example");
}

#[test]
fn smoothing_with_class_weights_follows_pytorch() {
    // PyTorch: (1−ε)·Σᵢ w_{yᵢ} nllᵢ / Σᵢ w_{yᵢ} + (ε/C)·Σᵢ Σ_c w_c (−log p_ic) / Σᵢ w_{yᵢ}.
    let rows = [[0.3, -0.2, 1.1], [-1.0, 0.4, 0.0]];
    let y = [2usize, 0];
    let w = [0.7, 1.3, 2.0];
    let eps = 0.2;
    let logp: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().map(|x| x - lse(r)).collect())
        .collect();
    let wsum: f64 = y.iter().map(|&c| w[c]).sum();
    let nll: f64 = y.iter().enumerate().map(|(i, &c)| -w[c] * logp[i][c]).sum();
    let smooth: f64 = logp
        .iter()
        .map(|r| r.iter().zip(&w).map(|(l, wc)| -wc * l).sum::<f64>())
        .sum();
    let want = (1.0 - eps) * nll / wsum + eps / 3.0 * smooth / wsum;
    let ce = CrossEntropyLoss::new()
        .with_label_smoothing(eps)
        .unwrap()
        .with_class_weights(w)
        .unwrap();
    let got = scalar(
        &ce.forward(&t(&rows.concat(), &[2, 3]), &labels(&[2, 0]))
            .unwrap(),
    );
    assert_close(got, want, 1e-12, "smoothed, weighted");
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let ce = CrossEntropyLoss::new()
        .with_label_smoothing(0.1)
        .unwrap()
        .with_class_weights([1.0, 0.5, 2.0, 1.5])
        .unwrap();
    let y = labels(&[3, 0, 2]);
    let logits = t(
        &[
            0.2, -1.0, 0.5, 1.5, 2.0, 0.1, -0.3, 0.0, -0.7, 0.8, 1.2, -2.0,
        ],
        &[3, 4],
    );
    check_grad(&|x| ce.forward(&x[0], &y).unwrap(), &[logits], 1e-6);
}

#[test]
fn masked_cross_entropy_ignores_placeholder_labels() {
    let logits = t(&[1.0, 0.0, 0.0, 2.0, -1.0, 1.0], &[3, 2]);
    // Row 1 lacks a label (−1, out of range) and is masked out.
    let y = labels(&[0, -1, 1]);
    let mask = t(&[1.0, 0.0, 1.0], &[3]);
    let ce = CrossEntropyLoss::new();
    let got = scalar(&ce.forward_masked(&logits, &y, &mask).unwrap());
    let want = ((lse(&[1.0, 0.0]) - 1.0) + (lse(&[-1.0, 1.0]) - 1.0)) / 2.0;
    assert_close(got, want, 1e-12, "masked mean");
    // Unmasked, the placeholder is refused.
    assert!(matches!(
        ce.forward(&logits, &y),
        Err(LossError::LabelOutOfRange {
            index: 1,
            label: -1,
            ..
        })
    ));
    // No example kept: 0, and backward still runs.
    let v = Var::from_tensor(&logits).unwrap();
    let none = ce
        .forward_masked(v.as_tensor(), &y, &t(&[0.0, 0.0, 0.0], &[3]))
        .unwrap();
    assert_eq!(scalar(&none), 0.0);
    none.backward().unwrap();
}

#[test]
fn cross_entropy_checks_label_range_before_gather() {
    let logits = t(&[0.0; 6], &[2, 3]);
    match cross_entropy(&logits, &labels(&[0, 3])) {
        Err(LossError::LabelOutOfRange {
            tensor,
            index,
            label,
            num_classes,
            ..
        }) => {
            assert_eq!(
                (tensor.as_str(), index, label, num_classes),
                ("targets", 1, 3, 3)
            );
        }
        other => panic!("expected a label-range error, got {other:?}"),
    }
    let u32_labels = Tensor::new(&[7u32, 0], &candle_core::Device::Cpu).unwrap();
    assert!(matches!(
        cross_entropy(&logits, &u32_labels),
        Err(LossError::LabelOutOfRange {
            index: 0,
            label: 7,
            ..
        })
    ));
}

#[test]
fn cross_entropy_names_bad_shapes_and_dtypes() {
    let logits = t(&[0.0; 6], &[2, 3]);
    let err = cross_entropy(&t(&[0.0; 3], &[3]), &labels(&[0])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "logits"),
        "{err}"
    );
    let err = cross_entropy(&logits, &labels(&[0, 1, 2])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "targets"),
        "{err}"
    );
    assert!(err.to_string().contains("targets"));
    let err = cross_entropy(&logits, &t(&[0.0, 1.0], &[2])).unwrap_err();
    assert!(
        matches!(&err, LossError::DType { tensor, .. } if tensor == "targets"),
        "{err}"
    );
    let err = cross_entropy(&labels(&[0, 1]).reshape((1, 2)).unwrap(), &labels(&[0])).unwrap_err();
    assert!(
        matches!(&err, LossError::DType { tensor, .. } if tensor == "logits"),
        "{err}"
    );
    let err = CrossEntropyLoss::new()
        .with_class_weights([1.0, 2.0])
        .unwrap()
        .forward(&logits, &labels(&[0, 1]))
        .unwrap_err();
    assert!(matches!(
        err,
        LossError::Argument {
            arg: "class_weights",
            ..
        }
    ));
    assert!(CrossEntropyLoss::new().with_label_smoothing(1.5).is_err());
    assert!(
        CrossEntropyLoss::new()
            .with_class_weights([1.0, -1.0])
            .is_err()
    );
    let empty = Tensor::zeros((0, 3), DType::F64, &candle_core::Device::Cpu).unwrap();
    assert!(cross_entropy(&empty, &labels(&[])).is_err());
}

#[test]
fn cross_entropy_works_in_f32() {
    let logits = t(&[1.0, 2.0, 3.0], &[1, 3]).to_dtype(DType::F32).unwrap();
    let got = scalar(&cross_entropy(&logits, &labels(&[2])).unwrap());
    assert_close(got, (1.0 + (-1f64).exp() + (-2f64).exp()).ln(), 1e-6, "f32");
}

#[test]
fn prediction_entropy_value_matches_hand_computation() {
    // Row 0: p = (1/4, 3/4); row 1: uniform over 2 → ln 2.
    let logits = t(&[0.0, 3f64.ln(), 5.0, 5.0], &[2, 2]);
    let h0 = -(0.25 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
    let got = values(&prediction_entropy(&logits, Reduction::None).unwrap());
    assert_all_close(&got, &[h0, 2f64.ln()], 1e-12, "entropy");
    let mean = scalar(&prediction_entropy(&logits, Reduction::Mean).unwrap());
    assert_close(mean, (h0 + 2f64.ln()) / 2.0, 1e-12, "mean entropy");
    // A confident prediction has entropy near zero, and no NaN for huge logits.
    let sure =
        scalar(&prediction_entropy(&t(&[1000.0, -1000.0], &[1, 2]), Reduction::Mean).unwrap());
    assert!(sure.is_finite() && sure.abs() < 1e-12, "{sure}");
}

#[test]
fn prediction_entropy_gradient_matches_finite_differences() {
    let logits = t(&[0.3, -0.5, 1.0, 2.0, 0.0, -1.0], &[2, 3]);
    check_grad(
        &|x| prediction_entropy(&x[0], Reduction::Mean).unwrap(),
        &[logits],
        1e-6,
    );
}

#[test]
fn bce_with_logits_value_matches_hand_computation() {
    // ℓ(x, y) = −[y log σ(x) + (1−y) log(1−σ(x))].
    let xs = [0.0, 1.5, -2.0, 0.7];
    let ys = [1.0, 0.0, 0.25, 1.0];
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want: Vec<f64> = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| -(y * sig(x).ln() + (1.0 - y) * (1.0 - sig(x)).ln()))
        .collect();
    let got = values(&bce_with_logits(&t(&xs, &[4]), &t(&ys, &[4]), Reduction::None).unwrap());
    assert_all_close(&got, &want, 1e-12, "bce");
    assert_close(want[0], 2f64.ln(), 1e-15, "x = 0 gives ln 2");
}

#[test]
fn bce_with_logits_is_stable_for_large_logits() {
    let xs = [1000.0, -1000.0, 1000.0, -1000.0, 80.0];
    let ys = [1.0, 1.0, 0.0, 0.0, 0.0];
    for dtype in [DType::F64, DType::F32] {
        let v = Var::from_tensor(&t(&xs, &[5]).to_dtype(dtype).unwrap()).unwrap();
        let y = t(&ys, &[5]).to_dtype(dtype).unwrap();
        let per = bce_with_logits(v.as_tensor(), &y, Reduction::None).unwrap();
        assert_all_close(
            &values(&per),
            &[0.0, 1000.0, 1000.0, 0.0, 80.0],
            1e-6,
            "large logits",
        );
        let loss = bce_with_logits(v.as_tensor(), &y, Reduction::Sum).unwrap();
        let g = values(loss.backward().unwrap().get(v.as_tensor()).unwrap());
        // ∂ℓ/∂x = σ(x) − y.
        assert_all_close(&g, &[0.0, -1.0, 1.0, 0.0, 1.0], 1e-6, "gradient σ(x) − y");
    }
}

#[test]
fn bce_with_logits_gradient_matches_finite_differences() {
    let y = t(&[1.0, 0.0, 0.3, 0.9, 0.5, 0.0], &[2, 3]);
    let x = t(&[0.0, 1.2, -0.4, 2.5, -3.0, 0.05], &[2, 3]);
    check_grad(
        &|v| bce_with_logits(&v[0], &y, Reduction::Mean).unwrap(),
        &[x],
        1e-6,
    );
}

#[test]
fn bce_with_logits_refuses_targets_outside_unit_interval_and_shape_mismatch() {
    let x = t(&[0.0, 1.0], &[2]);
    let err = bce_with_logits(&x, &t(&[0.0, 2.0], &[2]), Reduction::Mean).unwrap_err();
    assert!(
        matches!(err, LossError::Argument { arg: "targets", .. }),
        "{err}"
    );
    let err = bce_with_logits(&x, &t(&[0.0, 1.0, 1.0], &[3]), Reduction::Mean).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "targets"),
        "{err}"
    );
    let err = bce_with_logits(
        &x,
        &t(&[0.0, 1.0], &[2]).to_dtype(DType::F32).unwrap(),
        Reduction::Mean,
    )
    .unwrap_err();
    assert!(
        matches!(&err, LossError::DType { tensor, .. } if tensor == "targets"),
        "{err}"
    );
}
