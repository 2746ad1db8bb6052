//! `cargo xtask bench [WORKLOAD ...] [--threads N] [--steps N] [--repeat N] [--vs-torch PYTHON]`.
//!
//! Builds `xfer-bench` in release mode and runs each workload in its own process (so the
//! peak resident memory is that workload's), printing the reference's line format
//! `<workload> ms_per_step=<median> peak_rss_mb=<MB>`. With `--vs-torch PYTHON` it also runs
//! `shared/bench/torch_peer.py` (and `bench/torch_extra.py` for `embed-minilm` and
//! `finetune-mobilenet_v2`) with that
//! interpreter in the same run, each workload's two sides back to back (`--repeat N` rounds),
//! and prints each ratio `xfer/torch` (the median over the rounds). `matmul-peak` (only when
//! named) measures the GEMM rate that `finetune-resnet18`'s GFLOP/s is compared with.
//! `imagefolder-read` decodes and augments a folder of JPEGs (generated once under the temp
//! dir, or `$XFER_BENCH_FOLDER`) with 2 loader threads against torchvision with 2 workers.

use std::path::PathBuf;
use std::process::Command;

/// The workloads of shared/bench/WORKLOADS.md, plus the sentence-embedding, MobileNetV2
/// fine-tuning and image-reading ones.
pub const WORKLOADS: &[&str] = &[
    "dann-lenet",
    "l2sp-mlp",
    "finetune-resnet18",
    "finetune-mobilenet_v2",
    "zsl-hinge",
    "embed-minilm",
    "imagefolder-read",
];
/// Workloads run only when named (no PyTorch side): the matrix-product rate of the machine,
/// and the source-only LeNet step that `dann-lenet`'s domain-adaptation step is compared with.
pub const EXTRA: &[&str] = &["matmul-peak", "sourceonly-lenet"];
/// The ones bench/torch_extra.py knows.
const EXTRA_PEER: &[&str] = &["embed-minilm", "finetune-mobilenet_v2", "imagefolder-read"];
/// The ones torch_peer.py knows.
const PEER: &[&str] = &["dann-lenet", "l2sp-mlp", "finetune-resnet18", "zsl-hinge"];

/// The shared folder: `XFER_SHARED`, else `../shared` beside the workspace.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("..").join("shared"))
}

/// Runs the benchmark task.
pub fn bench(rest: &[String]) -> Result<(), String> {
    let mut threads = 2usize;
    let mut steps = 30usize;
    let mut repeat = 1usize;
    let mut python: Option<String> = None;
    let mut names: Vec<String> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = num(it.next(), "--threads")?,
            "--steps" => steps = num(it.next(), "--steps")?,
            "--repeat" => repeat = num(it.next(), "--repeat")?.max(1),
            "--vs-torch" => {
                python = Some(
                    it.next()
                        .ok_or("--vs-torch needs a python interpreter")?
                        .clone(),
                )
            }
            w if WORKLOADS.contains(&w) || EXTRA.contains(&w) => names.push(w.to_string()),
            other => {
                return Err(format!(
                    "unknown workload or flag {other:?} (workloads: {}; also {})",
                    WORKLOADS.join(", "),
                    EXTRA.join(", ")
                ));
            }
        }
    }
    if names.is_empty() {
        names = WORKLOADS.iter().map(|s| s.to_string()).collect();
    }
    crate::cargo(&["build", "--release", "-p", "xfer-bench"], &[])?;
    let exe = crate::target_dir().join("release/xfer-bench");
    let t = threads.to_string();
    let s = steps.to_string();
    println!("load average before: {}", load_average());
    // Each workload's xfer and PyTorch runs go back to back, `repeat` times, so both sides
    // see the same machine load; the ratio reported is the median of the per-round ratios.
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for w in &names {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            let out = Command::new(&exe)
                .args([w.as_str(), "--steps", &s, "--threads", &t])
                // The thread count a user sets; nothing else (no allocator or candle
                // variable): the bench measures the configuration a user gets.
                .env("RAYON_NUM_THREADS", &t)
                .env("XFER_SHARED", shared_dir())
                .output()
                .map_err(|e| format!("{}: {e}", exe.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                // One workload that cannot run is reported on its line; the others still run
                // and the table still prints.
                println!(
                    "{w} failed: {}",
                    last_line(&String::from_utf8_lossy(&out.stderr))
                );
                break;
            }
            for line in text.lines() {
                println!("{line}");
                if let Some(v) = field(line, w, "ms_per_step=") {
                    ours.push(v);
                }
            }
            let Some(py) = &python else { continue };
            let script = if PEER.contains(&w.as_str()) {
                shared_dir().join("bench/torch_peer.py")
            } else if EXTRA_PEER.contains(&w.as_str()) {
                crate::workspace_root().join("bench/torch_extra.py")
            } else {
                continue;
            };
            // PyTorch's OpenMP threads spin at barriers by default (ACTIVE), which a loaded
            // machine punishes; PASSIVE makes them sleep. The reference is the faster of the two.
            let mut best: Option<f64> = None;
            for policy in ["ACTIVE", "PASSIVE"] {
                match run_py(py, &script, &[w.as_str()], &s, &t, policy) {
                    Ok(lines) => {
                        for v in lines.iter().filter_map(|l| field(l, w, "ms_per_step=")) {
                            best = Some(best.map_or(v, |b: f64| b.min(v)));
                        }
                    }
                    // A peer that cannot run (a missing package, say) is reported on its
                    // line; the ratio table still prints for every workload that ran.
                    Err(e) => println!("torch[{policy}] {w} failed: {e}"),
                }
            }
            theirs.push(best.unwrap_or(f64::NAN));
        }
        rows.push((w.clone(), ours, theirs));
    }
    println!("load average after: {}", load_average());
    if python.is_none() {
        return Ok(());
    }
    println!(
        "\nratio xfer/torch (ms per step; < 1 means xfer is faster), {threads} threads, \
         median of {repeat} back-to-back round(s), torch = the faster of OMP_WAIT_POLICY \
         ACTIVE and PASSIVE in each round:"
    );
    for (w, ours, theirs) in &rows {
        let ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| a / b)
            .collect();
        let ran: Vec<f64> = theirs.iter().copied().filter(|b| *b > 0.0).collect();
        match (median(ours), median(&ran), median(&ratios)) {
            (Some(a), Some(b), Some(r)) => {
                println!("{w} xfer/torch={r:.2} (xfer {a:.2} ms, torch {b:.2} ms)")
            }
            (Some(a), _, _) => println!("{w} xfer/torch=n/a (xfer {a:.2} ms, torch did not run)"),
            _ => println!("{w} xfer/torch=n/a (xfer did not run)"),
        }
    }
    Ok(())
}

/// The last non-empty line of a process's error output (its error message).
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error output")
        .trim()
        .to_string()
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `/proc/loadavg`'s three averages, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn run_py(
    py: &str,
    script: &std::path::Path,
    names: &[&str],
    steps: &str,
    threads: &str,
    wait_policy: &str,
) -> Result<Vec<String>, String> {
    let out = Command::new(py)
        .arg(script)
        .args(["--steps", steps, "--threads", threads])
        .args(names)
        .env("XFER_SHARED", shared_dir())
        .env("OMP_NUM_THREADS", threads)
        .env("OMP_WAIT_POLICY", wait_policy)
        .output()
        .map_err(|e| format!("{py}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            script.display(),
            last_line(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(text
        .lines()
        .map(|l| {
            println!("torch[{wait_policy}] {l}");
            l.to_string()
        })
        .collect())
}

fn field(line: &str, workload: &str, key: &str) -> Option<f64> {
    let mut parts = line.split_whitespace();
    if parts.next()? != workload {
        return None;
    }
    parts
        .find_map(|p| p.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

fn num(v: Option<&String>, flag: &str) -> Result<usize, String> {
    v.ok_or(format!("{flag} needs a number"))?
        .parse()
        .map_err(|_| format!("{flag} needs a positive integer"))
}
