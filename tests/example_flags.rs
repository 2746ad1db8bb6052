//! Every flag does what it says (issue 19, item 5), checked through the example binaries:
//!
//! - `--device cuda` on a build without CUDA is the same one-line error in every example, before
//!   any data is loaded or any network trained;
//! - every `--flag` of every example command line in `README.md` and `docs/*.md` is one the
//!   example's `--help` defines.
//!
//! Uses the examples that `cargo test` builds beside this test (skips with one line when they
//! were not built, e.g. under `cargo test --test example_flags` alone: run
//! `cargo build --examples` first).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every example of the root package.
const EXAMPLES: &[&str] = &[
    "dann",
    "finetune",
    "multitask",
    "predict",
    "quickstart",
    "self_taught",
    "text_zero_shot",
    "zero_shot",
];

/// The example binaries beside this test, or `None` (after one printed line) when any is missing.
fn binaries() -> Option<Vec<(&'static str, PathBuf)>> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("examples");
    let found: Vec<_> = EXAMPLES
        .iter()
        .map(|&n| (n, dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX))))
        .collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, p)| !p.is_file())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        Some(found)
    } else {
        println!(
            "skipped: examples not built next to this test ({}); run `cargo build --examples`",
            missing.join(", ")
        );
        None
    }
}

/// Runs an example with `args`, its environment fixed: no backtraces, `info` logs (so that work
/// done before an error would show on stderr), no stdin.
fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn every_example_refuses_a_missing_cuda_at_once_with_one_and_the_same_line() {
    if cfg!(feature = "cuda") {
        println!("skipped: this build has the cuda feature");
        return;
    }
    let Some(bins) = binaries() else { return };
    let out = std::env::temp_dir().join(format!("xfer-example-flags-{}", std::process::id()));
    let mut errors: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, bin) in &bins {
        let t0 = Instant::now();
        let dir = out.to_str().unwrap();
        // `predict` trains nothing: it takes a model and inputs instead of --quick and --out.
        let args: &[&str] = if *name == "predict" {
            &["--device", "cuda", "--model", dir, "--input", dir]
        } else {
            &["--device", "cuda", "--quick", "--out", dir]
        };
        let o = run(bin, args);
        let took = t0.elapsed();
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{name} --device cuda succeeded on a build without CUDA:\n{stdout}{stderr}"
        );
        assert!(
            stdout.trim().is_empty(),
            "{name} --device cuda printed to stdout before failing:\n{stdout}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{name} --device cuda: want one line on stderr, got:\n{stderr}"
        );
        assert!(
            took < Duration::from_secs(20),
            "{name} --device cuda took {took:?} to fail: not before the work"
        );
        errors.entry(lines[0].to_string()).or_default().push(name);
    }
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(
        errors.len(),
        1,
        "the examples fail on --device cuda with different messages: {errors:#?}"
    );
    let line = errors.keys().next().unwrap();
    assert!(
        line.contains("cuda"),
        "the error does not say how to build with CUDA: {line}"
    );
}

/// One example invocation found in a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    line: usize,
    example: String,
    flags: Vec<String>,
}

/// The shell command lines of a Markdown text, each with its first line number: the lines of
/// fenced code blocks (`\`-continued lines joined) and the inline code spans of the prose (a
/// span may wrap over the lines of its paragraph).
fn command_lines(md: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_code = false;
    let mut pending: Option<(usize, String)> = None;
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    for (i, line) in md.lines().enumerate() {
        let n = i + 1;
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            found.extend(code_spans(&paragraph));
            paragraph.clear();
            if let Some(p) = pending.take() {
                found.push(p);
            }
            in_code = !in_code;
        } else if in_code {
            let (start, mut text) = pending.take().unwrap_or((n, String::new()));
            match line.trim_end().strip_suffix('\\') {
                Some(head) => {
                    text.push_str(head);
                    text.push(' ');
                    pending = Some((start, text));
                }
                None => {
                    text.push_str(line);
                    found.push((start, text));
                }
            }
        } else if t.is_empty() {
            found.extend(code_spans(&paragraph));
            paragraph.clear();
        } else {
            paragraph.push((n, line));
        }
    }
    found.extend(code_spans(&paragraph));
    found.extend(pending);
    found
}

/// The inline code spans of a paragraph, each with the line it starts on.
fn code_spans(paragraph: &[(usize, &str)]) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for &(n, line) in paragraph {
        for c in line.chars() {
            match (c, open.as_mut()) {
                ('`', Some(_)) => spans.extend(open.take()),
                ('`', None) => open = Some((n, String::new())),
                (c, Some((_, s))) => s.push(c),
                (_, None) => {}
            }
        }
        if let Some((_, s)) = open.as_mut() {
            s.push(' ');
        }
    }
    spans
}

/// The `--flag`s among `args` (`--seed=3` and `[--resume]` count as `--seed` and `--resume`).
fn flags(args: &[&str]) -> Vec<String> {
    args.iter()
        .map(|a| a.trim_start_matches(['[', '(', '"', '\'']))
        .filter_map(|a| {
            let rest = a.strip_prefix("--")?;
            rest.starts_with(|c: char| c.is_ascii_lowercase()).then(|| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                format!("--{name}")
            })
        })
        .collect()
}

/// The example one shell command runs, and its flags: `cargo run [..] --example NAME -- ARGS`
/// (no flags without the `--`), `path/to/examples/NAME ARGS`, or `NAME ARGS` at the start.
fn invocation(tokens: &[&str]) -> Option<(String, Vec<String>)> {
    if let Some(i) = tokens.iter().position(|t| *t == "--example") {
        let name = tokens.get(i + 1)?;
        let rest = &tokens[i + 2..];
        let args = rest
            .iter()
            .position(|t| *t == "--")
            .map_or(&[][..], |j| &rest[j + 1..]);
        return Some((name.to_string(), flags(args)));
    }
    let start = tokens
        .iter()
        .position(|t| !matches!(*t, "do" | "then" | "time" | "else"))?;
    tokens.iter().enumerate().skip(start).find_map(|(i, t)| {
        let base = t.rsplit('/').next().unwrap_or(t);
        let path = t.contains("examples/") && EXAMPLES.contains(&base);
        let bare = i == start && EXAMPLES.contains(t);
        (path || bare).then(|| (base.to_string(), flags(&tokens[i + 1..])))
    })
}

/// Every example invocation of a Markdown text (comments after `#` left out; `;`, `&&`, `||`
/// and `|` separate commands).
fn invocations(md: &str) -> Vec<Invocation> {
    let mut found = Vec::new();
    for (line, text) in command_lines(md) {
        let tokens: Vec<&str> = text
            .split_whitespace()
            .take_while(|t| !t.starts_with('#'))
            .collect();
        let mut command: Vec<&str> = Vec::new();
        for (k, t) in tokens.iter().enumerate() {
            let (word, ends) = match t.strip_suffix(';') {
                Some(w) => (w, true),
                None => (*t, matches!(*t, "&&" | "||" | "|")),
            };
            if !word.is_empty() && !matches!(word, "&&" | "||" | "|") {
                command.push(word);
            }
            if ends || k + 1 == tokens.len() {
                if let Some((example, flags)) = invocation(&command) {
                    found.push(Invocation {
                        line,
                        example,
                        flags,
                    });
                }
                command.clear();
            }
        }
    }
    found
}

/// Whether `help` defines `flag` (a line of its option list starts with it, or clap lists it
/// as a visible alias: `[alias: --test]`, `[aliases: --a, --b]`).
fn defines(help: &str, flag: &str) -> bool {
    let alias = |l: &str| {
        let l = l.trim();
        ["[alias: ", "[aliases: "].iter().any(|p| {
            l.strip_prefix(p)
                .and_then(|r| r.strip_suffix(']'))
                .is_some_and(|names| names.split(", ").any(|n| n.trim() == flag))
        })
    };
    help.lines().any(|l| {
        if alias(l) {
            return true;
        }
        let l = l.trim_start();
        let l = match l.split_once(", ") {
            Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
            _ => l,
        };
        l.strip_prefix(flag).is_some_and(|rest| {
            !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    })
}

/// `README.md` and every `docs/*.md`, relative to the package root.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.insert(0, root.join("README.md"));
    files
}

#[test]
fn the_doc_parser_finds_code_blocks_continuations_and_inline_commands() {
    let md = "Run `cargo run --release --example dann -- --task moons:35 --json` or\n\
              `--example finetune -- --method all\n\
              --shots 1`, `--example multitask`, `examples/dann --quick` and `finetune --seed 2`;\n\
              `cargo build --example zero_shot --release`.\n\
              \n\
              ```sh\n\
              for s in 0 1; do cargo run --example self_taught -- --shots $s --json; done\n\
              cargo run --release --example finetune -- \\\n\
              \x20   --backbone cnn --resume=1 \\\n\
              \x20   [--checkpoint-every N]   # later: --not-this\n\
              ./target/debug/examples/zero_shot --data x --unseen cat && ls --all\n\
              ```\n";
    let found = invocations(md);
    let got: Vec<(usize, &str, Vec<&str>)> = found
        .iter()
        .map(|i| {
            let flags = i.flags.iter().map(String::as_str).collect();
            (i.line, i.example.as_str(), flags)
        })
        .collect();
    let want: Vec<(usize, &str, Vec<&str>)> = vec![
        (1, "dann", vec!["--task", "--json"]),
        (2, "finetune", vec!["--method", "--shots"]),
        (3, "multitask", vec![]),
        (3, "dann", vec!["--quick"]),
        (3, "finetune", vec!["--seed"]),
        (4, "zero_shot", vec![]),
        (7, "self_taught", vec!["--shots", "--json"]),
        (
            8,
            "finetune",
            vec!["--backbone", "--resume", "--checkpoint-every"],
        ),
        (11, "zero_shot", vec!["--data", "--unseen"]),
    ];
    assert_eq!(got, want);
}

#[test]
fn the_defined_flags_of_a_help_text_are_found() {
    let help = "Options:\n      --target <TARGET>\n          The target (see `--shots`)\n\
                \x20     --target-test <T>\n  -h, --help\n          Print help\n";
    assert!(defines(help, "--target"));
    assert!(defines(help, "--target-test"));
    assert!(defines(help, "--help"));
    assert!(!defines(help, "--shots"), "a mention is not a definition");
    assert!(!defines(help, "--tar"));
    let aliased = "      --target-test <T>\n          A test set\n\n          [alias: --test]\n\
                   \x20     --widths <W>\n          [aliases: --w, --ws]\n";
    assert!(defines(aliased, "--test"));
    assert!(defines(aliased, "--ws"));
    assert!(!defines(aliased, "--tes"));
}

#[test]
fn every_flag_the_docs_show_is_one_the_example_help_defines() {
    let Some(bins) = binaries() else { return };
    let help: BTreeMap<&str, String> = bins
        .iter()
        .map(|(name, bin)| {
            let o = run(bin, &["--help"]);
            assert!(o.status.success(), "{name} --help failed");
            (*name, String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for file in doc_files() {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for inv in invocations(&text) {
            let Some(h) = help.get(inv.example.as_str()) else {
                missing.insert(format!("{rel}:{}: no example `{}`", inv.line, inv.example));
                continue;
            };
            seen.insert(inv.example.clone());
            for flag in &inv.flags {
                if !defines(h, flag) {
                    missing.insert(format!(
                        "{rel}:{}: {} {flag} (not in `{} --help`)",
                        inv.line, inv.example, inv.example
                    ));
                }
            }
        }
    }
    // The parser found the commands the docs are known to show.
    for e in [
        "dann",
        "finetune",
        "multitask",
        "predict",
        "quickstart",
        "self_taught",
        "zero_shot",
    ] {
        assert!(seen.contains(e), "no command line runs `{e}` in the docs");
    }
    assert!(
        missing.is_empty(),
        "flags in the docs that the examples do not define ({}):\n{}",
        missing.len(),
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}
