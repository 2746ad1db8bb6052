use super::*;
use candle_core::Device;
use xfer_data::embedded::moons;
use xfer_data::{Dataset, TensorDataset, UnlabeledDataset};
use xfer_models::{Classifier, ClassifierConfig, ParamGroup};

use crate::run::{CheckpointOptions, RunCtx};
use crate::{TrainError, metrics};

fn mlp(hidden: &[usize]) -> BackboneSpec {
    BackboneSpec::Mlp {
        hidden: hidden.to_vec(),
        dropout: 0.0,
    }
}

/// The moons settings of the example, shortened.
fn quick_cfg(steps: usize) -> Config {
    let mut cfg = Config {
        discriminator: DiscriminatorConfig::new(64, 2),
        ..Config::paper(mlp(&[32, 32]))
    };
    cfg.stage = cfg
        .stage
        .with_steps(steps)
        .with_batch_size(64)
        .with_weight_decay(1e-3)
        .with_eval_every(50);
    cfg.stage.lr = 0.05;
    cfg
}

fn with_eval_every(mut cfg: Config, n: usize) -> Config {
    cfg.stage = cfg.stage.with_eval_every(n);
    cfg
}

fn data(
    src: &TensorDataset,
    tgt: &TensorDataset,
    src_test: &TensorDataset,
    tgt_test: &TensorDataset,
) -> Data {
    Data::new(src.clone(), tgt.unlabeled())
        .with_source_val(src_test.clone())
        .with_target_test(tgt_test.clone())
}

fn ctx(seed: u64) -> RunCtx {
    RunCtx::cpu().with_seed(seed)
}

fn group<'a>(groups: &'a [ParamGroup], name: &str) -> &'a ParamGroup {
    groups.iter().find(|g| g.name == name).unwrap()
}

#[test]
fn auto_backbone_is_mlp_for_vectors_and_cnn_for_images() {
    let auto = |s: &[usize]| BackboneSpec::auto(s, &[15]).unwrap().name();
    assert_eq!(auto(&[2]), "mlp");
    assert_eq!(auto(&[1, 8, 8]), "cnn");
    assert_eq!(auto(&[8, 8]), "cnn");
    assert_eq!(auto(&[3, 30, 30]), "lenet");
    let e = BackboneSpec::auto(&[3, 8, 6], &[15])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 8, 6]"), "{e}");
}

#[test]
fn cnn_on_feature_vectors_is_an_error_naming_the_shape() {
    let e = Classifier::new(
        &ClassifierConfig::new(BackboneSpec::cnn(), &[64], 10),
        0,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[64]"), "{e}");
}

#[test]
fn mismatched_source_and_target_shapes_are_bad_data_naming_both_shapes() {
    let (s, _) = moons::moons_pair(35.0, 0).unwrap();
    let t = UnlabeledDataset::new("t", vec![0.0; 30], vec![3]).unwrap();
    let e = run(&quick_cfg(10), &Data::new(s, t), &ctx(0)).unwrap_err();
    assert!(matches!(e, TrainError::BadData(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
}

#[test]
fn lambda_is_zero_for_source_only_and_rises_from_zero_to_one_for_dann() {
    let cfg = |m: Method| quick_cfg(10).with_method(m);
    assert_eq!(cfg(Method::SourceOnly).lambda(0.7), 0.0);
    assert_eq!(cfg(Method::Mcc).lambda(0.7), 0.0);
    assert_eq!(cfg(Method::Adabn).lambda(0.7), 0.0);
    assert_eq!(cfg(Method::Dann).lambda(0.0), 0.0);
    assert!((cfg(Method::Dann).lambda(1.0) - 0.999_909).abs() < 1e-5);
    assert!(cfg(Method::CdanE).lambda(0.1) < cfg(Method::CdanE).lambda(0.5));
    assert!(cfg(Method::DannMcc).lambda(0.5) > 0.0);
}

#[test]
fn every_method_is_its_registered_list_of_terms() {
    let names = |m: Method| -> Vec<&'static str> {
        m.terms(&TermConfigs::default())
            .iter()
            .map(|t| t.name())
            .collect()
    };
    assert!(names(Method::SourceOnly).is_empty());
    assert_eq!(names(Method::CdanEMcc), ["cdan_e", "mcc"]);
    assert_eq!(names(Method::DannMcc), ["dann", "mcc"]);
    assert_eq!(names(Method::Fixmatch), ["fixmatch"]);
    for m in Method::ALL {
        let terms = m.terms(&TermConfigs::default());
        assert!(
            terms.iter().filter(|t| t.is_adversary()).count() <= 1,
            "{m}"
        );
        // An adversary comes first (its loss is added right after L_y).
        if let Some(i) = terms.iter().position(|t| t.is_adversary()) {
            assert_eq!(i, 0, "{m}");
        }
        // A single-term method is named after its term.
        if terms.len() == 1 {
            assert_eq!(terms[0].name(), m.name());
        }
    }
}

#[test]
fn method_and_selection_names_parse_and_bad_config_is_a_typed_error() {
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
    }
    for s in ModelSelection::ALL {
        assert_eq!(s.name().parse::<ModelSelection>().unwrap(), s);
        for a in s.aliases() {
            assert_eq!(a.parse::<ModelSelection>().unwrap(), s);
        }
    }
    assert_eq!(
        "source_acc".parse::<ModelSelection>().unwrap().scorer(),
        Some(Scorer::SourceAcc)
    );
    assert!("best".parse::<ModelSelection>().is_err());
    assert_eq!("cdan-e".parse::<Method>().unwrap(), Method::CdanE);
    let e = "cdan_x".parse::<Method>().unwrap_err();
    assert!(matches!(e, TrainError::InvalidValue { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("cdan_x") && e.contains("cdan_e") && !e.contains('\n'),
        "{e}"
    );
    for bad in [-0.1, 1.5] {
        let mut cfg = quick_cfg(10);
        cfg.terms.pseudo_label.threshold = bad;
        let e = cfg.validate().unwrap_err();
        assert!(matches!(e, TrainError::InvalidValue { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("threshold") && !e.contains('\n'), "{e}");
    }
    let mut cfg = quick_cfg(10);
    cfg.terms.mcc.temperature = 0.0;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("mcc.temperature")
    );
    let e = grid_points(&[(SweepParam::Lambda, vec![])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("lambda") && e.contains("no values"), "{e}");
    assert_eq!(
        grid_points(&[
            (SweepParam::Lambda, vec![0.5, 1.0]),
            (SweepParam::Lr, vec![0.01, 0.02, 0.03])
        ])
        .unwrap()
        .len(),
        6
    );
    let (p, v) = SweepParam::parse_axis("mcc-weight=0.5, 2").unwrap();
    assert_eq!((p, v), (SweepParam::MccWeight, vec![0.5, 2.0]));
    for bad in ["lambda", "lambda=", "lambda=x", "gamma=1"] {
        assert!(SweepParam::parse_axis(bad).is_err(), "{bad}");
    }
}

#[test]
fn adabn_needs_a_batch_norm_and_sets_the_target_statistics() {
    let (src, tgt) = moons::moons_pair(35.0, 1).unwrap();
    let cfg = quick_cfg(10).with_method(Method::Adabn);
    let e = run(&cfg, &Data::new(src, tgt.unlabeled()), &ctx(0)).unwrap_err();
    assert!(matches!(e, TrainError::Incompatible(_)), "{e:?}");
    assert!(e.to_string().contains("bottleneck"), "{e}");
    let net = Classifier::new(
        &ClassifierConfig::new(mlp(&[8]), &[2], 2).with_bottleneck(BottleneckSpec::LinearBnRelu(4)),
        3,
        &Device::Cpu,
    )
    .unwrap();
    let x = tgt.unlabeled().to_tensor(&Device::Cpu).unwrap();
    net.adapt_batch_norm(&x, 64).unwrap();
    let bn_in = net
        .store()
        .get("bottleneck.1.running_mean")
        .unwrap()
        .tensor()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(bn_in.len(), 4);
    assert!(bn_in.iter().any(|v| v.abs() > 1e-4), "{bn_in:?}");
}

/// Every method on the paper's rotated moons, a few steps: they run, log their terms and
/// report sane numbers; the recorded oracle curve is there beside the label-free scores.
#[test]
fn every_method_runs_on_rotated_moons() {
    let (src, tgt) = moons::moons_pair(35.0, 4).unwrap();
    let src_test = moons::moons(200, 0.05, 0.0, 104).unwrap();
    let tgt_test = moons::moons(200, 0.05, 35.0, 104).unwrap();
    let mut cfg = with_eval_every(quick_cfg(40), 20);
    cfg.bottleneck = BottleneckSpec::LinearBnRelu(16);
    cfg.selection = Some(Scorer::Dev);
    cfg.terms.pseudo_label.threshold = 0.6;
    let d = data(&src, &tgt, &src_test, &tgt_test);
    for method in Method::ALL {
        let model = run(&cfg.clone().with_method(method), &d, &ctx(4)).unwrap();
        let r = model.evaluation.clone().unwrap();
        assert_eq!(r.steps, 40, "{method}");
        for v in [r.target_acc, r.source_acc, r.domain_acc] {
            assert!((0.0..=1.0).contains(&v), "{method}: {v}");
        }
        let oracle = r.oracle_target_acc.unwrap();
        assert!(
            oracle >= r.target_acc - 1e-9,
            "{method}: oracle {oracle} < {}",
            r.target_acc
        );
        let evals = &model.report.history.evals;
        assert_eq!(evals.len(), 2);
        for s in Scorer::ALL {
            assert!(
                crate::history::metric(&evals[0].metrics, s.metric()).is_some(),
                "{method}: {} missing",
                s.metric()
            );
        }
        let step_metric = |name: &str| model.report.history.step_curve(name).len();
        match method {
            Method::Mcc | Method::DannMcc | Method::CdanEMcc => {
                assert_eq!(step_metric("mcc"), 40)
            }
            Method::SelfTrain | Method::Fixmatch => {
                assert_eq!(step_metric("mask_rate"), 40)
            }
            Method::Dan => assert_eq!(step_metric("mmd"), 40),
            Method::Coral => assert_eq!(step_metric("coral"), 40),
            _ => {}
        }
        assert_eq!(
            step_metric("domain_acc"),
            40,
            "{method}: probe or adversary"
        );
        // The kept weights are those of the DEV choice: its recorded oracle accuracy is the
        // final target accuracy.
        let (acc, _) = model.choice_by(Scorer::Dev).unwrap();
        assert!(
            (acc - r.target_acc).abs() < 1e-9,
            "{method}: {acc} vs {}",
            r.target_acc
        );
        let names: Vec<String> = model.metrics().into_iter().map(|(k, _)| k).collect();
        assert!(names.iter().any(|n| n == "dev_target_acc"), "{names:?}");
    }
}

/// DANN and source-only on the paper's rotated moons, a few hundred steps: both learn the
/// source, DANN's features are harder to tell apart by domain.
#[test]
fn dann_on_rotated_moons_runs_and_aligns_the_domains() {
    let seed = 3;
    let (src, tgt) = moons::moons_pair(35.0, seed).unwrap();
    let src_test = moons::moons(300, 0.05, 0.0, seed + 100).unwrap();
    let tgt_test = moons::moons(300, 0.05, 35.0, seed + 100).unwrap();
    let d = data(&src, &tgt, &src_test, &tgt_test);
    let mut results = Vec::new();
    for method in [Method::SourceOnly, Method::Dann] {
        let model = run(&quick_cfg(400).with_method(method), &d, &ctx(seed)).unwrap();
        let r = model.evaluation.clone().unwrap();
        assert_eq!(r.steps, 400);
        assert!(r.source_acc > 0.9, "{method:?} source acc {}", r.source_acc);
        assert!(r.proxy_a_distance <= 2.0 && r.target_entropy >= 0.0);
        let lambdas = model.report.history.step_curve("lambda");
        assert_eq!(lambdas.len(), 400);
        let last = lambdas.last().unwrap().1;
        match method {
            Method::SourceOnly => assert_eq!(last, 0.0),
            _ => assert!(last > 0.99, "λ at the end {last}"),
        }
        // No selection: the last weights, and no "best".
        assert!(model.report.best.is_none());
        assert_eq!(r.selected_step, 400);
        results.push(r);
    }
    let (so, da) = (&results[0], &results[1]);
    assert!(
        da.target_acc >= so.target_acc - 0.05,
        "source-only {} vs dann {}",
        so.target_acc,
        da.target_acc
    );
    assert!(
        da.domain_acc < so.domain_acc,
        "domain accuracy: source-only {} vs dann {}",
        so.domain_acc,
        da.domain_acc
    );
}

#[test]
fn entropy_selection_keeps_the_evaluation_with_the_lowest_target_entropy() {
    let (src, tgt) = moons::moons_pair(35.0, 2).unwrap();
    let mut cfg = with_eval_every(quick_cfg(100), 20);
    cfg.selection = Some(Scorer::Entropy);
    let model = run(&cfg, &Data::new(src, tgt.unlabeled()), &ctx(2)).unwrap();
    assert!(model.evaluation.is_none());
    let curve = model.report.history.eval_curve("target_entropy");
    assert_eq!(curve.len(), 5);
    let lowest = curve.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let best = model.report.best.as_ref().unwrap();
    assert_eq!(
        (best.metric.as_str(), best.value),
        ("target_entropy", lowest)
    );
    // The kept weights are those of that evaluation.
    let x = tgt.unlabeled().to_tensor(&Device::Cpu).unwrap();
    let h = metrics::prediction_entropy(&model.logits(&x).unwrap()).unwrap();
    assert!((h - lowest).abs() < 1e-5, "{h} vs {lowest}");
}

#[test]
fn sweep_picks_the_best_label_free_score_and_reports_the_oracle_beside_it() {
    let (src, tgt) = moons::moons_pair(35.0, 5).unwrap();
    let src_test = moons::moons(200, 0.05, 0.0, 105).unwrap();
    let tgt_test = moons::moons(200, 0.05, 35.0, 105).unwrap();
    let cfg = with_eval_every(quick_cfg(40), 20);
    let grid = [(SweepParam::Lambda, vec![0.3, 1.0])];
    let d = data(&src, &tgt, &src_test, &tgt_test);
    let res = sweep(&cfg, &grid, Scorer::Snd, &d, &ctx(5)).unwrap();
    assert_eq!(res.runs.len(), 2);
    let best = res
        .runs
        .iter()
        .map(|r| r.score)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(res.runs[res.label_free.run].score, best);
    assert!(res.oracle.target_acc >= res.label_free.target_acc - 1e-9);
    assert_eq!(res.runs[1].settings, vec![(SweepParam::Lambda, 1.0)]);
    assert_eq!(res.lines("dann").len(), 2);
    assert!(res.metrics().iter().any(|(k, _)| k == "chosen_lambda"));
    // Without a labelled target test set there is nothing to report.
    let e = sweep(
        &cfg,
        &grid,
        Scorer::Snd,
        &Data::new(src, tgt.unlabeled()),
        &ctx(5),
    );
    assert!(matches!(e, Err(TrainError::BadData(_))));
}

#[test]
fn same_seed_gives_the_same_run() {
    let (src, tgt) = moons::moons_pair(35.0, 1).unwrap();
    let cfg = quick_cfg(40).with_method(Method::CdanE);
    let d = data(&src, &tgt, &src, &tgt);
    let once = || run(&cfg, &d, &ctx(7)).unwrap().evaluation.unwrap();
    assert_eq!(once(), once());
}

#[test]
fn a_resumed_finished_run_is_the_same_run() {
    let (src, tgt) = moons::moons_pair(35.0, 6).unwrap();
    let cfg = with_eval_every(quick_cfg(30), 10).with_method(Method::DannMcc);
    let d = data(&src, &tgt, &src, &tgt);
    let dir = std::env::temp_dir().join(format!("xfer-dann-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ck = |resume| {
        ctx(8).with_checkpoints(Some(CheckpointOptions {
            dir: dir.clone(),
            every: 10,
            resume,
        }))
    };
    let first = run(&cfg, &d, &ck(false)).unwrap();
    assert!(dir.join("dann_mcc").is_dir());
    let again = run(&cfg, &d, &ck(true)).unwrap();
    assert_eq!(first.evaluation, again.evaluation);
    assert_eq!(first.report.history.evals, again.report.history.evals);
    let plain = run(&cfg, &d, &ctx(8)).unwrap();
    assert_eq!(first.evaluation, plain.evaluation);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DANN run's optimiser groups: `G_d`, then the classifier's backbone at the default
/// multiplier (1 for a backbone trained from scratch, 0.1 for a pretrained one) unless the
/// stage says otherwise, and the bottleneck and head at 1.
#[test]
fn a_pretrained_backbone_gets_a_tenth_of_the_rate_in_a_dann_run() {
    let mut cfg = quick_cfg(10);
    cfg.discriminator.lr_mult = 10.0;
    cfg.bottleneck = BottleneckSpec::LinearBnRelu(8);
    let scratch = Classifier::new(
        &ClassifierConfig::new(cfg.backbone.clone(), &[2], 2).with_bottleneck(cfg.bottleneck),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let groups = param_groups(&cfg, &scratch).unwrap();
    assert_eq!(groups[0].name, "discriminator");
    assert_eq!(group(&groups, "discriminator").lr_mult, 10.0);
    assert_eq!(group(&groups, "backbone").lr_mult, 1.0);
    assert_eq!(group(&groups, "head").lr_mult, 1.0);
    cfg.stage = cfg.stage.with_backbone_lr_mult(0.25);
    assert_eq!(
        group(&param_groups(&cfg, &scratch).unwrap(), "backbone").lr_mult,
        0.25
    );

    let shared = std::env::var_os("XFER_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared").into());
    let w = shared.join("fixtures/resnet18_weights.safetensors");
    if !w.is_file() {
        println!("skipped: the pretrained part (no {})", w.display());
        return;
    }
    let spec: BackboneSpec = format!("resnet18:weights={}", w.display()).parse().unwrap();
    let cfg = Config {
        backbone: spec.clone(),
        ..quick_cfg(10)
    };
    let net = Classifier::new(
        &ClassifierConfig::new(spec, &[3, 32, 32], 3),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let groups = param_groups(&cfg, &net).unwrap();
    assert_eq!(group(&groups, "backbone").lr_mult, 0.1);
    assert_eq!(group(&groups, "head").lr_mult, 1.0);
    assert!(
        group(&groups, "backbone")
            .selection
            .matches("layer4.1.conv2.weight")
    );
}

#[test]
fn every_builtin_task_builds_in_quick_mode() {
    for (name, steps, classes) in [
        ("moons", 300, 2),
        ("moons:20", 300, 2),
        ("synth-to-digits", 150, 10),
        ("digits-rot:30", 150, 10),
    ] {
        let task = Task::builtin(name, 0, true).unwrap();
        assert_eq!(task.cfg.stage.total_steps(1), steps, "{name}");
        assert_eq!(task.source.num_classes(), classes, "{name}");
        assert_eq!(
            task.source.sample_shape(),
            task.target.sample_shape(),
            "{name}"
        );
        task.cfg.validate().unwrap();
        let d = task.data();
        assert_eq!(d.target.len(), xfer_data::Dataset::len(&task.target));
        assert!(d.source_val.is_some() && d.target_test.is_some());
    }
    assert_eq!(Task::builtin("moons", 0, true).unwrap().name, "moons:35");
    assert_eq!(
        Task::builtin("moons:35", 0, true).unwrap().cfg.selection,
        Some(Scorer::Entropy)
    );
    assert_eq!(
        Task::builtin("synth-to-digits", 0, true)
            .unwrap()
            .cfg
            .bottleneck,
        BottleneckSpec::LinearBnRelu(128)
    );
    for bad in ["digits-rot", "moons:x", "mnist"] {
        let e = Task::builtin(bad, 0, true).unwrap_err();
        assert!(matches!(e, TrainError::InvalidValue { .. }), "{bad}: {e:?}");
    }
    let (s, t) = moons::moons_pair(35.0, 0).unwrap();
    let (t, tt) = Task::hold_out_target(&t, 0).unwrap();
    let custom = Task::custom("s->t", &s, t.unlabeled(), Some(tt), 0, true).unwrap();
    assert_eq!(custom.cfg.stage.total_steps(1), 200);
    assert_eq!(custom.cfg.backbone, mlp(&[64, 64]));
}

/// Moons: 120 labelled source points, 90 target points, a labelled target test set.
fn moons_sets() -> (TensorDataset, TensorDataset, TensorDataset) {
    let s = moons::moons(120, moons::MOONS_NOISE, 0.0, 1).unwrap();
    let t = moons::moons(90, moons::MOONS_NOISE, 30.0, 2).unwrap();
    let tt = moons::moons(60, moons::MOONS_NOISE, 30.0, 3).unwrap();
    (s, t, tt)
}

#[test]
fn an_unlabelled_target_trains_on_all_of_it_and_target_accuracy_is_not_measured() {
    let (s, t, tt) = moons_sets();
    let unlabelled = xfer_data::Data::Unlabeled(t.unlabeled());
    let (target, test) = Task::target_sets(unlabelled.clone(), None, 0).unwrap();
    assert_eq!(target.len(), 90);
    assert!(test.is_none());
    let task = Task::custom("s->t", &s, target, test, 0, true).unwrap();
    assert!(task.summary().contains("target accuracy not measured"));
    let d = task.data();
    assert_eq!(d.target.len(), 90);
    assert!(d.target_test.is_none());
    // Every method, self-training included, trains on the unlabelled target.
    for method in [Method::SourceOnly, Method::Dann, Method::SelfTrain] {
        let cfg = with_eval_every(quick_cfg(20), 10).with_method(method);
        let out = run(&cfg, &d, &ctx(0)).unwrap();
        assert_eq!(out.target_examples, 90, "{method}");
        assert_eq!(out.report.steps, 20);
        assert!(out.evaluation.is_none(), "{method}: no target test set");
        assert!(
            out.report.history.eval_curve(ORACLE_METRIC).is_empty(),
            "{method}: no oracle curve without target labels"
        );
        assert!(!out.metrics().iter().any(|(k, _)| k.ends_with("target_acc")));
        // The label-free scores were still computed for the selection.
        assert_eq!(out.report.history.eval_curve("dev_risk").len(), 2);
    }
    // A sweep reports target accuracy: it needs a test set.
    let e = sweep(&quick_cfg(10), &[], Scorer::Dev, &d, &ctx(0)).unwrap_err();
    assert!(matches!(e, TrainError::BadData(_)), "{e}");

    // With a labelled test set, the same unlabelled target trains whole and is measured.
    let (target, test) = Task::target_sets(unlabelled, Some(tt.clone()), 0).unwrap();
    assert_eq!(
        (target.len(), test.as_ref().map(|t| t.len())),
        (90, Some(60))
    );
    let task = Task::custom("s->t", &s, target, test, 0, true).unwrap();
    let out = run(&with_eval_every(quick_cfg(20), 10), &task.data(), &ctx(0)).unwrap();
    assert_eq!(out.target_examples, 90);
    let acc = out.evaluation.as_ref().map(|e| e.target_acc).unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn a_labelled_target_without_a_test_set_keeps_half_for_the_test() {
    let (_, t, tt) = moons_sets();
    let (target, test) = Task::target_sets(xfer_data::Data::Tensors(t.clone()), None, 0).unwrap();
    let test = test.unwrap();
    assert_eq!(target.len() + test.len(), 90);
    // 45 points per moon: round(22.5) = 23 of each held out.
    assert_eq!(test.len(), 46);
    // A given test set: the whole target trains.
    let (target, test) = Task::target_sets(xfer_data::Data::Tensors(t), Some(tt), 0).unwrap();
    assert_eq!((target.len(), test.map(|t| t.len())), (90, Some(60)));
}
