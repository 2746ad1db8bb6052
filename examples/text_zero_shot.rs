//! Zero-shot learning with sentence embeddings as class descriptions (LECTURE.md §4, "or
//! word vectors"): `g(y)` starts from the MiniLM embedding of a sentence describing class
//! `y` (a learned linear map on top), `f(x)` is a network on the input, trained with the
//! lecture's hinge on the seen classes; the unseen classes are recognised from their
//! descriptions alone. ConSE runs on the same sentence vectors for comparison.
//!
//! ```text
//! cargo run --release --example text_zero_shot -- --model-dir ../shared/models/all-MiniLM-L6-v2
//! cargo run --release --example text_zero_shot -- --dataset digits --unseen 7,8,9 --json
//! ```
//!
//! Without the model directory it prints one line saying so and exits successfully.

mod common;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use common::{CommonArgs, Report};
use xfer::data::{ClassAttributes, TensorDataset, embedded};
use xfer::models::bert::SentenceEncoder;
use xfer::prelude::*;
use xfer::train::methods::zero_shot::{
    self, AttributeScaling, ZeroShotConfig, ZeroShotData, ZslMethod,
};

#[derive(Debug, Parser)]
#[command(about = "Zero-shot learning with MiniLM sentence embeddings of class descriptions")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The sentence-transformers model directory (default: $XFER_SHARED/models/all-MiniLM-L6-v2,
    /// else ../shared/models/all-MiniLM-L6-v2).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// shapes | digits.
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// Unseen classes by id (default: shapes 1,6,10,13,20,23; digits 7,8,9).
    #[arg(long, value_delimiter = ',')]
    unseen: Option<Vec<u32>>,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
}

fn default_model_dir() -> PathBuf {
    let shared = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    shared.join("models").join("all-MiniLM-L6-v2")
}

/// One sentence per digit: its name and how it is drawn.
const DIGIT_DESCRIPTIONS: [&str; 10] = [
    "zero: a single closed oval loop",
    "one: a single vertical stroke",
    "two: a curved top, a diagonal stroke and a flat base line",
    "three: two bumps open to the left stacked on top of each other",
    "four: a vertical and a horizontal stroke crossing, an open corner on the upper left",
    "five: a flat top line, a vertical stroke on the left and a round bottom bump",
    "six: a curved stroke coming down into a closed loop at the bottom",
    "seven: a horizontal line at the top and a long diagonal stroke down",
    "eight: two closed loops stacked on top of each other",
    "nine: a closed loop at the top with a vertical stroke below",
];

fn descriptions(dataset: &str, ds: &TensorDataset) -> anyhow::Result<Vec<String>> {
    Ok(match dataset {
        // Class names are "red striped triangle": describe them as sentences.
        "shapes" => ds
            .class_names()
            .iter()
            .map(|n| format!("a picture of a {n} on a dark background"))
            .collect(),
        "digits" => DIGIT_DESCRIPTIONS.iter().map(|s| s.to_string()).collect(),
        _ => bail!("--dataset {dataset}: expected shapes or digits"),
    })
}

fn main() -> anyhow::Result<()> {
    let (mut args, matches) = common::parse::<Args>();
    let ctx = args.common.run_ctx()?;
    let dir = args.model_dir.clone().unwrap_or_else(default_model_dir);
    if !dir.join("config.json").exists() {
        println!(
            "skipped: text_zero_shot (sentence model not found at {})",
            dir.display()
        );
        return Ok(());
    }
    args.common.init::<Args>("text_zero_shot", &matches)?;
    let seed = args.common.seed;
    let quick = args.common.quick;
    let ds = match args.dataset.as_str() {
        "shapes" => embedded::shapes(if quick { 20 } else { 80 }, seed)?,
        "digits" => embedded::optdigits()?.scale(1.0 / 16.0),
        d => bail!("--dataset {d}: expected shapes or digits"),
    };
    let texts = descriptions(&args.dataset, &ds)?;
    let encoder =
        SentenceEncoder::load(&dir).with_context(|| format!("--model-dir {}", dir.display()))?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let emb = encoder.encode(&refs)?.to_dtype(DType::F32)?;
    let (c, d) = emb.dims2()?;
    let attributes = ClassAttributes::new(
        (0..d).map(|j| format!("minilm_{j}")).collect(),
        emb.flatten_all()?.to_vec1::<f32>()?,
        c,
    )?;
    let unseen = args
        .unseen
        .clone()
        .unwrap_or_else(|| match args.dataset.as_str() {
            "digits" => vec![7, 8, 9],
            _ => vec![1, 6, 10, 13, 20, 23],
        });
    let data = ZeroShotData::split(&ds, &attributes, &unseen, 0.2, seed)?;
    let mut cfg = ZeroShotConfig {
        scaling: AttributeScaling::None,
        embed_dim: 32,
        ..ZeroShotConfig::new(BackboneSpec::cnn())
    };
    if quick {
        cfg.stage = cfg.stage.with_steps(200).with_eval_every(50);
    }
    if let Some(s) = args.steps {
        cfg = cfg.with_steps(s);
    }
    println!(
        "{}: g(y) from {}-d MiniLM embeddings of {} class descriptions; unseen: {}",
        args.dataset,
        d,
        c,
        data.unseen
            .iter()
            .map(|&u| texts.get(u as usize).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut report = Report::new("text_zero_shot", seed);
    report.arg("dataset", args.dataset.as_str());
    report.arg("unseen", data.unseen.clone());
    report.arg("steps", cfg.stage.total_steps(0));
    report.arg("quick", quick);
    let mut histories = Vec::new();
    for method in [ZslMethod::Hinge, ZslMethod::Conse] {
        let t0 = std::time::Instant::now();
        let o = zero_shot::run(&cfg.clone().with_method(method), &data, &ctx)?;
        histories.push((method.name(), o.model.report.history.clone()));
        let r = o.result;
        let mut metrics = r.metrics();
        metrics.push(("seconds", t0.elapsed().as_secs_f64()));
        report.run(method.name(), &metrics);
    }
    let runs: Vec<(&str, &xfer::train::History)> = histories.iter().map(|(n, h)| (*n, h)).collect();
    args.common.write_metrics(&runs)?;
    report.finish(args.common.json, &args.common.out())?;
    Ok(())
}
