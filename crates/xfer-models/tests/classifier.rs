//! The Backbone/Classifier seam: spec parsing, names, parameter groups, pretrained loading.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig, Selection};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    if p.join("fixtures").is_dir() {
        Some(p)
    } else {
        println!(
            "skipped: pretrained classifier tests (shared data not found at {})",
            p.display()
        );
        None
    }
}

#[test]
fn specs_parse_and_print_round_trip() {
    for s in [
        "mlp:256,128",
        "mlp:64:dropout=0.5",
        "cnn",
        "cnn:dropout=0.25",
        "lenet",
        "resnet18",
        "resnet50:weights=/x/y.safetensors",
        "minilm:models/all-MiniLM-L6-v2",
    ] {
        let spec: BackboneSpec = s.parse().unwrap();
        assert_eq!(spec.to_string(), s);
        let json = serde_json::to_string(&spec).unwrap();
        let back: BackboneSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
    assert_eq!("mlp".parse::<BackboneSpec>().unwrap(), BackboneSpec::mlp());
}

#[test]
fn bad_specs_are_one_line_errors() {
    for s in [
        "vgg16",
        "mlp:0",
        "mlp:a,b",
        "cnn:dropout=1.5",
        "lenet:dropout=0.1",
        "minilm",
        "resnet18:weights=",
        "cnn:weights=x",
    ] {
        let e = s.parse::<BackboneSpec>().unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(s), "{e} should name {s}");
    }
}

#[test]
fn built_in_nets_keep_their_names_and_blocks() {
    let dev = Device::Cpu;
    let mlp = Classifier::new(
        &ClassifierConfig::new(BackboneSpec::mlp(), &[1, 8, 8], 10),
        0,
        &dev,
    )
    .unwrap();
    assert_eq!(mlp.blocks(), ["features.0", "features.2", "classifier"]);
    assert_eq!(
        mlp.backbone_param_names(),
        [
            "features.0.bias",
            "features.0.weight",
            "features.2.bias",
            "features.2.weight"
        ]
    );
    let x = Tensor::ones((3, 1, 8, 8), DType::F32, &dev).unwrap();
    assert_eq!(mlp.logits(&x, true).unwrap().dims(), [3, 10]);
    assert_eq!(mlp.features(&x, false).unwrap().dims(), [3, 128]);

    let cnn = Classifier::new(
        &ClassifierConfig::new(BackboneSpec::cnn(), &[1, 8, 8], 4),
        0,
        &dev,
    )
    .unwrap();
    assert_eq!(
        cnn.blocks(),
        ["features.0", "features.3", "classifier.0", "classifier.2"]
    );
    assert_eq!(cnn.head_block(), "classifier.2");
    assert_eq!(cnn.logits(&x, false).unwrap().dims(), [3, 4]);
    let groups = cnn.param_groups(0.1).unwrap();
    assert!(groups[0].selection.matches("features.3.weight"));
    assert!(!groups[0].selection.matches("classifier.0.weight"));
    assert!(groups[1].selection.matches("classifier.0.weight"));

    // The same seed gives the same network; another seed another.
    let a = Classifier::new(cnn.config(), 0, &dev)
        .unwrap()
        .weights()
        .unwrap();
    let b = cnn.weights().unwrap();
    let c = Classifier::new(cnn.config(), 1, &dev)
        .unwrap()
        .weights()
        .unwrap();
    let w = "features.0.weight";
    let diff = |p: &Tensor, q: &Tensor| {
        (p - q)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(diff(&a[w], &b[w]), 0.0);
    assert!(diff(&a[w], &c[w]) > 0.0);

    // Wrong input shapes are refused with the shape.
    let e = Classifier::new(
        &ClassifierConfig::new(BackboneSpec::cnn(), &[64], 4),
        0,
        &dev,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[64]"), "{e}");
}

#[test]
fn bottleneck_replaces_the_own_head() {
    let dev = Device::Cpu;
    let mut cfg = ClassifierConfig::new(BackboneSpec::Lenet, &[3, 28, 28], 10);
    cfg.bottleneck = xfer_models::BottleneckSpec::Linear(32);
    let net = Classifier::new(&cfg, 3, &dev).unwrap();
    let names = net.store().names();
    assert!(
        names.iter().all(|n| !n.starts_with("classifier")),
        "{names:?}"
    );
    assert!(names.contains(&"bottleneck.0.weight".to_string()));
    assert!(names.contains(&"head.weight".to_string()));
    let x = Tensor::zeros((2, 3, 28, 28), DType::F32, &dev).unwrap();
    assert_eq!(net.features(&x, false).unwrap().dims(), [2, 32]);
    assert_eq!(net.logits(&x, true).unwrap().dims(), [2, 10]);
    assert!(net.head_selection().unwrap().matches("bottleneck.0.bias"));
}

#[test]
fn resnet_weights_load_with_a_new_head() {
    let Some(shared) = shared() else { return };
    let w = shared.join("fixtures/resnet18_weights.safetensors");
    let dev = Device::Cpu;
    // The fixture has 10 classes: 10 loads the head too, 3 gets a new head.
    let spec: BackboneSpec = format!("resnet18:weights={}", w.display()).parse().unwrap();
    assert!(spec.is_pretrained());
    let same = Classifier::new(
        &ClassifierConfig::new(spec.clone(), &[3, 32, 32], 10),
        0,
        &dev,
    )
    .unwrap();
    assert!(
        same.load_report()
            .unwrap()
            .copied
            .iter()
            .any(|n| n == "fc.weight")
    );
    let new = Classifier::new(&ClassifierConfig::new(spec, &[3, 32, 32], 3), 0, &dev).unwrap();
    let report = new.load_report().unwrap();
    assert!(!report.copied.iter().any(|n| n.starts_with("fc.")));
    assert!(
        report
            .copied
            .iter()
            .any(|n| n == "layer4.1.bn2.running_var")
    );
    assert_eq!(new.default_backbone_lr_mult(), 0.1);
    let bb = Selection::parse("layer4").unwrap();
    assert!(new.backbone_param_names().iter().any(|n| bb.matches(n)));
    assert!(
        !new.backbone_param_names()
            .iter()
            .any(|n| n.starts_with("fc"))
    );
    // A missing weights file names the file.
    let bad: BackboneSpec = "resnet18:weights=/nonexistent/w.safetensors"
        .parse()
        .unwrap();
    let e = Classifier::new(&ClassifierConfig::new(bad, &[3, 32, 32], 3), 0, &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
}

#[test]
fn minilm_classifier_reads_token_ids() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("models/all-MiniLM-L6-v2");
    let spec: BackboneSpec = format!("minilm:{}", dir.display()).parse().unwrap();
    let tok = spec.tokenizer().unwrap().unwrap();
    let dev = Device::Cpu;
    let batch = tok
        .encode_batch(
            &["a short one", "a somewhat longer sentence, with commas"],
            &dev,
        )
        .unwrap();
    let x = xfer_models::encode_tokens(&batch, &dev).unwrap();
    let l = x.dim(2).unwrap();
    let net = Classifier::new(&ClassifierConfig::new(spec, &[2, l], 3), 0, &dev).unwrap();
    assert_eq!(net.feature_dim(), 384);
    let f = net.features(&x, false).unwrap();
    assert_eq!(f.dims(), [2, 384]);
    // Extra padding columns change nothing (the batch is cut to its longest sentence).
    let padded = Tensor::cat(
        &[&x, &Tensor::zeros((2, 2, 5), DType::F32, &dev).unwrap()],
        2,
    )
    .unwrap();
    let g = net.features(&padded, false).unwrap();
    let d = (f - g)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-5, "{d}");
    assert_eq!(net.logits(&x, false).unwrap().dims(), [2, 3]);
    // A folder without tokenizer.json is a one-line error naming the file.
    let e = "minilm:/nonexistent-model"
        .parse::<BackboneSpec>()
        .unwrap()
        .tokenizer()
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.json") && !e.contains('\n'), "{e}");
}
