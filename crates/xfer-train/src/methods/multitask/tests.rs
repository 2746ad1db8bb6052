use candle_core::{DType, Device, Tensor};
use xfer_data::UnlabeledDataset;
use xfer_models::ProgressiveNet;
use xfer_ops::SeededRng;

use super::objective::*;
use super::progressive::*;
use super::*;
use crate::methods::finetune::loader;
use crate::run::{RunCtx, Stage};
use crate::trainer::{Objective, StepCtx};
use xfer_models::{Activation, ColumnConfig, ParamStore};

fn stage(epochs: usize) -> Stage {
    Stage::adam(0.01).with_epochs(epochs).with_batch_size(16)
}

fn ctx(step: usize, seed: u64) -> StepCtx {
    StepCtx {
        step,
        total_steps: step + 1,
        epoch: 0,
        step_in_epoch: step,
        steps_per_epoch: step + 1,
        progress: 0.0,
        lr: 0.0,
        seed,
    }
}

/// `n` examples of width `d`; class `i % c`; features = class one-hot (spread over the
/// width) plus noise.
fn data(n: usize, d: usize, c: usize, seed: u64) -> (UnlabeledDataset, Vec<u32>) {
    let mut rng = SeededRng::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let k = i % c;
        for j in 0..d {
            x.push((if j % c == k { 1.0 } else { 0.0 } + 0.3 * rng.normal01()) as f32);
        }
        y.push(k as u32);
    }
    (UnlabeledDataset::new("toy", x, vec![d]).unwrap(), y)
}

fn digitish_set(n: usize, seed: u64) -> TaskSet {
    let (x, y) = data(n, 8, 4, seed);
    let dev = Device::Cpu;
    let main = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &dev).unwrap();
    let parity = TaskLabels::from_classes("parity", &y, &[0, 1, 0, 1], &dev).unwrap();
    TaskSet::new(x, vec![main, parity]).unwrap()
}

fn cfg(weighting: Weighting) -> MultitaskModelConfig {
    MultitaskModelConfig {
        trunk: vec![12],
        head_hidden: vec![],
        input_layers: false,
        weighting,
        stage: stage(4),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn scalars(ls: &[Tensor]) -> Vec<f64> {
    ls.iter()
        .map(|l| l.to_scalar::<f32>().unwrap() as f64)
        .collect()
}

#[test]
fn uncertainty_weights_are_trainable_parameters_that_move() {
    let sets = [digitish_set(32, 1)];
    let c = cfg(Weighting::Uncertainty);
    let model = MultitaskModel::new(&sets, &c, 2, &Device::Cpu).unwrap();
    let p = model.store().get("task_weighting.log_vars").unwrap();
    assert!(p.is_trainable());
    assert_eq!(model.task_weights().unwrap(), [1.0, 1.0]);
    let report = train_multitask(&model, &sets, &c, &RunCtx::cpu().with_seed(3)).unwrap();
    assert_eq!(report.steps, 8);
    let s = values(p.var().as_tensor());
    assert!(
        s.iter().all(|v| *v != 0.0),
        "log variances did not move: {s:?}"
    );
    let w = model.task_weights().unwrap();
    assert!((w[0] - (-s[0] as f64).exp()).abs() < 1e-6);
    // The objective is Σ exp(−s_t) L_t + s_t with the learned s_t.
    let loaders = MultitaskObjective::loaders(&sets, 16, 3).unwrap();
    let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
    let ls = scalars(&obj.task_losses(&ctx(0, 3)).unwrap());
    let want: f64 = ls
        .iter()
        .zip(&s)
        .map(|(l, s)| (-*s as f64).exp() * l + *s as f64)
        .sum();
    let got = obj
        .loss(&ctx(0, 3))
        .unwrap()
        .loss
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn fixed_weights_give_the_weighted_sum_of_task_losses() {
    let sets = [digitish_set(32, 4)];
    let c = cfg(Weighting::Fixed(vec![1.0, 0.25]));
    let model = MultitaskModel::new(&sets, &c, 5, &Device::Cpu).unwrap();
    assert!(!model.store().contains("task_weighting.log_vars"));
    let loaders = MultitaskObjective::loaders(&sets, 16, 6).unwrap();
    let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
    let ls = scalars(&obj.task_losses(&ctx(0, 6)).unwrap());
    let out = obj.loss(&ctx(0, 6)).unwrap();
    let got = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!((got - (ls[0] + 0.25 * ls[1])).abs() < 1e-5);
    assert!(
        out.metrics
            .iter()
            .any(|(n, v)| n == "w_parity" && *v == 0.25)
    );
    let bad = MultitaskModel::new(&sets, &cfg(Weighting::Fixed(vec![1.0])), 5, &Device::Cpu);
    assert!(bad.is_err());
}

#[test]
fn masked_labels_count_only_where_known() {
    let (x, y) = data(40, 8, 4, 7);
    let t = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &Device::Cpu)
        .unwrap()
        .keep_per_class(2, 8)
        .unwrap();
    assert_eq!(t.num_known(), 8);
    let mask = values(&t.mask);
    for c in 0..4 {
        let kept = mask
            .iter()
            .zip(&y)
            .filter(|(m, y)| **m == 1.0 && **y == c)
            .count();
        assert_eq!(kept, 2, "class {c}");
    }
    // The task loss on a full batch is plain cross-entropy over the known examples only.
    let sets = [TaskSet::new(x, vec![t.clone()]).unwrap()];
    let c = cfg(Weighting::Fixed(vec![1.0]));
    let model = MultitaskModel::new(&sets, &c, 9, &Device::Cpu).unwrap();
    let loaders = MultitaskObjective::loaders(&sets, 64, 0).unwrap();
    let mut obj = MultitaskObjective::new(&model, &sets, &loaders).unwrap();
    let l = scalars(&obj.task_losses(&ctx(0, 0)).unwrap())[0];
    let known: Vec<u32> = (0..40u32).filter(|&i| mask[i as usize] == 1.0).collect();
    let ids = Tensor::new(known.as_slice(), &Device::Cpu).unwrap();
    let z = model
        .forward_set(&sets[0], &sets[0].x.index_select(&ids, 0).unwrap(), true)
        .unwrap()
        .remove(0);
    let want = xfer_losses::cross_entropy(&z, &t.y.index_select(&ids, 0).unwrap())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!((l - want).abs() < 1e-5, "{l} vs {want}");
    assert!(TaskLabels::new("t", 2, &[Some(2)], &Device::Cpu).is_err());
}

#[test]
fn tasks_on_data_of_another_width_get_their_own_input_layer() {
    let a = digitish_set(16, 10);
    let (xb, yb) = data(12, 5, 3, 11);
    let other = TaskLabels::from_classes("other", &yb, &[0, 1, 2], &Device::Cpu).unwrap();
    let sets = [a, TaskSet::new(xb, vec![other]).unwrap()];
    let c = cfg(Weighting::Uncertainty);
    let model = MultitaskModel::new(&sets, &c, 12, &Device::Cpu).unwrap();
    assert!(model.store().contains("inputs.other.0.weight"));
    assert!(!model.store().contains("inputs.main.0.weight"));
    assert_eq!(model.tasks(), ["main", "parity", "other"]);
    train_multitask(&model, &sets, &c, &RunCtx::cpu().with_seed(13)).unwrap();
    let acc = model.accuracy(&sets[1]).unwrap();
    assert_eq!(acc[0].0, "other");
    assert!(acc[0].1.is_some());
}

#[test]
fn progressive_column_leaves_the_old_column_untouched() {
    let (x, y) = data(40, 8, 4, 14);
    let dev = Device::Cpu;
    let old = TaskLabels::from_classes("parity", &y, &[0, 1, 0, 1], &dev).unwrap();
    let new = TaskLabels::from_classes("main", &y, &[0, 1, 2, 3], &dev).unwrap();
    let old_set = TaskSet::new(x.clone(), vec![old.clone()]).unwrap();
    let new_set = TaskSet::new(x.clone(), vec![new]).unwrap();
    let pc = ProgressiveConfig {
        hidden: vec![10, 6],
        adapter_dim: Some(4),
        first: stage(3),
        second: stage(3),
    };
    let out = train_progressive(
        (&old_set, &old_set),
        (&new_set, &new_set),
        &pc,
        &RunCtx::cpu().with_seed(15),
    )
    .unwrap();
    let col0: Vec<_> = out
        .store
        .all()
        .into_iter()
        .filter(|p| p.name().starts_with("columns.0."))
        .collect();
    assert!(!col0.is_empty());
    assert!(col0.iter().all(|p| !p.is_trainable()));
    assert_eq!(out.old_task_acc_before, out.old_task_acc_after);
    // Train only column 0 again with the same seed: its weights equal those found after
    // the new column was trained, bit for bit.
    let store = ParamStore::new();
    let mut rng = SeededRng::new(15);
    let col = ColumnConfig {
        input_dim: 8,
        hidden: vec![10, 6],
        output_dim: 2,
        activation: Activation::Relu,
        adapter_dim: Some(4),
    };
    let net = ProgressiveNet::new(&store.scope(""), &col, &mut rng, DType::F32, &dev).unwrap();
    let data0 = loader(x, 16, 15, &dev, None).unwrap();
    let mut obj = ColumnObjective::new(&net, 0, &data0, &old).unwrap();
    let spe = data0.batches_per_epoch();
    pc.first
        .fit_store(
            "c0",
            &store,
            &[],
            &mut obj,
            spe,
            None,
            &RunCtx::cpu().with_seed(15),
        )
        .unwrap();
    for p in &col0 {
        assert_eq!(
            values(p.var().as_tensor()),
            values(store.get(p.name()).unwrap().var().as_tensor()),
            "{} changed while the new column trained",
            p.name()
        );
    }
    assert!(out.store.contains("columns.1.laterals.1.0.alpha"));
    assert!(out.new_task_acc.is_some());
}

#[test]
fn each_task_is_a_standalone_classifier_with_the_same_outputs() {
    let sets = [digitish_set(32, 7)];
    let c = cfg(Weighting::Uncertainty);
    let model = MultitaskModel::new(&sets, &c, 8, &Device::Cpu).unwrap();
    let outs = model.forward_set(&sets[0], &sets[0].x, false).unwrap();
    for (task, want) in model.tasks().iter().zip(&outs) {
        let net = model.task_classifier(task).unwrap();
        let got = net.logits(&sets[0].x, false).unwrap();
        assert_eq!(values(&got), values(want), "{task}");
    }
    let e = model.task_classifier("nope").unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn run_single_task_trains_on_the_known_main_labels_for_as_many_steps_as_a_shared_run() {
    // 40 examples, the main task keeps 2 per class (8 known), parity is fully labelled.
    let mut train = digitish_set(40, 21);
    train.tasks[0] = train.tasks[0].clone().keep_per_class(2, 22).unwrap();
    let data = Data::new(vec![train], vec![digitish_set(24, 23)]).unwrap();
    let mut cfg = Config::new(Method::SingleTask, 3);
    cfg.trunk = vec![12];
    cfg.stage = stage(3);
    let ctx = RunCtx::cpu().with_seed(24);
    let single = run(&cfg, &data, &ctx).unwrap();
    // A shared run: 3 epochs of ⌈40/16⌉ = 3 batches = 9 steps; the 8 known examples make
    // one batch per epoch, so 9 epochs.
    assert_eq!(single.reports[0].1.steps, 9);
    let Trained::Shared(model) = &single.trained else {
        panic!("not a shared trunk")
    };
    assert_eq!(model.tasks(), ["main"]);
    let fixed = run(&cfg.clone().with_method(Method::Fixed), &data, &ctx).unwrap();
    let keys: Vec<&str> = fixed.metrics.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        keys,
        ["target_acc", "acc_main", "acc_parity", "w_main", "w_parity"]
    );
    assert_eq!(fixed.target_acc, fixed.metrics[1].1);
    assert_eq!(fixed.reports[0].1.steps, 9);
    let prog = run(&cfg.clone().with_method(Method::Progressive), &data, &ctx).unwrap();
    assert!(matches!(&prog.trained, Trained::Progressive { old_task, .. } if old_task == "parity"));
    assert_eq!(prog.reports.len(), 2);
}

#[test]
fn run_refuses_a_progressive_old_task_of_another_width_and_data_without_matching_test_sets() {
    let (x, y) = data(20, 6, 2, 31);
    let other = TaskLabels::from_classes("other", &y, &[0, 1], &Device::Cpu).unwrap();
    let other = TaskSet::new(x, vec![other]).unwrap();
    let data = Data::new(
        vec![digitish_set(20, 32), other.clone()],
        vec![digitish_set(12, 33), other.clone()],
    )
    .unwrap();
    let mut cfg = Config::new(Method::Progressive, 1);
    cfg.old_task = Some("other".into());
    let why = cfg.unsupported(&data).unwrap();
    assert!(
        why.contains("other has 6 features") && why.contains("main has 8"),
        "{why}"
    );
    assert!(run(&cfg, &data, &RunCtx::cpu()).is_err());
    cfg.old_task = Some("parity".into());
    assert!(cfg.unsupported(&data).is_none());
    assert!(Data::new(vec![digitish_set(8, 1)], vec![]).is_err());
    assert!(Data::new(vec![digitish_set(8, 1)], vec![other]).is_err());
    assert!(data.task("nope").is_err());
    for m in Method::ALL {
        assert_eq!(m.name().replace('_', "-").parse::<Method>().unwrap(), m);
    }
}

#[test]
fn tasks_parse_against_the_shared_data_and_make_one_set_per_own_data_set() {
    let base = xfer_data::load("optdigits", 0).unwrap();
    let specs = TaskSpec::parse_list("digit, parity,loops", &base, 0).unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["digit", "parity", "loops"]);
    assert_eq!(specs[1].map, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    assert_eq!(specs[2].map, [1, 0, 0, 0, 0, 0, 1, 0, 2, 1]);
    for bad in ["digit,digit", "", "nope"] {
        assert!(TaskSpec::parse_list(bad, &base, 0).is_err(), "{bad:?}");
    }
    let e = TaskSpec::parse_list("nope", &base, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("loops"), "{e}");
    let split = TaskSplit {
        labels_per_class: 3,
        test_fraction: 0.3,
        scale: 1.0 / 16.0,
        seed: 1,
    };
    let data = Data::from_tasks(&base, &specs, &split, &Device::Cpu).unwrap();
    assert_eq!((data.train().len(), data.test().len()), (1, 1));
    assert_eq!(data.main_task().num_known(), 30);
    let test = &data.test()[0];
    assert_eq!(test.tasks[0].num_known(), test.len());
    assert_eq!(data.train()[0].len() + test.len(), base.len());
    let own = TaskSpec::parse_list("digit,synth=synth-digits:n=50", &base, 0).unwrap();
    let data = Data::from_tasks(&base, &own, &split, &Device::Cpu).unwrap();
    assert_eq!(data.task_names(), ["digit", "synth"]);
    assert_eq!(data.train().len(), 2);
}
