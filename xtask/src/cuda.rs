//! Finding (or assembling) a CUDA toolkit for `--features cuda`.
//!
//! Order: `CUDA_HOME` / `CUDA_PATH`, the usual system places and `nvcc` on `PATH`, then
//! NVIDIA's Python wheels — a folder given with `--cuda-wheels DIR`, a toolkit already
//! unpacked under `target/cuda-toolkit/`, or wheels fetched with `pip download` when the user
//! passes `--fetch`. A wheel toolkit has no driver library, so a link stub `libcuda.so` is
//! generated from the symbols cudarc needs (the real one comes with the driver at run time).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wheels of the CUDA 13.0 toolkit parts candle needs (see docs/gpu.md).
pub const WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-curand>=10.4,<10.5",
    "nvidia-cublas==13.0.2.14",
];

/// A located toolkit: its root (with `bin/nvcc`) and, for wheel toolkits, a folder of link
/// names (and the driver stub) to pass to the linker.
#[derive(Debug, Clone)]
pub struct Toolkit {
    /// Root folder holding `bin/nvcc`, `include/`, `lib/`.
    pub root: PathBuf,
    /// Whether it came from wheels (then [`prepare_link_dir`] must run before linking).
    pub from_wheels: bool,
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// `--cuda-wheels DIR`.
    pub wheels_dir: Option<PathBuf>,
    /// `--fetch`: allow `pip download` into `target/cuda-toolkit/wheels`.
    pub fetch: bool,
}

/// The one-line message for a missing toolkit.
pub const MISSING: &str = "CUDA toolkit not found: no nvcc in CUDA_HOME, CUDA_PATH, /usr/local/cuda or PATH, and no wheels; \
install the CUDA toolkit and set CUDA_HOME=<toolkit root> (and CUDA_COMPUTE_CAP, e.g. 90 for H100), \
or pass --cuda-wheels DIR, or --fetch to download NVIDIA's CUDA 13.0 wheels with pip";

fn has_nvcc(root: &Path) -> bool {
    root.join("bin").join("nvcc").is_file()
}

/// The cargo target folder ([`crate::target_dir`]), absolute.
pub fn target_root() -> PathBuf {
    let d = crate::target_dir();
    if d.is_absolute() {
        d
    } else {
        crate::workspace_root().join(d)
    }
}

/// Where wheels are fetched to and unpacked, and where the link folder lives.
pub fn toolkit_dir() -> PathBuf {
    target_root().join("cuda-toolkit")
}

/// A system toolkit: `CUDA_HOME`, `CUDA_PATH`, usual places, `nvcc` on `PATH`.
pub fn find_system() -> Option<PathBuf> {
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

/// Locates a toolkit in the documented order.
pub fn find(opts: &FindOptions) -> Result<Toolkit, String> {
    if let Some(root) = find_system() {
        return Ok(Toolkit {
            root,
            from_wheels: false,
        });
    }
    let unpacked = toolkit_dir().join("root");
    if let Some(dir) = &opts.wheels_dir {
        if !dir.is_dir() {
            return Err(format!("--cuda-wheels {}: not a folder", dir.display()));
        }
        if let Some(root) = wheel_root(dir) {
            return finish_wheels(root);
        }
        // Unpacked before from the same wheels: reuse (unpacking is 1.2 GB of writes).
        if let Some(root) = wheel_root(&unpacked)
            && std::fs::read_to_string(unpacked.join(WHEELS_MARKER)).ok() == Some(wheel_list(dir)?)
        {
            return finish_wheels(root);
        }
        unpack_wheels(dir, &unpacked)?;
        return wheel_root(&unpacked)
            .ok_or_else(|| {
                format!(
                    "--cuda-wheels {}: no nvidia/cu*/bin/nvcc after unpacking the wheels",
                    dir.display()
                )
            })
            .and_then(finish_wheels);
    }
    if let Some(root) = wheel_root(&unpacked) {
        return finish_wheels(root);
    }
    if opts.fetch {
        let wheels = toolkit_dir().join("wheels");
        fetch_wheels(&wheels)?;
        unpack_wheels(&wheels, &unpacked)?;
        return wheel_root(&unpacked)
            .ok_or_else(|| "the fetched wheels hold no nvidia/cu*/bin/nvcc".to_string())
            .and_then(finish_wheels);
    }
    Err(MISSING.to_string())
}

fn finish_wheels(root: PathBuf) -> Result<Toolkit, String> {
    for sub in ["bin", "nvvm/bin"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            for e in rd.flatten() {
                make_executable(&e.path());
            }
        }
    }
    Ok(Toolkit {
        root,
        from_wheels: true,
    })
}

#[cfg(unix)]
fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(p)
        && m.is_file()
    {
        let mut perm = m.permissions();
        perm.set_mode(perm.mode() | 0o755);
        let _ = std::fs::set_permissions(p, perm);
    }
}

#[cfg(not(unix))]
fn make_executable(_: &Path) {}

/// `DIR/nvidia/cu*/` holding `bin/nvcc`, if any.
fn wheel_root(dir: &Path) -> Option<PathBuf> {
    let nv = dir.join("nvidia");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&nv)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cu"))
                && has_nvcc(p)
        })
        .collect();
    found.sort();
    found.pop()
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{what} failed ({}): {last}", out.status))
    }
}

fn fetch_wheels(dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    eprintln!(
        "xtask: downloading NVIDIA CUDA 13.0 wheels into {}",
        dest.display()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--platform",
            "manylinux_2_27_x86_64",
            "--platform",
            "manylinux2014_x86_64",
        ])
        .args([
            "--platform",
            "manylinux_2_17_x86_64",
            "--python-version",
            "3.11",
        ])
        .args(WHEELS)
        .arg("-d")
        .arg(dest);
    run(&mut cmd, "pip download of the CUDA wheels")
}

/// The file in the unpacked folder naming the wheels it came from.
const WHEELS_MARKER: &str = "xtask-wheels.txt";

fn wheel_files(wheels: &Path) -> Result<Vec<PathBuf>, String> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(wheels)
        .map_err(|e| format!("{}: {e}", wheels.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    if list.is_empty() {
        return Err(format!("{}: no .whl files", wheels.display()));
    }
    list.sort();
    Ok(list)
}

/// The wheels' file names and sizes, one a line (what [`WHEELS_MARKER`] holds).
fn wheel_list(wheels: &Path) -> Result<String, String> {
    Ok(wheel_files(wheels)?
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{name} {size}\n")
        })
        .collect())
}

fn unpack_wheels(wheels: &Path, dest: &Path) -> Result<(), String> {
    let list = wheel_files(wheels)?;
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let _ = std::fs::remove_file(dest.join(WHEELS_MARKER));
    eprintln!(
        "xtask: unpacking {} wheels from {} into {}",
        list.len(),
        wheels.display(),
        dest.display()
    );
    for whl in &list {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "zipfile", "-e"]).arg(whl).arg(dest);
        run(&mut cmd, &format!("unpacking {}", whl.display()))?;
    }
    let marker = dest.join(WHEELS_MARKER);
    std::fs::write(&marker, wheel_list(wheels)?).map_err(|e| format!("{}: {e}", marker.display()))
}

/// The folder of link names and the driver stub (passed to the linker with `-L`).
pub fn link_dir() -> PathBuf {
    toolkit_dir().join("link")
}

/// `CUDA_ERROR_STUB_LIBRARY`: what every function of the stub returns, so a program that
/// finds the stub instead of the driver at run time fails with a CUDA error, not a crash.
pub const CUDA_ERROR_STUB_LIBRARY: i32 = 34;

/// Builds the link folder for a wheel toolkit: unversioned symlinks to the toolkit's
/// libraries and a stub `libcuda.so` (soname `libcuda.so.1`) exporting every driver function
/// (`cu` + upper case) that cudarc's bindings declare, each returning
/// [`CUDA_ERROR_STUB_LIBRARY`].
///
/// The names come from cudarc's source (`src/driver/sys/`, located with `cargo metadata`), so
/// the stub exists before anything is compiled and the whole build is one cargo call. The
/// bindings cover several CUDA versions: the stub exports a superset of what the build links.
pub fn prepare_link_dir(tk: &Toolkit) -> Result<PathBuf, String> {
    let link = link_dir();
    std::fs::create_dir_all(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let lib = tk.root.join("lib");
    for name in [
        "libnvrtc",
        "libcublas",
        "libcublasLt",
        "libcudart",
        "libcurand",
    ] {
        let target = std::fs::read_dir(&lib)
            .map_err(|e| format!("{}: {e}", lib.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}.so.")))
            })
            .min_by_key(|p| p.as_os_str().len())
            .ok_or_else(|| format!("{}: no {name}.so.* in the toolkit", lib.display()))?;
        let l = link.join(format!("{name}.so"));
        let _ = std::fs::remove_file(&l);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &l).map_err(|e| format!("{}: {e}", l.display()))?;
    }
    let mut syms = Vec::new();
    for src in cudarc_sources()? {
        let sys = src.join("src").join("driver").join("sys");
        for file in rust_files(&sys)? {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            syms.extend(driver_functions(&text));
        }
    }
    syms.sort();
    syms.dedup();
    if syms.is_empty() {
        return Err(
            "cudarc's driver bindings (src/driver/sys) declare no cu* functions: cannot generate the libcuda.so link stub"
                .to_string(),
        );
    }
    let stub_c = link.join("stub.c");
    let mut body = format!(
        "/* libcuda.so link stub generated by `cargo xtask` from cudarc's bindings: {} driver\n   \
         functions, each returning CUDA_ERROR_STUB_LIBRARY. The real library comes with the driver. */\n",
        syms.len()
    );
    for s in &syms {
        body.push_str(&format!(
            "int {s}(void) {{ return {CUDA_ERROR_STUB_LIBRARY}; }}\n"
        ));
    }
    std::fs::write(&stub_c, body).map_err(|e| format!("{}: {e}", stub_c.display()))?;
    run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(link.join("libcuda.so"))
            .arg(&stub_c),
        "gcc (libcuda.so link stub)",
    )?;
    Ok(link)
}

/// The source folders of every cudarc in the build graph (`cargo metadata`, which fetches
/// nothing the lock file does not name).
fn cudarc_sources() -> Result<Vec<PathBuf>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--features", "cuda"])
        .current_dir(crate::workspace_root())
        .output()
        .map_err(|e| format!("cargo metadata: could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata: unreadable output: {e}"))?;
    let dirs: Vec<PathBuf> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "cudarc")
        .filter_map(|p| p["manifest_path"].as_str())
        .filter_map(|m| Path::new(m).parent().map(Path::to_path_buf))
        .collect();
    if dirs.is_empty() {
        return Err("cargo metadata: no cudarc package in the build with --features cuda".into());
    }
    Ok(dirs)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    Ok(files)
}

/// The names `NAME` of every `fn NAME(` in `text` that start with `cu` and an upper-case
/// letter: the CUDA driver API (`cublas…`, `curand…`, `cuda…` are other libraries).
pub fn driver_functions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("fn cu") {
        let before_ok = i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let tail = &rest[i + 3..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = tail[name.len()..].trim_start();
        if before_ok
            && name.chars().nth(2).is_some_and(|c| c.is_ascii_uppercase())
            && after.starts_with('(')
        {
            out.push(name.clone());
        }
        rest = &tail[name.len().max(1)..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_functions_are_the_cu_upper_case_fns_only() {
        let src = r#"
            pub unsafe fn cuInit(flags: c_uint) -> CUresult {
                extern "C" { fn cuInit(flags: c_uint) -> CUresult; }
                cuInit(flags)
            }
            pub unsafe fn cuMemAlloc_v2 (p: *mut u64, n: usize) -> CUresult { todo!() }
            type _F = unsafe extern "C" fn(CUarray) -> CUresult;
            pub unsafe fn cublasCreate_v2() {}
            pub unsafe fn cudaMalloc() {}
            fn not_cuda() {}
            fn xcuFake() {}
            pub struct cuLooksLikeAFn;
        "#;
        assert_eq!(
            driver_functions(src),
            ["cuInit", "cuInit", "cuMemAlloc_v2"].map(String::from)
        );
    }
}
