//! Image folders: `root/<class_name>/*.png|jpg|jpeg`, decoded with the `image` crate.
//!
//! Classes are the sub-folder names, sorted; files are read in sorted order. Pixels become
//! f32 in `[0, 1]` (byte / 255), planar `[C, H, W]`: one channel when every image is
//! grayscale, otherwise three (RGB; alpha dropped). Images of different sizes are refused
//! unless a size is given, in which case every image is resized (bilinear) to it.

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use crate::image_ops::resize_bilinear;
use image::DynamicImage;
use std::path::{Path, PathBuf};

/// How to read an image folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderOptions {
    /// Resize every image to `(height, width)`; without it, all images must share one size.
    pub size: Option<(usize, usize)>,
    /// Every feature is multiplied by this after the `[0, 1]` conversion (default 1).
    pub scale: Option<f32>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v = Vec::new();
    for e in rd {
        v.push(e.map_err(|e| DataError::io(dir, e))?.path());
    }
    v.sort();
    Ok(v)
}

fn decode(path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| DataError::parse(path, "image data", e.to_string()))
}

/// Reads an image folder into a labelled data set (class names from the folder names).
pub fn read_image_folder(root: &Path, opts: &FolderOptions) -> Result<TensorDataset> {
    let classes: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(DataError::parse(
            root,
            "folder",
            "no class sub-folders (expected root/<class_name>/*.png|jpg)",
        ));
    }
    let mut images: Vec<(PathBuf, DynamicImage, u32)> = Vec::new();
    let mut names = Vec::with_capacity(classes.len());
    for (c, dir) in classes.iter().enumerate() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files: Vec<PathBuf> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            return Err(DataError::Empty(format!(
                "{} (class folder `{name}` holds no .png/.jpg images)",
                dir.display()
            )));
        }
        for f in files {
            let img = decode(&f)?;
            images.push((f, img, c as u32));
        }
        names.push(name);
    }
    let gray = images.iter().all(|(_, im, _)| !im.color().has_color());
    let channels = if gray { 1 } else { 3 };
    let (first_path, first) = match images.first() {
        Some((p, im, _)) => (p.clone(), (im.height() as usize, im.width() as usize)),
        None => return Err(DataError::Empty(root.display().to_string())),
    };
    let (oh, ow) = opts.size.unwrap_or(first);
    if oh == 0 || ow == 0 {
        return Err(DataError::invalid(
            "folder",
            format!("size {oh}x{ow} must be positive"),
        ));
    }
    let scale = opts.scale.unwrap_or(1.0) / 255.0;
    let mut features = Vec::with_capacity(images.len() * channels * oh * ow);
    let mut labels = Vec::with_capacity(images.len());
    for (path, img, c) in images {
        let (h, w) = (img.height() as usize, img.width() as usize);
        if opts.size.is_none() && (h, w) != first {
            return Err(DataError::MixedImageSizes {
                path,
                size: (h, w),
                first_path,
                first_size: first,
            });
        }
        let planar: Vec<f32> = if gray {
            img.to_luma8()
                .into_raw()
                .into_iter()
                .map(f32::from)
                .collect()
        } else {
            let rgb = img.to_rgb8().into_raw();
            let mut p = vec![0f32; 3 * h * w];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    p[ch * h * w + i] = f32::from(px[ch]);
                }
            }
            p
        };
        let sized = if (h, w) == (oh, ow) {
            planar
        } else {
            resize_bilinear(&planar, (channels, h, w), oh, ow)?
        };
        features.extend(sized.into_iter().map(|v| v * scale));
        labels.push(c);
    }
    TensorDataset::new(
        root.display().to_string(),
        features,
        vec![channels, oh, ow],
        labels,
    )?
    .with_class_names(names)
}
