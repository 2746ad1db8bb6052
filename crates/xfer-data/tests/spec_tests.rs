//! Data specifications: every scheme on small files the tests write, and one clear line of
//! error for each kind of mistake.

mod common;

use common::{TempDir, gzip};
use xfer_data::formats::idx::{IdxType, encode_idx};
use xfer_data::spec::{DataSpec, Source};
use xfer_data::{DataError, check_compatible, load};

fn one_line(e: &DataError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    s
}

#[test]
fn embedded_names_load_with_their_shapes() {
    let cases: [(&str, &[usize], usize); 10] = [
        ("moons", &[2], 150),
        ("moons:35", &[2], 150),
        ("moons:-20:n=40,noise=0.1", &[2], 40),
        ("optdigits", &[1, 8, 8], 1797),
        ("synth-digits:n=5", &[1, 8, 8], 50),
        ("digits-rot:30", &[1, 8, 8], 1797),
        ("digits-inv:base=synth-digits,n=3", &[1, 8, 8], 30),
        ("digits-noise:noise=0.1", &[1, 8, 8], 1797),
        ("mnistm-digits:base=synth-digits,n=2", &[3, 8, 8], 20),
        ("shapes:n=2", &[3, 16, 16], 48),
    ];
    for (spec, shape, n) in cases {
        let ds = load(spec, 0).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(ds.sample_shape(), shape, "{spec}");
        assert_eq!(ds.len(), n, "{spec}");
        assert_eq!(ds.name(), spec);
    }
    let flat = load("optdigits:flatten,scale=0.0625", 0).unwrap();
    assert_eq!(flat.sample_shape(), &[64]);
    assert_eq!(flat.feature_range(), Some((0.0, 1.0)));
    // moons vs moons:35 with one seed: different domains, same labels per class.
    let (a, b) = (load("moons", 1).unwrap(), load("moons:35", 1).unwrap());
    assert_ne!(a.features(), b.features());
    assert_eq!(load("moons:35", 1).unwrap().features(), b.features());
}

#[test]
fn csv_spec_with_options_and_gzip() {
    let dir = TempDir::new("spec-csv");
    let p = dir.write("d.csv.gz", &gzip(b"label,a,b\n1,16,8\n0,4,0\n"));
    let ds = load(&format!("csv:{}:label=0,scale=0.0625", p.display()), 0).unwrap();
    assert_eq!(ds.labels(), &[1, 0]);
    assert_eq!(ds.features(), &[1.0, 0.5, 0.25, 0.0]);
    let ds = load(&format!("csv:{}:label=label", p.display()), 0).unwrap();
    assert_eq!(ds.labels(), &[1, 0]);
    let q = dir.write("t.tsv", b"1\t2\t0\n3\t4\t1\n");
    let ds = load(
        &format!("csv:{}:sep=tab,header=no,classes=3", q.display()),
        0,
    )
    .unwrap();
    assert_eq!(ds.num_classes(), 3);
}

#[test]
fn idx_spec_with_explicit_or_sibling_labels() {
    let dir = TempDir::new("spec-idx");
    let img = encode_idx(
        IdxType::U8,
        &[4, 2, 2],
        &(0..16).map(f64::from).collect::<Vec<_>>(),
    );
    let lab = encode_idx(IdxType::U8, &[4], &[3.0, 1.0, 0.0, 2.0]);
    let i = dir.write("t10k-images-idx3-ubyte.gz", &gzip(&img));
    let l = dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&lab));
    let a = load(&format!("idx:{},{}", i.display(), l.display()), 0).unwrap();
    let b = load(&format!("idx:{}:scale=0.5", i.display()), 0).unwrap();
    assert_eq!(a.labels(), &[3, 1, 0, 2]);
    assert_eq!(a.sample_shape(), &[1, 2, 2]);
    assert_eq!(b.features()[2], 1.0);
    let lonely = dir.write("x.idx", &img);
    let e = load(&format!("idx:{}", lonely.display()), 0).unwrap_err();
    assert!(one_line(&e).contains("idx:IMAGES,LABELS"), "{e}");
}

#[test]
fn folder_and_safetensors_specs() {
    let dir = TempDir::new("spec-folder");
    for (class, v) in [("cats", 10u8), ("dogs", 200)] {
        let img = image::GrayImage::from_pixel(4, 4, image::Luma([v]));
        std::fs::create_dir_all(dir.file(class)).unwrap();
        img.save(dir.file(&format!("{class}/0.png"))).unwrap();
    }
    let ds = load(&format!("folder:{}:size=2x3", dir.path().display()), 0).unwrap();
    assert_eq!(ds.sample_shape(), &[1, 2, 3]);
    assert_eq!(ds.class_names(), &["cats".to_string(), "dogs".to_string()]);

    let x: Vec<u8> = [1f32, 2., 3., 4.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let y: Vec<u8> = vec![1u8, 0];
    let t = vec![
        (
            "feat".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &x).unwrap(),
        ),
        (
            "lab".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2], &y).unwrap(),
        ),
    ];
    let p = dir.write("f.safetensors", &safetensors::serialize(t, None).unwrap());
    let ds = load(&format!("safetensors:{}:x=feat,y=lab", p.display()), 0).unwrap();
    assert_eq!(ds.labels(), &[1, 0]);
    assert!(load(&format!("safetensors:{}", p.display()), 0).is_err());
}

#[test]
fn bad_specs_are_one_clear_line_each() {
    let cases = [
        ("", "empty"),
        ("mnist", "unknown scheme `mnist`"),
        ("moons:abc", "not an angle"),
        ("digits-rot", "needs an angle"),
        ("optdigits:7", "takes no argument"),
        ("synth-digits:n=many", "not a valid number"),
        ("shapes:label=3", "does not apply to shapes"),
        (
            "digits-inv:base=mnist",
            "base=optdigits or base=synth-digits",
        ),
        ("csv:/definitely/not/here.csv", "not found"),
        ("csv:", "needs a path"),
        ("idx:/no/such-images-idx3-ubyte", "not found"),
        ("folder:/no/such/dir:size=3", "expected HxW"),
        ("folder:/no/such/dir", "not found"),
        ("safetensors:/no/such.safetensors", "not found"),
        ("csv:x.csv:scale=inf", "finite"),
    ];
    for (spec, want) in cases {
        let e = load(spec, 0).unwrap_err();
        let msg = one_line(&e);
        assert!(msg.contains(want), "`{spec}` → `{msg}` (wanted `{want}`)");
    }
    let e = load("mnist", 0).unwrap_err();
    assert!(
        e.to_string().contains("csv:PATH"),
        "lists the accepted forms: {e}"
    );
}

#[test]
fn file_errors_through_specs_name_file_and_line() {
    let dir = TempDir::new("spec-bad-files");
    let p = dir.write("r.csv", b"1,2,0\n1,2\n");
    let e = load(&format!("csv:{}", p.display()), 0).unwrap_err();
    assert!(one_line(&e).contains("line 2"), "{e}");
    let p = dir.write("l.csv", b"1,2,0\n");
    let e = load(&format!("csv:{}:label=5", p.display()), 0).unwrap_err();
    assert!(one_line(&e).contains("label column 5 out of range"), "{e}");
    let p = dir.write("bad-images-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00\x00\x09");
    let l = dir.write(
        "bad-labels-idx1-ubyte",
        b"\x00\x00\x08\x01\x00\x00\x00\x01\x00",
    );
    let e = load(&format!("idx:{}", p.display()), 0).unwrap_err();
    assert!(one_line(&e).contains("bad-images"), "{e}");
    let _ = l;
}

#[test]
fn parse_keeps_colons_inside_paths() {
    let s = DataSpec::parse("csv:C:\\data\\train.csv:label=0").unwrap();
    match s.source {
        Source::Csv { path, .. } => assert_eq!(path.to_str().unwrap(), "C:\\data\\train.csv"),
        other => panic!("{other:?}"),
    }
    let s = DataSpec::parse("csv:C:\\data\\train.csv").unwrap();
    match s.source {
        Source::Csv { path, .. } => assert_eq!(path.to_str().unwrap(), "C:\\data\\train.csv"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn source_and_target_of_different_shapes_are_refused_with_a_hint() {
    let a = load("optdigits", 0).unwrap();
    let b = load("moons", 0).unwrap();
    let e = check_compatible(&a, &b).unwrap_err();
    let msg = one_line(&e);
    assert!(msg.contains("[1, 8, 8]") && msg.contains("[2]"), "{msg}");
    let c = load("optdigits:flatten", 0).unwrap();
    let e = check_compatible(&a, &c).unwrap_err();
    assert!(e.to_string().contains("flatten"), "{e}");
    let m = load("mnistm-digits:base=synth-digits,n=1", 0).unwrap();
    assert!(
        check_compatible(&a, &m)
            .unwrap_err()
            .to_string()
            .contains("channel")
    );
    assert!(check_compatible(&a, &load("synth-digits:n=1", 0).unwrap()).is_ok());
}

#[test]
fn docs_worked_example_idx_pair_and_csv_file_run_as_written() {
    let dir = TempDir::new("spec-docs");
    let pixels: Vec<f64> = (0..2 * 8 * 8).map(|v| f64::from(v * 4 % 256)).collect();
    let images = dir.write(
        "my-images-idx3-ubyte",
        &encode_idx(IdxType::U8, &[2, 8, 8], &pixels),
    );
    dir.write(
        "my-labels-idx1-ubyte",
        &encode_idx(IdxType::U8, &[2], &[3.0, 7.0]),
    );
    let target = load(&format!("idx:{}:scale=0.0627", images.display()), 0).unwrap();
    assert_eq!(target.sample_shape(), &[1, 8, 8]);
    assert_eq!(target.labels(), &[3, 7]);

    let mut csv = String::from("# my_digits.csv\n");
    csv += &(0..64)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(",");
    csv += ",digit\n";
    for d in 0..4 {
        csv += &(0..64)
            .map(|i| ((i + d) % 17).to_string())
            .collect::<Vec<_>>()
            .join(",");
        csv += &format!(",{d}\n");
    }
    let p = dir.write("my_digits.csv", csv.as_bytes());
    let source = load(&format!("csv:{}:label=digit", p.display()), 0).unwrap();
    assert_eq!(source.sample_shape(), &[64]);
    let target = load(&format!("idx:{}:scale=0.0627,flatten", images.display()), 0).unwrap();
    check_compatible(&source, &target).unwrap();
    let pairs = xfer_data::PairedLoader::from_datasets(
        source,
        target.unlabeled(),
        2,
        0,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(pairs.epoch(0).count(), 2);
}
