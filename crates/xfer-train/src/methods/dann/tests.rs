use super::*;
use candle_core::Device;
use xfer_data::UnlabeledDataset;
use xfer_data::embedded::moons;
use xfer_models::{Classifier, ClassifierConfig};

use crate::metrics;

fn mlp(hidden: &[usize]) -> BackboneSpec {
    BackboneSpec::Mlp {
        hidden: hidden.to_vec(),
        dropout: 0.0,
    }
}

/// The moons settings of the example, shortened.
fn quick_cfg(steps: usize) -> DannConfig {
    DannConfig {
        steps,
        batch_size: 64,
        lr: 0.05,
        weight_decay: 1e-3,
        eval_every: 50,
        discriminator: DiscriminatorConfig {
            hidden: 64,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
        },
        ..DannConfig::paper(mlp(&[32, 32]))
    }
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
fn mismatched_source_and_target_shapes_are_refused_with_both_shapes() {
    let (s, _) = moons::moons_pair(35.0, 0).unwrap();
    let t = UnlabeledDataset::new("t", vec![0.0; 30], vec![3]).unwrap();
    let e = train(
        DannMethod::Dann,
        &quick_cfg(10),
        &s,
        &t,
        None,
        None,
        0,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
}

#[test]
fn lambda_is_zero_for_source_only_and_rises_from_zero_to_one_for_dann() {
    let cfg = quick_cfg(10);
    assert_eq!(cfg.lambda(DannMethod::SourceOnly, 0.7), 0.0);
    assert_eq!(cfg.lambda(DannMethod::Mcc, 0.7), 0.0);
    assert_eq!(cfg.lambda(DannMethod::Dann, 0.0), 0.0);
    assert!((cfg.lambda(DannMethod::Dann, 1.0) - 0.999_909).abs() < 1e-5);
    assert!(cfg.lambda(DannMethod::CdanE, 0.1) < cfg.lambda(DannMethod::CdanE, 0.5));
}

#[test]
fn method_names_parse_and_bad_config_is_a_one_line_error() {
    for m in DannMethod::ALL {
        assert_eq!(m.name().parse::<DannMethod>().unwrap(), m);
    }
    let e = "cdan_x".parse::<DannMethod>().unwrap_err().to_string();
    assert!(
        e.contains("cdan_x") && e.contains("cdan_e") && !e.contains('\n'),
        "{e}"
    );
    for bad in [-0.1, 1.5] {
        let e = DannConfig {
            threshold: bad,
            ..quick_cfg(10)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("threshold") && !e.contains('\n'), "{e}");
    }
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
}

#[test]
fn adabn_needs_a_batch_norm_and_sets_the_target_statistics() {
    let (src, tgt) = moons::moons_pair(35.0, 1).unwrap();
    let e = train(
        DannMethod::Adabn,
        &quick_cfg(10),
        &src,
        &tgt.unlabeled(),
        None,
        None,
        0,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bottleneck"), "{e}");
    let net = Classifier::new(
        &ClassifierConfig::new(mlp(&[8]), &[2], 2).with_bottleneck(BottleneckSpec::LinearBnRelu(4)),
        3,
        &Device::Cpu,
    )
    .unwrap();
    let x = tgt.unlabeled().to_tensor(&Device::Cpu).unwrap();
    net.adapt_batch_norm(&x, 64).unwrap();
    // Eval-mode pre-ReLU bottleneck outputs on the target are now standardised: the mean of
    // the normalised values is 0 and their variance 1 (up to ε and n/(n−1)).
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
    let cfg = DannConfig {
        bottleneck: BottleneckSpec::LinearBnRelu(16),
        selection: Some(Scorer::Dev),
        threshold: 0.6,
        eval_every: 20,
        ..quick_cfg(40)
    };
    for method in DannMethod::ALL {
        let (model, r) = run(
            method,
            &cfg,
            &src,
            &tgt.unlabeled(),
            &src_test,
            &tgt_test,
            4,
            &Device::Cpu,
        )
        .unwrap();
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
            DannMethod::Mcc | DannMethod::DannMcc | DannMethod::CdanEMcc => {
                assert_eq!(step_metric("mcc"), 40)
            }
            DannMethod::SelfTrain | DannMethod::Fixmatch => {
                assert_eq!(step_metric("mask_rate"), 40)
            }
            DannMethod::Dan => assert_eq!(step_metric("mmd"), 40),
            DannMethod::Coral => assert_eq!(step_metric("coral"), 40),
            _ => {}
        }
        // The kept weights are those of the DEV choice: its recorded oracle accuracy is the
        // final target accuracy.
        let (acc, _) = model.choice_by(Scorer::Dev).unwrap();
        assert!(
            (acc - r.target_acc).abs() < 1e-9,
            "{method}: {acc} vs {}",
            r.target_acc
        );
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
    let cfg = quick_cfg(400);
    let dev = Device::Cpu;
    let mut results = Vec::new();
    for method in [DannMethod::SourceOnly, DannMethod::Dann] {
        let (model, r) = run(
            method,
            &cfg,
            &src,
            &tgt.unlabeled(),
            &src_test,
            &tgt_test,
            seed,
            &dev,
        )
        .unwrap();
        assert_eq!(r.steps, 400);
        assert!(r.source_acc > 0.9, "{method:?} source acc {}", r.source_acc);
        assert!(r.proxy_a_distance <= 2.0 && r.target_entropy >= 0.0);
        let lambdas = model.report.history.step_curve("lambda");
        assert_eq!(lambdas.len(), 400);
        let last = lambdas.last().unwrap().1;
        match method {
            DannMethod::SourceOnly => assert_eq!(last, 0.0),
            _ => assert!(last > 0.99, "λ at the end {last}"),
        }
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
    let cfg = DannConfig {
        selection: Some(Scorer::Entropy),
        eval_every: 20,
        ..quick_cfg(100)
    };
    let model = train(
        DannMethod::Dann,
        &cfg,
        &src,
        &tgt.unlabeled(),
        None,
        None,
        2,
        &Device::Cpu,
    )
    .unwrap();
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
    let cfg = DannConfig {
        eval_every: 20,
        ..quick_cfg(40)
    };
    let res = sweep(
        DannMethod::Dann,
        &cfg,
        &[(SweepParam::Lambda, vec![0.3, 1.0])],
        Scorer::Snd,
        &src,
        &tgt.unlabeled(),
        &src_test,
        &tgt_test,
        5,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(res.runs.len(), 2);
    let best = res
        .runs
        .iter()
        .map(|r| r.score)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(res.runs[res.label_free.run].score, best);
    assert!(res.oracle.target_acc >= res.label_free.target_acc - 1e-9);
    assert_eq!(res.runs[1].settings, vec![(SweepParam::Lambda, 1.0)]);
}

#[test]
fn same_seed_gives_the_same_run() {
    let (src, tgt) = moons::moons_pair(35.0, 1).unwrap();
    let cfg = quick_cfg(40);
    let once = || {
        let (_, r) = run(
            DannMethod::CdanE,
            &cfg,
            &src,
            &tgt.unlabeled(),
            &src,
            &tgt,
            7,
            &Device::Cpu,
        )
        .unwrap();
        r
    };
    assert_eq!(once(), once());
}
