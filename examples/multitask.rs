//! Multitask learning (LECTURE.md §2): a main task with few labels learns beside related tasks
//! that share its trunk; fixed or uncertainty weights; and a progressive network column.
//!
//! ```text
//! cargo run --release --example multitask
//! cargo run --release --example multitask -- --tasks digit,parity,loops,seg_g --labels 5 --json
//! cargo run --release --example multitask -- --tasks digit,synth=synth-digits
//! ```
//!
//! Tasks (comma-separated, the first is the *main* task): `digit` (the data's classes),
//! `parity` (class mod 2), any class attribute of the data (`loops`, `seg_a` ... `seg_g` for
//! digits), or `NAME=SPEC`, a task with its own data set (a data spec, see docs/data.md) and
//! its labels. The main task keeps `--labels` labelled examples per class of the training
//! part of `--data`; its other labels are masked. Every other task is fully labelled.
//!
//! Runs: `single_task` (the main task alone), `fixed` (equal fixed weights), `uncertainty`
//! (learned weights), `progressive` (column 0 learns the second task, column 1 the main task
//! with lateral connections to the frozen column 0), each `multitask::run` with its method.
//! `target_acc` is the main task's test accuracy.

mod common;

use clap::Parser;
use xfer::data::{self, TensorDataset};
use xfer::models::{InputSpec, ModelInfo};
use xfer::train::methods::multitask::{self, Config, Data, Method, TaskSpec, TaskSplit, Trained};
use xfer::train::plot::{Series, plot_curves};

#[derive(Debug, Parser)]
#[command(
    about = "Multitask learning: shared trunk, task heads, fixed or uncertainty weights, progressive columns"
)]
struct Args {
    /// The data the built-in tasks label (a data spec).
    #[arg(long, default_value = "optdigits")]
    data: String,
    /// Tasks, the first being the main task: `digit`, `parity`, a class attribute name, or
    /// `NAME=SPEC`.
    #[arg(long, default_value = "digit,parity,loops")]
    tasks: String,
    /// Labelled examples per class kept for the main task (0: all).
    #[arg(long, default_value_t = 10)]
    labels: usize,
    /// Runs: any of `single-task`, `fixed`, `uncertainty`, `progressive`, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "single-task,fixed,uncertainty,progressive"
    )]
    methods: Vec<Method>,
    /// Fixed task weights (comma-separated, one per task; default all 1).
    #[arg(long)]
    weights: Option<String>,
    /// Fraction of every data set held out for testing.
    #[arg(long, default_value_t = 0.3)]
    test_fraction: f64,
    /// The shared trunk: `mlp:W1,W2,...` (an MLP on the flattened input by construction).
    #[arg(long, value_name = "SPEC", default_value = "mlp:128,64")]
    backbone: String,
    /// Give every task its own input layer.
    #[arg(long)]
    input_layers: bool,
    /// Training epochs (passes over the largest task set).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[command(flatten)]
    common: common::CommonArgs,
    #[command(flatten)]
    set: common::SetArgs,
    #[command(flatten)]
    checkpoint: common::CheckpointArgs,
    #[command(flatten)]
    save: common::SaveArgs,
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("multitask", &matches)?;
    let seed = args.common.seed;
    let ctx = args
        .common
        .run_ctx()?
        .with_checkpoints(args.checkpoint.options());
    let dev = ctx.device.clone();

    let base = data::load(&args.data, seed)?;
    let specs = TaskSpec::parse_list(&args.tasks, &base, seed)?;
    let mut domains: Vec<(&str, &TensorDataset)> = vec![("data", &base)];
    for s in &specs {
        if let Some(ds) = &s.own {
            domains.push((s.name.as_str(), ds));
        }
    }
    let scale = common::feature_scale(&domains);
    // Every data set split into a training and a test part (stratified, seeded).
    let split = TaskSplit {
        labels_per_class: args.labels,
        test_fraction: args.test_fraction,
        scale,
        seed,
    };
    let data = Data::from_tasks(&base, &specs, &split, &dev)?;
    let main_task = data.main_task();
    println!(
        "data {}: {} train / {} test; main task {} with {} labels ({} per class), tasks {}",
        base.name(),
        data.train()[0].len(),
        data.test()[0].len(),
        main_task.name,
        main_task.num_known(),
        if args.labels > 0 {
            args.labels.to_string()
        } else {
            "all".into()
        },
        data.task_names().join(", ")
    );

    let epochs = if args.common.quick { 5 } else { args.epochs };
    let mut cfg = Config::new(Method::SingleTask, epochs);
    cfg.trunk = common::mlp_widths(&args.backbone, "the multitask trunk")?;
    cfg.input_layers = args.input_layers;
    cfg.old_task = specs.get(1).map(|s| s.name.clone());
    if let Some(w) = &args.weights {
        cfg.weights = w
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()?;
    }
    let cfg = args.set.apply(&cfg)?;

    let mut report = common::Report::new("multitask", seed);
    report
        .arg("data", args.data.as_str())
        .arg("tasks", args.tasks.as_str())
        .arg("labels", args.labels);
    let mut curves: Vec<Series> = Vec::new();
    let mut histories: Vec<(String, xfer::train::History)> = Vec::new();
    for &method in &args.methods {
        let t = std::time::Instant::now();
        let cfg = cfg.clone().with_method(method);
        if let Some(why) = cfg.unsupported(&data) {
            println!("{method:>14}: skipped: {why}");
            continue;
        }
        let out = multitask::run(&cfg, &data, &ctx)?;
        let acc = out.target_acc;
        let metric = |k: &str| {
            out.metrics
                .iter()
                .find(|m| m.0 == k)
                .map_or(f64::NAN, |m| m.1)
        };
        let detail = match &out.trained {
            Trained::Progressive { old_task, .. } => format!(
                "; old task {old_task} accuracy {:.4} before, {:.4} after the new column",
                metric("old_task_acc_before"),
                metric("old_task_acc_after")
            ),
            Trained::Shared(_) if method == Method::SingleTask => String::new(),
            Trained::Shared(_) => format!(
                "; {}",
                out.metrics
                    .iter()
                    .skip(2)
                    .map(|(k, v)| format!("{k} {v:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        println!(
            "{method:>14}: {} accuracy {acc:.4}{detail}  [{:.1}s]",
            main_task.name,
            t.elapsed().as_secs_f64()
        );
        report.run(method.name(), &out.metric_pairs());
        if let (Trained::Shared(model), Some(_), false) =
            (&out.trained, &args.save.save, method == Method::SingleTask)
        {
            // One package per task: the trunk and that task's head.
            for labels in data.train().iter().flat_map(|s| &s.tasks) {
                let task = labels.name.as_str();
                let net = match model.task_classifier(task) {
                    Ok(net) => net,
                    Err(e) => {
                        println!("{:>14}  task {task} not saved: {e}", "");
                        continue;
                    }
                };
                let names = if task == main_task.name {
                    common::class_names(base.class_names(), labels.num_classes)
                } else {
                    common::class_names(&[], labels.num_classes)
                };
                let prov = common::provenance(
                    &format!("{method}:{task}"),
                    &[("data", &args.data), ("tasks", &args.tasks)],
                    seed,
                    &out.metric_pairs(),
                    serde_json::json!({"config": cfg}),
                    net.spec(),
                );
                let info = ModelInfo::new(names, InputSpec::tensor(scale)).with_provenance(prov);
                args.save.save(&format!("{method}-{task}"), &net, &info)?;
            }
        }
        let label = match method {
            Method::Progressive => "progressive (column 1)",
            m => m.name(),
        };
        if let Some((_, r)) = out.reports.last() {
            curves.push(Series::new(label, r.history.step_curve("loss")));
        }
        for (name, r) in &out.reports {
            histories.push((name.clone(), r.history.clone()));
        }
    }
    let runs: Vec<(&str, &xfer::train::History)> =
        histories.iter().map(|(n, h)| (n.as_str(), h)).collect();
    args.common.write_metrics(&runs)?;
    let path = args.common.out().join("multitask-loss.png");
    plot_curves(&path, "multitask: training loss", "step", "loss", &curves)?;
    println!("wrote {}", path.display());
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}
