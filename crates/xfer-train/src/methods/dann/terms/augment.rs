//! FixMatch's two views of a target batch, from xfer-data's seeded transforms: for images a
//! weak affine jitter (±5°, ±1/16 shift, scale 0.95–1.05) and a strong one (±25°, ±0.2
//! shift, scale 0.8–1.2, plus Gaussian noise of 0.1 × the data's standard deviation); for
//! feature vectors, which no image transform fits, Gaussian noise of 0.05 (weak) and 0.25
//! (strong) × each feature's standard deviation. Every draw comes from the step's generator.

use candle_core::{DType, Tensor};
use xfer_data::Transform;
use xfer_data::transform::RandomAffine;
use xfer_ops::SeededRng;

use crate::{Result, TrainError};

/// Which view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strength {
    Weak,
    Strong,
}

/// Makes the weak and strong views of batches of one sample shape.
#[derive(Debug, Clone)]
pub(crate) struct Augmenter {
    sample_shape: Vec<usize>,
    image: bool,
    /// Per-feature standard deviation of the data (vectors), or one value (images).
    std: Vec<f32>,
}

impl Augmenter {
    /// An augmenter for samples of `sample_shape`, scaled to the spread of `data`
    /// `(N, sample_shape...)`.
    pub(crate) fn new(sample_shape: &[usize], data: &Tensor) -> Result<Self> {
        let image = sample_shape.len() >= 2;
        let flat = data.flatten_from(1)?.to_dtype(DType::F64)?;
        let n = flat.dim(0)?;
        if n < 2 {
            return Err(TrainError::BadData(
                "augmentation needs at least two target examples".into(),
            ));
        }
        let std = if image {
            let all = flat.flatten_all()?;
            let m = all.mean_all()?;
            let v = all
                .broadcast_sub(&m)?
                .sqr()?
                .mean_all()?
                .to_scalar::<f64>()?;
            vec![v.sqrt() as f32]
        } else {
            let m = flat.mean(0)?;
            let v = flat.broadcast_sub(&m)?.sqr()?.mean(0)?.to_vec1::<f64>()?;
            v.iter().map(|x| x.sqrt() as f32).collect()
        };
        Ok(Self {
            sample_shape: sample_shape.to_vec(),
            image,
            std,
        })
    }

    /// The `strength` view of batch `x`, drawn from `rng`.
    pub(crate) fn view(
        &self,
        x: &Tensor,
        strength: Strength,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows = x.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(rows.len() * rows.first().map_or(0, Vec::len));
        let affine = match strength {
            Strength::Weak => RandomAffine {
                degrees: 5.0,
                translate: 0.0625,
                scale: (0.95, 1.05),
            },
            Strength::Strong => RandomAffine {
                degrees: 25.0,
                translate: 0.2,
                scale: (0.8, 1.2),
            },
        };
        let noise = match (self.image, strength) {
            (true, Strength::Weak) => 0.0,
            (true, Strength::Strong) => 0.1,
            (false, Strength::Weak) => 0.05,
            (false, Strength::Strong) => 0.25,
        };
        for row in &rows {
            let mut v = if self.image {
                affine
                    .apply(row, &self.sample_shape, rng)
                    .map_err(|e| TrainError::BadData(format!("augmentation: {e}")))?
            } else {
                row.clone()
            };
            if noise > 0.0 {
                for (j, x) in v.iter_mut().enumerate() {
                    let s = self.std.get(j).or(self.std.first()).copied().unwrap_or(0.0);
                    *x += (noise * rng.normal01()) as f32 * s;
                }
            }
            out.extend(v);
        }
        Ok(Tensor::from_vec(out, dims.as_slice(), x.device())?.to_dtype(x.dtype())?)
    }
}
