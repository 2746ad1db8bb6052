//! Every file format on small files the tests write themselves, good and bad.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::{MatVar, TempDir, gzip, mat_v5};
use std::collections::HashMap;
use xfer_data::formats::csv::{CsvOptions, Header, LabelColumn, read_csv};
use xfer_data::formats::folder::{FolderOptions, read_image_folder};
use xfer_data::formats::idx::{
    IdxType, encode_idx, read_idx, read_idx_dataset, read_idx_unlabeled,
};
use xfer_data::formats::safetensors_file::{SafetensorsOptions, read_safetensors};
use xfer_data::formats::xian::read_xian;
use xfer_data::{DataError, Dataset};

fn mnist_like(n: u32) -> (Vec<u8>, Vec<u8>) {
    let px: Vec<f64> = (0..n * 4 * 3).map(|v| f64::from(v % 256)).collect();
    let labels: Vec<f64> = (0..n).map(|v| f64::from(v % 3)).collect();
    (
        encode_idx(IdxType::U8, &[n, 4, 3], &px),
        encode_idx(IdxType::U8, &[n], &labels),
    )
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_raw_and_gzip_read_the_same_images_and_labels() {
    let dir = TempDir::new("idx-ok");
    let (img, lab) = mnist_like(5);
    let i1 = dir.write("train-images-idx3-ubyte", &img);
    let l1 = dir.write("train-labels-idx1-ubyte", &lab);
    let i2 = dir.write("imgs.idx.gz", &gzip(&img));
    let l2 = dir.write("labs.idx.gz", &gzip(&lab));
    let a = read_idx_dataset(&i1, &l1, 1.0).unwrap();
    let b = read_idx_dataset(&i2, &l2, 1.0).unwrap();
    assert_eq!(a.len(), 5);
    assert_eq!(a.sample_shape(), &[1, 4, 3]);
    assert_eq!(a.features(), b.features());
    assert_eq!(a.labels(), &[0, 1, 2, 0, 1]);
    assert_eq!(a.features()[13], 13.0);
    let scaled = read_idx_dataset(&i1, &l1, 0.5).unwrap();
    assert_eq!(scaled.features()[13], 6.5);
    let u = read_idx_unlabeled(&i2, 1.0).unwrap();
    assert_eq!(u.len(), 5);
    assert!(!u.has_labels());
}

#[test]
fn idx_reads_every_element_type_big_endian() {
    let dir = TempDir::new("idx-types");
    let vals = [-3.0, 0.0, 7.0, 100.0];
    for t in [
        IdxType::I8,
        IdxType::I16,
        IdxType::I32,
        IdxType::F32,
        IdxType::F64,
    ] {
        let p = dir.write(
            &format!("t{}.idx", t.code()),
            &encode_idx(t, &[2, 2], &vals),
        );
        let a = read_idx(&p).unwrap();
        assert_eq!(a.dims, vec![2, 2]);
        assert_eq!(a.values, vals.to_vec(), "{t:?}");
    }
}

#[test]
fn idx_wrong_magic_is_refused_naming_the_file() {
    let dir = TempDir::new("idx-magic");
    let p = dir.write("bad.idx", &[0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 5]);
    let e = read_idx(&p).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { .. }), "{e}");
    assert!(
        e.to_string().contains("bad.idx") && e.to_string().contains("12 34"),
        "{e}"
    );
    let p = dir.write("badtype.idx", &[0, 0, 0x07, 0x01, 0, 0, 0, 1, 5]);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::BadMagic { .. }
    ));
    let p = dir.write("empty.idx", &[]);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::BadMagic { .. }
    ));
    let p = dir.write("notgz.idx.gz", &[0, 0, 8, 1, 0, 0, 0, 1, 5]);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::BadMagic { format: "gzip", .. }
    ));
}

#[test]
fn idx_truncated_or_overlong_data_is_a_size_mismatch() {
    let dir = TempDir::new("idx-trunc");
    let (img, _) = mnist_like(5);
    let p = dir.write("short.idx", &img[..img.len() - 1]);
    let e = read_idx(&p).unwrap_err();
    match &e {
        DataError::SizeMismatch {
            expected, actual, ..
        } => {
            assert_eq!((*expected, *actual), (60, 59));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("short.idx"));
    let mut long = img.clone();
    long.push(0);
    let p = dir.write("long.idx", &long);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::SizeMismatch { .. }
    ));
    // Truncated inside the header's dimension list.
    let p = dir.write("hdr.idx", &img[..9]);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::SizeMismatch { .. }
    ));
    // Gzip, truncated payload.
    let p = dir.write("short.idx.gz", &gzip(&img[..img.len() - 7]));
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::SizeMismatch { .. }
    ));
    // Gzip stream itself cut off.
    let gz = gzip(&img);
    let p = dir.write("cut.idx.gz", &gz[..gz.len() / 2]);
    assert!(read_idx(&p).is_err());
}

#[test]
fn idx_header_claiming_terabytes_is_refused_without_allocating() {
    let dir = TempDir::new("idx-huge");
    // 4 dims of 65535 u8 values: 1.8e19 bytes claimed by a 20-byte file (raw and gzip).
    let hdr = encode_idx(IdxType::F64, &[65535, 65535, 65535, 65535], &[]);
    let p = dir.write("huge.idx", &hdr);
    let e = read_idx(&p).unwrap_err();
    assert!(
        matches!(e, DataError::SizeMismatch { .. } | DataError::Parse { .. }),
        "{e}"
    );
    let hdr = encode_idx(IdxType::U8, &[1_000_000, 1000, 1000], &[1.0, 2.0]);
    let p = dir.write("huge.idx.gz", &gzip(&hdr));
    let e = read_idx(&p).unwrap_err();
    match e {
        DataError::SizeMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, 1_000_000_000_000);
            assert_eq!(actual, 2);
        }
        other => panic!("{other}"),
    }
    let p = dir.write("zero.idx", &encode_idx(IdxType::U8, &[0, 28, 28], &[]));
    assert!(matches!(read_idx(&p).unwrap_err(), DataError::Empty(_)));
}

#[test]
fn idx_labels_must_match_images_be_1d_and_non_negative() {
    let dir = TempDir::new("idx-labels");
    let (img, _) = mnist_like(5);
    let i = dir.write("i.idx", &img);
    let l = dir.write(
        "l4.idx",
        &encode_idx(IdxType::U8, &[4], &[0.0, 1.0, 2.0, 3.0]),
    );
    let e = read_idx_dataset(&i, &l, 1.0).unwrap_err();
    assert!(e.to_string().contains("5 images but 4 labels"), "{e}");
    let l = dir.write("l2d.idx", &encode_idx(IdxType::U8, &[5, 1], &[0.0; 5]));
    assert!(read_idx_dataset(&i, &l, 1.0).is_err());
    let l = dir.write(
        "lneg.idx",
        &encode_idx(IdxType::I8, &[5], &[0.0, 1.0, -1.0, 0.0, 0.0]),
    );
    let e = read_idx_dataset(&i, &l, 1.0).unwrap_err();
    assert!(e.to_string().contains("label 2"), "{e}");
    let l = dir.write("lf.idx", &encode_idx(IdxType::F32, &[5], &[0.0; 5]));
    assert!(read_idx_dataset(&i, &l, 1.0).is_err());
    let missing = dir.file("nope.idx");
    assert!(matches!(
        read_idx(&missing).unwrap_err(),
        DataError::Io { .. }
    ));
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_reads_features_then_label_with_or_without_header_and_gzip() {
    let dir = TempDir::new("csv-ok");
    let body = "1,2,0\n3,4,1\n5,6,1\n";
    let a = read_csv(&dir.write("a.csv", body.as_bytes()), &CsvOptions::default()).unwrap();
    assert_eq!(a.sample_shape(), &[2]);
    assert_eq!(a.features(), &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(a.labels(), &[0, 1, 1]);
    let with_header = format!("f1,f2,label\n{body}");
    let b = read_csv(
        &dir.write("b.csv", with_header.as_bytes()),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(b.features(), a.features());
    let c = read_csv(
        &dir.write("c.csv.gz", &gzip(with_header.as_bytes())),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(c.labels(), a.labels());
    // Declared header on an all-numeric first row: that row is skipped.
    let d = read_csv(
        &dir.write("d.csv", body.as_bytes()),
        &CsvOptions {
            header: Header::Yes,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d.len(), 2);
    // scale
    let s = read_csv(
        &dir.write("s.csv", body.as_bytes()),
        &CsvOptions {
            scale: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.features()[0], 0.5);
}

#[test]
fn csv_label_column_by_index_or_name_and_text_labels_become_sorted_classes() {
    let dir = TempDir::new("csv-label");
    let p = dir.write("l.csv", b"y,a,b\n2,1.5,2\n0,3,4\n");
    let ds = read_csv(
        &p,
        &CsvOptions {
            label: LabelColumn::Index(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.labels(), &[2, 0]);
    assert_eq!(ds.features(), &[1.5, 2., 3., 4.]);
    let ds = read_csv(
        &p,
        &CsvOptions {
            label: LabelColumn::Name("y".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.labels(), &[2, 0]);
    let e = read_csv(
        &p,
        &CsvOptions {
            label: LabelColumn::Name("z".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no column `z`"), "{e}");
    let p = dir.write("t.csv", b"1,2,dog\n3,4,cat\n5,6,dog\n");
    let ds = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(ds.class_names(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(ds.labels(), &[1, 0, 1]);
}

#[test]
fn csv_ragged_row_names_file_and_line() {
    let dir = TempDir::new("csv-ragged");
    let p = dir.write("r.csv", b"1,2,0\n3,4,1\n\n5,1\n");
    let e = read_csv(&p, &CsvOptions::default()).unwrap_err();
    match &e {
        DataError::RaggedRow {
            line,
            got,
            expected,
            ..
        } => assert_eq!((*line, *got, *expected), (4, 2, 3)),
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("r.csv") && msg.contains("line 4"), "{msg}");
}

#[test]
fn csv_bad_values_labels_and_columns_are_errors_with_positions() {
    let dir = TempDir::new("csv-bad");
    let p = dir.write("v.csv", b"1,2,0\n3,x,1\n");
    let e = read_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(e.to_string().contains("line 2, column 2"), "{e}");
    let p = dir.write("neg.csv", b"1,2,0\n3,4,-1\n");
    let e = read_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    let p = dir.write("k.csv", b"1,2,0\n3,4,7\n");
    let e = read_csv(
        &p,
        &CsvOptions {
            num_classes: Some(5),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("label 7 out of range 0..5"), "{e}");
    let e = read_csv(
        &p,
        &CsvOptions {
            label: LabelColumn::Index(9),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("label column 9 out of range"), "{e}");
    let p = dir.write("nan.csv", b"1,nan,0\n");
    assert!(read_csv(&p, &CsvOptions::default()).is_err());
    let p = dir.write("empty.csv", b"");
    assert!(matches!(
        read_csv(&p, &CsvOptions::default()).unwrap_err(),
        DataError::Empty(_)
    ));
    let p = dir.write("hdronly.csv", b"a,b,label\n");
    assert!(matches!(
        read_csv(&p, &CsvOptions::default()).unwrap_err(),
        DataError::Empty(_)
    ));
    let p = dir.write("bin.csv", &[0xff, 0xfe, 0x00]);
    assert!(read_csv(&p, &CsvOptions::default()).is_err());
    let p = dir.write("fake.csv.gz", b"1,2,0\n");
    assert!(matches!(
        read_csv(&p, &CsvOptions::default()).unwrap_err(),
        DataError::BadMagic { .. }
    ));
    let huge = dir.write("huge.csv", b"1,2,4000000000\n");
    assert!(read_csv(&huge, &CsvOptions::default()).is_err());
}

// ---------------------------------------------------------------- image folders

fn png_gray(w: u32, h: u32, v: u8) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([v]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn png_rgb(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn image_folder_classes_are_sorted_folder_names_and_pixels_are_0_to_1() {
    let dir = TempDir::new("folder-ok");
    dir.write("zebra/a.png", &png_gray(3, 2, 255));
    dir.write("ant/b.png", &png_gray(3, 2, 0));
    dir.write("ant/c.PNG", &png_gray(3, 2, 51));
    dir.write("ant/notes.txt", b"ignored");
    let ds = read_image_folder(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(ds.class_names(), &["ant".to_string(), "zebra".to_string()]);
    assert_eq!(ds.labels(), &[0, 0, 1]);
    assert_eq!(ds.sample_shape(), &[1, 2, 3]);
    assert!((ds.features_of(1).unwrap()[0] - 0.2).abs() < 1e-6);
    assert_eq!(ds.features_of(2).unwrap()[0], 1.0);
}

#[test]
fn image_folder_colour_images_are_planar_rgb_and_resize_on_request() {
    let dir = TempDir::new("folder-rgb");
    dir.write("a/1.png", &png_rgb(4, 4, [255, 0, 0]));
    dir.write("b/1.png", &png_rgb(2, 2, [0, 0, 255]));
    let e = read_image_folder(dir.path(), &FolderOptions::default()).unwrap_err();
    match &e {
        DataError::MixedImageSizes {
            size, first_size, ..
        } => assert_eq!((*size, *first_size), ((2, 2), (4, 4))),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("size=HxW"), "{e}");
    let ds = read_image_folder(
        dir.path(),
        &FolderOptions {
            size: Some((3, 3)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.sample_shape(), &[3, 3, 3]);
    let x = ds.features_of(0).unwrap();
    assert_eq!((x[0], x[9], x[18]), (1.0, 0.0, 0.0)); // red
    let x = ds.features_of(1).unwrap();
    assert_eq!((x[0], x[9], x[18]), (0.0, 0.0, 1.0)); // blue
}

#[test]
fn image_folder_errors_name_the_file_or_folder() {
    let dir = TempDir::new("folder-bad");
    assert!(read_image_folder(dir.path(), &FolderOptions::default()).is_err());
    dir.write("a/1.png", &png_gray(2, 2, 1));
    std::fs::create_dir_all(dir.file("b")).unwrap();
    let e = read_image_folder(dir.path(), &FolderOptions::default()).unwrap_err();
    assert!(
        matches!(e, DataError::Empty(_)) && e.to_string().contains("`b`"),
        "{e}"
    );
    dir.write("b/broken.png", b"\x89PNG\r\n\x1a\nnot really");
    let e = read_image_folder(dir.path(), &FolderOptions::default()).unwrap_err();
    assert!(e.to_string().contains("broken.png"), "{e}");
    assert!(read_image_folder(&dir.file("missing"), &FolderOptions::default()).is_err());
}

// ---------------------------------------------------------------- safetensors

fn st_file(tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, t, s, d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*t, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn safetensors_features_and_labels_with_default_or_given_names() {
    let dir = TempDir::new("st-ok");
    let x = f32s(&[1., 2., 3., 4., 5., 6.]);
    let y: Vec<u8> = [0i64, 2, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = dir.write(
        "f.safetensors",
        &st_file(vec![
            ("x", safetensors::Dtype::F32, vec![3, 2], x.clone()),
            ("y", safetensors::Dtype::I64, vec![3], y.clone()),
        ]),
    );
    let ds = read_safetensors(&p, &SafetensorsOptions::default(), 1.0).unwrap();
    assert_eq!(ds.sample_shape(), &[2]);
    assert_eq!(ds.labels(), &[0, 2, 1]);
    assert_eq!(ds.features(), &[1., 2., 3., 4., 5., 6.]);
    let p = dir.write(
        "g.safetensors",
        &st_file(vec![
            ("feats", safetensors::Dtype::F32, vec![3, 2], x),
            ("targets", safetensors::Dtype::I64, vec![3], y),
        ]),
    );
    let e = read_safetensors(&p, &SafetensorsOptions::default(), 1.0).unwrap_err();
    assert!(
        e.to_string().contains("feats") && e.to_string().contains("x=NAME"),
        "{e}"
    );
    let opts = SafetensorsOptions {
        x: "feats".into(),
        y: "targets".into(),
    };
    assert_eq!(
        read_safetensors(&p, &opts, 2.0).unwrap().features()[5],
        12.0
    );
}

#[test]
fn safetensors_bad_labels_and_shapes_are_refused() {
    let dir = TempDir::new("st-bad");
    let x = f32s(&[1., 2., 3., 4.]);
    let p = dir.write(
        "n.safetensors",
        &st_file(vec![
            ("x", safetensors::Dtype::F32, vec![2, 2], x.clone()),
            ("y", safetensors::Dtype::F32, vec![3], f32s(&[0., 1., 1.])),
        ]),
    );
    assert!(
        read_safetensors(&p, &SafetensorsOptions::default(), 1.0)
            .unwrap_err()
            .to_string()
            .contains("(2,)")
    );
    let p = dir.write(
        "f.safetensors",
        &st_file(vec![
            ("x", safetensors::Dtype::F32, vec![2, 2], x),
            ("y", safetensors::Dtype::F32, vec![2], f32s(&[0., 1.5])),
        ]),
    );
    let e = read_safetensors(&p, &SafetensorsOptions::default(), 1.0).unwrap_err();
    assert!(e.to_string().contains("element 1"), "{e}");
    let p = dir.write(
        "garbage.safetensors",
        b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
    );
    assert!(read_safetensors(&p, &SafetensorsOptions::default(), 1.0).is_err());
}

// ---------------------------------------------------------------- Xian et al. .mat

/// A tiny benchmark: 3 classes with 2 attributes, 6 samples with 4 features.
fn write_xian(
    dir: &TempDir,
    compressed: bool,
    trainval: &[f64],
) -> (std::path::PathBuf, std::path::PathBuf) {
    // features D × N = 4 × 6, column-major: sample j = [j, j+0.1, j+0.2, j+0.3]
    let feats: Vec<f64> = (0..6)
        .flat_map(|j| (0..4).map(move |d| j as f64 + d as f64 / 10.0))
        .collect();
    let labels = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
    // att A × C = 2 × 3 column-major, not yet unit length
    let att = [3.0, 4.0, 1.0, 0.0, 0.0, 2.0];
    let res = mat_v5(
        &[
            MatVar::Char("image_files", "a.jpg"),
            MatVar::Double("features", &[4, 6], &feats),
            MatVar::Double("labels", &[6, 1], &labels),
        ],
        compressed,
    );
    let splits = mat_v5(
        &[
            MatVar::Char("allclasses_names", "cat"),
            MatVar::Double("att", &[2, 3], &att),
            MatVar::Double("trainval_loc", &[trainval.len(), 1], trainval),
            MatVar::Double("test_seen_loc", &[2, 1], &[2.0, 4.0]),
            MatVar::Double("test_unseen_loc", &[2, 1], &[5.0, 6.0]),
        ],
        compressed,
    );
    (
        dir.write("res101.mat", &res),
        dir.write("att_splits.mat", &splits),
    )
}

#[test]
fn xian_mat_files_read_with_1_based_locs_column_major_features_and_unit_attributes() {
    for compressed in [false, true] {
        let dir = TempDir::new("xian");
        let (r, a) = write_xian(&dir, compressed, &[1.0, 3.0]);
        let b = read_xian(&r, &a).unwrap();
        assert_eq!(b.trainval.len(), 2);
        assert_eq!(b.trainval.sample_shape(), &[4]);
        // trainval_loc 1 and 3 → samples 0 and 2, classes 0 and 1.
        assert_eq!(b.trainval.labels(), &[0, 1]);
        assert_eq!(b.trainval.features_of(1).unwrap(), &[2.0, 2.1, 2.2, 2.3]);
        assert_eq!(b.test_unseen.labels(), &[2, 2]);
        assert_eq!(b.seen_classes, vec![0, 1]);
        assert_eq!(b.unseen_classes, vec![2]);
        let att = &b.attributes;
        assert_eq!((att.num_classes(), att.num_attributes()), (3, 2));
        assert_eq!(att.row(0).unwrap(), &[0.6, 0.8]);
        assert_eq!(att.row(2).unwrap(), &[0.0, 1.0]);
        assert!(b.trainval.attributes().is_some());
    }
}

#[test]
fn xian_bad_locs_missing_arrays_and_garbage_are_errors_not_panics() {
    let dir = TempDir::new("xian-bad");
    let (r, a) = write_xian(&dir, false, &[1.0, 7.0]);
    let e = read_xian(&r, &a).unwrap_err();
    assert!(
        e.to_string().contains("trainval_loc") && e.to_string().contains("element 2"),
        "{e}"
    );
    let (r, a) = write_xian(&dir, true, &[0.0]);
    assert!(read_xian(&r, &a).is_err());
    let only_att = dir.write(
        "att_only.mat",
        &mat_v5(&[MatVar::Double("att", &[2, 3], &[1.0; 6])], false),
    );
    let e = read_xian(&r, &only_att).unwrap_err();
    assert!(
        e.to_string().contains("trainval_loc") && e.to_string().contains("missing"),
        "{e}"
    );
    let garbage = dir.write("garbage.mat", &[7u8; 40]);
    assert!(read_xian(&garbage, &a).is_err());
    // A valid header followed by a truncated element.
    let full = std::fs::read(&r).unwrap();
    let cut = dir.write("cut.mat", &full[..full.len() - 20]);
    assert!(read_xian(&cut, &a).is_err());
    // Random corruption of every byte position after the header must never panic.
    let mut seen = HashMap::new();
    for pos in (128..full.len()).step_by(3) {
        let mut bad = full.clone();
        bad[pos] ^= 0xA5;
        let p = dir.write("corrupt.mat", &bad);
        let ok = read_xian(&p, &a).is_ok();
        *seen.entry(ok).or_insert(0) += 1;
    }
    assert!(seen.get(&false).copied().unwrap_or(0) > 0);
}

// ---------------------------------------------------------------- robustness

/// A small deterministic generator for the corruption tests.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn idx_parser_never_panics_on_corrupted_or_truncated_bytes() {
    use xfer_data::formats::idx::parse_idx;
    let (img, _) = mnist_like(6);
    let name = std::path::Path::new("mem.idx");
    let mut rng = Lcg(1);
    let mut errors = 0;
    for round in 0..3000 {
        let mut b = if round % 2 == 0 {
            img.clone()
        } else {
            gzip(&img)
        };
        match round % 3 {
            0 => {
                let n = rng.next() as usize % (b.len() + 1);
                b.truncate(n);
            }
            1 => {
                for _ in 0..1 + rng.next() % 4 {
                    let i = rng.next() as usize % b.len();
                    b[i] = rng.next() as u8;
                }
            }
            _ => {
                let i = rng.next() as usize % 12;
                if i < b.len() {
                    b[i] = 0xff;
                }
            }
        }
        if parse_idx(name, &b).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > 1000,
        "corruptions should mostly be caught: {errors}"
    );
}

#[test]
fn csv_parser_never_panics_on_corrupted_bytes() {
    use xfer_data::formats::csv::parse_csv;
    let good = b"a,b,label\n1,2,0\n3.5,-4,1\n5,6,cat\n".to_vec();
    let alphabet = b",\n\r\"0123456789.-eE+nainf abc#;\t\xff";
    let name = std::path::Path::new("mem.csv");
    let mut rng = Lcg(7);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next() % 5 {
            let i = rng.next() as usize % b.len();
            b[i] = alphabet[rng.next() as usize % alphabet.len()];
        }
        for opts in [
            CsvOptions::default(),
            CsvOptions {
                label: LabelColumn::Index(0),
                ..Default::default()
            },
        ] {
            let _ = parse_csv(name, &b, &opts);
        }
    }
}
