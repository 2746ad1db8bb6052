//! The input preprocessing a pretrained image model expects, as data on the model
//! ([`crate::MobileNetV2::preprocess`], [`crate::EfficientNetLite::preprocess`]): what a data
//! pipeline must do to an RGB image before the network sees it.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// The resampling filter of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear (torchvision's default).
    Bilinear,
    /// Bicubic (TensorFlow EfficientNet's evaluation resize).
    Bicubic,
}

/// How an image of any size becomes the square network input (evaluation preset).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeCrop {
    /// torchvision: resize so that the short side is `resize`, then take the centre
    /// `crop × crop` square.
    ResizeThenCrop {
        /// The short side after resizing (256 for ImageNet models at 224).
        resize: usize,
        /// The side of the centre crop (the input size).
        crop: usize,
    },
    /// TensorFlow EfficientNet: take the centre square of `crop_fraction` of the short side,
    /// then resize it to `size × size`.
    CropThenResize {
        /// The fraction of the short side kept (224/256 = 0.875).
        crop_fraction: f64,
        /// The output side (the input size).
        size: usize,
    },
}

/// Everything an image pipeline needs to feed a pretrained model: the input size, the
/// resize-and-crop rule, the resampling filter, and the per-channel normalisation
/// `x' = (x − mean) / std` of RGB values scaled to `0..1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square input the weights were trained at.
    pub input_size: usize,
    /// The evaluation resize and crop.
    pub resize_crop: ResizeCrop,
    /// The resize filter.
    pub interpolation: Interpolation,
    /// Whether downscaling low-pass filters first (torchvision's `antialias=True`).
    pub antialias: bool,
    /// Per-channel mean (R, G, B) on the `0..1` scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (R, G, B) on the `0..1` scale.
    pub std: [f32; 3],
}

impl Preprocess {
    /// torchvision's ImageNet evaluation preset at `size` (224 for the published weights):
    /// resize the short side to `size · 256/224` (bilinear, antialiased), centre crop
    /// `size × size`, normalise with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
    pub fn torchvision_imagenet(size: usize) -> Self {
        Self {
            input_size: size,
            resize_crop: ResizeCrop::ResizeThenCrop {
                resize: (size * 256).div_ceil(224),
                crop: size,
            },
            interpolation: Interpolation::Bilinear,
            antialias: true,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// The TensorFlow EfficientNet-Lite evaluation preset at `size`: centre crop
    /// `size/(size+32)` of the short side (224/256 at 224), bicubic resize to `size × size`,
    /// normalise `(p − 127)/128` for 8-bit `p`, i.e. mean 127/255 and std 128/255 on every
    /// channel.
    pub fn efficientnet_lite(size: usize) -> Self {
        Self {
            input_size: size,
            resize_crop: ResizeCrop::CropThenResize {
                crop_fraction: size as f64 / (size + 32) as f64,
                size,
            },
            interpolation: Interpolation::Bicubic,
            antialias: false,
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
        }
    }

    /// Normalises `x` (`[3, H, W]` or `[N, 3, H, W]`, values on the `0..1` scale) with
    /// [`Preprocess::mean`] and [`Preprocess::std`]; keeps the dtype.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let c_dim = match x.rank() {
            3 => 0,
            4 => 1,
            _ => usize::MAX,
        };
        if c_dim == usize::MAX || x.dim(c_dim)? != 3 {
            return Err(ModelError::ShapeMismatch {
                name: "image to normalise".to_string(),
                expected: vec![0, 3, 0, 0],
                got: x.dims().to_vec(),
            });
        }
        let mut shape = vec![1usize; x.rank()];
        shape[c_dim] = 3;
        let mean = Tensor::new(&self.mean, x.device())?
            .to_dtype(x.dtype())?
            .reshape(shape.as_slice())?;
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inv = Tensor::new(inv.as_slice(), x.device())?
            .to_dtype(x.dtype())?
            .reshape(shape.as_slice())?;
        Ok(x.broadcast_sub(&mean)?.broadcast_mul(&inv)?)
    }

    /// `normalize` of a `u8`-valued image scaled to `0..1` first (a convenience for decoded
    /// 8-bit images), returned as f32.
    pub fn normalize_u8(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x.to_dtype(DType::F32)? / 255.0)?;
        self.normalize(&x)
    }
}
