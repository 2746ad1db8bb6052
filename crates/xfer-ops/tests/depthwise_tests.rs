//! depthwise_conv2d, TF "SAME" padding and relu6: values against a direct loop and the generic
//! grouped conv2d, gradients against finite differences, errors that name the shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients, max_rel_diff, randn, randn_dtype, values};
use xfer_ops::{
    Conv2dConfig, DepthwiseConfig, OpsError, Padding2d, SeededRng, conv2d, depthwise_conv2d,
    depthwise_conv2d_portable, relu6, relu6_portable, same_padding,
};

fn pad(top: usize, bottom: usize, left: usize, right: usize) -> Padding2d {
    Padding2d {
        top,
        bottom,
        left,
        right,
    }
}

fn dcfg(stride: usize, padding: Padding2d) -> DepthwiseConfig {
    DepthwiseConfig { stride, padding }
}

/// The definition as a direct f64 loop:
/// `y[n,c,i,j] = b[c] + Σ_{p,q} w[c,0,p,q] · x[n, c, s·i + p − top, s·j + q − left]`.
fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, cfg: DepthwiseConfig) -> Tensor {
    let (n, c, h, wd) = x.dims4().unwrap();
    let (_, _, kh, kw) = w.dims4().unwrap();
    let p = cfg.padding;
    let s = cfg.stride;
    let oh = (h + p.top + p.bottom - kh) / s + 1;
    let ow = (wd + p.left + p.right - kw) / s + 1;
    let (xv, wv, bv) = (values(x), values(w), b.map(values));
    let mut y = vec![0f64; n * c * oh * ow];
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[ci]);
                    for a in 0..kh {
                        for bq in 0..kw {
                            let r = (s * i + a) as isize - p.top as isize;
                            let col = (s * j + bq) as isize - p.left as isize;
                            if r < 0 || col < 0 || r >= h as isize || col >= wd as isize {
                                continue;
                            }
                            acc += wv[(ci * kh + a) * kw + bq]
                                * xv[((ni * c + ci) * h + r as usize) * wd + col as usize];
                        }
                    }
                    y[((ni * c + ci) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    Tensor::from_vec(y, (n, c, oh, ow), &Device::Cpu).unwrap()
}

/// (x shape, kernel (KH, KW), config): kernels 3 and 5, stride 1 and 2, symmetric and
/// asymmetric padding (TF "SAME" at even and odd sizes), padding wider than the image.
fn cases() -> Vec<([usize; 4], (usize, usize), DepthwiseConfig)> {
    vec![
        ([2, 3, 8, 8], (3, 3), dcfg(1, Padding2d::uniform(1))),
        ([2, 3, 8, 8], (3, 3), dcfg(2, pad(0, 1, 0, 1))),
        ([2, 3, 8, 8], (5, 5), dcfg(2, pad(1, 2, 1, 2))),
        ([1, 4, 9, 7], (5, 5), dcfg(1, pad(2, 2, 2, 2))),
        (
            [1, 4, 9, 7],
            (3, 3),
            dcfg(2, Padding2d::same(9, 7, 3, 3, 2)),
        ),
        ([2, 2, 7, 10], (5, 3), dcfg(2, pad(2, 1, 0, 3))),
        ([1, 2, 6, 5], (3, 3), dcfg(1, Padding2d::default())),
        ([2, 2, 2, 1], (5, 5), dcfg(1, Padding2d::uniform(2))),
        ([1, 3, 1, 1], (3, 3), dcfg(2, pad(1, 1, 1, 1))),
        ([3, 5, 4, 4], (3, 3), dcfg(3, pad(2, 0, 0, 2))),
    ]
}

#[test]
fn same_padding_follows_tensorflow() {
    assert_eq!(same_padding(224, 3, 2), (0, 1));
    assert_eq!(same_padding(224, 5, 2), (1, 2));
    assert_eq!(same_padding(112, 3, 1), (1, 1));
    assert_eq!(same_padding(7, 5, 1), (2, 2));
    assert_eq!(same_padding(225, 3, 2), (1, 1));
    assert_eq!(same_padding(8, 1, 2), (0, 0));
    assert_eq!(same_padding(1, 3, 2), (1, 1));
    for (size, k, s) in [(224, 3, 2), (113, 5, 2), (7, 3, 1), (9, 5, 3), (1, 5, 2)] {
        let (a, b) = same_padding(size, k, s);
        assert!(a <= b && b <= a + 1);
        assert_eq!(
            (size + a + b - k) / s + 1,
            size.div_ceil(s),
            "{size} {k} {s}"
        );
    }
    let p = Padding2d::same(224, 112, 5, 3, 2);
    assert_eq!(p, pad(1, 2, 0, 1));
    assert!(!p.is_uniform());
    assert!(Padding2d::uniform(2).is_uniform());
}

#[test]
fn depthwise_matches_direct_loop_in_f64_both_paths() {
    let mut rng = SeededRng::new(20);
    for (xs, (kh, kw), cfg) in cases() {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &[xs[1], 1, kh, kw]);
        let b = randn(&mut rng, &[xs[1]]);
        for bias in [None, Some(&b)] {
            let want = reference(&x, &w, bias, cfg);
            let y = depthwise_conv2d(&x, &w, bias, cfg).unwrap();
            assert_eq!(y.dims(), want.dims(), "{xs:?} {cfg:?}");
            let d = max_rel_diff(&y, &want);
            assert!(d < 1e-12, "{xs:?} {cfg:?}: {d}");
            let yp = depthwise_conv2d_portable(&x, &w, bias, cfg).unwrap();
            let d = max_rel_diff(&yp, &want);
            assert!(d < 1e-12, "portable {xs:?} {cfg:?}: {d}");
        }
    }
}

#[test]
fn depthwise_matches_generic_grouped_conv() {
    // Symmetric padding: conv2d with groups = C takes the same arguments; asymmetric: conv2d
    // of the explicitly padded input.
    let mut rng = SeededRng::new(21);
    for (xs, (kh, kw), cfg) in cases() {
        let c = xs[1];
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &[c, 1, kh, kw]);
        let p = cfg.padding;
        let xp = x
            .pad_with_zeros(2, p.top, p.bottom)
            .unwrap()
            .pad_with_zeros(3, p.left, p.right)
            .unwrap();
        let generic = conv2d(
            &xp,
            &w,
            None,
            Conv2dConfig {
                stride: cfg.stride,
                padding: 0,
                dilation: 1,
                groups: c,
            },
        )
        .unwrap();
        let y = depthwise_conv2d(&x, &w, None, cfg).unwrap();
        assert!(max_rel_diff(&y, &generic) < 1e-12, "{xs:?} {cfg:?}");
        if p.is_uniform() {
            let direct = conv2d(
                &x,
                &w,
                None,
                Conv2dConfig {
                    stride: cfg.stride,
                    padding: p.top,
                    dilation: 1,
                    groups: c,
                },
            )
            .unwrap();
            assert!(max_rel_diff(&y, &direct) < 1e-12);
        }
    }
}

#[test]
fn depthwise_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(22);
    for (xs, (kh, kw), cfg) in cases() {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &[xs[1], 1, kh, kw]);
        let b = randn(&mut rng, &[xs[1]]);
        check_gradients(
            |t| depthwise_conv2d(&t[0], &t[1], Some(&t[2]), cfg).map_err(candle_core::Error::wrap),
            &[x.clone(), w.clone(), b],
            1e-7,
            1e-6,
        );
        check_gradients(
            |t| depthwise_conv2d(&t[0], &t[1], None, cfg).map_err(candle_core::Error::wrap),
            &[x, w],
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn depthwise_portable_gradients_match_finite_differences() {
    let mut rng = SeededRng::new(23);
    for (xs, (kh, kw), cfg) in cases().into_iter().take(6) {
        let x = randn(&mut rng, &xs);
        let w = randn(&mut rng, &[xs[1], 1, kh, kw]);
        let b = randn(&mut rng, &[xs[1]]);
        check_gradients(
            |t| {
                depthwise_conv2d_portable(&t[0], &t[1], Some(&t[2]), cfg)
                    .map_err(candle_core::Error::wrap)
            },
            &[x, w, b],
            1e-7,
            1e-6,
        );
    }
}

/// At MobileNetV2 / EfficientNet shapes in f32, forward and all three gradients agree with the
/// generic grouped conv2d (im2col path) within float rounding.
#[test]
fn depthwise_f32_gradients_match_generic_conv_at_mobilenet_shapes() {
    let mut rng = SeededRng::new(24);
    for (c, h, k, s) in [
        (32, 16, 3, 1),
        (96, 16, 3, 2),
        (144, 9, 5, 2),
        (40, 7, 5, 1),
    ] {
        let cfg = dcfg(s, Padding2d::same(h, h, k, k, s));
        let x = Var::from_tensor(&randn_dtype(&mut rng, &[3, c, h, h], DType::F32)).unwrap();
        let w = Var::from_tensor(&randn_dtype(&mut rng, &[c, 1, k, k], DType::F32)).unwrap();
        let b = Var::from_tensor(&randn_dtype(&mut rng, &[c], DType::F32)).unwrap();
        let y = depthwise_conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), cfg).unwrap();
        let r = randn_dtype(&mut rng, y.dims(), DType::F32);
        let g1 = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let p = cfg.padding;
        let xp = x
            .as_tensor()
            .pad_with_zeros(2, p.top, p.bottom)
            .unwrap()
            .pad_with_zeros(3, p.left, p.right)
            .unwrap();
        let y2 = conv2d(
            &xp,
            w.as_tensor(),
            Some(b.as_tensor()),
            Conv2dConfig {
                stride: s,
                padding: 0,
                dilation: 1,
                groups: c,
            },
        )
        .unwrap();
        let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_rel_diff(&y, &y2) < 1e-5);
        for v in [&x, &w, &b] {
            let a = g1.get(v.as_tensor()).unwrap();
            let bb = g2.get(v.as_tensor()).unwrap();
            let d = max_rel_diff(a, bb);
            assert!(d < 1e-4, "{c} {h} {k} {s} {:?}: {d}", v.dims());
        }
    }
}

#[test]
fn depthwise_no_gradient_for_a_data_batch_and_accepts_non_contiguous_input() {
    let mut rng = SeededRng::new(25);
    let x = randn(&mut rng, &[2, 5, 6, 3]);
    let xt = x.transpose(2, 3).unwrap(); // (2, 5, 3, 6), not contiguous
    let w = Var::from_tensor(&randn(&mut rng, &[5, 1, 3, 3])).unwrap();
    let cfg = dcfg(1, Padding2d::uniform(1));
    let y = depthwise_conv2d(&xt, w.as_tensor(), None, cfg).unwrap();
    let want = reference(&xt.contiguous().unwrap(), w.as_tensor(), None, cfg);
    assert!(max_rel_diff(&y, &want) < 1e-12);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(w.as_tensor()).is_some());
    assert!(g.get(&xt).is_none());
}

#[test]
fn depthwise_half_precision_computes_through_f32() {
    let mut rng = SeededRng::new(26);
    let x = randn_dtype(&mut rng, &[1, 4, 6, 6], DType::F32);
    let w = randn_dtype(&mut rng, &[4, 1, 3, 3], DType::F32);
    let cfg = dcfg(2, pad(0, 1, 0, 1));
    let want = depthwise_conv2d(&x, &w, None, cfg).unwrap();
    for dt in [DType::F16, DType::BF16] {
        let y = depthwise_conv2d(
            &x.to_dtype(dt).unwrap(),
            &w.to_dtype(dt).unwrap(),
            None,
            cfg,
        )
        .unwrap();
        assert_eq!(y.dtype(), dt);
        let d = max_rel_diff(&y, &want);
        assert!(d < 5e-2, "{dt:?}: {d}");
    }
}

fn msg(e: OpsError) -> String {
    match &e {
        OpsError::Shape { op, .. } | OpsError::DTypeMismatch { op, .. } => {
            assert_eq!(*op, "depthwise_conv2d")
        }
        other => panic!("unexpected error {other:?}"),
    }
    e.to_string()
}

#[test]
fn depthwise_rejects_bad_shapes_and_dtypes_naming_them() {
    let mut rng = SeededRng::new(27);
    let x = randn(&mut rng, &[1, 4, 5, 5]);
    let cfg = dcfg(1, Padding2d::uniform(1));
    let e = msg(depthwise_conv2d(&x, &randn(&mut rng, &[4, 2, 3, 3]), None, cfg).unwrap_err());
    assert!(e.contains("[4, 2, 3, 3]"), "{e}");
    let e = msg(depthwise_conv2d(&x, &randn(&mut rng, &[3, 1, 3, 3]), None, cfg).unwrap_err());
    assert!(
        e.contains("[3, 1, 3, 3]") && e.contains("[1, 4, 5, 5]"),
        "{e}"
    );
    let e = msg(depthwise_conv2d(
        &randn(&mut rng, &[4, 5, 5]),
        &randn(&mut rng, &[4, 1, 3, 3]),
        None,
        cfg,
    )
    .unwrap_err());
    assert!(e.contains("[4, 5, 5]"), "{e}");
    let w = randn(&mut rng, &[4, 1, 3, 3]);
    let e = msg(depthwise_conv2d(&x, &w, Some(&randn(&mut rng, &[3])), cfg).unwrap_err());
    assert!(e.contains("bias") && e.contains("[3]"), "{e}");
    let e = msg(depthwise_conv2d(&x, &randn(&mut rng, &[4, 1, 9, 9]), None, cfg).unwrap_err());
    assert!(e.contains("[4, 1, 9, 9]"), "{e}");
    let e = msg(depthwise_conv2d(&x, &w, None, dcfg(0, Padding2d::default())).unwrap_err());
    assert!(e.contains("stride"), "{e}");
    let e = msg(depthwise_conv2d(&x, &w.to_dtype(DType::F32).unwrap(), None, cfg).unwrap_err());
    assert!(e.contains("F32") && e.contains("F64"), "{e}");
    let e =
        msg(depthwise_conv2d_portable(&x, &randn(&mut rng, &[3, 1, 3, 3]), None, cfg).unwrap_err());
    assert!(e.contains("[3, 1, 3, 3]"), "{e}");
}

#[test]
fn relu6_values_and_gradient() {
    let x = Tensor::new(&[-2.0f64, 0.0, 0.5, 5.9, 6.0, 7.5, f64::NAN], &Device::Cpu).unwrap();
    let y = values(&relu6(&x).unwrap());
    assert_eq!(&y[..6], &[0.0, 0.0, 0.5, 5.9, 6.0, 6.0]);
    assert!(y[6].is_nan());
    let yp = values(&relu6_portable(&x).unwrap());
    assert_eq!(&yp[..6], &y[..6]);
    // PyTorch's hardtanh rule: no gradient at exactly 0 or 6, nor outside.
    let v = Var::from_tensor(&x.narrow(0, 0, 6).unwrap()).unwrap();
    let g = relu6(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(v.as_tensor()).unwrap()),
        vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn relu6_gradients_match_finite_differences_both_paths() {
    // Values kept away from the kinks at 0 and 6 (finite differences straddle them otherwise).
    let mut rng = SeededRng::new(28);
    let raw = values(&randn(&mut rng, &[3, 40]));
    let v: Vec<f64> = raw
        .iter()
        .map(|&a| {
            let t = 4.0 * a + 3.0;
            if t.abs() < 1e-3 || (t - 6.0).abs() < 1e-3 {
                t + 0.01
            } else {
                t
            }
        })
        .collect();
    let x = Tensor::from_vec(v, (3, 40), &Device::Cpu).unwrap();
    check_gradients(
        |t| relu6(&t[0]).map_err(candle_core::Error::wrap),
        std::slice::from_ref(&x),
        1e-8,
        1e-6,
    );
    check_gradients(
        |t| relu6_portable(&t[0]).map_err(candle_core::Error::wrap),
        &[x],
        1e-8,
        1e-6,
    );
    // f32 takes the fused kernel too and agrees with the composition.
    let xf = randn_dtype(&mut rng, &[1000], DType::F32)
        .affine(5.0, 2.0)
        .unwrap();
    assert!(max_rel_diff(&relu6(&xf).unwrap(), &relu6_portable(&xf).unwrap()) < 1e-6);
}
