//! softmax, log_softmax, layer_norm, batch_norm_train: values against direct formulas,
//! gradients against finite differences, gradients reaching the parameters before and inside
//! the layer (where candle's fused kernels drop them), errors naming the shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{D, DType, Device, Module, Tensor, Var};
use common::{check_gradients, max_rel_diff, randn, values};
use xfer_ops::norm::{
    batch_norm_train_portable, layer_norm_portable, log_softmax_portable, softmax_portable,
};
use xfer_ops::{
    Activation, OpsError, SeededRng, batch_norm_act_train, batch_norm_train, layer_norm,
    log_softmax, relu, relu6, softmax,
};

fn wrap<T>(r: xfer_ops::Result<T>) -> candle_core::Result<T> {
    r.map_err(candle_core::Error::wrap)
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let d = t.dim(D::Minus1).unwrap();
    values(t).chunks(d).map(|c| c.to_vec()).collect()
}

#[test]
fn softmax_and_log_softmax_match_the_formula() {
    let mut rng = SeededRng::new(20);
    let x = (randn(&mut rng, &[2, 3, 7]) * 4.0).unwrap();
    let s = softmax(&x).unwrap();
    let ls = log_softmax(&x).unwrap();
    assert_eq!(s.dims(), x.dims());
    for ((xr, sr), lr) in rows(&x).iter().zip(rows(&s)).zip(rows(&ls)) {
        let z: f64 = xr.iter().map(|v| v.exp()).sum();
        for ((xv, sv), lv) in xr.iter().zip(&sr).zip(&lr) {
            assert!((sv - xv.exp() / z).abs() < 1e-14);
            assert!((lv - (xv - z.ln())).abs() < 1e-12);
        }
        assert!((sr.iter().sum::<f64>() - 1.0).abs() < 1e-14);
    }
}

#[test]
fn softmax_is_stable_for_large_logits() {
    let x = Tensor::new(&[[1000f32, 1001.0, 999.0], [-1e4, 0.0, -1e4]], &Device::Cpu).unwrap();
    let s = values(&softmax(&x).unwrap());
    let ls = values(&log_softmax(&x).unwrap());
    assert!(s.iter().chain(&ls).all(|v| v.is_finite()));
    assert!((s[1] - 0.665_240_955_774_821_6).abs() < 1e-6);
    assert!((ls[1] + 0.407_605_964_444_380_1).abs() < 1e-5);
    assert!((s[4] - 1.0).abs() < 1e-7 && s[3] == 0.0);
}

#[test]
fn softmax_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(21);
    let x = randn(&mut rng, &[3, 2, 5]);
    check_gradients(|v| wrap(softmax(&v[0])), &[x], 1e-8, 1e-6);
}

#[test]
fn log_softmax_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(22);
    let x = randn(&mut rng, &[4, 6]);
    check_gradients(|v| wrap(log_softmax(&v[0])), &[x], 1e-8, 1e-6);
}

#[test]
fn layer_norm_normalises_each_row_then_scales_and_shifts() {
    let mut rng = SeededRng::new(23);
    let x = randn(&mut rng, &[3, 4, 9]).affine(3.0, 2.0).unwrap();
    let ones = Tensor::ones(9, DType::F64, &Device::Cpu).unwrap();
    let zeros = Tensor::zeros(9, DType::F64, &Device::Cpu).unwrap();
    let eps = 1e-5;
    let y = layer_norm(&x, &ones, &zeros, eps).unwrap();
    for (xr, yr) in rows(&x).iter().zip(rows(&y)) {
        let n = xr.len() as f64;
        let mu = xr.iter().sum::<f64>() / n;
        let var = xr.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n;
        for (xv, yv) in xr.iter().zip(&yr) {
            assert!((yv - (xv - mu) / (var + eps).sqrt()).abs() < 1e-12);
        }
    }
    let g = randn(&mut rng, &[9]);
    let b = randn(&mut rng, &[9]);
    let yg = layer_norm(&x, &g, &b, eps).unwrap();
    let want = y.broadcast_mul(&g).unwrap().broadcast_add(&b).unwrap();
    assert!(max_rel_diff(&yg, &want) < 1e-12);
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(24);
    let x = randn(&mut rng, &[2, 3, 6]);
    let g = randn(&mut rng, &[6]);
    let b = randn(&mut rng, &[6]);
    check_gradients(
        |v| wrap(layer_norm(&v[0], &v[1], &v[2], 1e-5)),
        &[x, g, b],
        1e-7,
        1e-6,
    );
}

/// `x W` → layer norm(γ, β) → softmax → `Σ r ⊙ ·`: W before the layer, γ and β inside it all
/// get gradients equal to the finite differences.
#[test]
fn gradients_reach_parameters_before_and_inside_layer_norm_and_softmax() {
    let mut rng = SeededRng::new(25);
    let x = randn(&mut rng, &[4, 3]);
    let w = randn(&mut rng, &[3, 5]);
    let g = randn(&mut rng, &[5]);
    let b = randn(&mut rng, &[5]);
    check_gradients(
        |v| {
            let h = x.matmul(&v[0])?;
            let h = wrap(layer_norm(&h, &v[1], &v[2], 1e-5))?;
            wrap(softmax(&h))
        },
        &[w, g, b],
        1e-8,
        1e-6,
    );
}

/// Documented contrast: candle-nn's fused `LayerNorm` and `softmax_last_dim` have no backward,
/// so the same network gives no gradient at all to W, γ or β (silently, no error).
#[test]
fn candle_fused_layer_norm_and_softmax_drop_the_gradients_ours_keep() {
    let mut rng = SeededRng::new(26);
    let x = randn_f32(&mut rng, &[4, 3]);
    let w = Var::from_tensor(&randn_f32(&mut rng, &[3, 5])).unwrap();
    let g = Var::from_tensor(&randn_f32(&mut rng, &[5])).unwrap();
    let b = Var::from_tensor(&randn_f32(&mut rng, &[5])).unwrap();
    let r = randn_f32(&mut rng, &[4, 5]);

    let h = x.matmul(w.as_tensor()).unwrap();
    let ln = candle_nn::LayerNorm::new(g.as_tensor().clone(), b.as_tensor().clone(), 1e-5);
    let y = candle_nn::ops::softmax_last_dim(&ln.forward(&h).unwrap()).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&w, &g, &b] {
        assert!(
            grads.get(v.as_tensor()).is_none(),
            "candle now passes gradients"
        );
    }

    let y = softmax(&layer_norm(&h, g.as_tensor(), b.as_tensor(), 1e-5).unwrap()).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&w, &g, &b] {
        let gv = values(grads.get(v.as_tensor()).expect("gradient missing"));
        assert!(gv.iter().any(|x| x.abs() > 1e-6));
    }
}

fn randn_f32(rng: &mut SeededRng, s: &[usize]) -> Tensor {
    common::randn_dtype(rng, s, DType::F32)
}

#[test]
fn batch_norm_train_uses_batch_statistics_per_channel() {
    let mut rng = SeededRng::new(27);
    let x = randn(&mut rng, &[4, 3, 2, 5]).affine(2.0, 1.0).unwrap();
    let g = randn(&mut rng, &[3]);
    let b = randn(&mut rng, &[3]);
    let eps = 1e-5;
    let (y, mu, var_unbiased) = batch_norm_train(&x, &g, &b, eps).unwrap();
    assert_eq!(y.dims(), x.dims());
    assert_eq!(mu.dims(), [3]);
    assert_eq!(var_unbiased.dims(), [3]);
    let (xv, yv) = (values(&x), values(&y));
    let (gv, bv) = (values(&g), values(&b));
    for c in 0..3 {
        let idx: Vec<usize> = (0..4)
            .flat_map(|n| (0..10).map(move |k| (n * 3 + c) * 10 + k))
            .collect();
        let m = idx.iter().map(|&i| xv[i]).sum::<f64>() / 40.0;
        let v = idx.iter().map(|&i| (xv[i] - m).powi(2)).sum::<f64>() / 40.0;
        assert!((values(&mu)[c] - m).abs() < 1e-12);
        assert!((values(&var_unbiased)[c] - v * 40.0 / 39.0).abs() < 1e-12);
        for &i in &idx {
            let want = (xv[i] - m) / (v + eps).sqrt() * gv[c] + bv[c];
            assert!((yv[i] - want).abs() < 1e-12);
        }
    }
    assert!(!mu.track_op() && !var_unbiased.track_op());
}

#[test]
fn batch_norm_train_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(28);
    for shape in [vec![5, 3], vec![3, 2, 3, 2]] {
        let x = randn(&mut rng, &shape);
        let g = randn(&mut rng, &[shape[1]]);
        let b = randn(&mut rng, &[shape[1]]);
        check_gradients(
            |v| Ok(wrap(batch_norm_train(&v[0], &v[1], &v[2], 1e-5))?.0),
            &[x, g, b],
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn batch_norm_train_matches_candle_nn_batch_norm() {
    let mut rng = SeededRng::new(29);
    let x = randn(&mut rng, &[6, 4, 3, 3]);
    let g = randn(&mut rng, &[4]);
    let b = randn(&mut rng, &[4]);
    let (y, _, _) = batch_norm_train(&x, &g, &b, 1e-5).unwrap();
    let z = Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap();
    let o = Tensor::ones(4, DType::F64, &Device::Cpu).unwrap();
    let bn = candle_nn::BatchNorm::new(4, z, o, g.clone(), b.clone(), 1e-5).unwrap();
    let want = bn.forward_train(&x).unwrap();
    assert!(max_rel_diff(&y, &want) < 1e-12);
}

fn shape_msg(e: OpsError, op: &str) -> String {
    match e {
        OpsError::Shape { op: o, msg } => {
            assert_eq!(o, op);
            msg
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn norms_reject_wrong_shapes_naming_them() {
    let dev = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &dev).unwrap();
    let scalar = Tensor::new(1f32, &dev).unwrap();
    shape_msg(softmax(&scalar).unwrap_err(), "softmax");
    shape_msg(log_softmax(&scalar).unwrap_err(), "log_softmax");
    let m = shape_msg(
        layer_norm(&z(&[2, 5]), &z(&[4]), &z(&[5]), 1e-5).unwrap_err(),
        "layer_norm",
    );
    assert!(m.contains("[4]") && m.contains("[2, 5]"), "{m}");
    let m = shape_msg(
        batch_norm_train(&z(&[2, 3, 4]), &z(&[3]), &z(&[3]), 1e-5).unwrap_err(),
        "batch_norm",
    );
    assert!(m.contains("[2, 3, 4]"), "{m}");
    let m = shape_msg(
        batch_norm_train(&z(&[2, 3]), &z(&[2]), &z(&[3]), 1e-5).unwrap_err(),
        "batch_norm",
    );
    assert!(m.contains("[2]") && m.contains("[2, 3]"), "{m}");
    let m = shape_msg(
        batch_norm_train(&z(&[1, 3, 1, 1]), &z(&[3]), &z(&[3]), 1e-5).unwrap_err(),
        "batch_norm",
    );
    assert!(m.contains("[1, 3, 1, 1]"), "{m}");
}

/// Shapes for fused-vs-composed comparisons: rank 1 to 3, a row of one, a wide row.
fn shapes() -> Vec<Vec<usize>> {
    vec![
        vec![7],
        vec![3, 1],
        vec![2, 5, 9],
        vec![4, 384],
        vec![300, 3],
    ]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn fused_kernels_match_composed_versions_in_f64_and_f32() {
    let mut rng = SeededRng::new(40);
    for shape in shapes() {
        let d = *shape.last().unwrap();
        for (dt, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-6)] {
            let x = common::randn_dtype(&mut rng, &shape, dt)
                .affine(3.0, 1.0)
                .unwrap();
            let g = common::randn_dtype(&mut rng, &[d], dt);
            let b = common::randn_dtype(&mut rng, &[d], dt);
            let pairs = [
                (softmax(&x).unwrap(), softmax_portable(&x).unwrap()),
                (log_softmax(&x).unwrap(), log_softmax_portable(&x).unwrap()),
                (
                    layer_norm(&x, &g, &b, 1e-5).unwrap(),
                    layer_norm_portable(&x, &g, &b, 1e-5).unwrap(),
                ),
            ];
            for (i, (fused, composed)) in pairs.iter().enumerate() {
                assert_eq!(fused.dims(), x.dims());
                let diff = max_abs_diff(fused, composed);
                assert!(
                    diff < tol * 10f64.max(1.0),
                    "{shape:?} {dt:?} op {i}: {diff}"
                );
            }
        }
    }
}

#[test]
fn fused_gradients_match_composed_gradients_in_f32() {
    let mut rng = SeededRng::new(41);
    let x = Var::from_tensor(&randn_f32(&mut rng, &[2, 16, 384])).unwrap();
    let g = Var::from_tensor(&randn_f32(&mut rng, &[384])).unwrap();
    let b = Var::from_tensor(&randn_f32(&mut rng, &[384])).unwrap();
    let r = randn_f32(&mut rng, &[2, 16, 384]);
    let grads = |fused: bool| {
        let y = if fused {
            log_softmax(
                &softmax(&layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-12).unwrap())
                    .unwrap(),
            )
            .unwrap()
        } else {
            log_softmax_portable(
                &softmax_portable(
                    &layer_norm_portable(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-12)
                        .unwrap(),
                )
                .unwrap(),
            )
            .unwrap()
        };
        let gs = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        [&x, &g, &b].map(|v| gs.get(v.as_tensor()).unwrap().clone())
    };
    for (a, b) in grads(true).iter().zip(grads(false).iter()) {
        let scale = values(b).iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let d = max_abs_diff(a, b) / scale;
        assert!(d < 1e-5, "{d}");
    }
}

#[test]
fn composed_versions_pass_finite_differences_too() {
    let mut rng = SeededRng::new(42);
    let x = randn(&mut rng, &[3, 5]);
    let g = randn(&mut rng, &[5]);
    let b = randn(&mut rng, &[5]);
    check_gradients(
        |v| wrap(softmax_portable(&v[0])),
        std::slice::from_ref(&x),
        1e-8,
        1e-6,
    );
    check_gradients(
        |v| wrap(log_softmax_portable(&v[0])),
        std::slice::from_ref(&x),
        1e-8,
        1e-6,
    );
    check_gradients(
        |v| wrap(layer_norm_portable(&v[0], &v[1], &v[2], 1e-5)),
        &[x, g, b],
        1e-7,
        1e-6,
    );
}

#[test]
fn fused_ops_accept_non_contiguous_input() {
    let mut rng = SeededRng::new(43);
    let x = randn(&mut rng, &[6, 4]).t().unwrap();
    let g = randn(&mut rng, &[6]);
    let b = randn(&mut rng, &[6]);
    assert!(max_abs_diff(&softmax(&x).unwrap(), &softmax_portable(&x).unwrap()) < 1e-14);
    let y = layer_norm(&x, &g, &b, 1e-5).unwrap();
    assert!(max_abs_diff(&y, &layer_norm_portable(&x, &g, &b, 1e-5).unwrap()) < 1e-12);
    check_gradients(|v| wrap(softmax(&v[0].t()?)), &[x.t().unwrap()], 1e-8, 1e-6);
}

#[test]
fn norms_in_half_precision_compute_through_f32() {
    let mut rng = SeededRng::new(44);
    for dt in [DType::F16, DType::BF16] {
        let x = common::randn_dtype(&mut rng, &[3, 8], dt);
        let g = Tensor::ones(8, dt, &Device::Cpu).unwrap();
        let b = Tensor::zeros(8, dt, &Device::Cpu).unwrap();
        let v = Var::from_tensor(&x).unwrap();
        for y in [
            softmax(v.as_tensor()).unwrap(),
            log_softmax(v.as_tensor()).unwrap(),
            layer_norm(v.as_tensor(), &g, &b, 1e-5).unwrap(),
        ] {
            assert_eq!(y.dtype(), dt);
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(grads.get(v.as_tensor()).unwrap().dtype(), dt);
        }
        let s = softmax(&x).unwrap().to_dtype(DType::F64).unwrap();
        let want = softmax(&x.to_dtype(DType::F64).unwrap()).unwrap();
        assert!(max_abs_diff(&s, &want) < 1e-2);
    }
}

#[test]
fn layer_norm_rejects_mixed_dtypes_and_bad_eps() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let g64 = Tensor::ones(3, DType::F64, &dev).unwrap();
    let b = Tensor::zeros(3, DType::F32, &dev).unwrap();
    let e = layer_norm(&x, &g64, &b, 1e-5).unwrap_err().to_string();
    assert!(e.contains("gamma") && e.contains("F64"), "{e}");
    let g = Tensor::ones(3, DType::F32, &dev).unwrap();
    let e = layer_norm(&x, &g, &b, -1.0).unwrap_err().to_string();
    assert!(e.contains("eps"), "{e}");
}

#[test]
fn fused_batch_norm_matches_composed_values_statistics_and_gradients() {
    let mut rng = SeededRng::new(45);
    for shape in [vec![7, 3], vec![4, 5, 3, 6], vec![2, 64, 9, 9]] {
        let c = shape[1];
        for (dt, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let x = Var::from_tensor(
                &common::randn_dtype(&mut rng, &shape, dt)
                    .affine(2.0, 0.5)
                    .unwrap(),
            )
            .unwrap();
            let g = Var::from_tensor(&common::randn_dtype(&mut rng, &[c], dt)).unwrap();
            let b = Var::from_tensor(&common::randn_dtype(&mut rng, &[c], dt)).unwrap();
            let r = common::randn_dtype(&mut rng, &shape, dt);
            let run = |fused: bool| {
                let f = if fused {
                    batch_norm_train
                } else {
                    batch_norm_train_portable
                };
                let (y, mu, var) = f(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5).unwrap();
                let gs = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let grads = [&x, &g, &b].map(|v| gs.get(v.as_tensor()).unwrap().clone());
                (y, mu, var, grads)
            };
            let (y1, m1, v1, g1) = run(true);
            let (y2, m2, v2, g2) = run(false);
            assert!(max_abs_diff(&y1, &y2) < tol, "{shape:?} {dt:?} y");
            assert!(max_abs_diff(&m1, &m2) < tol, "{shape:?} {dt:?} mean");
            assert!(max_abs_diff(&v1, &v2) < tol * 10.0, "{shape:?} {dt:?} var");
            assert!(!m1.track_op() && !v1.track_op());
            for (a, b) in g1.iter().zip(g2.iter()) {
                let scale = values(b).iter().fold(1f64, |m, v| m.max(v.abs()));
                assert!(
                    max_abs_diff(a, b) / scale < tol * 10.0,
                    "{shape:?} {dt:?} grad"
                );
            }
        }
    }
}

#[test]
fn composed_batch_norm_passes_finite_differences() {
    let mut rng = SeededRng::new(46);
    let x = randn(&mut rng, &[3, 2, 2, 3]);
    let g = randn(&mut rng, &[2]);
    let b = randn(&mut rng, &[2]);
    check_gradients(
        |v| Ok(wrap(batch_norm_train_portable(&v[0], &v[1], &v[2], 1e-5))?.0),
        &[x, g, b],
        1e-7,
        1e-6,
    );
}

/// candle-nn's `BatchNorm::forward_train` is right (composed ops), just slower: ours agrees
/// with it on values and gradients.
#[test]
fn batch_norm_train_gradients_match_candle_nn() {
    let mut rng = SeededRng::new(47);
    let x = Var::from_tensor(&randn(&mut rng, &[5, 3, 4, 2])).unwrap();
    let g = Var::from_tensor(&randn(&mut rng, &[3])).unwrap();
    let b = Var::from_tensor(&randn(&mut rng, &[3])).unwrap();
    let r = randn(&mut rng, &[5, 3, 4, 2]);
    let z = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let o = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
    let bn = candle_nn::BatchNorm::new(3, z, o, g.as_tensor().clone(), b.as_tensor().clone(), 1e-5)
        .unwrap();
    let theirs = (bn.forward_train(x.as_tensor()).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (y, _, _) = batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5).unwrap();
    let ours = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&x, &g, &b] {
        let d = max_abs_diff(
            ours.get(v.as_tensor()).unwrap(),
            theirs.get(v.as_tensor()).unwrap(),
        );
        assert!(d < 1e-12, "{d}");
    }
}

#[test]
fn batch_norm_in_half_precision_and_with_mixed_dtypes() {
    let mut rng = SeededRng::new(48);
    let x = common::randn_dtype(&mut rng, &[4, 3, 2, 2], DType::BF16);
    let g = Tensor::ones(3, DType::BF16, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::BF16, &Device::Cpu).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let (y, mu, var) = batch_norm_train(v.as_tensor(), &g, &b, 1e-5).unwrap();
    assert_eq!(
        (y.dtype(), mu.dtype(), var.dtype()),
        (DType::BF16, DType::BF16, DType::BF16)
    );
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(v.as_tensor()).unwrap().dtype(), DType::BF16);
    let g32 = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let e = batch_norm_train(&x, &g32, &b, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gamma") && e.contains("F32"), "{e}");
}

#[test]
fn batch_norm_with_an_activation_equals_the_two_ops_values_and_gradients() {
    let mut rng = SeededRng::new(61);
    let x = randn(&mut rng, &[3, 4, 5, 6]).affine(2.0, 0.5).unwrap();
    let g = randn(&mut rng, &[4]).affine(2.0, 0.5).unwrap();
    let b = randn(&mut rng, &[4]).affine(2.0, 1.0).unwrap();
    let w = randn(&mut rng, &[3, 4, 5, 6]);
    type Composed = fn(&Tensor) -> xfer_ops::Result<Tensor>;
    let cases: [(Activation, Composed); 3] = [
        (Activation::Identity, |t: &Tensor| Ok(t.clone())),
        (Activation::Relu, |t: &Tensor| relu(t)),
        (Activation::Relu6, |t: &Tensor| relu6(t)),
    ];
    for (act, composed) in cases {
        let run = |fused: bool| {
            let vs: Vec<Var> = [&x, &g, &b]
                .iter()
                .map(|t| Var::from_tensor(t).unwrap())
                .collect();
            let (xs, gs, bs) = (vs[0].as_tensor(), vs[1].as_tensor(), vs[2].as_tensor());
            let y = if fused {
                batch_norm_act_train(xs, gs, bs, 1e-5, act).unwrap().0
            } else {
                composed(&batch_norm_train(xs, gs, bs, 1e-5).unwrap().0).unwrap()
            };
            let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let mut out = vec![values(&y)];
            out.extend(vs.iter().map(|v| values(grads.get(v.as_tensor()).unwrap())));
            out
        };
        let (a, c) = (run(true), run(false));
        for (p, q) in a.iter().zip(&c) {
            let worst = p
                .iter()
                .zip(q)
                .map(|(u, v)| (u - v).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-12, "{act:?}: max difference {worst}");
        }
    }
    // And against finite differences (values kept off the ReLU6 kinks by the affine above).
    check_gradients(
        |t| {
            batch_norm_act_train(&t[0], &t[1], &t[2], 1e-5, Activation::Relu6)
                .map(|r| r.0)
                .map_err(candle_core::Error::wrap)
        },
        &[x, g, b],
        1e-6,
        1e-4,
    );
}
