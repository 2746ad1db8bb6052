//! `cargo xtask bench [WORKLOAD ...] [--threads N] [--steps N] [--vs-torch PYTHON]`.
//!
//! Builds `xfer-bench` in release mode and runs each workload in its own process (so the
//! peak resident memory is that workload's), printing the reference's line format
//! `<workload> ms_per_step=<median> peak_rss_mb=<MB>`. With `--vs-torch PYTHON` it also runs
//! `shared/bench/torch_peer.py` (and `bench/torch_extra.py` for `embed-minilm`) with that
//! interpreter in the same run and prints each ratio `xfer/torch`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// The workloads of shared/bench/WORKLOADS.md, plus the sentence-embedding one.
pub const WORKLOADS: &[&str] = &[
    "dann-lenet",
    "l2sp-mlp",
    "finetune-resnet18",
    "zsl-hinge",
    "embed-minilm",
];
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
    let mut python: Option<String> = None;
    let mut names: Vec<String> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = num(it.next(), "--threads")?,
            "--steps" => steps = num(it.next(), "--steps")?,
            "--vs-torch" => {
                python = Some(
                    it.next()
                        .ok_or("--vs-torch needs a python interpreter")?
                        .clone(),
                )
            }
            w if WORKLOADS.contains(&w) => names.push(w.to_string()),
            other => {
                return Err(format!(
                    "unknown workload or flag {other:?} (workloads: {})",
                    WORKLOADS.join(", ")
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
    let mut ours: BTreeMap<String, f64> = BTreeMap::new();
    for w in &names {
        let out = Command::new(&exe)
            .args([w.as_str(), "--steps", &s, "--threads", &t])
            .env("RAYON_NUM_THREADS", &t)
            .env("XFER_SHARED", shared_dir())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{w}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for line in text.lines() {
            println!("{line}");
            if let Some(v) = field(line, w, "ms_per_step=") {
                ours.insert(w.clone(), v);
            }
        }
    }
    let Some(py) = python else { return Ok(()) };
    let mut theirs: BTreeMap<String, f64> = BTreeMap::new();
    let peer: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|w| PEER.contains(w))
        .collect();
    if !peer.is_empty() {
        let script = shared_dir().join("bench/torch_peer.py");
        let lines = run_py(&py, &script, &peer, &s, &t)?;
        collect(&lines, &peer, &mut theirs);
    }
    if names.iter().any(|w| w == "embed-minilm") {
        let script = crate::workspace_root().join("bench/torch_extra.py");
        let lines = run_py(&py, &script, &["embed-minilm"], &s, &t)?;
        collect(&lines, &["embed-minilm"], &mut theirs);
    }
    println!("\nratio xfer/torch (ms per step; < 1 means xfer is faster), {threads} threads:");
    for w in &names {
        match (ours.get(w), theirs.get(w)) {
            (Some(a), Some(b)) if *b > 0.0 => println!("{w} xfer/torch={:.2}", a / b),
            _ => println!("{w} xfer/torch=n/a"),
        }
    }
    Ok(())
}

fn run_py(
    py: &str,
    script: &std::path::Path,
    names: &[&str],
    steps: &str,
    threads: &str,
) -> Result<Vec<String>, String> {
    let out = Command::new(py)
        .arg(script)
        .args(["--steps", steps, "--threads", threads])
        .args(names)
        .env("XFER_SHARED", shared_dir())
        .env("OMP_NUM_THREADS", threads)
        .output()
        .map_err(|e| format!("{py}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(text
        .lines()
        .map(|l| {
            println!("torch {l}");
            l.to_string()
        })
        .collect())
}

fn collect(lines: &[String], names: &[&str], into: &mut BTreeMap<String, f64>) {
    for l in lines {
        for w in names {
            if let Some(v) = field(l, w, "ms_per_step=") {
                into.insert(w.to_string(), v);
            }
        }
    }
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
