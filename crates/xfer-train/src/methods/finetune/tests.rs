//! Unit tests of the fine-tuning methods.

use candle_core::{Device, Tensor};
use xfer_data::{Batch, TensorDataset};
use xfer_losses::cross_entropy;
use xfer_ops::SeededRng;

use super::*;
use crate::optim::{Sgd, SgdConfig};
use crate::schedule::Schedule;
use crate::trainer::{StepOutput, Trainer, TrainerConfig};

/// `n` examples of `d` features in `c` classes: class means 1.5 along every `c`-th axis,
/// plus noise; seeded.
fn blobs(n: usize, d: usize, c: usize, seed: u64) -> TensorDataset {
    let mut rng = SeededRng::new(seed);
    let mut x = Vec::with_capacity(n * d);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % c;
        for j in 0..d {
            let mean = if j % c == k { 1.5 } else { 0.0 };
            x.push((mean + 0.5 * rng.normal01()) as f32);
        }
        y.push(k as u32);
    }
    TensorDataset::new("blobs", x, vec![d], y)
        .unwrap()
        .with_num_classes(c)
        .unwrap()
}

/// A quiet CPU run with seed `seed`.
fn ctx(seed: u64) -> RunCtx {
    RunCtx::cpu().with_seed(seed)
}

/// The whole data set as one batch.
fn full_batch(ds: &TensorDataset) -> Batch {
    let (x, y) = ds.to_tensors(&Device::Cpu).unwrap();
    Batch {
        x,
        y: Some(y),
        domain: None,
        indices: (0..ds.len()).collect(),
        epoch: 0,
        step: 0,
    }
}

fn small_cfg() -> FinetuneConfig {
    let mut cfg = FinetuneConfig::new(BackboneSpec::Mlp {
        hidden: vec![16, 12],
        dropout: 0.0,
    });
    cfg.pretrain.length = Length::Epochs(3);
    cfg.pretrain.batch_size = 16;
    cfg.finetune.length = Length::Epochs(8);
    cfg.scratch.length = Length::Epochs(8);
    cfg
}

fn pretrained(seed: u64) -> Pretrained {
    let src = blobs(64, 8, 4, seed);
    pretrain(&src, None, 4, &small_cfg(), &ctx(seed)).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn param(net: &Classifier, name: &str) -> Vec<f32> {
    values(net.store().get(name).unwrap().var().as_tensor())
}

#[test]
fn layer_transfer_with_freezing_leaves_copied_weights_bit_identical_after_training() {
    let p = pretrained(1);
    let target = blobs(20, 8, 4, 2);
    let m = Method::new(LayerTransfer {
        end: BlockEnd::First,
        k: 2,
        copied: CopiedBlocks::Freeze,
    });
    let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), &ctx(3)).unwrap();
    assert_eq!(setup.copied_blocks, ["features.0", "features.2"]);
    let report = setup.transfer.as_ref().unwrap();
    assert_eq!(
        report.copied,
        [
            "features.0.bias",
            "features.0.weight",
            "features.2.bias",
            "features.2.weight"
        ]
    );
    assert_eq!(
        report.not_selected,
        ["classifier.bias", "classifier.weight"]
    );
    let head_before = param(&setup.net, "classifier.weight");
    let train = setup.train(&target, &ctx(3)).unwrap();
    assert_eq!(train.steps, 8);
    for name in &report.copied {
        assert_eq!(
            param(&setup.net, name),
            values(&p.weights[name]),
            "{name} moved although frozen"
        );
    }
    assert_ne!(
        head_before,
        param(&setup.net, "classifier.weight"),
        "the re-initialised head did not train"
    );
}

#[test]
fn layer_transfer_last_blocks_copies_the_head_and_reinitialises_the_first() {
    let p = pretrained(4);
    let target = blobs(20, 8, 4, 5);
    let m = Method::parse("layer-transfer:last:1:lr=0.1").unwrap();
    let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), &ctx(6)).unwrap();
    assert_eq!(setup.copied_blocks, ["classifier"]);
    assert_eq!(setup.groups.len(), 1);
    assert_ne!(
        param(&setup.net, "features.0.weight"),
        values(&p.weights["features.0.weight"])
    );
    assert_eq!(
        param(&setup.net, "classifier.weight"),
        values(&p.weights["classifier.weight"])
    );
    // Copied with a 0.1 rate, not frozen: still trainable.
    assert!(
        setup
            .net
            .store()
            .get("classifier.weight")
            .unwrap()
            .is_trainable()
    );
    let bad = Method::parse("layer-transfer:3").unwrap();
    let err = MethodSetup::new(&bad, Some(&p), &target, 4, &small_cfg(), &ctx(6)).unwrap_err();
    assert!(
        matches!(&err, TrainError::InvalidValue { name, value, expected }
            if name == "layer-transfer K" && value == "3" && expected.contains("1..=2")),
        "{err}"
    );
}

#[test]
fn l2sp_objective_is_cross_entropy_plus_the_penalty_on_weights_only() {
    let p = pretrained(7);
    let target = blobs(12, 8, 4, 8);
    let m = Method::new(L2SpFinetune {
        alpha: 0.1,
        beta: 0.01,
    });
    let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), &ctx(9)).unwrap();
    // Move every parameter away from its anchor by a known amount.
    for param in setup.net.store().all() {
        let t = param.var().as_tensor();
        param.var().set(&(t + 0.25).unwrap()).unwrap();
    }
    let data = loader(target.clone(), 64, 0, &Device::Cpu, None).unwrap();
    let obj = FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
    let batch = full_batch(&target);
    let out = obj.loss_on(&batch).unwrap();
    let total = out.loss.to_scalar::<f32>().unwrap() as f64;
    let ce = cross_entropy(
        &setup.net.logits(&batch.x, true).unwrap(),
        batch.labels().unwrap(),
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap() as f64;
    // α/2 Σ_weights ‖w − w⁰‖² with every entry 0.25 away; biases are not penalised.
    let weights: usize = setup
        .net
        .store()
        .all()
        .iter()
        .filter(|p| p.name().ends_with(".weight"))
        .map(|p| p.var().elem_count())
        .sum();
    let penalty = 0.1 / 2.0 * weights as f64 * 0.0625;
    assert!(
        (total - (ce + penalty)).abs() < 1e-4,
        "{total} vs {ce} + {penalty}"
    );
    let logged = |k: &str| out.metrics.iter().find(|(n, _)| n == k).unwrap().1;
    assert!((logged("l2_sp") - penalty).abs() < 1e-4);
    assert!((logged("ce") - ce).abs() < 1e-5);
}

#[test]
fn l2sp_anchor_stays_at_the_source_weights_while_training_moves_the_model() {
    let p = pretrained(10);
    let target = blobs(12, 8, 4, 11);
    let m = Method::parse("l2sp").unwrap();
    let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), &ctx(12)).unwrap();
    setup.train(&target, &ctx(12)).unwrap();
    let Regulariser::L2Sp(reg) = &setup.regulariser else {
        panic!("not L2-SP")
    };
    let w0 = values(reg.anchor().get("features.0.weight").unwrap());
    assert_eq!(w0, values(&p.weights["features.0.weight"]));
    assert_ne!(param(&setup.net, "features.0.weight"), w0);
}

#[test]
fn distill_objective_is_cross_entropy_plus_t_squared_kl_to_the_frozen_source() {
    let p = pretrained(13);
    let target = blobs(12, 8, 4, 14);
    let m = Method::new(Distill {
        weight: 0.5,
        temperature: 2.0,
    });
    let setup = MethodSetup::new(&m, Some(&p), &target, 4, &small_cfg(), &ctx(15)).unwrap();
    let data = loader(target.clone(), 64, 0, &Device::Cpu, None).unwrap();
    let obj = FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
    let batch = full_batch(&target);
    let distill = |out: &StepOutput| out.metrics.iter().find(|(n, _)| n == "distill").unwrap().1;
    // At the start the student is the teacher: the KL term is 0.
    let d0 = distill(&obj.loss_on(&batch).unwrap());
    assert!(d0.abs() < 1e-6, "{d0}");
    // After training the student differs and the term is λ T² KL.
    setup.train(&target, &ctx(15)).unwrap();
    let got = distill(&obj.loss_on(&batch).unwrap());
    let z = setup.net.logits(&batch.x, true).unwrap();
    let teacher = p.instantiate(0, &Device::Cpu).unwrap();
    let zt = teacher.logits(&batch.x, false).unwrap();
    let want = 0.5
        * xfer_losses::kl_distillation(&z, &zt, 2.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
    assert!(want > 1e-6 && (got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn finetune_starts_from_the_source_weights_and_scratch_does_not() {
    let p = pretrained(16);
    let target = blobs(12, 8, 4, 17);
    let cfg = small_cfg();
    let ft = MethodSetup::new(
        &Method::new(FullFinetune),
        Some(&p),
        &target,
        4,
        &cfg,
        &ctx(18),
    )
    .unwrap();
    let sc = MethodSetup::new(&Method::new(Scratch), Some(&p), &target, 4, &cfg, &ctx(18)).unwrap();
    for (name, w) in &p.weights {
        assert_eq!(param(&ft.net, name), values(w), "{name}");
        assert_ne!(param(&sc.net, name), values(w), "{name}");
    }
    // A target with other classes gets a new head; L2-SP treats it as a new layer.
    let other = blobs(12, 8, 3, 19);
    let l2sp = Method::parse("l2sp").unwrap();
    let l2 = MethodSetup::new(&l2sp, Some(&p), &other, 3, &cfg, &ctx(18)).unwrap();
    let Regulariser::L2Sp(reg) = &l2.regulariser else {
        panic!("not L2-SP")
    };
    assert!(reg.anchor().get("classifier.weight").is_none());
    assert_eq!(
        reg.role("classifier.weight", 2),
        xfer_losses::Role::New { beta: 0.01 }
    );
    let distill = Method::parse("distill").unwrap();
    let err = MethodSetup::new(&distill, Some(&p), &other, 3, &cfg, &ctx(18)).unwrap_err();
    assert!(err.to_string().contains("4 classes"), "{err}");
    let err =
        MethodSetup::new(&Method::new(FullFinetune), None, &target, 4, &cfg, &ctx(18)).unwrap_err();
    assert!(err.to_string().contains("needs a pretrained"), "{err}");
}

#[test]
fn finetuning_is_reproducible_from_the_seed() {
    // Initialisation and batches come from the seed only: two runs agree exactly.
    let p = pretrained(21);
    let target = blobs(40, 8, 4, 22);
    let mut cfg = small_cfg();
    cfg.finetune.batch_size = 16;
    let m = Method::parse("l2sp").unwrap();
    let a = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, &ctx(23)).unwrap();
    a.train(&target, &ctx(23)).unwrap();
    let b = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, &ctx(23)).unwrap();
    b.train(&target, &ctx(23)).unwrap();
    for name in p.weights.keys() {
        assert_eq!(param(&a.net, name), param(&b.net, name), "{name}");
    }
}

#[test]
fn an_interrupted_l2sp_run_resumed_from_its_checkpoint_ends_with_identical_weights() {
    use crate::checkpoint::checkpoint_file_name;
    use crate::trainer::CheckpointConfig;
    let p = pretrained(24);
    let target = blobs(40, 8, 4, 25);
    let m = Method::parse("l2sp").unwrap();
    let cfg = small_cfg();
    let dir = std::env::temp_dir().join(format!("xfer-ft-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |resume: bool| -> Classifier {
        let setup = MethodSetup::new(&m, Some(&p), &target, 4, &cfg, &ctx(26)).unwrap();
        let data = loader(target.clone(), 16, 26, &Device::Cpu, None).unwrap();
        let mut obj = FinetuneObjective::new(&setup.net, &data, setup.regulariser.clone()).unwrap();
        let ck = CheckpointConfig {
            keep_last: 0,
            ..CheckpointConfig::new(&dir, 3)
        };
        let tc = TrainerConfig::steps(9, 3, Schedule::constant(0.05))
            .with_seed(26)
            .with_quiet(true)
            .with_checkpoint(ck);
        let opt = Sgd::new(setup.net.store().trainable(), SgdConfig::momentum(0.9)).unwrap();
        let mut trainer = Trainer::new(tc, setup.net.store(), opt).unwrap();
        if resume {
            trainer.resume(&dir.join(checkpoint_file_name(3))).unwrap();
        }
        trainer.fit(&mut obj).unwrap();
        setup.net
    };
    // Uninterrupted, writing checkpoints at steps 3 and 6; then a fresh model that
    // resumes from the step-3 checkpoint (what an interrupted run leaves) and finishes.
    let whole = run(false);
    let resumed = run(true);
    for name in p.weights.keys() {
        assert_eq!(param(&whole, name), param(&resumed, name), "{name}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn methods_parse_with_names_and_all_expands_layer_transfer_both_ends() {
    let v = Method::parse_list("scratch, l2sp:0.2,0.05 ,distill:1,4,layer-transfer:2", 4).unwrap();
    let names: Vec<String> = v.iter().map(Method::name).collect();
    assert_eq!(
        names,
        ["scratch", "l2sp", "distill", "layer_transfer_first_2"]
    );
    assert_eq!(
        v[1],
        Method::new(L2SpFinetune {
            alpha: 0.2,
            beta: 0.05
        })
    );
    assert_eq!(
        v[2],
        Method::new(Distill {
            weight: 1.0,
            temperature: 4.0
        })
    );
    let all = Method::parse_list("all", 4).unwrap();
    assert_eq!(all.len(), 4 + 3 + 3);
    assert!(all.iter().any(|m| m.name() == "layer_transfer_last_3"));
    for bad in [
        "",
        "fine",
        "layer-transfer",
        "l2sp:-1",
        "distill:1,0",
        "scratch,scratch",
    ] {
        assert!(Method::parse_list(bad, 4).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        "mlp:32,16:dropout=0.5".parse::<BackboneSpec>().unwrap(),
        BackboneSpec::Mlp {
            hidden: vec![32, 16],
            dropout: 0.5
        }
    );
    assert!("cnn:3".parse::<BackboneSpec>().is_err());
    assert_eq!(BackboneSpec::for_input(&[1, 8, 8]), BackboneSpec::cnn());
    assert_eq!(BackboneSpec::for_input(&[64]), BackboneSpec::mlp());
}

#[test]
fn every_registered_method_parses_back_from_its_spec_and_serialises_as_it() {
    let mut methods = Method::parse_list("all", 4).unwrap();
    let names: Vec<String> = methods.iter().map(Method::name).collect();
    assert_eq!(
        names[..5],
        [
            "scratch",
            "finetune",
            "l2sp",
            "distill",
            "layer_transfer_first_1"
        ]
    );
    methods.push(Method::parse("linear").unwrap());
    methods.push(Method::parse("layer-transfer:last:2:lr=0.1").unwrap());
    methods.push(Method::parse("l2sp:0.3").unwrap());
    for m in &methods {
        let again = Method::parse(&m.spec()).unwrap();
        assert_eq!(&again, m, "{}", m.spec());
        assert_eq!(again.name(), m.name());
        let json = serde_json::to_string(m).unwrap();
        assert_eq!(json, format!("{:?}", m.spec()));
        assert_eq!(&serde_json::from_str::<Method>(&json).unwrap(), m);
    }
    // Every name of the registry is claimed once.
    let mut seen = std::collections::BTreeSet::new();
    for e in method::REGISTRY {
        for n in e.names {
            assert!(seen.insert(*n), "{n} registered twice");
        }
    }
    // A method's own complaint comes back with the spec and every method's syntax.
    let err = Method::parse("scratch:3").unwrap_err().to_string();
    assert!(
        err.contains("scratch:3") && err.contains("takes no settings"),
        "{err}"
    );
    assert!(err.contains("l2sp[:ALPHA[,BETA]]"), "{err}");
}

#[test]
fn pretrained_model_saves_and_loads_with_identical_weights() {
    let p = pretrained(20);
    let dir = std::env::temp_dir().join(format!("xfer-ft-{}", std::process::id()));
    let path = dir.join("src.safetensors");
    p.save(&path).unwrap();
    let q = Pretrained::load(&path, &p.backbone, &p.input_shape, 4, &Device::Cpu).unwrap();
    for (n, w) in &p.weights {
        assert_eq!(values(w), values(&q.weights[n]), "{n}");
    }
    let other = BackboneSpec::Mlp {
        hidden: vec![16, 12],
        dropout: 0.5,
    };
    assert!(Pretrained::load(&path, &other, &p.input_shape, 4, &Device::Cpu).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_network_reads_what_the_transform_makes_not_the_raw_samples() {
    use std::sync::Arc;
    use xfer_data::transform::CenterCrop;
    // 12×12 images, cropped to 8×8 for the network (as a pretrained backbone's preset does
    // with a folder of any image size).
    let img = |n, seed| {
        let b = blobs(n, 144, 4, seed);
        b.reshape(vec![1, 12, 12]).unwrap()
    };
    let crop: Arc<dyn xfer_data::Transform> = Arc::new(CenterCrop {
        height: 8,
        width: 8,
    });
    let mut cfg = small_cfg();
    cfg.backbone = BackboneSpec::cnn();
    cfg.train_transform = Some(crop.clone());
    cfg.eval_transform = Some(crop);
    cfg.finetune.length = Length::Epochs(1);
    let src = blobs(32, 64, 4, 1).reshape(vec![1, 8, 8]).unwrap();
    let p = pretrain(&src, None, 4, &small_cfg_cnn(), &ctx(2)).unwrap();
    let target = TargetData::new(img(16, 3), img(8, 4), 4);
    let cfg = cfg.with_method(Method::new(FullFinetune));
    let o = run(&cfg, &Data::new(Some(&p), &target), &ctx(5)).unwrap();
    assert_eq!(o.net.input_shape(), [1, 8, 8]);
    assert!(o.target_acc.is_finite());
}

fn small_cfg_cnn() -> FinetuneConfig {
    let mut cfg = small_cfg();
    cfg.backbone = BackboneSpec::cnn();
    cfg.pretrain.length = Length::Epochs(1);
    cfg
}
