//! `cargo xtask build --cpu | --cuda | --metal [--release] [--cuda-wheels DIR] [--fetch]`.
//!
//! A missing toolchain is reported in one line (what is missing, how to provide it), with a
//! non-zero exit and no build-script backtrace. CUDA builds go to `<target>/cuda/` so they do
//! not invalidate the CPU build (`<target>` is `CARGO_TARGET_DIR` or `target/`).
//!
//! With a wheel toolkit the link folder comes first (link names for the toolkit's libraries
//! and a `libcuda.so` stub, see [`cuda::prepare_link_dir`]), then one cargo call with
//! `-L <link folder>`.

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
///
/// The capability: `CUDA_COMPUTE_CAP`, else (when `detect`) the first GPU's from
/// `nvidia-smi`, else `cap_default`.
pub fn cuda_env(
    find: &cuda::FindOptions,
    cap_default: Option<&str>,
    detect: bool,
) -> Result<CudaEnv, String> {
    let toolkit = cuda::find(find)?;
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| if detect { detect_compute_cap() } else { None })
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
        let link = cuda::link_dir();
        std::fs::create_dir_all(&link).map_err(|e| format!("{}: {e}", link.display()))?;
        // Keep the user's flags; the link folder goes last.
        let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        if !flags.trim().is_empty() {
            flags.push(' ');
        }
        flags.push_str(&format!("-L {}", link.display()));
        vars.push(("RUSTFLAGS".to_string(), flags));
    }
    Ok(CudaEnv { vars, toolkit })
}

impl CudaEnv {
    /// The variables as `(&str, &str)` pairs for [`crate::cargo`].
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The compute capability the build targets.
    pub fn compute_cap(&self) -> &str {
        self.vars
            .iter()
            .find(|(k, _)| k == "CUDA_COMPUTE_CAP")
            .map(|(_, v)| v.as_str())
            .unwrap_or("?")
    }
}

/// `<target>/cuda`: where CUDA builds go.
pub fn cuda_target_dir() -> PathBuf {
    cuda::target_root().join("cuda")
}

/// For a wheel toolkit: writes the link folder (link names and the driver stub). A system
/// toolkit needs none.
pub fn prepare_link(env: &CudaEnv) -> Result<(), String> {
    if !env.toolkit.from_wheels {
        return Ok(());
    }
    let link = cuda::prepare_link_dir(&env.toolkit)?;
    eprintln!(
        "xtask: link folder {} (toolkit link names and the libcuda.so stub)",
        link.display()
    );
    Ok(())
}

/// Runs a cargo command for CUDA: the link folder (wheel toolkit), then `args` with
/// `--features cuda` (the facade forwards it to every crate) into [`cuda_target_dir`].
pub fn cargo_cuda(env: &CudaEnv, release: bool, args: &[&str]) -> Result<(), String> {
    prepare_link(env)?;
    let td = cuda_target_dir().display().to_string();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--features", "cuda", "--target-dir", td.as_str()]);
    if release {
        full.push("--release");
    }
    crate::cargo(&full, &env.pairs())
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
            let env = cuda_env(&a.find, None, true)?;
            eprintln!(
                "xtask: CUDA toolkit at {} ({})",
                env.toolkit.root.display(),
                if env.toolkit.from_wheels {
                    "NVIDIA wheels"
                } else {
                    "system"
                }
            );
            let started = std::time::Instant::now();
            // The examples too: they link against the CUDA libraries (and the driver stub).
            args.extend(["--lib", "--bins", "--examples"]);
            cargo_cuda(&env, a.release, &args)?;
            eprintln!(
                "xtask build --cuda: done in {:.0} s (CUDA_COMPUTE_CAP={}, into {})",
                started.elapsed().as_secs_f64(),
                env.compute_cap(),
                cuda_target_dir().display()
            );
            Ok(())
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
