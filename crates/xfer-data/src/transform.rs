//! Per-sample transforms: normalise, resize (bilinear), resize of the short side, centre
//! crop, and the seeded random augmentations (random crop, torchvision's random resized
//! crop, horizontal flip, small affine jitter). [`crate::Preprocess`] puts the ImageNet-style
//! train and eval chains together from a backbone's preset.
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

/// Resizes the image so that its shorter side is `size` (torchvision's `Resize(size)`: the
/// longer side becomes `floor(size · long / short)`), antialiased bilinear. The output shape
/// depends on the input's: follow it with a [`CenterCrop`].
#[derive(Debug, Clone, Copy)]
pub struct ResizeShortSide {
    /// The length of the shorter side after resizing.
    pub size: usize,
}

impl ResizeShortSide {
    fn target(&self, h: usize, w: usize) -> (usize, usize) {
        let s = self.size;
        if h <= w {
            (s, ((s as u128 * w as u128) / h as u128) as usize)
        } else {
            (((s as u128 * h as u128) / w as u128) as usize, s)
        }
    }
}

impl Transform for ResizeShortSide {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (c, h, w) = chw("ResizeShortSide", input)?;
        if self.size == 0 {
            return Err(DataError::invalid(
                "ResizeShortSide",
                "size must be positive",
            ));
        }
        let (oh, ow) = self.target(h, w);
        Ok(image_shape(input, c, oh.max(1), ow.max(1)))
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        let out = self.output_shape(shape)?;
        let dims = chw("ResizeShortSide", shape)?;
        let (oh, ow) = chw("ResizeShortSide", &out).map(|(_, h, w)| (h, w))?;
        image_ops::resize_antialias(x, dims, oh, ow)
    }
}

/// The target of a [`Resample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleSize {
    /// Exactly `(height, width)`.
    Exact(usize, usize),
    /// The shorter side becomes this, the longer `floor(size · long / short)` (torchvision's
    /// `Resize(int)`).
    ShortSide(usize),
}

/// Resize with a chosen filter ([`image_ops::Filter`]) and antialiasing:
/// [`ResizeShortSide`] is `Resample { size: ShortSide(n), filter: Bilinear, antialias: true }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resample {
    /// The output size.
    pub size: ResampleSize,
    /// The resampling filter.
    pub filter: image_ops::Filter,
    /// Widen the filter when shrinking (PIL, torchvision `antialias=True`).
    pub antialias: bool,
}

impl Transform for Resample {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match self.size {
            ResampleSize::ShortSide(size) => ResizeShortSide { size }.output_shape(input),
            ResampleSize::Exact(h, w) => Resize {
                height: h,
                width: w,
            }
            .output_shape(input),
        }
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        let out = self.output_shape(shape)?;
        let dims = chw("Resample", shape)?;
        let (_, oh, ow) = chw("Resample", &out)?;
        image_ops::resample(x, dims, oh, ow, self.filter, self.antialias)
    }
}

/// The centred square whose side is `fraction` of the image's shorter side (rounded; at
/// least one pixel): TensorFlow EfficientNet's evaluation crop before its resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenterCropFraction {
    /// The kept fraction of the shorter side, in `(0, 1]`.
    pub fraction: f64,
}

impl CenterCropFraction {
    fn side(&self, h: usize, w: usize) -> usize {
        ((h.min(w) as f64 * self.fraction).round() as usize).clamp(1, h.min(w))
    }
}

impl Transform for CenterCropFraction {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (c, h, w) = chw("CenterCropFraction", input)?;
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(DataError::invalid(
                "CenterCropFraction",
                format!("fraction {} must be in (0, 1]", self.fraction),
            ));
        }
        let s = self.side(h, w);
        Ok(image_shape(input, c, s, s))
    }
    fn apply(&self, x: &[f32], shape: &[usize], _rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let dims = chw("CenterCropFraction", shape)?;
        let s = self.side(dims.1, dims.2);
        let top = ((dims.1 - s) / 2) as isize;
        let left = ((dims.2 - s) / 2) as isize;
        image_ops::crop(x, dims, top, left, s, s, 0.0)
    }
}

/// torchvision's `RandomResizedCrop`: a window of random area (a fraction in `scale` of the
/// image's) and random aspect ratio (log-uniform in `ratio`), placed uniformly, resized
/// (antialiased bilinear) to `(height, width)`. Up to 10 draws for a window that fits; then
/// the largest centred window whose aspect ratio is clamped into `ratio`.
#[derive(Debug, Clone, Copy)]
pub struct RandomResizedCrop {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
    /// Range of the window's area as a fraction of the image's, default `(0.08, 1.0)`.
    pub scale: (f64, f64),
    /// Range of the window's aspect ratio (width / height), default `(3/4, 4/3)`.
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// A `size × size` output with torchvision's default scale and ratio ranges.
    pub fn new(size: usize) -> Self {
        Self {
            height: size,
            width: size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// The window `(top, left, height, width)` for an `h × w` image (torchvision's
    /// `RandomResizedCrop.get_params`).
    pub fn window(&self, h: usize, w: usize, rng: &mut SeededRng) -> (usize, usize, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * rng.uniform01());
            let aspect = (lr0 + (lr1 - lr0) * rng.uniform01()).exp();
            let cw = (target * aspect).sqrt().round();
            let ch = (target / aspect).sqrt().round();
            if cw >= 1.0 && ch >= 1.0 && cw <= w as f64 && ch <= h as f64 {
                let (ch, cw) = (ch as usize, cw as usize);
                let top = rng.below(h - ch + 1);
                let left = rng.below(w - cw + 1);
                return (top, left, ch, cw);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.ratio.0 {
            (((w as f64 / self.ratio.0).round() as usize).clamp(1, h), w)
        } else if in_ratio > self.ratio.1 {
            (h, ((h as f64 * self.ratio.1).round() as usize).clamp(1, w))
        } else {
            (h, w)
        };
        ((h - ch) / 2, (w - cw) / 2, ch, cw)
    }
}

impl Transform for RandomResizedCrop {
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (c, _, _) = chw("RandomResizedCrop", input)?;
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        if self.height == 0
            || self.width == 0
            || !(s0 > 0.0 && s0 <= s1 && s1.is_finite())
            || !(r0 > 0.0 && r0 <= r1 && r1.is_finite())
        {
            return Err(DataError::invalid(
                "RandomResizedCrop",
                format!(
                    "size {}x{} must be positive, scale ({s0}, {s1}) and ratio ({r0}, {r1}) positive and ordered",
                    self.height, self.width
                ),
            ));
        }
        Ok(image_shape(input, c, self.height, self.width))
    }
    fn apply(&self, x: &[f32], shape: &[usize], rng: &mut SeededRng) -> Result<Vec<f32>> {
        self.output_shape(shape)?;
        let dims = chw("RandomResizedCrop", shape)?;
        let (top, left, ch, cw) = self.window(dims.1, dims.2, rng);
        image_ops::resized_crop(x, dims, top, left, ch, cw, self.height, self.width)
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
    fn random_resized_crop_windows_follow_torchvision() {
        let t = RandomResizedCrop::new(8);
        let mut rng = SeededRng::new(1);
        let (mut areas, mut n) = (0.0, 0);
        for _ in 0..2000 {
            let (top, left, ch, cw) = t.window(300, 400, &mut rng);
            assert!(top + ch <= 300 && left + cw <= 400 && ch > 0 && cw > 0);
            let r = cw as f64 / ch as f64;
            assert!(r > 0.74 && r < 1.35, "ratio {r}");
            let a = (ch * cw) as f64 / 120_000.0;
            assert!(a > 0.07 && a <= 1.0, "area {a}");
            areas += a;
            n += 1;
        }
        // torchvision's algorithm, simulated (200,000 draws of the same procedure in Python's
        // `random`) for a 300×400 image: mean area fraction 0.433 (redraws favour small
        // windows; uniform in (0.08, 1) alone would give 0.54).
        let mean = areas / n as f64;
        assert!((mean - 0.433).abs() < 0.03, "mean area {mean}");
        // A very wide image: no draw with ratio ≤ 4/3 fits a 10-pixel height at scale ≥ 0.9,
        // so the fallback: full height, width = round(10 · 4/3) = 13, centred.
        let narrow = RandomResizedCrop {
            scale: (0.9, 1.0),
            ..RandomResizedCrop::new(4)
        };
        assert_eq!(narrow.window(10, 100, &mut rng), (0, 43, 10, 13));
        let x = vec![0.25; 3 * 10 * 100];
        let y = narrow.apply(&x, &[3, 10, 100], &mut rng).unwrap();
        assert_eq!(y.len(), 3 * 4 * 4);
        assert!(y.iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert!(RandomResizedCrop::new(0).output_shape(&[3, 4, 4]).is_err());
    }

    #[test]
    fn resample_and_fractional_centre_crop() {
        let t = CenterCropFraction { fraction: 0.875 };
        assert_eq!(t.output_shape(&[3, 256, 300]).unwrap(), vec![3, 224, 224]);
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let y = CenterCropFraction { fraction: 0.5 }
            .apply(&x, &[4, 4], &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y, vec![5.0, 6.0, 9.0, 10.0]);
        assert!(
            CenterCropFraction { fraction: 0.0 }
                .output_shape(&[4, 4])
                .is_err()
        );
        let r = Resample {
            size: ResampleSize::Exact(3, 5),
            filter: image_ops::Filter::Bicubic,
            antialias: false,
        };
        assert_eq!(r.output_shape(&[2, 7, 9]).unwrap(), vec![2, 3, 5]);
        let y = r
            .apply(&[0.5; 2 * 63], &[2, 7, 9], &mut SeededRng::new(0))
            .unwrap();
        assert!(y.iter().all(|v| (v - 0.5).abs() < 1e-6));
        // ShortSide with bilinear + antialias is ResizeShortSide.
        let img: Vec<f32> = (0..3 * 6 * 9).map(|v| (v % 7) as f32).collect();
        let a = Resample {
            size: ResampleSize::ShortSide(4),
            filter: image_ops::Filter::Bilinear,
            antialias: true,
        }
        .apply(&img, &[3, 6, 9], &mut SeededRng::new(0))
        .unwrap();
        let b = ResizeShortSide { size: 4 }
            .apply(&img, &[3, 6, 9], &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn resize_short_side_keeps_the_aspect_ratio() {
        let t = ResizeShortSide { size: 4 };
        assert_eq!(t.output_shape(&[3, 6, 9]).unwrap(), vec![3, 4, 6]);
        assert_eq!(t.output_shape(&[1, 10, 5]).unwrap(), vec![1, 8, 4]);
        // torchvision truncates: 4 · 7 / 3 = 9.33 → 9.
        assert_eq!(t.output_shape(&[2, 3, 7]).unwrap(), vec![2, 4, 9]);
        let y = t
            .apply(&[1.0; 2 * 3 * 7], &[2, 3, 7], &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y.len(), 2 * 4 * 9);
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
