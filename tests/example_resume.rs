//! `--checkpoint-dir` / `--resume` through the example binary: a fine-tuning run killed with
//! SIGKILL mid-run and resumed ends with exactly the numbers of an uninterrupted run.
//!
//! Uses the `finetune` example that `cargo test` builds beside this test (skips with one line
//! when it was not built, e.g. under `cargo test --test example_resume` alone).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let p = dir
        .join("examples")
        .join(format!("finetune{}", std::env::consts::EXE_SUFFIX));
    p.is_file().then_some(p)
}

const ARGS: &[&str] = &[
    "--method",
    "finetune,l2sp",
    "--shots",
    "2",
    "--quick",
    "--json",
    "--checkpoint-every",
    "3",
];

fn command(bin: &Path, ck: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(ARGS)
        .arg("--checkpoint-dir")
        .arg(ck)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// The `runs` object of the JSON line a run printed last.
fn runs(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("no output");
    let v: serde_json::Value = serde_json::from_str(line).expect("last line is not JSON");
    v["runs"].clone()
}

fn checkpoints(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| std::fs::read_dir(e.path()).map_or(0, |r| r.count()))
        .sum()
}

#[test]
fn a_killed_finetune_run_resumes_to_the_uninterrupted_result() {
    let Some(bin) = example() else {
        println!("skipped: the finetune example is not built next to this test");
        return;
    };
    let root = std::env::temp_dir().join(format!("xfer-example-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();

    let whole = command(&bin, &root.join("a"), &out).output().unwrap();
    assert!(whole.status.success());
    let want = runs(&whole.stdout);

    // Kill the second run once it has written a few checkpoints (mid-run, perhaps mid-save).
    let ck = root.join("b");
    let mut child = command(&bin, &ck, &out).spawn().unwrap();
    let t = Instant::now();
    while checkpoints(&ck) < 3 && t.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();

    let resumed = command(&bin, &ck, &out).arg("--resume").output().unwrap();
    assert!(resumed.status.success());
    assert_eq!(runs(&resumed.stdout), want, "killed mid-run: {killed}");
    let _ = std::fs::remove_dir_all(&root);
}
