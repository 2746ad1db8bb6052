//! A seeded generator of our own: candle's CPU RNG cannot be seeded, so every random number
//! xfer draws comes from here. Same seed → identical bits on the CPU.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, StandardNormal};

/// Deterministic random source (ChaCha12 via `StdRng`).
#[derive(Debug, Clone)]
pub struct SeededRng {
    inner: StdRng,
}

impl SeededRng {
    /// A generator from a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: StdRng::seed_from_u64(seed),
        }
    }

    /// A new independent generator derived from this one (for a sub-component).
    pub fn fork(&mut self) -> Self {
        Self::new(self.inner.random())
    }

    /// Mutable access to the underlying `rand` generator.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.inner
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn uniform01(&mut self) -> f64 {
        self.inner.random()
    }

    /// A uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.inner.random_range(0..n.max(1))
    }

    /// A standard normal `f64`.
    pub fn normal01(&mut self) -> f64 {
        StandardNormal.sample(&mut self.inner)
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        v.shuffle(&mut self.inner);
        v
    }

    /// Shuffles a slice in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        v.shuffle(&mut self.inner);
    }

    fn tensor_from(
        &mut self,
        shape: &[usize],
        dtype: DType,
        device: &Device,
        mut f: impl FnMut(&mut Self) -> f64,
    ) -> crate::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|_| f(self)).collect();
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?)
    }

    /// Normal `N(mean, std²)` values.
    pub fn normal(
        &mut self,
        shape: &[usize],
        mean: f64,
        std: f64,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        self.tensor_from(shape, dtype, device, |r| mean + std * r.normal01())
    }

    /// Uniform values in `[lo, hi)`.
    pub fn uniform(
        &mut self,
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        self.tensor_from(shape, dtype, device, |r| lo + (hi - lo) * r.uniform01())
    }

    /// Kaiming (He) uniform for a ReLU layer with `fan_in` inputs: `U(−b, b)`, `b = sqrt(6 / fan_in)`.
    pub fn kaiming_uniform(
        &mut self,
        shape: &[usize],
        fan_in: usize,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        let b = (6.0 / fan_in.max(1) as f64).sqrt();
        self.uniform(shape, -b, b, dtype, device)
    }

    /// Kaiming (He) normal: `N(0, 2 / fan_in)`.
    pub fn kaiming_normal(
        &mut self,
        shape: &[usize],
        fan_in: usize,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        self.normal(
            shape,
            0.0,
            (2.0 / fan_in.max(1) as f64).sqrt(),
            dtype,
            device,
        )
    }

    /// Xavier (Glorot) uniform: `U(−b, b)`, `b = sqrt(6 / (fan_in + fan_out))`.
    pub fn xavier_uniform(
        &mut self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        let b = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
        self.uniform(shape, -b, b, dtype, device)
    }

    /// PyTorch's default `nn.Linear` / `nn.Conv2d` initialisation: `U(−1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn torch_default(
        &mut self,
        shape: &[usize],
        fan_in: usize,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        let b = 1.0 / (fan_in.max(1) as f64).sqrt();
        self.uniform(shape, -b, b, dtype, device)
    }

    /// A Bernoulli keep-mask with `P(1) = keep`, as 0/1 values.
    pub fn bernoulli_mask(
        &mut self,
        shape: &[usize],
        keep: f64,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Tensor> {
        self.tensor_from(shape, dtype, device, |r| {
            if r.uniform01() < keep { 1.0 } else { 0.0 }
        })
    }
}
