//! `cargo xtask build --cpu | --cuda | --metal [--release] [--cuda-wheels DIR] [--fetch]`.
//!
//! A missing toolchain is reported in one line (what is missing, how to provide it), with a
//! non-zero exit and no build-script backtrace. CUDA builds go to `target/cuda/` so they do
//! not invalidate the CPU build.

use std::path::PathBuf;

use crate::cuda;

/// Parsed arguments of `build` (and of `gpu-bundle`).
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// `--cpu`, `--cuda` or `--metal`.
    pub backend: String,
    /// `--release`.
    pub release: bool,
    /// Toolkit search options.
    pub find: cuda::FindOptions,
}

impl BuildArgs {
    /// Parses the flags after the task name.
    pub fn parse(rest: &[String]) -> Result<Self, String> {
        let mut a = BuildArgs {
            backend: "--cpu".into(),
            ..Default::default()
        };
        let mut it = rest.iter();
        while let Some(x) = it.next() {
            match x.as_str() {
                "--cpu" | "--cuda" | "--metal" => a.backend = x.clone(),
                "--release" => a.release = true,
                "--fetch" => a.find.fetch = true,
                "--cuda-wheels" => {
                    let d = it.next().ok_or("--cuda-wheels needs a folder")?;
                    a.find.wheels_dir = Some(PathBuf::from(d));
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(a)
    }
}

/// The environment for a CUDA build: located toolkit, compute capability, link folder.
pub struct CudaEnv {
    /// Variables to set for cargo.
    pub vars: Vec<(String, String)>,
    /// The toolkit.
    pub toolkit: cuda::Toolkit,
}

/// Locates the toolkit and the compute capability, or fails with one line.
pub fn cuda_env(find: &cuda::FindOptions, cap_default: Option<&str>) -> Result<CudaEnv, String> {
    let toolkit = cuda::find(find)?;
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .or_else(detect_compute_cap)
        .or(cap_default.map(str::to_string))
        .ok_or_else(|| {
            format!(
                "CUDA toolkit found at {} but no GPU to read the compute capability from: set CUDA_COMPUTE_CAP (e.g. 90 for H100)",
                toolkit.root.display()
            )
        })?;
    let path = format!(
        "{}:{}",
        toolkit.root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut vars = vec![
        ("CUDA_HOME".to_string(), toolkit.root.display().to_string()),
        ("CUDA_PATH".to_string(), toolkit.root.display().to_string()),
        ("CUDA_COMPUTE_CAP".to_string(), cap),
        ("PATH".to_string(), path),
    ];
    if toolkit.from_wheels {
        let link = crate::workspace_root()
            .join("target")
            .join("cuda-toolkit")
            .join("link");
        std::fs::create_dir_all(&link).map_err(|e| format!("{}: {e}", link.display()))?;
        vars.push(("RUSTFLAGS".to_string(), format!("-L {}", link.display())));
    }
    Ok(CudaEnv { vars, toolkit })
}

/// Runs a cargo command for CUDA: libraries first (no linking), then the link stub for a
/// wheel toolkit, then `args`.
pub fn cargo_cuda(env: &CudaEnv, release: bool, args: &[&str]) -> Result<(), String> {
    let vars: Vec<(&str, &str)> = env
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let target_dir = crate::workspace_root().join("target").join("cuda");
    let td = target_dir.display().to_string();
    if env.toolkit.from_wheels {
        let mut libs = vec![
            "build",
            "--workspace",
            "--lib",
            "--features",
            "cuda",
            "--target-dir",
            td.as_str(),
        ];
        if release {
            libs.push("--release");
        }
        crate::cargo(&libs, &vars)?;
        let deps = target_dir
            .join(if release { "release" } else { "debug" })
            .join("deps");
        cuda::prepare_link_dir(&env.toolkit, &deps)?;
    }
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--features", "cuda", "--target-dir", td.as_str()]);
    if release {
        full.push("--release");
    }
    crate::cargo(&full, &vars)
}

/// Builds the workspace for the chosen backend.
pub fn build(rest: &[String]) -> Result<(), String> {
    let a = BuildArgs::parse(rest)?;
    let mut args = vec!["build", "--workspace"];
    match a.backend.as_str() {
        "--cpu" => {
            if a.release {
                args.push("--release");
            }
            crate::cargo(&args, &[])
        }
        "--cuda" => {
            let env = cuda_env(&a.find, None)?;
            eprintln!(
                "xtask: CUDA toolkit at {} ({})",
                env.toolkit.root.display(),
                if env.toolkit.from_wheels {
                    "NVIDIA wheels"
                } else {
                    "system"
                }
            );
            cargo_cuda(&env, a.release, &args)
        }
        "--metal" => {
            if !cfg!(target_os = "macos") {
                return Err(format!(
                    "Metal needs macOS with Xcode's command-line tools; this is {}: build with --cpu or --cuda here",
                    std::env::consts::OS
                ));
            }
            args.extend(["--features", "metal"]);
            if a.release {
                args.push("--release");
            }
            crate::cargo(&args, &[])
        }
        other => Err(format!(
            "unknown backend {other:?}: use --cpu, --cuda or --metal"
        )),
    }
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
