//! `cargo xtask <task>`: the project's automation, one function per task.
//!
//! - `ci`: fmt check, clippy (warnings denied), tests, docs (warnings denied), examples build.
//! - `test`: the workspace tests only.
//! - `demo`: runs the quickstart example in release mode.
//! - `bench`: the training workloads against the PyTorch reference.
//! - `build --cpu | --cuda | --metal`: builds the workspace with that backend.
//! - `gpu-bundle`: the CUDA test and benchmark binaries with `run.sh`, to run on a GPU machine.

use std::process::{Command, ExitCode};

mod bench;
mod build;
mod cuda;
mod gpu_bundle;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "ci" => ci(),
        "test" => test(rest),
        "demo" => demo(rest),
        "build" => build::build(rest),
        "bench" => bench::bench(rest),
        "gpu-bundle" => gpu_bundle::gpu_bundle(rest),
        "help" | "-h" | "--help" => {
            println!("{}", USAGE);
            Ok(())
        }
        other => Err(format!("unknown task {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>
  ci                         fmt, clippy, tests, docs, examples (what CI runs)
  test [ARGS...]             cargo test --workspace [ARGS...]
  demo [ARGS...]             cargo run --release --example quickstart -- [ARGS...]
  bench [WORKLOAD...] [--threads N] [--steps N] [--repeat N] [--vs-torch PYTHON]
                             the training workloads of shared/bench/WORKLOADS.md
  build --cpu|--cuda|--metal [--release] [--cuda-wheels DIR] [--fetch]
                             build the workspace with that backend
  gpu-bundle [--cuda-wheels DIR] [--fetch] [--out DIR]
                             CUDA parity tests + benchmark + run.sh in target/gpu-bundle/";

/// Runs `cargo` with `args` (and extra environment), failing with the command line.
pub(crate) fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo target folder (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn ci() -> Result<(), String> {
    let started = std::time::Instant::now();
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // `cargo test` already compiled the examples in the dev profile; this links them all.
    cargo(&["build", "--workspace", "--examples"], &[])?;
    eprintln!(
        "xtask ci: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test(rest: &[String]) -> Result<(), String> {
    let mut args = vec!["test", "--workspace"];
    args.extend(rest.iter().map(String::as_str));
    cargo(&args, &[])
}

fn demo(rest: &[String]) -> Result<(), String> {
    let mut args = vec!["run", "--release", "--example", "quickstart", "--"];
    args.extend(rest.iter().map(String::as_str));
    cargo(&args, &[])
}
