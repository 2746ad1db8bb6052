use candle_core::{Device, Tensor};
use xfer_data::{ClassAttributes, TensorDataset};
use xfer_ops::SeededRng;

use super::data::description_matrix;
use super::model::conse_embedding;
use super::*;
use crate::run::{RunCtx, Stage};

/// A tiny separable problem with compositional attributes: 6 classes = 3 "shapes" × 2
/// "colours", one-hot per factor; inputs are the attribute vector plus noise, embedded in
/// 8 dimensions. Class 5 (shape 2, colour 1) is unseen but each of its attributes is seen.
fn toy(seed: u64) -> ZeroShotData {
    let mut rng = SeededRng::new(seed);
    let classes = 6u32;
    let attr = |c: u32| -> Vec<f32> {
        let mut a = vec![0f32; 5];
        a[(c / 2) as usize] = 1.0;
        a[3 + (c % 2) as usize] = 1.0;
        a
    };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for c in 0..classes {
        for _ in 0..40 {
            let a = attr(c);
            for v in &a {
                x.push(v + 0.15 * rng.normal01() as f32);
            }
            for _ in 0..3 {
                x.push(0.3 * rng.normal01() as f32);
            }
            y.push(c);
        }
    }
    let ds = TensorDataset::new("toy", x, vec![8], y).unwrap();
    let values: Vec<f32> = (0..classes).flat_map(attr).collect();
    let names = ["s0", "s1", "s2", "c0", "c1"].map(String::from).to_vec();
    let attributes = ClassAttributes::new(names, values, classes as usize).unwrap();
    ZeroShotData::split(&ds, &attributes, &[1, 5], 0.25, seed).unwrap()
}

fn quick(steps: usize) -> ZeroShotConfig {
    ZeroShotConfig {
        stage: Stage::adamw(1e-2)
            .with_steps(steps)
            .with_batch_size(32)
            .with_weight_decay(1e-4)
            .with_eval_every(50),
        embed_dim: 16,
        top_t: 2,
        ..ZeroShotConfig::new(BackboneSpec::Mlp {
            hidden: vec![32],
            dropout: 0.0,
        })
    }
}

#[test]
fn split_holds_out_every_unseen_sample_and_refuses_duplicate_descriptions() {
    let data = toy(0);
    assert_eq!(data.unseen, vec![1, 5]);
    assert!(data.train.labels().iter().all(|c| *c != 1 && *c != 5));
    assert!(data.unseen_test.labels().iter().all(|c| *c == 1 || *c == 5));
    assert_eq!(data.unseen_test.len(), 80);
    let dup =
        ClassAttributes::new(vec!["a".into()], vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0], 6).unwrap();
    let e = ZeroShotData::split(&data.train, &dup, &[0], 0.25, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("same description"), "{e}");
}

#[test]
fn refusals_are_typed_a_caller_can_match_on_them() {
    // A setting out of range names the setting.
    let cfg = ZeroShotConfig {
        embed_dim: 0,
        ..quick(10)
    };
    assert!(
        matches!(cfg.validate(), Err(TrainError::InvalidValue { ref name, .. }) if name == "embed_dim")
    );
    // An empty data set is bad data, naming the data set.
    let empty = TensorDataset::new("nothing", vec![], vec![2], vec![]).unwrap();
    let e = crate::methods::finetune::dataset_tensors(&empty, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&e, TrainError::BadData(m) if m.contains("nothing")),
        "{e}"
    );
    // Two classes with the same attribute vector: bad data too, not a setting.
    let data = toy(0);
    let dup =
        ClassAttributes::new(vec!["a".into()], vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0], 6).unwrap();
    let e = ZeroShotData::split(&data.train, &dup, &[0], 0.25, 0).unwrap_err();
    assert!(
        matches!(&e, TrainError::BadData(m) if m.contains("same description")),
        "{e}"
    );
    // No unseen class: the `unseen` setting is at fault.
    let e = ZeroShotData::split(&data.train, &dup, &[], 0.25, 0).unwrap_err();
    assert!(
        matches!(&e, TrainError::InvalidValue { name, .. } if name == "unseen"),
        "{e}"
    );
}

#[test]
fn every_method_beats_chance_on_unseen_classes_of_a_separable_toy() {
    let data = toy(1);
    for method in ZslMethod::all() {
        let cfg = quick(200).with_method(method);
        let ZslOutcome {
            model, result: r, ..
        } = run(&cfg, &data, &RunCtx::cpu().with_seed(1)).unwrap();
        assert_eq!(model.report.steps, 200);
        assert!(
            r.unseen_acc > r.chance + 0.25,
            "{}: unseen {} (chance {})",
            method.name(),
            r.unseen_acc,
            r.chance
        );
        for v in [r.seen_acc, r.gzsl_unseen_acc, r.h] {
            assert!((0.0..=1.0).contains(&v));
        }
    }
}

#[test]
fn conse_embedding_is_the_normalised_top_t_mixture() {
    let p = Tensor::new(&[[0.5f32, 0.3, 0.2]], &Device::Cpu).unwrap();
    let desc = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
    let s = conse_embedding(&p, &desc, 2)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!((s[0][0] - 0.625).abs() < 1e-6 && (s[0][1] - 0.375).abs() < 1e-6);
}

#[test]
fn min_max_scaling_maps_counts_into_unit_interval_and_keeps_binary_columns() {
    let a = ClassAttributes::new(
        vec!["bit".into(), "loops".into()],
        vec![0.0, 0.0, 1.0, 1.0, 1.0, 2.0],
        3,
    )
    .unwrap();
    let m = description_matrix(&a, AttributeScaling::MinMax, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(m, vec![vec![0.0, 0.0], vec![1.0, 0.5], vec![1.0, 1.0]]);
}

#[test]
fn a_saved_zero_shot_package_scores_like_the_model_it_was_saved_from() {
    use crate::predict::Predictor;
    use package::{ZslInfo, ZslPackage};
    use xfer_models::package::InputSpec;
    let data = toy(2);
    let cfg = quick(60);
    let dir = std::env::temp_dir().join(format!("xfer-zsl-pkg-{}", std::process::id()));
    let x = data.unseen_test.to_tensors(&Device::Cpu).unwrap().0;
    let all: Vec<u32> = (0..6).collect();
    for method in ZslMethod::all() {
        let ZslOutcome { model, .. } = run(
            &cfg.clone().with_method(method),
            &data,
            &RunCtx::cpu().with_seed(3),
        )
        .unwrap();
        let info = ZslInfo {
            class_names: (0..6).map(|c| format!("class{c}")).collect(),
            input: InputSpec::tensor(1.0),
            features: None,
            text_encoder: None,
            provenance: Default::default(),
        };
        let path = dir.join(method.name());
        model.save(&path, &cfg, &info).unwrap();
        assert!(ZslPackage::is_zero_shot(&path));
        let pkg = ZslPackage::load(&path, &Device::Cpu).unwrap();
        assert_eq!(pkg.class_names(), info.class_names.as_slice());
        let want = model.scores(&x, &all).unwrap().to_vec2::<f32>().unwrap();
        let got = pkg.scores(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(want, got, "{}", method.name());
        // Attribute-table models rank only their own classes.
        let e = pkg
            .with_classes(&["owl".to_string()], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("attribute tables"), "{e}");
        // A classifier package loader refuses it with one line.
        let e = xfer_models::Classifier::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("xfer-zero-shot") && !e.contains('\n'), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_calibrated_run_trains_the_same_model_and_adds_the_numbers_at_its_gamma() {
    let data = toy(4);
    let cfg = quick(60).with_method(ZslMethod::Dap);
    let ctx = RunCtx::cpu().with_seed(5);
    let plain = run(&cfg, &data, &ctx).unwrap();
    assert!(plain.calibrated.is_none());
    let keys: Vec<&str> = plain.metrics().iter().map(|m| m.0).collect();
    assert!(keys.ends_with(&["h_uncalibrated", "gamma"]), "{keys:?}");
    let cal = run(
        &ZeroShotConfig {
            calibration_folds: 2,
            ..cfg.clone()
        },
        &data,
        &ctx,
    )
    .unwrap();
    let c = cal.calibrated.as_ref().unwrap();
    assert_eq!(cal.result, plain.result);
    assert_eq!(c.base, plain.result);
    assert!(c.gamma.is_finite() && (0.0..=1.0).contains(&c.h));
    assert_eq!(cal.metrics(), c.metrics());
}
