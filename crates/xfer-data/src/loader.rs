//! [`DataLoader`]: batches of a [`Dataset`] as candle tensors on a chosen device.
//!
//! Batch `b` of epoch `e` is a pure function of `(seed, e, b)`: epoch `e` shuffles with a
//! generator seeded from `(seed, e)`, and random transforms of sample `i` in epoch `e` draw
//! from a generator seeded from `(seed, e, i)`. So a run is reproducible, and resuming at
//! global step `g` ([`DataLoader::steps`]) gives exactly the batches an uninterrupted run
//! would have seen — with or without the background prefetch thread, and with any number of
//! worker threads: each sample's result depends only on `(seed, e, i)`, and the workers'
//! results are put back in batch order.
//!
//! Lazily decoded data sets ([`Dataset::is_lazy`], e.g. an image folder) are decoded by
//! [`DataLoaderBuilder::workers`] threads (default 2) with [`DataLoaderBuilder::prefetch`]
//! batches built ahead (default 2), so decoding overlaps training while memory stays bounded
//! by `prefetch + 1` batches.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::seed::{rng_for, tag};
use crate::transform::Transform;
use candle_core::{Device, Tensor};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// One batch: features `(B, sample_shape...)` f32, labels `(B,)` u32 where the data set has
/// them, domain ids `(B,)` u32 where it records them, and which samples they are.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Features, `(B, ...)` f32 on the loader's device.
    pub x: Tensor,
    /// Labels `(B,)` u32; `None` for unlabelled data.
    pub y: Option<Tensor>,
    /// Domain ids `(B,)` u32, where the data set has them.
    pub domain: Option<Tensor>,
    /// Indices of the samples in the data set (a sample the data set skipped as unreadable,
    /// e.g. an image folder with `skip_bad`, is left out, so the batch is that much smaller).
    pub indices: Vec<usize>,
    /// The epoch this batch belongs to.
    pub epoch: u64,
    /// The global step (batches since epoch 0, batch 0).
    pub step: u64,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    /// Whether the batch is empty (never, for batches from a loader).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// The labels, or an error for unlabelled data.
    pub fn labels(&self) -> Result<&Tensor> {
        self.y.as_ref().ok_or_else(|| {
            DataError::invalid("Batch::labels", "this batch comes from unlabelled data")
        })
    }
}

struct Inner<D> {
    ds: D,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    prefetch: usize,
    workers: usize,
    device: Device,
    transform: Option<Arc<dyn Transform>>,
    out_shape: Vec<usize>,
    batches_per_epoch: usize,
}

/// Batches of a data set; see the module docs for the seeding contract.
pub struct DataLoader<D> {
    inner: Arc<Inner<D>>,
}

impl<D: Dataset> std::fmt::Debug for DataLoader<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("DataLoader")
            .field("dataset", &i.ds.name())
            .field("len", &i.ds.len())
            .field("batch_size", &i.batch_size)
            .field("shuffle", &i.shuffle)
            .field("drop_last", &i.drop_last)
            .field("seed", &i.seed)
            .field("prefetch", &i.prefetch)
            .field("workers", &i.workers)
            .field("device", &i.device)
            .field("transform", &i.transform)
            .field("sample_shape", &i.out_shape)
            .finish()
    }
}

impl<D> Clone for DataLoader<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Configures a [`DataLoader`]; defaults: shuffle on, keep the last partial batch, seed 0,
/// CPU, no transform; in-memory data: no prefetch, one thread; lazily decoded data
/// ([`Dataset::is_lazy`]): 2 batches prefetched, 2 worker threads.
pub struct DataLoaderBuilder<D> {
    ds: D,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    prefetch: Option<usize>,
    workers: Option<usize>,
    device: Device,
    transform: Option<Arc<dyn Transform>>,
}

impl<D: Dataset + 'static> DataLoaderBuilder<D> {
    /// Shuffle every epoch (seeded from `(seed, epoch)`), or keep the data set's order.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    /// Drop the last batch of an epoch when it is smaller than the batch size.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// The seed of shuffles and random transforms.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Build up to `n` batches ahead in a background thread (0: build on demand). Default: 0,
    /// or 2 for lazily decoded data.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n);
        self
    }
    /// Load and transform the samples of a batch on `n` threads (0 or 1: in the thread that
    /// builds the batch). Default: 1, or 2 for lazily decoded data. The batches do not
    /// depend on it.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }
    /// The device the batches are put on.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// A per-sample transform (augmentation, normalisation, resize).
    pub fn transform(mut self, t: impl Transform + 'static) -> Self {
        self.transform = Some(Arc::new(t));
        self
    }
    /// A shared per-sample transform.
    pub fn transform_arc(mut self, t: Arc<dyn Transform>) -> Self {
        self.transform = Some(t);
        self
    }

    /// Checks the configuration: positive batch size, a non-empty data set, a transform that
    /// accepts the sample shape, and at least one batch per epoch.
    pub fn build(self) -> Result<DataLoader<D>> {
        // Data comes before the model in most programs: xfer's process settings apply here
        // too (once; `xfer_ops::runtime`).
        xfer_ops::runtime::configure();
        if self.batch_size == 0 {
            return Err(DataError::invalid(
                "DataLoader",
                "batch size must be positive",
            ));
        }
        let n = self.ds.len();
        if n == 0 {
            return Err(DataError::Empty(self.ds.name().to_string()));
        }
        let out_shape = match &self.transform {
            Some(t) => t.output_shape(self.ds.sample_shape())?,
            None => self.ds.sample_shape().to_vec(),
        };
        let batches_per_epoch = if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        };
        if batches_per_epoch == 0 {
            return Err(DataError::invalid(
                "DataLoader",
                format!(
                    "`{}` has {n} samples, fewer than one batch of {} with drop_last",
                    self.ds.name(),
                    self.batch_size
                ),
            ));
        }
        let lazy = self.ds.is_lazy();
        Ok(DataLoader {
            inner: Arc::new(Inner {
                prefetch: self.prefetch.unwrap_or(if lazy { 2 } else { 0 }),
                workers: self.workers.unwrap_or(if lazy { 2 } else { 1 }).max(1),
                ds: self.ds,
                batch_size: self.batch_size,
                shuffle: self.shuffle,
                drop_last: self.drop_last,
                seed: self.seed,
                device: self.device,
                transform: self.transform,
                out_shape,
                batches_per_epoch,
            }),
        })
    }
}

impl<D: Dataset + 'static> DataLoader<D> {
    /// Starts configuring a loader of `ds` with batches of `batch_size`.
    pub fn builder(ds: D, batch_size: usize) -> DataLoaderBuilder<D> {
        DataLoaderBuilder {
            ds,
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            prefetch: None,
            workers: None,
            device: Device::Cpu,
            transform: None,
        }
    }

    /// The data set.
    pub fn dataset(&self) -> &D {
        &self.inner.ds
    }
    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }
    /// Whether partial last batches are dropped.
    pub fn drop_last(&self) -> bool {
        self.inner.drop_last
    }
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }
    /// The device batches are put on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }
    /// The per-sample shape of the batches (after the transform).
    pub fn sample_shape(&self) -> &[usize] {
        &self.inner.out_shape
    }
    /// Batches built ahead in the background (0: none).
    pub fn prefetch(&self) -> usize {
        self.inner.prefetch
    }
    /// Threads that load and transform the samples of a batch.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }
    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch
    }

    /// The sample order of epoch `e`: a permutation seeded from `(seed, e)`, or `0..N`
    /// without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        order(&self.inner, epoch)
    }

    /// The batches of epoch `e`.
    pub fn epoch(&self, e: u64) -> Batches {
        let bpe = self.inner.batches_per_epoch as u64;
        self.steps(e.saturating_mul(bpe), Some(bpe))
    }

    /// Batches without end, epoch after epoch (the "cycling" iterator).
    pub fn forever(&self) -> Batches {
        self.steps(0, None)
    }

    /// `count` batches (or without end) starting at global step `start` — for resuming a run
    /// and for cycling the shorter side of a [`crate::PairedLoader`].
    pub fn steps(&self, start: u64, count: Option<u64>) -> Batches {
        let plan = Plan {
            step: start,
            end: count.map(|c| start.saturating_add(c)),
            cached: None,
        };
        Batches::start(Arc::clone(&self.inner), plan)
    }
}

fn order<D: Dataset>(inner: &Inner<D>, epoch: u64) -> Vec<usize> {
    let n = inner.ds.len();
    if inner.shuffle {
        rng_for(inner.seed, &[tag::SHUFFLE, epoch]).permutation(n)
    } else {
        (0..n).collect()
    }
}

/// Which batches to build: global steps `step..end`.
struct Plan {
    step: u64,
    end: Option<u64>,
    cached: Option<(u64, Vec<usize>)>,
}

impl Plan {
    fn next<D: Dataset>(&mut self, inner: &Inner<D>) -> Option<(u64, u64, Vec<usize>)> {
        if self.end.is_some_and(|e| self.step >= e) {
            return None;
        }
        let bpe = inner.batches_per_epoch as u64;
        let (epoch, b) = (self.step / bpe, (self.step % bpe) as usize);
        let ord = match &self.cached {
            Some((e, o)) if *e == epoch => o,
            _ => &self.cached.insert((epoch, order(inner, epoch))).1,
        };
        let lo = b * inner.batch_size;
        let hi = (lo + inner.batch_size).min(ord.len());
        let idx = ord.get(lo..hi)?.to_vec();
        let step = self.step;
        self.step += 1;
        Some((epoch, step, idx))
    }
}

/// One loaded, transformed sample: features, label, domain.
type Loaded = (Vec<f32>, Option<u32>, Option<u32>);

/// Sample `i` of epoch `epoch`, transformed; `None` when the data set skips it (a bad file).
fn load_sample<D: Dataset>(inner: &Inner<D>, epoch: u64, i: usize) -> Result<Option<Loaded>> {
    let Some((s, shape)) = inner.ds.get_natural(i)? else {
        return Ok(None);
    };
    let x = match &inner.transform {
        Some(t) => {
            let mut rng = rng_for(inner.seed, &[tag::TRANSFORM, epoch, i as u64]);
            let x = t.apply(&s.x, &shape, &mut rng)?;
            if shape != inner.ds.sample_shape() && t.output_shape(&shape)? != inner.out_shape {
                return Err(DataError::shape(
                    inner.ds.name(),
                    format!(
                        "sample {i} of shape {shape:?} becomes {:?} after the transform, not {:?}: \
                         end the transform with a fixed-size step (Resize, CenterCrop, \
                         RandomResizedCrop)",
                        t.output_shape(&shape)?,
                        inner.out_shape
                    ),
                ));
            }
            x
        }
        None if shape != inner.out_shape => {
            return Err(DataError::shape(
                inner.ds.name(),
                format!(
                    "sample {i} has shape {shape:?}, expected {:?}: give a size (folder:DIR:size=HxW) \
                     or a transform that brings every sample to one size",
                    inner.out_shape
                ),
            ));
        }
        None => s.x,
    };
    let per: usize = inner.out_shape.iter().product();
    if x.len() != per {
        return Err(DataError::shape(
            inner.ds.name(),
            format!(
                "sample {i} has {} values, expected {per} (shape {:?})",
                x.len(),
                inner.out_shape
            ),
        ));
    }
    Ok(Some((x, s.y, s.domain)))
}

/// Loads the samples at `indices` on up to `inner.workers` threads; results in `indices`
/// order (each depends only on `(seed, epoch, index)`, so the thread count does not matter).
fn load_all<D: Dataset>(
    inner: &Inner<D>,
    epoch: u64,
    indices: &[usize],
) -> Vec<Result<Option<Loaded>>> {
    let threads = inner.workers.min(indices.len());
    if threads <= 1 {
        return indices
            .iter()
            .map(|&i| load_sample(inner, epoch, i))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = indices.get(k) else { break };
            done.push((k, load_sample(inner, epoch, i)));
        }
        done
    };
    let mut slots: Vec<Option<Result<Option<Loaded>>>> = Vec::new();
    slots.resize_with(indices.len(), || None);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads)
            .map(|w| {
                std::thread::Builder::new()
                    .name(format!("xfer-data-worker-{w}"))
                    .spawn_scoped(scope, work)
            })
            .collect();
        let mut parts = vec![work()];
        for h in handles {
            // A worker that failed to start or panicked leaves its samples unclaimed or lost;
            // they are loaded below in this thread.
            if let Ok(Ok(done)) = h.map(|h| h.join()) {
                parts.push(done);
            }
        }
        for (k, r) in parts.into_iter().flatten() {
            if let Some(slot) = slots.get_mut(k) {
                *slot = Some(r);
            }
        }
    });
    slots
        .into_iter()
        .zip(indices)
        .map(|(r, &i)| r.unwrap_or_else(|| load_sample(inner, epoch, i)))
        .collect()
}

fn make_batch<D: Dataset>(
    inner: &Inner<D>,
    epoch: u64,
    step: u64,
    indices: Vec<usize>,
) -> Result<Batch> {
    let per: usize = inner.out_shape.iter().product();
    let labelled = inner.ds.has_labels();
    let mut xs = Vec::with_capacity(indices.len() * per);
    let mut ys = Vec::with_capacity(if labelled { indices.len() } else { 0 });
    let mut doms = Vec::new();
    let mut all_domains = true;
    let mut kept = Vec::with_capacity(indices.len());
    for (r, &i) in load_all(inner, epoch, &indices).into_iter().zip(&indices) {
        let Some((x, y, domain)) = r? else {
            continue;
        };
        xs.extend_from_slice(&x);
        if labelled {
            ys.push(y.ok_or_else(|| {
                DataError::shape(inner.ds.name(), format!("sample {i} has no label"))
            })?);
        }
        match domain {
            Some(d) => doms.push(d),
            None => all_domains = false,
        }
        kept.push(i);
    }
    if kept.is_empty() {
        return Err(DataError::Empty(format!(
            "{}: every sample of batch {step} was skipped as unreadable",
            inner.ds.name()
        )));
    }
    let indices = kept;
    let b = indices.len();
    let mut dims = vec![b];
    dims.extend_from_slice(&inner.out_shape);
    let dev = &inner.device;
    Ok(Batch {
        x: Tensor::from_vec(xs, dims, dev)?,
        y: if labelled {
            Some(Tensor::from_vec(ys, b, dev)?)
        } else {
            None
        },
        domain: if all_domains && b > 0 {
            Some(Tensor::from_vec(doms, b, dev)?)
        } else {
            None
        },
        indices,
        epoch,
        step,
    })
}

enum Mode<D> {
    Inline {
        inner: Arc<Inner<D>>,
        plan: Plan,
    },
    Prefetch {
        rx: Option<Receiver<Result<Batch>>>,
        handle: Option<JoinHandle<()>>,
    },
    Done,
}

/// An iterator of `Result<Batch>`; it ends after the first error.
pub struct Batches {
    mode: Box<dyn BatchSource>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

trait BatchSource: Send {
    fn next_batch(&mut self) -> Option<Result<Batch>>;
}

impl<D: Dataset + 'static> BatchSource for Mode<D> {
    fn next_batch(&mut self) -> Option<Result<Batch>> {
        let out = match self {
            Mode::Inline { inner, plan } => {
                let (e, s, idx) = plan.next(inner)?;
                make_batch(inner, e, s, idx)
            }
            Mode::Prefetch { rx, handle } => match rx.as_ref()?.recv() {
                Ok(r) => r,
                Err(_) => {
                    // The producer ended: normally after the last batch, or by panicking.
                    let panicked = handle.take().is_some_and(|h| h.join().is_err());
                    *self = Mode::Done;
                    return panicked
                        .then(|| Err(DataError::Prefetch("the thread panicked".into())));
                }
            },
            Mode::Done => return None,
        };
        if out.is_err() {
            *self = Mode::Done;
        }
        Some(out)
    }
}

impl<D> Drop for Mode<D> {
    fn drop(&mut self) {
        if let Mode::Prefetch { rx, handle } = self {
            // Dropping the receiver makes the producer's next send fail, so it stops.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl Batches {
    fn start<D: Dataset + 'static>(inner: Arc<Inner<D>>, mut plan: Plan) -> Self {
        if inner.prefetch == 0 {
            return Self {
                mode: Box::new(Mode::Inline { inner, plan }),
            };
        }
        let (start, end) = (plan.step, plan.end);
        let (tx, rx): (SyncSender<Result<Batch>>, _) = sync_channel(inner.prefetch);
        let spawned = std::thread::Builder::new()
            .name("xfer-data-prefetch".into())
            .spawn({
                let inner = Arc::clone(&inner);
                move || {
                    while let Some((e, s, idx)) = plan.next(&inner) {
                        let b = make_batch(&inner, e, s, idx);
                        let stop = b.is_err();
                        if tx.send(b).is_err() || stop {
                            break;
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => Self {
                mode: Box::new(Mode::<D>::Prefetch {
                    rx: Some(rx),
                    handle: Some(h),
                }),
            },
            Err(e) => {
                tracing::warn!("prefetch thread could not start ({e}); loading inline");
                let plan = Plan {
                    step: start,
                    end,
                    cached: None,
                };
                Self {
                    mode: Box::new(Mode::Inline { inner, plan }),
                }
            }
        }
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.mode.next_batch()
    }
}
