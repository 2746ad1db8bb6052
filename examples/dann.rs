//! Domain-adversarial training (DANN, Ganin & Lempitsky 2015) against its source-only
//! baseline, on the same data, the same initial weights and the same batches.
//!
//! ```text
//! cargo run --release --example dann -- --task moons:35
//! cargo run --release --example dann -- --task synth-to-digits --seed 1 --json
//! cargo run --release --example dann -- --task digits-rot:30
//! cargo run --release --example dann -- --source csv:a.csv --target csv:b.csv [--target-test SPEC] [--model mlp|cnn|lenet]
//! ```
//!
//! Target labels are read only at the end, to report `target_acc`; training sees the target
//! as unlabelled inputs. Pictures (training curves, PCA of the features by domain and class
//! for source-only and DANN) go to `--out` (default `target/xfer-report/`).

mod common;

use std::path::Path;

use anyhow::{Context, bail};
use clap::Parser;
use common::{CommonArgs, Report};
use xfer::data::{TensorDataset, embedded, spec, stratified_split};
use xfer::prelude::*;
use xfer::train::methods::dann::{
    self, Architecture, DannConfig, DannMethod, DannModel, DiscriminatorConfig, Selection,
};
use xfer::train::plot::{EmbeddingPanel, plot_embedding, plot_history};

#[derive(Debug, Parser)]
#[command(about = "DANN vs source-only on a built-in task or on your own data")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Built-in task: moons[:DEG] | synth-to-digits | digits-rot:DEG.
    #[arg(long, conflicts_with_all = ["source", "target"])]
    task: Option<String>,
    /// Labelled source data (a data spec: moons:DEG, optdigits, csv:PATH, idx:..., folder:..., safetensors:...).
    #[arg(long, requires = "target")]
    source: Option<String>,
    /// Target data (its labels are used only for the final report).
    #[arg(long, requires = "source")]
    target: Option<String>,
    /// Labelled target test data; by default half of the target is held out (seeded, stratified).
    #[arg(long, requires = "target")]
    target_test: Option<String>,
    /// Network: mlp (feature vectors), cnn or lenet (images); by default chosen from the data.
    #[arg(long)]
    model: Option<String>,
    /// Points per domain of the moons task (150 in the paper).
    #[arg(long, default_value_t = embedded::moons::MOONS_PER_DOMAIN)]
    points: usize,
    /// Hidden widths of the MLP, e.g. 64,64.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Activation of the MLP's hidden layers: relu, tanh, sigmoid, gelu.
    #[arg(long)]
    activation: Option<String>,
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
    /// Multiplier of λ_p.
    #[arg(long)]
    lambda_max: Option<f64>,
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
    /// Which weights to keep: last | min-target-entropy | max-source-val-acc.
    #[arg(long)]
    selection: Option<String>,
    /// Batch norm in the domain classifier (true/false).
    #[arg(long)]
    disc_batch_norm: Option<bool>,
}

/// The data of one comparison.
struct Task {
    name: String,
    source: TensorDataset,
    source_test: TensorDataset,
    target: TensorDataset,
    target_test: TensorDataset,
    cfg: DannConfig,
}

/// Sub-seeds for the data sets of a task (distinct from every training seed).
fn data_seed(seed: u64, k: u64) -> u64 {
    xfer::train::derive_seed(seed, &[0x5441_534B, k])
}

fn moons_task(deg: f64, points: usize, seed: u64, quick: bool) -> anyhow::Result<Task> {
    let noise = embedded::moons::MOONS_NOISE;
    let source = embedded::moons(points, noise, 0.0, data_seed(seed, 0))?;
    let target = embedded::moons(points, noise, deg, data_seed(seed, 0))?;
    let n_test = if quick { 300 } else { 1000 };
    let source_test = embedded::moons(n_test, noise, 0.0, data_seed(seed, 1))?;
    let target_test = embedded::moons(n_test, noise, deg, data_seed(seed, 1))?;
    // Tuned on label-free scores only (source validation accuracy, target prediction
    // entropy); see docs/methods-dann.md.
    let cfg = DannConfig {
        steps: if quick { 300 } else { 3000 },
        batch_size: 64,
        lr: 0.05,
        weight_decay: 1e-3,
        discriminator: DiscriminatorConfig {
            hidden: 64,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
        },
        eval_every: 100,
        selection: Selection::MinTargetEntropy,
        ..DannConfig::paper(Architecture::mlp(&[32, 32]))
    };
    Ok(Task {
        name: format!("moons:{deg}"),
        source,
        source_test,
        target,
        target_test,
        cfg,
    })
}

/// Digits with values 0..16 scaled to [0, 1].
fn unit(ds: TensorDataset) -> TensorDataset {
    ds.scale(1.0 / 16.0)
}

fn digits_cfg(quick: bool) -> DannConfig {
    DannConfig {
        steps: if quick { 150 } else { 3000 },
        batch_size: 64,
        lr: 0.02,
        discriminator: DiscriminatorConfig {
            hidden: 256,
            depth: 2,
            batch_norm: true,
            dropout: 0.0,
        },
        eval_every: if quick { 50 } else { 250 },
        ..DannConfig::paper(Architecture::cnn())
    }
}

fn synth_to_digits_task(seed: u64, quick: bool) -> anyhow::Result<Task> {
    let per_class = if quick { 60 } else { 300 };
    let synth = unit(embedded::synth_digits(per_class, data_seed(seed, 0))?);
    let (source, source_test) = stratified_split(&synth, 0.2, data_seed(seed, 1))?;
    let real = unit(embedded::optdigits()?);
    let (target, target_test) = stratified_split(&real, 0.5, data_seed(seed, 2))?;
    Ok(Task {
        name: "synth-to-digits".into(),
        source,
        source_test,
        target,
        target_test,
        cfg: digits_cfg(quick),
    })
}

fn digits_rot_task(deg: f32, seed: u64, quick: bool) -> anyhow::Result<Task> {
    let real = unit(embedded::optdigits()?);
    let (a, b) = stratified_split(&real, 0.5, data_seed(seed, 0))?;
    let (source, source_test) = stratified_split(&a, 0.2, data_seed(seed, 1))?;
    let rotated = embedded::shifted::rotate(&b, deg)?;
    let (target, target_test) = stratified_split(&rotated, 0.5, data_seed(seed, 2))?;
    Ok(Task {
        name: format!("digits-rot:{deg}"),
        source,
        source_test,
        target,
        target_test,
        cfg: digits_cfg(quick),
    })
}

fn builtin_task(task: &str, points: usize, seed: u64, quick: bool) -> anyhow::Result<Task> {
    let (kind, arg) = match task.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (task, None),
    };
    let number = |what: &str, default: Option<f64>| -> anyhow::Result<f64> {
        match (arg, default) {
            (Some(a), _) => a
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("--task {task}: {what} `{a}` is not a number")),
            (None, Some(d)) => Ok(d),
            (None, None) => bail!("--task {task}: give the {what}, e.g. {kind}:30"),
        }
    };
    match kind {
        "moons" => moons_task(
            number("rotation in degrees", Some(35.0))?,
            points,
            seed,
            quick,
        ),
        "synth-to-digits" => synth_to_digits_task(seed, quick),
        "digits-rot" => digits_rot_task(number("rotation in degrees", None)? as f32, seed, quick),
        _ => bail!("unknown --task `{task}`: moons[:DEG] | synth-to-digits | digits-rot:DEG"),
    }
}

fn spec_task(args: &Args, source_spec: &str, target_spec: &str) -> anyhow::Result<Task> {
    let (source, target) = (source_spec, target_spec);
    let seed = args.common.seed;
    let quick = args.common.quick;
    let src =
        spec::load(source, data_seed(seed, 0)).with_context(|| format!("--source {source}"))?;
    let tgt =
        spec::load(target, data_seed(seed, 1)).with_context(|| format!("--target {target}"))?;
    spec::check_compatible(&src, &tgt)?;
    let (target, target_test) = match &args.target_test {
        Some(t) => {
            let test =
                spec::load(t, data_seed(seed, 2)).with_context(|| format!("--target-test {t}"))?;
            spec::check_compatible(&src, &test)?;
            (tgt, test)
        }
        None => stratified_split(&tgt, 0.5, data_seed(seed, 3))?,
    };
    // Issue 8: print each domain's range, warn when they differ by more than 10×, and bring
    // every set to the source's scale (largest magnitude 1), all by the same factor.
    let k = common::feature_scale(&[
        ("source", &src),
        ("target", &target),
        ("target test", &target_test),
    ]);
    let (src, target, target_test) = (src.scale(k), target.scale(k), target_test.scale(k));
    let (source_ds, source_test) = stratified_split(&src, 0.2, data_seed(seed, 4))?;
    let arch = Architecture::auto(source_ds.sample_shape(), &[64, 64])?;
    let mut cfg = match arch {
        Architecture::Mlp { .. } => DannConfig {
            batch_size: 32,
            lr: 0.02,
            discriminator: DiscriminatorConfig {
                hidden: 64,
                depth: 2,
                batch_norm: true,
                dropout: 0.0,
            },
            ..DannConfig::paper(arch)
        },
        _ => DannConfig {
            arch,
            ..digits_cfg(quick)
        },
    };
    if quick {
        cfg.steps = 200;
        cfg.eval_every = 50;
    }
    Ok(Task {
        name: format!("{source_spec}->{target_spec}"),
        source: source_ds,
        source_test,
        target,
        target_test,
        cfg,
    })
}

/// Applies the command-line overrides to the task's configuration.
fn apply_overrides(args: &Args, task: &mut Task) -> anyhow::Result<()> {
    let cfg = &mut task.cfg;
    if let Some(m) = &args.model {
        let hidden = match &cfg.arch {
            Architecture::Mlp { hidden, .. } => hidden.clone(),
            _ => vec![64, 64],
        };
        cfg.arch = match m.as_str() {
            "mlp" => Architecture::mlp(&hidden),
            "cnn" => Architecture::cnn(),
            "lenet" => Architecture::lenet(),
            _ => bail!("--model {m}: expected mlp, cnn or lenet"),
        };
    }
    if let Some(h) = &args.hidden {
        match &mut cfg.arch {
            Architecture::Mlp { hidden, .. } => *hidden = h.clone(),
            _ => bail!(
                "--hidden applies to the mlp model (this run uses {})",
                cfg.arch.name()
            ),
        }
    }
    if let Some(a) = &args.activation {
        match &mut cfg.arch {
            Architecture::Mlp { activation, .. } => *activation = a.parse()?,
            _ => bail!(
                "--activation applies to the mlp model (this run uses {})",
                cfg.arch.name()
            ),
        }
    }
    if let Some(v) = args.steps {
        cfg.steps = v;
        cfg.eval_every = cfg.eval_every.min(v.max(1));
    }
    if let Some(v) = args.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.weight_decay {
        cfg.weight_decay = v;
    }
    if let Some(v) = args.gamma {
        cfg.gamma = v;
    }
    if let Some(v) = args.lambda_max {
        cfg.lambda_max = v;
    }
    if let Some(v) = args.disc_hidden {
        cfg.discriminator.hidden = v;
    }
    if let Some(v) = args.disc_depth {
        cfg.discriminator.depth = v;
    }
    if let Some(v) = args.disc_lr_mult {
        cfg.disc_lr_mult = v;
    }
    if let Some(v) = args.eval_every {
        cfg.eval_every = v;
    }
    if let Some(v) = &args.selection {
        cfg.selection = match v.as_str() {
            "last" => Selection::Last,
            "min-target-entropy" => Selection::MinTargetEntropy,
            "max-source-val-acc" => Selection::MaxSourceValAcc,
            _ => bail!("--selection {v}: last | min-target-entropy | max-source-val-acc"),
        };
    }
    if let Some(v) = args.disc_batch_norm {
        cfg.discriminator.batch_norm = v;
    }
    Ok(())
}

/// At most `n` rows of `ds` (seeded), for pictures.
fn sample_rows(ds: &TensorDataset, n: usize, seed: u64) -> anyhow::Result<TensorDataset> {
    if ds.len() <= n {
        return Ok(ds.clone());
    }
    let mut idx = SeededRng::new(seed).permutation(ds.len());
    idx.truncate(n);
    idx.sort_unstable();
    Ok(ds.subset(&idx)?)
}

fn pca_panel(
    title: &str,
    model: &DannModel,
    source: &TensorDataset,
    target: &TensorDataset,
) -> anyhow::Result<EmbeddingPanel> {
    let dev = model.device();
    let fs = model.features(&source.to_tensors(&dev)?.0)?;
    let ft = model.features(&target.to_tensors(&dev)?.0)?;
    let f = Tensor::cat(&[&fs, &ft], 0)?;
    let domains: Vec<usize> = std::iter::repeat_n(0, source.len())
        .chain(std::iter::repeat_n(1, target.len()))
        .collect();
    let classes: Vec<usize> = source
        .labels()
        .iter()
        .chain(target.labels())
        .map(|&c| c as usize)
        .collect();
    Ok(EmbeddingPanel::pca(title, &f, &domains, &classes)?)
}

fn pictures(out: &Path, task: &Task, models: &[DannModel], seed: u64) -> anyhow::Result<()> {
    let runs: Vec<(&str, &xfer::train::History)> = models
        .iter()
        .map(|m| (m.method.name(), &m.report.history))
        .collect();
    for metric in [
        "class_loss",
        "domain_acc",
        "source_val_acc",
        "target_entropy",
        "lambda",
    ] {
        plot_history(
            &out.join(format!("dann-{metric}.png")),
            &format!("{} — {metric}", task.name),
            &runs,
            metric,
        )?;
    }
    let s = sample_rows(&task.source_test, 400, seed)?;
    let t = sample_rows(&task.target_test, 400, seed)?;
    let panels = models
        .iter()
        .map(|m| {
            let title = match m.method {
                DannMethod::SourceOnly => "before: source-only features",
                DannMethod::Dann => "after: DANN features",
            };
            pca_panel(title, m, &s, &t)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    plot_embedding(
        &out.join("dann-features-pca.png"),
        &format!("{}: features by domain and class", task.name),
        &panels,
        &["source", "target"],
    )?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.common.init()?;
    let seed = args.common.seed;
    let quick = args.common.quick;
    let mut task = match (&args.task, &args.source, &args.target) {
        (Some(t), _, _) => {
            let task = builtin_task(t, args.points, seed, quick)?;
            common::feature_scale(&[("source", &task.source), ("target", &task.target)]);
            task
        }
        (None, Some(s), Some(t)) => spec_task(&args, s, t)?,
        (None, None, None) => {
            let task = builtin_task("moons:35", args.points, seed, quick)?;
            common::feature_scale(&[("source", &task.source), ("target", &task.target)]);
            task
        }
        _ => bail!("give --task, or both --source and --target"),
    };
    apply_overrides(&args, &mut task)?;
    println!(
        "{}: source {} train / {} test, target {} unlabelled / {} test, model {}, {} steps",
        task.name,
        task.source.len(),
        task.source_test.len(),
        task.target.len(),
        task.target_test.len(),
        task.cfg.arch.name(),
        task.cfg.steps
    );
    let dev = Device::Cpu;
    let mut report = Report::new("dann", seed);
    report.arg("task", task.name.as_str());
    report.arg("model", task.cfg.arch.name());
    report.arg("steps", task.cfg.steps);
    report.arg("quick", quick);
    let target_unlabeled = task.target.unlabeled();
    let mut models = Vec::new();
    for method in [DannMethod::SourceOnly, DannMethod::Dann] {
        let t0 = std::time::Instant::now();
        let (model, result) = dann::run(
            method,
            &task.cfg,
            &task.source,
            &target_unlabeled,
            &task.source_test,
            &task.target_test,
            seed,
            &dev,
        )?;
        let mut metrics = result.metrics();
        metrics.push(("seconds", t0.elapsed().as_secs_f64()));
        report.run(method.name(), &metrics);
        models.push(model);
    }
    pictures(&args.common.out, &task, &models, seed)?;
    report.finish(args.common.json, &args.common.out)?;
    Ok(())
}
