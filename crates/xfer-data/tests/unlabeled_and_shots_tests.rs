//! Unlabelled data specs (`images:DIR`, `csv:PATH:label=none`), the refusal of labelled-only
//! operations on them, and `--shots` (`K`, a fraction, `all`) with its split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::TempDir;
use image::{DynamicImage, ImageFormat};
use xfer_data::{
    Data, DataError, DataSpec, Dataset, Shots, TensorDataset, few_shot, load, load_data,
    split_shots, stratified_split,
};

fn png(w: u32, h: u32, v: u8) -> Vec<u8> {
    let img = DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([v.wrapping_add((x + y) as u8)])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Five images in nested folders (and two files that are not images).
fn nested() -> TempDir {
    let dir = TempDir::new("images");
    dir.write("top.png", &png(4, 3, 10));
    dir.write("a/one.png", &png(4, 3, 20));
    dir.write("a/deeper/two.png", &png(4, 3, 30));
    dir.write("a/deeper/deepest/three.PNG", &png(4, 3, 40));
    dir.write("b/four.png", &png(4, 3, 50));
    dir.write("b/notes.txt", b"not an image");
    dir.write("readme.md", b"# no");
    dir
}

#[test]
fn images_spec_lists_every_image_recursively_without_labels() {
    let dir = nested();
    let spec = format!("images:{}", dir.path().display());
    let parsed = DataSpec::parse(&spec).unwrap();
    assert!(!parsed.is_labeled());
    let Data::Images(f) = load_data(&spec, 0).unwrap() else {
        panic!("images: gives a lazily decoded folder");
    };
    assert_eq!(f.len(), 5);
    assert!(!f.is_labeled() && !Dataset::has_labels(&f));
    assert_eq!(f.num_classes(), 0);
    assert!(f.labels().is_empty() && f.class_names().is_empty());
    let mut names: Vec<String> = (0..f.len())
        .map(|i| {
            f.path(i)
                .unwrap()
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a/deeper/deepest/three.PNG",
            "a/deeper/two.png",
            "a/one.png",
            "b/four.png",
            "top.png"
        ]
    );
    let s = f.get(0).unwrap();
    assert_eq!(s.y, None);
    assert_eq!(s.x.len(), 3 * 4);
    // A subset stays unlabelled; the eager form is an unlabelled in-memory set.
    assert_eq!(f.subset(&[4, 0]).unwrap().len(), 2);
    let Data::Unlabeled(u) = load_data(&format!("{spec}:eager,size=2x2"), 0).unwrap() else {
        panic!("images:...:eager gives in-memory unlabelled data");
    };
    assert_eq!((u.len(), u.sample_shape()), (5, &[1usize, 2, 2][..]));
    // Labelled-only operations refuse it with a typed error naming the data set.
    let e = few_shot(&f, 1, 0).unwrap_err();
    assert!(
        matches!(&e, DataError::Unlabeled { name, .. } if name == &spec),
        "{e}"
    );
    assert!(matches!(
        stratified_split(&f, 0.5, 0).unwrap_err(),
        DataError::Unlabeled { .. }
    ));
    assert!(matches!(
        load(&spec, 0).unwrap_err(),
        DataError::Unlabeled { .. }
    ));
    assert!(matches!(
        Data::Images(f).into_tensors().unwrap_err(),
        DataError::Unlabeled { .. }
    ));
    // Read through an evaluation chain into memory: still unlabelled, at the chain's size.
    let tf: std::sync::Arc<dyn xfer_data::Transform> = std::sync::Arc::new(
        xfer_data::transform::Compose::new()
            .then(xfer_data::transform::ResizeShortSide { size: 3 })
            .then(xfer_data::transform::CenterCrop {
                height: 2,
                width: 2,
            }),
    );
    let Data::Unlabeled(p) = load_data(&spec, 0)
        .unwrap()
        .preprocessed(tf.clone())
        .unwrap()
    else {
        panic!("unlabelled images stay unlabelled");
    };
    assert_eq!((p.len(), p.sample_shape()), (5, &[1usize, 2, 2][..]));
    let labelled = TempDir::new("labelled");
    labelled.write("a/x.png", &png(4, 3, 1));
    labelled.write("b/y.png", &png(5, 6, 2));
    let Data::Tensors(t) = load_data(&format!("folder:{}", labelled.path().display()), 0)
        .unwrap()
        .preprocessed(tf)
        .unwrap()
    else {
        panic!("a labelled folder stays labelled");
    };
    assert_eq!(t.labels(), &[0, 1]);
    assert_eq!(t.class_names(), ["a", "b"]);
    assert_eq!(t.sample_shape(), &[1, 2, 2]);
    let empty = TempDir::new("no-images");
    empty.write("x/notes.txt", b"-");
    assert!(matches!(
        load_data(&format!("images:{}", empty.path().display()), 0).unwrap_err(),
        DataError::Empty(_)
    ));
}

#[test]
fn csv_label_none_reads_every_column_as_a_feature() {
    let dir = TempDir::new("csv-none");
    let p = dir.write("f.csv", b"a,b,c\n1,2,3\n4,5,6\n");
    let spec = format!("csv:{}:label=none,scale=0.5", p.display());
    let Data::Unlabeled(u) = load_data(&spec, 0).unwrap() else {
        panic!("label=none gives unlabelled data");
    };
    assert_eq!(u.sample_shape(), &[3]);
    assert_eq!(u.features(), &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    assert_eq!(u.get(1).unwrap().y, None);
    let e = few_shot(&Data::Unlabeled(u), 1, 0).unwrap_err();
    assert!(matches!(e, DataError::Unlabeled { .. }), "{e}");
    assert!(matches!(
        load(&spec, 0).unwrap_err(),
        DataError::Unlabeled { .. }
    ));
    // The same file with its last column as the label: two features.
    let labelled = load(&format!("csv:{}", p.display()), 0).unwrap();
    assert_eq!(labelled.sample_shape(), &[2]);
    // load_unlabeled drops a labelled spec's labels.
    let dropped = DataSpec::parse(&format!("csv:{}", p.display()))
        .unwrap()
        .load_unlabeled(0)
        .unwrap();
    assert_eq!(dropped.features(), &[1.0, 2.0, 4.0, 5.0]);
    // A text CSV without labels.
    let t = dir.write("t.csv", b"text\nhello there\ngood bye\n");
    let Data::Text(texts) =
        load_data(&format!("csv:{}:text=text,label=none", t.display()), 0).unwrap()
    else {
        panic!("text= gives text");
    };
    assert_eq!(texts.texts(), ["hello there", "good bye"]);
    assert!(!texts.is_labeled() && texts.labels().is_empty());
    assert!(matches!(
        few_shot(&texts, 1, 0).unwrap_err(),
        DataError::Unlabeled { .. }
    ));
}

/// Class 0: 10 examples, class 1: 5, class 2: 2.
fn uneven() -> TensorDataset {
    let y: Vec<u32> = [vec![0; 10], vec![1; 5], vec![2; 2]].concat();
    let x: Vec<f32> = (0..y.len()).map(|i| i as f32).collect();
    TensorDataset::new("uneven", x, vec![1], y).unwrap()
}

#[test]
fn shots_parse_and_print() {
    assert_eq!("all".parse::<Shots>().unwrap(), Shots::All);
    assert_eq!(" ALL ".parse::<Shots>().unwrap(), Shots::All);
    assert_eq!("0.2".parse::<Shots>().unwrap(), Shots::Fraction(0.2));
    assert_eq!("1.0".parse::<Shots>().unwrap(), Shots::Fraction(1.0));
    assert_eq!("5".parse::<Shots>().unwrap(), Shots::PerClass(5));
    for bad in ["0", "-1", "1.5", "0.0", "x", "", "nan"] {
        let e = bad.parse::<Shots>().unwrap_err();
        assert!(e.to_string().contains("shots"), "{bad}: {e}");
    }
    for s in [Shots::All, Shots::Fraction(0.25), Shots::PerClass(3)] {
        assert_eq!(s.to_string().parse::<Shots>().unwrap(), s);
    }
}

#[test]
fn split_shots_all_fraction_and_k_larger_than_a_class() {
    let ds = uneven();
    let (train, rest) = split_shots(&ds, Shots::All, 0).unwrap();
    assert_eq!(train.class_counts(), vec![10, 5, 2]);
    assert!(rest.is_empty());

    // 0.2 of 10, 5, 2 = 2, 1, 0.4 → at least 1.
    let (train, rest) = split_shots(&ds, Shots::Fraction(0.2), 0).unwrap();
    assert_eq!(train.class_counts(), vec![2, 1, 1]);
    assert_eq!(rest.class_counts(), vec![8, 4, 1]);

    // K = 4: class 2 has only 2 and gives both (a warning, not an error).
    let (train, rest) = split_shots(&ds, Shots::PerClass(4), 3).unwrap();
    assert_eq!(train.class_counts(), vec![4, 4, 2]);
    assert_eq!(rest.class_counts(), vec![6, 1, 0]);
    // Disjoint and complete.
    let mut all: Vec<f32> = train
        .features()
        .iter()
        .chain(rest.features())
        .copied()
        .collect();
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..17).map(|v| v as f32).collect::<Vec<_>>());
    // The same draw as few_shot, seeded.
    let (k, _) = few_shot(&ds, 4, 3).unwrap();
    assert_eq!(k.features(), train.features());
    assert!(split_shots(&ds, Shots::Fraction(1.5), 0).is_err());
    assert!(split_shots(&ds, Shots::PerClass(0), 0).is_err());
}
