//! Crash safety measured by killing a real process: a child trains a small network with
//! dropout and a checkpoint every step; the parent kills it (`SIGKILL`) mid-save and mid-run
//! several times, and after every kill checks that no checkpoint is torn and that at most one
//! temporary file exists; finally the run is resumed to the end and its weights must be
//! bit-identical to an uninterrupted run's.
//!
//! One binary plays both parts (`harness = false`): with `XFER_KILL_CHILD_DIR` set it is the
//! child, training into that directory (resuming from its newest checkpoint).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xfer_train::checkpoint::{CheckpointFile, list_checkpoints};

/// Hidden width: 5·HIDDEN parameters, so a checkpoint (weights and AdamW's two moments) is
/// about 60·HIDDEN bytes (3 MB) — large enough for a save to be caught in the act.
const HIDDEN: usize = 50_000;
/// Planned steps (one checkpoint after each).
const STEPS: usize = 16;
const CHILD_ENV: &str = "XFER_KILL_CHILD_DIR";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("kill_resume: test");
        return;
    }
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let (_, r) = common::train(HIDDEN, 1, STEPS, Path::new(&dir), None);
        if let Err(e) = r {
            eprintln!("child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let t0 = Instant::now();
    parent();
    println!("kill_resume ... ok ({:.1} s)", t0.elapsed().as_secs_f64());
}

fn spawn(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn temp_files(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".tmp"))
        .collect()
}

/// Every checkpoint in `dir` reads back whole and is the step its name says; returns the
/// newest step.
fn check_checkpoints(dir: &Path, round: usize) -> usize {
    let all = list_checkpoints(dir).unwrap();
    for (step, path) in &all {
        let ck = CheckpointFile::read(path)
            .unwrap_or_else(|e| panic!("round {round}: torn checkpoint {}: {e}", path.display()));
        ck.check_format().unwrap();
        assert_eq!(
            ck.step().unwrap(),
            *step,
            "round {round}: {}",
            path.display()
        );
    }
    all.last().map_or(0, |(s, _)| *s)
}

fn final_params(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let (step, path) = list_checkpoints(dir).unwrap().pop().unwrap();
    assert_eq!(step, STEPS);
    let ck = CheckpointFile::read(&path).unwrap();
    ck.with_prefix("param/")
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n.to_string(), v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

fn parent() {
    let base = std::env::temp_dir().join(format!("xfer-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (reference, killed): (PathBuf, PathBuf) = (base.join("straight"), base.join("killed"));

    // The uninterrupted run, in a child too (the same binary, the same thread settings).
    let status = spawn(&reference).wait().unwrap();
    assert!(status.success(), "the uninterrupted run failed");

    let (mut mid_save, mut mid_run, mut round) = (0, 0, 0);
    let mut newest = 0;
    while mid_save < 3 || mid_run < 2 {
        round += 1;
        assert!(
            round <= 30,
            "{mid_save} kills caught a save in {round} rounds: saves too fast to catch"
        );
        let mut child = spawn(&killed);
        let deadline = Instant::now() + Duration::from_secs(20);
        if mid_save < 3 {
            // Kill as soon as a save's temporary file appears (a save in progress).
            while temp_files(&killed).is_empty() {
                assert!(Instant::now() < deadline, "round {round}: no save seen");
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            // Kill at some point of the run once it has made progress (training or saving).
            while list_checkpoints(&killed)
                .unwrap()
                .last()
                .map_or(0, |(s, _)| *s)
                <= newest
            {
                assert!(Instant::now() < deadline, "round {round}: no progress");
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "round {round}: the run ended"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(3 * round as u64));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the run ended before the kill"
        );
        let temps = temp_files(&killed);
        assert!(temps.len() <= 1, "round {round}: temporary files {temps:?}");
        if temps.is_empty() {
            mid_run += 1;
        } else {
            mid_save += 1;
        }
        let now = check_checkpoints(&killed, round);
        assert!(
            now >= newest,
            "round {round}: the newest checkpoint went back"
        );
        newest = now;
    }
    // Resume to the end; the leftovers of the killed saves are gone.
    let status = spawn(&killed).wait().unwrap();
    assert!(status.success(), "the resumed run failed");
    assert_eq!(temp_files(&killed), Vec::<String>::new());
    check_checkpoints(&killed, round + 1);
    assert!(
        final_params(&killed) == final_params(&reference),
        "the resumed run's final weights differ from the uninterrupted run's"
    );
    println!(
        "kill_resume: {round} kills ({mid_save} mid-save, {mid_run} mid-run), last at step {newest} of {STEPS}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
