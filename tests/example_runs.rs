//! What a run leaves behind, through the example binaries (issue 20, items 4–6): `dann` with
//! an unlabelled target trains on all of it and reports `target_acc: null` (and measures it
//! with `--target-test`); every run writes `args.json`, `metrics.csv` and its report into a
//! fresh `runs/<example>-<time>` folder (never overwritten) or `--out`; `--log-file` holds
//! the log without colour codes; `finetune --shots all` without a test set is a one-line
//! error, `--shots 0.2` trains.
//!
//! Uses the examples that `cargo test` builds beside this test (skips with one line when they
//! were not built, e.g. under `cargo test --test example_runs` alone).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let p = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        Some(p)
    } else {
        println!(
            "skipped: example {name} not built next to this test; run `cargo build --examples`"
        );
        None
    }
}

/// A fresh, empty folder under the system temp folder.
fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-example-runs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON object on the last line of stdout.
fn last_json(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().last().expect("no output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// 120 unlabelled points on an arc, two features per row, no label column.
fn unlabelled_csv(dir: &Path) -> PathBuf {
    let p = dir.join("target.csv");
    let rows: String = (0..120)
        .map(|i| {
            let a = i as f64 * std::f64::consts::PI / 120.0;
            format!("{:.4},{:.4}\n", a.cos(), a.sin())
        })
        .collect();
    std::fs::write(&p, rows).unwrap();
    p
}

#[test]
fn dann_with_an_unlabelled_target_trains_on_all_of_it_and_does_not_measure_it() {
    let Some(bin) = example("dann") else { return };
    let dir = temp("dann");
    let csv = unlabelled_csv(&dir);
    let target = format!("csv:{}:label=none", csv.display());
    let args = [
        "--source",
        "moons",
        "--target",
        target.as_str(),
        "--method",
        "source_only,self_train",
        "--quick",
        "--steps",
        "30",
        "--json",
    ];
    let o = run(&bin, &dir, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("target accuracy not measured: give --target-test"),
        "{stdout}"
    );
    let v = last_json(&o);
    assert_eq!(v["target_examples"], 120, "{v}");
    for m in ["source_only", "self_train"] {
        assert!(v["runs"][m]["target_acc"].is_null(), "{v}");
        assert!(v["runs"][m].get("oracle_target_acc").is_none(), "{v}");
    }
    // A fresh run folder under ./runs with args.json, metrics.csv and the report.
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run_dir = &runs[0];
    let name = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("dann-") && name.len() == "dann-YYYYMMDD-HHMMSS".len(),
        "{name}"
    );
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("args.json")).unwrap()).unwrap();
    assert_eq!(a["example"], "dann");
    assert_eq!(a["seed"], 0);
    assert_eq!(a["xfer_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(a["args"]["target"], target.as_str());
    assert_eq!(a["args"]["steps"], 30);
    assert_eq!(a["args"]["points"], 150, "defaults are recorded too");
    assert_eq!(
        a["args"]["method"],
        serde_json::json!(["source_only", "self_train"])
    );
    let csv_text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = csv_text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("run,kind,step,epoch,loss,lr,grad_norm,")
    );
    for m in ["source_only", "self_train"] {
        assert_eq!(
            csv_text
                .lines()
                .filter(|l| l.starts_with(&format!("{m},step,")))
                .count(),
            30,
            "{m}"
        );
        assert!(
            csv_text
                .lines()
                .any(|l| l.starts_with(&format!("{m},eval,"))),
            "{m}"
        );
    }
    assert!(run_dir.join("dann.json").is_file());

    // The same command again gets its own folder (same second: a -2 suffix).
    let o = run(&bin, &dir, &args);
    assert!(o.status.success());
    assert_eq!(std::fs::read_dir(dir.join("runs")).unwrap().count(), 2);

    // With a labelled test set the accuracy is measured; --out and --log-file are used.
    let out = dir.join("out");
    let log = dir.join("logs/run.log");
    let mut with_test = args.to_vec();
    with_test.extend([
        "--target-test",
        "moons:0",
        "--out",
        out.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let o = run(&bin, &dir, &with_test);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = last_json(&o);
    let acc = v["runs"]["self_train"]["target_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(out.join("metrics.csv").is_file() && out.join("args.json").is_file());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("domain adaptation run finished"),
        "{log_text}"
    );
    assert!(!log_text.contains('\u{1b}'), "colour codes in the log file");

    // A sweep reports target accuracy: without a test set it is a one-line refusal.
    let mut sweep = args.to_vec();
    sweep.extend(["--sweep", "lambda=0.3,1"]);
    let o = run(&bin, &dir, &sweep);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--target-test"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finetune_shots_all_needs_a_test_set_and_a_fraction_trains() {
    let Some(bin) = example("finetune") else {
        return;
    };
    let dir = temp("finetune");
    let out = dir.join("out");
    let base = [
        "--quick",
        "--method",
        "scratch",
        "--scratch-epochs",
        "2",
        "--json",
    ];
    let mut all = base.to_vec();
    all.extend(["--shots", "all", "--out", out.to_str().unwrap()]);
    let o = run(&bin, &dir, &all);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--shots all leaves no target example to test"),
        "{err}"
    );

    let mut frac = base.to_vec();
    frac.extend(["--shots", "0.05", "--out", out.to_str().unwrap()]);
    let o = run(&bin, &dir, &frac);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = last_json(&o);
    assert_eq!(v["shots"], 0.05);
    assert!(v["runs"]["scratch"]["target_acc"].as_f64().is_some());
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("args.json")).unwrap()).unwrap();
    assert_eq!(a["args"]["shots"], 0.05);
    assert!(
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("scratch,step,"))
    );

    // An unlabelled target is a one-line refusal naming it.
    let csv = unlabelled_csv(&dir);
    let target = format!("csv:{}:label=none", csv.display());
    let mut unl = base.to_vec();
    unl.extend([
        "--source",
        "moons",
        "--target",
        target.as_str(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = run(&bin, &dir, &unl);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has no labels"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
