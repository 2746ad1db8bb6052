//! Data for xfer: data sets, loaders, splits, transforms, embedded data sets and file
//! formats — offline, seeded, and without knowledge of any model.
//!
//! - [`Dataset`], [`TensorDataset`] (features, labels, domain ids, class names, a
//!   class-attribute matrix) and [`UnlabeledDataset`] (labels gone, so unsupervised methods
//!   cannot peek at them).
//! - [`DataLoader`]: batches as candle tensors on a chosen device, seeded shuffling per epoch
//!   (epoch `e` uses `(seed, e)`: reproducible and resumable), drop-last, an endless cycling
//!   iterator, optional background prefetch; [`PairedLoader`]: source/target batches of equal
//!   size for domain-adversarial training.
//! - [`split`]: stratified train/validation, few-shot support sets, seen/unseen classes.
//! - [`transform`]: normalise, resize, resize of the short side, centre crop, seeded random
//!   crop / random resized crop / flip / affine jitter; [`Preprocess`]: a backbone's input
//!   preset and its ImageNet-style train and eval chains.
//! - [`embedded`]: two moons, optdigits, synthetic digits, shifted digits, shapes with
//!   attributes, digit attributes.
//! - [`formats`]: IDX, CSV, image folders (eager, or lazily decoded: [`ImageFolder`]), safetensors, and Xian et al.'s zero-shot `.mat`
//!   benchmark format.
//! - [`spec`]: one string per data set (`optdigits`, `csv:train.csv:label=0`, ...) and
//!   [`spec::load`], the three-line way to bring your own data.
//!
//! ```no_run
//! # fn main() -> xfer_data::Result<()> {
//! let source = xfer_data::spec::load("synth-digits", 0)?;
//! let target = xfer_data::spec::load("optdigits", 0)?;
//! let pairs = xfer_data::PairedLoader::from_datasets(
//!     source, target.unlabeled(), 64, 0, &candle_core::Device::Cpu)?;
//! for pair in pairs.epoch(0) {
//!     let (s, t) = pair?;
//!     assert_eq!(s.x.dims(), t.x.dims());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Data attribution
//! The embedded optdigits set is the test part of the UCI "Optical Recognition of
//! Handwritten Digits" data set: E. Alpaydin, C. Kaynak (1998), UCI Machine Learning
//! Repository; licence CC BY 4.0. 1,797 digits by 13 writers (disjoint from the 30 writers of
//! the UCI training part); see `data/README.md` in this crate.

pub mod dataset;
pub mod embedded;
pub mod error;
pub mod formats;
pub mod image_ops;
pub mod loader;
pub mod mapped;
pub mod paired;
pub mod preset;
pub mod seed;
pub mod spec;
pub mod split;
pub mod text;
pub mod transform;

pub use dataset::{ClassAttributes, Dataset, MAX_CLASSES, Sample, TensorDataset, UnlabeledDataset};
pub use error::{DataError, Result};
pub use formats::folder::{FolderOptions, ImageFolder};
pub use loader::{Batch, Batches, DataLoader, DataLoaderBuilder};
pub use mapped::Mapped;
pub use paired::{PairedBatches, PairedLoader};
pub use preset::{EvalResize, Preprocess};
pub use spec::{Data, DataSpec, check_compatible, load, load_data};
pub use split::{
    LabeledSet, Shots, class_split, few_shot, indices_by_class, random_unseen_classes,
    require_labels, split_shots, stratified_split,
};
pub use text::TextDataset;
pub use transform::Transform;
