//! `imagefolder-read`: images per second decoded from JPEG files and augmented for training
//! (RandomResizedCrop to 224×224, horizontal flip, ImageNet normalisation) by a
//! `DataLoader` with 2 worker threads, batches of 32 — what torchvision's `ImageFolder` +
//! `DataLoader(num_workers=2)` does on the PyTorch side (`bench/torch_extra.py`).
//!
//! The folder is `$XFER_BENCH_FOLDER` when set (e.g. `../shared/data/animal-mnist`), else one
//! generated once (seeded) under the system temp dir: `--images N` JPEGs of 400×300 (default
//! 512) in 8 classes, quality 90, smooth colour fields with noise, about the decode cost of a
//! photograph of that size. The path is printed so the PyTorch side reads the same files.

use anyhow::{Context, Result};
use std::path::PathBuf;
use xfer::data::{DataLoader, FolderOptions, ImageFolder, Preprocess};
use xfer::ops::SeededRng;

/// Images per batch.
pub const BATCH: usize = 32;

/// The generated folder of `n` images (made once; reused when its marker file exists).
fn generated(n: usize) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xfer-bench-imagefolder-{n}"));
    let marker = dir.join(".complete");
    if marker.is_file() {
        return Ok(dir);
    }
    let (w, h) = (400u32, 300u32);
    for i in 0..n {
        let class = dir.join(format!("class{}", i % 8));
        std::fs::create_dir_all(&class).with_context(|| class.display().to_string())?;
        let mut rng = SeededRng::new(1000 + i as u64);
        let base: Vec<f64> = (0..3).map(|_| 40.0 + 170.0 * rng.uniform01()).collect();
        let fx = 0.01 + 0.05 * rng.uniform01();
        let fy = 0.01 + 0.05 * rng.uniform01();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let wave = ((x as f64 * fx).sin() + (y as f64 * fy).cos()) * 35.0;
            let mut px = [0u8; 3];
            for (c, p) in px.iter_mut().enumerate() {
                let noise = (rng.uniform01() - 0.5) * 24.0;
                *p = (base[c] + wave * (c as f64 - 1.0) + noise).clamp(0.0, 255.0) as u8;
            }
            image::Rgb(px)
        });
        let path = class.join(format!("{i:05}.jpg"));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| path.display().to_string())?,
        );
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .with_context(|| path.display().to_string())?;
    }
    std::fs::write(&marker, b"")?;
    Ok(dir)
}

/// The workload's step (one batch of [`BATCH`] decoded, augmented images) and images per step.
pub fn imagefolder_read(images: usize) -> Result<(crate::Step, Option<usize>)> {
    let dir = match std::env::var_os("XFER_BENCH_FOLDER") {
        Some(d) => PathBuf::from(d),
        None => generated(images)?,
    };
    println!("imagefolder-read folder={}", dir.display());
    let folder = ImageFolder::open(
        &dir,
        &FolderOptions {
            channels: Some(3),
            ..Default::default()
        },
    )?;
    let preset = Preprocess::imagenet(224, 256);
    let loader = DataLoader::builder(folder, BATCH)
        .seed(0)
        .drop_last(true)
        .workers(2)
        .prefetch(2)
        .transform_arc(preset.train_transform()?)
        .build()?;
    let mut batches = loader.forever();
    Ok((
        Box::new(move || {
            let b = batches.next().context("the loader ended")??;
            anyhow::ensure!(b.x.dims() == [BATCH, 3, 224, 224], "batch {:?}", b.x.dims());
            Ok(())
        }),
        Some(BATCH),
    ))
}
