//! Fine-tuning with little target data (LECTURE.md §1): pretrain on the source, then train on
//! `K` labelled target examples per class with each method, and test on the rest of the target.
//!
//! ```text
//! cargo run --release --example finetune -- --method all --shots 1
//! cargo run --release --example finetune -- --method scratch,l2sp,layer-transfer:2 --shots 5 --json
//! cargo run --release --example finetune -- --source csv:mine.csv --target idx:t-images-idx3-ubyte:scale=0.0627
//! cargo run --release --example finetune -- --backbone resnet18:weights=resnet18.safetensors \
//!     --target folder:photos --shots 10 --image-size 128 --method l2sp,finetune,linear
//! cargo run --release --example finetune -- --shots 0.2 --method finetune
//! cargo run --release --example finetune -- --train csv:train.csv --val csv:val.csv --test csv:test.csv
//! ```
//!
//! `--shots K` takes K labelled target examples per class (a class with fewer gives all it
//! has, with a warning), `--shots 0.2` a fifth of every class (at least one), `--shots all`
//! every example (then give `--test`). With your own splits, `--train SPEC` replaces the draw
//! from `--target`, `--test SPEC` (= `--target-test`) is the test set, and `--val SPEC` is
//! measured after training and reported as `val_acc` (the target stage has no early
//! stopping to feed).
//!
//! With a pretrained backbone (`weights=`, or a text model folder) the loaded network *is* the
//! source model: there is no source data and no pretraining; every method starts from it with
//! a new head for the target's classes (`linear` trains only that head on frozen features).
//!
//! Source: synthetic digits (default `synth-digits:n=500`, 5,000 generated digits); target:
//! the embedded optdigits (1,797 real digits). Methods: `scratch`, `finetune`, `l2sp`,
//! `distill`, `layer-transfer:[first:|last:]K[:lr=X]`, comma-separated, or `all`.

mod common;

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use xfer::data;

use xfer::data::preset::{IMAGENET_MEAN, IMAGENET_STD};
use xfer::data::transform::{
    CenterCrop, Compose, Normalize, RandomHorizontalFlip, ResizeShortSide,
};
use xfer::data::{Data, Dataset, LabeledSet, Preprocess, Shots, Transform};
use xfer::models::{BackboneSpec, Classifier, ClassifierConfig, InputSpec, ModelInfo};
use xfer::prelude::*;
use xfer::train::Stage;
use xfer::train::methods::finetune::{
    self, FinetuneConfig, Length, Method, OptimizerKind, Outcome, Pretrained, RunCtx, TargetData,
    accuracy, eval_view, pretrain,
};
use xfer::train::plot::{Series, plot_curves};
use xfer::train::text::token_dataset;

/// An optimiser of the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Optim {
    /// SGD with momentum 0.9.
    Sgd,
    /// Adam with PyTorch's defaults.
    Adam,
}

#[derive(Debug, Parser)]
#[command(about = "Fine-tuning: scratch, full fine-tuning, L2-SP, distillation, layer transfer")]
struct Args {
    /// Methods, comma-separated, or `all`.
    #[arg(long, default_value = "scratch,finetune,l2sp,distill,layer-transfer:2")]
    method: String,
    /// Labelled target examples that train: K per class (a class with fewer gives all it
    /// has), a fraction of every class such as 0.2 (at least one each), or `all`.
    #[arg(long, default_value = "1")]
    shots: Shots,
    /// The source data (labelled, plentiful): a data spec (see docs/data.md).
    #[arg(long, default_value = "synth-digits:n=500")]
    source: String,
    /// The target data: `--shots` per class are the labelled training set, the rest the test
    /// set (unless `--target-test` is given).
    #[arg(long, default_value = "optdigits")]
    target: String,
    /// A separate target test set (`--test` is the same flag).
    #[arg(long, visible_alias = "test")]
    target_test: Option<String>,
    /// Your own labelled training split: replaces the --shots draw from --target (needs
    /// --test).
    #[arg(long, value_name = "SPEC", requires = "target_test", conflicts_with_all = ["shots", "val_fold"])]
    train: Option<String>,
    /// A labelled validation set: measured after training and reported as `val_acc`.
    #[arg(long, value_name = "SPEC", conflicts_with = "val_fold")]
    val: Option<String>,
    /// The network: `cnn` (square images), `mlp[:W1,W2,...]`, `lenet`,
    /// `resnet18|34|50[:weights=PATH]`, `mobilenet_v2[:weights=PATH]`,
    /// `efficientnet_lite0[:weights=PATH]`, `minilm:DIR`; default by input shape.
    #[arg(long, alias = "model")]
    backbone: Option<String>,
    /// Side of the (square) network input for pretrained image backbones: images are resized
    /// (short side to 8/7 of it) and centre-cropped to it.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Learning-rate multiplier of a pretrained backbone relative to its new head.
    #[arg(long)]
    backbone_lr_mult: Option<f64>,
    /// Fraction of the source held out for early stopping of the pretraining.
    #[arg(long, default_value_t = 0.1)]
    source_val: f64,
    /// Tuning mode (with --shots K): hold out the F-th labelled target example of every class
    /// (F in 0..K) as validation data, train on the other `K − 1`, and report `val_acc`
    /// (the target test set is not used). Run every F for a cross-validation.
    #[arg(long, value_name = "F")]
    val_fold: Option<usize>,
    /// Keep pretrained source models in this folder and reuse them (same source, model,
    /// seed and pretraining settings).
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
    /// Learning rate of the target stage (methods that start from the source).
    #[arg(long)]
    lr: Option<f64>,
    /// Epochs of the target stage (methods that start from the source).
    #[arg(long)]
    epochs: Option<usize>,
    /// Optimiser of the target stage (SGD with momentum 0.9, or Adam).
    #[arg(long, value_enum)]
    optim: Option<Optim>,
    /// Mini-batch size of the target stage and of scratch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate of the scratch baseline.
    #[arg(long)]
    scratch_lr: Option<f64>,
    /// Epochs of the scratch baseline.
    #[arg(long)]
    scratch_epochs: Option<usize>,
    /// Optimiser of the scratch baseline.
    #[arg(long, value_enum)]
    scratch_optim: Option<Optim>,
    /// Weight decay of the target stage and of scratch.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Epochs of pretraining on the source (early stopping on source validation accuracy).
    #[arg(long)]
    pretrain_epochs: Option<usize>,
    /// Augment the training images. Built-in networks: random affine maps of the source
    /// images during pretraining, `DEG,SHIFT,SCALE_LO,SCALE_HI` (rotation in degrees, shift as
    /// a fraction of the size, scale range), e.g. `10,0.1,0.9,1.1`. Pretrained image
    /// backbones: `crop`, random resized crops instead of the random horizontal flip.
    #[arg(long)]
    augment: Option<String>,
    #[command(flatten)]
    save: common::SaveArgs,
    #[command(flatten)]
    checkpoints: common::CheckpointArgs,
    #[command(flatten)]
    common: common::CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("finetune", &matches)?;
    let seed = args.common.seed;
    let dev = args.common.device()?;
    let spec = args
        .backbone
        .as_deref()
        .map(str::parse::<BackboneSpec>)
        .transpose()?;
    if let Some(spec) = spec.as_ref().filter(|s| s.is_pretrained()) {
        return run_pretrained(&args, spec, &dev);
    }

    // Data: the source, the target's training set (the --shots draw, or --train), its test
    // set and the optional validation set.
    let mut source = data::load(&args.source, seed)?;
    let (target, mut support, mut test) = match &args.train {
        Some(spec) => {
            let train = data::load(spec, seed).with_context(|| format!("--train {spec}"))?;
            (train.clone(), train, None)
        }
        None => {
            let target = data::load(&args.target, seed)
                .with_context(|| format!("--target {}", args.target))?;
            let (support, rest) = data::split_shots(&target, args.shots, seed)?;
            (target, support, Some(rest))
        }
    };
    if let Some(spec) = &args.target_test {
        test = Some(data::load(spec, seed).with_context(|| format!("--test {spec}"))?);
    }
    let mut test = test.filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "--shots {} leaves no target example to test: give --test SPEC",
            args.shots
        )
    })?;
    let val = args
        .val
        .as_deref()
        .map(|spec| data::load(spec, seed).with_context(|| format!("--val {spec}")))
        .transpose()?;
    let validate = args.val_fold.is_some();
    if let Some(fold) = args.val_fold {
        let k = match args.shots {
            Shots::PerClass(k) => k,
            _ => 0,
        };
        anyhow::ensure!(
            k >= 2 && fold < k,
            "--val-fold F holds out the F-th labelled example of every class: it needs \
             --shots K with K 2 or more and F < K"
        );
        // Validation = one of the labelled examples of every class; the test set is not used.
        let mut seen = vec![0usize; support.num_classes()];
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (i, &y) in support.labels().iter().enumerate() {
            let k = seen.get_mut(y as usize).map(|c| {
                *c += 1;
                *c - 1
            });
            if k == Some(fold) {
                val.push(i)
            } else {
                train.push(i)
            }
        }
        test = support.subset(&val)?;
        support = support.subset(&train)?;
    }
    data::check_compatible(&source, &target)?;
    data::check_compatible(&target, &test)?;
    if let Some(v) = &val {
        data::check_compatible(&target, v)?;
    }
    if args.common.quick {
        // 100 source digits per class.
        let (keep, _) = data::stratified_split(&source, 0.8, seed)?;
        source = keep;
    }
    let scale = common::feature_scale(&[("source", &source), ("target", &target)]);
    let (src_train, src_val) = data::stratified_split(&source, args.source_val, seed)?;
    let (src_train, src_val, support_t, test_t) = (
        src_train.scale(scale),
        src_val.scale(scale),
        support.clone().scale(scale),
        test.clone().scale(scale),
    );
    let val_t = val.map(|v| v.scale(scale));
    // The source model has the source's classes; the target models the target's (a new head
    // when they differ).
    let num_classes = [Some(&target), Some(&test), val_t.as_ref()]
        .into_iter()
        .flatten()
        .map(|d| d.num_classes())
        .max()
        .unwrap_or(0);
    let source_classes = source.num_classes();

    let arch = spec.unwrap_or_else(|| BackboneSpec::for_input(source.sample_shape()));
    let mut cfg = FinetuneConfig::new(arch.clone());
    let ctx = run_ctx(&args, &dev);
    if let Some(a) = &args.augment {
        let v: Vec<f32> = a
            .split(',')
            .map(|x| x.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let [degrees, translate, scale_lo, scale_hi] = v[..] else {
            anyhow::bail!(
                "--augment {a}: the built-in networks take DEG,SHIFT,SCALE_LO,SCALE_HI, e.g. \
                 10,0.1,0.9,1.1 (`crop` is for pretrained image backbones)"
            );
        };
        cfg.pretrain_transform = Some(std::sync::Arc::new(data::transform::RandomAffine {
            degrees,
            translate,
            scale: (scale_lo, scale_hi),
        }));
    }
    if args.common.quick {
        cfg.pretrain.length = Length::Epochs(5);
        cfg.finetune.length = Length::Epochs(30);
        cfg.scratch.length = Length::Epochs(100);
    }
    apply_stage_flags(&args, &mut cfg);
    if let Some(v) = args.pretrain_epochs {
        cfg.pretrain.length = Length::Epochs(v);
    }
    let num_blocks = Classifier::new(
        &ClassifierConfig::new(arch.clone(), source.sample_shape(), source_classes),
        0,
        &dev,
    )?
    .blocks()
    .len();
    let methods = Method::parse_list(&args.method, num_blocks)?;

    println!(
        "source {} ({} train, {} validation), target {} ({} labelled: {}, {} test{}), model {arch}",
        source.name(),
        src_train.len(),
        src_val.len(),
        target.name(),
        support_t.len(),
        shots_label(&args),
        test_t.len(),
        val_t
            .as_ref()
            .map(|v| format!(", {} validation", v.len()))
            .unwrap_or_default()
    );

    let mut report = data_report(&args);
    report
        .arg(
            "val_fold",
            args.val_fold.map_or(serde_json::Value::Null, |f| f.into()),
        )
        .arg("source", args.source.as_str())
        .arg("model", arch.to_string());

    let pretrained = if methods.iter().any(Method::needs_source) {
        let t = std::time::Instant::now();
        let key = format!(
            "{}|{}|{}|{:?}|{}|{}|{:?}",
            args.source, arch, seed, cfg.pretrain, args.source_val, args.common.quick, args.augment
        );
        let cached = args.cache.as_ref().map(|dir| {
            // FNV-1a of the settings names the file.
            let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            dir.join(format!("pretrained-{h:016x}.safetensors"))
        });
        let p = match &cached {
            Some(path) if path.exists() => {
                let p = Pretrained::load(path, &arch, source.sample_shape(), source_classes, &dev)?;
                println!("loaded the source model from {}", path.display());
                p
            }
            _ => {
                let p = pretrain(&src_train, Some(&src_val), source_classes, &cfg, &ctx)?;
                println!(
                    "pretrained on the source in {:.1}s: {} steps",
                    t.elapsed().as_secs_f64(),
                    p.report.as_ref().map_or(0, |r| r.steps),
                );
                if let Some(path) = &cached {
                    p.save(path)?;
                }
                p
            }
        };
        println!(
            "source validation accuracy {:.4}",
            p.source_val_acc.unwrap_or(f64::NAN)
        );
        Some(p)
    } else {
        None
    };

    let names = common::class_names(target.class_names(), num_classes);
    let saver = Saver {
        args: &args,
        class_names: names,
        input: InputSpec::tensor(scale),
        spec: &arch,
    };
    let target = TargetData::new(support_t, test_t, num_classes);
    let outcomes = run_methods(
        &methods,
        pretrained.as_ref(),
        &target,
        val_t.as_ref(),
        &cfg,
        &ctx,
        validate,
        &mut report,
        &saver,
    )?;
    if let Some(p) = &pretrained {
        report.arg("source_val_acc", p.source_val_acc.unwrap_or(f64::NAN));
    }
    write_metrics(&args, pretrained.as_ref(), &outcomes)?;
    plot_runs(&args.common.out(), &shots_label(&args), &outcomes)?;
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}

/// What trains, for messages and file names: `5 per class`, `0.2 of each class`, `all`, or
/// `--train SPEC`.
fn shots_label(args: &Args) -> String {
    match (&args.train, args.shots) {
        (Some(spec), _) => format!("--train {spec}"),
        (None, Shots::PerClass(k)) => format!("{k} per class"),
        (None, Shots::Fraction(f)) => format!("{f} of each class"),
        (None, Shots::All) => "all".into(),
    }
}

/// `--shots` in the report: K (a number), the fraction (a number), `"all"`, or `null` with
/// `--train`.
fn shots_json(args: &Args) -> serde_json::Value {
    match (&args.train, args.shots) {
        (Some(_), _) => serde_json::Value::Null,
        (None, Shots::PerClass(k)) => k.into(),
        (None, Shots::Fraction(f)) => f.into(),
        (None, Shots::All) => "all".into(),
    }
}

/// `metrics.csv` of the run folder: the pretraining's history (run `pretrain`) and every
/// method's.
fn write_metrics(
    args: &Args,
    pretrained: Option<&Pretrained>,
    outcomes: &[Outcome],
) -> anyhow::Result<()> {
    let mut runs: Vec<(&str, &xfer::train::History)> = Vec::new();
    if let Some(r) = pretrained.and_then(|p| p.report.as_ref()) {
        runs.push(("pretrain", &r.history));
    }
    runs.extend(
        outcomes
            .iter()
            .map(|o| (o.name.as_str(), &o.report.history)),
    );
    args.common.write_metrics(&runs)
}

/// Training curves of every run: the loss per step, and the cross-entropy part.
fn plot_runs(out: &Path, shots: &str, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let tag: String = match shots.split_once(' ') {
        Some((k, "per class")) => format!("{k}shot"),
        _ if shots == "all" => "all".into(),
        _ if shots.starts_with("--train") => "train".into(),
        _ => format!("{}frac", shots.split(' ').next().unwrap_or("")),
    };
    for metric in ["loss", "ce"] {
        let series: Vec<Series> = outcomes
            .iter()
            .map(|o| Series::new(o.name.clone(), o.report.history.step_curve(metric)))
            .collect();
        let path = out.join(format!("finetune-{tag}-{metric}.png"));
        plot_curves(
            &path,
            &format!("fine-tuning on {shots} labelled: {metric}"),
            "step",
            metric,
            &series,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The target-stage flags (`--lr`, `--epochs`, `--optim`, scratch and weight decay).
fn apply_stage_flags(args: &Args, cfg: &mut FinetuneConfig) {
    let optim = |o: Optim| match o {
        Optim::Sgd => OptimizerKind::Sgd { momentum: 0.9 },
        Optim::Adam => OptimizerKind::Adam,
    };
    if let Some(v) = args.lr {
        cfg.finetune.lr = v;
    }
    if let Some(v) = args.epochs {
        cfg.finetune.length = Length::Epochs(v);
    }
    if let Some(v) = args.optim {
        cfg.finetune.optimizer = optim(v);
    }
    if let Some(v) = args.scratch_lr {
        cfg.scratch.lr = v;
    }
    if let Some(v) = args.scratch_epochs {
        cfg.scratch.length = Length::Epochs(v);
    }
    if let Some(v) = args.scratch_optim {
        cfg.scratch.optimizer = optim(v);
    }
    if let Some(v) = args.weight_decay {
        cfg.finetune.weight_decay = v;
        cfg.scratch.weight_decay = v;
    }
    if let Some(v) = args.batch_size {
        cfg.finetune.batch_size = v;
        cfg.scratch.batch_size = v;
    }
    cfg.finetune.backbone_lr_mult = args.backbone_lr_mult;
}

/// The run context of the flags on `dev`: `--seed`, no progress bars with `--json`, and the
/// checkpoint flags.
fn run_ctx(args: &Args, dev: &Device) -> RunCtx {
    RunCtx::new(dev.clone())
        .with_seed(args.common.seed)
        .with_quiet(args.common.json)
        .with_checkpoints(args.checkpoints.options())
}

/// Runs every method on the target's labelled examples, tests it, prints a line per method
/// and records it in the report.
#[allow(clippy::too_many_arguments)]
fn run_methods<D: Dataset + Clone + 'static>(
    methods: &[Method],
    pretrained: Option<&Pretrained>,
    target: &TargetData<D>,
    val: Option<&D>,
    cfg: &FinetuneConfig,
    ctx: &RunCtx,
    validate: bool,
    report: &mut common::Report,
    saver: &Saver,
) -> anyhow::Result<Vec<Outcome>> {
    let num_classes = target.num_classes;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for m in methods {
        if let Some(why) = m.unsupported(pretrained, num_classes) {
            println!("{:>24}: skipped: {why}", m.name());
            continue;
        }
        let t = std::time::Instant::now();
        let o = finetune::run(
            &cfg.clone().with_method(m.clone()),
            &finetune::Data::new(pretrained, target),
            ctx,
        )?;
        println!(
            "{:>24}: target accuracy {:.4} (train {:.4}){}  [{:.1}s]",
            o.name,
            o.target_acc,
            o.train_acc,
            o.source_only_acc
                .map(|a| format!(", source model before training {a:.4}"))
                .unwrap_or_default(),
            t.elapsed().as_secs_f64()
        );
        if let Some(tr) = o.transfer.as_ref().filter(|_| !o.copied_blocks.is_empty()) {
            println!(
                "{:>24}  copied blocks [{}]: {} tensors; re-initialised: {}",
                "",
                o.copied_blocks.join(", "),
                tr.copied.len(),
                tr.not_selected.len()
            );
        }
        let acc_key = if validate { "val_acc" } else { "target_acc" };
        let mut metrics = vec![(acc_key, o.target_acc), ("train_acc", o.train_acc)];
        if let Some(v) = val {
            let a = accuracy(&o.net, &eval_view(v, cfg)?)?;
            println!("{:>24}  validation accuracy {a:.4}", "");
            metrics.push(("val_acc", a));
        }
        if let Some(a) = o.source_only_acc {
            metrics.push(("source_only_acc", a));
        }
        report.run(&o.name, &metrics);
        saver.save(&o, &metrics, m.stage(cfg))?;
        outcomes.push(o);
    }
    Ok(outcomes)
}

/// Fine-tuning from a pretrained backbone: no source data; the target's `--shots` labelled
/// examples per class train, the rest test. Images (a folder, lazily decoded) go through the
/// backbone's preset; texts through its tokenizer.
fn run_pretrained(args: &Args, spec: &BackboneSpec, dev: &Device) -> anyhow::Result<()> {
    if let Some(a) = args
        .augment
        .as_deref()
        .filter(|a| *a != "crop" || spec.is_text())
    {
        anyhow::bail!("--augment {a}: a pretrained backbone takes only `--augment crop` (images)");
    }
    let seed = args.common.seed;
    let image_spec = |s: &str| -> String {
        let folder = s.starts_with("folder:") || s.starts_with("images:");
        if !spec.is_text() && folder && !s.contains("channels=") {
            // An RGB backbone reads every image as RGB (grayscale repeated).
            format!("{s}:channels=3")
        } else {
            s.to_string()
        }
    };
    let load = |flag: &str, s: &str| -> anyhow::Result<Data> {
        let d = data::load_data(&image_spec(s), seed).with_context(|| format!("{flag} {s}"))?;
        data::require_labels(&d, "fine-tuning").with_context(|| format!("{flag} {s}"))?;
        Ok(d)
    };
    let (main_flag, main_spec) = match &args.train {
        Some(t) => ("--train", t.as_str()),
        None => ("--target", args.target.as_str()),
    };
    let main = load(main_flag, main_spec)?;
    let test = args
        .target_test
        .as_deref()
        .map(|s| load("--test", s))
        .transpose()?;
    let val = args.val.as_deref().map(|s| load("--val", s)).transpose()?;
    let kind_error =
        |what: &str| anyhow::anyhow!("--test and --val must be {what} like {main_flag}");
    match main {
        Data::Text(t) => {
            let tok = spec
                .tokenizer()?
                .ok_or_else(|| anyhow::anyhow!("backbone {spec} does not read text"))?;
            let conv = |d: Option<Data>| -> anyhow::Result<_> {
                match d {
                    Some(Data::Text(t)) => Ok(Some(token_dataset(&t, &tok)?)),
                    Some(_) => Err(kind_error("text")),
                    None => Ok(None),
                }
            };
            let (test, val) = (conv(test)?, conv(val)?);
            run_pretrained_on(args, spec, dev, token_dataset(&t, &tok)?, test, val, None)
        }
        _ if spec.is_text() => {
            anyhow::bail!("backbone {spec} reads text: give `--target csv:PATH:text=COL,label=COL`")
        }
        Data::Images(f) => {
            let conv = |d: Option<Data>| -> anyhow::Result<_> {
                match d {
                    Some(Data::Images(t)) => Ok(Some(t)),
                    Some(_) => Err(kind_error("an image folder")),
                    None => Ok(None),
                }
            };
            let (test, val) = (conv(test)?, conv(val)?);
            let tf = image_transforms(args, spec)?;
            run_pretrained_on(args, spec, dev, f, test, val, Some(tf))
        }
        Data::Tensors(t) => {
            let test = test.map(Data::into_tensors).transpose()?;
            let val = val.map(Data::into_tensors).transpose()?;
            let tf = image_transforms(args, spec)?;
            run_pretrained_on(args, spec, dev, t, test, val, Some(tf))
        }
        Data::Unlabeled(u) => Err(data::DataError::Unlabeled {
            name: Dataset::name(&u).to_string(),
            what: "fine-tuning",
        }
        .into()),
    }
}

/// The training and evaluation transforms of a pretrained image backbone at `--image-size`:
/// resize the short side to 8/7 of it, centre crop, normalise with the statistics its weights
/// were trained with; training adds a random horizontal flip (or, with `--augment crop`, uses
/// random resized crops).
fn image_transforms(
    args: &Args,
    spec: &BackboneSpec,
) -> anyhow::Result<(Arc<dyn Transform>, Arc<dyn Transform>)> {
    let size = args.image_size;
    anyhow::ensure!(size >= 8, "--image-size must be at least 8");
    let (mean, std) = image_stats(spec);
    let preset = Preprocess::new(size, size * 8 / 7, mean.to_vec(), std.to_vec())?;
    let train: Arc<dyn Transform> = match args.augment.as_deref() {
        Some("crop") => preset.train_transform()?,
        _ => Arc::new(
            Compose::new()
                .then(ResizeShortSide {
                    size: preset.resize_size,
                })
                .then(CenterCrop {
                    height: size,
                    width: size,
                })
                .then(RandomHorizontalFlip { p: 0.5 })
                .then(Normalize::new(preset.mean.clone(), preset.std.clone())?),
        ),
    };
    Ok((train, preset.eval_transform()?))
}

/// The report with the target data of the run: `shots`, `target` (none with `--train`),
/// `train`, `test` and `val` (null when not given).
fn data_report(args: &Args) -> common::Report {
    let opt = |v: Option<&str>| v.map_or(serde_json::Value::Null, Into::into);
    let mut report = common::Report::new("finetune", args.common.seed);
    report
        .arg("shots", shots_json(args))
        .arg(
            "target",
            opt(args.train.is_none().then_some(args.target.as_str())),
        )
        .arg("train", opt(args.train.as_deref()))
        .arg("test", opt(args.target_test.as_deref()))
        .arg("val", opt(args.val.as_deref()));
    report
}

/// The normalisation statistics of a pretrained image backbone (ImageNet's by default).
fn image_stats(spec: &BackboneSpec) -> ([f32; 3], [f32; 3]) {
    spec.preprocess()
        .map_or((IMAGENET_MEAN, IMAGENET_STD), |p| (p.mean, p.std))
}

/// `--save`: what every method's package shares.
struct Saver<'a> {
    args: &'a Args,
    class_names: Vec<String>,
    input: InputSpec,
    spec: &'a BackboneSpec,
}

impl Saver<'_> {
    /// Saves the method's network with its metrics and stage settings (when `--save`).
    fn save(&self, o: &Outcome, metrics: &[(&str, f64)], stage: &Stage) -> anyhow::Result<()> {
        let a = self.args;
        let mut data = vec![("target", a.target.as_str())];
        if let Some(t) = &a.target_test {
            data.push(("target_test", t.as_str()));
        }
        if !self.spec.is_pretrained() {
            data.push(("source", a.source.as_str()));
        }
        let settings = serde_json::json!({"shots": a.shots.to_string(), "stage": stage});
        let prov = common::provenance(&o.name, &data, a.common.seed, metrics, settings, self.spec);
        let info =
            ModelInfo::new(self.class_names.clone(), self.input.clone()).with_provenance(prov);
        a.save.save(&o.name, &o.net, &info)
    }
}

/// `target` is `--train` (all of it trains) or `--target` (the `--shots` draw trains, the
/// rest tests unless `--test` is given).
#[allow(clippy::too_many_arguments)]
fn run_pretrained_on<D: Dataset + LabeledSet + Clone + 'static>(
    args: &Args,
    spec: &BackboneSpec,
    dev: &Device,
    target: D,
    target_test: Option<D>,
    val: Option<D>,
    transforms: Option<(Arc<dyn Transform>, Arc<dyn Transform>)>,
) -> anyhow::Result<()> {
    let seed = args.common.seed;
    let (support, rest) = if args.train.is_some() {
        (target.clone(), None)
    } else {
        let (s, r) = data::split_shots(&target, args.shots, seed)?;
        (s, Some(r))
    };
    let test = target_test
        .or(rest)
        .filter(|t| !Dataset::is_empty(t))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--shots {} leaves no target example to test: give --test SPEC",
                args.shots
            )
        })?;
    let num_classes = [Some(&target), Some(&test), val.as_ref()]
        .into_iter()
        .flatten()
        .map(LabeledSet::num_classes)
        .max()
        .unwrap_or(0);
    let mut cfg = FinetuneConfig::new(spec.clone());
    let ctx = run_ctx(args, dev);
    // Pretrained-backbone defaults: 15 epochs of SGD (momentum 0.9) in batches of 10, head
    // lr 0.01 and backbone 0.001 (multiplier 0.1); scratch the same at one rate.
    for st in [&mut cfg.finetune, &mut cfg.scratch] {
        st.length = Length::Epochs(15);
        st.batch_size = 10;
        st.lr = 0.01;
        st.optimizer = OptimizerKind::Sgd { momentum: 0.9 };
    }
    if args.common.quick {
        cfg.finetune.length = Length::Epochs(2);
        cfg.scratch.length = Length::Epochs(2);
    }
    apply_stage_flags(args, &mut cfg);
    let input = match &transforms {
        Some((train, eval)) => {
            cfg.train_transform = Some(train.clone());
            cfg.eval_transform = Some(eval.clone());
            eval.output_shape(target.sample_shape())?
        }
        None => target.sample_shape().to_vec(),
    };
    let pretrained = Pretrained::from_backbone(spec, &input, dev)?;
    let probe = Classifier::new(
        &ClassifierConfig::new(spec.clone(), &input, num_classes),
        0,
        dev,
    )?;
    let methods = Method::parse_list(&args.method, probe.blocks().len())?;
    println!(
        "pretrained backbone {spec} ({} tensors), target {} ({} labelled: {}, {} test{}), input {input:?}",
        pretrained.weights.len(),
        LabeledSet::name(&target),
        support.len(),
        shots_label(args),
        test.len(),
        val.as_ref()
            .map(|v| format!(", {} validation", v.len()))
            .unwrap_or_default()
    );
    let mut report = data_report(args);
    report
        .arg("model", spec.to_string())
        .arg("input_shape", serde_json::json!(input));
    let (mean, std) = image_stats(spec);
    let saver = Saver {
        args,
        class_names: common::class_names(LabeledSet::class_names(&target), num_classes),
        input: match spec.tokenizer()? {
            Some(tok) => InputSpec::Text {
                max_len: tok.max_len(),
            },
            None => InputSpec::image(3, args.image_size, &mean, &std),
        },
        spec,
    };
    let target = TargetData::new(support, test, num_classes);
    let outcomes = run_methods(
        &methods,
        Some(&pretrained),
        &target,
        val.as_ref(),
        &cfg,
        &ctx,
        false,
        &mut report,
        &saver,
    )?;
    write_metrics(args, None, &outcomes)?;
    plot_runs(&args.common.out(), &shots_label(args), &outcomes)?;
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}
