//! Resume guarantees: a run with dropout resumes bit-identically, and a refused checkpoint
//! changes nothing (weights, optimiser state, loop state).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{DropNet, bits_of, train};
use xfer_train::checkpoint::{CheckpointFile, checkpoint_file_name, write_safetensors_atomic};
use xfer_train::{StepCtx, StepOutput, TrainError, Trainer};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-train-resume-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_run_with_dropout_interrupted_and_resumed_ends_bit_identical() {
    let (a, b) = (tmpdir("drop-a"), tmpdir("drop-b"));
    let (straight, r) = train(32, 1, 20, &a, None);
    r.unwrap();
    let (_, r) = train(32, 1, 20, &b, Some(13));
    assert!(matches!(r, Err(TrainError::Objective(_))));
    // Another initialisation and a fresh dropout generator: masks and weights must both come
    // from the run's seed and the checkpoint.
    let (resumed, r) = train(32, 999, 20, &b, None);
    r.unwrap();
    assert_eq!(straight.bits(), resumed.bits());
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn dropout_masks_differ_between_steps_and_follow_the_run_seed() {
    // The resume test above would pass trivially if dropout were off: check the masks vary.
    let (x, y) = common::blobs();
    let net = DropNet::new(32, 1);
    let dir = tmpdir("masks");
    let mut t = common::trainer(&net, 2, &dir);
    let mut losses = Vec::new();
    let mut obj = |ctx: &StepCtx| {
        // the same batch twice in one step: two draws, two different masks
        let l1 = common::loss(&net, &x, &y, ctx)?;
        let l2 = common::loss(&net, &x, &y, ctx)?;
        losses.push((
            l1.to_scalar::<f32>()?.to_bits(),
            l2.to_scalar::<f32>()?.to_bits(),
        ));
        Ok(StepOutput::new(l1))
    };
    t.fit(&mut obj).unwrap();
    assert_ne!(losses[0].0, losses[0].1, "one mask per draw");
    std::fs::remove_dir_all(&dir).unwrap();
}

type OptBits = (String, String, Vec<(String, Vec<u32>)>);

fn opt_bits(t: &Trainer) -> OptBits {
    let s = t.optimizer().state().unwrap();
    let mut tensors: Vec<(String, Vec<u32>)> = s
        .tensors
        .iter()
        .map(|(n, v)| {
            let v = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n.clone(), v.into_iter().map(f32::to_bits).collect())
        })
        .collect();
    tensors.sort();
    (s.kind, s.meta.to_string(), tensors)
}

/// Writes `base` to `path` with `edit` applied to its tensors and metadata.
fn doctored(
    base: &CheckpointFile,
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, Tensor)>, &mut HashMap<String, String>),
) -> PathBuf {
    let mut tensors = base.tensors.clone();
    let mut meta = base.metadata.clone();
    edit(&mut tensors, &mut meta);
    write_safetensors_atomic(path, &tensors, meta).unwrap();
    path.to_path_buf()
}

#[test]
fn a_refused_resume_changes_nothing() {
    let dir = tmpdir("refused");
    let bad = dir.join("bad");
    let (x, y) = common::blobs();
    let net = DropNet::new(16, 1);
    let mut t = common::trainer(&net, 20, &dir);
    let mut obj = |ctx: &StepCtx| {
        if ctx.step == 6 {
            return Err(TrainError::objective("stop"));
        }
        Ok(StepOutput::new(common::loss(&net, &x, &y, ctx)?))
    };
    assert!(t.fit(&mut obj).is_err());
    assert_eq!(t.step(), 6);
    let before = (bits_of(&net.store), opt_bits(&t), t.history().steps.len());
    // The base is the checkpoint of step 5: its weights and moments differ from the state
    // in memory (step 6), so a partial load would show.
    let base = CheckpointFile::read(&dir.join(checkpoint_file_name(5))).unwrap();
    assert_eq!(base.step().unwrap(), 5);
    let dev = Device::Cpu;
    let mut cases: Vec<(&str, PathBuf, &str)> = Vec::new();
    // A parameter of another shape, with an optimiser state that fits the model: the old
    // trainer loaded the optimiser state before it found the weights did not fit.
    cases.push((
        "shape",
        doctored(&base, &bad.join("shape.safetensors"), |ts, _| {
            for (n, t) in ts.iter_mut() {
                if n == "param/l2.bias" {
                    *t = Tensor::zeros(3, DType::F32, &dev).unwrap();
                }
            }
        }),
        "param/l2.bias",
    ));
    cases.push((
        "missing tensor",
        doctored(&base, &bad.join("missing.safetensors"), |ts, _| {
            ts.retain(|(n, _)| n != "param/l1.weight");
        }),
        "param/l1.weight",
    ));
    cases.push((
        "unexpected tensor",
        doctored(&base, &bad.join("extra.safetensors"), |ts, _| {
            ts.push((
                "param/l3.weight".into(),
                Tensor::zeros(2, DType::F32, &dev).unwrap(),
            ));
        }),
        "param/l3.weight",
    ));
    cases.push((
        "optimiser slot of another shape",
        doctored(&base, &bad.join("optim.safetensors"), |ts, _| {
            for (n, t) in ts.iter_mut() {
                if n == "optim/l1.weight/exp_avg" {
                    *t = Tensor::zeros((3, 3), DType::F32, &dev).unwrap();
                }
            }
        }),
        "l1.weight",
    ));
    cases.push((
        "missing trainer field",
        doctored(&base, &bad.join("field.safetensors"), |_, meta| {
            let mut v: serde_json::Value = serde_json::from_str(&meta["trainer"]).unwrap();
            v["early"].as_object_mut().unwrap().remove("bad_evals");
            meta.insert("trainer".into(), v.to_string());
        }),
        "bad_evals",
    ));
    cases.push((
        "missing trainer option field",
        doctored(&base, &bad.join("field2.safetensors"), |_, meta| {
            let mut v: serde_json::Value = serde_json::from_str(&meta["trainer"]).unwrap();
            v["early"].as_object_mut().unwrap().remove("best");
            meta.insert("trainer".into(), v.to_string());
        }),
        "best",
    ));
    cases.push((
        "missing history",
        doctored(&base, &bad.join("history.safetensors"), |_, meta| {
            meta.remove("history");
        }),
        "history",
    ));
    let torn = bad.join("torn.safetensors");
    let bytes = std::fs::read(dir.join(checkpoint_file_name(5))).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(("torn file", torn, "torn.safetensors"));
    for (what, path, names) in &cases {
        let e = t.resume(path).unwrap_err().to_string();
        let file = path.file_name().unwrap().to_string_lossy();
        assert!(
            e.contains(file.as_ref()),
            "{what}: the error names the file: {e}"
        );
        assert!(e.contains(names), "{what}: the error names {names:?}: {e}");
        let after = (bits_of(&net.store), opt_bits(&t), t.history().steps.len());
        assert!(
            before == after,
            "{what}: a refused resume changed the trainer"
        );
        assert_eq!(t.step(), 6, "{what}");
    }
    // The untouched checkpoint is accepted: the refusals above came from the edits.
    t.resume(&dir.join(checkpoint_file_name(5))).unwrap();
    assert_eq!(t.step(), 5);
    assert!(bits_of(&net.store) != before.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
