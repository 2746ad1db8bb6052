//! Layer transfer: report correctness, renaming, dtype conversion, strict mode, bad files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use xfer_models::safetensors_file::{serialize, write_atomic};
use xfer_models::{ModelError, ParamStore, Selection, Transfer};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-models-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn filled(shape: &[usize], x: f32) -> Tensor {
    Tensor::full(x, shape, &Device::Cpu).unwrap()
}

fn values(store: &ParamStore, name: &str) -> Vec<f32> {
    store
        .get(name)
        .unwrap()
        .var()
        .as_tensor()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn snapshot(store: &ParamStore) -> BTreeMap<String, Vec<f32>> {
    store
        .names()
        .into_iter()
        .map(|n| {
            let v = values(store, &n);
            (n, v)
        })
        .collect()
}

/// Source: a.weight (2,2), a.bias (2), b.weight (4,4), extra.weight (3), d.weight (1).
/// Target: a.weight, a.bias, b.weight (4,5), c.weight (missing), d.weight (not selected).
fn pair() -> (ParamStore, ParamStore) {
    let src = ParamStore::new();
    src.add("a.weight", t(&[1., 2., 3., 4.], &[2, 2])).unwrap();
    src.add("a.bias", t(&[5., 6.], &[2])).unwrap();
    src.add("b.weight", filled(&[4, 4], 7.)).unwrap();
    src.add("extra.weight", filled(&[3], 8.)).unwrap();
    src.add("d.weight", filled(&[1], 9.)).unwrap();
    let dst = ParamStore::new();
    dst.add("a.weight", filled(&[2, 2], 0.)).unwrap();
    dst.add("a.bias", filled(&[2], 0.)).unwrap();
    dst.add("b.weight", filled(&[4, 5], 0.)).unwrap();
    dst.add("c.weight", filled(&[3], 0.)).unwrap();
    dst.add("d.weight", filled(&[1], 0.)).unwrap();
    (src, dst)
}

#[test]
fn report_lists_copied_not_selected_missing_unexpected_and_mismatched() {
    let (src, dst) = pair();
    let report = Transfer::new()
        .select(Selection::parse("!d").unwrap())
        .run(&src, &dst)
        .unwrap();
    assert_eq!(report.copied, ["a.bias", "a.weight"]);
    assert_eq!(report.not_selected, ["d.weight"]);
    assert_eq!(report.missing_in_source, ["c.weight"]);
    assert_eq!(report.unexpected_in_source, ["extra.weight"]);
    assert_eq!(report.shape_mismatches.len(), 1);
    let m = &report.shape_mismatches[0];
    assert_eq!(
        (
            m.name.as_str(),
            m.source_shape.as_slice(),
            m.target_shape.as_slice()
        ),
        ("b.weight", &[4usize, 4][..], &[4usize, 5][..])
    );
    assert!(report.converted.is_empty() && report.renamed.is_empty());
    assert!(!report.is_clean());
    assert_eq!(values(&dst, "a.weight"), [1., 2., 3., 4.]);
    assert_eq!(values(&dst, "a.bias"), [5., 6.]);
    assert_eq!(
        values(&dst, "b.weight"),
        vec![0.; 20],
        "mismatch must not be copied"
    );
    assert_eq!(
        values(&dst, "d.weight"),
        [0.],
        "not selected must not be copied"
    );
    let text = report.to_string();
    for needle in [
        "2 copied",
        "missing in source (1): c.weight",
        "unexpected in source (1): extra.weight",
        "shape mismatch: b.weight source [4, 4] target [4, 5]",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(format!("{report:#}").contains("not selected (1): d.weight"));
}

#[test]
fn copied_values_are_independent_of_the_source() {
    let (src, dst) = pair();
    Transfer::new().select("a").run(&src, &dst).unwrap();
    src.get("a.bias")
        .unwrap()
        .var()
        .set(&filled(&[2], -1.))
        .unwrap();
    assert_eq!(values(&dst, "a.bias"), [5., 6.]);
}

#[test]
fn strict_mode_refuses_missing_and_mismatched_and_leaves_target_untouched() {
    let (src, dst) = pair();
    let before = snapshot(&dst);
    let err = Transfer::new()
        .select(Selection::parse("!d").unwrap())
        .strict(true)
        .run(&src, &dst)
        .unwrap_err();
    match &err {
        ModelError::StrictTransfer(r) => {
            assert_eq!(r.missing_in_source, ["c.weight"]);
            assert_eq!(r.shape_mismatches[0].name, "b.weight");
            assert!(r.copied.is_empty());
        }
        other => panic!("expected StrictTransfer, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("c.weight") && msg.contains("b.weight"),
        "{msg}"
    );
    assert_eq!(snapshot(&dst), before, "strict failure modified the target");
    // Strict succeeds when the selection has everything with the right shapes.
    let r = Transfer::new()
        .select("a")
        .strict(true)
        .run(&src, &dst)
        .unwrap();
    assert_eq!(r.copied, ["a.bias", "a.weight"]);
}

#[test]
fn file_transfer_renames_and_converts_f16_bf16_f64_to_the_target_dtype() {
    let dev = Device::Cpu;
    // A "PyTorch" file: DataParallel prefix, half-precision weights, a double bias,
    // a batch-norm counter and a classifier the target does not want.
    let w16 = t(&[0.5, -1.25, 2.0, 3.0], &[2, 2])
        .to_dtype(DType::F16)
        .unwrap();
    let b64 = Tensor::from_slice(&[0.1f64, 0.2], 2, &dev).unwrap();
    let bf = t(&[1.5, -2.5], &[2]).to_dtype(DType::BF16).unwrap();
    let nbt = Tensor::from_slice(&[3i64], 1, &dev).unwrap();
    let fc = filled(&[10, 2], 1.0);
    let tensors = [
        ("module.features.0.weight", &w16),
        ("module.features.0.bias", &b64),
        ("module.norm.weight", &bf),
        ("module.norm.num_batches_tracked", &nbt),
        ("module.fc.weight", &fc),
    ];
    let bytes = serialize(tensors, &BTreeMap::new()).unwrap();
    let path = tmp("renamed.safetensors");
    write_atomic(&path, &bytes).unwrap();

    let dst = ParamStore::new();
    dst.add("backbone.features.0.weight", filled(&[2, 2], 0.))
        .unwrap();
    dst.add("backbone.features.0.bias", filled(&[2], 0.))
        .unwrap();
    dst.add("backbone.ln.weight", filled(&[2], 0.)).unwrap();
    dst.add("head.weight", filled(&[3, 2], 0.)).unwrap();
    let report = Transfer::new()
        .strip_prefix("module")
        .rename(|n| {
            if n.starts_with("fc.") {
                None
            } else {
                Some(n.replace("norm.", "ln."))
            }
        })
        .add_prefix("backbone.")
        .select("backbone")
        .run_file(&path, &dst)
        .unwrap();
    assert_eq!(
        report.copied,
        [
            "backbone.features.0.bias",
            "backbone.features.0.weight",
            "backbone.ln.weight"
        ]
    );
    assert_eq!(report.dropped_by_rename, ["module.fc.weight"]);
    assert_eq!(report.ignored, ["module.norm.num_batches_tracked"]);
    assert_eq!(report.not_selected, ["head.weight"]);
    assert!(report.is_clean());
    assert!(
        report
            .renamed
            .contains(&("module.norm.weight".into(), "backbone.ln.weight".into()))
    );
    let conv: Vec<(String, DType, DType)> = report
        .converted
        .iter()
        .map(|c| (c.name.clone(), c.from, c.to))
        .collect();
    assert_eq!(
        conv,
        [
            ("backbone.features.0.bias".into(), DType::F64, DType::F32),
            ("backbone.features.0.weight".into(), DType::F16, DType::F32),
            ("backbone.ln.weight".into(), DType::BF16, DType::F32),
        ]
    );
    let p = dst.get("backbone.features.0.weight").unwrap();
    assert_eq!(p.var().dtype(), DType::F32);
    assert_eq!(
        values(&dst, "backbone.features.0.weight"),
        [0.5, -1.25, 2.0, 3.0]
    );
    assert_eq!(values(&dst, "backbone.features.0.bias"), [0.1, 0.2]);
    assert_eq!(values(&dst, "backbone.ln.weight"), [1.5, -2.5]);
    assert_eq!(values(&dst, "head.weight"), vec![0.; 6]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unsupported_dtype_in_file_is_an_error_naming_file_and_tensor_and_copies_nothing() {
    // Hand-written safetensors: one f32 tensor and one BOOL tensor (no candle dtype).
    let header = br#"{"a.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b.mask":{"dtype":"BOOL","shape":[2],"data_offsets":[4,6]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&2.0f32.to_le_bytes());
    bytes.extend_from_slice(&[1, 0]);
    let path = tmp("bool.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let dst = ParamStore::new();
    dst.add("a.weight", filled(&[1], 0.)).unwrap();
    dst.add("b.mask", filled(&[2], 0.)).unwrap();
    let err = Transfer::new().run_file(&path, &dst).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::UnsupportedDtype { .. }), "{msg}");
    assert!(
        msg.contains("bool.safetensors") && msg.contains("b.mask"),
        "{msg}"
    );
    assert_eq!(
        values(&dst, "a.weight"),
        [0.],
        "a.weight was copied before the error"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn two_source_names_renamed_to_one_target_is_an_error() {
    let (src, dst) = pair();
    let err = Transfer::new()
        .rename(|n| Some(n.replace("extra", "c")))
        .rename(|n| Some(n.replace("d.", "c.")))
        .run(&src, &dst)
        .unwrap_err();
    assert!(err.to_string().contains("both renamed"), "{err}");
}

#[test]
fn buffers_can_be_left_out_of_a_transfer() {
    let src = ParamStore::new();
    src.add("bn.weight", filled(&[2], 2.)).unwrap();
    src.add_buffer("bn.running_mean", filled(&[2], 3.)).unwrap();
    let dst = ParamStore::new();
    dst.add("bn.weight", filled(&[2], 0.)).unwrap();
    dst.add_buffer("bn.running_mean", filled(&[2], 0.)).unwrap();
    let r = Transfer::new().buffers(false).run(&src, &dst).unwrap();
    assert_eq!(r.copied, ["bn.weight"]);
    assert_eq!(r.not_selected, ["bn.running_mean"]);
    assert_eq!(values(&dst, "bn.running_mean"), [0., 0.]);
    let r = Transfer::new().run(&src, &dst).unwrap();
    assert_eq!(r.copied, ["bn.running_mean", "bn.weight"]);
    assert_eq!(values(&dst, "bn.running_mean"), [3., 3.]);
}

#[test]
fn pickle_zip_and_truncated_files_are_refused_with_the_file_name() {
    let dst = ParamStore::new();
    dst.add("a.weight", filled(&[1], 0.)).unwrap();

    let pickle = tmp("model.pth");
    std::fs::write(&pickle, b"\x80\x02}q\x00(X\x08\x00\x00\x00a.weightq\x01").unwrap();
    let e = Transfer::new().run_file(&pickle, &dst).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ModelError::NotSafetensors { .. }), "{msg}");
    assert!(msg.contains("model.pth"), "{msg}");
    assert!(
        msg.contains("PyTorch pickle checkpoints are not loaded, convert to safetensors"),
        "{msg}"
    );

    let zip = tmp("model_zip.pt");
    std::fs::write(&zip, b"PK\x03\x04archive/data.pkl....").unwrap();
    let e = Transfer::new().run_file(&zip, &dst).unwrap_err();
    assert!(e.to_string().contains("model_zip.pt") && e.to_string().contains("zip"));

    let good = serialize([("a.weight", &filled(&[64], 1.))], &BTreeMap::new()).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() - 10]).unwrap();
    let e = Transfer::new().run_file(&cut, &dst).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ModelError::Truncated { .. }), "{msg}");
    assert!(msg.contains("cut.safetensors"), "{msg}");
    // Cut inside the header too.
    std::fs::write(&cut, &good[..20]).unwrap();
    let e = Transfer::new().run_file(&cut, &dst).unwrap_err();
    assert!(matches!(e, ModelError::Truncated { .. }), "{e}");
    assert_eq!(values(&dst, "a.weight"), [0.]);
    for p in [pickle, zip, cut] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn absurd_data_offsets_are_reported_as_truncated_not_a_panic() {
    let header =
        br#"{"a.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    let path = tmp("absurd.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let dst = ParamStore::new();
    dst.add("a.weight", filled(&[1], 0.)).unwrap();
    let e = Transfer::new().run_file(&path, &dst).unwrap_err();
    assert!(matches!(e, ModelError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("absurd.safetensors"), "{e}");
    std::fs::remove_file(&path).unwrap();
}
