//! CDAN / CDAN+E, MCC and the pseudo-label loss: values against hand computation and
//! finite-difference gradients.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use xfer_losses::{
    ConditionalDomainAdversarialLoss, ConditioningMap, LossError, RandomizedMultilinearMap,
    entropy_weights, minimum_class_confusion, minimum_class_confusion_weighted, multilinear_map,
    pseudo_label_loss,
};
use xfer_ops::SeededRng;

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|v| v * v.ln())
        .sum::<f64>()
}

#[test]
fn multilinear_map_is_the_flattened_outer_product_g_then_f() {
    let f = t(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3]);
    let g = t(&[0.25, 0.75, 1.0, 0.0], &[2, 2]);
    let h = multilinear_map(&f, &g).unwrap();
    assert_eq!(h.dims(), &[2, 6]);
    assert_all_close(
        &values(&h),
        &[
            0.25, 0.5, 0.75, 0.75, 1.5, 2.25, // row 0: 0.25·f, 0.75·f
            -1.0, 0.5, 0.0, 0.0, 0.0, 0.0, // row 1: 1·f, 0·f
        ],
        1e-15,
        "T⊗",
    );
    let err = multilinear_map(&f, &t(&[1.0, 0.0], &[1, 2])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "predictions"),
        "{err}"
    );
}

#[test]
fn randomized_map_matches_its_formula_and_repeats_with_the_seed() {
    let (d, c, out) = (3, 2, 4);
    let map = |seed| {
        RandomizedMultilinearMap::new(
            d,
            c,
            out,
            &mut SeededRng::new(seed),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap()
    };
    let f = t(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3]);
    let g = t(&[0.25, 0.75, 1.0, 0.0], &[2, 2]);
    let a = values(&map(5).forward(&f, &g).unwrap());
    assert_eq!(a, values(&map(5).forward(&f, &g).unwrap()));
    assert_ne!(a, values(&map(6).forward(&f, &g).unwrap()));
    // The same draws, by hand: R_f then R_g from one generator.
    let mut rng = SeededRng::new(5);
    let rf: Vec<f64> = (0..d * out).map(|_| rng.normal01()).collect();
    let rg: Vec<f64> = (0..c * out).map(|_| rng.normal01()).collect();
    let (fv, gv) = (values(&f), values(&g));
    for n in 0..2 {
        for k in 0..out {
            let fr: f64 = (0..d).map(|j| fv[n * d + j] * rf[j * out + k]).sum();
            let gr: f64 = (0..c).map(|j| gv[n * c + j] * rg[j * out + k]).sum();
            assert_close(a[n * out + k], fr * gr / 2.0, 1e-12, "T⊙");
        }
    }
    // The inner products of T⊙ approximate those of T⊗ (unbiased): a wide map is close.
    let wide = RandomizedMultilinearMap::new(
        d,
        c,
        20_000,
        &mut SeededRng::new(1),
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let r = wide.forward(&f, &g).unwrap();
    let full = multilinear_map(&f, &g).unwrap();
    let ip = |x: &Tensor| values(&x.matmul(&x.t().unwrap()).unwrap());
    let (ir, ifull) = (ip(&r), ip(&full));
    for (x, y) in ir.iter().zip(&ifull) {
        assert!((x - y).abs() < 0.1 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn conditioning_map_switches_to_randomized_above_the_limit() {
    let mut rng = SeededRng::new(0);
    let small =
        ConditioningMap::auto(128, 10, 4096, 1024, &mut rng, DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(small, ConditioningMap::Full));
    assert_eq!(small.output_dim(128, 10), 1280);
    let big =
        ConditioningMap::auto(512, 10, 4096, 1024, &mut rng, DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(big, ConditioningMap::Randomized(_)));
    assert_eq!(big.output_dim(512, 10), 1024);
}

#[test]
fn entropy_weights_are_one_plus_exp_minus_entropy_normalised_to_n() {
    let p = [[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]];
    let raw: Vec<f64> = p.iter().map(|r| 1.0 + (-entropy(r)).exp()).collect();
    let s: f64 = raw.iter().sum();
    let want: Vec<f64> = raw.iter().map(|w| 3.0 * w / s).collect();
    let got = values(&entropy_weights(&t(&p.concat(), &[3, 2])).unwrap());
    assert_all_close(&got, &want, 1e-12, "w");
    // A certain prediction weighs 2 raw, a uniform pair 1.5.
    assert_close(raw[0], 2.0, 1e-15, "one-hot");
    assert_close(raw[1], 1.5, 1e-15, "uniform");
}

/// A linear discriminator `h ↦ h·w` over the map's output.
fn linear_disc(w: Tensor) -> impl Fn(&Tensor) -> candle_core::Result<Tensor> {
    move |h: &Tensor| h.matmul(&w)?.squeeze(1)
}

#[test]
fn cdan_and_cdan_e_values_match_hand_computation() {
    // D = 1, C = 2: T⊗(f, g) = (g₁ f, g₂ f); discriminator w = (1, −2).
    let w = t(&[1.0, -2.0], &[2, 1]);
    let fs = t(&[1.0, 2.0], &[2, 1]);
    let zs = t(&[0.0, 0.0, 2.0, 0.0], &[2, 2]);
    let ft = t(&[-1.0], &[1, 1]);
    let zt = t(&[0.0, 3.0], &[1, 2]);
    let rows = [
        (1.0, [0.0, 0.0], 1.0),
        (2.0, [2.0, 0.0], 1.0),
        (-1.0, [0.0, 3.0], 0.0),
    ];
    let mut per = Vec::new();
    let mut raw_w = Vec::new();
    let mut logits = Vec::new();
    for (f, z, d) in rows {
        let g = softmax(&z);
        let logit = g[0] * f * 1.0 + g[1] * f * -2.0;
        logits.push(logit);
        per.push(if d == 1.0 {
            softplus(-logit)
        } else {
            softplus(logit)
        });
        raw_w.push(1.0 + (-entropy(&g)).exp());
    }
    let plain: f64 = per.iter().sum::<f64>() / 3.0;
    let ws: f64 = raw_w.iter().sum();
    let weighted: f64 = per
        .iter()
        .zip(&raw_w)
        .map(|(l, w)| l * 3.0 * w / ws)
        .sum::<f64>()
        / 3.0;
    for (entropy_cond, want) in [(false, plain), (true, weighted)] {
        let loss = ConditionalDomainAdversarialLoss::new(
            linear_disc(w.clone()),
            ConditioningMap::Full,
            entropy_cond,
        );
        assert_eq!(loss.entropy_conditioning(), entropy_cond);
        let out = loss.forward(&fs, &zs, &ft, &zt, 1.0).unwrap();
        assert_close(scalar(&out.loss), want, 1e-12, "L");
        let src_right = logits[..2].iter().filter(|&&l| l >= 0.0).count() as f64 / 2.0;
        let tgt_right = if logits[2] < 0.0 { 1.0 } else { 0.0 };
        assert_close(out.source_accuracy, src_right, 1e-15, "source acc");
        assert_close(out.target_accuracy, tgt_right, 1e-15, "target acc");
    }
}

#[test]
fn cdan_gradient_is_reversed_into_features_and_plain_into_the_discriminator() {
    let lambda = 0.7;
    let fs = t(&[0.3, -0.2, 1.1, 0.4, 0.0, -0.5], &[3, 2]);
    let zs = t(&[0.2, -0.1, 0.3, 1.0, 0.5, -0.4, 0.0, 0.2, 0.9], &[3, 3]);
    let ft = t(&[0.6, 0.1, -0.7, 0.8], &[2, 2]);
    let zt = t(&[0.4, 0.4, -0.3, -1.0, 0.1, 0.6], &[2, 3]);
    let w = t(&[0.5, -0.3, 0.2, 0.1, -0.6, 0.4], &[6, 1]);
    for entropy_cond in [false, true] {
        // The loss as a function of (features_s, features_t, w), logits fixed.
        let f = |x: &[Tensor]| {
            ConditionalDomainAdversarialLoss::new(
                linear_disc(x[2].clone()),
                ConditioningMap::Full,
                entropy_cond,
            )
            .forward(&x[0], &zs, &x[1], &zt, lambda)
            .unwrap()
            .loss
        };
        let inputs = [fs.clone(), ft.clone(), w.clone()];
        let analytic = analytic_grads(&f, &inputs);
        let numeric = numeric_grads(&f, &inputs, 1e-6);
        for k in 0..3 {
            let sign = if k < 2 { -lambda } else { 1.0 };
            let want: Vec<f64> = numeric[k].iter().map(|g| sign * g).collect();
            assert_all_close(&analytic[k], &want, 1e-6, &format!("input {k}"));
        }
        assert!(numeric.iter().flatten().any(|g| g.abs() > 1e-6));
    }
    // The logits are detached: no gradient reaches them.
    let zv = Var::from_tensor(&zs).unwrap();
    let loss =
        ConditionalDomainAdversarialLoss::new(linear_disc(w.clone()), ConditioningMap::Full, true)
            .forward(&fs, zv.as_tensor(), &ft, &zt, lambda)
            .unwrap()
            .loss;
    let grads = loss.backward().unwrap();
    assert!(grads.get(zv.as_tensor()).is_none());
}

#[test]
fn randomized_map_gradient_matches_finite_differences() {
    let map =
        RandomizedMultilinearMap::new(2, 3, 5, &mut SeededRng::new(2), DType::F64, &Device::Cpu)
            .unwrap();
    let f = t(&[0.3, -0.2, 1.1, 0.4], &[2, 2]);
    let g = t(&[0.2, 0.3, 0.5, 0.6, 0.1, 0.3], &[2, 3]);
    check_grad(
        &|x| {
            map.forward(&x[0], &x[1])
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        },
        &[f.clone(), g.clone()],
        1e-6,
    );
    check_grad(
        &|x| {
            multilinear_map(&x[0], &x[1])
                .unwrap()
                .sin()
                .unwrap()
                .sum_all()
                .unwrap()
        },
        &[f, g],
        1e-6,
    );
}

#[test]
fn cdan_refuses_mismatched_logits_and_negative_lambda() {
    let loss = ConditionalDomainAdversarialLoss::new(
        linear_disc(t(&[1.0, 1.0], &[2, 1])),
        ConditioningMap::Full,
        false,
    );
    let f = t(&[1.0, 2.0], &[2, 1]);
    let z = t(&[0.0, 1.0, 1.0, 0.0], &[2, 2]);
    let z3 = t(&[0.0; 6], &[2, 3]);
    let err = loss.forward(&f, &z, &f, &z3, 1.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "target_logits"),
        "{err}"
    );
    let err = loss.forward(&f, &z, &f, &z, -1.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Argument { arg, .. } if *arg == "lambda"),
        "{err}"
    );
}

/// MCC by hand, from the paper's formulas.
fn mcc_by_hand(z: &[Vec<f64>], temp: f64, weights: Option<&[f64]>) -> f64 {
    let n = z.len();
    let c = z[0].len();
    let p: Vec<Vec<f64>> = z
        .iter()
        .map(|r| softmax(&r.iter().map(|v| v / temp).collect::<Vec<_>>()))
        .collect();
    let w: Vec<f64> = match weights {
        Some(w) => w.to_vec(),
        None => {
            let raw: Vec<f64> = p.iter().map(|r| 1.0 + (-entropy(r)).exp()).collect();
            let s: f64 = raw.iter().sum();
            raw.iter().map(|v| n as f64 * v / s).collect()
        }
    };
    let mut conf = vec![vec![0.0; c]; c];
    for i in 0..n {
        for j in 0..c {
            for k in 0..c {
                conf[j][k] += w[i] * p[i][j] * p[i][k];
            }
        }
    }
    let mut off = 0.0;
    for (j, row) in conf.iter().enumerate() {
        let total: f64 = row.iter().sum();
        for (k, v) in row.iter().enumerate() {
            if k != j {
                off += v / total;
            }
        }
    }
    off / c as f64
}

#[test]
fn mcc_value_matches_hand_computation() {
    let z = vec![
        vec![2.0, 0.0, -1.0],
        vec![0.5, 0.4, 0.1],
        vec![-1.0, 3.0, 0.0],
        vec![0.0, 0.0, 4.0],
    ];
    let zt = t(&z.concat(), &[4, 3]);
    for temp in [1.0, 2.5] {
        let got = scalar(&minimum_class_confusion(&zt, temp).unwrap());
        assert_close(got, mcc_by_hand(&z, temp, None), 1e-12, "MCC");
    }
    let w = [0.5, 1.0, 1.5, 1.0];
    let got = scalar(&minimum_class_confusion_weighted(&zt, 2.5, &t(&w, &[4])).unwrap());
    assert_close(got, mcc_by_hand(&z, 2.5, Some(&w)), 1e-12, "weighted MCC");
    // Two certain examples of different classes (two classes): no confusion at all.
    let certain = t(&[60.0, -60.0, -60.0, 60.0], &[2, 2]);
    assert!(scalar(&minimum_class_confusion(&certain, 1.0).unwrap()) < 1e-12);
    // Uniform predictions: every row of C̃ is uniform, L = (C − 1)/C.
    let flat = t(&[0.0; 6], &[2, 3]);
    assert_close(
        scalar(&minimum_class_confusion(&flat, 2.5).unwrap()),
        2.0 / 3.0,
        1e-12,
        "uniform",
    );
}

#[test]
fn mcc_gradient_matches_finite_differences() {
    let z = t(
        &[
            0.2, -0.1, 0.3, 1.0, 0.5, -0.4, 0.0, 0.2, 0.9, -0.3, 0.7, 0.1,
        ],
        &[4, 3],
    );
    let w = t(&[0.8, 1.2, 1.1, 0.9], &[4]);
    check_grad(
        &|x| minimum_class_confusion_weighted(&x[0], 2.5, &w).unwrap(),
        &[z],
        1e-6,
    );
}

#[test]
fn mcc_refuses_bad_temperature_and_weights() {
    let z = t(&[0.0; 6], &[2, 3]);
    let err = minimum_class_confusion(&z, 0.0).unwrap_err();
    assert!(
        matches!(&err, LossError::Argument { arg, .. } if *arg == "temperature"),
        "{err}"
    );
    let err = minimum_class_confusion_weighted(&z, 1.0, &t(&[1.0; 3], &[3])).unwrap_err();
    assert!(
        matches!(&err, LossError::Shape { tensor, .. } if tensor == "weights"),
        "{err}"
    );
}

#[test]
fn pseudo_label_loss_keeps_confident_rows_and_balances_classes() {
    // Teacher: rows 0, 1 confidently class 0, row 2 confidently class 1, row 3 unsure.
    let teacher = t(&[5.0, 0.0, 4.0, 0.0, 0.0, 6.0, 0.1, 0.0], &[4, 2]);
    let student = t(&[1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 2.0, -1.0], &[4, 2]);
    let ce = |z: [f64; 2], y: usize| -softmax(&z)[y].ln();
    let l0 = ce([1.0, 0.0], 0);
    let l1 = ce([0.0, 1.0], 0);
    let l2 = ce([0.5, 0.5], 1);
    let plain = pseudo_label_loss(&teacher, &student, 0.95, false).unwrap();
    assert_eq!(plain.pseudo_labels, vec![0, 0, 1, 0]);
    assert_close(plain.mask_rate, 0.75, 1e-15, "mask rate");
    assert_close(scalar(&plain.loss), (l0 + l1 + l2) / 4.0, 1e-12, "plain");
    // Balanced: 3 kept, 2 classes; class 0 has 2 → b = 3/4, class 1 has 1 → b = 3/2.
    let bal = pseudo_label_loss(&teacher, &student, 0.95, true).unwrap();
    assert_close(
        scalar(&bal.loss),
        (0.75 * (l0 + l1) + 1.5 * l2) / 4.0,
        1e-12,
        "balanced",
    );
    // Threshold 1 keeps nothing (softmax < 1 here): zero loss.
    let none = pseudo_label_loss(&teacher, &student, 1.0, true).unwrap();
    assert_eq!(none.mask_rate, 0.0);
    assert_eq!(scalar(&none.loss), 0.0);
}

#[test]
fn pseudo_label_gradient_reaches_only_the_student() {
    let teacher = t(&[3.0, 0.0, -1.0, 0.0, 4.0, 0.5, 0.2, 0.1, 0.0], &[3, 3]);
    let student = t(&[0.3, -0.2, 0.1, 0.5, 0.9, -0.4, 0.0, 0.0, 0.7], &[3, 3]);
    check_grad(
        &|x| pseudo_label_loss(&teacher, &x[0], 0.7, true).unwrap().loss,
        std::slice::from_ref(&student),
        1e-6,
    );
    let tv = Var::from_tensor(&teacher).unwrap();
    let out = pseudo_label_loss(tv.as_tensor(), &student, 0.7, true).unwrap();
    let grads = out.loss.backward().unwrap();
    assert!(grads.get(tv.as_tensor()).is_none());
}

#[test]
fn pseudo_label_refuses_a_threshold_outside_zero_one() {
    let z = t(&[0.0; 4], &[2, 2]);
    for bad in [-0.1, 1.5, f64::NAN] {
        let err = pseudo_label_loss(&z, &z, bad, false).unwrap_err();
        assert!(
            matches!(&err, LossError::Argument { arg, .. } if *arg == "threshold"),
            "{err}"
        );
    }
}
