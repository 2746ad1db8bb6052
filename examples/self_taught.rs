//! Self-taught learning (LECTURE.md §5): an auto-encoder learns features from *unlabelled*
//! source data; its encoder is reused for a labelled target task with few labels, and compared
//! with the same network trained from scratch.
//!
//! ```text
//! cargo run --release --example self_taught
//! cargo run --release --example self_taught -- --shots 1 --json
//! cargo run --release --example self_taught -- --source csv:unlabelled.csv:label=none --target csv:mine.csv
//! cargo run --release --example self_taught -- --shots 0.1 --target csv:mine.csv
//! ```
//!
//! Source (labels dropped before anything sees them): synthetic digits; target: optdigits with
//! `--shots` labelled examples per class, tested on the rest. Runs: `scratch` (random
//! encoder), `self_taught` (encoder from the auto-encoder, fine-tuned), `self_taught_frozen`
//! (encoder frozen, only the head trains: Raina et al.'s setting); each is
//! `self_taught::run` with its method, the auto-encoder trained once (`self_taught::pretrain`).

mod common;

use clap::Parser;
use xfer::data::{self, Dataset};
use xfer::models::{InputSpec, ModelInfo};
use xfer::train::methods::self_taught::{self, Config, Data, Method};
use xfer::train::plot::{Series, plot_curves};

#[derive(Debug, Parser)]
#[command(about = "Self-taught learning: an auto-encoder on unlabelled data, its encoder reused")]
struct Args {
    /// The unlabelled source data (a data spec: unlabelled, e.g. csv:PATH:label=none or
    /// images:DIR:size=HxW, or labelled, its labels then dropped).
    #[arg(long, default_value = "synth-digits:n=500")]
    source: String,
    /// The labelled target data.
    #[arg(long, default_value = "optdigits")]
    target: String,
    /// Labelled target examples that train: K per class, a fraction of each class such as
    /// 0.2, or `all` (then nothing is left to test).
    #[arg(long, default_value = "5")]
    shots: data::Shots,
    /// The encoder: `mlp:W1,W2,...` (the last width is the code size; `--widths W1,W2` is an
    /// alias). The auto-encoder is an MLP by construction.
    #[arg(
        long,
        visible_alias = "widths",
        value_name = "SPEC",
        default_value = "mlp:256,64"
    )]
    backbone: String,
    /// Masking noise of the denoising auto-encoder (0: plain).
    #[arg(long, default_value_t = 0.2)]
    noise: f64,
    /// Runs: any of `scratch`, `self-taught`, `self-taught-frozen`, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scratch,self-taught,self-taught-frozen"
    )]
    methods: Vec<Method>,
    #[command(flatten)]
    save: common::SaveArgs,
    #[command(flatten)]
    common: common::CommonArgs,
    #[command(flatten)]
    set: common::SetArgs,
    #[command(flatten)]
    checkpoint: common::CheckpointArgs,
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    args.common.init::<Args>("self_taught", &matches)?;
    let seed = args.common.seed;
    let ctx = args
        .common
        .run_ctx()?
        .with_checkpoints(args.checkpoint.options());
    let dev = ctx.device.clone();

    // The source is used without its labels (an unlabelled spec has none).
    let source = data::DataSpec::parse(&args.source)?.load_unlabeled(seed)?;
    let target = data::load(&args.target, seed)?;
    anyhow::ensure!(
        source.sample_shape() == target.sample_shape(),
        "source `{}` has samples of shape {:?} but target `{}` has {:?}: bring both to the same \
         features (same columns, or the same image size)",
        args.source,
        source.sample_shape(),
        args.target,
        target.sample_shape()
    );
    let scale = common::feature_scale_of(&[
        ("source", args.source.as_str(), source.feature_range()),
        ("target", target.name(), target.feature_range()),
    ]);
    let unlabelled = source.clone().scale(scale);
    let (support, test) = data::split_shots(&target.clone().scale(scale), args.shots, seed)?;
    anyhow::ensure!(
        !test.is_empty(),
        "--shots {} leaves no target example to test",
        args.shots
    );
    let widths = common::mlp_widths(&args.backbone, "the self-taught auto-encoder")?;
    let num_classes = target.num_classes();
    println!(
        "unlabelled source {} ({} examples), target {} ({} labelled, --shots {}, {} test), encoder {widths:?}",
        args.source,
        unlabelled.len(),
        target.name(),
        support.len(),
        args.shots,
        test.len()
    );

    let cfg = args.set.apply(&Config::new(
        Method::Scratch,
        &widths,
        args.noise,
        args.common.quick,
    ))?;

    let mut report = common::Report::new("self_taught", seed);
    report
        .arg("shots", args.shots.to_string())
        .arg("source", args.source.as_str())
        .arg("target", args.target.as_str());
    let mut curves = Vec::new();
    let mut histories: Vec<(String, xfer::train::History)> = Vec::new();
    let ae = if args.methods.iter().any(Method::needs_autoencoder) {
        let t = std::time::Instant::now();
        let (ae, r) = self_taught::pretrain(&cfg, &unlabelled, &ctx)?;
        let src_err = ae.reconstruction_error(&unlabelled, &dev)?;
        let tgt_err = ae.reconstruction_error(&test.unlabeled(), &dev)?;
        println!(
            "auto-encoder: {} steps in {:.1}s; reconstruction error (MSE per value) source {src_err:.4}, target {tgt_err:.4}",
            r.steps,
            t.elapsed().as_secs_f64()
        );
        report
            .arg("ae_source_mse", src_err)
            .arg("ae_target_mse", tgt_err);
        curves.push(Series::new("auto-encoder", r.history.step_curve("loss")));
        histories.push(("autoencoder".to_string(), r.history.clone()));
        Some(ae)
    } else {
        None
    };
    let data = Data {
        train: &support,
        test: &test,
        autoencoder: ae.as_ref(),
    };

    for &m in &args.methods {
        let t = std::time::Instant::now();
        let cfg = cfg.clone().with_method(m);
        let out = self_taught::run(&cfg, &data, &ctx)?;
        let (name, acc) = (m.name(), out.target_acc);
        println!(
            "{name:>20}: target accuracy {acc:.4}  [{:.1}s]",
            t.elapsed().as_secs_f64()
        );
        report.run(name, &out.metrics());
        let prov = common::provenance(
            name,
            &[("source", &args.source), ("target", &args.target)],
            seed,
            &out.metrics(),
            serde_json::json!({"shots": args.shots.to_string(), "stage": cfg.classifier, "noise": args.noise}),
            out.net.spec(),
        );
        let names = common::class_names(target.class_names(), num_classes);
        let info = ModelInfo::new(names, InputSpec::tensor(scale)).with_provenance(prov);
        args.save.save(name, &out.net, &info)?;
        curves.push(Series::new(name, out.report.history.step_curve("loss")));
        histories.push((name.to_string(), out.report.history.clone()));
    }
    let runs: Vec<(&str, &xfer::train::History)> =
        histories.iter().map(|(n, h)| (n.as_str(), h)).collect();
    args.common.write_metrics(&runs)?;
    let path = args.common.out().join("self-taught-loss.png");
    plot_curves(
        &path,
        "self-taught learning: training loss",
        "step",
        "loss",
        &curves,
    )?;
    println!("wrote {}", path.display());
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}
