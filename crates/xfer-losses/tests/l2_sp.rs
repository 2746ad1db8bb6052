#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use xfer_losses::{Excluded, L2Penalty, L2Sp, LossError, Role, WeightFilter};
use xfer_ops::ParamSnapshot;

/// A small "network": two pretrained layers with biases, a batch norm, and a new head.
fn net() -> Vec<(String, Var)> {
    let v = |d: &[f64], s: &[usize]| Var::from_tensor(&t(d, s)).unwrap();
    vec![
        ("layer1.weight".into(), v(&[1.0, 2.0, 3.0, 4.0], &[2, 2])),
        ("layer1.bias".into(), v(&[0.5, -0.5], &[2])),
        ("bn1.weight".into(), v(&[1.0, 1.0], &[2])),
        ("bn1.bias".into(), v(&[0.0, 0.0], &[2])),
        ("bn1.running_mean".into(), v(&[0.1, 0.2], &[2])),
        ("bn1.running_var".into(), v(&[1.0, 2.0], &[2])),
        ("layer2.weight".into(), v(&[-1.0, 0.0, 2.0, 1.0], &[2, 2])),
        ("fc.weight".into(), v(&[1.0, -2.0], &[1, 2])),
        ("fc.bias".into(), v(&[3.0], &[1])),
    ]
}

fn snapshot_of(params: &[(String, Var)], skip: &[&str]) -> ParamSnapshot {
    ParamSnapshot::capture(
        params
            .iter()
            .filter(|(n, _)| !skip.contains(&n.as_str()))
            .map(|(n, v)| (n.as_str(), v.as_tensor())),
    )
    .unwrap()
}

fn set(params: &[(String, Var)], name: &str, data: &[f64]) {
    let v = &params.iter().find(|(n, _)| n == name).unwrap().1;
    v.set(&Tensor::from_vec(data.to_vec(), v.dims(), &Device::Cpu).unwrap())
        .unwrap();
}

#[test]
fn l2sp_is_zero_at_anchor() {
    let params = net();
    // Anchor everything, including the head: nothing is new, nothing has moved.
    let reg = L2Sp::new(snapshot_of(&params, &[]), 0.1, 0.01).unwrap();
    let omega = reg.penalty(&params).unwrap();
    assert_eq!(scalar(&omega), 0.0);
    let grads = omega.backward().unwrap();
    for (name, v) in &params {
        if let Some(g) = grads.get(v.as_tensor()) {
            assert!(
                values(g).iter().all(|x| *x == 0.0),
                "{name} has a gradient at the anchor"
            );
        }
    }
}

#[test]
fn l2sp_value_matches_hand_computation() {
    let params = net();
    // The head is not in the anchor, so it is new.
    let reg = L2Sp::new(snapshot_of(&params, &["fc.weight", "fc.bias"]), 0.1, 0.01).unwrap();
    set(&params, "layer1.weight", &[2.0, 2.0, 1.0, 4.0]); // Δ = (1, 0, −2, 0): ‖Δ‖² = 5
    set(&params, "layer2.weight", &[-1.0, 3.0, 2.0, 1.0]); // Δ = (0, 3, 0, 0): ‖Δ‖² = 9
    set(&params, "layer1.bias", &[9.0, 9.0]); // excluded: a bias
    set(&params, "bn1.weight", &[5.0, 5.0]); // excluded: 1-D
    set(&params, "bn1.running_mean", &[7.0, 7.0]); // excluded: a statistic
    // α/2 (5 + 9) + β/2 ‖fc.weight‖² = 0.05·14 + 0.005·5.
    let want = 0.05 * 14.0 + 0.005 * 5.0;
    assert_close(scalar(&reg.penalty(&params).unwrap()), want, 1e-12, "Ω");
}

#[test]
fn l2sp_anchor_does_not_move_when_weights_update() {
    let w = Var::from_tensor(&t(&[1.0, -1.0, 0.5, 2.0], &[2, 2])).unwrap();
    let params = vec![("enc.weight", w.clone())];
    let reg = L2Sp::new(
        ParamSnapshot::capture([("enc.weight", w.as_tensor())]).unwrap(),
        0.2,
        0.0,
    )
    .unwrap();
    // A plain SGD step on some task loss, written through the Var in place.
    let task = w.as_tensor().sqr().unwrap().sum_all().unwrap();
    let g = task.backward().unwrap().get(w.as_tensor()).unwrap().clone();
    w.set(&(w.as_tensor() - (g * 0.1).unwrap()).unwrap())
        .unwrap();

    let anchor = values(reg.anchor().get("enc.weight").unwrap());
    assert_eq!(
        anchor,
        vec![1.0, -1.0, 0.5, 2.0],
        "the anchor moved with the weights"
    );
    // w ← 0.8 w, so ‖w − w⁰‖² = 0.04 ‖w⁰‖² = 0.04 · 6.25.
    let omega = scalar(&reg.penalty(&params).unwrap());
    assert_close(omega, 0.1 * 0.04 * 6.25, 1e-12, "Ω after the step");
}

#[test]
fn l2sp_gradient_matches_finite_differences() {
    let anchor = t(&[0.3, -0.2, 1.0, 0.0, 0.5, -1.5], &[2, 3]);
    let snap = ParamSnapshot::capture([("body.weight", &anchor)]).unwrap();
    let reg = L2Sp::new(snap, 0.3, 0.07).unwrap();
    let w = t(&[1.0, 0.4, -0.5, 0.2, 0.9, 0.0], &[2, 3]);
    let head = t(&[0.5, -1.0, 2.0], &[3, 1]);
    check_grad(
        &|x| {
            reg.penalty(&[("body.weight", &x[0]), ("head.weight", &x[1])])
                .unwrap()
        },
        &[w.clone(), head],
        1e-6,
    );
    // Analytically, ∂Ω/∂w = α (w − w⁰).
    let g = analytic_grads(
        &|x| reg.penalty(&[("body.weight", &x[0])]).unwrap(),
        std::slice::from_ref(&w),
    );
    let want: Vec<f64> = values(&w)
        .iter()
        .zip(values(&anchor))
        .map(|(a, b)| 0.3 * (a - b))
        .collect();
    assert_all_close(&g[0], &want, 1e-12, "α(w − w⁰)");
}

#[test]
fn l2sp_per_group_alpha_applies_first_matching_pattern() {
    let params = net();
    let reg = L2Sp::new(snapshot_of(&params, &["fc.weight", "fc.bias"]), 0.1, 0.0)
        .unwrap()
        .with_alpha_group("layer1", 1.0)
        .unwrap()
        .with_alpha_group("layer*", 0.5)
        .unwrap();
    assert_eq!(reg.role("layer1.weight", 2), Role::Anchored { alpha: 1.0 });
    assert_eq!(reg.role("layer2.weight", 2), Role::Anchored { alpha: 0.5 });
    set(&params, "layer1.weight", &[2.0, 2.0, 3.0, 4.0]); // ‖Δ‖² = 1
    set(&params, "layer2.weight", &[-1.0, 0.0, 2.0, 3.0]); // ‖Δ‖² = 4
    let want = 1.0 / 2.0 * 1.0 + 0.5 / 2.0 * 4.0;
    assert_close(
        scalar(&reg.penalty(&params).unwrap()),
        want,
        1e-12,
        "per-group α",
    );
}

#[test]
fn l2sp_default_selection_is_weights_only() {
    let params = net();
    let reg = L2Sp::new(snapshot_of(&params, &["fc.weight", "fc.bias"]), 0.1, 0.01).unwrap();
    let plan: Vec<(String, Role)> = reg.plan(&params);
    let role = |n: &str| plan.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(role("layer1.weight"), Role::Anchored { alpha: 0.1 });
    assert_eq!(role("layer1.bias"), Role::Excluded(Excluded::Bias));
    assert_eq!(role("bn1.weight"), Role::Excluded(Excluded::OneDimensional));
    assert_eq!(
        role("bn1.running_mean"),
        Role::Excluded(Excluded::NormStatistic)
    );
    assert_eq!(
        role("bn1.running_var"),
        Role::Excluded(Excluded::NormStatistic)
    );
    assert_eq!(
        reg.role("bn1.num_batches_tracked", 0),
        Role::Excluded(Excluded::NormStatistic)
    );
    assert_eq!(role("fc.weight"), Role::New { beta: 0.01 });
    assert_eq!(role("fc.bias"), Role::Excluded(Excluded::Bias));

    // Asked for, biases and 1-D parameters join; statistics never do.
    let all = reg.clone().with_filter(
        WeightFilter::weights_only()
            .include_biases(true)
            .include_1d(true),
    );
    assert_eq!(all.role("layer1.bias", 1), Role::Anchored { alpha: 0.1 });
    assert_eq!(all.role("bn1.weight", 1), Role::Anchored { alpha: 0.1 });
    assert_eq!(all.role("fc.bias", 1), Role::New { beta: 0.01 });
    assert_eq!(
        all.role("bn1.running_var", 1),
        Role::Excluded(Excluded::NormStatistic)
    );
    set(&params, "layer1.bias", &[1.5, -0.5]); // ‖Δ‖² = 1
    let want = 0.05 * 1.0 + 0.005 * (5.0 + 9.0); // + fc.weight and fc.bias as new
    assert_close(
        scalar(&all.penalty(&params).unwrap()),
        want,
        1e-12,
        "with biases",
    );
}

#[test]
fn l2sp_new_layers_and_pretrained_chosen_by_glob_or_prefix() {
    let params = net();
    // Everything is in the anchor, but `fc.*` is declared new: pulled to zero, not to w⁰.
    let reg = L2Sp::new(snapshot_of(&params, &[]), 0.1, 0.01)
        .unwrap()
        .with_new_layers(["fc.*"])
        .with_pretrained(["layer2"]);
    assert_eq!(reg.role("fc.weight", 2), Role::New { beta: 0.01 });
    assert_eq!(reg.role("layer2.weight", 2), Role::Anchored { alpha: 0.1 });
    assert_eq!(
        reg.role("layer1.weight", 2),
        Role::Excluded(Excluded::NotSelected)
    );
    set(&params, "layer1.weight", &[0.0; 4]); // not selected: no effect
    set(&params, "layer2.weight", &[-1.0, 0.0, 2.0, 2.0]); // ‖Δ‖² = 1
    let want = 0.05 * 1.0 + 0.005 * 5.0;
    assert_close(scalar(&reg.penalty(&params).unwrap()), want, 1e-12, "Ω");
}

#[test]
fn l2sp_names_the_parameter_when_its_anchor_is_missing_or_mismatched() {
    let params = net();
    let reg = L2Sp::new(snapshot_of(&params, &["layer2.weight"]), 0.1, 0.01)
        .unwrap()
        .with_new_layers(["fc"]);
    match reg.penalty(&params) {
        Err(LossError::Param { name, .. }) => assert_eq!(name, "layer2.weight"),
        other => panic!("expected a missing-anchor error, got {other:?}"),
    }
    let wrong = t(&[0.0; 6], &[2, 3]);
    let reg = L2Sp::new(
        ParamSnapshot::capture([("layer1.weight", &wrong)]).unwrap(),
        0.1,
        0.0,
    )
    .unwrap();
    let err = reg.penalty(&params).unwrap_err();
    assert!(
        matches!(&err, LossError::Param { name, msg, .. } if name == "layer1.weight" && msg.contains("[2, 3]")),
        "{err}"
    );
    let f32_anchor = t(&[0.0; 4], &[2, 2]).to_dtype(DType::F32).unwrap();
    let reg = L2Sp::new(
        ParamSnapshot::capture([("layer1.weight", &f32_anchor)]).unwrap(),
        0.1,
        0.0,
    )
    .unwrap();
    assert!(matches!(reg.penalty(&params), Err(LossError::Param { .. })));
    assert!(L2Sp::new(ParamSnapshot::default(), -0.1, 0.0).is_err());
    assert!(L2Sp::new(ParamSnapshot::default(), 0.1, f64::NAN).is_err());
}

#[test]
fn l2sp_takes_tensor_slices_and_var_lists_alike() {
    let w = t(&[1.0, 2.0], &[1, 2]);
    let w0 = t(&[0.0, 0.0], &[1, 2]);
    let reg = L2Sp::new(
        ParamSnapshot::capture([("a.weight", &w0)]).unwrap(),
        1.0,
        0.0,
    )
    .unwrap();
    let by_ref: Vec<(&str, &Tensor)> = vec![("a.weight", &w)];
    let by_var: Vec<(String, Var)> = vec![("a.weight".into(), Var::from_tensor(&w).unwrap())];
    assert_close(
        scalar(&reg.penalty(&by_ref).unwrap()),
        2.5,
        1e-12,
        "&[(&str, &Tensor)]",
    );
    assert_close(
        scalar(&reg.penalty(&by_var).unwrap()),
        2.5,
        1e-12,
        "&[(String, Var)]",
    );
    let empty: Vec<(&str, &Tensor)> = Vec::new();
    assert_eq!(scalar(&reg.penalty(&empty).unwrap()), 0.0);
}

#[test]
fn l2_penalty_value_and_gradient() {
    let params = net();
    let l2 = L2Penalty::new(0.2).unwrap();
    // Weights only: layer1 (30), layer2 (6), fc (5).
    assert_close(
        scalar(&l2.penalty(&params).unwrap()),
        0.1 * 41.0,
        1e-12,
        "β/2 Σ‖w‖²",
    );
    let only = L2Penalty::new(0.2)
        .unwrap()
        .with_selection(["layer?.weight"]);
    assert_close(
        scalar(&only.penalty(&params).unwrap()),
        0.1 * 36.0,
        1e-12,
        "glob",
    );
    assert_eq!(only.excludes("fc.weight", 2), Some(Excluded::NotSelected));
    let x = t(&[0.5, -1.0, 2.0, 0.1], &[2, 2]);
    check_grad(&|v| l2.penalty(&[("w.weight", &v[0])]).unwrap(), &[x], 1e-6);
}

#[test]
fn half_precision_penalties_sum_in_f32_without_overflow() {
    // Σ w² = 1000 · 300² = 9·10⁷, far past f16's largest value (65504).
    let w = Var::from_tensor(
        &Tensor::full(300f32, (10, 100), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap(),
    )
    .unwrap();
    let l2 = L2Penalty::new(2.0).unwrap();
    let v = l2.penalty(&[("big.weight", &w)]).unwrap();
    assert_eq!(v.dtype(), DType::F32);
    assert_close(scalar(&v), 9.0e7, 1e-6, "f16 sum of squares");
    let g = v.backward().unwrap();
    let g = values(g.get(w.as_tensor()).unwrap());
    assert!(g.iter().all(|x| (x - 600.0).abs() < 1.0), "∂/∂w = βw");
    let zero = Tensor::zeros((10, 100), DType::F16, &Device::Cpu).unwrap();
    let reg = L2Sp::new(
        ParamSnapshot::capture([("big.weight", &zero)]).unwrap(),
        2.0,
        0.0,
    )
    .unwrap();
    assert_close(
        scalar(&reg.penalty(&[("big.weight", &w)]).unwrap()),
        9.0e7,
        1e-6,
        "L2-SP f16",
    );
}
