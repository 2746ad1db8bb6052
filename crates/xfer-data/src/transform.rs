//! Per-sample transforms: normalise, resize (bilinear), centre crop, and the seeded random
//! augmentations (random crop, horizontal flip, small affine jitter).
//!
//! A transform maps one sample's features (row-major, of a given shape) to new features.
//! Random transforms draw from the generator they are handed; the [`crate::DataLoader`]
//! seeds it from `(seed, epoch, sample index)`, so augmentations repeat exactly.

use crate::error::{DataError, Result};
use crate::image_ops::{self, chw, image_shape};
use std::fmt::Debug;
use std::sync::Arc;
use xfer_ops::SeededRng;

/// A per-sample transform.
pub trait Transform: Send + Sync + Debug {
    /// The output sample shape for an input sample shape (an error if the transform cannot
    /// take it, e.g. a crop larger than the image).
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;
    /// Transforms one sample of shape `shape`.
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>>;
}

/// Transforms applied in order.
#[derive(Debug, Clone, Default)]
pub struct Compose(pub Vec<Arc<dyn Transform>>);

impl Compose {
    /// An empty chain.
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Appends a transform.
    pub fn then(mut self, t: impl Transform + 'static) -> Self {
        self.0.push(Arc::new(t));
        self
    }
}

impl Transform for Compose {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut s = input.to_vec();
        for t in &self.0 {
            s = t.output_shape(&s)?;
        }
        Ok(s)
    }
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>> {
        let mut cur = x.to_vec();
        let mut s = shape.to_vec();
        for t in &self.0 {
            cur = t.apply(&cur, &s, rng)?;
            s = t.output_shape(&s)?;
        }
        Ok(cur)
    }
}

/// `(x − mean) / std`, either one value for every feature or one per channel (the first
/// dimension of the sample shape).
#[derive(Debug, Clone)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Per-channel (or, with one value each, global) mean and standard deviation; every std
    /// must be positive and finite.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(DataError::invalid(
                "Normalize",
                format!("{} means and {} stds", mean.len(), std.len()),
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::invalid(
                "Normalize",
                format!("std {s} must be positive and finite"),
            ));
        }
        Ok(Self { mean, std })
    }
}

impl Transform for Normalize {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if self.mean.len() == 1 || input.first() == Some(&self.mean.len()) {
            Ok(input.to_vec())
        } else {
            Err(DataError::shape(
                "Normalize",
                format!(
                    "{} channel statistics for samples of shape {input:?} (first dimension must match)",
                    self.mean.len()
                ),
            ))
        }
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let k = self.mean.len();
        let per = if k == 1 { x.len().max(1) } else { x.len() / k };
        Ok(x.iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / per.max(1)).min(k - 1);
                (v - self.mean[c]) / self.std[c]
            })
            .collect())
    }
}

/// Bilinear resize of an image sample to `(height, width)`.
#[derive(Debug, Clone, Copy)]
pub struct Resize {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
}

impl Transform for Resize {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (c, _, _) = chw("Resize", input)?;
        if self.height == 0 || self.width == 0 {
            return Err(DataError::invalid("Resize", "size must be positive"));
        }
        Ok(image_shape(input, c, self.height, self.width))
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        image_ops::resize_bilinear(x, chw("Resize", shape)?, self.height, self.width)
    }
}

fn check_crop(what: &str, input: &[usize], oh: usize, ow: usize, pad: usize) -> Result<Vec<usize>> {
    let (c, h, w) = chw(what, input)?;
    if oh == 0 || ow == 0 || oh > h + 2 * pad || ow > w + 2 * pad {
        return Err(DataError::shape(
            what,
            format!("crop {oh}x{ow} (padding {pad}) does not fit an image of {h}x{w}"),
        ));
    }
    Ok(image_shape(input, c, oh, ow))
}

/// The central `(height, width)` window.
#[derive(Debug, Clone, Copy)]
pub struct CenterCrop {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
}

impl Transform for CenterCrop {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        check_crop("CenterCrop", input, self.height, self.width, 0)
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let dims = chw("CenterCrop", shape)?;
        let top = ((dims.1 - self.height) / 2) as isize;
        let left = ((dims.2 - self.width) / 2) as isize;
        image_ops::crop(x, dims, top, left, self.height, self.width, 0.0)
    }
}

/// A uniformly placed `(height, width)` window of the image zero-padded by `padding` on
/// every side (the CIFAR augmentation: pad 4, crop 32).
#[derive(Debug, Clone, Copy)]
pub struct RandomCrop {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
    /// Zero padding on each side before cropping.
    pub padding: usize,
}

impl Transform for RandomCrop {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        check_crop("RandomCrop", input, self.height, self.width, self.padding)
    }
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let dims = chw("RandomCrop", shape)?;
        let p = self.padding;
        let top = rng.below(dims.1 + 2 * p - self.height + 1) as isize - p as isize;
        let left = rng.below(dims.2 + 2 * p - self.width + 1) as isize - p as isize;
        image_ops::crop(x, dims, top, left, self.height, self.width, 0.0)
    }
}

/// Mirrors the image left–right with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct RandomHorizontalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Transform for RandomHorizontalFlip {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        chw("RandomHorizontalFlip", input)?;
        Ok(input.to_vec())
    }
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>> {
        let dims = chw("RandomHorizontalFlip", shape)?;
        if rng.uniform01() < self.p {
            image_ops::flip_horizontal(x, dims)
        } else {
            Ok(x.to_vec())
        }
    }
}

/// Small random affine jitter: rotation uniform in `±degrees`, translation uniform in
/// `±translate·(W, H)` pixels, scale uniform in `[scale.0, scale.1]`; bilinear, zero fill.
#[derive(Debug, Clone, Copy)]
pub struct RandomAffine {
    /// Maximum rotation in degrees.
    pub degrees: f32,
    /// Maximum shift as a fraction of the width and height.
    pub translate: f32,
    /// Scale range.
    pub scale: (f32, f32),
}

impl Transform for RandomAffine {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        chw("RandomAffine", input)?;
        let (lo, hi) = self.scale;
        if !(lo > 0.0 && hi >= lo && self.degrees >= 0.0 && self.translate >= 0.0) {
            return Err(DataError::invalid(
                "RandomAffine",
                format!(
                    "degrees {} and translate {} must be ≥ 0, scale range ({lo}, {hi}) positive and ordered",
                    self.degrees, self.translate
                ),
            ));
        }
        Ok(input.to_vec())
    }
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let dims = chw("RandomAffine", shape)?;
        let mut sym = |m: f32| ((rng.uniform01() * 2.0 - 1.0) as f32) * m;
        let deg = sym(self.degrees);
        let tx = sym(self.translate * dims.2 as f32);
        let ty = sym(self.translate * dims.1 as f32);
        let (lo, hi) = self.scale;
        let s = lo + (hi - lo) * rng.uniform01() as f32;
        image_ops::affine(x, dims, deg, s, (tx, ty), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_per_channel_uses_first_dimension() {
        let t = Normalize::new(vec![1.0, 2.0], vec![1.0, 2.0]).unwrap();
        let x = vec![1.0, 3.0, 2.0, 6.0];
        let y = t.apply(&x, &[2, 1, 2], &mut SeededRng::new(0)).unwrap();
        assert_eq!(y, vec![0.0, 2.0, 0.0, 2.0]);
        assert!(t.output_shape(&[3, 1, 2]).is_err());
        assert!(Normalize::new(vec![0.0], vec![0.0]).is_err());
    }

    #[test]
    fn random_transforms_repeat_with_the_same_seed_and_vary_with_another() {
        let x: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let t = Compose::new()
            .then(RandomCrop {
                height: 6,
                width: 6,
                padding: 1,
            })
            .then(RandomHorizontalFlip { p: 0.5 })
            .then(RandomAffine {
                degrees: 10.0,
                translate: 0.1,
                scale: (0.9, 1.1),
            });
        assert_eq!(t.output_shape(&[1, 8, 8]).unwrap(), vec![1, 6, 6]);
        let a = t.apply(&x, &[1, 8, 8], &mut SeededRng::new(3)).unwrap();
        let b = t.apply(&x, &[1, 8, 8], &mut SeededRng::new(3)).unwrap();
        assert_eq!(a, b);
        let differs =
            (4..20).any(|s| t.apply(&x, &[1, 8, 8], &mut SeededRng::new(s)).unwrap() != a);
        assert!(differs);
    }

    #[test]
    fn center_crop_takes_the_middle_and_refuses_oversized_crops() {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let t = CenterCrop {
            height: 2,
            width: 2,
        };
        let y = t.apply(&x, &[4, 4], &mut SeededRng::new(0)).unwrap();
        assert_eq!(y, vec![5.0, 6.0, 9.0, 10.0]);
        assert!(
            CenterCrop {
                height: 5,
                width: 2
            }
            .output_shape(&[4, 4])
            .is_err()
        );
        assert!(t.output_shape(&[16]).is_err());
    }
}
