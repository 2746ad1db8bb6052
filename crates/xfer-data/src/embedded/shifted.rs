//! Shifted versions of any image data set (digits above all), the usual synthetic domain
//! shifts: rotation, inversion, additive noise, and an MNIST-M-style coloured, textured
//! background (Ganin & Lempitsky, 2015: MNIST-M blends each digit with a colour photo patch,
//! `|background − digit|` per channel).
//!
//! Value ranges are kept: with `(lo, hi)` the data set's feature range (0..16 for digits),
//! inversion is `lo + hi − x`, noise is clamped to `[lo, hi]`, rotation fills with `lo`, and
//! the coloured version stays in `[lo, hi]`.

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use crate::image_ops::{affine, chw};
use crate::seed::{rng_for, tag};

fn range(ds: &TensorDataset) -> Result<(f32, f32)> {
    ds.feature_range()
        .ok_or_else(|| DataError::Empty(ds.name().to_string()))
}

/// Every image rotated anticlockwise by `degrees` about its centre (bilinear).
pub fn rotate(ds: &TensorDataset, degrees: f32) -> Result<TensorDataset> {
    let dims = chw("rotate", ds.sample_shape())?;
    let (lo, _) = range(ds)?;
    let mut out = Vec::with_capacity(ds.features().len());
    for x in ds.features().chunks(ds.feature_dim()) {
        out.extend(affine(x, dims, degrees, 1.0, (0.0, 0.0), lo)?);
    }
    let shape = ds.sample_shape().to_vec();
    Ok(ds
        .clone()
        .with_features(out, shape)?
        .with_name(format!("{}-rot:{degrees}", ds.name())))
}

/// Every value `x` replaced by `lo + hi − x` (dark strokes on a light ground).
pub fn invert(ds: &TensorDataset) -> Result<TensorDataset> {
    let (lo, hi) = range(ds)?;
    let name = format!("{}-inv", ds.name());
    Ok(ds
        .clone()
        .map_features(|_, x| x.iter_mut().for_each(|v| *v = lo + hi - *v))
        .with_name(name))
}

/// Gaussian noise of standard deviation `std_fraction · (hi − lo)` added to every value,
/// clamped to `[lo, hi]`; seeded.
pub fn add_noise(ds: &TensorDataset, std_fraction: f32, seed: u64) -> Result<TensorDataset> {
    if !(std_fraction >= 0.0 && std_fraction.is_finite()) {
        return Err(DataError::invalid(
            "add_noise",
            format!("noise {std_fraction} must be ≥ 0"),
        ));
    }
    let (lo, hi) = range(ds)?;
    let sd = f64::from(std_fraction * (hi - lo));
    let name = format!("{}-noise:{std_fraction}", ds.name());
    Ok(ds
        .clone()
        .map_features(|i, x| {
            let mut rng = rng_for(seed, &[tag::GENERATE, 3, i as u64]);
            for v in x.iter_mut() {
                *v = (*v + (sd * rng.normal01()) as f32).clamp(lo, hi);
            }
        })
        .with_name(name))
}

/// MNIST-M style: each one-channel image becomes three channels,
/// `out_c = lo + (hi − lo)·|bg_c − (x − lo)/(hi − lo)|`, where `bg` is a random texture per
/// sample (two random colours mixed by a random stripe pattern, plus pixel noise); seeded.
pub fn color_background(ds: &TensorDataset, seed: u64) -> Result<TensorDataset> {
    let (c, h, w) = chw("color_background", ds.sample_shape())?;
    if c != 1 {
        return Err(DataError::shape(
            ds.name(),
            format!("color_background needs one-channel images, got {c} channels"),
        ));
    }
    let (lo, hi) = range(ds)?;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut out = Vec::with_capacity(3 * ds.features().len());
    for (i, x) in ds.features().chunks(ds.feature_dim()).enumerate() {
        let mut rng = rng_for(seed, &[tag::GENERATE, 4, i as u64]);
        let mut col = || {
            [
                rng.uniform01() as f32,
                rng.uniform01() as f32,
                rng.uniform01() as f32,
            ]
        };
        let (c1, c2) = (col(), col());
        let angle = rng.uniform01() * std::f64::consts::PI;
        let freq = 0.4 + 1.4 * rng.uniform01();
        let phase = rng.uniform01() * std::f64::consts::TAU;
        let (s, co) = angle.sin_cos();
        let mut plane = vec![[0f32; 3]; h * w];
        for (p, bg) in plane.iter_mut().enumerate() {
            let (py, px) = ((p / w) as f64, (p % w) as f64);
            let t = (0.5 + 0.5 * (freq * (co * px + s * py) + phase).sin()) as f32;
            for k in 0..3 {
                let noise = 0.08 * rng.normal01() as f32;
                bg[k] = (c1[k] * (1.0 - t) + c2[k] * t + noise).clamp(0.0, 1.0);
            }
        }
        for k in 0..3 {
            for (p, bg) in plane.iter().enumerate() {
                let d = (x[p] - lo) / span;
                out.push(lo + span * (bg[k] - d).abs());
            }
        }
    }
    Ok(ds
        .clone()
        .with_features(out, vec![3, h, w])?
        .with_name(format!("{}-mnistm", ds.name())))
}
