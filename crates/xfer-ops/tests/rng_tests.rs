//! Seeded randomness: same seed → identical bits; the distributions have the right moments
//! and bounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use xfer_ops::SeededRng;

fn bits32(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Draws one of everything the generator offers, as raw bits.
fn draw_everything(seed: u64) -> Vec<u64> {
    let dev = Device::Cpu;
    let mut r = SeededRng::new(seed);
    let mut out = Vec::new();
    out.extend(
        bits32(&r.normal(&[7, 3], 0.5, 2.0, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(
        f64s(&r.uniform(&[11], -1.0, 3.0, DType::F64, &dev).unwrap())
            .iter()
            .map(|x| x.to_bits()),
    );
    out.extend(
        bits32(&r.kaiming_uniform(&[4, 5], 5, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(
        bits32(&r.kaiming_normal(&[4, 5], 5, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(
        bits32(&r.xavier_uniform(&[4, 5], 5, 4, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(
        bits32(&r.torch_default(&[6], 3, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(
        bits32(&r.bernoulli_mask(&[13], 0.3, DType::F32, &dev).unwrap())
            .iter()
            .map(|&b| b as u64),
    );
    out.extend(r.permutation(17).iter().map(|&i| i as u64));
    out.push(r.below(1000) as u64);
    out.push(r.uniform01().to_bits());
    out.push(r.normal01().to_bits());
    let mut v: Vec<u64> = (0..9).collect();
    r.shuffle(&mut v);
    out.extend(v);
    let mut child = r.fork();
    out.push(child.uniform01().to_bits());
    out
}

#[test]
fn same_seed_gives_identical_bits() {
    assert_eq!(draw_everything(42), draw_everything(42));
}

#[test]
fn different_seeds_give_different_draws() {
    assert_ne!(draw_everything(42), draw_everything(43));
}

#[test]
fn fork_is_deterministic_and_independent_of_parent_stream() {
    let mut a = SeededRng::new(9);
    let mut b = SeededRng::new(9);
    let (mut fa, mut fb) = (a.fork(), b.fork());
    let xa: Vec<u64> = (0..8).map(|_| fa.uniform01().to_bits()).collect();
    let xb: Vec<u64> = (0..8).map(|_| fb.uniform01().to_bits()).collect();
    assert_eq!(xa, xb);
    let pa: Vec<u64> = (0..8).map(|_| a.uniform01().to_bits()).collect();
    assert_ne!(xa, pa);
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

#[test]
fn normal_has_requested_mean_and_std() {
    let mut r = SeededRng::new(1);
    let v = f64s(
        &r.normal(&[20_000], 1.5, 0.5, DType::F64, &Device::Cpu)
            .unwrap(),
    );
    let (m, s) = mean_std(&v);
    assert!((m - 1.5).abs() < 0.02, "mean {m}");
    assert!((s - 0.5).abs() < 0.02, "std {s}");
}

#[test]
fn uniform_and_fan_based_inits_stay_within_their_bounds() {
    let dev = Device::Cpu;
    let mut r = SeededRng::new(2);
    let u = f64s(&r.uniform(&[10_000], -2.0, 1.0, DType::F64, &dev).unwrap());
    assert!(u.iter().all(|&x| (-2.0..1.0).contains(&x)));
    let (m, _) = mean_std(&u);
    assert!((m + 0.5).abs() < 0.05, "mean {m}");

    let fan_in = 24;
    let b = (6.0f64 / fan_in as f64).sqrt();
    let k = f64s(
        &r.kaiming_uniform(&[10_000], fan_in, DType::F64, &dev)
            .unwrap(),
    );
    assert!(k.iter().all(|x| x.abs() <= b));
    assert!(k.iter().any(|x| x.abs() > 0.95 * b), "bound not reached");

    let b = (6.0f64 / (24 + 8) as f64).sqrt();
    let x = f64s(
        &r.xavier_uniform(&[10_000], 24, 8, DType::F64, &dev)
            .unwrap(),
    );
    assert!(x.iter().all(|v| v.abs() <= b));
    assert!(x.iter().any(|v| v.abs() > 0.95 * b));

    let b = 1.0 / (24f64).sqrt();
    let t = f64s(&r.torch_default(&[10_000], 24, DType::F64, &dev).unwrap());
    assert!(t.iter().all(|v| v.abs() <= b));

    let kn = f64s(
        &r.kaiming_normal(&[20_000], fan_in, DType::F64, &dev)
            .unwrap(),
    );
    let (_, s) = mean_std(&kn);
    let want = (2.0 / fan_in as f64).sqrt();
    assert!((s / want - 1.0).abs() < 0.03, "std {s} want {want}");
}

#[test]
fn bernoulli_mask_is_zero_one_with_keep_fraction() {
    let mut r = SeededRng::new(3);
    let v = f64s(
        &r.bernoulli_mask(&[20_000], 0.8, DType::F32, &Device::Cpu)
            .unwrap(),
    );
    assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
    let frac = v.iter().sum::<f64>() / v.len() as f64;
    assert!((frac - 0.8).abs() < 0.01, "{frac}");
}

#[test]
fn permutation_contains_every_index_once() {
    let mut r = SeededRng::new(4);
    let mut p = r.permutation(1000);
    assert_ne!(p, (0..1000).collect::<Vec<_>>());
    p.sort_unstable();
    assert_eq!(p, (0..1000).collect::<Vec<_>>());
    assert!(r.permutation(0).is_empty());
}

#[test]
fn below_stays_in_range() {
    let mut r = SeededRng::new(5);
    assert!((0..1000).map(|_| r.below(7)).all(|x| x < 7));
    assert_eq!(r.below(1), 0);
}

#[test]
fn derive_seed_keeps_its_values_and_is_path_sensitive() {
    use xfer_ops::derive_seed;
    // Pinned: every documented result (data sets, initialisations, data orders) depends on
    // these values. Computed independently in Python (SplitMix64 steps).
    assert_eq!(derive_seed(7, &[1, 2]), 0xf239_3773_88b0_1d44);
    assert_eq!(derive_seed(0, &[]), 0xe220_a839_7b1d_cdaf);
    assert_ne!(derive_seed(7, &[1, 2]), derive_seed(7, &[2, 1]));
    assert_ne!(derive_seed(7, &[1, 2]), derive_seed(8, &[1, 2]));
    assert_ne!(derive_seed(7, &[]), derive_seed(7, &[0]));
}

#[test]
fn step_scope_makes_layer_draws_a_function_of_the_scope_seed_and_order() {
    use xfer_ops::{StepRngScope, derive_seed, scoped_rng};
    assert!(
        scoped_rng().is_none(),
        "no scope: the layer uses its own generator"
    );
    let draws = |seed: u64| {
        let _s = StepRngScope::enter(seed);
        (0..3)
            .map(|_| scoped_rng().unwrap().uniform01().to_bits())
            .collect::<Vec<_>>()
    };
    let a = draws(11);
    assert_eq!(a, draws(11), "same scope seed, same draws");
    assert_ne!(a, draws(12));
    assert_ne!(a[0], a[1], "successive draws differ");
    let want = SeededRng::new(derive_seed(11, &[1])).uniform01().to_bits();
    assert_eq!(a[1], want, "draw k of a scope uses derive_seed(scope, [k])");
    {
        let _outer = StepRngScope::enter(11);
        let first = scoped_rng().unwrap().uniform01().to_bits();
        {
            let _inner = StepRngScope::enter(99);
            let _ = scoped_rng().unwrap();
        }
        // the outer scope resumes where it was
        assert_eq!(first, a[0]);
        assert_eq!(scoped_rng().unwrap().uniform01().to_bits(), a[1]);
    }
    assert!(scoped_rng().is_none(), "the scope ends with its guard");
}
