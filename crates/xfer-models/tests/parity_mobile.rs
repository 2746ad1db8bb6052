//! MobileNetV2 and EfficientNet-Lite0 against PyTorch: the real ImageNet weights in
//! `shared/models` and the fixtures in `shared/fixtures/{mobilenet_v2,efficientnet_lite0}_io`
//! (every key and its tolerance in `shared/fixtures/README.md`): eval and train-mode (batch
//! statistics, dropout off) features, logits, loss, gradients, running statistics after the
//! train pass, and the top-1 class of two real photos. Elementwise bound
//! `|ours − ref| ≤ 1e-4 + 1e-4·|ref|`, except MobileNetV2's four first-layer gradients
//! (ill-conditioned: float32 PyTorch itself is off by 1.6e-3 of the largest value), compared as
//! `max |ours − ref| ≤ 1e-2 · max |ref|`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use xfer_models::{
    Backbone, EfficientNetLite, MobileNetV2, ModelError, ModuleT, ParamStore, TransferReport,
};
use xfer_ops::SeededRng;

fn shared(what: &str, files: &[&str]) -> Option<PathBuf> {
    let p = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    if files.iter().all(|f| p.join(f).is_file()) {
        Some(p)
    } else {
        println!(
            "skipped: {what} parity (shared data not found at {})",
            p.display()
        );
        None
    }
}

const MNV2_W: &str = "models/mobilenet_v2/model.safetensors";
const MNV2_IO: &str = "fixtures/mobilenet_v2_io.safetensors";
const LITE_W: &str = "models/efficientnet-lite0/model.safetensors";
const LITE_IO: &str = "fixtures/efficientnet_lite0_io.safetensors";

fn io(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Elementwise `|a − ref| ≤ 1e-4 + 1e-4·|ref|`; returns the worst `|a − ref| / (1e-4 + 1e-4·|ref|)`.
fn check_close(what: &str, ours: &Tensor, theirs: &Tensor) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
    let (a, b) = (vals(ours), vals(theirs));
    let (mut worst, mut at) = (0f64, 0usize);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let r = (x - y).abs() / (1e-4 + 1e-4 * y.abs());
        if r.is_nan() || r > worst {
            worst = if r.is_nan() { f64::INFINITY } else { r };
            at = i;
        }
    }
    println!("{what}: worst |diff| / (1e-4 + 1e-4|ref|) = {worst:.3} (element {at})");
    assert!(
        worst <= 1.0,
        "{what}: element {at}: ours {} vs PyTorch {}",
        a[at],
        b[at]
    );
}

/// `max |a − ref| ≤ 1e-2 · max |ref|` (MobileNetV2's first-layer gradients).
fn check_scaled(what: &str, ours: &Tensor, theirs: &Tensor) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
    let (a, b) = (vals(ours), vals(theirs));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().fold(0f64, |m, y| m.max(y.abs()));
    println!("{what}: max |diff| / max |ref| = {:.3e}", diff / scale);
    assert!(diff <= 1e-2 * scale, "{what}: {diff} > 1e-2 · {scale}");
}

fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let ls = xfer_ops::log_softmax(logits).unwrap();
    let idx = labels.to_dtype(DType::U32).unwrap().unsqueeze(1).unwrap();
    ls.gather(&idx, 1)
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn top1(logits: &Tensor) -> Vec<u32> {
    logits.argmax(1).unwrap().to_vec1().unwrap()
}

fn grad(store: &ParamStore, grads: &candle_core::backprop::GradStore, name: &str) -> Tensor {
    grads
        .get(store.get(name).unwrap().var().as_tensor())
        .unwrap_or_else(|| panic!("no gradient for {name}"))
        .clone()
}

fn mnv2(weights: &Path) -> (ParamStore, MobileNetV2, TransferReport) {
    let store = ParamStore::new();
    let m = MobileNetV2::mobilenet_v2(&store, 1000, 0, DType::F32, &Device::Cpu).unwrap();
    let r = m.load_torchvision(weights).unwrap();
    (store, m, r)
}

fn lite0(weights: &Path) -> (ParamStore, EfficientNetLite, TransferReport) {
    let store = ParamStore::new();
    let m = EfficientNetLite::lite0(&store, 1000, 0, DType::F32, &Device::Cpu).unwrap();
    let r = m.load_pretrained(weights).unwrap();
    (store, m, r)
}

#[test]
fn mobilenet_v2_eval_matches_pytorch() {
    let Some(sh) = shared("MobileNetV2", &[MNV2_W, MNV2_IO]) else {
        return;
    };
    let t = std::time::Instant::now();
    let (store, m, r) = mnv2(&sh.join(MNV2_W));
    assert_eq!(r.copied.len(), 262);
    assert!(r.is_clean(), "{r}");
    let io = io(&sh.join(MNV2_IO));
    let f = m.features(&io["input"], false).unwrap();
    check_close("eval_features", &f, &io["eval_features"]);
    let logits = m.classify(&f, false, &mut SeededRng::new(0)).unwrap();
    check_close("eval_logits", &logits, &io["eval_logits"]);
    let loss = cross_entropy(&logits, &io["labels"]);
    check_close("eval_loss", &loss.reshape(1).unwrap(), &io["eval_loss"]);
    let g = loss.backward().unwrap();
    for n in ["classifier.1.weight", "classifier.1.bias"] {
        check_close(
            &format!("eval_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("eval_grad.{n}")],
        );
    }
    for n in ["features.0.0.weight", "features.0.1.weight"] {
        check_scaled(
            &format!("eval_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("eval_grad.{n}")],
        );
    }
    // The real photos: close to PyTorch and the right classes (Egyptian cat, espresso).
    let photo = m.forward_t(&io["photo_input"], false).unwrap();
    check_close("photo_eval_logits", &photo, &io["photo_eval_logits"]);
    assert_eq!(top1(&photo), vec![285, 967]);
    println!(
        "mobilenet_v2 eval parity: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn mobilenet_v2_train_mode_matches_pytorch() {
    let Some(sh) = shared("MobileNetV2", &[MNV2_W, MNV2_IO]) else {
        return;
    };
    let t = std::time::Instant::now();
    let (store, mut m, _) = mnv2(&sh.join(MNV2_W));
    m.set_dropout(0.0).unwrap();
    let io = io(&sh.join(MNV2_IO));
    let f = Backbone::features_t(&m, &io["input"], true).unwrap();
    check_close("train_features", &f, &io["train_features"]);
    let logits = m.classify(&f, true, &mut SeededRng::new(0)).unwrap();
    check_close("train_logits", &logits, &io["train_logits"]);
    let loss = cross_entropy(&logits, &io["labels"]);
    check_close("train_loss", &loss.reshape(1).unwrap(), &io["train_loss"]);
    let g = loss.backward().unwrap();
    for n in ["classifier.1.weight", "classifier.1.bias"] {
        check_close(
            &format!("train_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("train_grad.{n}")],
        );
    }
    for n in ["features.0.0.weight", "features.0.1.weight"] {
        check_scaled(
            &format!("train_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("train_grad.{n}")],
        );
    }
    let buf = |n: &str| store.get(n).unwrap().var().as_tensor().clone();
    check_close(
        "train_bn0_running_mean_after",
        &buf("features.0.1.running_mean"),
        &io["train_bn0_running_mean_after"],
    );
    check_close(
        "train_bn0_running_var_after",
        &buf("features.0.1.running_var"),
        &io["train_bn0_running_var_after"],
    );
    check_close(
        "train_head_bn_running_var_after",
        &buf("features.18.1.running_var"),
        &io["train_head_bn_running_var_after"],
    );
    println!(
        "mobilenet_v2 train parity: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn efficientnet_lite0_eval_matches_pytorch() {
    let Some(sh) = shared("EfficientNet-Lite0", &[LITE_W, LITE_IO]) else {
        return;
    };
    let t = std::time::Instant::now();
    let (store, m, r) = lite0(&sh.join(LITE_W));
    assert_eq!(r.copied.len(), 247);
    assert!(r.is_clean(), "{r}");
    let io = io(&sh.join(LITE_IO));
    let f = m.features_with_rng(&io["input"], false, None).unwrap();
    check_close("eval_features", &f, &io["eval_features"]);
    let logits = m.classify(&f, false, &mut SeededRng::new(0)).unwrap();
    check_close("eval_logits", &logits, &io["eval_logits"]);
    let loss = cross_entropy(&logits, &io["labels"]);
    check_close("eval_loss", &loss.reshape(1).unwrap(), &io["eval_loss"]);
    let g = loss.backward().unwrap();
    for n in ["_conv_stem.weight", "_bn0.weight", "_fc.weight", "_fc.bias"] {
        check_close(
            &format!("eval_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("eval_grad.{n}")],
        );
    }
    // The real photos: close to PyTorch and the right classes (tiger cat, espresso).
    let photo = m.forward_t(&io["photo_input"], false).unwrap();
    check_close("photo_eval_logits", &photo, &io["photo_eval_logits"]);
    assert_eq!(top1(&photo), vec![282, 967]);
    println!(
        "efficientnet_lite0 eval parity: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn efficientnet_lite0_train_mode_matches_pytorch() {
    let Some(sh) = shared("EfficientNet-Lite0", &[LITE_W, LITE_IO]) else {
        return;
    };
    let t = std::time::Instant::now();
    let (store, mut m, _) = lite0(&sh.join(LITE_W));
    m.set_dropout(0.0, 0.0).unwrap();
    let io = io(&sh.join(LITE_IO));
    let f = Backbone::features_t(&m, &io["input"], true).unwrap();
    check_close("train_features", &f, &io["train_features"]);
    let logits = m.classify(&f, true, &mut SeededRng::new(0)).unwrap();
    check_close("train_logits", &logits, &io["train_logits"]);
    let loss = cross_entropy(&logits, &io["labels"]);
    check_close("train_loss", &loss.reshape(1).unwrap(), &io["train_loss"]);
    let g = loss.backward().unwrap();
    for n in ["_conv_stem.weight", "_bn0.weight", "_fc.weight", "_fc.bias"] {
        check_close(
            &format!("train_grad.{n}"),
            &grad(&store, &g, n),
            &io[&format!("train_grad.{n}")],
        );
    }
    let buf = |n: &str| store.get(n).unwrap().var().as_tensor().clone();
    check_close(
        "train_bn0_running_mean_after",
        &buf("_bn0.running_mean"),
        &io["train_bn0_running_mean_after"],
    );
    check_close(
        "train_bn0_running_var_after",
        &buf("_bn0.running_var"),
        &io["train_bn0_running_var_after"],
    );
    check_close(
        "train_head_bn1_running_var_after",
        &buf("_bn1.running_var"),
        &io["train_head_bn1_running_var_after"],
    );
    println!(
        "efficientnet_lite0 train parity: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// A copy of the safetensors file `src` with `f` applied to its tensors.
fn rewrite(src: &Path, dst: &Path, f: impl Fn(HashMap<String, Tensor>) -> HashMap<String, Tensor>) {
    let ts = candle_core::safetensors::load(src, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&f(ts), dst).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-parity-mobile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// f16 / bf16 files load (converted to f32) and still classify the photos; wrong names, wrong
/// shapes and truncated files are one-line errors naming the tensor or the file, and change
/// nothing.
#[test]
fn half_precision_and_bad_weight_files() {
    let Some(sh) = shared(
        "MobileNetV2 / EfficientNet-Lite0 files",
        &[MNV2_W, MNV2_IO, LITE_W],
    ) else {
        return;
    };
    let io = io(&sh.join(MNV2_IO));
    let (store, m, _) = mnv2(&sh.join(MNV2_W));
    let want = m.forward_t(&io["photo_input"], false).unwrap();
    for dt in [DType::F16, DType::BF16] {
        let p = tmp(&format!("mnv2-{dt:?}.safetensors"));
        rewrite(&sh.join(MNV2_W), &p, |ts| {
            ts.into_iter()
                .map(|(k, v)| (k, v.to_dtype(dt).unwrap()))
                .collect()
        });
        let r = m.load_torchvision(&p).unwrap();
        assert_eq!(r.copied.len(), 262);
        assert_eq!(
            store.get("features.0.0.weight").unwrap().var().dtype(),
            DType::F32
        );
        let got = m.forward_t(&io["photo_input"], false).unwrap();
        assert_eq!(top1(&got), vec![285, 967], "{dt:?} weights");
        let scale = vals(&want).iter().fold(0f64, |a, v| a.max(v.abs()));
        let diff = vals(&got)
            .iter()
            .zip(vals(&want))
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        println!(
            "{dt:?} weights: photo logits max |diff| / max |ref| = {:.2e}",
            diff / scale
        );
        assert!(diff < 0.1 * scale, "{dt:?}: {diff}");
    }
    // Back to f32, then the bad files: each error names what is wrong, nothing changes.
    m.load_torchvision(sh.join(MNV2_W)).unwrap();
    let before = vals(store.get("features.0.0.weight").unwrap().var().as_tensor());
    let renamed = tmp("renamed.safetensors");
    rewrite(&sh.join(MNV2_W), &renamed, |mut ts| {
        let v = ts.remove("features.5.conv.1.0.weight").unwrap();
        ts.insert("features.5.conv.1.0.kernel".into(), v);
        ts
    });
    let e = m.load_torchvision(&renamed).unwrap_err();
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    assert!(e.to_string().contains("features.5.conv.1.0.weight"), "{e}");
    let reshaped = tmp("reshaped.safetensors");
    rewrite(&sh.join(MNV2_W), &reshaped, |mut ts| {
        let v = ts.remove("features.3.conv.1.0.weight").unwrap();
        ts.insert(
            "features.3.conv.1.0.weight".into(),
            v.reshape((144, 9, 1, 1)).unwrap(),
        );
        ts
    });
    let e = m.load_torchvision(&reshaped).unwrap_err();
    assert!(matches!(e, ModelError::TensorShape { .. }), "{e}");
    assert!(e.to_string().contains("features.3.conv.1.0.weight"), "{e}");
    let truncated = tmp("truncated.safetensors");
    let bytes = std::fs::read(sh.join(MNV2_W)).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = m.load_torchvision(&truncated).unwrap_err();
    assert!(e.to_string().contains("truncated.safetensors"), "{e}");
    for e in [
        m.load_torchvision(&renamed).unwrap_err(),
        m.load_torchvision(&truncated).unwrap_err(),
    ] {
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    assert_eq!(
        vals(store.get("features.0.0.weight").unwrap().var().as_tensor()),
        before
    );
    // The other model's file is refused by name.
    let e = m.load_torchvision(sh.join(LITE_W)).unwrap_err();
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    let store2 = ParamStore::new();
    let lite = EfficientNetLite::lite0(&store2, 1000, 0, DType::F32, &Device::Cpu).unwrap();
    let e = lite.load_pretrained(sh.join(MNV2_W)).unwrap_err();
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    let _ = std::fs::remove_dir_all(renamed.parent().unwrap());
}

/// `--backbone mobilenet_v2[:weights=PATH]` and `efficientnet_lite0[:weights=PATH]`: specs
/// parse and print back, and a classifier with a new 10-class head loads the ImageNet
/// features (not the 1000-class head) and runs on small images.
#[test]
fn mobile_backbone_specs_build_pretrained_classifiers() {
    use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};
    for s in [
        "mobilenet_v2",
        "efficientnet_lite0",
        "mobilenet_v2:weights=/x/m.safetensors",
        "efficientnet_lite0:weights=/x/e.safetensors",
    ] {
        let spec: BackboneSpec = s.parse().unwrap();
        assert_eq!(spec.to_string(), s);
        let back: BackboneSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
    for s in ["mobilenet_v2:weights=", "efficientnet_lite0:dropout=0.1"] {
        let e = s.parse::<BackboneSpec>().unwrap_err().to_string();
        assert!(e.contains(s) && !e.contains('\n'), "{e}");
    }
    let Some(sh) = shared(
        "MobileNetV2 / EfficientNet-Lite0 classifiers",
        &[MNV2_W, LITE_W],
    ) else {
        return;
    };
    let x = SeededRng::new(4)
        .normal(&[2, 3, 64, 64], 0.0, 1.0, DType::F32, &Device::Cpu)
        .unwrap();
    for (arch, file, head, deep) in [
        (
            "mobilenet_v2",
            MNV2_W,
            "classifier.1.",
            "features.18.1.running_var",
        ),
        ("efficientnet_lite0", LITE_W, "_fc.", "_bn1.running_var"),
    ] {
        let spec: BackboneSpec = format!("{arch}:weights={}", sh.join(file).display())
            .parse()
            .unwrap();
        assert!(spec.is_pretrained());
        let c = Classifier::new(
            &ClassifierConfig::new(spec, &[3, 64, 64], 10),
            0,
            &Device::Cpu,
        )
        .unwrap();
        let r = c.load_report().unwrap();
        assert!(r.copied.iter().any(|n| n == deep), "{arch}");
        assert!(!r.copied.iter().any(|n| n.starts_with(head)), "{arch}");
        assert!(!c.backbone_param_names().iter().any(|n| n.starts_with(head)));
        assert_eq!(c.features(&x, false).unwrap().dims(), &[2, 1280]);
        assert_eq!(c.logits(&x, false).unwrap().dims(), &[2, 10]);
    }
}
