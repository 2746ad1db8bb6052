//! Device parity of every xfer-ops op: forward and backward on the device named by
//! `XFER_DEVICE` (`cpu` when unset, `cuda`, `cuda:N`, `metal`) against the CPU.
//!
//! Each case builds its inputs on the CPU from a fixed seed, runs the op once on the CPU and
//! once on copies of the inputs on the device, takes `L = Σ_k Σ y_k ⊙ R_k` over the outputs
//! `y_k` with fixed random weights `R_k` (a plain sum would hide errors of shift-invariant ops),
//! and compares every output and the gradient of `L` for every input. On the CPU this compares
//! the CPU with itself (the harness still runs); on CUDA the non-CPU paths run: the storage's
//! affine for `grad_reverse`, `conv2d_portable`, `linear_portable`, candle's `relu`, the
//! composed softmax / log-softmax / layer norm / batch norm / squared norms and the
//! `index_select` pooling. A further test runs those portable paths on the CPU against the CPU
//! kernels, so the formulas CUDA uses are checked on every machine.
//!
//! Tolerance, per tensor: `max_i |dev_i − cpu_i| ≤ tol · max_i |cpu_i|` with `tol = 1e-4` for
//! f32 and `1e-10` for f64 (the kernels sum in different orders; a wrong formula is off by
//! O(1)). A gradient must reach an input on both devices or on neither.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::device::device_from_env;
use xfer_ops::{
    Conv2dConfig, SeededRng, adaptive_avg_pool2d, add_relu, avg_pool2d, batch_norm_train, conv2d,
    grad_reverse, layer_norm, linear, log_softmax, max_pool2d, max_pool2d_padded, relu, softmax,
    sq_dist, sq_norm,
};

/// The device under test: `XFER_DEVICE`, the CPU by default.
fn device() -> Device {
    device_from_env().expect("XFER_DEVICE names a device this build can open")
}

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        _ => 1e-4,
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `max |a − b| / max |b|` (0 when both are all zeros).
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (values(a), values(b));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}

/// Outputs and per-input gradients (on the CPU) of `f` run on `dev`.
type Run = (Vec<Tensor>, Vec<Option<Tensor>>);

fn run_on<F>(dev: &Device, inputs: &[Tensor], f: &F) -> Run
where
    F: Fn(&[Tensor]) -> xfer_ops::Result<Vec<Tensor>>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(dev).unwrap()).unwrap())
        .collect();
    let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let outs = f(&xs).unwrap();
    let mut rng = SeededRng::new(0x9a7);
    let mut loss: Option<Tensor> = None;
    for y in &outs {
        assert_eq!(
            y.device().location(),
            dev.location(),
            "output left the device"
        );
        let r = rng
            .normal(y.dims(), 0.0, 1.0, y.dtype(), &Device::Cpu)
            .unwrap()
            .to_device(dev)
            .unwrap();
        let term = (y * r).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => (l + term).unwrap(),
        });
    }
    let grads = loss.expect("at least one output").backward().unwrap();
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    (
        outs.iter().map(cpu).collect(),
        vars.iter()
            .map(|v| grads.get(v.as_tensor()).map(cpu))
            .collect(),
    )
}

/// Runs `f` on the CPU and on the device under test and compares outputs and gradients.
fn parity<F>(what: &str, inputs: Vec<Tensor>, f: F)
where
    F: Fn(&[Tensor]) -> xfer_ops::Result<Vec<Tensor>>,
{
    compare(what, &inputs, &f, &f, &device());
}

/// Runs `reference` on the CPU and `under_test` on `dev`, compares outputs and gradients
/// within the dtype's tolerance (panics naming the first tensor out of it).
fn compare<F, G>(what: &str, inputs: &[Tensor], reference: &F, under_test: &G, dev: &Device)
where
    F: Fn(&[Tensor]) -> xfer_ops::Result<Vec<Tensor>>,
    G: Fn(&[Tensor]) -> xfer_ops::Result<Vec<Tensor>>,
{
    let dtype = inputs[0].dtype();
    let tol = tolerance(dtype);
    let (cpu_out, cpu_grad) = run_on(&Device::Cpu, inputs, reference);
    let (dev_out, dev_grad) = run_on(dev, inputs, under_test);
    assert_eq!(dev_out.len(), cpu_out.len(), "{what}: number of outputs");
    let mut worst = 0.0f64;
    for (k, (d, c)) in dev_out.iter().zip(&cpu_out).enumerate() {
        let e = rel_err(d, c);
        assert!(
            e <= tol,
            "{what} {dtype:?} on {:?}: output {k} {:?} differs from the CPU by {e:e} (tol {tol:e})",
            dev.location(),
            c.dims()
        );
        worst = worst.max(e);
    }
    for (i, (d, c)) in dev_grad.iter().zip(&cpu_grad).enumerate() {
        match (d, c) {
            (Some(d), Some(c)) => {
                let e = rel_err(d, c);
                assert!(
                    e <= tol,
                    "{what} {dtype:?} on {:?}: gradient of input {i} {:?} differs from the CPU by {e:e} (tol {tol:e})",
                    dev.location(),
                    c.dims()
                );
                worst = worst.max(e);
            }
            (None, None) => {}
            (d, c) => panic!(
                "{what} {dtype:?} on {:?}: gradient of input {i} on the device: {}, on the CPU: {}",
                dev.location(),
                d.is_some(),
                c.is_some()
            ),
        }
    }
    println!(
        "parity {what} {dtype:?} on {:?}: max relative error {worst:.2e} (tol {tol:.0e})",
        dev.location()
    );
}

fn randn(rng: &mut SeededRng, shape: &[usize], dtype: DType) -> Tensor {
    rng.normal(shape, 0.0, 1.0, dtype, &Device::Cpu).unwrap()
}

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

#[test]
fn grad_reverse_is_identity_forward_and_negated_scaled_gradient_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(1);
        let x = randn(&mut rng, &[3, 5, 4], dtype);
        parity("grad_reverse(0.7)", vec![x.clone()], |xs| {
            Ok(vec![grad_reverse(&xs[0], 0.7)?])
        });
        // A strided (transposed) view: the storage's affine must follow the layout.
        parity(
            "grad_reverse(1.5) of a transposed view",
            vec![x.clone()],
            |xs| Ok(vec![grad_reverse(&xs[0].transpose(1, 2)?, 1.5)?]),
        );
        // λ = 0 stops the gradient on every device (no gradient at all, not zeros).
        parity("grad_reverse(0)", vec![x], |xs| {
            Ok(vec![grad_reverse(&xs[0], 0.0)?])
        });
    }
}

/// What, input shape, weight shape, whether with a bias, the configuration.
type ConvCase = (&'static str, [usize; 4], [usize; 4], bool, Conv2dConfig);

#[test]
fn conv2d_forward_and_backward_match_the_cpu_on_device() {
    let cases: [ConvCase; 5] = [
        (
            "conv2d 3x3 stride 2 pad 1, 11x10 input, bias",
            [2, 4, 11, 10],
            [6, 4, 3, 3],
            true,
            Conv2dConfig {
                stride: 2,
                padding: 1,
                ..Default::default()
            },
        ),
        (
            "conv2d groups 2 dilation 2 pad 2",
            [2, 4, 9, 8],
            [6, 2, 3, 3],
            false,
            Conv2dConfig {
                padding: 2,
                dilation: 2,
                groups: 2,
                ..Default::default()
            },
        ),
        (
            "conv2d 1x1 stride 2 (ResNet downsample)",
            [2, 8, 7, 7],
            [16, 8, 1, 1],
            false,
            Conv2dConfig {
                stride: 2,
                ..Default::default()
            },
        ),
        (
            "conv2d 7x7 stride 2 pad 3 (ResNet stem)",
            [2, 3, 16, 16],
            [8, 3, 7, 7],
            false,
            Conv2dConfig {
                stride: 2,
                padding: 3,
                ..Default::default()
            },
        ),
        (
            "conv2d 5x5 (LeNet), bias",
            [3, 3, 14, 14],
            [5, 3, 5, 5],
            true,
            Conv2dConfig::default(),
        ),
    ];
    for dtype in DTYPES {
        for (what, xs, ws, with_bias, cfg) in cases {
            let mut rng = SeededRng::new(2);
            let mut inputs = vec![randn(&mut rng, &xs, dtype), randn(&mut rng, &ws, dtype)];
            if with_bias {
                inputs.push(randn(&mut rng, &[ws[0]], dtype));
            }
            parity(what, inputs, |t| {
                Ok(vec![conv2d(&t[0], &t[1], t.get(2), cfg)?])
            });
        }
    }
}

#[test]
fn softmax_and_log_softmax_match_the_cpu_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(3);
        let x = randn(&mut rng, &[2, 3, 9], dtype);
        parity("softmax", vec![x.clone()], |t| Ok(vec![softmax(&t[0])?]));
        parity("log_softmax", vec![x.clone()], |t| {
            Ok(vec![log_softmax(&t[0])?])
        });
        // Large logits: both paths subtract the row maximum.
        let big = (x * 40.0).unwrap();
        parity("softmax of large logits", vec![big.clone()], |t| {
            Ok(vec![softmax(&t[0])?])
        });
        parity("log_softmax of large logits", vec![big], |t| {
            Ok(vec![log_softmax(&t[0])?])
        });
    }
}

#[test]
fn layer_norm_matches_the_cpu_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(4);
        let inputs = vec![
            randn(&mut rng, &[4, 6, 10], dtype),
            randn(&mut rng, &[10], dtype),
            randn(&mut rng, &[10], dtype),
        ];
        parity("layer_norm", inputs, |t| {
            Ok(vec![layer_norm(&t[0], &t[1], &t[2], 1e-5)?])
        });
    }
}

#[test]
fn pooling_matches_the_cpu_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(5);
        // Odd sizes: the windows do not tile the input (candle's own backward is wrong there).
        let x = randn(&mut rng, &[2, 3, 7, 9], dtype);
        parity("max_pool2d k2 s2", vec![x.clone()], |t| {
            Ok(vec![max_pool2d(&t[0], 2, 2)?])
        });
        parity("max_pool2d k3 s2 (overlapping)", vec![x.clone()], |t| {
            Ok(vec![max_pool2d(&t[0], 3, 2)?])
        });
        parity("avg_pool2d k2 s2", vec![x.clone()], |t| {
            Ok(vec![avg_pool2d(&t[0], 2, 2)?])
        });
        parity("avg_pool2d k3 s1", vec![x.clone()], |t| {
            Ok(vec![avg_pool2d(&t[0], 3, 1)?])
        });
        parity("adaptive_avg_pool2d to 3x2", vec![x.clone()], |t| {
            Ok(vec![adaptive_avg_pool2d(&t[0], 3, 2)?])
        });
        parity("adaptive_avg_pool2d to 1x1", vec![x.clone()], |t| {
            Ok(vec![adaptive_avg_pool2d(&t[0], 1, 1)?])
        });
        parity("max_pool2d_padded k3 s2 p1 (ResNet stem)", vec![x], |t| {
            Ok(vec![max_pool2d_padded(&t[0], 3, 2, 1)?])
        });
    }
}

#[test]
fn batch_norm_train_matches_the_cpu_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(6);
        for (what, shape) in [
            ("batch_norm_train (N, C, H, W)", vec![3, 4, 5, 6]),
            ("batch_norm_train (N, C)", vec![8, 5]),
        ] {
            let c = shape[1];
            let inputs = vec![
                randn(&mut rng, &shape, dtype),
                randn(&mut rng, &[c], dtype),
                randn(&mut rng, &[c], dtype),
            ];
            // Outputs: y, the batch mean and the unbiased variance (both detached).
            parity(what, inputs, |t| {
                let (y, mu, var) = batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?;
                Ok(vec![y, mu, var])
            });
        }
    }
}

#[test]
fn linear_relu_and_squared_norms_match_the_cpu_on_device() {
    for dtype in DTYPES {
        let mut rng = SeededRng::new(7);
        let x = randn(&mut rng, &[6, 10], dtype);
        let x3 = randn(&mut rng, &[2, 3, 10], dtype);
        let w = randn(&mut rng, &[7, 10], dtype);
        let b = randn(&mut rng, &[7], dtype);
        parity("linear with bias", vec![x.clone(), w.clone(), b], |t| {
            Ok(vec![linear(&t[0], &t[1], Some(&t[2]))?])
        });
        parity(
            "linear without bias, (2, 3, in) input",
            vec![x3, w.clone()],
            |t| Ok(vec![linear(&t[0], &t[1], None)?]),
        );
        parity("relu", vec![x.clone()], |t| Ok(vec![relu(&t[0])?]));
        let y = randn(&mut rng, &[6, 10], dtype);
        parity("add_relu", vec![x.clone(), y], |t| {
            Ok(vec![add_relu(&t[0], &t[1])?])
        });
        parity("sq_norm", vec![w.clone()], |t| Ok(vec![sq_norm(&t[0])?]));
        let anchor = randn(&mut rng, &[7, 10], dtype);
        parity("sq_dist", vec![w, anchor], |t| {
            Ok(vec![sq_dist(&t[0], &t[1])?])
        });
    }
}

#[test]
fn the_device_under_test_is_the_one_xfer_device_names() {
    let dev = device();
    match std::env::var("XFER_DEVICE") {
        Ok(s) if s.trim().to_ascii_lowercase().starts_with("cuda") => assert!(dev.is_cuda()),
        Ok(s) if s.trim().to_ascii_lowercase().starts_with("metal") => assert!(dev.is_metal()),
        Ok(s) if !s.trim().is_empty() && !s.trim().eq_ignore_ascii_case("cpu") => {}
        _ => assert!(dev.is_cpu()),
    }
    println!("device under test: {:?}", dev.location());
}

/// An op as a plain function of its inputs.
type Op = fn(&[Tensor]) -> xfer_ops::Result<Vec<Tensor>>;
/// What, input shapes, the CPU kernel, the portable path.
type Case = (&'static str, Vec<Vec<usize>>, Op, Op);

/// The paths a non-CPU device takes (`conv2d_portable`, the composed softmax / log-softmax /
/// layer norm, the `index_select` pooling), run on the CPU, against the CPU kernels: the
/// formulas CUDA runs are checked on every machine, whatever `XFER_DEVICE` says.
#[test]
fn portable_paths_run_on_the_cpu_match_the_cpu_kernels() {
    use xfer_ops::conv::conv2d_portable;
    use xfer_ops::linear::linear_portable;
    use xfer_ops::norm::{
        batch_norm_train_portable, layer_norm_portable, log_softmax_portable, softmax_portable,
    };
    use xfer_ops::pool::{adaptive_avg_pool2d_portable, avg_pool2d_portable, max_pool2d_portable};
    let cases: [Case; 13] = [
        (
            "conv2d vs conv2d_portable (stride 2, pad 1, dilation 2, groups 2)",
            vec![vec![2, 4, 11, 10], vec![6, 2, 3, 3], vec![6]],
            |t| Ok(vec![conv2d(&t[0], &t[1], Some(&t[2]), cfg_for_cases())?]),
            |t| {
                Ok(vec![conv2d_portable(
                    &t[0],
                    &t[1],
                    Some(&t[2]),
                    cfg_for_cases(),
                )?])
            },
        ),
        (
            "linear vs linear_portable",
            vec![vec![2, 3, 10], vec![7, 10], vec![7]],
            |t| Ok(vec![linear(&t[0], &t[1], Some(&t[2]))?]),
            |t| Ok(vec![linear_portable(&t[0], &t[1], Some(&t[2]))?]),
        ),
        (
            "relu vs candle's relu",
            vec![vec![6, 10]],
            |t| Ok(vec![relu(&t[0])?]),
            |t| Ok(vec![t[0].relu()?]),
        ),
        (
            "add_relu vs (a + b).relu()",
            vec![vec![6, 10], vec![6, 10]],
            |t| Ok(vec![add_relu(&t[0], &t[1])?]),
            |t| Ok(vec![(&t[0] + &t[1])?.relu()?]),
        ),
        (
            "sq_dist vs (x - a).sqr().sum_all()",
            vec![vec![7, 10], vec![7, 10]],
            |t| Ok(vec![sq_dist(&t[0], &t[1])?]),
            |t| Ok(vec![(&t[0] - &t[1])?.sqr()?.sum_all()?]),
        ),
        (
            "batch_norm_train vs batch_norm_train_portable",
            vec![vec![3, 4, 5, 6], vec![4], vec![4]],
            |t| {
                let (y, mu, var) = batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?;
                Ok(vec![y, mu, var])
            },
            |t| {
                let (y, mu, var) = batch_norm_train_portable(&t[0], &t[1], &t[2], 1e-5)?;
                Ok(vec![y, mu, var])
            },
        ),
        (
            "max_pool2d_padded vs -inf padding + max_pool2d_portable (k3 s2 p1)",
            vec![vec![2, 3, 7, 9]],
            |t| Ok(vec![max_pool2d_padded(&t[0], 3, 2, 1)?]),
            |t| {
                let pad = |x: &Tensor, dim: usize| -> xfer_ops::Result<Tensor> {
                    let mut shape = x.dims().to_vec();
                    shape[dim] = 1;
                    let side = Tensor::full(f64::NEG_INFINITY, shape.as_slice(), x.device())?
                        .to_dtype(x.dtype())?;
                    Ok(Tensor::cat(&[&side, x, &side], dim)?)
                };
                Ok(vec![max_pool2d_portable(&pad(&pad(&t[0], 3)?, 2)?, 3, 2)?])
            },
        ),
        (
            "softmax vs softmax_portable",
            vec![vec![3, 4, 9]],
            |t| Ok(vec![softmax(&t[0])?]),
            |t| Ok(vec![softmax_portable(&t[0])?]),
        ),
        (
            "log_softmax vs log_softmax_portable",
            vec![vec![3, 4, 9]],
            |t| Ok(vec![log_softmax(&t[0])?]),
            |t| Ok(vec![log_softmax_portable(&t[0])?]),
        ),
        (
            "layer_norm vs layer_norm_portable",
            vec![vec![4, 6, 10], vec![10], vec![10]],
            |t| Ok(vec![layer_norm(&t[0], &t[1], &t[2], 1e-5)?]),
            |t| Ok(vec![layer_norm_portable(&t[0], &t[1], &t[2], 1e-5)?]),
        ),
        (
            "max_pool2d vs max_pool2d_portable (k3 s2, 7x9)",
            vec![vec![2, 3, 7, 9]],
            |t| Ok(vec![max_pool2d(&t[0], 3, 2)?]),
            |t| Ok(vec![max_pool2d_portable(&t[0], 3, 2)?]),
        ),
        (
            "avg_pool2d vs avg_pool2d_portable (k2 s2, 7x9)",
            vec![vec![2, 3, 7, 9]],
            |t| Ok(vec![avg_pool2d(&t[0], 2, 2)?]),
            |t| Ok(vec![avg_pool2d_portable(&t[0], 2, 2)?]),
        ),
        (
            "adaptive_avg_pool2d vs adaptive_avg_pool2d_portable (7x9 to 3x2)",
            vec![vec![2, 3, 7, 9]],
            |t| Ok(vec![adaptive_avg_pool2d(&t[0], 3, 2)?]),
            |t| Ok(vec![adaptive_avg_pool2d_portable(&t[0], 3, 2)?]),
        ),
    ];
    for dtype in DTYPES {
        for (what, shapes, kernel, portable) in &cases {
            let mut rng = SeededRng::new(8);
            let inputs: Vec<Tensor> = shapes.iter().map(|s| randn(&mut rng, s, dtype)).collect();
            compare(what, &inputs, kernel, portable, &Device::Cpu);
        }
    }
}

/// A convolution with every option away from its default (fn pointers cannot capture it).
fn cfg_for_cases() -> Conv2dConfig {
    Conv2dConfig {
        stride: 2,
        padding: 1,
        dilation: 2,
        groups: 2,
    }
}

/// The harness fails when the device computes something else: log-softmax passed off as
/// softmax, and a gradient scaled by 1.001 (f64), are both caught.
#[test]
fn the_harness_rejects_a_wrong_result() {
    let mut rng = SeededRng::new(9);
    let x = randn(&mut rng, &[3, 5], DType::F64);
    let wrong_forward = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compare(
            "softmax vs log_softmax",
            std::slice::from_ref(&x),
            &|t: &[Tensor]| Ok(vec![softmax(&t[0])?]),
            &|t: &[Tensor]| Ok(vec![log_softmax(&t[0])?]),
            &Device::Cpu,
        )
    }));
    assert!(wrong_forward.is_err(), "a wrong output passed");
    let wrong_backward = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compare(
            "grad_reverse(1) vs grad_reverse(1.001)",
            std::slice::from_ref(&x),
            &|t: &[Tensor]| Ok(vec![grad_reverse(&t[0], 1.0)?]),
            &|t: &[Tensor]| Ok(vec![grad_reverse(&t[0], 1.001)?]),
            &Device::Cpu,
        )
    }));
    assert!(wrong_backward.is_err(), "a wrong gradient passed");
}
