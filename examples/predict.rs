//! Predict with a saved model package (`--save DIR` of the training examples): image folders
//! (with or without class sub-folders), image files, lists of files, text CSV/TSV columns or
//! any data spec, streamed in batches.
//!
//! ```text
//! cargo run --release --example predict -- --model runs/models/finetune --input photos/
//! cargo run --release --example predict -- --model runs/models/l2sp --input test/ --topk 3 --output preds.csv
//! cargo run --release --example predict -- --model runs/models/finetune --input reviews.csv --text-column review --format jsonl
//! ```
//!
//! Output: CSV `path,label,probability[,label_2,probability_2,...]` (`path` is the row number
//! for table rows) to stdout or `--output`, or one JSON object per line (`--format jsonl`).
//! When the inputs have labels (class sub-folders named after the model's classes, a `label`
//! column, a labelled data spec), an evaluation report follows on stderr — accuracy,
//! per-class precision / recall / F1, the confusion matrix — and is written as
//! `evaluation.json`, `evaluation.txt` and `confusion.png` under `--report-dir`.

mod common;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use xfer::models::Classifier;
use xfer::train::methods::zero_shot::inputs::read_descriptions;
use xfer::train::methods::zero_shot::package::ZslPackage;
use xfer::train::plot::plot_confusion;
use xfer::train::predict::{Inputs, PredictOptions, Prediction, Predictor, predict};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// `path,label,probability,...` with a header.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Parser)]
#[command(about = "Predict with a saved model package; evaluate when the inputs have labels")]
struct Args {
    /// The model package folder (written by `--save` of a training example).
    #[arg(long)]
    model: PathBuf,
    /// What to predict: an image folder (recursively; class sub-folders give labels), image
    /// files, a .txt list of image paths, a text .csv/.tsv file, or a data spec. Repeatable.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<String>,
    /// The text column of a CSV/TSV input (name or 0-based index; default `text`, else the
    /// first column).
    #[arg(long)]
    text_column: Option<String>,
    /// Labels per input, most probable first.
    #[arg(long, default_value_t = 1)]
    topk: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Write the predictions to this file (written whole, then renamed into place) instead of
    /// stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Skip unreadable image files (counted at the end) instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// Folder for the evaluation report of labelled inputs (default: the `--output` file's
    /// folder, else the current folder).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Zero-shot models: the classes to rank, comma-separated (names never seen in training
    /// are embedded by the model's text encoder). Default: the classes it was trained with.
    #[arg(long, value_delimiter = ',', conflicts_with = "class_names")]
    classes: Option<Vec<String>>,
    /// Zero-shot models: a file with one class name per line (instead of --classes).
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// Zero-shot models: a file of `class<TAB>description` lines; each class is embedded by
    /// its description instead of its name.
    #[arg(long)]
    descriptions: Option<PathBuf>,
    /// Where the network runs: `cpu`, `cuda[:N]`, `metal[:N]` or `auto`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Threads for the CPU kernels (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let common = common::CommonArgs {
        seed: 0,
        // Logs at `warn` unless RUST_LOG says otherwise: stdout may carry the predictions.
        json: true,
        quick: false,
        out: None,
        log_file: None,
        device: args.device.clone(),
        threads: args.threads,
    };
    common.init_logging()?;
    let dev = common.device()?;
    let (pkg, kind): (Box<dyn Predictor>, String) = if ZslPackage::is_zero_shot(&args.model) {
        let mut z = ZslPackage::load(&args.model, &dev)?;
        if let Some(names) = class_list(&args)? {
            let texts = args
                .descriptions
                .as_deref()
                .map(|p| read_descriptions(p, &names))
                .transpose()?;
            z = z.with_classes(&names, texts.as_deref())?;
        }
        (Box::new(z), "zero-shot".into())
    } else {
        anyhow::ensure!(
            args.classes.is_none() && args.class_names.is_none() && args.descriptions.is_none(),
            "{}: --classes, --class-names and --descriptions are for zero-shot models",
            args.model.display()
        );
        let p = Classifier::load(&args.model, &dev)?;
        let kind = p.net.spec().to_string();
        (Box::new(p), kind)
    };
    let pkg = pkg.as_ref();
    let inputs = Inputs::open(&args.input, pkg, args.text_column.as_deref())?;
    let names = pkg.class_names().to_vec();
    eprintln!(
        "model {} ({} classes, {}), input {}",
        args.model.display(),
        names.len(),
        kind,
        inputs.description
    );
    let opts = PredictOptions {
        batch_size: args.batch_size,
        topk: args.topk,
        skip_bad: args.skip_bad,
        progress: true,
    };

    // Predictions stream to stdout, or to a temporary file renamed over --output at the end.
    let tmp = args.output.as_ref().map(|p| {
        let name = p
            .file_name()
            .map_or("predictions".into(), |n| n.to_string_lossy().into_owned());
        p.with_file_name(format!(".{name}.partial"))
    });
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("{}", t.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if args.format == Format::Csv {
        writeln!(
            out,
            "{}",
            Prediction::csv_header(args.topk.clamp(1, names.len()))
        )?;
    }
    let summary = predict(pkg, &inputs, &opts, |p| {
        let line = match args.format {
            Format::Csv => p.csv_row(&names),
            Format::Jsonl => p.json(&names).to_string(),
        };
        writeln!(out, "{line}")
            .map_err(|e| xfer::train::TrainError::BadData(format!("writing the predictions: {e}")))
    })?;
    out.flush()?;
    drop(out);
    if let (Some(t), Some(o)) = (&tmp, &args.output) {
        std::fs::rename(t, o).with_context(|| format!("{}", o.display()))?;
        eprintln!("wrote {} predictions to {}", summary.predicted, o.display());
    }
    if !summary.skipped.is_empty() {
        eprintln!("skipped {} unreadable file(s):", summary.skipped.len());
        for (f, e) in &summary.skipped {
            eprintln!("  {f}: {e}");
        }
    }
    if let Some(report) = summary.report(&names) {
        let dir = args.report_dir.clone().unwrap_or_else(|| {
            args.output
                .as_ref()
                .and_then(|o| o.parent())
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
        });
        std::fs::create_dir_all(&dir)?;
        let text = report.to_text();
        eprint!("{text}");
        std::fs::write(dir.join("evaluation.txt"), &text)?;
        std::fs::write(
            dir.join("evaluation.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        plot_confusion(
            &dir.join("confusion.png"),
            &format!("{} on {}", args.model.display(), inputs.description),
            &names,
            &report.confusion,
        )?;
        eprintln!(
            "wrote evaluation.txt, evaluation.json and confusion.png to {}",
            dir.display()
        );
    }
    Ok(())
}

/// The class names of `--classes` or `--class-names FILE` (one per line, `#` comments and
/// blank lines skipped), or of `--descriptions FILE` alone.
fn class_list(args: &Args) -> anyhow::Result<Option<Vec<String>>> {
    if let Some(c) = &args.classes {
        return Ok(Some(c.iter().map(|s| s.trim().to_string()).collect()));
    }
    let lines = |p: &PathBuf| -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split('\t').next().unwrap_or(l).trim().to_string())
            .collect())
    };
    match (&args.class_names, &args.descriptions) {
        (Some(p), _) | (None, Some(p)) => Ok(Some(lines(p)?)),
        (None, None) => Ok(None),
    }
}
