//! Pooling: values against direct loops, gradients against finite differences (odd sizes and
//! overlapping windows included), errors naming the shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Device, Tensor};
use common::{check_gradients, max_rel_diff, randn, values};
use xfer_ops::pool::{adaptive_avg_pool2d_portable, avg_pool2d_portable, max_pool2d_portable};
use xfer_ops::{OpsError, SeededRng, adaptive_avg_pool2d, avg_pool2d, max_pool2d};

fn wrap<T>(r: xfer_ops::Result<T>) -> candle_core::Result<T> {
    r.map_err(candle_core::Error::wrap)
}

/// Direct loop over windows `[s·i, s·i + k) × [s·j, s·j + k)` combined by `f`.
fn reference(x: &Tensor, k: usize, s: usize, f: fn(&[f64]) -> f64) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let xv = values(x);
    let mut y = Vec::new();
    for plane in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut win = Vec::new();
                for p in 0..k {
                    for q in 0..k {
                        win.push(xv[(plane * h + s * i + p) * w + s * j + q]);
                    }
                }
                y.push(f(&win));
            }
        }
    }
    Tensor::from_vec(y, (n, c, oh, ow), &Device::Cpu).unwrap()
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// (input shape, window, stride): even, odd (floor), overlapping and k < stride cases.
fn cases() -> Vec<([usize; 4], usize, usize)> {
    vec![
        ([2, 3, 6, 8], 2, 2),
        ([2, 2, 7, 5], 2, 2),
        ([1, 3, 7, 7], 3, 2),
        ([2, 1, 5, 6], 3, 1),
        ([1, 2, 9, 8], 2, 3),
    ]
}

#[test]
fn max_pool2d_matches_direct_loop() {
    let mut rng = SeededRng::new(30);
    for (s, k, st) in cases() {
        let x = randn(&mut rng, &s);
        let y = max_pool2d(&x, k, st).unwrap();
        assert!(
            max_rel_diff(&y, &reference(&x, k, st, max)) == 0.0,
            "{s:?} {k} {st}"
        );
    }
}

#[test]
fn avg_pool2d_matches_direct_loop() {
    let mut rng = SeededRng::new(31);
    for (s, k, st) in cases() {
        let x = randn(&mut rng, &s);
        let y = avg_pool2d(&x, k, st).unwrap();
        assert!(
            max_rel_diff(&y, &reference(&x, k, st, mean)) < 1e-14,
            "{s:?} {k} {st}"
        );
    }
}

#[test]
fn max_pool2d_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(32);
    for (s, k, st) in cases() {
        let x = randn(&mut rng, &s);
        check_gradients(|v| wrap(max_pool2d(&v[0], k, st)), &[x], 1e-8, 1e-6);
    }
}

#[test]
fn avg_pool2d_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(33);
    for (s, k, st) in cases() {
        let x = randn(&mut rng, &s);
        check_gradients(|v| wrap(avg_pool2d(&v[0], k, st)), &[x], 1e-8, 1e-6);
    }
}

#[test]
fn max_pool2d_gradient_goes_to_the_argmax_only() {
    let x = Tensor::new(
        &[[[[1f32, 5.0, 2.0, 0.0], [3.0, 4.0, 9.0, 8.0]]]],
        &Device::Cpu,
    )
    .unwrap();
    let v = candle_core::Var::from_tensor(&x).unwrap();
    let y = max_pool2d(v.as_tensor(), 2, 2).unwrap();
    assert_eq!(values(&y), vec![5.0, 9.0]);
    let r = Tensor::new(&[[[[2f32, 3.0]]]], &Device::Cpu).unwrap();
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(
        values(g.get(v.as_tensor()).unwrap()),
        vec![0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0]
    );
}

#[test]
fn adaptive_avg_pool2d_matches_pytorch_windows() {
    let mut rng = SeededRng::new(34);
    let x = randn(&mut rng, &[2, 3, 5, 7]);
    let y = adaptive_avg_pool2d(&x, 3, 2).unwrap();
    assert_eq!(y.dims(), [2, 3, 3, 2]);
    let xv = values(&x);
    let yv = values(&y);
    // PyTorch: rows floor(i·H/oh) .. ceil((i+1)·H/oh).
    let rws = [(0, 2), (1, 4), (3, 5)];
    let cls = [(0, 4), (3, 7)];
    for plane in 0..6 {
        for (i, &(r0, r1)) in rws.iter().enumerate() {
            for (j, &(c0, c1)) in cls.iter().enumerate() {
                let mut s = 0.0;
                for r in r0..r1 {
                    for c in c0..c1 {
                        s += xv[(plane * 5 + r) * 7 + c];
                    }
                }
                let want = s / ((r1 - r0) * (c1 - c0)) as f64;
                assert!((yv[(plane * 3 + i) * 2 + j] - want).abs() < 1e-14);
            }
        }
    }
    let g = adaptive_avg_pool2d(&x, 1, 1).unwrap();
    assert_eq!(g.dims(), [2, 3, 1, 1]);
    let want = x.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap();
    assert!(max_rel_diff(&g, &want) < 1e-14);
}

#[test]
fn adaptive_avg_pool2d_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(35);
    for (oh, ow) in [(1, 1), (3, 2), (5, 7), (2, 4)] {
        let x = randn(&mut rng, &[2, 2, 5, 7]);
        let fast = adaptive_avg_pool2d(&x, oh, ow).unwrap();
        let portable = adaptive_avg_pool2d_portable(&x, oh, ow).unwrap();
        assert!(max_rel_diff(&fast, &portable) < 1e-14);
        check_gradients(
            |v| wrap(adaptive_avg_pool2d(&v[0], oh, ow)),
            std::slice::from_ref(&x),
            1e-8,
            1e-6,
        );
        check_gradients(
            |v| wrap(adaptive_avg_pool2d_portable(&v[0], oh, ow)),
            &[x],
            1e-8,
            1e-6,
        );
    }
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
fn pools_reject_wrong_shapes_naming_them() {
    let dev = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &dev).unwrap();
    let m = shape_msg(max_pool2d(&z(&[3, 4, 4]), 2, 2).unwrap_err(), "max_pool2d");
    assert!(m.contains("[3, 4, 4]"), "{m}");
    let m = shape_msg(
        max_pool2d(&z(&[1, 1, 3, 3]), 4, 2).unwrap_err(),
        "max_pool2d",
    );
    assert!(m.contains("[1, 1, 3, 3]"), "{m}");
    let m = shape_msg(
        avg_pool2d(&z(&[1, 1, 3, 3]), 2, 0).unwrap_err(),
        "avg_pool2d",
    );
    assert!(m.contains("[1, 1, 3, 3]"), "{m}");
    let m = shape_msg(avg_pool2d(&z(&[2, 2]), 2, 2).unwrap_err(), "avg_pool2d");
    assert!(m.contains("[2, 2]"), "{m}");
    let m = shape_msg(
        adaptive_avg_pool2d(&z(&[1, 2, 3]), 1, 1).unwrap_err(),
        "adaptive_avg_pool2d",
    );
    assert!(m.contains("[1, 2, 3]"), "{m}");
    shape_msg(
        adaptive_avg_pool2d(&z(&[1, 2, 3, 3]), 0, 1).unwrap_err(),
        "adaptive_avg_pool2d",
    );
}

#[test]
fn portable_pools_match_direct_loops_and_finite_differences() {
    let mut rng = SeededRng::new(36);
    for (s, k, st) in cases() {
        let x = randn(&mut rng, &s);
        let y = max_pool2d_portable(&x, k, st).unwrap();
        assert!(max_rel_diff(&y, &reference(&x, k, st, max)) == 0.0);
        let y = avg_pool2d_portable(&x, k, st).unwrap();
        assert!(max_rel_diff(&y, &reference(&x, k, st, mean)) < 1e-14);
        check_gradients(
            |v| wrap(max_pool2d_portable(&v[0], k, st)),
            std::slice::from_ref(&x),
            1e-8,
            1e-6,
        );
        check_gradients(
            |v| wrap(avg_pool2d_portable(&v[0], k, st)),
            &[x],
            1e-8,
            1e-6,
        );
    }
}

/// Documented contrast: candle's own max-pool backward divides the true gradient by k², and
/// its pooling backward refuses overlapping windows.
#[test]
fn candle_pool_backward_is_wrong_ours_is_right() {
    let x = Tensor::new(
        &[[[[1f32, 5.0, 2.0, 0.0], [3.0, 4.0, 9.0, 8.0]]]],
        &Device::Cpu,
    )
    .unwrap();
    let v = candle_core::Var::from_tensor(&x).unwrap();
    let g = v
        .as_tensor()
        .max_pool2d(2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(v.as_tensor()).unwrap()),
        vec![0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.25, 0.0],
        "candle fixed its max-pool backward"
    );
    let g = max_pool2d(v.as_tensor(), 2, 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(v.as_tensor()).unwrap()),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    );
    let y = v.as_tensor().avg_pool2d_with_stride(2, 1).unwrap();
    assert!(y.sum_all().unwrap().backward().is_err());
    let y = avg_pool2d(v.as_tensor(), 2, 1).unwrap();
    assert!(y.sum_all().unwrap().backward().is_ok());
}

#[test]
fn max_pool2d_ties_send_the_gradient_to_the_first_maximum() {
    let x = Tensor::new(&[[[[2f64, 2.0], [1.0, 2.0]]]], &Device::Cpu).unwrap();
    let v = candle_core::Var::from_tensor(&x).unwrap();
    let g = max_pool2d(v.as_tensor(), 2, 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(v.as_tensor()).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn max_pool2d_propagates_nan() {
    let x = Tensor::new(&[[[[1f32, f32::NAN], [3.0, 2.0]]]], &Device::Cpu).unwrap();
    assert!(values(&max_pool2d(&x, 2, 2).unwrap())[0].is_nan());
}

#[test]
fn pools_in_half_precision_compute_through_f32() {
    let mut rng = SeededRng::new(37);
    let x = randn(&mut rng, &[2, 3, 7, 6]);
    for dt in [DType::F16, DType::BF16] {
        let xh = x.to_dtype(dt).unwrap();
        let v = candle_core::Var::from_tensor(&xh).unwrap();
        for y in [
            max_pool2d(v.as_tensor(), 3, 2).unwrap(),
            avg_pool2d(v.as_tensor(), 2, 2).unwrap(),
            adaptive_avg_pool2d(v.as_tensor(), 2, 3).unwrap(),
        ] {
            assert_eq!(y.dtype(), dt);
            let g = y.sum_all().unwrap().backward().unwrap();
            assert_eq!(g.get(v.as_tensor()).unwrap().dtype(), dt);
        }
        let want = reference(&xh.to_dtype(DType::F64).unwrap(), 3, 2, max);
        assert!(max_rel_diff(&max_pool2d(&xh, 3, 2).unwrap(), &want) == 0.0);
    }
}
