//! Shared test helpers: f64 tensors and a central finite-difference gradient check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};

pub type R<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// An f64 tensor of the given shape on the CPU.
pub fn t(data: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape, &Device::Cpu).unwrap()
}

/// An i64 label vector.
pub fn labels(data: &[i64]) -> Tensor {
    Tensor::from_vec(data.to_vec(), data.len(), &Device::Cpu).unwrap()
}

/// The value of a scalar tensor as f64.
pub fn scalar(x: &Tensor) -> f64 {
    x.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0]
}

/// Flattened values as f64.
pub fn values(x: &Tensor) -> Vec<f64> {
    x.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

pub fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

pub fn assert_all_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g, *w, tol, &format!("{what}[{i}]"));
    }
}

/// The analytic gradients of `f` at `inputs` (f64), by candle's backward.
pub fn analytic_grads(f: &dyn Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Vec<Vec<f64>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| Var::from_tensor(x).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = f(&ts);
    assert_eq!(
        loss.elem_count(),
        1,
        "the checked function must return a scalar"
    );
    let grads = loss.backward().unwrap();
    vars.iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => values(g),
            None => vec![0.0; v.elem_count()],
        })
        .collect()
}

/// Central finite differences of `f` at `inputs`, step `eps`.
pub fn numeric_grads(
    f: &dyn Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    eps: f64,
) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for (k, x) in inputs.iter().enumerate() {
        let base = values(x);
        let mut g = vec![0.0; base.len()];
        for (j, gj) in g.iter_mut().enumerate() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut ins: Vec<Tensor> = inputs.to_vec();
                ins[k] = Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
                scalar(&f(&ins))
            };
            *gj = (at(eps) - at(-eps)) / (2.0 * eps);
        }
        out.push(g);
    }
    out
}

/// Asserts that candle's gradient of `f` matches central finite differences for every input
/// element, within `tol` relative to `1 + |numeric|`.
pub fn check_grad(f: &dyn Fn(&[Tensor]) -> Tensor, inputs: &[Tensor], tol: f64) {
    let a = analytic_grads(f, inputs);
    let n = numeric_grads(f, inputs, 1e-6);
    for (k, (ak, nk)) in a.iter().zip(&n).enumerate() {
        for (j, (x, y)) in ak.iter().zip(nk).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "input {k} element {j}: analytic {x} vs finite difference {y}"
            );
        }
    }
    // The check must be able to fail: at least one gradient is non-trivial.
    assert!(
        n.iter().flatten().any(|g| g.abs() > 1e-8),
        "every finite-difference gradient is zero: the check proves nothing"
    );
}
