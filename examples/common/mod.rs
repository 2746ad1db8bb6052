//! What every example shares: the common flags (`--seed`, `--json`, `--quick`, `--out`), a
//! tracing subscriber, and the `--json` run report whose last line is one JSON object:
//! `{"example": .., <arguments>.., "runs": {<method>: {<metric>: <value>, ..}, ..}}`.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Flags every example takes (flatten into the example's own clap struct).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Seed for every random choice (initialisation, shuffles, splits, augmentations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the run report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// A small, fast run (fewer steps / examples) for smoke tests.
    #[arg(long)]
    pub quick: bool,
    /// Folder for plots and reports.
    #[arg(long, default_value = "target/xfer-report")]
    pub out: PathBuf,
    /// Where the networks run: `cpu`, `cuda[:N]`, `metal[:N]` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Threads for the CPU kernels (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Checkpoint flags of the examples whose training stages can be interrupted and resumed.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointArgs {
    /// Write atomic checkpoints of every training stage under DIR/<stage>/.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// A checkpoint every N steps (and one at the end of each stage).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub checkpoint_every: usize,
    /// Continue each stage from the latest checkpoint in --checkpoint-dir (a finished stage
    /// is not repeated); on the CPU the result is bit-identical to an uninterrupted run.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
}

/// `--save DIR`: keep the trained models as packages (`xfer::models::package`).
#[derive(Debug, Clone, clap::Args)]
pub struct SaveArgs {
    /// Save each trained model as a package (model.safetensors + model.json with class names
    /// and preprocessing) under DIR/<method>/, for `predict`.
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
}

impl SaveArgs {
    /// Saves `net` as `DIR/<run>` (the run name with `:` and `/` made `_`) when `--save` was
    /// given, and prints where.
    pub fn save(
        &self,
        run: &str,
        net: &xfer::models::Classifier,
        info: &xfer::models::ModelInfo,
    ) -> anyhow::Result<()> {
        let Some(dir) = &self.save else {
            return Ok(());
        };
        let path = dir.join(run.replace([':', '/', '\\'], "_"));
        net.save(&path, info)?;
        println!("{:>24}  saved the model to {}", "", path.display());
        Ok(())
    }
}

/// Class names for a model: the data set's, or the class ids `0..n` when it has none.
pub fn class_names(names: &[String], num_classes: usize) -> Vec<String> {
    if names.len() == num_classes {
        names.to_vec()
    } else {
        (0..num_classes).map(|c| c.to_string()).collect()
    }
}

/// The provenance of a run: method, data specs, seed, metrics and the stage settings.
pub fn provenance(
    method: &str,
    data: &[(&str, &str)],
    seed: u64,
    metrics: &[(&str, f64)],
    settings: serde_json::Value,
    spec: &xfer::models::BackboneSpec,
) -> xfer::models::Provenance {
    xfer::models::Provenance {
        method: Some(method.to_string()),
        data: data
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        seed: Some(seed),
        metrics: metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect(),
        settings,
        source_weights: spec.weights_file().map(|p| p.display().to_string()),
    }
}

impl CheckpointArgs {
    /// The options for the training stages, when a folder was given.
    pub fn options(&self) -> Option<xfer::train::CheckpointOptions> {
        self.checkpoint_dir
            .as_ref()
            .map(|dir| xfer::train::CheckpointOptions {
                dir: dir.clone(),
                every: self.checkpoint_every.max(1),
                resume: self.resume,
            })
    }
}

impl CommonArgs {
    /// Creates the output folder and installs the log subscriber (`RUST_LOG`, default `warn`
    /// with `--json` so stdout stays clean, else `info`).
    pub fn init(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.out)?;
        let default = if self.json { "warn" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // No colour codes in a log redirected to a file.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
        if let Some(n) = self.threads {
            anyhow::ensure!(n > 0, "--threads must be at least 1");
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
        }
        Ok(())
    }

    /// The run context of these flags: the `--device`, the `--seed`, no progress bars with
    /// `--json`.
    pub fn run_ctx(&self) -> anyhow::Result<xfer::train::RunCtx> {
        Ok(xfer::train::RunCtx::new(self.device()?)
            .with_seed(self.seed)
            .with_quiet(self.json))
    }

    /// The device `--device` names; a one-line error when this build lacks its backend.
    pub fn device(&self) -> anyhow::Result<xfer::candle::Device> {
        let pref: xfer::ops::DevicePreference = self.device.parse()?;
        Ok(xfer::ops::select_device(pref)?)
    }
}

/// The run report of one example invocation.
#[derive(Debug, Clone)]
pub struct Report {
    head: Map<String, Value>,
    runs: Map<String, Value>,
}

impl Report {
    /// A report for `example` run with `seed`.
    pub fn new(example: &str, seed: u64) -> Self {
        let mut head = Map::new();
        head.insert("example".into(), json!(example));
        head.insert("seed".into(), json!(seed));
        Self {
            head,
            runs: Map::new(),
        }
    }

    /// Records an argument (e.g. `task`, `shots`).
    pub fn arg(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.head.insert(key.into(), value.into());
        self
    }

    /// Records the metrics of one method under `runs.<method>`; later calls add to it.
    pub fn run(&mut self, method: &str, metrics: &[(&str, f64)]) -> &mut Self {
        let entry = self
            .runs
            .entry(method.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            for (k, v) in metrics {
                m.insert((*k).to_string(), json!(v));
            }
        }
        self
    }

    /// A metric recorded earlier.
    pub fn get(&self, method: &str, metric: &str) -> Option<f64> {
        self.runs.get(method)?.get(metric)?.as_f64()
    }

    /// The whole report as JSON.
    pub fn to_json(&self) -> Value {
        let mut m = self.head.clone();
        m.insert("runs".into(), Value::Object(self.runs.clone()));
        Value::Object(m)
    }

    /// Prints a `method | metric ...` table (always), and the JSON line last when `json`.
    pub fn finish(&self, json: bool, out: &std::path::Path) -> anyhow::Result<()> {
        for (method, metrics) in &self.runs {
            let cells: Vec<String> = metrics
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", fmt_value(v)))
                        .collect()
                })
                .unwrap_or_default();
            println!("{method:>16} | {}", cells.join("  "));
        }
        let path = out.join(format!(
            "{}.json",
            self.head
                .get("example")
                .and_then(Value::as_str)
                .unwrap_or("run")
        ));
        std::fs::write(&path, serde_json::to_string_pretty(&self.to_json())?)?;
        if json {
            println!("{}", self.to_json());
        }
        Ok(())
    }
}

fn fmt_value(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
        _ => v.to_string(),
    }
}

/// Prints the feature range of each named data set (issue 8), warns on stderr when their
/// largest magnitudes differ by more than 10× (a missing `scale=` in a data spec is the usual
/// cause), and returns the factor that maps the first one's largest magnitude to 1 — to be
/// applied to every data set alike, so they stay comparable.
pub fn feature_scale(domains: &[(&str, &xfer::data::TensorDataset)]) -> f32 {
    let mut mags = Vec::new();
    for (role, ds) in domains {
        match ds.feature_range() {
            Some((lo, hi)) => {
                println!("{role} {}: features in [{lo}, {hi}]", ds.name());
                mags.push(lo.abs().max(hi.abs()));
            }
            None => println!("{role} {}: no finite feature", ds.name()),
        }
    }
    let (min, max) = mags
        .iter()
        .fold((f32::INFINITY, 0f32), |(a, b), &m| (a.min(m), b.max(m)));
    if min > 0.0 && max / min > 10.0 {
        eprintln!(
            "warning: the feature ranges differ by {:.0}x; add `scale=` to a data spec",
            max / min
        );
    }
    match mags.first() {
        Some(&m) if m > 0.0 && m.is_finite() => 1.0 / m,
        _ => 1.0,
    }
}

/// The hidden widths of an MLP `--backbone` (`mlp:W1,W2,...`, or the bare widths
/// `W1,W2,...`), for the examples whose network is an MLP by construction (`what` says which
/// part); any other spec is a one-line error.
pub fn mlp_widths(spec: &str, what: &str) -> anyhow::Result<Vec<usize>> {
    let spec = if spec.trim().starts_with(|c: char| c.is_ascii_digit()) {
        format!("mlp:{spec}")
    } else {
        spec.to_string()
    };
    match spec.parse::<xfer::models::BackboneSpec>()? {
        xfer::models::BackboneSpec::Mlp {
            hidden,
            dropout: 0.0,
        } => Ok(hidden),
        other => anyhow::bail!(
            "--backbone {other}: {what} is an MLP on the flattened input: give mlp:W1,W2,..."
        ),
    }
}
