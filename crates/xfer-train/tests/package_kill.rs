//! Crash safety of model packages, measured by killing a real process: a child saves two
//! different networks into one package folder, alternately, as fast as it can; the parent
//! kills it (`SIGKILL`) at varying moments, and after every kill the folder must load and be
//! exactly one of the two networks.
//!
//! One binary plays both parts (`harness = false`): with `XFER_PKG_CHILD_DIR` set it is the
//! child.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use xfer_models::package::{InputSpec, ModelInfo};
use xfer_models::{BackboneSpec, Classifier, ClassifierConfig};

const CHILD_ENV: &str = "XFER_PKG_CHILD_DIR";

/// Network `k` (0 or 1): an MLP of about 2.6 M parameters (10 MB), so a save takes long
/// enough to be interrupted.
fn net(k: u64) -> Classifier {
    let cfg = ClassifierConfig::new(BackboneSpec::mlp_hidden(&[2048, 1024]), &[256], 4);
    Classifier::new(&cfg, k, &Device::Cpu).unwrap()
}

fn info(k: u64) -> ModelInfo {
    ModelInfo::new(
        (0..4).map(|c| format!("class{c}-{k}")).collect(),
        InputSpec::tensor(1.0),
    )
}

fn outputs(net: &Classifier) -> Vec<f32> {
    let x = Tensor::arange(0f32, 512.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 256))
        .unwrap();
    net.logits(&(x / 512.0).unwrap(), false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("package_kill: test");
        return;
    }
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let nets = [net(0), net(1)];
        for i in 0.. {
            let k = i % 2;
            nets[k].save(Path::new(&dir), &info(k as u64)).unwrap();
        }
        return;
    }
    let t0 = Instant::now();
    let root = std::env::temp_dir().join(format!("xfer-package-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join("model");
    let want = [outputs(&net(0)), outputs(&net(1))];
    net(0).save(&dir, &info(0)).unwrap();
    let mut seen = [0usize; 2];
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Let it build its networks and get into the save loop, then kill it at varying points.
        std::thread::sleep(Duration::from_millis(400 + 37 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let pkg = Classifier::load(&dir, &Device::Cpu).unwrap_or_else(|e| {
            panic!("round {round}: the package does not load after the kill: {e}")
        });
        let got = outputs(&pkg.net);
        let k = want
            .iter()
            .position(|w| *w == got)
            .unwrap_or_else(|| panic!("round {round}: the weights are neither network's"));
        assert_eq!(
            pkg.info,
            info(k as u64),
            "round {round}: weights and description disagree"
        );
        seen[k] += 1;
    }
    // The next save cleans up whatever the kills left beside the folder.
    net(1).save(&dir, &info(1)).unwrap();
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["model"], "left beside the package: {names:?}");
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "package_kill ... ok ({:.1} s; the package held network 0 {} and network 1 {} times)",
        t0.elapsed().as_secs_f64(),
        seen[0],
        seen[1]
    );
}
