//! What every example shares: the common flags (`--seed`, `--json`, `--quick`, `--out`,
//! `--log-file`), a tracing subscriber, the run folder (`--out`, by default
//! `runs/<example>-<YYYYMMDD-HHMMSS>` in UTC, never overwritten) with `args.json` (every
//! resolved argument, the seed and the xfer version) and `metrics.csv` (every run's
//! history), and the `--json` run report whose last line is one JSON object:
//! `{"example": .., <arguments>.., "runs": {<method>: {<metric>: <value>, ..}, ..}}`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
    /// Folder for this run's plots, report, args.json and metrics.csv (default:
    /// runs/<example>-<YYYYMMDD-HHMMSS>, UTC, with -2, -3, ... added if it exists).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the logs to FILE (plain text, no colour codes).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
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

/// `--set KEY=VALUE`: overrides of the family's configuration after every other flag
/// (`xfer::train::overlay`: a dotted path as the config serialises, a JSON value).
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Override any setting of the run's configuration, e.g. `--set stage.lr=0.05`
    /// `--set stage.length='{"steps":300}'` (a dotted path as the config serialises in the
    /// report, a JSON value or text); repeatable, applied in order after the other flags.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SetArgs {
    /// `cfg` with the overrides applied (unchanged when there are none).
    pub fn apply<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
        &self,
        cfg: &T,
    ) -> anyhow::Result<T> {
        if self.set.is_empty() {
            return Ok(cfg.clone());
        }
        Ok(xfer::train::overlay::overlay(cfg, &self.set)?)
    }
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

/// Parses the command line of an example: its arguments and clap's matches (for
/// [`CommonArgs::init`], which records every resolved argument in `args.json`).
pub fn parse<A: clap::Parser>() -> (A, clap::ArgMatches) {
    let matches = <A as clap::CommandFactory>::command().get_matches();
    match <A as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(a) => (a, matches),
        Err(e) => e.exit(),
    }
}

/// A command-line parser of a library choice `T` (read with its `FromStr`) that offers
/// `values`, so `--help` and a wrong value list them; the library crates know no clap.
pub fn one_of<T>(
    values: impl IntoIterator<Item = clap::builder::PossibleValue>,
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(values)
        .try_map(|s: String| s.parse::<T>().map_err(|e| e.to_string()))
}

/// A command-line value as JSON: `true`/`false`, a number when it reads as one, else text.
fn cli_value(v: &str) -> serde_json::Value {
    match v {
        "true" => return json!(true),
        "false" => return json!(false),
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && !v.trim().is_empty() => json!(f),
        _ => json!(v),
    }
}

/// Every argument of `cmd` as parsed into `matches` (defaults included; `null` when neither
/// given nor defaulted), by its long name.
pub fn resolved_args(cmd: &clap::Command, matches: &clap::ArgMatches) -> Map<String, Value> {
    let mut out = Map::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let key = arg.get_long().unwrap_or(id).to_string();
        let value = match matches.try_get_raw(id) {
            Ok(Some(raw)) => {
                let vals: Vec<Value> = raw.map(|v| cli_value(&v.to_string_lossy())).collect();
                let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
                    || arg.get_value_delimiter().is_some()
                    || matches!(arg.get_action(), clap::ArgAction::Append);
                match (many, vals.len()) {
                    (false, 1) => vals.into_iter().next().unwrap_or(Value::Null),
                    _ => Value::Array(vals),
                }
            }
            _ => Value::Null,
        };
        out.insert(key, value);
    }
    out
}

/// `YYYYMMDD-HHMMSS` of now, in UTC.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A folder `base` that does not exist yet: `base`, else `base-2`, `base-3`, ... (created,
/// so that two runs started in the same second get two folders).
fn fresh_dir(base: &Path) -> anyhow::Result<PathBuf> {
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    for k in 1.. {
        let p = if k == 1 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{k}", base.display()))
        };
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => anyhow::bail!("{}: {e}", p.display()),
        }
    }
    unreachable!("an unbounded range always yields")
}

impl CommonArgs {
    /// Resolves and creates the run folder (`--out`, or a fresh `runs/<example>-<time>`),
    /// writes `args.json` there (every argument of `matches`, defaults included, the seed
    /// and the xfer version), and installs the log subscriber (`RUST_LOG`, default `warn`
    /// with `--json` so stdout stays clean, else `info`; also to `--log-file`, without colour
    /// codes). Afterwards `self.out` is the run folder.
    pub fn init<A: clap::CommandFactory>(
        &mut self,
        example: &str,
        matches: &clap::ArgMatches,
    ) -> anyhow::Result<()> {
        let out = match &self.out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("--out {}: {e}", dir.display()))?;
                dir.clone()
            }
            None => fresh_dir(&Path::new("runs").join(format!("{example}-{}", utc_stamp())))?,
        };
        self.out = Some(out.clone());
        let mut args = Map::new();
        args.insert("example".into(), json!(example));
        args.insert("xfer_version".into(), json!(env!("CARGO_PKG_VERSION")));
        args.insert("seed".into(), json!(self.seed));
        args.insert("out".into(), json!(out.display().to_string()));
        args.insert(
            "args".into(),
            Value::Object(resolved_args(&A::command(), matches)),
        );
        std::fs::write(
            out.join("args.json"),
            serde_json::to_string_pretty(&Value::Object(args))?,
        )?;
        self.init_logging()
    }

    /// Installs the log subscriber (`RUST_LOG`, default `warn` with `--json`, else `info`; also
    /// to `--log-file`, without colour codes) and sizes the CPU thread pool (`--threads`),
    /// without a run folder.
    pub fn init_logging(&self) -> anyhow::Result<()> {
        use tracing_subscriber::prelude::*;
        let default = if self.json { "warn" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let file_layer = match &self.log_file {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                let f = std::fs::File::create(path)
                    .map_err(|e| anyhow::anyhow!("--log-file {}: {e}", path.display()))?;
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::sync::Mutex::new(f))
                        .with_ansi(false),
                )
            }
            None => None,
        };
        let stderr_layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // No colour codes in a log redirected to a file.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(stderr_layer)
            .with(file_layer)
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

    /// The run folder ([`CommonArgs::init`] resolved it; before that, `--out` or `runs`).
    pub fn out(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("runs"))
    }

    /// Writes `metrics.csv` in the run folder: the history of every run (one row per step
    /// and per evaluation; see `History::to_csv`), and prints where.
    pub fn write_metrics(&self, runs: &[(&str, &xfer::train::History)]) -> anyhow::Result<()> {
        let path = self.out().join("metrics.csv");
        xfer::train::History::write_csv(&path, runs)?;
        println!("wrote {}", path.display());
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

    /// Records `metric` of `method` as not measured (`null` in the JSON).
    pub fn not_measured(&mut self, method: &str, metric: &str) -> &mut Self {
        let entry = self
            .runs
            .entry(method.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(metric.to_string(), Value::Null);
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
    let ranges: Vec<Domain<'_>> = domains
        .iter()
        .map(|(role, ds)| (*role, ds.name(), ds.feature_range()))
        .collect();
    feature_scale_of(&ranges)
}

/// A data set's role, name and feature range (`None`: no finite feature).
pub type Domain<'a> = (&'a str, &'a str, Option<(f32, f32)>);

/// [`feature_scale`] from `(role, name, feature range)` of each data set (labelled or not).
pub fn feature_scale_of(domains: &[Domain<'_>]) -> f32 {
    let mut mags = Vec::new();
    for (role, name, range) in domains {
        match range {
            Some((lo, hi)) => {
                println!("{role} {name}: features in [{lo}, {hi}]");
                mags.push(lo.abs().max(hi.abs()));
            }
            None => println!("{role} {name}: no finite feature"),
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
