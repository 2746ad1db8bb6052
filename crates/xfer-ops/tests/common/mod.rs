//! Shared helpers of the xfer-ops tests: a finite-difference gradient checker and seeded
//! random tensors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::SeededRng;

/// A seeded `N(0, 1)` f64 tensor on the CPU.
pub fn randn(rng: &mut SeededRng, shape: &[usize]) -> Tensor {
    rng.normal(shape, 0.0, 1.0, DType::F64, &Device::Cpu)
        .unwrap()
}

/// A seeded `N(0, 1)` tensor of `dtype` on the CPU.
pub fn randn_dtype(rng: &mut SeededRng, shape: &[usize], dtype: DType) -> Tensor {
    rng.normal(shape, 0.0, 1.0, dtype, &Device::Cpu).unwrap()
}

/// Every value of `t` as f64, in row-major order.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// The largest `|a − b| / max(1, |b|)` over all elements; panics when the shapes differ.
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Finite-difference gradient check.
///
/// `f` maps the inputs to a tensor of any shape; the check uses the scalar
/// `L = Σ f(inputs) ⊙ R` with a fixed seeded random `R` (a plain sum would make the gradient of
/// shift-invariant ops such as softmax vanish and hide errors). For every element `j` of every
/// input `i` it compares the autograd gradient `∂L/∂x_ij` with the central difference
/// `(L(x + h e_ij) − L(x − h e_ij)) / 2h` and fails on
/// `|autograd − numeric| > atol + rtol · max(|autograd|, |numeric|)`.
///
/// Inputs should be f64 (h = 1e-6, so the difference error is ≈ 1e-10).
pub fn check_gradients<F>(f: F, inputs: &[Tensor], atol: f64, rtol: f64)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    check_gradients_sampled(f, inputs, atol, rtol, usize::MAX)
}

/// [`check_gradients`] on at most `max_per_input` elements of each input, picked by a seeded
/// permutation (for slow reference paths).
pub fn check_gradients_sampled<F>(
    f: F,
    inputs: &[Tensor],
    atol: f64,
    rtol: f64,
    max_per_input: usize,
) where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let h = 1e-6;
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let as_tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&as_tensors).unwrap();
    let mut rng = SeededRng::new(0xfd);
    let r = rng
        .normal(out.dims(), 0.0, 1.0, out.dtype(), out.device())
        .unwrap();
    let loss_of = |xs: &[Tensor]| -> f64 {
        f(xs)
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let loss = out.mul(&r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let analytic = match grads.get(v.as_tensor()) {
            Some(g) => values(g),
            None => panic!("input {i} {:?}: no gradient reached it", v.dims()),
        };
        let base = values(v.as_tensor());
        assert_eq!(analytic.len(), base.len(), "input {i}: gradient size");
        let mut picks = SeededRng::new(i as u64).permutation(base.len());
        picks.truncate(max_per_input);
        for j in picks {
            let mut numeric = 0.0;
            for (sign, coef) in [(1.0, 0.5 / h), (-1.0, -0.5 / h)] {
                let mut moved = base.clone();
                moved[j] += sign * h;
                let moved = Tensor::from_vec(moved, v.dims(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(v.dtype())
                    .unwrap();
                let xs: Vec<Tensor> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, t)| if k == i { moved.clone() } else { t.clone() })
                    .collect();
                numeric += coef * loss_of(&xs);
            }
            let a = analytic[j];
            let bound = atol + rtol * a.abs().max(numeric.abs());
            assert!(
                (a - numeric).abs() <= bound,
                "input {i} {:?}, element {j}: autograd {a} vs finite difference {numeric}",
                v.dims()
            );
        }
    }
}
