//! Checkpoints: round trip with configuration, typed refusals naming file and tensor, no
//! half-loaded model, atomic replacement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use xfer_models::checkpoint::{self, CONFIG_KEY};
use xfer_models::safetensors_file::{serialize, write_atomic};
use xfer_models::{
    DomainDiscriminator, DomainDiscriminatorConfig, Mlp, MlpConfig, ModelError, ModuleT, ParamStore,
};
use xfer_ops::SeededRng;

const CPU: Device = Device::Cpu;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-models-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn state(store: &ParamStore) -> BTreeMap<String, Vec<f64>> {
    store
        .all()
        .iter()
        .map(|p| {
            let v = p
                .var()
                .as_tensor()
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            (p.name().to_string(), v)
        })
        .collect()
}

/// An MLP plus a batch-normed discriminator (so there are buffers), with moved statistics.
fn model(seed: u64, dtype: DType) -> (ParamStore, MlpConfig) {
    let store = ParamStore::new();
    let cfg = MlpConfig::new(4, &[6], 3);
    let mut rng = SeededRng::new(seed);
    let m = Mlp::new(&store.scope("net"), &cfg, &mut rng, dtype, &CPU).unwrap();
    let d = DomainDiscriminator::new(
        &store.scope("domain"),
        &DomainDiscriminatorConfig::new(6, 5, 1),
        &mut rng,
        dtype,
        &CPU,
    )
    .unwrap();
    let x = rng.normal(&[8, 4], 1.0, 2.0, dtype, &CPU).unwrap();
    use xfer_models::Backbone;
    d.forward_t(&m.features_t(&x, true).unwrap(), true).unwrap();
    (store, cfg)
}

#[test]
fn round_trip_restores_params_buffers_and_configuration() {
    let d = dir("roundtrip");
    let path = d.join("model.safetensors");
    let (a, cfg) = model(1, DType::F32);
    assert_ne!(
        state(&a)["domain.1.running_mean"],
        vec![0.0; 5],
        "running stats should have moved"
    );
    checkpoint::save_with_config(&a, &path, &cfg).unwrap();
    assert_eq!(files_in(&d), ["model.safetensors"]);

    let (b, _) = model(2, DType::F32);
    assert_ne!(state(&a), state(&b));
    let info = checkpoint::load(&b, &path).unwrap();
    assert_eq!(state(&a), state(&b));
    assert_eq!(info.loaded, a.len());
    assert_eq!(
        info.config.as_deref(),
        Some(serde_json::to_string(&cfg).unwrap().as_str())
    );
    assert_eq!(info.metadata.get("format").map(String::as_str), Some("pt"));
    let back: MlpConfig = checkpoint::read_config(&path).unwrap();
    assert_eq!(back, cfg);
    assert!(
        checkpoint::read_metadata(&path)
            .unwrap()
            .contains_key(CONFIG_KEY)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn f64_checkpoint_loads_into_f32_model_and_saving_replaces_atomically() {
    let d = dir("dtype");
    let path = d.join("m.safetensors");
    let (a, _) = model(1, DType::F64);
    checkpoint::save(&a, &path, None).unwrap();
    let (b, _) = model(2, DType::F32);
    let info = checkpoint::load(&b, &path).unwrap();
    assert_eq!(info.config, None);
    for ((n, x), (_, y)) in state(&a).iter().zip(state(&b).iter()) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() < 1e-6 * u.abs().max(1.0), "{n}: {u} vs {v}");
        }
    }
    // Saving again over the file replaces it and leaves no temporary behind.
    checkpoint::save(&b, &path, Some("{\"v\": 2}")).unwrap();
    assert_eq!(files_in(&d), ["m.safetensors"]);
    assert_eq!(
        checkpoint::read_metadata(&path).unwrap()[CONFIG_KEY],
        "{\"v\": 2}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn failed_saves_leave_the_old_checkpoint_intact_and_no_partial_file() {
    let d = dir("atomic");
    let path = d.join("good.safetensors");
    let (a, _) = model(1, DType::F32);
    checkpoint::save(&a, &path, Some("{}")).unwrap();
    let good = std::fs::read(&path).unwrap();
    // An invalid configuration is refused before anything is written.
    let e = checkpoint::save(&a, &path, Some("{not json")).unwrap_err();
    assert!(e.to_string().contains("good.safetensors"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // The final rename fails (the destination is a non-empty directory): the temporary file
    // written in the same directory must be gone and nothing else touched.
    let blocker = d.join("blocked.safetensors");
    std::fs::create_dir_all(blocker.join("inside")).unwrap();
    let e = checkpoint::save(&a, &blocker, None).unwrap_err();
    assert!(e.to_string().contains("blocked.safetensors"), "{e}");
    assert_eq!(files_in(&d), ["blocked.safetensors", "good.safetensors"]);
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // A directory that does not exist: an error naming the path, nothing created.
    let e = checkpoint::save(&a, d.join("no/such/dir/m.safetensors"), None).unwrap_err();
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn missing_tensor_wrong_shape_and_unexpected_tensor_name_file_and_tensor_and_load_nothing() {
    let d = dir("bad");
    let (a, _) = model(1, DType::F32);
    let path = d.join("small.safetensors");
    checkpoint::save(&a, &path, None).unwrap();

    // The model has one more parameter than the file.
    let (b, _) = model(2, DType::F32);
    b.add("extra.weight", Tensor::zeros(3, DType::F32, &CPU).unwrap())
        .unwrap();
    let before = state(&b);
    match checkpoint::load(&b, &path).unwrap_err() {
        e @ ModelError::MissingTensor { .. } => {
            let m = e.to_string();
            assert!(
                m.contains("small.safetensors") && m.contains("extra.weight"),
                "{m}"
            );
        }
        e => panic!("expected MissingTensor, got {e}"),
    }
    assert_eq!(state(&b), before, "a failed load changed the model");

    // Same names, one shape differs.
    let c = ParamStore::new();
    Mlp::new(
        &c.scope("net"),
        &MlpConfig::new(4, &[7], 3),
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    DomainDiscriminator::new(
        &c.scope("domain"),
        &DomainDiscriminatorConfig::new(6, 5, 1),
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    let before = state(&c);
    match checkpoint::load(&c, &path).unwrap_err() {
        ModelError::TensorShape {
            path: p,
            name,
            expected,
            got,
        } => {
            assert!(p.ends_with("small.safetensors"));
            assert_eq!(name, "net.classifier.weight");
            assert_eq!((expected, got), (vec![3, 7], vec![3, 6]));
        }
        e => panic!("expected TensorShape, got {e}"),
    }
    assert_eq!(state(&c), before);

    // The file has a tensor the model lacks.
    let (e_store, _) = model(3, DType::F32);
    let big = d.join("big.safetensors");
    e_store
        .add("aux.weight", Tensor::ones(2, DType::F32, &CPU).unwrap())
        .unwrap();
    checkpoint::save(&e_store, &big, None).unwrap();
    let (f, _) = model(4, DType::F32);
    let before = state(&f);
    let e = checkpoint::load(&f, &big).unwrap_err();
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { name, .. } if name == "aux.weight"),
        "{e}"
    );
    assert_eq!(state(&f), before);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn num_batches_tracked_in_a_torch_state_dict_is_ignored() {
    let d = dir("nbt");
    let (a, _) = model(1, DType::F32);
    let mut tensors: Vec<(String, Tensor)> = a
        .all()
        .iter()
        .map(|p| (p.name().to_string(), p.var().as_tensor().clone()))
        .collect();
    tensors.push((
        "domain.1.num_batches_tracked".into(),
        Tensor::new(&[12i64], &CPU).unwrap(),
    ));
    let bytes = serialize(
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        &BTreeMap::new(),
    )
    .unwrap();
    let path = d.join("torch.safetensors");
    write_atomic(&path, &bytes).unwrap();
    let (b, _) = model(2, DType::F32);
    let info = checkpoint::load(&b, &path).unwrap();
    assert_eq!(info.ignored, ["domain.1.num_batches_tracked"]);
    assert_eq!(state(&a), state(&b));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pickle_and_truncated_checkpoints_are_refused_with_the_file_name() {
    let d = dir("refuse");
    let (a, _) = model(1, DType::F32);
    let before = state(&a);

    let pth = d.join("resnet18.pth");
    // The opening bytes of a protocol-2 pickle of a dict.
    std::fs::write(
        &pth,
        b"\x80\x02}q\x00(X\x0c\x00\x00\x00conv1.weightq\x01ctorch",
    )
    .unwrap();
    let e = checkpoint::load(&a, &pth).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, ModelError::NotSafetensors { .. }), "{m}");
    assert!(m.contains("resnet18.pth"), "{m}");
    assert!(
        m.contains("PyTorch pickle checkpoints are not loaded, convert to safetensors"),
        "{m}"
    );
    let e = checkpoint::read_metadata(&pth).unwrap_err();
    assert!(matches!(e, ModelError::NotSafetensors { .. }), "{e}");

    let zip = d.join("new_format.pt");
    std::fs::write(&zip, b"PK\x03\x04\x00\x00\x08\x00archive/data.pkl").unwrap();
    let m = checkpoint::load(&a, &zip).unwrap_err().to_string();
    assert!(
        m.contains("new_format.pt") && m.contains("PyTorch pickle"),
        "{m}"
    );

    let good = d.join("good.safetensors");
    checkpoint::save(&a, &good, Some("{}")).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = checkpoint::load(&a, &cut).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, ModelError::Truncated { .. }), "{m}");
    assert!(m.contains("cut.safetensors"), "{m}");
    let e = checkpoint::read_metadata(&cut).unwrap_err();
    assert!(matches!(e, ModelError::Truncated { .. }), "{e}");

    let empty = d.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let m = checkpoint::load(&a, &empty).unwrap_err().to_string();
    assert!(m.contains("empty.safetensors"), "{m}");

    let missing = d.join("nope.safetensors");
    let m = checkpoint::load(&a, &missing).unwrap_err().to_string();
    assert!(m.contains("nope.safetensors"), "{m}");

    assert_eq!(state(&a), before);
    std::fs::remove_dir_all(&d).unwrap();
}

/// An independent reader (Python's `json` and `struct`, as `safetensors.torch.load_file`
/// parses the same layout) sees the dotted names, shapes, f32 dtype, contiguous offsets
/// covering the data, and the metadata `format = pt` plus the configuration JSON.
#[test]
fn saved_checkpoint_header_reads_in_python_with_names_shapes_and_metadata() {
    let d = dir("python");
    let path = d.join("ckpt.safetensors");
    let (a, cfg) = model(1, DType::F32);
    checkpoint::save_with_config(&a, &path, &cfg).unwrap();
    let expected: Vec<String> = a
        .all()
        .iter()
        .map(|p| format!("{}={:?}", p.name(), p.var().dims()))
        .collect();
    let script = r#"
import json, struct, sys
path, expected, cfg = sys.argv[1], sys.argv[2].split(";"), json.loads(sys.argv[3])
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
assert meta["format"] == "pt", meta
assert json.loads(meta["xfer.config"]) == cfg, meta
got = sorted(f"{k}={v['shape']}" for k, v in header.items())
want = sorted(e.replace(" ", "") for e in expected)
got = [g.replace(" ", "") for g in got]
assert got == want, (got, want)
spans = sorted(tuple(v["data_offsets"]) for v in header.values())
end = 0
for s, e in spans:
    assert s == end, (s, end)
    end = e
assert 8 + n + end == len(raw), (8 + n + end, len(raw))
for k, v in header.items():
    assert v["dtype"] == "F32", (k, v)
    count = 1
    for s in v["shape"]:
        count *= s
    assert v["data_offsets"][1] - v["data_offsets"][0] == 4 * count, k
print(f"python check ok: {len(header)} tensors")
"#;
    let cfg_json = serde_json::to_string(&cfg).unwrap();
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(expected.join(";"))
        .arg(&cfg_json)
        .output()
    {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.status.success(), "python check failed: {text}");
            assert!(text.contains("python check ok"), "{text}");
        }
        Err(e) => println!("skipped: python header check (python3 not runnable: {e})"),
    }
    std::fs::remove_dir_all(&d).unwrap();
}
