//! linear, relu, add_relu, sq_norm, sq_dist, max_pool2d_padded: values against the composed
//! candle ops (or direct loops), gradients against finite differences, gradients only for
//! the inputs that need one, errors naming the shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients, max_rel_diff, randn, randn_dtype, values};
use xfer_ops::{
    OpsError, SeededRng, add_relu, linear, linear_portable, max_pool2d_padded, relu, sq_dist,
    sq_norm,
};

fn wrap<T>(r: xfer_ops::Result<T>) -> candle_core::Result<T> {
    r.map_err(candle_core::Error::wrap)
}

/// `x` with every |value| below 1e-3 pushed away from zero (finite differences across the
/// kink of relu would be meaningless).
fn away_from_zero(x: &Tensor) -> Tensor {
    let v: Vec<f64> = values(x)
        .into_iter()
        .map(|v| if v.abs() < 1e-3 { v + 0.01 } else { v })
        .collect();
    Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap()
}

#[test]
fn linear_matches_matmul_plus_bias() {
    let mut rng = SeededRng::new(1);
    for (xs, out) in [
        (vec![5, 7], 3),
        (vec![2, 3, 7], 4),
        (vec![7], 2),
        (vec![33, 70], 65),
    ] {
        let inp = *xs.last().unwrap();
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &[out, inp]);
        let b = randn(&mut rng, &[out]);
        for bias in [Some(&b), None] {
            let y = linear(&x, &w, bias).unwrap();
            let want = linear_portable(&x, &w, bias).unwrap();
            assert_eq!(y.dims(), want.dims());
            assert!(max_rel_diff(&y, &want) < 1e-12, "{xs:?} → {out}");
        }
    }
}

#[test]
fn linear_f32_matches_portable_values_and_gradients() {
    let mut rng = SeededRng::new(2);
    let x = Var::from_tensor(&randn_dtype(&mut rng, &[64, 96], DType::F32)).unwrap();
    let w = Var::from_tensor(&randn_dtype(&mut rng, &[80, 96], DType::F32)).unwrap();
    let b = Var::from_tensor(&randn_dtype(&mut rng, &[80], DType::F32)).unwrap();
    let r = randn_dtype(&mut rng, &[64, 80], DType::F32);
    let run = |f: fn(&Tensor, &Tensor, Option<&Tensor>) -> xfer_ops::Result<Tensor>| {
        let y = f(x.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let grads: Vec<Tensor> = [&x, &w, &b]
            .iter()
            .map(|v| g.get(v.as_tensor()).unwrap().clone())
            .collect();
        (y, grads)
    };
    let (y, g) = run(linear);
    let (y0, g0) = run(linear_portable);
    assert!(max_rel_diff(&y, &y0) < 1e-5);
    for (a, b) in g.iter().zip(&g0) {
        assert!(max_rel_diff(a, b) < 1e-5);
    }
}

#[test]
fn linear_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(3);
    let x = randn(&mut rng, &[2, 3, 5]);
    let w = randn(&mut rng, &[4, 5]);
    let b = randn(&mut rng, &[4]);
    check_gradients(
        |v| wrap(linear(&v[0], &v[1], Some(&v[2]))),
        &[x.clone(), w.clone(), b],
        1e-8,
        1e-6,
    );
    check_gradients(|v| wrap(linear(&v[0], &v[1], None)), &[x, w], 1e-8, 1e-6);
}

#[test]
fn linear_gives_no_gradient_to_a_data_batch() {
    let mut rng = SeededRng::new(4);
    let x = randn(&mut rng, &[6, 5]);
    let w = Var::from_tensor(&randn(&mut rng, &[3, 5])).unwrap();
    let b = Var::from_tensor(&randn(&mut rng, &[3])).unwrap();
    let g = linear(&x, w.as_tensor(), Some(b.as_tensor()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&x).is_none(), "the data batch got a gradient");
    // ∂Σy/∂b = number of rows; ∂Σy/∂W[o, i] = Σ_rows x[:, i].
    assert!(
        values(g.get(b.as_tensor()).unwrap())
            .iter()
            .all(|&v| v == 6.0)
    );
    let col_sums = values(&x.sum(0).unwrap());
    for row in values(g.get(w.as_tensor()).unwrap()).chunks(5) {
        for (a, e) in row.iter().zip(&col_sums) {
            assert!((a - e).abs() < 1e-12);
        }
    }
}

#[test]
fn linear_refuses_mismatched_shapes_naming_them() {
    let x = Tensor::zeros((4, 5), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((3, 6), DType::F32, &Device::Cpu).unwrap();
    let err = linear(&x, &w, None).unwrap_err();
    assert!(matches!(err, OpsError::Shape { op: "linear", .. }));
    assert!(err.to_string().contains("[4, 5]") && err.to_string().contains("[3, 6]"));
    let w = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(
        linear(&x, &w, Some(&b))
            .unwrap_err()
            .to_string()
            .contains("[4]")
    );
    let b64 = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(
        linear(&x, &w, Some(&b64)).unwrap_err(),
        OpsError::DTypeMismatch { .. }
    ));
}

#[test]
fn linear_half_precision_runs_through_f32() {
    let mut rng = SeededRng::new(5);
    let x = randn(&mut rng, &[4, 8]);
    let w = randn(&mut rng, &[3, 8]);
    let y = linear(&x, &w, None).unwrap();
    let yh = linear(
        &x.to_dtype(DType::BF16).unwrap(),
        &w.to_dtype(DType::BF16).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(yh.dtype(), DType::BF16);
    assert!(max_rel_diff(&yh, &y) < 0.1);
}

#[test]
fn relu_matches_candle_and_keeps_nan() {
    let mut rng = SeededRng::new(6);
    let x = randn(&mut rng, &[3, 70_000]);
    assert_eq!(values(&relu(&x).unwrap()), values(&x.relu().unwrap()));
    let x = Tensor::new(&[-1f32, 0.0, 2.0, f32::NAN], &Device::Cpu).unwrap();
    let y = values(&relu(&x).unwrap());
    assert_eq!(&y[..3], &[0.0, 0.0, 2.0]);
    assert!(y[3].is_nan());
}

#[test]
fn relu_gradient_matches_finite_differences_and_is_zero_at_zero() {
    let mut rng = SeededRng::new(7);
    let x = away_from_zero(&randn(&mut rng, &[4, 6]));
    check_gradients(|v| wrap(relu(&v[0])), &[x], 1e-8, 1e-6);
    // PyTorch's rule: no gradient where the input is exactly 0.
    let x = Var::from_tensor(&Tensor::new(&[-1f64, 0.0, 3.0], &Device::Cpu).unwrap()).unwrap();
    let g = relu(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(values(g.get(x.as_tensor()).unwrap()), vec![0.0, 0.0, 1.0]);
}

#[test]
fn add_relu_matches_relu_of_sum_with_gradients_to_both() {
    let mut rng = SeededRng::new(8);
    let a = randn(&mut rng, &[2, 3, 5, 5]);
    let b = randn(&mut rng, &[2, 3, 5, 5]);
    let y = add_relu(&a, &b).unwrap();
    assert_eq!(values(&y), values(&(&a + &b).unwrap().relu().unwrap()));
    let s = away_from_zero(&(&a + &b).unwrap());
    let a = (&s - &b).unwrap();
    check_gradients(|v| wrap(add_relu(&v[0], &v[1])), &[a, b], 1e-8, 1e-6);
    let e = add_relu(&randn(&mut rng, &[2, 3]), &randn(&mut rng, &[3, 2])).unwrap_err();
    assert!(e.to_string().contains("[2, 3]") && e.to_string().contains("[3, 2]"));
}

#[test]
fn sq_norm_and_sq_dist_match_the_composed_sums() {
    let mut rng = SeededRng::new(9);
    // Long enough for the parallel blocks.
    for shape in [vec![3, 5], vec![300_001]] {
        let x = randn(&mut rng, &shape);
        let a = randn(&mut rng, &shape);
        let n = sq_norm(&x).unwrap();
        let d = sq_dist(&x, &a).unwrap();
        assert_eq!(n.dims(), &[] as &[usize]);
        let want_n = x
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want_d = (&x - &a).unwrap().sqr().unwrap().sum_all().unwrap();
        let want_d = want_d.to_scalar::<f64>().unwrap();
        assert!((n.to_scalar::<f64>().unwrap() - want_n).abs() < 1e-9 * want_n);
        assert!((d.to_scalar::<f64>().unwrap() - want_d).abs() < 1e-9 * want_d);
    }
}

#[test]
fn sq_norm_and_sq_dist_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(10);
    let x = randn(&mut rng, &[3, 4]);
    let a = randn(&mut rng, &[3, 4]);
    check_gradients(
        |v| wrap(sq_norm(&v[0])),
        std::slice::from_ref(&x),
        1e-7,
        1e-6,
    );
    // Both the tensor and (when it is a variable) the anchor.
    check_gradients(|v| wrap(sq_dist(&v[0], &v[1])), &[x, a], 1e-7, 1e-6);
}

#[test]
fn sq_dist_gives_no_gradient_to_a_frozen_anchor() {
    let mut rng = SeededRng::new(11);
    let w = Var::from_tensor(&randn(&mut rng, &[5])).unwrap();
    let a = randn(&mut rng, &[5]);
    let g = (sq_dist(w.as_tensor(), &a).unwrap() * 3.0)
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&a).is_none(), "the frozen anchor got a gradient");
    let want: Vec<f64> = values(w.as_tensor())
        .iter()
        .zip(values(&a))
        .map(|(w, a)| 6.0 * (w - a))
        .collect();
    for (got, e) in values(g.get(w.as_tensor()).unwrap()).iter().zip(want) {
        assert!((got - e).abs() < 1e-12);
    }
}

#[test]
fn sq_norm_of_half_precision_is_f32_and_does_not_overflow() {
    // 300² · 4 = 360000 > 65504, the largest f16.
    let x = Tensor::new(&[300f32, 300.0, 300.0, 300.0], &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap();
    let n = sq_norm(&x).unwrap();
    assert_eq!(n.dtype(), DType::F32);
    assert_eq!(n.to_scalar::<f32>().unwrap(), 360_000.0);
    let z = x.zeros_like().unwrap();
    assert_eq!(
        sq_dist(&x, &z).unwrap().to_scalar::<f32>().unwrap(),
        360_000.0
    );
    let e = sq_dist(&x, &Tensor::zeros(3, DType::F16, &Device::Cpu).unwrap()).unwrap_err();
    assert!(e.to_string().contains("[4]") && e.to_string().contains("[3]"));
}

/// `torch.nn.MaxPool2d(k, s, p)` with loops: windows clipped to the input, first maximum.
fn padded_reference(x: &Tensor, k: usize, s: usize, p: usize) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let xv = values(x);
    let mut y = Vec::new();
    for plane in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for a in 0..k {
                    for b in 0..k {
                        let (r, q) = (
                            (s * i + a) as isize - p as isize,
                            (s * j + b) as isize - p as isize,
                        );
                        if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                            m = m.max(xv[(plane * h + r as usize) * w + q as usize]);
                        }
                    }
                }
                y.push(m);
            }
        }
    }
    Tensor::from_vec(y, (n, c, oh, ow), &Device::Cpu).unwrap()
}

#[test]
fn max_pool2d_padded_matches_loops_on_odd_sizes() {
    let mut rng = SeededRng::new(12);
    for (shape, k, s, p) in [
        ([2, 3, 8, 8], 3, 2, 1),
        ([1, 2, 7, 9], 3, 2, 1),
        ([1, 1, 5, 6], 2, 1, 1),
        ([2, 2, 6, 5], 5, 3, 2),
        ([1, 1, 4, 4], 2, 2, 0),
    ] {
        let x = randn(&mut rng, &shape);
        let y = max_pool2d_padded(&x, k, s, p).unwrap();
        let want = padded_reference(&x, k, s, p);
        assert_eq!(y.dims(), want.dims(), "{shape:?} k{k} s{s} p{p}");
        assert_eq!(values(&y), values(&want), "{shape:?} k{k} s{s} p{p}");
    }
}

#[test]
fn max_pool2d_padded_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(13);
    let x = randn(&mut rng, &[1, 2, 7, 6]);
    check_gradients(
        |v| wrap(max_pool2d_padded(&v[0], 3, 2, 1)),
        &[x],
        1e-8,
        1e-6,
    );
}

#[test]
fn max_pool2d_padded_routes_ties_to_the_first_maximum() {
    // All equal: every window's first real cell gets its gradient (PyTorch's routing).
    let x =
        Var::from_tensor(&Tensor::ones((1, 1, 4, 4), DType::F64, &Device::Cpu).unwrap()).unwrap();
    let g = max_pool2d_padded(x.as_tensor(), 3, 2, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // Windows start at padded (0,0), (0,2), (2,0), (2,2) → first real cells (0,0), (0,1),
    // (1,0), (1,1).
    let mut want = vec![0.0; 16];
    for i in [0, 1, 4, 5] {
        want[i] = 1.0;
    }
    assert_eq!(values(g.get(x.as_tensor()).unwrap()), want);
}

#[test]
fn max_pool2d_padded_refuses_padding_over_half_the_window() {
    let x = Tensor::zeros((1, 1, 5, 5), DType::F32, &Device::Cpu).unwrap();
    let e = max_pool2d_padded(&x, 3, 2, 2).unwrap_err();
    assert!(matches!(
        e,
        OpsError::Shape {
            op: "max_pool2d",
            ..
        }
    ));
    assert!(e.to_string().contains("[1, 1, 5, 5]"));
}
