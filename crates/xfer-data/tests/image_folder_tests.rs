//! The lazily decoded image folder: listing, channel conversion, formats, splits without
//! decoding, the loader's worker threads (same batches for any thread count, exact resume),
//! bad files (an error naming the file, or skipped and counted), and the presets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::TempDir;
use image::{DynamicImage, ImageFormat};
use xfer_data::formats::folder::{FolderOptions, ImageFolder, read_image_folder};
use xfer_data::transform::{Compose, RandomHorizontalFlip, RandomResizedCrop};
use xfer_data::{
    Data, DataError, DataLoader, Dataset, LabeledSet, Preprocess, few_shot, load_data,
    stratified_split,
};

fn encode(img: DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

/// An RGB image with a gradient that depends on `seed`.
fn rgb(w: u32, h: u32, seed: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            ((x + y + seed) % 256) as u8,
        ])
    }))
}

/// `n` images per class in classes `a`, `b`, `c`, sizes varying, as PNG and JPEG.
fn folder(tag: &str, n: u32) -> TempDir {
    let dir = TempDir::new(tag);
    for (ci, class) in ["a", "b", "c"].iter().enumerate() {
        for k in 0..n {
            let s = ci as u32 * 100 + k;
            let (w, h) = (20 + (s % 7) * 3, 16 + (s % 5) * 2);
            let (ext, fmt) = if k % 2 == 0 {
                ("png", ImageFormat::Png)
            } else {
                ("jpg", ImageFormat::Jpeg)
            };
            dir.write(&format!("{class}/{k:03}.{ext}"), &encode(rgb(w, h, s), fmt));
        }
    }
    dir
}

fn opts3() -> FolderOptions {
    FolderOptions {
        channels: Some(3),
        ..Default::default()
    }
}

#[test]
fn lazy_folder_lists_classes_and_files_and_decodes_on_demand() {
    let dir = folder("lazy-list", 4);
    let f = ImageFolder::open(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(f.len(), 12);
    assert_eq!(f.class_names(), &["a", "b", "c"]);
    assert_eq!(f.labels(), &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(f.class_counts(), vec![4, 4, 4]);
    assert_eq!(f.channels(), 3);
    assert!(f.is_lazy());
    // Natural size: image 0 is 20×16, decoded as planar RGB in [0, 1].
    let (x, shape) = f.load(0).unwrap();
    assert_eq!(shape, vec![3, 16, 20]);
    assert!((x[1] - 7.0 / 255.0).abs() < 1e-6); // red channel at (x=1, y=0)
    // `get` keeps the Dataset contract (one shape) and names both files otherwise.
    assert_eq!(f.sample_shape(), &[3, 16, 20]);
    assert_eq!(f.get(0).unwrap().x, x);
    match f.get(1).unwrap_err() {
        DataError::MixedImageSizes { path, .. } => assert!(path.ends_with("a/001.jpg")),
        other => panic!("{other}"),
    }
    // With a size every image is resized on decode.
    let sized = ImageFolder::open(
        dir.path(),
        &FolderOptions {
            size: Some((8, 10)),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..sized.len() {
        assert_eq!(sized.get(i).unwrap().x.len(), 3 * 8 * 10);
    }
    // The eager reader is the same data decoded whole.
    let eager = read_image_folder(
        dir.path(),
        &FolderOptions {
            size: Some((8, 10)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(eager.features_of(5).unwrap(), sized.get(5).unwrap().x);
    assert_eq!(eager.labels(), sized.labels());
}

#[test]
fn channels_are_converted_and_bmp_webp_are_read() {
    let dir = TempDir::new("lazy-channels");
    let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 3, image::Luma([51])));
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        4,
        3,
        image::Rgba([255, 0, 0, 10]),
    ));
    dir.write("g/1.png", &encode(gray.clone(), ImageFormat::Png));
    dir.write("g/2.bmp", &encode(gray.to_rgb8().into(), ImageFormat::Bmp));
    dir.write("r/1.png", &encode(rgba.clone(), ImageFormat::Png));
    dir.write(
        "r/2.webp",
        &encode(rgba.to_rgb8().into(), ImageFormat::WebP),
    );
    let f = ImageFolder::open(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(f.channels(), 3, "colour in some images: RGB");
    // Gray replicated to RGB; alpha dropped.
    for i in [0, 1] {
        assert!(f.load(i).unwrap().0.iter().all(|&v| (v - 0.2).abs() < 1e-6));
    }
    for i in [2, 3] {
        let (x, _) = f.load(i).unwrap();
        assert_eq!((x[0], x[12], x[24]), (1.0, 0.0, 0.0), "image {i}");
    }
    // Asked for one channel: colour becomes luma.
    let one = ImageFolder::open(
        dir.path(),
        &FolderOptions {
            channels: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let (x, shape) = one.load(2).unwrap();
    assert_eq!(shape, vec![1, 3, 4]);
    assert!(x[0] > 0.1 && x[0] < 0.4, "luma of pure red {}", x[0]);
    // Only gray images: one channel by default.
    let gdir = TempDir::new("lazy-gray");
    gdir.write("x/1.png", &encode(gray, ImageFormat::Png));
    let g = ImageFolder::open(gdir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(g.sample_shape(), &[1, 3, 4]);
    assert!(
        ImageFolder::open(
            gdir.path(),
            &FolderOptions {
                channels: Some(2),
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[test]
fn splits_work_on_the_lazy_folder_without_decoding() {
    let dir = folder("lazy-split", 6);
    let f = ImageFolder::open(dir.path(), &opts3()).unwrap();
    // Break every image after listing: splitting must not decode anything.
    for i in 0..f.len() {
        std::fs::write(f.path(i).unwrap(), b"gone").unwrap();
    }
    let (support, query) = few_shot(&f, 2, 7).unwrap();
    assert_eq!((support.len(), query.len()), (6, 12));
    assert_eq!(support.class_counts(), vec![2, 2, 2]);
    assert_eq!(support.class_names(), f.class_names());
    let (support2, _) = few_shot(&f, 2, 7).unwrap();
    let paths = |s: &ImageFolder| {
        (0..s.len())
            .map(|i| s.path(i).unwrap().to_path_buf())
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&support), paths(&support2));
    let (train, held) = stratified_split(&f, 0.5, 1).unwrap();
    assert_eq!((train.len(), held.len()), (9, 9));
    // The same indices as for an in-memory set with the same labels.
    let t = xfer_data::TensorDataset::new("t", vec![0.0; 18], vec![1], f.labels().to_vec())
        .unwrap()
        .with_class_names(f.class_names().to_vec())
        .unwrap();
    let (ts, _) = few_shot(&t, 2, 7).unwrap();
    assert_eq!(ts.labels(), support.labels());
    assert!(f.subset(&[18]).is_err());
    assert!(f.load(0).is_err(), "the files really are broken now");
}

fn batches(loader: &DataLoader<ImageFolder>, start: u64, n: u64) -> Vec<(Vec<usize>, Vec<f32>)> {
    loader
        .steps(start, Some(n))
        .map(|b| {
            let b = b.unwrap();
            (
                b.indices.clone(),
                b.x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn worker_threads_and_prefetch_give_the_same_batches_and_resume_exactly() {
    let dir = folder("lazy-workers", 5);
    let f = ImageFolder::open(dir.path(), &opts3()).unwrap();
    let t = Compose::new()
        .then(RandomResizedCrop::new(12))
        .then(RandomHorizontalFlip { p: 0.5 });
    let make = |workers: usize, prefetch: usize| {
        DataLoader::builder(f.clone(), 4)
            .seed(3)
            .transform(t.clone())
            .workers(workers)
            .prefetch(prefetch)
            .build()
            .unwrap()
    };
    let default = DataLoader::builder(f.clone(), 4).build().unwrap();
    assert_eq!((default.workers(), default.prefetch()), (2, 2));
    let reference = batches(&make(1, 0), 0, 8);
    assert_eq!(reference.len(), 8);
    assert!(reference.iter().all(|(i, x)| x.len() == i.len() * 3 * 144));
    assert_eq!(batches(&make(3, 0), 0, 8), reference);
    assert_eq!(batches(&make(2, 2), 0, 8), reference);
    // Resume at step 5: exactly the batches an uninterrupted run saw.
    assert_eq!(batches(&make(2, 1), 5, 3), reference[5..].to_vec());
    // Another epoch, another augmentation.
    assert_ne!(reference[0].1, batches(&make(1, 0), 4, 1)[0].1);
    // Mixed sizes without a fixed-size transform: a typed error naming the shape.
    let bare = DataLoader::builder(f.clone(), 4)
        .shuffle(false)
        .build()
        .unwrap();
    let e = bare.epoch(0).find_map(|b| b.err()).unwrap();
    assert!(e.to_string().contains("size=HxW"), "{e}");
}

#[test]
fn a_bad_image_is_an_error_naming_it_or_skipped_and_counted() {
    let dir = folder("lazy-bad", 3);
    dir.write("b/zz-broken.png", b"\x89PNG\r\n\x1a\nnot really an image");
    let e = ImageFolder::open(dir.path(), &FolderOptions::default()).unwrap_err();
    assert!(e.to_string().contains("zz-broken.png"), "{e}");
    // With the channels given no header is read up front: the decode fails in the loader.
    let f = ImageFolder::open(dir.path(), &opts3()).unwrap();
    assert_eq!(f.len(), 10);
    let loader = DataLoader::builder(f.clone(), 4)
        .shuffle(false)
        .transform(RandomResizedCrop::new(8))
        .build()
        .unwrap();
    let e = loader.epoch(0).find_map(|b| b.err()).unwrap();
    assert!(e.to_string().contains("zz-broken.png"), "{e}");
    // skip_bad: the batch holding it is one short, the file is counted once per file.
    let f = ImageFolder::open(
        dir.path(),
        &FolderOptions {
            skip_bad: true,
            ..opts3()
        },
    )
    .unwrap();
    let loader = DataLoader::builder(f.clone(), 4)
        .shuffle(false)
        .transform(RandomResizedCrop::new(8))
        .build()
        .unwrap();
    for _ in 0..2 {
        let sizes: Vec<usize> = loader.epoch(0).map(|b| b.unwrap().len()).collect();
        assert_eq!(sizes, vec![4, 3, 2]);
    }
    assert_eq!(f.skipped(), 1);
    assert!(f.bad_files()[0].0.ends_with("zz-broken.png"));
    // The eager reader skips it too.
    let ds = read_image_folder(
        dir.path(),
        &FolderOptions {
            skip_bad: true,
            size: Some((5, 5)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.len(), 9);
}

#[test]
fn the_spec_chooses_lazy_or_eager_and_presets_feed_the_loader() {
    let dir = folder("lazy-spec", 2);
    let root = dir.path().display().to_string();
    let d = load_data(&format!("folder:{root}:channels=3"), 0).unwrap();
    let Data::Images(f) = &d else {
        panic!("lazy by default in load_data")
    };
    assert_eq!(d.len(), 6);
    assert_eq!(d.num_classes(), 3);
    let (s, _) = few_shot(&d, 1, 0).unwrap();
    assert_eq!(s.len(), 3);
    assert!(matches!(
        load_data(&format!("folder:{root}:size=4x4,eager"), 0).unwrap(),
        Data::Tensors(_)
    ));
    assert!(load_data(&format!("folder:{root}:lazy,eager"), 0).is_err());
    assert!(load_data(&format!("folder:{root}:channels=2"), 0).is_err());
    // The old API still decodes the folder whole.
    let t = xfer_data::load(&format!("folder:{root}:size=4x4"), 0).unwrap();
    assert_eq!(t.sample_shape(), &[3, 4, 4]);
    // Train and eval presets bring every image to the input size, normalised.
    let p = Preprocess::imagenet(16, 18);
    for t in [p.train_transform().unwrap(), p.eval_transform().unwrap()] {
        let loader = DataLoader::builder(f.clone(), 4)
            .transform_arc(t)
            .build()
            .unwrap();
        for b in loader.epoch(0) {
            let b = b.unwrap();
            assert_eq!(b.x.dims()[1..], [3, 16, 16]);
            let m = b.x.mean_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(m.abs() < 3.0, "normalised mean {m}");
        }
    }
}

#[test]
fn animal_mnist_opens_lazily_and_feeds_a_128px_preset() {
    let shared = std::env::var_os("XFER_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared"))
        });
    let dir = shared.join("data/animal-mnist");
    if !dir.is_dir() {
        println!("skipped: animal-mnist (not found at {})", dir.display());
        return;
    }
    // Grayscale silhouettes: one channel found from the headers; three when asked.
    let d = load_data(&format!("folder:{}", dir.display()), 0).unwrap();
    assert_eq!((d.len(), d.num_classes()), (1000, 10));
    assert_eq!(d.sample_shape(), Some(&[1usize, 28, 28][..]));
    let f = ImageFolder::open(&dir, &opts3()).unwrap();
    let (support, test) = few_shot(&f, 10, 0).unwrap();
    assert_eq!((support.len(), test.len()), (100, 900));
    let p = Preprocess::new(
        128,
        146,
        vec![0.485, 0.456, 0.406],
        vec![0.229, 0.224, 0.225],
    )
    .unwrap();
    let loader = DataLoader::builder(support, 32)
        .transform_arc(p.train_transform().unwrap())
        .build()
        .unwrap();
    let b = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.x.dims(), [32, 3, 128, 128]);
}
