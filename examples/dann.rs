//! Unsupervised domain adaptation — DANN, CDAN(+E), MCC, self-training, FixMatch, AdaBN, DAN,
//! CORAL — against the source-only baseline, on the same data, the same initial weights and
//! the same batches, with label-free model selection.
//!
//! ```text
//! cargo run --release --example dann -- --task moons:35
//! cargo run --release --example dann -- --task synth-to-digits --method source_only,dann,cdan_e,mcc,self_train --selection dev --json
//! cargo run --release --example dann -- --task digits-rot:30 --method dann,cdan_e
//! cargo run --release --example dann -- --task moons:35 --method dann --sweep lambda=0.3,1,3 --sweep lr=0.02,0.05
//! cargo run --release --example dann -- --source csv:a.csv --target csv:b.csv [--target-test SPEC] [--backbone mlp:64,64|cnn|lenet|resnet18]
//! cargo run --release --example dann -- --source folder:labelled --target images:photos:size=32x32 [--target-test folder:test:size=32x32]
//! cargo run --release --example dann -- --task synth-to-digits --checkpoint-dir ck [--resume]
//! ```
//!
//! Target labels are never used for training or for any choice: the kept checkpoint (and, with
//! `--sweep`, the kept hyper-parameters) is chosen by the `--selection` scorer. The report
//! gives per method `target_acc` — the label-free choice, what a user gets — and
//! `oracle_target_acc`, the best target accuracy of any evaluation (of any sweep run), for
//! reference only; `<scorer>_target_acc` is what each other scorer would have chosen in the
//! same run. An unlabelled `--target` (`images:DIR`, `csv:PATH:label=none`) trains whole;
//! target accuracy is then measured only with `--target-test` (else `target_acc` is `null`).
//! A pretrained image backbone (`weights=`) gets its preprocessing (`--image-size`, short side
//! to 8/7 of it, centre crop, its normalisation) on every source, target and test image.
//! Pictures (training curves, PCA of the features by domain and class), `metrics.csv`,
//! `args.json` and the report go to `--out` (default `runs/dann-<time>/`). The tasks and
//! their tuned settings are `xfer::train::methods::dann::Task`; the run is `dann::run`.

mod common;

use anyhow::{Context, bail};
use clap::builder::PossibleValue;
use clap::{Parser, ValueEnum};
use common::{CheckpointArgs, CommonArgs, Report};
use xfer::data::preset::{IMAGENET_MEAN, IMAGENET_STD};
use xfer::data::{embedded, spec};
use xfer::models::{BackboneSpec, BottleneckSpec, InputSpec, ModelInfo};
use xfer::train::Scorer;
use xfer::train::methods::dann::{self, Config, Method, ModelSelection, SweepParam, Task};

/// The networks of `--model` (shorthand for `--backbone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelArg {
    Mlp,
    Cnn,
    Lenet,
}

#[derive(Debug, Parser)]
#[command(about = "Domain adaptation methods vs source-only, with label-free model selection")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    set: common::SetArgs,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    #[command(flatten)]
    save: common::SaveArgs,
    /// Built-in task: moons[:DEG] | synth-to-digits | digits-rot:DEG.
    #[arg(long, conflicts_with_all = ["source", "target"])]
    task: Option<String>,
    /// Labelled source data (a data spec: moons:DEG, optdigits, csv:PATH, idx:..., folder:..., safetensors:...).
    #[arg(long, requires = "target")]
    source: Option<String>,
    /// Target data: labelled (its labels are used only for the final report; half of it is
    /// held out for the test unless --target-test is given) or unlabelled (images:DIR,
    /// csv:PATH:label=none: all of it trains).
    #[arg(long, requires = "source")]
    target: Option<String>,
    /// Labelled target test data, only for the report; without it a labelled target has half
    /// held out (seeded, stratified) and an unlabelled one is not measured.
    #[arg(long, requires = "target")]
    target_test: Option<String>,
    /// Methods to run, comma-separated (measured in docs/methods-dann.md: cdan_e is the
    /// recommended adversarial method, mcc the best on synthetic → real digits).
    #[arg(
        long,
        value_parser = common::one_of::<Method>(Method::ALL.map(|m| m.name().into())),
        value_delimiter = ',',
        default_value = "source_only,dann"
    )]
    method: Vec<Method>,
    /// Which checkpoint each run keeps (never chosen with target labels); default: the task's.
    #[arg(long, value_parser = common::one_of::<ModelSelection>(
        ModelSelection::ALL.map(|s| PossibleValue::new(s.name()).aliases(s.aliases().iter().copied()))
    ))]
    selection: Option<ModelSelection>,
    /// Grid of a hyper-parameter, KEY=V1,V2,... (KEY: lambda, lr, threshold, mcc_weight);
    /// repeat for a grid over several. Every run is scored by --selection (default dev).
    #[arg(long, value_parser = |s: &str| SweepParam::parse_axis(s).map_err(|e| e.to_string()))]
    sweep: Vec<(SweepParam, Vec<f64>)>,
    /// Network shorthand: mlp (feature vectors), cnn or lenet (images).
    #[arg(long, value_enum, conflicts_with = "backbone")]
    model: Option<ModelArg>,
    /// Backbone spec: mlp[:W1,W2,...] | cnn | lenet | resnet18[:weights=PATH] | ...
    #[arg(long)]
    backbone: Option<String>,
    /// Side of the (square) network input for pretrained image backbones (`weights=`): every
    /// image of --source, --target and --target-test is resized (short side to 8/7 of it),
    /// centre-cropped to it and normalised with the backbone's statistics, as in finetune.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Bottleneck between backbone and head: a width W (linear → batch norm → ReLU, what
    /// AdaBN needs), bn:W, linear:W, or none (0).
    #[arg(long, value_name = "SPEC")]
    bottleneck: Option<BottleneckSpec>,
    /// Points per domain of the moons task (150 in the paper).
    #[arg(long, default_value_t = embedded::moons::MOONS_PER_DOMAIN)]
    points: usize,
    /// Hidden widths of the MLP, e.g. 64,64.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Examples per domain per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Initial learning rate μ0 of μ_p = μ0/(1+10p)^0.75.
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// γ of λ_p = 2/(1+exp(−γp)) − 1.
    #[arg(long)]
    gamma: Option<f64>,
    /// Multiplier of λ_p (adversarial, MMD, CORAL and pseudo-label terms).
    #[arg(long)]
    lambda_max: Option<f64>,
    /// Weight of the MCC term.
    #[arg(long)]
    mcc_weight: Option<f64>,
    /// Confidence a pseudo-label needs, in [0, 1].
    #[arg(long)]
    threshold: Option<f64>,
    /// Hidden width of the domain classifier.
    #[arg(long)]
    disc_hidden: Option<usize>,
    /// Hidden layers of the domain classifier.
    #[arg(long)]
    disc_depth: Option<usize>,
    /// Learning-rate multiplier of the domain classifier.
    #[arg(long)]
    disc_lr_mult: Option<f64>,
    /// Steps between evaluations.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Batch norm in the domain classifier (true/false).
    #[arg(long)]
    disc_batch_norm: Option<bool>,
    /// Measure the cost of a training step instead: N steps of each method vs N plain
    /// source-only steps (no evaluation), ms per step.
    #[arg(long)]
    time_steps: Option<usize>,
}

/// `--source`/`--target` data: loaded, on the source's scale (issue 8), the task's settings.
/// A labelled target without `--target-test` has half held out for the test; an unlabelled
/// one trains whole, and without `--target-test` its accuracy is not measured.
fn spec_task(args: &Args, source: &str, target: &str) -> anyhow::Result<(Task, InputSpec)> {
    use xfer::data::{Dataset, LabeledSet};
    let seed = args.common.seed;
    let preprocess = pretrained_preprocess(args)?;
    // A pretrained RGB backbone reads every image as RGB (grayscale repeated).
    let rgb = |s: &str| -> String {
        let folder = s.starts_with("folder:") || s.starts_with("images:");
        if preprocess.is_some() && folder && !s.contains("channels=") {
            format!("{s}:channels=3")
        } else {
            s.to_string()
        }
    };
    let load = |flag: &str, s: &str, k: u64| -> anyhow::Result<xfer::data::Data> {
        let d = spec::load_data(&rgb(s), dann::data_seed(seed, k))
            .with_context(|| format!("{flag} {s}"))?;
        Ok(match &preprocess {
            Some(tf) => d
                .preprocessed(tf.clone())
                .with_context(|| format!("{flag} {s}: the backbone's preprocessing"))?,
            None => d,
        })
    };
    let src = load("--source", source, 0)?
        .into_tensors()
        .with_context(|| format!("--source {source}"))?;
    let tgt = load("--target", target, 1)?;
    let test = match &args.target_test {
        Some(t) => {
            let test = load("--target-test", t, 2)?
                .into_tensors()
                .with_context(|| format!("--target-test {t}"))?;
            spec::check_compatible(&src, &test)?;
            Some(test)
        }
        None => None,
    };
    if let xfer::data::Data::Tensors(t) = &tgt {
        spec::check_compatible(&src, t)?;
    }
    let labelled = tgt.is_labeled();
    let (tgt, test) =
        Task::target_sets(tgt, test, seed).with_context(|| format!("--target {target}"))?;
    if !labelled {
        println!(
            "target {target}: unlabelled, all {} examples train",
            tgt.len()
        );
    }
    let mut ranges = vec![
        ("source", src.name(), src.feature_range()),
        ("target", target, tgt.feature_range()),
    ];
    if let Some(t) = &test {
        ranges.push(("target test", t.name(), t.feature_range()));
    }
    let k = common::feature_scale_of(&ranges);
    // Preprocessed inputs are already what the backbone was trained on: no rescaling.
    let k = if preprocess.is_some() { 1.0 } else { k };
    let input = match (&preprocess, &args.backbone) {
        (Some(_), Some(b)) => {
            let spec: BackboneSpec = b.parse()?;
            let (mean, std) = spec
                .preprocess()
                .map_or((IMAGENET_MEAN, IMAGENET_STD), |p| (p.mean, p.std));
            InputSpec::image(3, args.image_size, &mean, &std)
        }
        _ => InputSpec::tensor(k),
    };
    let name = format!("{source}->{target}");
    let task = Task::custom(
        &name,
        &src.scale(k),
        tgt.scale(k),
        test.map(|t| t.scale(k)),
        seed,
        args.common.quick,
    )?;
    Ok((task, input))
}

/// The evaluation preset of a pretrained image `--backbone` at `--image-size` (resize the
/// short side to 8/7 of it, centre crop, normalise with the statistics its weights were
/// trained with), or `None` for the built-in networks.
fn pretrained_preprocess(
    args: &Args,
) -> anyhow::Result<Option<std::sync::Arc<dyn xfer::data::Transform>>> {
    let Some(b) = &args.backbone else {
        return Ok(None);
    };
    let spec: BackboneSpec = b.parse().with_context(|| format!("--backbone {b}"))?;
    if !spec.is_pretrained() || spec.is_text() {
        return Ok(None);
    }
    let size = args.image_size;
    anyhow::ensure!(size >= 8, "--image-size must be at least 8");
    let (mean, std) = spec
        .preprocess()
        .map_or((IMAGENET_MEAN, IMAGENET_STD), |p| (p.mean, p.std));
    let preset = xfer::data::Preprocess::new(size, size * 8 / 7, mean.to_vec(), std.to_vec())?;
    println!(
        "pretrained backbone {spec}: images resized (short side {}), centre-cropped to {size}x{size}, normalised",
        preset.resize_size
    );
    Ok(Some(preset.eval_transform()?))
}

/// Applies the command-line overrides to the task's settings.
fn apply_overrides(args: &Args, cfg: &mut Config) -> anyhow::Result<()> {
    if let Some(m) = args.model {
        let hidden = match &cfg.backbone {
            BackboneSpec::Mlp { hidden, .. } => hidden.clone(),
            _ => vec![64, 64],
        };
        cfg.backbone = match m {
            ModelArg::Mlp => BackboneSpec::Mlp {
                hidden,
                dropout: 0.0,
            },
            ModelArg::Cnn => BackboneSpec::cnn(),
            ModelArg::Lenet => BackboneSpec::Lenet,
        };
    }
    if let Some(b) = &args.backbone {
        cfg.backbone = b.parse().with_context(|| format!("--backbone {b}"))?;
    }
    if let Some(h) = &args.hidden {
        match &mut cfg.backbone {
            BackboneSpec::Mlp { hidden, .. } => *hidden = h.clone(),
            other => bail!("--hidden applies to the mlp backbone (this run uses {other})"),
        }
    }
    let (st, d, t) = (&mut cfg.stage, &mut cfg.discriminator, &mut cfg.terms);
    if let Some(v) = args.steps {
        *st = st.clone().with_steps(v);
        st.eval_every = st.eval_every.map(|e| e.min(v.max(1)));
    }
    cfg.bottleneck = args.bottleneck.unwrap_or(cfg.bottleneck);
    st.batch_size = args.batch_size.unwrap_or(st.batch_size);
    st.lr = args.lr.unwrap_or(st.lr);
    st.weight_decay = args.weight_decay.unwrap_or(st.weight_decay);
    st.eval_every = args.eval_every.or(st.eval_every);
    cfg.ramp.gamma = args.gamma.unwrap_or(cfg.ramp.gamma);
    cfg.ramp.max = args.lambda_max.unwrap_or(cfg.ramp.max);
    t.mcc.weight = args.mcc_weight.unwrap_or(t.mcc.weight);
    t.pseudo_label.threshold = args.threshold.unwrap_or(t.pseudo_label.threshold);
    d.hidden = args.disc_hidden.unwrap_or(d.hidden);
    d.depth = args.disc_depth.unwrap_or(d.depth);
    d.lr_mult = args.disc_lr_mult.unwrap_or(d.lr_mult);
    d.batch_norm = args.disc_batch_norm.unwrap_or(d.batch_norm);
    if let Some(v) = args.selection {
        cfg.selection = v.scorer();
    }
    if !args.sweep.is_empty() && cfg.selection.is_none() {
        cfg.selection = Some(Scorer::Dev);
    }
    *cfg = args.set.apply(cfg)?;
    cfg.validate()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("dann", &matches)?;
    // The device first: a missing backend fails before any data is read.
    let ctx = args
        .common
        .run_ctx()?
        .with_checkpoints(args.checkpoint.options());
    let (seed, quick) = (args.common.seed, args.common.quick);
    // How a saved model's inputs are made: the data specs' values times the scale applied
    // here, or a pretrained backbone's image preprocessing (built-in tasks: as they are made).
    let (mut task, input) = match (&args.task, &args.source, &args.target) {
        (None, Some(s), Some(t)) => spec_task(&args, s, t)?,
        (Some(_), _, _) | (None, None, None) => {
            let name = args.task.as_deref().unwrap_or("moons:35");
            let task = Task::builtin_with_points(name, args.points, seed, quick)
                .with_context(|| format!("--task {name}"))?;
            let t = &task.target;
            common::feature_scale_of(&[
                ("source", task.source.name(), task.source.feature_range()),
                ("target", xfer::data::Dataset::name(t), t.feature_range()),
            ]);
            (task, InputSpec::tensor(1.0))
        }
        _ => bail!("give --task, or both --source and --target"),
    };
    apply_overrides(&args, &mut task.cfg)?;

    let data = task.data();
    if let Some(n) = args.time_steps {
        let rows = dann::step_cost(&task.cfg, &data, &args.method, n, &ctx)?;
        let mut report = Report::new("dann-step-cost", seed);
        report.arg("task", task.name.as_str()).arg("steps", n);
        let base = rows.first().map_or(f64::NAN, |r| r.1);
        for (name, ms) in &rows {
            report.run(name, &[("ms_per_step", *ms), ("ratio", ms / base)]);
        }
        return report.finish(args.common.json, &args.common.out());
    }
    println!("{}", task.summary());
    let measured = task.target_test.is_some();
    if !args.sweep.is_empty() && !measured {
        bail!(
            "--sweep reports target accuracy beside the label-free choice: give --target-test \
             (a labelled target test set) with an unlabelled --target"
        );
    }
    let cfg = &task.cfg;
    let selection = cfg.selection.map_or("last".to_string(), |s| s.to_string());
    let steps = cfg.stage.total_steps(1);
    let mut report = Report::new("dann", seed);
    report
        .arg("task", task.name.as_str())
        .arg("backbone", cfg.backbone.to_string());
    report
        .arg("steps", steps)
        .arg("quick", quick)
        .arg("selection", selection);
    let mut outcomes = Vec::new();
    for &method in &args.method {
        let t0 = std::time::Instant::now();
        let cfg = cfg.clone().with_method(method);
        let mut metrics = if args.sweep.is_empty() {
            let outcome = dann::run(&cfg, &data, &ctx)?;
            let m = outcome.metrics();
            save_outcome(&args, &task, &input, &outcome, &m)?;
            outcomes.push(outcome);
            m
        } else {
            let scorer = cfg.selection.unwrap_or(Scorer::Dev);
            let res = dann::sweep(&cfg, &args.sweep, scorer, &data, &ctx)?;
            res.lines(method.name())
                .iter()
                .for_each(|l| println!("{l}"));
            res.metrics()
        };
        metrics.push(("seconds".into(), t0.elapsed().as_secs_f64()));
        let refs: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        report.run(method.name(), &refs);
        if !measured {
            report.not_measured(method.name(), "target_acc");
        }
    }
    if !measured {
        println!("target accuracy not measured: give --target-test");
    }
    report.arg("target_examples", xfer::data::Dataset::len(&task.target));
    let histories: Vec<(&str, &xfer::train::History)> = outcomes
        .iter()
        .map(|o| (o.method.name(), &o.report.history))
        .collect();
    args.common.write_metrics(&histories)?;
    dann::pictures(&args.common.out(), &task, &outcomes, seed)?;
    report.finish(args.common.json, &args.common.out())
}

/// `--save`: the run's kept network (the label-free selected checkpoint) as a package.
fn save_outcome(
    args: &Args,
    task: &Task,
    input: &InputSpec,
    o: &dann::Outcome,
    metrics: &[(String, f64)],
) -> anyhow::Result<()> {
    if args.save.save.is_none() {
        return Ok(());
    }
    let n = o.net.num_classes();
    let names = common::class_names(task.source.class_names(), n);
    let mut data = vec![("task", task.name.as_str())];
    if let Some(t) = &args.target_test {
        data.push(("target_test", t.as_str()));
    }
    let metrics: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let settings = serde_json::json!({
        "steps": o.report.total_steps,
        "selection": o.selection.map(|s| s.to_string()),
        "config": task.cfg.clone().with_method(o.method),
    });
    let prov = common::provenance(
        o.method.name(),
        &data,
        args.common.seed,
        &metrics,
        settings,
        o.net.spec(),
    );
    let info = ModelInfo::new(names, input.clone()).with_provenance(prov);
    args.save.save(o.method.name(), &o.net, &info)
}
