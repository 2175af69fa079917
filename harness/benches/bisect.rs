//! Bisect speed on the 32-commit history of `tests/common/bisect_history.rs` (real builds and
//! boots): seconds per step after a one-file commit (build + boot + replay), steps, builds and
//! the total time. Prints figures, judges nothing: `cargo bench -p cmafuzz --bench bisect`.
//!
//! Every run gets a patch of its own (one line appended to a file no config compiles), so no
//! commit's kernel is a cache hit from an earlier run and every step really runs `make` in the
//! persistent `O=` directory; the first build of a run (the `--bad` end) pays for whatever the
//! previous run left in `O=` and is reported apart.

#[path = "../tests/common/bisect_history.rs"]
mod history;

use history::{history, root, BUG_AT, COMMITS};
use std::process::Command;

/// A patch of its own for this run: one line appended to a file no config compiles.
fn nonce_patch(repo: &std::path::Path, dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let file = "Documentation/admin-guide/README.rst";
    let text = std::fs::read_to_string(repo.join(file)).expect("fixture file");
    let last: Vec<&str> = text.lines().rev().take(3).collect();
    let n = text.lines().count();
    let mut patch = format!("--- a/{file}\n+++ b/{file}\n@@ -{},3 +{},4 @@\n", n - 2, n - 2);
    for l in last.iter().rev() {
        patch.push_str(&format!(" {l}\n"));
    }
    patch.push_str(&format!("+.. cmafuzz bench {tag} {nonce}\n"));
    let p = dir.join(format!("{tag}.patch"));
    std::fs::write(&p, patch).expect("write patch");
    p
}

/// Runs `cmafuzz bisect --json` and returns its report, or exits with its error.
fn run(
    repo: &std::path::Path,
    good: &str,
    bad: &str,
    patch: &std::path::Path,
    out: &std::path::Path,
) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("bisect")
        .arg("--kernel-src")
        .arg(repo)
        .args(["--good", good, "--bad", bad, "--target", "arm32-6.1", "--json", "--kernel-patch"])
        .arg(patch)
        .arg("--out")
        .arg(out)
        .arg(root().join("corpora/seed/01-alloc-release.prog"))
        .output()
        .expect("cmafuzz runs");
    match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
        Ok(v) => v["report"].clone(),
        Err(_) => {
            eprintln!("bisect failed (exit {:?}):\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
            std::process::exit(1);
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let (repo, c) = history();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let r = run(&repo, &c[0], &c[COMMITS], &nonce_patch(&repo, tmp.path(), "range"), &out);
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    let mut per_step = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let role = s["role"].as_str().unwrap_or("");
        let secs = s["seconds"].as_f64().unwrap_or(0.0);
        let build = s["build_seconds"].as_f64().unwrap_or(0.0);
        let verdict = s["mark"]["verdict"].as_str().unwrap_or("");
        println!(
            "bisect: {i:>2} {role:<8} {} {verdict:<4} build {build:>5.1} s, build+boot+replay {secs:>5.1} s, {} runs",
            s["commit"]["sha"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            s["runs"]
        );
        if i > 0 {
            per_step.push(secs);
        }
    }
    per_step.sort_by(f64::total_cmp);
    let median = per_step.get(per_step.len() / 2).copied().unwrap_or(0.0);
    let first = steps.first().and_then(|s| s["seconds"].as_f64()).unwrap_or(0.0);
    let after_first: f64 = per_step.iter().sum();
    let bisection = steps.iter().filter(|s| s["role"] == "step").count();
    println!("bisect: {COMMITS}-commit range: {bisection} steps chosen by git, {} commits tested (ends and revert check included)", steps.len());
    println!(
        "bisect: first build (--bad end) {first:.0} s; per step after it: median {median:.1} s, max {:.1} s",
        per_step.last().copied().unwrap_or(0.0)
    );
    println!("bisect: total {:.0} s, after the first build {after_first:.0} s", r["seconds"].as_f64().unwrap_or(0.0));
    println!("bisect: first bad commit {}", r["culprit"]["sha"].as_str().unwrap_or("none"));

    // A one-file commit: c20 (the bug, mm/cma.c) built, then its parent c19 (the good end).
    let r = run(&repo, &c[BUG_AT - 1], &c[BUG_AT], &nonce_patch(&repo, tmp.path(), "one-file"), &out);
    if let Some(s) = r["steps"].as_array().and_then(|s| s.get(1)) {
        println!(
            "bisect: step after a one-file commit (mm/cma.c): build {:.1} s, build+boot+replay {:.1} s, {} runs",
            s["build_seconds"].as_f64().unwrap_or(0.0),
            s["seconds"].as_f64().unwrap_or(0.0),
            s["runs"]
        );
    }
}
