//! Gradient reversal layer: identity forward, `−λ · g` backward, nothing for λ = 0.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{check_gradients, randn, values};
use xfer_ops::{SeededRng, grad_reverse};

#[test]
fn grl_is_identity_in_forward() {
    let mut rng = SeededRng::new(1);
    let x = randn(&mut rng, &[3, 4]);
    let y = grad_reverse(&x, 0.7).unwrap();
    assert_eq!(values(&x), values(&y));
    assert_eq!(x.dims(), y.dims());
}

#[test]
fn grl_negates_gradient_times_lambda() {
    let mut rng = SeededRng::new(2);
    let x = Var::from_tensor(&randn(&mut rng, &[2, 5])).unwrap();
    let r = randn(&mut rng, &[2, 5]);
    for lambda in [1.0, 0.25, 3.0] {
        let loss = grad_reverse(x.as_tensor(), lambda)
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let got = values(g.get(x.as_tensor()).unwrap());
        for (a, b) in got.iter().zip(values(&r)) {
            assert!((a + lambda * b).abs() < 1e-12, "{a} vs {}", -lambda * b);
        }
    }
}

#[test]
fn grl_lambda_zero_passes_no_gradient() {
    let mut rng = SeededRng::new(3);
    let x = Var::from_tensor(&randn(&mut rng, &[4])).unwrap();
    let loss = grad_reverse(x.as_tensor(), 0.0)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    assert!(g.get(x.as_tensor()).is_none());
}

/// λ = 0 behind a layer (the features of a network are intermediate nodes, and
/// `dann_lambda(0) = 0` on the first step): backward succeeds, the layer gets no gradient
/// through the GRL, while a second path still reaches it.
#[test]
fn grl_lambda_zero_on_intermediate_node_cuts_only_that_path() {
    let mut rng = SeededRng::new(5);
    let x = randn(&mut rng, &[3, 4]);
    let w = Var::from_tensor(&randn(&mut rng, &[4, 2])).unwrap();
    let h = x.matmul(w.as_tensor()).unwrap();
    let reversed = grad_reverse(&h, 0.0)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let g = reversed.backward().unwrap();
    assert!(g.get(w.as_tensor()).is_none());
    let both = (h.sum_all().unwrap() + grad_reverse(&h, 0.0).unwrap().sum_all().unwrap()).unwrap();
    let g = both.backward().unwrap();
    let gw = values(g.get(w.as_tensor()).unwrap());
    let expect = values(
        &x.sum_keepdim(0)
            .unwrap()
            .t()
            .unwrap()
            .broadcast_as((4, 2))
            .unwrap()
            .contiguous()
            .unwrap(),
    );
    for (a, b) in gw.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

/// Through a layer before the GRL, the gradient is exactly `−λ` times the true derivative of
/// the loss (checked by finite differences of the un-reversed network).
#[test]
fn grl_reverses_gradient_of_layer_before_it() {
    let mut rng = SeededRng::new(4);
    let x = randn(&mut rng, &[3, 4]);
    let w0 = randn(&mut rng, &[4, 2]);
    let r = randn(&mut rng, &[3, 2]);
    let lambda = 0.6;
    let w = Var::from_tensor(&w0).unwrap();
    let out = grad_reverse(&x.matmul(w.as_tensor()).unwrap().tanh().unwrap(), lambda).unwrap();
    let g = out.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let got = values(g.get(w.as_tensor()).unwrap());
    // True gradient of Σ tanh(xW) ⊙ r, analytically: xᵀ ((1 − tanh²) ⊙ r).
    let t = x.matmul(&w0).unwrap().tanh().unwrap();
    let d = (t.sqr().unwrap().affine(-1.0, 1.0).unwrap() * &r).unwrap();
    let want = values(&x.t().unwrap().matmul(&d).unwrap());
    for (a, b) in got.iter().zip(want) {
        assert!((a + lambda * b).abs() < 1e-12, "{a} vs {}", -lambda * b);
    }
    // And the un-reversed (λ = −1) path agrees with finite differences.
    check_gradients(
        |v| grad_reverse(&x.matmul(&v[0])?.tanh()?, -1.0).map_err(candle_core::Error::wrap),
        &[w0],
        1e-8,
        1e-6,
    );
}

#[test]
fn grl_rejects_non_finite_lambda() {
    let x = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = grad_reverse(&x, f64::NAN).unwrap_err().to_string();
    assert!(e.contains("grad_reverse") && e.contains("NaN"), "{e}");
}
