//! Zero-shot learning (LECTURE.md §4): recognise classes never seen in training from their
//! attribute vectors. Runs the lecture's attribute embedding with its hinge (`hinge`),
//! attribute prediction (`dap`) and ConSE (`conse`) on the same split, and reports the
//! per-class accuracy on the unseen classes (`unseen_acc`) and generalised ZSL (`seen_acc`,
//! `gzsl_unseen_acc`, `h`).
//!
//! ```text
//! cargo run --release --example zero_shot -- --dataset shapes
//! cargo run --release --example zero_shot -- --dataset digits --unseen 7,8,9 --json
//! cargo run --release --example zero_shot -- --data csv:x.csv --attributes attrs.csv --unseen cat,owl
//! cargo run --release --example zero_shot -- \
//!     --backbone mobilenet_v2:weights=../shared/models/mobilenet_v2/model.safetensors \
//!     --data folder:../shared/data/animal-mnist:channels=3 \
//!     --class-text minilm:../shared/models/all-MiniLM-L6-v2 --unseen cat,sheep,zebra --json
//! ```
//!
//! The attributes file has one row per class: its name, then the attribute values (a header
//! row with the attribute names is optional).
//!
//! With `--backbone SPEC`, `f(x)` is a linear map of the backbone's frozen features (computed
//! once through its evaluation preset at `--image-size`, cached under `--feature-cache` and
//! read back with `--reuse-features`; standardised with the training part's statistics).
//! With `--class-text minilm:DIR`, `g(y)` is a linear map of the sentence embedding of each
//! class name (`--class-names`, default the data's) or description (`--descriptions FILE`,
//! `class<TAB>text` lines). Every method reports GZSL with calibrated stacking: `γ` is
//! subtracted from seen-class scores, chosen on pseudo-splits of the training classes
//! (`--calibration-folds`), never with unseen labels; `h_uncalibrated` is `γ = 0`.

mod common;

use std::path::Path;

use anyhow::{Context, bail};
use clap::Parser;
use common::{CheckpointArgs, CommonArgs, Report};
use xfer::data::{ClassAttributes, TensorDataset, embedded, spec};
use xfer::models::InputSpec;
use xfer::prelude::*;
use xfer::train::methods::zero_shot::inputs as zsl_inputs;
use xfer::train::methods::zero_shot::package::{FeatureExtractor, ZslInfo};
use xfer::train::methods::zero_shot::{
    self, AttributeScaling, ZeroShotConfig, ZeroShotData, ZeroShotModel, ZslMethod,
};
use xfer::train::plot::{EmbeddingPanel, plot_embedding, plot_history};

#[derive(Debug, Parser)]
#[command(about = "Zero-shot learning: hinge attribute embedding, DAP and ConSE")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    set: common::SetArgs,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Save each method's model as a zero-shot package under DIR/<method>/ (for `predict`;
    /// with --class-text it ranks class names given at prediction time).
    #[arg(long, value_name = "DIR")]
    save: Option<std::path::PathBuf>,
    /// Built-in data set with attributes: shapes | digits.
    #[arg(long, conflicts_with = "data")]
    dataset: Option<String>,
    /// Your own data (a data spec, e.g. csv:PATH or folder:DIR); needs --attributes or
    /// --class-text.
    #[arg(long)]
    data: Option<String>,
    /// Class attributes CSV for --data: one row per class, its name first.
    #[arg(long, requires = "data")]
    attributes: Option<String>,
    /// Frozen backbone for f(x) on --data (a backbone spec, e.g.
    /// mobilenet_v2:weights=PATH); f is then a linear map of its features.
    #[arg(long, requires = "data")]
    backbone: Option<String>,
    /// Image size the backbone sees (its evaluation preset at this size).
    #[arg(long, default_value_t = 128)]
    image_size: usize,
    /// Folder of the feature cache (keyed by backbone, data and image size).
    #[arg(long, default_value = "target/xfer-cache")]
    feature_cache: std::path::PathBuf,
    /// Read the features from the cache when it has them.
    #[arg(long)]
    reuse_features: bool,
    /// Text model for g(y): minilm:DIR (class names or descriptions embedded).
    #[arg(long, requires = "data", conflicts_with = "attributes")]
    class_text: Option<String>,
    /// The texts of the classes, in the data's class order (default: the class names).
    #[arg(
        long,
        value_delimiter = ',',
        requires = "class_text",
        conflicts_with = "descriptions"
    )]
    class_names: Option<Vec<String>>,
    /// One description per class: `class<TAB>text` lines.
    #[arg(long, requires = "class_text")]
    descriptions: Option<String>,
    /// Pseudo-splits of the seen classes that choose the calibration γ (0: no calibration).
    #[arg(long, default_value_t = 3)]
    calibration_folds: usize,
    /// Unseen classes, by id or name (default: shapes 1,6,10,13,20,23; digits 7,8,9).
    #[arg(long, value_delimiter = ',')]
    unseen: Option<Vec<String>>,
    /// Methods to run (default: hinge,dap,conse; hinge,conse with --class-text).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Network: mlp | cnn | lenet (default: chosen from the data).
    #[arg(long)]
    model: Option<String>,
    /// Hidden widths of the mlp (empty for a linear model on the inputs).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    hidden: Option<Vec<usize>>,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Hinge margin k.
    #[arg(long)]
    margin: Option<f64>,
    /// Width of the embedding space of f and g.
    #[arg(long)]
    embed_dim: Option<usize>,
    /// ConSE's T.
    #[arg(long)]
    top_t: Option<usize>,
    /// Weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// L2-normalise f(x) and g(y) (cosine scores).
    #[arg(long)]
    normalize: Option<bool>,
    /// Samples per class of the shapes data set.
    #[arg(long)]
    per_class: Option<usize>,
}

/// Sub-seeds for the data (distinct from the training seeds).
fn data_seed(seed: u64, k: u64) -> u64 {
    xfer::train::derive_seed(seed, &[0x5A53_4454, k])
}

/// Reads a class-attributes CSV: `name,v1,v2,...` per class, an optional header row whose
/// value cells are not numbers. Rows are matched to the data set's class names.
fn read_attributes(path: &str, ds: &TensorDataset) -> anyhow::Result<ClassAttributes> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--attributes {path}"))?;
    let mut names: Option<Vec<String>> = None;
    let mut rows: Vec<(String, Vec<f32>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some((name, values)) = cells.split_first() else {
            continue;
        };
        let parsed: Result<Vec<f32>, _> = values.iter().map(|v| v.parse::<f32>()).collect();
        match parsed {
            Ok(v) if v.iter().all(|x| x.is_finite()) => rows.push((name.to_string(), v)),
            _ if rows.is_empty() && names.is_none() => {
                names = Some(values.iter().map(|s| s.to_string()).collect());
            }
            _ => bail!(
                "{path}:{}: expected a class name then numbers, got `{line}`",
                i + 1
            ),
        }
    }
    let width = rows.first().map(|r| r.1.len()).unwrap_or(0);
    if width == 0 {
        bail!("{path}: no attribute rows (expected `class,value,value,...`)");
    }
    if let Some((name, v)) = rows.iter().find(|r| r.1.len() != width) {
        bail!(
            "{path}: class `{name}` has {} values, the first row has {width}",
            v.len()
        );
    }
    let names = names.unwrap_or_else(|| (0..width).map(|j| format!("attribute_{j}")).collect());
    if names.len() != width {
        bail!(
            "{path}: the header names {} attributes but the rows have {width}",
            names.len()
        );
    }
    let class_names: Vec<String> = if ds.class_names().is_empty() {
        (0..ds.num_classes()).map(|c| c.to_string()).collect()
    } else {
        ds.class_names().to_vec()
    };
    let mut values = Vec::with_capacity(class_names.len() * width);
    for c in &class_names {
        let row = rows
            .iter()
            .find(|r| &r.0 == c)
            .with_context(|| format!("{path}: no attribute row for class `{c}` of the data"))?;
        values.extend_from_slice(&row.1);
    }
    Ok(ClassAttributes::new(names, values, class_names.len())?)
}

/// Class ids from ids or names.
fn class_ids(ds: &TensorDataset, given: &[String]) -> anyhow::Result<Vec<u32>> {
    given
        .iter()
        .map(|g| match g.parse::<u32>() {
            Ok(c) if (c as usize) < ds.num_classes() => Ok(c),
            Ok(c) => bail!(
                "--unseen {c}: `{}` has classes 0..{}",
                ds.name(),
                ds.num_classes()
            ),
            Err(_) => Ok(xfer::data::split::classes_by_name(ds, &[g.as_str()])?[0]),
        })
        .collect()
}

struct Problem {
    name: String,
    data: ZeroShotData,
    cfg: ZeroShotConfig,
    /// What a saved package keeps besides the model (`--save`).
    info: ZslInfo,
}

fn build(args: &Args, dev: &Device) -> anyhow::Result<Problem> {
    let seed = args.common.seed;
    let quick = args.common.quick;
    // The factor applied to the loaded values (kept by a saved package).
    let mut scale = 1.0f32;
    let (name, ds, attributes, default_unseen, mut cfg) = match (&args.dataset, &args.data) {
        (_, Some(data)) if args.backbone.is_some() || args.class_text.is_some() => {
            let ds = match &args.backbone {
                Some(b) => {
                    let spec: xfer::models::BackboneSpec =
                        b.parse().with_context(|| format!("--backbone {b}"))?;
                    // A pretrained RGB backbone reads every image as RGB (grey repeated), as in
                    // finetune.
                    let folder = data.starts_with("folder:") || data.starts_with("images:");
                    let data = &if spec.is_pretrained() && folder && !data.contains("channels=") {
                        format!("{data}:channels=3")
                    } else {
                        data.clone()
                    };
                    zsl_inputs::frozen_features(
                        &spec,
                        data,
                        args.image_size,
                        Some(&args.feature_cache),
                        args.reuse_features,
                        seed,
                        args.common.json,
                        dev,
                    )
                    .with_context(|| format!("--backbone {b} on --data {data}"))?
                }
                None => spec::load(data, data_seed(seed, 0))
                    .with_context(|| format!("--data {data}"))?,
            };
            let class_names: Vec<String> = if ds.class_names().is_empty() {
                (0..ds.num_classes()).map(|c| c.to_string()).collect()
            } else {
                ds.class_names().to_vec()
            };
            let (attributes, scaling) = match (&args.class_text, &args.attributes) {
                (Some(text), _) => {
                    let texts = match (&args.descriptions, &args.class_names) {
                        (Some(path), _) => {
                            zsl_inputs::read_descriptions(Path::new(path), &class_names)?
                        }
                        (None, Some(names)) if names.len() == class_names.len() => names.clone(),
                        (None, Some(names)) => bail!(
                            "--class-names has {} names but `{data}` has {} classes ({})",
                            names.len(),
                            class_names.len(),
                            class_names.join(", ")
                        ),
                        (None, None) => class_names.clone(),
                    };
                    // The error names the folder or file at fault: one line, no context.
                    let a = zsl_inputs::class_text_embeddings(text, &texts)?;
                    (a, AttributeScaling::None)
                }
                (None, Some(path)) => (read_attributes(path, &ds)?, AttributeScaling::MinMax),
                (None, None) => bail!("--data needs --attributes CSV or --class-text minilm:DIR"),
            };
            let arch = BackboneSpec::mlp_hidden(&[]);
            let cfg = ZeroShotConfig {
                embed_dim: 256,
                scaling,
                ..ZeroShotConfig::new(arch)
            };
            (data.clone(), ds, attributes, None, cfg)
        }
        (_, Some(data)) => {
            let ds =
                spec::load(data, data_seed(seed, 0)).with_context(|| format!("--data {data}"))?;
            let k = common::feature_scale(&[("data", &ds)]);
            scale = k;
            let ds = ds.scale(k);
            let path = args.attributes.as_deref().unwrap_or_default();
            let attributes = read_attributes(path, &ds)?;
            let arch = BackboneSpec::auto(ds.sample_shape(), &[128, 128])?;
            (
                data.clone(),
                ds,
                attributes,
                None,
                ZeroShotConfig::new(arch),
            )
        }
        (Some(d), None) if d == "shapes" => {
            let per_class = args.per_class.unwrap_or(if quick { 20 } else { 80 });
            let ds = embedded::shapes(per_class, data_seed(seed, 0))?;
            let attributes = ds
                .attributes()
                .context("shapes without attributes")?
                .clone();
            let cfg = ZeroShotConfig {
                embed_dim: 32,
                ..ZeroShotConfig::new(BackboneSpec::cnn())
            };
            let unseen = ["1", "6", "10", "13", "20", "23"]
                .map(String::from)
                .to_vec();
            ("shapes".to_string(), ds, attributes, Some(unseen), cfg)
        }
        (Some(d), None) if d == "digits" => {
            scale = 1.0 / 16.0;
            let ds = embedded::optdigits()?.scale(scale);
            let attributes = ds
                .attributes()
                .context("optdigits without attributes")?
                .clone();
            let cfg = ZeroShotConfig {
                embed_dim: 32,
                ..ZeroShotConfig::new(BackboneSpec::cnn())
            };
            let unseen = ["7", "8", "9"].map(String::from).to_vec();
            ("digits".to_string(), ds, attributes, Some(unseen), cfg)
        }
        (Some(d), None) => bail!("--dataset {d}: expected shapes or digits"),
        (None, None) => bail!("give --dataset shapes|digits, or --data SPEC --attributes CSV"),
    };
    let unseen = match (&args.unseen, default_unseen) {
        (Some(u), _) => class_ids(&ds, u)?,
        (None, Some(u)) => class_ids(&ds, &u)?,
        (None, None) => bail!("--unseen c1,c2,...: which classes to hold out"),
    };
    let mut data = ZeroShotData::split(&ds, &attributes, &unseen, 0.2, data_seed(seed, 1))?;
    let mut info = ZslInfo {
        class_names: (0..attributes.num_classes() as u32)
            .map(|c| data.class_name(c))
            .collect(),
        input: InputSpec::tensor(scale),
        features: None,
        text_encoder: args.class_text.clone(),
        provenance: Default::default(),
    };
    if let Some(b) = &args.backbone {
        let spec: xfer::models::BackboneSpec = b.parse()?;
        let preset = zsl_inputs::image_preset(&spec, args.image_size, 3)?;
        let (mean, std) = zsl_inputs::feature_stats(&data.train);
        info.input = InputSpec::Image {
            channels: 3,
            size: args.image_size,
            resize: preset.resize_size,
            mean: preset.mean.clone(),
            std: preset.std.clone(),
        };
        info.features = Some(FeatureExtractor { spec, mean, std });
        // z-scores with the training part's statistics (no test sample looked at).
        let z = zsl_inputs::standardize(
            &data.train,
            &[&data.train, &data.seen_test, &data.unseen_test],
        );
        let [train, seen_test, unseen_test] = <[TensorDataset; 3]>::try_from(z)
            .map_err(|_| anyhow::anyhow!("standardize returned the wrong number of sets"))?;
        data.train = train;
        data.seen_test = seen_test;
        data.unseen_test = unseen_test;
    }
    if let Some(m) = &args.model {
        cfg.backbone = match m.as_str() {
            "mlp" => BackboneSpec::mlp_hidden(args.hidden.as_deref().unwrap_or(&[128, 128])),
            spec => spec.parse::<BackboneSpec>()?,
        };
    }
    if quick {
        cfg.stage = cfg.stage.with_steps(200).with_eval_every(50);
    }
    if let Some(v) = args.steps {
        cfg = cfg.with_steps(v);
    }
    if let Some(v) = args.lr {
        cfg.stage.lr = v;
    }
    if let Some(v) = args.margin {
        cfg.margin = v;
    }
    if let Some(v) = args.embed_dim {
        cfg.embed_dim = v;
    }
    if let Some(v) = args.top_t {
        cfg.top_t = v;
    }
    if let Some(v) = args.weight_decay {
        cfg.stage.weight_decay = v;
    }
    if let Some(v) = args.normalize {
        cfg.normalize = v;
    }
    Ok(Problem {
        name,
        data,
        cfg,
        info,
    })
}

/// PCA of each method's semantic space on the test samples: seen (●) and unseen (▲).
fn picture(out: &Path, p: &Problem, models: &[ZeroShotModel], dev: &Device) -> anyhow::Result<()> {
    let seen = &p.data.seen_test;
    let unseen = &p.data.unseen_test;
    let x = Tensor::cat(&[&seen.to_tensors(dev)?.0, &unseen.to_tensors(dev)?.0], 0)?;
    let (domains, classes) = xfer::train::plot::two_set_labels(seen, unseen);
    let panels = models
        .iter()
        .map(|m| {
            Ok(EmbeddingPanel::pca(
                format!("{}: semantic space", m.method.name()),
                &m.semantic(&x)?,
                &domains,
                &classes,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    plot_embedding(
        &out.join("zero_shot-semantic-pca.png"),
        &format!("{}: test samples in each method's space", p.name),
        &panels,
        &["seen class", "unseen class"],
    )?;
    let runs: Vec<(&str, &xfer::train::History)> = models
        .iter()
        .map(|m| (m.method.name(), &m.report.history))
        .collect();
    for metric in ["loss", "seen_val_acc"] {
        plot_history(
            &out.join(format!("zero_shot-{metric}.png")),
            &format!("{} — {metric}", p.name),
            &runs,
            metric,
        )?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("zero_shot", &matches)?;
    let dev = args.common.device()?;
    let seed = args.common.seed;
    let mut problem = build(&args, &dev)?;
    problem.cfg = args.set.apply(&problem.cfg)?;
    let text = args.class_text.is_some();
    let default_methods = if text {
        "hinge,conse"
    } else {
        "hinge,dap,conse"
    };
    let given = args
        .methods
        .clone()
        .unwrap_or_else(|| default_methods.split(',').map(String::from).collect());
    let methods = given
        .iter()
        .map(|m| Ok(m.parse::<ZslMethod>()?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if text && methods.contains(&ZslMethod::Dap) {
        bail!(
            "--methods dap needs per-class attributes in [0, 1] (--attributes), not --class-text embeddings"
        );
    }
    let d = &problem.data;
    let names = |ids: &[u32]| {
        ids.iter()
            .map(|&c| d.class_name(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{}: {} seen classes ({} train / {} test samples), {} unseen classes ({} samples): {}",
        problem.name,
        d.seen.len(),
        d.train.len(),
        d.seen_test.len(),
        d.unseen.len(),
        d.unseen_test.len(),
        names(&d.unseen)
    );
    let mut report = Report::new("zero_shot", seed);
    report.arg("dataset", problem.name.as_str());
    report.arg("unseen", d.unseen.clone());
    report.arg("model", problem.cfg.backbone.to_string());
    if let Some(b) = &args.backbone {
        report.arg("backbone", b.as_str());
        report.arg("image_size", args.image_size);
    }
    if let Some(t) = &args.class_text {
        report.arg("class_text", t.as_str());
        report.arg(
            "class_text_source",
            if args.descriptions.is_some() {
                "descriptions"
            } else {
                "names"
            },
        );
    }
    report.arg("calibration_folds", args.calibration_folds);
    report.arg("steps", problem.cfg.stage.total_steps(0));
    report.arg("quick", args.common.quick);
    let ctx = args
        .common
        .run_ctx()?
        .with_checkpoints(args.checkpoint.options());
    let mut models = Vec::new();
    for method in methods {
        let t0 = std::time::Instant::now();
        let cfg = ZeroShotConfig {
            method,
            calibration_folds: args.calibration_folds,
            ..problem.cfg.clone()
        };
        let out = zero_shot::run(&cfg, d, &ctx)?;
        let mut metrics = out.metrics();
        let model = out.model;
        metrics.push(("seconds", t0.elapsed().as_secs_f64()));
        report.run(method.name(), &metrics);
        if let Some(dir) = &args.save {
            let mut info = problem.info.clone();
            let data_specs: Vec<(&str, &str)> = [("data", &args.data), ("dataset", &args.dataset)]
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
                .collect();
            info.provenance = common::provenance(
                method.name(),
                &data_specs,
                seed,
                &metrics,
                serde_json::json!({"config": problem.cfg, "unseen": d.unseen}),
                &problem.cfg.backbone,
            );
            let path = dir.join(method.name());
            model.save(&path, &problem.cfg, &info)?;
            println!("{:>10}  saved the model to {}", "", path.display());
        }
        models.push(model);
    }
    let runs: Vec<(&str, &xfer::train::History)> = models
        .iter()
        .map(|m| (m.method.name(), &m.report.history))
        .collect();
    args.common.write_metrics(&runs)?;
    picture(&args.common.out(), &problem, &models, &dev)?;
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}
