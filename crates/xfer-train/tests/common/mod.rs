//! A small network with dropout trained by the `Trainer` with checkpoints, shared by the
//! resume tests and the kill test (which runs it in a child process).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test code

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use xfer_models::{Dropout, Linear, Module, ModuleT, ParamStore};
use xfer_ops::SeededRng;
use xfer_train::{
    Adam, AdamConfig, CheckpointConfig, Schedule, StepCtx, StepOutput, TrainError, Trainer,
    TrainerConfig,
};

/// Samples in the data set.
pub const N: usize = 64;
/// Batch size.
pub const BATCH: usize = 8;
/// Steps per epoch.
pub const SPE: usize = N / BATCH;

/// `[Linear(2, h), ReLU, Dropout(0.3), Linear(h, 2)]`.
pub struct DropNet {
    pub store: ParamStore,
    l1: Linear,
    drop: Dropout,
    l2: Linear,
}

impl DropNet {
    /// A network initialised from `init_seed`.
    pub fn new(hidden: usize, init_seed: u64) -> Self {
        let store = ParamStore::new();
        let mut rng = SeededRng::new(init_seed);
        let dev = Device::Cpu;
        let l1 = Linear::new(
            &store.scope("l1"),
            2,
            hidden,
            true,
            &mut rng,
            DType::F32,
            &dev,
        )
        .unwrap();
        let l2 = Linear::new(
            &store.scope("l2"),
            hidden,
            2,
            true,
            &mut rng,
            DType::F32,
            &dev,
        )
        .unwrap();
        // The layer's own generator is seeded too: only the trainer's step scope makes its
        // masks resumable.
        let drop = Dropout::new(0.3, init_seed ^ 0xD0).unwrap();
        Self {
            store,
            l1,
            drop,
            l2,
        }
    }

    /// Logits in training mode (dropout on).
    pub fn forward_train(&self, x: &Tensor) -> xfer_train::Result<Tensor> {
        let h = self.l1.forward(x)?.relu()?;
        let h = self.drop.forward_t(&h, true)?;
        Ok(self.l2.forward(&h)?)
    }

    /// Every parameter's bits, by name.
    pub fn bits(&self) -> Vec<(String, Vec<u32>)> {
        bits_of(&self.store)
    }
}

/// Every entry's bits, by name.
pub fn bits_of(store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .all()
        .iter()
        .map(|p| {
            let v = p
                .var()
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (
                p.name().to_string(),
                v.into_iter().map(f32::to_bits).collect(),
            )
        })
        .collect()
}

/// Two Gaussian blobs in 2-D, labels 0/1 (seeded).
pub fn blobs() -> (Tensor, Tensor) {
    let mut rng = SeededRng::new(7);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..N {
        let c = (i % 2) as u32;
        let mu = if c == 0 { -1.0 } else { 1.0 };
        xs.push((mu + 0.7 * rng.normal01()) as f32);
        xs.push((0.5 * mu + 0.7 * rng.normal01()) as f32);
        ys.push(c);
    }
    (
        Tensor::from_vec(xs, (N, 2), &Device::Cpu).unwrap(),
        Tensor::from_vec(ys, N, &Device::Cpu).unwrap(),
    )
}

/// The loss of step `ctx` on the batch of a seeded per-epoch permutation.
pub fn loss(net: &DropNet, x: &Tensor, y: &Tensor, ctx: &StepCtx) -> xfer_train::Result<Tensor> {
    let perm = SeededRng::new(ctx.epoch_seed()).permutation(N);
    let idx: Vec<u32> = perm[ctx.step_in_epoch * BATCH..(ctx.step_in_epoch + 1) * BATCH]
        .iter()
        .map(|&i| i as u32)
        .collect();
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu)?;
    let (xb, yb) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
    let lsm = xfer_ops::log_softmax(&net.forward_train(&xb)?)?;
    let picked = lsm.gather(&yb.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// The trainer of the shared plan: AdamW, `steps` steps, a checkpoint every step into `dir`.
pub fn trainer(net: &DropNet, steps: usize, dir: &Path) -> Trainer {
    let cfg = TrainerConfig::steps(steps, SPE, Schedule::cosine(0.05, 0.001))
        .with_seed(3)
        .with_quiet(true)
        .with_checkpoint(CheckpointConfig::new(dir, 1));
    Trainer::new(
        cfg,
        &net.store,
        Adam::new(net.store.trainable(), AdamConfig::adamw()).unwrap(),
    )
    .unwrap()
}

/// Trains a fresh network (initialised from `init_seed`) on the shared plan, resuming from
/// the newest checkpoint in `dir` if there is one; with `fail_at`, the objective fails at
/// that step. Returns the network and the result of `fit`.
pub fn train(
    hidden: usize,
    init_seed: u64,
    steps: usize,
    dir: &Path,
    fail_at: Option<usize>,
) -> (DropNet, xfer_train::Result<()>) {
    let (x, y) = blobs();
    let net = DropNet::new(hidden, init_seed);
    let mut t = trainer(&net, steps, dir);
    let r = t.resume_latest().and_then(|_| {
        let mut obj = |ctx: &StepCtx| {
            if Some(ctx.step) == fail_at {
                return Err(TrainError::objective("simulated crash"));
            }
            Ok(StepOutput::new(loss(&net, &x, &y, ctx)?))
        };
        t.fit(&mut obj).map(|_| ())
    });
    (net, r)
}
