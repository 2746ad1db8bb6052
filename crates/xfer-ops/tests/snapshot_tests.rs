//! Parameter snapshots are real copies: they do not move when the live variables do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer;
use xfer_ops::ParamSnapshot;

fn v1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn snapshot_does_not_move_when_var_updated_in_place() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap()).unwrap();
    let detached = w.as_tensor().detach();
    let snap = ParamSnapshot::capture([("fc.weight", w.as_tensor())]).unwrap();

    w.set(&Tensor::new(&[10f32, 20.0, 30.0], &dev).unwrap())
        .unwrap();

    // The live variable and a detached view moved (they share storage) ...
    assert_eq!(v1(w.as_tensor()), vec![10.0, 20.0, 30.0]);
    assert_eq!(v1(&detached), vec![10.0, 20.0, 30.0]);
    // ... the snapshot did not.
    assert_eq!(v1(snap.get("fc.weight").unwrap()), vec![1.0, 2.0, 3.0]);
}

#[test]
fn snapshot_does_not_move_under_optimiser_steps() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &dev).unwrap()).unwrap();
    let snap = ParamSnapshot::capture([("w", w.as_tensor())]).unwrap();
    let mut opt = candle_nn::SGD::new(vec![w.clone()], 0.1).unwrap();
    for _ in 0..3 {
        let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.backward_step(&loss).unwrap();
    }
    // Each step multiplies w by (1 − 2·0.1).
    let f = 0.8f32.powi(3);
    let want = [0.5 * f, -f, 2.0 * f, 0.25 * f];
    for (a, b) in v1(w.as_tensor()).iter().zip(want) {
        assert!((a - b).abs() < 1e-6);
    }
    assert_eq!(v1(snap.get("w").unwrap()), vec![0.5, -1.0, 2.0, 0.25]);
}

#[test]
fn snapshot_tensors_are_constants_not_variables() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev).unwrap()).unwrap();
    let snap = ParamSnapshot::capture([("w", w.as_tensor())]).unwrap();
    let anchor = snap.get("w").unwrap();
    assert!(!anchor.is_variable() && !anchor.track_op());
    // L2-SP style penalty ‖w − w⁰‖²: the gradient reaches w only.
    let loss = (w.as_tensor() - anchor)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    // At capture time w = w⁰, so the penalty's gradient 2(w − w⁰) is zero.
    assert_eq!(v1(g.get(w.as_tensor()).unwrap()), vec![0.0, 0.0]);
    // The anchor is a constant: no optimiser can hold it, and it keeps its values.
    assert!(!anchor.is_variable());
    assert_eq!(v1(anchor), vec![1.0, 2.0]);
}

#[test]
fn snapshot_keeps_names_in_capture_order() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[1f32], &dev).unwrap();
    let b = Tensor::new(&[2f32, 3.0], &dev).unwrap();
    let snap = ParamSnapshot::capture([("b", &b), ("a", &a)]).unwrap();
    assert_eq!(snap.len(), 2);
    assert!(!snap.is_empty());
    let names: Vec<&str> = snap.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(v1(snap.get("b").unwrap()), vec![2.0, 3.0]);
    assert!(snap.get("c").is_none());
    assert!(ParamSnapshot::default().is_empty());
}
