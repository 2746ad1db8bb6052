//! Image folders: `root/<class_name>/*.png|jpg|jpeg|bmp|webp`, decoded with the `image` crate,
//! the layout of torchvision's `ImageFolder`.
//!
//! Classes are the sub-folder names, sorted; files are listed in sorted order. Pixels become
//! f32 in `[0, 1]` (byte / 255, times `scale`), planar `[C, H, W]`: one channel when every
//! image is grayscale, otherwise three (RGB; alpha dropped) — or the channels asked for
//! (`channels: Some(1 | 3)`: colour is converted to luma, grayscale replicated to RGB).
//!
//! Two ways to read one:
//! - [`ImageFolder`] (lazy): the files are listed up front and each image is decoded when the
//!   loader asks for it, in its worker threads, so memory does not grow with the number of
//!   images. Images keep their own size until a transform (e.g.
//!   [`crate::transform::RandomResizedCrop`]) brings them to one; with `size` every image is
//!   resized (bilinear) on decode.
//! - [`read_image_folder`] (eager): every image decoded into a [`TensorDataset`]; images of
//!   different sizes are refused unless a size is given.
//!
//! Unlabelled images (`images:DIR`, [`ImageFolder::open_unlabeled`]): every image file under
//! a folder, recursively (sorted paths), no classes: [`ImageFolder::num_classes`] is 0, the
//! labels are empty, samples carry no label, and the labelled-only splits refuse it.
//!
//! A file that cannot be read or decoded is an error naming it; with `skip_bad` such files
//! are skipped instead (the loader drops them from their batch), counted, and reported once
//! by a `tracing` warning each and a summary when the data set is dropped
//! ([`ImageFolder::bad_files`]).

use crate::dataset::{Dataset, Sample, TensorDataset, UnlabeledDataset};
use crate::error::{DataError, Result};
use crate::image_ops::resize_bilinear;
use crate::split::LabeledSet;
use image::DynamicImage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// How to read an image folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderOptions {
    /// Resize every image to `(height, width)` on decode; without it an eager read needs all
    /// images to share one size, and a lazy one hands each image's own size to the transform.
    pub size: Option<(usize, usize)>,
    /// Every feature is multiplied by this after the `[0, 1]` conversion (default 1).
    pub scale: Option<f32>,
    /// Channels of every sample, 1 (luma) or 3 (RGB); `None`: 1 when every image is
    /// grayscale, else 3 (found from the files' headers, without decoding them).
    pub channels: Option<usize>,
    /// Skip files that cannot be read or decoded (counted and reported) instead of failing.
    pub skip_bad: bool,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
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

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))
}

fn decode(path: &Path) -> Result<DynamicImage> {
    reader(path)?
        .decode()
        .map_err(|e| DataError::parse(path, "image data", e.to_string()))
}

/// `(height, width, has_colour)` from the file's header, without decoding the pixels.
fn header(path: &Path) -> Result<(usize, usize, bool)> {
    use image::ImageDecoder;
    let dec = reader(path)?
        .into_decoder()
        .map_err(|e| DataError::parse(path, "image header", e.to_string()))?;
    let (w, h) = dec.dimensions();
    Ok((h as usize, w as usize, dec.color_type().has_color()))
}

/// A decoded image as planar f32 `[channels, H, W]`, values `byte · scale`.
fn to_planar(img: DynamicImage, channels: usize, scale: f32) -> (Vec<f32>, usize, usize) {
    let (h, w) = (img.height() as usize, img.width() as usize);
    if channels == 1 {
        let px = img.into_luma8().into_raw();
        (px.into_iter().map(|v| f32::from(v) * scale).collect(), h, w)
    } else {
        let rgb = img.into_rgb8().into_raw();
        let n = h * w;
        let mut p = vec![0f32; 3 * n];
        let (r, rest) = p.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = f32::from(px[0]) * scale;
            *g = f32::from(px[1]) * scale;
            *b = f32::from(px[2]) * scale;
        }
        (p, h, w)
    }
}

/// Files found bad so far (shared by a folder and its subsets); a summary is logged when the
/// last of them is dropped.
#[derive(Debug, Default)]
struct BadFiles {
    files: Mutex<BTreeMap<PathBuf, String>>,
}

impl BadFiles {
    fn record(&self, path: &Path, err: &DataError) {
        let mut m = match self.files.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !m.contains_key(path) {
            tracing::warn!("skipping unreadable image: {err}");
            m.insert(path.to_path_buf(), err.to_string());
        }
    }
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let m = match self.files.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        m.iter().map(|(p, e)| (p.clone(), e.clone())).collect()
    }
}

impl Drop for BadFiles {
    fn drop(&mut self) {
        let n = self.snapshot().len();
        if n > 0 {
            tracing::warn!("skipped {n} unreadable image file(s) (skip_bad)");
        }
    }
}

/// A lazily decoded image folder: the file list, labels and class names in memory, the
/// pixels decoded on demand ([`Dataset::get`], or the loader's worker threads). Its size does
/// not depend on the images' pixels: about one path and one label per image.
///
/// ```no_run
/// # fn main() -> xfer_data::Result<()> {
/// use xfer_data::formats::folder::{FolderOptions, ImageFolder};
/// use xfer_data::{DataLoader, Preprocess, few_shot};
/// let folder = ImageFolder::open("photos/".as_ref(), &FolderOptions {
///     channels: Some(3),
///     ..Default::default()
/// })?;
/// let (support, _test) = few_shot(&folder, 10, 0)?;       // no image decoded yet
/// let preset = Preprocess::imagenet(224, 256);
/// let loader = DataLoader::builder(support, 32)
///     .transform_arc(preset.train_transform()?)          // decoded in 2 worker threads
///     .build()?;
/// for batch in loader.epoch(0) {
///     assert_eq!(batch?.x.dims()[1..], [3, 224, 224]);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ImageFolder {
    name: String,
    files: Arc<[PathBuf]>,
    /// Positions into `files` (a subset keeps the shared list).
    index: Vec<usize>,
    labels: Vec<u32>,
    class_names: Vec<String>,
    /// `[C, H, W]`: the resize target, or the first image's size.
    shape: Vec<usize>,
    /// The first image (path, (h, w)), the reference for mixed-size errors; `None` with `size`.
    reference: Option<(PathBuf, (usize, usize))>,
    resize: Option<(usize, usize)>,
    scale: f32,
    skip_bad: bool,
    bad: Arc<BadFiles>,
    /// `false` for an unlabelled folder (`labels` and `class_names` empty).
    labeled: bool,
}

/// Every image file under `dir`, recursively, in sorted order (a folder reached twice through
/// links is read once).
pub fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let canonical = std::fs::canonicalize(&d).map_err(|e| DataError::io(&d, e))?;
        if !seen.insert(canonical) {
            continue;
        }
        let mut subdirs = Vec::new();
        for p in sorted_entries(&d)? {
            if p.is_dir() {
                subdirs.push(p);
            } else if p.is_file() && is_image(&p) {
                out.push(p);
            }
        }
        // Depth first, in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

impl ImageFolder {
    /// Lists `root/<class>/*.{png,jpg,jpeg,bmp,webp}` (classes and files sorted). Reads image
    /// headers only: every header when `channels` is `None` (to find whether any image has
    /// colour), else the first one's when `size` is `None` (for the nominal sample shape).
    /// Errors: no class folders, an empty class folder, unreadable headers (unless
    /// `skip_bad`), `channels` other than 1 or 3, a zero size.
    pub fn open(root: &Path, opts: &FolderOptions) -> Result<Self> {
        Self::check_options(opts)?;
        let classes: Vec<PathBuf> = sorted_entries(root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        if classes.is_empty() {
            return Err(DataError::parse(
                root,
                "folder",
                "no class sub-folders (expected root/<class_name>/*.png|jpg|bmp|webp)",
            ));
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut class_names = Vec::with_capacity(classes.len());
        for (c, dir) in classes.iter().enumerate() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let before = files.len();
            files.extend(
                sorted_entries(dir)?
                    .into_iter()
                    .filter(|p| p.is_file() && is_image(p)),
            );
            if files.len() == before {
                return Err(DataError::Empty(format!(
                    "{} (class folder `{name}` holds no .png/.jpg/.bmp/.webp images)",
                    dir.display()
                )));
            }
            labels.resize(files.len(), c as u32);
            class_names.push(name);
        }
        Self::from_files(root, opts, files, labels, class_names, true)
    }

    /// Lists every image file under `root`, recursively (sorted paths), without labels: the
    /// `images:DIR` data spec. The options are those of [`ImageFolder::open`]. Errors: no
    /// image under `root`, unreadable headers (unless `skip_bad`), bad options.
    pub fn open_unlabeled(root: &Path, opts: &FolderOptions) -> Result<Self> {
        Self::check_options(opts)?;
        if !root.is_dir() {
            return Err(DataError::parse(root, "folder", "not a folder"));
        }
        let files = images_under(root)?;
        if files.is_empty() {
            return Err(DataError::Empty(format!(
                "{} (no .png/.jpg/.bmp/.webp image under it)",
                root.display()
            )));
        }
        Self::from_files(root, opts, files, Vec::new(), Vec::new(), false)
    }

    fn check_options(opts: &FolderOptions) -> Result<()> {
        if let Some(c) = opts.channels
            && c != 1
            && c != 3
        {
            return Err(DataError::invalid(
                "folder",
                format!("channels={c}: expected 1 or 3"),
            ));
        }
        if let Some((h, w)) = opts.size
            && (h == 0 || w == 0)
        {
            return Err(DataError::invalid(
                "folder",
                format!("size {h}x{w} must be positive"),
            ));
        }
        let scale = opts.scale.unwrap_or(1.0);
        if !scale.is_finite() {
            return Err(DataError::invalid(
                "folder",
                format!("scale {scale} must be finite"),
            ));
        }
        Ok(())
    }

    fn from_files(
        root: &Path,
        opts: &FolderOptions,
        files: Vec<PathBuf>,
        labels: Vec<u32>,
        class_names: Vec<String>,
        labeled: bool,
    ) -> Result<Self> {
        let scale = opts.scale.unwrap_or(1.0);
        let bad = Arc::new(BadFiles::default());
        // Headers: all of them to decide the channels, else the first readable one for the size.
        let mut colour = false;
        let mut reference = None;
        if opts.channels.is_none() || opts.size.is_none() {
            for f in &files {
                match header(f) {
                    Ok((h, w, has_colour)) => {
                        colour |= has_colour;
                        if reference.is_none() {
                            reference = Some((f.clone(), (h, w)));
                        }
                        if opts.channels.is_some() {
                            break;
                        }
                    }
                    Err(e) if opts.skip_bad => bad.record(f, &e),
                    Err(e) => return Err(e),
                }
            }
        }
        let channels = opts.channels.unwrap_or(if colour { 3 } else { 1 });
        let (h, w) = match (opts.size, &reference) {
            (Some(s), _) => s,
            (None, Some((_, s))) => *s,
            (None, None) => {
                return Err(DataError::Empty(format!(
                    "{} (no readable image)",
                    root.display()
                )));
            }
        };
        let n = files.len();
        Ok(Self {
            name: root.display().to_string(),
            files: files.into(),
            index: (0..n).collect(),
            labels,
            class_names,
            shape: vec![channels, h, w],
            reference: if opts.size.is_some() { None } else { reference },
            resize: opts.size,
            scale,
            skip_bad: opts.skip_bad,
            bad,
            labeled,
        })
    }

    /// Whether the images have labels (`false` for [`ImageFolder::open_unlabeled`]).
    pub fn is_labeled(&self) -> bool {
        self.labeled
    }

    /// The data set's name (the root folder, or what [`ImageFolder::with_name`] set).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Renames the data set (used in messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.index.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// The label of every image (class ids into [`ImageFolder::class_names`]).
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// Number of classes (class folders, also those absent from a subset).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Class names: the sorted sub-folder names.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(slot) = c.get_mut(l as usize) {
                *slot += 1;
            }
        }
        c
    }
    /// The file of image `i`.
    pub fn path(&self, i: usize) -> Option<&Path> {
        let k = *self.index.get(i)?;
        self.files.get(k).map(PathBuf::as_path)
    }
    /// Channels of every sample (1 or 3).
    pub fn channels(&self) -> usize {
        self.shape.first().copied().unwrap_or(3)
    }
    /// Whether unreadable files are skipped.
    pub fn skip_bad(&self) -> bool {
        self.skip_bad
    }
    /// The files skipped so far as unreadable, with the reason (shared with subsets).
    pub fn bad_files(&self) -> Vec<(PathBuf, String)> {
        self.bad.snapshot()
    }
    /// Number of files skipped so far as unreadable.
    pub fn skipped(&self) -> usize {
        self.bad.snapshot().len()
    }

    /// The images at `indices` (in that order; repeats allowed), keeping the classes. Cheap:
    /// nothing is decoded.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let mut index = Vec::with_capacity(indices.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let label = if self.labeled {
                self.labels.get(i).copied()
            } else {
                Some(0)
            };
            match (self.index.get(i), label) {
                (Some(&k), Some(l)) => {
                    index.push(k);
                    if self.labeled {
                        labels.push(l);
                    }
                }
                _ => {
                    return Err(DataError::IndexOutOfRange {
                        what: self.name.clone(),
                        index: i,
                        len: self.len(),
                    });
                }
            }
        }
        Ok(Self {
            index,
            labels,
            ..self.clone()
        })
    }

    /// Image `i` decoded at its own size (or resized to `size` when one was given), as
    /// planar `[C, H, W]` with its shape.
    pub fn load(&self, i: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        let path = self.path(i).ok_or_else(|| DataError::IndexOutOfRange {
            what: self.name.clone(),
            index: i,
            len: self.len(),
        })?;
        let c = self.channels();
        let (x, h, w) = to_planar(decode(path)?, c, self.scale / 255.0);
        match self.resize {
            Some((oh, ow)) if (oh, ow) != (h, w) => {
                Ok((resize_bilinear(&x, (c, h, w), oh, ow)?, vec![c, oh, ow]))
            }
            _ => Ok((x, vec![c, h, w])),
        }
    }

    /// Decodes every image into an in-memory [`UnlabeledDataset`] (labelled or not; all
    /// images must share one size unless `size` was given; skipped files are left out).
    pub fn materialize_unlabeled(&self) -> Result<UnlabeledDataset> {
        let per: usize = self.shape.iter().product();
        let mut features = Vec::with_capacity(per.saturating_mul(self.len()));
        for i in 0..self.len() {
            if let Some((s, _)) = self.get_natural_checked(i, true)? {
                features.extend_from_slice(&s.x);
            }
        }
        UnlabeledDataset::new(self.name.clone(), features, self.shape.clone())
    }

    /// Decodes every image into an in-memory [`TensorDataset`] (all images must share one
    /// size unless `size` was given; skipped files are left out). An error for an unlabelled
    /// folder ([`ImageFolder::materialize_unlabeled`] reads it).
    pub fn materialize(&self) -> Result<TensorDataset> {
        if !self.labeled {
            return Err(DataError::Unlabeled {
                name: self.name.clone(),
                what: "a labelled in-memory data set",
            });
        }
        let per: usize = self.shape.iter().product();
        let mut features = Vec::with_capacity(per.saturating_mul(self.len()));
        let mut labels = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let Some((s, _)) = self.get_natural_checked(i, true)? else {
                continue;
            };
            features.extend_from_slice(&s.x);
            labels.extend(s.y);
        }
        TensorDataset::new(self.name.clone(), features, self.shape.clone(), labels)?
            .with_class_names(self.class_names.clone())
    }

    fn mixed_sizes(&self, i: usize, shape: &[usize]) -> DataError {
        let (first_path, first_size) = match &self.reference {
            Some((p, s)) => (p.clone(), *s),
            None => (
                PathBuf::from(&self.name),
                (
                    self.shape.get(1).copied().unwrap_or(0),
                    self.shape.get(2).copied().unwrap_or(0),
                ),
            ),
        };
        DataError::MixedImageSizes {
            path: self
                .path(i)
                .map_or_else(|| PathBuf::from(&self.name), Path::to_path_buf),
            size: (
                shape.get(1).copied().unwrap_or(0),
                shape.get(2).copied().unwrap_or(0),
            ),
            first_path,
            first_size,
        }
    }

    /// Loads image `i`; a bad file is `Ok(None)` with `skip_bad` (recorded). With
    /// `same_size`, an image whose size differs from the first is a `MixedImageSizes` error.
    fn get_natural_checked(
        &self,
        i: usize,
        same_size: bool,
    ) -> Result<Option<(Sample, Vec<usize>)>> {
        let (x, shape) = match self.load(i) {
            Ok(v) => v,
            Err(e @ (DataError::Io { .. } | DataError::Parse { .. })) if self.skip_bad => {
                if let Some(p) = self.path(i) {
                    self.bad.record(p, &e);
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if same_size && shape != self.shape {
            return Err(self.mixed_sizes(i, &shape));
        }
        let y = self.labels.get(i).copied();
        Ok(Some((Sample { x, y, domain: None }, shape)))
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.index.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    /// Image `i` at the nominal sample shape: an error if it is unreadable (even with
    /// `skip_bad`: only the loader can leave a sample out) or of another size than the first
    /// image when no `size` was given.
    fn get(&self, i: usize) -> Result<Sample> {
        let (x, shape) = self.load(i)?;
        if shape != self.shape {
            return Err(self.mixed_sizes(i, &shape));
        }
        Ok(Sample {
            x,
            y: self.labels.get(i).copied(),
            domain: None,
        })
    }
    fn get_natural(&self, i: usize) -> Result<Option<(Sample, Vec<usize>)>> {
        self.get_natural_checked(i, false)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn has_labels(&self) -> bool {
        self.labeled
    }
    fn is_lazy(&self) -> bool {
        true
    }
}

impl LabeledSet for ImageFolder {
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn subset(&self, indices: &[usize]) -> Result<Self> {
        ImageFolder::subset(self, indices)
    }
    fn is_labeled(&self) -> bool {
        self.labeled
    }
}

/// Whether `path` has an image extension ([`IMAGE_EXTENSIONS`], case-insensitive).
pub fn is_image_file(path: &Path) -> bool {
    is_image(path)
}

/// One image file decoded to planar f32 `[channels, H, W]` on `0..1` at its own size:
/// `channels` 3 converts grey and RGBA to RGB, 1 converts colour to luma. Errors name the file.
pub fn read_image(path: &Path, channels: usize) -> Result<(Vec<f32>, Vec<usize>)> {
    if channels != 1 && channels != 3 {
        return Err(DataError::invalid(
            "channels",
            format!("{channels}: an image has 1 or 3 channels"),
        ));
    }
    let (x, h, w) = to_planar(decode(path)?, channels, 1.0 / 255.0);
    Ok((x, vec![channels, h, w]))
}

/// Reads an image folder into a labelled in-memory data set (class names from the folder
/// names): [`ImageFolder::open`] then [`ImageFolder::materialize`].
pub fn read_image_folder(root: &Path, opts: &FolderOptions) -> Result<TensorDataset> {
    ImageFolder::open(root, opts)?.materialize()
}
