//! `cargo xtask gpu-bundle [--cuda-wheels DIR] [--fetch] [--out DIR]`: a folder to copy to a
//! GPU machine and run there.
//!
//! Builds, with `--features cuda` for `CUDA_COMPUTE_CAP` (default 90: H100/H200) in release
//! mode, the device-parity test binaries of xfer-ops and xfer-models and the `xfer-bench`
//! binary, strips them, and writes them with `run.sh` (from `xtask/gpu-bundle/`) into
//! `<target>/gpu-bundle/` (under 60 MB). `run.sh` finds the CUDA runtime libraries of a
//! PyTorch CUDA installation, runs the parity tests with `XFER_DEVICE=cuda`, then the four
//! benchmark workloads with `--device cuda`. `run.sh --device cpu` runs the same binaries on
//! the CPU (with the bundled driver stub where no driver is installed): the bundle's CPU half.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::{BuildArgs, cuda_env, cuda_target_dir, prepare_link};
use crate::cuda;

/// The bundle may not be larger than this (it is copied to the GPU machine).
const MAX_BYTES: u64 = 60 * 1000 * 1000;

const RUN_SH: &str = include_str!("../gpu-bundle/run.sh");
const TORCH_PEER_CUDA: &str = include_str!("../gpu-bundle/torch_peer_cuda.py");

/// The test target every bundled package has.
const TEST_TARGET: &str = "device_parity";

/// `(package, test target, name in the bundle)` of the device-parity test binaries.
const TESTS: &[(&str, &str, &str)] = &[
    ("xfer-ops", TEST_TARGET, "xfer-ops-device-parity"),
    ("xfer-models", TEST_TARGET, "xfer-models-device-parity"),
];

/// Runs the task.
pub fn gpu_bundle(rest: &[String]) -> Result<(), String> {
    let started = std::time::Instant::now();
    let (args, out) = parse(rest)?;
    let env = cuda_env(&args.find, Some("90"), false)?;
    eprintln!(
        "xtask gpu-bundle: CUDA toolkit at {} ({}), CUDA_COMPUTE_CAP={}",
        env.toolkit.root.display(),
        if env.toolkit.from_wheels {
            "NVIDIA wheels"
        } else {
            "system"
        },
        env.compute_cap()
    );
    prepare_link(&env)?;
    let td = cuda_target_dir().display().to_string();
    let vars = env.pairs();
    // One cargo call for everything, so the dependencies are compiled once, with one feature
    // set (`cargo build --test NAME` builds a test target's libtest executable).
    let mut build_args = vec![
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "--target-dir",
        td.as_str(),
    ];
    let mut features = Vec::new();
    for (pkg, _, _) in TESTS {
        build_args.extend(["-p", pkg]);
        features.push(format!("{pkg}/cuda"));
    }
    features.push("xfer-bench/cuda".to_string());
    let features = features.join(",");
    build_args.extend([
        "-p",
        "xfer-bench",
        "--test",
        TEST_TARGET,
        "--bin",
        "xfer-bench",
        "--features",
        features.as_str(),
    ]);
    let json = cargo_json(&build_args, &vars)?;

    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    for (pkg, test, name) in TESTS {
        let exe = executable(&json, pkg, test, "test")
            .ok_or_else(|| format!("cargo built no test executable {pkg}/{test}"))?;
        files.push((exe, name));
    }
    let bench = executable(&json, "xfer-bench", "xfer-bench", "bin")
        .ok_or("cargo built no xfer-bench executable")?;
    files.push((bench, "xfer-bench"));

    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(out.join("cpu-stub")).map_err(|e| format!("{}: {e}", out.display()))?;
    for (src, name) in &files {
        let dst = out.join(name);
        std::fs::copy(src, &dst)
            .map_err(|e| format!("{} → {}: {e}", src.display(), dst.display()))?;
        strip(&dst)?;
        set_executable(&dst);
    }
    write(&out.join("run.sh"), RUN_SH)?;
    set_executable(&out.join("run.sh"));
    write(&out.join("torch_peer_cuda.py"), TORCH_PEER_CUDA)?;
    let peer = crate::workspace_root()
        .join("..")
        .join("shared")
        .join("bench")
        .join("torch_peer.py");
    let peer = std::env::var_os("XFER_SHARED")
        .map(|s| PathBuf::from(s).join("bench").join("torch_peer.py"))
        .filter(|p| p.is_file())
        .unwrap_or(peer);
    if peer.is_file() {
        std::fs::copy(&peer, out.join("torch_peer.py"))
            .map_err(|e| format!("{}: {e}", peer.display()))?;
    } else {
        eprintln!(
            "xtask gpu-bundle: {} not found: the bundle has no PyTorch reference (run.sh --torch will fail)",
            peer.display()
        );
    }
    // The driver stub, for running the CPU half where no NVIDIA driver is installed.
    let stub = cuda::link_dir().join("libcuda.so");
    if env.toolkit.from_wheels && stub.is_file() {
        std::fs::copy(&stub, out.join("cpu-stub").join("libcuda.so.1"))
            .map_err(|e| format!("{}: {e}", stub.display()))?;
    } else {
        let _ = std::fs::remove_dir(out.join("cpu-stub"));
    }
    write(&out.join("BUILD-INFO"), &build_info(&env))?;

    let mut total = 0u64;
    let mut listing = String::new();
    for e in walk(&out)? {
        let len = std::fs::metadata(&e).map(|m| m.len()).unwrap_or(0);
        total += len;
        listing.push_str(&format!(
            "  {:>8.1} MB  {}\n",
            len as f64 / 1e6,
            e.strip_prefix(&out).unwrap_or(&e).display()
        ));
    }
    eprint!("{listing}");
    eprintln!(
        "xtask gpu-bundle: {} ({:.1} MB) in {:.0} s; on the GPU machine: ./run.sh; here: ./run.sh --device cpu",
        out.display(),
        total as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if total > MAX_BYTES {
        return Err(format!(
            "{} is {:.1} MB, more than the {} MB a bundle may have",
            out.display(),
            total as f64 / 1e6,
            MAX_BYTES / 1_000_000
        ));
    }
    Ok(())
}

fn parse(rest: &[String]) -> Result<(BuildArgs, PathBuf), String> {
    let mut out = cuda::target_root().join("gpu-bundle");
    let mut pass = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a folder")?),
            "--cuda-wheels" => {
                pass.push(a.clone());
                pass.push(it.next().ok_or("--cuda-wheels needs a folder")?.clone());
            }
            "--fetch" => pass.push(a.clone()),
            other => {
                return Err(format!(
                    "unknown flag {other:?} (gpu-bundle [--cuda-wheels DIR] [--fetch] [--out DIR])"
                ));
            }
        }
    }
    Ok((BuildArgs::parse(&pass)?, out))
}

/// Runs cargo with JSON messages on stdout (diagnostics rendered on stderr); returns stdout.
fn cargo_json(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("$ cargo {}", args.join(" "));
    let out = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(crate::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo {}` failed ({})",
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The executable of target `name` (of kind `kind`: "test", "bin") of package `pkg` in
/// cargo's JSON messages.
fn executable(json: &str, pkg: &str, name: &str, kind: &str) -> Option<PathBuf> {
    json.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter(|v| v["target"]["name"] == name)
        .filter(|v| {
            v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind))
        })
        .filter(|v| {
            // `package_id` is `path+file:///…/crates/xfer-ops#0.1.0` (or the older
            // `xfer-ops 0.1.0 (path+…)`); the manifest path names the package's folder too.
            let id = v["package_id"].as_str().unwrap_or("");
            let manifest = v["manifest_path"].as_str().unwrap_or("");
            id.starts_with(&format!("{pkg} "))
                || id.contains(&format!("/{pkg}#"))
                || manifest.ends_with(&format!("/{pkg}/Cargo.toml"))
        })
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
}

fn strip(p: &Path) -> Result<(), String> {
    match Command::new("strip").arg("--strip-all").arg(p).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("strip {} failed ({s})", p.display())),
        Err(e) => {
            eprintln!(
                "xtask gpu-bundle: strip not available ({e}): {} keeps its symbols",
                p.display()
            );
            Ok(())
        }
    }
}

fn write(p: &Path, text: &str) -> Result<(), String> {
    std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(unix)]
fn set_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
}

#[cfg(not(unix))]
fn set_executable(_: &Path) {}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What was built, from where, for which GPU.
fn build_info(env: &crate::build::CudaEnv) -> String {
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nvcc = Command::new(env.toolkit.root.join("bin").join("nvcc"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("release"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "nvcc version unknown".into());
    format!(
        "xfer commit {git}, release build, --features cuda, CUDA_COMPUTE_CAP={}\n\
         toolkit {} ({}): {nvcc}\n\
         needs an NVIDIA driver that runs this CUDA version (CUDA 13.0: driver 580 or newer)\n",
        env.compute_cap(),
        env.toolkit.root.display(),
        if env.toolkit.from_wheels {
            "NVIDIA wheels"
        } else {
            "system"
        },
    )
}
