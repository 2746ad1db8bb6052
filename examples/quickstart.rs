//! The tour of xfer on embedded data: every method of the lecture against its baseline, on
//! the same data and seed, in a few minutes on a laptop CPU.
//!
//! ```text
//! cargo run --release --example quickstart            # the tour (about 1.5 minutes)
//! cargo run --release --example quickstart -- --json  # last line: one JSON object
//! cargo run --release --example quickstart -- --quick # a smoke test (seconds)
//! ```
//!
//! | method (LECTURE.md) | data | baseline | result |
//! |---|---|---|---|
//! | fine-tuning: L2-SP, full fine-tuning (§1) | synthetic digits → optdigits, 1 label per class | from scratch | target accuracy |
//! | multitask, uncertainty weights (§2) | optdigits: digit (10 labels per class) + parity + loops | digit task alone | digit accuracy |
//! | progressive column (§2) | parity column, then a digit column | digit task alone | digit accuracy, parity unchanged |
//! | DANN (§3) | two moons rotated by 35° | source only | target accuracy |
//! | zero-shot: hinge, DAP, ConSE (§4) | 24 coloured shapes, 6 never seen | chance | unseen-class accuracy |
//! | self-taught (§5) | unlabelled synthetic digits → optdigits, 5 labels per class | from scratch | target accuracy |
//!
//! Pictures (training curves, the PCA of DANN's features by domain and class) go to `--out`
//! (default a new `runs/quickstart-<YYYYMMDD-HHMMSS>/`), with `quickstart.json`, `args.json`
//! and `metrics.csv`.

mod common;

use std::path::Path;
use std::time::Instant;

use clap::Parser;
use xfer::data::{self, TensorDataset, UnlabeledDataset, embedded};
use xfer::prelude::*;
use xfer::train::methods::dann;
use xfer::train::methods::finetune::{
    self, BackboneSpec, FinetuneConfig, Length, Method, TargetData, pretrain,
};
use xfer::train::methods::multitask::{self, TaskLabels, TaskSet};
use xfer::train::methods::self_taught;
use xfer::train::methods::zero_shot::{self, ZeroShotConfig, ZeroShotData, ZslMethod};
use xfer::train::plot::{Series, plot_curves, plot_features_pca};

#[derive(Debug, Parser)]
#[command(about = "The tour of xfer: every method against its baseline, on embedded data")]
struct Args {
    /// Run only these parts (comma-separated): finetune, multitask, dann, zero-shot,
    /// self-taught.
    #[arg(long, default_value = "finetune,multitask,dann,zero-shot,self-taught")]
    only: String,
    /// Steps of each zero-shot method.
    #[arg(long)]
    zsl_steps: Option<usize>,
    #[command(flatten)]
    common: common::CommonArgs,
}

/// One line of the final table.
struct Row {
    method: String,
    baseline: String,
    result: String,
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("quickstart", &matches)?;
    let seed = args.common.seed;
    let quick = args.common.quick;
    let out = args.common.out();
    // The run context of every part: --device, --seed, no progress bars with --json.
    let ctx = args.common.run_ctx()?;
    let dev = ctx.device.clone();
    let start = Instant::now();
    let mut report = common::Report::new("quickstart", seed);
    report.arg("quick", quick);
    let mut rows: Vec<Row> = Vec::new();
    // Every training run's history, for metrics.csv.
    let mut histories: Vec<(String, xfer::train::History)> = Vec::new();
    let parts: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let known = ["finetune", "multitask", "dann", "zero-shot", "self-taught"];
    if let Some(p) = parts.iter().find(|p| !known.contains(p)) {
        anyhow::bail!("--only {p}: expected some of {}", known.join(", "));
    }
    let want = |p: &str| parts.contains(&p);
    // The digits (0..16 scaled to [0, 1]) and the Adam stage shared by several parts.
    let synth = embedded::synth_digits(if quick { 60 } else { 500 }, seed)?.scale(1.0 / 16.0);
    let real = embedded::optdigits()?.scale(1.0 / 16.0);
    let epochs = if quick { 10 } else { 30 };

    if want("finetune") {
        // 1. Fine-tuning: synthetic digits → optdigits with one label per class.
        let t = Instant::now();
        println!("== fine-tuning (LECTURE.md §1): synthetic digits → optdigits, 1 label per class");
        let (src_train, src_val) = data::stratified_split(&synth, 0.1, seed)?;
        let (support, test) = data::few_shot(&real, 1, seed)?;
        let mut cfg = FinetuneConfig::new(BackboneSpec::cnn());
        if quick {
            cfg.pretrain.length = Length::Epochs(3);
            cfg.finetune.length = Length::Epochs(20);
            cfg.scratch.length = Length::Epochs(50);
        }
        let source = pretrain(&src_train, Some(&src_val), 10, &cfg, &ctx)?;
        let target = TargetData::new(support, test, 10);
        let mut ft_curves = Vec::new();
        let mut acc = std::collections::BTreeMap::new();
        for m in ["scratch", "finetune", "l2sp"] {
            let cfg = cfg.clone().with_method(m.parse::<Method>()?);
            let o = finetune::run(&cfg, &finetune::Data::new(Some(&source), &target), &ctx)?;
            report.run(m, &[("target_acc", o.target_acc)]);
            ft_curves.push(Series::new(m, o.report.history.step_curve("loss")));
            histories.push((format!("finetune_{m}"), o.report.history.clone()));
            acc.insert(m, o.target_acc);
        }
        let scratch = acc["scratch"];
        for m in ["l2sp", "finetune"] {
            rows.push(Row {
                method: format!("{m} (1 label/class)"),
                baseline: format!("scratch {scratch:.3}"),
                result: format!("{:.3}", acc[m]),
            });
        }
        println!(
            "   scratch {scratch:.3}, finetune {:.3}, l2sp {:.3}  [{:.0}s]",
            acc["finetune"],
            acc["l2sp"],
            t.elapsed().as_secs_f64()
        );
        curves(
            &out,
            "quickstart-finetune.png",
            "fine-tuning on 10 labelled digits",
            &ft_curves,
        )?;
    }
    if want("multitask") {
        // 2. Multitask: digit (10 labels per class) beside parity and loops; progressive column.
        let t = Instant::now();
        println!("== multitask (§2): optdigits, digit with 10 labels/class + parity + loops");
        let (mt_train, mt_test) = data::stratified_split(&real, 0.3, seed)?;
        let labels = |ds: &TensorDataset, name: &str, map: &[u32]| {
            TaskLabels::from_classes(name, ds.labels(), map, &dev)
        };
        let digit_map: Vec<u32> = (0..10).collect();
        let parity_map: Vec<u32> = (0..10).map(|c| c % 2).collect();
        let loops_map = [1, 0, 0, 0, 0, 0, 1, 0, 2, 1];
        let feats = |ds: &TensorDataset| -> anyhow::Result<UnlabeledDataset> {
            Ok(UnlabeledDataset::new(
                ds.name(),
                ds.features().to_vec(),
                ds.sample_shape().to_vec(),
            )?)
        };
        let digit_train = labels(&mt_train, "digit", &digit_map)?.keep_per_class(10, seed)?;
        let train_set = TaskSet::new(
            feats(&mt_train)?,
            vec![
                digit_train.clone(),
                labels(&mt_train, "parity", &parity_map)?,
                labels(&mt_train, "loops", &loops_map)?,
            ],
        )?;
        let test_set = TaskSet::new(
            feats(&mt_test)?,
            vec![
                labels(&mt_test, "digit", &digit_map)?,
                labels(&mt_test, "parity", &parity_map)?,
                labels(&mt_test, "loops", &loops_map)?,
            ],
        )?;
        let mt_data = multitask::Data::new(vec![train_set], vec![test_set])?;
        let mt_run = |m| multitask::run(&multitask::Config::new(m, epochs), &mt_data, &ctx);
        let single = mt_run(multitask::Method::SingleTask)?;
        let multi = mt_run(multitask::Method::Uncertainty)?;
        let prog = mt_run(multitask::Method::Progressive)?;
        let (single_acc, multi_acc, prog_acc) =
            (single.target_acc, multi.target_acc, prog.target_acc);
        let w: Vec<f64> = multi
            .metrics
            .iter()
            .filter(|m| m.0.starts_with("w_"))
            .map(|m| m.1)
            .collect();
        report.run("single_task", &single.metric_pairs());
        let mut m: Vec<(&str, f64)> = vec![("target_acc", multi_acc)];
        m.extend(
            ["w_digit", "w_parity", "w_loops"]
                .into_iter()
                .zip(w.iter().copied()),
        );
        report.run("multitask_uncertainty", &m);
        rows.push(Row {
            method: "multitask, uncertainty weights".into(),
            baseline: format!("single task {single_acc:.3}"),
            result: format!("{multi_acc:.3}"),
        });
        // Progressive: column 0 learns parity, column 1 the digits through laterals.
        let metric = |o: &multitask::Outcome, k: &str| {
            o.metrics
                .iter()
                .find(|m| m.0 == k)
                .map_or(f64::NAN, |m| m.1)
        };
        let (before, after) = (
            metric(&prog, "old_task_acc_before"),
            metric(&prog, "old_task_acc_after"),
        );
        report.run("progressive", &prog.metric_pairs());
        let report_of = |o: &multitask::Outcome, k: &str| {
            o.reports
                .iter()
                .find(|r| r.0 == k)
                .map(|r| r.1.history.clone())
                .unwrap_or_default()
        };
        let r_single = report_of(&single, "single_task");
        let r_multi = report_of(&multi, "uncertainty");
        let r_prog = report_of(&prog, "progressive_column1");
        rows.push(Row {
            method: "progressive column".into(),
            baseline: format!("single task {single_acc:.3}"),
            result: format!("{prog_acc:.3} (parity {before:.3} → {after:.3})"),
        });
        println!(
            "   single task {single_acc:.3}, multitask {multi_acc:.3} (weights {:.2?}), progressive {prog_acc:.3} (old parity column {before:.3} → {after:.3})  [{:.0}s]",
            w,
            t.elapsed().as_secs_f64()
        );
        curves(
            &out,
            "quickstart-multitask.png",
            "multitask vs single task: training loss",
            &[
                Series::new("single task", r_single.step_curve("loss")),
                Series::new("multitask (uncertainty)", r_multi.step_curve("loss")),
                Series::new("progressive column 1", r_prog.step_curve("loss")),
            ],
        )?;
        histories.push(("multitask_single_task".into(), r_single));
        histories.push(("multitask_uncertainty".into(), r_multi));
        histories.push(("multitask_progressive_column1".into(), r_prog));
    }
    if want("dann") {
        // 3. Domain-adversarial training: two moons rotated by 35°.
        let t = Instant::now();
        println!("== domain-adversarial training (§3): two moons → rotated by 35°");
        let noise = embedded::moons::MOONS_NOISE;
        let n = embedded::moons::MOONS_PER_DOMAIN;
        let moon_seed = xfer::train::derive_seed(seed, &[0x4d4f4f4e]);
        let source = embedded::moons(n, noise, 0.0, moon_seed)?;
        let target = embedded::moons(n, noise, 35.0, moon_seed)?;
        let test_seed = xfer::train::derive_seed(seed, &[0x4d4f4f4e, 1]);
        let source_test = embedded::moons(1000, noise, 0.0, test_seed)?;
        let target_test = embedded::moons(1000, noise, 35.0, test_seed)?;
        // The moons task's tuned settings (examples/dann.rs --task moons:35) on this tour's
        // moons.
        let dcfg = dann::Task::moons_config(quick);
        let ddata = dann::Data::new(source.clone(), target.unlabeled())
            .with_source_val(source_test.clone())
            .with_target_test(target_test.clone());
        let dctx = ctx.clone();
        let mut dann_acc = std::collections::BTreeMap::new();
        let mut panels_models = Vec::new();
        for method in [dann::Method::SourceOnly, dann::Method::Dann] {
            let model = dann::run(&dcfg.clone().with_method(method), &ddata, &dctx)?;
            let r = model
                .evaluation
                .clone()
                .ok_or_else(|| anyhow::anyhow!("dann: no evaluation"))?;
            let name = method.name();
            report.run(name, &r.metrics());
            histories.push((format!("dann_{name}"), model.report.history.clone()));
            dann_acc.insert(name, (r.target_acc, r.domain_acc));
            panels_models.push((name, model));
        }
        let (so, _) = dann_acc["source_only"];
        let (da, dom_acc) = dann_acc["dann"];
        rows.push(Row {
            method: "DANN (moons 35°)".into(),
            baseline: format!("source only {so:.3}"),
            result: format!("{da:.3} (domain acc {dom_acc:.2})"),
        });
        println!(
            "   source only {so:.3}, DANN {da:.3} (domain classifier accuracy {dom_acc:.3}; 0.5 = domains indistinguishable)  [{:.0}s]",
            t.elapsed().as_secs_f64()
        );
        for (name, model) in &panels_models {
            let (xs, ys) = source_test.to_tensors(&dev)?;
            let (xt, yt) = target_test.to_tensors(&dev)?;
            let f = Tensor::cat(&[model.features(&xs)?, model.features(&xt)?], 0)?;
            let domains: Vec<usize> = (0..xs.dim(0)?)
                .map(|_| 0)
                .chain((0..xt.dim(0)?).map(|_| 1))
                .collect();
            let classes: Vec<usize> = ys
                .to_vec1::<u32>()?
                .into_iter()
                .chain(yt.to_vec1::<u32>()?)
                .map(|c| c as usize)
                .collect();
            let path = out.join(format!("quickstart-dann-pca-{name}.png"));
            plot_features_pca(
                &path,
                &format!("{name}: features of source and target (PCA)"),
                &f,
                &domains,
                &classes,
                &["source", "target"],
            )?;
            println!("   wrote {}", path.display());
        }
    }
    if want("zero-shot") {
        // 4. Zero-shot learning: 24 shapes described by attributes, 6 classes never seen.
        let t = Instant::now();
        println!("== zero-shot learning (§4): shapes, 6 of 24 classes unseen");
        let shapes = embedded::shapes(if quick { 20 } else { 80 }, seed)?;
        let attributes = shapes
            .attributes()
            .ok_or_else(|| anyhow::anyhow!("shapes without attributes"))?
            .clone();
        let zdata = ZeroShotData::split(&shapes, &attributes, &[1, 6, 10, 13, 20, 23], 0.2, seed)?;
        let zcfg = ZeroShotConfig::new(BackboneSpec::cnn())
            .with_steps(args.zsl_steps.unwrap_or(if quick { 100 } else { 500 }));
        let zctx = ctx.clone();
        let mut zline = Vec::new();
        for method in ZslMethod::all() {
            let o = zero_shot::run(&zcfg.clone().with_method(method), &zdata, &zctx)?;
            histories.push((
                format!("zero_shot_{}", method.name()),
                o.model.report.history.clone(),
            ));
            let r = o.result;
            report.run(method.name(), &r.metrics());
            rows.push(Row {
                method: format!("zero-shot {} (shapes)", method.name()),
                baseline: format!("chance {:.3}", r.chance),
                result: format!("{:.3} unseen (H {:.3})", r.unseen_acc, r.h),
            });
            zline.push(format!(
                "{} {:.3} (H {:.3})",
                method.name(),
                r.unseen_acc,
                r.h
            ));
        }
        println!(
            "   unseen-class accuracy: {}; chance {:.3}  [{:.0}s]",
            zline.join(", "),
            1.0 / 6.0,
            t.elapsed().as_secs_f64()
        );
    }
    if want("self-taught") {
        // 5. Self-taught learning: an auto-encoder on unlabelled synthetic digits.
        let t = Instant::now();
        println!(
            "== self-taught learning (§5): unlabelled synthetic digits → optdigits, 5 labels per class"
        );
        let unlabelled = synth.unlabeled();
        let (support5, test5) = data::few_shot(&real, 5, seed)?;
        let cfg = self_taught::Config::new(self_taught::Method::Scratch, &[256, 64], 0.2, quick);
        let (ae, r_ae) = self_taught::pretrain(&cfg, &unlabelled, &ctx)?;
        let st_data = self_taught::Data {
            train: &support5,
            test: &test5,
            autoencoder: Some(&ae),
        };
        let scratch = self_taught::run(&cfg, &st_data, &ctx)?;
        let tuned = self_taught::run(
            &cfg.clone().with_method(self_taught::Method::SelfTaught),
            &st_data,
            &ctx,
        )?;
        let (st_scratch, st_acc) = (scratch.target_acc, tuned.target_acc);
        let (r_sc, r_st) = (&scratch.report, &tuned.report);
        report.run("self_taught_scratch", &[("target_acc", st_scratch)]);
        report.run("self_taught", &[("target_acc", st_acc)]);
        rows.push(Row {
            method: "self-taught (5 labels/class)".into(),
            baseline: format!("scratch {st_scratch:.3}"),
            result: format!("{st_acc:.3}"),
        });
        println!(
            "   scratch {st_scratch:.3}, self-taught {st_acc:.3}  [{:.0}s]",
            t.elapsed().as_secs_f64()
        );
        curves(
            &out,
            "quickstart-self-taught.png",
            "self-taught learning: training loss",
            &[
                Series::new(
                    "auto-encoder (reconstruction)",
                    r_ae.history.step_curve("loss"),
                ),
                Series::new("classifier from scratch", r_sc.history.step_curve("loss")),
                Series::new("classifier on the encoder", r_st.history.step_curve("loss")),
            ],
        )?;
        histories.push(("self_taught_autoencoder".into(), r_ae.history.clone()));
        histories.push(("self_taught_scratch".into(), r_sc.history.clone()));
        histories.push(("self_taught_encoder".into(), r_st.history.clone()));
    }
    // The table.
    let w0 = rows
        .iter()
        .map(|r| r.method.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| r.baseline.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    println!();
    println!("{:<w0$} | {:<w1$} | result", "method", "baseline");
    println!(
        "{}-|-{}-|-{}",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(24)
    );
    for r in &rows {
        println!("{:<w0$} | {:<w1$} | {}", r.method, r.baseline, r.result);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "\n{} comparisons in {secs:.0}s; pictures and quickstart.json in {}",
        rows.len(),
        out.display()
    );
    report.arg("seconds", secs);
    let runs: Vec<(&str, &xfer::train::History)> =
        histories.iter().map(|(n, h)| (n.as_str(), h)).collect();
    args.common.write_metrics(&runs)?;
    report.finish(args.common.json, &out)?;
    Ok(())
}

/// Writes training curves and says where.
fn curves(out: &Path, file: &str, title: &str, series: &[Series]) -> anyhow::Result<()> {
    let path = out.join(file);
    plot_curves(&path, title, "step", "loss", series)?;
    println!("   wrote {}", path.display());
    Ok(())
}
