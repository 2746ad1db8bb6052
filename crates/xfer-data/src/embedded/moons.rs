//! Two interleaving half-moons, the toy problem of the DANN paper (Ganin et al., "Domain-
//! Adversarial Training of Neural Networks", JMLR 2016, §5.1): the source is two moons,
//! the target the same moons rotated by 35°.
//!
//! Points follow scikit-learn's `make_moons`: class 0 on the upper arc
//! `(cos t, sin t)`, class 1 on the lower arc `(1 − cos t, 0.5 − sin t)`, `t` evenly spaced in
//! `[0, π]`, plus Gaussian noise of standard deviation `noise` on each coordinate. The
//! rotation turns the points anticlockwise about the centre of the two moons, `(0.5, 0.25)`.

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use crate::seed::{rng_for, tag};

/// The DANN toy's points per domain.
pub const MOONS_PER_DOMAIN: usize = 150;
/// The DANN toy's noise.
pub const MOONS_NOISE: f64 = 0.05;
/// The DANN toy's target rotation in degrees.
pub const MOONS_TARGET_DEGREES: f64 = 35.0;

/// `n` points (split evenly between the two classes, class 0 gets the odd one), noise
/// `noise`, rotated by `degrees`; seeded. Features `[2]`, classes `upper`, `lower`.
pub fn moons(n: usize, noise: f64, degrees: f64, seed: u64) -> Result<TensorDataset> {
    if n < 2 || !(noise >= 0.0 && noise.is_finite()) || !degrees.is_finite() {
        return Err(DataError::invalid(
            "moons",
            format!("n = {n} (need ≥ 2), noise = {noise} (need ≥ 0), degrees = {degrees}"),
        ));
    }
    // Different rotations are different domains: give them independent noise.
    let mut rng = rng_for(seed, &[tag::GENERATE, 1, degrees.to_bits()]);
    let n0 = n.div_ceil(2);
    let n1 = n - n0;
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (0.5, 0.25);
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for (class, count) in [(0u32, n0), (1u32, n1)] {
        for k in 0..count {
            let t = if count > 1 {
                std::f64::consts::PI * k as f64 / (count - 1) as f64
            } else {
                std::f64::consts::FRAC_PI_2
            };
            let (mut px, mut py) = if class == 0 {
                (t.cos(), t.sin())
            } else {
                (1.0 - t.cos(), 0.5 - t.sin())
            };
            px += noise * rng.normal01();
            py += noise * rng.normal01();
            let (dx, dy) = (px - cx, py - cy);
            x.push((cx + c * dx - s * dy) as f32);
            x.push((cy + s * dx + c * dy) as f32);
            y.push(class);
        }
    }
    // Interleave the classes in a seeded order (as make_moons(shuffle=True) does).
    let perm = rng.permutation(n);
    let ds = TensorDataset::new(format!("moons:{degrees}"), x, vec![2], y)?
        .with_class_names(vec!["upper".into(), "lower".into()])?;
    ds.subset(&perm)
}

/// The DANN toy pair: `(source, target)` of 150 points each, noise 0.05, the target rotated
/// by `degrees` (35 in the paper); domain ids 0 and 1.
pub fn moons_pair(degrees: f64, seed: u64) -> Result<(TensorDataset, TensorDataset)> {
    Ok((
        moons(MOONS_PER_DOMAIN, MOONS_NOISE, 0.0, seed)?.with_domain(0),
        moons(MOONS_PER_DOMAIN, MOONS_NOISE, degrees, seed)?.with_domain(1),
    ))
}
