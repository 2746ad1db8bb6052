//! ResNet-18 against PyTorch/torchvision: the fixtures in `shared/fixtures` (see the README
//! there) hold a torchvision ResNet-18 state dict and the outputs, loss and gradients PyTorch
//! computed from it. Relative error here is `max |ours − theirs| / max |theirs|`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use xfer_models::{LoadOptions, ModelError, ModuleT, ParamStore, ResNet, Selection};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    if p.join("fixtures/resnet18_weights.safetensors").is_file() {
        Some(p)
    } else {
        println!(
            "skipped: ResNet-18 parity (shared data not found at {})",
            p.display()
        );
        None
    }
}

fn io(sh: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(sh.join("fixtures/resnet18_io.safetensors"), &Device::Cpu)
        .unwrap()
}

fn model(weights: &Path) -> (ParamStore, ResNet) {
    let store = ParamStore::new();
    let m = ResNet::resnet18(&store, 10, 0, DType::F32, &Device::Cpu).unwrap();
    let s = m.load_torchvision(weights).unwrap();
    assert_eq!(s.copied.len(), 102);
    assert_eq!(s.ignored.len(), 20, "the 20 num_batches_tracked counters");
    assert!(s.is_clean(), "{s}");
    (store, m)
}

fn rel_err(ours: &Tensor, theirs: &Tensor) -> f64 {
    assert_eq!(ours.dims(), theirs.dims());
    let a = ours.to_dtype(DType::F64).unwrap();
    let b = theirs.to_dtype(DType::F64).unwrap();
    let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f64>().unwrap() / scale.to_scalar::<f64>().unwrap()
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

/// Writes a copy of `src` with every float tensor converted to `dtype`.
fn convert_file(src: &Path, dst: &Path, dtype: DType) {
    let ts = candle_core::safetensors::load(src, &Device::Cpu).unwrap();
    let ts: std::collections::HashMap<String, Tensor> = ts
        .into_iter()
        .map(|(k, v)| {
            let v = if v.dtype().is_float() {
                v.to_dtype(dtype).unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    candle_core::safetensors::save(&ts, dst).unwrap();
}

/// A path in a temporary folder of this test (`test`) and process.
fn tmp(test: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-parity-resnet-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn resnet18_eval_logits_match_pytorch() {
    let Some(sh) = shared() else { return };
    let (_, m) = model(&sh.join("fixtures/resnet18_weights.safetensors"));
    let io = io(&sh);
    let logits = m.forward_t(&io["input"], false).unwrap();
    let e = rel_err(&logits, &io["eval_logits"]);
    println!("eval logits: max relative error {e:.3e}");
    assert!(e < 1e-4, "eval logits relative error {e}");
}

#[test]
fn resnet18_training_features_loss_and_gradients_match_pytorch() {
    let Some(sh) = shared() else { return };
    let (store, m) = model(&sh.join("fixtures/resnet18_weights.safetensors"));
    let io = io(&sh);
    let pooled = m.features(&io["input"], true).unwrap();
    let e_pool = rel_err(&pooled, &io["train_pooled"]);
    let logits = m.fc.forward_t(&pooled, true).unwrap();
    let loss = cross_entropy(&logits, &io["labels"]);
    let e_loss = rel_err(&loss.reshape(1).unwrap(), &io["train_loss"]);
    let grads = loss.backward().unwrap();
    let g = |n: &str| {
        grads
            .get(store.get(n).unwrap().var().as_tensor())
            .unwrap()
            .clone()
    };
    let e_conv1 = rel_err(&g("conv1.weight"), &io["grad_conv1_weight"]);
    let e_fc = rel_err(&g("fc.weight"), &io["grad_fc_weight"]);
    println!(
        "training: pooled {e_pool:.3e}, loss {e_loss:.3e}, grad conv1.weight {e_conv1:.3e}, \
         grad fc.weight {e_fc:.3e} (max relative error)"
    );
    for (what, e) in [
        ("pooled", e_pool),
        ("loss", e_loss),
        ("grad conv1.weight", e_conv1),
        ("grad fc.weight", e_fc),
    ] {
        assert!(e < 1e-4, "{what}: relative error {e}");
    }
    // Training mode moved the running statistics (momentum 0.1) and left the weights alone.
    let fixture = candle_core::safetensors::load(
        sh.join("fixtures/resnet18_weights.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let moved = rel_err(
        store.get("bn1.running_mean").unwrap().var().as_tensor(),
        &fixture["bn1.running_mean"],
    );
    assert!(moved > 1e-3, "running mean did not move ({moved})");
}

#[test]
fn resnet18_f16_weights_match_pytorch_within_f16_tolerance() {
    let Some(sh) = shared() else { return };
    let f16 = tmp("f16", "resnet18_f16.safetensors");
    convert_file(
        &sh.join("fixtures/resnet18_weights.safetensors"),
        &f16,
        DType::F16,
    );
    let (store, m) = model(&f16);
    assert_eq!(store.get("conv1.weight").unwrap().var().dtype(), DType::F32);
    let io = io(&sh);
    let e_eval = rel_err(
        &m.forward_t(&io["input"], false).unwrap(),
        &io["eval_logits"],
    );
    let e_pool = rel_err(
        &m.features(&io["input"], true).unwrap(),
        &io["train_pooled"],
    );
    println!("f16 weights: eval logits {e_eval:.3e}, training pooled {e_pool:.3e}");
    // f16 keeps 11 significant bits (relative rounding ≤ 4.9e-4 per weight).
    assert!(e_eval < 1e-2, "eval logits with f16 weights: {e_eval}");
    assert!(e_pool < 1e-2, "pooled features with f16 weights: {e_pool}");
    // bf16 and f64 files load too (converted to the model's f32).
    let bf16 = tmp("f16", "resnet18_bf16.safetensors");
    convert_file(
        &sh.join("fixtures/resnet18_weights.safetensors"),
        &bf16,
        DType::BF16,
    );
    m.load_torchvision(&bf16).unwrap();
    let f64p = tmp("f16", "resnet18_f64.safetensors");
    convert_file(
        &sh.join("fixtures/resnet18_weights.safetensors"),
        &f64p,
        DType::F64,
    );
    m.load_torchvision(&f64p).unwrap();
    let e64 = rel_err(
        &m.forward_t(&io["input"], false).unwrap(),
        &io["eval_logits"],
    );
    assert!(e64 < 1e-4, "f64 weights: {e64}");
    let _ = std::fs::remove_dir_all(f16.parent().unwrap());
}

#[test]
fn resnet18_accepts_any_input_size_pytorch_accepts() {
    let Some(sh) = shared() else { return };
    let (_, m) = model(&sh.join("fixtures/resnet18_weights.safetensors"));
    let mut rng = xfer_ops::SeededRng::new(1);
    for (shape, train) in [
        ([1, 3, 32, 32], false),
        ([3, 3, 37, 45], false),
        ([3, 3, 37, 45], true),
        ([2, 3, 1, 1], false),
    ] {
        let x = rng
            .normal(&shape, 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        let y = m.forward_t(&x, train).unwrap();
        assert_eq!(y.dims(), &[shape[0], 10], "input {shape:?}");
        assert_eq!(m.features(&x, false).unwrap().dims(), &[shape[0], 512]);
        let finite = y
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(finite.is_finite());
    }
    // Wrong channel count: a typed error, no panic.
    let bad = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        m.forward_t(&bad, false),
        Err(ModelError::ShapeMismatch { .. })
    ));
}

#[test]
fn resnet18_new_head_keeps_pretrained_backbone() {
    let Some(sh) = shared() else { return };
    let weights = sh.join("fixtures/resnet18_weights.safetensors");
    let (_, m) = model(&weights);
    let io = io(&sh);
    let feats = m.features(&io["input"], false).unwrap();
    let m = m
        .with_num_classes(4, &mut xfer_ops::SeededRng::new(7))
        .unwrap();
    assert_eq!(m.forward_t(&io["input"], false).unwrap().dims(), &[2, 4]);
    assert!(rel_err(&m.features(&io["input"], false).unwrap(), &feats) < 1e-6);
    // Loading the 10-class file into the 4-class model: fc must be skipped explicitly.
    assert!(matches!(
        m.load_torchvision(&weights),
        Err(ModelError::TensorShape { ref name, .. }) if name == "fc.weight"
    ));
    let s = m
        .load_torchvision_with(
            &weights,
            &LoadOptions {
                skip: Some(Selection::parse("fc").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(s.not_selected.contains(&"fc.weight".to_string()));
    assert!(s.not_selected.contains(&"fc.bias".to_string()));
    assert_eq!(s.copied.len(), 100);
}

#[test]
fn resnet18_bad_files_give_typed_errors_and_leave_the_model_untouched() {
    let Some(sh) = shared() else { return };
    let weights = sh.join("fixtures/resnet18_weights.safetensors");
    let store = ParamStore::new();
    let m = ResNet::resnet18(&store, 10, 0, DType::F32, &Device::Cpu).unwrap();
    let snapshot = |n: &str| store.get(n).unwrap().var().as_tensor().copy().unwrap();
    let before = snapshot("conv1.weight");
    let untouched = |why: &str| {
        assert_eq!(rel_err(&snapshot("conv1.weight"), &before), 0.0, "{why}");
    };
    let full = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();

    // A missing tensor near the end of the model's order (everything before it was readable).
    let mut ts = full.clone();
    ts.remove("layer4.1.conv2.weight");
    let p = tmp("bad", "missing.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    match m.load_torchvision(&p) {
        Err(ModelError::MissingTensor { path, name }) => {
            assert_eq!(path, p);
            assert_eq!(name, "layer4.1.conv2.weight");
        }
        other => panic!("expected a missing-tensor error, got {other:?}"),
    }
    untouched("missing tensor");

    // A mis-shaped tensor.
    let mut ts = full.clone();
    ts.insert(
        "fc.weight".into(),
        Tensor::zeros((9, 512), DType::F32, &Device::Cpu).unwrap(),
    );
    let p = tmp("bad", "misshaped.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    match m.load_torchvision(&p) {
        Err(ModelError::TensorShape {
            path,
            name,
            expected,
            got,
        }) => {
            assert_eq!(path, p);
            assert_eq!(name, "fc.weight");
            assert_eq!((expected, got), (vec![10, 512], vec![9, 512]));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    untouched("mis-shaped tensor");

    // An unexpected tensor (strict), then accepted with allow_unexpected.
    let mut ts = full.clone();
    ts.insert(
        "head.extra".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let p = tmp("bad", "unexpected.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    assert!(matches!(
        m.load_torchvision(&p),
        Err(ModelError::UnexpectedTensor { ref name, .. }) if name == "head.extra"
    ));
    untouched("unexpected tensor");
    let s = m
        .load_torchvision_with(
            &p,
            &LoadOptions {
                allow_unexpected: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(s.not_selected.contains(&"head.extra".to_string()));
    assert_eq!(s.copied.len(), 102);

    // Not safetensors (a pickle's magic bytes), truncated, absent.
    let p = tmp("bad", "pickle.pt");
    std::fs::write(&p, b"\x80\x02}q\x00(X\x06\x00\x00\x00conv1.q\x01").unwrap();
    assert!(matches!(
        m.load_torchvision(&p),
        Err(ModelError::NotSafetensors { ref path, .. }) if *path == p
    ));
    let bytes = std::fs::read(&weights).unwrap();
    let p = tmp("bad", "truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        m.load_torchvision(&p),
        Err(ModelError::Truncated { .. })
    ));
    assert!(matches!(
        m.load_torchvision(tmp("bad", "absent.safetensors")),
        Err(ModelError::File { .. })
    ));
    let _ = std::fs::remove_dir_all(p.parent().unwrap());
}

/// The check a PyTorch user's `model.load_state_dict(safetensors.torch.load_file(path))` relies
/// on, done without torch (not installed here): the file is valid safetensors (header parsed by
/// plain Python, offsets contiguous and covering the data), its names are exactly torchvision's
/// state-dict names minus the `num_batches_tracked` counters (not written by xfer), and every
/// tensor has torchvision's
/// shape, dtype and the very bytes of the checkpoint it was loaded from.
const PY_CHECK: &str = r#"
import json, struct, sys
def read(path):
    raw = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', None)
    data = raw[8 + n:]
    spans = sorted((v['data_offsets'][0], v['data_offsets'][1]) for v in header.values())
    pos = 0
    for a, b in spans:
        assert a == pos, f'{path}: gap or overlap at byte {a}'
        pos = b
    assert pos == len(data), f'{path}: data section has {len(data)} bytes, tensors cover {pos}'
    return header, meta, data
saved, meta, sdata = read(sys.argv[1])
ref, _, rdata = read(sys.argv[2])
want = {k: v for k, v in ref.items() if not k.endswith('num_batches_tracked')}
assert set(saved) == set(want), f'names differ: extra {sorted(set(saved) - set(want))}, missing {sorted(set(want) - set(saved))}'
for k, v in want.items():
    s = saved[k]
    assert s['shape'] == v['shape'] and s['dtype'] == v['dtype'], f'{k}: {s} vs {v}'
    a, b = s['data_offsets']; c, d = v['data_offsets']
    assert sdata[a:b] == rdata[c:d], f'{k}: bytes differ'
assert meta is not None and json.loads(meta['xfer.config'])['depth'] == 'resnet18', meta
print(f'python check ok: {len(saved)} tensors with torchvision names, shapes, dtypes and bytes')
"#;

#[test]
fn resnet18_saved_checkpoint_has_torchvision_names_shapes_and_bytes() {
    let Some(sh) = shared() else { return };
    let weights = sh.join("fixtures/resnet18_weights.safetensors");
    let (store, m) = model(&weights);
    let out = tmp("save", "xfer_resnet18.safetensors");
    xfer_models::checkpoint::save_with_config(&store, &out, &m.config()).unwrap();

    // Round trip through the checkpoint reader and the torchvision loader: same outputs.
    let config: xfer_models::ResNetConfig = xfer_models::checkpoint::read_config(&out).unwrap();
    assert_eq!(config, m.config());
    let store2 = ParamStore::new();
    let m2 = ResNet::new(
        &store2.scope(""),
        &config,
        &mut xfer_ops::SeededRng::new(99),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    xfer_models::checkpoint::load(&store2, &out).unwrap();
    let io = io(&sh);
    let e = rel_err(
        &m2.forward_t(&io["input"], false).unwrap(),
        &io["eval_logits"],
    );
    assert!(e < 1e-4, "checkpoint reloaded: {e}");
    m2.load_torchvision(&out).unwrap();
    let e = rel_err(
        &m2.forward_t(&io["input"], false).unwrap(),
        &io["eval_logits"],
    );
    assert!(e < 1e-4, "reloaded checkpoint: {e}");

    match std::process::Command::new("python3")
        .arg("-c")
        .arg(PY_CHECK)
        .arg(&out)
        .arg(&weights)
        .output()
    {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            println!("{}", text.trim());
            assert!(o.status.success(), "python check failed: {text}");
        }
        Err(e) => println!("skipped: python header check (python3 not runnable: {e})"),
    }
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}
