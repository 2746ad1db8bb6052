//! conv2d: values against a direct loop and candle's conv2d, gradients against finite
//! differences, errors that name the shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients, check_gradients_sampled, max_rel_diff, randn, randn_dtype, values};
use xfer_ops::{Conv2dConfig, OpsError, SeededRng, conv2d, conv2d_portable};

fn cfg(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        dilation,
        groups,
    }
}

/// The definition, as a direct loop in f64:
/// `y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x[n, g·C/G + c, s·i + d·p − pad, s·j + d·q − pad]`.
fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, c: Conv2dConfig) -> Tensor {
    let (n, ci, h, wd) = x.dims4().unwrap();
    let (o, cg, kh, kw) = w.dims4().unwrap();
    let oh = (h + 2 * c.padding - c.dilation * (kh - 1) - 1) / c.stride + 1;
    let ow = (wd + 2 * c.padding - c.dilation * (kw - 1) - 1) / c.stride + 1;
    let xv = values(x);
    let wv = values(w);
    let bv = b.map(values);
    let og = o / c.groups;
    let mut y = vec![0f64; n * o * oh * ow];
    for ni in 0..n {
        for oi in 0..o {
            let g = oi / og;
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = bv.as_ref().map_or(0.0, |b| b[oi]);
                    for cc in 0..cg {
                        let chan = g * cg + cc;
                        for p in 0..kh {
                            for q in 0..kw {
                                let r =
                                    (c.stride * i + c.dilation * p) as isize - c.padding as isize;
                                let col =
                                    (c.stride * j + c.dilation * q) as isize - c.padding as isize;
                                if r < 0 || col < 0 || r >= h as isize || col >= wd as isize {
                                    continue;
                                }
                                let xi = ((ni * ci + chan) * h + r as usize) * wd + col as usize;
                                let wi = ((oi * cg + cc) * kh + p) * kw + q;
                                s += wv[wi] * xv[xi];
                            }
                        }
                    }
                    y[((ni * o + oi) * oh + i) * ow + j] = s;
                }
            }
        }
    }
    let _ = ci;
    Tensor::from_vec(y, (n, o, oh, ow), &Device::Cpu).unwrap()
}

/// (x shape, weight shape, config): odd sizes, stride 2, padding, dilation, groups.
fn cases() -> Vec<([usize; 4], [usize; 4], Conv2dConfig)> {
    vec![
        ([2, 3, 9, 7], [4, 3, 3, 3], cfg(1, 0, 1, 1)),
        ([2, 3, 9, 7], [4, 3, 3, 3], cfg(2, 1, 1, 1)),
        ([1, 2, 11, 10], [3, 2, 3, 2], cfg(2, 2, 2, 1)),
        ([3, 1, 8, 8], [2, 1, 5, 5], cfg(1, 2, 1, 1)),
        ([2, 4, 7, 9], [6, 2, 3, 3], cfg(1, 1, 1, 2)),
        ([2, 4, 6, 6], [4, 1, 3, 3], cfg(2, 1, 1, 4)),
        ([1, 3, 5, 5], [2, 3, 1, 1], cfg(2, 0, 1, 1)),
        ([2, 2, 4, 6], [3, 2, 4, 6], cfg(1, 0, 1, 1)),
        // Inputs smaller than the padding: whole kernel rows and columns read only zeros
        // (ResNet's conv1 on a 1×1 image).
        ([1, 2, 1, 1], [3, 2, 3, 3], cfg(1, 1, 1, 1)),
        ([2, 1, 2, 1], [2, 1, 7, 7], cfg(2, 3, 1, 1)),
        // Enough samples for several blocks of several samples, the last one ragged.
        ([11, 2, 5, 4], [4, 1, 3, 3], cfg(1, 1, 1, 2)),
        // Pointwise (1×1, stride 1, no padding): one-sample blocks skip im2col/col2im.
        ([1, 4, 5, 6], [6, 4, 1, 1], cfg(1, 0, 1, 1)),
        ([3, 4, 17, 16], [6, 2, 1, 1], cfg(1, 0, 1, 2)),
    ]
}

#[test]
fn conv2d_matches_direct_loop_and_candle_in_f64() {
    let mut rng = SeededRng::new(10);
    for (xs, ws, c) in cases() {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &ws);
        let b = randn(&mut rng, &[ws[0]]);
        let y = conv2d(&x, &w, Some(&b), c).unwrap();
        let want = reference(&x, &w, Some(&b), c);
        let d = max_rel_diff(&y, &want);
        assert!(d < 1e-12, "{xs:?} {ws:?} {c:?}: {d}");
        let candle = x
            .conv2d(&w, c.padding, c.stride, c.dilation, c.groups)
            .unwrap()
            .broadcast_add(&b.reshape((ws[0], 1, 1)).unwrap())
            .unwrap();
        assert!(max_rel_diff(&y, &candle) < 1e-12);
    }
}

#[test]
fn conv2d_matches_candle_within_1e_5_in_f32() {
    let mut rng = SeededRng::new(11);
    for (xs, ws, c) in cases().into_iter().chain([
        ([4, 3, 28, 28], [32, 3, 5, 5], cfg(1, 0, 1, 1)),
        ([4, 32, 12, 12], [48, 32, 5, 5], cfg(1, 0, 1, 1)),
        ([3, 16, 15, 17], [24, 16, 3, 3], cfg(2, 1, 1, 1)),
        ([2, 8, 13, 13], [8, 8, 3, 3], cfg(1, 2, 2, 1)),
    ]) {
        let x = randn_dtype(&mut rng, &xs, DType::F32);
        let w = randn_dtype(&mut rng, &ws, DType::F32);
        let y = conv2d(&x, &w, None, c).unwrap();
        let candle = x
            .conv2d(&w, c.padding, c.stride, c.dilation, c.groups)
            .unwrap();
        // Sums of up to 800 products of N(0,1) values: compare relative to the output scale.
        let scale = values(&candle).iter().fold(1f64, |m, v| m.max(v.abs()));
        let worst = values(&y)
            .iter()
            .zip(values(&candle))
            .map(|(a, b)| (a - b).abs() / scale)
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{xs:?} {ws:?} {c:?}: {worst}");
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(12);
    for (xs, ws, c) in cases() {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &ws);
        let b = randn(&mut rng, &[ws[0]]);
        check_gradients(
            |v| conv2d(&v[0], &v[1], Some(&v[2]), c).map_err(candle_core::Error::wrap),
            &[x, w, b],
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn conv2d_gradient_reaches_layers_before_and_after() {
    // x → conv → tanh → conv: both weights and the input get gradients.
    let mut rng = SeededRng::new(13);
    let x = randn(&mut rng, &[2, 2, 8, 7]);
    let w1 = randn(&mut rng, &[3, 2, 3, 3]);
    let w2 = randn(&mut rng, &[2, 3, 2, 2]);
    check_gradients(
        |v| {
            let h = conv2d(&v[0], &v[1], None, cfg(1, 1, 1, 1))
                .map_err(candle_core::Error::wrap)?
                .tanh()?;
            conv2d(&h, &v[2], None, cfg(2, 0, 1, 1)).map_err(candle_core::Error::wrap)
        },
        &[x, w1, w2],
        1e-7,
        1e-6,
    );
}

#[test]
fn conv2d_accepts_non_contiguous_input() {
    let mut rng = SeededRng::new(14);
    let x = randn(&mut rng, &[2, 3, 6, 5]);
    let xt = x.transpose(2, 3).unwrap(); // (2, 3, 5, 6), strided
    let w = randn(&mut rng, &[2, 3, 3, 3]);
    let y = conv2d(&xt, &w, None, cfg(1, 1, 1, 1)).unwrap();
    let want = reference(&xt.contiguous().unwrap(), &w, None, cfg(1, 1, 1, 1));
    assert!(max_rel_diff(&y, &want) < 1e-12);
}

#[test]
fn conv2d_weight_gradient_accumulates_over_two_uses() {
    let mut rng = SeededRng::new(15);
    let x1 = randn(&mut rng, &[1, 2, 5, 5]);
    let x2 = randn(&mut rng, &[2, 2, 6, 4]);
    let w = randn(&mut rng, &[3, 2, 3, 3]);
    check_gradients(
        |v| {
            let a = conv2d(&x1, &v[0], None, cfg(1, 0, 1, 1)).map_err(candle_core::Error::wrap)?;
            let b = conv2d(&x2, &v[0], None, cfg(1, 1, 1, 1)).map_err(candle_core::Error::wrap)?;
            Tensor::cat(&[a.flatten_all()?, b.flatten_all()?], 0)
        },
        &[w],
        1e-7,
        1e-6,
    );
    let _ = Var::from_tensor(&x1).unwrap();
}

fn shape_error(e: OpsError) -> String {
    match e {
        OpsError::Shape { op, msg } => {
            assert_eq!(op, "conv2d");
            msg
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn conv2d_rejects_wrong_shapes_naming_them() {
    let dev = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &dev).unwrap();
    let e =
        shape_error(conv2d(&z(&[3, 8, 8]), &z(&[2, 3, 3, 3]), None, cfg(1, 0, 1, 1)).unwrap_err());
    assert!(e.contains("[3, 8, 8]"), "{e}");
    let e =
        shape_error(conv2d(&z(&[1, 3, 8, 8]), &z(&[2, 3, 3]), None, cfg(1, 0, 1, 1)).unwrap_err());
    assert!(e.contains("[2, 3, 3]"), "{e}");
    let e = shape_error(
        conv2d(&z(&[1, 4, 8, 8]), &z(&[2, 3, 3, 3]), None, cfg(1, 0, 1, 1)).unwrap_err(),
    );
    assert!(
        e.contains("[1, 4, 8, 8]") && e.contains("[2, 3, 3, 3]"),
        "{e}"
    );
    let e = shape_error(
        conv2d(&z(&[1, 3, 4, 4]), &z(&[2, 3, 5, 5]), None, cfg(1, 0, 1, 1)).unwrap_err(),
    );
    assert!(
        e.contains("[1, 3, 4, 4]") && e.contains("[2, 3, 5, 5]"),
        "{e}"
    );
    let e = shape_error(
        conv2d(
            &z(&[1, 3, 8, 8]),
            &z(&[2, 3, 3, 3]),
            Some(&z(&[3])),
            cfg(1, 0, 1, 1),
        )
        .unwrap_err(),
    );
    assert!(e.contains("[3]"), "{e}");
    let e = shape_error(
        conv2d(&z(&[1, 3, 8, 8]), &z(&[2, 3, 3, 3]), None, cfg(0, 0, 1, 1)).unwrap_err(),
    );
    assert!(e.contains("stride"), "{e}");
    let e = shape_error(
        conv2d(&z(&[1, 4, 8, 8]), &z(&[3, 2, 3, 3]), None, cfg(1, 0, 1, 2)).unwrap_err(),
    );
    assert!(e.contains("groups = 2"), "{e}");
}

#[test]
fn conv2d_rejects_mixed_dtypes() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3), DType::F64, &dev).unwrap();
    assert!(conv2d(&x, &w, None, cfg(1, 0, 1, 1)).is_err());
}

#[test]
fn conv2d_portable_matches_direct_loop_and_finite_differences() {
    let mut rng = SeededRng::new(16);
    for (xs, ws, c) in cases() {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &ws);
        let b = randn(&mut rng, &[ws[0]]);
        let y = conv2d_portable(&x, &w, Some(&b), c).unwrap();
        assert!(max_rel_diff(&y, &reference(&x, &w, Some(&b), c)) < 1e-12);
        check_gradients_sampled(
            |v| conv2d_portable(&v[0], &v[1], Some(&v[2]), c).map_err(candle_core::Error::wrap),
            &[x, w, b],
            1e-7,
            1e-6,
            40,
        );
    }
}

/// Documented contrast: candle's own conv2d backward fails when height and width leave
/// different remainders under the stride; ours (and the portable path) do not.
#[test]
fn candle_conv2d_backward_fails_on_uneven_sizes_ours_does_not() {
    let mut rng = SeededRng::new(17);
    let x = Var::from_tensor(&randn(&mut rng, &[1, 2, 11, 10])).unwrap();
    let w = randn(&mut rng, &[3, 2, 3, 3]);
    let y = x.as_tensor().conv2d(&w, 1, 2, 1, 1).unwrap();
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "candle fixed its conv2d backward"
    );
    let y = conv2d(x.as_tensor(), &w, None, cfg(2, 1, 1, 1)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(x.as_tensor()).unwrap().dims(), [1, 2, 11, 10]);
}

/// A data batch that is not a variable gets no gradient, the weight still gets the right one.
#[test]
fn conv2d_constant_input_gives_weight_gradient_only() {
    let mut rng = SeededRng::new(18);
    let x = randn_dtype(&mut rng, &[5, 3, 12, 11], DType::F32);
    let w = Var::from_tensor(&randn_dtype(&mut rng, &[4, 3, 5, 5], DType::F32)).unwrap();
    let r = randn_dtype(&mut rng, &[5, 4, 8, 7], DType::F32);
    let c = cfg(1, 0, 1, 1);
    let loss = conv2d(&x, w.as_tensor(), None, c)
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    assert!(g.get(&x).is_none());
    let ours = g.get(w.as_tensor()).unwrap().clone();
    let loss = conv2d_portable(&x, w.as_tensor(), None, c)
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap();
    let want = loss.backward().unwrap().get(w.as_tensor()).unwrap().clone();
    let scale = values(&want).iter().fold(1f64, |m, v| m.max(v.abs()));
    let worst = values(&ours)
        .iter()
        .zip(values(&want))
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "{worst}");
}

/// At the DANN LeNet shapes (small batch), f32 gradients of input, weight and bias agree with
/// the portable path.
#[test]
fn conv2d_f32_gradients_match_portable_path_at_lenet_shapes() {
    let mut rng = SeededRng::new(19);
    for (xs, ws) in [
        ([3, 3, 28, 28], [32, 3, 5, 5]),
        ([3, 32, 12, 12], [48, 32, 5, 5]),
    ] {
        let x = Var::from_tensor(&randn_dtype(&mut rng, &xs, DType::F32)).unwrap();
        let w = Var::from_tensor(&randn_dtype(&mut rng, &ws, DType::F32)).unwrap();
        let b = Var::from_tensor(&randn_dtype(&mut rng, &[ws[0]], DType::F32)).unwrap();
        let c = cfg(1, 0, 1, 1);
        let grads = |portable: bool| {
            let f = if portable { conv2d_portable } else { conv2d };
            let y = f(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), c).unwrap();
            let r = SeededRng::new(5)
                .normal(y.dims(), 0.0, 1.0, DType::F32, &Device::Cpu)
                .unwrap();
            let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            [&x, &w, &b].map(|v| g.get(v.as_tensor()).unwrap().clone())
        };
        for (a, b) in grads(false).iter().zip(grads(true).iter()) {
            let scale = values(b).iter().fold(1f64, |m, v| m.max(v.abs()));
            let worst = values(a)
                .iter()
                .zip(values(b))
                .map(|(p, q)| (p - q).abs() / scale)
                .fold(0.0, f64::max);
            assert!(worst < 1e-5, "{xs:?}: {worst}");
        }
    }
}

#[test]
fn conv2d_half_precision_computes_through_f32() {
    let mut rng = SeededRng::new(20);
    let x = randn_dtype(&mut rng, &[2, 3, 7, 6], DType::F32);
    let w = randn_dtype(&mut rng, &[4, 3, 3, 3], DType::F32);
    for dt in [DType::F16, DType::BF16] {
        let (xh, wh) = (x.to_dtype(dt).unwrap(), w.to_dtype(dt).unwrap());
        let wv = Var::from_tensor(&wh).unwrap();
        let y = conv2d(&xh, wv.as_tensor(), None, cfg(2, 1, 1, 1)).unwrap();
        assert_eq!(y.dtype(), dt);
        let want = reference(
            &xh.to_dtype(DType::F64).unwrap(),
            &wh.to_dtype(DType::F64).unwrap(),
            None,
            cfg(2, 1, 1, 1),
        );
        assert!(max_rel_diff(&y, &want) < 0.05, "{dt:?}");
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(wv.as_tensor()).unwrap().dtype(), dt);
    }
}
