//! batch_norm_eval: values against the formula, gradients against finite differences (both
//! paths), the γ gradient without cancellation in f32, errors that name the tensors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients, max_rel_diff, randn, randn_dtype, values};
use xfer_ops::{OpsError, SeededRng, batch_norm_eval, batch_norm_eval_portable};

fn stats(rng: &mut SeededRng, c: usize) -> (Tensor, Tensor) {
    let mean = randn(rng, &[c]);
    let var = randn(rng, &[c]).sqr().unwrap().affine(1.0, 0.1).unwrap();
    (mean, var)
}

#[test]
fn batch_norm_eval_matches_formula_and_portable() {
    let mut rng = SeededRng::new(40);
    for shape in [
        vec![3, 4],
        vec![2, 3, 5, 4],
        vec![1, 2, 1, 1],
        vec![2, 5, 3],
    ] {
        let c = shape[1];
        let x = randn(&mut rng, &shape);
        let (g, b) = (randn(&mut rng, &[c]), randn(&mut rng, &[c]));
        let (m, v) = stats(&mut rng, c);
        let y = batch_norm_eval(&x, &g, &b, &m, &v, 1e-3).unwrap();
        let (xv, gv, bv, mv, vv) = (values(&x), values(&g), values(&b), values(&m), values(&v));
        let s: usize = shape[2..].iter().product();
        let want: Vec<f64> = xv
            .iter()
            .enumerate()
            .map(|(i, &xi)| {
                let ch = (i / s) % c;
                gv[ch] * (xi - mv[ch]) / (vv[ch] + 1e-3).sqrt() + bv[ch]
            })
            .collect();
        let want = Tensor::from_vec(want, shape.as_slice(), &Device::Cpu).unwrap();
        assert!(max_rel_diff(&y, &want) < 1e-12, "{shape:?}");
        let yp = batch_norm_eval_portable(&x, &g, &b, &m, &v, 1e-3).unwrap();
        assert!(max_rel_diff(&yp, &want) < 1e-12, "{shape:?}");
    }
}

#[test]
fn batch_norm_eval_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(41);
    for shape in [vec![2, 3, 4, 5], vec![4, 3]] {
        let c = shape[1];
        let x = randn(&mut rng, &shape);
        let (g, b) = (randn(&mut rng, &[c]), randn(&mut rng, &[c]));
        let (m, v) = stats(&mut rng, c);
        check_gradients(
            |t| {
                batch_norm_eval(&t[0], &t[1], &t[2], &m, &v, 1e-5).map_err(candle_core::Error::wrap)
            },
            &[x.clone(), g.clone(), b.clone()],
            1e-8,
            1e-6,
        );
        check_gradients(
            |t| {
                batch_norm_eval_portable(&t[0], &t[1], &t[2], &m, &v, 1e-5)
                    .map_err(candle_core::Error::wrap)
            },
            &[x, g, b],
            1e-8,
            1e-6,
        );
    }
}

/// A channel whose values sit far from 0 with a small spread (|μ| ≫ σ): the γ gradient
/// `Σ g·(x − μ)/σ` in f32 matches the f64 result; the composition `Σ g·x − μ Σ g` does not.
#[test]
fn batch_norm_eval_gamma_gradient_has_no_cancellation_in_f32() {
    let mut rng = SeededRng::new(42);
    let (n, c, h) = (2, 3, 112);
    let noise = randn_dtype(&mut rng, &[n, c, h, h], DType::F64);
    let x64 = (noise * 0.01).unwrap().affine(1.0, 50.0).unwrap();
    let gy64 = randn_dtype(&mut rng, &[n, c, h, h], DType::F64);
    let m64 = Tensor::new(&[50.0f64, 50.0, 50.0], &Device::Cpu).unwrap();
    let v64 = Tensor::new(&[1e-4f64, 1e-4, 1e-4], &Device::Cpu).unwrap();
    let grad_gamma = |dt: DType, fused: bool| -> Vec<f64> {
        let g = Var::from_tensor(&Tensor::ones(c, dt, &Device::Cpu).unwrap()).unwrap();
        let b = Tensor::zeros(c, dt, &Device::Cpu).unwrap();
        let (x, m, v) = (
            x64.to_dtype(dt).unwrap(),
            m64.to_dtype(dt).unwrap(),
            v64.to_dtype(dt).unwrap(),
        );
        let y = if fused {
            batch_norm_eval(&x, g.as_tensor(), &b, &m, &v, 1e-5).unwrap()
        } else {
            let inv = (&v + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
            let a = (g.as_tensor() * &inv).unwrap();
            let sh = (&b - (&m * &a).unwrap()).unwrap();
            x.broadcast_mul(&a.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&sh.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
        };
        let l = (y * gy64.to_dtype(dt).unwrap()).unwrap().sum_all().unwrap();
        values(l.backward().unwrap().get(g.as_tensor()).unwrap())
    };
    let exact = grad_gamma(DType::F64, true);
    let ours = grad_gamma(DType::F32, true);
    let composed = grad_gamma(DType::F32, false);
    let err = |v: &[f64]| {
        v.iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs() / b.abs())
            .fold(0.0, f64::max)
    };
    println!(
        "γ gradient relative error: fused {:.2e}, composed {:.2e}",
        err(&ours),
        err(&composed)
    );
    // x itself is rounded to f32 (ulp 3.8e-6 at 50 against a spread of 0.01).
    assert!(err(&ours) < 1e-3, "{}", err(&ours));
    assert!(err(&composed) > 10.0 * err(&ours));
}

#[test]
fn batch_norm_eval_rejects_bad_shapes_naming_them() {
    let mut rng = SeededRng::new(43);
    let x = randn(&mut rng, &[2, 3, 4, 4]);
    let p = randn(&mut rng, &[3]);
    let bad = randn(&mut rng, &[4]);
    for e in [
        batch_norm_eval(&x, &bad, &p, &p, &p, 1e-5).unwrap_err(),
        batch_norm_eval(&x, &p, &p, &p, &bad, 1e-5).unwrap_err(),
        batch_norm_eval(&randn(&mut rng, &[3]), &p, &p, &p, &p, 1e-5).unwrap_err(),
        batch_norm_eval(&x, &p.to_dtype(DType::F32).unwrap(), &p, &p, &p, 1e-5).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                OpsError::Shape {
                    op: "batch_norm_eval",
                    ..
                } | OpsError::DTypeMismatch {
                    op: "batch_norm_eval",
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = batch_norm_eval(&x, &p, &p, &p, &bad, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("running var") && e.contains("[4]"), "{e}");
}
