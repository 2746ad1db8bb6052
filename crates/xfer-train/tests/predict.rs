//! Model packages end to end: save → load → predict gives the in-process predictions bit for
//! bit (numbers, image folders, text), the evaluation report has the training report's
//! accuracy, and bad inputs are one-line errors naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use candle_core::Device;
use xfer_models::package::{InputSpec, ModelInfo, Package};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};
use xfer_train::metrics::accuracy_from_logits;
use xfer_train::predict::{Inputs, PredictOptions, Prediction, predict};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-predict-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(pkg: &Package, inputs: &Inputs, opts: &PredictOptions) -> (Vec<Prediction>, Option<f64>) {
    let mut out = Vec::new();
    let s = predict(pkg, inputs, opts, |p| {
        out.push(p.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(s.predicted, out.len());
    (out, s.report(&pkg.info.class_names).map(|r| r.accuracy))
}

/// The package of `net` as it is in memory (never written).
fn in_memory(net: Classifier, info: &ModelInfo) -> Package {
    Package {
        net,
        info: info.clone(),
        dir: PathBuf::from("(memory)"),
    }
}

#[test]
fn numbers_round_trip_bit_for_bit_and_report_the_training_accuracy() {
    let dir = tmp("numbers").join("model");
    let scale = 1.0 / 16.0;
    let cfg = ClassifierConfig::new(BackboneSpec::cnn(), &[1, 8, 8], 10);
    let net = Classifier::new(&cfg, 3, &Device::Cpu).unwrap();
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let info = ModelInfo::new(names, InputSpec::tensor(scale));
    net.save(&dir, &info).unwrap();
    let loaded = Classifier::load(&dir, &Device::Cpu).unwrap();
    let inputs = Inputs::open(&["optdigits".to_string()], &loaded, None).unwrap();
    assert!(inputs.has_labels());
    let opts = PredictOptions {
        batch_size: 64,
        topk: 3,
        ..Default::default()
    };
    let (from_disk, acc) = run(&loaded, &inputs, &opts);
    // The training reports' accuracy: arg-max of the logits of the scaled data.
    let ds = xfer_data::load("optdigits", 0).unwrap().scale(scale);
    let (x, y) = ds.to_tensors(&Device::Cpu).unwrap();
    let want = accuracy_from_logits(&net.logits_eval(&x, 64).unwrap(), &y).unwrap();
    assert_eq!(acc, Some(want));
    let (in_process, _) = run(&in_memory(net, &info), &inputs, &opts);
    assert_eq!(from_disk, in_process);
    assert_eq!(from_disk.len(), 1797);
    assert_eq!(from_disk[0].top.len(), 3);
    assert_eq!(from_disk[0].id, "1");
}

fn write_png(path: &Path, w: u32, h: u32, seed: u32, rgba: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let px = |x: u32, y: u32, c: u32| ((x * 37 + y * 11 + c * 53 + seed * 97) % 256) as u8;
    if rgba {
        image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([px(x, y, 0), px(x, y, 1), px(x, y, 2), 200])
        })
        .save(path)
        .unwrap();
    } else if seed.is_multiple_of(2) {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([px(x, y, 0)]))
            .save(path)
            .unwrap();
    } else {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([px(x, y, 0), px(x, y, 1), px(x, y, 2)])
        })
        .save(path)
        .unwrap();
    }
}

#[test]
fn image_folders_with_and_without_classes() {
    let root = tmp("images");
    let lab = root.join("labelled");
    let flat = root.join("flat");
    for (i, class) in ["cat", "dog", "cat", "dog", "cat"].iter().enumerate() {
        let i = i as u32;
        write_png(
            &lab.join(class).join(format!("{i}.png")),
            12 + i,
            10,
            i,
            i == 3,
        );
        write_png(&flat.join(format!("img{i}.png")), 10, 14 + i, i + 7, false);
    }
    let cfg = ClassifierConfig::new(BackboneSpec::cnn(), &[3, 8, 8], 2);
    let net = Classifier::new(&cfg, 1, &Device::Cpu).unwrap();
    let info = ModelInfo::new(
        vec!["cat".into(), "dog".into()],
        InputSpec::image(3, 8, &[0.5, 0.4, 0.3], &[0.2, 0.25, 0.3]),
    );
    let dir = root.join("model");
    net.save(&dir, &info).unwrap();
    let loaded = Classifier::load(&dir, &Device::Cpu).unwrap();
    let opts = PredictOptions {
        batch_size: 2,
        topk: 2,
        ..Default::default()
    };
    let open = |p: &Path| Inputs::open(&[p.display().to_string()], &loaded, None);

    let labelled = open(&lab).unwrap();
    assert!(labelled.has_labels());
    assert_eq!(labelled.len(), 5);
    let (a, acc) = run(&loaded, &labelled, &opts);
    let (b, _) = run(&in_memory(net, &info), &labelled, &opts);
    assert_eq!(a, b);
    let labels: Vec<_> = a.iter().map(|p| p.label.unwrap()).collect();
    assert_eq!(labels, [0, 0, 0, 1, 1]); // sorted: cat/0, cat/2, cat/4, dog/1, dog/3
    let correct = a.iter().filter(|p| Some(p.top[0].0) == p.label).count();
    assert_eq!(acc, Some(correct as f64 / 5.0));
    assert!(
        a.iter()
            .all(|p| (p.top[0].1 + p.top[1].1 - 1.0).abs() < 1e-5)
    );

    let unlabelled = open(&flat).unwrap();
    assert!(!unlabelled.has_labels());
    let (c, acc) = run(&loaded, &unlabelled, &opts);
    assert_eq!((c.len(), acc), (5, None));
    assert!(c[0].id.ends_with("img0.png"));

    // A broken file: one line naming it, or skipped and counted.
    std::fs::write(flat.join("broken.png"), b"not a png").unwrap();
    let inputs = open(&flat).unwrap();
    let e = predict(&loaded, &inputs, &opts, |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.png") && !e.contains('\n'), "{e}");
    let skip = PredictOptions {
        skip_bad: true,
        ..opts.clone()
    };
    let s = predict(&loaded, &inputs, &skip, |_| Ok(())).unwrap();
    assert_eq!((s.predicted, s.skipped.len()), (5, 1));
    assert!(s.skipped[0].0.ends_with("broken.png"));

    // Single files and a list file; a missing input is an error naming it.
    let files = vec![
        flat.join("img1.png").display().to_string(),
        flat.join("img2.png").display().to_string(),
    ];
    assert_eq!(Inputs::open(&files, &loaded, None).unwrap().len(), 2);
    std::fs::write(
        root.join("list.txt"),
        "# two files\nflat/img1.png\n\nflat/img4.png\n",
    )
    .unwrap();
    assert_eq!(open(&root.join("list.txt")).unwrap().len(), 2);
    let e = open(&root.join("nowhere")).unwrap_err().to_string();
    assert!(e.contains("nowhere") && !e.contains('\n'), "{e}");
    // CSV output.
    assert_eq!(
        Prediction::csv_header(2),
        "path,label,probability,label_2,probability_2"
    );
    let row = c[0].csv_row(&loaded.info.class_names);
    assert_eq!(row.split(',').count(), 5, "{row}");
}

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.join("models/all-MiniLM-L6-v2/model.safetensors")
        .is_file()
    {
        Some(p)
    } else {
        println!("skipped: no ../shared/models/all-MiniLM-L6-v2 (set XFER_SHARED)");
        None
    }
}

/// A one-layer MiniLM folder cut from the shared model (fast in tests).
fn one_layer_minilm(src: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 1.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut ts =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    ts.retain(|k, _| !k.starts_with("encoder.layer.") || k.starts_with("encoder.layer.0."));
    candle_core::safetensors::save(&ts, dir.join("model.safetensors")).unwrap();
}

#[test]
fn text_packages_carry_their_tokenizer() {
    let Some(sh) = shared() else { return };
    let root = tmp("text");
    let enc = root.join("encoder-src");
    one_layer_minilm(&sh.join("models/all-MiniLM-L6-v2"), &enc);
    let spec: BackboneSpec = format!("minilm:{}", enc.display()).parse().unwrap();
    let net = Classifier::new(&ClassifierConfig::new(spec, &[2, 16], 2), 0, &Device::Cpu).unwrap();
    let info = ModelInfo::new(
        vec!["sport".into(), "music".into()],
        InputSpec::Text { max_len: 64 },
    );
    let dir = root.join("model");
    net.save(&dir, &info).unwrap();
    std::fs::write(
        root.join("texts.csv"),
        "id,text,label\n1,\"the match ended in a draw, again\",sport\n2,a new album by the band,music\n3,goal in the last minute,sport\n",
    )
    .unwrap();
    let csv = [root.join("texts.csv").display().to_string()];
    let opts = PredictOptions::default();
    let original = in_memory(net, &info);
    let (b, _) = run(
        &original,
        &Inputs::open(&csv, &original, None).unwrap(),
        &opts,
    );
    // The package does not need the source folder.
    std::fs::remove_dir_all(&enc).unwrap();
    let loaded = Classifier::load(&dir, &Device::Cpu).unwrap();
    let inputs = Inputs::open(&csv, &loaded, None).unwrap();
    assert!(inputs.has_labels());
    let (a, acc) = run(&loaded, &inputs, &opts);
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    assert_eq!(a[2].id, "3");
    assert!(acc.is_some());
    // A column that does not exist.
    let e = Inputs::open(
        &[root.join("texts.csv").display().to_string()],
        &loaded,
        Some("body"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("body") && e.contains("texts.csv"), "{e}");
}
