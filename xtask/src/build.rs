//! `cargo xtask build --cpu | --cuda | --metal`.
//!
//! A missing toolchain is reported in one line (what is missing, how to provide it), with a
//! non-zero exit and no build-script backtrace.

use std::path::{Path, PathBuf};

/// Builds the workspace for the chosen backend.
pub fn build(rest: &[String]) -> Result<(), String> {
    let backend = rest
        .iter()
        .find(|a| a.starts_with("--") && a.as_str() != "--release")
        .map(String::as_str)
        .unwrap_or("--cpu");
    let release = rest.iter().any(|a| a == "--release");
    let mut args = vec!["build", "--workspace"];
    if release {
        args.push("--release");
    }
    match backend {
        "--cpu" => crate::cargo(&args, &[]),
        "--cuda" => {
            let root = find_cuda().ok_or_else(|| {
                "CUDA toolkit not found: no nvcc in CUDA_HOME, CUDA_PATH, /usr/local/cuda or PATH; \
                 install the CUDA toolkit or set CUDA_HOME=<toolkit root> (and CUDA_COMPUTE_CAP, e.g. 90 for H100)"
                    .to_string()
            })?;
            let cap = std::env::var("CUDA_COMPUTE_CAP").ok().or_else(detect_compute_cap).ok_or_else(|| {
                format!(
                    "CUDA toolkit found at {} but no GPU to read the compute capability from: set CUDA_COMPUTE_CAP (e.g. 90 for H100)",
                    root.display()
                )
            })?;
            let path = format!(
                "{}:{}",
                root.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let root_s = root.display().to_string();
            args.extend(["--features", "cuda"]);
            crate::cargo(
                &args,
                &[
                    ("CUDA_HOME", &root_s),
                    ("CUDA_COMPUTE_CAP", &cap),
                    ("PATH", &path),
                ],
            )
        }
        "--metal" => {
            if !cfg!(target_os = "macos") {
                return Err(format!(
                    "Metal needs macOS with Xcode's command-line tools; this is {}: build with --cpu or --cuda here",
                    std::env::consts::OS
                ));
            }
            args.extend(["--features", "metal"]);
            crate::cargo(&args, &[])
        }
        other => Err(format!(
            "unknown backend {other:?}: use --cpu, --cuda or --metal"
        )),
    }
}

fn has_nvcc(root: &Path) -> bool {
    root.join("bin").join("nvcc").is_file()
}

/// A CUDA toolkit root: `CUDA_HOME`, `CUDA_PATH`, the usual system places, then `nvcc` on `PATH`.
pub fn find_cuda() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = [
        "CUDA_HOME",
        "CUDA_PATH",
        "CUDA_ROOT",
        "CUDA_TOOLKIT_ROOT_DIR",
    ]
    .iter()
    .filter_map(|k| std::env::var_os(k).map(PathBuf::from))
    .collect();
    candidates.extend(["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda"].map(PathBuf::from));
    if let Some(p) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&p) {
            if dir.join("nvcc").is_file()
                && let Some(root) = dir.parent()
            {
                candidates.push(root.to_path_buf());
            }
        }
    }
    candidates.into_iter().find(|c| has_nvcc(c))
}

fn detect_compute_cap() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let cap = s.lines().next()?.trim().replace('.', "");
    (!cap.is_empty()).then_some(cap)
}
