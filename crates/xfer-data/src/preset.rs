//! [`Preprocess`]: a backbone's input preset (input size, resize size, per-channel mean and
//! std) and the torchvision-style transform chains built from it.
//!
//! - train: [`RandomResizedCrop`] to the input size (scale (0.08, 1), ratio (3/4, 4/3)),
//!   [`RandomHorizontalFlip`] (p = 0.5), [`Normalize`];
//! - eval: [`ResizeShortSide`] to the resize size, [`CenterCrop`] to the input size,
//!   [`Normalize`] — or, for TensorFlow-style presets ([`EvalResize::CropThenResize`],
//!   EfficientNet-Lite), [`CenterCropFraction`] of the short side then [`Resample`] to the
//!   input size; the filter ([`Filter`]) and antialiasing of the evaluation resize are part of
//!   the preset.
//!
//! Pixels come from the image folder in `[0, 1]` (torchvision's `ToTensor`), so the
//! ImageNet statistics apply unchanged. `xfer-models` does not depend on this crate: a model
//! describes its preset as plain numbers and the caller builds a `Preprocess` from them with
//! [`Preprocess::new`] (or the struct literal: every field is public).

use crate::error::{DataError, Result};
pub use crate::image_ops::Filter;
use crate::transform::{
    CenterCrop, CenterCropFraction, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop,
    Resample, ResampleSize, ResizeShortSide, Transform,
};
use std::sync::Arc;

/// The ImageNet mean of torchvision's models (RGB, pixels in `[0, 1]`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The ImageNet standard deviation of torchvision's models (RGB, pixels in `[0, 1]`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How the evaluation chain brings an image to the input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalResize {
    /// torchvision: resize the short side to `resize_size`, centre crop the input size.
    ResizeThenCrop,
    /// TensorFlow EfficientNet: centre square of `crop_fraction` of the short side, resized
    /// to the input size.
    CropThenResize {
        /// Kept fraction of the short side (224/256 = 0.875).
        crop_fraction: f64,
    },
}

/// A backbone's input preprocessing, as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// `(height, width)` the network takes (the crop size).
    pub input_size: (usize, usize),
    /// The shorter side before the centre crop at evaluation (e.g. 256 for 224).
    pub resize_size: usize,
    /// Per-channel mean; its length is the number of channels (1 or 3).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// The evaluation resize-and-crop rule (default [`EvalResize::ResizeThenCrop`]).
    pub eval_resize: EvalResize,
    /// The filter of the evaluation resize (default bilinear).
    pub filter: Filter,
    /// Whether the evaluation resize antialiases when shrinking (default true, as torchvision).
    pub antialias: bool,
}

impl Preprocess {
    /// A preset of a square input; an error for a zero size, a resize size smaller than the
    /// input, or mean/std of different lengths or other than 1 or 3 channels.
    pub fn new(
        input_size: usize,
        resize_size: usize,
        mean: Vec<f32>,
        std: Vec<f32>,
    ) -> Result<Self> {
        let p = Self {
            input_size: (input_size, input_size),
            resize_size,
            mean,
            std,
            eval_resize: EvalResize::ResizeThenCrop,
            filter: Filter::Bilinear,
            antialias: true,
        };
        p.check()?;
        Ok(p)
    }

    /// ImageNet statistics with the given input and resize sizes (torchvision's classic
    /// `imagenet(224, 256)`).
    pub fn imagenet(input_size: usize, resize_size: usize) -> Self {
        Self {
            input_size: (input_size, input_size),
            resize_size,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            eval_resize: EvalResize::ResizeThenCrop,
            filter: Filter::Bilinear,
            antialias: true,
        }
    }

    /// TensorFlow EfficientNet-Lite's evaluation preset at `size`: centre square of
    /// `size / (size + 32)` of the short side, bicubic resize (no antialiasing) to
    /// `size × size`, mean 127/255 and std 128/255 on every channel (`(p − 127) / 128`).
    pub fn efficientnet_lite(size: usize) -> Self {
        Self {
            input_size: (size, size),
            resize_size: size + 32,
            mean: vec![127.0 / 255.0; 3],
            std: vec![128.0 / 255.0; 3],
            eval_resize: EvalResize::CropThenResize {
                crop_fraction: size as f64 / (size + 32) as f64,
            },
            filter: Filter::Bicubic,
            antialias: false,
        }
    }

    /// The same preset with another evaluation resize rule, filter and antialiasing.
    pub fn with_eval_resize(
        mut self,
        eval_resize: EvalResize,
        filter: Filter,
        antialias: bool,
    ) -> Self {
        self.eval_resize = eval_resize;
        self.filter = filter;
        self.antialias = antialias;
        self
    }

    /// The number of channels the backbone takes (the length of `mean`).
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    fn check(&self) -> Result<()> {
        let (h, w) = self.input_size;
        if h == 0 || w == 0 || self.resize_size < h.min(w) {
            return Err(DataError::invalid(
                "Preprocess",
                format!(
                    "input {h}x{w} and resize size {} must be positive, the resize size at least the input's shorter side",
                    self.resize_size
                ),
            ));
        }
        if !matches!(self.mean.len(), 1 | 3) || self.mean.len() != self.std.len() {
            return Err(DataError::invalid(
                "Preprocess",
                format!(
                    "{} means and {} stds: need one per channel, 1 or 3 channels",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        Ok(())
    }

    /// The training chain: random resized crop to the input size, horizontal flip, normalise.
    pub fn train_transform(&self) -> Result<Arc<dyn Transform>> {
        self.check()?;
        let (h, w) = self.input_size;
        Ok(Arc::new(
            Compose::new()
                .then(RandomResizedCrop {
                    height: h,
                    width: w,
                    ..RandomResizedCrop::new(h)
                })
                .then(RandomHorizontalFlip { p: 0.5 })
                .then(Normalize::new(self.mean.clone(), self.std.clone())?),
        ))
    }

    /// The evaluation chain: resize the short side, centre crop to the input size, normalise
    /// (or, for [`EvalResize::CropThenResize`], crop the centre then resize).
    pub fn eval_transform(&self) -> Result<Arc<dyn Transform>> {
        self.check()?;
        let (h, w) = self.input_size;
        let chain = match self.eval_resize {
            EvalResize::ResizeThenCrop if self.filter == Filter::Bilinear && self.antialias => {
                Compose::new()
                    .then(ResizeShortSide {
                        size: self.resize_size,
                    })
                    .then(CenterCrop {
                        height: h,
                        width: w,
                    })
            }
            EvalResize::ResizeThenCrop => Compose::new()
                .then(Resample {
                    size: ResampleSize::ShortSide(self.resize_size),
                    filter: self.filter,
                    antialias: self.antialias,
                })
                .then(CenterCrop {
                    height: h,
                    width: w,
                }),
            EvalResize::CropThenResize { crop_fraction } => Compose::new()
                .then(CenterCropFraction {
                    fraction: crop_fraction,
                })
                .then(Resample {
                    size: ResampleSize::Exact(h, w),
                    filter: self.filter,
                    antialias: self.antialias,
                }),
        };
        Ok(Arc::new(chain.then(Normalize::new(
            self.mean.clone(),
            self.std.clone(),
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_ops::SeededRng;

    #[test]
    fn presets_bring_any_image_to_the_input_size_normalised() {
        let p = Preprocess::imagenet(8, 10);
        let x = vec![0.485f32; 3 * 13 * 21];
        for t in [p.train_transform().unwrap(), p.eval_transform().unwrap()] {
            assert_eq!(t.output_shape(&[3, 13, 21]).unwrap(), vec![3, 8, 8]);
            let y = t.apply(&x, &[3, 13, 21], &mut SeededRng::new(4)).unwrap();
            assert_eq!(y.len(), 3 * 64);
            // Channel 0 sits exactly at its mean.
            assert!(y[..64].iter().all(|v| v.abs() < 1e-5));
        }
        // EfficientNet-Lite at 8: the centre 8/40 of the short side (13 → 3 pixels), bicubic
        // up to 8×8; a constant image at the mean normalises to 0.
        let e = Preprocess::efficientnet_lite(8);
        let t = e.eval_transform().unwrap();
        assert_eq!(t.output_shape(&[3, 13, 21]).unwrap(), vec![3, 8, 8]);
        let y = t
            .apply(
                &vec![127.0 / 255.0; 3 * 13 * 21],
                &[3, 13, 21],
                &mut SeededRng::new(0),
            )
            .unwrap();
        assert!(y.iter().all(|v| v.abs() < 1e-5));
        assert!(Preprocess::new(8, 4, vec![0.5], vec![0.5]).is_err());
        assert!(Preprocess::new(8, 8, vec![0.5, 0.5], vec![0.5, 0.5]).is_err());
        assert_eq!(
            Preprocess::new(8, 8, vec![0.5], vec![0.2])
                .unwrap()
                .channels(),
            1
        );
    }
}
