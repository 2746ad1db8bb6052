//! A seeded generator of our own: candle's CPU RNG cannot be seeded, so every random number
//! xfer draws comes from here. Same seed → identical bits on the CPU.
//!
//! - [`derive_seed`]: the one way xfer derives independent sub-seeds from a seed and a path
//!   of integers (step, epoch, stream, ...), so every random choice is a pure function of
//!   `(seed, where)`.
//! - [`StepRngScope`] / [`scoped_rng`]: the randomness of layers (dropout masks) during one
//!   training step comes from the step's seed, not from a generator the layer keeps, so a run
//!   resumed from a checkpoint draws the same masks as an uninterrupted one.

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, StandardNormal};

/// SplitMix64's finaliser (Steele, Lea & Flood, 2014): a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from `seed` and a path of integers, e.g. `derive_seed(seed, &[EPOCH, e])`:
/// `h = mix(seed)`, then `h = mix(h ^ mix(p))` for each `p` of the path (SplitMix64 steps).
/// Different paths give (with overwhelming probability) unrelated seeds. This is the one
/// definition in xfer: the trainer's step and epoch streams, the methods' sub-seeds and
/// xfer-data's streams all come from it.
pub fn derive_seed(seed: u64, path: &[u64]) -> u64 {
    path.iter()
        .fold(splitmix64(seed), |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// The random stream of the step in progress on this thread (see [`StepRngScope`]).
#[derive(Debug, Clone, Copy)]
struct StepStream {
    seed: u64,
    draws: u64,
}

thread_local! {
    static STEP_STREAM: RefCell<Option<StepStream>> = const { RefCell::new(None) };
}

/// While alive, every random draw of a layer on this thread (through [`scoped_rng`]) comes
/// from `seed`: the `k`-th draw of the scope uses `derive_seed(seed, &[k])`, whatever the
/// layer (the layer's own seed plays no part, so a model rebuilt with another seed to resume
/// a run still draws the run's masks).
///
/// The trainer opens one around each step's forward pass with a seed derived from
/// `(run seed, step)`, so dropout masks are a pure function of the run's seed, the step and
/// the order of the forward pass, and nothing random has to be saved in a checkpoint. Scopes
/// nest (the inner one wins until it is dropped) and are per thread: the guard cannot be
/// sent to another thread, and layers run on other threads draw from their own generators.
#[derive(Debug)]
pub struct StepRngScope {
    prev: Option<StepStream>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl StepRngScope {
    /// Opens a scope seeded with `seed` on this thread.
    pub fn enter(seed: u64) -> Self {
        let prev = STEP_STREAM.with(|s| s.replace(Some(StepStream { seed, draws: 0 })));
        Self {
            prev,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for StepRngScope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        STEP_STREAM.with(|s| s.replace(prev));
    }
}

/// The generator for the next random draw of a layer, when a [`StepRngScope`] is open on
/// this thread (`None` otherwise: the layer then uses its own generator). Each call advances
/// the scope's draw counter.
pub fn scoped_rng() -> Option<SeededRng> {
    STEP_STREAM.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.as_mut()?;
        let k = st.draws;
        st.draws += 1;
        Some(SeededRng::new(derive_seed(st.seed, &[k])))
    })
}

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
